"""
The knowledge curve: how what pretraining puts into the weights grows with pretraining. For
every snapshot of a pretraining (run.py pretrain --snapshot_epochs) and its final params, it
runs the handout's finetuning and dev evaluation through run.py, and the recall probe
(analyze.recall_by_pair) on the pretrained params themselves; it appends one record per
snapshot to a JSON-lines file and draws dev accuracy and recall against pretraining epochs
and hours. It also splits the dev answers by what the probe said of each person before the
finetuning (recalled, not recalled, never shown), and measures them again with each place's
first character given (analyze.first_character_given), each beside the no-pretraining model's
answers: whether the finetuning gets out the facts that pretraining put in, and where not, whether
the first character is what stops them.

    python src/knowledge_curve.py vanilla wiki.txt --pretrain_params_path vanilla.pretrain.params \
        --nopretrain_predictions vanilla.nopretrain.dev.predictions --nopretrain_params_path vanilla.model.params

Run again as the pretraining goes on: a snapshot already recorded (same file, not written since)
is not finetuned again, so each call adds the new ones (and gives a record of an earlier version
the dev answers it lacks, from the files it wrote). The finetuned params and predictions go to a
folder beside the pretraining's params (PRETRAIN.curve/); the test file is never read.
"""

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import analyze
from dataset import BLOCK_SIZE, CharCorruptionDataset
from model import VARIANTS
from params import SNAPSHOT_SUFFIX, add_size_flags, add_variant_argument, build_model, load_params, metrics_path
from plot import PlotError, read_metrics
from safe_io import ArgumentParser, InputError, atomic_output, check_outputs, exit_on_input_error, read_text
from trainer import PRECISIONS
from utils import SEEDS, score_places

RUN = str(Path(__file__).with_name("run.py"))


def snapshots(pretrain_params_path):
    """[(epoch, path)] of a pretraining's snapshots, by epoch, and its final params (epoch None) if written."""
    pattern = re.compile(re.escape(Path(pretrain_params_path).name + SNAPSHOT_SUFFIX) + r"(\d+)$")
    found = sorted((int(m.group(1)), path) for path in Path(pretrain_params_path).parent.iterdir()
                   if (m := pattern.match(path.name)))
    final = Path(pretrain_params_path)
    return found + ([(None, final)] if final.exists() else [])


def epoch_summary(metrics, epoch):
    """(mean loss of the epoch's steps, training hours at its end) from a metrics log; Nones if it lacks the epoch."""
    steps = [record for record in metrics if record["epoch"] == epoch]
    if not steps:
        return None, None
    return sum(r["loss"] for r in steps) / len(steps), steps[-1]["wall_time"] / 3600


def last_epoch_loss(log_path):
    metrics = read_metrics(log_path)
    return epoch_summary(metrics, metrics[-1]["epoch"])[0] if metrics else None


def run(arguments):
    """Run src/run.py with the arguments, its output shown; returns its seconds; stops the command if it fails."""
    started = time.time()
    done = subprocess.run([sys.executable, RUN, *arguments])
    if done.returncode != 0:
        raise InputError(f"src/run.py {' '.join(arguments)} failed (exit status {done.returncode}; its messages "
                         f"are above)")
    return time.time() - started


def read_predictions(predictions_path, eval_pairs, eval_corpus_path):
    """The predictions run.py evaluate wrote for the evaluation file's (question, place) pairs, one a pair."""
    predictions = analyze.parse_predictions(read_text(predictions_path, "predictions file"))
    if len(predictions) != len(eval_pairs):
        raise InputError(f"{predictions_path} has {len(predictions)} predictions for the {len(eval_pairs)} lines "
                         f"of {eval_corpus_path}; give the predictions run.py evaluate wrote for it")
    return predictions


def dev_accuracy(eval_pairs, predictions):
    """The share (%) of gold places the predictions get right, counted as run.py evaluate counts it."""
    total, correct = score_places(eval_pairs, predictions, "the evaluation file")
    return 100 * correct / total


def answers_by_recall(recalled, eval_pairs, predictions):
    """
    The predictions' accuracy (%) and their right answers split by what the recall probe said
    of each person before the finetuning (analyze.recall_by_pair): {"accuracy", "by_recall":
    {"recalled" | "not_recalled" | "not_shown": {"questions", "correct"}}}, "not_shown" being the
    people whose place pretraining never shows.
    """
    right = [gold == predicted for (_, gold), predicted in zip(eval_pairs, predictions)]
    return {"accuracy": dev_accuracy(eval_pairs, predictions),
            "by_recall": {group: {"questions": sum(said is probe for said in recalled),
                                  "correct": sum(said is probe and ok for said, ok in zip(recalled, right))}
                          for group, probe in (("recalled", True), ("not_recalled", False), ("not_shown", None))}}


def stamp(path):
    """What tells a params file written anew from the one recorded (outputs are renamed into place)."""
    status = Path(path).stat()
    return [status.st_size, status.st_mtime_ns]


def recall_of(model, params_path, corpus, pairs, wiki_documents):
    """analyze.recall_by_pair of the params in params_path for the pairs."""
    load_params(model, str(params_path), "cpu")
    return analyze.recall_by_pair(model, corpus.stoi, corpus.itos, pairs, wiki_documents)


def first_character_given(model, params_path, corpus, eval_pairs):
    """analyze.first_character_given of the finetuned params in params_path."""
    load_params(model, str(params_path), "cpu")
    return analyze.first_character_given(model, corpus.stoi, corpus.itos, eval_pairs)


def measure(args, epoch, params_path, metrics, folder, model, corpus, wiki_documents, pairs, nopretrain):
    """One record of the curve: the snapshot's pretraining state, its recall, and the finetuned model's accuracy."""
    name = f"epoch{epoch}" if epoch is not None else "final"
    epoch = epoch if epoch is not None else metrics[-1]["epoch"]
    loss, hours = epoch_summary(metrics, epoch)
    recalled = {people: recall_of(model, params_path, corpus, pairs[people], wiki_documents)
                for people in ("finetuning", "evaluation")}
    size = [f"--{flag}={getattr(args, flag)}" for flag in ("n_layer", "n_head", "n_embd", "bottleneck_dim")
            if getattr(args, flag) is not None]
    finetuned = folder / f"{name}.finetune.params"
    finetune = ["finetune", args.variant, args.pretrain_corpus_path, "--reading_params_path", str(params_path),
                "--writing_params_path", str(finetuned), "--finetune_corpus_path", args.finetune_corpus_path,
                "--seed", str(args.seed), "--precision", args.precision, *size]
    finetune_seconds = run(finetune)
    predictions = folder / f"{name}.dev.predictions"
    evaluate = ["evaluate", args.variant, args.pretrain_corpus_path, "--reading_params_path", str(finetuned),
                "--eval_corpus_path", args.eval_corpus_path, "--outputs_path", str(predictions), *size]
    run(evaluate)
    record = {"params": str(params_path), "stamp": stamp(params_path), "epoch": epoch,
              "pretrain_hours": hours, "pretrain_loss": loss,
              "recall_finetuning_people": analyze.recall_summary(recalled["finetuning"]),
              "recall_dev_people": analyze.recall_summary(recalled["evaluation"]),
              "finetune_loss": last_epoch_loss(metrics_path(finetuned)), "finetune_seconds": finetune_seconds,
              "commands": [finetune, evaluate]}
    add_dev_answers(record, lacking(record, nopretrain), recalled["evaluation"], model, corpus, pairs["evaluation"],
                    args.eval_corpus_path, nopretrain)
    record["dev_accuracy"] = record["dev_answers"]["pretrained"]["accuracy"]
    return record


def written(record):
    """(finetuned params, dev predictions): the files a record's commands wrote."""
    finetune, evaluate = record["commands"]
    return (Path(finetune[finetune.index("--writing_params_path") + 1]),
            Path(evaluate[evaluate.index("--outputs_path") + 1]))


def lacking(record, nopretrain):
    """The names of record["dev_answers"] that a record lacks and the files it wrote can give."""
    names = {"pretrained", "pretrained_first_character_given", *nopretrain} - record.get("dev_answers", {}).keys()
    return names if all(path.exists() for path in written(record)) else set()


def add_dev_answers(record, names, recalled, model, corpus, eval_pairs, eval_corpus_path, nopretrain):
    """
    Add to record["dev_answers"] those of the names, each split by recall (answers_by_recall):
    "pretrained" (the predictions the record's evaluate wrote), "pretrained_first_character_given"
    (its finetuned params with each place's first character given), and the no-pretraining
    model's, which nopretrain holds under its names.
    """
    finetuned, predictions = written(record)
    answers = {"pretrained": read_predictions(predictions, eval_pairs, eval_corpus_path),
               "pretrained_first_character_given": first_character_given(model, finetuned, corpus, eval_pairs),
               **nopretrain}
    record["dev_answers"] = {**record.get("dev_answers", {}),
                             **{name: answers_by_recall(recalled, eval_pairs, answers[name]) for name in names}}


def read_records(path):
    if not Path(path).exists():
        return []
    text = read_text(path, "records file")
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as error:
        raise InputError(f"{path} is not a knowledge curve's records ({error}); move it away to start "
                         f"the curve afresh") from None


def draw(records, figure_path, variant, london, nopretrain):
    """
    Dev accuracy (plain and with the first character given) and recall against pretraining
    epochs (left) and hours (right), with the baselines: nopretrain maps "nopretrain" and
    "nopretrain_first_character_given" to the no-pretraining model's accuracies, where known,
    and the band of the variant's public runs.
    """
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("(no figure: matplotlib is not installed; pip install matplotlib)")
        return
    records = sorted(records, key=lambda r: r["epoch"])
    hinted = [r.get("dev_answers", {}).get("pretrained_first_character_given") for r in records]
    series = [("dev accuracy after the handout's finetuning", [r["dev_accuracy"] for r in records], "C0", "o-"),
              ("the same, the place's first character given", [h and h["accuracy"] for h in hinted], "C3", "D-"),
              ("recall probe, dev people (before finetuning)",
               [100 * (r["recall_dev_people"]["recall"] or 0) for r in records], "C1", "s--"),
              ("recall probe, finetuning people (before finetuning)",
               [100 * (r["recall_finetuning_people"]["recall"] or 0) for r in records], "C2", "^--")]
    baselines = [("nopretrain", "C0", "no pretraining"),  # each in the colour of the series it is the floor of
                 ("nopretrain_first_character_given", "C3", "no pretraining, first character given")]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    epochs = [r["epoch"] for r in records]
    # a log axis labels only its decades: label the snapshots' epochs, and hours at 1, 2 and 5 of each decade
    for axis, x, label, ticks in (
            (axes[0], epochs, "pretraining epochs", matplotlib.ticker.FixedLocator(spaced_ticks(epochs))),
            (axes[1], [r["pretrain_hours"] for r in records], "pretraining hours (wall clock)",
             matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))):
        for name, values, color, style in series:
            points = [(a, b) for a, b in zip(x, values) if a is not None and b is not None]
            axis.plot([a for a, _ in points], [b for _, b in points], style, color=color, label=name)
        axis.axhline(london, color="gray", linestyle=":", label=f'"London" for everyone ({london:.1f}%)')
        for name, color, legend in baselines:
            if name in nopretrain:
                axis.axhline(nopretrain[name], color=color, linestyle=":", label=f"{legend} ({nopretrain[name]:.1f}%)")
        low, high = VARIANTS[variant].public_range
        axis.axhspan(low, high, color="C0", alpha=0.08, label=f"public runs of {variant}, 650 epochs ({low}-{high}%)")
        axis.set(xlabel=label, xscale="log")
        axis.xaxis.set_major_locator(ticks)
        axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.grid(alpha=0.3)
    axes[0].set(ylabel="%", title="what pretraining puts into the weights")
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    with atomic_output(figure_path, "wb") as f:
        figure.savefig(f, format="png", dpi=110)
    print(figure_path)


def spaced_ticks(values, least_gap=0.05):
    """
    The values to label on a log axis that spans them: the largest, and each smaller one at least
    least_gap of the span (in log space) below the last one kept, so that labels do not overlap
    (600 and 650 on an axis from 50 would).
    """
    values = sorted(set(values), reverse=True)
    if len(values) < 2:
        return values
    span = math.log(values[0] / values[-1])
    kept = [values[0]]
    for value in values[1:]:
        if math.log(kept[-1] / value) >= least_gap * span:
            kept.append(value)
    return sorted(kept)


def answered(record, name, share=False):
    """
    Of the dev answers of record["dev_answers"][name], the accuracy ("27.6%") if share, else the
    right answers among the people the probe recalled ("5/32"); "?" if not measured.
    """
    answers = record.get("dev_answers", {}).get(name)
    if answers is None:
        return "?"
    recalled = answers["by_recall"]["recalled"]
    return f"{answers['accuracy']:.1f}%" if share else f"{recalled['correct']}/{recalled['questions']}"


def extraction_text(record):
    """What the finetuned models get out of the weights, as the curve prints it."""
    return (f"first character given {answered(record, 'pretrained_first_character_given', True)} (without "
            f"pretraining {answered(record, 'nopretrain_first_character_given', True)}); recalled dev people "
            f"answered {answered(record, 'pretrained')} (without pretraining {answered(record, 'nopretrain')})")


def table(records):
    """The records as a markdown table, by epoch."""
    lines = ["| epochs | hours | pretraining loss | recall, dev people | recall, finetuning people | finetuning loss "
             "| dev accuracy | first character given (without pretraining) "
             "| recalled dev people answered (without pretraining) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: r["epoch"]):
        recall = [r[f"recall_{people}_people"] for people in ("dev", "finetuning")]
        hours, loss = (f"{value:.{digits}f}" if value is not None else "?"  # a log that lacked the epoch
                       for value, digits in ((r["pretrain_hours"], 2), (r["pretrain_loss"], 3)))
        lines.append(f"| {r['epoch']} | {hours} | {loss} | "
                     + " | ".join(f"{x['completed']}/{x['probed']} ({100 * (x['recall'] or 0):.1f}%)" for x in recall)
                     + f" | {r['finetune_loss']:.3f} | {r['dev_accuracy']:.1f}% | "
                     + f"{answered(r, 'pretrained_first_character_given', True)} "
                       f"({answered(r, 'nopretrain_first_character_given', True)}) | "
                     + f"{answered(r, 'pretrained')} ({answered(r, 'nopretrain')}) |")
    return "\n".join(lines)


def make_folder(path, what):
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"{what} {path}: cannot make this folder ({error.strerror}); choose another path") from None


def curve(args):
    records_path = args.records or f"{args.pretrain_params_path}.knowledge.jsonl"
    if args.table:
        print(table(read_records(records_path)))
        return
    inputs = [("the pretraining corpus", args.pretrain_corpus_path),
              ("--pretrain_params_path", args.pretrain_params_path),
              ("the pretraining's metrics log", metrics_path(args.pretrain_params_path)),
              ("--finetune_corpus_path", args.finetune_corpus_path), ("--eval_corpus_path", args.eval_corpus_path),
              ("--nopretrain_predictions", args.nopretrain_predictions),
              ("--nopretrain_params_path", args.nopretrain_params_path)]
    check_outputs([("--records", records_path)], inputs)  # read and rewritten: no other input may be it
    check_outputs([("--figure", args.figure)], inputs + [("--records", records_path)])
    pairs = {"finetuning": analyze.parse_questions(read_text(args.finetune_corpus_path, "finetuning corpus"),
                                           args.finetune_corpus_path),
             "evaluation": analyze.parse_questions(read_text(args.eval_corpus_path, "evaluation file"),
                                           args.eval_corpus_path)}
    if not pairs["finetuning"]:
        raise InputError(f"finetuning corpus {args.finetune_corpus_path} is empty; give QUESTION<TAB>PLACE lines")
    if not pairs["evaluation"] or pairs["evaluation"][0][1] is None:
        raise InputError(f"{args.eval_corpus_path}: every line needs QUESTION<TAB>PLACE (the curve scores answers)")
    # read now, not after hours of finetuning, so that a bad file stops the curve before it starts
    nopretrain = {}  # the no-pretraining model's dev answers, by the names of a record's "dev_answers"
    if args.nopretrain_predictions:
        nopretrain["nopretrain"] = read_predictions(args.nopretrain_predictions, pairs["evaluation"],
                                                    args.eval_corpus_path)
    wiki_text = read_text(args.pretrain_corpus_path, "pretraining corpus")
    try:
        corpus = CharCorruptionDataset(wiki_text, BLOCK_SIZE)
    except ValueError as error:
        raise InputError(f"pretraining corpus {args.pretrain_corpus_path}: {error}") from None
    model = build_model(corpus.vocab_size, BLOCK_SIZE, args.variant, args)
    if args.nopretrain_params_path:
        nopretrain["nopretrain_first_character_given"] = first_character_given(
            model, args.nopretrain_params_path, corpus, pairs["evaluation"])
    found = snapshots(args.pretrain_params_path)
    if not found:
        raise InputError(f"no snapshots of {args.pretrain_params_path} and no final params: run run.py pretrain "
                         f"with --snapshot_epochs, and this command as its snapshots appear")
    try:
        metrics = read_metrics(metrics_path(args.pretrain_params_path))
    except PlotError as error:
        raise InputError(str(error)) from None
    records = read_records(records_path)
    recorded = {(r["params"], tuple(r["stamp"])): r for r in records}
    folder = Path(args.out_dir or f"{args.pretrain_params_path}.curve")
    make_folder(folder, "--out_dir")
    make_folder(Path(args.figure).parent, "--figure")
    wiki_documents = wiki_text.split("\n")
    for epoch, path in found:
        record = recorded.get((str(path), tuple(stamp(path))))
        if record is None:
            record = measure(args, epoch, path, metrics, folder, model, corpus, wiki_documents, pairs, nopretrain)
            records.append(record)
            print(f"epoch {record['epoch']}: pretraining loss {record['pretrain_loss']}, recall dev "
                  f"{record['recall_dev_people']['completed']}/{record['recall_dev_people']['probed']}, finetuning "
                  f"{record['recall_finetuning_people']['completed']}/{record['recall_finetuning_people']['probed']}; "
                  f"dev accuracy {record['dev_accuracy']:.1f}%; {extraction_text(record)}", flush=True)
        elif names := lacking(record, nopretrain):
            # recorded by an earlier version: the probe again, and the files it wrote
            recalled = recall_of(model, path, corpus, pairs["evaluation"], wiki_documents)
            add_dev_answers(record, names, recalled, model, corpus, pairs["evaluation"], args.eval_corpus_path,
                            nopretrain)
            print(f"epoch {record['epoch']} (recorded before): {extraction_text(record)}", flush=True)
        else:
            continue
        with atomic_output(records_path) as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
    golds = [place for _, place in pairs["evaluation"]]
    london = 100 * sum(place == "London" for place in golds) / len(golds)
    draw(records, args.figure, args.variant, london,
         {name: dev_accuracy(pairs["evaluation"], predictions) for name, predictions in nopretrain.items()})


def main(argv=None):
    parser = ArgumentParser(description="Dev accuracy and recall of a pretraining's snapshots.")
    add_variant_argument(parser)
    parser.add_argument("pretrain_corpus_path", help="the pretraining text (wiki.txt)")
    parser.add_argument("--pretrain_params_path", required=True,
                        help="the pretraining's params path (its snapshots are PATH.epochN)")
    parser.add_argument("--finetune_corpus_path", default="birth_places_train.tsv")
    parser.add_argument("--eval_corpus_path", default="birth_dev.tsv")
    parser.add_argument("--nopretrain_predictions", help="dev predictions of the model finetuned without pretraining")
    parser.add_argument("--nopretrain_params_path",
                        help="params of the model finetuned without pretraining (for its answers with the first "
                             "character given)")
    parser.add_argument("--seed", type=SEEDS, default=0, help="the finetunings' seed (default 0)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="the finetunings' precision (default auto); give the one the pretraining's handout.py "
                             "command gave, so that the final point is its finetuning")
    parser.add_argument("--out_dir", help="where the finetuned params and predictions go (default PRETRAIN.curve/)")
    parser.add_argument("--records", help="the records file (default PRETRAIN.knowledge.jsonl)")
    parser.add_argument("--figure", default="results/knowledge_curve.png")
    parser.add_argument("--table", action="store_true", help="print the records as a markdown table and stop")
    add_size_flags(parser)
    args = parser.parse_args(argv)
    exit_on_input_error(lambda: curve(args))


if __name__ == "__main__":
    main()
