"""One query of Algorithm 1: score the unlabeled pool, then choose the batch with the class targets of Eq. 4.

The :class:`~cbal_lightning.callback.ActiveLearningCallback` runs these inside ``fit`` (scoring on every rank,
choosing on rank 0); :func:`cbal_lightning.tools.labeling.propose_query` runs them for a person who labels by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from lightning.pytorch.strategies import Strategy
from torch import nn

from cbal_lightning.inference import PoolPredictions, predict_pool, shard_sampler
from cbal_lightning.pools import PoolState
from cbal_lightning.scoring import Scorer
from cbal_lightning.selection import Selection, Selector, class_targets
from cbal_lightning.selection.prior import MIN_LABELS_PER_CLASS, PriorShift, PriorTracker, label_prior, revealed_shift
from cbal_lightning.splits import stratified_subset

__all__ = [
    "PoolScores", "score_pool", "choose_batch", "draw_pilot", "choose_with_pilot", "pilot_size", "hold_out_for_calibration",
    "estimate_shift",
]


@dataclass(frozen=True)
class PoolScores:
    """What the model says about the unlabeled pool, plus the labeled set's embeddings when the selector needs them
    and its predictions on the held-out labeled samples (:meth:`PoolState.hold_out`) when there are any."""

    pool: PoolPredictions
    labeled: PoolPredictions | None
    heldout: PoolPredictions | None = None

    @property
    def seconds(self) -> float:
        return self.pool.seconds + sum(p.seconds for p in (self.labeled, self.heldout) if p is not None)


def score_pool(
    model: nn.Module,
    dm: Any,
    scorer: Scorer,
    selector: Selector,
    cycle: int,
    *,
    device: torch.device,
    strategy: Strategy | None = None,
    batch_size: int | None = None,
    progress: bool = False,
) -> PoolScores:
    """Run ``scorer`` over ``dm``'s unlabeled pool (eval transforms, sharded across ranks under ``strategy``).

    Representativeness selectors (``selector.needs_embeddings``) also get the labeled set's embeddings; the
    held-out labeled samples, if any, are predicted too (for the pool-prior estimate of the first query).
    """

    def predict(indices: np.ndarray, embed: bool, desc: str) -> PoolPredictions:
        loader = dm.eval_dataloader(indices, sampler=shard_sampler(indices, strategy), batch_size=batch_size)
        return predict_pool(model, loader, scorer, cycle, device=device, strategy=strategy, progress=progress,
                            embed=embed, desc=desc)

    embed = bool(getattr(selector, "needs_embeddings", False))
    pool = predict(dm.pools.unlabeled_indices(), embed, "scoring pool")
    labeled = predict(dm.pools.labeled_indices(), True, "embedding labeled set") if embed else None
    held = dm.pools.held_out_indices()
    heldout = predict(held, False, "predicting held-out set") if len(held) else None
    return PoolScores(pool, labeled, heldout)


def choose_batch(
    selector: Selector,
    scores: PoolScores,
    pools: PoolState,
    budget: int,
    cycle: int,
    *,
    seed: int = 0,
    prior_shift: PriorShift | None = None,
) -> tuple[Selection, np.ndarray]:
    """``(selection, omega)``: ``budget`` rows of ``scores.pool`` chosen by ``selector`` (seeded with ``seed + cycle``).

    ``prior_shift`` (the labeled set's class prior and an estimate of the pool's) reaches the selectors that
    have a ``prior`` (balanced ones built without ``prior=None``), which correct ``P`` with it.
    """
    omega = class_targets(pools.labeled_counts(), budget, cycle, pools.initial_size)  # Eq. 4
    extra: dict[str, Any] = {} if scores.labeled is None else {
        "embeddings": scores.pool.embeddings, "labeled_embeddings": scores.labeled.embeddings,
    }
    pool = scores.pool
    if getattr(selector, "prior", None) is not None:  # selectors without a prior argument keep their old signature
        extra["prior_shift"] = prior_shift
    selection = selector.select(pool.scores, pool.probs, budget, omega, seed=seed + cycle, **extra)
    return selection, omega


def pilot_size(fraction: float, budget: int, num_classes: int) -> int:
    """Samples of a first-query pilot: ``fraction`` of ``budget``, at least ``MIN_LABELS_PER_CLASS`` per class (the
    fewest the revealed-label estimate needs); 0 when ``fraction`` is 0 or the pilot would take half the budget."""
    if fraction == 0:
        return 0
    size = max(int(round(fraction * budget)), MIN_LABELS_PER_CLASS * num_classes)
    return size if 2 * size <= budget else 0


def draw_pilot(pool_size: int, size: int, cycle: int, *, seed: int = 0) -> np.ndarray:
    """Rows of a first-query pilot: ``size`` of the ``pool_size`` pool rows drawn uniformly (seeded with ``seed +
    cycle``), sorted.

    Example:
        >>> draw_pilot(10, 3, 1).tolist() == draw_pilot(10, 3, 1).tolist()
        True
    """
    return np.sort(np.random.default_rng(seed + cycle).choice(pool_size, size, replace=False))


def choose_with_pilot(
    selector: Selector,
    scores: PoolScores,
    pools: PoolState,
    budget: int,
    cycle: int,
    pilot: np.ndarray,
    labels: np.ndarray,
    train_prior: np.ndarray,
    *,
    seed: int = 0,
) -> tuple[np.ndarray, Selection, np.ndarray, PriorShift]:
    """The rest of a query that starts with a random pilot: ``(rows, selection, omega, shift)``.

    ``pilot`` rows of ``scores.pool`` (:func:`draw_pilot`) have the class ``labels`` (revealed by the oracle, or
    given by people in the pilot round). A random sample of the pool, their labels calibrate the model on pool data,
    so :func:`~cbal_lightning.selection.prior.revealed_shift` estimates the prior of the rest of the pool and
    calibrates the pool's posteriors. The other ``budget - len(pilot)`` rows are chosen by ``selector`` with ``P``
    corrected by those (``shift``, for every row of ``scores.pool``) and the targets ``omega`` of Eq. 4 counting the
    pilot as labeled. ``rows``: the pilot's rows, then ``selection``'s (rows of the pool without the pilot, mapped
    back to rows of ``scores.pool``).
    """
    pool = scores.pool
    labels = np.asarray(labels, dtype=np.int64)
    shift = revealed_shift(pool.probs, pilot, labels, train_prior, "pilot")
    rest = np.setdiff1d(np.arange(len(pool.indices)), pilot)
    counts = pools.labeled_counts() + np.bincount(labels, minlength=pool.probs.shape[1])
    omega = class_targets(counts, budget, cycle, pools.initial_size)  # Eq. 4, the pilot counted as labeled
    extra: dict[str, Any] = {} if scores.labeled is None else {
        "embeddings": pool.embeddings[rest],
        "labeled_embeddings": np.concatenate([scores.labeled.embeddings, pool.embeddings[pilot]]),
    }
    extra["prior_shift"] = shift.rows(rest)
    selection = selector.select(pool.scores[rest], pool.probs[rest], budget - len(pilot), omega, seed=seed + cycle,
                                **extra)
    return np.concatenate([pilot, rest[selection.indices]]), selection, omega, shift


def hold_out_for_calibration(dm: Any, fraction: float, seed: int) -> int:
    """Keep ``fraction`` of every class of the initial set out of training (seeded: the same on every rank), for the
    first query's pool-prior estimate. Returns how many were held out: 0 when that would be fewer than
    ``MIN_LABELS_PER_CLASS`` per class (too few for an estimate, so not worth the accuracy they cost)."""
    held = stratified_subset(dm.pools.labeled_indices(cycle=0), dm.targets, fraction, seed)
    if len(held) < MIN_LABELS_PER_CLASS * dm.num_classes:
        return 0
    dm.pools.hold_out(held)
    return len(held)


def estimate_shift(tracker: PriorTracker, dm: Any, pool: PoolPredictions, heldout: PoolPredictions | None) -> PriorShift:
    """The label shift of this query: the prior of the labels the model trained on, and ``tracker``'s estimate of
    the pool's (from ``heldout`` predictions when there are any) with the posteriors it kept for the pool's samples."""
    train_prior = label_prior(dm.targets[dm.pools.training_indices()], dm.num_classes)
    if heldout is None:
        return tracker.shift(train_prior, pool.probs, pool_indices=pool.indices)
    return tracker.shift(train_prior, pool.probs, heldout.probs, dm.targets[heldout.indices], pool_indices=pool.indices)
