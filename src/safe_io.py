"""
Reading inputs and writing outputs without losing a run.

Inputs: a missing or unreadable file is an InputError that says which file, and suggests a
close name when there is one; text saved on Windows or an old Mac reads as on Linux. Outputs:
a path that is a folder, or that is one of the command's inputs, is refused before any work;
every file is written to a temporary file in the same folder and renamed into place, so a crash
or a kill never leaves a truncated file and a failed run never overwrites an earlier good one.
The command line: a mistake in it is one line too, and numbers are checked against their range.
"""

import argparse
import codecs
import difflib
import math
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
    """
    The whole of a UTF-8 text file, or an InputError naming it. Windows' CR LF and old Macs' CR line
    ends become LF, as Python's text mode makes them, and a leading byte-order mark (Notepad's UTF-8)
    is dropped: a file saved on Windows gives the same vocabulary, questions and places as on Linux.
    Other encodings are refused, not guessed.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist{did_you_mean(path)}") from None
    except OSError as error:
        raise InputError(f"{what} {path} cannot be read: {error.strerror}") from None
    # UTF-16 text of ASCII characters decodes as UTF-8 with a NUL after each: refuse it by its NULs
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\0" in data:
        raise InputError(f"{what} {path} is not UTF-8 text: it is UTF-16 (Notepad's \"Unicode\") or binary; "
                         f"save it as UTF-8")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise InputError(f"{what} {path} is not UTF-8 text (line {line}, byte {error.start}): convert it to "
                         f"UTF-8") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def check_writable(path, what):
    """Fail now, not after hours of training, when an output cannot go where it was asked to."""
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise InputError(f"{what} {path}: the folder {folder} does not exist; create it or choose another path")
    if not os.access(folder, os.W_OK):
        raise InputError(f"{what} {path}: the folder {folder} is not writable")


def check_outputs(outputs, inputs):
    """
    Refuse, before any work, an output path that is a folder or that names one of the inputs by
    whatever spelling (./x, an absolute path, a symlink): writing it would destroy that input.
    outputs and inputs are (what, path) pairs; a path of None is left out.
    """
    for what, path in outputs:
        if path is None:
            continue
        if Path(path).is_dir():
            raise InputError(f"{what} {path} is a folder; give the path of a file")
        for input_what, input_path in inputs:
            if input_path is not None and same_file(path, input_path):
                raise InputError(f"{what} {path} is the same file as {input_what} {input_path}: writing it would "
                                 f"destroy that input; choose another path")


def same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): not the same file
        return False


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


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, but a mistake on the command line is one line, as every other bad input is."""

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def in_range(kind, low, high=math.inf, low_open=False, high_open=True):
    """
    An argparse type: a number of kind (int or float) from low to high, an end excluded where it is
    open. NaN is never in range, so a float flag is finite unless high is an included infinity.
    """
    interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"

    def parse(text):
        value = kind(text)  # a ValueError here is argparse's "invalid int value: 'x'"
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        if not (above and below):  # both False for NaN
            raise argparse.ArgumentTypeError(f"must be in {interval}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse
