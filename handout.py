"""
The main job: runs the handout's whole sequence of commands (parts 2(d), 2(f), 2(g) and the
London baseline) in order, writes every output under the handout's file names, ends with a
table of dev accuracies beside the reference figures, and writes RESULTS.md: that table,
the training curves, and the analysis of the best run (what part 3 of the handout asks).

    python handout.py                  # the handout's run on a CUDA GPU; the CPU recipe elsewhere
    python handout.py --length full
    python handout.py --seeds 0 1 2    # the sequence once per seed; accuracies as mean ± std
    python handout.py --variants vanilla synthesizer rope perceiver    # every year's variant, side by side
    python handout.py --length full --variants vanilla rope --schedule 2023-24    # as the 2023-24 runs did
    timeout 540 python handout.py --length full    # again and again, until it exits with status 0
    python handout.py --length full --variants vanilla --precision fp32 --snapshot_epochs 5 10 25 50 100 200 400
                                       # the full recipe on a CPU, its pretraining kept after those
                                       # epochs for src/knowledge_curve.py

The full run is the handout's (650 pretraining epochs per variant): hours on a GPU of 2021,
days on a CPU. On a CPU the default is the CPU recipe instead: the same commands with a few
flags added (a smaller model, fewer epochs, smaller batches, no pretraining dropout, a
schedule that ends with the run), chosen by the sweep in BENCHMARKS.md as what pretrains
furthest in about 22 minutes of 2 cores. That is measured to be too little pretraining to
lift dev accuracy; its table says which recipe ran. The first seed's outputs go to the top
level (what collect_submission.sh packs); each further seed's to runs/seed-N/.

Stopped (Ctrl-C, a kill, SIGTERM from `timeout`, a lost machine), the same command run again
goes on where it stopped. Each sequence folder has a ledger, handout.steps.json, recording
every step: its command, the SHA-256 of its input and output files, its stdout, its seconds
and whether it finished. A step done before with the same command and inputs, whose outputs
are as it left them, is skipped; a training step stopped before it finished resumes from its
checkpoint (run.py --resume); any other step runs afresh. A changed flag, or a missing or
damaged output, thus redoes that step, and the steps that read what it makes are redone when
it comes out different. The table covers every step, from this run or before. The ledger
also records which code made each step (a hash of src/ and london_baseline.py): the table
marks with * what code other than today's made, and --redo_other_code runs those steps again.
"""

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))  # src/ holds scripts, not a package
from device import kind_of, resolve_device
from expected_time import PROBE_SECONDS, Estimate
from safe_io import InputError, atomic_output, exit_on_input_error
from get_data import sha256_of
from model import VARIANTS

# The CPU recipe: flags added to the handout's commands, per kind of step ("model": every
# command that builds the model). Chosen on birth_dev.tsv by bench/recipe_sweep.py; every
# setting tried, with its cost and accuracy, is in BENCHMARKS.md ("A CPU recipe"). The
# finetunings are the handout's.
CPU_RECIPE = {
    "model": ["--n_layer", "2", "--n_head", "8", "--n_embd", "128"],
    "pretrain": ["--max_epochs", "60", "--batch_size", "8", "--learning_rate", "1e-3", "--dropout", "0",
                 "--cosine_epochs", "60"],
}
# The learning-rate schedules of the pretraining, by the assignment's year: the 2021 handout's
# cosine ends after 200 of its 650 epochs and then rises again; the 2023-24 version's (with
# which its RoPE figures were made) ends with the run. The CPU recipe's ends with its run too.
SCHEDULES = {"2021": [], "2023-24": ["--cosine_epochs", "650"]}
HANDOUT_VARIANTS = ["vanilla", "synthesizer"]  # parts 2(f) and 2(g); --variants adds the later years'
REFERENCE = {  # run: (the assignment's answer, public runs), dev accuracy in percent
    "London baseline": ("5.0", "5.0"),
    "vanilla, no pretraining": ("1.0", "1.4"),
    "vanilla, pretrain + finetune": ("30 (>= 10 expected)", "23.0"),
    "synthesizer, pretrain + finetune": ("9.8 (>= 5 on test required)", "14.4"),
    # the later years' variants, from their own years' public runs (SPEC.md, "Later variants")
    "rope, pretrain + finetune": ("not given (2023-24)", "30-40 (2023-24; vanilla 23-28 there)"),
    "perceiver, pretrain + finetune": (">= 6 asked (2022-23)", "6-19 (2022-23)"),
}
FOLDER_FLAGS = ("--writing_params_path", "--reading_params_path", "--outputs_path")  # files of the sequence's own
INPUT_FLAGS = ("--reading_params_path", "--finetune_corpus_path", "--eval_corpus_path")
RESULTS_FOLDER = Path("results")
LEDGER_NAME = "handout.steps.json"  # in each sequence folder: what its steps did (see read_ledger)
RECORD_KEYS = {"command", "inputs", "outputs", "stdout", "seconds", "finished"}
ACCURACY_LINE = re.compile(r"^Correct: \S+ out of \S+: (\S+)%$", re.MULTILINE)


def handout_steps(variants=HANDOUT_VARIANTS):
    """
    (table row or None, the command's arguments, kind of training or None) in the handout's
    order, with the pretrain, finetune and evaluate steps of 2(f) once for each variant.
    """
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
    for variant in variants:
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
    return [str(folder / value) if flag in FOLDER_FLAGS else value
            for flag, value in zip([None, *arguments], arguments)]


class StepStopped(Exception):
    """A step that did not finish: a signal came (signum; returncode None: before it started), or it failed."""

    def __init__(self, signum, returncode, output, seconds):
        super().__init__(f"stopped by signal {signum}" if signum else f"failed with exit status {returncode}")
        self.signum, self.returncode, self.output, self.seconds = signum, returncode, output, seconds


class StopSignals:
    """
    Ctrl-C and SIGTERM while handout.py runs (main catches them for the whole run): a running
    step stops the way it stops alone (a training step finishes its current batch and keeps its
    checkpoint), then handout.py records it and stops; between steps, it stops before the next.
    Ctrl-C from the terminal reaches the step by itself (it is in the same process group), while
    SIGTERM may be meant for handout.py alone (`kill PID`, `timeout --foreground`, a machine
    shutting down), so it is passed on. Passing Ctrl-C on too would make it a second Ctrl-C,
    which stops the trainer at once; a Ctrl-C sent to handout.py alone lets the step end.
    """

    def __init__(self):
        self.received, self.step = [], None

    def __enter__(self):
        self.received, self.step = [], None
        self.previous = {s: signal.signal(s, self.receive) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exception):
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def receive(self, signum, frame):
        self.received.append(signum)
        if signum == signal.SIGTERM and self.step is not None:
            self.step.send_signal(signum)


stop_signals = StopSignals()


def run_step(arguments, check=True):
    """
    Run `python ARGUMENTS`, showing the command and its output; returns (stdout, seconds, exit
    status). Raises StepStopped if Ctrl-C or SIGTERM came (once the step has ended, or before
    it starts), or (with check) if the step failed.
    """
    if stop_signals.received:
        raise StepStopped(stop_signals.received[0], None, "", 0.0)
    print(f"\n$ python {shlex.join(arguments)}", flush=True)
    started = time.time()
    # stderr (the progress bar) goes straight to the terminal; stdout is echoed and kept
    process = subprocess.Popen([sys.executable, *arguments], stdout=subprocess.PIPE, text=True)
    stop_signals.step = process
    if stop_signals.received:  # it came as the step started, maybe too early to reach it
        process.send_signal(stop_signals.received[0])
    output = []
    for line in process.stdout:
        print(line, end="", flush=True)
        output.append(line)
    process.wait()
    stop_signals.step = None
    output, seconds = "".join(output), time.time() - started
    if stop_signals.received:
        raise StepStopped(stop_signals.received[0], process.returncode, output, seconds)
    if process.returncode != 0 and check:
        raise StepStopped(0, process.returncode, output, seconds)
    return output, seconds, process.returncode


def accuracy(output):
    match = ACCURACY_LINE.search(output)
    return float(match.group(1)) if match else None


def sha256(path):
    """The file's SHA-256 in hex; None when there is no such file."""
    try:
        return sha256_of(path)
    except FileNotFoundError:
        return None


def fingerprints(paths):
    return {path: sha256(path) for path in paths}


def flag_values(command):
    """{flag: the argument after it} of a command (only the flags that take a value are looked up)."""
    return dict(zip(command, command[1:]))


def step_files(command):
    """(input files, output files) of a step's command: what it reads and what it makes."""
    values = flag_values(command)
    inputs = [command[3]] if command[0] == "src/run.py" else []  # the pretraining corpus, given positionally
    inputs += [values[flag] for flag in INPUT_FLAGS if flag in values]
    outputs = []
    if "--writing_params_path" in values:  # the figures read the metrics log
        outputs += [values["--writing_params_path"], values["--writing_params_path"] + ".metrics.jsonl"]
    if "--outputs_path" in values:
        outputs.append(values["--outputs_path"])
    return inputs, outputs


def file_stamp(path):
    """What tells a file written anew (outputs are new files renamed into place) from the one before; None if none."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns


def checkpoint_path(command):
    """Where a training step keeps its state to resume from (run.py's); None for a step that trains nothing."""
    params = flag_values(command).get("--writing_params_path")
    return Path(params + ".checkpoint") if params else None


def read_ledger(path):
    """
    The records of the steps run in a sequence folder, by the handout's command: {} before the
    first. A record holds the whole command run (without --resume), the SHA-256 of its input
    files before it ran and of its output files after, its stdout, its seconds (summed over
    the attempts that resumed one another) and whether it finished.
    """
    try:
        ledger = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(ledger, dict) or not all(isinstance(record, dict) and RECORD_KEYS <= record.keys()
                                                   for record in ledger.values()):
            raise ValueError(f"not an object of records with the keys {', '.join(sorted(RECORD_KEYS))}")
    except FileNotFoundError:
        return {}
    except ValueError as error:  # bad JSON and bad UTF-8 are ValueErrors too
        raise InputError(f"{path} is not a ledger of handout.py's steps ({error}); delete it to run every "
                         f"step of {Path(path).parent} again, or put back the file handout.py wrote") from None
    return ledger


def write_ledger(path, ledger):
    with atomic_output(path) as f:
        json.dump(ledger, f, indent=1)


def code_hash(root):
    """
    What tells the code the steps run (src/*.py and london_baseline.py under root) from other
    code: a SHA-256 over their names and contents. handout.py, READMEs and tests do not count.
    """
    digest = hashlib.sha256()
    for path in sorted(Path(root).glob("src/*.py")) + [Path(root) / "london_baseline.py"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


CODE = code_hash(Path(__file__).resolve().parent)


def step_record(command, inputs, stdout, seconds, finished):
    return {"command": command, "inputs": inputs, "outputs": fingerprints(step_files(command)[1]),
            "stdout": stdout, "seconds": seconds, "finished": finished, "code": CODE}


def made_by_other_code(ledger, variants):
    """
    The handout's commands whose step, or a step whose outputs it read, other code made
    (a record from before the ledger kept the code counts as other code).
    """
    other_outputs, commands = set(), set()
    for _, arguments, _ in handout_steps(variants):
        key = shlex.join(arguments)
        record = ledger.get(key)
        if record is None:
            continue
        inputs, outputs = step_files(record["command"])
        if record.get("code") != CODE or other_outputs.intersection(inputs):
            other_outputs.update(outputs)
            commands.add(key)
    return commands


def forget_other_code(folder, variants):
    """--redo_other_code: the ledger forgets the steps other code made, so that they run afresh."""
    ledger_path = folder / LEDGER_NAME
    ledger = read_ledger(ledger_path)
    other = made_by_other_code(ledger, variants)
    if other:
        write_ledger(ledger_path, {key: record for key, record in ledger.items() if key not in other})
        print(f"{ledger_path}: {len(other)} steps made by other code than src/ holds now will run again.")


def next_action(record, command, inputs):
    """
    What to do with a step, from its record (None: never run here) and its inputs' hashes now:
    "skip" (done with this command and these inputs, its outputs as it left them), "resume"
    (a training step stopped before it finished, its checkpoint there) or "run".
    """
    if record is None or record["command"] != command or record["inputs"] != inputs:
        return "run"
    if record["finished"]:
        unchanged = all(digest is not None and sha256(path) == digest for path, digest in record["outputs"].items())
        return "skip" if unchanged else "run"
    checkpoint = checkpoint_path(command)
    return "resume" if checkpoint is not None and checkpoint.exists() else "run"


def show_skipped(command, record):
    """A skipped step in the log: its command, why it did not run, and the accuracy it printed then."""
    print(f"\n$ python {shlex.join(command)}")
    print(f"(skipped: done before, in {record['seconds']:.0f} s, with the same command and inputs; "
          f"its outputs are as it left them)")
    line = ACCURACY_LINE.search(record["stdout"])
    if line:
        print(line.group(0))


def choose_recipe(length, schedule, device_kind):
    """The flags added to the handout's commands: the CPU recipe's, or the full run's schedule's."""
    if length == "cpu" or (length == "auto" and not device_kind.full_recipe):
        if SCHEDULES[schedule]:
            raise ValueError(f"--schedule {schedule} is for the full run: the CPU recipe's pretraining already ends "
                             f"its cosine with the run (--cosine_epochs in CPU_RECIPE)")
        return CPU_RECIPE
    return {"pretrain": SCHEDULES[schedule]} if SCHEDULES[schedule] else {}


def recipe_flags(recipe, training):
    """What a recipe adds to a src/run.py command: the model's flags, and the training's (None: evaluate)."""
    return recipe.get("model", []) + (recipe.get(training, []) if training else [])


def describe(recipe):
    if "model" not in recipe:  # the handout's model: the full run, perhaps with another year's schedule
        schedule = f" and the 2023-24 schedule (pretrain `{' '.join(recipe['pretrain'])}`)" if recipe else ""
        return f"the handout's full run (650 pretraining epochs per variant, the handout's model and flags{schedule})"
    return "the CPU recipe, the handout's commands with these flags added: " + "; ".join(
        f"{'every command' if kind == 'model' else kind} `{' '.join(flags)}`" for kind, flags in recipe.items())


def step_command(arguments, training, folder, recipe, seed, device, precision="auto", snapshot_epochs=()):
    """
    A handout command as this run runs it: in folder, with the recipe's, the seed's, the device's
    and the precision's flags, and the pretraining's snapshots.
    """
    extra = []
    if arguments[0] == "src/run.py":
        extra += recipe_flags(recipe, training)
        if seed != 0 and training is not None:
            extra += ["--seed", str(seed)]
        if device != "auto":
            extra += ["--device", device]
        if precision != "auto" and training is not None:
            extra += ["--precision", precision]
        if snapshot_epochs and training == "pretrain":
            extra += ["--snapshot_epochs", *map(str, snapshot_epochs)]
    return in_folder(arguments, folder) + extra


def run_recorded(command, inputs, action, ledger, key, ledger_path):
    """Run a step afresh ("run") or from its checkpoint ("resume"), recorded before and after; returns its seconds."""
    checkpoint = checkpoint_path(command)
    if action == "run" and checkpoint is not None and checkpoint.exists():
        checkpoint.unlink()  # left by other flags or inputs, or by a run the ledger does not know
        print(f"\n(removed {checkpoint}: {ledger_path} does not record it as this command's; the step starts afresh)")
    seconds_before = ledger[key]["seconds"] if action == "resume" else 0.0
    # recorded before it runs: should the machine be lost, the next run finds the step unfinished
    ledger[key] = step_record(command, inputs, "", seconds_before, finished=False)
    write_ledger(ledger_path, ledger)
    outputs = step_files(command)[1]
    stamps = [file_stamp(path) for path in outputs]
    try:
        output, seconds, _ = run_step(command + (["--resume"] if action == "resume" else []))
    except StepStopped as stop:
        # Done all the same: a step that ended well as the signal came, and a training step
        # stopped once it had written its outputs (run.py writes the params when training has
        # ended, and then only removes the checkpoint). Redoing one stopped as it was about to
        # exit would take as long again, to be stopped at the same point by the next `timeout`.
        written = all(file_stamp(path) not in (None, stamp) for path, stamp in zip(outputs, stamps))
        finished = stop.returncode == 0 or (checkpoint is not None and written)
        ledger[key] = step_record(command, inputs, stop.output, seconds_before + stop.seconds, finished)
        write_ledger(ledger_path, ledger)
        raise
    ledger[key] = step_record(command, inputs, output, seconds_before + seconds, finished=True)
    write_ledger(ledger_path, ledger)
    return seconds


def pending_commands(seed, folder, recipe, device, variants=HANDOUT_VARIANTS, precision="auto", snapshot_epochs=()):
    """The commands of a sequence that its ledger does not let it skip now (a step to resume counts whole)."""
    ledger = read_ledger(folder / LEDGER_NAME)
    for _, arguments, training in handout_steps(variants):
        command = step_command(arguments, training, folder, recipe, seed, device, precision, snapshot_epochs)
        if next_action(ledger.get(shlex.join(arguments)), command, fingerprints(step_files(command)[0])) != "skip":
            yield command


def say_expected_time(args, recipe):
    """Print how long the steps still to run should take here: each kind of training step timed, times its steps."""
    pending = [command for index, seed in enumerate(args.seeds)
               for command in pending_commands(seed, sequence_folder(index, seed), recipe, args.device,
                                               args.variants, args.precision, args.snapshot_epochs)]
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


def run_sequence(seed, folder, recipe, device, variants=HANDOUT_VARIANTS, precision="auto", snapshot_epochs=()):
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
        command = step_command(arguments, training, folder, recipe, seed, device, precision, snapshot_epochs)
        inputs = fingerprints(step_files(command)[0])
        action = next_action(ledger.get(key), command, inputs)
        if action == "skip":
            show_skipped(command, ledger[key])
        else:
            seconds_now += run_recorded(command, inputs, action, ledger, key, ledger_path)
    records = [(row, ledger[shlex.join(arguments)]) for row, arguments, _ in handout_steps(variants)]
    results = {row: accuracy(record["stdout"]) for row, record in records if row is not None}
    return results, sum(record["seconds"] for _, record in records), seconds_now


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


def accuracy_table(results_by_seed, other_code_rows=()):
    """The rows of the runs made (the variants asked for), in REFERENCE's order; * marks other code's."""
    header = ("run", "this run", "the assignment's answer", "public runs (2021 unless said)")
    rows = [(name, summary([results[name] for results in results_by_seed]) + (" *" if name in other_code_rows else ""),
             *REFERENCE[name])
            for name in REFERENCE if name in results_by_seed[0]]
    return header, rows


def text_table(header, rows):
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(r, widths)).rstrip()
                     for r in [header, ["-" * w for w in widths], *rows])


def markdown_table(header, rows):
    return "\n".join("| " + " | ".join(r) + " |" for r in [header, ["---"] * len(header), *rows])


def make_figures(variants):
    """Training curves from the metrics logs; returns the figure paths written, if matplotlib is there."""
    figures = []
    for prefix, logs in [("pretrain", [f"{variant}.pretrain.params.metrics.jsonl" for variant in variants]),
                         ("finetune", ["vanilla.model.params.metrics.jsonl",
                                       *[f"{variant}.finetune.params.metrics.jsonl" for variant in variants]])]:
        output, _, status = run_step(["src/plot.py", *logs, "--out_dir", str(RESULTS_FOLDER), "--prefix", prefix],
                                     check=False)
        if status == 0:
            figures += [Path(line) for line in output.split()]
    return figures


def analyse_best(results, recipe, variants):
    """Analysis of the pretrained model with the best dev accuracy; returns (variant, report text)."""
    variant = max(variants, key=lambda v: results[f"{v}, pretrain + finetune"] or 0.0)
    json_path = RESULTS_FOLDER / f"{variant}.pretrain.dev.analysis.json"
    output, _, _ = run_step(["src/analyze.py", variant, "wiki.txt", "--reading_params_path",
                             f"{variant}.finetune.params", "--eval_corpus_path", "birth_dev.tsv",
                             "--predictions_path", f"{variant}.pretrain.dev.predictions",
                             "--finetune_corpus_path", "birth_places_train.tsv", "--json_path", str(json_path),
                             *recipe_flags(recipe, None)])
    return variant, output


def write_results(header, rows, seeds, recipe, minutes, device_name, figures, analysed_variant, analysis,
                  other_flags=()):
    sentence = describe(recipe)[0].upper() + describe(recipe)[1:]
    length = (f"**{sentence}.** A smaller model, pretrained for far less than the "
              f"handout's: its accuracies are what this much pretraining gives (BENCHMARKS.md, \"A CPU recipe\", "
              f"has the sweep behind it), not the handout's figures; `python handout.py --length full` on a GPU "
              f"makes those." if "model" in recipe
              else f"{sentence}.")
    figure_lines = "\n\n".join(f"![{path.stem}]({path.as_posix()})" for path in figures) or \
        "(no figures: matplotlib is not installed; `pip install matplotlib`, then run `python handout.py` again)"
    command = shlex.join(["python", "handout.py", *(["--seeds", *map(str, seeds)] if seeds != [0] else []),
                          *other_flags])
    other_code_note = f"\n{OTHER_CODE_NOTE}\n" if any(row[1].endswith(" *") for row in rows) else ""
    text = f"""# Results

Generated by `{command}` \
on {device_name}, {time.strftime('%Y-%m-%d')}, in {minutes:.1f} minutes. Do not edit by hand.

{length}

## Dev accuracy (%, 500 names{', mean ± standard deviation over seeds ' + ', '.join(map(str, seeds)) if len(seeds) > 1 else ''})

{markdown_table(header, rows)}
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


def run_handout(args, recipe, device_kind):
    """Every sequence, then the figures, the analysis, RESULTS.md and the table."""
    if args.redo_other_code:
        for index, seed in enumerate(args.seeds):
            forget_other_code(sequence_folder(index, seed), args.variants)
    say_expected_time(args, recipe)
    results_by_seed, seconds, seconds_now = [], 0.0, 0.0
    for index, seed in enumerate(args.seeds):
        results, sequence_seconds, sequence_seconds_now = run_sequence(seed, sequence_folder(index, seed), recipe,
                                                                       args.device, args.variants, args.precision,
                                                                       args.snapshot_epochs)
        results_by_seed.append(results)
        seconds += sequence_seconds
        seconds_now += sequence_seconds_now

    RESULTS_FOLDER.mkdir(exist_ok=True)
    figures = make_figures(args.variants)
    analysed_variant, analysis = analyse_best(results_by_seed[0], recipe, args.variants)
    other_code = set().union(*(made_by_other_code(read_ledger(sequence_folder(index, seed) / LEDGER_NAME),
                                                  args.variants) for index, seed in enumerate(args.seeds)))
    other_code_rows = {row for row, arguments, _ in handout_steps(args.variants) if shlex.join(arguments) in other_code}
    header, rows = accuracy_table(results_by_seed, other_code_rows)
    device_name = device_kind.table_name()
    other_flags = [*(["--variants", *args.variants] if args.variants != HANDOUT_VARIANTS else []),
                   *(["--schedule", args.schedule] if args.schedule != "2021" else []),
                   *(["--precision", args.precision] if args.precision != "auto" else []),
                   *(["--snapshot_epochs", *map(str, args.snapshot_epochs)] if args.snapshot_epochs else [])]
    write_results(header, rows, args.seeds, recipe, seconds / 60, device_name, figures, analysed_variant, analysis,
                  other_flags)

    seeds = f", seeds {' '.join(map(str, args.seeds))}" if len(args.seeds) > 1 else ""
    print(f"\nDev accuracy (%) of {describe(recipe)}{seeds}, {seconds / 60:.1f} minutes of training and "
          f"evaluation ({seconds_now / 60:.1f} of them in this run):")
    print(text_table(header, rows))
    if other_code_rows:
        print(OTHER_CODE_NOTE)
    print("\nRESULTS.md: this table, the training curves and the analysis of the best pretrained run.")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description="Run the handout's whole command sequence and tabulate it.")
    parser.add_argument("--length", choices=["auto", "full", "cpu"], default="auto",
                        help="full: the handout's run; cpu: the CPU recipe (see CPU_RECIPE); auto: full on a "
                             "CUDA GPU, cpu otherwise")
    parser.add_argument("--device", default="auto", help="passed to every src/run.py command")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="passed to every training command (default auto: run.py's choice)")
    parser.add_argument("--snapshot_epochs", type=int, nargs="+", default=[], metavar="N",
                        help="every pretraining also writes its params after these epochs "
                             "(VARIANT.pretrain.params.epochN), for src/knowledge_curve.py")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="run the sequence once per seed")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=HANDOUT_VARIANTS,
                        help="the variants pretrained, finetuned and evaluated, each as in 2(f) (default: the "
                             "handout's, vanilla synthesizer; rope and perceiver are the 2023-24 and 2022-23 "
                             "versions')")
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
