"""
Each kind of device's choices, with the backends' availability patched: what auto picks and in
which order, what --device accepts, and what MPS refuses (torch.compile, torchrun).
"""

import dataclasses

import pytest
import torch

import checkpoint
import distributed
import handout
from device import CPU, CUDA, MPS, cpu_name, kind_of, resolve_device
from model import GPT, GPTConfig
from safe_io import InputError
from trainer import Trainer, TrainerConfig, choose_precision


def backends(monkeypatch, cuda, mps):
    """Pretend this machine has (or lacks) a CUDA GPU and an Apple GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: int(cuda))
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize("cuda, mps, chosen", [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"),
                                               (False, False, "cpu")])
def test_auto_takes_cuda_then_mps_then_the_cpu(monkeypatch, cuda, mps, chosen):
    backends(monkeypatch, cuda, mps)
    assert resolve_device("auto") == chosen


def test_a_device_asked_for_is_taken_if_this_machine_has_it(monkeypatch):
    backends(monkeypatch, cuda=True, mps=True)
    assert [resolve_device(d) for d in ["cpu", "cuda", "cuda:0", "mps"]] == ["cpu", "cuda", "cuda:0", "mps"]
    backends(monkeypatch, cuda=False, mps=False)
    for device, words in [("mps", "--device mps: PyTorch sees no Apple GPU (MPS) here; give auto or cpu"),
                          ("cuda", "--device cuda: PyTorch sees 0 CUDA GPUs here; give auto or cpu"),
                          ("gpu", "--device 'gpu' is not a device; give auto, cpu, cuda, cuda:N or mps"),
                          ("meta", "--device meta: this code trains on a CPU, CUDA or MPS")]:
        with pytest.raises(InputError, match=words.replace("(", r"\(").replace(")", r"\)")):
            resolve_device(device)


def test_each_device_string_has_its_kind():
    assert [kind_of(d) for d in ["cpu", "cuda", "cuda:3", "mps"]] == [CPU, CUDA, CUDA, MPS]
    assert [kind.name for kind in (CPU, CUDA, MPS)] == ["cpu", "cuda", "mps"]


def test_each_kinds_choices():
    # (auto precision, fused AdamW, group cost, compile, batches on the device, pinned, torchrun's backend, full recipe)
    assert [(k.auto_precision, k.fused_adamw, k.group_cost, k.compile_allowed, k.batches_on_device, k.pin_memory,
             k.process_group_backend, k.full_recipe) for k in (CPU, CUDA, MPS)] == [
        ("measured", False, 64, True, True, False, "gloo", False),
        ("bf16", True, 128 * 127, True, True, True, "nccl", True),
        ("fp32", False, 128 * 127, False, False, False, None, False),
    ]
    assert [cpu_name(n) for n in (1, 2, 16)] == ["a CPU (1 thread)", "a CPU (2 threads)", "a CPU (16 threads)"]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert CPU.table_name() == "a CPU (1 thread)"
    finally:
        torch.set_num_threads(threads)
    assert MPS.table_name() == "an Apple GPU (MPS)"
    assert CPU.get_rng_state is None and CUDA.get_rng_state is torch.cuda.get_rng_state_all


def test_auto_precision_per_kind():
    assert choose_precision("auto", CUDA) == ("bf16", "auto: CUDA")
    assert choose_precision("auto", MPS) == ("fp32", "auto: MPS")  # bf16 only when asked for
    assert choose_precision("bf16", MPS) == ("bf16", "as asked")


def tiny_model():
    return GPT(GPTConfig(20, 16, n_layer=1, n_head=2, n_embd=8))


def test_mps_refuses_compile_before_it_moves_the_model(monkeypatch):
    backends(monkeypatch, cuda=False, mps=True)
    with pytest.raises(InputError, match="^--compile: torch.compile is not used on MPS here; run without --compile$"):
        Trainer(tiny_model(), None, None, TrainerConfig(device="mps", compile=True))


def test_mps_refuses_torchrun(monkeypatch):
    backends(monkeypatch, cuda=False, mps=True)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(InputError, match="^--device mps: MPS trains in one process; run without torchrun$"):
        distributed.start("mps")


def test_handout_runs_the_full_recipe_on_cuda_only():
    assert handout.choose_recipe("auto", "2021", CUDA) == {}
    assert handout.choose_recipe("auto", "2021", MPS) is handout.CPU_RECIPE
    assert handout.choose_recipe("auto", "2021", CPU) is handout.CPU_RECIPE


def test_mps_batches_are_built_on_the_cpu_and_cudas_on_the_gpu():
    asked = []

    class Dataset:
        def batches(self, batch_size, generator, device):
            asked.append(device)
            return iter([])

    trainer = Trainer(tiny_model(), None, None, TrainerConfig(device="cpu"))
    for device in ["mps", "cuda", "cpu"]:
        trainer.device, trainer.device_kind = device, kind_of(device)
        trainer.epoch_batches(Dataset(), None)
    assert asked == ["cpu", "cuda", "cpu"]


def test_a_checkpoint_keeps_the_devices_own_random_state_under_its_name():
    restored = []
    kind = dataclasses.replace(MPS, get_rng_state=lambda: torch.tensor([7]), set_rng_state=restored.append)
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters())
    state = checkpoint.capture(model, optimizer, torch.Generator(), 0, 0, [], {}, "fp32", kind)
    [own] = state["random"]["by_process"]  # one process: one state of its own
    assert torch.equal(own["mps"], torch.tensor([7])) and "cuda" not in own
    checkpoint.restore(state, model, optimizer, torch.Generator(), {}, "c", kind)
    assert torch.equal(restored[0], torch.tensor([7]))
    cpu_state = checkpoint.capture(model, optimizer, torch.Generator(), 0, 0, [], {}, "fp32", CPU)
    assert set(cpu_state["random"]) == {"python", "numpy", "data", "by_process"}
    assert [set(own) for own in cpu_state["random"]["by_process"]] == [{"torch"}]  # a CPU's generator is torch's
