"""The long-tailed active-learning split of a train set (Bengar et al., section 5.1 "Long-Tailed Datasets").

1. The initial labeled set: ``floor(initial_fraction * N / C)`` random samples of every class.
2. The unlabeled pool: the remaining ~90 % of the train set with the tail classes cut down. Class ``y`` keeps
   ``keep_y = floor(n_y * f_y + 1/2)`` (``n_y * f_y`` rounded half up) of its ``n_y`` remaining samples, where
   ``f_y = IF`` for the tail classes and ``1`` for the head classes (``"step"``, the paper's text), or
   ``f_y = IF ** (y / (C - 1))`` (``"exp"``, the profile of the official code, after Cui et al.).

Every class is drawn from one seeded permutation: its first samples form the initial set and the next
``keep_y`` ones the pool. Hence, for one seed, the initial set does not depend on the imbalance parameters, and the
pool for a smaller IF is a subset of the pool for a larger one. The test set is never touched.

Example:
    >>> split = long_tail_split([0] * 100 + [1] * 100, initial_fraction=0.1, imbalance_factor=0.1, seed=0)
    >>> split.initial_per_class.tolist(), split.pool_per_class.tolist(), split.tail_classes
    ([10, 10], [90, 9], (1,))
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

__all__ = ["ImbalanceType", "LongTailSplit", "keep_fractions", "keep_counts", "long_tail_split", "stratified_subset",
           "validate_split_params"]

ImbalanceType = Literal["step", "exp"]
IMBALANCE_TYPES: tuple[str, ...] = ("step", "exp")


@dataclass(frozen=True, eq=False)
class LongTailSplit:
    """Result of :func:`long_tail_split`. Index arrays are sorted, int64 and read-only; counts are ``(C,)`` int64."""

    initial: np.ndarray
    """Train indices of the initial labeled set."""
    pool: np.ndarray
    """Train indices of the unlabeled pool after the imbalance cut."""
    tail_classes: tuple[int, ...]
    """Classes that lose samples: the configured tail for ``"step"``; classes ``1..C-1`` for ``"exp"`` with IF < 1."""
    num_classes: int
    initial_per_class: np.ndarray
    """Initial labeled samples per class."""
    available_per_class: np.ndarray
    """``n_y``: samples per class left for the pool before the cut."""
    pool_per_class: np.ndarray
    """``keep_y``: samples per class in the pool after the cut."""
    initial_fraction: float
    imbalance_factor: float
    imbalance_type: ImbalanceType
    seed: int

    @property
    def candidates(self) -> np.ndarray:
        """Sorted union of ``initial`` and ``pool``: the active-learning universe."""
        return np.union1d(self.initial, self.pool).astype(np.int64)


def validate_split_params(
    initial_fraction: float,
    imbalance_factor: float,
    imbalance_type: str,
    tail_classes: Sequence[int] | None = None,
    num_classes: int | None = None,
) -> tuple[int, ...] | None:
    """Raise ``ValueError`` naming the bad parameter and the fix; return ``tail_classes`` as a sorted tuple (or None)."""
    if isinstance(initial_fraction, bool) or not isinstance(initial_fraction, (int, float)) or not 0 < initial_fraction < 1:
        raise ValueError(
            f"initial_fraction must be a number strictly between 0 and 1 (the paper uses 0.1), got {initial_fraction!r}"
        )
    return _validate_imbalance(imbalance_factor, imbalance_type, tail_classes, num_classes)


def _validate_imbalance(
    imbalance_factor: float, imbalance_type: str, tail_classes: Sequence[int] | None, num_classes: int | None
) -> tuple[int, ...] | None:
    if isinstance(imbalance_factor, bool) or not isinstance(imbalance_factor, (int, float)) or not 0 < imbalance_factor <= 1:
        raise ValueError(
            f"imbalance_factor must be in (0, 1]: the fraction of each tail class kept in the pool "
            f"(1 = balanced pool; the paper uses 0.1 and 0.3), got {imbalance_factor!r}"
        )
    if imbalance_type not in IMBALANCE_TYPES:
        raise ValueError(f"imbalance_type must be one of {IMBALANCE_TYPES}, got {imbalance_type!r}")
    if tail_classes is None:
        return None
    if imbalance_type == "exp":
        raise ValueError(
            "tail_classes applies to imbalance_type='step' only: the 'exp' profile cuts every class y by IF**(y/(C-1)); "
            "drop tail_classes or use imbalance_type='step'"
        )
    if any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) for c in tail_classes):
        raise ValueError(f"tail_classes must be class indices (ints), got {list(tail_classes)}")
    tail = tuple(sorted(int(c) for c in tail_classes))
    if len(set(tail)) != len(tail):
        raise ValueError(f"tail_classes has repeated classes: {list(tail_classes)}")
    if num_classes is not None and tail and not (0 <= tail[0] and tail[-1] < num_classes):
        raise ValueError(f"tail_classes must lie in 0..{num_classes - 1}, got {list(tail)}")
    return tail


def keep_fractions(
    num_classes: int,
    imbalance_factor: float,
    imbalance_type: ImbalanceType = "step",
    tail_classes: Sequence[int] | None = None,
) -> np.ndarray:
    """``f_y`` per class: the fraction of the post-initial samples of class ``y`` kept in the pool.

    Example:
        >>> keep_fractions(4, 0.1).tolist()
        [1.0, 1.0, 0.1, 0.1]
        >>> keep_fractions(3, 0.01, "exp").round(4).tolist()
        [1.0, 0.1, 0.01]
    """
    tail = _validate_imbalance(imbalance_factor, imbalance_type, tail_classes, num_classes)
    if imbalance_type == "exp":
        exponents = np.arange(num_classes) / max(num_classes - 1, 1)
        return np.power(float(imbalance_factor), exponents)
    fractions = np.ones(num_classes)
    fractions[list(range(num_classes // 2, num_classes) if tail is None else tail)] = imbalance_factor
    return fractions


def keep_counts(available: Sequence[int] | np.ndarray, fractions: Sequence[float] | np.ndarray) -> np.ndarray:
    """``keep_y = floor(n_y * f_y + 1/2)`` (round half up), int64; e.g. ``4500 * 0.3 -> 1350``, ``45 * 0.1 -> 5``."""
    available = np.asarray(available, dtype=np.int64)
    counts = np.floor(available * np.asarray(fractions, dtype=np.float64) + 0.5).astype(np.int64)
    return np.minimum(counts, available)


def _as_targets(targets: Sequence[int] | np.ndarray, num_classes: int | None) -> tuple[np.ndarray, int]:
    array = np.asarray(targets)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"targets must be a non-empty 1-D sequence of class indices, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"targets must be integer class indices, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if array.min() < 0:
        raise ValueError(f"targets must be non-negative class indices, found {int(array.min())}")
    inferred = int(array.max()) + 1
    if num_classes is None:
        num_classes = inferred
    elif inferred > num_classes:
        raise ValueError(f"targets contain class {inferred - 1} but num_classes={num_classes}")
    return array, int(num_classes)


def long_tail_split(
    targets: Sequence[int] | np.ndarray,
    num_classes: int | None = None,
    *,
    initial_fraction: float = 0.1,
    imbalance_factor: float = 1.0,
    imbalance_type: ImbalanceType = "step",
    tail_classes: Sequence[int] | None = None,
    seed: int = 0,
) -> LongTailSplit:
    """Split train ``targets`` into a class-balanced initial labeled set and a long-tailed unlabeled pool.

    Args:
        targets: true train labels, ``(N,)``.
        num_classes: ``C``; default ``max(targets) + 1``. Every class needs at least one sample.
        initial_fraction: the initial set holds ``floor(initial_fraction * N / C)`` samples per class. A class with
            fewer samples gives all of them to the initial set (and none to the pool).
        imbalance_factor: IF in (0, 1]; 1 keeps the pool balanced.
        imbalance_type: ``"step"`` (IF applied to ``tail_classes``) or ``"exp"`` (class y keeps IF**(y/(C-1))).
        tail_classes: for ``"step"``; default the second half of the classes, ``C//2 .. C-1``.
        seed: seeds a ``numpy.random.Generator``; the same seed gives byte-identical arrays.

    Raises:
        ValueError: for parameters out of range, an empty class, or an initial set of 0 samples per class.
    """
    tail = validate_split_params(initial_fraction, imbalance_factor, imbalance_type, tail_classes, num_classes)
    targets, num_classes = _as_targets(targets, num_classes)
    class_sizes = np.bincount(targets, minlength=num_classes)
    if (class_sizes == 0).any():
        empty = np.flatnonzero(class_sizes == 0)
        raise ValueError(f"classes {empty[:5].tolist()} have no train samples: a class-balanced initial set is impossible")
    # Section 5.1: "The initial labeled set consists of 10% of the training dataset that is uniformly selected from
    # all classes at random."
    per_class = math.floor(initial_fraction * len(targets) / num_classes)
    if per_class == 0:
        raise ValueError(
            f"initial_fraction={initial_fraction} of {len(targets)} samples over {num_classes} classes gives 0 initial "
            f"samples per class; raise initial_fraction to at least {num_classes / len(targets):.3g}"
        )
    if (class_sizes < per_class).any():
        small = np.flatnonzero(class_sizes < per_class)
        warnings.warn(
            f"classes {small[:5].tolist()} have fewer than {per_class} train samples: all of them go to the initial "
            "set and none to the pool",
            stacklevel=2,
        )
    initial_per_class = np.minimum(class_sizes, per_class)
    available = class_sizes - initial_per_class
    # Section 5.1: "we create long-tailed datasets with the remaining 90% by randomly removing training examples [...]
    # we apply IF to half of the classes" (step); the exponential profile follows the official code / Cui et al. [11].
    fractions = keep_fractions(num_classes, imbalance_factor, imbalance_type, tail)
    pool_per_class = keep_counts(available, fractions)

    rng = np.random.default_rng(seed)
    order = np.argsort(targets, kind="stable")
    starts = np.concatenate([[0], np.cumsum(class_sizes)])
    initial_parts, pool_parts = [], []
    for c in range(num_classes):
        members = rng.permutation(order[starts[c] : starts[c + 1]])
        initial_parts.append(members[: initial_per_class[c]])
        pool_parts.append(members[initial_per_class[c] : initial_per_class[c] + pool_per_class[c]])

    if imbalance_type == "exp":
        tail_out = tuple(range(1, num_classes)) if imbalance_factor < 1 else ()
    else:
        tail_out = tuple(range(num_classes // 2, num_classes)) if tail is None else tail
    return LongTailSplit(
        initial=_frozen(np.sort(np.concatenate(initial_parts))),
        pool=_frozen(np.sort(np.concatenate(pool_parts))),
        tail_classes=tail_out,
        num_classes=num_classes,
        initial_per_class=_frozen(initial_per_class),
        available_per_class=_frozen(available),
        pool_per_class=_frozen(pool_per_class),
        initial_fraction=float(initial_fraction),
        imbalance_factor=float(imbalance_factor),
        imbalance_type=imbalance_type,
        seed=int(seed),
    )


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=np.int64)
    array.setflags(write=False)
    return array


def stratified_subset(indices: np.ndarray, targets: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded ``floor(fraction * n_y)`` of every class ``y`` among ``indices`` (sorted int64).

    Example:
        >>> stratified_subset(np.arange(8), np.array([0, 0, 0, 0, 1, 1, 1, 1]), 0.5, seed=0).size
        4
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    labels = np.asarray(targets)[indices]
    rng = np.random.default_rng(seed)
    parts = [
        rng.permutation(indices[labels == y])[: math.floor(fraction * int((labels == y).sum()))]
        for y in np.unique(labels)
    ]
    return np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)
