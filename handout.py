"""
The main job: runs the handout's whole sequence of commands (parts 2(d), 2(f), 2(g) and the
London baseline) in order, writes every output under the handout's file names, and ends
with a table of dev accuracies beside the reference figures.

    python handout.py              # full length on a GPU; a shortened run on a CPU
    python handout.py --length full

The full run is the handout's (650 pretraining epochs per variant). A CPU cannot do that in
reasonable time, so there the default is a shortened run (fewer epochs, about 15 minutes on
2 cores) that exercises every step; its table says so plainly.
"""

import argparse
import re
import shlex
import subprocess
import sys
import time

import torch

# the handout's epochs are 650 (pretrain), 75 (finetune from scratch), 10 (finetune after pretraining)
SHORT_EPOCHS = {"pretrain": 2, "finetune": 3, "finetune from pretrained": 3}

REFERENCE = {  # run: (handout's answer, a public 2021 run), dev accuracy in percent
    "London baseline": ("5.0", "5.0"),
    "vanilla, no pretraining": ("1.0", "1.4"),
    "vanilla, pretrain + finetune": ("30 (>= 10 expected)", "23.0"),
    "synthesizer, pretrain + finetune": ("9.8 (>= 5 on test required)", "14.4"),
}


def handout_steps():
    """(table row or None, the command's arguments, epochs key or None) in the handout's order."""
    steps = [
        (None, ["src/run.py", "finetune", "vanilla", "wiki.txt", "--writing_params_path", "vanilla.model.params",
                "--finetune_corpus_path", "birth_places_train.tsv"], "finetune"),
        ("vanilla, no pretraining", ["src/run.py", "evaluate", "vanilla", "wiki.txt", "--reading_params_path",
                                     "vanilla.model.params", "--eval_corpus_path", "birth_dev.tsv",
                                     "--outputs_path", "vanilla.nopretrain.dev.predictions"], None),
        (None, ["src/run.py", "evaluate", "vanilla", "wiki.txt", "--reading_params_path", "vanilla.model.params",
                "--eval_corpus_path", "birth_test_inputs.tsv",
                "--outputs_path", "vanilla.nopretrain.test.predictions"], None),
    ]
    for variant in ["vanilla", "synthesizer"]:
        steps += [
            (None, ["src/run.py", "pretrain", variant, "wiki.txt",
                    "--writing_params_path", f"{variant}.pretrain.params"], "pretrain"),
            # the handout writes birthplaces_train.tsv once here; the file is birth_places_train.tsv
            (None, ["src/run.py", "finetune", variant, "wiki.txt", "--reading_params_path", f"{variant}.pretrain.params",
                    "--writing_params_path", f"{variant}.finetune.params",
                    "--finetune_corpus_path", "birth_places_train.tsv"], "finetune from pretrained"),
            (f"{variant}, pretrain + finetune",
             ["src/run.py", "evaluate", variant, "wiki.txt", "--reading_params_path", f"{variant}.finetune.params",
              "--eval_corpus_path", "birth_dev.tsv", "--outputs_path", f"{variant}.pretrain.dev.predictions"], None),
            (None, ["src/run.py", "evaluate", variant, "wiki.txt", "--reading_params_path", f"{variant}.finetune.params",
                    "--eval_corpus_path", "birth_test_inputs.tsv",
                    "--outputs_path", f"{variant}.pretrain.test.predictions"], None),
        ]
    steps.append(("London baseline", ["london_baseline.py", "--eval_corpus_path", "birth_dev.tsv"], None))
    return steps


def run_step(arguments, extra):
    command = [sys.executable, *arguments, *extra]
    print(f"\n$ python {shlex.join(arguments + extra)}", flush=True)
    started = time.time()
    # stderr (the progress bar) goes straight to the terminal; stdout is echoed and kept
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = []
    for line in process.stdout:
        print(line, end="", flush=True)
        output.append(line)
    if process.wait() != 0:
        sys.exit(f"handout.py: this step failed (exit status {process.returncode}); the outputs before it are kept")
    return "".join(output), time.time() - started


def accuracy(output):
    match = re.search(r"^Correct: \S+ out of \S+: (\S+)%$", output, re.MULTILINE)
    return f"{float(match.group(1)):.1f}" if match else "?"


def main():
    parser = argparse.ArgumentParser(description="Run the handout's whole command sequence and tabulate it.")
    parser.add_argument("--length", choices=["auto", "full", "short"], default="auto",
                        help="auto: full on a CUDA GPU, short on a CPU")
    parser.add_argument("--device", default="auto", help="passed to every src/run.py command")
    args = parser.parse_args()
    has_gpu = torch.cuda.is_available() if args.device == "auto" else args.device.startswith("cuda")
    short = args.length == "short" or (args.length == "auto" and not has_gpu)
    if short:
        print(f"No GPU: a shortened run ({SHORT_EPOCHS['pretrain']} pretraining epochs instead of 650, "
              f"{SHORT_EPOCHS['finetune']} finetuning epochs instead of 75 and 10). "
              "Its accuracies are not the handout's; run `python handout.py --length full` on a GPU for those.")

    results, total_time = {}, 0.0
    for row, arguments, epochs_key in handout_steps():
        extra = []
        if short and epochs_key is not None:
            extra += ["--max_epochs", str(SHORT_EPOCHS[epochs_key])]
        if args.device != "auto" and arguments[0] == "src/run.py":
            extra += ["--device", args.device]
        output, seconds = run_step(arguments, extra)
        total_time += seconds
        if row is not None:
            results[row] = accuracy(output)

    length = "SHORTENED run (fewer epochs: not comparable)" if short else "full-length run"
    print(f"\nDev accuracy (%), {length}, {total_time / 60:.1f} minutes in all:")
    header = ("run", "this run", "handout's answer", "a public 2021 run")
    rows = [(name, results[name], *REFERENCE[name]) for name in REFERENCE]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(r, widths)).rstrip())


if __name__ == "__main__":
    main()
