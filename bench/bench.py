"""
Training and evaluation speed of three paths through the same function, on the real data, in one run.

    python bench/bench.py                 # every configuration, a few steps each, then whole epochs
    python bench/bench.py --steps 5 --epochs 0 --compile

- plain: the original's way of computing (run.py --original_computation): attention written
  out (GPTConfig.fused_attention False: scores materialised, masked, softmaxed, dropped out,
  times values), every batch at all 127 positions (TrainerConfig.batch_rows "padded"), built
  one example at a time by a DataLoader with the original's 4 worker processes (data_loader),
  and evaluation by sample() one question at a time.
- trimmed: fused attention, the whole batch cut after its longest row (batch_rows "trimmed":
  the path before rows ran in length groups).
- grouped: what src/ does by default: rows in groups of similar length, each cut after its
  longest row.

For pretrain and finetune of each variant (--variants: all four by default), in fp32 and in
bf16 autocast, it prints ms per step, positions per second (padded: all 127 of each row; real:
the non-PAD targets), achieved TFLOP/s and its fraction of a measured matrix-product peak in
the same precision; then, from a profile of one more step, how the step's time splits into
matrix products (and their own TFLOP/s against that peak), random numbers, and the rest.
Then it times whole epochs as run.py trains them (batches made on the device, losses read
every few steps) for the plain path and the grouped one in each precision, and decoding of
the 500 dev questions.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
import allocator  # noqa: E402

if __name__ == "__main__":
    allocator.restart_with_fast_allocator()  # every path measured with the allocator run.py trains with

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

import run  # noqa: E402
from dataset import BLOCK_SIZE, MASK_CHAR, CharCorruptionDataset, NameDataset  # noqa: E402
from device import CPU, kind_of, resolve_device  # noqa: E402
from model import GPT, VARIANTS, GPTConfig  # noqa: E402
from params import metrics_path  # noqa: E402
from run import HYPERPARAMETERS, ORIGINAL_TRAINING, WARMUP_TOKENS, final_tokens  # noqa: E402
from trainer import Trainer, TrainerConfig, row_groups  # noqa: E402
from utils import DECODE_STEPS, greedy_decode, sample, set_seed  # noqa: E402

# Each path as options of the code: the trainer's here, and the model's attention written out for the plain one
TRAINER_OPTIONS = {"plain": ORIGINAL_TRAINING, "trimmed": dict(batch_rows="trimmed"), "grouped": {}}


def synchronize(device):
    kind_of(device).synchronize()


def matmul_peak(device, dtype):
    """Measured TFLOP/s of a large square matrix product in dtype."""
    on_gpu = kind_of(device) is not CPU
    n = 4096 if on_gpu else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    synchronize(device)
    repeats = 50 if on_gpu else 10
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * n ** 3 * repeats / (time.perf_counter() - started) / 1e12


def training_flops_per_position(model, length):
    """
    Forward and backward (3x forward) FLOPs of one position in a sequence of `length` (for the
    perceiver, an upper bound: its bottleneck layers run at most bottleneck_dim positions).
    """
    d, layers = model.tok_emb.embedding_dim, model.n_layer
    matmuls = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))  # one MAC a weight
    score_and_mix = layers * 2 * length * d  # q.k (or hidden.w2) and weights.v, all heads
    return 3 * 2 * (matmuls + score_and_mix)


def trainer_for(variant, function, datasets, path_name, precision, device, compile_model):
    pretrain_dataset, finetune_dataset = datasets
    dataset = pretrain_dataset if function == "pretrain" else finetune_dataset
    hyper = HYPERPARAMETERS[function]
    model = GPT(GPTConfig(pretrain_dataset.vocab_size, BLOCK_SIZE, variant=variant,
                          fused_attention=path_name != "plain"))
    config = TrainerConfig(max_epochs=1, batch_size=hyper["batch_size"], learning_rate=hyper["learning_rate"],
                           lr_decay=True, warmup_tokens=WARMUP_TOKENS, final_tokens=final_tokens(pretrain_dataset),
                           device=device, precision=precision, compile=compile_model and path_name != "plain",
                           **TRAINER_OPTIONS[path_name])
    return Trainer(model, dataset, None, config)


def measure_training(variant, function, datasets, path_name, precision, steps, device, compile_model):
    set_seed(0)
    trainer = trainer_for(variant, function, datasets, path_name, precision, device, compile_model)
    optimizer = trainer.optimizer()
    batches = iter(trainer.epoch_batches(trainer.train_dataset, trainer.data_generator))
    trainer.model.train()
    trainer.step(optimizer, *next(batches))  # warm-up: allocation, kernel choice, compilation
    seconds, padded, real, computed, flops = 0.0, 0, 0, 0, 0.0
    for _ in range(steps):
        x, y, lengths = next(batches)
        synchronize(device)
        started = time.perf_counter()
        trainer.step(optimizer, x, y, lengths)
        synchronize(device)
        seconds += time.perf_counter() - started
        padded += y.numel()
        real += int((y != 0).sum())
        for rows, length in row_groups(trainer.config.batch_rows, lengths.tolist(), y.size(1), trainer.group_cost):
            computed += len(rows) * length
            flops += training_flops_per_position(trainer.model, length) * len(rows) * length
    return dict(ms_per_step=1000 * seconds / steps, padded_per_s=padded / seconds, real_per_s=real / seconds,
                computed=computed / padded, tflops=flops / seconds / 1e12,
                **step_breakdown(trainer, optimizer, next(batches), device))


MATMULS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_scaled_dot_product_flash_attention_for_cpu",
           "aten::_scaled_dot_product_flash_attention_for_cpu_backward"}
RANDOM = {"aten::bernoulli_", "aten::random_", "aten::uniform_", "aten::normal_"}


def step_breakdown(trainer, optimizer, batch, device):
    """
    One step under the profiler: the shares of its operators' own time that go to matrix
    products (fused attention counted with them) and to drawing random numbers, and the matrix
    products' TFLOP/s (of the FLOPs the profiler counts: mm, addmm, bmm).
    """
    activity = kind_of(device).profiler_activity
    with profile(activities=list(dict.fromkeys([ProfilerActivity.CPU, activity])), with_flops=True) as profiler:
        trainer.step(optimizer, *batch)
        synchronize(device)
    events = profiler.key_averages()
    on_device = activity != ProfilerActivity.CPU  # the profiler saw the device's own time
    own = (lambda e: e.self_device_time_total) if on_device else (lambda e: e.self_cpu_time_total)  # microseconds
    total = sum(own(e) for e in events)
    matmul = sum(own(e) for e in events if e.key in MATMULS)
    matmul_flops = sum(e.flops for e in events if e.key in MATMULS)
    return dict(matmul_share=matmul / total, random_share=sum(own(e) for e in events if e.key in RANDOM) / total,
                matmul_tflops=matmul_flops / max(matmul, 1) / 1e6)


def one_epoch(function, variant, path_name, precision):
    """Train one epoch through run.py on the path named, plain or grouped (in this process); print its seconds."""
    with tempfile.TemporaryDirectory() as folder:
        params = Path(folder) / "bench.params"
        finetune = ["--finetune_corpus_path", str(ROOT / "birth_places_train.tsv")] if function == "finetune" else []
        plain = ["--original_computation"] if path_name == "plain" else []
        run.main([function, variant, str(ROOT / "wiki.txt"), "--writing_params_path", str(params), "--max_epochs", "1",
                  "--precision", precision, *finetune, *plain])
        last = Path(metrics_path(params)).read_text().splitlines()[-1]
    print(f"epoch seconds: {json.loads(last)['wall_time']}")


def measure_epoch(function, variant, path_name, precision):
    """
    Seconds of one epoch as run.py trains it (making its batches, every step, from its metrics
    log), in a fresh process, so that no path inherits another's memory or threads.
    """
    result = subprocess.run([sys.executable, __file__, "--one_epoch", function, variant, path_name, precision],
                            capture_output=True, text=True, check=True)
    return float(result.stdout.split("epoch seconds: ")[-1])


def measure_evaluate(pretrain_dataset, questions, plain, device, plain_questions):
    set_seed(0)
    model = GPT(GPTConfig(pretrain_dataset.vocab_size, BLOCK_SIZE, fused_attention=not plain)).to(device).eval()
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


PATHS = list(TRAINER_OPTIONS)
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


def main():
    parser = argparse.ArgumentParser(description="Plain, trimmed and grouped paths on the real data.")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per configuration")
    parser.add_argument("--epochs", type=int, default=1, help="whole pretraining epochs timed per path (0: none)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        help="the variants measured")
    parser.add_argument("--compile", action="store_true", help="torch.compile the fast paths (slow to start)")
    parser.add_argument("--plain_questions", type=int, default=40,
                        help="questions the plain evaluate decodes one by one (scaled to 500)")
    parser.add_argument("--one_epoch", nargs=4, metavar=("FUNCTION", "VARIANT", "PATH", "PRECISION"),
                        help="(used by the epoch timing) train one epoch through run.py and print its seconds")
    args = parser.parse_args()
    if args.one_epoch:
        return one_epoch(*args.one_epoch)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    wiki = (ROOT / "wiki.txt").read_text(encoding="utf-8")
    pretrain_dataset = CharCorruptionDataset(wiki, BLOCK_SIZE)
    finetune_dataset = NameDataset(pretrain_dataset, (ROOT / "birth_places_train.tsv").read_text(encoding="utf-8"))
    datasets = (pretrain_dataset, finetune_dataset)
    questions = [line.split("\t")[0] for line in (ROOT / "birth_dev.tsv").read_text(encoding="utf-8").splitlines()]
    peaks = {name: matmul_peak(device, dtype) for name, dtype in PRECISIONS.items()}
    name = kind_of(device).table_name()
    # auto's choice for the handout's pretraining
    auto = trainer_for("vanilla", "pretrain", datasets, "grouped", "auto", device, False)
    default, why = auto.precision, auto.precision_reason
    print(f"device: {name}; torch {torch.__version__}; measured matmul peak fp32 {peaks['fp32']:.3f}, "
          f"bf16 {peaks['bf16']:.3f} TFLOP/s; default precision {default} ({why})")

    results = {}
    for variant in args.variants if args.steps else []:
        for function in ["pretrain", "finetune"]:
            for precision in PRECISIONS:
                for path_name in PATHS:
                    m = measure_training(variant, function, datasets, path_name, precision, args.steps, device,
                                         args.compile)
                    results[variant, function, precision, path_name] = m
                    print(f"{function:<8} {variant:<11} {precision} {path_name:<7} {m['ms_per_step']:8.0f} ms/step "
                          f"{m['padded_per_s']:7.0f} pos/s padded {m['real_per_s']:7.0f} real  computes "
                          f"{100 * m['computed']:3.0f}% of the padded positions  {m['tflops']:6.3f} TFLOP/s "
                          f"({100 * m['tflops'] / peaks[precision]:3.0f}% of the {precision} peak)", flush=True)
                    print(f"{'':<29} matrix products {100 * m['matmul_share']:3.0f}% of the step at "
                          f"{m['matmul_tflops']:6.3f} TFLOP/s ({100 * m['matmul_tflops'] / peaks[precision]:3.0f}% of "
                          f"the peak), random numbers {100 * m['random_share']:3.0f}%, the rest "
                          f"{100 * (1 - m['matmul_share'] - m['random_share']):3.0f}%", flush=True)
    print("\nspeed-up per step of grouped over plain / over trimmed:" if results else "")
    for variant, function, precision, _ in list(results)[::len(PATHS)]:
        ms = {p: results[variant, function, precision, p]["ms_per_step"] for p in PATHS}
        print(f"  {function:<8} {variant:<11} {precision}  {ms['plain'] / ms['grouped']:5.2f}x / "
              f"{ms['trimmed'] / ms['grouped']:5.2f}x", flush=True)

    if args.epochs:
        print(f"\none epoch through run.py (a fresh process each; best of {args.epochs}), against the plain path "
              f"in fp32:", flush=True)
        configurations = [("plain", "fp32"), ("grouped", "fp32"), ("grouped", "bf16")]
        for function in ["pretrain", "finetune"]:
            for variant in args.variants:
                seconds = {c: [] for c in configurations}
                for _ in range(args.epochs):  # interleaved, so that a slow spell of the machine hits all alike
                    for path_name, precision in configurations:
                        seconds[path_name, precision].append(measure_epoch(function, variant, path_name, precision))
                best = {c: min(times) for c, times in seconds.items()}
                best["grouped", "auto"] = best["grouped", default]
                for (path_name, precision), value in best.items():
                    print(f"  {function:<8} {variant:<11} {path_name:<7} {precision:<4} {value:7.1f} s  "
                          f"{best['plain', 'fp32'] / value:5.2f}x", flush=True)

    for path_name in ["grouped", "plain"]:
        m = measure_evaluate(pretrain_dataset, questions, path_name == "plain", device, args.plain_questions)
        print(f"evaluate 500 dev questions, {path_name}: {m['seconds_per_500']:.2f} s", flush=True)


def format_time(seconds):
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"


if __name__ == "__main__":
    main()
