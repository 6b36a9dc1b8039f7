"""
Resumable training: everything a run needs to continue exactly where it was, at the start
of an epoch. The trainer keeps the latest such state in memory (cheap), writes it to disk
every so often and when it is stopped (Ctrl-C, SIGTERM, a loss that is no longer finite),
and `--resume` picks it up. On a CPU with a fixed seed a resumed run ends with the same
params as an uninterrupted one: the model, the optimizer, the learning-rate counter and
every random generator (Python, NumPy, torch's, the training device's own, the data's) are
restored. Under torchrun, where each process draws its own dropout masks, torch's and the
device's generators are kept for every process, and each process takes its own back.

A checkpoint holds tensors and plain values only (NumPy's generator state is stored as a
list), so it is read with torch.load(weights_only=True): a file whose unpickling would run
code, or one of an older format, is refused unread.
"""

import copy
import pickle
import random

import numpy as np
import torch

import distributed
from safe_io import InputError, atomic_output

FORMAT = 3  # 1 (unnumbered) held NumPy's state as an array, which needs weights_only=False; 2 one process's generators


def capture(model, optimizer, data_generator, epoch, tokens, metrics, settings, precision, device_kind):
    """
    A copy of the training state at the start of `epoch` (0-based), safe from later steps, with
    the precision the run trains in (a resumed run goes on in it, whatever auto would choose).
    device_kind (device.py): whose random state is kept beside torch's, under its name.
    """
    state = {
        "format": FORMAT,
        "settings": settings,
        "precision": precision,
        "epoch": epoch,
        "tokens": tokens,
        "model": {name: tensor.detach().clone() for name, tensor in model.state_dict().items()},
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "metrics": list(metrics),
        "random": {
            "python": random.getstate(),  # a tuple of ints and a float or None: plain values already
            "numpy": numpy_state(),
            "data": data_generator.get_state(),
            # the generators each process draws its dropout from: its own under torchrun (a collective)
            "by_process": distributed.every_process(process_generators(device_kind)),
        },
    }
    return state


def process_generators(device_kind):
    """The state of torch's generator and, where it has one, the device's, under their names."""
    states = {"torch": torch.get_rng_state()}
    if device_kind.get_rng_state is not None:
        states[device_kind.name] = device_kind.get_rng_state()
    return states


def numpy_state():
    """NumPy's global generator state in plain values: its key of 624 uint32 as a list of ints."""
    name, key, position, has_gauss, gauss = np.random.get_state()
    return {"name": name, "key": key.tolist(), "position": position, "has_gauss": has_gauss, "gauss": gauss}


def restore(state, model, optimizer, data_generator, settings, path, device_kind):
    if state["settings"] != settings:
        differences = ", ".join(f"{key} {state['settings'].get(key)} there, {value} here"
                                for key, value in settings.items() if state["settings"].get(key) != value)
        raise InputError(f"{path} was made by a run with other settings ({differences}); "
                         f"resume with the same flags, or delete it to start afresh")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generators = state["random"]
    random.setstate(generators["python"])
    numpy = generators["numpy"]
    np.random.set_state((numpy["name"], np.array(numpy["key"], dtype=np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["gauss"]))
    rank, processes = distributed.world()
    shared = generators.get("shared_by_every_process", False)
    if not shared and len(generators["by_process"]) != processes:
        raise InputError(f"{path} was made by a run of {len(generators['by_process'])} processes, this one has "
                         f"{processes}; resume with as many (--processes, or torchrun --nproc_per_node), or delete "
                         f"it to start afresh")
    own = generators["by_process"][0 if shared else rank]
    torch.set_rng_state(own["torch"])
    # resumed on another kind of device than it started on, a run's device draws afresh
    if device_kind.set_rng_state is not None and device_kind.name in own:
        device_kind.set_rng_state(own[device_kind.name])
    if shared:  # each process derives its own stream from the shared one, as a new run does
        distributed.own_random_stream()
    data_generator.set_state(generators["data"])


def save(state, path):
    with atomic_output(path, "wb") as f:
        torch.save(state, f)


def load(path):
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"there is no checkpoint {path} to resume from; "
                         f"run without --resume to start afresh") from None
    except pickle.UnpicklingError:  # what weights_only raises on anything but tensors and plain values
        raise InputError(f"{path} is not a checkpoint of this run.py (an older one's, or another file: it holds "
                         f"more than tensors and plain values; nothing in it was run); delete it and run without "
                         f"--resume") from None
    except Exception as error:
        raise InputError(f"{path} is not a readable checkpoint ({type(error).__name__}); "
                         f"delete it and run without --resume") from None
    if not isinstance(state, dict) or state.get("format") not in (2, FORMAT):
        raise InputError(f"{path} is not a checkpoint of this version of run.py (format {FORMAT}); "
                         f"delete it and run without --resume")
    return upgraded(state)


def upgraded(state):
    """
    A state of format 2 in today's layout. Format 2 kept one set of torch's and the device's
    generators, which every process of a torchrun run shared (the defect format 3 mends) and
    which does not say how many processes made it: any number of processes may resume it.
    """
    if state["format"] == 2:
        generators = state["random"]
        own = {name: generators.pop(name) for name in list(generators) if name not in ("python", "numpy", "data")}
        generators["by_process"] = [own]
        generators["shared_by_every_process"] = True
        state["format"] = FORMAT
    return state
