"""The built-in merge methods, one module each; importing this package registers them.

Training-free: average, task_arithmetic, ties, dare, and the per-matrix tsv, iso_c,
iso_cts, wudi. Learned (they need a
:class:`~silorec.merging.base.MergeContext`): mergerec, adamerging, distill.

Each method is a few lines composing :mod:`silorec.merging.steps`. To add one, write a
module here with a :class:`~silorec.merging.base.MergeParams` subclass and a function
decorated with :func:`~silorec.merging.base.register_method`, and import it below.
"""

from silorec.merging.methods import (
    adamerging,
    average,
    dare,
    distill,
    iso_c,
    iso_cts,
    mergerec,
    task_arithmetic,
    ties,
    tsv,
    wudi,
)

__all__ = [
    "adamerging",
    "average",
    "dare",
    "distill",
    "iso_c",
    "iso_cts",
    "mergerec",
    "task_arithmetic",
    "ties",
    "tsv",
    "wudi",
]
