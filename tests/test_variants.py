"""
The later years' variants against SPEC.md ("Later variants"): RoPE (2023-24) and the
perceiver (2022-23). Their attentions against float64 formulas written out here, the whole
perceiver against the original's way of computing it (every bottleneck position, always),
causality through the bottleneck, the names, shapes and counts of their params, the checks
that keep one variant's params out of another, and a tiny run of each from the command line.
"""

import math
import re

import pytest
import torch
import torch.nn.functional as F

import handout
import handout_report
import params
import run
from attention import CausalCrossAttention, CausalSelfAttention, rotate
from model import GPT, VARIANTS, GPTConfig, Variant
from params import load_params, params_variants
from safe_io import InputError

MASK = "\u2047"


def sharpened(module):
    """Weights of a realistic spread, so that the softmaxes are far from uniform."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.3)
    return module


def softmax_rows(scores):
    scores = scores - scores.max(dim=-1, keepdim=True).values
    return scores.exp() / scores.exp().sum(dim=-1, keepdim=True)


def linear(x, layer):
    return x @ layer.weight.T + layer.bias


def attention_formula(attn, x_q, x_kv, n_head, visible, rotate=None):
    """
    Per head i: softmax(masked (X_q Q_i)(X_kv K_i)^T / sqrt(d/h)) (X_kv V_i), heads concatenated
    and projected; visible[i, j] says whether query i sees key j. rotate turns each head's
    queries and keys (RoPE) before their products.
    """
    hs = x_q.size(-1) // n_head
    Q, K, V = linear(x_q, attn.query), linear(x_kv, attn.key), linear(x_kv, attn.value)
    heads = []
    for i in range(n_head):
        q, k, v = (t[..., i * hs:(i + 1) * hs] for t in (Q, K, V))
        if rotate is not None:
            q, k = rotate(q), rotate(k)
        scores = (q @ k.transpose(-1, -2) / math.sqrt(hs)).masked_fill(~visible, -math.inf)
        heads.append(softmax_rows(scores) @ v)
    return linear(torch.cat(heads, dim=-1), attn.proj)


def rope_formula(x):
    """Position t's features (2i, 2i+1), as the complex x_2i + j x_2i+1, times e^(j t θ_i), θ_i = 10000^(-2i/hs)."""
    T, hs = x.shape[-2:]
    theta = torch.tensor([10000.0 ** (-2 * i / hs) for i in range(hs // 2)], dtype=torch.float64)
    angles = torch.arange(T, dtype=torch.float64)[:, None] * theta
    turned = torch.view_as_complex(x.reshape(*x.shape[:-1], hs // 2, 2).contiguous()) * torch.polar(
        torch.ones_like(angles), angles)
    return torch.view_as_real(turned).reshape(x.shape)


class BareConfig:
    """What a grader builds attention modules from: these five fields and nothing else."""
    n_embd = 64
    n_head = 4
    block_size = 32
    attn_pdrop = 0.0
    resid_pdrop = 0.0


# ----------------------------------------------------------------------------- RoPE

def test_rope_cache_holds_cos_and_sin_of_t_theta():
    cache = CausalSelfAttention(BareConfig(), rotary=True).rope_cache
    assert cache.shape == (32, 8, 2) and cache.dtype == torch.float32
    for t, i in [(0, 0), (1, 0), (5, 3), (31, 7), (17, 1)]:
        angle = t * 10000.0 ** (-2 * i / 16)
        assert cache[t, i, 0].item() == pytest.approx(math.cos(angle), abs=1e-7)
        assert cache[t, i, 1].item() == pytest.approx(math.sin(angle), abs=1e-7)


@pytest.mark.parametrize("T", [1, 9, 32])
def test_rope_attention_matches_the_formula_in_float64(T):
    torch.manual_seed(T)
    attn = sharpened(CausalSelfAttention(BareConfig(), rotary=True)).double().eval()
    X = torch.randn(3, T, 64, dtype=torch.float64)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    with torch.no_grad():
        want = attention_formula(attn, X, X, 4, causal, rotate=rope_formula)
        without_rotation = attention_formula(attn, X, X, 4, causal)
        # the table is kept in float32, as the 2023-24 code keeps it: within its precision
        assert torch.allclose(attn(X), want, rtol=0, atol=1e-5)
        # and with the table in float64, the same to float64's
        theta = 10000.0 ** (-torch.arange(0, 16, 2, dtype=torch.float64) / 16)
        angles = torch.arange(32, dtype=torch.float64)[:, None] * theta
        attn.rope_cache = torch.stack([angles.cos(), angles.sin()], dim=-1)
        got = attn(X)
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-10)
    if T > 1:
        assert not torch.allclose(got, without_rotation, rtol=1e-3, atol=1e-3)


def test_rope_scores_depend_on_relative_positions_only():
    """q_t . k_s after rotation is the same for positions (t, s) and (t + 5, s + 5)."""
    torch.manual_seed(0)
    cache = CausalSelfAttention(BareConfig(), rotary=True).rope_cache.double()
    q, k = torch.randn(2, 4, 10, 16, dtype=torch.float64), torch.randn(2, 4, 10, 16, dtype=torch.float64)
    near = rotate(q, cache) @ rotate(k, cache).transpose(-1, -2)
    far = rotate(q, cache, 5) @ rotate(k, cache, 5).transpose(-1, -2)
    assert torch.allclose(near, far, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(near, q @ k.transpose(-1, -2), rtol=1e-3, atol=1e-3)


def complex_rotation(x, rope_cache, start=0):
    """rotate as torch's complex numbers compute it (src/ before issue 19): in float32 at least, in x's dtype."""
    table = torch.view_as_complex(rope_cache[start:start + x.size(-2)].contiguous())
    wide = x if x.dtype == torch.float64 else x.float()
    return torch.view_as_real(torch.view_as_complex(wide.unflatten(-1, (-1, 2))) * table).flatten(-2).to(x.dtype)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-6), (torch.bfloat16, 2 ** -7)])
def test_rope_rotation_in_real_arithmetic_equals_the_complex_product(dtype, tolerance):
    torch.manual_seed(0)
    cache = CausalSelfAttention(BareConfig(), rotary=True).rope_cache
    x = torch.randn(3, 4, 20, 16).to(dtype).requires_grad_()
    for start in [0, 7, 12]:
        got, want = rotate(x, cache, start), complex_rotation(x, cache, start)
        assert got.dtype == dtype
        assert torch.allclose(got.float(), want.float(), rtol=tolerance, atol=tolerance)
        outside = torch.randn(got.shape).to(dtype)
        got_grad, = torch.autograd.grad(got, x, outside)
        want_grad, = torch.autograd.grad(want, x, outside)
        assert torch.allclose(got_grad.float(), want_grad.float(), rtol=tolerance, atol=tolerance)


def tiny_rope_model():
    torch.manual_seed(0)
    return GPT(GPTConfig(40, 16, variant="rope", n_layer=1, n_head=2, n_embd=16, embd_pdrop=0, resid_pdrop=0,
                         attn_pdrop=0))


@pytest.mark.parametrize("variant", VARIANTS)
def test_torch_compile_traces_each_model_whole_without_complex_numbers(variant):
    """
    What --compile needs (the trainer compiles with dynamic shapes): one graph of the whole
    forward, no break, and no complex tensor in it, for which inductor generates no code.
    Without dropout: on a CPU, dropout.py's random bits (random_) break the graph.
    """
    graphs = []

    def inspecting_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    torch.manual_seed(0)
    model = GPT(GPTConfig(40, 16, variant=variant, n_layer=3, n_head=2, n_embd=16, bottleneck_dim=4, embd_pdrop=0,
                          resid_pdrop=0, attn_pdrop=0))
    idx, targets = torch.randint(0, 40, (2, 15)), torch.randint(0, 40, (2, 15))
    _, loss = torch.compile(model, backend=inspecting_backend, fullgraph=True, dynamic=True)(idx, targets)
    loss.backward()
    assert len(graphs) == 1
    values = [node.meta.get("example_value") for node in graphs[0].graph.nodes]
    assert not any(isinstance(value, torch.Tensor) and value.is_complex() for value in values)


@pytest.mark.slow
def test_a_rope_model_compiled_computes_what_it_does_eagerly():
    """torch.compile with inductor, as --compile runs it, of a tiny rope model: forward and backward as eager's."""
    model = tiny_rope_model()
    idx, targets = torch.randint(0, 40, (2, 15)), torch.randint(0, 40, (2, 15))
    _, eager_loss = model(idx, targets)
    eager_grads = torch.autograd.grad(eager_loss, list(model.parameters()))
    _, compiled_loss = torch.compile(model, fullgraph=True, dynamic=True)(idx, targets)
    compiled_grads = torch.autograd.grad(compiled_loss, list(model.parameters()))
    assert torch.allclose(compiled_loss, eager_loss, rtol=1e-5, atol=1e-6)
    for got, want in zip(compiled_grads, eager_grads):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-6)


def test_rope_needs_an_even_head_size():
    class Odd(BareConfig):
        n_embd, n_head = 12, 4
    with pytest.raises(ValueError, match="head size n_embd / n_head = 3 must be even"):
        CausalSelfAttention(Odd(), rotary=True)


# ----------------------------------------------------------------------------- the perceiver

@pytest.mark.parametrize("Tq, Tk, first", [(8, 32, 0), (32, 8, 0), (5, 20, 3), (1, 32, 31), (32, 32, 0)])
def test_cross_attention_matches_the_formula_in_float64(Tq, Tk, first):
    torch.manual_seed(Tq * Tk + first)
    attn = sharpened(CausalCrossAttention(BareConfig())).double().eval()
    x_kv = torch.randn(3, Tk, 64, dtype=torch.float64)
    x_q = torch.randn(3, Tq, 64, dtype=torch.float64)
    positions = torch.arange(first, first + Tq)[:, None]
    visible = torch.arange(Tk)[None, :] <= positions  # query at position i sees keys 0 .. i
    with torch.no_grad():
        got = attn(x_kv, x_q, first)
        want = attention_formula(attn, x_q, x_kv, 4, visible)
    assert got.shape == (3, Tq, 64)
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-10)


def test_cross_attention_query_of_batch_one_serves_every_row():
    torch.manual_seed(0)
    attn = sharpened(CausalCrossAttention(BareConfig())).double().eval()
    x_kv = torch.randn(3, 12, 64, dtype=torch.float64)
    x_q = torch.randn(1, 6, 64, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(attn(x_kv, x_q), attn(x_kv, x_q.expand(3, -1, -1)), rtol=1e-12, atol=1e-12)


def small_perceiver(seed=0, **kw):
    torch.manual_seed(seed)
    config = GPTConfig(40, 32, variant="perceiver", n_layer=4, n_head=4, n_embd=32, bottleneck_dim=8, **kw)
    model = sharpened(GPT(config)).double().eval()
    return model


def layer_norm(x, ln):
    return F.layer_norm(x, x.shape[-1:], ln.weight, ln.bias)


def mlp_formula(x, mlp):
    return linear(F.gelu(linear(x, mlp[0])), mlp[2])


def perceiver_formula(model, idx):
    """
    The 2022-23 perceiver as its code computes it: all bottleneck_dim positions every time,
    down_block masked with mask[:m, :T], the middle blocks causal at length m, up_block
    masked with mask[:T, :m].
    """
    T, m = idx.size(1), model.bottleneck_dim
    sees = lambda Tq, Tk: torch.ones(Tq, Tk, dtype=torch.bool).tril()  # noqa: E731
    x = model.tok_emb.weight[idx] + model.pos_emb[:, :T]
    down = model.down_block
    C = down.C.expand(idx.size(0), -1, -1)
    y = attention_formula(down.attn, layer_norm(C, down.ln1), layer_norm(x, down.ln1), 4, sees(m, T))
    y = y + mlp_formula(layer_norm(y, down.ln2), down.mlp)
    for block in model.blocks:
        h = layer_norm(y, block.ln1)
        y = y + attention_formula(block.attn, h, h, 4, sees(m, m))
        y = y + mlp_formula(layer_norm(y, block.ln2), block.mlp)
    up = model.up_block
    out = attention_formula(up.attn, layer_norm(x, up.ln1), layer_norm(y, up.ln1), 4, sees(T, m))
    out = out + mlp_formula(layer_norm(out, up.ln2), up.mlp)
    return layer_norm(out, model.ln_f) @ model.head.weight.T


@pytest.mark.parametrize("T", [3, 8, 20, 32])
def test_perceiver_matches_the_originals_computation_in_float64(T):
    """Computing only the bottleneck positions up to the last input position changes nothing."""
    model = small_perceiver(seed=T)
    idx = torch.randint(0, 40, (2, T), generator=torch.Generator().manual_seed(T))
    with torch.no_grad():
        got, _ = model(idx)
        want = perceiver_formula(model, idx)
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-10)


def test_perceiver_is_causal_through_the_bottleneck():
    model = small_perceiver()
    idx = torch.randint(0, 40, (2, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before, _ = model(idx)
        for p in [0, 3, 7, 8, 20, 31]:  # the bottleneck has 8 positions
            changed = idx.clone()
            changed[:, p] = (idx[:, p] + 1) % 40
            after, _ = model(changed)
            assert torch.equal(before[:, :p], after[:, :p]), p
            assert not torch.allclose(before[:, p], after[:, p]), p
            # a position before the bottleneck's end reaches every later one through it; one
            # after it reaches no other: later positions read the bottleneck, not each other
            reaches_later = not torch.allclose(before[:, p + 1:], after[:, p + 1:])
            assert reaches_later == (p < 8 and p < 31), p


# ----------------------------------------------------------------------------- params

def handout_size(variant):
    return GPT(GPTConfig(256, 128, variant=variant))


def block_names(prefix, attention):
    names = {prefix + n for n in ["ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias", "attn.mask",
                                  "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"]}
    return names | {f"{prefix}attn.{m}.{p}" for m in attention for p in ("weight", "bias")}


def test_rope_params_names_shapes_and_count():
    state = handout_size("rope").state_dict()
    want = {"tok_emb.weight", "ln_f.weight", "ln_f.bias", "head.weight"}
    for i in range(4):
        want |= block_names(f"blocks.{i}.", ["key", "query", "value", "proj"]) | {f"blocks.{i}.attn.rope_cache"}
    assert set(state) == want  # no pos_emb
    assert state["blocks.2.attn.rope_cache"].shape == (128, 16, 2)
    assert state["blocks.0.attn.mask"].shape == (1, 1, 128, 128)
    d, V = 256, 256
    block = 2 * 2 * d + 4 * (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    assert sum(p.numel() for p in handout_size("rope").parameters()) == V * d + 4 * block + 2 * d + d * V


def test_perceiver_params_names_shapes_and_count():
    model = handout_size("perceiver")
    state = model.state_dict()
    attention = ["key", "query", "value", "proj"]
    want = {"tok_emb.weight", "pos_emb", "ln_f.weight", "ln_f.bias", "head.weight", "down_block.C"}
    want |= block_names("down_block.", attention) | block_names("up_block.", attention)
    for i in range(2):
        want |= block_names(f"blocks.{i}.", attention)
    assert set(state) == want
    assert state["down_block.C"].shape == (1, 64, 256)
    assert state["down_block.attn.mask"].shape == state["up_block.attn.mask"].shape == (1, 1, 128, 128)
    assert state["blocks.1.attn.mask"].shape == (1, 1, 64, 64)
    assert torch.equal(state["blocks.1.attn.mask"][0, 0], torch.ones(64, 64).tril())
    d, V = 256, 256
    block = 2 * 2 * d + 4 * (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    assert sum(p.numel() for p in model.parameters()) == V * d + 128 * d + 4 * block + 64 * d + 2 * d + d * V
    names = [name for name, _ in model.named_modules()]
    assert names[:4] == ["", "tok_emb", "drop", "down_block"]
    assert names.index("down_block") < names.index("blocks") < names.index("up_block") < names.index("ln_f")
    assert [name for name in names if name.startswith("down_block.attn")] == [
        "down_block.attn", *[f"down_block.attn.{m}" for m in
                             ["key", "query", "value", "attn_drop", "resid_drop", "proj"]]]


def test_perceiver_queries_start_xavier_uniform():
    torch.manual_seed(0)
    C = handout_size("perceiver").down_block.C
    bound = math.sqrt(6 / (64 * 256 + 256))  # fan_in m * d, fan_out 1 * d
    assert C.abs().max().item() <= bound
    assert C.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)


@pytest.mark.parametrize("variant", ["rope", "perceiver"])
def test_config_flag_of_that_years_code_builds_the_variant(variant):
    config = GPTConfig(40, 32, n_layer=3, n_head=4, n_embd=32, bottleneck_dim=8)
    setattr(config, variant, True)  # as code written for that year's solution does
    assert GPT(config).variant == variant
    config.synthesizer = True
    with pytest.raises(ValueError, match="asks for synthesizer and " + variant):
        GPT(config)


def test_perceiver_needs_two_layers_and_a_bottleneck_inside_the_block():
    with pytest.raises(ValueError, match="n_layer >= 2"):
        GPT(GPTConfig(40, 32, variant="perceiver", n_layer=1, bottleneck_dim=8))
    with pytest.raises(ValueError, match="bottleneck_dim <= block_size 32"):
        GPT(GPTConfig(40, 32, variant="perceiver", bottleneck_dim=33))
    assert len(GPT(GPTConfig(40, 32, variant="perceiver", n_layer=2, bottleneck_dim=8)).blocks) == 0


@pytest.mark.parametrize("saved, loaded", [("rope", "vanilla"), ("vanilla", "rope"), ("perceiver", "vanilla"),
                                           ("synthesizer", "perceiver"), ("perceiver", "rope")])
def test_params_of_one_variant_are_refused_by_another_naming_both(tmp_path, saved, loaded):
    size = dict(n_layer=3, n_head=4, n_embd=32, bottleneck_dim=8)
    path = tmp_path / "p.params"
    torch.save(GPT(GPTConfig(40, 32, variant=saved, **size)).state_dict(), path)
    load_params(GPT(GPTConfig(40, 32, variant=saved, **size)), path, "cpu")  # its own variant takes it
    with pytest.raises(InputError, match=f"holds {saved} params, but the command asks for {loaded}"):
        load_params(GPT(GPTConfig(40, 32, variant=loaded, **size)), path, "cpu")


def test_perceiver_params_of_another_bottleneck_say_which(tmp_path):
    path = tmp_path / "p.params"
    torch.save(GPT(GPTConfig(40, 32, variant="perceiver", n_layer=3, bottleneck_dim=8)).state_dict(), path)
    with pytest.raises(InputError, match="bottleneck 8, but this command builds one of .*bottleneck 16: run with "
                                         "--n_layer 3 --n_embd 256 --bottleneck_dim 8"):
        load_params(GPT(GPTConfig(40, 32, variant="perceiver", n_layer=3, bottleneck_dim=16)), path, "cpu")


# ----------------------------------------------------------------------------- the command line

@pytest.mark.parametrize("variant", ["rope", "perceiver"])
def test_a_tiny_run_of_each_from_the_command_line(tmp_path, variant, capsys):
    people = [("Ada Lovelace", "London"), ("Alan Turing", "Maida Vale"), ("Marie Curie", "Warsaw"),
              ("Niels Bohr", "Copenhagen"), ("Enrico Fermi", "Rome"), ("Paul Dirac", "Bristol")]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"{n}. Where was {n} born? In {p}." for n, p in people), encoding="utf-8")
    train, dev = tmp_path / "train.tsv", tmp_path / "dev.tsv"
    train.write_text("".join(f"Where was {n} born?\t{p}\n" for n, p in people[:4]), encoding="utf-8")
    dev.write_text("".join(f"Where was {n} born?\t{p}\n" for n, p in people[4:]), encoding="utf-8")
    small = ["--n_layer", "3", "--n_head", "2", "--n_embd", "32", "--device", "cpu"]
    bottleneck = ["--bottleneck_dim", "16"] if variant == "perceiver" else []
    fast = ["--max_epochs", "2", "--batch_size", "4"]
    pretrained, finetuned, predictions = tmp_path / "p.params", tmp_path / "f.params", tmp_path / "dev.predictions"
    run.main(["pretrain", variant, str(corpus), "--writing_params_path", str(pretrained), *small, *bottleneck, *fast])
    run.main(["finetune", variant, str(corpus), "--reading_params_path", str(pretrained), "--writing_params_path",
              str(finetuned), "--finetune_corpus_path", str(train), *small, *bottleneck, *fast])
    capsys.readouterr()
    evaluate = [str(corpus), "--reading_params_path", str(finetuned), "--eval_corpus_path", str(dev),
                "--outputs_path", str(predictions), *small]
    run.main(["evaluate", variant, *evaluate, *bottleneck])
    assert re.fullmatch(r"Correct: \d\.0 out of 2\.0: \d+\.\d+%", capsys.readouterr().out.splitlines()[-1])
    assert len(predictions.read_text(encoding="utf-8").splitlines()) == 2
    state = torch.load(finetuned, weights_only=True)
    assert ("blocks.0.attn.rope_cache" in state) == (variant == "rope")
    assert ("down_block.C" in state) == (variant == "perceiver")
    assert ("pos_emb" in state) == (variant == "perceiver")
    other = "vanilla" if variant == "perceiver" else "perceiver"
    with pytest.raises(SystemExit):
        run.main(["evaluate", other, *evaluate])
    assert f"holds {variant} params, but the command asks for {other}" in capsys.readouterr().err


def test_bottleneck_dim_is_refused_for_a_variant_without_a_bottleneck(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Ada Lovelace. Born in London.", encoding="utf-8")
    with pytest.raises(SystemExit):
        run.main(["pretrain", "rope", str(corpus), "--writing_params_path", str(tmp_path / "p"),
                  "--bottleneck_dim", "16", "--device", "cpu"])
    assert "--bottleneck_dim 16 is the perceiver's; rope has no bottleneck" in capsys.readouterr().err


class GatedAttention(CausalSelfAttention):
    """A throwaway fifth variant's attention: vanilla's, its output scaled by one learned gate."""

    def __init__(self, config):
        super().__init__(config)
        self.gate = torch.nn.Parameter(torch.full((1,), 0.5))

    def forward(self, x, layer_cache=None):
        return self.gate * super().forward(x, layer_cache)


def test_a_fifth_variant_needs_nothing_but_its_record(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(VARIANTS, "gated", Variant("gated", "2026", "a gated output", GatedAttention, ("-", "-"), (0, 0)))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Ada Lovelace. Where was Ada Lovelace born? In London.\nAlan Turing. Born in Maida Vale.",
                      encoding="utf-8")
    train = tmp_path / "train.tsv"
    train.write_text("Where was Ada Lovelace born?\tLondon\n", encoding="utf-8")
    small = ["--n_layer", "2", "--n_head", "2", "--n_embd", "16", "--device", "cpu", "--max_epochs", "1"]
    pretrained, finetuned = tmp_path / "p.params", tmp_path / "f.params"
    run.main(["pretrain", "gated", str(corpus), "--writing_params_path", str(pretrained), *small])
    state = torch.load(pretrained, weights_only=True)
    assert {"blocks.0.attn.gate", "blocks.1.attn.gate", "blocks.0.attn.query.weight"} <= set(state)
    assert params_variants(state) == ["gated"]
    run.main(["finetune", "gated", str(corpus), "--reading_params_path", str(pretrained),
              "--writing_params_path", str(finetuned), "--finetune_corpus_path", str(train), *small])
    model = GPT(GPTConfig(state["tok_emb.weight"].shape[0], 128, variant="gated", n_layer=2, n_head=2, n_embd=16))
    assert isinstance(model.blocks[1].attn, GatedAttention)
    load_params(model, str(pretrained), "cpu")
    assert all(torch.equal(tensor, state[name]) for name, tensor in model.state_dict().items())
    with pytest.raises(SystemExit):  # vanilla params are not the gated variant's, nor the other way round
        run.main(["finetune", "vanilla", str(corpus), "--reading_params_path", str(pretrained),
                  "--writing_params_path", str(tmp_path / "v.params"), "--finetune_corpus_path", str(train), *small])
    assert "holds gated params, but the command asks for vanilla" in capsys.readouterr().err
    # and handout.py runs it with --variants gated: its rows in the table (a later year's variant
    # is also finetuned without pretraining), beside its record's reference
    rows = [row for row, _, _ in handout.handout_steps(["gated"]) if row]
    _, table = handout_report.accuracy_table([dict.fromkeys(rows, 1.0)], [dict.fromkeys(rows, 2.0)])
    assert ("gated, no pretraining", "1.0", "2.0", "not asked", "none published") in table
    assert ("gated, pretrain + finetune", "1.0", "2.0", "-", "-") in table


def test_telling_a_variant_by_its_params_names_takes_no_draw_from_torchs_generator():
    params.variants_by_names.cache_clear()  # its tiny models are built on first use
    state = GPT(GPTConfig(10, 8, variant="rope", n_layer=2, n_head=2, n_embd=8)).state_dict()
    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    assert params_variants(state) == ["rope"]
    assert torch.equal(torch.rand(4), expected)
