"""Balance statistics of a selection: the L1 score of Eq. 10 and the expected class counts P^T z."""

from __future__ import annotations

import numpy as np

__all__ = ["l1_score", "expected_counts"]


def l1_score(counts: np.ndarray) -> float:
    """Normalised L1 distance of class counts to the uniform distribution (Eq. 10), in [0, 1].

    ``sum_c |counts_c - b/C|`` divided by its maximum ``2b(C-1)/C`` with ``b = sum(counts)``: 0 for perfectly
    balanced counts, 1 when everything is in one class. Empty counts (b = 0) and a single class score 0.
    Counts may be fractional (e.g. expected counts P^T z).

    Example:
        >>> l1_score(np.array([5, 5, 5])), l1_score(np.array([0, 9, 0])), l1_score(np.array([2, 0]))
        (0.0, 1.0, 1.0)
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"counts must be a non-empty 1-D array, got shape {counts.shape}")
    b, n_classes = counts.sum(), counts.size
    if b <= 0 or n_classes == 1:
        return 0.0
    deviation = np.abs(counts - b / n_classes).sum()  # Eq. 10 numerator
    return float(min(deviation / (2.0 * b * (n_classes - 1) / n_classes), 1.0))


def expected_counts(probs: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Expected number of selected samples per class, ``P^T z`` for the selection ``z`` given by ``indices``.

    Example:
        >>> expected_counts(np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]), np.array([0, 1]))
        array([1.1, 0.9])
    """
    probs = np.asarray(probs)
    return probs[np.asarray(indices, dtype=np.int64)].sum(axis=0, dtype=np.float64)
