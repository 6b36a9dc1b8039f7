"""
Are reruns bit-identical here? Runs one small pretraining N times, and K times kills it with
SIGKILL at a random moment and resumes it (or, killed before its first checkpoint, runs it
again), then counts how many final params files equal the first run's, tensor for tensor.
Nothing is set in the environment: what it measures is the program's own promise.

    python bench/reruns.py wiki.txt --reruns 20 --kills 10
"""

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def command(corpus, params, epochs, *extra):
    return [sys.executable, str(ROOT / "src" / "run.py"), "pretrain", "vanilla", str(corpus),
            "--writing_params_path", str(params), "--max_epochs", str(epochs), "--n_layer", "2",
            "--n_head", "8", "--n_embd", "128", "--batch_size", "8", "--learning_rate", "1e-3",
            "--dropout", "0.1", "--checkpoint_every", "0", "--device", "cpu", *extra]


def run(arguments):
    result = subprocess.run(arguments, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"reruns.py: {' '.join(arguments)} failed:\n{result.stderr[-2000:]}")


def same_params(path_a, path_b):
    a, b = torch.load(path_a, weights_only=True), torch.load(path_b, weights_only=True)
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def killed_and_resumed(corpus, params, epochs, seconds, rng):
    """Kill a run at a random moment of its usual length, then finish it: whatever the moment."""
    moment = rng.uniform(0.5, seconds)
    child = subprocess.Popen(command(corpus, params, epochs), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(moment)
    child.kill()
    child.wait()
    if params.exists():  # it finished before the kill
        return moment, "finished"
    resume = Path(f"{params}.checkpoint").exists()  # none yet: killed in its first epoch
    run(command(corpus, params, epochs, *(["--resume"] if resume else [])))
    return moment, "resumed" if resume else "run again"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", help="the pretraining text; its first --characters characters are used")
    parser.add_argument("--characters", type=int, default=40_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--reruns", type=int, default=20)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        corpus = folder / "corpus.txt"
        corpus.write_text(Path(args.corpus).read_text(encoding="utf-8")[:args.characters], encoding="utf-8")
        first = folder / "first.params"
        start = time.perf_counter()
        run(command(corpus, first, args.epochs))
        seconds = time.perf_counter() - start
        print(f"first run: {seconds:.1f} s")
        identical = 0
        for index in range(args.reruns):
            params = folder / f"rerun{index}.params"
            run(command(corpus, params, args.epochs))
            identical += same_params(first, params)
            params.unlink()
        print(f"reruns identical to the first: {identical} of {args.reruns}")
        identical = 0
        for index in range(args.kills):
            params = folder / f"killed{index}.params"
            moment, how = killed_and_resumed(corpus, params, args.epochs, seconds, rng)
            same = same_params(first, params)
            identical += same
            print(f"  killed at {moment:.1f} s: {how}, {'identical' if same else 'DIFFERENT'}")
            params.unlink()
        print(f"killed and resumed, identical to the first: {identical} of {args.kills}")


if __name__ == "__main__":
    main()
