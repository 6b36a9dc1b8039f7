"""
Tests for get_data.py: files are copied or downloaded only when their SHA-256 sum is right,
a wrong file never lands at the top level, and failures exit with status 2 and say why.
The functions are tested on small fake files with their own sum table; the script itself
runs in a temporary copy of the repository, against the real data when it is available.
"""

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
NOWHERE_URL = "file:///nonexistent/a5.zip"
FAKE_FILES = {"wiki.txt": b"Ada Lovelace. Ada was born in London.", "birth_dev.tsv": b"Where was Ada born?\tLondon\n"}
FAKE_SUMS = {name: hashlib.sha256(content).hexdigest() for name, content in FAKE_FILES.items()}


def load_get_data():
    was_writing_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in the repository
    try:
        spec = importlib.util.spec_from_file_location("get_data", REPO / "get_data.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = was_writing_bytecode
    return module


get_data = load_get_data()
REAL_SUMS = get_data.EXPECTED_SHA256


def write_files(folder, files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder


def top_level_names(root):
    return sorted(p.name for p in root.iterdir())


def test_copies_from_folder(tmp_path, capsys):
    folder = write_files(tmp_path / "data", FAKE_FILES)
    root = tmp_path / "repo"
    root.mkdir()
    missing, problems = get_data.fetch(root, FAKE_SUMS, folder, NOWHERE_URL)
    assert (missing, problems) == ([], [])
    for name, content in FAKE_FILES.items():
        assert (root / name).read_bytes() == content
    assert capsys.readouterr().out.splitlines() == [f"{name}: copied from {folder}" for name in FAKE_FILES]
    assert top_level_names(root) == sorted(FAKE_FILES)


def test_keeps_good_files_and_replaces_wrong_ones(tmp_path, capsys):
    folder = write_files(tmp_path / "data", FAKE_FILES)
    root = write_files(tmp_path / "repo", {"wiki.txt": FAKE_FILES["wiki.txt"], "birth_dev.tsv": b"stale"})
    missing, problems = get_data.fetch(root, FAKE_SUMS, folder, NOWHERE_URL)
    assert (missing, problems) == ([], [])
    assert (root / "birth_dev.tsv").read_bytes() == FAKE_FILES["birth_dev.tsv"]
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "wiki.txt: already present"
    assert out[-1] == f"birth_dev.tsv: copied from {folder}"


def test_corrupted_file_is_refused_and_not_installed(tmp_path):
    folder = write_files(tmp_path / "data", {**FAKE_FILES, "birth_dev.tsv": b"Where was Ada born?\tParis\n"})
    root = tmp_path / "repo"
    root.mkdir()
    missing, problems = get_data.fetch(root, FAKE_SUMS, folder, NOWHERE_URL)
    assert missing == ["birth_dev.tsv"]
    corrupted_sum = hashlib.sha256(b"Where was Ada born?\tParis\n").hexdigest()
    refusal = [p for p in problems if "birth_dev.tsv" in p and str(folder) in p]
    assert len(refusal) == 1
    assert FAKE_SUMS["birth_dev.tsv"] in refusal[0] and corrupted_sum in refusal[0]
    assert any(NOWHERE_URL in p for p in problems)
    # the good file went in; the bad one, and any partial file, did not
    assert top_level_names(root) == ["wiki.txt"]


def test_downloads_from_zip_matching_by_basename(tmp_path, capsys):
    archive = tmp_path / "a5.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("__MACOSX/student/._wiki.txt", b"resource fork")
        for name, content in FAKE_FILES.items():
            zf.writestr(f"student/{name}", content)
    root = tmp_path / "repo"
    root.mkdir()
    missing, problems = get_data.fetch(root, FAKE_SUMS, None, archive.as_uri())
    assert (missing, problems[1:]) == ([], [])  # problems[0] only notes there was no folder
    for name, content in FAKE_FILES.items():
        assert (root / name).read_bytes() == content
    downloaded = [f"{name}: downloaded from {archive.as_uri()}" for name in FAKE_FILES]
    assert capsys.readouterr().out.splitlines() == downloaded


def test_download_refuses_corrupted_member(tmp_path):
    archive = tmp_path / "a5.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a5/wiki.txt", b"not the right text")
    root = tmp_path / "repo"
    root.mkdir()
    missing, problems = get_data.fetch(root, FAKE_SUMS, tmp_path / "no_such_folder", archive.as_uri())
    assert missing == list(FAKE_SUMS)
    assert any("no_such_folder" in p and "does not exist" in p for p in problems)
    assert any("wiki.txt" in p and FAKE_SUMS["wiki.txt"] in p for p in problems)
    assert any("the archive has no birth_dev.tsv" in p for p in problems)
    assert top_level_names(root) == []


def test_check_function(tmp_path, capsys):
    root = write_files(tmp_path / "repo", {"wiki.txt": FAKE_FILES["wiki.txt"]})
    assert not get_data.check(root, FAKE_SUMS)
    assert capsys.readouterr().out.splitlines() == ["wiki.txt: ok", "birth_dev.tsv: missing"]
    (root / "birth_dev.tsv").write_bytes(FAKE_FILES["birth_dev.tsv"])
    assert get_data.check(root, FAKE_SUMS)
    (root / "wiki.txt").write_bytes(b"edited")
    assert not get_data.check(root, FAKE_SUMS)
    assert f"wiki.txt: wrong SHA-256 sum: expected {FAKE_SUMS['wiki.txt']}" in capsys.readouterr().out


# The script itself, on the real sum table, in a copy of the repository at tmp_path/repo
# (so its default folder is tmp_path/shared/data, which each test controls).

def run_script(tmp_path, *args, env_extra=None):
    root = tmp_path / "repo"
    root.mkdir(exist_ok=True)
    shutil.copy(REPO / "get_data.py", root)
    env = {k: v for k, v in os.environ.items() if k != "A5_DATA_DIR"}
    env.update(PYTHONDONTWRITEBYTECODE="1", **(env_extra or {}))
    return subprocess.run([sys.executable, "get_data.py", *args], cwd=root, env=env, capture_output=True, text=True)


def data_names(tmp_path):
    return sorted(p.name for p in (tmp_path / "repo").iterdir() if p.name != "get_data.py")


def test_script_without_any_source_exits_2(tmp_path):
    result = run_script(tmp_path, "--url", NOWHERE_URL)
    assert result.returncode == 2
    assert "could not get wiki.txt, birth_places_train.tsv, birth_dev.tsv, birth_test_inputs.tsv" in result.stderr
    assert NOWHERE_URL in result.stderr and "No such file" in result.stderr
    assert "--from DIR" in result.stderr
    assert data_names(tmp_path) == []


def test_script_refuses_corrupted_folder(tmp_path):
    folder = write_files(tmp_path / "fake", {"wiki.txt": b"corrupted", "birth_dev.tsv": b"corrupted"})
    result = run_script(tmp_path, "--from", str(folder), "--url", NOWHERE_URL)
    assert result.returncode == 2
    assert f"wiki.txt has the wrong SHA-256 sum: expected {REAL_SUMS['wiki.txt']}" in result.stderr
    assert hashlib.sha256(b"corrupted").hexdigest() in result.stderr
    assert data_names(tmp_path) == []


def test_script_check_on_empty_repository(tmp_path):
    result = run_script(tmp_path, "--check")
    assert result.returncode == 2
    assert "wiki.txt: missing" in result.stdout and "run python get_data.py" in result.stderr


needs_real_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"no real data in {SHARED_DATA}")


@needs_real_data
def test_sum_table_matches_the_shared_sums_file():
    listed = dict(reversed(line.split()) for line in (SHARED_DATA / "SHA256SUMS").read_text().splitlines() if line)
    assert REAL_SUMS == listed


@needs_real_data
def test_script_copies_real_data_from_default_folder(tmp_path):
    shutil.copytree(SHARED_DATA, tmp_path / "shared" / "data")
    result = run_script(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{name}: copied from {tmp_path / 'shared' / 'data'}" for name in REAL_SUMS] \
        + ["birthplaces_train.tsv: linked to birth_places_train.tsv (the handout's spelling in part 2(f))"]
    assert data_names(tmp_path) == sorted([*REAL_SUMS, "birthplaces_train.tsv"])
    repo = tmp_path / "repo"
    assert (repo / "birthplaces_train.tsv").read_bytes() == (repo / "birth_places_train.tsv").read_bytes()
    again = run_script(tmp_path, "--url", NOWHERE_URL)
    assert again.returncode == 0 and again.stdout.splitlines() == [f"{name}: already present" for name in REAL_SUMS]
    check = run_script(tmp_path, "--check")
    assert check.returncode == 0 and check.stdout.splitlines() == [f"{name}: ok" for name in REAL_SUMS]


@needs_real_data
def test_script_honours_env_folder_and_downloads(tmp_path):
    result = run_script(tmp_path, "--url", NOWHERE_URL, env_extra={"A5_DATA_DIR": str(SHARED_DATA)})
    assert result.returncode == 0, result.stderr
    assert data_names(tmp_path) == sorted([*REAL_SUMS, "birthplaces_train.tsv"])

    archive = tmp_path / "a5.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in REAL_SUMS:
            zf.write(SHARED_DATA / name, f"student/{name}")
    (tmp_path / "repo" / "birth_dev.tsv").unlink()
    result = run_script(tmp_path, "--url", archive.as_uri())
    assert result.returncode == 0, result.stderr
    assert f"birth_dev.tsv: downloaded from {archive.as_uri()}" in result.stdout.splitlines()
    assert (tmp_path / "repo" / "birth_dev.tsv").read_bytes() == (SHARED_DATA / "birth_dev.tsv").read_bytes()

