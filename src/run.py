"""
The assignment's command line: pretrain, finetune or evaluate a GPT of any variant (vanilla,
synthesizer, rope, perceiver).

    python src/run.py pretrain vanilla wiki.txt --writing_params_path vanilla.pretrain.params
    python src/run.py finetune vanilla wiki.txt --reading_params_path vanilla.pretrain.params \
        --writing_params_path vanilla.finetune.params --finetune_corpus_path birth_places_train.tsv
    python src/run.py evaluate vanilla wiki.txt --reading_params_path vanilla.finetune.params \
        --eval_corpus_path birth_dev.tsv --outputs_path vanilla.pretrain.dev.predictions

The pretraining corpus is always given: the character vocabulary is built from it.
Every hyperparameter of the original runs is in HYPERPARAMETERS below; the optional flags
override them for quick or exploratory runs.
"""

import io
import math
import signal
import sys
from contextlib import nullcontext, redirect_stdout
from pathlib import Path

import allocator

if __name__ == "__main__":
    allocator.restart_with_fast_allocator()  # before torch is imported, which the restarted process then does once

import torch

import distributed
from dataset import BLOCK_SIZE, MASK_CHAR, CharCorruptionDataset, NameDataset, decode
from device import DEVICE_HELP, resolve_device
from params import (add_size_flags, add_variant_argument, build_model, checkpoint_path, load_params, metrics_path,
                    save_params, snapshot_path)
from safe_io import (ArgumentParser, InputError, atomic_output, check_outputs, check_writable, exit_on_input_error,
                     in_range, read_text)
from trainer import PRECISIONS, StopSignals, Trainer, TrainerConfig, TrainingStopped
from utils import DECODE_STEPS, SEEDS, greedy_decode, on_host, parse_birth_places, score_places, set_seed

HYPERPARAMETERS = {  # per function: epochs, batch size, peak learning rate
    "pretrain": dict(max_epochs=650, batch_size=128, learning_rate=6e-3),
    "finetune": dict(max_epochs=75, batch_size=256, learning_rate=6e-4),
    "finetune from pretrained": dict(max_epochs=10, batch_size=256, learning_rate=6e-4),
}
WARMUP_TOKENS = 512 * 20
# --original_computation: the trainer's options that compute as the original code did (with
# attention written out: GPTConfig.fused_attention False): every batch at all of its positions,
# built one example at a time by a DataLoader in the original's 4 worker processes
ORIGINAL_TRAINING = dict(batch_rows="padded", data_loader=True, num_workers=4)


def final_tokens(pretrain_dataset, train_dataset=None, cosine_epochs=None):
    """
    Where the cosine reaches its floor, in tokens. The handout's: 200 epochs of the pretraining
    corpus, whatever is trained (a finetuning run of 10 or 75 epochs barely decays). With
    cosine_epochs, the cosine ends after that many epochs of the data being trained on, so a
    short run gets a whole schedule rather than the first few percent of the handout's.
    """
    if cosine_epochs is None:
        return 200 * len(pretrain_dataset) * BLOCK_SIZE
    return round(cosine_epochs * len(train_dataset) * BLOCK_SIZE)


def argument_parser():
    """run.py's command line; handout.py reads the files of its steps' commands with it too."""
    parser = ArgumentParser(description="Pretrain, finetune or evaluate a character-level GPT.")
    parser.add_argument("function", choices=["pretrain", "finetune", "evaluate"], help="what to do")
    add_variant_argument(parser)
    parser.add_argument("pretrain_corpus_path", help="the pretraining text (wiki.txt); it defines the vocabulary")
    parser.add_argument("--reading_params_path", help="params to load before finetuning, or to evaluate")
    parser.add_argument("--writing_params_path", help="where pretrain and finetune save the params")
    parser.add_argument("--finetune_corpus_path", help="finetuning TSV: QUESTION<TAB>PLACE per line")
    parser.add_argument("--eval_corpus_path", help="TSV of questions to answer, with or without places")
    parser.add_argument("--outputs_path", help="where evaluate writes one predicted place per line")
    parser.add_argument("--max_epochs", type=in_range(int, 1),
                        help="override the epochs of the function (650 / 75 / 10)")
    parser.add_argument("--batch_size", type=in_range(int, 1), help="override the batch size (128 / 256)")
    # Adam moves each weight by about the learning rate a step: above 1 is far past the weights' scale
    parser.add_argument("--learning_rate", type=in_range(float, 0, 1, low_open=True, high_open=False),
                        help="override the peak learning rate (6e-3 / 6e-4)")
    parser.add_argument("--dropout", type=in_range(float, 0, 1),
                        help="override the dropout of embeddings, attention and residuals (0.1 each)")
    parser.add_argument("--weight_decay", type=in_range(float, 0),
                        help="override AdamW's weight decay of the matrix weights (0.1)")
    parser.add_argument("--cosine_epochs", type=in_range(float, 0, low_open=True),
                        help="end the learning rate's cosine after this many epochs of the training data "
                             "(default: the handout's, 200 epochs of the pretraining corpus)")
    parser.add_argument("--seed", type=SEEDS, default=0, help="random seed (default 0)")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="auto: bf16 autocast on CUDA, and on a CPU for big steps where bf16 products are fast")
    parser.add_argument("--processes", type=in_range(int, 1), default=1,
                        help="train in this many processes (data parallelism, as torchrun does; one GPU each): on "
                             "2 CPU cores, 2 processes of one thread ran the handout's pretraining about 1.2x as "
                             "fast as one; the params are not the one-process run's, each process drawing its own "
                             "dropout masks")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model for training")
    parser.add_argument("--original_computation", action="store_true",
                        help="compute as the original code did (attention written out, every batch at all 127 "
                             "positions, built one example at a time by 4 data loader processes): the same "
                             "function, slower; for speed comparisons (bench/bench.py's plain path)")
    add_size_flags(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted pretrain or finetune from WRITING_PARAMS_PATH.checkpoint")
    parser.add_argument("--snapshot_epochs", type=int, nargs="+", default=[], metavar="N",
                        help="also write the params as they are after each of these epochs, to "
                             "WRITING_PARAMS_PATH.epochN (pretrain, finetune)")
    parser.add_argument("--checkpoint_every", type=in_range(float, 0, math.inf, high_open=False), default=120,
                        help="seconds between checkpoints, written at the end of an epoch (default 120; inf: "
                             "only when stopped)")
    return parser


def parse_args(argv=None):
    parser = argument_parser()
    args = parser.parse_args(argv)
    required = {
        "pretrain": ["writing_params_path"],
        "finetune": ["writing_params_path", "finetune_corpus_path"],
        "evaluate": ["reading_params_path", "eval_corpus_path", "outputs_path"],
    }[args.function]
    missing = [f"--{name}" for name in required if getattr(args, name) is None]
    if missing:
        parser.error(f"{args.function} needs {' and '.join(missing)}")
    if args.snapshot_epochs and args.function == "evaluate":
        parser.error("--snapshot_epochs is for pretrain and finetune: evaluate trains nothing")
    if args.processes != 1 and args.function == "evaluate":
        parser.error("--processes is for pretrain and finetune: evaluate runs in one process")
    args.arguments = list(sys.argv[1:] if argv is None else argv)  # what --processes runs again in each process
    return args


def train(args, model, dataset, pretrain_dataset, hyperparameters, device):
    overrides = {name: getattr(args, name) for name in ("max_epochs", "batch_size", "learning_rate", "weight_decay")
                 if getattr(args, name) is not None}
    epochs = overrides.get("max_epochs", hyperparameters["max_epochs"])
    outside = [n for n in args.snapshot_epochs if not 1 <= n <= epochs]
    if outside:
        raise InputError(f"--snapshot_epochs {' '.join(map(str, outside))}: a snapshot is taken after an epoch of "
                         f"the run, 1 to {epochs}; choose epochs in that range")
    # the inputs are checked: the processes start here
    status = distributed.in_processes(args.processes, device, [str(Path(__file__).resolve()), *args.arguments])
    if status is not None:
        sys.exit(status)
    config = TrainerConfig(**{**hyperparameters, **overrides}, lr_decay=True, warmup_tokens=WARMUP_TOKENS,
                           final_tokens=final_tokens(pretrain_dataset, dataset, args.cosine_epochs),
                           device=device, precision=args.precision, compile=args.compile,
                           metrics_path=metrics_path(args.writing_params_path),
                           checkpoint_path=checkpoint_path(args.writing_params_path),
                           checkpoint_every=args.checkpoint_every, resume=args.resume,
                           snapshots={n: snapshot_path(args.writing_params_path, n) for n in args.snapshot_epochs},
                           **(ORIGINAL_TRAINING if args.original_computation else {}))
    # A stop in the loop keeps the checkpoint (trainer.py); one after it waits until the params are
    # written, so that a stop leaves one or the other, never neither. The run then stops as it would
    # have, with exit status 128 + the signal: a command after it does not start, and handout.py
    # counts the step done, since its params are written.
    with StopSignals() as stop:
        Trainer(model, dataset, None, config).train(stop)
        if distributed.is_main_process():
            save_params(model, args.writing_params_path)
            Path(config.checkpoint_path).unlink(missing_ok=True)  # the params are the product now
    if stop.requested:
        signum = stop.requested[0]
        raise TrainingStopped(f"{signal.Signals(signum).name} as training ended: stopped once the params were "
                              f"written to {args.writing_params_path}", 128 + signum)


def read_questions(path, stoi):
    """The (question, gold place or None) of each line (see parse_birth_places), checked against the vocabulary."""
    pairs = parse_birth_places(read_text(path, "evaluation file"), path)
    if not pairs:
        raise InputError(f"{path} has no questions; give a file of QUESTION or QUESTION<TAB>PLACE lines")
    for number, (question, _) in enumerate(pairs, start=1):
        unknown = sorted(set(ch for ch in question if ch not in stoi))
        if unknown:
            raise InputError(f"{path} line {number}: {' '.join(map(repr, unknown))} not in the vocabulary of the "
                             f"pretraining corpus; remove or replace it")
        if len(question) + 1 >= BLOCK_SIZE:
            raise InputError(f"{path} line {number}: the question is {len(question)} characters, too long for "
                             f"the block of {BLOCK_SIZE}")
    return pairs


def evaluate(args, model, pretrain_dataset, pairs):
    device = next(model.parameters()).device
    prompts = [torch.tensor([pretrain_dataset.stoi[ch] for ch in question + MASK_CHAR], device=device)
               for question, _ in pairs]
    completions = on_host(greedy_decode(model, prompts, DECODE_STEPS))
    predictions = [decode(pretrain_dataset.itos, c).split(MASK_CHAR)[1] for c in completions]
    with atomic_output(args.outputs_path) as f:
        f.writelines(prediction + "\n" for prediction in predictions)
    total, correct = score_places(pairs, predictions, args.eval_corpus_path)
    if total > 0:
        print(f"Correct: {correct} out of {total}: {correct / total * 100}%")
    else:
        print(f"Predictions written to {args.outputs_path}; no targets provided")


def dataset_from(path, what, make):
    """Build a dataset from a file, reporting a problem in its text as an InputError naming the file."""
    text = read_text(path, what)
    try:
        return make(text)
    except ValueError as error:
        raise InputError(f"{what} {path}: {error}") from None


def run(args):
    outputs = [("--writing_params_path", args.writing_params_path), ("--outputs_path", args.outputs_path)]
    check_outputs(outputs, [("the pretraining corpus", args.pretrain_corpus_path),
                            ("--reading_params_path", args.reading_params_path),
                            ("--finetune_corpus_path", args.finetune_corpus_path),
                            ("--eval_corpus_path", args.eval_corpus_path)])
    for what, path in outputs:
        if path is not None:
            check_writable(path, what)
    set_seed(args.seed)
    device = distributed.start(resolve_device(args.device))
    with nullcontext() if distributed.says_set_up(args.processes) else redirect_stdout(io.StringIO()):
        pretrain_dataset = dataset_from(args.pretrain_corpus_path, "pretraining corpus",
                                        lambda text: CharCorruptionDataset(text, BLOCK_SIZE))
        model = build_model(pretrain_dataset.vocab_size, pretrain_dataset.block_size, args.variant, args,
                            fused_attention=not args.original_computation).to(device)
        print(f"number of parameters: {sum(p.numel() for p in model.parameters()):,}")

    if args.function == "pretrain":
        train(args, model, pretrain_dataset, pretrain_dataset, HYPERPARAMETERS["pretrain"], device)
    elif args.function == "finetune":
        finetune_dataset = dataset_from(args.finetune_corpus_path, "finetuning corpus",
                                        lambda text: NameDataset(pretrain_dataset, text))
        if len(finetune_dataset) == 0:
            raise InputError(f"finetuning corpus {args.finetune_corpus_path} is empty; give QUESTION<TAB>PLACE lines")
        if args.reading_params_path is not None:
            load_params(model, args.reading_params_path, device)
            train(args, model, finetune_dataset, pretrain_dataset, HYPERPARAMETERS["finetune from pretrained"],
                  device)
        else:
            train(args, model, finetune_dataset, pretrain_dataset, HYPERPARAMETERS["finetune"], device)
    elif distributed.is_main_process():  # evaluation is quick: one process does it
        pairs = read_questions(args.eval_corpus_path, pretrain_dataset.stoi)
        load_params(model, args.reading_params_path, device)
        evaluate(args, model, pretrain_dataset, pairs)
    distributed.end()


def main(argv=None):
    # Trained attention weights are full of denormal floats (below 1.2e-38), and a CPU
    # multiplies them many times slower: steps with trained weights took 1.6x as long. Flushing
    # them to zero changes no value above 1e-38. The setting is per thread and new threads
    # inherit it, so it comes first, before any tensor work starts torch's thread pool.
    torch.set_flush_denormal(True)
    args = parse_args(argv)
    try:
        exit_on_input_error(lambda: run(args))
    except TrainingStopped as stop:
        print(f"\n{stop}", file=sys.stderr)
        sys.exit(stop.exit_status)


if __name__ == "__main__":
    main()
