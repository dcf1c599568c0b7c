"""Image transforms: the paper's augmentation for training, none for the pool and the test set.

Section 5.1 trains with random crops (zero padding) and horizontal flips. Every pipeline ends in a normalised
float32 tensor ``(C, H, W)``; inputs may be PIL images, uint8 tensors or float tensors in [0, 1].
"""

from __future__ import annotations

from typing import Sequence

import torch
from torchvision.transforms import v2

__all__ = [
    "CIFAR10_STATS", "CIFAR100_STATS", "DIGITS_STATS", "IMAGENET_STATS", "Stats", "eval_transform", "train_transform",
]

Stats = tuple[tuple[float, ...], tuple[float, ...]]
"""(mean, std) per channel, on images scaled to [0, 1]."""

CIFAR10_STATS: Stats = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS: Stats = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
IMAGENET_STATS: Stats = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
DIGITS_STATS: Stats = ((0.305,), (0.319,))
"""Of all 1,797 sklearn digits scaled to [0, 1] and upsampled to 16x16."""


def _head(resize: int | None) -> list[v2.Transform]:
    steps: list[v2.Transform] = [v2.ToImage()]
    if resize is not None:  # a no-op for images already resize x resize
        steps += [v2.Resize(resize, antialias=True), v2.CenterCrop(resize)]
    return steps


def _tail(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std)), v2.ToPureTensor()]


def train_transform(
    size: int, padding: int, mean: Sequence[float], std: Sequence[float], *, flip: bool = True, resize: int | None = None
) -> v2.Compose:
    """``RandomCrop(size, padding)`` with zero padding, ``RandomHorizontalFlip`` if ``flip``, then normalise (Sec. 5.1)."""
    augment: list[v2.Transform] = [v2.RandomCrop(size, padding=padding, fill=0, padding_mode="constant")]
    if flip:
        augment.append(v2.RandomHorizontalFlip())
    return v2.Compose(_head(resize) + augment + _tail(mean, std))


def eval_transform(mean: Sequence[float], std: Sequence[float], *, resize: int | None = None) -> v2.Compose:
    """Deterministic: scale to [0, 1] and normalise (after an optional resize and centre crop)."""
    return v2.Compose(_head(resize) + _tail(mean, std))
