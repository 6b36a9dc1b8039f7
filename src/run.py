"""
The assignment's command line: pretrain, finetune or evaluate a vanilla or synthesizer GPT.

    python src/run.py pretrain vanilla wiki.txt --writing_params_path vanilla.pretrain.params
    python src/run.py finetune vanilla wiki.txt --reading_params_path vanilla.pretrain.params \
        --writing_params_path vanilla.finetune.params --finetune_corpus_path birth_places_train.tsv
    python src/run.py evaluate vanilla wiki.txt --reading_params_path vanilla.finetune.params \
        --eval_corpus_path birth_dev.tsv --outputs_path vanilla.pretrain.dev.predictions

The pretraining corpus is always given: the character vocabulary is built from it.
Every hyperparameter of the original runs is in HYPERPARAMETERS below; the optional flags
override them for quick or exploratory runs.
"""

import argparse
import sys

import torch

import distributed
from dataset import MASK_CHAR, CharCorruptionDataset, NameDataset, decode
from model import GPT, GPTConfig
from trainer import Trainer, TrainerConfig, resolve_device
from utils import evaluate_places, greedy_decode, set_seed

BLOCK_SIZE = 128
HYPERPARAMETERS = {  # per function: epochs, batch size, peak learning rate
    "pretrain": dict(max_epochs=650, batch_size=128, learning_rate=6e-3),
    "finetune": dict(max_epochs=75, batch_size=256, learning_rate=6e-4),
    "finetune from pretrained": dict(max_epochs=10, batch_size=256, learning_rate=6e-4),
}
NUM_WORKERS = 4
WARMUP_TOKENS = 512 * 20
DECODE_STEPS = 32


def final_tokens(pretrain_dataset):
    return 200 * len(pretrain_dataset) * BLOCK_SIZE


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Pretrain, finetune or evaluate a character-level GPT.")
    parser.add_argument("function", choices=["pretrain", "finetune", "evaluate"], help="what to do")
    parser.add_argument("variant", choices=["vanilla", "synthesizer"], help="which attention the model uses")
    parser.add_argument("pretrain_corpus_path", help="the pretraining text (wiki.txt); it defines the vocabulary")
    parser.add_argument("--reading_params_path", help="params to load before finetuning, or to evaluate")
    parser.add_argument("--writing_params_path", help="where pretrain and finetune save the params")
    parser.add_argument("--finetune_corpus_path", help="finetuning TSV: QUESTION<TAB>PLACE per line")
    parser.add_argument("--eval_corpus_path", help="TSV of questions to answer, with or without places")
    parser.add_argument("--outputs_path", help="where evaluate writes one predicted place per line")
    parser.add_argument("--max_epochs", type=int, help="override the epochs of the function (650 / 75 / 10)")
    parser.add_argument("--batch_size", type=int, help="override the batch size (128 / 256)")
    parser.add_argument("--learning_rate", type=float, help="override the peak learning rate (6e-3 / 6e-4)")
    parser.add_argument("--num_workers", type=int, default=NUM_WORKERS, help="data loader processes (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda, cuda:N")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="auto: bf16 autocast on CUDA, fp32 on CPU")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model for training")
    args = parser.parse_args(argv)
    required = {
        "pretrain": ["writing_params_path"],
        "finetune": ["writing_params_path", "finetune_corpus_path"],
        "evaluate": ["reading_params_path", "eval_corpus_path", "outputs_path"],
    }[args.function]
    missing = [f"--{name}" for name in required if getattr(args, name) is None]
    if missing:
        parser.error(f"{args.function} needs {' and '.join(missing)}")
    return args


def read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def params_variant(state_dict):
    """Which attention a params file was trained with, from its parameter names."""
    if any(name.endswith("attn.w1.weight") for name in state_dict):
        return "synthesizer"
    if any(name.endswith("attn.query.weight") for name in state_dict):
        return "vanilla"
    return None


def load_params(model, path, device):
    state_dict = torch.load(path, map_location=device, weights_only=True)
    found = params_variant(state_dict) if isinstance(state_dict, dict) else None
    if found is None:
        sys.exit(f"error: {path} is not a params file of this model (no attention weights in it)")
    if found != model.variant:
        sys.exit(f"error: {path} holds {found} params, but the command asks for {model.variant}: "
                 f"run with {found}, or read a {model.variant} params file")
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        sys.exit(f"error: {path} does not fit a {model.variant} model of this size: {error}")


def save_params(model, path):
    torch.save({name: tensor.cpu() for name, tensor in model.state_dict().items()}, path)


def train(args, model, dataset, pretrain_dataset, hyperparameters, device):
    overrides = {name: getattr(args, name) for name in ("max_epochs", "batch_size", "learning_rate")
                 if getattr(args, name) is not None}
    config = TrainerConfig(**{**hyperparameters, **overrides}, lr_decay=True, warmup_tokens=WARMUP_TOKENS,
                           final_tokens=final_tokens(pretrain_dataset), num_workers=args.num_workers,
                           device=device, precision=args.precision, compile=args.compile)
    Trainer(model, dataset, None, config).train()
    if distributed.is_main_process():
        save_params(model, args.writing_params_path)


def evaluate(args, model, pretrain_dataset):
    stoi = pretrain_dataset.stoi
    with open(args.eval_corpus_path, encoding="utf-8") as f:
        questions = [line.rstrip("\r\n").split("\t")[0] for line in f]
    prompts = []
    for number, question in enumerate(questions, start=1):
        unknown = sorted(set(ch for ch in question if ch not in stoi))
        if unknown:
            sys.exit(f"error: {args.eval_corpus_path} line {number} has characters that are not in the "
                     f"vocabulary of {args.pretrain_corpus_path}: {' '.join(map(repr, unknown))}")
        prompts.append(torch.tensor([stoi[ch] for ch in question + MASK_CHAR], dtype=torch.long))
    device = next(model.parameters()).device
    completions = greedy_decode(model, [p.to(device) for p in prompts], DECODE_STEPS)
    predictions = [decode(pretrain_dataset.itos, c).split(MASK_CHAR)[1] for c in completions]
    with open(args.outputs_path, "w", encoding="utf-8") as f:
        f.writelines(prediction + "\n" for prediction in predictions)
    total, correct = evaluate_places(args.eval_corpus_path, predictions)
    if total > 0:
        print(f"Correct: {correct} out of {total}: {correct / total * 100}%")
    else:
        print(f"Predictions written to {args.outputs_path}; no targets provided")


def main(argv=None):
    args = parse_args(argv)
    set_seed(args.seed)
    device = distributed.start(resolve_device(args.device))
    pretrain_dataset = CharCorruptionDataset(read_text(args.pretrain_corpus_path), BLOCK_SIZE)
    config = GPTConfig(pretrain_dataset.vocab_size, pretrain_dataset.block_size, variant=args.variant)
    model = GPT(config).to(device)
    print(f"number of parameters: {sum(p.numel() for p in model.parameters()):,}")

    if args.function == "pretrain":
        train(args, model, pretrain_dataset, pretrain_dataset, HYPERPARAMETERS["pretrain"], device)
    elif args.function == "finetune":
        finetune_dataset = NameDataset(pretrain_dataset, read_text(args.finetune_corpus_path))
        if args.reading_params_path is not None:
            load_params(model, args.reading_params_path, device)
            train(args, model, finetune_dataset, pretrain_dataset, HYPERPARAMETERS["finetune from pretrained"],
                  device)
        else:
            train(args, model, finetune_dataset, pretrain_dataset, HYPERPARAMETERS["finetune"], device)
    elif distributed.is_main_process():  # evaluation is quick: one process does it
        load_params(model, args.reading_params_path, device)
        evaluate(args, model, pretrain_dataset)
    distributed.finish()


if __name__ == "__main__":
    main()
