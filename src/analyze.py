"""
See what happened: where a model's predicted birth places come from.

    python src/analyze.py vanilla wiki.txt --reading_params_path vanilla.finetune.params \
        --eval_corpus_path birth_dev.tsv --predictions_path vanilla.pretrain.dev.predictions \
        --finetune_corpus_path birth_places_train.tsv

For the predictions that run.py evaluate wrote, and the gold places beside their questions,
it reports accuracy overall, again with each gold place's first character given (a model that
knows a fact but opens its answers with one favourite letter gets it right only then), and
split by whether the person was seen in pretraining (has a document in wiki.txt) or in
finetuning; how many gold places occur in the person's own
document, the most that retrieval from pretraining could get right; the "London" and
most-frequent-answer baselines; and the model's confidence in its own greedy answers, which
says whether the model can tell a retrieved answer from a made-up one (handout question 3(b)).
It ends with examples of answers retrieved, made up, and copied from a similarly named person
of the finetuning file (question 3(c)), and writes everything, question by question too, as
JSON (default: the predictions path + ".analysis.json").
"""

import json
import re
from collections import Counter, defaultdict

import numpy as np
import torch
import torch.nn.functional as F

from dataset import BLOCK_SIZE, MASK_CHAR, PAD_ID, CharCorruptionDataset, decode
from device import DEVICE_HELP, resolve_device
from params import add_size_flags, add_variant_argument, build_model, load_params
from safe_io import (ArgumentParser, InputError, atomic_output, check_outputs, check_writable, exit_on_input_error,
                     in_range, read_text)
from utils import DECODE_STEPS, greedy_decode, on_host, parse_birth_places

QUESTION_START, QUESTION_END = "Where was ", " born?"
# The most of a document that one pretraining example shows (CharCorruptionDataset truncates each
# to at most 7/8 of a block before corrupting it): a place later than this is never trained on.
VISIBLE_PREFIX = int(BLOCK_SIZE * 7 / 8)
NAME_SUFFIXES = {"Jr", "Sr", "II", "III", "IV"}
KINDS = {  # each answer is exactly one of these, tested in this order by answer_kind
    "retrieved": "retrieved: correct, and the gold place is in the person's wiki line",
    "correct_not_in_wiki_line": "correct, though the gold place is not in the person's wiki line",
    "copied": "copied: wrong, the answer of a finetuning person who shares a first or last name",
    "wrong_from_wiki_line": "wrong, but a place from the person's own wiki line",
    "made_up": "made up: wrong, in neither the person's wiki line nor copied",
}
EXAMPLE_KINDS = ["retrieved", "made_up", "copied"]


# -----------------------------------------------------------------------------
# reading the files

def person_name(question):
    """NAME of "Where was NAME born?", or None for a question of another form."""
    if question.startswith(QUESTION_START) and question.endswith(QUESTION_END):
        return question[len(QUESTION_START):-len(QUESTION_END)]
    return None


def parse_questions(text, path):
    """
    (question, gold place or None) per line of a TSV file's text, read as run.py evaluate reads
    it (utils.parse_birth_places), so that accuracies here equal the ones evaluate prints.
    """
    pairs = parse_birth_places(text, path)
    for number, (question, _) in enumerate(pairs, start=1):
        if person_name(question) is None:
            raise InputError(f"{path} line {number}: expected '{QUESTION_START}NAME{QUESTION_END}' "
                             f"before the tab, got {question!r}")
    return pairs


def parse_predictions(text):
    """One prediction per line, exactly as run.py evaluate wrote it (spaces and all)."""
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines  # the last prediction's "\n" ends it, starts none


def as_finetuned(text):
    """The text as NameDataset gives it to the model: non-ASCII characters dropped."""
    return text.encode("utf-8").decode("ascii", errors="ignore")


# -----------------------------------------------------------------------------
# who is where

def documents_by_name(documents, names):
    """
    For each of the names, the documents of wiki.txt that start with the name followed by "."
    ("Khatchig Mouradian. Khatchig Mouradian is a journalist ..."). Several people can share a
    name (wiki.txt has two George Stones), so each name gets a list.

    Exact matching is enough: on the real data every name of birth_dev.tsv (500),
    birth_places_train.tsv (2,000) and birth_test_inputs.tsv (437) starts a document, accents,
    percent-escapes ("Fran%C3%A7ois Desjardins") and trailing dots ("Moses Mason, Jr..") alike,
    because the questions were made from these very documents.
    """
    wanted = set(names)
    longest = max(map(len, wanted), default=0)
    found = defaultdict(list)
    for document in documents:
        # every "." near the start ends a candidate name: "J. N. Williamson." tries "J", "J. N", ...
        for end, char in enumerate(document[:longest + 1]):
            if char == "." and document[:end] in wanted:
                found[document[:end]].append(document)
    return {name: found[name] for name in names}


def occurs_in(place, documents):
    """
    Whether the place occurs as whole words in one of the documents; an empty place never does.
    A plain substring test would find a truncated answer like "Man" in "Manchester" and call it
    taken from the wiki line; whole words cost one dev person ("Milan" in "born ... in Milano").
    """
    if not place:
        return False
    pattern = re.compile(r"(?<!\w)" + re.escape(place) + r"(?!\w)")
    return any(pattern.search(document) for document in documents)


def name_words(name):
    """The first and last name: the first and last words that are neither initials nor a suffix like Jr."""
    words = [word.strip(".,") for word in name.split()]
    words = [word for word in words if len(word) > 1 and word not in NAME_SUFFIXES]
    return set(words[:1] + words[-1:])


def people_by_name_word(finetune_pairs):
    """Index of the finetuning file: first or last name -> [(name, place as the model saw it)]."""
    index = defaultdict(list)
    for question, place in finetune_pairs:
        name = person_name(question)
        for word in name_words(name):
            index[word].append((name, as_finetuned(place)))
    return index


def copied_from(name, prediction, people_index):
    """
    The other people of the finetuning file who share a first or last name with this person and
    whose birth place the prediction is. A common place (London) will often match by chance:
    a name here is a possible source, not a proven one.
    """
    sources = []
    for word in sorted(name_words(name)):
        for other, place in people_index.get(word, []):
            if other != name and place == prediction and other not in sources:
                sources.append(other)
    return sources


# -----------------------------------------------------------------------------
# statistics

def accuracy(correct_flags):
    """{"questions", "correct", "accuracy"} of a list of booleans; accuracy None when it is empty."""
    questions, correct = len(correct_flags), sum(correct_flags)
    return {"questions": questions, "correct": correct, "accuracy": correct / questions if questions else None}


def auroc(scores_positive, scores_negative):
    """
    Area under the ROC curve of scores separating positives from negatives: the chance that a
    random positive scores above a random negative, ties counting half (the Mann-Whitney U
    statistic over the number of pairs). None when either class is empty.
    """
    if len(scores_positive) == 0 or len(scores_negative) == 0:
        return None
    positive = np.asarray(scores_positive, dtype=np.float64)[:, None]
    negative = np.asarray(scores_negative, dtype=np.float64)[None, :]
    wins = (positive > negative).sum() + 0.5 * (positive == negative).sum()
    return float(wins / (positive.size * negative.size))


def mean(values):
    return float(np.mean(values)) if len(values) else None


def most_frequent_answer(finetune_pairs):
    """The place the finetuning file gives most often (the first seen wins a tie), and how often."""
    return Counter(place for _, place in finetune_pairs).most_common(1)[0]


def answer_kind(correct, gold_in_line, prediction_in_line, sources):
    if correct:
        return "retrieved" if gold_in_line else "correct_not_in_wiki_line"
    if sources:
        return "copied"
    return "wrong_from_wiki_line" if prediction_in_line else "made_up"


def analyze(eval_pairs, predictions, wiki_documents, finetune_pairs, confidences, hinted, n_examples=5):
    """
    Everything the report says, as a dict ready for JSON; the inputs are the files' contents, the
    model's confidences in its answers, and its answers with the first character given (hinted:
    first_character_given).
    """
    names = [person_name(question) for question, _ in eval_pairs]
    documents = documents_by_name(wiki_documents, names)
    finetune_names = {person_name(question) for question, _ in finetune_pairs}
    people_index = people_by_name_word(finetune_pairs)
    records = []
    for name, (_, gold), prediction, confidence, hint in zip(names, eval_pairs, predictions, confidences, hinted):
        correct = prediction == gold
        gold_in_line, prediction_in_line = occurs_in(gold, documents[name]), occurs_in(prediction, documents[name])
        sources = [] if correct else copied_from(name, prediction, people_index)
        records.append({
            "name": name, "gold": gold, "prediction": prediction, "correct": correct,
            "confidence": confidence, "in_wiki": bool(documents[name]), "in_finetuning": name in finetune_names,
            "gold_in_wiki_line": gold_in_line, "prediction_in_wiki_line": prediction_in_line,
            "kind": answer_kind(correct, gold_in_line, prediction_in_line, sources), "copied_from": sources,
            "first_character_given": hint,
        })

    def accuracy_where(condition):
        return accuracy([r["correct"] for r in records if condition(r)])

    frequent_place, frequent_count = most_frequent_answer(finetune_pairs)
    golds = [gold for _, gold in eval_pairs]
    confidence_correct = [r["confidence"] for r in records if r["correct"]]
    confidence_wrong = [r["confidence"] for r in records if not r["correct"]]
    # the first character the answers open with most (the first to occur, on a tie)
    opening = Counter(prediction[:1] for prediction in predictions if prediction).most_common(1)
    opening = opening[0][0] if opening else None
    return {
        "overall": accuracy_where(lambda r: True),
        "first_character_given": accuracy([r["first_character_given"] == r["gold"] for r in records]),
        "first_characters": {"character": opening, "questions": len(records),
                             "answers": sum(opening is not None and p.startswith(opening) for p in predictions),
                             "gold_places": sum(opening is not None and g.startswith(opening) for g in golds)},
        "in_wiki": accuracy_where(lambda r: r["in_wiki"]),
        "not_in_wiki": accuracy_where(lambda r: not r["in_wiki"]),
        "in_finetuning": accuracy_where(lambda r: r["in_finetuning"]),
        "not_in_finetuning": accuracy_where(lambda r: not r["in_finetuning"]),
        "gold_in_wiki_line": accuracy_where(lambda r: r["gold_in_wiki_line"]),
        "baselines": {
            "London": accuracy([gold == "London" for gold in golds]),
            "most_frequent_finetuning_answer": {
                "place": frequent_place, "times_in_finetuning": frequent_count,
                "finetuning_questions": len(finetune_pairs),
                **accuracy([gold == frequent_place for gold in golds]),
            },
        },
        "confidence": {
            "mean_correct": mean(confidence_correct),
            "mean_wrong": mean(confidence_wrong),
            "auroc_correct_vs_wrong": auroc(confidence_correct, confidence_wrong),
        },
        "kinds": {kind: sum(r["kind"] == kind for r in records) for kind in KINDS},
        "examples": {kind: [r for r in records if r["kind"] == kind][:n_examples] for kind in EXAMPLE_KINDS},
        "questions": records,
    }


# -----------------------------------------------------------------------------
# the model's confidence in its own answers

def confidence_sequence(stoi, question, prediction, decode_steps=DECODE_STEPS):
    """
    The ids of question ⁇ prediction ⁇ and the position of the first one to score. run.py
    decodes decode_steps characters after "question⁇" and keeps those before the next ⁇, so a
    prediction shorter than that was closed by a generated ⁇, whose probability counts too;
    one of exactly decode_steps characters ran out of steps and was never closed.
    """
    if len(prediction) > decode_steps:
        raise ValueError(f"a prediction of {len(prediction)} characters is longer than the "
                         f"{decode_steps} that run.py decodes: {prediction!r}")
    closing = MASK_CHAR if len(prediction) < decode_steps else ""
    text = question + MASK_CHAR + prediction + closing
    unknown = sorted(set(char for char in text if char not in stoi))
    if unknown:
        raise ValueError(f"characters that are not in the vocabulary: {' '.join(map(repr, unknown))}")
    return torch.tensor([stoi[char] for char in text], dtype=torch.long), len(question) + 1


@torch.no_grad()
def continuation_log_probs(model, sequences, starts, batch_size=64):
    """
    For each sequence (a 1-D LongTensor of ids), the log-probability the model gives to its
    tokens from starts[i] on, each given all the tokens before it: sum_t log p(x_t | x_<t).
    Sequences that fit in the block go through one forward pass per batch, padded at the end
    (harmless: attention is causal, so no position sees the padding after it). A longer one is
    scored as utils.sample decodes it, each token from the last tokens before it that the model
    can take (get_context_size()).
    """
    model.eval()
    device = next(model.parameters()).device
    context_size = model.get_context_size()
    totals = [None] * len(sequences)
    fitting = [i for i, sequence in enumerate(sequences) if len(sequence) - 1 <= context_size]
    for first in range(0, len(fitting), batch_size):
        chunk = fitting[first:first + batch_size]
        inputs = torch.full((len(chunk), max(len(sequences[i]) - 1 for i in chunk)), PAD_ID, dtype=torch.long)
        for row, i in enumerate(chunk):
            inputs[row, :len(sequences[i]) - 1] = sequences[i][:-1]
        logits, _ = model(inputs.to(device))
        log_probs = F.log_softmax(logits.float(), dim=-1).cpu()
        for row, i in enumerate(chunk):
            positions = torch.arange(starts[i], len(sequences[i]))
            totals[i] = log_probs[row, positions - 1, sequences[i][positions]].sum().item()
    for i in (i for i, sequence in enumerate(sequences) if len(sequence) - 1 > context_size):
        sequence = sequences[i].to(device)
        total = torch.zeros((), dtype=torch.float64, device=device)  # float64 as Python's sum, read once at the end
        for t in range(starts[i], len(sequence)):
            logits, _ = model(sequence[max(0, t - context_size):t][None])
            total += F.log_softmax(logits[0, -1].float(), dim=-1)[sequence[t]]
        totals[i] = total.item()
    return totals


def answer_confidences(model, stoi, questions, predictions, decode_steps=DECODE_STEPS):
    """The probability the model gives to each of its predictions, closing ⁇ included (see confidence_sequence)."""
    sequences, starts = [], []
    for number, (question, prediction) in enumerate(zip(questions, predictions), start=1):
        try:
            sequence, start = confidence_sequence(stoi, question, prediction, decode_steps)
        except ValueError as error:
            raise ValueError(f"line {number}: {error}") from None
        sequences.append(sequence)
        starts.append(start)
    return [float(np.exp(total)) for total in continuation_log_probs(model, sequences, starts)]


# -----------------------------------------------------------------------------
# what pretraining put into the weights

def recall_prompts(pairs, wiki_documents):
    """
    For each of the (question, place) pairs, (prompt text, place) if the person's place occurs
    in the part of their wiki line that pretraining shows (the first VISIBLE_PREFIX characters),
    else None: the prompt is the line up to the place's first occurrence there. A pretraining
    example starts with its document's first characters uncorrupted, so the prompt is exactly
    what the model was trained to continue, and the place is what it should say next if it has
    learnt this person's fact.
    """
    documents = documents_by_name(wiki_documents, [person_name(question) for question, _ in pairs])
    probes = []
    for question, place in pairs:
        probe = None
        for document in documents[person_name(question)]:
            at = document[:VISIBLE_PREFIX].find(place) if place else -1
            if at > 0:
                probe = (document[:at], place)
                break
        probes.append(probe)
    return probes


@torch.no_grad()
def recall_by_pair(model, stoi, itos, pairs, wiki_documents):
    """
    The recall probe, person by person: for each pair, True if the pretrained model (before any
    finetuning) completes the person's wiki line up to their place with that place, greedily;
    False if it says anything else; None if pretraining never shows the place (recall_prompts).
    """
    probes = recall_prompts(pairs, wiki_documents)
    asked = [index for index, probe in enumerate(probes) if probe is not None]
    device = next(model.parameters()).device
    prompts = [torch.tensor([stoi[ch] for ch in probes[index][0]], device=device) for index in asked]
    steps = max((len(probes[index][1]) for index in asked), default=0)
    completions = on_host(greedy_decode(model, prompts, steps)) if asked else []
    recalled = [None] * len(pairs)
    for index, prompt, completion in zip(asked, prompts, completions):
        place = probes[index][1]
        recalled[index] = decode(itos, completion[len(prompt):len(prompt) + len(place)]) == place
    return recalled


def recall_summary(recalled):
    """
    recall_by_pair's answers counted: {"people", "probed", "completed", "recall"}, where recall
    is completed / probed (None if none was probed).
    """
    probed, completed = sum(r is not None for r in recalled), sum(r is True for r in recalled)
    return {"people": len(recalled), "probed": probed, "completed": completed,
            "recall": completed / probed if probed else None}


def pretrained_recall(model, stoi, itos, pairs, wiki_documents):
    """The recall probe's counts (recall_summary) for the people of the pairs."""
    return recall_summary(recall_by_pair(model, stoi, itos, pairs, wiki_documents))


@torch.no_grad()
def first_character_given(model, stoi, itos, pairs):
    """
    What a finetuned model answers when each gold place's first character is given after the
    question's ⁇: the prediction run.py evaluate would write, from that character on. A model
    that holds a person's fact but opens its answers with one favourite letter gets the fact
    right here and wrong there, so the two accuracies apart tell the choice of the first
    character from the knowledge of the rest. A first character the vocabulary lacks is not
    given (no answer could be right then anyway).
    """
    device = next(model.parameters()).device
    hints = [place[:1] if place[:1] in stoi else "" for _, place in pairs]
    prompts = [torch.tensor([stoi[ch] for ch in question + MASK_CHAR + hint], device=device)
               for (question, _), hint in zip(pairs, hints)]
    # the hint is the first of evaluate's DECODE_STEPS characters (one fewer for an answer that
    # cannot be right)
    completions = on_host(greedy_decode(model, prompts, DECODE_STEPS - 1))
    return [decode(itos, completion).split(MASK_CHAR)[1] for completion in completions]


# -----------------------------------------------------------------------------
# the report and the command

def percent(stats):
    return "n/a" if stats["accuracy"] is None else f"{stats['accuracy'] * 100:.1f}%"


def number(value):
    """Three significant digits: a made-up answer's probability can be 1e-7, and that is worth seeing."""
    return "n/a" if value is None else f"{value:.3g}"


def recall_text(recall):
    share = "n/a" if recall["recall"] is None else f"{recall['recall'] * 100:.1f}%"
    return (f"{share} ({recall['completed']} of the {recall['probed']} of {recall['people']} whose place is in "
            f"the first {VISIBLE_PREFIX} characters of their line)")


def format_report(report, predictions_path, eval_corpus_path):
    """The report as the lines main prints."""
    overall, ceiling = report["overall"], report["gold_in_wiki_line"]
    frequent = report["baselines"]["most_frequent_finetuning_answer"]
    rows = [
        ("accuracy", overall),
        ("  with each gold place's first character given", report["first_character_given"]),
        ("  person in wiki.txt (seen in pretraining)", report["in_wiki"]),
        ("  person not in wiki.txt", report["not_in_wiki"]),
        ("  person in the finetuning file", report["in_finetuning"]),
        ("  person not in the finetuning file", report["not_in_finetuning"]),
        ("  person whose gold place is in their wiki line", ceiling),
        ('baseline: always "London"', report["baselines"]["London"]),
        (f'baseline: always "{frequent["place"]}", the most frequent finetuning answer', frequent),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"{predictions_path} against {eval_corpus_path}: {overall['questions']} questions", ""]
    lines += [f"  {label:<{width}}  {percent(stats):>6}  ({stats['correct']} of {stats['questions']})"
              for label, stats in rows]
    lines += [
        "",
        f"  the gold place is in the person's wiki line for {ceiling['questions']} of {overall['questions']}: "
        "the most that retrieval from pretraining could get right",
        f"  \"{frequent['place']}\" answers {frequent['times_in_finetuning']} of the "
        f"{frequent['finetuning_questions']} finetuning questions",
    ]
    opening = report["first_characters"]
    if opening["character"] is not None:
        lines.append(f"  {opening['answers']} of the {opening['questions']} answers open with "
                     f"\"{opening['character']}\", as {opening['gold_places']} of the gold places do")

    confidence = report["confidence"]
    lines += ["", "  confidence: the probability the model gives its own answer and the closing \u2047",
              f"    mean when correct {number(confidence['mean_correct'])}, "
              f"when wrong {number(confidence['mean_wrong'])}",
              f"    AUROC of confidence, correct against wrong: {number(confidence['auroc_correct_vs_wrong'])} "
              "(0.5: it cannot tell retrieved from made up; 1: it always can)", "", "  kinds of answers:"]
    lines += [f"    {report['kinds'][kind]:>5}  {description}" for kind, description in KINDS.items()]

    if "recall" in report:
        recall = report["recall"]
        lines += ["", f"  recall probe of the pretrained params {recall['pretrained_params_path']}: the person's "
                      f"wiki line up to the place, continued greedily",
                  *[f"    {label}: {recall_text(recall[people])}"
                    for people, label in (("finetuning", "people of the finetuning file"),
                                          ("evaluation", "people of the evaluation file"))]]
    for kind in EXAMPLE_KINDS:
        lines += ["", f"  examples, {KINDS[kind].split(':')[0]}:"]
        examples = report["examples"][kind]
        if not examples:
            lines.append("    (none)")
        for example in examples:
            source = f" (like {', '.join(example['copied_from'][:3])})" if example["copied_from"] else ""
            lines.append(f"    {example['name']}: gold {example['gold']!r}, predicted {example['prediction']!r}"
                         f"{source}, confidence {number(example['confidence'])}")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = ArgumentParser(description="Where a model's predicted birth places come from: "
                                        "accuracy by group, baselines, confidence, examples.")
    add_variant_argument(parser)
    parser.add_argument("pretrain_corpus_path", help="the pretraining text (wiki.txt): vocabulary and wiki lines")
    parser.add_argument("--reading_params_path", required=True, help="the params that made the predictions")
    parser.add_argument("--eval_corpus_path", required=True, help="the questions with gold places (birth_dev.tsv)")
    parser.add_argument("--predictions_path", required=True, help="what run.py evaluate wrote for them")
    parser.add_argument("--finetune_corpus_path", required=True, help="the finetuning TSV (birth_places_train.tsv)")
    parser.add_argument("--pretrained_params_path",
                        help="also probe what these pretrained params (before finetuning) recall of the people "
                             "of the finetuning and evaluation files (the recall probe)")
    parser.add_argument("--json_path", help="where the JSON goes (default: the predictions path + .analysis.json)")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--examples", type=in_range(int, 0), default=5,
                        help="examples of each kind to show (default 5)")
    add_size_flags(parser)
    return parser.parse_args(argv)


def read_inputs(args):
    """The gold questions, predictions and finetuning questions, checked against each other."""
    eval_pairs = parse_questions(read_text(args.eval_corpus_path, "evaluation file"), args.eval_corpus_path)
    if not any(gold is not None for _, gold in eval_pairs):
        raise InputError(f"{args.eval_corpus_path} has no gold places (no QUESTION<TAB>PLACE lines); the analysis "
                         f"compares predictions with them: give a file with answers, such as birth_dev.tsv")
    finetune_pairs = parse_questions(read_text(args.finetune_corpus_path, "finetuning corpus"),
                                     args.finetune_corpus_path)
    if not finetune_pairs:
        raise InputError(f"finetuning corpus {args.finetune_corpus_path} is empty; give the one the model was "
                         f"finetuned on, such as birth_places_train.tsv")
    for path, pairs in ((args.eval_corpus_path, eval_pairs), (args.finetune_corpus_path, finetune_pairs)):
        missing = [number for number, (_, place) in enumerate(pairs, start=1) if place is None]
        if missing:
            raise InputError(f"{path} line {missing[0]} has no place after a tab ({len(missing)} lines lack "
                             f"one); every line needs QUESTION<TAB>PLACE")
    # text mode would split a generated "\r" into two lines, but "\r" is not in wiki.txt's vocabulary
    predictions = parse_predictions(read_text(args.predictions_path, "predictions file"))
    if len(predictions) != len(eval_pairs):
        raise InputError(f"{args.predictions_path} has {len(predictions)} lines but {args.eval_corpus_path} has "
                         f"{len(eval_pairs)} questions: give the predictions run.py evaluate wrote for this file")
    return eval_pairs, predictions, finetune_pairs


def analyze_files(args):
    json_path = args.json_path or args.predictions_path + ".analysis.json"
    check_outputs([("--json_path", json_path)], [
        ("the pretraining corpus", args.pretrain_corpus_path), ("--reading_params_path", args.reading_params_path),
        ("--eval_corpus_path", args.eval_corpus_path), ("--predictions_path", args.predictions_path),
        ("--finetune_corpus_path", args.finetune_corpus_path),
        ("--pretrained_params_path", args.pretrained_params_path)])
    check_writable(json_path, "--json_path")
    eval_pairs, predictions, finetune_pairs = read_inputs(args)
    wiki_text = read_text(args.pretrain_corpus_path, "pretraining corpus")
    try:
        vocabulary = CharCorruptionDataset(wiki_text, BLOCK_SIZE)
    except ValueError as error:
        raise InputError(f"pretraining corpus {args.pretrain_corpus_path}: {error}") from None
    device = resolve_device(args.device)
    model = build_model(vocabulary.vocab_size, BLOCK_SIZE, args.variant, args).to(device)
    load_params(model, args.reading_params_path, device)
    try:
        confidences = answer_confidences(model, vocabulary.stoi, [q for q, _ in eval_pairs], predictions)
    except ValueError as error:
        raise InputError(f"{args.eval_corpus_path} or {args.predictions_path}: {error}; were these predictions "
                         f"made by run.py evaluate with {args.pretrain_corpus_path}?") from None

    hinted = first_character_given(model, vocabulary.stoi, vocabulary.itos, eval_pairs)
    documents = wiki_text.split("\n")
    report = analyze(eval_pairs, predictions, documents, finetune_pairs, confidences, hinted, args.examples)
    if args.pretrained_params_path is not None:
        load_params(model, args.pretrained_params_path, device)
        report["recall"] = {"pretrained_params_path": args.pretrained_params_path, **{
            people: pretrained_recall(model, vocabulary.stoi, vocabulary.itos, pairs, documents)
            for people, pairs in (("finetuning", finetune_pairs), ("evaluation", eval_pairs))}}
    report = {"variant": args.variant, "pretrain_corpus_path": args.pretrain_corpus_path,
              "reading_params_path": args.reading_params_path, "eval_corpus_path": args.eval_corpus_path,
              "predictions_path": args.predictions_path, "finetune_corpus_path": args.finetune_corpus_path, **report}
    with atomic_output(json_path) as f:  # a temporary file beside it, renamed into place
        json.dump(report, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(format_report(report, args.predictions_path, args.eval_corpus_path))
    print(f"\nthe report, question by question too: {json_path}")


def main(argv=None):
    args = parse_args(argv)
    exit_on_input_error(lambda: analyze_files(args))


if __name__ == "__main__":
    main()
