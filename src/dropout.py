"""
Dropout, the model's one source of randomness in training: each element kept independently
with probability 1 - p and scaled by 1 / (1 - p), as nn.Dropout does. On a CPU its random
bits come cheaper than torch's own: nn.Dropout draws each element with bernoulli_, about
6 ns an element on one core, and about a quarter of a pretraining step went to it in bf16
(BENCHMARKS.md); one 64-bit draw here gives two elements their 31 bits each, so the chance of
keeping one is round((1 - p) 2^31) / 2^31, within 2^-32 of 1 - p. Elsewhere it is nn.Dropout's.
"""

import torch
import torch.nn.functional as F

BITS = 31  # random bits per element: the int32 halves of a 64-bit draw, less their sign bit


def keep_threshold(p):
    """An element is kept when its BITS random bits, as an integer, are below this."""
    return round((1 - p) * 2 ** BITS)


def dropout(x, p, training):
    """F.dropout(x, p, training), with the cheaper random bits on a CPU."""
    if not training or p == 0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    # int64 random_ draws from [0, 2^63): viewed as int32 pairs, bit 31 of each half is
    # masked off (the high half's is always 0), leaving two uniform 31-bit numbers
    count = x.numel()
    bits = torch.empty((count + 1) // 2, dtype=torch.int64).random_().view(torch.int32)[:count]
    keep = bits.bitwise_and_(2 ** BITS - 1).view(x.shape) < keep_threshold(p)
    # the mask in x's dtype divided by 1 - p, as nn.Dropout scales it (in bf16, by bf16's 1 / (1 - p))
    return x * keep.to(x.dtype).div_(1 - p)
