"""Input validation shared by the selection routines; runs before any work and names the argument at fault."""

from __future__ import annotations

import math
import numbers

import numpy as np

ROW_SUM_TOLERANCE = 1e-3
_BLOCK = 4_000_000  # entries per block of rows checked at once


def check_cost(cost: np.ndarray) -> np.ndarray:
    """``cost`` as a finite 1-D float64 array."""
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 1 or cost.size == 0:
        raise ValueError(f"cost must be a non-empty 1-D array (one value per pool sample), got shape {cost.shape}")
    if not np.all(np.isfinite(cost)):
        raise ValueError("cost contains NaN or inf; replace non-finite scores before selecting")
    return cost


def check_budget(budget: int, n: int) -> int:
    """``budget`` as an int in [1, n]."""
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral):
        raise ValueError(f"budget must be an integer, got {budget!r}")
    if budget <= 0:
        raise ValueError(f"budget must be positive, got {budget}")
    if budget > n:
        raise ValueError(f"budget={budget} exceeds the pool of {n} samples; lower the budget")
    return int(budget)


def check_probs(probs: np.ndarray, n: int, *, keep_float32: bool = False) -> np.ndarray:
    """``probs`` as an (n, C) array of softmax rows: float64, or float32 kept as is with ``keep_float32``.

    Checked in blocks of rows, so no N x C temporary is made (and no float64 copy of a float32 matrix when
    ``keep_float32``).
    """
    probs = np.asarray(probs)
    if not keep_float32 or probs.dtype != np.float32:
        probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] == 0:
        raise ValueError(f"probs must be a 2-D (N, C) array of class probabilities, got shape {probs.shape}")
    if probs.shape[0] != n:
        raise ValueError(f"probs has {probs.shape[0]} rows but cost has {n} entries; pass one row per sample")
    step = max(1, _BLOCK // probs.shape[1])
    for lo in range(0, n, step):
        block = probs[lo : lo + step]
        if not np.all(np.isfinite(block)):
            raise ValueError("probs contains NaN or inf; pass softmax probabilities")
        if np.any(block < 0):
            raise ValueError("probs contains negative values; pass softmax probabilities, not logits")
        if np.any(np.abs(block.sum(axis=1, dtype=np.float64) - 1.0) > ROW_SUM_TOLERANCE):
            raise ValueError(f"probs rows must sum to 1 (within {ROW_SUM_TOLERANCE}); pass softmax probabilities")
    return probs


def check_omega(omega: np.ndarray, n_classes: int) -> np.ndarray:
    """``omega`` as a (C,) non-negative float64 array."""
    omega = np.asarray(omega, dtype=np.float64)
    if omega.shape != (n_classes,):
        raise ValueError(f"omega must have shape ({n_classes},), one target per column of probs, got {omega.shape}")
    if not np.all(np.isfinite(omega)) or np.any(omega < 0):
        raise ValueError("omega must be finite and non-negative; compute it with class_targets (Eq. 4)")
    return omega


def check_lam(lam: float) -> float:
    """``lam`` as a finite non-negative float."""
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
    return float(lam)


def check_lam_arg(lam: float | str) -> float | str:
    """A selector's ``lam``: a finite non-negative float, or ``"auto"`` (the paper's rule at every query)."""
    if isinstance(lam, str) and lam == "auto":
        return lam
    if isinstance(lam, str):
        raise ValueError(f"lam must be a finite number >= 0 or 'auto', got {lam!r}")
    return check_lam(lam)


def parse_lam(text: str) -> float | str:
    """A ``--lam`` command-line value: ``"auto"`` or a number (checked by :func:`check_lam_arg`)."""
    return check_lam_arg(text if text == "auto" else float(text))


def check_time_limit(time_limit: float) -> float:
    """A positive number of seconds."""
    if isinstance(time_limit, bool) or not isinstance(time_limit, numbers.Real) or not time_limit > 0 or math.isnan(time_limit):
        raise ValueError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    return float(time_limit)


def check_workers(workers: int) -> int:
    """An integer >= 1."""
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    return int(workers)


def check_solver(time_limit: float, workers: int, scale: float, max_candidates: int, rel_gap: float) -> None:
    """Solver settings: positive time limit, scale and candidate count, at least one worker, gap >= 0."""
    check_time_limit(time_limit)
    check_workers(workers)
    if not isinstance(scale, numbers.Real) or not math.isfinite(scale) or scale < 1:
        raise ValueError(f"scale must be a finite number >= 1, got {scale!r}")
    if isinstance(max_candidates, bool) or not isinstance(max_candidates, numbers.Integral) or max_candidates < 1:
        raise ValueError(f"max_candidates must be an integer >= 1, got {max_candidates!r}")
    if not isinstance(rel_gap, numbers.Real) or not math.isfinite(rel_gap) or rel_gap < 0:
        raise ValueError(f"rel_gap must be a finite number >= 0, got {rel_gap!r}")


def check_problem(
    cost: np.ndarray, probs: np.ndarray, budget: int, omega: np.ndarray, *, keep_float32: bool = False
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Validate a selection problem; returns float64 ``cost``/``omega``, ``probs`` (see :func:`check_probs`), int b."""
    cost = check_cost(cost)
    probs = check_probs(probs, cost.size, keep_float32=keep_float32)
    omega = check_omega(omega, probs.shape[1])
    return cost, probs, check_budget(budget, cost.size), omega
