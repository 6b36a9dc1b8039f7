"""
One point of the CPU recipe's sweep: pretrain (unless --no_pretrain), finetune and evaluate
on birth_dev.tsv with the settings given, through src/run.py as a user would run it, and
append what it cost and scored to bench/recipe_sweep.jsonl. The test file is never read.

    python bench/recipe_sweep.py --tag e40 --n_layer 2 --n_embd 128 --pretrain_epochs 40
    python bench/recipe_sweep.py --table      # every point recorded so far, as markdown
    python bench/recipe_sweep.py --plot results/recipe_sweep.png

Run with --threads 1 to put two points side by side on 2 cores; the record keeps the thread
count, so CPU minutes are wall minutes × threads.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

RECORDS = Path(__file__).with_name("recipe_sweep.jsonl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from analyze import parse_questions, pretrained_recall  # noqa: E402
from dataset import BLOCK_SIZE, CharCorruptionDataset  # noqa: E402
from knowledge_curve import last_epoch_loss  # noqa: E402
from model import VARIANTS  # noqa: E402
from params import build_model, load_params, metrics_path  # noqa: E402


def dev_recall(params_path, variant, size):
    """The recall probe (analyze.pretrained_recall) of dev people: (people probed, places completed)."""
    text = Path("wiki.txt").read_text(encoding="utf-8")
    corpus = CharCorruptionDataset(text, BLOCK_SIZE)
    model = build_model(corpus.vocab_size, BLOCK_SIZE, variant, argparse.Namespace(**size))
    load_params(model, params_path, "cpu")
    pairs = parse_questions(Path("birth_dev.tsv").read_text(encoding="utf-8"), "birth_dev.tsv")
    recall = pretrained_recall(model, corpus.stoi, corpus.itos, pairs, text.split("\n"))
    return recall["probed"], recall["completed"]


def run(arguments, threads):
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    started = time.time()
    completed = subprocess.run([sys.executable, "src/run.py", *arguments], env=environment, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if completed.returncode != 0:
        sys.exit(f"recipe_sweep: failed: src/run.py {' '.join(arguments)}\n{completed.stdout}")
    return completed.stdout, time.time() - started


def sweep_point(args):
    folder = Path("sweep") / args.tag
    folder.mkdir(parents=True, exist_ok=True)
    size = ["--n_layer", str(args.n_layer), "--n_head", str(args.n_head), "--n_embd", str(args.n_embd)]
    common = [args.variant, "wiki.txt", *size, "--seed", str(args.seed)]
    record = {"tag": args.tag, "variant": args.variant, "seed": args.seed, "threads": args.threads,
              "n_layer": args.n_layer, "n_head": args.n_head, "n_embd": args.n_embd, "commands": []}
    finetune = ["finetune", *common, "--finetune_corpus_path", "birth_places_train.tsv",
                "--writing_params_path", str(folder / "finetune.params"), "--max_epochs", str(args.finetune_epochs),
                "--learning_rate", str(args.finetune_lr), "--dropout", str(args.finetune_dropout)]
    if args.pretrained:  # another point's pretraining, finetuned differently
        source = json.loads([line for line in RECORDS.read_text().splitlines()
                             if json.loads(line)["tag"] == args.pretrained][-1])
        record.update({k: source.get(k) for k in ("pretrain_minutes", "pretrain_loss", "recall_probed",
                                                  "recall_completed")}, pretrained=args.pretrained)
        record["commands"].append(source["commands"][0])
        finetune += ["--reading_params_path", str(Path("sweep") / args.pretrained / "pretrain.params")]
    elif not args.no_pretrain:
        pretrain = ["pretrain", *common, "--writing_params_path", str(folder / "pretrain.params"),
                    "--max_epochs", str(args.pretrain_epochs), "--batch_size", str(args.pretrain_batch),
                    "--learning_rate", str(args.pretrain_lr), "--dropout", str(args.dropout),
                    "--weight_decay", str(args.weight_decay),
                    "--cosine_epochs", str(args.pretrain_epochs)]
        _, seconds = run(pretrain, args.threads)
        record.update(pretrain_minutes=seconds / 60,
                      pretrain_loss=last_epoch_loss(metrics_path(folder / "pretrain.params")))
        record["recall_probed"], record["recall_completed"] = dev_recall(
            folder / "pretrain.params", args.variant, {k: record[k] for k in ("n_layer", "n_head", "n_embd")})
        record["commands"].append(pretrain)
        finetune += ["--reading_params_path", str(folder / "pretrain.params")]
    _, seconds = run(finetune, args.threads)
    record.update(finetune_minutes=seconds / 60,
                  finetune_loss=last_epoch_loss(metrics_path(folder / "finetune.params")))
    evaluate = ["evaluate", *common[:-2], "--reading_params_path", str(folder / "finetune.params"),
                "--eval_corpus_path", "birth_dev.tsv", "--outputs_path", str(folder / "dev.predictions")]
    output, seconds = run(evaluate, args.threads)
    record.update(evaluate_minutes=seconds / 60, commands=record["commands"] + [finetune, evaluate],
                  dev_accuracy=float(re.search(r"Correct: \S+ out of \S+: (\S+)%", output).group(1)))
    with RECORDS.open("a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps({k: v for k, v in record.items() if k != "commands"}))


def flags(command):
    """The recipe's flags of a command, as a string."""
    names = "max_epochs|batch_size|learning_rate|dropout|weight_decay|cosine_epochs"
    return " ".join(re.findall(rf"--(?:{names}) \S+", " ".join(command))) if command else "none"


def table():
    print("| tag | variant | seed | layers/heads/width | pretraining | CPU min | loss | recall "
          "| finetuning | loss | dev % |")
    print("|---" * 11 + "|")
    for line in RECORDS.read_text().splitlines():
        r = json.loads(line)
        pretrain = next((c for c in r["commands"] if c[0] == "pretrain"), None)
        finetune = next(c for c in r["commands"] if c[0] == "finetune")
        recall = f"{r['recall_completed']}/{r['recall_probed']}" if r.get("recall_probed") else "-"
        pretrain_loss = f"{r['pretrain_loss']:.2f}" if pretrain else "-"
        print(f"| {r['tag']} | {r['variant']} | {r['seed']} | {r['n_layer']}/{r['n_head']}/{r['n_embd']} "
              f"| {flags(pretrain)} | {r.get('pretrain_minutes', 0) * r['threads']:.1f} | {pretrain_loss} "
              f"| {recall} | {flags(finetune)} | {r['finetune_loss']:.2f} | {r['dev_accuracy']:.1f} |")


def plot(path):
    """Dev accuracy, and the pretrained weights' recall, against CPU minutes of pretraining."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in RECORDS.read_text().splitlines()]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for r in records:
        minutes = r.get("pretrain_minutes", 0.0) * r["threads"]
        axes[0].plot(minutes, r["dev_accuracy"], "o", color="C1" if "pretrained" in r else "C0")
        axes[0].annotate(r["tag"], (minutes, r["dev_accuracy"]), fontsize=6, xytext=(3, 2),
                         textcoords="offset points")
        if r.get("recall_probed") and "pretrained" not in r:
            recall = 100 * r["recall_completed"] / r["recall_probed"]
            axes[1].plot(minutes, recall, "o", color="C0")
            axes[1].annotate(r["tag"], (minutes, recall), fontsize=6, xytext=(3, 2), textcoords="offset points")
    axes[0].axhline(5.0, color="gray", linestyle="--", linewidth=0.8, label='"London" for everyone')
    axes[0].set(xlabel="CPU minutes of pretraining (wall minutes × threads)", ylabel="dev accuracy (%)",
                title="dev accuracy (orange: another finetuning)")
    axes[0].legend(fontsize=8)
    axes[1].set(xlabel="CPU minutes of pretraining (wall minutes × threads)",
                ylabel="places completed from the wiki line (%)",
                title="pretrained recall of dev places")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", action="store_true", help="print the records as a markdown table and stop")
    parser.add_argument("--plot", metavar="PNG", help="plot the records into this file and stop")
    parser.add_argument("--tag", help="names the point's folder under sweep/ and its record")
    parser.add_argument("--variant", default="vanilla", choices=VARIANTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n_layer", type=int, default=4)
    parser.add_argument("--n_head", type=int, default=8)
    parser.add_argument("--n_embd", type=int, default=256)
    parser.add_argument("--no_pretrain", action="store_true")
    parser.add_argument("--pretrained", help="finetune the pretrained params of this earlier point instead")
    parser.add_argument("--pretrain_epochs", type=int, default=20)
    parser.add_argument("--pretrain_batch", type=int, default=128)
    parser.add_argument("--pretrain_lr", type=float, default=6e-3)
    parser.add_argument("--dropout", type=float, default=0.1, help="pretraining dropout")
    parser.add_argument("--weight_decay", type=float, default=0.1, help="pretraining weight decay")
    parser.add_argument("--finetune_epochs", type=int, default=10)
    parser.add_argument("--finetune_lr", type=float, default=6e-4)
    parser.add_argument("--finetune_dropout", type=float, default=0.1)
    args = parser.parse_args()
    if args.table:
        table()
    elif args.plot:
        plot(args.plot)
    elif args.tag is None:
        parser.error("give --tag")
    else:
        sweep_point(args)


if __name__ == "__main__":
    main()
