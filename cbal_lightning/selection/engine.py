"""Class-balanced selection (Eq. 8/9): LP relaxation, rounding and swaps, then an exact search with a cut-off.

Problem (Eq. 8 for entropy, Eq. 9 for any cost)::

    min_z  sum_i z_i cost_i + lam * ||Omega - P^T z||_1   s.t.  sum_i z_i = b,  z_i in {0, 1}

One-sided form. With E = P^T z and row sums r_i = sum_c P_ic (1 for softmax rows) we have
sum_c E_c = sum_i z_i r_i, and |x| = 2 max(x, 0) - x gives, for fractional z too,

    ||Omega - E||_1 = 2 sum_c max(Omega_c - E_c, 0) - sum_c Omega_c + sum_i z_i r_i.

So the solver minimises ``sum_i z_i (cost_i + lam r_i) + 2 lam sum_c s_c`` with one shortfall variable
``s_c >= Omega_c - E_c, s_c >= 0`` per class (C one-sided rows instead of 2C) and subtracts ``lam sum Omega``.

Pipeline (every phase checks the deadline ``start + time_limit``):

1. Fast paths: b = N (the pool), lam = 0 (top-b), b = 1 (one O(NC) scan; exact).
2. LP relaxation by column generation with HiGHS (:mod:`~cbal_lightning.selection.lp`); its Lagrangian
   bound is the lower bound. Cut by the deadline, it leaves the best restricted-LP solution.
3. An integer selection: the rounding of that LP solution or, when no restricted LP was solved, a balanced
   greedy (:mod:`~cbal_lightning.selection.rounding`); then exact swap moves among the rows with reduced cost
   nearest zero. At C <= 10, while the gap exceeds ``rel_gap``, a copy is polished with complementary pairs of
   swaps (k-d tree over the classes a pair can bring to target; on real CIFAR-10-LT posteriors at lam 3,
   23 -> 26 of 56 queries within goal, 29 once far-off classes were left out of the tree).
4. If the gap to the bound exceeds ``rel_gap``: a HiGHS MILP (60 % of the time left) over the rows that can
   still change the answer (the proven reduced-cost cut-off, :mod:`~cbal_lightning.selection.exact`), or over the
   ``max_candidates`` rows nearest the frontier when that set is larger; it settles the easy instances.
5. If it did not: iterated swaps with random kicks (:func:`~cbal_lightning.selection.rounding.perturbed_search`)
   until they stall (status "FEASIBLE", nothing cut) or the deadline, from step 3's swap optimum (the polished
   copy and the MILP's selection are kept beside it; the best is returned). Measured on a small high-lambda case
   (N=300, C=5, b=30, lam=50): HiGHS MILP on the whole problem reaches -40.71 in 10 s, the engine -41.38 in
   2.6-18.8 s at limits of 3-30 s.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import replace

import numpy as np

from cbal_lightning.selection._checks import check_lam, check_problem, check_solver
from cbal_lightning.selection.baselines import top_b
from cbal_lightning.selection.exact import restricted_milp
from cbal_lightning.selection.lp import LinearRelaxation, lagrangian_bound, priced, smallest
from cbal_lightning.selection.result import Selection, evaluate
from cbal_lightning.selection.rounding import (
    PAIR_MAX_CLASSES, balanced_greedy, lp_rounding, objective, perturbed_search, swap_search,
)

__all__ = ["balanced_select", "objective_tolerance", "OPTIMALITY_TOLERANCE"]

OPTIMALITY_TOLERANCE = 1e-6  # status "OPTIMAL" when gap <= this (HiGHS's bounds hold to ~1e-7)
_LP_SHARE = 0.7  # fraction of time_limit the LP may use before the rounding must start
_SEARCH_SHARE = 0.85  # swap moves stop here; the MILP and the kicks get what is left
# Of the time left after the swaps, the MILP's (easy instances end there, proven); the kicks get the rest. A
# quarter before: at 60 %, 6 of 56 real CIFAR-10-LT queries at lam 3 ended better (all at query 2, b = 500),
# none worse, the synthetic grid unchanged; the kicks that the small high-lambda case needs still fit.
_PROBE_SHARE = 0.6
_WARM_SHARE = 0.2  # the warm-start dual ascent stops here (after at least 8 steps)
_WARM_STEPS = 20  # its most steps: 20 left one restricted LP at CIFAR-100 and Tiny sizes, lam 3 (vs 3 rounds)
_MARGIN = 0.15  # seconds kept free at the end for the MILP's overshoot and the final evaluation
_FRONTIER = 5000  # rows nearest the reduced-cost frontier tried by the swap moves
# (frontier rows, pool, group) of the swap moves (rounding.swap_search); the wider level runs only while the
# gap exceeds rel_gap (at CIFAR-10-LT size, IF 1, cycle 3, lam 3, before the double moves existed, it took the
# gap from 1.19e-4 to 1.04e-4; with them the first level already ends at 7.4e-5)
_SWAP_LEVELS = ((_FRONTIER, 200, 40), (4 * _FRONTIER, 600, 150))
_BLOCK = 4_000_000  # entries per block of rows in the b = 1 scan
_PAIR_ROWS = 200  # rows nearest the reduced-cost frontier whose swaps the complementary pairs combine


def objective_tolerance(budget: int, n_classes: int, scale: float) -> float:
    """Worst-case excess of a float objective over the optimum when the model is integer-scaled by ``scale``.

    An integer model (e.g. CP-SAT, as in ``benchmarks/selection.py``) sees ``round(scale * c_i)``,
    ``round(scale * lam * P_ic)`` and ``round(scale * lam * Omega'_c)``. For any selection each rounded term is
    off by at most 0.5, so the cost part is off by <= b/2 and each shortfall ``max(0, .)`` (1-Lipschitz) by
    <= (1 + b)/2, counted twice in the objective: the scaled model misjudges any selection by at most
    ``eps = (b/2 + C (1 + b)) / scale`` and its optimum is within ``2 eps`` of the float optimum.

    Example:
        >>> round(objective_tolerance(10, 3, 10_000), 6)
        0.0076
    """
    return 2.0 * (budget / 2 + n_classes * (1 + budget)) / scale


def balanced_select(
    cost: np.ndarray,
    probs: np.ndarray,
    budget: int,
    omega: np.ndarray,
    lam: float,
    *,
    time_limit: float = 30.0,
    workers: int = 2,
    seed: int = 0,
    scale: float = 10_000,
    max_candidates: int = 2000,
    rel_gap: float = 1e-4,
) -> Selection:
    """Choose ``budget`` rows minimising ``sum z_i cost_i + lam ||Omega - P^T z||_1`` (Eq. 8/9).

    Args:
        cost: (N,) cost per sample, lower is better (``-score``; Eq. 8 uses ``sum_c P log P``).
        probs: (N, C) softmax probabilities P, float64 or float32 (float32 is used as is, never copied whole).
        budget: number of samples b to select, 1 <= b <= N.
        omega: (C,) class targets Omega (Eq. 4, :func:`~cbal_lightning.selection.class_targets`).
        lam: weight of the balance term; 0 gives plain top-b (status "TOP_B").
        time_limit: hard wall-clock bound in seconds for the whole call (returned within ~0.5 s of it). When
            it cuts the LP, the rounding of the best restricted-LP solution (status "LP_ROUNDED") or a balanced
            greedy (status "GREEDY") is returned, with ``fallback="time_limit"`` and a warning.
        workers: accepted for compatibility (the CP-SAT search it sized was replaced by HiGHS); no effect.
        seed: seeds the random kicks of the last phase (every other phase is deterministic).
        scale: accepted for compatibility (CP-SAT's integer scaling); no effect, the search works in float.
        max_candidates: most rows handed to the exact MILP search (fewer when C is large, so that the
            block stays at ~100k non-zeros).
        rel_gap: stop once the float objective is within ``rel_gap * |objective|`` of a proven lower bound. The
            default 1e-4 is the default MIP gap of Gurobi (used by the paper) and HiGHS.

    Returns:
        A :class:`Selection`. ``lower_bound`` is always a valid bound for the unpruned float problem and ``gap``
        is measured against it. Status "OPTIMAL": gap <= ``OPTIMALITY_TOLERANCE`` (1e-6); "WITHIN_GAP":
        gap <= ``rel_gap``; "FEASIBLE": a selection with a larger gap ("time_limit" fallback if the deadline
        cut the search); "LP_ROUNDED"/"GREEDY" as above; "TRIVIAL" for b = N; "TOP_B" for lam = 0.

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]])
        >>> sel = balanced_select(np.array([-0.5, -0.6, -0.1]), probs, 2, np.array([1.0, 1.0]), lam=1.0)
        >>> sel.indices, sel.status, round(sel.objective, 3)
        (array([0, 2]), 'OPTIMAL', -0.6)
    """
    start = time.perf_counter()
    cost, probs, budget, omega = check_problem(cost, probs, budget, omega, keep_float32=True)
    lam = check_lam(lam)
    check_solver(time_limit, workers, scale, max_candidates, rel_gap)
    deadline = start + time_limit
    timings = {"build": 0.0, "lp": 0.0, "search": 0.0}

    def finish(rows: np.ndarray, bound: float, status: str | None = None, fallback: str | None = None) -> Selection:
        timings["total"] = time.perf_counter() - start
        sel = evaluate(rows, cost, probs, omega, lam, lower_bound=bound, status=status or "FEASIBLE",
                       fallback=fallback, timings=timings)
        if status is None and sel.gap <= max(rel_gap, OPTIMALITY_TOLERANCE):  # named by what the bound proves
            return replace(sel, status="OPTIMAL" if sel.gap <= OPTIMALITY_TOLERANCE else "WITHIN_GAP")
        return sel

    n = cost.size
    if budget == n:  # the single feasible selection
        return finish(np.arange(n), cost.sum() + lam * np.abs(omega - probs.sum(axis=0, dtype=np.float64)).sum(),
                      "TRIVIAL")
    if lam == 0:
        return top_b(cost, budget, probs, omega, lam=0.0)
    if budget == 1:
        best = _best_single(cost, probs, omega, lam)
        return finish(np.array([best]), objective(cost, probs, omega, lam, np.array([best])), "OPTIMAL")

    lin_cost = cost + lam * probs.sum(axis=1, dtype=np.float64)  # one-sided form: c_i = cost_i + lam r_i (Eq. 9)
    lp = LinearRelaxation(lin_cost, probs, omega, budget, lam)
    greedy = None
    if not lp.too_large:  # warm start: a few dual-ascent steps give the LP's first columns (and a fallback)
        greedy = balanced_greedy(lin_cost, probs, omega, budget, lam, start + _WARM_SHARE * time_limit,
                                 steps=_WARM_STEPS)
        lp.solve(start + _LP_SHARE * time_limit, prices=greedy[1])
    timings["lp"] = time.perf_counter() - start
    bound, rc = lp.lower_bound, lp.rc

    search_start = time.perf_counter()
    if lp.restricted:
        chosen = lp_rounding(lp.x, lp.rc, budget)
        if greedy is not None and objective(cost, probs, omega, lam, greedy[0]) < objective(
                cost, probs, omega, lam, chosen):  # a cut LP can round worse than the warm start's selection
            chosen = greedy[0]
    else:
        chosen, y = greedy or balanced_greedy(lin_cost, probs, omega, budget, lam,
                                              start + _SEARCH_SHARE * time_limit)
        greedy_bound, mu = lagrangian_bound(lin_cost, probs, omega, budget, lam, y)
        if greedy_bound > bound:
            bound, rc = greedy_bound, priced(lin_cost, probs, np.clip(y, 0, 2 * lam)) - mu
    for size, pool, group in _SWAP_LEVELS:  # a wider neighbourhood only while the gap is still open
        if size > _FRONTIER and (objective(cost, probs, omega, lam, chosen) - bound <= rel_gap * abs(bound)
                                 or time.perf_counter() >= start + _SEARCH_SHARE * time_limit):
            break
        frontier = np.union1d(smallest(np.abs(rc), size), chosen)
        chosen = swap_search(chosen, frontier, cost, probs, omega, lam, start + _SEARCH_SHARE * time_limit,
                             pool=pool, group=group)
    # Complementary pairs (few classes) polish a copy: the kicks of step 5 still start from `chosen`. Started from
    # the polished selection they ended worse on 9 of 56 real queries and on the small high-lambda case
    # (-41.38 -> -40.8): a basin they search less well.
    polished, target = chosen, bound + rel_gap * abs(bound)
    if probs.shape[1] <= PAIR_MAX_CLASSES and objective(cost, probs, omega, lam, chosen) > target:
        polished = swap_search(chosen, frontier, cost, probs, omega, lam, start + _SEARCH_SHARE * time_limit,
                               pair_rows=smallest(np.abs(rc), _PAIR_ROWS), pair_target=target)
    timings["search"] = time.perf_counter() - search_start

    def best_of(*candidates: np.ndarray | None) -> tuple[float, np.ndarray]:  # (objective, rows) of the best
        return min(((objective(cost, probs, omega, lam, rows), rows) for rows in candidates if rows is not None),
                   key=lambda scored: scored[0])

    if not lp.solved:
        name = "LP_ROUNDED" if lp.restricted else "GREEDY"
        warnings.warn(
            f"balanced_select: the LP relaxation did not finish within time_limit={time_limit}s; returning "
            f"{'the rounding of the best restricted LP' if lp.restricted else 'a balanced greedy'} after swaps",
            RuntimeWarning, stacklevel=2,
        )
        return finish(best_of(polished, chosen)[1], bound, name, "time_limit")
    value, incumbent = best_of(polished, chosen)
    remaining = deadline - _MARGIN - time.perf_counter()
    if value - bound <= max(rel_gap, OPTIMALITY_TOLERANCE) * abs(value) or remaining <= 0:
        return finish(incumbent, bound, None, None if remaining > 0 else "time_limit")

    build_start = time.perf_counter()
    out = restricted_milp(lin_cost, probs, omega, budget, lam, rc, value - bound, max_rows=max_candidates,
                          time_limit=_PROBE_SHARE * remaining, abs_gap=rel_gap * abs(value))
    timings["build"] = time.perf_counter() - build_start
    bound = max(bound, min(value, out.bound))  # a better selection than `value` lies in the searched set
    found = np.inf if out.rows is None else objective(cost, probs, omega, lam, out.rows)
    if out.proven or min(value, found) - bound <= max(rel_gap, OPTIMALITY_TOLERANCE) * abs(min(value, found)):
        return finish(out.rows if found < value else incumbent, bound)

    # The kicks start from the swaps' selection, not from the MILP's (which depends on where its time ran out), so
    # that kicks which stall give the same selection on any machine; the best of the three is kept.
    kick_start = time.perf_counter()
    chosen = perturbed_search(chosen, frontier, cost, probs, omega, lam, deadline - _MARGIN, seed=seed)
    timings["search"] += time.perf_counter() - kick_start
    stalled = time.perf_counter() < deadline - _MARGIN
    chosen = best_of(chosen, incumbent, out.rows)[1]
    if stalled:  # nothing left to try: the gap stays open, nothing was cut
        return finish(chosen, bound)
    warnings.warn(
        f"balanced_select: the search hit time_limit={time_limit}s; returning its best selection "
        "(see Selection.gap)", RuntimeWarning, stacklevel=2,
    )
    return finish(chosen, bound, None, "time_limit")


def _best_single(cost: np.ndarray, probs: np.ndarray, omega: np.ndarray, lam: float) -> int:
    """The row minimising ``cost_i + lam ||Omega - P_i||_1`` (b = 1), scanned in blocks; ties by lower index."""
    values = np.empty(cost.size)
    step = max(1, _BLOCK // probs.shape[1])
    for lo in range(0, cost.size, step):
        block = probs[lo : lo + step]
        values[lo : lo + step] = cost[lo : lo + step] + lam * np.abs(omega - block).sum(axis=1, dtype=np.float64)
    return int(np.argmin(values))
