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

import distributed
from conftest import ROOT
from model import VARIANTS
from safe_io import InputError

HELPERS = Path(__file__).resolve().parent / "helpers"
STEP = HELPERS / "ddp_step.py"


def run_steps(folder, processes):
    """{variant: its params before and after one step} in one process, or in processes of one torchrun launch."""
    folder.mkdir()
    command = [str(STEP), str(folder), *VARIANTS]
    if processes > 1:
        command = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *command]
    result = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return {variant: torch.load(folder / f"{variant}.pt", weights_only=True) for variant in VARIANTS}


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("steps")
    return run_steps(folder / "single", 1), run_steps(folder / "ddp", 2)


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_ddp_step_on_two_processes_equals_one_single_process_step(steps, variant):
    single, ddp = (by_variant[variant] for by_variant in steps)
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


def rank_of(pid):
    environment = dict(item.split("=", 1) for item in (Path("/proc") / str(pid) / "environ").read_text().split("\0")
                       if "=" in item)
    return int(environment["RANK"])


def tiny_pretraining(tmp_path, lines, epochs):
    """(run.py's arguments for a tiny model's pretraining on a corpus of `lines` lines, its params path)."""
    corpus = tmp_path / "wiki.txt"
    corpus.write_text("\n".join(f"Person {i} was born in Town {i % 7} and studied music at a school there."
                                 for i in range(lines)) + "\n")
    params = tmp_path / "p.params"
    return [str(ROOT / "src" / "run.py"), "pretrain", "vanilla", str(corpus), "--writing_params_path", str(params),
            "--max_epochs", str(epochs), "--batch_size", "4", "--checkpoint_every", "0", "--device", "cpu",
            "--n_layer", "1", "--n_head", "2", "--n_embd", "16"], params


def stop_after_first_checkpoint(command, params, cwd, whom):
    """Start command, send SIGTERM to whom(launcher pid) once an epoch is done; (exit status, output)."""
    launcher = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "2"}, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not Path(f"{params}.checkpoint").exists() and time.time() < deadline:  # training is under way
            time.sleep(0.1)
        os.kill(whom(launcher.pid), signal.SIGTERM)
        output = launcher.communicate(timeout=120)[0]
    finally:
        if launcher.poll() is None:  # a process left waiting for another in its next step
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.communicate()
    return launcher.returncode, output


STOPPED = (r"^SIGTERM at epoch (\d+), step (\d+): stopped\. The state at the start of epoch (\d+) is in "
           r"\S+p\.params\.checkpoint: run the same command with --resume")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the processes through Linux's /proc")
def test_processes_flag_trains_in_two_processes_that_stop_together_and_resume_to_the_same_params(tmp_path):
    arguments, params = tiny_pretraining(tmp_path, 40, 16)
    command = [sys.executable, *arguments, "--processes", "2"]
    whole = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert whole.returncode == 0, whole.stderr[-3000:]
    # the set-up lines once, from the process of rank 0, as a run in one process prints them
    assert [whole.stdout.count(line) for line in ("data has ", "number of parameters: ", "precision: ")] == [1, 1, 1]
    uninterrupted = torch.load(params, weights_only=True)
    params.unlink()
    # SIGTERM to one of the two alone, as a signal may land between their looks after a step: both stop
    status, output = stop_after_first_checkpoint(
        command, params, tmp_path, lambda launcher: next(pid for pid in children(launcher) if rank_of(pid) == 1))
    stops = re.findall(STOPPED, output, re.MULTILINE)
    assert status == 128 + signal.SIGTERM and len(stops) == 2 and stops[0] == stops[1], output[-3000:]
    assert not params.exists() and int(stops[0][0]) < 16
    resumed = subprocess.run(command + ["--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = torch.load(params, weights_only=True)
    assert again.keys() == uninterrupted.keys()
    assert all(torch.equal(again[name], uninterrupted[name]) for name in again)


def test_processes_flag_refuses_what_it_cannot_start_and_starts_nothing_where_it_need_not(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.in_processes(1, "cpu", ["unused"]) is None  # one process: this one trains
    with pytest.raises(InputError, match=r"^--processes 2: MPS trains in one process; leave --processes out$"):
        distributed.in_processes(2, "mps", ["unused"])
    monkeypatch.setenv("WORLD_SIZE", "2")  # a worker, or a run under torchrun
    assert distributed.in_processes(2, "cpu", ["unused"]) is None and distributed.in_processes(1, "cpu", []) is None
    with pytest.raises(InputError, match=r"^--processes 3 under a launcher of 2 processes; give one or the other$"):
        distributed.in_processes(3, "cpu", ["unused"])


def test_one_process_of_a_run_prints_its_set_up_lines(monkeypatch):
    for name in ("WORLD_SIZE", "RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.says_set_up(1)  # one process: it trains, and says so
    assert not distributed.says_set_up(2)  # the launcher of two: its rank 0 will
    monkeypatch.setenv("WORLD_SIZE", "2")  # one of two, under run.py's launcher or torchrun
    for rank, says in (("0", True), ("1", False)):
        monkeypatch.setenv("RANK", rank)
        assert distributed.says_set_up(2) is says and distributed.says_set_up(1) is says
