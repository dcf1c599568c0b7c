"""Selectors: how b samples are chosen from scores (higher = more informative) and class probabilities.

Each selector turns scores into the cost of Eq. 8/9 (``cost = -score``) and calls one of the selection
routines, so every scorer combines with every selector.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from cbal_lightning.selection._checks import check_lam
from cbal_lightning.selection.baselines import pseudo_label_quota, top_b
from cbal_lightning.selection.engine import balanced_select
from cbal_lightning.selection.result import Selection

__all__ = ["Selector", "TopK", "ClassBalanced", "PseudoLabelQuota"]


class Selector(ABC):
    """Chooses ``budget`` rows of the pool given scores, probabilities P and the class targets Omega (Eq. 4).

    Representativeness selectors (KCenterGreedy, BADGE) set ``needs_embeddings = True``; the callback then also
    passes ``embeddings`` (N, d) of the pool and ``labeled_embeddings`` (L, d) of the labeled set.
    """

    needs_embeddings: bool = False

    @abstractmethod
    def select(
        self,
        scores: np.ndarray,
        probs: np.ndarray,
        budget: int,
        omega: np.ndarray,
        *,
        seed: int = 0,
        embeddings: np.ndarray | None = None,
        labeled_embeddings: np.ndarray | None = None,
    ) -> Selection:
        """Return a :class:`Selection` whose ``indices`` are row positions into ``scores``/``probs``."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class TopK(Selector):
    """The plain strategy (lambda = 0): the ``budget`` highest scores.

    Example:
        >>> TopK().select(np.array([0.1, 0.9, 0.5]), np.full((3, 2), 0.5), 2, np.ones(2)).indices
        array([1, 2])
    """

    def select(self, scores: np.ndarray, probs: np.ndarray, budget: int, omega: np.ndarray, *, seed: int = 0,
               **_: np.ndarray | None) -> Selection:
        return top_b(-np.asarray(scores, dtype=np.float64), budget, probs, omega)


class ClassBalanced(Selector):
    """The paper's class-balanced selection: Eq. 8 (Eq. 9 for other scores) solved with CP-SAT.

    Args:
        lam: weight of the balance term ``||Omega - P^T z||_1``; the official code used 0.6 (CIFAR-10) and 2
            (CIFAR-100) with entropy scores. The balance term counts samples, so ``lam`` trades one unit of
            score against one expected sample of imbalance: rescale it if your scores live on another scale.
        time_limit: seconds for the solver; on time-out the best feasible selection is returned and flagged.
        workers: CP-SAT search workers (results are deterministic for a fixed seed and worker count).

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]])
        >>> ClassBalanced(lam=1.0).select(np.array([0.5, 0.6, 0.1]), probs, 2, np.array([1.0, 1.0])).indices
        array([0, 2])
    """

    def __init__(self, lam: float = 1.0, time_limit: float = 30.0, workers: int = 2) -> None:
        self.lam = check_lam(lam)  # refused at construction, not after a cycle of training
        self.time_limit = time_limit
        self.workers = workers

    def select(self, scores: np.ndarray, probs: np.ndarray, budget: int, omega: np.ndarray, *, seed: int = 0,
               **_: np.ndarray | None) -> Selection:
        return balanced_select(
            -np.asarray(scores, dtype=np.float64),
            probs,
            budget,
            omega,
            self.lam,
            time_limit=self.time_limit,
            workers=self.workers,
            seed=seed,
        )


class PseudoLabelQuota(Selector):
    """"Entropy L1 pseudo-label" of the paper's supplement H: per predicted class, the top scores up to Omega_c.

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]])
        >>> PseudoLabelQuota().select(np.array([0.5, 0.6, 0.1]), probs, 2, np.array([1.0, 1.0])).indices
        array([1, 2])
    """

    def select(self, scores: np.ndarray, probs: np.ndarray, budget: int, omega: np.ndarray, *, seed: int = 0,
               **_: np.ndarray | None) -> Selection:
        return pseudo_label_quota(-np.asarray(scores, dtype=np.float64), probs, budget, omega)
