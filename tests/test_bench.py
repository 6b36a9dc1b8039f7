"""bench/bench.py's plain path (attention written out, the original's way) computes what src/ computes."""

import sys

import pytest
import torch

from conftest import ROOT
from model import GPT, VARIANTS, GPTConfig

sys.path.insert(0, str(ROOT / "bench"))
import bench  # noqa: E402


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_plain_paths_attention_gives_the_fused_paths_logits(variant, monkeypatch):
    called = set()
    for name in ["plain_vanilla_forward", "plain_synthesizer_forward", "plain_cross_forward"]:
        def recording(*args, plain=getattr(bench, name), name=name, **kwargs):
            called.add(name)
            return plain(*args, **kwargs)
        monkeypatch.setattr(bench, name, recording)
    torch.manual_seed(0)
    model = GPT(GPTConfig(40, 32, variant=variant, n_layer=3, n_head=4, n_embd=32, bottleneck_dim=8)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)  # scores of a realistic spread
        idx = torch.randint(0, 40, (3, 31))
        fused, _ = model(idx)
        assert not called
        with bench.path("plain"):
            plain, _ = model(idx)
    assert called == {"synthesizer": {"plain_synthesizer_forward"},
                      "perceiver": {"plain_vanilla_forward", "plain_cross_forward"}}.get(variant,
                                                                                       {"plain_vanilla_forward"})
    assert torch.allclose(plain, fused, rtol=1e-4, atol=1e-4)


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
