"""
Tests of src/analyze.py, the analysis of a predictions file: the statistics on a small
hand-made set of people whose every answer is known, the AUROC on inputs worked out by hand,
the confidence computation against step-by-step softmax probabilities of a small random GPT,
and `python src/analyze.py` end to end with a freshly initialised model of the size run.py
builds. Everything is written under tmp_path.
"""

import json
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import analyze
from conftest import ROOT
from dataset import MASK_CHAR, CharCorruptionDataset
from model import GPT, VARIANTS, GPTConfig
from safe_io import InputError
from utils import evaluate_places, greedy_decode

WIKI = [
    "Ann Lee. Ann Lee is a painter born in Leeds .",
    "Bob Ray. Bob Ray was born in Derby and lives in York .",
    "Cara Moss. Cara Moss is a singer from Paris .",
    "Dan Ford. Dan Ford is a writer .",
    "Jo Park. Jo Park was born in Seoul and died in Busan .",
    "Ann Leeson. Ann Leeson was born in Oslo .",  # starts with "Ann Lee" but is someone else
]
FINETUNE = [("Ann Smith", "Oslo"), ("Ed Ray", "Rome"), ("Cara Moss", "Paris"), ("Fay Wu", "Paris"),
            ("Hal Tan", "London")]
# name, gold, prediction, confidence, and the kind of answer it is
DEV = [
    ("Ann Lee", "Leeds", "Leeds", 0.9, "retrieved"),
    ("Bob Ray", "Derby", "Rome", 0.2, "copied"),                      # Ed Ray's place
    ("Cara Moss", "Paris", "Paris", 0.8, "retrieved"),                # also asked in finetuning
    ("Dan Ford", "Boston", "Berlin", 0.3, "made_up"),
    ("Eve Kim", "Paris", "Paris", 0.5, "correct_not_in_wiki_line"),   # no wiki line at all
    ("Jo Park", "Seoul", "Busan", 0.6, "wrong_from_wiki_line"),       # where he died
    ("Kim Day", "Lima", "Oslo", 0.1, "made_up"),                      # Ann Smith's place, but no shared name
]


def question(name):
    return f"Where was {name} born?"


def eval_pairs():
    return [(question(name), gold) for name, gold, *_ in DEV]


def finetune_pairs():
    return [(question(name), place) for name, place in FINETUNE]


# the answers with each gold place's first character given: all right but Kim Day's
HINTED = ["Leeds", "Derby", "Paris", "Boston", "Paris", "Seoul", "Lagos"]


def hand_made_report(n_examples=5):
    return analyze.analyze(eval_pairs(), [p for _, _, p, _, _ in DEV], WIKI, finetune_pairs(),
                           [c for _, _, _, c, _ in DEV], HINTED, n_examples)


def trained_like_model(variant, vocab_size, block_size=64, seed=0):
    """A small random model whose logits are far from uniform, so probabilities differ clearly."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size, block_size, variant=variant, n_layer=2, n_head=4, n_embd=64,
                          bottleneck_dim=16)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.15)
    return model


# -----------------------------------------------------------------------------
# reading and matching

def test_person_name_and_parsing_the_files():
    assert analyze.person_name("Where was Moses Mason, Jr. born?") == "Moses Mason, Jr."
    assert analyze.person_name("Who is Ann Lee?") is None
    assert analyze.parse_questions("Where was A B born?\tLeeds \nWhere was C D born?\tRome\n\n", "f.tsv") == [
        ("Where was A B born?", "Leeds"), ("Where was C D born?", "Rome")]
    assert analyze.parse_questions("Where was C D born?\n", "f.tsv") == [("Where was C D born?", None)]
    with pytest.raises(InputError, match="f.tsv line 2 has no place, but line 1 has one"):
        analyze.parse_questions("Where was A B born?\tLeeds\nWhere was C D born?\n", "f.tsv")
    with pytest.raises(InputError, match=r"f.tsv line 2: expected 'Where was NAME born\?'"):
        analyze.parse_questions("Where was A B born?\tLeeds\nWho is C D?\tRome\n", "f.tsv")
    # predictions are kept exactly, an empty one and trailing spaces included
    assert analyze.parse_predictions("Leeds\n\nRome \n") == ["Leeds", "", "Rome "]
    assert analyze.parse_predictions("") == []


def test_documents_by_name_matches_the_name_and_a_dot_at_the_start():
    documents = ["George Stone. Born in Fulham .", "George Stoner. Born in Leeds .", "J. N. Williamson. A writer .",
                 "George Stone. Born in London .", "Moses Mason, Jr.. Born in Dublin .", "About George Stone. No ."]
    found = analyze.documents_by_name(documents, ["George Stone", "J. N. Williamson", "Moses Mason, Jr.", "Nobody"])
    assert found == {"George Stone": [documents[0], documents[3]], "J. N. Williamson": [documents[2]],
                     "Moses Mason, Jr.": [documents[4]], "Nobody": []}


def test_occurs_in_looks_for_whole_words():
    documents = ["Bob Ray. Bob Ray was born in New York City, near Manchester ."]
    assert analyze.occurs_in("New York", documents)
    assert analyze.occurs_in("Bob Ray", documents)
    assert not analyze.occurs_in("Man", documents)
    assert not analyze.occurs_in("", documents)
    assert not analyze.occurs_in("New York", [])


def test_name_words_are_first_and_last_name_without_initials_or_suffixes():
    assert analyze.name_words("Moses Mason, Jr.") == {"Moses", "Mason"}
    assert analyze.name_words("J. N. Williamson") == {"Williamson"}
    assert analyze.name_words("Jacob Henry Studer") == {"Jacob", "Studer"}
    assert analyze.name_words("Cher") == {"Cher"}


def test_copied_from_needs_a_shared_name_word_and_the_same_place():
    index = analyze.people_by_name_word(finetune_pairs() + [(question("Ray Ames"), "Rome"),
                                                            (question("Bob Ray"), "Rome")])
    assert analyze.copied_from("Bob Ray", "Rome", index) == ["Ed Ray", "Ray Ames"]  # never the person itself
    assert analyze.copied_from("Bob Ray", "Derby", index) == []
    assert analyze.copied_from("Kim Day", "Oslo", index) == []
    # the place as the model was finetuned on it, accents dropped
    accented = analyze.people_by_name_word([(question("Ana Lima"), "S\u00e3o Paulo")])
    assert analyze.copied_from("Ana Cruz", "So Paulo", accented) == ["Ana Lima"]


# -----------------------------------------------------------------------------
# statistics

def test_auroc_on_known_inputs():
    assert analyze.auroc([3, 4], [1, 2]) == 1.0
    assert analyze.auroc([1, 2], [3, 4]) == 0.0
    assert analyze.auroc([0.5, 0.5], [0.5, 0.5, 0.5]) == 0.5
    # pairs: 0.8 beats 0.4 and 0.2 (2); 0.4 ties 0.4 (0.5) and beats 0.2 (1); none beats 0.9: 3.5 of 6
    assert analyze.auroc([0.8, 0.4], [0.4, 0.2, 0.9]) == pytest.approx(3.5 / 6)
    assert analyze.auroc([], [0.1]) is None
    assert analyze.auroc([0.1], []) is None


def test_accuracies_and_splits_on_hand_made_people():
    report = hand_made_report()

    def check(stats, questions, correct):
        assert (stats["questions"], stats["correct"]) == (questions, correct)
        assert stats["accuracy"] == pytest.approx(correct / questions)

    check(report["overall"], 7, 3)
    check(report["first_character_given"], 7, 6)
    # the answers open with P twice (Paris, Paris) and B twice (Berlin, Busan): the first to occur wins
    assert report["first_characters"] == {"character": "P", "questions": 7, "answers": 2, "gold_places": 2}
    assert [r["first_character_given"] for r in report["questions"]] == HINTED
    check(report["in_wiki"], 5, 2)              # Ann, Bob, Cara, Dan, Jo; Ann and Cara right
    check(report["not_in_wiki"], 2, 1)          # Eve and Kim; Eve right
    check(report["in_finetuning"], 1, 1)        # Cara
    check(report["not_in_finetuning"], 6, 2)
    check(report["gold_in_wiki_line"], 4, 2)    # Leeds, Derby, Paris, Seoul; Boston is not in Dan's line
    check(report["baselines"]["London"], 7, 0)
    frequent = report["baselines"]["most_frequent_finetuning_answer"]
    assert (frequent["place"], frequent["times_in_finetuning"], frequent["finetuning_questions"]) == ("Paris", 2, 5)
    check(frequent, 7, 2)
    assert analyze.accuracy([])["accuracy"] is None


def test_confidence_statistics_on_hand_made_people():
    confidence = hand_made_report()["confidence"]
    assert confidence["mean_correct"] == pytest.approx((0.9 + 0.8 + 0.5) / 3)
    assert confidence["mean_wrong"] == pytest.approx((0.2 + 0.3 + 0.6 + 0.1) / 4)
    # 0.9 and 0.8 beat all four wrong ones, 0.5 beats three of them: 11 of 12 pairs
    assert confidence["auroc_correct_vs_wrong"] == pytest.approx(11 / 12)


def test_kinds_of_answers_and_examples_on_hand_made_people():
    report = hand_made_report()
    assert [record["kind"] for record in report["questions"]] == [kind for *_, kind in DEV]
    assert report["kinds"] == {"retrieved": 2, "correct_not_in_wiki_line": 1, "copied": 1,
                               "wrong_from_wiki_line": 1, "made_up": 2}
    examples = report["examples"]
    assert [e["name"] for e in examples["retrieved"]] == ["Ann Lee", "Cara Moss"]
    assert [e["name"] for e in examples["made_up"]] == ["Dan Ford", "Kim Day"]
    (copied,) = examples["copied"]
    assert (copied["name"], copied["gold"], copied["prediction"], copied["confidence"], copied["copied_from"]) == (
        "Bob Ray", "Derby", "Rome", 0.2, ["Ed Ray"])
    assert [e["name"] for e in hand_made_report(n_examples=1)["examples"]["made_up"]] == ["Dan Ford"]
    text = analyze.format_report(report, "dev.predictions", "dev.tsv")
    assert "Bob Ray: gold 'Derby', predicted 'Rome' (like Ed Ray), confidence 0.2" in text
    assert 'baseline: always "Paris", the most frequent finetuning answer' in text


# -----------------------------------------------------------------------------
# the model's confidence

def test_confidence_sequence_closes_the_answer_unless_it_ran_out_of_steps():
    stoi = {ch: i for i, ch in enumerate(["\u25a1", MASK_CHAR, "?", "a", "b"])}
    ids, start = analyze.confidence_sequence(stoi, "a?", "ab", decode_steps=3)
    assert ids.tolist() == [3, 2, 1, 3, 4, 1] and start == 3
    ids, start = analyze.confidence_sequence(stoi, "a?", "aba", decode_steps=3)
    assert ids.tolist() == [3, 2, 1, 3, 4, 3] and start == 3
    with pytest.raises(ValueError, match="longer than the 3"):
        analyze.confidence_sequence(stoi, "a?", "abab", decode_steps=3)
    with pytest.raises(ValueError, match="'z'"):
        analyze.confidence_sequence(stoi, "a?", "z", decode_steps=3)


def step_by_step_confidence(model, stoi, question, prediction, decode_steps):
    """One full forward pass per character, on at most the block's last tokens, as utils.sample runs."""
    text = question + MASK_CHAR + prediction + (MASK_CHAR if len(prediction) < decode_steps else "")
    ids = torch.tensor([stoi[ch] for ch in text])
    probability = 1.0
    with torch.no_grad():
        for t in range(len(question) + 1, len(ids)):
            logits, _ = model(ids[max(0, t - model.get_block_size()):t][None])
            probability *= F.softmax(logits[0, -1], dim=-1)[ids[t]].item()
    return probability


@pytest.mark.parametrize("variant", VARIANTS)
def test_confidences_equal_step_by_step_softmax_probabilities(variant):
    vocabulary = CharCorruptionDataset("Where was Al Bo born? London, Paris, Zurich.", 64)
    model = trained_like_model(variant, vocabulary.vocab_size)
    questions = ["Where was Al born?", "Where was Bo Al born?", "Where was Al born?", "Where was Bo born?"]
    predictions = ["Paris", "", "London Paris Zurich London Paris", "Lo"]  # the third ran out of 32 steps
    if variant == "vanilla":  # 41 + 1 + 31 > 64: scored from the last 64 tokens, as sample() decodes it
        questions.append("Where was Al Bo Al Bo Al Bo Al Bo Al born?")
        predictions.append("Zurich, Paris and London, Zurich")
    got = analyze.answer_confidences(model, vocabulary.stoi, questions, predictions)
    want = [step_by_step_confidence(model, vocabulary.stoi, q, p, analyze.DECODE_STEPS)
            for q, p in zip(questions, predictions)]
    assert got == pytest.approx(want, rel=1e-4, abs=0)
    assert len(set(got)) == len(got) and all(0 < c < 1 for c in got)


@pytest.mark.parametrize("seed, want_prediction", [(1, "ddu"), (3, "\u25a1\u25a1\u25a1\u25a1\u25a1s")])
def test_confidence_of_a_greedy_answer_is_the_product_of_the_chosen_maxima(seed, want_prediction):
    vocabulary = CharCorruptionDataset("Where was Al Bo born? London, Paris, Zurich.", 64)
    model = trained_like_model("vanilla", vocabulary.vocab_size, seed=seed)
    question_text = "Where was Bo born?"
    prompt = torch.tensor([vocabulary.stoi[ch] for ch in question_text + MASK_CHAR])
    (completion,) = greedy_decode(model, [prompt], 6)
    generated = "".join(vocabulary.itos[int(i)] for i in completion[len(prompt):])
    prediction = generated.split(MASK_CHAR)[0]
    assert prediction == want_prediction  # seed 1 closes its answer with ⁇, seed 3 runs out of steps
    chosen = len(prediction) + (1 if len(prediction) < 6 else 0)  # the characters and the closing ⁇
    with torch.no_grad():
        logits, _ = model(completion[None, :len(prompt) + chosen - 1])
    maxima = F.softmax(logits[0, len(prompt) - 1:], dim=-1).max(dim=-1).values
    (got,) = analyze.answer_confidences(model, vocabulary.stoi, [question_text], [prediction], decode_steps=6)
    assert got == pytest.approx(maxima.prod().item(), rel=1e-4, abs=0)


# -----------------------------------------------------------------------------
# the command

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("analyze")
    alphabet = "".join(sorted(set("".join(name + place for name, place in FINETUNE) + "".join(
        name + gold + prediction for name, gold, prediction, *_ in DEV) + "Where was born?")))
    corpus = WIKI + [f"Zed Quill. Every letter: {alphabet}"]
    paths = {name: folder / name for name in ("wiki.txt", "train.tsv", "dev.tsv", "test.tsv", "dev.predictions",
                                               "model.params")}
    paths["wiki.txt"].write_text("\n".join(corpus), encoding="utf-8")
    paths["train.tsv"].write_text("".join(f"{q}\t{p}\n" for q, p in finetune_pairs()), encoding="utf-8")
    paths["dev.tsv"].write_text("".join(f"{q}\t{p}\n" for q, p in eval_pairs()), encoding="utf-8")
    paths["test.tsv"].write_text("".join(f"{q}\n" for q, _ in eval_pairs()), encoding="utf-8")
    paths["dev.predictions"].write_text("".join(f"{p}\n" for _, _, p, _, _ in DEV), encoding="utf-8")
    vocabulary = CharCorruptionDataset(paths["wiki.txt"].read_text(encoding="utf-8"), 128)
    torch.manual_seed(0)  # a fresh model of the size run.py builds: load_params takes nothing else
    model = GPT(GPTConfig(vocabulary.vocab_size, 128, variant="vanilla")).eval()
    torch.save(model.state_dict(), paths["model.params"])
    paths["model"], paths["vocabulary"] = model, vocabulary
    return paths


def command(files, eval_name="dev.tsv", *extra):
    return ["vanilla", str(files["wiki.txt"]), "--reading_params_path", str(files["model.params"]),
            "--eval_corpus_path", str(files[eval_name]), "--predictions_path", str(files["dev.predictions"]),
            "--finetune_corpus_path", str(files["train.tsv"]), "--device", "cpu", *extra]


def test_the_command_prints_the_report_and_writes_the_json(files):
    result = subprocess.run([sys.executable, "src/analyze.py", *command(files, "dev.tsv", "--examples", "1")],
                            cwd=ROOT, capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "  accuracy " in result.stdout and "42.9%  (3 of 7)" in result.stdout
    assert "Bob Ray: gold 'Derby', predicted 'Rome' (like Ed Ray), confidence " in result.stdout
    json_path = files["dev.predictions"].with_name("dev.predictions.analysis.json")
    report = json.loads(json_path.read_text(encoding="utf-8"))

    # the same accuracy as run.py evaluate prints, and the same statistics as analyze() on the same inputs
    total, correct = evaluate_places(files["dev.tsv"], [p for _, _, p, _, _ in DEV])
    assert (report["overall"]["questions"], report["overall"]["correct"]) == (total, correct)
    assert report["kinds"] == hand_made_report()["kinds"]
    assert [len(report["examples"][kind]) for kind in analyze.EXAMPLE_KINDS] == [1, 1, 1]
    assert report["variant"] == "vanilla" and report["predictions_path"] == str(files["dev.predictions"])

    # the confidences are the model's, as computed in this process
    want = analyze.answer_confidences(files["model"], files["vocabulary"].stoi, [q for q, _ in eval_pairs()],
                                      [p for _, _, p, _, _ in DEV])
    assert [r["confidence"] for r in report["questions"]] == pytest.approx(want, rel=1e-4, abs=0)

    # the answers with the first character given are the model's, and the report prints their accuracy
    hinted = analyze.first_character_given(files["model"], files["vocabulary"].stoi, files["vocabulary"].itos,
                                           eval_pairs())
    assert [r["first_character_given"] for r in report["questions"]] == hinted
    right = sum(h == gold for h, (_, gold) in zip(hinted, eval_pairs()))
    assert report["first_character_given"]["correct"] == right
    assert re.search(rf"^    with each gold place's first character given +{100 * right / 7:.1f}%  \({right} of 7\)$",
                     result.stdout, re.MULTILINE), result.stdout
    assert '\n  2 of the 7 answers open with "P", as 2 of the gold places do\n' in result.stdout


def test_the_command_writes_the_json_where_asked(files, tmp_path, capsys):
    json_path = tmp_path / "elsewhere.json"
    analyze.main(command(files, "dev.tsv", "--json_path", str(json_path)))
    assert json.loads(json_path.read_text(encoding="utf-8"))["overall"]["correct"] == 3
    assert f"question by question too: {json_path}" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere.json"]  # no temporary file left


def test_a_gold_file_without_answers_exits_2(files, capsys):
    with pytest.raises(SystemExit) as exit_info:
        analyze.main(command(files, "test.tsv"))
    assert exit_info.value.code == 2
    assert "has no gold places" in capsys.readouterr().err


def test_predictions_that_do_not_fit_the_questions_are_refused(files, tmp_path, capsys):
    short = tmp_path / "short.predictions"
    short.write_text("Leeds\nRome\n", encoding="utf-8")
    arguments = command(files)
    arguments[arguments.index("--predictions_path") + 1] = str(short)
    with pytest.raises(SystemExit) as exit_info:
        analyze.main(arguments)
    assert exit_info.value.code == 2
    assert "has 2 lines but" in capsys.readouterr().err


def test_the_command_probes_the_pretrained_params_for_each_file_s_people(files, tmp_path, capsys):
    json_path = tmp_path / "recall.json"
    analyze.main(command(files, "dev.tsv", "--json_path", str(json_path),
                         "--pretrained_params_path", str(files["model.params"])))
    recall = json.loads(json_path.read_text(encoding="utf-8"))["recall"]
    wiki = files["wiki.txt"].read_text(encoding="utf-8").split("\n")
    vocabulary = files["vocabulary"]
    for people, pairs in (("finetuning", finetune_pairs()), ("evaluation", eval_pairs())):
        want = analyze.pretrained_recall(files["model"], vocabulary.stoi, vocabulary.itos, pairs, wiki)
        assert recall[people] == want
        probed = sum(probe is not None for probe in analyze.recall_prompts(pairs, wiki))
        assert want["people"] == len(pairs) and want["probed"] == probed > 0
    out = capsys.readouterr().out
    assert f"recall probe of the pretrained params {files['model.params']}" in out
    evaluation = recall["evaluation"]
    assert (f"people of the evaluation file: {100 * evaluation['recall']:.1f}% ({evaluation['completed']} of the "
            f"{evaluation['probed']} of {evaluation['people']} whose place is in the first 112 characters") in out
