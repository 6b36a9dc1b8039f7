"""
The two datasets of the assignment, and the character vocabulary they share.

CharCorruptionDataset turns each Wikipedia biography into a span-corruption example for
pretraining; NameDataset turns "Where was NAME born?<TAB>PLACE" lines into finetuning
examples in which only the answer carries loss. Run `python src/dataset.py namedata` or
`python src/dataset.py charcorruption` to see a few decoded examples.

__getitem__ is the original's way, one example at a time. Training takes whole batches from
`batches()` instead: tensor code that runs where the model does (on a GPU, no worker
processes and no copies per step), with each row's length known on the host, so that the
trainer can cut a batch's padding without waiting for the device.
"""

import argparse
import random

import torch
from torch.utils.data import Dataset

PAD_CHAR = "\u25A1"   # □, id 0: fills every example up to block_size and never carries loss
MASK_CHAR = "\u2047"  # ⁇, id 1: marks where a span was cut out, and brackets every answer
PAD_ID, MASK_ID = 0, 1
BLOCK_SIZE = 128      # the assignment's: every example, and the model's context, is 128 characters


class CharCorruptionDataset(Dataset):
    """
    One example per document (line) of the pretraining text. The vocabulary is built here,
    from the whole text, and every other dataset borrows it.
    """

    def __init__(self, data, block_size):
        if not data.strip():
            raise ValueError("the pretraining text is empty; give a text with one document per line")
        for reserved, name in ((PAD_CHAR, "PAD"), (MASK_CHAR, "MASK")):
            if reserved in data:
                line = data[:data.index(reserved)].count("\n") + 1
                raise ValueError(f"the pretraining text contains the reserved {name} character "
                                 f"{reserved!r} (U+{ord(reserved):04X}) on line {line}; remove it and run again")
        if int(block_size * 7 / 8) + 2 > block_size:
            # the longest truncated document plus its two MASKs must fit in one block
            raise ValueError(f"block_size must be at least 9 for span corruption, got {block_size}")
        chars = sorted(set(data))
        self.itos = [PAD_CHAR, MASK_CHAR] + chars
        self.stoi = {ch: i for i, ch in enumerate(self.itos)}
        self.PAD_CHAR, self.MASK_CHAR = PAD_CHAR, MASK_CHAR
        self.block_size = block_size
        self.vocab_size = len(self.itos)
        # an empty line (such as the one after an editor's final newline) is no document: it would
        # only teach that one MASK follows another; wiki.txt has none
        self.data = [document for document in data.split("\n") if document]
        self.documents, self.lengths = encode_document_starts(self.data, self.stoi, int(block_size * 7 / 8))
        print(f"data has {len(data)} characters, {self.vocab_size} unique.")

    def __len__(self):
        return len(self.data)

    def __getitem__(self, idx):
        document = self.data[idx]
        truncated = document[:random.randint(4, int(self.block_size * 7 / 8))]
        masked_length = random_masked_length(len(truncated))
        start = random.randint(0, len(truncated) - masked_length)
        prefix = truncated[:start]
        masked_content = truncated[start:start + masked_length]
        suffix = truncated[start + masked_length:]
        masked_string = prefix + MASK_CHAR + suffix + MASK_CHAR + masked_content
        masked_string += PAD_CHAR * (self.block_size - len(masked_string))
        return encode(self.stoi, masked_string[:-1]), encode(self.stoi, masked_string[1:])

    def batches(self, batch_size, generator, device):
        """
        One epoch of batches in order, built with tensor code where they are used: (x, y,
        lengths), x and y on device, lengths each row's length up to its last target on the
        host, so that training can cut a batch without asking the device. The same
        distributions as __getitem__, drawn from generator, all of the epoch's draws at once.
        """
        truncated, masked, start = draw_spans(self.lengths, self.block_size, generator)
        # a few kilobytes once an epoch, copied without a stream synchronisation
        documents = self.documents.to(device, non_blocking=True)
        on_device = [t.to(device, non_blocking=True) for t in (truncated, masked, start)]
        for rows in batch_slices(len(self), batch_size):
            x, y = lay_out_spans(documents[rows], *(t[rows] for t in on_device), self.block_size)
            # the layout ends with the masked span, right after the second MASK
            yield x, y, truncated[rows] + 1


def encode_document_starts(documents, stoi, width):
    """Each document's first `width` characters as ids (PAD after a shorter one), and their lengths."""
    encoded = torch.zeros(len(documents), width, dtype=torch.long)
    lengths = torch.zeros(len(documents), dtype=torch.long)
    for row, document in enumerate(documents):
        start = document[:width]
        encoded[row, :len(start)] = torch.tensor([stoi[ch] for ch in start], dtype=torch.long)
        lengths[row] = len(start)
    return encoded, lengths


def batch_slices(n, batch_size):
    return [slice(begin, begin + batch_size) for begin in range(0, n, batch_size)]


def draw_spans(lengths, block_size, generator=None):
    """
    __getitem__'s draws for documents of these lengths, all at once: the truncated length
    (uniform on 4 .. 7/8 of the block, cut to the document), the masked length (see
    random_masked_length) and where the masked span starts (uniform over where it fits).
    """
    n = len(lengths)
    truncated = torch.minimum(lengths, torch.randint(4, int(block_size * 7 / 8) + 1, (n,), generator=generator))
    quarter = torch.clamp(torch.round(truncated / 4), min=1).long()
    masked = torch.minimum(truncated, 1 + (torch.rand(n, generator=generator) * (2 * quarter - 1)).long())
    start = (torch.rand(n, generator=generator) * (truncated - masked + 1)).long()
    return truncated, masked, start


def lay_out_spans(documents, truncated, masked, start, block_size):
    """
    The examples `prefix ⁇ suffix ⁇ masked □□…` of a batch, as (x, y): documents is B x W ids
    (the start of each document), the rest what draw_spans drew for them. Computes, for every
    output position, which document character (or MASK, or PAD) goes there.
    """
    suffix = truncated - start - masked
    start, masked, suffix = start[:, None], masked[:, None], suffix[:, None]
    position = torch.arange(block_size, device=documents.device)[None, :]
    in_prefix = position < start
    in_suffix = (position > start) & (position <= start + suffix)
    masked_from = start + suffix + 2  # where the masked content goes, after the second MASK
    in_masked = (position >= masked_from) & (position < masked_from + masked)
    source = torch.where(in_prefix, position, torch.where(in_suffix, position - 1 + masked,
                                                          start + position - masked_from))
    characters = documents.gather(1, source.clamp(0, documents.size(1) - 1))
    out = torch.where(in_prefix | in_suffix | in_masked, characters, PAD_ID)
    out = torch.where((position == start) | (position == start + suffix + 1), MASK_ID, out)
    return out[:, :-1], out[:, 1:]


def random_masked_length(length):
    """
    Uniform on 1 .. 2q-1 with q = round(length / 4), so the mean is q: a quarter of the
    text on average, and anything from a single character to about half of it.
    """
    quarter = max(1, round(length / 4))
    return min(length, random.randint(1, 2 * quarter - 1))


class NameDataset(Dataset):
    """
    Finetuning examples `QUESTION⁇PLACE⁇□□…`. The targets are PAD over the question, so the
    loss only asks the model to produce ⁇PLACE⁇ after the question mark.
    """

    def __init__(self, pretraining_dataset, data):
        self.PAD_CHAR, self.MASK_CHAR = PAD_CHAR, MASK_CHAR
        self.stoi = pretraining_dataset.stoi
        self.itos = pretraining_dataset.itos
        self.block_size = pretraining_dataset.block_size
        # the original drops non-ASCII characters (accents in names and places) before training
        ascii_text = data.encode("utf-8").decode("ascii", errors="ignore")
        self.data = []
        for number, line in enumerate(ascii_text.split("\n"), start=1):
            if line:
                check_name_line(line, number, self.stoi, self.block_size)
                self.data.append(line)
        # every example as rows of ids, built once: each epoch of training slices its batches from them
        examples = [self[i] for i in range(len(self))]
        empty = torch.zeros(0, self.block_size - 1, dtype=torch.long)
        self.inputs = torch.stack([x for x, _ in examples]) if examples else empty
        self.targets = torch.stack([y for _, y in examples]) if examples else empty
        self.target_lengths = row_lengths(self.targets)

    def __len__(self):
        return len(self.data)

    def __getitem__(self, idx):
        question, place = self.data[idx].split("\t")
        s = question + MASK_CHAR + place + MASK_CHAR
        s += PAD_CHAR * (self.block_size - len(s))
        x = s[:-1]
        y = PAD_CHAR * (len(question) - 1) + s[len(question):]
        return encode(self.stoi, x), encode(self.stoi, y)

    def batches(self, batch_size, generator, device):
        """One epoch of batches in order, as CharCorruptionDataset.batches gives them (none of it is random)."""
        inputs, targets = self.inputs.to(device, non_blocking=True), self.targets.to(device, non_blocking=True)
        for rows in batch_slices(len(self), batch_size):
            yield inputs[rows], targets[rows], self.target_lengths[rows]


def row_lengths(y):
    """Each row's length up to its last non-PAD target (at least 1, so that a row without targets still runs)."""
    positions = torch.arange(1, y.size(1) + 1, device=y.device)
    return (positions * (y != PAD_ID)).amax(dim=1).clamp(min=1)


def check_name_line(line, number, stoi, block_size):
    """Refuse, with its line number, a line that would make a broken or silently wrong example."""
    fields = line.split("\t")
    if len(fields) != 2:
        raise ValueError(f"line {number} has {len(fields) - 1} tabs; each line must be QUESTION<TAB>PLACE")
    question, place = fields
    if not question.strip():
        raise ValueError(f"line {number} has no question before the tab")
    if not place.strip():
        raise ValueError(f"line {number} has an empty place after the tab")
    unknown = sorted(set(ch for ch in line.replace("\t", "") if ch not in stoi))
    if unknown:
        raise ValueError(f"line {number}: {' '.join(map(repr, unknown))} not in the vocabulary of the "
                         f"pretraining corpus; remove or replace it")
    if len(question) + len(place) + 2 > block_size:
        raise ValueError(f"line {number} makes an example of {len(question) + len(place) + 2} characters "
                         f"(question, place and two {MASK_CHAR}); the block holds {block_size}")


def encode(stoi, text):
    return torch.tensor([stoi[ch] for ch in text], dtype=torch.long)


def decode(itos, ids):
    return "".join(itos[int(i)] for i in ids)


def main():
    parser = argparse.ArgumentParser(description="Print four decoded examples of a dataset.")
    parser.add_argument("dataset_type", choices=["namedata", "charcorruption"],
                        help="namedata: birth_places_train.tsv; charcorruption: wiki.txt")
    args = parser.parse_args()
    corruption_dataset = CharCorruptionDataset(open("wiki.txt", encoding="utf-8").read(), BLOCK_SIZE)
    if args.dataset_type == "namedata":
        dataset = NameDataset(corruption_dataset, open("birth_places_train.tsv", encoding="utf-8").read())
    else:
        dataset = corruption_dataset
    for _, (x, y) in zip(range(4), dataset):
        print("x:", decode(dataset.itos, x))
        print("y:", decode(dataset.itos, y))


if __name__ == "__main__":
    main()
