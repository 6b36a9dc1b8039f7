"""
One step of handout.py's sequence: the files its command reads and makes (read off the command
by run.py's own parser), and running it in a subprocess, with Ctrl-C and SIGTERM relayed to it.
"""

import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import run
from params import checkpoint_path, metrics_path

ACCURACY_LINE = re.compile(r"^Correct: \S+ out of \S+: (\S+)%$", re.MULTILINE)


def run_arguments(command):
    """The arguments of a src/run.py command, as run.py parses them; None for another script's command."""
    if command[0] != "src/run.py":
        return None
    # known flags only: a ledger's record may hold a command with a flag that an older run.py had
    return run.argument_parser().parse_known_args(command[1:])[0]


def step_files(command):
    """(input files, output files) of a step's command: what it reads and what it makes."""
    args = run_arguments(command)
    if args is None:  # london_baseline.py reads its --eval_corpus_path and makes nothing
        return [command[command.index("--eval_corpus_path") + 1]], []
    inputs = [args.pretrain_corpus_path] + [path for path in (args.reading_params_path, args.finetune_corpus_path,
                                                              args.eval_corpus_path) if path is not None]
    outputs = []
    if args.writing_params_path is not None:  # the figures read the metrics log
        outputs += [args.writing_params_path, metrics_path(args.writing_params_path)]
    if args.outputs_path is not None:
        outputs.append(args.outputs_path)
    return inputs, outputs


def step_checkpoint(command):
    """Where a training step keeps its state to resume from (run.py's); None for a step that trains nothing."""
    args = run_arguments(command)
    if args is None or args.writing_params_path is None:
        return None
    return Path(checkpoint_path(args.writing_params_path))


def accuracy(output):
    match = ACCURACY_LINE.search(output)
    return float(match.group(1)) if match else None


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
