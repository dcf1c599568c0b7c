"""CIFAR-10 and CIFAR-100 (Sec. 5.1: 50K train, 10K test images of 32x32) from torchvision's python-pickle layout.

The batches are read here, not by ``torchvision.datasets.CIFAR10``: that class verifies the MD5 of every file on
each load. torchvision is used only to download (and verify) the archive, with ``download=True``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.utils import download_and_extract_archive

from cbal_lightning.data.datamodule import ActiveDataModule, RawData
from cbal_lightning.data.errors import DatasetFormatError, DatasetNotFoundError
from cbal_lightning.data.transforms import CIFAR10_STATS, CIFAR100_STATS

__all__ = ["CIFAR10DataModule", "CIFAR100DataModule", "read_cifar_batches"]

_URL_PAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"


def _str_keys(entry: dict) -> dict[str, Any]:
    # Python-2 pickles give str keys under encoding="latin1"; Python-3 pickles (or encoding="bytes") give bytes.
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as err:
        raise DatasetFormatError(f"{path}: not a CIFAR python-pickle batch ({type(err).__name__}: {err})") from err
    if not isinstance(entry, dict):
        raise DatasetFormatError(f"{path}: expected a pickled dict, found {type(entry).__name__}")
    return _str_keys(entry)


def read_cifar_batches(paths: list[Path], label_key: str) -> tuple[torch.Tensor, np.ndarray]:
    """Images ``(N, 3, 32, 32)`` uint8 and labels ``(N,)`` int64 of the given batch files, concatenated in order."""
    images, labels = [], []
    for path in paths:
        entry = _unpickle(path)
        try:
            data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            target = np.asarray(entry[label_key], dtype=np.int64).reshape(-1)
        except (KeyError, ValueError) as err:
            raise DatasetFormatError(f"{path}: expected 'data' (N x 3072 uint8) and '{label_key}' ({err!r})") from err
        if len(data) != len(target):
            raise DatasetFormatError(f"{path}: {len(data)} images but {len(target)} labels")
        images.append(data)
        labels.append(target)
    return torch.from_numpy(np.concatenate(images)), np.concatenate(labels)


def _names(path: Path, key: str) -> list[str]:
    try:
        names = _unpickle(path)[key]
    except KeyError as err:
        raise DatasetFormatError(f"{path}: no '{key}' entry") from err
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


class _CIFAR(ActiveDataModule):
    folder: str
    title: str
    source: type[CIFAR10]
    train_files: tuple[str, ...]
    test_file: str
    meta: tuple[str, str]  # file, key of the class names
    label_key: str

    def __init__(self, root: str = "data", download: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.download = download
        self.classes = [str(c) for c in range(self.num_classes)]  # the names are read from the meta file in setup()
        self._check_tail_classes()

    @property
    def data_dir(self) -> Path:
        return Path(self.root).expanduser() / self.folder

    def _missing(self) -> list[Path]:
        names = (*self.train_files, self.test_file, self.meta[0])
        return [self.data_dir / n for n in names if not (self.data_dir / n).is_file()]

    def prepare_data(self) -> None:
        """Download and verify the archive (torchvision's URL and MD5) if ``download=True`` and files are missing."""
        if self.download and self._missing():
            src = self.source
            download_and_extract_archive(src.url, str(Path(self.root).expanduser()), filename=src.filename, md5=src.tgz_md5)

    def _load(self) -> RawData:
        self.prepare_data()
        missing = self._missing()
        if missing:
            raise DatasetNotFoundError(
                f"{self.title} not found at {self.data_dir} (expected {', '.join(self._expected())}; missing "
                f"{', '.join(p.name for p in missing)}): pass download=True, or place the python version from "
                f"{_URL_PAGE} there"
            )
        train_x, train_y = read_cifar_batches([self.data_dir / n for n in self.train_files], self.label_key)
        test_x, test_y = read_cifar_batches([self.data_dir / self.test_file], self.label_key)
        names = _names(self.data_dir / self.meta[0], self.meta[1])
        if len(names) != self.num_classes:
            raise DatasetFormatError(f"{self.data_dir / self.meta[0]}: {len(names)} class names, expected {self.num_classes}")
        self.classes = names
        return RawData(train_x, train_y, test_x, test_y)

    def _expected(self) -> list[str]:
        return [*self.train_files, self.test_file, self.meta[0]]


class CIFAR10DataModule(_CIFAR):
    """CIFAR-10 from ``root/cifar-10-batches-py`` (``download=True`` fetches it).

    Example:
        >>> dm = CIFAR10DataModule(root="data", imbalance_factor=0.1, download=True)  # doctest: +SKIP
        >>> dm.setup("fit")  # doctest: +SKIP
        >>> dm.pools.num_candidates, dm.pools.initial_size  # doctest: +SKIP
        (29750, 5000)
    """

    folder, title, source, label_key = "cifar-10-batches-py", "CIFAR-10", CIFAR10, "labels"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_file, meta = "test_batch", ("batches.meta", "label_names")
    num_classes, image_size, padding, stats = 10, 32, 4, CIFAR10_STATS

    def _expected(self) -> list[str]:
        return ["data_batch_1..5", "test_batch", "batches.meta"]


class CIFAR100DataModule(_CIFAR):
    """CIFAR-100 (fine labels) from ``root/cifar-100-python`` (``download=True`` fetches it)."""

    folder, title, source, label_key = "cifar-100-python", "CIFAR-100", CIFAR100, "fine_labels"
    train_files, test_file, meta = ("train",), "test", ("meta", "fine_label_names")
    num_classes, image_size, padding, stats = 100, 32, 4, CIFAR100_STATS
