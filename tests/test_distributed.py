"""
Data parallelism: one DDP step on 2 CPU processes (gloo) equals one single-process step, and
each process draws dropout masks of its own, which a resume point gives back to it.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model import VARIANTS

HELPERS = Path(__file__).resolve().parent / "helpers"
STEP = HELPERS / "ddp_step.py"


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


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_ddp_step_on_two_processes_equals_one_single_process_step(tmp_path, variant):
    single = run_step(tmp_path, variant, 1)
    ddp = run_step(tmp_path, variant, 2)
    assert single["before"].keys() == single["after"].keys() == ddp["after"].keys()
    # Adam moves each weight by about the learning rate (1e-2) whatever its gradient's size, so
    # the key bias, whose gradient is zero but for rounding, moves by rounding noise: 1e-5 absolute
    # tolerance is a thousand times under a real step
    for name, value in single["after"].items():
        assert torch.allclose(value, ddp["after"][name], rtol=1e-4, atol=1e-5), name
    # the step really moved the weights (lr 1e-2), so equality is not trivial
    changed = [name for name, value in single["after"].items() if not torch.equal(single["before"][name], value)]
    assert len(changed) > 20
    assert all(name.endswith(("mask", "rope_cache")) for name in set(single["after"]) - set(changed))


def process_draws(path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(HELPERS / "ddp_streams.py"), str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def two_runs_draws(tmp_path_factory):
    folder = tmp_path_factory.mktemp("streams")
    return process_draws(folder / "a.pt"), process_draws(folder / "b.pt")


def test_each_process_draws_its_own_dropout_stream_the_same_each_run_and_a_resume_gives_it_back(two_runs_draws):
    draws, again = two_runs_draws
    rank0, rank1 = draws
    # all processes are seeded alike (the same model and batches), yet their streams differ
    assert not torch.equal(rank0[0], rank1[0])
    # restoring the resume point each process captured gives that process's own stream back
    assert torch.equal(rank0[0], rank0[1]) and torch.equal(rank1[0], rank1[1])
    # and the same command draws the same streams again
    assert all(torch.equal(a, b) for a, b in zip(draws, again))


def test_a_format_2_checkpoint_resumes_under_torchrun_with_a_stream_of_its_own_in_each_process(two_runs_draws):
    draws, again = two_runs_draws
    rank0, rank1 = draws
    # format 2 kept one set of generators for all processes: each takes it, then its own stream from it
    assert not torch.equal(rank0[2], rank1[2])
    assert not torch.equal(rank0[2], rank0[1]) and not torch.equal(rank1[2], rank1[1])
    assert torch.equal(rank0[2], again[0][2]) and torch.equal(rank1[2], again[1][2])
