"""
Throughput of the fast path against the plain path, on the real data, in one run.

    python bench/bench.py                 # a few steps of each, on CUDA if present
    python bench/bench.py --steps 5 --compile

The plain path is the original's way of computing the same function: attention written out
(scores materialised, masked, softmaxed, dropped out, times values), full 127-position
batches, one example at a time through the data loader, and evaluation by sample() one
question at a time, all in fp32. The fast path is what src/ does. For pretrain and finetune
of each variant, and for evaluate, it prints ms per step, positions per second (padded: all
127 per row; real: non-PAD targets), achieved TFLOP/s and the fraction of a measured matmul
peak, and the projected wall time of the handout's full run, then the ratios.
"""

import argparse
import math
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
import attention  # noqa: E402
import trainer as trainer_module  # noqa: E402
from dataset import MASK_CHAR, CharCorruptionDataset, NameDataset  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402
from run import BLOCK_SIZE, DECODE_STEPS, HYPERPARAMETERS  # noqa: E402
from trainer import Trainer, TrainerConfig, autocast_dtype, resolve_device  # noqa: E402
from utils import greedy_decode, sample, set_seed  # noqa: E402

FULL_RUN_EPOCHS = {"pretrain": 650, "finetune": 75, "finetune from pretrained": 10}


def plain_vanilla_forward(self, x, layer_cache=None):
    B, T, C = x.shape
    q, k, v = (attention.split_heads(layer(x), self.n_head) for layer in (self.query, self.key, self.value))
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
    weights = scores.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf")).softmax(dim=-1)
    weights = F.dropout(weights, self.attn_pdrop, self.training)
    return self.resid_drop(self.proj(attention.merge_heads(weights @ v)))


def plain_synthesizer_forward(self, x, layer_cache=None):
    B, T, C = x.shape
    hidden = attention.split_heads(F.relu(self.w1(x)), self.n_head)
    v = attention.split_heads(self.value(x), self.n_head)
    scores = hidden @ self.w2[:, :T] + self.b2[:T]
    weights = scores.masked_fill(self.mask[:, :, :T, :T] == 0, -1e10).softmax(dim=-1)
    weights = F.dropout(weights, self.attn_pdrop, self.training)
    return self.resid_drop(self.proj(attention.merge_heads(weights @ v)))


@contextmanager
def plain_path():
    """Swap in the original's way of computing: explicit attention, no trimming of PAD."""
    saved = (attention.CausalSelfAttention.forward, attention.SynthesizerAttention.forward,
             trainer_module.trim_padding)
    attention.CausalSelfAttention.forward = plain_vanilla_forward
    attention.SynthesizerAttention.forward = plain_synthesizer_forward
    trainer_module.trim_padding = lambda x, y: (x, y)
    try:
        yield
    finally:
        (attention.CausalSelfAttention.forward, attention.SynthesizerAttention.forward,
         trainer_module.trim_padding) = saved


class OneAtATime(Dataset):
    """Hides a dataset's batched __getitems__, so the loader builds batches example by example."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, idx):
        return self.dataset[idx]


def synchronize(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(device):
    """Measured TFLOP/s of a large matrix product in the precision training uses there."""
    dtype = autocast_dtype("auto", device) or torch.float32
    n = 4096 if device.startswith("cuda") else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    synchronize(device)
    repeats = 50 if device.startswith("cuda") else 5
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * n ** 3 * repeats / (time.perf_counter() - started) / 1e12


def training_flops_per_position(config, length):
    """Forward and backward (3x forward) FLOPs of one position in a sequence of `length`."""
    d, layers = config.n_embd, config.n_layer
    attention_projections = 4 * d * d if config.variant == "vanilla" else 3 * d * d
    matmuls = layers * (attention_projections + 8 * d * d) + d * config.vocab_size
    score_and_mix = layers * 2 * length * d  # q.k (or hidden.w2) and weights.v, all heads
    return 3 * 2 * (matmuls + score_and_mix)


def measure_training(variant, function, datasets, plain, steps, device, compile_model):
    set_seed(0)
    pretrain_dataset, finetune_dataset = datasets
    dataset = pretrain_dataset if function == "pretrain" else finetune_dataset
    if plain:
        dataset = OneAtATime(dataset)
    hyper = HYPERPARAMETERS[function]
    gpt_config = GPTConfig(pretrain_dataset.vocab_size, BLOCK_SIZE, variant=variant)
    model = GPT(gpt_config)
    config = TrainerConfig(batch_size=hyper["batch_size"], learning_rate=hyper["learning_rate"], lr_decay=True,
                           warmup_tokens=512 * 20, final_tokens=200 * len(pretrain_dataset) * BLOCK_SIZE,
                           device=device, precision="fp32" if plain else "auto",
                           compile=compile_model and not plain)
    trainer = Trainer(model, dataset, None, config)
    optimizer = trainer.optimizer()
    batches = iter(trainer.loader(dataset))
    model.train()
    trainer.step(optimizer, *next(batches))  # warm-up: allocation, kernel choice, compilation
    seconds, padded, real, flops = 0.0, 0, 0, 0.0
    for _ in range(steps):
        x, y = next(batches)
        synchronize(device)
        started = time.perf_counter()
        trainer.step(optimizer, x, y)
        synchronize(device)
        seconds += time.perf_counter() - started
        padded += y.numel()
        real += int((y != 0).sum())
        length = y.size(1) if plain else int(trainer_module.trim_padding(x, y)[1].size(1))
        flops += training_flops_per_position(gpt_config, length) * y.size(0) * length
    steps_per_epoch = math.ceil(len(dataset) / config.batch_size)
    return dict(ms_per_step=1000 * seconds / steps, padded_per_s=padded / seconds, real_per_s=real / seconds,
                tflops=flops / seconds / 1e12, seconds_per_epoch=seconds / steps * steps_per_epoch)


def measure_evaluate(pretrain_dataset, questions, plain, device, plain_questions):
    set_seed(0)
    model = GPT(GPTConfig(pretrain_dataset.vocab_size, BLOCK_SIZE)).to(device).eval()
    prompts = [torch.tensor([pretrain_dataset.stoi[c] for c in q + MASK_CHAR], device=device) for q in questions]
    if plain:
        prompts = prompts[:plain_questions]
    greedy_decode(model, prompts[:8], DECODE_STEPS)  # warm-up
    synchronize(device)
    started = time.perf_counter()
    if plain:
        for prompt in prompts:
            sample(model, prompt[None], DECODE_STEPS)
    else:
        greedy_decode(model, prompts, DECODE_STEPS)
    synchronize(device)
    seconds = time.perf_counter() - started
    return dict(seconds_per_500=seconds / len(prompts) * 500)


def main():
    parser = argparse.ArgumentParser(description="Fast path against plain path, on the real data.")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per configuration")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile the fast path (slow to start)")
    parser.add_argument("--plain_questions", type=int, default=40,
                        help="questions the plain evaluate decodes one by one (scaled to 500)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    wiki = (ROOT / "wiki.txt").read_text(encoding="utf-8")
    pretrain_dataset = CharCorruptionDataset(wiki, BLOCK_SIZE)
    finetune_dataset = NameDataset(pretrain_dataset, (ROOT / "birth_places_train.tsv").read_text(encoding="utf-8"))
    questions = [line.split("\t")[0] for line in (ROOT / "birth_dev.tsv").read_text(encoding="utf-8").splitlines()]
    peak = matmul_peak(device)
    name = torch.cuda.get_device_name() if device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; measured matmul peak {peak:.2f} TFLOP/s; torch {torch.__version__}")

    rows, full_run = [], {"fast": 0.0, "plain": 0.0}
    for variant in ["vanilla", "synthesizer"]:
        for function in ["pretrain", "finetune"]:
            for path in ["fast", "plain"]:
                with plain_path() if path == "plain" else nullcontext():
                    m = measure_training(variant, function, (pretrain_dataset, finetune_dataset), path == "plain",
                                         args.steps, device, args.compile)
                epochs = FULL_RUN_EPOCHS[function]
                if function == "finetune":  # from scratch (vanilla only) and after pretraining
                    epochs = FULL_RUN_EPOCHS["finetune from pretrained"] + (75 if variant == "vanilla" else 0)
                m["full_run_s"] = m["seconds_per_epoch"] * epochs
                full_run[path] += m["full_run_s"]
                rows.append((f"{function} {variant}", path, m))
                print_row(rows[-1], peak, flush=True)
    for path in ["fast", "plain"]:
        with plain_path() if path == "plain" else nullcontext():
            m = measure_evaluate(pretrain_dataset, questions, path == "plain", device, args.plain_questions)
        full_run[path] += 6 * m["seconds_per_500"]  # six evaluations of about 500 questions
        rows.append(("evaluate 500 dev", path, m))
        print_row(rows[-1], peak, flush=True)

    print("\nfast / plain speed-up:")
    for (label, _, fast), (_, _, plain) in zip(rows[::2], rows[1::2]):
        key = "ms_per_step" if "ms_per_step" in fast else "seconds_per_500"
        print(f"  {label:<22} {plain[key] / fast[key]:5.2f}x")
    print(f"projected handout sequence (650+650 pretraining epochs, all finetunes, six evaluations): "
          f"fast {format_time(full_run['fast'])}, plain {format_time(full_run['plain'])}, "
          f"{full_run['plain'] / full_run['fast']:.2f}x")


def format_time(seconds):
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"


def print_row(row, peak, flush=False):
    label, path, m = row
    if "ms_per_step" in m:
        print(f"{label:<22} {path:<5} {m['ms_per_step']:9.1f} ms/step  {m['padded_per_s']:9.0f} pos/s padded  "
              f"{m['real_per_s']:9.0f} pos/s real  {m['tflops']:7.3f} TFLOP/s ({100 * m['tflops'] / peak:4.1f}% of peak)"
              f"  full run {format_time(m['full_run_s'])}", flush=flush)
    else:
        print(f"{label:<22} {path:<5} {m['seconds_per_500']:9.2f} s per 500 questions", flush=flush)


if __name__ == "__main__":
    main()
