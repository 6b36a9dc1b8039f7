"""The model against the spec: attention math in float64, causality, dropout, names, counts, init, loss."""

import hashlib
import math

import pytest
import torch
import torch.nn.functional as F

from attention import CausalSelfAttention, SynthesizerAttention
from model import GPT, GPTConfig

VARIANTS = ["vanilla", "synthesizer", "rope", "perceiver"]


def config(variant, **kw):
    return GPTConfig(256, 128, variant=variant, **kw)


def heads(t, i, hs):
    return t[..., i * hs:(i + 1) * hs]


def softmax_rows(scores):
    scores = scores - scores.max(dim=-1, keepdim=True).values
    return scores.exp() / scores.exp().sum(dim=-1, keepdim=True)


def reference_vanilla(attn, X, n_head):
    """Handout equations 3 and 4, one head at a time, written out with plain matrix products."""
    T, d = X.shape[-2:]
    hs = d // n_head
    Q = X @ attn.query.weight.T + attn.query.bias
    K = X @ attn.key.weight.T + attn.key.bias
    V = X @ attn.value.weight.T + attn.value.bias
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    Ys = []
    for i in range(n_head):
        scores = heads(Q, i, hs) @ heads(K, i, hs).transpose(-1, -2) / math.sqrt(hs)
        Ys.append(softmax_rows(scores.masked_fill(future, -math.inf)) @ heads(V, i, hs))
    return torch.cat(Ys, dim=-1) @ attn.proj.weight.T + attn.proj.bias


def reference_synthesizer(attn, X, n_head):
    """Handout equation 5: softmax(ReLU(X A_i + b1) B_i + b2) (X V_i), B_i = w2[:, :T], b2[:T]."""
    T, d = X.shape[-2:]
    hs = d // n_head
    V = X @ attn.value.weight.T + attn.value.bias
    future = torch.ones(T, T, dtype=torch.bool).triu(1)
    Ys = []
    for i in range(n_head):
        A_i = attn.w1.weight[i * hs:(i + 1) * hs].T
        b1_i = attn.w1.bias[i * hs:(i + 1) * hs]
        scores = torch.relu(X @ A_i + b1_i) @ attn.w2[:, :T] + attn.b2[:T]
        Ys.append(softmax_rows(scores.masked_fill(future, -math.inf)) @ heads(V, i, hs))
    return torch.cat(Ys, dim=-1) @ attn.proj.weight.T + attn.proj.bias


@pytest.mark.parametrize("module, reference", [(CausalSelfAttention, reference_vanilla),
                                               (SynthesizerAttention, reference_synthesizer)])
@pytest.mark.parametrize("T", [1, 17, 127])
def test_attention_matches_the_handout_equations_in_float64(module, reference, T):
    torch.manual_seed(T)
    attn = module(config("vanilla")).double().eval()
    with torch.no_grad():  # scores of a realistic spread, so the softmax is not nearly uniform
        for p in attn.parameters():
            p.normal_(0, 0.3)
    X = torch.randn(3, T, 256, dtype=torch.float64)
    with torch.no_grad():
        got = attn(X)
        want = reference(attn, X, n_head=8)
    assert got.shape == (3, T, 256)
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_position_sees_the_future(variant):
    torch.manual_seed(0)
    model = GPT(config(variant)).eval()
    idx = torch.randint(0, 256, (2, 60))
    changed = idx.clone()
    changed[:, 40:] = torch.randint(0, 256, (2, 20))
    with torch.no_grad():
        before, _ = model(idx)
        after, _ = model(changed)
    assert torch.equal(before[:, :40], after[:, :40])
    assert not torch.allclose(before[:, 40:], after[:, 40:])


@pytest.mark.parametrize("variant", VARIANTS)
def test_dropout_acts_in_train_mode_only(variant):
    torch.manual_seed(0)
    model = GPT(config(variant))
    idx = torch.randint(0, 256, (2, 30))
    model.train()
    with torch.no_grad():
        assert not torch.allclose(model(idx)[0], model(idx)[0])
        model.eval()
        assert torch.equal(model(idx)[0], model(idx)[0])


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_dropout_site_is_live_in_training(variant):
    """With only one kind of dropout switched on, training-mode outputs still vary run to run."""
    idx = torch.randint(0, 256, (2, 30))
    for site in ["embd_pdrop", "attn_pdrop", "resid_pdrop"]:
        rates = {name: 0.0 for name in ["embd_pdrop", "attn_pdrop", "resid_pdrop"]}
        rates[site] = 0.5
        model = GPT(config(variant, **rates)).train()
        with torch.no_grad():
            assert not torch.allclose(model(idx)[0], model(idx)[0]), site


def expected_names(variant, n_layer=4):
    attention = (["key", "query", "value", "proj"] if variant == "vanilla" else ["w1", "value", "proj"])
    names = {"tok_emb.weight", "pos_emb", "ln_f.weight", "ln_f.bias", "head.weight"}
    for i in range(n_layer):
        b = f"blocks.{i}."
        names |= {b + "ln1.weight", b + "ln1.bias", b + "ln2.weight", b + "ln2.bias", b + "attn.mask",
                  b + "mlp.0.weight", b + "mlp.0.bias", b + "mlp.2.weight", b + "mlp.2.bias"}
        names |= {f"{b}attn.{m}.{p}" for m in attention for p in ("weight", "bias")}
        if variant == "synthesizer":
            names |= {b + "attn.w2", b + "attn.b2"}
    return names


@pytest.mark.parametrize("variant, count", [("vanilla", 3_323_392), ("synthesizer", 3_076_988)])
def test_parameter_names_shapes_and_counts(variant, count):
    model = GPT(config(variant))
    state = model.state_dict()
    assert set(state) == expected_names(variant)
    assert sum(p.numel() for p in model.parameters()) == count
    assert state["pos_emb"].shape == (1, 128, 256)
    assert state["blocks.0.attn.mask"].shape == (1, 1, 128, 128)
    assert torch.equal(state["blocks.0.attn.mask"][0, 0], torch.ones(128, 128).tril())
    assert state["head.weight"].shape == (256, 256)
    if variant == "synthesizer":
        assert state["blocks.0.attn.w2"].shape == (32, 127)
        assert state["blocks.0.attn.b2"].shape == (127,)


def test_params_load_strictly_only_into_their_own_variant():
    vanilla, synthesizer = GPT(config("vanilla")), GPT(config("synthesizer"))
    GPT(config("vanilla")).load_state_dict(vanilla.state_dict(), strict=True)
    GPT(config("synthesizer")).load_state_dict(synthesizer.state_dict(), strict=True)
    with pytest.raises(RuntimeError):
        vanilla.load_state_dict(synthesizer.state_dict(), strict=True)


def test_initialisation_follows_the_spec():
    torch.manual_seed(0)
    model = GPT(config("synthesizer"))
    assert torch.equal(model.pos_emb, torch.zeros(1, 128, 256))
    assert abs(model.tok_emb.weight.std().item() - 0.02) < 0.001
    assert abs(model.blocks[0].mlp[0].weight.std().item() - 0.02) < 0.001
    assert abs(model.blocks[0].attn.w1.weight.std().item() - 0.02) < 0.001
    assert torch.equal(model.blocks[0].mlp[0].bias, torch.zeros(1024))
    assert torch.equal(model.blocks[0].ln1.weight, torch.ones(256))
    assert torch.equal(model.blocks[0].ln1.bias, torch.zeros(256))
    assert torch.equal(model.blocks[0].attn.b2, torch.zeros(127))
    w2 = model.blocks[0].attn.w2
    assert w2.abs().max().item() <= 0.001
    assert abs(w2.std().item() - 0.001 / math.sqrt(3)) < 0.00005  # uniform on ±0.001


def test_loss_is_cross_entropy_over_non_pad_targets():
    torch.manual_seed(0)
    model = GPT(config("vanilla")).eval()
    idx = torch.randint(2, 256, (3, 20))
    targets = torch.randint(2, 256, (3, 20))
    targets[:, :8] = 0
    targets[1, 15:] = 0
    logits, loss = model(idx, targets)
    log_probs = F.log_softmax(logits.double(), dim=-1)
    kept = targets != 0
    want = -log_probs[kept].gather(-1, targets[kept][:, None]).mean()
    assert torch.allclose(loss.double(), want, rtol=1e-6)
    assert logits.shape == (3, 20, 256)
    assert model(idx)[1] is None


def test_more_positions_than_the_block_are_refused():
    model = GPT(config("vanilla"))
    with pytest.raises(ValueError, match="block size is 128"):
        model(torch.zeros(1, 129, dtype=torch.long))


ORIGINAL_VANILLA_TREE = """GPT(
  (tok_emb): Embedding(256, 256)
  (drop): Dropout(p=0.1, inplace=False)
  (blocks): Sequential(
    (0): Block(
      (ln1): LayerNorm((256,), eps=1e-05, elementwise_affine=True)
      (ln2): LayerNorm((256,), eps=1e-05, elementwise_affine=True)
      (attn): CausalSelfAttention(
        (key): Linear(in_features=256, out_features=256, bias=True)
        (query): Linear(in_features=256, out_features=256, bias=True)
        (value): Linear(in_features=256, out_features=256, bias=True)
        (attn_drop): Dropout(p=0.1, inplace=False)
        (resid_drop): Dropout(p=0.1, inplace=False)
        (proj): Linear(in_features=256, out_features=256, bias=True)
      )
      (mlp): Sequential(
        (0): Linear(in_features=256, out_features=1024, bias=True)
        (1): GELU(approximate='none')
        (2): Linear(in_features=1024, out_features=256, bias=True)
        (3): Dropout(p=0.1, inplace=False)
      )
    )
  )
  (ln_f): LayerNorm((256,), eps=1e-05, elementwise_affine=True)
  (head): Linear(in_features=256, out_features=256, bias=False)
)"""

ORIGINAL_SYNTHESIZER_ATTENTION = """      (attn): SynthesizerAttention(
        (w1): Linear(in_features=256, out_features=256, bias=True)
        (value): Linear(in_features=256, out_features=256, bias=True)
        (attn_drop): Dropout(p=0.1, inplace=False)
        (resid_drop): Dropout(p=0.1, inplace=False)
        (proj): Linear(in_features=256, out_features=256, bias=True)
      )"""


def printed(model):
    # torch 2.1 and later add ", bias=True" to a LayerNorm's line; the original ran on older torch
    return str(model).replace(", elementwise_affine=True, bias=True)", ", elementwise_affine=True)")


@pytest.mark.parametrize("variant", ["vanilla", "synthesizer", "rope"])
def test_printed_module_tree_is_the_originals(variant):
    want = ORIGINAL_VANILLA_TREE  # rope's too: its buffer rope_cache is not printed, and it has no pos_emb
    if variant == "synthesizer":
        start, end = want.index("      (attn):"), want.index("      (mlp):")
        want = want[:start] + ORIGINAL_SYNTHESIZER_ATTENTION + "\n" + want[end:]
    assert printed(GPT(config(variant, n_layer=1))) == want


@pytest.mark.parametrize("variant, registered", [
    ("vanilla", ["key", "query", "value", "attn_drop", "resid_drop", "proj"]),
    ("synthesizer", ["w1", "w2", "b2", "value", "attn_drop", "resid_drop", "proj"])])
def test_attention_registers_in_the_originals_order(variant, registered, monkeypatch):
    order = []  # what each attention module registers, in the order it does so
    set_attribute, register_buffer = torch.nn.Module.__setattr__, torch.nn.Module.register_buffer

    def recording_setattr(self, name, value):
        if isinstance(self, (CausalSelfAttention, SynthesizerAttention)) and \
                isinstance(value, (torch.nn.Module, torch.nn.Parameter)):
            order.append(name)
        set_attribute(self, name, value)

    def recording_register_buffer(self, name, tensor, *args, **kwargs):
        if isinstance(self, (CausalSelfAttention, SynthesizerAttention)):
            order.append(name)
        register_buffer(self, name, tensor, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "__setattr__", recording_setattr)
    monkeypatch.setattr(torch.nn.Module, "register_buffer", recording_register_buffer)
    model = GPT(config(variant, n_layer=2))
    monkeypatch.undo()
    assert order == 2 * (registered + ["mask"])
    attn = model.blocks[1].attn
    assert type(attn.attn_drop) is type(attn.resid_drop) is torch.nn.Dropout
    names = [name for name, _ in model.named_modules()]
    block = ["", ".ln1", ".ln2", ".attn"] + [f".attn.{m}" for m in registered if m not in ("w2", "b2")] + \
        [".mlp", ".mlp.0", ".mlp.1", ".mlp.2", ".mlp.3"]
    assert names == ["", "tok_emb", "drop", "blocks"] + [f"blocks.{i}{n}" for i in range(2) for n in block] + \
        ["ln_f", "head"]


@pytest.mark.parametrize("variant, digest", [
    ("vanilla", "2148db47249cc07b7060a55a2d147fbb723daeb875d3620836181f63650787e5"),
    ("synthesizer", "794c90fd681244e5f7815e60cbe4d517602e2c470ee5049a2e16ff35ae622665")])
def test_initial_params_for_a_seed_are_bit_identical_to_before(variant, digest):
    """SHA-256 of the seed-0 state_dict (names and bytes, in order), recorded before the module tree changed."""
    torch.manual_seed(0)
    hashed = hashlib.sha256()
    for name, tensor in GPT(config(variant)).state_dict().items():
        hashed.update(name.encode())
        hashed.update(tensor.numpy().tobytes())
    assert hashed.hexdigest() == digest


class BareConfig:
    """What a grader builds attention modules from: these five fields and nothing else."""
    n_embd = 64
    n_head = 4
    block_size = 16
    attn_pdrop = 0.25
    resid_pdrop = 0.5


@pytest.mark.parametrize("module", [CausalSelfAttention, SynthesizerAttention])
def test_attention_builds_from_a_bare_config(module):
    attn = module(BareConfig())
    assert (attn.attn_drop.p, attn.resid_drop.p) == (0.25, 0.5)
    assert attn.mask.shape == (1, 1, 16, 16)
    x = torch.randn(2, 15, 64)
    assert attn.eval()(x).shape == (2, 15, 64)
    assert not torch.equal(attn.train()(x), attn.train()(x))  # attn_drop and resid_drop at work


def test_config_synthesizer_true_builds_the_synthesizer():
    set_after = config("vanilla", n_layer=2)
    set_after.synthesizer = True  # as code written for the public 2021 solution does
    for made in [set_after, config("vanilla", n_layer=2, synthesizer=True)]:
        model = GPT(made)
        assert model.variant == "synthesizer"
        assert all(isinstance(block.attn, SynthesizerAttention) for block in model.blocks)
        assert "blocks.1.attn.w2" in model.state_dict()
    assert isinstance(GPT(config("vanilla", n_layer=1)).blocks[0].attn, CausalSelfAttention)


def test_the_dropout_flag_sets_every_dropout_of_the_model_and_its_absence_keeps_the_handouts():
    import argparse
    from params import build_model
    size = dict(n_layer=1, n_head=2, n_embd=16, bottleneck_dim=None)
    rates = lambda model: {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
    assert rates(build_model(40, 128, "vanilla", argparse.Namespace(**size, dropout=0.25))) == {0.25}
    assert rates(build_model(40, 128, "vanilla", argparse.Namespace(**size, dropout=None))) == {0.1}
    assert rates(build_model(40, 128, "vanilla", argparse.Namespace(**size))) == {0.1}
