"""The Eq. 8/9 engine against brute force and HiGHS, its fallbacks, input checks, and the baselines."""

import itertools
import types
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

import cbal_lightning.selection.engine as engine
import cbal_lightning.selection.lp as lp_module
from cbal_lightning.selection import balanced_select, pseudo_label_quota, top_b
from cbal_lightning.selection.exact import MilpOutcome

VALID_STATUSES = {"OPTIMAL", "FEASIBLE", "WITHIN_GAP", "LP_ROUNDED", "GREEDY", "TRIVIAL", "TOP_B", "PSEUDO_LABEL"}


def instance(n, n_classes, budget, seed, concentration=1.0):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(n_classes, concentration), size=n)
    cost = (probs * np.log(probs + 1e-300)).sum(axis=1)  # Eq. 8: negative entropy
    omega = rng.uniform(0, 2 * budget / n_classes, size=n_classes)
    return cost, probs, omega


def objective(cost, probs, omega, lam, rows):
    rows = list(rows)
    return cost[rows].sum() + lam * np.abs(omega - probs[rows].sum(axis=0)).sum()


def milp_optimum(cost, probs, omega, budget, lam, gap=1e-9):
    """Eq. 9 with the classic two-sided L1 linearisation (u_c >= |Omega_c - E_c|), solved by HiGHS."""
    n, n_classes = probs.shape
    pt = sp.csr_matrix(probs.T)
    eye = sp.identity(n_classes, format="csr")
    a = sp.vstack([
        sp.hstack([pt, eye]),  # E_c + u_c >= Omega_c
        sp.hstack([-pt, eye]),  # u_c - E_c >= -Omega_c
        sp.hstack([sp.csr_matrix(np.ones((1, n))), sp.csr_matrix((1, n_classes))]),
    ]).tocsr()
    lower = np.concatenate([omega, -omega, [budget]])
    upper = np.concatenate([np.full(2 * n_classes, np.inf), [budget]])
    res = milp(
        np.concatenate([cost, np.full(n_classes, lam)]), constraints=LinearConstraint(a, lower, upper),
        integrality=np.concatenate([np.ones(n), np.zeros(n_classes)]),
        bounds=Bounds(0, np.concatenate([np.ones(n), np.full(n_classes, np.inf)])), options={"mip_rel_gap": gap},
    )
    assert res.status == 0
    return res.fun


def check_selection(sel, n, budget):
    assert sel.indices.dtype == np.int64 and sel.indices.size == budget
    assert np.all(np.diff(sel.indices) > 0) and sel.indices.min() >= 0 and sel.indices.max() < n
    assert sel.status in VALID_STATUSES


@pytest.mark.parametrize("lam", [0.1, 1.0, 5.0])
@pytest.mark.parametrize("seed", range(4))
def test_matches_brute_force(seed, lam):
    rng = np.random.default_rng(100 + seed)
    n, n_classes = int(rng.integers(6, 13)), int(rng.integers(2, 5))
    budget = int(rng.integers(1, n))
    cost, probs, omega = instance(n, n_classes, budget, seed)
    best = min(objective(cost, probs, omega, lam, rows) for rows in itertools.combinations(range(n), budget))
    for rel_gap in (0.0, 1e-5):
        sel = balanced_select(cost, probs, budget, omega, lam, rel_gap=rel_gap, seed=seed)
        check_selection(sel, n, budget)
        tol = (rel_gap + 1e-6) * abs(best) + 1e-9  # float-exact search: only the gap and HiGHS's tolerances
        assert sel.objective == pytest.approx(objective(cost, probs, omega, lam, sel.indices))
        assert best - 1e-9 <= sel.objective <= best + tol
        assert sel.lower_bound <= best + 1e-7
        assert sel.cost_term + sel.balance_term == pytest.approx(sel.objective)
        np.testing.assert_allclose(sel.expected_counts, probs[sel.indices].sum(axis=0))


@pytest.mark.parametrize("lam", [0.3, 2.0])
def test_medium_no_worse_than_highs_milp(lam):
    n, n_classes, budget = 400, 5, 40
    cost, probs, omega = instance(n, n_classes, budget, seed=7, concentration=0.3)
    best = milp_optimum(cost, probs, omega, budget, lam)
    sel = balanced_select(cost, probs, budget, omega, lam, rel_gap=1e-5)
    check_selection(sel, n, budget)
    assert sel.objective <= best + 1e-5 * abs(best) + 1e-9
    assert sel.lower_bound <= best + 1e-7


def test_pruned_candidates_still_near_optimal():
    n, n_classes, budget = 600, 4, 60
    cost, probs, omega = instance(n, n_classes, budget, seed=11, concentration=0.5)
    best = milp_optimum(cost, probs, omega, budget, 1.0, gap=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sel = balanced_select(cost, probs, budget, omega, 1.0, max_candidates=50, time_limit=2.0)
    check_selection(sel, n, budget)
    assert sel.objective <= best + 1e-3 * abs(best)


def test_lam_zero_is_top_b():
    cost, probs, omega = instance(300, 6, 30, seed=3)
    sel, ref = balanced_select(cost, probs, 30, omega, 0.0), top_b(cost, 30, probs, omega)
    np.testing.assert_array_equal(sel.indices, ref.indices)
    np.testing.assert_array_equal(sel.indices, np.sort(np.argsort(cost, kind="stable")[:30]))
    assert sel.status == "TOP_B" and sel.gap == 0.0 and sel.lower_bound == sel.objective
    np.testing.assert_allclose(sel.expected_counts, probs[sel.indices].sum(axis=0))


def test_large_lam_minimises_expected_l1():
    n, n_classes, budget, lam = 200, 4, 20, 1e4
    cost, probs, omega = instance(n, n_classes, budget, seed=5, concentration=0.5)
    sel = balanced_select(cost, probs, budget, omega, lam)
    # LP minimising only ||Omega - P^T z||_1 (one-sided form): a lower bound on the integer minimum.
    c = np.concatenate([probs.sum(axis=1), np.full(n_classes, 2.0)])
    a_ub = np.hstack([-probs.T, -np.eye(n_classes)])
    res = linprog(c, A_ub=a_ub, b_ub=-omega, A_eq=np.r_[np.ones(n), np.zeros(n_classes)][None], b_eq=[budget],
                  bounds=[(0, 1)] * n + [(0, None)] * n_classes, method="highs")
    lp_l1 = res.fun - omega.sum()
    int_l1 = milp_optimum(np.zeros(n), probs, omega, budget, 1.0)  # integer minimum of the L1 alone
    cost_range = budget * (cost.max() - cost.min())
    assert lp_l1 - 1e-7 <= int_l1 <= sel.l1_deviation + 1e-7
    assert sel.l1_deviation <= int_l1 + cost_range / lam + 1e-6
    assert sel.l1_deviation < balanced_select(cost, probs, budget, omega, 0.1).l1_deviation


def test_budget_equal_to_pool_is_trivial():
    cost, probs, omega = instance(8, 3, 8, seed=0)
    sel = balanced_select(cost, probs, 8, omega, 1.0)
    np.testing.assert_array_equal(sel.indices, np.arange(8))
    assert sel.status == "TRIVIAL" and sel.gap == 0.0


def test_tiny_time_limit_still_returns_a_selection():
    cost, probs, omega = instance(400, 5, 40, seed=2, concentration=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sel = balanced_select(cost, probs, 40, omega, 1.0, time_limit=1e-3, rel_gap=0.0)
    check_selection(sel, 400, 40)
    assert sel.fallback == "time_limit" or sel.gap <= 1e-6
    assert sel.lower_bound <= sel.objective + 1e-9


def test_search_without_solution_keeps_the_rounding(monkeypatch):
    cost, probs, omega = instance(200, 4, 20, seed=4, concentration=0.3)
    timed_out = MilpOutcome(rows=None, bound=-np.inf, proven=False, timed_out=True)
    monkeypatch.setattr(engine, "restricted_milp", lambda *args, **kwargs: timed_out)
    plain = top_b(cost, 20, probs, omega, lam=1.0).objective
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the kicks stall long before the deadline: nothing was cut
        stalled = balanced_select(cost, probs, 20, omega, 1.0, rel_gap=0.0, time_limit=20.0)
    with pytest.warns(RuntimeWarning, match="time_limit"):
        cut = balanced_select(cost, probs, 20, omega, 1.0, rel_gap=0.0, time_limit=0.3)  # the kicks cut by it
    for sel in (stalled, cut):
        check_selection(sel, 200, 20)
        assert sel.status in {"FEASIBLE", "OPTIMAL"}
        assert sel.status == "FEASIBLE" or sel.gap <= 1e-6  # OPTIMAL only when the LP bound itself proves it
        assert sel.objective <= plain
    assert stalled.fallback is None and stalled.timings["total"] < 10.0 and cut.fallback == "time_limit"
    assert stalled.objective <= cut.objective + 1e-9  # the longer search found at least as good a selection


def test_failed_lp_falls_back_to_a_balanced_greedy(monkeypatch):
    cost, probs, omega = instance(600, 6, 60, seed=4, concentration=0.3)
    omega = np.full(6, 10.0)  # Eq. 5: b/C
    monkeypatch.setattr(lp_module, "linprog", lambda *args, **kwargs: types.SimpleNamespace(status=1))
    with pytest.warns(RuntimeWarning, match="LP relaxation"):
        sel = balanced_select(cost, probs, 60, omega, 1.0)
    check_selection(sel, 600, 60)
    assert (sel.status, sel.fallback) == ("GREEDY", "time_limit")
    assert sel.lower_bound <= sel.objective
    plain = top_b(cost, 60, probs, omega, lam=1.0)
    assert sel.l1_deviation < 0.5 * plain.l1_deviation  # balanced, not plain top-b
    assert sel.objective < plain.objective


def test_deterministic():
    cost, probs, omega = instance(40, 3, 8, seed=9, concentration=0.3)
    runs = [balanced_select(cost, probs, 8, omega, 1.5, rel_gap=0.0, seed=3, workers=2) for _ in range(2)]
    assert runs[0].status == "OPTIMAL"
    np.testing.assert_array_equal(runs[0].indices, runs[1].indices)
    assert runs[0].objective == runs[1].objective


def test_timings_and_summary():
    cost, probs, omega = instance(300, 5, 30, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sel = balanced_select(cost, probs, 30, omega, 1.0, time_limit=1.0)
    assert set(sel.timings) == {"build", "lp", "search", "total"}
    assert sel.timings["total"] >= sel.timings["lp"] >= 0
    assert sel.summary()["solve_seconds"] == sel.timings["total"]


def test_pseudo_label_quota_respects_quotas():
    rng = np.random.default_rng(0)
    n, n_classes = 60, 3
    predicted = np.repeat(np.arange(n_classes), [40, 15, 5])
    probs = np.full((n, n_classes), 0.1)
    probs[np.arange(n), predicted] = 0.8
    cost = rng.normal(size=n)
    sel = pseudo_label_quota(cost, probs, 12, np.array([3.0, 4.4, 4.6]))  # quotas round to 3, 4, 5
    check_selection(sel, n, 12)
    counts = np.bincount(predicted[sel.indices], minlength=n_classes)
    np.testing.assert_array_equal(counts, [3, 4, 5])
    for c, quota in enumerate([3, 4, 5]):  # each class gets its lowest-cost members
        members = np.flatnonzero(predicted == c)
        np.testing.assert_array_equal(np.sort(sel.indices[predicted[sel.indices] == c]),
                                      np.sort(members[np.argsort(cost[members], kind="stable")[:quota]]))
    assert sel.status == "PSEUDO_LABEL"


def test_pseudo_label_quota_caps_and_fills():
    predicted = np.array([0, 0, 0, 1, 1, 1])
    probs = np.eye(2)[predicted] * 0.9 + 0.05
    cost = np.array([0.0, 1.0, 2.0, 3.0, 4.0, -1.0])
    capped = pseudo_label_quota(cost, probs, 2, np.array([5.0, 5.0]))  # quotas sum 10 > b: lowest costs win
    np.testing.assert_array_equal(capped.indices, [0, 5])
    filled = pseudo_label_quota(cost, probs, 4, np.array([1.0, 0.0]))  # 1 quota pick, 3 by lowest cost
    np.testing.assert_array_equal(filled.indices, [0, 1, 2, 5])


GOOD = dict(cost=np.array([0.0, -1.0, -0.5]), probs=np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]),
            budget=2, omega=np.array([1.0, 1.0]), lam=1.0)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"cost": np.zeros((3, 1))}, "cost"),
        ({"cost": np.array([0.0, np.nan, 1.0])}, "cost"),
        ({"cost": np.array([0.0, np.inf, 1.0])}, "cost"),
        ({"probs": np.ones(3)}, "probs"),
        ({"probs": np.array([[0.5, 0.5], [np.nan, 0.1], [0.2, 0.8]])}, "probs"),
        ({"probs": np.array([[1.5, -0.5], [0.9, 0.1], [0.2, 0.8]])}, "probs"),
        ({"probs": np.array([[2.0, 3.0], [0.9, 0.1], [0.2, 0.8]])}, "softmax"),
        ({"probs": np.full((4, 2), 0.5)}, "probs"),
        ({"omega": np.ones(3)}, "omega"),
        ({"omega": np.array([1.0, -1.0])}, "omega"),
        ({"omega": np.array([1.0, np.nan])}, "omega"),
        ({"budget": 0}, "budget"),
        ({"budget": 1.5}, "budget"),
        ({"budget": 4}, "budget=4 exceeds the pool of 3 samples"),
        ({"lam": -1.0}, "lam"),
        ({"lam": float("nan")}, "lam"),
        ({"time_limit": 0.0}, "time_limit"),
        ({"workers": 0}, "workers"),
        ({"scale": 0.5}, "scale"),
        ({"max_candidates": 0}, "max_candidates"),
        ({"rel_gap": -1.0}, "rel_gap"),
    ],
)
def test_bad_inputs_name_the_argument(change, match):
    args = GOOD | change
    with pytest.raises(ValueError, match=match):
        cost, probs, budget, omega, lam = (args.pop(k) for k in ("cost", "probs", "budget", "omega", "lam"))
        balanced_select(cost, probs, budget, omega, lam, **args)


@pytest.mark.parametrize(("change", "match"), [({"budget": 9}, "budget"), ({"omega": np.ones(5)}, "omega")])
def test_baselines_validate_inputs(change, match):
    args = {k: GOOD[k] for k in ("cost", "probs", "budget", "omega")} | change
    for fn in (top_b, pseudo_label_quota):
        with pytest.raises(ValueError, match=match):
            fn(args["cost"], args["budget"], args["probs"], args["omega"]) if fn is top_b else fn(**args)


def _small_high_lambda_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """benchmarks/selection.py's small case: N=300, C=5, b=30, lam=50, ~35 % accurate, uneven targets (sum 30)."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, size=300)
    logits = rng.normal(size=(300, 5))
    logits[np.arange(300), labels] += 0.6
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return (probs * np.log(probs)).sum(axis=1), probs, np.array([10.0, 4.0, 8.0, 2.0, 6.0])


def test_random_kicks_leave_the_swap_optimum_for_a_better_selection():
    import time

    from cbal_lightning.selection.lp import LinearRelaxation
    from cbal_lightning.selection.rounding import lp_rounding, objective, perturbed_search, swap_search

    cost, probs, omega = _small_high_lambda_case()
    lp = LinearRelaxation(cost + 50.0 * probs.sum(1), probs, omega, 30, 50.0)
    lp.solve(time.perf_counter() + 5)
    rows = np.arange(300)
    start = swap_search(lp_rounding(lp.x, lp.rc, 30), rows, cost, probs, omega, 50.0, time.perf_counter() + 5)
    before = objective(cost, probs, omega, 50.0, start)
    assert np.array_equal(perturbed_search(start, rows, cost, probs, omega, 50.0, time.perf_counter()), start)
    kicked = perturbed_search(start, rows, cost, probs, omega, 50.0, time.perf_counter() + 1.0, seed=0)
    assert len(np.unique(kicked)) == 30 and objective(cost, probs, omega, 50.0, kicked) < before - 0.5  # -40.1 -> -41.4
    assert objective(cost, probs, omega, 50.0, kicked) >= lp.lower_bound
