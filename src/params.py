"""
Params files: a model's state_dict, saved with the original's names (those of its
variant's year), and loaded back only into a model of the same variant and size. Every
command that reads or writes them (run.py, analyze.py) builds its model here, from the size
flags they share.
"""

import functools
import pickle
import re

import torch

from model import GPT, VARIANTS, GPTConfig
from safe_io import InputError, atomic_output, did_you_mean

SIZE_FLAGS = ("n_layer", "n_head", "n_embd")  # the handout's size is GPTConfig's default: 4, 8, 256
# AdamW training holds 16 bytes a parameter (weights, gradients, two moments): 1e10 fills no one GPU
MOST_PARAMETERS = 10**10
SNAPSHOT_SUFFIX = ".epoch"  # a snapshot of P.params after 10 epochs is P.params.epoch10 (snapshot_path)


def add_variant_argument(parser):
    parser.add_argument("variant", choices=list(VARIANTS),
                        help="the model: " + ", ".join(f"{v.name} ({v.year}: {v.summary})" for v in VARIANTS.values()))


def add_size_flags(parser):
    for name in SIZE_FLAGS:
        parser.add_argument(f"--{name}", type=int, default=getattr(GPTConfig, name),
                            help=f"model size (default {getattr(GPTConfig, name)}, the handout's); params files "
                                 f"load only into a model of the size they were trained at")
    parser.add_argument("--bottleneck_dim", type=int,
                        help=f"the perceiver's number of learned queries (default {GPTConfig.bottleneck_dim}, the "
                             f"public runs'); like the size, give it to every command that reads its params")


def build_model(vocab_size, block_size, variant, args, **config):
    """The GPT of the variant, and of the size and dropout the flags in args give; config sets the rest."""
    size = {name: getattr(args, name) for name in SIZE_FLAGS}
    if min(size.values()) < 1 or size["n_embd"] % size["n_head"]:
        raise InputError(f"--n_layer {size['n_layer']} --n_head {size['n_head']} --n_embd {size['n_embd']}: each "
                         f"must be at least 1, and n_embd a multiple of n_head (the heads split it)")
    parameters = 12 * size["n_layer"] * size["n_embd"] ** 2  # each block's attention (4 n_embd^2) and MLP (8)
    if parameters > MOST_PARAMETERS:
        raise InputError(f"--n_layer {size['n_layer']} --n_embd {size['n_embd']}: about {parameters:.1e} parameters, "
                         f"more than the {MOST_PARAMETERS:.0e} any one GPU could train; choose a smaller size")
    dropout = getattr(args, "dropout", None)  # --dropout: one rate for embeddings, attention and residuals
    if dropout is not None:
        config = dict(embd_pdrop=dropout, resid_pdrop=dropout, attn_pdrop=dropout, **config)
    bottleneck_dim = getattr(args, "bottleneck_dim", None)
    if bottleneck_dim is not None:
        if not VARIANTS[variant].bottleneck:
            with_one = " or ".join(v.name for v in VARIANTS.values() if v.bottleneck)
            raise InputError(f"--bottleneck_dim {bottleneck_dim} is the {with_one}'s; {variant} has no bottleneck: "
                             f"leave the flag out, or run {with_one}")
        config["bottleneck_dim"] = bottleneck_dim
    try:
        return GPT(GPTConfig(vocab_size, block_size, variant=variant, **size, **config))
    except ValueError as error:  # a size this variant cannot be built at
        raise InputError(f"{variant}: {error}") from None


def save_params(model, path):
    with atomic_output(path, "wb") as f:
        torch.save({name: tensor.cpu() for name, tensor in model.state_dict().items()}, f)


def snapshot_path(params_path, epoch):
    """Where a training run writing params_path keeps its params as they were after `epoch` epochs."""
    return f"{params_path}{SNAPSHOT_SUFFIX}{epoch}"


def metrics_path(params_path):
    """Where a training run writing params_path logs each step (loss, learning rate): what plot.py draws."""
    return f"{params_path}.metrics.jsonl"


def checkpoint_path(params_path):
    """Where a training run writing params_path keeps its state to resume from, until the params are written."""
    return f"{params_path}.checkpoint"


def load_params(model, path, device):
    try:
        state_dict = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise InputError(f"params file {path} does not exist{did_you_mean(path)}") from None
    except OSError as error:
        raise InputError(f"params file {path} cannot be read: {error.strerror}") from None
    except pickle.UnpicklingError:  # what weights_only raises on anything but tensors and plain values
        raise InputError(f"{path} is not a params file (it does not load as tensors and plain values alone; "
                         f"nothing in it was run): read params that a pretrain or finetune wrote") from None
    except Exception as error:
        raise InputError(f"{path} is not a params file ({type(error).__name__} while loading it)") from None
    found = params_variants(state_dict) if isinstance(state_dict, dict) else []
    if not found:
        raise InputError(f"{path} is not a params file of this model (its names are no variant's)")
    if model.variant not in found:
        raise InputError(f"{path} holds {' or '.join(found)} params, but the command asks for {model.variant}: "
                         f"run with {found[0]}, or read a {model.variant} params file")
    if not fits(state_dict, model.state_dict()):
        layers, width = size_of(state_dict)
        bottleneck = f" --bottleneck_dim {state_dict['down_block.C'].shape[1]}" if "down_block.C" in state_dict else ""
        raise InputError(f"{path} holds a model of {shape_of(state_dict)}, but this command builds one of "
                         f"{shape_of(model.state_dict())}: run with --n_layer {layers} --n_embd {width}{bottleneck} "
                         f"(and the --n_head it was trained with), or read params made with this size and this corpus")
    model.load_state_dict(state_dict, strict=True)


def params_variants(state_dict):
    """The variants whose params have the names this state_dict has (in VARIANTS' order; [] if none)."""
    return variants_by_names(tuple(VARIANTS.values())).get(name_pattern(state_dict), [])


def name_pattern(state_dict):
    """A state_dict's names with the block numbers taken out: what its variant decides, not its size."""
    return frozenset(re.sub(r"^blocks\.\d+\.", "blocks.N.", name) for name in state_dict)


@functools.cache
def variants_by_names(variants):
    """
    {name pattern: [variant names]}, read off a tiny model of each variant at 2 and 3 layers (a
    2-layer perceiver has no middle blocks). Built on the CPU with torch's generator put back
    after, so that no draw is taken from what training uses; not on the meta device, whose
    initialisation imports torch._dynamo (2 s of every evaluate command).
    """
    patterns = {}
    for name in (variant.name for variant in variants):
        for n_layer in (2, 3):
            with torch.random.fork_rng(devices=[]):
                model = GPT(GPTConfig(4, 8, variant=name, n_layer=n_layer, n_head=2, n_embd=8, bottleneck_dim=4))
            found = patterns.setdefault(name_pattern(model.state_dict()), [])
            if name not in found:
                found.append(name)
    return patterns


def fits(state_dict, expected):
    return state_dict.keys() == expected.keys() and all(state_dict[k].shape == expected[k].shape for k in expected)


def size_of(state_dict):
    """(layers, n_embd) read off a state_dict; '?' where it does not tell."""
    layers = len({name.split(".")[1] for name in state_dict if name.startswith("blocks.")})
    layers += 2 if "down_block.C" in state_dict else 0  # the perceiver's down and up blocks
    width = state_dict["tok_emb.weight"].shape[1] if "tok_emb.weight" in state_dict else "?"
    return layers, width


def shape_of(state_dict):
    """A model's size in words, read off its params: layers, width, vocabulary, block (and bottleneck)."""
    layers, width = size_of(state_dict)
    vocabulary = state_dict["tok_emb.weight"].shape[0] if "tok_emb.weight" in state_dict else "?"
    masks = [tensor.shape[-1] for name, tensor in state_dict.items() if name.endswith("attn.mask")]
    block = state_dict["pos_emb"].shape[1] if "pos_emb" in state_dict else max(masks, default="?")
    bottleneck = f", bottleneck {state_dict['down_block.C'].shape[1]}" if "down_block.C" in state_dict else ""
    return f"{layers} layers, n_embd {width}, a vocabulary of {vocabulary}, block {block}{bottleneck}"
