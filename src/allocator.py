"""
The memory allocator a training process runs with: jemalloc where the system has it (Linux).

A training step makes hundreds of tensors whose shapes change from batch to batch (the length
groups), and glibc's malloc grows slower as they fragment its free lists: a run's epochs took
longer the longer its process had run, and jemalloc's pretraining epochs ran about 15% faster
than glibc's side by side, with the same losses to the last bit (BENCHMARKS.md, issue 17). A
process can take another allocator only as it starts, through LD_PRELOAD, so run.py starts
itself again with it, before torch is imported. An LD_PRELOAD already set, even to nothing, is
left as it is: `LD_PRELOAD= python src/run.py ...` runs with the system's malloc.
"""

import ctypes.util
import os
import sys

JEMALLOC = "jemalloc"


def preloading(environment, library):
    """The environment to start again in with `library` preloaded; None to go on as it is."""
    if library is None or "LD_PRELOAD" in environment:
        return None
    return {**environment, "LD_PRELOAD": library}


def restart_with_jemalloc():
    """Replace this process with itself under jemalloc, where Linux has it and nothing was preloaded."""
    if not sys.platform.startswith("linux") or "LD_PRELOAD" in os.environ:
        return  # before looking for the library: the restarted process, and every other, pays nothing
    environment = preloading(os.environ, ctypes.util.find_library(JEMALLOC))
    if environment is not None:
        # orig_argv keeps the interpreter's own flags too (torchrun's -u, say), which argv drops
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environment)
