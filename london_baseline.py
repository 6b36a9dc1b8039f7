"""
The London baseline: the accuracy a model would get on a birth-place file by answering
"London" for everyone, to compare the finetuned models against.

    python london_baseline.py --eval_corpus_path birth_dev.tsv
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))  # src/ holds scripts, not a package
from utils import evaluate_places

parser = argparse.ArgumentParser(description='Accuracy of predicting "London" as every birth place.')
parser.add_argument("--eval_corpus_path", required=True, help="a QUESTION<TAB>PLACE file, e.g. birth_dev.tsv")
args = parser.parse_args()

if not Path(args.eval_corpus_path).is_file():
    print(f"No such file: {args.eval_corpus_path} (run python get_data.py to fetch the data)", file=sys.stderr)
    sys.exit(2)
with open(args.eval_corpus_path, encoding="utf-8") as f:
    predictions = ["London" for _ in f]
total, correct = evaluate_places(args.eval_corpus_path, predictions)
if total == 0:
    print(f"No targets in {args.eval_corpus_path}: the London baseline needs a file with answers", file=sys.stderr)
    sys.exit(2)
print("Correct: {} out of {}: {}%".format(correct, total, correct / total * 100))
