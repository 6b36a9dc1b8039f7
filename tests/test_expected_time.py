"""
What handout.py says a sequence will take: each kind of training step timed once, times the
steps each command takes; only the steps still to run are counted.
"""

import math
from pathlib import Path

import pytest

import expected_time
import handout
import handout_ledger
import handout_step

WIKI = "\n".join(f"Person {i}. Where was Person {i} born? In Town {i % 7}; he wrote {i} books." for i in range(30))
QUESTIONS = "\n".join(f"Where was Person {i} born?\tTown {i % 7}" for i in range(20)) + "\n"


@pytest.fixture
def data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("wiki.txt").write_text(WIKI, encoding="utf-8")
    Path("train.tsv").write_text(QUESTIONS, encoding="utf-8")
    return tmp_path


def timed_kinds(monkeypatch, seconds):
    """Stand in for the step probe: each call is recorded, every step takes `seconds`."""
    calls = []

    def probe(args, dataset, vocab_size, batch_size):
        calls.append((args.function, args.variant, batch_size, len(dataset)))
        return seconds

    monkeypatch.setattr(expected_time, "seconds_per_step", probe)
    return calls


def test_a_training_command_takes_its_epochs_times_its_batches_times_the_timed_step(data, monkeypatch):
    calls = timed_kinds(monkeypatch, 0.25)
    estimate = expected_time.Estimate()
    base = ["src/run.py", "pretrain", "vanilla", "wiki.txt", "--writing_params_path", "p.params"]
    assert estimate.seconds(base + ["--max_epochs", "3", "--batch_size", "4"]) == \
        expected_time.COMMAND_SECONDS + 3 * math.ceil(30 / 4) * 0.25
    # the handout's own epochs and batch size when no flag overrides them
    assert estimate.seconds(base) == expected_time.COMMAND_SECONDS + 650 * math.ceil(30 / 128) * 0.25
    finetune = ["src/run.py", "finetune", "vanilla", "wiki.txt", "--writing_params_path", "f.params",
                "--finetune_corpus_path", "train.tsv"]
    assert estimate.seconds(finetune) == expected_time.COMMAND_SECONDS + 75 * 1 * 0.25
    assert estimate.seconds(finetune + ["--reading_params_path", "p.params"]) == \
        expected_time.COMMAND_SECONDS + 10 * 1 * 0.25
    evaluate = ["src/run.py", "evaluate", "vanilla", "wiki.txt", "--reading_params_path", "f.params",
                "--eval_corpus_path", "train.tsv", "--outputs_path", "out"]
    assert estimate.seconds(evaluate) == expected_time.COMMAND_SECONDS
    assert estimate.seconds(["london_baseline.py", "--eval_corpus_path", "train.tsv"]) == \
        expected_time.COMMAND_SECONDS
    # one probe per kind of step: the pretraining at batch 4 and at 128, and the finetuning once
    assert calls == [("pretrain", "vanilla", 4, 30), ("pretrain", "vanilla", 128, 30),
                     ("finetune", "vanilla", 256, 20)]


def test_the_probe_times_real_training_steps_of_the_commands_model(data, monkeypatch):
    monkeypatch.setattr(expected_time, "PROBE_SECONDS", 0.2)
    steps = []
    real_step = expected_time.Trainer.step

    def counted(self, optimizer, x, y, lengths):
        steps.append((x.shape, sum(p.numel() for p in self.model.parameters())))
        return real_step(self, optimizer, x, y, lengths)

    monkeypatch.setattr(expected_time.Trainer, "step", counted)
    estimate = expected_time.Estimate()
    seconds = estimate.seconds(["src/run.py", "pretrain", "vanilla", "wiki.txt", "--writing_params_path", "p",
                                "--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--max_epochs", "2",
                                "--batch_size", "2"])
    model = expected_time.build_model(estimate.corpus("wiki.txt").vocab_size, 128, "vanilla",
                                      expected_time.run.parse_args(["pretrain", "vanilla", "wiki.txt", "--n_layer", "1",
                                                                    "--n_head", "2", "--n_embd", "16",
                                                                    "--writing_params_path", "q"]))
    size = sum(p.numel() for p in model.parameters())
    step_seconds = (seconds - expected_time.COMMAND_SECONDS) / (2 * 15)
    assert 0 < step_seconds < 1
    assert len(steps) >= 2 and all(step == ((2, 127), size) for step in steps)
    assert not Path("p").exists()  # the probe trains nothing that stays


def test_only_the_steps_still_to_run_are_estimated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ["wiki.txt", "birth_places_train.tsv", "birth_dev.tsv", "birth_test_inputs.tsv"]:
        Path(name).write_text(f"the contents of {name}\n", encoding="utf-8")
    pending = list(handout.pending_commands(0, Path("."), handout.CPU_RECIPE))
    assert len(pending) == 12 and pending[3][:2] == ["src/run.py", "pretrain"]

    def made(arguments, check=True):  # every step done, its outputs written
        for path in handout_step.step_files(arguments)[1]:
            Path(path).write_text("made", encoding="utf-8")
        return "", 1.0, 0

    monkeypatch.setattr(handout_ledger, "run_step", made)
    handout.run_sequence(0, Path("."), handout.CPU_RECIPE)
    assert list(handout.pending_commands(0, Path("."), handout.CPU_RECIPE)) == []
    # a lost output: its step runs again, and the steps that read it may (what it makes is not known yet)
    Path("synthesizer.finetune.params").unlink()
    again = list(handout.pending_commands(0, Path("."), handout.CPU_RECIPE))
    assert [command[:3] for command in again] == [["src/run.py", "finetune", "synthesizer"],
                                                  ["src/run.py", "evaluate", "synthesizer"],
                                                  ["src/run.py", "evaluate", "synthesizer"]]
