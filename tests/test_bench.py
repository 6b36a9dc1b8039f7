"""
bench/bench.py's plain path (attention written out, the original's way) computes what src/
computes; its step breakdown.
"""

import sys

import pytest
import torch

from conftest import ROOT
from model import GPT, VARIANTS, GPTConfig

sys.path.insert(0, str(ROOT / "bench"))
import bench  # noqa: E402


@pytest.mark.parametrize("variant", VARIANTS)
def test_attention_written_out_gives_the_fused_attentions_logits_and_gradients(variant, monkeypatch):
    fused_calls = []
    fused_kernel = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *args, **kwargs: fused_calls.append(1) or fused_kernel(*args, **kwargs))
    torch.manual_seed(0)
    size = dict(n_layer=3, n_head=4, n_embd=32, bottleneck_dim=8, embd_pdrop=0, resid_pdrop=0, attn_pdrop=0)
    fused = GPT(GPTConfig(40, 32, variant=variant, **size))
    plain = GPT(GPTConfig(40, 32, variant=variant, fused_attention=False, **size))
    with torch.no_grad():
        for p in fused.parameters():
            p.normal_(0, 0.3)  # scores of a realistic spread
    plain.load_state_dict(fused.state_dict())
    idx, targets = torch.randint(0, 40, (3, 31)), torch.randint(0, 40, (3, 31))
    fused_logits, fused_loss = fused(idx, targets)
    fused_loss.backward()
    assert fused_calls
    fused_calls.clear()
    plain_logits, plain_loss = plain(idx, targets)
    plain_loss.backward()
    assert not fused_calls
    assert torch.allclose(plain_logits, fused_logits, rtol=1e-4, atol=1e-4)
    for (name, p), q in zip(plain.named_parameters(), fused.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-3, atol=1e-6), name


def test_a_steps_breakdown_finds_its_matrix_products_and_random_numbers():
    """The profile splits a real trainer step: products and random numbers are found, and shares add up."""
    from dataset import BLOCK_SIZE, CharCorruptionDataset
    from trainer import Trainer, TrainerConfig

    torch.manual_seed(0)
    text = "\n".join(f"Person {i} was born in Town {i % 7} and wrote books about it." for i in range(40))
    dataset = CharCorruptionDataset(text, BLOCK_SIZE)
    model = GPT(GPTConfig(dataset.vocab_size, BLOCK_SIZE, n_layer=2, n_head=4, n_embd=64))
    trainer = Trainer(model, dataset, None, TrainerConfig(batch_size=16, precision="fp32"))
    optimizer = trainer.optimizer()
    batch = next(iter(trainer.epoch_batches(dataset, torch.Generator().manual_seed(0))))
    shares = bench.step_breakdown(trainer, optimizer, batch, "cpu")
    assert 0.05 < shares["matmul_share"] < 1 and 0 < shares["random_share"] < 1
    assert shares["matmul_share"] + shares["random_share"] < 1
    assert shares["matmul_tflops"] > 0
