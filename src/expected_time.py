"""
How long src/run.py commands will take on this machine, said before they run: a few real
training steps of each command's model on its own data, timed here, times the steps the
command will take, plus what a command costs besides its training.
"""

import math
import time

import torch

import run
from dataset import BLOCK_SIZE, CharCorruptionDataset, NameDataset
from device import resolve_device
from params import build_model
from trainer import Trainer, TrainerConfig

PROBE_SECONDS = 2.0  # timed steps per kind of step: enough to average over the examples' lengths
# Start-up, building the data, writing the params, an evaluation's decoding: 3 to 5 s a
# command on a 2-core CPU (BENCHMARKS.md, "How long make run expects to take").
COMMAND_SECONDS = 4.0


def training_hyperparameters(args):
    """The epochs, batch size and learning rate a parsed run.py command trains with."""
    kind = "pretrain" if args.function == "pretrain" else (
        "finetune from pretrained" if args.reading_params_path else "finetune")
    chosen = dict(run.HYPERPARAMETERS[kind])
    chosen.update({name: getattr(args, name) for name in chosen if getattr(args, name) is not None})
    return chosen


def seconds_per_step(args, dataset, vocab_size, batch_size):
    """The mean seconds of a training step of this command's model on its data, measured now."""
    model = build_model(vocab_size, BLOCK_SIZE, args.variant, args)
    trainer = Trainer(model, dataset, None, TrainerConfig(batch_size=batch_size, device=resolve_device(args.device),
                                                          precision=args.precision))
    optimizer = trainer.optimizer()
    started, steps = None, 0
    for x, y, lengths in trainer.epoch_batches(dataset, torch.Generator().manual_seed(0)):
        loss, _ = trainer.step(optimizer, x, y, lengths)
        loss.item()  # the device has finished the step
        if started is None:  # the first step warms up: not timed
            started = time.perf_counter()
            continue
        steps += 1
        if time.perf_counter() - started >= PROBE_SECONDS:
            break
    return (time.perf_counter() - started) / max(steps, 1)


class Estimate:
    """Seconds of run.py commands; each kind of training step is timed once, on first need."""

    def __init__(self):
        self.corpora, self.step_seconds = {}, {}

    def corpus(self, path):
        if path not in self.corpora:
            self.corpora[path] = run.dataset_from(path, "pretraining corpus",
                                                  lambda text: CharCorruptionDataset(text, BLOCK_SIZE))
        return self.corpora[path]

    def seconds(self, arguments):
        """The expected seconds of `python ARGUMENTS`; only src/run.py's training takes more than start-up."""
        if not arguments[0].endswith("run.py"):
            return COMMAND_SECONDS
        args = run.parse_args(arguments[1:])
        if args.function == "evaluate":
            return COMMAND_SECONDS
        hyperparameters = training_hyperparameters(args)
        corpus = self.corpus(args.pretrain_corpus_path)
        dataset = corpus if args.function == "pretrain" else self.finetuning(corpus, args.finetune_corpus_path)
        batch_size = hyperparameters["batch_size"]
        kind = (args.function, args.variant, args.n_layer, args.n_head, args.n_embd, args.bottleneck_dim,
                args.dropout, batch_size, args.device, args.precision, args.finetune_corpus_path)
        if kind not in self.step_seconds:
            self.step_seconds[kind] = seconds_per_step(args, dataset, corpus.vocab_size, batch_size)
        steps = hyperparameters["max_epochs"] * math.ceil(len(dataset) / batch_size)
        return COMMAND_SECONDS + steps * self.step_seconds[kind]

    @staticmethod
    def finetuning(corpus, path):
        return run.dataset_from(path, "finetuning corpus", lambda text: NameDataset(corpus, text))
