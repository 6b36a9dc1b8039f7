"""
CharDataset: a plain text as a character-level language-modelling dataset. Each example is
a chunk of block_size + 1 consecutive characters; the model reads the first block_size and
learns to predict, at every position, the character that comes next.
"""

import torch
from torch.utils.data import Dataset

# The repository's GPT leaves target id 0 out of its loss, because in the assignment's
# datasets id 0 is padding. A plain text has no padding, so id 0 goes to a character the text
# never contains: given to a real character, that character would never be learned.
PAD_CHAR = "\u25A1"  # □


class CharDataset(Dataset):

    def __init__(self, data, block_size):
        if PAD_CHAR in data:
            raise ValueError(f"the text contains {PAD_CHAR!r} (U+{ord(PAD_CHAR):04X}), which id 0 reserves "
                             f"for padding; remove it and run again")
        if len(data) < block_size + 1:
            raise ValueError(f"the text has {len(data)} characters: too few for one chunk of "
                             f"block_size + 1 = {block_size + 1}")
        chars = sorted(set(data))
        self.itos = [PAD_CHAR] + chars
        self.stoi = {ch: i for i, ch in enumerate(self.itos)}
        self.vocab_size = len(self.itos)
        self.block_size = block_size
        # encoded once here, so that drawing a chunk is only a slice
        self.data = torch.tensor([self.stoi[ch] for ch in data], dtype=torch.long)
        print(f"data has {len(data)} characters, {len(chars)} unique (vocabulary of {self.vocab_size} with the pad).")

    def __len__(self):
        # an epoch draws as many chunks as there are places where one can start
        return len(self.data) - self.block_size

    def __getitem__(self, idx):
        # idx is not used: the Trainer walks the dataset in order, and chunks starting at idx,
        # idx + 1, ... would fill each batch with near-copies of one passage; a random start does not
        start = torch.randint(len(self.data) - self.block_size, ()).item()
        chunk = self.data[start:start + self.block_size + 1]
        return chunk[:-1], chunk[1:]
