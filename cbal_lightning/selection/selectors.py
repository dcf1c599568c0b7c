"""Selectors: how b samples are chosen from scores (higher = more informative) and class probabilities.

Each selector turns scores into the cost of Eq. 8/9 (``cost = -score``) and calls one of the selection
routines, so every scorer combines with every selector.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal, Union

import numpy as np

from cbal_lightning.selection._checks import check_lam_arg, check_time_limit, check_workers
from cbal_lightning.selection.baselines import pseudo_label_quota, top_b
from cbal_lightning.selection.engine import balanced_select
from cbal_lightning.selection.lambda_rule import auto_lambda_select
from cbal_lightning.selection.prior import PriorShift
from cbal_lightning.selection.result import Selection

__all__ = ["Selector", "TopK", "ClassBalanced", "PseudoLabelQuota", "PriorArg", "LamArg", "check_prior_arg"]

LamArg = Union[float, Literal["auto"]]
"""A balance weight: a number >= 0, or ``"auto"``: the paper's lambda rule applied at every query
(:func:`~cbal_lightning.selection.lambda_rule.auto_lambda_select`)."""

PriorArg = Union[Literal["estimate"], Sequence[float], None]
"""How a balanced selector treats the pool's class prior: ``"estimate"`` corrects ``P`` with the estimate the
callback passes (label shift, :mod:`cbal_lightning.selection.prior`), a sequence is a known pool class
distribution, ``None`` balances the uncorrected ``P`` exactly as the paper's Eq. 8."""


def check_prior_arg(prior: PriorArg) -> PriorArg:
    """Validate a selector's ``prior`` argument at construction (see :data:`PriorArg`)."""
    if prior is None or (isinstance(prior, str) and prior == "estimate"):
        return prior
    if isinstance(prior, str):
        raise ValueError(f"prior: expected 'estimate', None or a sequence of class weights, got {prior!r}")
    try:
        values = np.asarray(prior, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"prior: expected 'estimate', None or a sequence of class weights, got {prior!r}") from err
    if values.ndim != 1 or values.size < 2 or not np.isfinite(values).all() or (values < 0).any() or values.sum() <= 0:
        raise ValueError(f"prior: a known pool prior must be >= 2 non-negative finite class weights, got {prior!r}")
    return tuple(float(v) for v in values / values.sum())


class Selector(ABC):
    """Chooses ``budget`` rows of the pool given scores, probabilities P and the class targets Omega (Eq. 4).

    Representativeness selectors (KCenterGreedy, BADGE) set ``needs_embeddings = True``; the callback then also
    passes ``embeddings`` (N, d) of the pool and ``labeled_embeddings`` (L, d) of the labeled set.

    Balanced selectors have a ``prior`` (:data:`PriorArg`); the callback passes ``prior_shift``, the labeled set's
    class prior and its estimate of the pool's, and :meth:`balance_probs` turns ``P`` into the posteriors that
    the balance term counts.
    """

    needs_embeddings: bool = False
    prior: PriorArg = None

    @property
    def balances(self) -> bool:
        """Whether the selection has a balance term weighted by ``lam`` (``lam > 0`` or ``"auto"``)."""
        lam = getattr(self, "lam", 0.0)
        return lam == "auto" or lam > 0

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
        prior_shift: PriorShift | None = None,
    ) -> Selection:
        """Return a :class:`Selection` whose ``indices`` are row positions into ``scores``/``probs``."""

    def shift_for(self, prior_shift: PriorShift | None) -> PriorShift | None:
        """The label shift this selector corrects for: ``None`` for ``prior=None`` (the paper's Eq. 8) or when
        nothing is known, the callback's estimate for ``"estimate"``, a given prior against the labeled set's
        (a uniform labeled prior when called without ``prior_shift``)."""
        if self.prior is None or isinstance(self.prior, str) and prior_shift is None:
            return None
        if isinstance(self.prior, str):  # "estimate"
            return prior_shift
        known = np.asarray(self.prior)
        train = prior_shift.train_prior if prior_shift is not None else np.full(len(known), 1.0 / len(known))
        return PriorShift(known, train, method="given")

    def balance_probs(self, probs: np.ndarray, prior_shift: PriorShift | None) -> np.ndarray:
        """``P`` for the balance term: corrected for label shift as :meth:`shift_for` says, else unchanged."""
        shift = self.shift_for(prior_shift)
        return probs if shift is None else shift.correct(probs)

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
               **_: object) -> Selection:
        return top_b(-np.asarray(scores, dtype=np.float64), budget, probs, omega)


class ClassBalanced(Selector):
    """The paper's class-balanced selection: Eq. 8 (Eq. 9 for other scores), solved by :func:`balanced_select`.

    By default the balance term counts posteriors corrected for the pool's class prior (``prior="estimate"``):
    a model trained on a balanced labeled set believes a long-tailed pool is balanced, so the paper's ``P^T z``
    can be balanced while the true labels are not (docs/prior.md). Once labels were revealed, the callback's
    estimate carries the posteriors of the model that chose them, calibrated on them, and the balance term counts
    those (:meth:`~cbal_lightning.selection.prior.PriorShift.correct`). ``prior=None`` is the paper's Eq. 8
    exactly.

    Args:
        lam: weight of the balance term ``||Omega - P^T z||_1``. ``"auto"`` (default): at every query, the
            smallest lambda after which the L1 part stops falling, the paper's rule for choosing lambda (Sec. 4,
            Fig. 4) over a doubling grid (:func:`~cbal_lightning.selection.lambda_rule.auto_lambda_select`); the
            chosen value is logged as ``lam``. A number fixes it: the official code used 0.6 (CIFAR-10) and 2
            (CIFAR-100) with entropy scores and the uncorrected ``P``. The balance term counts samples, so ``lam``
            trades one unit of score against one expected sample of imbalance.
        time_limit: seconds for the solver (with ``"auto"``: for the whole sweep); on time-out the best feasible
            selection is returned and flagged.
        workers: accepted for configs written for the former CP-SAT search; no effect (the engine's random kicks
            are seeded by ``select``'s ``seed``).
        prior: ``"estimate"`` (default): correct ``P`` with the label shift the callback estimates (the pool prior,
            and the calibrated posteriors once labels were revealed); a sequence: a known pool class distribution
            (the prior alone); ``None``: the paper's uncorrected Eq. 8 (for reproduction, with the paper's fixed
            ``lam``).

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]])
        >>> ClassBalanced(lam=1.0).select(np.array([0.5, 0.6, 0.1]), probs, 2, np.array([1.0, 1.0])).indices
        array([0, 2])
        >>> ClassBalanced().select(np.array([0.5, 0.6, 0.1]), probs, 2, np.array([1.0, 1.0])).lam  # "auto"
        0.5
    """

    def __init__(
        self, lam: LamArg = "auto", time_limit: float = 30.0, workers: int = 2, prior: PriorArg = "estimate"
    ) -> None:
        self.lam = check_lam_arg(lam)  # refused at construction, not after a cycle of training
        self.time_limit = check_time_limit(time_limit)
        self.workers = check_workers(workers)
        self.prior = check_prior_arg(prior)

    def select(self, scores: np.ndarray, probs: np.ndarray, budget: int, omega: np.ndarray, *, seed: int = 0,
               prior_shift: PriorShift | None = None, **_: object) -> Selection:
        cost = -np.asarray(scores, dtype=np.float64)
        counted = self.balance_probs(probs, prior_shift)  # Eq. 8 with P corrected for label shift (prior=None: as is)
        if self.lam == "auto":
            return auto_lambda_select(cost, counted, budget, omega, time_limit=self.time_limit)
        return balanced_select(cost, counted, budget, omega, self.lam, time_limit=self.time_limit,
                               workers=self.workers, seed=seed)


class PseudoLabelQuota(Selector):
    """"Entropy L1 pseudo-label" of the paper's supplement H: per predicted class, the top scores up to Omega_c.

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]])
        >>> PseudoLabelQuota().select(np.array([0.5, 0.6, 0.1]), probs, 2, np.array([1.0, 1.0])).indices
        array([1, 2])
    """

    def select(self, scores: np.ndarray, probs: np.ndarray, budget: int, omega: np.ndarray, *, seed: int = 0,
               **_: object) -> Selection:
        return pseudo_label_quota(-np.asarray(scores, dtype=np.float64), probs, budget, omega)
