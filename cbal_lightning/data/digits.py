"""Handwritten digits bundled with scikit-learn: a real, tiny, offline dataset for demos and tests.

``sklearn.datasets.load_digits()`` holds 1,797 greyscale 8x8 images of 10 classes. They are scaled to [0, 1],
upsampled to 16x16 (bilinear) and split, stratified, into train and test with a fixed seed, so every run shares
one test set. Everything lives in memory as tensors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from cbal_lightning.data.datamodule import ActiveDataModule, RawData
from cbal_lightning.data.transforms import DIGITS_STATS

__all__ = ["DigitsDataModule"]

_TEST_SPLIT_SEED = 0  # the train/test partition; the ``seed`` argument only drives the active-learning split


class DigitsDataModule(ActiveDataModule):
    """Long-tailed digits: 1,347 train and 450 test images of 1x16x16 with the defaults.

    Augmentation: ``RandomCrop(16, padding=2)`` without flips (digits are not mirror-symmetric).

    Args:
        test_fraction: share of every class held out as the balanced test set.
        **kwargs: :class:`~cbal_lightning.data.ActiveDataModule` arguments.

    Example:
        >>> dm = DigitsDataModule(imbalance_factor=0.1)
        >>> dm.setup("fit")
        >>> dm.pools.initial_size, dm.pools.num_unlabeled, len(dm.test_dataset)
        (130, 670, 450)
    """

    num_classes, in_channels, image_size, padding, flip, stats = 10, 1, 16, 2, False, DIGITS_STATS

    def __init__(self, test_fraction: float = 0.25, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction!r}")
        self.test_fraction = float(test_fraction)
        self.classes = [str(d) for d in range(10)]
        self._check_tail_classes()

    def _load(self) -> RawData:
        digits = load_digits()
        images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)  # 0..16 -> [0, 1]
        images = F.interpolate(images, size=(16, 16), mode="bilinear", align_corners=False).clamp_(0, 1)
        train, test = train_test_split(
            np.arange(len(images)), test_size=self.test_fraction, stratify=digits.target, random_state=_TEST_SPLIT_SEED
        )
        train, test = np.sort(train), np.sort(test)
        targets = digits.target.astype(np.int64)
        return RawData(images[train], targets[train], images[test], targets[test])
