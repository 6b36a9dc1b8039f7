"""
Helpers shared by run.py and the baseline: seeding, decoding from a model, and scoring
predicted birth places against a TSV file.

`sample` is the plain decoder: one forward pass over the whole context per new character.
`greedy_decode` gives the same greedy completions for many prompts at once, feeding one
new character per step through a cache of past keys and values. Both keep the tokens on the
model's device, so that on a GPU the host queues every step without waiting for one; on_host
then reads all the completions in one transfer.
"""

import itertools
import os
import random
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F

from model import KVCache
from safe_io import InputError, in_range, read_text

DECODE_STEPS = 32  # characters evaluate decodes after each question's ⁇
SEEDS = in_range(int, 0, 2**32 - 1, high_open=False)  # the type of a --seed flag: what NumPy's seed takes


def set_seed(seed):
    """Seed every generator, and put MKL in its reproducible mode: without it, which kernel a
    matrix product takes can depend on where its operands lie in memory, so two runs of one
    command differed in the last bits on Intel CPUs (BENCHMARKS.md). Set before the first
    product, MKL_CBWR=AUTO keeps the fastest code path and fixes the order of the sums; a
    value the user set wins."""
    os.environ.setdefault("MKL_CBWR", "AUTO")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def top_k_logits(logits, k):
    kth_largest = torch.topk(logits, k).values[:, [-1]]
    return logits.masked_fill(logits < kth_largest, float("-inf"))


@torch.no_grad()
def sample(model, x, steps, temperature=1.0, sample=False, top_k=None):
    """
    Extend each row of x (B x T token ids) by `steps` tokens, feeding the model at most the
    last get_context_size() of them (its block size; one fewer for the synthesizer). Greedy
    unless sample=True.
    """
    context_size = model.get_context_size()
    model.eval()
    for _ in range(steps):
        context = x if x.size(1) <= context_size else x[:, -context_size:]
        logits, _ = model(context)
        logits = logits[:, -1, :] / temperature
        if top_k is not None:
            logits = top_k_logits(logits, top_k)
        probs = F.softmax(logits, dim=-1)
        if sample:
            next_token = torch.multinomial(probs, num_samples=1)
        else:
            next_token = torch.topk(probs, k=1, dim=-1).indices
        x = torch.cat((x, next_token), dim=1)
    return x


@torch.no_grad()
def greedy_decode(model, prompts, steps):
    """
    Greedy completions of many prompts (a list of 1-D LongTensors on the model's device):
    returns, for each, the prompt followed by `steps` new tokens, as sample() would.
    Prompts of one length decode together as a batch; a prompt too long to finish inside the
    model's context (where sample() starts dropping early context) goes through sample() itself.
    """
    model.eval()
    completions = [None] * len(prompts)
    by_length = defaultdict(list)
    for i, prompt in enumerate(prompts):
        by_length[len(prompt)].append(i)
    for length, indices in by_length.items():
        batch = torch.stack([prompts[i] for i in indices])
        # the last new token is chosen, never fed: the cache holds at most length + steps - 1
        if length + steps - 1 > model.get_context_size():
            tokens = sample(model, batch, steps)
        else:
            tokens = decode_batch_with_cache(model, batch, steps)
        for row, i in enumerate(indices):
            completions[i] = tokens[row]
    return completions


def on_host(sequences):
    """
    1-D tensors of ids (on any device) as lists of ints, copied in one transfer: reading a GPU
    tensor's ids one by one (int(), .item()) makes the host wait on the device for each.
    """
    ids = torch.cat(sequences).tolist() if sequences else []
    ends = itertools.accumulate(len(sequence) for sequence in sequences)
    return [ids[end - len(sequence):end] for sequence, end in zip(sequences, ends)]


def decode_batch_with_cache(model, batch, steps):
    cache = KVCache(model.n_layer)
    tokens = batch
    new_tokens = batch
    for _ in range(steps):
        logits, _ = model(new_tokens, cache=cache)
        # chosen exactly as sample() chooses, ties and all
        new_tokens = torch.topk(F.softmax(logits[:, -1, :], dim=-1), k=1, dim=-1).indices
        tokens = torch.cat((tokens, new_tokens), dim=1)
    return tokens


def parse_birth_places(text, path):
    """
    (question, gold place or None) for each line of a QUESTION[<TAB>PLACE] file's text: the
    question as evaluate reads it (all before the tab), the place as the original scored it (the
    field after the tab of the stripped line). Every line has a place or none does. Blank lines at
    the end (an editor's) are dropped; one before the end would shift every prediction after it.
    """
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    pairs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise InputError(f"{path} line {number} is blank; remove it (predictions go line by line)")
        question, *after = line.split("\t")
        if len(after) > 1:
            raise InputError(f"{path} line {number} has {len(after)} tabs; each line must be QUESTION or "
                             f"QUESTION<TAB>PLACE")
        if not question.strip():
            raise InputError(f"{path} line {number} has no question before the tab")
        fields = line.strip().split("\t")
        pairs.append((question, fields[1] if len(fields) > 1 else None))
    placed = [place is not None for _, place in pairs]
    if any(placed) and not all(placed):
        raise InputError(f"{path} line {placed.index(False) + 1} has no place, but line {placed.index(True) + 1} "
                         f"has one: give every line QUESTION<TAB>PLACE, or none a place")
    return pairs


def evaluate_places(filepath, predicted_places):
    """
    (total, correct) as floats: how many gold places in the TSV file equal the prediction
    for their line (exact match after stripping the line); (0, 0) when it has no answers.
    """
    return score_places(parse_birth_places(read_text(filepath, "evaluation file"), filepath), predicted_places,
                        filepath)


def score_places(pairs, predicted_places, path):
    """evaluate_places of the (question, place) pairs parse_birth_places read from path."""
    if not pairs or pairs[0][1] is None:
        return (0, 0)
    if len(pairs) != len(predicted_places):
        raise ValueError(f"{path} has {len(pairs)} lines but there are {len(predicted_places)} predictions")
    correct = sum(gold == predicted for (_, gold), predicted in zip(pairs, predicted_places))
    return (float(len(pairs)), float(correct))
