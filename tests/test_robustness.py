"""
Never lose a run: bad input gets one clear line and exit status 2 with nothing written;
outputs are written atomically; training keeps a metrics log and a resumable checkpoint,
survives a real SIGTERM, and stops on a loss that is not finite.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import checkpoint
import params
import run
import trainer as trainer_module
from conftest import ROOT
from model import GPT, GPTConfig
from test_checkpoint import CreatesAFile
from trainer import learning_rate_at

CORPUS = "\n".join([
    "Ada Lovelace. Ada Lovelace was an English mathematician born in London .",
    "Alan Turing. Alan Turing was a mathematician and computer scientist born in Maida Vale, London .",
    "Grace Hopper. Grace Hopper was an American computer scientist born in New York City .",
    "Marie Curie. Marie Curie was a physicist and chemist born in Warsaw, Poland .",
    "Niels Bohr. Niels Bohr was a Danish physicist born in Copenhagen .",
    "Emmy Noether. Emmy Noether was a German mathematician born in Erlangen .",
    "Srinivasa Ramanujan. Srinivasa Ramanujan was an Indian mathematician born in Erode .",
    "Lise Meitner. Lise Meitner was an Austrian physicist born in Vienna .",
    "Wanda Wu. Where was Wanda Wu born? Nobody knows .",
])
FINETUNE = "".join(f"Where was {name} born?\t{place}\n" for name, place in [
    ("Ada Lovelace", "London"), ("Alan Turing", "London"), ("Grace Hopper", "New York City"),
    ("Marie Curie", "Warsaw"), ("Niels Bohr", "Copenhagen"), ("Emmy Noether", "Erlangen"),
])
FAST = ["--max_epochs", "1", "--batch_size", "4", "--device", "cpu"]


@pytest.fixture
def files(tmp_path):
    paths = {"corpus": tmp_path / "wiki.txt", "finetune": tmp_path / "birth_places_train.tsv",
             "dev": tmp_path / "birth_dev.tsv"}
    paths["corpus"].write_text(CORPUS, encoding="utf-8")
    paths["finetune"].write_text(FINETUNE, encoding="utf-8")
    paths["dev"].write_text(FINETUNE[:FINETUNE.index("Where was Marie")], encoding="utf-8")
    return paths


def run_cli(*arguments, cwd):
    return subprocess.run([sys.executable, str(ROOT / "src" / "run.py"), *map(str, arguments)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def assert_refused(result, *words):
    """Exit status 2, one line on stderr that starts with 'error:' and names what it should."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: ") or lines[0].startswith("usage:") is False
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def finetune(files, tmp_path, finetune_path=None, *extra):
    return run_cli("finetune", "vanilla", files["corpus"], "--writing_params_path", tmp_path / "out.params",
                   "--finetune_corpus_path", finetune_path or files["finetune"], *FAST, *extra, cwd=tmp_path)


def test_a_mistyped_path_is_named_with_a_suggestion(files, tmp_path):
    line = assert_refused(finetune(files, tmp_path, "birthplaces_train.tsv"), "birthplaces_train.tsv")
    assert "did you mean birth_places_train.tsv?" in line
    assert_refused(run_cli("pretrain", "vanilla", "wiki.tx", "--writing_params_path", "p.params", cwd=tmp_path),
                   "wiki.tx", "did you mean wiki.txt?")
    assert not (tmp_path / "out.params").exists() and not (tmp_path / "p.params").exists()


@pytest.mark.parametrize("content, words", [
    ("Where was Ada Lovelace born? London\n", ["line 1", "0 tabs"]),
    ("Where was Ada Lovelace born?\tLondon\nWhere was Alan Turing born?\t\n", ["line 2", "empty place"]),
    ("Where was Ada Lovelace born?\tLondon\tEngland\n", ["line 1", "2 tabs"]),
    ("Where was Ada Lovelace born?\tLondon\nWhere was Zoe born?\tQuito\n", ["line 2", "'Q'", "vocabulary"]),
    ("Where was Ada Lovelace born?\t" + "London " * 20 + "\n", ["line 1", "block holds 128"]),
])
def test_bad_finetuning_lines_are_refused_with_their_line(files, tmp_path, content, words):
    bad = tmp_path / "bad.tsv"
    bad.write_text(content, encoding="utf-8")
    assert_refused(finetune(files, tmp_path, bad), "bad.tsv", *words)
    assert not (tmp_path / "out.params").exists()


@pytest.mark.parametrize("text, words", [
    ("Ada. born in London\nBob. \u25A1 here", ["PAD", "line 2"]),
    ("Ada. born in \u2047 London", ["MASK", "line 1"]),
    ("", ["empty"]),
])
def test_bad_corpora_are_refused(tmp_path, text, words):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text, encoding="utf-8")
    assert_refused(run_cli("pretrain", "vanilla", corpus, "--writing_params_path", tmp_path / "p.params",
                           *FAST, cwd=tmp_path), "corpus.txt", *words)
    assert not (tmp_path / "p.params").exists()


def test_params_of_another_size_load_when_the_size_flags_say_it(files, tmp_path):
    vocab_size = len(set(CORPUS)) + 2
    small = tmp_path / "small.params"
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size, 128, n_layer=2, n_head=4, n_embd=64))
    torch.save(model.state_dict(), small)
    result = run_cli("evaluate", "vanilla", files["corpus"], "--reading_params_path", small, "--n_layer", "2",
                     "--n_head", "4", "--n_embd", "64", "--eval_corpus_path", files["dev"],
                     "--outputs_path", tmp_path / "out.predictions", "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    count = sum(p.numel() for p in model.parameters())
    assert f"number of parameters: {count:,}" in result.stdout and count < 300_000  # not the handout's 3.2M
    assert len((tmp_path / "out.predictions").read_text().splitlines()) == 3
    trained = run_cli("finetune", "synthesizer", files["corpus"], "--writing_params_path", tmp_path / "s.params",
                      "--finetune_corpus_path", files["finetune"], "--n_layer", "1", "--n_head", "2", "--n_embd", "32",
                      *FAST, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    saved = torch.load(tmp_path / "s.params", weights_only=True)
    assert saved["blocks.0.attn.w2"].shape == (16, 127) and "blocks.1.ln1.weight" not in saved


def test_a_size_the_heads_cannot_split_is_refused(files, tmp_path):
    assert_refused(finetune(files, tmp_path, None, "--n_head", "3"), "--n_layer 4 --n_head 3 --n_embd 256",
                   "n_embd a multiple of n_head")
    assert not (tmp_path / "out.params").exists()


def test_the_analysis_does_not_import_the_command_line():
    check = "import sys; sys.path.insert(0, 'src'); import analyze; sys.exit('run' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", check], cwd=ROOT, timeout=60).returncode == 0


def test_bad_params_files_are_refused(files, tmp_path):
    def evaluate(params):
        return run_cli("evaluate", "vanilla", files["corpus"], "--reading_params_path", params,
                       "--eval_corpus_path", files["dev"], "--outputs_path", tmp_path / "out.predictions",
                       "--device", "cpu", cwd=tmp_path)

    text_file = tmp_path / "notes.params"
    text_file.write_text("not params")
    assert_refused(evaluate(text_file), "notes.params", "not a params file")
    vocab_size = len(set(CORPUS)) + 2
    small = tmp_path / "small.params"
    torch.save(GPT(GPTConfig(vocab_size, 128, n_layer=2, n_embd=64)).state_dict(), small)
    assert_refused(evaluate(small), "small.params", "holds a model of 2 layers, n_embd 64",
                   "builds one of 4 layers, n_embd 256", "run with --n_layer 2 --n_embd 64")
    synthesizer = tmp_path / "synthesizer.params"
    torch.save(GPT(GPTConfig(vocab_size, 128, variant="synthesizer")).state_dict(), synthesizer)
    assert_refused(evaluate(synthesizer), "holds synthesizer params", "asks for vanilla")
    assert_refused(evaluate(tmp_path / "absent.params"), "absent.params", "does not exist")
    assert not (tmp_path / "out.predictions").exists()


def test_an_evaluation_character_outside_the_vocabulary_is_named(files, tmp_path):
    params = tmp_path / "v.params"
    torch.save(GPT(GPTConfig(len(set(CORPUS)) + 2, 128)).state_dict(), params)
    questions = tmp_path / "questions.tsv"
    questions.write_text("Where was Ada Lovelace born?\nWhere was Zo\u00eb born?\n", encoding="utf-8")
    result = run_cli("evaluate", "vanilla", files["corpus"], "--reading_params_path", params,
                     "--eval_corpus_path", questions, "--outputs_path", tmp_path / "out.predictions",
                     "--device", "cpu", cwd=tmp_path)
    assert_refused(result, "questions.tsv line 2", "'Z'", "'\u00eb'")
    assert not (tmp_path / "out.predictions").exists()


def test_missing_flags_and_output_folders_are_refused_before_any_work(files, tmp_path):
    result = run_cli("finetune", "vanilla", files["corpus"], "--writing_params_path", "p.params", cwd=tmp_path)
    assert result.returncode == 2 and "--finetune_corpus_path" in result.stderr
    assert_refused(finetune(files, tmp_path, None, "--writing_params_path", tmp_path / "nowhere" / "p.params"),
                   "nowhere", "does not exist")


def test_a_failed_run_leaves_an_earlier_good_output_alone(files, tmp_path):
    good = tmp_path / "out.params"
    assert finetune(files, tmp_path).returncode == 0
    before = good.read_bytes()
    bad = tmp_path / "bad.tsv"
    bad.write_text("no tab here\n", encoding="utf-8")
    assert finetune(files, tmp_path, bad).returncode == 2
    assert good.read_bytes() == before


def test_a_crash_while_writing_leaves_no_truncated_file(files, tmp_path, monkeypatch):
    target = tmp_path / "out.params"
    target.write_bytes(b"earlier good params")

    def crashing_save(obj, f, *args, **kwargs):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        params.save_params(GPT(GPTConfig(10, 16, n_layer=1, n_embd=8, n_head=2)), target)
    assert target.read_bytes() == b"earlier good params"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.params", "wiki.txt", "birth_places_train.tsv",
                                                                 "birth_dev.tsv"])


def read_log(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_training_writes_a_metrics_log_beside_the_params(files, tmp_path):
    assert finetune(files, tmp_path, None, "--max_epochs", "2").returncode == 0
    log = read_log(tmp_path / "out.params.metrics.jsonl")
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # 6 examples in batches of 4, twice
    assert [r["epoch"] for r in log] == [1, 1, 2, 2]
    assert [r["positions"] for r in log] == [4 * 127, 6 * 127, 10 * 127, 12 * 127]
    assert set(log[0]) == {"step", "epoch", "loss", "lr", "positions", "wall_time"}
    assert log[0]["lr"] == 6e-4  # the first step runs at the configured rate
    config = trainer_module.TrainerConfig(learning_rate=6e-4, lr_decay=True, warmup_tokens=512 * 20,
                                          final_tokens=200 * 9 * 128)
    for previous, record in zip(log, log[1:]):
        assert record["lr"] == pytest.approx(learning_rate_at(previous["positions"], config), rel=1e-12)
        assert record["wall_time"] >= previous["wall_time"]
    assert all(r["loss"] > 0 for r in log)
    assert not (tmp_path / "out.params.checkpoint").exists()  # removed once the params are written


# MKL's reproducible mode: without it, which kernel variant a matrix product takes can depend
# on where the allocator put its operands, and two runs of the same command then differ in the
# last bits after a step or two (Adam makes that visible). Bit-exact comparisons need it.
REPRODUCIBLE = {**os.environ, "MKL_CBWR": "COMPATIBLE"}


def pretrain_command(tmp_path, files, *extra):
    return [sys.executable, str(ROOT / "src" / "run.py"), "pretrain", "synthesizer", str(files["corpus"]),
            "--writing_params_path", str(tmp_path / "p.params"), "--max_epochs", "8", "--batch_size", "3",
            "--device", "cpu", "--checkpoint_every", "0", *extra]


def test_a_run_killed_and_resumed_ends_with_the_params_of_an_uninterrupted_run(files, tmp_path):
    straight = subprocess.run(pretrain_command(tmp_path, files), cwd=tmp_path, env=REPRODUCIBLE,
                              capture_output=True, text=True, timeout=600)
    assert straight.returncode == 0, straight.stderr[-2000:]
    uninterrupted = torch.load(tmp_path / "p.params", weights_only=True)
    uninterrupted_log = read_log(tmp_path / "p.params.metrics.jsonl")
    (tmp_path / "p.params").unlink()

    child = subprocess.Popen(pretrain_command(tmp_path, files), cwd=tmp_path, env=REPRODUCIBLE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint_file = tmp_path / "p.params.checkpoint"
    deadline = time.time() + 300
    while not checkpoint_file.exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert child.poll() is None, "the run ended before it could be interrupted"
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "SIGTERM" in stderr and "--resume" in stderr
    assert not (tmp_path / "p.params").exists()
    assert checkpoint_file.exists()

    resumed = subprocess.run(pretrain_command(tmp_path, files, "--resume"), cwd=tmp_path, env=REPRODUCIBLE,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = torch.load(tmp_path / "p.params", weights_only=True)
    for name in uninterrupted:
        assert torch.equal(uninterrupted[name], final[name]), name
    resumed_log = read_log(tmp_path / "p.params.metrics.jsonl")
    assert [(r["step"], r["loss"]) for r in resumed_log] == [(r["step"], r["loss"]) for r in uninterrupted_log]


def test_resume_refuses_a_checkpoint_of_other_settings(files, tmp_path):
    child = subprocess.Popen(pretrain_command(tmp_path, files), cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint_file = tmp_path / "p.params.checkpoint"
    while not checkpoint_file.exists() and child.poll() is None:
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    child.communicate(timeout=120)
    result = subprocess.run(pretrain_command(tmp_path, files, "--resume", "--batch_size", "5"),
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert_refused(result, "p.params.checkpoint", "batch_size 3 there, 5 here")
    assert not (tmp_path / "p.params").exists()


def test_resume_without_a_checkpoint_is_refused(files, tmp_path):
    assert_refused(finetune(files, tmp_path, None, "--resume"), "no checkpoint", "out.params.checkpoint")


def test_a_loss_that_is_not_finite_stops_the_run_and_keeps_the_checkpoint(files, tmp_path, monkeypatch, capsys):
    real_loss = trainer_module.Trainer.loss
    calls = []

    def loss_that_diverges(self, *args, **kwargs):
        calls.append(1)
        loss = real_loss(self, *args, **kwargs)
        return loss * float("nan") if len(calls) == 4 else loss

    monkeypatch.setattr(trainer_module.Trainer, "loss", loss_that_diverges)
    with pytest.raises(SystemExit) as stop:
        run.main(["finetune", "vanilla", str(files["corpus"]), "--writing_params_path", str(tmp_path / "out.params"),
                  "--finetune_corpus_path", str(files["finetune"]), "--max_epochs", "3", "--batch_size", "4",
                  "--device", "cpu"])
    assert stop.value.code == 1
    message = capsys.readouterr().err
    assert "the loss became nan at epoch 2, step 1" in message and "--resume" in message
    assert not (tmp_path / "out.params").exists()
    state = torch.load(tmp_path / "out.params.checkpoint", weights_only=True)
    assert state["epoch"] == 1  # the start of the epoch in which it diverged
    assert len(read_log(tmp_path / "out.params.metrics.jsonl")) == 2


# run.py with save_params patched to send itself signals while it writes the params
STOPPED_MID_SAVE = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
import run
real_save_params = run.save_params

def save_params_while_signalled(model, path):
    for signum in map(int, sys.argv[2].split(",")):
        os.kill(os.getpid(), signum)
    real_save_params(model, path)

run.save_params = save_params_while_signalled
run.main(sys.argv[3:])
"""


@pytest.mark.parametrize("signals", [[signal.SIGTERM], [signal.SIGINT, signal.SIGINT]])
def test_a_stop_as_training_ends_waits_for_the_params(files, tmp_path, signals):
    arguments = ["finetune", "vanilla", files["corpus"], "--writing_params_path", tmp_path / "out.params",
                 "--finetune_corpus_path", files["finetune"], *FAST]
    result = subprocess.run([sys.executable, "-c", STOPPED_MID_SAVE, str(ROOT / "src"), ",".join(map(str, signals)),
                             *map(str, arguments)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 128 + signals[0], result.stderr[-2000:]
    assert f"{signals[0].name} as training ended: stopped once the params were written to" in result.stderr
    assert "Traceback" not in result.stderr
    saved = torch.load(tmp_path / "out.params", weights_only=True)
    expected = GPT(GPTConfig(len(set(CORPUS)) + 2, 128)).state_dict()
    assert params.fits(saved, expected)  # complete: every tensor, of its shape
    assert not (tmp_path / "out.params.checkpoint").exists()
    assert len(read_log(tmp_path / "out.params.metrics.jsonl")) == 2


def test_a_checkpoint_that_would_run_code_is_refused_in_one_line(files, tmp_path):
    marker = tmp_path / "marker"
    torch.save({"format": checkpoint.FORMAT, "model": CreatesAFile(marker)}, tmp_path / "out.params.checkpoint")
    assert_refused(finetune(files, tmp_path, None, "--resume"), "out.params.checkpoint", "nothing in it was run",
                   "delete it and run without --resume")
    assert not marker.exists() and not (tmp_path / "out.params").exists()
