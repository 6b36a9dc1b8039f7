"""
Shared test set-up: src/ on the import path, where the real data lives, and two markers: a
test marked `cuda` runs only where PyTorch sees a CUDA GPU, and is skipped elsewhere (on the
CPU and in CI); `python -m pytest -m cuda tests` runs those alone. A test marked `slow` (a
minute or more on 2 cores, such as a torch.compile) runs only with `--slow`.
"""

import os
import sys
from pathlib import Path

import pytest
import torch

# as utils.set_seed does for a command: tests that train in this process get MKL's reproducible mode
os.environ.setdefault("MKL_CBWR", "AUTO")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # the top-level scripts, such as handout.py


def real_data_path(name):
    """A real data file, from the repository top level (get_data.py puts them there); skip if absent."""
    path = ROOT / name
    if not path.is_file():
        pytest.skip(f"{name} is not at the repository top level: run python get_data.py")
    return path


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run the tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU; skipped where PyTorch sees none")
    config.addinivalue_line("markers", "slow: a minute or more; runs only with --slow")


def pytest_collection_modifyitems(config, items):
    skips = {}
    if not torch.cuda.is_available():
        skips["cuda"] = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    if not config.getoption("--slow"):
        skips["slow"] = pytest.mark.skip(reason="slow: runs with --slow")
    for item in items:
        for marker, skip in skips.items():
            if item.get_closest_marker(marker) is not None:
                item.add_marker(skip)
