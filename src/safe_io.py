"""
Reading inputs and writing outputs without losing a run.

Inputs: a missing or unreadable file is an InputError that says which file, and suggests a
close name when there is one. Outputs: every file is written to a temporary file in the
same folder and renamed into place, so a crash or a kill never leaves a truncated file and a
failed run never overwrites an earlier good one.
"""

import difflib
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path


class InputError(Exception):
    """Bad input from the user: run.py prints the message alone and exits with status 2."""


def exit_on_input_error(work):
    """Run work(); an InputError becomes one line on stderr and exit status 2, with no traceback."""
    try:
        return work()
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def did_you_mean(path):
    path = Path(path)
    try:
        names = [p.name for p in path.parent.iterdir()]
    except OSError:
        return ""
    close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.75)
    return f"; did you mean {path.with_name(close[0])}?" if close else ""


def read_text(path, what):
    """The whole of a UTF-8 text file, or an InputError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist{did_you_mean(path)}") from None
    except UnicodeDecodeError as error:
        raise InputError(f"{what} {path} is not UTF-8 text (byte {error.start}): convert it to UTF-8") from None
    except OSError as error:
        raise InputError(f"{what} {path} cannot be read: {error.strerror}") from None


def check_writable(path, what):
    """Fail now, not after hours of training, when an output cannot go where it was asked to."""
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise InputError(f"{what} {path}: the folder {folder} does not exist; create it or choose another path")
    if not os.access(folder, os.W_OK):
        raise InputError(f"{what} {path}: the folder {folder} is not writable")


@contextmanager
def atomic_output(path, mode="w"):
    """Open a temporary file beside path for writing; it replaces path only if the block succeeds."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.resolve().parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp makes it private; outputs are not
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
