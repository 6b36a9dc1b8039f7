"""
Mixed training (Allen-Zhu and Li, Physics of Language Models 3.1), measured beside the handout's
two-stage recipe: one pretraining on wiki.txt's span-corruption examples and the training
people's questions together, from its start. The dev people's facts still come only from
wiki.txt; the questions are the finetuning corpus, never dev. Not the handout's experiment:
every table that shows it names it.

    python bench/mixed_pretrain.py --mix_corpus_path birth_places_train.tsv -- vanilla wiki.txt \
        --writing_params_path vanilla.mixed.params --n_layer 2 --n_head 8 --n_embd 128 \
        --max_epochs 240 --batch_size 8 --learning_rate 1e-3 --dropout 0 --snapshot_epochs 30 60

Everything after `--` is src/run.py pretrain's own arguments; its params, snapshots, metrics
and checkpoints are a pretraining's, so knowledge_curve.py and run.py finetune/evaluate read them.
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import run  # noqa: E402
from dataset import BLOCK_SIZE, CharCorruptionDataset, NameDataset, batch_slices  # noqa: E402
from params import build_model  # noqa: E402
from safe_io import exit_on_input_error  # noqa: E402
from utils import set_seed  # noqa: E402


class MixedDataset:
    """An epoch is every wiki example and every question once, their batches spread evenly through it."""

    def __init__(self, corpus, questions):
        self.corpus, self.questions = corpus, questions

    def __len__(self):
        return len(self.corpus) + len(self.questions)

    def batches(self, batch_size, generator, device):
        wiki = list(self.corpus.batches(batch_size, generator, device))
        order = torch.randperm(len(self.questions), generator=generator)  # new question batches each epoch
        inputs, targets = self.questions.inputs[order].to(device), self.questions.targets[order].to(device)
        lengths = self.questions.target_lengths[order]
        asked = [(inputs[rows], targets[rows], lengths[rows]) for rows in batch_slices(len(order), batch_size)]
        # batch i of n goes at (i + 0.5) / n of the epoch, so both kinds are met all through it
        placed = [((i + 0.5) / len(wiki), batch) for i, batch in enumerate(wiki)]
        placed += [((i + 0.5) / len(asked), batch) for i, batch in enumerate(asked)]
        for _, batch in sorted(placed, key=lambda pair: pair[0]):
            yield batch


def main():
    torch.set_flush_denormal(True)  # as run.py does, before any tensor work
    parser = argparse.ArgumentParser(description="Pretrain on wiki.txt mixed with question-answer pairs.")
    parser.add_argument("--mix_corpus_path", required=True, help="QUESTION<TAB>PLACE lines of the training people")
    parser.add_argument("run_arguments", nargs=argparse.REMAINDER, help="-- then run.py pretrain's arguments")
    args = parser.parse_args()
    run_args = run.parse_args(["pretrain", *[a for a in args.run_arguments if a != "--"]])

    def pretrain():
        set_seed(run_args.seed)
        corpus = run.dataset_from(run_args.pretrain_corpus_path, "pretraining corpus",
                                  lambda text: CharCorruptionDataset(text, BLOCK_SIZE))
        questions = run.dataset_from(args.mix_corpus_path, "mix corpus", lambda text: NameDataset(corpus, text))
        model = build_model(corpus.vocab_size, BLOCK_SIZE, run_args.variant, run_args)
        print(f"number of parameters: {sum(p.numel() for p in model.parameters()):,}; mixed with "
              f"{len(questions)} questions of {args.mix_corpus_path}")
        run.train(run_args, model, MixedDataset(corpus, questions), corpus, run.HYPERPARAMETERS["pretrain"], "cpu")

    try:
        exit_on_input_error(pretrain)
    except run.TrainingStopped as stop:
        print(f"\n{stop}", file=sys.stderr)
        sys.exit(stop.exit_status)


if __name__ == "__main__":
    main()
