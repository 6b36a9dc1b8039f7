"""
The attention modules of every version of the assignment.

CausalSelfAttention is multi-head key-query-value attention (handout equation 3), with
rotary position embeddings when asked (the 2023-24 version's RoPE); SynthesizerAttention
replaces the query-key dot products with scores computed from each position alone (handout
equation 5); CausalCrossAttention takes its queries from one sequence and its keys and
values from another (the 2022-23 version's perceiver). All run through PyTorch's fused
scaled_dot_product_attention (written out instead with config.fused_attention False), and all
can decode with a cache of past positions (`layer_cache`, a dict that the model keeps per layer).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from dropout import dropout


class HeadsAttention(nn.Module):
    """
    What both attentions share: per-head values, the causal mask, and the way head outputs
    become the layer's output (concatenated, projected by A, dropped out). Subclasses make
    their score layers first and then call add_shared_layers, so that modules are registered
    (and printed) in the original's order, and initialised from the seed in its order too.
    Only n_embd, n_head, block_size, attn_pdrop, resid_pdrop and fused_attention are read from
    the config.
    """

    def add_shared_layers(self, config):
        assert config.n_embd % config.n_head == 0
        self.value = nn.Linear(config.n_embd, config.n_embd)
        # attn_drop and resid_drop are kept as modules for the original's module tree; their
        # rates go to causal_attention and dropout.py
        self.attn_drop = nn.Dropout(config.attn_pdrop)
        self.resid_drop = nn.Dropout(config.resid_pdrop)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.register_buffer("mask", causal_mask(config.block_size))
        self.n_head = config.n_head
        self.fused = getattr(config, "fused_attention", True)

    def values(self, x, layer_cache):
        return cached(layer_cache, "v", split_heads(self.value(x), self.n_head))

    def output(self, q, k, v, scale=None, first_query=None):
        dropout_p = self.attn_drop.p if self.training else 0.0
        y = causal_attention(q, k, v, self.mask, dropout_p, scale, first_query, self.fused)
        return dropout(self.proj(merge_heads(y)), self.resid_drop.p, self.training)


class CausalSelfAttention(HeadsAttention):
    """
    Y_i = softmax(mask((X Q_i)(X K_i)^T / sqrt(d/h))) (X V_i); Y = [Y_1; ...; Y_h] A.
    With rotary, q and k are turned by their positions after the heads are split (see rotate),
    from the buffer rope_cache, which the 2023-24 code registers before the mask.
    """

    def __init__(self, config, rotary=False):
        super().__init__()
        self.key = nn.Linear(config.n_embd, config.n_embd)
        self.query = nn.Linear(config.n_embd, config.n_embd)
        if rotary:
            self.register_buffer("rope_cache", rotary_table(config.block_size, config.n_embd // config.n_head))
        else:
            self.rope_cache = None  # vanilla registers no buffer before its mask
        self.add_shared_layers(config)

    def forward(self, x, layer_cache=None):
        q = split_heads(self.query(x), self.n_head)
        k = split_heads(self.key(x), self.n_head)
        if self.rope_cache is not None:
            start = cached_length(layer_cache)  # the new positions follow the cached ones
            q, k = rotate(q, self.rope_cache, start), rotate(k, self.rope_cache, start)
        k = cached(layer_cache, "k", k)
        return self.output(q, k, self.values(x, layer_cache))


class CausalCrossAttention(HeadsAttention):
    """
    The perceiver's attention: queries from x_q, keys and values from x_kv, and query i sees
    keys 0 .. i (mask[:Tq, :Tk] of the full block). first_query is the position of x_q's first
    row: when only some queries are computed (the rest would never be read, or decoding goes
    on from a cache), the mask rows are theirs. A query of batch 1 serves every row of x_kv.
    """

    def __init__(self, config):
        super().__init__()
        self.key = nn.Linear(config.n_embd, config.n_embd)
        self.query = nn.Linear(config.n_embd, config.n_embd)
        self.add_shared_layers(config)

    def forward(self, x_kv, x_q, first_query=0, layer_cache=None):
        k = cached(layer_cache, "k", split_heads(self.key(x_kv), self.n_head))
        v = self.values(x_kv, layer_cache)
        q = split_heads(self.query(x_q), self.n_head).expand(k.size(0), -1, -1, -1)
        return self.output(q, k, v, first_query=first_query)


class SynthesizerAttention(HeadsAttention):
    """
    Y_i = softmax(mask(ReLU(X A_i + b1) B_i + b2)) (X V_i), with A_i, b1 head i's slice of w1,
    B_i = w2[:, :T] and b2 = b2[:T]: the score of key position j depends on j only through
    column j of w2, never on the content at j.
    """

    def __init__(self, config):
        super().__init__()
        self.w1 = nn.Linear(config.n_embd, config.n_embd)
        self.w2 = nn.Parameter(torch.zeros(config.n_embd // config.n_head, config.block_size - 1))
        self.b2 = nn.Parameter(torch.zeros(config.block_size - 1))
        self.add_shared_layers(config)
        nn.init.uniform_(self.w2, -0.001, 0.001)

    def forward(self, x, layer_cache=None):
        hidden = split_heads(F.relu(self.w1(x)), self.n_head)  # B, h, T, d/h
        v = self.values(x, layer_cache)                         # B, h, S, d/h
        S = v.size(2)
        if S > self.w2.size(1):
            raise ValueError(f"the synthesizer attends over at most block_size - 1 = {self.w2.size(1)} positions "
                             f"(w2 has one column per position), got {S}")
        # Fold the bias into the product so the fused kernel computes exactly the scores above:
        # [hidden, 1] . [w2[:, j], b2[j]] = hidden . w2[:, j] + b2[j]. Zero columns pad the head
        # size to a multiple of 8, which the fused kernels want, and add nothing.
        width = hidden.size(-1) + 1
        pad = -width % 8
        ones = hidden.new_ones(hidden.shape[:-1] + (1,))
        q = F.pad(torch.cat([hidden, ones], dim=-1), (0, pad))
        k = F.pad(torch.cat([self.w2[:, :S].t(), self.b2[:S, None]], dim=-1), (0, pad))
        k = k.to(q.dtype).expand(q.size(0), q.size(1), S, width + pad)
        return self.output(q, k, v, scale=1.0)


def causal_attention(q, k, v, mask, dropout_p, scale=None, first_query=None, fused=True):
    """
    softmax(q k^T * scale, causally masked) v with dropout on the weights: the T queries are
    positions first_query .. first_query + T - 1, and each sees the keys up to its own position.
    By default they are the last T of the S key positions, so with a cache (T < S) this goes
    on from the cached positions, and without one (T == S) it is plain causal attention.

    PyTorch's fused scaled_dot_product_attention computes it, except where it is written out
    (scores materialised, masked, softmaxed, dropped out by dropout.py, times the values): when
    fused is False (the original's way of computing, for benchmarks), and on a CPU with dropout,
    where no fused kernel has it. On a CPU it runs in fp32 even under bf16 autocast: there
    bf16's batched products and softmax are slower than fp32's (BENCHMARKS.md), and the weights
    keep fp32's precision.
    """
    first = k.size(-2) - q.size(-2) if first_query is None else first_query
    if q.device.type != "cpu":
        return attend(q, k, v, mask, first, dropout_p, scale, fused)
    with torch.autocast("cpu", enabled=False):
        q, k, v = at_least_fp32(q), at_least_fp32(k), at_least_fp32(v)
        return attend(q, k, v, mask, first, dropout_p, scale, fused and dropout_p == 0)


def attend(q, k, v, mask, first, dropout_p, scale, fused):
    """causal_attention's arithmetic, fused or written out."""
    T, S = q.size(-2), k.size(-2)
    # an if, not is_causal=(first == 0 and T == S): under torch.compile with dynamic shapes that
    # is a symbolic bool, which the fused kernel refuses (a graph break at every attention)
    if fused and first == 0 and T == S:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True, scale=scale)
    visible = mask[0, 0, first:first + T, :S].bool()
    if fused:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=visible, dropout_p=dropout_p, scale=scale)
    scores = (q @ k.transpose(-2, -1)) * (q.size(-1) ** -0.5 if scale is None else scale)
    weights = scores.masked_fill_(~visible, float("-inf")).softmax(dim=-1)  # every row sees a key: no NaN
    return dropout(weights, dropout_p, True) @ v


def rotary_table(block_size, head_size):
    """
    RoPE's rope_cache, block_size x head_size/2 x 2: for position t and pair i,
    (cos(t θ_i), sin(t θ_i)) with θ_i = 10000^(-2i/head_size). Computed in float64, kept in float32.
    """
    if head_size % 2:
        raise ValueError(f"rotary embeddings turn pairs of features: the head size n_embd / n_head = {head_size} "
                         f"must be even")
    theta = 10000.0 ** (-torch.arange(0, head_size, 2, dtype=torch.float64) / head_size)
    angles = torch.arange(block_size, dtype=torch.float64)[:, None] * theta
    return torch.stack([angles.cos(), angles.sin()], dim=-1).float()


def rotate(x, rope_cache, start=0):
    """
    x (B, h, T, head_size) at positions start .. start + T - 1, each pair of features
    (2i, 2i+1) multiplied, as the complex number x_2i + j x_2i+1, by cos(t θ_i) + j sin(t θ_i):
    (x_2i cos - x_2i+1 sin, x_2i sin + x_2i+1 cos). Written in real arithmetic, since
    torch.compile generates no code for complex numbers (it falls back to eager for them, or
    fails, by version); on a CPU without compile the complex product was the faster
    (BENCHMARKS.md). It runs in the table's float32 (a bf16 x too), returned in x's dtype.
    """
    cos, sin = rope_cache[start:start + x.size(-2)].unbind(-1)  # T x head_size/2
    cos = torch.stack([cos, cos], dim=-1).flatten(-2)           # each pair's, on both its features
    sin = torch.stack([-sin, sin], dim=-1).flatten(-2)
    swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)     # x_2i+1, x_2i of each pair
    return torch.addcmul(x * cos, swapped, sin).to(x.dtype)


def at_least_fp32(x):
    """x, or x in fp32 when its dtype is narrower (bf16, fp16)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def causal_mask(block_size):
    """The lower-triangular ones of the original code, 1 x 1 x block_size x block_size."""
    return torch.tril(torch.ones(block_size, block_size)).view(1, 1, block_size, block_size)


def split_heads(x, n_head):
    B, T, C = x.shape
    return x.view(B, T, n_head, C // n_head).transpose(1, 2)


def merge_heads(y):
    B, h, T, hs = y.shape
    return y.transpose(1, 2).reshape(B, T, h * hs)


def cached_length(layer_cache):
    """How many positions a layer's cache holds (0 without one)."""
    return layer_cache["k"].size(2) if layer_cache and "k" in layer_cache else 0


def cached(layer_cache, name, new):
    """Append the new positions' tensor to what the cache holds under name; return all of it."""
    if layer_cache is None:
        return new
    if name in layer_cache:
        new = torch.cat([layer_cache[name], new], dim=2)
    layer_cache[name] = new
    return new
