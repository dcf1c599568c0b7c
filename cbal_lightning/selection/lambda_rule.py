"""Choosing the balance weight lambda by the paper's rule (Sec. 4 "Regularizer lambda", Fig. 4).

The paper minimises Eq. 8 for a grid of lambdas, plots the two parts of the objective -- the entropy part
``z^T (P log P) 1`` and the L1 part ``||Omega - P^T z||_1`` -- and "chooses the smallest lambda after which the
L1 loss converges and does not diminish further".

* :func:`sweep_lambda` solves Eq. 8/9 for each lambda and records both parts.
* :func:`choose_lambda` makes the rule precise: with ``L(lam)`` the L1 part and ``L0`` its value at the smallest
  lambda of the grid (lambda = 0, the plain method), it returns the smallest grid lambda ``lam_k`` such that no
  larger grid lambda lowers the L1 part by more than ``tol * L0`` or half an expected sample (:data:`ATOL`):
  ``L(lam_k) - min_{j > k} L(lam_j) <= max(tol * L0, ATOL)``.
* :func:`lambda_converged` / :func:`widen_until_converged`: whether the L1 part has stopped falling at the top of
  the grid, and a grid doubled until it has.
* :func:`auto_lambda_select` applies the rule at every query (``ClassBalanced(lam="auto")``, the default): the
  paper chose one lambda on the initial model, but the balance a lambda buys changes from query to query, and
  more so when the balance term counts posteriors corrected for the pool's class prior (docs/prior.md).

Why the curves are monotone: for optimal selections ``z1``, ``z2`` at ``lam1 < lam2`` optimality gives
``c1 + lam1 L1 <= c2 + lam1 L2`` and ``c2 + lam2 L2 <= c1 + lam2 L1``; adding them, ``(lam2 - lam1)(L2 - L1) <= 0``,
so the L1 part never grows with lambda and then ``c1 <= c2``: the cost part never falls (the entropy of the
selection never grows). The solver stops within a relative gap, so tiny violations are possible.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from cbal_lightning.selection.balance import l1_score
from cbal_lightning.selection.engine import balanced_select
from cbal_lightning.selection.result import Selection

__all__ = [
    "AUTO_LAMS",
    "AUTO_REL_GAP",
    "AUTO_SOLVE_SECONDS_PER_ENTRY",
    "ATOL",
    "sweep_point",
    "sweep_lambda",
    "widen_until_converged",
    "choose_lambda",
    "lambda_converged",
    "auto_lambda_select",
]

AUTO_LAMS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
"""The grid of ``lam="auto"``: doubling from 0.25, so one grid covers entropy-scale and count-scale balance weights."""

ATOL = 0.5
"""Changes of the L1 part below half an expected sample do not count as the L1 part "diminishing"."""

AUTO_REL_GAP = 1e-3
"""Solver gap of each ``lam="auto"`` solve. At C = 10 and lambda >= 8 on corrected posteriors a 1e-4 gap took up
to the 10 s limit per lambda on CIFAR-10-LT pools, 1e-3 about 0.03 s; 1e-3 of the objective is well under one
sample of imbalance there (docs/prior.md)."""

AUTO_SOLVE_SECONDS_PER_ENTRY = 2e-6
"""Each ``lam="auto"`` solve stops after ``max(0.1, 2e-6 * N * C)`` seconds (or its share of ``time_limit``):
time for the LP (HiGHS took ~0.5 us per entry of P here), not for proving a small instance optimal. At high
lambda on pools of a few hundred samples HiGHS's branch and bound ran to any limit (10 s) without closing a
1e-3 gap, while the L1 part the rule reads had settled."""


def sweep_point(selection: Selection, lam: float | None, name: str) -> dict[str, Any]:
    """The parts of the objective of one solve, as one row of a sweep."""
    counts = np.asarray(selection.expected_counts, dtype=np.float64)
    return {
        "name": name,
        "lam": None if lam is None else float(lam),
        "cost": float(selection.cost_term),  # z^T cost; for entropy scores z^T (P log P) 1 = -(sum of entropies)
        "score": -float(selection.cost_term),  # sum of the selected samples' scores (entropy)
        "l1": float(selection.l1_deviation),  # ||Omega - P^T z||_1, not weighted by lambda
        "l1_score": l1_score(counts) if counts.size else 0.0,  # Eq. 10 on the expected counts
        "objective": float(selection.cost_term + (lam or 0.0) * selection.l1_deviation),
        "lower_bound": float(selection.lower_bound),  # the solver's bound: objective - lower_bound bounds the gap
        "status": selection.status,
        "expected_counts": counts.tolist(),
    }


def _check_grid(lams: Sequence[float]) -> list[float]:
    grid = sorted({float(x) for x in lams})
    if not grid or grid[0] < 0 or not np.all(np.isfinite(grid)):
        raise ValueError(f"lams: expected finite non-negative values, got {list(lams)!r}")
    return grid


def _doubled(lam: float, max_lam: float) -> float:
    """The next lambda of a widened grid: twice the top one (at least 0.25), at most ``max_lam``."""
    return min(max(2.0 * lam, 0.25), max_lam)


def sweep_lambda(
    cost: np.ndarray,
    probs: np.ndarray,
    budget: int,
    omega: np.ndarray,
    lams: Sequence[float],
    **solver_kwargs: Any,
) -> list[dict[str, Any]]:
    """Solve Eq. 8/9 for every lambda in ``lams`` (sorted ascending) and record the parts of the objective.

    Args:
        cost: (N,) per-sample cost, lower = more informative (``-entropy`` for Eq. 8).
        probs: (N, C) softmax probabilities of the pool.
        budget: samples per query ``b``.
        omega: (C,) class targets (Eq. 4).
        lams: non-negative lambdas; duplicates are dropped.
        **solver_kwargs: passed to :func:`~cbal_lightning.selection.balanced_select` (``time_limit``, ...).

    Returns:
        One dict per lambda (:func:`sweep_point`): ``lam``, ``cost`` (the entropy part ``sum z_i cost_i``),
        ``score`` (``-cost``), ``l1`` (``||Omega - P^T z||_1``), ``l1_score`` (Eq. 10 of ``P^T z``),
        ``objective``, the solver's ``lower_bound`` on it, ``status`` and ``expected_counts``.

        With ``eps_k = objective_k - lower_bound_k`` (how far from optimal the solver may have stopped), the
        monotonicity argument of the module docstring holds up to ``L(lam_j) - L(lam_k) <= (eps_j + eps_k) /
        (lam_j - lam_k)`` for ``lam_k < lam_j``.
    """
    return [sweep_point(balanced_select(cost, probs, budget, omega, lam, **solver_kwargs), lam, f"lambda={lam:g}")
            for lam in _check_grid(lams)]


def _threshold(l1_at_smallest: float, tol: float, atol: float) -> float:
    if not 0 <= tol < 1:
        raise ValueError(f"tol: expected a value in [0, 1), got {tol!r}")
    if not atol >= 0:
        raise ValueError(f"atol: expected a value >= 0, got {atol!r}")
    return max(tol * l1_at_smallest, atol)


def choose_lambda(results: Sequence[dict[str, Any]], tol: float = 0.01, atol: float = ATOL) -> float:
    """The smallest lambda after which the L1 part no longer diminishes (see the module docstring).

    Returns the smallest grid ``lam_k`` with ``L(lam_k) - min_{j > k} L(lam_j) <= max(tol * L0, atol)``, where
    ``L0`` is the L1 part at the smallest lambda of the grid. ``atol`` (half an expected sample) keeps residual
    deviations of an integer batch, which the solver's stopping point moves around, from deciding.

    Example:
        >>> pts = [{"lam": l, "l1": v} for l, v in [(0, 10.0), (0.5, 6.0), (1, 3.0), (1.5, 2.95), (2, 2.95)]]
        >>> choose_lambda(pts, tol=0.01)
        1.0
    """
    points = sorted(results, key=lambda r: r["lam"])
    if not points:
        raise ValueError("results: empty sweep")
    l1 = np.array([p["l1"] for p in points], dtype=np.float64)
    threshold = _threshold(l1[0], tol, atol)
    best_after = np.append(np.minimum.accumulate(l1[::-1])[::-1][1:], np.inf)  # min over j > k
    for k, p in enumerate(points):
        if l1[k] - best_after[k] <= threshold:
            return float(p["lam"])
    return float(points[-1]["lam"])  # unreachable: the last point always qualifies


def lambda_converged(results: Sequence[dict[str, Any]], tol: float = 0.01, atol: float = ATOL) -> bool:
    """Whether the L1 part has converged inside the grid: its last step falls by at most ``max(tol * L0, atol)``,
    or it is already within that of zero.

    When it has not, :func:`choose_lambda` returns the largest lambda of the grid, and a wider grid may pick a
    larger one.
    """
    points = sorted(results, key=lambda r: r["lam"])
    if not points:
        return False
    threshold = _threshold(points[0]["l1"], tol, atol)
    if points[-1]["l1"] <= threshold:  # no larger lambda can lower it by more than the threshold
        return True
    return len(points) >= 2 and points[-2]["l1"] - points[-1]["l1"] <= threshold


def widen_until_converged(
    cost: np.ndarray,
    probs: np.ndarray,
    budget: int,
    omega: np.ndarray,
    results: Sequence[dict[str, Any]],
    tol: float = 0.01,
    max_lam: float = 100.0,
    **solver_kwargs: Any,
) -> tuple[list[dict[str, Any]], bool]:
    """Extend a sweep by doubling its largest lambda while the L1 part has not converged (:func:`lambda_converged`).

    Returns the widened results (sorted by lambda) and whether the L1 part converged by ``max_lam``.

    Example:
        >>> probs = np.array([[0.9, 0.1]] * 6 + [[0.45, 0.55]] * 2 + [[0.1, 0.9]] * 2)
        >>> cost = -np.array([0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.1, 0.05, 0.0, 0.0])
        >>> grid = sweep_lambda(cost, probs, 4, np.array([2.0, 2.0]), [0, 0.5])  # L1 part 3.2, 1.6: still falling
        >>> results, ok = widen_until_converged(cost, probs, 4, np.array([2.0, 2.0]), grid)
        >>> ok, [r["lam"] for r in results], [round(r["l1"], 2) for r in results]
        (True, [0.0, 0.5, 1.0], [3.2, 1.6, 0.0])
    """
    results = sorted(results, key=lambda r: r["lam"])
    while not lambda_converged(results, tol) and results[-1]["lam"] < max_lam:
        lam = _doubled(results[-1]["lam"], max_lam)
        results.append(sweep_lambda(cost, probs, budget, omega, [lam], **solver_kwargs)[0])
    return results, lambda_converged(results, tol)


def auto_lambda_select(
    cost: np.ndarray,
    probs: np.ndarray,
    budget: int,
    omega: np.ndarray,
    *,
    lams: Sequence[float] = AUTO_LAMS,
    tol: float = 0.01,
    max_lam: float = 1024.0,
    time_limit: float = 30.0,
    rel_gap: float = AUTO_REL_GAP,
) -> Selection:
    """Eq. 8/9 at the lambda the paper's rule chooses for this query (:func:`choose_lambda` over ``lams``).

    The lambdas of the grid are solved in turn, each until it is within ``rel_gap`` of its bound or has run
    ``max(0.1, 2e-6 N C)`` seconds (:data:`AUTO_SOLVE_SECONDS_PER_ENTRY`; its status and gap say which), until
    the L1 part is within the rule's threshold (:func:`choose_lambda`) of zero, after which no larger lambda can
    change the choice; while it still falls at the top of the grid, the grid is doubled up to ``max_lam``. The
    selection of the chosen lambda is returned: its ``lam`` is the chosen lambda and ``timings["total"]`` the
    whole sweep. ``time_limit`` bounds the whole sweep (each solve gets at most an equal share of the time
    left); if it stops the sweep, the rule chooses among the lambdas solved so far, ``fallback="time_limit"``
    and a ``RuntimeWarning`` say so.

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.2, 0.8]])
        >>> sel = auto_lambda_select(-np.array([0.8, 0.7, 0.6, 0.2]), probs, 2, np.array([1.0, 1.0]))
        >>> sel.lam, sel.indices  # lambda 0.25 keeps the two best scores; from 0.5 on the rare class is picked
        (0.5, array([0, 3]))
    """
    start = time.perf_counter()
    deadline = start + time_limit
    queue = _check_grid(lams)
    solve_cap = max(0.1, AUTO_SOLVE_SECONDS_PER_ENTRY * np.size(probs))
    solved: list[tuple[dict[str, Any], Selection]] = []
    cut = False
    with warnings.catch_warnings():  # one warning for the sweep below, not one per solve
        warnings.simplefilter("ignore", RuntimeWarning)
        while queue:
            left = deadline - time.perf_counter()
            if left <= 0.05 * time_limit and solved:
                cut = True
                break
            lam = queue.pop(0)
            share = min(left / (len(queue) + 1), solve_cap)
            selection = balanced_select(cost, probs, budget, omega, lam, time_limit=max(share, 1e-3), rel_gap=rel_gap)
            cut |= selection.fallback == "time_limit" and share < solve_cap  # the user's limit, not the cap
            solved.append((sweep_point(selection, lam, f"lambda={lam:g}"), selection))
            points = [p for p, _ in solved]
            if points[-1]["l1"] <= _threshold(points[0]["l1"], tol, ATOL):
                break  # balanced to within the threshold: no larger lambda can change the choice
            if not queue and not lambda_converged(points, tol) and lam < max_lam:
                queue.append(_doubled(lam, max_lam))
    chosen = choose_lambda([p for p, _ in solved], tol)
    selection = next(s for p, s in solved if p["lam"] == chosen)
    timings = {**selection.timings, "total": time.perf_counter() - start}
    selection = replace(selection, timings=timings, fallback="time_limit" if cut else selection.fallback)
    if cut:
        warnings.warn(f"auto_lambda_select: time_limit={time_limit}s cut the lambda sweep at lambda="
                      f"{solved[-1][0]['lam']:g}; lambda={chosen:g} chosen among those solved", RuntimeWarning,
                      stacklevel=2)
    return selection
