"""Any image-folder dataset: ``root/train/<class>/*``, ``root/test/<class>/*`` (torchvision's layout) and, for images
nobody has labeled yet, ``root/unlabeled/**``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from cbal_lightning.data.datamodule import ActiveDataModule, ImageFiles, RawData
from cbal_lightning.data.errors import DatasetFormatError, DatasetNotFoundError
from cbal_lightning.data.transforms import IMAGENET_STATS
from cbal_lightning.pools import UNKNOWN

__all__ = ["ImageFolderDataModule"]


def _classes(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise DatasetNotFoundError(
            f"image folder not found: expected {folder}/<class>/<image> (and the same classes under test/ beside it)"
        )
    try:
        return find_classes(str(folder))[0]
    except FileNotFoundError as err:
        raise DatasetNotFoundError(f"{folder}: no class folders ({err})") from err


def _unlabeled_files(folder: Path) -> list[str]:
    """Image files anywhere under ``folder`` (any nesting), sorted; hidden files and folders are skipped."""
    return sorted(
        str(p) for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _samples(folder: Path, classes: list[str]) -> tuple[ImageFiles, np.ndarray]:
    try:
        samples = make_dataset(str(folder), {c: i for i, c in enumerate(classes)}, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as err:  # a class folder without images
        raise DatasetNotFoundError(f"{folder}: {err}") from err
    return ImageFiles([p for p, _ in samples]), np.asarray([y for _, y in samples], dtype=np.int64)


class ImageFolderDataModule(ActiveDataModule):
    """Images under ``root/train/<class>/`` and, optionally, ``root/test/<class>/`` (without it: no test metrics);
    classes in sorted folder-name order.

    Two uses:

    * simulation (no ``unlabeled/``): every train image has a label, and the paper's split draws the initial set
      and the long-tailed pool from them (Sec. 5.1);
    * a real pool: images nobody has labeled yet go under ``root/unlabeled/`` (any nesting, any file names). Then
      every image of ``train/`` is the initial labeled set and ``unlabeled/`` is the pool, as it is (no long-tail
      cut); their train indices follow those of ``train/``, in sorted path order. A person labels the queries
      (:class:`~cbal_lightning.oracle.HumanOracle`).

    The class folders are listed in ``__init__`` (so ``num_classes`` is known at once); the image files in
    ``setup()``. Images are read lazily as RGB, resized (shorter side) and centre-cropped to ``image_size``,
    which by default is the shorter side of the first train image (no resizing for same-size images).
    Augmentation: random crops with zero padding of ``image_size // 8`` (4 for 32x32) and horizontal flips.

    Args:
        root: the folder holding ``train/``, ``test/`` and optionally ``unlabeled/``.
        image_size: side of the square model input; default from the first train image.
        mean, std: normalisation per channel on [0, 1]; default ImageNet's statistics.
        **kwargs: :class:`~cbal_lightning.data.ActiveDataModule` arguments.

    Example:
        >>> dm = ImageFolderDataModule(root="data/cifar10-jpeg", imbalance_factor=0.1)  # doctest: +SKIP
        >>> dm.setup("fit")  # doctest: +SKIP
        >>> dm.num_classes, dm.pools.initial_size  # doctest: +SKIP
        (10, 5000)
    """

    def __init__(
        self,
        root: str = "data",
        image_size: int | None = None,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        self.root = root
        self.train_dir, self.test_dir = Path(root).expanduser() / "train", Path(root).expanduser() / "test"
        self.unlabeled_dir = Path(root).expanduser() / "unlabeled"
        self.classes = _classes(self.train_dir)
        test_classes = _classes(self.test_dir) if self.test_dir.is_dir() else self.classes  # no test/: no test set
        if test_classes != self.classes:
            only_train = sorted(set(self.classes) - set(test_classes))
            only_test = sorted(set(test_classes) - set(self.classes))
            raise DatasetFormatError(
                f"{self.train_dir} and {self.test_dir} must hold the same class folders; only in train: {only_train}, "
                f"only in test: {only_test}"
            )
        self.num_classes = len(self.classes)
        self.image_size = self.resize = image_size or self._first_image_size()
        self.padding = self.image_size // 8
        self.stats = (tuple(mean or IMAGENET_STATS[0]), tuple(std or IMAGENET_STATS[1]))
        if len(self.stats[0]) != 3 or len(self.stats[1]) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got {mean!r} and {std!r}")
        self._check_tail_classes()

    def _first_image_size(self) -> int:
        folder = self.train_dir / self.classes[0]
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMG_EXTENSIONS:
                with Image.open(path) as image:
                    return min(image.size)
        raise DatasetNotFoundError(f"no images in {folder} (extensions {', '.join(IMG_EXTENSIONS)})")

    def _load(self) -> RawData:
        train_images, train_targets = _samples(self.train_dir, self.classes)
        if self.unlabeled_dir.is_dir():
            unlabeled = _unlabeled_files(self.unlabeled_dir)
            if not unlabeled:
                raise DatasetNotFoundError(
                    f"{self.unlabeled_dir} holds no images (extensions {', '.join(IMG_EXTENSIONS)}); put the images "
                    "nobody has labeled there, or remove the folder to simulate a pool from train/"
                )
            train_images = ImageFiles(train_images.paths + unlabeled)
            train_targets = np.concatenate([train_targets, np.full(len(unlabeled), UNKNOWN, dtype=np.int64)])
        if not self.test_dir.is_dir():
            return RawData(train_images, train_targets, ImageFiles([]), np.zeros(0, dtype=np.int64))
        test_images, test_targets = _samples(self.test_dir, self.classes)
        return RawData(train_images, train_targets, test_images, test_targets)
