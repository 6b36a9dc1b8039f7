"""
The fast paths on a CUDA GPU against the plain ones: batches made on the GPU, bf16 autocast
against fp32, length-cut batches against padded ones, trainer steps against the CPU's, a
training loop that waits on the GPU only where it reads its losses, batched cached decoding
against sample(), and decoding that waits on the GPU only to read its completions, for every
variant. Every test here carries the `cuda` marker: skipped where PyTorch sees no CUDA GPU
(the CPU, CI); bench/gpu_check.sh runs them first.
"""

import pytest
import torch

import training_log
from conftest import real_data_path
from dataset import CharCorruptionDataset, NameDataset, row_lengths
from model import GPT, VARIANTS, GPTConfig
from trainer import Trainer, TrainerConfig
from utils import greedy_decode, on_host, sample

pytestmark = pytest.mark.cuda


def real_datasets():
    pretraining = CharCorruptionDataset(real_data_path("wiki.txt").read_text(encoding="utf-8"), 128)
    finetuning = NameDataset(pretraining, real_data_path("birth_places_train.tsv").read_text(encoding="utf-8"))
    return pretraining, finetuning


def first_batch(dataset, rows, device, seed=0):
    return next(dataset.batches(rows, torch.Generator().manual_seed(seed), device))


def fresh_model(variant, vocab_size, device, **size):
    torch.manual_seed(0)
    config = GPTConfig(vocab_size, 128, variant=variant, embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0, **size)
    return GPT(config).to(device)


def gradients(model):
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


def relative_error(got, want):
    """|got - want| / |want| over all the tensors together (dicts of tensors)."""
    difference = torch.cat([(got[name].float().cpu() - want[name].float().cpu()).flatten() for name in want])
    reference = torch.cat([want[name].float().cpu().flatten() for name in want])
    return (difference.norm() / reference.norm()).item()


def test_batches_made_on_the_gpu_equal_those_made_on_the_cpu():
    for dataset in real_datasets():
        for (x, y, lengths), (x_cpu, y_cpu, lengths_cpu) in zip(
                dataset.batches(128, torch.Generator().manual_seed(3), "cuda"),
                dataset.batches(128, torch.Generator().manual_seed(3), "cpu")):
            assert x.device.type == "cuda" and lengths.device.type == "cpu"
            assert torch.equal(x.cpu(), x_cpu) and torch.equal(y.cpu(), y_cpu) and torch.equal(lengths, lengths_cpu)
            assert torch.equal(lengths, row_lengths(y).cpu())


@pytest.mark.parametrize("variant", VARIANTS)
def test_bf16_autocast_loss_within_1_percent_and_gradients_within_5_percent_of_fp32(variant):
    pretraining, _ = real_datasets()
    x, y, lengths = first_batch(pretraining, 64, "cuda")
    results = {}
    for precision in ["fp32", "bf16"]:
        model = fresh_model(variant, pretraining.vocab_size, "cuda")
        trainer = Trainer(model, None, None, TrainerConfig(device="cuda", precision=precision))
        loss = trainer.loss(x, y, lengths, backward=True)
        results[precision] = loss.item(), gradients(model)
    (fp32_loss, fp32_grads), (bf16_loss, bf16_grads) = results["fp32"], results["bf16"]
    assert bf16_loss != fp32_loss  # really computed in bf16
    assert bf16_loss == pytest.approx(fp32_loss, rel=0.01)
    assert relative_error(bf16_grads, fp32_grads) < 0.05
    assert all(g.dtype == torch.float32 for g in bf16_grads.values())


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("which", ["pretraining", "finetuning"])
def test_length_cut_batches_give_the_padded_loss_and_gradients(variant, which):
    pretraining, finetuning = real_datasets()
    x, y, lengths = first_batch(pretraining if which == "pretraining" else finetuning, 128, "cuda")
    assert lengths.max() < 127  # the cut removes positions
    model = fresh_model(variant, pretraining.vocab_size, "cuda")
    _, padded_loss = model(x, y)
    padded_loss.backward()
    padded = gradients(model)
    model.zero_grad(set_to_none=True)
    cut_loss = Trainer(model, None, None, TrainerConfig(device="cuda", precision="fp32")).loss(
        x, y, lengths, backward=True)
    assert cut_loss.item() == pytest.approx(padded_loss.item(), rel=1e-5)
    assert relative_error(gradients(model), padded) < 1e-4


@pytest.mark.parametrize("variant", VARIANTS)
def test_trainer_steps_on_the_gpu_follow_those_on_the_cpu(variant):
    pretraining, _ = real_datasets()
    batches = [first_batch(pretraining, 32, "cpu", seed) for seed in range(3)]
    size = dict(n_layer=2, n_head=4, n_embd=64)
    runs = {}
    for device in ["cpu", "cuda"]:
        model = fresh_model(variant, pretraining.vocab_size, device, **size)
        trainer = Trainer(model, None, None, TrainerConfig(device=device, precision="fp32", learning_rate=1e-3,
                                                           lr_decay=True, warmup_tokens=100, final_tokens=100_000))
        optimizer = trainer.optimizer()
        losses = [trainer.step(optimizer, x, y, lengths)[0].item() for x, y, lengths in batches]
        runs[device] = losses, {name: value.cpu() for name, value in model.state_dict().items()}
    (cpu_losses, cpu_params), (gpu_losses, gpu_params) = runs["cpu"], runs["cuda"]
    assert gpu_losses == pytest.approx(cpu_losses, rel=1e-5)
    initial = fresh_model(variant, pretraining.vocab_size, "cpu", **size).state_dict()
    for name, value in cpu_params.items():
        # the key bias cannot change the attention (softmax ignores a constant per row): its
        # gradient is rounding noise, which Adam turns into steps of the learning rate's size
        if name.endswith("key.bias"):
            continue
        assert torch.allclose(gpu_params[name], value, rtol=1e-4, atol=1e-5), name
        if not name.endswith(("mask", "rope_cache")) and not torch.equal(value, initial[name]):
            assert not torch.equal(gpu_params[name], initial[name]), name


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_training_loop_waits_on_the_gpu_only_to_read_its_losses(variant, monkeypatch):
    pretraining, _ = real_datasets()
    pretraining.data, pretraining.documents, pretraining.lengths = (
        pretraining.data[:300], pretraining.documents[:300], pretraining.lengths[:300])
    reads = []
    real_read = Trainer.read

    def read_allowing_a_wait(self, losses):
        torch.cuda.set_sync_debug_mode(0)
        try:
            reads.append(real_read(self, losses))
            return reads[-1]
        finally:
            torch.cuda.set_sync_debug_mode("error")

    monkeypatch.setattr(Trainer, "read", read_allowing_a_wait)
    monkeypatch.setattr(training_log, "LOSS_READ_STEPS", 4)
    model = fresh_model(variant, pretraining.vocab_size, "cuda", n_layer=2, n_head=4, n_embd=64)
    config = TrainerConfig(max_epochs=2, batch_size=32, learning_rate=1e-3, lr_decay=True, warmup_tokens=100,
                           final_tokens=100_000, device="cuda")
    torch.cuda.set_sync_debug_mode("error")  # any other wait on the GPU raises
    try:
        metrics = Trainer(model, pretraining, None, config).train()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert [len(r) for r in reads] == [4, 4, 2] * 2  # 10 steps an epoch: every 4, and at the end
    assert len(metrics) == 20 and metrics[-1]["loss"] < metrics[0]["loss"]


def sharp_model(variant, device):
    """A random model with large weights: logits far apart, so greedy choices are clear."""
    model = fresh_model(variant, 60, device, n_layer=2, n_head=4, n_embd=64)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.15)
    return model.eval()


@pytest.mark.parametrize("variant", VARIANTS)
def test_batched_cached_decoding_on_the_gpu_equals_sample(variant):
    model = sharp_model(variant, "cuda")
    generator = torch.Generator().manual_seed(1)
    lengths = [3, 20, 20, 20, 57, 95, 96, 97, 110]  # the last ones outgrow the context: sample() crops them
    prompts = [torch.randint(2, 60, (n,), generator=generator).cuda() for n in lengths]
    completions = greedy_decode(model, prompts, 32)
    for prompt, completion in zip(prompts, completions):
        assert torch.equal(completion, sample(model, prompt[None], 32)[0])
    assert len({tuple(c[-32:].tolist()) for c in completions}) > 4


@pytest.mark.parametrize("variant", VARIANTS)
def test_decoding_on_the_gpu_waits_on_it_only_to_read_the_completions(variant):
    model = sharp_model(variant, "cuda")
    generator = torch.Generator().manual_seed(1)
    prompts = [torch.randint(2, 60, (n,), generator=generator).cuda() for n in [3, 20, 20, 57, 110]]
    torch.cuda.set_sync_debug_mode("error")  # any wait on the GPU raises
    try:
        completions = greedy_decode(model, prompts, 32)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert on_host(completions) == [completion.tolist() for completion in completions]
