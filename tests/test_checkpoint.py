"""
Checkpoints and params files load with torch.load(weights_only=True): a file whose unpickling
would run code, or a checkpoint of the older format, is refused with one line and runs
nothing; and every random generator a checkpoint keeps comes back exactly as it was.
"""

import random

import numpy as np
import pytest
import torch

import checkpoint
import params
from device import kind_of, resolve_device
from model import GPT, GPTConfig
from safe_io import InputError


class CreatesAFile:
    """Unpickled by a loader that runs code, it calls open(path, "w"), which creates the file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def tiny_model():
    return GPT(GPTConfig(10, 16, n_layer=1, n_head=2, n_embd=8))


def test_a_file_that_would_run_code_is_refused_by_both_loaders_and_runs_nothing(tmp_path):
    marker, crafted = tmp_path / "marker", tmp_path / "crafted"
    torch.save({"format": checkpoint.FORMAT, "model": CreatesAFile(marker)}, crafted)
    torch.load(crafted, weights_only=False)["model"].close()  # loaded unsafely, it does create the file
    assert marker.exists()
    marker.unlink()
    with pytest.raises(InputError) as refused:
        checkpoint.load(crafted)
    message = str(refused.value)
    assert str(crafted) in message and "nothing in it was run" in message and "delete it and run without --resume" \
        in message and "\n" not in message
    with pytest.raises(InputError) as refused:
        params.load_params(tiny_model(), crafted, "cpu")
    assert str(crafted) in str(refused.value) and "not a params file" in str(refused.value)
    assert not marker.exists()


DEVICE_KIND = kind_of(resolve_device("auto"))  # this machine's: on a GPU its generator is kept too


def capture(model, optimizer, data_generator):
    return checkpoint.capture(model, optimizer, data_generator, 0, 0, [], {"batch_size": 3}, "fp32", DEVICE_KIND)


def test_a_checkpoint_of_the_older_format_is_refused(tmp_path):
    model = tiny_model()
    state = capture(model, torch.optim.AdamW(model.parameters()), torch.Generator())
    del state["format"]
    state["random"]["numpy"] = np.random.get_state()  # as the older format kept it: an array, not plain values
    torch.save(state, tmp_path / "old.checkpoint")
    with pytest.raises(InputError, match="old.checkpoint is not a checkpoint of this run.py .*delete it and run "
                                         "without --resume"):
        checkpoint.load(tmp_path / "old.checkpoint")
    del state["random"]["numpy"]  # loads with weights_only, but has no format number: refused all the same
    torch.save(state, tmp_path / "old.checkpoint")
    with pytest.raises(InputError, match="old.checkpoint is not a checkpoint of this version"):
        checkpoint.load(tmp_path / "old.checkpoint")


def draws(data_generator):
    """A draw from every generator a checkpoint keeps; the Gaussians use the cached second values."""
    return {
        "python": [random.random(), random.gauss(0, 1)],
        "numpy": [np.random.standard_normal(), np.random.randint(1 << 30)],
        "torch": torch.rand(3),
        "cuda": torch.rand(3, device="cuda") if torch.cuda.is_available() else None,
        "data": torch.rand(3, generator=data_generator),
    }


def format_2(state):
    """
    A state as format 2 kept it: one set of generators beside the shared ones (the first
    process's; under torchrun every process then had the same).
    """
    own = state["random"].pop("by_process")[0]
    return {**state, "format": 2, "random": {**state["random"], **own}}


@pytest.mark.parametrize("write", [lambda state: state, format_2], ids=["today's format", "format 2"])
def test_the_random_generators_come_back_exactly(tmp_path, write):
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters())
    data_generator = torch.Generator().manual_seed(3)
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(4)
    random.gauss(0, 1)  # each keeps the second of a pair of Gaussians: part of its state
    np.random.standard_normal()
    checkpoint.save(write(capture(model, optimizer, data_generator)), tmp_path / "c.checkpoint")
    after_capture = draws(data_generator)
    draws(data_generator)  # on, past the captured state
    state = checkpoint.load(tmp_path / "c.checkpoint")
    checkpoint.restore(state, model, optimizer, data_generator, {"batch_size": 3}, tmp_path / "c.checkpoint",
                       DEVICE_KIND)
    after_restore = draws(data_generator)
    for name, drawn in after_capture.items():
        if isinstance(drawn, torch.Tensor):
            assert torch.equal(drawn, after_restore[name]), name
        else:
            assert drawn == after_restore[name], name


def test_a_checkpoint_of_two_processes_is_refused_by_one(tmp_path):
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters())
    state = capture(model, optimizer, torch.Generator())
    state["random"]["by_process"] *= 2  # as torchrun --nproc_per_node=2 keeps it
    with pytest.raises(InputError, match=r"^c.checkpoint was made by a run of 2 processes, this one has 1; resume "
                                         r"with as many \(--processes, or torchrun --nproc_per_node\), or delete "
                                         r"it to start afresh$"):
        checkpoint.restore(state, model, optimizer, torch.Generator(), {"batch_size": 3}, "c.checkpoint",
                           DEVICE_KIND)
