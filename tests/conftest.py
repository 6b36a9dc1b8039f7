"""Shared test set-up: src/ on the import path, and where the real data lives."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # the top-level scripts, such as handout.py


def real_data_path(name):
    """A real data file, from the repository top level (get_data.py puts them there); skip if absent."""
    path = ROOT / name
    if not path.is_file():
        pytest.skip(f"{name} is not at the repository top level: run python get_data.py")
    return path
