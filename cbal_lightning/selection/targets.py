"""Per-class selection targets Omega(c) of the paper (Eq. 3-5)."""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["class_targets"]


def class_targets(labeled_counts: np.ndarray, budget: int, cycle: int, initial_size: int) -> np.ndarray:
    """Samples still needed per class after query ``cycle`` for the labeled set to be balanced (Eq. 4).

    ``omega_i = max((cycle * budget + initial_size) / C - n_i, 0)``. Cycles count queries and the first query is
    cycle 1, so Omega(c) asks for the class counts the labeled set should have *after* ``c`` queries; with a
    uniform initial set (``n_i = initial_size / C``) Omega(1) is ``budget / C`` for every class (Eq. 5).

    Args:
        labeled_counts: (C,) labeled samples per class before this query (n_i).
        budget: samples queried per cycle (b).
        cycle: index of the query being made, starting at 1 (c).
        initial_size: size of the initial labeled set (b_0).

    Example:
        >>> class_targets(np.array([10, 10]), budget=4, cycle=1, initial_size=20)
        array([2., 2.])
        >>> class_targets(np.array([16, 10]), budget=4, cycle=2, initial_size=20)
        array([0., 4.])
    """
    counts = np.asarray(labeled_counts)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"labeled_counts must be a non-empty 1-D array of per-class counts, got shape {counts.shape}")
    if not np.issubdtype(counts.dtype, np.number) or not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError("labeled_counts must hold finite, non-negative per-class counts")
    for name, value, low in (("budget", budget, 1), ("cycle", cycle, 1), ("initial_size", initial_size, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    per_class = (cycle * budget + initial_size) / counts.size  # Eq. 4
    return np.maximum(per_class - counts.astype(np.float64), 0.0)
