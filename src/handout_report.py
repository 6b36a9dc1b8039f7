"""
What handout.py reports once the steps have run: the table of dev accuracies, each model's
again with the first character of each gold place given, beside the reference figures
(printed, and in RESULTS.md with the training curves and the analysis of the best pretrained
run).
"""

import contextlib
import io
import shlex
import statistics
import time
from pathlib import Path

import analyze
from dataset import BLOCK_SIZE, CharCorruptionDataset
from device import resolve_device
from handout_reference import PRETRAINED_ROW, reference_rows
from handout_step import run_arguments, run_step
from params import build_model, load_params, metrics_path
from safe_io import read_text
from utils import parse_birth_places, score_places

RESULTS_FOLDER = Path("results")


def recipe_kind(recipe):
    """The run a recipe's flags make: "cpu" (a smaller model), "short" (the pretraining cut) or "full"."""
    if "model" in recipe:
        return "cpu"
    return "short" if "--max_epochs" in recipe.get("pretrain", []) else "full"


def describe(recipe):
    """A recipe in words, from its flags: the CPU recipe's, the short run's, or the full run (and its schedule)."""
    pretrain = " ".join(recipe.get("pretrain", []))
    kind = recipe_kind(recipe)
    if kind == "cpu":
        return "the CPU recipe, the handout's commands with these flags added: " + "; ".join(
            f"{'every command' if step == 'model' else step} `{' '.join(flags)}`" for step, flags in recipe.items())
    if kind == "short":
        return f"the short run, the handout's model and commands with pretrain `{pretrain}` added"
    schedule = f" and the 2023-24 schedule (pretrain `{pretrain}`)" if recipe else ""
    return f"the handout's full run (650 pretraining epochs per variant, the handout's model and flags{schedule})"


# What RESULTS.md says after the recipe's name, by kind: that a cut-down run's figures are not the handout's
NOT_THE_HANDOUTS_FIGURES = {
    "cpu": "A smaller model, pretrained for far less than the handout's: its accuracies are what this much "
           "pretraining gives (BENCHMARKS.md, \"A CPU recipe\", has the sweep behind it), not the handout's figures; "
           "`python handout.py --length full` on a GPU makes those.",
    "short": "The handout's model, pretrained for a fraction of the handout's 650 epochs: its accuracies are what "
             "this much pretraining gives (BENCHMARKS.md, \"The short run\"), not the handout's figures; "
             "`python handout.py --length full` makes those.",
}


def summary(values):
    """'mean ± std' over seeds (sample standard deviation), or the one value."""
    values = [v for v in values if v is not None]
    if not values:
        return "?"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


OTHER_CODE_NOTE = ("* made, in part, by other code than src/ holds now (the steps' ledgers, handout.steps.json, "
                   "record which): the same command with --redo_other_code runs those steps again")


FIRST_CHARACTER_NOTE = ("first character given: the same model's dev accuracy when each gold place's first "
                        "character is written after the question (src/analyze.py): what its weights know of the "
                        "people even where it cannot choose that letter")


def first_character_accuracy(evaluate_command):
    """
    The dev accuracy (%) of the model that a src/run.py evaluate command reads, with each gold
    place's first character given (analyze.first_character_given), on that command's device.
    """
    args = run_arguments(evaluate_command)
    device = resolve_device(args.device)
    with contextlib.redirect_stdout(io.StringIO()):  # the dataset's own line
        corpus = CharCorruptionDataset(read_text(args.pretrain_corpus_path, "pretraining corpus"), BLOCK_SIZE)
    model = build_model(corpus.vocab_size, BLOCK_SIZE, args.variant, args).to(device)
    load_params(model, args.reading_params_path, device)
    pairs = parse_birth_places(read_text(args.eval_corpus_path, "evaluation file"), args.eval_corpus_path)
    total, correct = score_places(pairs, analyze.first_character_given(model, corpus.stoi, corpus.itos, pairs),
                                  args.eval_corpus_path)
    return 100 * correct / total if total else None


def accuracy_table(results_by_seed, hinted_by_seed, other_code_rows=()):
    """
    The rows of the runs made (the variants asked for), in the reference's order: each seed's
    dev accuracy, and with the first character given (hinted: the rows of a model); * marks
    other code's.
    """
    header = ("run", "this run", "first character given", "the assignment's answer",
              "public runs (2021 unless said)")
    reference = reference_rows()
    rows = [(name, summary([results[name] for results in results_by_seed]) + (" *" if name in other_code_rows else ""),
             summary([hinted[name] for hinted in hinted_by_seed]) if name in hinted_by_seed[0] else "",
             *reference[name])
            for name in reference if name in results_by_seed[0]]
    return header, rows


def text_table(header, rows):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(r, widths)).rstrip()
                     for r in [header, ["-" * w for w in widths], *rows])


def markdown_table(header, rows):
    return "\n".join("| " + " | ".join(r) + " |" for r in [header, ["---"] * len(header), *rows])


def make_figures(steps):
    """
    Training curves from the metrics logs of the training steps, the pretrainings apart from
    the finetunings; returns the figure paths written, if matplotlib is there.
    """
    logs = {"pretrain": [], "finetune": []}
    for _, arguments, training in steps:
        if training is not None:
            params_path = run_arguments(arguments).writing_params_path
            logs["pretrain" if training == "pretrain" else "finetune"].append(metrics_path(params_path))
    figures = []
    for prefix, paths in logs.items():
        output, _, status = run_step(["src/plot.py", *paths, "--out_dir", str(RESULTS_FOLDER), "--prefix", prefix],
                                     check=False)
        if status == 0:
            figures += [Path(line) for line in output.split()]
    return figures


def analyse_best(results, variants, model_flags):
    """Analysis of the pretrained model with the best dev accuracy; returns (variant, report text)."""
    variant = max(variants, key=lambda v: results[PRETRAINED_ROW.format(variant=v)] or 0.0)
    json_path = RESULTS_FOLDER / f"{variant}.pretrain.dev.analysis.json"
    output, _, _ = run_step(["src/analyze.py", variant, "wiki.txt", "--reading_params_path",
                             f"{variant}.finetune.params", "--eval_corpus_path", "birth_dev.tsv",
                             "--predictions_path", f"{variant}.pretrain.dev.predictions",
                             "--finetune_corpus_path", "birth_places_train.tsv", "--json_path", str(json_path),
                             *model_flags])
    return variant, output


def write_results(header, rows, seeds, recipe, minutes, device_name, figures, analysed_variant, analysis,
                  other_flags=()):
    """
    RESULTS.md: the command that ran (other_flags: the ones besides --seeds that differ from their
    defaults), the recipe, the table, the figures and the analysis.
    """
    described = describe(recipe)
    sentence = described[0].upper() + described[1:]
    note = NOT_THE_HANDOUTS_FIGURES.get(recipe_kind(recipe))
    length = f"**{sentence}.** {note}" if note else f"{sentence}."
    figure_lines = "\n\n".join(f"![{path.stem}]({path.as_posix()})" for path in figures) or \
        "(no figures: matplotlib is not installed; `pip install matplotlib`, then run `python handout.py` again)"
    command = shlex.join(["python", "handout.py", *(["--seeds", *map(str, seeds)] if seeds != [0] else []),
                          *other_flags])
    other_code_note = f"\n{OTHER_CODE_NOTE}\n" if any(row[1].endswith(" *") for row in rows) else ""
    over_seeds = f", mean ± standard deviation over seeds {', '.join(map(str, seeds))}" if len(seeds) > 1 else ""
    text = f"""# Results

Generated by `{command}` \
on {device_name}, {time.strftime('%Y-%m-%d')}, in {minutes:.1f} minutes. Do not edit by hand.

{length}

## Dev accuracy (%, 500 names{over_seeds})

{markdown_table(header, rows)}

{FIRST_CHARACTER_NOTE[0].upper() + FIRST_CHARACTER_NOTE[1:]}.
{other_code_note}
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


def print_table(header, rows, other_code_rows, recipe, seeds, seconds, seconds_now):
    """The end of handout.py's output: the table, what made it, and where the rest went."""
    several_seeds = f", seeds {' '.join(map(str, seeds))}" if len(seeds) > 1 else ""
    print(f"\nDev accuracy (%) of {describe(recipe)}{several_seeds}, {seconds / 60:.1f} minutes of training and "
          f"evaluation ({seconds_now / 60:.1f} of them in this run):")
    print(text_table(header, rows))
    print(FIRST_CHARACTER_NOTE)
    if other_code_rows:
        print(OTHER_CODE_NOTE)
    print("\nRESULTS.md: this table, the training curves and the analysis of the best pretrained run.")
