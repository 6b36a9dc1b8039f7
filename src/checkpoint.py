"""
Resumable training: everything a run needs to continue exactly where it was, at the start
of an epoch. The trainer keeps the latest such state in memory (cheap), writes it to disk
every so often and when it is stopped (Ctrl-C, SIGTERM, a loss that is no longer finite),
and `--resume` picks it up. On a CPU with a fixed seed a resumed run ends with the same
params as an uninterrupted one: the model, the optimizer, the learning-rate counter and
every random generator (Python, NumPy, torch, CUDA, the data loader's) are restored.
"""

import copy
import random

import numpy as np
import torch

from safe_io import InputError, atomic_output


def capture(model, optimizer, data_generator, epoch, tokens, metrics, settings):
    """A copy of the training state at the start of `epoch` (0-based), safe from later steps."""
    return {
        "settings": settings,
        "epoch": epoch,
        "tokens": tokens,
        "model": {name: tensor.detach().clone() for name, tensor in model.state_dict().items()},
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "metrics": list(metrics),
        "random": {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "data": data_generator.get_state(),
        },
    }


def restore(state, model, optimizer, data_generator, settings, path):
    if state["settings"] != settings:
        differences = ", ".join(f"{key} {state['settings'].get(key)} there, {value} here"
                                for key, value in settings.items() if state["settings"].get(key) != value)
        raise InputError(f"{path} was made by a run with other settings ({differences}); "
                         f"resume with the same flags, or delete it to start afresh")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generators = state["random"]
    random.setstate(generators["python"])
    np.random.set_state(generators["numpy"])
    torch.set_rng_state(generators["torch"])
    if generators["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(generators["cuda"])
    data_generator.set_state(generators["data"])


def save(state, path):
    with atomic_output(path, "wb") as f:
        torch.save(state, f)


def load(path):
    try:
        # the random states hold NumPy arrays and tuples: trusted, since this run wrote them
        return torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise InputError(f"there is no checkpoint {path} to resume from; "
                         f"run without --resume to start afresh") from None
    except Exception as error:
        raise InputError(f"{path} is not a readable checkpoint ({type(error).__name__}); "
                         f"delete it and run without --resume") from None
