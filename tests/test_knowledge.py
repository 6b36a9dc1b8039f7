"""
What pretraining puts into the weights, measured: snapshots of a pretraining (run.py
--snapshot_epochs), the recall probe (analyze.recall_by_pair) and the knowledge curve
(knowledge_curve.py) that finetunes and evaluates each snapshot.
"""

import argparse
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

import analyze
import handout
import handout_report
import knowledge_curve
from utils import DECODE_STEPS
from conftest import ROOT
from dataset import BLOCK_SIZE, MASK_CHAR, CharCorruptionDataset
from params import build_model, load_params
from test_robustness import CORPUS, FINETUNE, REPRODUCIBLE, files  # noqa: F401 (files is a fixture)

TINY = ["--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--device", "cpu"]


def pretrain(tmp_path, files, name, *extra):
    return [sys.executable, str(ROOT / "src" / "run.py"), "pretrain", "vanilla", str(files["corpus"]),
            "--writing_params_path", str(tmp_path / name), "--batch_size", "3", "--checkpoint_every", "0",
            *TINY, *extra]


def run_ok(command, cwd):
    done = subprocess.run(command, cwd=cwd, env=REPRODUCIBLE, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def load(path):
    return torch.load(path, weights_only=True)


def assert_same_params(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_snapshots_change_nothing_and_each_is_the_params_of_a_shorter_run(files, tmp_path):
    run_ok(pretrain(tmp_path, files, "s.params", "--max_epochs", "4", "--snapshot_epochs", "1", "3"), tmp_path)
    run_ok(pretrain(tmp_path, files, "plain.params", "--max_epochs", "4"), tmp_path)
    assert sorted(p.name for p in tmp_path.glob("s.params*")) == [
        "s.params", "s.params.epoch1", "s.params.epoch3", "s.params.metrics.jsonl"]
    assert_same_params(load(tmp_path / "s.params"), load(tmp_path / "plain.params"))
    # the handout's schedule does not depend on the run's length, so a run of k epochs ends where
    # a longer one is after k: each snapshot must be exactly those params
    for epochs in (1, 3):
        run_ok(pretrain(tmp_path, files, f"short{epochs}.params", "--max_epochs", str(epochs)), tmp_path)
        assert_same_params(load(tmp_path / f"s.params.epoch{epochs}"), load(tmp_path / f"short{epochs}.params"))
    assert not torch.equal(load(tmp_path / "s.params.epoch1")["head.weight"],
                           load(tmp_path / "s.params.epoch3")["head.weight"])


def test_snapshots_survive_a_stop_and_resume(files, tmp_path):
    arguments = ["--max_epochs", "40", "--snapshot_epochs", "2", "39"]
    run_ok(pretrain(tmp_path, files, "straight.params", *arguments), tmp_path)
    child = subprocess.Popen(pretrain(tmp_path, files, "p.params", *arguments), cwd=tmp_path, env=REPRODUCIBLE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (tmp_path / "p.params.epoch2").exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert child.poll() is None, "the run ended before it could be interrupted"
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=120)
    assert child.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert not (tmp_path / "p.params.epoch39").exists()
    run_ok(pretrain(tmp_path, files, "p.params", *arguments, "--resume"), tmp_path)
    for suffix in ("", ".epoch2", ".epoch39"):
        assert_same_params(load(tmp_path / f"p.params{suffix}"), load(tmp_path / f"straight.params{suffix}"))


@pytest.mark.parametrize("extra, words", [
    (["--max_epochs", "3", "--snapshot_epochs", "2", "4"], ["--snapshot_epochs 4", "1 to 3"]),
    (["--max_epochs", "3", "--snapshot_epochs", "0"], ["--snapshot_epochs 0", "1 to 3"]),
    (["--max_epochs", "3", "--snapshot_epochs", "x"], ["--snapshot_epochs", "invalid int value"]),
])
def test_snapshot_epochs_outside_the_run_are_refused(files, tmp_path, extra, words):
    done = subprocess.run(pretrain(tmp_path, files, "p.params", *extra), cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert all(word in done.stderr for word in words), done.stderr
    assert list(tmp_path.glob("p.params*")) == []


@pytest.mark.parametrize("flag", [["--snapshot_epochs", "1"], ["--processes", "2"]])
def test_evaluate_refuses_the_training_only_flags(files, tmp_path, flag):
    done = subprocess.run([sys.executable, str(ROOT / "src" / "run.py"), "evaluate", "vanilla", str(files["corpus"]),
                           "--reading_params_path", "x", "--eval_corpus_path", "x", "--outputs_path", "y", *flag],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and f"{flag[0]} is for pretrain and finetune" in done.stderr
    assert "Traceback" not in done.stderr


def test_handout_passes_device_to_all_precision_and_processes_to_training_and_snapshots_to_pretraining():
    passed = handout.PassedOn(device="cpu", precision="fp32", processes=2, snapshot_epochs=(5, 50))
    kinds = set()
    for _, arguments, training in handout.handout_steps(["vanilla"]):
        command = handout.step_command(arguments, training, handout.Path("."), {}, 0, passed)
        if arguments[0] != "src/run.py":
            assert command == arguments  # London's
            continue
        kinds.add(training)
        trains = ["--device", "cpu", "--precision", "fp32", "--processes", "2"]
        tail = {"pretrain": trains + ["--snapshot_epochs", "5", "50"], "finetune": trains,
                "finetune from pretrained": trains, None: ["--device", "cpu"]}[training]
        assert command[-len(tail):] == tail and command[:len(arguments)] == arguments
        assert len(command) == len(arguments) + len(tail)
    assert kinds == {"pretrain", "finetune", "finetune from pretrained", None}
    for _, arguments, training in handout.handout_steps(["vanilla"]):  # left out, nothing is added
        assert handout.step_command(arguments, training, handout.Path("."), {}, 0) == arguments


# -----------------------------------------------------------------------------
# the recall probe

def pairs_of(tsv):
    return analyze.parse_questions(tsv, "test.tsv")


def test_recall_prompts_are_the_wiki_line_up_to_the_place():
    documents = CORPUS.split("\n")
    pairs = pairs_of(FINETUNE) + [("Where was Nobody Known born?", "Paris"),  # no wiki line
                                  ("Where was Wanda Wu born?", "Shanghai")]  # place not in the line
    probes = analyze.recall_prompts(pairs, documents)
    assert len(probes) == len(pairs) and probes[-2:] == [None, None]  # one per pair, None for the last two
    probes = probes[:-2]
    assert probes[0] == ("Ada Lovelace. Ada Lovelace was an English mathematician born in ", "London")
    # the first occurrence of the place, even inside a longer one
    assert probes[1] == ("Alan Turing. Alan Turing was a mathematician and computer scientist born in Maida Vale, ",
                         "London")
    assert [place for _, place in probes] == ["London", "London", "New York City", "Warsaw", "Copenhagen",
                                              "Erlangen"]
    lines = {document.split(".")[0]: document for document in documents}
    for (prompt, place), (question, _) in zip(probes, pairs):
        assert lines[analyze.person_name(question)].startswith(prompt + place)


def test_a_place_pretraining_never_shows_is_not_probed():
    visible = analyze.VISIBLE_PREFIX
    assert visible == 112
    filler = "x" * (visible - len("Late Lee. born in "))
    documents = [f"Late Lee. {filler}born in Oslo .", f"Just Jo. {filler[:-5]}born in Oslo ."]
    pairs = [("Where was Late Lee born?", "Oslo"), ("Where was Just Jo born?", "Oslo")]
    probes = analyze.recall_prompts(pairs, documents)
    assert probes[0] is None and probes[1][0].startswith("Just Jo.")
    assert len(probes[1][0]) + len("Oslo") <= visible


def test_pretrained_recall_counts_the_places_completed(monkeypatch):
    corpus = CharCorruptionDataset(CORPUS, BLOCK_SIZE)
    pairs = pairs_of(FINETUNE)
    pairs.insert(2, ("Where was Wanda Wu born?", "Shanghai"))  # never shown: not probed
    probes = [probe for probe in analyze.recall_prompts(pairs, CORPUS.split("\n")) if probe is not None]
    right = {"London", "Copenhagen"}  # the fake model knows these, and says "Nowhere" otherwise

    def fake_decode(model, prompts, steps):
        assert len(prompts) == len(probes) == 6
        completions = []
        for prompt, (text, place) in zip(prompts, probes):
            assert "".join(corpus.itos[int(i)] for i in prompt) == text
            said = (place if place in right else "Nowhere, really") + " ."
            completions.append(torch.cat([prompt, torch.tensor([corpus.stoi[c] for c in said[:steps]])]))
        return completions

    monkeypatch.setattr(analyze, "greedy_decode", fake_decode)
    model = torch.nn.Linear(1, 1)
    # pair by pair, in the pairs' order: Ada and Alan (London), Wanda (not shown), Grace, Marie, Niels, Emmy
    by_pair = analyze.recall_by_pair(model, corpus.stoi, corpus.itos, pairs, CORPUS.split("\n"))
    assert by_pair == [True, True, None, False, False, True, False]
    recall = analyze.pretrained_recall(model, corpus.stoi, corpus.itos, pairs, CORPUS.split("\n"))
    assert recall == {"people": 7, "probed": 6, "completed": 3, "recall": 0.5}
    nobody = analyze.pretrained_recall(model, corpus.stoi, corpus.itos, [("Where was X Y born?", "Z")],
                                       CORPUS.split("\n"))
    assert nobody == {"people": 1, "probed": 0, "completed": 0, "recall": None}


def test_handout_py_scores_the_model_of_an_evaluate_step_with_the_first_character_given(files, tmp_path):
    run_ok(pretrain(tmp_path, files, "p.params", "--max_epochs", "2"), tmp_path)
    command = ["src/run.py", "evaluate", "vanilla", str(files["corpus"]), "--reading_params_path",
               str(tmp_path / "p.params"), "--eval_corpus_path", str(files["dev"]), "--outputs_path",
               str(tmp_path / "p.predictions"), *TINY]
    corpus = CharCorruptionDataset(CORPUS, BLOCK_SIZE)
    model = build_model(corpus.vocab_size, BLOCK_SIZE, "vanilla", argparse.Namespace(
        n_layer=1, n_head=2, n_embd=16, bottleneck_dim=None))
    load_params(model, str(tmp_path / "p.params"), "cpu")
    pairs = pairs_of(files["dev"].read_text())
    hinted = analyze.first_character_given(model, corpus.stoi, corpus.itos, pairs)
    assert handout_report.first_character_accuracy(command) == pytest.approx(
        100 * sum(answer == place for answer, (_, place) in zip(hinted, pairs)) / 3)
    assert not (tmp_path / "p.predictions").exists()  # it reads the params, and writes nothing


# -----------------------------------------------------------------------------
# the knowledge curve

def test_dev_answers_are_split_by_what_the_probe_said_of_each_person():
    pairs = [(f"Where was {name} born?", place) for name, place in
             [("A A", "London"), ("B B", "Paris"), ("C C", "Rome"), ("D D", "Oslo"), ("E E", "Lima")]]
    recalled = [True, True, False, None, False]
    assert knowledge_curve.answers_by_recall(recalled, pairs, ["London", "London", "Rome", "Oslo", "Paris"]) == {
        "accuracy": 60.0, "by_recall": {"recalled": {"questions": 2, "correct": 1},
                                        "not_recalled": {"questions": 2, "correct": 1},
                                        "not_shown": {"questions": 1, "correct": 1}}}
    split = knowledge_curve.answers_by_recall(recalled, pairs, ["London", "Paris", "London", "London", "Lima"])
    assert split == {"accuracy": 60.0, "by_recall": {"recalled": {"questions": 2, "correct": 2},
                                                     "not_recalled": {"questions": 2, "correct": 1},
                                                     "not_shown": {"questions": 1, "correct": 0}}}
    record = {"dev_answers": {"pretrained": split}}
    assert knowledge_curve.answered(record, "pretrained") == "2/2"
    assert knowledge_curve.answered(record, "pretrained", share=True) == "60.0%"
    assert knowledge_curve.answered(record, "nopretrain") == "?" and knowledge_curve.answered({}, "pretrained") == "?"


def test_the_first_character_given_is_the_places_and_the_answer_runs_from_it(monkeypatch):
    corpus = CharCorruptionDataset(CORPUS, BLOCK_SIZE)
    pairs = pairs_of(FINETUNE)[:3] + [("Where was Ada Lovelace born?", "\u00c5lesund")]  # not in the vocabulary
    calls = []

    def fake_decode(model, prompts, steps):  # every prompt continued with "ondon⁇"
        calls.append((steps, ["".join(corpus.itos[int(i)] for i in prompt) for prompt in prompts]))
        return [torch.cat([prompt, torch.tensor([corpus.stoi[c] for c in "ondon" + MASK_CHAR])]) for prompt in prompts]

    monkeypatch.setattr(analyze, "greedy_decode", fake_decode)
    predictions = analyze.first_character_given(torch.nn.Linear(1, 1), corpus.stoi, corpus.itos, pairs)
    [(steps, prompts)] = calls
    assert steps == DECODE_STEPS - 1  # the given character is the first of evaluate's characters
    assert prompts == [question + MASK_CHAR + place[0] for question, place in pairs[:3]] + [pairs[3][0] + MASK_CHAR]
    assert predictions == ["London", "London", "Nondon", "ondon"]


def test_the_knowledge_curve_measures_each_snapshot_once(files, tmp_path):
    run_ok(pretrain(tmp_path, files, "p.params", "--max_epochs", "3", "--snapshot_epochs", "1", "2"), tmp_path)
    (tmp_path / "nopre.predictions").write_text("London\nParis\nNew York City\n")  # 2 of the 3 right
    curve = [sys.executable, str(ROOT / "src" / "knowledge_curve.py"), "vanilla", str(files["corpus"]),
             "--pretrain_params_path", str(tmp_path / "p.params"), "--finetune_corpus_path", str(files["finetune"]),
             "--eval_corpus_path", str(files["dev"]), "--figure", str(tmp_path / "curve.png"),
             "--nopretrain_predictions", str(tmp_path / "nopre.predictions"),
             "--nopretrain_params_path", str(tmp_path / "p.params.epoch1"), *TINY[:6]]
    first = run_ok(curve, tmp_path)
    records_path = tmp_path / "p.params.knowledge.jsonl"
    records = [json.loads(line) for line in records_path.read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    metrics = [json.loads(line) for line in (tmp_path / "p.params.metrics.jsonl").read_text().splitlines()]
    corpus = CharCorruptionDataset(CORPUS, BLOCK_SIZE)
    model = build_model(corpus.vocab_size, BLOCK_SIZE, "vanilla", argparse.Namespace(
        n_layer=1, n_head=2, n_embd=16, bottleneck_dim=None))
    pairs = pairs_of(files["dev"].read_text())
    for record in records:
        steps = [m for m in metrics if m["epoch"] == record["epoch"]]
        assert record["pretrain_loss"] == pytest.approx(sum(m["loss"] for m in steps) / len(steps))
        assert record["pretrain_hours"] == steps[-1]["wall_time"] / 3600
        assert record["recall_dev_people"]["people"] == 3 and record["recall_finetuning_people"]["people"] == 6
        name = f"epoch{record['epoch']}" if record["epoch"] < 3 else "final"
        predictions = (tmp_path / "p.params.curve" / f"{name}.dev.predictions").read_text().split("\n")[:3]
        golds = ["London", "London", "New York City"]
        assert record["dev_accuracy"] == pytest.approx(100 * sum(p == g for p, g in zip(predictions, golds)) / 3)
        assert f"epoch {record['epoch']}: pretraining loss" in first.stdout
        # each split covers every dev person once, in the groups the probe's counts say
        recall, answers = record["recall_dev_people"], record["dev_answers"]
        assert answers.keys() == {"pretrained", "pretrained_first_character_given", "nopretrain",
                                  "nopretrain_first_character_given"}
        for split in answers.values():
            assert [split["by_recall"][group]["questions"] for group in ("recalled", "not_recalled", "not_shown")] == [
                recall["completed"], recall["probed"] - recall["completed"], recall["people"] - recall["probed"]]
            assert sum(x["correct"] for x in split["by_recall"].values()) == round(3 * split["accuracy"] / 100)
        assert answers["pretrained"]["accuracy"] == record["dev_accuracy"]
        assert answers["nopretrain"]["accuracy"] == pytest.approx(200 / 3)
        # with the first character given: the finetuned params it wrote, and the no-pretraining ones given
        finetuned = tmp_path / "p.params.curve" / f"{name}.finetune.params"
        for kind, params in (("pretrained_first_character_given", finetuned),
                             ("nopretrain_first_character_given", tmp_path / "p.params.epoch1")):
            load_params(model, str(params), "cpu")
            hinted = analyze.first_character_given(model, corpus.stoi, corpus.itos, pairs)
            assert answers[kind]["accuracy"] == pytest.approx(100 * sum(p == g for p, g in zip(hinted, golds)) / 3)
    if (tmp_path / "curve.png").exists():
        assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    # records of an earlier version, without the dev answers or with some, get those they lack from
    # the probe and the files they wrote, and nothing is finetuned again
    earlier = [{**records[0]}, {**records[1], "dev_answers": {**records[1]["dev_answers"]}}, records[2]]
    del earlier[0]["dev_answers"], earlier[1]["dev_answers"]["pretrained_first_character_given"]
    records_path.write_text("".join(json.dumps(r) + "\n" for r in earlier))
    again = run_ok(curve, tmp_path)
    assert "epoch 1:" not in again.stdout and "epoch 2:" not in again.stdout and "epoch 3" not in again.stdout
    assert "epoch 1 (recorded before): first character given " in again.stdout
    assert "epoch 2 (recorded before): first character given " in again.stdout
    assert [json.loads(line) for line in records_path.read_text().splitlines()] == records
    rows = run_ok(curve + ["--table"], tmp_path).stdout.splitlines()
    assert rows[0].startswith("| epochs | hours | pretraining loss | recall, dev people |") and len(rows) == 5
    assert rows[0].endswith("| dev accuracy | first character given (without pretraining) "
                            "| recalled dev people answered (without pretraining) |")
    first = records[0]
    dev, finetuning = first["recall_dev_people"], first["recall_finetuning_people"]
    answers = first["dev_answers"]
    split, control = (answers[name]["by_recall"]["recalled"] for name in ("pretrained", "nopretrain"))
    assert rows[2] == (f"| 1 | {first['pretrain_hours']:.2f} | {first['pretrain_loss']:.3f} | "
                       f"{dev['completed']}/{dev['probed']} ({100 * dev['recall']:.1f}%) | "
                       f"{finetuning['completed']}/{finetuning['probed']} ({100 * finetuning['recall']:.1f}%) | "
                       f"{first['finetune_loss']:.3f} | {first['dev_accuracy']:.1f}% | "
                       f"{answers['pretrained_first_character_given']['accuracy']:.1f}% "
                       f"({answers['nopretrain_first_character_given']['accuracy']:.1f}%) | "
                       f"{split['correct']}/{split['questions']} ({control['correct']}/{control['questions']}) |")


def test_the_knowledge_curve_without_snapshots_says_what_to_do(files, tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "src" / "knowledge_curve.py"), "vanilla", str(files["corpus"]),
                           "--pretrain_params_path", str(tmp_path / "none.params"), "--finetune_corpus_path",
                           str(files["finetune"]), "--eval_corpus_path", str(files["dev"])],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--snapshot_epochs" in done.stderr and "none.params" in done.stderr


def test_snapshots_are_found_by_epoch(tmp_path):
    for name in ["v.params.epoch10", "v.params.epoch5", "v.params.metrics.jsonl", "v.params.epoch5.metrics.jsonl",
                 "w.params.epoch1", "v.params"]:
        (tmp_path / name).write_text("")
    found = knowledge_curve.snapshots(str(tmp_path / "v.params"))
    assert [(epoch, path.name) for epoch, path in found] == [(5, "v.params.epoch5"), (10, "v.params.epoch10"),
                                                             (None, "v.params")]


def test_the_knowledge_curve_refuses_records_it_did_not_write(files, tmp_path):
    run_ok(pretrain(tmp_path, files, "p.params", "--max_epochs", "1"), tmp_path)
    (tmp_path / "p.params.knowledge.jsonl").write_text("not json\n")
    done = subprocess.run([sys.executable, str(ROOT / "src" / "knowledge_curve.py"), "vanilla", str(files["corpus"]),
                           "--pretrain_params_path", str(tmp_path / "p.params"), "--finetune_corpus_path",
                           str(files["finetune"]), "--eval_corpus_path", str(files["dev"]), *TINY[:6]],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "is not a knowledge curve's records" in done.stderr
    assert (tmp_path / "p.params.knowledge.jsonl").read_text() == "not json\n"


def test_the_knowledge_curve_of_a_perceiver_passes_its_bottleneck_and_precision_on(files, tmp_path):
    size = ["--n_layer", "2", "--n_head", "2", "--n_embd", "16", "--bottleneck_dim", "8"]
    run_ok([sys.executable, str(ROOT / "src" / "run.py"), "pretrain", "perceiver", str(files["corpus"]),
            "--writing_params_path", str(tmp_path / "p.params"), "--batch_size", "3", "--max_epochs", "1", *size],
           tmp_path)
    done = run_ok([sys.executable, str(ROOT / "src" / "knowledge_curve.py"), "perceiver", str(files["corpus"]),
                   "--pretrain_params_path", str(tmp_path / "p.params"), "--finetune_corpus_path",
                   str(files["finetune"]), "--eval_corpus_path", str(files["dev"]), "--figure",
                   str(tmp_path / "curve.png"), "--precision", "bf16", *size], tmp_path)
    record = json.loads((tmp_path / "p.params.knowledge.jsonl").read_text())
    finetune = record["commands"][0]
    assert record["epoch"] == 1 and "--bottleneck_dim=8" in finetune
    assert finetune[finetune.index("--precision") + 1] == "bf16"
    assert "precision: bf16 (as asked)" in done.stdout  # the finetuning's own line: it trained in bf16
    assert "epoch 1: pretraining loss" in done.stdout


@pytest.mark.parametrize("variant, band", [("vanilla", (19.2, 26.6)), ("rope", (30, 40)), ("synthesizer", (5, 14))])
def test_the_curves_figure_shades_the_public_runs_of_its_own_variant(tmp_path, monkeypatch, variant, band):
    axes = pytest.importorskip("matplotlib.axes")
    shaded = []
    monkeypatch.setattr(axes.Axes, "axhspan", lambda axis, low, high, **kw: shaded.append((low, high, kw["label"])))
    records = [{"epoch": e, "pretrain_hours": e / 50, "dev_accuracy": 1.0, "recall_dev_people": {"recall": 0.1},
                "recall_finetuning_people": {"recall": 0.1}} for e in (50, 100)]
    knowledge_curve.draw(records, tmp_path / "curve.png", variant, 5.0, {"nopretrain": 1.6})
    label = f"public runs of {variant}, 650 epochs ({band[0]}-{band[1]}%)"
    assert shaded == [(*band, label)] * 2  # both panels: epochs and hours
    assert (tmp_path / "curve.png").stat().st_size > 0


def test_the_epoch_axis_labels_snapshots_that_lie_apart_and_always_the_last():
    # on a log axis from 50 to 650, 600 lies 3% of the span below 650 (their labels would overlap); 500, 10%
    assert knowledge_curve.spaced_ticks([50, 100, 150, 200, 300, 400, 500, 600, 650]) == \
        [50, 100, 150, 200, 300, 400, 500, 650]
    assert knowledge_curve.spaced_ticks([5, 10, 25, 50, 100, 200, 400]) == [5, 10, 25, 50, 100, 200, 400]
    assert knowledge_curve.spaced_ticks([100, 99, 1]) == [1, 100]  # 99 is 0.2% of the span below 100
    assert knowledge_curve.spaced_ticks([7]) == [7] and knowledge_curve.spaced_ticks([]) == []
    assert knowledge_curve.spaced_ticks([200, 200, 50]) == [50, 200]
