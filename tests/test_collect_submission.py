"""
Tests for collect_submission.sh: in a temporary copy of the repository, the zip holds
src/*.py and whichever of the nine outputs exist, each missing one is named, and the exit
status says whether the submission is complete. Both archivers (zip and Python's zipfile)
are exercised.
"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = [
    "vanilla.model.params",
    "vanilla.finetune.params",
    "synthesizer.finetune.params",
    "vanilla.nopretrain.dev.predictions",
    "vanilla.nopretrain.test.predictions",
    "vanilla.pretrain.dev.predictions",
    "vanilla.pretrain.test.predictions",
    "synthesizer.pretrain.dev.predictions",
    "synthesizer.pretrain.test.predictions",
]
SOURCES = ["src/model.py", "src/run.py", "src/utils.py"]


def make_checkout(tmp_path, outputs):
    root = tmp_path / "repo"
    (root / "src" / "__pycache__").mkdir(parents=True)
    shutil.copy(REPO / "collect_submission.sh", root)
    for source in SOURCES:
        (root / source).write_text(f"# {source}\n")
    (root / "src" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0")
    for output in outputs:
        (root / output).write_text(f"contents of {output}\n")
    # an archive left by an earlier run, holding a file that must not survive
    with zipfile.ZipFile(root / "assignment5.zip", "w") as zf:
        zf.writestr("stale.predictions", "old")
    return root


def collect(root, cwd, path=None):
    env = {**os.environ, "PATH": path} if path else dict(os.environ)
    return subprocess.run([shutil.which("bash"), str(root / "collect_submission.sh")],
                          cwd=cwd, env=env, capture_output=True, text=True)


def members(root):
    with zipfile.ZipFile(root / "assignment5.zip") as zf:
        assert zf.testzip() is None
        return sorted(zf.namelist())


def test_partial_submission_names_what_is_missing(tmp_path):
    present = OUTPUTS[::2]
    root = make_checkout(tmp_path, present)
    result = collect(root, cwd=tmp_path)  # run from outside the checkout
    assert result.returncode == 1
    missing_lines = [line for line in result.stdout.splitlines() if line.startswith("missing:")]
    assert missing_lines == [f"missing: {output}" for output in OUTPUTS[1::2]]
    assert f"with {len(SOURCES) + len(present)} files" in result.stdout
    assert members(root) == sorted(SOURCES + present)


def test_complete_submission(tmp_path):
    root = make_checkout(tmp_path, OUTPUTS)
    result = collect(root, cwd=root / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "missing" not in result.stdout + result.stderr
    assert f"with {len(SOURCES) + len(OUTPUTS)} files" in result.stdout
    assert members(root) == sorted(SOURCES + OUTPUTS)
    with zipfile.ZipFile(root / "assignment5.zip") as zf:
        assert zf.read("vanilla.model.params") == b"contents of vanilla.model.params\n"


def test_without_zip_command_python_keeps_the_paths(tmp_path):
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ["bash", "dirname", "rm"]:
        (tools / tool).symlink_to(shutil.which(tool))
    (tools / "python3").symlink_to(sys.executable)
    root = make_checkout(tmp_path, OUTPUTS[:3])
    result = collect(root, cwd=tmp_path, path=str(tools))
    assert result.returncode == 1
    assert len([line for line in result.stdout.splitlines() if line.startswith("missing:")]) == 6
    assert members(root) == sorted(SOURCES + OUTPUTS[:3])
