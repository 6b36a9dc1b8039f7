"""Data parallelism: one DDP step on 2 CPU processes (gloo) equals one single-process step."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

STEP = Path(__file__).resolve().parent / "helpers" / "ddp_step.py"


def run_step(tmp_path, variant, processes):
    out = tmp_path / f"{variant}-{processes}.params"
    if processes == 1:
        command = [sys.executable, str(STEP), str(out), variant]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   str(STEP), str(out), variant]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(out, weights_only=True)


@pytest.mark.parametrize("variant", ["vanilla", "synthesizer"])
def test_one_ddp_step_on_two_processes_equals_one_single_process_step(tmp_path, variant):
    single = run_step(tmp_path, variant, 1)
    ddp = run_step(tmp_path, variant, 2)
    assert single.keys() == ddp.keys()
    # Adam moves each weight by about the learning rate (1e-2) whatever its gradient's size, so
    # the key bias, whose gradient is zero but for rounding, moves by rounding noise: 1e-5 absolute
    # tolerance is a thousand times under a real step
    for name in single:
        assert torch.allclose(single[name], ddp[name], rtol=1e-4, atol=1e-5), name
    # the step really moved the weights (lr 1e-2), so equality is not trivial
    from model import GPT, GPTConfig
    initial = GPT(GPTConfig(50, 32, variant=variant, n_layer=2, n_head=2, n_embd=16)).state_dict()
    changed = sum(not torch.equal(initial[name], single[name]) for name in single if not name.endswith("mask"))
    assert changed > 20
