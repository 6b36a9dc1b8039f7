"""
The main job: runs the handout's whole sequence of commands (parts 2(d), 2(f), 2(g) and the
London baseline) in order, writes every output under the handout's file names, ends with a
table of dev accuracies beside the reference figures (each model's also with every gold place's
first character given: what its weights know even where it cannot choose that letter), and
writes RESULTS.md: that table, the training curves, and the analysis of the best run (what
part 3 of the handout asks).

    python handout.py                  # the handout's run on a CUDA GPU; the CPU recipe elsewhere
    python handout.py --length full
    python handout.py --seeds 0 1 2    # the sequence once per seed; accuracies as mean ± std
    python handout.py --length short --variants rope    # on a CPU: the knowledge effect, under 2 hours
    python handout.py --variants vanilla synthesizer rope perceiver    # every year's variant, side by side
    python handout.py --length full --variants vanilla rope --schedule 2023-24    # as the 2023-24 runs did
    timeout 540 python handout.py --length full    # again and again, until it exits with status 0
    python handout.py --length full --processes 2    # on 2 CPU cores: 2 data-parallel processes, about 1.2x
    python handout.py --length full --variants vanilla --precision fp32 --snapshot_epochs 5 10 25 50 100 200 400
                                       # the full recipe on a CPU, its pretraining kept after those
                                       # epochs for src/knowledge_curve.py

The full run is the handout's (650 pretraining epochs per variant): hours on a GPU of 2021,
days on a CPU. The short run stops its pretraining after 200 epochs, where the handout's cosine
first ends: with RoPE, the cheapest run measured to show the knowledge effect on a CPU, over
seeds (under 2 hours of 2 cores, rope's own no-pretraining baseline included; with vanilla,
in one of two runs). On a CPU the default is the CPU
recipe instead: the same commands with a few flags added (a smaller model, fewer epochs,
smaller batches, no pretraining dropout, a schedule that ends with the run), chosen by the
sweep in BENCHMARKS.md as what pretrains furthest in about 22 minutes of 2 cores. That is
measured to be too little pretraining to lift dev accuracy, but not what the model knows: with
the first character given, its pretrained model answers far more than its unpretrained one
(BENCHMARKS.md, "The first character given"); its table says which recipe ran.
The first seed's outputs go to the top level (what collect_submission.sh packs); each
further seed's to runs/seed-N/.

Stopped (Ctrl-C, a kill, SIGTERM from `timeout`, a lost machine), the same command run again
goes on where it stopped. Each sequence folder has a ledger, handout.steps.json, recording
every step: its command, the SHA-256 of its input and output files, its stdout, its seconds
and whether it finished. A step done before with the same command and inputs, whose outputs
are as it left them, is skipped; a training step stopped before it finished resumes from its
checkpoint (run.py --resume); any other step runs afresh. A changed flag, or a missing or
damaged output, thus redoes that step, and the steps that read what it makes are redone when
it comes out different. The table covers every step, from this run or before. The ledger
also records which code made each step (a hash of src/run.py, london_baseline.py and the
modules of src/ they import): the table marks with * what code other than today's made, and
--redo_other_code runs those steps again.

This file is the handout's sequence and the flags added to it; the rest is in src/:
handout_step.py runs one step, handout_ledger.py records it and decides what to skip, resume or
redo, handout_report.py writes the table, RESULTS.md and the figures, and handout_reference.py
holds the reference figures that are no variant's.
"""

import argparse
import contextlib
import io
import shlex
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))  # src/ holds scripts, not a package
import allocator

if __name__ == "__main__":
    # before torch is imported: the steps it times for its estimate, and the steps it runs, which
    # inherit it, under the allocator run.py trains with
    allocator.restart_with_fast_allocator()

from device import kind_of, resolve_device
from expected_time import PROBE_SECONDS, Estimate
from handout_ledger import (LEDGER_NAME, fingerprints, forget_other_code, made_by_other_code, next_action,
                            read_ledger, run_recorded, show_skipped)
from handout_reference import HANDOUT_YEAR, NO_PRETRAINING_ROW, PRETRAINED_ROW, own_baseline
from handout_report import (RESULTS_FOLDER, accuracy_table, analyse_best, describe, first_character_accuracy,
                            make_figures, print_table, write_results)
from handout_step import StepStopped, accuracy, step_files, stop_signals
from model import VARIANTS
from safe_io import InputError, exit_on_input_error, in_range
from trainer import PRECISIONS

# The CPU recipe: flags added to the handout's commands, per kind of step ("model": every
# command that builds the model). Chosen on birth_dev.tsv by bench/recipe_sweep.py; every
# setting tried, with its cost and accuracy, is in BENCHMARKS.md ("A CPU recipe"). The
# finetunings are the handout's.
CPU_RECIPE = {
    "model": ["--n_layer", "2", "--n_head", "8", "--n_embd", "128"],
    "pretrain": ["--max_epochs", "60", "--batch_size", "8", "--learning_rate", "1e-3", "--dropout", "0",
                 "--cosine_epochs", "60"],
}
# The short run: the handout's model and commands, its pretraining stopped after SHORT_EPOCHS
# epochs, where the handout's own cosine reaches its floor (epoch 200 of 650; the flag says so
# and keeps it true if SHORT_EPOCHS changes). Chosen on birth_dev.tsv on the full runs' knowledge
# curves: the cheapest pretraining measured to lift dev accuracy above no pretraining on a CPU,
# with RoPE over seeds, with vanilla in one of two runs; a cosine ended at epoch 100 did not
# (BENCHMARKS.md, "The short run" and "RoPE's short run over seeds").
SHORT_EPOCHS = "200"
SHORT_RECIPE = {"pretrain": ["--max_epochs", SHORT_EPOCHS, "--cosine_epochs", SHORT_EPOCHS]}
# The learning-rate schedules of the pretraining, by the assignment's year: the 2021 handout's
# cosine ends after 200 of its 650 epochs and then rises again; the 2023-24 version's (with
# which its RoPE figures were made) ends with the run. The CPU recipe's ends with its run too.
SCHEDULES = {"2021": [], "2023-24": ["--cosine_epochs", "650"]}
# parts 2(f) and 2(g): vanilla and synthesizer; --variants adds the later years'
HANDOUT_VARIANTS = [name for name, variant in VARIANTS.items() if variant.year == HANDOUT_YEAR]

# The handout's steps, each as (table row or None, command, kind of training or None); the
# kind chooses the recipe's flags. Part 2(d): the {variant} model finetuned without pretraining,
# the handout's for vanilla; a later year's variant runs it too, before its pretraining, so that
# its pretrained row has a baseline of its own architecture.
NO_PRETRAINING_STEPS = [
    (None,
     "src/run.py finetune {variant} wiki.txt --writing_params_path {variant}.model.params "
     "--finetune_corpus_path birth_places_train.tsv",
     "finetune"),
    (NO_PRETRAINING_ROW,
     "src/run.py evaluate {variant} wiki.txt --reading_params_path {variant}.model.params "
     "--eval_corpus_path birth_dev.tsv --outputs_path {variant}.nopretrain.dev.predictions",
     None),
    (None,
     "src/run.py evaluate {variant} wiki.txt --reading_params_path {variant}.model.params "
     "--eval_corpus_path birth_test_inputs.tsv --outputs_path {variant}.nopretrain.test.predictions",
     None),
]
# Parts 2(f) and 2(g): pretrain, finetune and evaluate, once for each {variant}.
PRETRAINED_STEPS = [
    (None,
     "src/run.py pretrain {variant} wiki.txt --writing_params_path {variant}.pretrain.params",
     "pretrain"),
    # the handout writes birthplaces_train.tsv once here; the file is birth_places_train.tsv
    (None,
     "src/run.py finetune {variant} wiki.txt --reading_params_path {variant}.pretrain.params "
     "--writing_params_path {variant}.finetune.params --finetune_corpus_path birth_places_train.tsv",
     "finetune from pretrained"),
    (PRETRAINED_ROW,
     "src/run.py evaluate {variant} wiki.txt --reading_params_path {variant}.finetune.params "
     "--eval_corpus_path birth_dev.tsv --outputs_path {variant}.pretrain.dev.predictions",
     None),
    (None,
     "src/run.py evaluate {variant} wiki.txt --reading_params_path {variant}.finetune.params "
     "--eval_corpus_path birth_test_inputs.tsv --outputs_path {variant}.pretrain.test.predictions",
     None),
]
LONDON_BASELINE_STEP = ("London baseline", "london_baseline.py --eval_corpus_path birth_dev.tsv", None)
FOLDER_FLAGS = ("--writing_params_path", "--reading_params_path", "--outputs_path")  # files of the sequence's own


def handout_steps(variants=HANDOUT_VARIANTS):
    """
    (table row or None, the command's arguments, kind of training or None) in the handout's
    order: vanilla's 2(d), then the pretrain, finetune and evaluate steps of 2(f) once for each
    variant, a later year's variant's own 2(d) before them.
    """
    steps = [for_variant(step, "vanilla") for step in NO_PRETRAINING_STEPS]
    for variant in variants:
        baseline = NO_PRETRAINING_STEPS if own_baseline(variant) else []
        steps += [for_variant(step, variant) for step in baseline + PRETRAINED_STEPS]
    return [(row, shlex.split(command), training) for row, command, training in steps + [LONDON_BASELINE_STEP]]


def for_variant(step, variant):
    """A step of NO_PRETRAINING_STEPS or PRETRAINED_STEPS with the variant's name in its row and command."""
    row, command, training = step
    return row.format(variant=variant) if row else None, command.format(variant=variant), training


def in_folder(arguments, folder):
    """The same command with its params and predictions files in folder (the data stay where they are)."""
    if folder == Path("."):
        return list(arguments)
    return [str(folder / value) if flag in FOLDER_FLAGS else value
            for flag, value in zip([None, *arguments], arguments)]


def choose_recipe(length, schedule, device_kind):
    """The flags added to the handout's commands: the CPU recipe's, the short run's, or the full run's schedule's."""
    if length == "auto":
        length = "full" if device_kind.full_recipe else "cpu"
    if length != "full" and SCHEDULES[schedule]:
        name = "the CPU recipe" if length == "cpu" else "the short run"
        raise ValueError(f"--schedule {schedule} is for the full run: {name}'s pretraining already ends its cosine "
                         f"with the run (--cosine_epochs in {length.upper()}_RECIPE)")
    if length == "cpu":
        return CPU_RECIPE
    if length == "short":
        return SHORT_RECIPE
    return {"pretrain": SCHEDULES[schedule]} if SCHEDULES[schedule] else {}


def recipe_flags(recipe, training):
    """What a recipe adds to a src/run.py command: the model's flags, and the training's (None: evaluate)."""
    return recipe.get("model", []) + (recipe.get(training, []) if training else [])


@dataclass(frozen=True)
class PassedOn:
    """handout.py's flags that its steps' src/run.py commands carry, at their defaults when left out."""
    device: str = "auto"         # every command
    precision: str = "auto"      # every training command
    processes: int = 1           # every training command
    snapshot_epochs: tuple = ()  # the pretrainings

    def flags(self, training):
        """The flags for a command that trains (training: its kind of step) or evaluates (None)."""
        flags = ["--device", self.device] if self.device != "auto" else []
        if training is not None:
            flags += ["--precision", self.precision] if self.precision != "auto" else []
            flags += ["--processes", str(self.processes)] if self.processes != 1 else []
        if training == "pretrain" and self.snapshot_epochs:
            flags += ["--snapshot_epochs", *map(str, self.snapshot_epochs)]
        return flags


def step_command(arguments, training, folder, recipe, seed, passed=PassedOn()):
    """A handout command as this run runs it: in folder, with the recipe's and the seed's flags, and those passed on."""
    extra = []
    if arguments[0] == "src/run.py":
        extra += recipe_flags(recipe, training)
        if seed != 0 and training is not None:
            extra += ["--seed", str(seed)]
        extra += passed.flags(training)
    return in_folder(arguments, folder) + extra


def pending_commands(seed, folder, recipe, passed=PassedOn(), variants=HANDOUT_VARIANTS):
    """The commands of a sequence that its ledger does not let it skip now (a step to resume counts whole)."""
    ledger = read_ledger(folder / LEDGER_NAME)
    for _, arguments, training in handout_steps(variants):
        command = step_command(arguments, training, folder, recipe, seed, passed)
        if next_action(ledger.get(shlex.join(arguments)), command, fingerprints(step_files(command)[0])) != "skip":
            yield command


def say_expected_time(args, recipe, passed):
    """Print how long the steps still to run should take here: each kind of training step timed, times its steps."""
    pending = [command for index, seed in enumerate(args.seeds)
               for command in pending_commands(seed, sequence_folder(index, seed), recipe, passed, args.variants)]
    if not pending:
        return
    estimate = Estimate()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the datasets' and models' own lines
            seconds = sum(estimate.seconds(command) for command in pending)
    except InputError as error:  # the step that reads the input says so, with what to do, when it runs
        print(f"Expected on this machine: not known before the steps run ({error}).", flush=True)
        return
    print(f"Expected on this machine: about {seconds / 60:.0f} minutes for the {len(pending)} steps to run "
          f"(each kind of training step timed here for {PROBE_SECONDS:.0f} s, times its number of steps).",
          flush=True)


def sequence_folder(index, seed):
    """The first seed's outputs at the top level (what collect_submission.sh packs), each further seed's apart."""
    return Path(".") if index == 0 else Path("runs") / f"seed-{seed}"


def run_sequence(seed, folder, recipe, passed=PassedOn(), variants=HANDOUT_VARIANTS):
    """
    The handout's sequence once, with the recipe's flags, in folder: skips, resumes or runs each
    step by its record in the folder's ledger. Returns ({table row: dev accuracy}, the seconds
    recorded for all the steps, the seconds of the steps run now).
    """
    folder.mkdir(parents=True, exist_ok=True)
    ledger_path = folder / LEDGER_NAME
    ledger = read_ledger(ledger_path)
    seconds_now = 0.0
    for _, arguments, training in handout_steps(variants):
        key = shlex.join(arguments)
        command = step_command(arguments, training, folder, recipe, seed, passed)
        inputs = fingerprints(step_files(command)[0])
        action = next_action(ledger.get(key), command, inputs)
        if action == "skip":
            show_skipped(command, ledger[key])
        else:
            seconds_now += run_recorded(command, inputs, action, ledger, key, ledger_path)
    records = [(row, ledger[shlex.join(arguments)]) for row, arguments, _ in handout_steps(variants)]
    results = {row: accuracy(record["stdout"]) for row, record in records if row is not None}
    return results, sum(record["seconds"] for _, record in records), seconds_now


def first_character_results(seed, folder, recipe, passed=PassedOn(), variants=HANDOUT_VARIANTS):
    """{table row: its model's dev accuracy with each gold place's first character given} of a sequence that ran."""
    return {row: first_character_accuracy(step_command(arguments, training, folder, recipe, seed, passed))
            for row, arguments, training in handout_steps(variants) if row and arguments[0] == "src/run.py"}


def run_handout(args, recipe, device_kind):
    """Every sequence, then the figures, the analysis, RESULTS.md and the table."""
    steps = handout_steps(args.variants)
    folders = [sequence_folder(index, seed) for index, seed in enumerate(args.seeds)]
    if args.redo_other_code:
        for folder in folders:
            forget_other_code(folder, steps)
    passed = PassedOn(args.device, args.precision, args.processes, tuple(args.snapshot_epochs))
    say_expected_time(args, recipe, passed)
    results_by_seed, hinted_by_seed, seconds, seconds_now = [], [], 0.0, 0.0
    for seed, folder in zip(args.seeds, folders):
        results, sequence_seconds, sequence_seconds_now = run_sequence(seed, folder, recipe, passed, args.variants)
        results_by_seed.append(results)
        hinted_by_seed.append(first_character_results(seed, folder, recipe, passed, args.variants))
        seconds += sequence_seconds
        seconds_now += sequence_seconds_now

    RESULTS_FOLDER.mkdir(exist_ok=True)
    figures = make_figures(steps)
    analysed_variant, analysis = analyse_best(results_by_seed[0], args.variants, recipe_flags(recipe, None))
    other_code = set().union(*(made_by_other_code(read_ledger(folder / LEDGER_NAME), steps) for folder in folders))
    other_code_rows = {row for row, arguments, _ in steps if shlex.join(arguments) in other_code}
    header, rows = accuracy_table(results_by_seed, hinted_by_seed, other_code_rows)
    device_name = device_kind.table_name()
    other_flags = [*(["--length", args.length] if args.length != "auto" else []),
                   *(["--variants", *args.variants] if args.variants != HANDOUT_VARIANTS else []),
                   *(["--schedule", args.schedule] if args.schedule != "2021" else []),
                   *(["--precision", args.precision] if args.precision != "auto" else []),
                   *(["--processes", str(args.processes)] if args.processes != 1 else []),
                   *(["--snapshot_epochs", *map(str, args.snapshot_epochs)] if args.snapshot_epochs else [])]
    write_results(header, rows, args.seeds, recipe, seconds / 60, device_name, figures, analysed_variant, analysis,
                  other_flags)
    print_table(header, rows, other_code_rows, recipe, args.seeds, seconds, seconds_now)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description="Run the handout's whole command sequence and tabulate it.")
    parser.add_argument("--length", choices=["auto", "full", "short", "cpu"], default="auto",
                        help="full: the handout's run; short: its pretraining cut to SHORT_EPOCHS epochs; cpu: the "
                             "CPU recipe (see CPU_RECIPE); auto: full on a CUDA GPU, cpu otherwise")
    parser.add_argument("--device", default="auto", help="passed to every src/run.py command")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="passed to every training command (default auto: run.py's choice)")
    parser.add_argument("--processes", type=in_range(int, 1), default=1,
                        help="passed to every training command: train in this many processes (src/run.py "
                             "--processes; on 2 CPU cores 2 processes ran the handout's pretraining about 1.2x as "
                             "fast, with params other than one process's; the time expected is one process's)")
    parser.add_argument("--snapshot_epochs", type=int, nargs="+", default=[], metavar="N",
                        help="every pretraining also writes its params after these epochs "
                             "(VARIANT.pretrain.params.epochN), for src/knowledge_curve.py")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="run the sequence once per seed")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=HANDOUT_VARIANTS,
                        help="the variants pretrained, finetuned and evaluated, each as in 2(f) (default: the "
                             "handout's, vanilla synthesizer; rope and perceiver are the 2023-24 and 2022-23 "
                             "versions', each also finetuned without pretraining as in 2(d))")
    parser.add_argument("--schedule", choices=list(SCHEDULES), default="2021",
                        help="the pretraining's learning-rate schedule, by the assignment's year (default 2021, "
                             "the handout's); 2023-24 is the one its RoPE figures were made with (full run only)")
    parser.add_argument("--redo_other_code", action="store_true",
                        help="run again the steps that code other than today's src/ made (the table marks them *)")
    args = parser.parse_args(argv)
    args.variants = list(dict.fromkeys(args.variants))  # each once, in the order given
    try:
        device_kind = kind_of(resolve_device(args.device))
        recipe = choose_recipe(args.length, args.schedule, device_kind)
    except (InputError, ValueError) as error:
        parser.error(str(error))
    print(f"Running {describe(recipe)}.")

    again = shlex.join(["python", "handout.py", *argv])
    try:
        with stop_signals:
            exit_on_input_error(lambda: run_handout(args, recipe, device_kind))
    except StepStopped as stop:
        if not stop.signum:
            sys.exit(f"handout.py: this step failed (exit status {stop.returncode}); the steps before it are "
                     f"recorded in {LEDGER_NAME}: once the cause is fixed, `{again}` goes on from this step")
        print(f"\nhandout.py: stopped by {signal.Signals(stop.signum).name}. The steps that finished are recorded in "
              f"{LEDGER_NAME}, and a stopped training step keeps its checkpoint: run `{again}` again to skip the "
              f"first and resume the second.", file=sys.stderr)
        sys.exit(128 + stop.signum)


if __name__ == "__main__":
    main()
