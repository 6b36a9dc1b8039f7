"""
The reference figures that handout.py's table sets beside each run (SPEC.md, "Reference figures"):
the rows that are no variant's are written here; a variant's row is its record in model.VARIANTS.
"""

from model import VARIANTS

PRETRAINED_ROW = "{variant}, pretrain + finetune"  # a variant's row: its dev accuracy after part 2(f)
NOT_VARIANTS = {  # run: (the assignment's answer, public runs), dev accuracy in percent
    "London baseline": ("5.0", "5.0"),
    "vanilla, no pretraining": ("1.0", "1.4"),
}


def reference_rows():
    """{table row: (the assignment's answer, public runs)} in the table's order: these rows, then each variant's."""
    variants = {PRETRAINED_ROW.format(variant=name): variant.reference for name, variant in VARIANTS.items()}
    return {**NOT_VARIANTS, **variants}
