"""
Tests for mingpt-demo/: its CharDataset, and its notebook, which must be a well-formed
nbformat-4 file whose code cells, run in order in one namespace at the tiny size
(MINGPT_DEMO_TINY=1), train a model that gets better and sample text from the prompt.
The notebook is read as JSON and run with exec, so no Jupyter is needed.
"""

import json
import math
import sys

import pytest
import torch

from conftest import ROOT, real_data_path

DEMO = ROOT / "mingpt-demo"
NOTEBOOK = DEMO / "play_char.ipynb"


@pytest.fixture
def demo_importable(monkeypatch):
    """What Jupyter gives the notebook: its own folder as working directory and on the import path."""
    monkeypatch.chdir(DEMO)
    monkeypatch.syspath_prepend(str(DEMO))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # no __pycache__ left in mingpt-demo/


def code_cells(notebook):
    return [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


def test_char_dataset_reserves_id_0_and_shifts_by_one(demo_importable):
    from mingpt import CharDataset
    from mingpt.char_dataset import PAD_CHAR

    text = "abracadabra, said the wizard"
    dataset = CharDataset(text, block_size=8)
    assert dataset.itos[0] == PAD_CHAR
    assert sorted(dataset.itos[1:]) == sorted(set(text))  # every real character gets an id, none gets 0
    assert dataset.vocab_size == len(set(text)) + 1
    assert len(dataset) == len(text) - 8
    for i in range(20):
        x, y = dataset[i]
        assert x.shape == y.shape == (8,) and x.dtype == y.dtype == torch.long
        chunk = "".join(dataset.itos[int(c)] for c in torch.cat([x, y[-1:]]))
        assert chunk in text and torch.equal(x[1:], y[:-1])


def test_char_dataset_refuses_bad_text(demo_importable):
    from mingpt import CharDataset
    from mingpt.char_dataset import PAD_CHAR

    with pytest.raises(ValueError, match="U\\+25A1"):
        CharDataset(f"a text with {PAD_CHAR} in it", block_size=4)
    with pytest.raises(ValueError, match="too few"):
        CharDataset("short", block_size=5)


def test_notebook_is_clean_nbformat_4():
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    assert notebook["nbformat"] == 4
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    assert notebook["cells"][0]["cell_type"] == "markdown"
    for cell in notebook["cells"]:
        assert cell["cell_type"] in ("markdown", "code")
        assert isinstance(cell["source"], list) and all(isinstance(line, str) for line in cell["source"])
    assert code_cells(notebook)
    for cell in code_cells(notebook):
        assert cell["outputs"] == [] and cell["execution_count"] is None  # committed without outputs


def test_notebook_trains_and_samples_at_tiny_size(demo_importable, monkeypatch):
    real_data_path("wiki.txt")
    monkeypatch.setenv("MINGPT_DEMO_TINY", "1")
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    namespace = {}
    for i, cell in enumerate(code_cells(notebook)):
        exec(compile("".join(cell["source"]), f"{NOTEBOOK.name}, code cell {i + 1}", "exec"), namespace)

    prompt, steps, completion = namespace["prompt"], namespace["steps"], namespace["completion"]
    assert isinstance(completion, str)
    assert len(completion) == len(prompt) + steps
    assert completion.startswith(prompt)
    loss_before, loss_after = namespace["loss_before"], namespace["loss_after"]
    assert math.isfinite(loss_before) and math.isfinite(loss_after)
    assert loss_after < loss_before


@pytest.mark.parametrize("cuda, size, schedule", [
    (True, (128, 8, 8, 512), (512, 2, None, 6e-4)),       # the original's, on a GPU
    (False, (128, 4, 4, 128), (64, 1, 30_000, 3e-3)),     # minutes on a 2-core CPU
])
def test_notebook_size_follows_the_machine(monkeypatch, cuda, size, schedule):
    monkeypatch.delenv("MINGPT_DEMO_TINY", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    settings = code_cells(json.loads(NOTEBOOK.read_text(encoding="utf-8")))[1]
    namespace = {"os": __import__("os"), "torch": torch}
    exec(compile("".join(settings["source"]), "settings cell", "exec"), namespace)
    names = ["block_size", "n_layer", "n_head", "n_embd", "batch_size", "max_epochs", "chunks_per_epoch",
             "learning_rate"]
    assert tuple(namespace[name] for name in names) == size + schedule
    assert namespace["text_length"] is None  # all of wiki.txt
