"""The :class:`Selection` returned by every selection routine, with the statistics the callback logs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cbal_lightning.selection.balance import expected_counts as _expected_counts

__all__ = ["Selection", "evaluate"]


@dataclass(frozen=True, eq=False)
class Selection:
    """A chosen batch and how good it is for ``sum_i z_i cost_i + lam * ||Omega - P^T z||_1`` (Eq. 8/9).

    Attributes:
        indices: sorted unique int64 row positions into ``cost``/``probs``, exactly ``budget`` of them.
        objective: float objective of ``indices`` (not the solver's scaled integer one): cost_term + balance_term.
        cost_term: ``sum_{i in indices} cost_i``.
        balance_term: ``lam * l1_deviation`` (lam included).
        l1_deviation: ``||Omega - P^T z||_1`` (not weighted by lam).
        lower_bound: a valid lower bound on the objective over all selections (Lagrangian bound of the LP duals,
            raised by an exact search when it covers every row that can change the answer; for routines without
            one, the top-b cost, valid because the balance term is non-negative; NaN for the greedy selectors).
        gap: ``(objective - lower_bound) / max(|objective|, 1e-9)``; 0 means proven optimal.
        status: "OPTIMAL" (gap <= 1e-6), "WITHIN_GAP" (gap <= the requested rel_gap), "FEASIBLE", "LP_ROUNDED"
            (rounding of an LP cut by the time limit), "GREEDY", "TOP_B", "PSEUDO_LABEL" or "TRIVIAL".
        fallback: None, or "time_limit" when the time limit cut a phase short.
        timings: seconds spent in "build", "lp", "search" and "total".
        expected_counts: (C,) float64 ``P^T z``.
        lam: the balance weight the objective was computed with.
    """

    indices: np.ndarray
    objective: float
    cost_term: float
    balance_term: float
    l1_deviation: float
    lower_bound: float
    gap: float
    status: str
    fallback: str | None
    timings: dict[str, float] = field(default_factory=dict)
    expected_counts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lam: float = 0.0

    def summary(self) -> dict[str, float | int | str]:
        """Flat scalars for a logger (``fallback`` is "none" when there was none)."""
        t = self.timings
        return {
            "objective": self.objective,
            "cost_term": self.cost_term,
            "balance_term": self.balance_term,
            "l1_deviation": self.l1_deviation,
            "lower_bound": self.lower_bound,
            "gap": self.gap,
            "status": self.status,
            "fallback": self.fallback or "none",
            "lam": self.lam,
            "build_seconds": t.get("build", 0.0),
            "lp_seconds": t.get("lp", 0.0),
            "search_seconds": t.get("search", 0.0),
            "solve_seconds": t.get("total", 0.0),
        }


def evaluate(
    indices: np.ndarray,
    cost: np.ndarray,
    probs: np.ndarray | None,
    omega: np.ndarray | None,
    lam: float,
    *,
    lower_bound: float,
    status: str,
    fallback: str | None = None,
    timings: dict[str, float] | None = None,
) -> Selection:
    """Build a :class:`Selection` for ``indices``, recomputing its float objective exactly (Eq. 9).

    Without ``probs``/``omega`` the balance statistics are zero and ``expected_counts`` is empty.
    """
    indices = np.unique(np.asarray(indices, dtype=np.int64))
    cost_term = float(cost[indices].sum())
    counts = np.zeros(0) if probs is None else _expected_counts(probs, indices)
    l1 = float(np.abs(omega - counts).sum()) if probs is not None and omega is not None else 0.0  # Eq. 2
    objective = cost_term + lam * l1
    lower_bound = float(lower_bound)
    gap = (objective - lower_bound) / max(abs(objective), 1e-9) if math.isfinite(lower_bound) else math.inf
    return Selection(
        indices=indices, objective=objective, cost_term=cost_term, balance_term=lam * l1, l1_deviation=l1,
        lower_bound=lower_bound, gap=gap, status=status, fallback=fallback, timings=dict(timings or {}),
        expected_counts=counts, lam=float(lam),
    )
