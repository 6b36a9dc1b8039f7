"""
One training step of a tiny model on a fixed batch, once for each variant named, for
tests/test_distributed.py: run with plain python for the single-process steps, or under
torchrun for the DDP steps (one launch for every variant: starting processes costs more than
the steps). Rank 0 saves each variant's params before and after its step to FOLDER/VARIANT.pt.
"""

import sys
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
import distributed  # noqa: E402
import trainer  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402

out_folder, variants = Path(sys.argv[1]), sys.argv[2:]
generator = torch.Generator().manual_seed(0)
x = torch.randint(2, 50, (7, 31), generator=generator)
y = torch.randint(2, 50, (7, 31), generator=generator)
for row, length in enumerate([5, 31, 12, 3, 20, 8, 17]):  # ragged, so the processes' shares differ
    y[row, length:] = 0
distributed.start("cpu")
for variant in variants:
    torch.manual_seed(0)
    # 3 layers, so that the perceiver has a middle block
    model = GPT(GPTConfig(50, 32, variant=variant, n_layer=3, n_head=2, n_embd=16, bottleneck_dim=8,
                          embd_pdrop=0.0, resid_pdrop=0.0, attn_pdrop=0.0))
    initial = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    config = trainer.TrainerConfig(max_epochs=1, batch_size=7, learning_rate=1e-2, lr_decay=True, warmup_tokens=10,
                                   final_tokens=1000, device="cpu")
    run = trainer.Trainer(model, TensorDataset(x, y), None, config)
    run.group_cost = 0  # a group per distinct length: each process runs several, DDP exchanging after the last
    run.train()
    if distributed.is_main_process():
        torch.save({"before": initial, "after": model.state_dict()}, out_folder / f"{variant}.pt")
distributed.end()
