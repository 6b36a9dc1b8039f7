"""Batched, cached greedy decoding against the plain decoder, and the helpers in utils.py."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dataset import decode
from model import GPT, VARIANTS, GPTConfig, KVCache
from utils import evaluate_places, greedy_decode, on_host, sample, set_seed


def trained_like_model(variant, seed=0):
    """A small random model whose logits are far from uniform, so greedy choices are clear."""
    torch.manual_seed(seed)
    # the perceiver's 3 layers have a middle block, and its bottleneck is shorter than the prompts
    model = GPT(GPTConfig(40, 48, variant=variant, n_layer=3, n_head=4, n_embd=64, bottleneck_dim=16)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.15)
    return model


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_logits_equal_full_forward_logits(variant):
    model = trained_like_model(variant)
    idx = torch.randint(0, 40, (3, 30))
    with torch.no_grad():
        full, _ = model(idx)
        cache = KVCache(model.n_layer)
        pieces = [model(idx[:, :12], cache=cache)[0]] + [model(idx[:, t:t + 1], cache=cache)[0]
                                                        for t in range(12, 30)]
    assert cache.length == 30
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_greedy_decode_gives_the_same_completions_as_sample(variant):
    model = trained_like_model(variant)
    generator = torch.Generator().manual_seed(1)
    # 38 + 10 - 1 = 47 positions fit the synthesizer's context; 39 and 41 go through sample(),
    # which crops the context (the vanilla model takes 48)
    lengths = [3, 7, 7, 12, 3, 20, 7, 37, 38, 39, 41]
    prompts = [torch.randint(0, 40, (n,), generator=generator) for n in lengths]
    got = greedy_decode(model, prompts, 10)
    for prompt, completion in zip(prompts, got):
        want = sample(model, prompt[None], 10, sample=False)[0]
        assert torch.equal(completion, want)
    assert len({tuple(c[-10:].tolist()) for c in got}) > 3  # the prompts really differ in outcome


class ElementReads(TorchDispatchMode):
    """Counts the host's reads of single tensor elements (.item(), int(), a tensor in an if): on a GPU each waits."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func is torch.ops.aten._local_scalar_dense.default
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("variant", VARIANTS)
def test_decoding_reads_no_element_on_the_host_and_on_host_reads_the_completions_whole(variant):
    """The decoding loops leave the tokens where the model is; the completions are read in one transfer."""
    model = trained_like_model(variant)
    generator = torch.Generator().manual_seed(1)
    prompts = [torch.randint(2, 40, (n,), generator=generator) for n in [3, 7, 7, 20, 41]]  # 41: through sample()
    itos = [chr(ord("a") + i) for i in range(40)]
    with ElementReads() as reads:
        completions = greedy_decode(model, prompts, 10)
        sampled = sample(model, prompts[0][None], 10, sample=True, top_k=5)
        texts = [decode(itos, ids) for ids in on_host(completions)]
    assert reads.count == 0
    assert texts == [decode(itos, ids) for ids in completions]  # as read one element at a time
    assert on_host(completions) == [c.tolist() for c in completions] and on_host([]) == []
    assert sampled.shape == (1, 13)


def test_synthesizer_refuses_more_positions_than_w2_has_columns():
    model = trained_like_model("synthesizer")
    with pytest.raises(ValueError, match="at most block_size - 1 = 47 positions"):
        model(torch.zeros(1, 48, dtype=torch.long))


@pytest.mark.parametrize("variant, context", [("vanilla", 48), ("synthesizer", 47)])
def test_sample_feeds_at_most_what_the_model_can_attend_over(variant, context):
    model = trained_like_model(variant)
    assert model.get_context_size() == context
    x = torch.randint(0, 40, (2, 44), generator=torch.Generator().manual_seed(2))
    want = x
    with torch.no_grad():
        for _ in range(12):  # the context reaches 55 positions: the last `context` are fed
            logits, _ = model(want[:, -context:])
            want = torch.cat([want, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
    assert torch.equal(sample(model, x, 12), want)


def test_sample_crops_context_to_the_block_and_samples_with_top_k():
    model = trained_like_model("vanilla")
    x = torch.randint(0, 40, (2, 45))
    out = sample(model, x, 8, sample=False)
    assert out.shape == (2, 53) and torch.equal(out[:, :45], x)
    set_seed(3)
    drawn = sample(model, x, 30, sample=True, top_k=1)
    assert torch.equal(drawn, sample(model, x, 30, sample=False))  # top_k=1 sampling is greedy
    set_seed(3)
    a = sample(model, x, 30, sample=True, temperature=5.0)
    set_seed(3)
    b = sample(model, x, 30, sample=True, temperature=5.0)
    assert torch.equal(a, b) and not torch.equal(a, drawn)


def test_evaluate_places_counts_exact_matches(tmp_path):
    gold = tmp_path / "gold.tsv"
    gold.write_text("Where was A born?\tLondon\nWhere was B born?\tParis \nWhere was C born?\tRome\n")
    assert evaluate_places(gold, ["London", "Paris", "rome"]) == (3.0, 2.0)
    assert isinstance(evaluate_places(gold, ["x", "y", "z"])[0], float)
    questions = tmp_path / "questions.tsv"
    questions.write_text("Where was A born?\nWhere was B born?\n")
    assert evaluate_places(questions, ["London", "Paris"]) == (0, 0)
    with pytest.raises(ValueError, match="3 lines but there are 2 predictions"):
        evaluate_places(gold, ["London", "Paris"])
