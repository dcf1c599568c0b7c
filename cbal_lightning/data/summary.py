"""Datamodules by name, and the per-class table of a split (``cbal-lightning split``)."""

from __future__ import annotations

import inspect
from typing import Any

from cbal_lightning.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from cbal_lightning.data.datamodule import ActiveDataModule
from cbal_lightning.data.digits import DigitsDataModule
from cbal_lightning.data.image_folder import ImageFolderDataModule
from cbal_lightning.data.tiny_imagenet import TinyImageNetDataModule

__all__ = ["DATAMODULES", "build_datamodule", "split_table"]

DATAMODULES: dict[str, type[ActiveDataModule]] = {
    "cifar10": CIFAR10DataModule,
    "cifar100": CIFAR100DataModule,
    "tiny-imagenet": TinyImageNetDataModule,
    "imagefolder": ImageFolderDataModule,
    "digits": DigitsDataModule,
}


def build_datamodule(name: str, **kwargs: Any) -> ActiveDataModule:
    """``DATAMODULES[name](**kwargs)``; ``ValueError`` for an unknown name or an argument it does not take."""
    if name not in DATAMODULES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATAMODULES)}")
    cls = DATAMODULES[name]
    accepted = set(inspect.signature(cls.__init__).parameters) | set(inspect.signature(ActiveDataModule.__init__).parameters)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(f"dataset {name!r} takes no argument {', '.join(unknown)}")
    return cls(**kwargs)


def split_table(dm: ActiveDataModule) -> str:
    """Per class: initial labels, samples available before the cut, pool after it, candidates, tail; then totals.

    A real pool (train labels unknown for some samples) has no simulated split: its table is the labeled samples per
    class and the number of unlabeled ones.
    """
    dm.setup("fit")
    split = dm.split
    if split is None:
        return _real_pool_table(dm)
    tail = set(split.tail_classes)
    names = list(getattr(dm, "classes", None) or range(dm.num_classes))
    header = ("class", "name", "initial", "available", "pool", "candidates", "tail")
    rows = [
        (str(c), str(names[c]), str(split.initial_per_class[c]), str(split.available_per_class[c]),
         str(split.pool_per_class[c]), str(split.initial_per_class[c] + split.pool_per_class[c]), "yes" if c in tail else "no")
        for c in range(split.num_classes)
    ]
    totals = ("total", "", str(split.initial_per_class.sum()), str(split.available_per_class.sum()),
              str(split.pool_per_class.sum()), str(len(split.candidates)), str(len(tail)))
    widths = [max(len(r[i]) for r in (header, *rows, totals)) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(w) if i == 1 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))

    title = (
        f"{type(dm).__name__}: initial_fraction={split.initial_fraction}, imbalance_factor={split.imbalance_factor} "
        f"({split.imbalance_type}), seed={split.seed}; available = left for the pool before the imbalance cut"
    )
    rule = "-" * len(line(header))
    return "\n".join([title, line(header), rule, *map(line, rows), rule, line(totals)])


def _real_pool_table(dm: ActiveDataModule) -> str:
    names = list(getattr(dm, "classes", None) or range(dm.num_classes))
    counts = dm.pools.labeled_counts()
    width = max(len(str(n)) for n in names + ["total"])
    lines = [f"{type(dm).__name__}: a real pool: {dm.pools.num_labeled} labeled samples start the run, "
             f"{dm.pools.num_unlabeled} unlabeled samples (labels unknown) are the pool",
             f"{'class':>5}  {'name'.ljust(width)}  labeled"]
    lines += [f"{c:>5}  {str(n).ljust(width)}  {counts[c]:>7}" for c, n in enumerate(names)]
    lines.append(f"{'total':>5}  {''.ljust(width)}  {counts.sum():>7}")
    return "\n".join(lines)
