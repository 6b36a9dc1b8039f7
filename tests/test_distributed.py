"""
Data parallelism: one DDP step on 2 CPU processes (gloo) equals one single-process step,
each process draws dropout masks of its own, which a resume point gives back to it, and a
signal that reaches one process stops them all at the same step.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import checkpoint
from conftest import ROOT
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


def children(pid):
    """The processes whose parent is pid (Linux's /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError):  # a process that ended while being read
            pass
    return found


def checkpoint_written(params):
    return Path(str(params) + ".checkpoint").exists()


def rank_of(pid):
    environment = dict(item.split("=", 1) for item in (Path("/proc") / str(pid) / "environ").read_text().split("\0")
                       if "=" in item)
    return int(environment["RANK"])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds torchrun's processes through Linux's /proc")
def test_a_signal_to_one_process_stops_every_process_at_the_same_step_and_keeps_the_checkpoint(tmp_path):
    corpus = tmp_path / "wiki.txt"
    corpus.write_text("\n".join(f"Person {i} was born in Town {i % 7} and studied music at a school there."
                                 for i in range(160)) + "\n")
    params = tmp_path / "p.params"
    logs = tmp_path / "logs"  # each process's output in a file of its own: their lines do not interleave
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "--log-dir", str(logs), "--redirects", "3", str(ROOT / "src" / "run.py"), "pretrain", "vanilla", str(corpus), "--writing_params_path", str(params),
               "--max_epochs", "1000", "--batch_size", "4", "--checkpoint_every", "0", "--device", "cpu",
               "--n_layer", "1", "--n_head", "2", "--n_embd", "16"]
    launcher = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not checkpoint_written(params) and time.time() < deadline:  # an epoch done: training is under way
            time.sleep(0.2)
        workers = {rank_of(pid): pid for pid in children(launcher.pid)}
        assert sorted(workers) == [0, 1]
        os.kill(workers[1], signal.SIGTERM)  # to one process alone, as a signal may land between their looks
        output = launcher.communicate(timeout=120)[0]
    finally:
        if launcher.poll() is None:  # without the agreement, rank 0 waits for rank 1 in its next step
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.communicate()
    stops = [re.findall(r"^SIGTERM at epoch (\d+), step (\d+): stopped\. The state at the start of epoch (\d+) is "
                        r"in \S+p\.params\.checkpoint: run the same command with --resume", log.read_text(),
                        re.MULTILINE) for log in sorted(logs.glob("**/[01]/stderr.log"))]
    assert len(stops) == 2 and stops[0] == stops[1] and len(stops[0]) == 1, output[-3000:]
    epoch, _, start = (int(n) for n in stops[0][0])
    assert start == epoch and checkpoint.load(str(params) + ".checkpoint")["epoch"] == epoch - 1
