"""
Data parallelism for `torchrun --nproc_per_node=N src/run.py ...`: every process trains on
its share of the rows of the same global batch, DistributedDataParallel averages the
gradients, and each process's loss is scaled so that the average is exactly the gradient of
the single-process loss (the mean over the global batch's non-PAD targets). Without
torchrun (no WORLD_SIZE in the environment) none of this does anything.
"""

import functools
import os
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


def start(device):
    """Join the process group when started by torchrun; returns the device this process uses."""
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
    The signal every process stops on after this step (0: none): this process's alone, or under
    torchrun the highest any process has had. Each process looks for signals after a step on
    its own, so one that came between two processes' looks would stop only one, and the other
    would wait for it forever in its next step's gradient exchange; deciding together, all stop
    at the same step and keep its checkpoint.
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
