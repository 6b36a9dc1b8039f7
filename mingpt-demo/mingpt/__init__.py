"""
The small package behind play_char.ipynb. The model, the trainer and the sampler are the
repository's own, from src/, re-exported here so the notebook has one place to import from;
only CharDataset, the demo's way of turning a plain text into training examples, is new.
"""

import sys
from pathlib import Path

# src/ is not a package: its modules import each other by bare name (from model import ...),
# so the folder itself goes on the path, found from this file so any working directory will do
SRC = Path(__file__).resolve().parents[2] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from model import GPT, GPTConfig  # noqa: E402
from trainer import Trainer, TrainerConfig  # noqa: E402
from utils import sample, set_seed  # noqa: E402

from .char_dataset import CharDataset  # noqa: E402

__all__ = ["CharDataset", "GPT", "GPTConfig", "Trainer", "TrainerConfig", "sample", "set_seed"]
