"""
What dropout's random bits cost on a CPU, and what drawing them on two threads would save: the
serial MT19937 fill that src/dropout.py does, the same bits drawn by two generators on two
threads, and the rest of a mask (compare, cast, scale, multiply), for one attention-weight mask
of a grouped pretraining step. Issue 17's lever "parallel dropout bits", measured, not taken.

    OMP_NUM_THREADS=2 python bench/dropout_bits.py
"""

import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
import allocator  # noqa: E402
from dropout import BITS, keep_threshold  # noqa: E402

SHAPE = (128, 8, 100, 100)  # batch x heads x T x T: a length group's attention weights
REPEATS = 21


def medians(*works):
    """The median milliseconds of each work over REPEATS calls, the works taking turns (the machine drifts)."""
    for work in works:
        work()  # once to warm up
    times = [[] for _ in works]
    for _ in range(REPEATS):
        for work, spent in zip(works, times):
            started = time.perf_counter()
            work()
            spent.append((time.perf_counter() - started) * 1e3)
    return [statistics.median(spent) for spent in times]


def main():
    count = torch.Size(SHAPE).numel()
    draws = torch.empty((count + 1) // 2, dtype=torch.int64)
    half = draws.shape[0] // 2
    generators = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    helper = ThreadPoolExecutor(1)

    def two_threads():  # each half from its own generator, the second on a helper thread
        other = helper.submit(lambda: draws[half:].random_(generator=generators[1]))
        draws[:half].random_(generator=generators[0])
        other.result()

    weights = torch.randn(SHAPE)

    def rest_of_the_mask():  # dropout.py's steps after the draw
        keep = draws.view(torch.int32)[:count].bitwise_and(2 ** BITS - 1).view(SHAPE) < keep_threshold(0.1)
        return weights * keep.to(weights.dtype).div_(0.9)

    serial, parallel, rest = medians(lambda: draws.random_(), two_threads, rest_of_the_mask)
    print(f"one attention-weight mask {tuple(SHAPE)}, {count:,} elements, {torch.get_num_threads()} threads, "
          f"ms (median of {REPEATS}, taking turns):")
    print(f"  random bits, one generator (dropout.py): {serial:.1f}")
    print(f"  random bits, two generators on two threads: {parallel:.1f} ({serial / parallel:.2f}x)")
    print(f"  the rest of the mask (compare, cast, scale, multiply): {rest:.1f}")


if __name__ == "__main__":
    allocator.restart_with_fast_allocator()  # the allocator run.py trains with
    main()
