"""Exact search for Eq. 9 over the rows that can still change the answer, with HiGHS MILP.

Given an incumbent of objective ``UB`` and Lagrangian duals with bound ``L`` and reduced costs ``rc``, every
selection better than the incumbent keeps each row with ``|rc_i| >= UB - L`` on the side its sign says
(1 if ``rc_i < 0``, see :mod:`~cbal_lightning.selection.lp`). The MILP over the other rows (the *cut-off
set*), the rest fixed, therefore decides optimality of the full float problem; :func:`restricted_milp` solves it
(or, when the cut-off set is too big, a MILP over the rows with the smallest ``|rc|``, which proves nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

__all__ = ["MilpOutcome", "restricted_milp"]

_BOUND_SLACK = 1e-8  # relative margin taken off HiGHS's dual bound
MILP_NONZEROS = 100_000  # largest free-rows x classes block handed to HiGHS (keeps its time checks frequent)


@dataclass(frozen=True)
class MilpOutcome:
    """``rows``: the best selection found (None if none); ``bound``: a valid lower bound on Eq. 9 over all
    selections better than the incumbent (``-inf`` when the search did not cover the cut-off set);
    ``proven``: the search covered the cut-off set and HiGHS finished (optimal or within its gap);
    ``timed_out``: HiGHS stopped at its time limit."""

    rows: np.ndarray | None
    bound: float
    proven: bool
    timed_out: bool


def restricted_milp(
    lin_cost: np.ndarray,
    probs: np.ndarray,
    omega: np.ndarray,
    budget: int,
    lam: float,
    rc: np.ndarray,
    cutoff: float,
    *,
    max_rows: int,
    time_limit: float,
    abs_gap: float,
) -> MilpOutcome:
    """HiGHS MILP of Eq. 9 (one-sided) over the cut-off set ``|rc| < cutoff``, at most ``max_rows`` rows.

    Rows outside the searched set are fixed at 1 when ``rc < 0``, else 0. Returns the best selection HiGHS
    found within ``time_limit`` seconds, stopping once within ``abs_gap`` of its own bound (on the Eq. 9
    scale), and a bound valid for the full problem when the searched set holds the whole cut-off set.

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]])
        >>> lin = np.array([-0.5, -0.6, -0.1]) + 1.0
        >>> out = restricted_milp(lin, probs, np.array([1.0, 1.0]), 2, 1.0, np.zeros(3), math.inf,
        ...                       max_rows=10, time_limit=5.0, abs_gap=0.0)
        >>> out.rows.tolist(), round(out.bound, 6), out.proven
        ([0, 2], -0.6, True)
    """
    n, n_classes = probs.shape
    in_cutoff = np.abs(rc) < cutoff
    max_rows = max(1, min(max_rows, MILP_NONZEROS // n_classes))
    covered = int(in_cutoff.sum()) <= max_rows
    free = np.flatnonzero(in_cutoff) if covered else np.sort(np.argsort(np.abs(rc), kind="stable")[:max_rows])
    is_free = np.zeros(n, dtype=bool)
    is_free[free] = True
    fixed_one = np.flatnonzero((rc < 0) & ~is_free)
    left = budget - fixed_one.size
    if not 0 <= left <= free.size:  # no selection agrees with the fixed rows: none beats the incumbent
        return MilpOutcome(None, math.inf if covered else -math.inf, covered, False)
    need = omega - probs[fixed_one].sum(axis=0, dtype=np.float64)
    short = np.flatnonzero(need > 0)  # classes the fixed rows already cover have no shortfall
    block = np.asarray(probs[free][:, short], dtype=np.float64).T
    k, m = free.size, short.size
    # Eq. 8 one-sided: sum_i P_ic z_i + s_c >= Omega_c - (fixed rows' share), and sum z = b - |fixed|.
    rows = sp.vstack([
        sp.hstack([sp.csr_matrix(block), sp.identity(m, format="csr")]),
        sp.hstack([sp.csr_matrix(np.ones((1, k))), sp.csr_matrix((1, m))]),
    ], format="csr")
    constant = float(lin_cost[fixed_one].sum()) - lam * float(omega.sum())  # Eq. 9 = one-sided MILP + this
    magnitude = abs(float(np.sort(lin_cost[free])[:left].sum())) + 2 * lam * float(need[short].sum())  # ~|MILP value|
    res = milp(
        np.concatenate([lin_cost[free], np.full(m, 2 * lam)]),
        constraints=LinearConstraint(rows, np.concatenate([need[short], [left]]),
                                     np.concatenate([np.full(m, np.inf), [left]])),
        integrality=np.concatenate([np.ones(k), np.zeros(m)]),
        bounds=Bounds(0, np.concatenate([np.ones(k), np.full(m, np.inf)])),
        options={"time_limit": max(time_limit, 1e-3), "mip_rel_gap": abs_gap / max(magnitude, 1e-9)},
    )
    if res.x is None:  # infeasible over a covering set: nothing beats the incumbent
        proven = covered and res.status == 2
        return MilpOutcome(None, math.inf if proven else -math.inf, proven, res.status == 1)
    chosen = np.sort(np.concatenate([fixed_one, free[res.x[:k] > 0.5]]))
    if chosen.size != budget:  # integrality tolerance: not a clean 0/1 answer
        return MilpOutcome(None, -math.inf, False, res.status == 1)
    dual = getattr(res, "mip_dual_bound", None)
    finished = res.status == 0
    bound = -math.inf
    if covered and dual is not None and math.isfinite(dual):
        bound = float(dual) + constant
        bound -= _BOUND_SLACK * (1.0 + abs(bound))  # HiGHS's bound holds within its feasibility tolerances
    return MilpOutcome(chosen, bound, covered and finished, res.status == 1)
