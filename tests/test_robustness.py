"""
Never lose a run: bad input gets one clear line and exit status 2 with nothing written, and
input as users really make it (text saved on Windows, a number out of range, a folder, an
output that is one of the inputs) is read right or refused so; outputs are written
atomically; training keeps a metrics log and a resumable checkpoint, survives a real
SIGTERM, and stops on a loss that is not finite.
"""

import codecs
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import analyze
import checkpoint
import knowledge_curve
import params
import plot
import run
import trainer as trainer_module
from conftest import ROOT
from dataset import CharCorruptionDataset, NameDataset
from model import GPT, GPTConfig
from safe_io import in_range, read_text
from test_checkpoint import CreatesAFile
from trainer import learning_rate_at
from utils import parse_birth_places

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
    ("Where was Ada Lovelace born?\tLondon\n\tLondon\n", ["line 2", "no question before the tab"]),
    ("\n\n", ["is empty"]),
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


# The user's environment without MKL_CBWR: run.py must put MKL in its reproducible mode itself
# (utils.set_seed), since without it two runs of one command differed in the last bits on Intel CPUs.
REPRODUCIBLE = {name: value for name, value in os.environ.items() if name != "MKL_CBWR"}


def test_every_matrix_product_of_a_run_is_in_mkl_reproducible_mode(files, tmp_path):
    result = subprocess.run(pretrain_command(tmp_path, files, "--max_epochs", "1"), cwd=tmp_path,
                            env={**REPRODUCIBLE, "MKL_VERBOSE": "1"}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    calls = [line for line in result.stdout.splitlines() if line.startswith("MKL_VERBOSE") and "GEMM" in line]
    if not calls:
        pytest.skip("this PyTorch build makes no MKL matrix products here")
    assert all(" CNR:AUTO " in line for line in calls), next(c for c in calls if " CNR:AUTO " not in c)


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


# -----------------------------------------------------------------------------
# input as users really make it, for every command: each case is read right, or refused in
# one line with exit status 2 and nothing written

QUESTIONS = "".join(line.split("\t")[0] + "\n" for line in FINETUNE.splitlines())
SIZE = ["--n_layer", "1", "--n_head", "2", "--n_embd", "16"]
SAVED_ELSEWHERE = {  # a text as another system or editor saves it
    "Windows (CRLF)": lambda text: text.replace("\n", "\r\n").encode(),
    "Notepad's UTF-8 (BOM)": lambda text: codecs.BOM_UTF8 + text.encode(),
    "Notepad, CRLF and BOM": lambda text: codecs.BOM_UTF8 + text.replace("\n", "\r\n").encode(),
    "an old Mac (CR)": lambda text: text.replace("\n", "\r").encode(),
    "a blank line at the end": lambda text: (text.rstrip("\n") + "\n\n").encode(),
    "no final newline": lambda text: text.rstrip("\n").encode(),
    "an editor's final newline": lambda text: (text.rstrip("\n") + "\n").encode(),
}


def refused_here(capsys, main, *arguments):
    """A command's main(arguments) in this process: exit status 2 and one line on stderr, which it returns."""
    with pytest.raises(SystemExit) as stop:
        main([str(argument) for argument in arguments])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert stop.value.code == 2 and len(lines) == 1, err
    return lines[0]


def contents(folder):
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("saved", SAVED_ELSEWHERE)
def test_text_saved_on_another_system_reads_as_on_linux(tmp_path, saved):
    def read(text):
        path = tmp_path / "saved"
        path.write_bytes(SAVED_ELSEWHERE[saved](text))
        return read_text(path, "file")

    corpus, reference = CharCorruptionDataset(read(CORPUS), 128), CharCorruptionDataset(CORPUS, 128)
    assert corpus.itos == reference.itos and corpus.data == reference.data  # no "\r", BOM or empty document
    assert NameDataset(corpus, read(FINETUNE)).data == NameDataset(reference, FINETUNE).data
    for text in (FINETUNE, QUESTIONS):
        assert parse_birth_places(read(text), "f") == parse_birth_places(text, "f")


def test_a_windows_evaluation_file_predicts_and_scores_as_the_linux_one(files, tmp_path):
    torch.save(GPT(GPTConfig(len(set(CORPUS)) + 2, 128, n_layer=1, n_head=2, n_embd=16)).state_dict(),
               tmp_path / "v.params")
    windows = {"corpus": tmp_path / "windows_wiki.txt", "dev": tmp_path / "windows_dev.tsv"}
    for name, path in windows.items():
        path.write_bytes(SAVED_ELSEWHERE["Notepad, CRLF and BOM"](files[name].read_text(encoding="utf-8")))
    outputs = []
    for name, made in (("linux", files), ("windows", windows)):
        result = run_cli("evaluate", "vanilla", made["corpus"], "--reading_params_path", "v.params",
                         "--eval_corpus_path", made["dev"], "--outputs_path", f"{name}.predictions", *SIZE,
                         "--device", "cpu", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
        london = subprocess.run([sys.executable, str(ROOT / "london_baseline.py"), "--eval_corpus_path", made["dev"]],
                                capture_output=True, text=True, timeout=300)
        outputs.append((result.stdout.splitlines()[-1], (tmp_path / f"{name}.predictions").read_bytes(),
                        london.stdout))
    assert outputs[0] == outputs[1] and outputs[0][0].startswith("Correct: ") and "out of 3.0" in outputs[0][2]


NOT_UTF8 = {
    "UTF-16 (Notepad's Unicode)": (lambda text: text.encode("utf-16"), ["UTF-16"]),
    "UTF-16 without a BOM": (lambda text: text.encode("utf-16-le"), ["UTF-16"]),
    "Latin-1": (lambda text: text.replace("Alan", "Al\u00e1n").encode("latin-1"), ["not UTF-8", "line 2"]),
}
READERS = {  # a command reading `path` in one role and writing `out`: (main, arguments)
    "pretrain's corpus": lambda files, path, out: (
        run.main, ["pretrain", "vanilla", path, "--writing_params_path", out, *FAST]),
    "finetune's --finetune_corpus_path": lambda files, path, out: (
        run.main, ["finetune", "vanilla", files["corpus"], "--writing_params_path", out,
                   "--finetune_corpus_path", path, *FAST]),
    "evaluate's --eval_corpus_path": lambda files, path, out: (
        run.main, ["evaluate", "vanilla", files["corpus"], "--reading_params_path", "v.params",
                   "--eval_corpus_path", path, "--outputs_path", out, "--device", "cpu"]),
    "analyze's --eval_corpus_path": lambda files, path, out: (
        analyze.main, ["vanilla", files["corpus"], "--reading_params_path", "v.params", "--eval_corpus_path", path,
                       "--predictions_path", "p.predictions", "--finetune_corpus_path", files["finetune"],
                       "--json_path", out]),
}


@pytest.mark.parametrize("encoding", NOT_UTF8)
@pytest.mark.parametrize("reader", READERS)
def test_text_in_another_encoding_is_refused(files, tmp_path, capsys, reader, encoding):
    encode, words = NOT_UTF8[encoding]
    bad = tmp_path / "bad.txt"
    bad.write_bytes(encode(CORPUS if reader == "pretrain's corpus" else FINETUNE))
    before = contents(tmp_path)
    main, arguments = READERS[reader](files, bad, tmp_path / "out")
    line = refused_here(capsys, main, *arguments)
    assert "bad.txt" in line and all(word in line for word in words), line
    assert contents(tmp_path) == before


@pytest.mark.parametrize("content, words", [
    ("", ["no questions"]),
    ("Where was Ada Lovelace born?\n\nWhere was Alan Turing born?\n", ["line 2 is blank"]),
    ("Where was Ada Lovelace born?\n\tLondon\n", ["line 2 has no question"]),
    ("Where was Ada Lovelace born?\tLondon\tEngland\n", ["line 1 has 2 tabs"]),
    ("Where was Ada Lovelace born?\tLondon\nWhere was Alan Turing born?\n", ["line 2 has no place", "line 1 has one"]),
])
def test_bad_evaluation_lines_are_refused_with_their_line(files, tmp_path, capsys, content, words):
    bad = tmp_path / "bad.tsv"
    bad.write_text(content, encoding="utf-8")
    before = contents(tmp_path)
    main, arguments = READERS["evaluate's --eval_corpus_path"](files, bad, tmp_path / "out")
    line = refused_here(capsys, main, *arguments)
    assert "bad.tsv" in line and all(word in line for word in words), line
    london = subprocess.run([sys.executable, str(ROOT / "london_baseline.py"), "--eval_corpus_path", bad],
                            capture_output=True, text=True, timeout=300)
    assert london.returncode == 2 and len(london.stderr.splitlines()) == 1 and "bad.tsv" in london.stderr
    assert contents(tmp_path) == before


@pytest.mark.parametrize("flag, value, interval", [
    ("--max_epochs", "0", "[1, inf)"), ("--batch_size", "-8", "[1, inf)"),
    ("--learning_rate", "0", "(0, 1]"), ("--learning_rate", "nan", "(0, 1]"), ("--learning_rate", "1e300", "(0, 1]"),
    ("--dropout", "1", "[0, 1)"), ("--dropout", "-0.1", "[0, 1)"), ("--dropout", "nan", "[0, 1)"),
    ("--weight_decay", "-0.1", "[0, inf)"), ("--weight_decay", "inf", "[0, inf)"),
    ("--cosine_epochs", "0", "(0, inf)"), ("--cosine_epochs", "inf", "(0, inf)"),
    ("--seed", "-1", "[0, 4294967295]"), ("--seed", "4294967296", "[0, 4294967295]"),
    ("--checkpoint_every", "-1", "[0, inf]"), ("--checkpoint_every", "nan", "[0, inf]"),
])
def test_numbers_out_of_range_are_refused_with_their_range(files, tmp_path, capsys, flag, value, interval):
    line = refused_here(capsys, run.main, "finetune", "vanilla", files["corpus"], "--writing_params_path",
                        tmp_path / "out.params", "--finetune_corpus_path", files["finetune"], *FAST, flag, value)
    assert line.startswith(f"error: argument {flag}: must be in {interval}, got {value} (see ")
    assert not (tmp_path / "out.params").exists()


def test_the_other_commands_numbers_and_sizes_are_refused_too(files, tmp_path, capsys):
    for main, arguments, words in [
        (analyze.main, ["vanilla", "c", "--reading_params_path", "p", "--eval_corpus_path", "e", "--predictions_path",
                        "p", "--finetune_corpus_path", "f", "--examples", "-1"], "--examples: must be in [0, inf)"),
        (knowledge_curve.main, ["vanilla", "c", "--pretrain_params_path", "p", "--seed", "-1"],
         "--seed: must be in [0, 4294967295]"),
        (plot.main, ["log.jsonl", "--smooth", "0"], "--smooth: must be in [1, inf)"),
        (run.main, ["finetune", "vanilla", files["corpus"], "--writing_params_path", tmp_path / "out.params",
                    "--finetune_corpus_path", files["finetune"], *FAST, "--n_embd", "1000000"],
         "about 4.8e+13 parameters, more than the 1e+10"),
        (run.main, ["pretrain", "vanilla", files["corpus"], "--writing_params_path", tmp_path / "out.params",
                    "--device", "cuda:99"], "--device cuda:99: PyTorch sees"),
        (run.main, ["pretrain", "vanilla", files["corpus"], "--writing_params_path", tmp_path / "out.params",
                    "--device", "gpu"], "--device 'gpu' is not a device"),
    ]:
        assert words in refused_here(capsys, main, *arguments)
    assert not (tmp_path / "out.params").exists()
    assert in_range(float, 0, 1)("0") == 0.0 and in_range(float, 0, math.inf, high_open=False)("inf") == math.inf


def pretrained(files, tmp_path):
    """A pretraining's params and metrics log, as knowledge_curve.py finds them."""
    torch.save(GPT(GPTConfig(len(set(CORPUS)) + 2, 128, n_layer=1, n_head=2, n_embd=16)).state_dict(),
               tmp_path / "p.params")
    record = {"step": 1, "epoch": 1, "loss": 4.0, "lr": 6e-3, "positions": 127, "wall_time": 1.0}
    (tmp_path / "p.params.metrics.jsonl").write_text(json.dumps(record) + "\n")
    return ["vanilla", files["corpus"], "--pretrain_params_path", tmp_path / "p.params",
            "--finetune_corpus_path", files["finetune"], "--eval_corpus_path", files["dev"], *SIZE]


@pytest.mark.parametrize("case", ["pretrain corpus", "finetune --finetune_corpus_path",
                                  "finetune --reading_params_path", "evaluate --eval_corpus_path",
                                  "analyze --predictions_path", "pretrain --writing_params_path",
                                  "evaluate --outputs_path", "analyze --json_path", "knowledge_curve --figure",
                                  "knowledge_curve --records", "knowledge_curve --out_dir (a file)"])
def test_a_folder_for_a_file_and_a_file_for_a_folder_are_refused(files, tmp_path, capsys, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "folder"
    folder.mkdir()
    out = tmp_path / "out"
    command, flag = case.split(" ", 1)
    curve = pretrained(files, tmp_path)
    main, arguments = {
        "pretrain corpus": READERS["pretrain's corpus"](files, folder, out),
        "finetune --finetune_corpus_path": READERS["finetune's --finetune_corpus_path"](files, folder, out),
        "finetune --reading_params_path": (run.main, [*READERS["finetune's --finetune_corpus_path"](
            files, files["finetune"], out)[1], "--reading_params_path", folder]),
        "evaluate --eval_corpus_path": READERS["evaluate's --eval_corpus_path"](files, folder, out),
        "analyze --predictions_path": (analyze.main, ["vanilla", files["corpus"], "--reading_params_path", "v.params",
                                                      "--eval_corpus_path", files["dev"], "--predictions_path", folder,
                                                      "--finetune_corpus_path", files["finetune"]]),
        "pretrain --writing_params_path": READERS["pretrain's corpus"](files, files["corpus"], folder),
        "evaluate --outputs_path": READERS["evaluate's --eval_corpus_path"](files, files["dev"], folder),
        "analyze --json_path": READERS["analyze's --eval_corpus_path"](files, files["dev"], folder),
        "knowledge_curve --figure": (knowledge_curve.main, [*curve, "--figure", folder]),
        "knowledge_curve --records": (knowledge_curve.main, [*curve, "--records", folder]),
        "knowledge_curve --out_dir (a file)": (knowledge_curve.main, [*curve, "--out_dir", files["corpus"]]),
    }[case]
    before = contents(tmp_path)
    line = refused_here(capsys, main, *arguments)
    assert flag.split()[0] in line or str(folder) in line, line
    assert any(words in line for words in ("is a folder", "Is a directory", "File exists")), line
    assert contents(tmp_path) == before and sorted(p.name for p in folder.iterdir()) == []


@pytest.mark.parametrize("predictions", ["London\n", "London\nLondon\nLondon\nLondon\n", ""])
def test_no_pretraining_predictions_of_another_file_are_refused_before_any_work(files, tmp_path, capsys,
                                                                                 monkeypatch, predictions):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nopre.predictions").write_text(predictions)  # the dev file has 3 questions
    curve = pretrained(files, tmp_path)
    before = contents(tmp_path)
    line = refused_here(capsys, knowledge_curve.main, *curve, "--nopretrain_predictions", "nopre.predictions")
    count = len(predictions.splitlines())
    assert line.endswith(f"nopre.predictions has {count} predictions for the 3 lines of {files['dev']}; give the "
                         f"predictions run.py evaluate wrote for it"), line
    assert contents(tmp_path) == before


@pytest.mark.parametrize("params", ["text", "missing"])
def test_bad_no_pretraining_params_are_refused_before_any_work(files, tmp_path, capsys, monkeypatch, params):
    monkeypatch.chdir(tmp_path)
    if params == "text":
        (tmp_path / "nopre.params").write_text("not params\n")
    curve = pretrained(files, tmp_path)
    before = contents(tmp_path)
    line = refused_here(capsys, knowledge_curve.main, *curve, "--nopretrain_params_path", "nopre.params")
    assert "nopre.params" in line, line
    assert contents(tmp_path) == before


def symlink_to(path):
    link = path.parent / "link"
    link.symlink_to(path)
    return link


SPELLINGS = {  # another name for a file in tmp_path, the working folder
    "the same path": lambda path: path,
    "./name": lambda path: f"./{path.name}",
    "an absolute path": lambda path: path.resolve(),
    "a symlink": symlink_to,
}
OUTPUT_IS_INPUT = {  # (main, arguments) of a command asked to write over one of its inputs, given its other name
    "evaluate --outputs_path is --eval_corpus_path": lambda files, curve, same: (
        run.main, ["evaluate", "vanilla", files["corpus"], "--reading_params_path", "p.params",
                   "--eval_corpus_path", files["dev"], "--outputs_path", same(files["dev"]), "--device", "cpu"]),
    "pretrain --writing_params_path is the corpus": lambda files, curve, same: (
        run.main, ["pretrain", "vanilla", files["corpus"], "--writing_params_path", same(files["corpus"]), *FAST]),
    "finetune --writing_params_path is --reading_params_path": lambda files, curve, same: (
        run.main, ["finetune", "vanilla", files["corpus"], "--reading_params_path", curve[3],
                   "--writing_params_path", same(curve[3]), "--finetune_corpus_path", files["finetune"], *FAST]),
    "finetune --writing_params_path is --finetune_corpus_path": lambda files, curve, same: (
        run.main, ["finetune", "vanilla", files["corpus"], "--writing_params_path", same(files["finetune"]),
                   "--finetune_corpus_path", files["finetune"], *FAST]),
    "analyze --json_path is --eval_corpus_path": lambda files, curve, same: READERS["analyze's --eval_corpus_path"](
        files, files["dev"], same(files["dev"])),
    "knowledge_curve --figure is --eval_corpus_path": lambda files, curve, same: (
        knowledge_curve.main, [*curve, "--figure", same(files["dev"])]),
    "knowledge_curve --records is --pretrain_params_path": lambda files, curve, same: (
        knowledge_curve.main, [*curve, "--records", same(curve[3])]),
}


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize("case", OUTPUT_IS_INPUT)
def test_an_output_that_is_one_of_the_inputs_is_refused(files, tmp_path, capsys, monkeypatch, case, spelling):
    monkeypatch.chdir(tmp_path)
    curve = pretrained(files, tmp_path)
    main, arguments = OUTPUT_IS_INPUT[case](files, curve, SPELLINGS[spelling])
    before = contents(tmp_path)
    line = refused_here(capsys, main, *arguments)
    output, _, input_ = case.partition(" is ")
    assert output.split()[1] in line and "is the same file as" in line and "destroy that input" in line, line
    assert input_.removeprefix("the ") in line, line
    assert contents(tmp_path) == before
