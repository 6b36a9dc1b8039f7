"""
Helpers shared by run.py and the baseline: seeding, decoding from a model, and scoring
predicted birth places against a TSV file.

`sample` is the plain decoder: one forward pass over the whole context per new character.
`greedy_decode` gives the same greedy completions for many prompts at once, feeding one
new character per step through a cache of past keys and values.
"""

import random
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F

from model import KVCache

DECODE_STEPS = 32  # characters evaluate decodes after each question's ⁇


def set_seed(seed):
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


def evaluate_places(filepath, predicted_places):
    """
    (total, correct) as floats: how many gold places in the TSV file equal the prediction
    for their line (exact match after stripping the line); (0, 0) when it has no answers.
    """
    with open(filepath, encoding="utf-8") as f:
        lines = [line.strip().split("\t") for line in f]
    if not lines or len(lines[0]) == 1:
        return (0, 0)
    true_places = [fields[1] for fields in lines]
    if len(true_places) != len(predicted_places):
        raise ValueError(f"{filepath} has {len(true_places)} lines but there are "
                         f"{len(predicted_places)} predictions")
    correct = sum(gold == predicted for gold, predicted in zip(true_places, predicted_places))
    return (float(len(true_places)), float(correct))
