"""
End-to-end tests of the command line, `python src/run.py {pretrain,finetune,evaluate} ...`,
on tiny files made in tmp_path: real subprocesses from the repository root where the process
boundary matters (exit status, printed lines, determinism across processes), in-process
calls of run.main([...]) elsewhere.

Every prediction `evaluate` writes is checked against the plain decoder, utils.sample, run
here on one question at a time: that proves the batched, cached decoding is faithful.
"""

import os
import re
import subprocess
import sys

import pytest
import torch

import run
import trainer as trainer_module
import utils
from conftest import ROOT
from dataset import CharCorruptionDataset
from model import GPT, GPTConfig

MASK = "\u2047"
FAST = ["--max_epochs", "1", "--batch_size", "8", "--device", "cpu"]

PEOPLE = [
    ("Ada Lovelace", "London"), ("Alan Turing", "Maida Vale"), ("Grace Hopper", "New York"),
    ("Marie Curie", "Warsaw"), ("Niels Bohr", "Copenhagen"), ("Emmy Noether", "Erlangen"),
    ("Kurt Godel", "Brno"), ("Rosalind Franklin", "Notting Hill"), ("Srinivasa Ramanujan", "Erode"),
    ("Lise Meitner", "Vienna"), ("Enrico Fermi", "Rome"), ("Hedy Lamarr", "Vienna"),
    ("Carl Gauss", "Brunswick"), ("Sofia Kovalevskaya", "Moscow"), ("Paul Dirac", "Bristol"),
    ("Chien Wu", "Liuhe"), ("Max Born", "Breslau"), ("Ann Lee", "Leeds"), ("Bob Ray", "Derby"),
    ("Tim Berners Lee", "London"), ("Jane Doe", "Quebec"), ("Ken Thompson", "New Orleans"),
]
# a question so long that its prompt plus 32 characters overflows the block of 128
LONG_NAME = ("Maximilian Alexander Bartholomew Fitzgerald Montgomery Wellington Ashford "
             "Kensington Lee Junior")
FINETUNE = PEOPLE[:16]
DEV = [("Ann Lee", "Leeds"), ("Bob Ray", "Derby"), ("Tim Berners Lee", "London"), ("Jane Doe", "Quebec")]
TEST = ["Ann Lee", "Bob Ray", "Ken Thompson", LONG_NAME, "Jane Doe"]


def question(name):
    return f"Where was {name} born?"


def env():
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}


def run_cli(*args):
    return subprocess.run([sys.executable, "src/run.py", *map(str, args)], cwd=ROOT, env=env(),
                          capture_output=True, text=True, encoding="utf-8", timeout=300)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    corpus = [f"{name}. {name} was a scientist born in {place}, where the family lived."
              for name, place in PEOPLE]
    corpus.append(f"{LONG_NAME}. Where was he born? Nobody knows; perhaps Zurich or Utrecht.")
    paths = {
        "corpus": folder / "corpus.txt",
        "finetune": folder / "finetune.tsv",
        "dev": folder / "dev.tsv",
        "test": folder / "test.tsv",
    }
    paths["corpus"].write_text("\n".join(corpus), encoding="utf-8")
    paths["finetune"].write_text("".join(f"{question(n)}\t{p}\n" for n, p in FINETUNE), encoding="utf-8")
    paths["dev"].write_text("".join(f"{question(n)}\t{p}\n" for n, p in DEV), encoding="utf-8")
    paths["test"].write_text("".join(f"{question(n)}\n" for n in TEST), encoding="utf-8")
    vocabulary = set("\n".join(corpus))
    for name in ("finetune", "dev", "test"):
        assert set(paths[name].read_text(encoding="utf-8")) <= vocabulary | {"\t", "\n"}
    assert len(question(LONG_NAME)) + 1 + 32 > 128
    paths["folder"] = folder
    return paths


@pytest.fixture(scope="module")
def vocab(files):
    return CharCorruptionDataset(files["corpus"].read_text(encoding="utf-8"), 128)


def expected_keys(variant, n_layer=4):
    keys = ["tok_emb.weight", "pos_emb"]
    attention = (["key", "query", "value", "proj"] if variant == "vanilla" else ["w1", "value", "proj"])
    for i in range(n_layer):
        block = f"blocks.{i}."
        keys += [block + "ln1.weight", block + "ln1.bias", block + "ln2.weight", block + "ln2.bias"]
        for name in attention:
            keys += [block + f"attn.{name}.weight", block + f"attn.{name}.bias"]
        if variant == "synthesizer":
            keys += [block + "attn.w2", block + "attn.b2"]
        keys += [block + "attn.mask"]
        keys += [block + "mlp.0.weight", block + "mlp.0.bias", block + "mlp.2.weight", block + "mlp.2.bias"]
    keys += ["ln_f.weight", "ln_f.bias", "head.weight"]
    return keys


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def model_from(path, vocab, variant):
    model = GPT(GPTConfig(vocab.vocab_size, 128, variant=variant))
    model.load_state_dict(load(path), strict=True)
    return model


def check_params_file(path, vocab, variant):
    state = load(path)
    assert sorted(state) == sorted(expected_keys(variant))
    V = vocab.vocab_size
    assert tuple(state["tok_emb.weight"].shape) == (V, 256)
    assert tuple(state["pos_emb"].shape) == (1, 128, 256)
    assert tuple(state["head.weight"].shape) == (V, 256)
    assert tuple(state["blocks.0.mlp.0.weight"].shape) == (1024, 256)
    assert tuple(state["blocks.3.mlp.2.weight"].shape) == (256, 1024)
    mask = state["blocks.2.attn.mask"]
    assert tuple(mask.shape) == (1, 1, 128, 128)
    assert torch.equal(mask[0, 0], torch.tril(torch.ones(128, 128)))
    if variant == "synthesizer":
        assert tuple(state["blocks.0.attn.w2"].shape) == (32, 127)
        assert tuple(state["blocks.0.attn.b2"].shape) == (127,)
        assert tuple(state["blocks.0.attn.w1.weight"].shape) == (256, 256)
    model_from(path, vocab, variant)  # loads with strict=True


def same_state(a, b):
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def reference_prediction(model, vocab, text):
    """The plain decoder on one prompt: 32 greedy characters after text + ⁇, up to the next ⁇."""
    prompt = torch.tensor([[vocab.stoi[c] for c in text + MASK]], dtype=torch.long)
    completion = utils.sample(model, prompt, 32, sample=False)[0]
    decoded = "".join(vocab.itos[int(i)] for i in completion)
    assert decoded.startswith(text + MASK) and len(decoded) == len(text) + 1 + 32
    return decoded.split(MASK)[1]


def sharp_params(path, vocab, variant, seed):
    """
    Params with large random weights: a model whose greedy output depends strongly on its
    input, so a wrong prompt (say, with the line end in it) changes the predictions. Space and
    MASK get a push so that some predictions end early at a MASK and some begin or end with a
    space (a prediction must be written as decoded, never stripped).
    """
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab.vocab_size, 128, variant=variant))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in ("tok_emb.weight", "pos_emb"):
                param.normal_(0.0, 1.0)
            elif name.startswith("ln_f") or ".ln" in name:
                continue  # LayerNorm stays 1 and 0
            elif name.endswith("bias") or name.endswith("b2"):
                param.normal_(0.0, 0.1)
            elif name == "head.weight":
                param.normal_(0.0, 0.25)
            elif name.endswith("w2"):
                param.normal_(0.0, param.size(0) ** -0.5)
            else:
                param.normal_(0.0, param.size(1) ** -0.5)
        direction = torch.randn(model.ln_f.bias.shape)
        direction /= direction.norm()
        model.ln_f.bias.copy_(direction)
        model.head.weight[vocab.stoi[" "]] += 3.0 * direction
        model.head.weight[vocab.stoi[MASK]] += 2.0 * direction
    torch.save(model.state_dict(), path)
    model.eval()
    return model


# ------------------------------------------------------------------------ params files

@pytest.fixture(scope="module")
def finetuned_vanilla(files):
    """`finetune vanilla` without pretrained params, in a real subprocess, seed 3."""
    path = files["folder"] / "first.params"  # names free of variant words: messages must name them
    result = run_cli("finetune", "vanilla", files["corpus"], "--writing_params_path", path,
                     "--finetune_corpus_path", files["finetune"], "--seed", "3", *FAST)
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture(scope="module")
def finetuned_synthesizer(files):
    """`finetune synthesizer` without pretrained params, in-process."""
    path = files["folder"] / "second.params"
    run.main(["finetune", "synthesizer", str(files["corpus"]), "--writing_params_path", str(path),
              "--finetune_corpus_path", str(files["finetune"]), *FAST])
    return path


def test_finetune_writes_params_with_the_original_names(finetuned_vanilla, vocab):
    check_params_file(finetuned_vanilla, vocab, "vanilla")


def test_finetune_synthesizer_writes_params_with_the_original_names(finetuned_synthesizer, vocab):
    check_params_file(finetuned_synthesizer, vocab, "synthesizer")


@pytest.mark.parametrize("variant", ["vanilla", "synthesizer"])
def test_pretrain_then_finetune_from_pretrained(files, vocab, tmp_path, variant):
    pretrained = tmp_path / f"{variant}.pretrain.params"
    finetuned = tmp_path / f"{variant}.finetune.params"
    run.main(["pretrain", variant, str(files["corpus"]), "--writing_params_path", str(pretrained), *FAST])
    check_params_file(pretrained, vocab, variant)
    run.main(["finetune", variant, str(files["corpus"]), "--reading_params_path", str(pretrained),
              "--writing_params_path", str(finetuned), "--finetune_corpus_path", str(files["finetune"]), *FAST])
    check_params_file(finetuned, vocab, variant)
    assert not same_state(load(pretrained), load(finetuned))


# -------------------------------------------------------------------------- evaluate

def prediction_lines(path):
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return text[:-1].split("\n")


@pytest.fixture(scope="module")
def sharp_vanilla(files, vocab):
    path = files["folder"] / "sharp1.params"
    return path, sharp_params(path, vocab, "vanilla", seed=1)


@pytest.fixture(scope="module")
def sharp_synthesizer(files, vocab):
    path = files["folder"] / "sharp2.params"
    return path, sharp_params(path, vocab, "synthesizer", seed=2)


def clean(prediction):
    """A prediction that can stand as a gold place in a TSV line (evaluate_places strips lines)."""
    return prediction != "" and prediction == prediction.strip() and "\n" not in prediction


def test_evaluate_with_answers_prints_the_score(files, vocab, sharp_vanilla, tmp_path):
    params, model = sharp_vanilla
    # a dev file whose first two gold places are what the plain decoder predicts: 2 of 4 correct
    references, right, wrong = {}, [], []
    for name, _ in PEOPLE:
        q = question(name)
        references[q] = reference_prediction(model, vocab, q)
        if clean(references[q]) and len(right) < 2:
            right.append(q)
        elif references[q] != "Nowhere" and len(wrong) < 2:
            wrong.append(q)
        if len(right) == len(wrong) == 2:
            break
    assert len(right) == 2 and len(wrong) == 2
    dev = tmp_path / "dev.tsv"
    dev.write_text("".join(f"{q}\t{references[q]}\n" for q in right) +
                   "".join(f"{q}\tNowhere\n" for q in wrong), encoding="utf-8")
    outputs = tmp_path / "dev.predictions"
    result = run_cli("evaluate", "vanilla", files["corpus"], "--reading_params_path", params,
                     "--eval_corpus_path", dev, "--outputs_path", outputs, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "Correct: 2.0 out of 4.0: 50.0%" in result.stdout.split("\n")
    expected = [references[q] for q in right + wrong]
    assert outputs.read_text(encoding="utf-8") == "".join(p + "\n" for p in expected)


def test_evaluate_score_line_format_on_trained_params(files, vocab, finetuned_vanilla, tmp_path):
    outputs = tmp_path / "dev.predictions"
    result = run_cli("evaluate", "vanilla", files["corpus"], "--reading_params_path", finetuned_vanilla,
                     "--eval_corpus_path", files["dev"], "--outputs_path", outputs, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    scores = [m for m in map(re.compile(r"Correct: (\d+\.\d+) out of (\d+\.\d+): (\d+\.\d+)%").fullmatch,
                             result.stdout.split("\n")) if m]
    assert len(scores) == 1
    correct, total, percent = map(float, scores[0].groups())
    assert total == 4.0
    model = model_from(finetuned_vanilla, vocab, "vanilla")
    expected = [reference_prediction(model, vocab, question(n)) for n, _ in DEV]
    assert outputs.read_text(encoding="utf-8") == "".join(p + "\n" for p in expected)
    assert correct == sum(p == place for p, (_, place) in zip(expected, DEV))
    assert percent == correct / total * 100


def test_evaluate_without_answers(files, vocab, sharp_vanilla, tmp_path):
    params, model = sharp_vanilla
    outputs = tmp_path / "test.predictions"
    result = run_cli("evaluate", "vanilla", files["corpus"], "--reading_params_path", params,
                     "--eval_corpus_path", files["test"], "--outputs_path", outputs, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert f"Predictions written to {outputs}; no targets provided" in result.stdout.split("\n")
    assert "Correct:" not in result.stdout
    expected = [reference_prediction(model, vocab, question(n)) for n in TEST]
    assert all("\n" not in p for p in expected)
    # the fixture covers the cases that matter: cut at a MASK, the full 32, a space at an edge
    assert any(len(p) < 32 for p in expected) and any(len(p) == 32 for p in expected)
    assert any(p != p.strip() for p in expected)
    assert prediction_lines(outputs) == expected
    assert len(prediction_lines(outputs)) == len(TEST)
    # the test has teeth: with the line end in the prompt this model answers differently
    with_line_end = [reference_prediction(model, vocab, question(n) + "\n") for n in TEST]
    assert with_line_end != expected
    assert len(set(expected)) > 1


@pytest.mark.parametrize("which", ["sharp_synthesizer", "trained_synthesizer"])
@pytest.mark.parametrize("eval_file", ["dev", "test"])
def test_evaluate_synthesizer_matches_plain_decoder(files, vocab, tmp_path, request, which, eval_file):
    if which == "sharp_synthesizer":
        params, model = request.getfixturevalue("sharp_synthesizer")
    else:
        params = request.getfixturevalue("finetuned_synthesizer")
        model = model_from(params, vocab, "synthesizer")
    outputs = tmp_path / "predictions"
    run.main(["evaluate", "synthesizer", str(files["corpus"]), "--reading_params_path", str(params),
              "--eval_corpus_path", str(files[eval_file]), "--outputs_path", str(outputs), "--device", "cpu"])
    # with the long question the context outgrows the 127 positions the synthesizer can attend
    # over (w2's columns): it is decoded as sample() decodes, from the last 127 characters
    names = [n for n, _ in DEV] if eval_file == "dev" else TEST
    expected = [reference_prediction(model, vocab, question(n)) for n in names]
    assert outputs.read_text(encoding="utf-8") == "".join(p + "\n" for p in expected)


def test_evaluate_under_torchrun_prints_the_score_once_and_every_process_exits_0(files, finetuned_vanilla, tmp_path):
    # one process evaluates; every process then ends with os._exit (distributed.end), after the
    # score line and the predictions are out
    evaluate = ["evaluate", "vanilla", files["corpus"], "--reading_params_path", finetuned_vanilla,
                "--eval_corpus_path", files["dev"], "--device", "cpu"]
    alone = run_cli(*evaluate, "--outputs_path", tmp_path / "alone.predictions")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "src/run.py",
               *map(str, evaluate), "--outputs_path", str(tmp_path / "torchrun.predictions")]
    both = subprocess.run(command, cwd=ROOT, env=env(), capture_output=True, text=True, encoding="utf-8",
                          timeout=300)
    assert both.returncode == 0, both.stderr[-3000:]
    score = [line for line in alone.stdout.split("\n") if line.startswith("Correct: ")]
    assert len(score) == 1
    assert [line for line in both.stdout.split("\n") if line.startswith("Correct: ")] == score
    assert (tmp_path / "torchrun.predictions").read_text() == (tmp_path / "alone.predictions").read_text()


def test_evaluate_writes_one_line_per_question_on_trained_params(files, vocab, finetuned_vanilla, tmp_path, capsys):
    outputs = tmp_path / "test.predictions"
    run.main(["evaluate", "vanilla", str(files["corpus"]), "--reading_params_path", str(finetuned_vanilla),
              "--eval_corpus_path", str(files["test"]), "--outputs_path", str(outputs), "--device", "cpu"])
    assert capsys.readouterr().out.split("\n")[-2] == f"Predictions written to {outputs}; no targets provided"
    model = model_from(finetuned_vanilla, vocab, "vanilla")
    expected = [reference_prediction(model, vocab, question(n)) for n in TEST]
    assert outputs.read_text(encoding="utf-8") == "".join(p + "\n" for p in expected)


# ------------------------------------------------------------------------------ errors

def test_vanilla_params_refused_by_synthesizer(files, finetuned_vanilla, tmp_path):
    result = run_cli("evaluate", "synthesizer", files["corpus"], "--reading_params_path", finetuned_vanilla,
                     "--eval_corpus_path", files["dev"], "--outputs_path", tmp_path / "out", "--device", "cpu")
    assert result.returncode != 0
    assert "vanilla" in result.stderr and "synthesizer" in result.stderr
    assert not (tmp_path / "out").exists()


def test_synthesizer_params_refused_by_vanilla(files, finetuned_synthesizer, tmp_path, capsys):
    with pytest.raises(SystemExit) as error:
        run.main(["finetune", "vanilla", str(files["corpus"]), "--reading_params_path", str(finetuned_synthesizer),
                  "--writing_params_path", str(tmp_path / "out.params"),
                  "--finetune_corpus_path", str(files["finetune"]), *FAST])
    assert error.value.code == 2
    message = capsys.readouterr().err
    assert "vanilla" in message and "synthesizer" in message
    assert not (tmp_path / "out.params").exists()


def test_missing_finetune_corpus_exits_2(files, tmp_path):
    result = run_cli("finetune", "vanilla", files["corpus"], "--writing_params_path", tmp_path / "p.params")
    assert result.returncode == 2
    assert "--finetune_corpus_path" in result.stderr
    assert not (tmp_path / "p.params").exists()


@pytest.mark.parametrize("args, flag", [
    (["evaluate", "vanilla", "CORPUS", "--reading_params_path", "x.params", "--eval_corpus_path", "dev.tsv"],
     "--outputs_path"),
    (["evaluate", "vanilla", "CORPUS", "--reading_params_path", "x.params", "--outputs_path", "out"],
     "--eval_corpus_path"),
    (["evaluate", "vanilla", "CORPUS", "--eval_corpus_path", "dev.tsv", "--outputs_path", "out"],
     "--reading_params_path"),
    (["pretrain", "vanilla", "CORPUS"], "--writing_params_path"),
    (["finetune", "synthesizer", "CORPUS", "--finetune_corpus_path", "f.tsv"], "--writing_params_path"),
])
def test_missing_required_flag_exits_2(files, capsys, args, flag):
    args = [str(files["corpus"]) if a == "CORPUS" else a for a in args]
    with pytest.raises(SystemExit) as error:
        run.main(args)
    assert error.value.code == 2
    assert flag in capsys.readouterr().err


# ------------------------------------------------------------------ seeds and flags

def finetune_in_process(files, path, *extra):
    run.main(["finetune", "vanilla", str(files["corpus"]), "--writing_params_path", str(path),
              "--finetune_corpus_path", str(files["finetune"]), *FAST, *extra])
    return load(path)


def test_same_seed_gives_identical_params_and_another_seed_differs(files, finetuned_vanilla, tmp_path):
    again = finetune_in_process(files, tmp_path / "again.params", "--seed", "3")
    assert same_state(load(finetuned_vanilla), again)
    other = finetune_in_process(files, tmp_path / "other.params", "--seed", "4")
    assert not same_state(again, other)
    assert not torch.equal(again["tok_emb.weight"], other["tok_emb.weight"])


def test_original_computation_computes_as_the_original_did_and_trains_the_same(files, tmp_path, monkeypatch):
    """--original_computation (bench.py's plain path) sets the model's and the trainer's options; the same training."""
    with monkeypatch.context() as patch:
        RecordingTrainer.calls = []
        patch.setattr(run, "Trainer", RecordingTrainer)
        finetune_in_process(files, tmp_path / "untrained.params", "--original_computation")
    (model, _, _, config), = RecordingTrainer.calls
    assert (config.batch_rows, config.data_loader, config.num_workers) == ("padded", True, 4)
    assert not any(block.attn.fused for block in model.blocks)
    fast = finetune_in_process(files, tmp_path / "fast.params", "--dropout", "0")
    original = finetune_in_process(files, tmp_path / "original.params", "--dropout", "0", "--original_computation")
    for name, value in fast.items():
        assert torch.allclose(original[name], value, rtol=1e-4, atol=5e-5), name


class RecordingTrainer:
    """Stands in for trainer.Trainer: records what run.py asks for, trains nothing."""
    calls = []

    def __init__(self, model, train_dataset, test_dataset, config):
        RecordingTrainer.calls.append((model, train_dataset, test_dataset, config))

    def train(self, stop=None):
        pass


@pytest.fixture
def recording(monkeypatch):
    RecordingTrainer.calls = []
    monkeypatch.setattr(run, "Trainer", RecordingTrainer)
    return RecordingTrainer.calls


def corpus_documents(files):
    return len(files["corpus"].read_text(encoding="utf-8").split("\n"))


@pytest.mark.parametrize("function, reading, epochs, batch, lr", [
    ("pretrain", False, 650, 128, 6e-3),
    ("finetune", False, 75, 256, 6e-4),
    ("finetune", True, 10, 256, 6e-4),
])
def test_hyperparameters_of_each_function(files, finetuned_vanilla, recording, tmp_path, function, reading,
                                          epochs, batch, lr):
    out = tmp_path / "out.params"
    args = [function, "vanilla", str(files["corpus"]), "--writing_params_path", str(out)]
    if function == "finetune":
        args += ["--finetune_corpus_path", str(files["finetune"])]
    if reading:
        args += ["--reading_params_path", str(finetuned_vanilla)]
    run.main(args)
    (model, train_dataset, test_dataset, config), = recording
    assert (config.max_epochs, config.batch_size, config.learning_rate) == (epochs, batch, lr)
    assert config.lr_decay is True
    assert config.warmup_tokens == 512 * 20
    assert config.final_tokens == 200 * corpus_documents(files) * 128
    assert test_dataset is None
    assert len(train_dataset) == (corpus_documents(files) if function == "pretrain" else len(FINETUNE))
    assert model.variant == "vanilla"
    # nothing was trained, so the written params are the loaded ones, or a fresh model's
    written = load(out)
    if reading:
        assert same_state(written, load(finetuned_vanilla))
    else:
        # a fresh model: the spec's initialisation
        assert torch.count_nonzero(written["pos_emb"]) == 0
        assert 0.019 < float(written["blocks.0.mlp.0.weight"].std()) < 0.021
        assert torch.equal(written["ln_f.weight"], torch.ones(256))
        assert torch.equal(written["blocks.0.attn.key.bias"], torch.zeros(256))


def test_optional_flags_override_the_table(files, recording, tmp_path):
    run.main(["pretrain", "vanilla", str(files["corpus"]), "--writing_params_path", str(tmp_path / "p"),
              "--max_epochs", "3", "--batch_size", "5", "--learning_rate", "0.25",
              "--device", "cpu"])
    config = recording[0][3]
    assert (config.max_epochs, config.batch_size, config.learning_rate) == (3, 5, 0.25)


def dropouts(model):
    return {module.p for module in model.modules() if isinstance(module, torch.nn.Dropout)}


@pytest.mark.parametrize("function", ["pretrain", "finetune"])
def test_dropout_weight_decay_and_cosine_flags_for_a_short_run(files, recording, tmp_path, function):
    args = [function, "vanilla", str(files["corpus"]), "--writing_params_path", str(tmp_path / "p")]
    if function == "finetune":
        args += ["--finetune_corpus_path", str(files["finetune"])]
    run.main(args)
    run.main(args + ["--dropout", "0", "--weight_decay", "0.03", "--cosine_epochs", "300", "--max_epochs", "300"])
    (default_model, _, _, default_config), (model, train_dataset, _, config) = recording
    assert dropouts(default_model) == {0.1} and dropouts(model) == {0.0}
    assert (default_config.weight_decay, config.weight_decay) == (0.1, 0.03)
    # the handout's cosine ends after 200 epochs of the corpus, whatever is trained; with the
    # flag it ends after that many epochs of the training data (the finetuning file, there)
    assert default_config.final_tokens == 200 * corpus_documents(files) * 128
    assert config.final_tokens == 300 * len(train_dataset) * 128
    assert len(train_dataset) == (corpus_documents(files) if function == "pretrain" else len(FINETUNE))
    run_end = 300 * len(train_dataset) * 127  # tokens counted over the run: 127 targets per example
    rates = [trainer_module.learning_rate_at(tokens, config) for tokens in range(512 * 20, run_end + 1, 100)]
    assert rates[0] == config.learning_rate and rates[-1] == pytest.approx(0.1 * config.learning_rate)
    assert all(a >= b for a, b in zip(rates, rates[1:]))


@pytest.mark.parametrize("extra, epochs, steps", [
    ([], 1, 2),                                          # 16 lines, batches of 8, one epoch
    (["--max_epochs", "2"], 2, 4),
    (["--batch_size", "16"], 1, 1),
    (["--batch_size", "5", "--max_epochs", "2"], 2, 8),  # 4 batches (5, 5, 5, 1) per epoch
])
def test_epochs_and_batch_size_set_the_number_of_steps(files, tmp_path, monkeypatch, extra, epochs, steps):
    step = trainer_module.Trainer.step
    batches = []

    def counting_step(self, optimizer, x, y, lengths):
        batches.append(x.size(0))
        return step(self, optimizer, x, y, lengths)

    monkeypatch.setattr(trainer_module.Trainer, "step", counting_step)
    finetune_in_process(files, tmp_path / "p.params", *extra)
    assert len(batches) == steps
    assert sum(batches) == len(FINETUNE) * epochs


def test_learning_rate_flag_sets_the_size_of_the_updates(files, tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        RecordingTrainer.calls = []
        patch.setattr(run, "Trainer", RecordingTrainer)
        initial = finetune_in_process(files, tmp_path / "initial.params")  # seed 0, nothing trained
    tiny = finetune_in_process(files, tmp_path / "tiny.params", "--learning_rate", "1e-9")
    large = finetune_in_process(files, tmp_path / "large.params", "--learning_rate", "1e-2")

    def largest_change(state):
        return max(float((state[k] - initial[k]).abs().max()) for k in initial)

    assert largest_change(tiny) < 1e-6
    assert largest_change(large) > 1e-3


def test_run_flushes_denormals_on_every_thread_of_the_pool():
    """Denormals slow a trained model's steps by 1.6x; run.py flushes them before the thread pool starts."""
    check = ("import sys; sys.path.insert(0, 'src'); import torch, run\n"
             "run.parse_args = lambda argv: sys.exit(int((torch.full((2_000_000,), 1e-39) * 1.0).count_nonzero()))\n"
             "run.main([])\n")
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    unflushed = subprocess.run([sys.executable, "-c", "import torch; assert (torch.full((4,), 1e-39) * 1.0).all()"],
                               capture_output=True, text=True, timeout=60)
    assert unflushed.returncode == 0, unflushed.stderr  # without it, denormals are kept: the check above can fail
