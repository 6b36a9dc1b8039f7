"""
Autograder-style tests of src/dataset.py against SPEC.md: the shared vocabulary, span
corruption (CharCorruptionDataset) drawn many times on small custom corpora and on the real
wiki.txt, the finetuning examples (NameDataset), and the `python src/dataset.py` demo.

Every example is decoded and taken apart by the tests themselves: the expected strings are
built here from the spec's formulas, never read back from the code under test.
"""

import os
import random
import statistics
import subprocess
import sys
from collections import Counter

import pytest
import torch

from dataset import MASK_CHAR, PAD_CHAR, CharCorruptionDataset, NameDataset, random_masked_length
from conftest import ROOT, real_data_path

PAD = "\u25A1"
MASK = "\u2047"

# a small corpus: documents longer than any block used below, plus a few short ones
LONG_DOCS = [
    "Ada Lovelace. Augusta Ada King, Countess of Lovelace, was an English mathematician and "
    "writer, chiefly known for her work on the proposed mechanical general-purpose computer.",
    "Alan Turing. Alan Mathison Turing was an English mathematician, computer scientist, "
    "logician, cryptanalyst, philosopher and theoretical biologist, born in Maida Vale, London.",
    "Grace Hopper. Grace Brewster Murray Hopper was an American computer scientist and United "
    "States Navy rear admiral, one of the first programmers of the Harvard Mark I computer.",
]
SHORT_DOCS = ["Bo", "Ann Lee.", "Zed Q. was here"]
CORPUS = "\n".join(LONG_DOCS + SHORT_DOCS)


def text_of(ds, ids):
    return "".join(ds.itos[int(i)] for i in ids)


def take_apart(ds, x, y):
    """
    Check the shape of one example and split it into (prefix, suffix, masked, n_pad):
    s = x + last char of y = prefix + MASK + suffix + MASK + masked + PAD * n_pad.
    """
    n = ds.block_size - 1
    assert isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
    assert x.dtype == torch.long and y.dtype == torch.long
    assert tuple(x.shape) == (n,) and tuple(y.shape) == (n,)
    assert torch.equal(y[:-1], x[1:]), "y must be x shifted by one"
    s = text_of(ds, x) + ds.itos[int(y[-1])]
    assert len(s) == ds.block_size
    assert s.count(MASK) == 2, s
    first = s.index(MASK)
    second = s.index(MASK, first + 1)
    prefix, suffix, rest = s[:first], s[first + 1:second], s[second + 1:]
    masked = rest.rstrip(PAD)
    n_pad = len(rest) - len(masked)
    assert PAD not in prefix + suffix + masked, s
    return prefix, suffix, masked, n_pad


def check_draw(ds, idx, x, y):
    """Every property the spec asks of one draw; returns (truncated length, masked length)."""
    document = ds.data[idx]
    prefix, suffix, masked, n_pad = take_apart(ds, x, y)
    truncated = prefix + masked + suffix
    assert document.startswith(truncated), (document, truncated)
    length = len(truncated)
    top = int(ds.block_size * 7 / 8)
    assert length <= top
    assert length >= 4 or length == len(document)
    assert length + 2 + n_pad == ds.block_size
    if length >= 1:
        assert 1 <= len(masked) <= length
    return length, len(masked)


# ----------------------------------------------------------------------------- vocabulary

def test_vocabulary_ids_are_pad_mask_then_sorted_characters():
    ds = CharCorruptionDataset("ba\nc a\nab", 16)
    assert ds.itos == [PAD, MASK, "\n", " ", "a", "b", "c"]
    assert ds.stoi == {PAD: 0, MASK: 1, "\n": 2, " ": 3, "a": 4, "b": 5, "c": 6}
    assert ds.vocab_size == 7
    assert ds.block_size == 16
    assert len(ds) == 3
    assert PAD_CHAR == PAD and MASK_CHAR == MASK
    assert ds.PAD_CHAR == PAD and ds.MASK_CHAR == MASK


def test_vocabulary_of_custom_corpus_matches_independent_construction():
    ds = CharCorruptionDataset(CORPUS, 32)
    chars = sorted(set(CORPUS))
    assert "\n" in chars
    assert ds.vocab_size == len(chars) + 2
    for i, ch in enumerate(chars):
        assert ds.stoi[ch] == i + 2 and ds.itos[i + 2] == ch
    assert all(ds.stoi[ds.itos[i]] == i for i in range(ds.vocab_size))
    assert len(ds) == len(LONG_DOCS) + len(SHORT_DOCS)


def test_real_wiki_vocabulary_and_length():
    text = real_data_path("wiki.txt").read_text(encoding="utf-8")
    ds = CharCorruptionDataset(text, 128)
    assert ds.vocab_size == 256
    assert len(ds) == 2937
    assert ds.itos[:2] == [PAD, MASK]
    assert ds.itos[2:] == sorted(set(text))


@pytest.mark.parametrize("char, name", [(PAD, "PAD"), (MASK, "MASK")])
def test_text_with_reserved_character_is_refused(char, name):
    with pytest.raises(ValueError, match=name):
        CharCorruptionDataset("Ada Lovelace.\nAlan " + char + " Turing.", 32)


@pytest.mark.parametrize("block_size", [1, 4, 8])
def test_block_size_below_nine_is_refused(block_size):
    with pytest.raises(ValueError, match="block_size"):
        CharCorruptionDataset(CORPUS, block_size)


# ---------------------------------------------------------------------- span corruption

@pytest.mark.parametrize("block_size", [9, 16, 32, 128])
def test_structure_of_every_draw_on_custom_corpus(block_size):
    ds = CharCorruptionDataset(CORPUS, block_size)
    random.seed(1234)
    for draw in range(2000 if block_size != 128 else 600):
        idx = draw % len(ds)
        x, y = ds[idx]
        check_draw(ds, idx, x, y)


def test_structure_on_real_wiki_draws():
    text = real_data_path("wiki.txt").read_text(encoding="utf-8")
    ds = CharCorruptionDataset(text, 128)
    random.seed(7)
    ratios = []
    for idx in random.sample(range(len(ds)), 400):
        x, y = ds[idx]
        length, masked = check_draw(ds, idx, x, y)
        ratios.append(masked / length)
    assert 0.2 <= statistics.mean(ratios) <= 0.32


def test_short_documents_stay_whole():
    ds = CharCorruptionDataset("Bo\nAnn\nZed Q", 16)
    random.seed(3)
    for draw in range(300):
        idx = draw % 3
        x, y = ds[idx]
        prefix, suffix, masked, _ = take_apart(ds, x, y)
        # shorter than the smallest truncation length (4): always the whole document
        if idx < 2:
            assert prefix + masked + suffix == ds.data[idx]


@pytest.mark.parametrize("block_size", [16, 32, 128])
def test_every_truncation_length_is_reached(block_size):
    ds = CharCorruptionDataset(CORPUS, block_size)
    top = int(block_size * 7 / 8)
    assert all(len(d) > top for d in LONG_DOCS)
    random.seed(99)
    seen = Counter()
    draws = 60 * (top - 3)
    for draw in range(draws):
        idx = draw % len(LONG_DOCS)
        x, y = ds[idx]
        length, _ = check_draw(ds, idx, x, y)
        seen[length] += 1
    assert set(seen) == set(range(4, top + 1))
    # roughly uniform: no length is drawn less than a third of its fair share
    assert min(seen.values()) > draws / (top - 3) / 3


def test_masked_length_is_about_a_quarter_sometimes_more_sometimes_less():
    ds = CharCorruptionDataset(CORPUS, 16)
    random.seed(2021)
    ratios = []
    for draw in range(2000):
        idx = draw % len(LONG_DOCS)
        length, masked = check_draw(ds, idx, *ds[idx])
        ratios.append(masked / length)
    assert 0.2 <= statistics.mean(ratios) <= 0.32
    assert sum(r < 0.2 for r in ratios) > 50
    assert sum(r > 0.3 for r in ratios) > 50


def test_masked_span_position_varies():
    ds = CharCorruptionDataset(CORPUS, 32)
    random.seed(5)
    prefixes = set()
    for draw in range(500):
        prefix, _, _, _ = take_apart(ds, *ds[draw % len(LONG_DOCS)])
        prefixes.add(len(prefix))
    assert 0 in prefixes and len(prefixes) > 5


@pytest.mark.parametrize("length", [40, 12, 100])
def test_random_masked_length_distribution(length):
    q = max(1, round(length / 4))
    random.seed(length)
    draws = [random_masked_length(length) for _ in range(20000)]
    assert set(draws) == set(range(1, 2 * q))
    # uniform on 1..2q-1: mean q, standard error sqrt(((2q-1)^2 - 1) / 12 / n)
    stderr = (((2 * q - 1) ** 2 - 1) / 12 / len(draws)) ** 0.5
    assert abs(statistics.mean(draws) - q) < 5 * stderr
    counts = Counter(draws)
    expected = len(draws) / (2 * q - 1)
    assert all(abs(c - expected) < 6 * expected ** 0.5 for c in counts.values())


def test_random_masked_length_small_lengths():
    random.seed(0)
    for length in range(1, 8):
        q = max(1, round(length / 4))
        values = {random_masked_length(length) for _ in range(500)}
        assert values == set(range(1, min(length, 2 * q - 1) + 1)), length


def test_draws_are_deterministic_under_random_seed():
    ds = CharCorruptionDataset(CORPUS, 32)

    def draws(seed):
        random.seed(seed)
        return [tuple(torch.cat(ds[i % len(ds)]).tolist()) for i in range(200)]

    assert draws(11) == draws(11)
    assert draws(11) != draws(12)


def test_draws_are_random_across_calls():
    ds = CharCorruptionDataset(CORPUS, 32)
    random.seed(4)
    examples = {tuple(ds[0][0].tolist()) for _ in range(100)}
    assert len(examples) > 20


# ------------------------------------------------------------------------- NameDataset

NAME_LINES = (
    "Where was Ada Lovelace born?\tLondon\n"
    "\n"
    "Where was José Martí born?\tSão Paulo\n"
    "Where was Alan Turing born?\tMaida Vale\n"
    "Where was Bo born?\tX\n"
)


def expected_name_example(question, place, block_size):
    s = question + MASK + place + MASK
    s = s + PAD * (block_size - len(s))
    x = s[:-1]
    y = PAD * (len(question) - 1) + s[len(question):]
    return x, y


def test_name_dataset_examples():
    pre = CharCorruptionDataset(CORPUS + "\nWhere was it born?\tLondon, Sao Paulo, Maida Vale, X, Jose Mart", 64)
    ds = NameDataset(pre, NAME_LINES)
    assert ds.stoi is pre.stoi and ds.itos is pre.itos and ds.block_size == 64
    assert len(ds) == 4
    expected_pairs = [
        ("Where was Ada Lovelace born?", "London"),
        ("Where was Jos Mart born?", "So Paulo"),   # non-ASCII characters dropped
        ("Where was Alan Turing born?", "Maida Vale"),
        ("Where was Bo born?", "X"),
    ]
    for i, (question, place) in enumerate(expected_pairs):
        x, y = ds[i]
        assert x.dtype == torch.long and y.dtype == torch.long
        assert tuple(x.shape) == (63,) and tuple(y.shape) == (63,)
        ex, ey = expected_name_example(question, place, 64)
        assert text_of(ds, x) == ex
        assert text_of(ds, y) == ey
        # only ⁇PLACE⁇ carries non-PAD targets, at the positions that predict it
        start = len(question) - 1
        nonpad = [t for t in range(63) if int(y[t]) != 0]
        assert nonpad == list(range(start, start + len(place) + 2))
        assert text_of(ds, y[start:start + len(place) + 2]) == MASK + place + MASK
        assert torch.equal(y[start:-1], x[start + 1:])


def test_name_dataset_batches_are_its_examples_in_order_with_their_lengths():
    pre = CharCorruptionDataset(CORPUS + "\nWhere was it born?\tLondon, Sao Paulo, Maida Vale, X, Jose Mart", 64)
    ds = NameDataset(pre, NAME_LINES)
    batches = list(ds.batches(3, None, "cpu"))
    assert [len(x) for x, _, _ in batches] == [3, 1]
    x, y, lengths = (torch.cat(parts) for parts in zip(*batches))
    for i in range(len(ds)):
        assert torch.equal(x[i], ds[i][0]) and torch.equal(y[i], ds[i][1])
    # each row's last target is the closing ⁇ of ⁇PLACE⁇, which starts where the question ends
    questions, places = zip(*(line.split("\t") for line in ds.data))
    assert lengths.tolist() == [len(q) - 1 + len(p) + 2 for q, p in zip(questions, places)]
    assert list(NameDataset(pre, "").batches(3, None, "cpu")) == []


def test_name_dataset_drops_every_non_ascii_character():
    pre = CharCorruptionDataset(CORPUS + "\nWhere was it born?\tLondon, Sao Paulo, Maida Vale, X, Jose Mart", 64)
    ds = NameDataset(pre, NAME_LINES)
    assert all(ch.isascii() for line in ds.data for ch in line)


def test_name_dataset_on_real_training_file():
    wiki = real_data_path("wiki.txt").read_text(encoding="utf-8")
    names = real_data_path("birth_places_train.tsv").read_text(encoding="utf-8")
    pre = CharCorruptionDataset(wiki, 128)
    ds = NameDataset(pre, names)
    assert len(ds) == 2000
    lines = [ln for ln in names.split("\n") if ln]
    assert len(lines) == 2000
    for i in range(0, 2000, 7):
        question, place = "".join(c for c in lines[i] if ord(c) < 128).split("\t")
        x, y = ds[i]
        ex, ey = expected_name_example(question, place, 128)
        assert text_of(ds, x) == ex
        assert text_of(ds, y) == ey
        assert len(x) == len(y) == 127


# ------------------------------------------------------------------ python src/dataset.py

def run_dataset_script(kind):
    real_data_path("wiki.txt")
    real_data_path("birth_places_train.tsv")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}
    result = subprocess.run([sys.executable, "src/dataset.py", kind], cwd=ROOT, env=env,
                            capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    pairs = [line for line in lines if line.startswith(("x:", "y:"))]
    assert len(pairs) == 8, result.stdout
    assert [line[:3] for line in pairs] == ["x: ", "y: "] * 4
    assert all(len(line) == 3 + 127 for line in pairs)
    # the eight lines come together, alternating, at the end of the output
    assert lines[-9:-1] == pairs and lines[-1] == ""
    return [(pairs[2 * k][3:], pairs[2 * k + 1][3:]) for k in range(4)]


def test_dataset_script_namedata():
    names = real_data_path("birth_places_train.tsv").read_text(encoding="utf-8")
    shown = run_dataset_script("namedata")
    first_x = "Where was Khatchig Mouradian born?" + MASK + "Lebanon" + MASK
    assert shown[0][0] == first_x + PAD * (127 - len(first_x))
    lines = [ln for ln in names.split("\n") if ln][:4]
    for (x, y), line in zip(shown, lines):
        question, place = "".join(c for c in line if ord(c) < 128).split("\t")
        assert (x, y) == expected_name_example(question, place, 128)


def test_dataset_script_charcorruption():
    wiki = real_data_path("wiki.txt").read_text(encoding="utf-8").split("\n")
    shown = run_dataset_script("charcorruption")
    for k, (x, y) in enumerate(shown):
        assert y[:-1] == x[1:]
        s = x + y[-1]
        assert s.count(MASK) == 2
        first = s.index(MASK)
        second = s.index(MASK, first + 1)
        masked = s[second + 1:].rstrip(PAD)
        truncated = s[:first] + masked + s[first + 1:second]
        assert wiki[k].startswith(truncated)
        assert 4 <= len(truncated) <= 112 and len(masked) >= 1
        assert s == s[:second + 1] + masked + PAD * (128 - second - 1 - len(masked))
