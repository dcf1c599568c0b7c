"""Class-balanced selection (Eq. 8/9): LP relaxation with HiGHS, reduced-cost pruning, then CP-SAT.

Problem (Eq. 8 for entropy, Eq. 9 for any cost)::

    min_z  sum_i z_i cost_i + lam * ||Omega - P^T z||_1   s.t.  sum_i z_i = b,  z_i in {0, 1}

One-sided form. With E = P^T z and row sums r_i = sum_c P_ic (1 for softmax rows) we have
sum_c E_c = sum_i z_i r_i, and |x| = 2 max(x, 0) - x gives, for fractional z too,

    ||Omega - E||_1 = 2 sum_c max(Omega_c - E_c, 0) - sum_c Omega_c + sum_i z_i r_i.

So the solver minimises ``sum_i z_i (cost_i + lam r_i) + 2 lam sum_c s_c`` with one shortfall variable
``s_c >= Omega_c - E_c, s_c >= 0`` per class (C one-sided rows instead of 2C) and subtracts ``lam sum Omega``.
Using r_i instead of 1 keeps the identity exact when rows sum to 1 only up to float error.

Pipeline:

1. LP relaxation, solved by HiGHS with column generation: the LP over a few thousand promising columns, then
   every reduced cost ``rc_i = c_i - mu - sum_c y_c P_ic`` is priced in one mat-vec and the negative ones are
   added until none is left (then the restricted LP optimum is the full LP optimum). The lower bound is the
   Lagrangian value of the duals, ``mu b + y.Omega + sum_i min(rc_i, 0) - lam sum Omega``, valid for any
   ``mu`` and ``0 <= y <= 2 lam`` and equal to the LP optimum once pricing has converged.
2. Pruning: only the ``max_candidates`` variables with reduced cost nearest zero (plus all fractional ones) stay
   free; the others are fixed at their LP value (1 if rc < 0 else 0). With ``N <= max_candidates`` nothing is
   fixed.
3. LP rounding (the largest LP values), improved by best-improvement swaps between free rows on the exact float
   objective. Returned at once if within ``rel_gap`` of the LP bound.
4. Otherwise CP-SAT on the free candidates, integer-scaled by ``scale`` and hinted with that rounding; it stops
   at the first solution within ``rel_gap`` of the LP bound, at optimality, or at the time limit. The result is
   never worse (in float) than the rounding.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from ortools.sat.python import cp_model
from scipy.optimize import linprog

from cbal_lightning.selection._checks import check_lam, check_problem, check_solver
from cbal_lightning.selection.baselines import top_b
from cbal_lightning.selection.result import Selection, evaluate

__all__ = ["balanced_select", "objective_tolerance"]

_RC_TOL = 1e-9  # reduced costs above -_RC_TOL count as non-negative when pricing
_PRICE_BATCH = 4000  # most negative reduced-cost columns added per pricing round


def objective_tolerance(budget: int, n_classes: int, scale: float) -> float:
    """Worst-case excess of the returned float objective over the optimum caused by integer scaling.

    CP-SAT sees ``round(scale * c_i)`` and ``round(scale * lam * P_ic)``, ``round(scale * lam * Omega'_c)``.
    For any selection each rounded term is off by at most 0.5, so the cost part is off by <= b/2 and each
    shortfall ``max(0, .)`` (1-Lipschitz) by <= (1 + b)/2, counted twice in the objective: the scaled model
    misjudges any selection by at most ``eps = (b/2 + C (1 + b)) / scale`` and its optimum is within ``2 eps``
    of the float optimum. This is a worst case; errors of random sign mostly cancel in practice.

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
        probs: (N, C) softmax probabilities P.
        budget: number of samples b to select, 1 <= b <= N (b == N returns the pool, status "TRIVIAL").
        omega: (C,) class targets Omega (Eq. 4, :func:`~cbal_lightning.selection.class_targets`).
        lam: weight of the balance term; 0 gives plain top-b (status "TOP_B").
        time_limit: seconds for the whole call (LP, then CP-SAT gets what is left). On time-out the best
            solution found is returned with ``fallback="time_limit"`` and a warning.
        workers: CP-SAT workers. Results are reproducible for a fixed ``seed`` and ``workers`` when the
            search ends before the time limit (CP-SAT runs with ``interleave_search``, a deterministic
            schedule of its workers); a search cut by the wall clock may differ between runs.
        seed: CP-SAT random seed.
        scale: integer scaling for CP-SAT, see :func:`objective_tolerance` for the resulting tolerance.
        max_candidates: variables left free for CP-SAT after reduced-cost pruning.
        rel_gap: stop as soon as a selection's float objective is within ``rel_gap * |objective|`` of the LP
            lower bound (proven near-optimal for the *unpruned* float problem): the LP rounding is returned
            directly if it qualifies (status "LP_ROUNDED"), else the CP-SAT search stops at the first such
            solution (status "WITHIN_GAP"). The default 1e-4 is the default MIP gap of Gurobi (used by the
            paper) and HiGHS. 0 lets CP-SAT prove optimality of the scaled pruned problem, which can take
            long: the LP bound is rarely tight, so such searches often end at ``time_limit``.

    Returns:
        A :class:`Selection`. Status "OPTIMAL" means optimal for the scaled problem over the free candidates.

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]])
        >>> sel = balanced_select(np.array([-0.5, -0.6, -0.1]), probs, 2, np.array([1.0, 1.0]), lam=1.0)
        >>> sel.indices, sel.status, round(sel.objective, 3)
        (array([0, 2]), 'OPTIMAL', -0.6)
    """
    start = time.perf_counter()
    cost, probs, budget, omega = check_problem(cost, probs, budget, omega)
    lam = check_lam(lam)
    check_solver(time_limit, workers, scale, max_candidates, rel_gap)
    n = cost.size
    if budget == n:
        only = cost.sum() + lam * np.abs(omega - probs.sum(axis=0)).sum()  # the single feasible selection
        return evaluate(
            np.arange(n), cost, probs, omega, lam, lower_bound=only, status="TRIVIAL",
            timings={"total": time.perf_counter() - start},
        )
    if lam == 0:
        return top_b(cost, budget, probs, omega, lam=0.0)

    timings = {"build": 0.0, "lp": 0.0, "search": 0.0}
    lin_cost = cost + lam * probs.sum(axis=1)  # one-sided form: c_i = cost_i + lam r_i (Eq. 9)
    deadline = start + time_limit
    lp = _LinearRelaxation(lin_cost, probs, omega, budget, lam, deadline)
    timings["lp"] = time.perf_counter() - start

    def finish(indices: np.ndarray, status: str, fallback: str | None) -> Selection:
        timings["total"] = time.perf_counter() - start
        return evaluate(
            indices, cost, probs, omega, lam, lower_bound=lp.lower_bound, status=status, fallback=fallback,
            timings=timings,
        )

    if not lp.solved:
        warnings.warn(
            f"balanced_select: the LP relaxation did not finish within time_limit={time_limit}s; "
            "returning the top-b selection by cost", RuntimeWarning, stacklevel=2,
        )
        return finish(np.argsort(lin_cost, kind="stable")[:budget], "GREEDY", "time_limit")

    free, fixed_one = lp.prune(max_candidates)
    rounding = np.concatenate([fixed_one, free[lp.rounding_order(free)[: budget - fixed_one.size]]])
    polish_start = time.perf_counter()
    rounding = _swap_polish(rounding, free, cost, probs, omega, lam, lp.rc, deadline)
    timings["search"] = time.perf_counter() - polish_start

    def value(rows: np.ndarray) -> float:
        return float(cost[rows].sum()) + lam * float(np.abs(omega - probs[rows].sum(axis=0)).sum())  # Eq. 9

    def good_enough(rows: np.ndarray) -> bool:
        return value(rows) - lp.lower_bound <= rel_gap * abs(value(rows))

    if good_enough(rounding):
        return finish(rounding, "LP_ROUNDED", None)
    if deadline - time.perf_counter() <= 0:
        warnings.warn(
            f"balanced_select: time_limit={time_limit}s spent before the search; returning the LP rounding",
            RuntimeWarning, stacklevel=2,
        )
        return finish(rounding, "LP_ROUNDED", "time_limit")

    build_start = time.perf_counter()
    search = _CandidateSearch(lin_cost, probs, omega, lam, scale, free, fixed_one, budget)
    search.hint(np.isin(free, rounding))
    timings["build"] = time.perf_counter() - build_start
    search_start = time.perf_counter()
    chosen, status = search.solve(
        max(deadline - search_start, 1e-3), workers, seed, lambda rows: good_enough(np.concatenate([fixed_one, rows]))
    )
    timings["search"] += time.perf_counter() - search_start
    if chosen is None:
        warnings.warn(
            f"balanced_select: CP-SAT found no solution ({status}); returning the LP rounding",
            RuntimeWarning, stacklevel=2,
        )
        return finish(rounding, "LP_ROUNDED", "greedy")
    chosen = np.concatenate([fixed_one, chosen])
    if value(rounding) < value(chosen):  # integer scaling may misjudge near-ties: keep the better float value
        chosen = rounding
    if status == "FEASIBLE":
        warnings.warn(
            f"balanced_select: CP-SAT hit time_limit={time_limit}s; returning its best solution "
            "(see Selection.gap)", RuntimeWarning, stacklevel=2,
        )
        return finish(chosen, status, "time_limit")
    return finish(chosen, status, None)


class _LinearRelaxation:
    """LP relaxation of the one-sided problem solved by HiGHS with column generation (Eq. 9 relaxed)."""

    def __init__(
        self, lin_cost: np.ndarray, probs: np.ndarray, omega: np.ndarray, budget: int, lam: float, deadline: float
    ) -> None:
        self.cost, self.probs, self.budget = lin_cost, probs, budget
        n = lin_cost.size
        columns = self._initial_columns(lin_cost, probs, omega, budget, lam)
        self.x = np.zeros(n)
        self.solved = False
        # Fallback duals (y = 0, mu = b-th smallest cost) give the top-b Lagrangian bound.
        mu, y = float(np.partition(lin_cost, budget - 1)[budget - 1]), np.zeros(probs.shape[1])
        while (remaining := deadline - time.perf_counter()) > 0:
            res = self._solve(columns, omega, lam, remaining)
            if res.status != 0:
                break
            mu, y = float(res.eqlin.marginals[0]), np.clip(-res.ineqlin.marginals, 0.0, 2 * lam)
            self.rc = lin_cost - mu - probs @ y
            missing = np.flatnonzero(self.rc < -_RC_TOL)
            missing = missing[~np.isin(missing, columns)]
            if missing.size == 0:
                self.x[columns] = res.x[: columns.size]
                self.solved = True
                break
            worst = missing[np.argsort(self.rc[missing], kind="stable")[:_PRICE_BATCH]]
            columns = np.union1d(columns, worst)
        self.rc = lin_cost - mu - probs @ y
        self.lower_bound = mu * budget + float(y @ omega) + float(np.minimum(self.rc, 0).sum()) - lam * omega.sum()

    @staticmethod
    def _initial_columns(
        lin_cost: np.ndarray, probs: np.ndarray, omega: np.ndarray, budget: int, lam: float
    ) -> np.ndarray:
        """The 2b cheapest samples plus, per class c, the ~2 Omega_c best ones at the full price y_c = 2 lam."""
        n, n_classes = probs.shape
        picks = [_smallest(lin_cost, 2 * budget)]
        for c in range(n_classes):
            k = int(np.ceil(2 * omega[c])) + 10
            picks.append(_smallest(lin_cost - 2 * lam * probs[:, c], k))
        return np.unique(np.concatenate(picks))

    def _solve(self, columns: np.ndarray, omega: np.ndarray, lam: float, time_limit: float):  # noqa: ANN202
        """HiGHS on the columns ``columns`` plus the C shortfall variables s_c."""
        k, n_classes = columns.size, self.probs.shape[1]
        c = np.concatenate([self.cost[columns], np.full(n_classes, 2 * lam)])
        # Shortfall rows: Omega_c - sum_i P_ic z_i - s_c <= 0  (Eq. 8 one-sided)
        a_ub = sp.hstack([sp.csr_matrix(-self.probs[columns].T), -sp.identity(n_classes, format="csr")], format="csr")
        a_eq = sp.csr_matrix(np.concatenate([np.ones(k), np.zeros(n_classes)])[None, :])
        upper = np.concatenate([np.ones(k), np.full(n_classes, np.inf)])
        return linprog(
            c, A_ub=a_ub, b_ub=-omega, A_eq=a_eq, b_eq=[self.budget], bounds=np.stack([np.zeros_like(upper), upper], 1),
            method="highs", options={"time_limit": max(time_limit, 1e-3)},
        )

    def prune(self, max_candidates: int) -> tuple[np.ndarray, np.ndarray]:
        """Free variables (fractional, plus reduced cost nearest zero) and the ones fixed at 1, both sorted."""
        fractional = np.flatnonzero((self.x > 1e-6) & (self.x < 1 - 1e-6))
        nearest = _smallest(np.abs(self.rc), max_candidates)
        free = np.union1d(fractional, nearest)
        at_one = self.x >= 1 - 1e-6
        at_one[free] = False
        return free, np.flatnonzero(at_one)

    def rounding_order(self, rows: np.ndarray) -> np.ndarray:
        """Positions into ``rows`` by decreasing LP value, ties by increasing reduced cost then index."""
        return np.lexsort((rows, self.rc[rows], -self.x[rows]))


class _CandidateSearch:
    """CP-SAT model of Eq. 9 (one-sided) over the free candidates, the rest fixed at their LP value."""

    def __init__(
        self,
        lin_cost: np.ndarray,
        probs: np.ndarray,
        omega: np.ndarray,
        lam: float,
        scale: float,
        free: np.ndarray,
        fixed_one: np.ndarray,
        budget: int,
    ) -> None:
        self.free = free
        self.model = model = cp_model.CpModel()
        self.z = [model.new_bool_var(f"z{i}") for i in free]
        model.add(sum(self.z) == budget - fixed_one.size)
        # Integer scaling; tolerance in objective_tolerance(). Costs are shifted by their minimum (a constant,
        # as sum z is fixed) to keep coefficients small.
        cand_cost = lin_cost[free]
        obj = np.rint(scale * (cand_cost - cand_cost.min())).astype(np.int64)
        weights = np.rint(scale * lam * probs[free]).astype(np.int64)  # (K, C)
        need = np.rint(scale * lam * (omega - probs[fixed_one].sum(axis=0))).astype(np.int64)
        self.weights, self.need = weights, need
        self.short: list[tuple[int, cp_model.IntVar]] = []
        for c in np.flatnonzero(need > 0):  # classes already covered by fixed rows have zero shortfall
            nz = np.flatnonzero(weights[:, c])
            s_c = model.new_int_var(0, int(need[c]), f"s{c}")
            # Eq. 8 one-sided: s_c >= Omega_c - (P^T z)_c, all scaled by scale * lam
            covered = cp_model.LinearExpr.weighted_sum([self.z[i] for i in nz], weights[nz, c].tolist())
            model.add(covered + s_c >= int(need[c]))
            self.short.append((int(c), s_c))
        shortfalls = [s for _, s in self.short]
        model.minimize(cp_model.LinearExpr.weighted_sum(self.z + shortfalls, [*obj.tolist(), *[2] * len(shortfalls)]))

    def hint(self, selected: np.ndarray) -> None:
        """Hint the candidate selection ``selected`` (bool per candidate) and its shortfalls."""
        for var, value in zip(self.z, selected.tolist()):
            self.model.add_hint(var, value)
        covered = selected.astype(np.int64) @ self.weights
        for c, s_c in self.short:
            self.model.add_hint(s_c, int(max(self.need[c] - covered[c], 0)))

    def solve(
        self, time_limit: float, workers: int, seed: int, good_enough: Callable[[np.ndarray], bool]
    ) -> tuple[np.ndarray | None, str]:
        """Chosen candidate rows (None if no solution) and the status; stops early once ``good_enough(rows)``."""
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = time_limit
        solver.parameters.num_workers = workers
        solver.parameters.random_seed = seed
        solver.parameters.interleave_search = True
        watcher = _GapWatcher(self.z, self.free, good_enough)
        status = solver.status_name(solver.solve(self.model, watcher))
        if status not in ("OPTIMAL", "FEASIBLE"):
            return None, status
        values = np.asarray(list(solver.response_proto.solution), dtype=bool)[: len(self.z)]
        return self.free[values], "WITHIN_GAP" if watcher.stopped and status == "FEASIBLE" else status


class _GapWatcher(cp_model.CpSolverSolutionCallback):
    """Stops CP-SAT at the first solution that ``good_enough`` accepts (checked on the float objective)."""

    def __init__(self, z: list[cp_model.IntVar], free: np.ndarray, good_enough: Callable[[np.ndarray], bool]) -> None:
        super().__init__()
        self.z, self.free, self.good_enough, self.stopped = z, free, good_enough, False

    def on_solution_callback(self) -> None:
        values = np.fromiter((self.boolean_value(v) for v in self.z), dtype=bool, count=len(self.z))
        if self.good_enough(self.free[values]):
            self.stopped = True
            self.stop_search()


def _swap_polish(
    chosen: np.ndarray,
    free: np.ndarray,
    cost: np.ndarray,
    probs: np.ndarray,
    omega: np.ndarray,
    lam: float,
    rc: np.ndarray,
    deadline: float,
    *,
    pool: int = 400,
    max_rounds: int = 200,
) -> np.ndarray:
    """Best-improvement swaps (one free row out, one in) on the float objective of Eq. 9.

    Only the ``pool`` selected and unselected free rows with reduced cost nearest zero are tried, in chunks of
    at most ~4M (out, in, class) terms; stops when no swap improves, after ``max_rounds`` or at ``deadline``.
    """
    selected = np.zeros(cost.size, dtype=bool)
    selected[chosen] = True
    deviation = omega - probs[chosen].sum(axis=0)  # Omega - P^T z
    chunk = max(1, 4_000_000 // (pool * probs.shape[1]))
    for _ in range(max_rounds):
        if time.perf_counter() >= deadline:
            break
        inside, outside = free[selected[free]], free[~selected[free]]
        inside = inside[np.argsort(-rc[inside], kind="stable")[:pool]]  # least attractive selected rows
        outside = outside[np.argsort(rc[outside], kind="stable")[:pool]]  # most attractive unselected rows
        if inside.size == 0 or outside.size == 0:
            break
        base, p_out = np.abs(deviation).sum(), probs[outside]
        best = (0.0, -1, -1)
        for lo in range(0, inside.size, chunk):
            rows = inside[lo : lo + chunk]
            l1 = np.abs(deviation + probs[rows][:, None, :] - p_out[None, :, :]).sum(axis=2)
            delta = cost[outside][None, :] - cost[rows][:, None] + lam * (l1 - base)
            a, b = np.unravel_index(np.argmin(delta), delta.shape)
            if delta[a, b] < best[0]:
                best = (float(delta[a, b]), int(rows[a]), int(outside[b]))
        if best[0] >= -1e-12:
            break
        _, leave, enter = best
        selected[leave], selected[enter] = False, True
        deviation += probs[leave] - probs[enter]
    return np.flatnonzero(selected)


def _smallest(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` smallest values (all if ``k >= len``), unordered."""
    if k >= values.size:
        return np.arange(values.size)
    return np.argpartition(values, k)[:k]
