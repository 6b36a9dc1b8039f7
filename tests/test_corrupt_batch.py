"""
The batched span corruption (CharCorruptionDataset.batches, what training uses) against the
one-example spec path (__getitem__): the same structure for every example, the same
distributions of truncated length, masked length and span start, and row lengths told to
the host that equal those found in the targets.
"""

import random
from collections import Counter

import torch

from dataset import CharCorruptionDataset, row_lengths
from test_dataset import CORPUS, LONG_DOCS, check_draw, take_apart


def batched_examples(ds, epochs, batch_size, seed):
    """(document index, x, y) of every example of `epochs` epochs of batches; checks the lengths told."""
    generator = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(epochs):
        for x, y, lengths in ds.batches(batch_size, generator, "cpu"):
            assert x.shape == y.shape == (len(lengths), ds.block_size - 1)
            assert lengths.device.type == "cpu" and torch.equal(lengths, row_lengths(y))
            for xi, yi in zip(x, y):
                examples.append((len(examples) % len(ds), xi, yi))
    return examples


def test_every_batched_example_has_the_spec_structure():
    for block_size in [9, 16, 32, 128]:
        ds = CharCorruptionDataset(CORPUS, block_size)
        for idx, x, y in batched_examples(ds, 300, 4, seed=block_size):
            check_draw(ds, idx, x, y)


def summary(ds, x, y):
    prefix, suffix, masked, _ = take_apart(ds, x, y)
    return len(prefix + masked + suffix), len(masked), len(prefix)


def total_variation(a, b):
    n_a, n_b = sum(a.values()), sum(b.values())
    return 0.5 * sum(abs(a[k] / n_a - b[k] / n_b) for k in set(a) | set(b))


def test_batched_draws_follow_the_same_distributions_as_single_draws():
    n = 20000
    ds = CharCorruptionDataset("\n".join([LONG_DOCS[0]] * n), 32)  # one epoch: n draws of the same document
    random.seed(0)
    single = [summary(ds, *ds[0]) for _ in range(n)]
    batched = [summary(ds, x, y) for _, x, y in batched_examples(ds, 1, 4096, seed=0)]
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
    ds = CharCorruptionDataset("\n".join([LONG_DOCS[1]] * 3000), 32)
    lengths = {summary(ds, x, y)[0] for _, x, y in batched_examples(ds, 1, 1000, seed=1)}
    assert lengths == set(range(4, 29))


def test_batches_come_in_order_and_follow_their_generator_alone():
    ds = CharCorruptionDataset(CORPUS, 32)
    first = batched_examples(ds, 2, 4, seed=5)
    assert [len(x) for x, _, _ in ds.batches(4, torch.Generator(), "cpu")] == [4, 2]  # 6 documents
    torch.manual_seed(123)  # the global generator plays no part
    again = batched_examples(ds, 2, 4, seed=5)
    assert all(torch.equal(a[1], b[1]) and torch.equal(a[2], b[2]) for a, b in zip(first, again))
    other = batched_examples(ds, 2, 4, seed=6)
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(first, other))
    # each epoch draws afresh
    assert not all(torch.equal(first[i][1], first[i + 6][1]) for i in range(6))
