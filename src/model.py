"""
The GPT language model: token and position embeddings, a stack of pre-LayerNorm
Transformer blocks, and a linear head over the character vocabulary.

A variant is one record, a Variant in VARIANTS, and every module reads it there: its
attention, its structure, its place in the table. `vanilla` and `synthesizer` (2021) choose
every block's attention; `rope` (2023-24) is vanilla attention turning q and k by their
positions, with no position embedding; `perceiver` (2022-23) reads the input into
bottleneck_dim learned queries (down_block), runs the middle blocks at that length, and
reads the result back out at every input position (up_block).

The parameter names are those of the original research code of each year, so params files
move between the two in both directions.
"""

import copy
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from attention import CausalCrossAttention, CausalSelfAttention, SynthesizerAttention
from dropout import dropout


@dataclass(frozen=True)
class Variant:
    """What makes a variant: everything else (params files, the command line, the table) follows from it."""
    name: str
    year: str                # the assignment's year that asks for it
    summary: str             # what it is, in a few words, for --help
    attention: Callable      # config -> the attention of its blocks (the perceiver's middle blocks)
    reference: tuple         # dev accuracy in percent after pretraining and finetuning:
                             # (the assignment's answer, the public runs) (SPEC.md)
    public_range: tuple      # the public runs' dev accuracy, lowest and highest (%), as numbers for figures
    position_embedding: bool = True  # False: the attention gives positions (RoPE)
    bottleneck: bool = False         # the perceiver's down block, middle blocks, up block
    context_cut: int = 0             # one forward pass takes block_size - context_cut positions


VARIANTS = {variant.name: variant for variant in [
    Variant("vanilla", "2021", "causal self-attention", CausalSelfAttention,
            ("30 (>= 10 expected)", "23.0"), (19.2, 26.6)),
    # w2 has a column for each of the block_size - 1 positions training shows it (inputs are
    # the first 127 characters of a 128-character example)
    Variant("synthesizer", "2021", "scores from each position alone", SynthesizerAttention,
            ("9.8 (>= 5 on test required)", "14.4"), (5, 14), context_cut=1),
    Variant("rope", "2023-24", "rotary position embeddings", partial(CausalSelfAttention, rotary=True),
            ("not given (2023-24)", "30-40 (2023-24; vanilla 23-28 there)"), (30, 40),
            position_embedding=False),
    Variant("perceiver", "2022-23", "a bottleneck of learned queries", CausalSelfAttention,
            (">= 6 asked (2022-23)", "6-19 (2022-23)"), (6, 19), bottleneck=True),
]}
DEFAULT_VARIANT = "vanilla"


class GPTConfig:
    """
    The model's shape and dropout; the defaults are the assignment's, any keyword overrides one.
    The variant is `variant`, or the one whose flag is set to True (`config.synthesizer = True`,
    or rope, perceiver), which is how code written for those years' solutions asks for it.
    bottleneck_dim is the perceiver's number of learned queries.
    """
    n_layer = 4
    n_head = 8
    n_embd = 256
    embd_pdrop = 0.1
    resid_pdrop = 0.1
    attn_pdrop = 0.1
    variant = DEFAULT_VARIANT
    bottleneck_dim = 64
    fused_attention = True  # False: attention written out, the original's way of computing (bench.py's plain path)

    def __init__(self, vocab_size, block_size, **kwargs):
        self.vocab_size = vocab_size
        self.block_size = block_size
        for key, value in kwargs.items():
            setattr(self, key, value)
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; choose one of {list(VARIANTS)}")


def model_variant(config):
    """The Variant a config asks for, read when the model is built (after any attribute is set)."""
    flagged = [name for name in VARIANTS if name != DEFAULT_VARIANT and getattr(config, name, False)]
    if len(flagged) > 1:
        raise ValueError(f"the config asks for {' and '.join(flagged)} at once; set one of them")
    return VARIANTS[flagged[0] if flagged else getattr(config, "variant", DEFAULT_VARIANT)]


def feed_forward(config):
    """The original's MLP as its module tree has it; its forward is feed_forward_pass."""
    return nn.Sequential(
        nn.Linear(config.n_embd, 4 * config.n_embd),
        nn.GELU(),
        nn.Linear(4 * config.n_embd, config.n_embd),
        nn.Dropout(config.resid_pdrop),
    )


def feed_forward_pass(mlp, x):
    """mlp(x), with its last module's rate given to dropout.py's dropout."""
    linear_in, gelu, linear_out, drop = mlp
    return dropout(linear_out(gelu(linear_in(x))), drop.p, mlp.training)


class Block(nn.Module):
    """x = x + attn(ln1(x)); x = x + mlp(ln2(x)), with the attention the model chose."""

    def __init__(self, config, attention=CausalSelfAttention):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.attn = attention(config)
        self.mlp = feed_forward(config)

    def forward(self, x, layer_cache=None):
        x = x + self.attn(self.ln1(x), layer_cache)
        return x + feed_forward_pass(self.mlp, self.ln2(x))


class ProjectionBlock(nn.Module):
    """
    What the perceiver's two projection blocks share: Block's layers, with a cross-attention,
    and x + mlp(ln2(x)) after it, with no residual around the attention (its queries and its
    keys are sequences of different lengths).
    """

    def __init__(self, config):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.attn = CausalCrossAttention(config)
        self.mlp = feed_forward(config)

    def project(self, x_kv, x_q, first_query, layer_cache):
        x = self.attn(self.ln1(x_kv), self.ln1(x_q), first_query, layer_cache)
        return x + feed_forward_pass(self.mlp, self.ln2(x))


class DownProjectBlock(ProjectionBlock):
    """
    The perceiver's first block: bottleneck_dim learned queries C read the input,
    x = attn(kv=ln1(input), q=ln1(C)); x = x + mlp(ln2(x)). Bottleneck position j sees input
    positions 0 .. j.
    """

    def __init__(self, config):
        super().__init__(config)
        self.C = nn.Parameter(torch.empty(1, config.bottleneck_dim, config.n_embd))
        nn.init.xavier_uniform_(self.C)

    def forward(self, x, first, stop, layer_cache=None):
        """Bottleneck positions first .. stop - 1, from x (with a cache: the input's new positions)."""
        return self.project(x, self.C[:, first:stop], first, layer_cache)


class UpProjectBlock(ProjectionBlock):
    """
    The perceiver's last block: every input position reads the bottleneck y,
    x = attn(kv=ln1(y), q=ln1(input)); x = x + mlp(ln2(x)). Input position i sees bottleneck
    positions 0 .. i, each of which saw the input up to itself: the whole model stays causal.
    """

    def forward(self, y, x, start, layer_cache=None):
        """x: input positions start .., y: the bottleneck's new positions (with a cache: maybe none)."""
        return self.project(y, x, start, layer_cache)


class KVCache:
    """
    What greedy decoding keeps between steps: each layer's keys and values so far (the
    perceiver's layers are its down_block, middle blocks and up_block), and the input length.
    """

    def __init__(self, n_layer):
        self.layers = [{} for _ in range(n_layer)]
        self.length = 0


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        variant = model_variant(config)
        self.variant = variant.name
        self.block_size = config.block_size
        self.context_size = config.block_size - variant.context_cut
        self.bottleneck = variant.bottleneck
        self.n_layer = config.n_layer
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        if variant.position_embedding:
            self.pos_emb = nn.Parameter(torch.zeros(1, config.block_size, config.n_embd))
        else:
            self.pos_emb = None
        self.drop = nn.Dropout(config.embd_pdrop)
        if variant.bottleneck:
            if config.n_layer < 2 or not 1 <= config.bottleneck_dim <= config.block_size:
                raise ValueError(f"the perceiver needs n_layer >= 2 (its first and last blocks project down and "
                                 f"up) and 1 <= bottleneck_dim <= block_size {config.block_size}; got n_layer "
                                 f"{config.n_layer}, bottleneck_dim {config.bottleneck_dim}")
            self.bottleneck_dim = config.bottleneck_dim
            self.down_block = DownProjectBlock(config)
            bottleneck = copy.copy(config)  # the middle blocks' masks are bottleneck_dim long
            bottleneck.block_size = config.bottleneck_dim
            self.blocks = nn.Sequential(*[Block(bottleneck, variant.attention) for _ in range(config.n_layer - 2)])
            self.up_block = UpProjectBlock(config)
        else:
            self.blocks = nn.Sequential(*[Block(config, variant.attention) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.apply(self._init_weights)

    def _init_weights(self, module):
        # pos_emb stays zero, and the synthesizer's w2 and the perceiver's C keep their own
        # uniform inits: they are parameters, not modules
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)

    def get_block_size(self):
        return self.block_size

    def get_context_size(self):
        """The most positions one forward pass can take: the block, less the variant's context_cut."""
        return self.context_size

    def forward(self, idx, targets=None, cache=None):
        """
        idx: B x T token ids. Returns (logits B x T x vocab, loss or None); PAD targets
        (id 0) carry no loss. With a KVCache, idx continues the sequence the cache holds.
        """
        B, T = idx.shape
        start = cache.length if cache is not None else 0
        if start + T > self.block_size:
            raise ValueError(f"cannot run {start + T} positions: the block size is {self.block_size}")
        x = self.tok_emb(idx)
        if self.pos_emb is not None:
            x = x + self.pos_emb[:, start:start + T]
        x = dropout(x, self.drop.p, self.training)  # self.drop is kept for the original's module tree
        layers = cache.layers if cache is not None else [None] * self.n_layer
        if self.bottleneck:
            x = self.through_bottleneck(x, start, layers)
        else:
            for block, layer_cache in zip(self.blocks, layers):
                x = block(x, layer_cache)
        if cache is not None:
            cache.length += T
        logits = self.head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=0)
        return logits, loss

    def through_bottleneck(self, x, start, layers):
        """
        The perceiver's blocks on input positions start .. start + T - 1. Only the bottleneck
        positions up to the last input position are computed: input position i reads bottleneck
        positions <= i alone, so the others (all there in the original, which always makes
        bottleneck_dim of them) change no output. That is what lets a batch be cut after its
        last target, and decoding add one position at a time, exactly.
        """
        first, stop = min(start, self.bottleneck_dim), min(start + x.size(1), self.bottleneck_dim)
        y = x[:, :0]  # decoding past the bottleneck's length adds no position to it
        if stop > first:
            y = self.down_block(x, first, stop, layers[0])
            for block, layer_cache in zip(self.blocks, layers[1:-1]):
                y = block(y, layer_cache)
        return self.up_block(y, x, start, layers[-1])
