"""
The batched span corruption (CharCorruptionDataset.__getitems__, what the data loader uses)
against the one-example spec path (__getitem__): the same structure for every example and
the same distributions of truncated length, masked length and span start.
"""

import random
from collections import Counter

import torch
from torch.utils.data import DataLoader

from dataset import CharCorruptionDataset
from test_dataset import CORPUS, LONG_DOCS, check_draw, take_apart


def batch_draws(ds, indices):
    return ds.__getitems__(indices)


def test_every_batched_example_has_the_spec_structure():
    torch.manual_seed(0)
    for block_size in [9, 16, 32, 128]:
        ds = CharCorruptionDataset(CORPUS, block_size)
        indices = list(range(len(ds))) * 300
        for idx, (x, y) in zip(indices, batch_draws(ds, indices)):
            check_draw(ds, idx, x, y)


def summary(ds, x, y):
    prefix, suffix, masked, _ = take_apart(ds, x, y)
    return len(prefix + masked + suffix), len(masked), len(prefix)


def total_variation(a, b):
    n_a, n_b = sum(a.values()), sum(b.values())
    return 0.5 * sum(abs(a[k] / n_a - b[k] / n_b) for k in set(a) | set(b))


def test_batched_draws_follow_the_same_distributions_as_single_draws():
    ds = CharCorruptionDataset(LONG_DOCS[0], 32)
    n = 20000
    random.seed(0)
    single = [summary(ds, *ds[0]) for _ in range(n)]
    torch.manual_seed(0)
    batched = [summary(ds, x, y) for x, y in batch_draws(ds, [0] * n)]
    for part, name in enumerate(["truncated length", "masked length", "span start"]):
        a, b = Counter(s[part] for s in single), Counter(s[part] for s in batched)
        assert set(a) == set(b), name
        assert total_variation(a, b) < 0.03, name
    # the joint law too: masked length given the truncated length
    for length in [4, 10, 28]:
        a = Counter(s[1] for s in single if s[0] == length)
        b = Counter(s[1] for s in batched if s[0] == length)
        assert set(a) == set(b) and total_variation(a, b) < 0.08, length


def test_every_truncation_length_is_reached_in_batches():
    torch.manual_seed(1)
    ds = CharCorruptionDataset(LONG_DOCS[1], 32)
    lengths = {summary(ds, x, y)[0] for x, y in batch_draws(ds, [0] * 3000)}
    assert lengths == set(range(4, 29))


def test_the_data_loader_uses_the_batched_path_deterministically():
    ds = CharCorruptionDataset(CORPUS, 32)

    def first_batch(seed):
        torch.manual_seed(seed)
        return next(iter(DataLoader(ds, batch_size=6)))

    x, y = first_batch(5)
    assert x.shape == y.shape == (6, 31)
    for idx in range(6):
        check_draw(ds, idx, x[idx], y[idx])
    assert torch.equal(first_batch(5)[0], x)
    assert not torch.equal(first_batch(6)[0], x)
