"""
The London baseline: the accuracy a model would get on a birth-place file by answering
"London" for everyone, to compare the finetuned models against.

    python london_baseline.py --eval_corpus_path birth_dev.tsv
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))  # src/ holds scripts, not a package
from safe_io import ArgumentParser, exit_on_input_error, read_text
from utils import parse_birth_places, score_places

parser = ArgumentParser(description='Accuracy of predicting "London" as every birth place.')
parser.add_argument("--eval_corpus_path", required=True, help="a QUESTION<TAB>PLACE file, e.g. birth_dev.tsv")
args = parser.parse_args()

if not Path(args.eval_corpus_path).exists():
    print(f"No such file: {args.eval_corpus_path} (run python get_data.py to fetch the data)", file=sys.stderr)
    sys.exit(2)
pairs = exit_on_input_error(lambda: parse_birth_places(read_text(args.eval_corpus_path, "evaluation file"),
                                                       args.eval_corpus_path))
total, correct = score_places(pairs, ["London"] * len(pairs), args.eval_corpus_path)
if total == 0:
    print(f"No targets in {args.eval_corpus_path}: the London baseline needs a file with answers", file=sys.stderr)
    sys.exit(2)
print("Correct: {} out of {}: {}%".format(correct, total, correct / total * 100))
