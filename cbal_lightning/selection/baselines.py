"""Selections without an optimiser: plain top-b and the supplement H "Entropy L1 pseudo-label" quota rule.

Both take an optional ``lam`` used only to *report* the objective of Eq. 9 for the chosen set (so their
numbers compare with :func:`~cbal_lightning.selection.engine.balanced_select`); it never changes the choice.
Their ``lower_bound`` is the top-b cost, valid for Eq. 9 at any ``lam`` because the balance term is >= 0.
"""

from __future__ import annotations

import time

import numpy as np

from cbal_lightning.selection._checks import check_budget, check_cost, check_lam, check_problem
from cbal_lightning.selection.result import Selection, evaluate

__all__ = ["top_b", "pseudo_label_quota"]


def _lowest(cost: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` lowest costs, ties broken by lower index."""
    return np.argsort(cost, kind="stable")[:k]


def top_b(
    cost: np.ndarray,
    budget: int,
    probs: np.ndarray | None = None,
    omega: np.ndarray | None = None,
    *,
    lam: float = 0.0,
) -> Selection:
    """The ``budget`` lowest costs (stable tie-break by index); optimal for Eq. 9 when ``lam == 0``.

    ``probs`` and ``omega`` are optional and only feed the reported balance statistics.

    Example:
        >>> top_b(np.array([0.3, -1.0, 0.0, -1.0]), 2).indices
        array([1, 3])
    """
    start = time.perf_counter()
    lam = check_lam(lam)
    if probs is None or omega is None:
        cost = check_cost(cost)
        budget = check_budget(budget, cost.size)
    else:
        cost, probs, budget, omega = check_problem(cost, probs, budget, omega)
    chosen = np.sort(_lowest(cost, budget))  # sorted, so the bound sums like the objective does
    return evaluate(
        chosen, cost, probs, omega, lam, lower_bound=float(cost[chosen].sum()), status="TOP_B",
        timings={"total": time.perf_counter() - start},
    )


def pseudo_label_quota(
    cost: np.ndarray, probs: np.ndarray, budget: int, omega: np.ndarray, *, lam: float = 0.0
) -> Selection:
    """Per predicted class ``c = argmax P``, the lowest costs up to ``round(Omega_c)``; the rest by lowest cost.

    Quotas are ``Omega`` rounded half to even (``np.rint``); when they add up to more than ``budget`` they are
    served in order of lowest cost across all classes until ``budget`` is reached, so the total never exceeds it.
    Unfilled quota (too few samples predicted in a class) and any leftover budget go to the lowest costs among
    the remaining samples.

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]])
        >>> pseudo_label_quota(np.array([-0.5, -0.6, -0.1]), probs, 2, np.array([1.0, 1.0])).indices
        array([1, 2])
    """
    start = time.perf_counter()
    lam = check_lam(lam)
    cost, probs, budget, omega = check_problem(cost, probs, budget, omega)
    order = np.argsort(cost, kind="stable")
    predicted = probs[order].argmax(axis=1)
    rank_in_class = np.empty(order.size, dtype=np.int64)  # position of each sample in its class's cost order
    for c in np.unique(predicted):
        members = np.flatnonzero(predicted == c)
        rank_in_class[members] = np.arange(members.size)
    quota = np.rint(omega).astype(np.int64)
    within = order[rank_in_class < quota[predicted]][:budget]  # quota picks, lowest cost first, capped at b
    taken = np.zeros(cost.size, dtype=bool)
    taken[within] = True
    rest = order[~taken[order]][: budget - within.size]  # fill by lowest cost among the others
    chosen = np.concatenate([within, rest])
    top = order[:budget]
    return evaluate(
        chosen, cost, probs, omega, lam, lower_bound=float(cost[top].sum()), status="PSEUDO_LABEL",
        timings={"total": time.perf_counter() - start},
    )
