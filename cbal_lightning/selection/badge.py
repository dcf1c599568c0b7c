"""BADGE (Ash et al. 2020): k-means++ seeding on last-layer gradient embeddings, plus a class-balanced variant.

The gradient embedding of pool row i under its predicted label is ``g_i = a_i (x) h_i`` with
``a_i = p_i - onehot(argmax p_i)`` (C,) and ``h_i`` the penultimate embedding (d,). It has C*d dimensions, but
its squared distances factorise, so we never build the N x (C d) matrix::

    ||g_i - g_j||^2 = ||a_i||^2 ||h_i||^2 + ||a_j||^2 ||h_j||^2 - 2 (a_i . a_j)(h_i . h_j)

Seeding: the first center is ``argmax_j ||g_j||``, each further center is drawn with probability proportional to
``D^2_j``, the squared distance to the nearest center so far, which is updated with one row per pick (O(N (C + d))).

Balanced variant (our extension: the paper balances KCenterGreedy only, Algorithm 2): in the spirit of Algorithm 2
each draw is tilted by the balance term, ``P(j) ~ D^2_j * exp(-lam * (L1_j - min_k L1_k))`` with
``L1_j = ||Omega - P^T z - q_j||_1``; the first center is the argmax of the same weight. At ``lam = 0`` the
weights are exactly ``D^2`` and the draws (same seed) those of plain BADGE. As for KCenterGreedy-CB, ``lam``
trades one expected sample of imbalance against a factor ``e`` in sampling odds; pick it with a lambda sweep.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from cbal_lightning.selection._checks import check_budget, check_lam
from cbal_lightning.selection._greedy import (
    GreedyL1,
    check_balance_inputs,
    check_embeddings,
    default_device,
    single_thread_on_cpu,
)
from cbal_lightning.selection.result import Selection, evaluate
from cbal_lightning.selection.prior import PriorShift
from cbal_lightning.selection.selectors import PriorArg, Selector, check_prior_arg

__all__ = ["badge_select", "Badge", "gradient_factors"]


def gradient_factors(probs: np.ndarray) -> np.ndarray:
    """(N, C) ``a = p - onehot(argmax p)``: the loss gradient w.r.t. the logits under the predicted label."""
    a = np.array(probs, dtype=np.float64)
    a[np.arange(a.shape[0]), a.argmax(axis=1)] -= 1.0
    return a


def _draw(weights: np.ndarray, available: np.ndarray, rng: np.random.Generator) -> int:
    """Index drawn with probability ``weights / weights.sum()`` (inverse CDF of one uniform); uniform over the
    ``available`` rows when every weight is zero (all remaining rows coincide with centers)."""
    cumulative = np.cumsum(weights)
    if not cumulative[-1] > 0:
        return int(rng.choice(np.flatnonzero(available)))
    j = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
    return min(j, weights.size - 1)


def _weights(d2: np.ndarray, tracker: GreedyL1 | None, lam: float) -> np.ndarray:
    """``D^2`` (plain) or ``D^2 * exp(-lam (L1 - min L1))`` over rows with ``D^2 > 0`` (balanced)."""
    if tracker is None:
        return d2
    l1 = tracker.candidate_l1()
    live = d2 > 0
    if not live.any():
        return d2
    return np.where(live, d2 * np.exp(-lam * (l1 - l1[live].min())), 0.0)


def badge_select(
    probs: np.ndarray,
    embeddings: np.ndarray,
    budget: int,
    *,
    omega: np.ndarray | None = None,
    lam: float = 0.0,
    seed: int = 0,
    device: str | torch.device | None = None,
    balance_probs: np.ndarray | None = None,
) -> Selection:
    """BADGE (``lam = 0``) or balanced BADGE (``lam > 0``) selection of ``budget`` pool rows.

    Args:
        probs: (N, C) softmax probabilities of the pool.
        embeddings: (N, d) penultimate-layer embeddings of the pool.
        budget: number of rows to pick (b).
        omega: (C,) class targets Omega (Eq. 4); needed when ``lam > 0``, else only used for the statistics.
        lam: balance weight of the tilted draws (module docstring).
        seed: seed of the numpy Generator that draws the centers.
        device: torch device for the matrix-vector products; default CUDA when available, else CPU.
        balance_probs: (N, C) the posteriors the balance term counts, e.g. ``probs`` corrected for the pool's
            class prior (:mod:`cbal_lightning.selection.prior`); default ``probs``.

    Returns:
        A :class:`Selection` with status "GREEDY"; ``cost_term`` is ``-sum`` of the picks' ``D^2`` when picked
        (``||g||^2`` for the first), ``lower_bound`` NaN and ``gap`` inf (no bound is known).

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.5, 0.5], [0.2, 0.8]])
        >>> emb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]], dtype=np.float32)
        >>> badge_select(probs, emb, 2, seed=0).indices
        array([2, 3])
    """
    start = time.perf_counter()
    probs_np = np.asarray(probs)
    if probs_np.ndim != 2:
        raise ValueError(f"probs must be a 2-D (N, C) array of class probabilities, got shape {probs_np.shape}")
    n = probs_np.shape[0]
    emb_np = check_embeddings(embeddings, n)
    budget = check_budget(budget, n)
    lam = check_lam(lam)
    counted = probs_np if balance_probs is None else np.asarray(balance_probs)
    if counted.shape != probs_np.shape:
        raise ValueError(f"balance_probs must have the shape of probs {probs_np.shape}, got {counted.shape}")
    counted, omega = check_balance_inputs(counted, omega, lam, n)

    device = torch.device(device) if device is not None else default_device()
    a = torch.from_numpy(gradient_factors(probs_np)).to(device)
    h = torch.from_numpy(emb_np).to(device)
    a_sq, h_sq = (a * a).sum(dim=1), (h * h).sum(dim=1).double()
    d2 = (a_sq * h_sq).cpu().numpy()  # D^2 to the origin: argmax gives BADGE's first center
    tracker = GreedyL1(counted, omega) if lam > 0 else None
    rng = np.random.default_rng(seed)
    available = np.ones(n, dtype=bool)
    picks = np.empty(budget, dtype=np.int64)
    cost = np.zeros(n)
    build = time.perf_counter() - start

    with single_thread_on_cpu(device):
        for step in range(budget):
            weights = _weights(d2, tracker, lam)
            j = int(np.argmax(weights)) if step == 0 else _draw(weights, available, rng)
            picks[step], cost[j], available[j] = j, -d2[j], False
            if tracker is not None:
                tracker.add(j)
            cross = torch.mv(a, a[j]) * torch.mv(h, h[j]).double()
            row = (a_sq * h_sq + a_sq[j] * h_sq[j] - 2.0 * cross).clamp_min_(0).cpu().numpy()
            d2 = row if step == 0 else np.minimum(d2, row)
            d2[~available] = 0.0

    timings = {"build": build, "search": time.perf_counter() - start - build, "total": time.perf_counter() - start}
    return evaluate(picks, cost, counted, omega, lam, lower_bound=float("nan"), status="GREEDY", timings=timings)


class Badge(Selector):
    """BADGE on gradient embeddings from ``probs`` and penultimate ``embeddings``; ``lam > 0``: balanced BADGE.

    Ignores ``scores`` and ``labeled_embeddings`` (BADGE seeds from the pool alone); ``seed`` drives the draws.
    With ``lam > 0`` the balance term counts ``P`` corrected for the pool's class prior (``prior="estimate"``,
    the default; ``prior=None`` uncorrected); the gradient embeddings always use the model's own ``P``.

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.5, 0.5], [0.2, 0.8]])
        >>> emb = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]], dtype=np.float32)
        >>> Badge().select(None, probs, 2, np.array([1.0, 1.0]), embeddings=emb).indices
        array([2, 3])
    """

    needs_embeddings: bool = True

    def __init__(self, lam: float = 0.0, prior: PriorArg = "estimate") -> None:
        self.lam = lam
        self.prior = check_prior_arg(prior)

    def select(
        self,
        scores: np.ndarray | None,
        probs: np.ndarray,
        budget: int,
        omega: np.ndarray,
        *,
        seed: int = 0,
        embeddings: np.ndarray | None = None,
        labeled_embeddings: np.ndarray | None = None,
        prior_shift: PriorShift | None = None,
    ) -> Selection:
        counted = self.balance_probs(probs, prior_shift) if self.lam > 0 else None
        return badge_select(probs, embeddings, budget, omega=omega, lam=self.lam, seed=seed, balance_probs=counted)
