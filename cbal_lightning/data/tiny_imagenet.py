"""Tiny-ImageNet (Sec. 5.1: 200 classes of 64x64 images; 500 train and 50 validation images per class).

The official validation set serves as the test set (the test set's labels are not public).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cbal_lightning.data.datamodule import ActiveDataModule, ImageFiles, RawData
from cbal_lightning.data.errors import DatasetFormatError, DatasetNotFoundError
from cbal_lightning.data.transforms import IMAGENET_STATS

__all__ = ["TinyImageNetDataModule"]

_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


def _read_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


class TinyImageNetDataModule(ActiveDataModule):
    """Tiny-ImageNet from ``root/tiny-imagenet-200`` (or ``root`` = that folder), images read lazily from disk.

    Layout: ``wnids.txt`` (class order), ``train/<wnid>/images/*.JPEG``, ``val/images/*.JPEG`` with labels in
    ``val/val_annotations.txt``; optional ``words.txt`` gives readable class names. Augmentation: random 64x64
    crops of the image padded by 8 (an eighth of the side, as 4 is for CIFAR's 32) and horizontal flips.

    Example:
        >>> dm = TinyImageNetDataModule(root="data", imbalance_factor=0.1)  # doctest: +SKIP
        >>> dm.setup("fit")  # doctest: +SKIP
        >>> dm.num_classes, len(dm.test_dataset)  # doctest: +SKIP
        (200, 10000)
    """

    image_size, padding, stats = 64, 8, IMAGENET_STATS

    def __init__(self, root: str = "data", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.data_dir = self._find(Path(root).expanduser())
        self.wnids = _read_lines(self.data_dir / "wnids.txt")
        if not self.wnids or len(set(self.wnids)) != len(self.wnids):
            raise DatasetFormatError(f"{self.data_dir / 'wnids.txt'}: expected one distinct class id (wnid) per line")
        self.num_classes = len(self.wnids)
        self.classes = self._names()
        self._check_tail_classes()

    @staticmethod
    def _find(root: Path) -> Path:
        for candidate in (root / "tiny-imagenet-200", root):
            if (candidate / "wnids.txt").is_file():
                return candidate
        raise DatasetNotFoundError(
            f"Tiny-ImageNet not found: expected {root / 'tiny-imagenet-200' / 'wnids.txt'} (with train/ and val/ beside "
            f"it); download {_URL} and unzip it into {root}"
        )

    def _names(self) -> list[str]:
        words = self.data_dir / "words.txt"
        if not words.is_file():
            return list(self.wnids)
        table = dict(line.split("\t", 1) for line in _read_lines(words) if "\t" in line)
        return [table.get(w, w).split(",")[0].strip() for w in self.wnids]

    def _load(self) -> RawData:
        train_paths: list[Path] = []
        train_targets: list[int] = []
        for label, wnid in enumerate(self.wnids):
            folder = self.data_dir / "train" / wnid / "images"
            files = sorted(folder.glob("*.JPEG")) if folder.is_dir() else []
            if not files:
                raise DatasetNotFoundError(f"Tiny-ImageNet: no train images at {folder}/*.JPEG (class {label} of wnids.txt)")
            train_paths += files
            train_targets += [label] * len(files)
        annotations = self.data_dir / "val" / "val_annotations.txt"
        if not annotations.is_file():
            raise DatasetNotFoundError(f"Tiny-ImageNet: the test labels {annotations} are missing; unzip {_URL} again")
        index = {w: i for i, w in enumerate(self.wnids)}
        test_paths, test_targets = [], []
        for n, line in enumerate(_read_lines(annotations), start=1):
            fields = line.split("\t")
            if len(fields) < 2 or fields[1] not in index:
                raise DatasetFormatError(f"{annotations}, line {n}: expected '<file>\\t<wnid from wnids.txt>...', got {line!r}")
            path = self.data_dir / "val" / "images" / fields[0]
            if not path.is_file():
                raise DatasetNotFoundError(f"Tiny-ImageNet: {path} (listed in {annotations.name}) is missing")
            test_paths.append(path)
            test_targets.append(index[fields[1]])
        return RawData(
            ImageFiles(train_paths), np.asarray(train_targets, dtype=np.int64),
            ImageFiles(test_paths), np.asarray(test_targets, dtype=np.int64),
        )
