"""
Tests for london_baseline.py: it scores "London" for everyone through src/utils.py's
evaluate_places and prints the same line as run.py's evaluation. Each test runs the script
in a temporary copy of the repository (the script and src/), so nothing is written here.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def run_baseline(tmp_path, eval_corpus_path):
    root = tmp_path / "repo"
    if not root.exists():
        shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(REPO / "london_baseline.py", root)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    # run from elsewhere: the script must find src/ next to itself, not in the working directory
    command = [sys.executable, str(root / "london_baseline.py"), "--eval_corpus_path", str(eval_corpus_path)]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)


def test_small_file(tmp_path):
    corpus = tmp_path / "small.tsv"
    corpus.write_text("Where was Ada Lovelace born?\tLondon\n"
                      "Where was Alan Turing born?\tMaida Vale\n"
                      "Where was Marie Curie born?\tWarsaw\n"
                      "Where was Charles Babbage born?\tLondon, England\n", encoding="utf-8")
    result = run_baseline(tmp_path, corpus)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Correct: 1.0 out of 4.0: 25.0%\n"


def test_file_without_answers_is_refused(tmp_path):
    corpus = tmp_path / "questions.tsv"
    corpus.write_text("Where was Ada Lovelace born?\nWhere was Alan Turing born?\n", encoding="utf-8")
    result = run_baseline(tmp_path, corpus)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"No targets in {corpus}: the London baseline needs a file with answers\n"


def test_missing_file_is_refused(tmp_path):
    result = run_baseline(tmp_path, tmp_path / "absent.tsv")
    assert result.returncode == 2
    assert "absent.tsv" in result.stderr and "get_data.py" in result.stderr


@pytest.mark.skipif(not (SHARED_DATA / "birth_dev.tsv").is_file(), reason=f"no birth_dev.tsv in {SHARED_DATA}")
def test_dev_set_matches_the_handout(tmp_path):
    result = run_baseline(tmp_path, SHARED_DATA / "birth_dev.tsv")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Correct: 25.0 out of 500.0: 5.0%\n"
