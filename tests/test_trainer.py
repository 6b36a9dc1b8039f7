"""The trainer against the spec: schedule, weight-decay groups, token counter, and exact padding trims."""

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from model import GPT, GPTConfig
from trainer import Trainer, TrainerConfig, learning_rate_at, parameter_groups, trim_padding


def test_trainer_config_defaults():
    c = TrainerConfig()
    assert (c.max_epochs, c.batch_size, c.learning_rate, c.betas) == (10, 64, 3e-4, (0.9, 0.95))
    assert (c.grad_norm_clip, c.weight_decay, c.lr_decay) == (1.0, 0.1, False)
    assert (c.warmup_tokens, c.final_tokens, c.ckpt_path, c.num_workers) == (375e6, 260e9, None, 0)
    assert TrainerConfig(batch_size=7).batch_size == 7


def test_learning_rate_schedule_matches_the_formula():
    config = TrainerConfig(learning_rate=6e-3, lr_decay=True, warmup_tokens=10240, final_tokens=75_187_200)
    assert learning_rate_at(5120, config) == pytest.approx(3e-3)
    for tokens in [10240, 20_000_000, 75_187_200, 100_000_000, 150_000_000, 242_000_000]:
        progress = (tokens - 10240) / (75_187_200 - 10240)
        want = 6e-3 * max(0.1, 0.5 * (1 + math.cos(math.pi * progress)))
        assert learning_rate_at(tokens, config) == pytest.approx(want, rel=1e-12)
    # the floor, and the rise past final_tokens that makes the loss plateau and fall again
    assert learning_rate_at(75_187_200, config) == pytest.approx(6e-4)
    assert learning_rate_at(150_000_000, config) > 5.9e-3
    assert learning_rate_at(123, TrainerConfig(learning_rate=1e-3)) == 1e-3


def test_weight_decay_groups_follow_the_original_names():
    model = GPT(GPTConfig(256, 128, variant="synthesizer"))
    decay, no_decay = parameter_groups(model, 0.1)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    not_decayed = {names[id(p)] for p in no_decay["params"]}
    assert not_decayed == {n for n in names.values() if "bias" in n}
    assert {"pos_emb", "ln_f.weight", "blocks.0.ln1.weight", "blocks.0.attn.w2", "head.weight"} <= decayed
    assert "blocks.0.attn.b2" in decayed  # its name contains no "bias": decayed, as in the original


def padded_batch(lengths, T=127):
    x = torch.randint(2, 256, (len(lengths), T))
    y = torch.randint(2, 256, (len(lengths), T))
    for row, length in enumerate(lengths):
        x[row, length + 1:] = 0
        y[row, length:] = 0
    return x, y


def test_trim_cuts_after_the_last_target_that_is_not_pad():
    x, y = padded_batch([5, 40, 12])
    tx, ty = trim_padding(x, y)
    assert tx.shape == ty.shape == (3, 40)
    assert torch.equal(tx, x[:, :40]) and torch.equal(ty, y[:, :40])


@pytest.mark.parametrize("variant", ["vanilla", "synthesizer"])
def test_trimmed_batch_gives_the_same_loss_and_gradients(variant):
    torch.manual_seed(0)
    model = GPT(GPTConfig(256, 128, variant=variant)).eval()  # dropout off: same function
    x, y = padded_batch([30, 71, 9, 50])

    def loss_and_grads(x, y):
        model.zero_grad()
        _, loss = model(x, y)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    full_loss, full_grads = loss_and_grads(x, y)
    trim_loss, trim_grads = loss_and_grads(*trim_padding(x, y))
    assert trim_padding(x, y)[0].shape[1] == 71
    assert torch.allclose(full_loss, trim_loss, rtol=1e-6, atol=0)
    for full, trimmed in zip(full_grads, trim_grads):
        assert torch.allclose(full, trimmed, rtol=1e-4, atol=1e-7)


def test_counter_counts_every_target_position_pad_included():
    torch.manual_seed(0)
    x, y = padded_batch([3] * 10)
    config = TrainerConfig(max_epochs=2, batch_size=4, learning_rate=1e-3, lr_decay=True,
                           warmup_tokens=10, final_tokens=10_000, device="cpu")
    model = GPT(GPTConfig(256, 128, n_layer=1, n_head=2, n_embd=16))
    trainer = Trainer(model, TensorDataset(x, y), None, config)
    optimizer_lrs = []
    original_step = torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):
        optimizer_lrs.append(self.param_groups[0]["lr"])
        return original_step(self, *args, **kwargs)

    torch.optim.AdamW.step = recording_step
    try:
        trainer.train()
    finally:
        torch.optim.AdamW.step = original_step
    # batches of 4, 4, 2 rows per epoch, each row 127 positions, the short last batch counted as 2
    assert trainer.tokens == 2 * 10 * 127
    # the first step runs at the configured rate; each later one at the schedule after the tokens so far
    seen = [4, 8, 10, 14, 18, 20]
    want = [1e-3] + [learning_rate_at(127 * n, config) for n in seen[:-1]]
    assert optimizer_lrs == pytest.approx(want, rel=1e-12)


def test_training_lowers_the_loss_and_keeps_fp32_weights():
    torch.manual_seed(0)
    x, y = padded_batch([20] * 16)
    model = GPT(GPTConfig(256, 128, n_layer=1, n_head=2, n_embd=32))
    with torch.no_grad():
        before = model.eval()(x, y)[1].item()
    Trainer(model, TensorDataset(x, y), None,
            TrainerConfig(max_epochs=30, batch_size=8, learning_rate=3e-3, device="cpu")).train()
    with torch.no_grad():
        after = model.eval()(x, y)[1].item()
    assert after < before - 1.0
    assert all(p.dtype == torch.float32 for p in model.parameters())
