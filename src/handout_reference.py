"""
The reference figures that handout.py's table sets beside each run (SPEC.md, "Reference figures"):
the rows that are no variant's are written here; a variant's row is its record in model.VARIANTS.
Which variants also get a no-pretraining row of their own is decided here too (own_baseline).
"""

from model import VARIANTS

HANDOUT_YEAR = "2021"  # the handout's variants are this year's
PRETRAINED_ROW = "{variant}, pretrain + finetune"  # a variant's row: its dev accuracy after part 2(f)
NO_PRETRAINING_ROW = "{variant}, no pretraining"   # part 2(d): vanilla's, and each later year's variant's
NOT_VARIANTS = {  # run: (the assignment's answer, public runs), dev accuracy in percent
    "London baseline": ("5.0", "5.0"),
    NO_PRETRAINING_ROW.format(variant="vanilla"): ("1.0", "1.4"),
}
LATER_NO_PRETRAINING = ("not asked", "none published")  # the later years asked for vanilla's baseline only


def own_baseline(name):
    """Whether a variant gets part 2(d) of its own: a later year's does; the handout's two share vanilla's."""
    return VARIANTS[name].year != HANDOUT_YEAR


def reference_rows():
    """
    {table row: (the assignment's answer, public runs)} in the table's order: these rows, then
    each variant's, a later year's variant's without pretraining before its pretrained one.
    """
    rows = dict(NOT_VARIANTS)
    for name, variant in VARIANTS.items():
        if own_baseline(name):
            rows[NO_PRETRAINING_ROW.format(variant=name)] = LATER_NO_PRETRAINING
        rows[PRETRAINED_ROW.format(variant=name)] = variant.reference
    return rows
