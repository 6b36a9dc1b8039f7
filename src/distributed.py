"""
Data parallelism for `run.py --processes N` and `torchrun --nproc_per_node=N src/run.py ...`:
every process trains on its share of the rows of the same global batch, DistributedDataParallel
averages the gradients, and each process's loss is scaled so that the average is exactly the
gradient of the single-process loss (the mean over the global batch's non-PAD targets). In one
process (no WORLD_SIZE in the environment) none of this does anything.
"""

import functools
import os
import signal
import socket
import subprocess
import sys

import torch
import torch.distributed as dist

from device import CUDA, kind_of
from safe_io import InputError


def world():
    """(rank, world size): (0, 1) when not started by torchrun."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_main_process():
    return world()[0] == 0


def launches(processes):
    """Whether this process, given --processes, starts the processes that train rather than being one of them."""
    return processes > 1 and "WORLD_SIZE" not in os.environ


def says_set_up(processes):
    """
    Whether this process prints a run's set-up lines (the data's size, the model's): one process
    of a run does, the one of rank 0 that trains; a launcher of --processes N leaves them to it.
    """
    return is_main_process() and not launches(processes)


def in_processes(processes, device, command):
    """
    --processes N: None where this process is to train (N is 1, or this is one of the N);
    otherwise the N are started and this returns the exit status to end with, the first
    non-zero one of theirs. They run command (a script and its arguments, --processes N among
    them) as torchrun would (RANK, WORLD_SIZE, a rendezvous on a free local port), each with an
    equal share of the threads, in a session of their own: a signal to this process reaches
    each of them once (a terminal's Ctrl-C would reach them besides, and a second Ctrl-C stops
    a training at once), and they stop together after the same step (agreed_signal).
    """
    world_size = world()[1]
    if "WORLD_SIZE" in os.environ and processes not in (1, world_size):
        raise InputError(f"--processes {processes} under a launcher of {world_size} processes; give one or the "
                         f"other")
    if not launches(processes):
        return None
    kind = kind_of(device)
    if kind.process_group_backend is None:
        raise InputError(f"--processes {processes}: {kind.label} trains in one process; leave --processes out")
    if kind is CUDA and processes > torch.cuda.device_count():
        raise InputError(f"--processes {processes}: one GPU each, and PyTorch sees {torch.cuda.device_count()}; "
                         f"give at most that many")
    with socket.socket() as probe:  # a port free now, for the processes to meet on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    shared = {**os.environ, "WORLD_SIZE": str(processes), "LOCAL_WORLD_SIZE": str(processes),
              "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
              "OMP_NUM_THREADS": str(max(1, torch.get_num_threads() // processes))}
    workers = []

    def relay(signum, frame):
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    previous = {s: signal.signal(s, relay) for s in (signal.SIGINT, signal.SIGTERM)}  # before any starts
    try:
        for rank in range(processes):
            workers.append(subprocess.Popen([sys.executable, *command], start_new_session=True,
                                            env={**shared, "RANK": str(rank), "LOCAL_RANK": str(rank)}))
        statuses = [worker.wait() for worker in workers]
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    # a process ended by a signal has a negative status; a shell says 128 + the signal
    return next((128 - status if status < 0 else status for status in statuses if status != 0), 0)


def start(device):
    """Join the process group when one of several (torchrun, --processes); returns the device this process uses."""
    rank, world_size = world()
    if world_size == 1 or dist.is_initialized():
        return device
    kind = kind_of(device)
    if kind.process_group_backend is None:
        raise InputError(f"--device {device}: {kind.label} trains in one process; run without torchrun")
    if kind is CUDA:  # each process takes the GPU of its local rank
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
    dist.init_process_group(kind.process_group_backend)
    return device


def end():
    """
    The last call of every process. Alone it does nothing. Under torchrun every process waits
    for the others, the group is torn down, and the process exits at once, without Python's
    finalization: gloo's threads can outlive the teardown, and one that touches Python while
    the interpreter shuts down aborts the process ("terminate called without an active
    exception"), which now and then failed a finished run of tests/test_distributed.py.
    """
    if not dist.is_initialized():
        return
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()  # os._exit skips the flushing that a normal exit does
    sys.stderr.flush()
    os._exit(0)


def own_random_stream():
    """
    Make torch's generators (the CPU's and the devices') this process's own. Every process is
    seeded alike, so that all build the same model and the same global batches; dropout, which
    draws from these generators, must then draw independent masks in each, not the same ones.
    Derived from the shared state, so the same command draws the same streams again. Alone, a
    process's stream is left as it is.
    """
    rank, world_size = world()
    if world_size > 1:
        torch.manual_seed(int(torch.randint(2 ** 62, ())) + rank)


def agreed_signal(signum):
    """
    The signal every process stops on after this step (0: none): this process's alone, or among
    several processes the highest any of them has had. Each process looks for signals after a
    step on its own, so one that came between two processes' looks would stop only one, and the
    other would fail in its next step's gradient exchange, the stop's checkpoint unwritten;
    deciding together, all stop after the same step and keep its checkpoint.
    """
    if world()[1] == 1:
        return signum
    flag = torch.tensor([signum])
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=host_group())
    return int(flag.item())


@functools.cache
def host_group():
    """
    The processes as a gloo group, for what their hosts decide together: on GPUs (nccl) a flag
    sent through the GPU would make every step wait for the GPU to finish it. None: the default
    group is gloo already. Made at the first call, which every process makes at the same step.
    """
    return None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")


def every_process(value):
    """[rank 0's value, rank 1's, ...] in every process; [value] alone."""
    processes = world()[1]
    if processes == 1:
        return [value]
    values = [None] * processes
    dist.all_gather_object(values, value)
    return values


def share_of_batch(x, y, lengths):
    """
    This process's rows of the global batch (and their lengths), and the factor that turns the
    sum of their losses into its share of the global mean (DDP averages over processes, hence
    the world size on top). Every process makes the same global batch: the same seed seeds
    the trainer's data generator, and nothing else draws from it.
    """
    rank, world_size = world()
    scale = world_size / (y != 0).sum().clamp(min=1)
    return (*(torch.tensor_split(t, world_size)[rank] for t in (x, y, lengths)), scale)


def mean_over_processes(value):
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / world()[1]
