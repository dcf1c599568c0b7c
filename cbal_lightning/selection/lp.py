"""LP relaxation of Eq. 9 (one-sided form) by column generation with HiGHS, and its Lagrangian bound.

With duals ``mu`` (budget row) and ``0 <= y <= 2 lam`` (class rows), every selection ``z`` with ``sum z = b``
satisfies ``objective(z) >= lagrangian_bound(y)``, where (choosing the best ``mu`` in closed form)

    lagrangian_bound(y) = (sum of the b smallest  c_i - P_i y) + y . Omega - lam sum Omega,
    c_i = cost_i + lam r_i  (r_i = sum_c P_ic).

More precisely ``objective(z) - bound = sum_i wrong-side |rc_i| + sum_c penalty_c >= 0`` with reduced costs
``rc_i = c_i - mu - P_i y``: a row whose ``|rc_i|`` reaches the gap of an incumbent keeps the side its sign says
in every better selection (the proven cut-off used by :mod:`~cbal_lightning.selection.exact`).
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

__all__ = ["LinearRelaxation", "lagrangian_bound", "smallest"]

_RC_TOL = 1e-9  # reduced costs above -_RC_TOL count as non-negative when pricing
LP_METHOD = "highs-ipm"  # 1.6x (C=100) to 3.5x (C=200) faster than dual simplex here, see docs/selection.md
# HiGHS checks its time limit only after its setup (0.4-1.0 s at 4.4M non-zeros, either method, 2 cores) and,
# in the interior point, between iterations (overshoot 0.6-1.2 s at 4.35M non-zeros on 2 loaded cores). A
# restricted LP is not started with less time left than this much per non-zero; it is given the time left less
# as much; when that leaves less than half the time, the dual simplex (more frequent time checks) is used.
_IPM_OVERSHOOT_PER_NONZERO = 3e-7
LP_NONZEROS = 30_000_000  # largest restricted LP tried (dense columns x classes); ImageNet size is ~270M
LP_TOLERANCE = 1e-6  # the LP counts as solved when the Lagrangian bound is this close to the restricted LP
_PRICE_BATCH = 4000  # most negative reduced-cost columns added per pricing round


def smallest(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` smallest values (all if ``k >= len``), unordered.

    Example:
        >>> np.sort(smallest(np.array([3.0, 1.0, 2.0, 0.0]), 2))
        array([1, 3])
    """
    if k >= values.size:
        return np.arange(values.size)
    return np.argpartition(values, k)[:k].copy()  # a copy: a view would keep all N positions alive


def priced(lin_cost: np.ndarray, probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``c_i - P_i y`` in float64, multiplying in the dtype of ``probs`` (no float64 copy of a float32 P)."""
    return lin_cost - (probs @ y.astype(probs.dtype, copy=False)).astype(np.float64, copy=False)


def lagrangian_bound(
    lin_cost: np.ndarray, probs: np.ndarray, omega: np.ndarray, budget: int, lam: float, y: np.ndarray
) -> tuple[float, float]:
    """Lower bound on Eq. 9 for class duals ``y`` (clipped to [0, 2 lam]) and the best budget dual ``mu``.

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]])
        >>> lin = np.array([-0.5, -0.6, -0.1]) + 1.0  # cost + lam * row sums
        >>> bound, mu = lagrangian_bound(lin, probs, np.array([1.0, 1.0]), 2, 1.0, np.array([0.0, 2.0]))
        >>> round(bound, 6), round(mu, 6)  # the optimum, rows 0 and 2, is -0.6
        (-0.9, 0.0)
    """
    y = np.clip(y, 0.0, 2 * lam)
    values = priced(lin_cost, probs, y)
    low = np.partition(values, budget - 1)[:budget]
    return float(low.sum() + y @ omega - lam * omega.sum()), float(low.max())


class LinearRelaxation:
    """The LP relaxation over a growing set of columns, solved by HiGHS until pricing finds no column or the
    deadline passes.

    After :meth:`solve`, ``x`` holds the best restricted-LP solution (feasible for the full LP, zero outside
    the columns), ``y``/``mu`` its duals, ``rc`` the reduced costs of all rows, ``lower_bound`` the best
    Lagrangian bound met and ``solved`` whether pricing proved ``x`` optimal for the full LP.
    """

    def __init__(
        self, lin_cost: np.ndarray, probs: np.ndarray, omega: np.ndarray, budget: int, lam: float
    ) -> None:
        self.cost, self.probs, self.omega, self.budget, self.lam = lin_cost, probs, omega, budget, lam
        n, n_classes = probs.shape
        self.x, self.y = np.zeros(n), np.zeros(n_classes)
        self.solved, self.restricted = False, False
        self.lower_bound, self.mu = lagrangian_bound(lin_cost, probs, omega, budget, lam, self.y)
        self.rc = lin_cost - self.mu

    @property
    def too_large(self) -> bool:
        """Whether the first restricted LP would exceed ``LP_NONZEROS`` (then :meth:`solve` does nothing)."""
        first = 2 * self.budget + float(np.ceil(2 * self.omega).sum()) + 10 * self.omega.size
        return first * self.probs.shape[1] > LP_NONZEROS

    def solve(self, deadline: float, prices: np.ndarray | None = None) -> None:
        """Column generation until the LP is solved or ``deadline`` (a ``time.perf_counter`` value) passes.

        ``prices``: class duals to warm-start from (e.g. those of a few dual-ascent steps,
        :func:`~cbal_lightning.selection.rounding.balanced_greedy`): the first columns are then the rows
        cheapest at these prices, which usually leaves nothing to price in (measured: one restricted LP instead
        of three, 3.6 s -> 1.2 s at CIFAR-100 size, 17 s -> 5.5 s at Tiny-ImageNet size, lam 3). Their
        Lagrangian bound also counts. Skipped (``restricted`` stays False) when :attr:`too_large`.
        """
        if prices is not None:
            bound, mu = lagrangian_bound(self.cost, self.probs, self.omega, self.budget, self.lam, prices)
            if bound > self.lower_bound:
                self.lower_bound, self.y, self.mu = bound, np.clip(prices, 0.0, 2 * self.lam), mu
                self.rc = priced(self.cost, self.probs, self.y) - mu
        if self.too_large:
            return
        columns = self._initial_columns(deadline, prices)
        while columns is not None and (remaining := deadline - time.perf_counter()) > 0:
            if remaining < _IPM_OVERSHOOT_PER_NONZERO * columns.size * self.probs.shape[1]:
                break  # HiGHS's setup alone would overrun the deadline
            res = self._solve_restricted(columns, remaining)
            if res.status != 0:
                break
            self.x[:] = 0.0
            self.x[columns] = res.x[: columns.size]
            self.restricted = True
            y = np.clip(-res.ineqlin.marginals, 0.0, 2 * self.lam)
            rc = priced(self.cost, self.probs, y) - float(res.eqlin.marginals[0])
            bound, mu = lagrangian_bound(self.cost, self.probs, self.omega, self.budget, self.lam, y)
            if bound >= self.lower_bound:
                self.lower_bound, self.y, self.mu = bound, y, mu
            self.rc = priced(self.cost, self.probs, self.y) - self.mu
            inside = np.zeros(rc.size, dtype=bool)
            inside[columns] = True
            missing = np.flatnonzero((rc < -_RC_TOL) & ~inside)
            lp_value = float(res.fun) - self.lam * self.omega.sum()  # the restricted LP: >= the full LP optimum
            if missing.size == 0 or lp_value - self.lower_bound <= LP_TOLERANCE * max(1.0, abs(lp_value)):
                self.solved = True  # solved within LP_TOLERANCE: the Lagrangian bound meets the restricted LP
                break
            worst = missing[np.argsort(rc[missing], kind="stable")[:_PRICE_BATCH]]
            columns = np.union1d(columns, worst)

    def _initial_columns(self, deadline: float, prices: np.ndarray | None = None) -> np.ndarray | None:
        """The 2b rows cheapest at ``prices`` (``c_i - P_i y``; at y = 0 without them) plus, per class c, the
        ~2 Omega_c best at the full price y_c = 2 lam.

        None if the deadline passes while collecting them.
        """
        picks = [smallest(self.cost if prices is None else priced(self.cost, self.probs, np.clip(prices, 0.0,
                                                                                                  2 * self.lam)),
                          2 * self.budget)]
        for c in range(self.probs.shape[1]):
            if time.perf_counter() >= deadline:
                return None
            k = int(np.ceil(2 * self.omega[c])) + 10
            picks.append(smallest(self.cost - 2 * self.lam * self.probs[:, c], k))
        return np.unique(np.concatenate(picks))

    def _solve_restricted(self, columns: np.ndarray, time_limit: float):  # noqa: ANN202
        """HiGHS (interior point, then crossover) on the columns ``columns`` plus the C shortfall variables."""
        k, n_classes = columns.size, self.probs.shape[1]
        c = np.concatenate([self.cost[columns], np.full(n_classes, 2 * self.lam)])
        # Shortfall rows: Omega_c - sum_i P_ic z_i - s_c <= 0  (Eq. 8, one-sided)
        block = sp.csr_matrix(-np.asarray(self.probs[columns], dtype=np.float64).T)
        a_ub = sp.hstack([block, -sp.identity(n_classes, format="csr")], format="csr")
        a_eq = sp.csr_matrix(np.concatenate([np.ones(k), np.zeros(n_classes)])[None, :])
        upper = np.concatenate([np.ones(k), np.full(n_classes, np.inf)])
        overshoot = _IPM_OVERSHOOT_PER_NONZERO * a_ub.nnz
        ipm = time_limit - overshoot >= 0.5 * time_limit
        return linprog(
            c, A_ub=a_ub, b_ub=-self.omega, A_eq=a_eq, b_eq=[self.budget],
            bounds=np.stack([np.zeros_like(upper), upper], 1),
            method=LP_METHOD if ipm else "highs-ds",
            options={"time_limit": max(time_limit - overshoot, 1e-3)},
        )
