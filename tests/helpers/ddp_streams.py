"""
The dropout streams of a Trainer's processes, for tests/test_distributed.py: under torchrun,
each process draws after the Trainer is built, has a resume point restored, and draws again,
then has the same point restored as format 2 kept it (one set of generators, every process's)
and draws a third time; rank 0 saves every process's three draws to the path given.
"""

import sys
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import checkpoint  # noqa: E402
import distributed  # noqa: E402
import trainer  # noqa: E402
from device import CPU  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402
from test_checkpoint import format_2  # noqa: E402

out_path = sys.argv[1]
torch.manual_seed(0)
model = GPT(GPTConfig(50, 32, n_layer=1, n_head=2, n_embd=16))
distributed.start("cpu")
data = TensorDataset(torch.zeros(4, 31, dtype=torch.long), torch.zeros(4, 31, dtype=torch.long))
run = trainer.Trainer(model, data, None, trainer.TrainerConfig(device="cpu", checkpoint_path=out_path + ".checkpoint"))
optimizer = run.optimizer()
resume_point = run.capture_resume_point(optimizer, 0, [])
first = torch.rand(6)
checkpoint.restore(resume_point, model, optimizer, run.data_generator, run.settings(), "test", CPU)
after_restore = torch.rand(6)
checkpoint.restore(checkpoint.upgraded(format_2(resume_point)), model, optimizer, run.data_generator, run.settings(),
                   "test", CPU)
draws = distributed.every_process(torch.stack([first, after_restore, torch.rand(6)]))
if distributed.is_main_process():
    torch.save(draws, out_path)
distributed.end()
