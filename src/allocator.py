"""
The memory allocator a training process runs with: tcmalloc or jemalloc where the system has
one (Linux), instead of glibc's malloc.

A training step makes hundreds of tensors whose shapes change from batch to batch (the length
groups), and glibc's malloc grows slower as they fragment its free lists: a run's epochs took
longer the longer its process had run. Side by side on one thread each, jemalloc's pretraining
epochs ran about 15% faster than glibc's and tcmalloc's about 10% faster than jemalloc's, all
with the same params to the last bit (BENCHMARKS.md, issue 17). A process can take another
allocator only as it starts, through LD_PRELOAD, so run.py (and handout.py, and bench.py)
start themselves again with one, before torch is imported. An LD_PRELOAD already set, even to
nothing, is left as it is: `LD_PRELOAD= python src/run.py ...` runs with the system's malloc.
"""

import ctypes.util
import os
import sys

ALLOCATORS = ("tcmalloc_minimal", "jemalloc")  # the libraries' names, the faster first


def preloading(environment, library):
    """The environment to start again in with `library` preloaded; None to go on as it is."""
    if library is None or "LD_PRELOAD" in environment:
        return None
    return {**environment, "LD_PRELOAD": library}


def installed_allocator():
    """The file name of the first of ALLOCATORS this system has, or None."""
    return next(filter(None, map(ctypes.util.find_library, ALLOCATORS)), None)


def restart_with_fast_allocator():
    """Replace this process with itself under tcmalloc or jemalloc, where Linux has one and nothing was preloaded."""
    if not sys.platform.startswith("linux") or "LD_PRELOAD" in os.environ:
        return  # before looking for the libraries: the restarted process, and every other, pays nothing
    environment = preloading(os.environ, installed_allocator())
    if environment is not None:
        # orig_argv keeps the interpreter's own flags too (torchrun's -u, say), which argv drops
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environment)
