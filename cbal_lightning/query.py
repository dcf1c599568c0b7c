"""One query of Algorithm 1: score the unlabeled pool, then choose the batch with the class targets of Eq. 4.

The :class:`~cbal_lightning.callback.ActiveLearningCallback` runs these inside ``fit`` (scoring on every rank,
choosing on rank 0); :func:`cbal_lightning.labeling.propose_query` runs them for a person who labels by hand.
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
from cbal_lightning.selection.prior import PriorShift

__all__ = ["PoolScores", "score_pool", "choose_batch"]


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
