"""
The GPT language model: token and position embeddings, a stack of pre-LayerNorm
Transformer blocks, and a linear head over the character vocabulary.

The parameter names are those of the original research code, so params files move
between the two in both directions.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from attention import CausalSelfAttention, SynthesizerAttention

ATTENTION = {"vanilla": CausalSelfAttention, "synthesizer": SynthesizerAttention}


class GPTConfig:
    """
    The model's shape and dropout; the defaults are the assignment's, any keyword overrides one.
    The attention is `variant`, or the Synthesizer when `synthesizer` is set to True, which is
    how code written for the public 2021 solution asks for it.
    """
    n_layer = 4
    n_head = 8
    n_embd = 256
    embd_pdrop = 0.1
    resid_pdrop = 0.1
    attn_pdrop = 0.1
    variant = "vanilla"
    synthesizer = False

    def __init__(self, vocab_size, block_size, **kwargs):
        self.vocab_size = vocab_size
        self.block_size = block_size
        for key, value in kwargs.items():
            setattr(self, key, value)
        if self.variant not in ATTENTION:
            raise ValueError(f"unknown attention variant {self.variant!r}; choose one of {sorted(ATTENTION)}")


def attention_variant(config):
    """The attention a config asks for, read when the model is built (after any attribute is set)."""
    return "synthesizer" if getattr(config, "synthesizer", False) else getattr(config, "variant", "vanilla")


class Block(nn.Module):
    """x = x + attn(ln1(x)); x = x + mlp(ln2(x))."""

    def __init__(self, config):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.attn = ATTENTION[attention_variant(config)](config)
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd),
            nn.GELU(),
            nn.Linear(4 * config.n_embd, config.n_embd),
            nn.Dropout(config.resid_pdrop),
        )

    def forward(self, x, layer_cache=None):
        x = x + self.attn(self.ln1(x), layer_cache)
        return x + self.mlp(self.ln2(x))


class KVCache:
    """What greedy decoding keeps between steps: each layer's keys and values so far."""

    def __init__(self, n_layer):
        self.layers = [{} for _ in range(n_layer)]
        self.length = 0


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Parameter(torch.zeros(1, config.block_size, config.n_embd))
        self.drop = nn.Dropout(config.embd_pdrop)
        self.blocks = nn.Sequential(*[Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.block_size = config.block_size
        self.variant = attention_variant(config)
        self.apply(self._init_weights)

    def _init_weights(self, module):
        # pos_emb stays zero and the synthesizer's w2 keeps its own uniform init: not modules here
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
        """
        The most positions one forward pass can take: the block, but one fewer for the
        synthesizer, whose w2 has a column for each of the block_size - 1 positions that
        training shows it (inputs are the first 127 characters of a 128-character example).
        """
        return self.block_size - 1 if self.variant == "synthesizer" else self.block_size

    def forward(self, idx, targets=None, cache=None):
        """
        idx: B x T token ids. Returns (logits B x T x vocab, loss or None); PAD targets
        (id 0) carry no loss. With a KVCache, idx continues the sequence the cache holds.
        """
        B, T = idx.shape
        start = cache.length if cache is not None else 0
        if start + T > self.block_size:
            raise ValueError(f"cannot run {start + T} positions: the block size is {self.block_size}")
        x = self.drop(self.tok_emb(idx) + self.pos_emb[:, start:start + T])
        for i, block in enumerate(self.blocks):
            x = block(x, cache.layers[i] if cache is not None else None)
        if cache is not None:
            cache.length += T
        logits = self.head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=0)
        return logits, loss
