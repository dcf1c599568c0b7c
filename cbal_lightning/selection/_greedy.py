"""Helpers shared by the greedy selectors (KCenterGreedy, BADGE): input checks, threading, and the balance term.

:class:`GreedyL1` gives the exact per-candidate ``||Omega - P^T z - q_j||_1`` of Algorithm 2, line 3, fast.

With ``r = Omega - P^T z`` the balance term of candidate j is ``sum_c |r_c - p_jc|``. Because ``0 <= p_jc <= m_c``
(``m_c`` the column maximum), the absolute value is linear for every class with ``r_c >= m_c`` ("open",
``r_c - p_jc``) or ``r_c <= 0`` ("closed", ``p_jc - r_c``). Writing ``s_j`` for the row sum, ``U_j`` for the
probability mass on closed classes and ``M`` for the classes in between::

    L1_j = sum_open r_c - sum_closed r_c + (2 U_j - s_j) + sum_{c in M} (p_jc + |r_c - p_jc|)

``r`` only decreases, so classes only move open -> M -> closed; ``2 U_j - s_j`` is updated with one column per
class that closes (at most C times per run). A step therefore costs O(N |M|) instead of O(N C); ``|M|`` is small
because a class stays in M only while its remaining need is below one sample's worth of probability.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from cbal_lightning.selection._checks import check_omega, check_probs

__all__ = ["GreedyL1", "check_embeddings", "check_balance_inputs", "default_device", "single_thread_on_cpu"]


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_embeddings(embeddings: np.ndarray | None, n: int | None = None, name: str = "embeddings") -> np.ndarray:
    """``embeddings`` as a finite (n, d) float32 array; ``n`` None accepts any row count (including 0)."""
    if embeddings is None:
        raise ValueError(f"{name} is required: this selector needs penultimate-layer embeddings (needs_embeddings)")
    array = np.asarray(embeddings, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"{name} must be a 2-D (N, d) array, got shape {array.shape}")
    if n is not None and array.shape[0] != n:
        raise ValueError(f"{name} has {array.shape[0]} rows but the pool has {n}; pass one row per pool sample")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf")
    return array


def check_balance_inputs(
    probs: np.ndarray | None, omega: np.ndarray | None, lam: float, n: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Validated ``(probs, omega)`` (each None when not given); both are required when ``lam > 0``."""
    if lam > 0 and (probs is None or omega is None):
        raise ValueError(f"lam={lam} > 0 needs probs and omega; pass both (or lam=0 for the plain method)")
    if probs is not None:
        if np.shape(probs)[:1] != (n,):
            raise ValueError(f"probs must have one row per embedding ({n}), got shape {np.shape(probs)}")
        probs = check_probs(probs, n)
        if omega is not None:
            omega = check_omega(omega, probs.shape[1])
    return probs, omega


@contextmanager
def single_thread_on_cpu(device: torch.device) -> Iterator[None]:
    """Run torch single-threaded on CPU for the greedy loop, restoring the thread count afterwards.

    Each step is an O(N) vector operation or a memory-bound matrix-vector product: spreading it over OpenMP threads
    gains little and costs a synchronisation per op, which is very slow when the cores are busy.
    """
    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class GreedyL1:
    """Tracks ``r = Omega - P^T z`` while a greedy routine adds samples, and scores every candidate's L1.

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
        >>> tracker = GreedyL1(probs, np.array([1.0, 1.0]))
        >>> tracker.candidate_l1()  # ||Omega - q_j||_1 for each j
        array([1., 1., 1.])
        >>> tracker.add(0)  # after picking row 0, r = (0.1, 0.9)
        >>> tracker.candidate_l1().round(6)
        array([1.6, 0.2, 0.8])
    """

    def __init__(self, probs: np.ndarray, omega: np.ndarray) -> None:
        self._probs_t = np.ascontiguousarray(np.asarray(probs, dtype=np.float64).T)  # (C, N): rows are classes
        self._col_max = self._probs_t.max(axis=1)
        self.residual = np.asarray(omega, dtype=np.float64).copy()  # r = Omega - P^T z
        self._closed = np.zeros(self.residual.size, dtype=bool)
        self._linear = -self._probs_t.sum(axis=0)  # 2 U_j - s_j with no class closed yet
        self._close_new()

    def _close_new(self) -> None:
        """Move classes with ``r_c <= 0`` into the closed set, adding ``2 p_jc`` to the linear part."""
        for c in np.flatnonzero((self.residual <= 0) & ~self._closed):
            self._linear += 2.0 * self._probs_t[c]
            self._closed[c] = True

    def add(self, index: int) -> None:
        """Record that row ``index`` was selected: ``r -= q_index``."""
        self.residual -= self._probs_t[:, index]
        self._close_new()

    def candidate_l1(self) -> np.ndarray:
        """(N,) ``||r - q_j||_1`` for every row j (selected rows included; callers mask them)."""
        r = self.residual
        open_ = (r >= self._col_max) & ~self._closed
        middle = ~open_ & ~self._closed
        constant = r[open_].sum() - r[self._closed].sum()
        l1 = self._linear + constant
        if middle.any():
            q = self._probs_t[middle]
            l1 = l1 + (q + np.abs(r[middle, None] - q)).sum(axis=0)
        return l1
