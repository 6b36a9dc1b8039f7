"""
handout.py's record of what it ran: each sequence folder's ledger, handout.steps.json, holds every
step's command, the SHA-256 of its files and the code that made it; from it, handout.py skips a
step, resumes it from its checkpoint or runs it afresh, and records it before and after it runs.
"""

import ast
import hashlib
import json
import os
import shlex
from pathlib import Path

from handout_step import ACCURACY_LINE, StepStopped, run_step, step_checkpoint, step_files
from safe_io import InputError, atomic_output

LEDGER_NAME = "handout.steps.json"  # in each sequence folder: what its steps did (see read_ledger)
STEP_PROGRAMS = ("src/run.py", "london_baseline.py")  # the programs handout.py's steps run
RECORD_KEYS = {"command", "inputs", "outputs", "stdout", "seconds", "finished"}


def sha256(path):
    """The file's SHA-256 in hex; None when there is no such file."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:
        return None


def fingerprints(paths):
    return {path: sha256(path) for path in paths}


def file_stamp(path):
    """What tells a file written anew (outputs are new files renamed into place) from the one before; None if none."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns


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
    What tells the code the steps run from other code: a SHA-256 over the names and contents of
    the programs the steps run (src/run.py and london_baseline.py under root) and of every module
    of src/ they import, however deeply. What no step runs (handout.py and its own modules, the
    analysis and the figures' scripts), READMEs and tests do not count.
    """
    root = Path(root)
    digest = hashlib.sha256()
    for path in steps_code(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def steps_code(root):
    """STEP_PROGRAMS under root and the modules of root/src they import, directly or through each other, sorted."""
    found, waiting = set(), [root / program for program in STEP_PROGRAMS]
    while waiting:
        path = waiting.pop()
        if path in found or not path.is_file():
            continue
        found.add(path)
        waiting += [root / "src" / f"{name}.py" for name in imported_names(path)]
    return sorted(found)


def imported_names(path):
    """The top-level names of the modules a Python file imports anywhere in it (inside functions too)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError:  # its step fails and says why; its own text is still in the hash
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


CODE = code_hash(Path(__file__).resolve().parents[1])


def step_record(command, inputs, stdout, seconds, finished):
    return {"command": command, "inputs": inputs, "outputs": fingerprints(step_files(command)[1]),
            "stdout": stdout, "seconds": seconds, "finished": finished, "code": CODE}


def made_by_other_code(ledger, steps):
    """
    The handout's commands whose step, or a step whose outputs it read, other code made
    (a record from before the ledger kept the code counts as other code).
    """
    other_outputs, commands = set(), set()
    for _, arguments, _ in steps:
        key = shlex.join(arguments)
        record = ledger.get(key)
        if record is None:
            continue
        inputs, outputs = step_files(record["command"])
        if record.get("code") != CODE or other_outputs.intersection(inputs):
            other_outputs.update(outputs)
            commands.add(key)
    return commands


def forget_other_code(folder, steps):
    """--redo_other_code: the ledger forgets the steps other code made, so that they run afresh."""
    ledger_path = folder / LEDGER_NAME
    ledger = read_ledger(ledger_path)
    other = made_by_other_code(ledger, steps)
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
    checkpoint = step_checkpoint(command)
    return "resume" if checkpoint is not None and checkpoint.exists() else "run"


def show_skipped(command, record):
    """A skipped step in the log: its command, why it did not run, and the accuracy it printed then."""
    print(f"\n$ python {shlex.join(command)}")
    print(f"(skipped: done before, in {record['seconds']:.0f} s, with the same command and inputs; "
          f"its outputs are as it left them)")
    line = ACCURACY_LINE.search(record["stdout"])
    if line:
        print(line.group(0))


def run_recorded(command, inputs, action, ledger, key, ledger_path):
    """Run a step afresh ("run") or from its checkpoint ("resume"), recorded before and after; returns its seconds."""
    checkpoint = step_checkpoint(command)
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
