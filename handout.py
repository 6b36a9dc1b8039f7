"""
The main job: runs the handout's whole sequence of commands (parts 2(d), 2(f), 2(g) and the
London baseline) in order, writes every output under the handout's file names, ends with a
table of dev accuracies beside the reference figures, and writes RESULTS.md: that table,
the training curves, and the analysis of the best run (what part 3 of the handout asks).

    python handout.py                  # the handout's run on a GPU; the CPU recipe on a CPU
    python handout.py --length full
    python handout.py --seeds 0 1 2    # the sequence once per seed; accuracies as mean ± std

The full run is the handout's (650 pretraining epochs per variant): hours on a GPU of 2021,
days on a CPU. On a CPU the default is the CPU recipe instead: the same commands with a few
flags added (a smaller model, fewer epochs, smaller batches, no pretraining dropout, a
schedule that ends with the run), chosen by the sweep in BENCHMARKS.md as what pretrains
furthest in about 22 minutes of 2 cores. That is measured to be too little pretraining to
lift dev accuracy; its table says which recipe ran. The first seed's outputs go to the top
level (what collect_submission.sh packs); each further seed's to runs/seed-N/.
"""

import argparse
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

# The CPU recipe: flags added to the handout's commands, per kind of step ("model": every
# command that builds the model). Chosen on birth_dev.tsv by bench/recipe_sweep.py; every
# setting tried, with its cost and accuracy, is in BENCHMARKS.md ("A CPU recipe"). The data
# loader's workers cost more than they save for so small a model on 2 cores.
CPU_RECIPE = {
    "model": ["--n_layer", "2", "--n_head", "8", "--n_embd", "128"],
    "pretrain": ["--max_epochs", "60", "--batch_size", "8", "--learning_rate", "1e-3", "--dropout", "0",
                 "--cosine_epochs", "60", "--num_workers", "0"],
    "finetune": ["--num_workers", "0"],
    "finetune from pretrained": ["--num_workers", "0"],
}
REFERENCE = {  # run: (handout's answer, a public 2021 run), dev accuracy in percent
    "London baseline": ("5.0", "5.0"),
    "vanilla, no pretraining": ("1.0", "1.4"),
    "vanilla, pretrain + finetune": ("30 (>= 10 expected)", "23.0"),
    "synthesizer, pretrain + finetune": ("9.8 (>= 5 on test required)", "14.4"),
}
OUTPUT_FLAGS = ("--writing_params_path", "--reading_params_path", "--outputs_path")
RESULTS_FOLDER = Path("results")


def handout_steps():
    """(table row or None, the command's arguments, kind of training or None) in the handout's order."""
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


def in_folder(arguments, folder):
    """The same command with its params and predictions files in folder (the data stay where they are)."""
    if folder == Path("."):
        return list(arguments)
    return [str(folder / value) if flag in OUTPUT_FLAGS else value
            for flag, value in zip([None, *arguments], arguments)]


def run_step(arguments, check=True):
    """Run `python ARGUMENTS`, showing the command and its output; returns (stdout, seconds)."""
    print(f"\n$ python {shlex.join(arguments)}", flush=True)
    started = time.time()
    # stderr (the progress bar) goes straight to the terminal; stdout is echoed and kept
    process = subprocess.Popen([sys.executable, *arguments], stdout=subprocess.PIPE, text=True)
    output = []
    try:
        for line in process.stdout:
            print(line, end="", flush=True)
            output.append(line)
    except KeyboardInterrupt:  # the step got the Ctrl-C too: let it keep its checkpoint first
        process.wait()
        sys.exit("\nhandout.py: interrupted. To go on, run the step above again with --resume, then the rest")
    if process.wait() != 0 and check:
        sys.exit(f"handout.py: this step failed (exit status {process.returncode}); the outputs before it are kept")
    return "".join(output), time.time() - started, process.returncode


def accuracy(output):
    match = re.search(r"^Correct: \S+ out of \S+: (\S+)%$", output, re.MULTILINE)
    return float(match.group(1)) if match else None


def recipe_flags(recipe, training):
    """What a recipe adds to a src/run.py command: the model's flags, and the training's (None: evaluate)."""
    return recipe.get("model", []) + (recipe.get(training, []) if training else [])


def describe(recipe):
    if not recipe:
        return "the handout's full run (650 pretraining epochs per variant, the handout's model and flags)"
    return "the CPU recipe, the handout's commands with these flags added: " + "; ".join(
        f"{'every command' if kind == 'model' else kind} `{' '.join(flags)}`" for kind, flags in recipe.items())


def run_sequence(seed, folder, recipe, device):
    """The handout's sequence once, with the recipe's flags; returns ({table row: dev accuracy}, seconds)."""
    folder.mkdir(parents=True, exist_ok=True)
    results, seconds = {}, 0.0
    for row, arguments, training in handout_steps():
        extra = []
        if arguments[0] == "src/run.py":
            extra += recipe_flags(recipe, training)
            if seed != 0 and training is not None:
                extra += ["--seed", str(seed)]
            if device != "auto":
                extra += ["--device", device]
        output, step_seconds, _ = run_step(in_folder(arguments, folder) + extra)
        seconds += step_seconds
        if row is not None:
            results[row] = accuracy(output)
    return results, seconds


def summary(values):
    """'mean ± std' over seeds (sample standard deviation), or the one value."""
    values = [v for v in values if v is not None]
    if not values:
        return "?"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def accuracy_table(results_by_seed):
    header = ("run", "this run", "handout's answer", "a public 2021 run")
    rows = [(name, summary([results[name] for results in results_by_seed]), *REFERENCE[name]) for name in REFERENCE]
    return header, rows


def text_table(header, rows):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(r, widths)).rstrip()
                     for r in [header, ["-" * w for w in widths], *rows])


def markdown_table(header, rows):
    return "\n".join("| " + " | ".join(r) + " |" for r in [header, ["---"] * len(header), *rows])


def make_figures():
    """Training curves from the metrics logs; returns the figure paths written, if matplotlib is there."""
    figures = []
    for prefix, logs in [("pretrain", ["vanilla.pretrain.params.metrics.jsonl",
                                       "synthesizer.pretrain.params.metrics.jsonl"]),
                         ("finetune", ["vanilla.model.params.metrics.jsonl", "vanilla.finetune.params.metrics.jsonl",
                                       "synthesizer.finetune.params.metrics.jsonl"])]:
        output, _, status = run_step(["src/plot.py", *logs, "--out_dir", str(RESULTS_FOLDER), "--prefix", prefix],
                                     check=False)
        if status == 0:
            figures += [Path(line) for line in output.split()]
    return figures


def analyse_best(results, recipe):
    """Analysis of the pretrained model with the best dev accuracy; returns (variant, report text)."""
    variant = max(["vanilla", "synthesizer"], key=lambda v: results[f"{v}, pretrain + finetune"] or 0.0)
    json_path = RESULTS_FOLDER / f"{variant}.pretrain.dev.analysis.json"
    output, _, _ = run_step(["src/analyze.py", variant, "wiki.txt", "--reading_params_path",
                             f"{variant}.finetune.params", "--eval_corpus_path", "birth_dev.tsv",
                             "--predictions_path", f"{variant}.pretrain.dev.predictions",
                             "--finetune_corpus_path", "birth_places_train.tsv", "--json_path", str(json_path),
                             *recipe_flags(recipe, None)])
    return variant, output


def write_results(header, rows, seeds, recipe, minutes, device_name, figures, analysed_variant, analysis):
    sentence = describe(recipe)[0].upper() + describe(recipe)[1:]
    length = (f"**{sentence}.** A smaller model, pretrained for far less than the "
              f"handout's: its accuracies are what this much pretraining gives (BENCHMARKS.md, \"A CPU recipe\", "
              f"has the sweep behind it), not the handout's figures; `python handout.py --length full` on a GPU "
              f"makes those." if recipe
              else f"{sentence}.")
    figure_lines = "\n\n".join(f"![{path.stem}]({path.as_posix()})" for path in figures) or \
        "(no figures: matplotlib is not installed; `pip install matplotlib`, then run `python handout.py` again)"
    text = f"""# Results

Generated by `python handout.py{' --seeds ' + ' '.join(map(str, seeds)) if seeds != [0] else ''}` \
on {device_name}, {time.strftime('%Y-%m-%d')}, in {minutes:.1f} minutes. Do not edit by hand.

{length}

## Dev accuracy (%, 500 names{', mean ± standard deviation over seeds ' + ', '.join(map(str, seeds)) if len(seeds) > 1 else ''})

{markdown_table(header, rows)}

## Training curves

{figure_lines}

## What the model knows: analysis of the {analysed_variant} pretrain + finetune run (first seed)

`python src/analyze.py` on its dev predictions (it also writes every figure, question by question,
to `{RESULTS_FOLDER.as_posix()}/{analysed_variant}.pretrain.dev.analysis.json`, which is not committed):

```
{analysis.strip()}
```
"""
    Path("RESULTS.md").write_text(text, encoding="utf-8")


def main():
    parser = argparse.ArgumentParser(description="Run the handout's whole command sequence and tabulate it.")
    parser.add_argument("--length", choices=["auto", "full", "cpu"], default="auto",
                        help="full: the handout's run; cpu: the CPU recipe (see CPU_RECIPE); auto: full on a "
                             "CUDA GPU, cpu otherwise")
    parser.add_argument("--device", default="auto", help="passed to every src/run.py command")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="run the sequence once per seed")
    args = parser.parse_args()
    has_gpu = torch.cuda.is_available() if args.device == "auto" else args.device.startswith("cuda")
    recipe = CPU_RECIPE if args.length == "cpu" or (args.length == "auto" and not has_gpu) else {}
    print(f"Running {describe(recipe)}.")

    results_by_seed, seconds = [], 0.0
    for index, seed in enumerate(args.seeds):
        folder = Path(".") if index == 0 else Path("runs") / f"seed-{seed}"
        results, sequence_seconds = run_sequence(seed, folder, recipe, args.device)
        results_by_seed.append(results)
        seconds += sequence_seconds

    RESULTS_FOLDER.mkdir(exist_ok=True)
    figures = make_figures()
    analysed_variant, analysis = analyse_best(results_by_seed[0], recipe)
    header, rows = accuracy_table(results_by_seed)
    device_name = torch.cuda.get_device_name() if has_gpu else f"a CPU ({torch.get_num_threads()} threads)"
    write_results(header, rows, args.seeds, recipe, seconds / 60, device_name, figures, analysed_variant, analysis)

    seeds = f", seeds {' '.join(map(str, args.seeds))}" if len(args.seeds) > 1 else ""
    print(f"\nDev accuracy (%) of {describe(recipe)}{seeds}, {seconds / 60:.1f} minutes of training and "
          f"evaluation:")
    print(text_table(header, rows))
    print("\nRESULTS.md: this table, the training curves and the analysis of the best pretrained run.")


if __name__ == "__main__":
    main()
