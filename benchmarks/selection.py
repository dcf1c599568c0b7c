"""Benchmark of the class-balanced selection engine against HiGHS, CVXPY and CP-SAT on the paper's protocol.

Every query of the protocol: synthetic pools of the paper's sizes (CIFAR-10-LT, CIFAR-100, Tiny-ImageNet), long-
tailed (IF 0.1) or balanced (IF 1), targets of query 1 (Omega = b/C, Eq. 5) and query 3 (Eq. 4), lam 0.1, 1 and
3; a ~65 % accurate model, cost = negative entropy (Eq. 8). Methods, each with the same time limit:

* ``engine``: :func:`cbal_lightning.selection.balanced_select` (wall time including validation);
* ``milp``: ``scipy.optimize.milp`` (HiGHS branch and bound) on the one-sided form;
* ``cvxpy``: the paper's modelling route without a Gurobi licence: CVXPY, ``norm1``, solved by HiGHS;
* ``cpsat``: a full CP-SAT model (integer-scaled by 10^4, 2 workers);
* ``lp``: the full LP relaxation alone (``linprog(method="highs")``), the independent lower bound every gap
  is measured against: ``gap = (objective - LP bound) / |objective|``.

Each method runs in a forked child (killed ``kill_margin`` seconds after its time limit, since HiGHS checks
its limit only now and then); memory is the child's peak RSS (VmHWM, includes the inherited instance) and its
increase over the start. The alternatives run on the cases named by ``--alternatives`` (default: lam 1 at
every size and pool, all lam at CIFAR-10-LT size). ``--small`` adds the issue's N=300, C=5, b=30, lam=50 case
(3, 10 and 30 s; ``--sizes ""`` runs it alone);
``--imagenet`` adds N=1.28M, C=1000, b=64k with float32 P (engine only, time limit 120 s). ``--sharpen``
multiplies the synthetic logits (more confident posteriors). ``--snapshots DIR`` adds real posteriors: the pool
snapshots that ``benchmarks/posteriors.py`` caches (CIFAR-10-LT, SmallCNN), queries 1 and 2, size
``cifar10lt-real``. ``--certify SECONDS`` asks, for each case that misses the gap goal, whether any selection meets
it: HiGHS MILP on the rows that such a selection could change (reduced-cost fixing, see :func:`run_certify`) finds
one, or proves a lower bound above the LP's for the whole pool.

Usage: ``python benchmarks/selection.py [--sizes cifar10lt,cifar100,tiny] [--lams 0.1,1,3] [--imbalance 0.1,1]
[--cycles 1,3] [--time-limits cifar10lt=3,cifar100=3,tiny=15] [--repeat 3] [--small] [--imagenet] [--quick]
[--seed 0] [--sharpen 1] [--snapshots /tmp/cbal-pilot-cache] [--certify 60]
[--out benchmarks/results/selection.json]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import scipy
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, linprog, milp

from cbal_lightning.selection import balanced_select, class_targets, l1_score
from cbal_lightning.selection.lp import lagrangian_bound, priced

SIZES = {  # name: (pool N, classes C, budget b)
    "cifar10lt": (25_000, 10, 2_500),
    "cifar100": (45_000, 100, 2_500),
    "tiny": (90_000, 200, 5_000),
    "imagenet": (1_281_167, 1000, 64_000),
}
GOALS = {"cifar10lt": (3.0, 1e-4), "cifar10lt-real": (3.0, 1e-4), "cifar100": (3.0, 1e-4), "tiny": (15.0, 5e-4),
         "imagenet": (120.0, 1e-3)}
IMBALANCE = 0.1
INITIAL_PER_CLASS = 100  # the snapshots' uniform initial labeled set (benchmarks/posteriors.py)
TARGET_ACCURACY = 0.65


def entropy_cost(probs: np.ndarray) -> np.ndarray:
    """Per-row cost of Eq. 8, ``sum_c P log P`` (the negative entropy), in float64."""
    return (probs * np.log(np.maximum(probs, 1e-30))).sum(axis=1, dtype=np.float64)


def synthetic_pool(
    n: int, n_classes: int, budget: int, *, imbalance: float = 0.1, cycle: int = 2, seed: int = 0,
    dtype: type = np.float64, sharpen: float = 1.0,
) -> dict[str, Any]:
    """Seeded pool: probabilities, Eq. 8 cost and Eq. 4 targets for query ``cycle`` (1 gives Omega = b/C).

    Half the classes are rarer by ``imbalance`` (1 = balanced pool); the model is ~65 % accurate. Earlier
    queries are partly balanced draws (half the pool's class mix, half uniform) on top of a uniform initial
    set of ``2b`` samples. ``sharpen`` multiplies the logits (same arg-max, so the same accuracy, more
    confident posteriors: median top-1 probability 0.13 at 1 and 0.75 at 3 for C = 100).
    """
    rng = np.random.default_rng(seed)
    weights = np.where(np.arange(n_classes) < n_classes // 2, 1.0, imbalance)
    weights /= weights.sum()
    labels = rng.choice(n_classes, size=n, p=weights)
    jitter = rng.normal(size=n).astype(dtype)
    sample = rng.normal(size=(min(n, 5000), n_classes))

    def accuracy(margin: float) -> float:
        logits = sample.copy()
        logits[np.arange(sample.shape[0]), labels[: sample.shape[0]]] += margin + jitter[: sample.shape[0]]
        return float((logits.argmax(axis=1) == labels[: sample.shape[0]]).mean())

    low, high = 0.0, 10.0  # bisect the true-class margin for the target accuracy
    for _ in range(30):
        mid = (low + high) / 2
        low, high = (mid, high) if accuracy(mid) < TARGET_ACCURACY else (low, mid)
    probs = np.empty((n, n_classes), dtype=dtype)
    cost = np.empty(n)
    for lo in range(0, n, 65_536):  # in blocks: no N x C float64 temporaries at ImageNet size
        hi = min(n, lo + 65_536)
        logits = rng.normal(size=(hi - lo, n_classes)).astype(dtype)
        logits[np.arange(hi - lo), labels[lo:hi]] += high + jitter[lo:hi]
        logits *= sharpen
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        probs[lo:hi] = logits
        cost[lo:hi] = entropy_cost(logits)
    initial = 2 * budget // n_classes * n_classes  # uniform initial set
    counts = np.full(n_classes, initial // n_classes)
    for _ in range(cycle - 1):  # earlier, partly balanced queries
        counts += rng.multinomial(budget, 0.5 * weights + 0.5 / n_classes)
    omega = class_targets(counts, budget, cycle, initial)  # Eq. 4 (Eq. 5 at cycle 1)
    accuracy_all = float((probs[:20_000].argmax(1) == labels[:20_000]).mean())
    return {"probs": probs, "cost": cost, "omega": omega, "accuracy": accuracy_all}


def snapshot_pools(cache: Path, budgets: list[int]) -> list[tuple[dict[str, Any], int, dict[str, Any]]]:
    """Real posteriors: the pool snapshots cached by ``benchmarks/posteriors.py`` (CIFAR-10-LT from the shared JPEGs,
    IF 0.1, SmallCNN trained on the labeled set; ``seed*_q1_init.npz`` before query 1, ``seed*_q2_default.npz``
    before query 2), float32 P as the callback hands it over, cost = negative entropy (Eq. 8), Eq. 4 targets from the
    snapshot's labeled counts (a uniform initial set of ``INITIAL_PER_CLASS`` per class) for each budget."""
    cases = []
    for path in sorted(cache.glob("seed*_q[12]_*.npz")):
        query = 1 if "_q1_init" in path.name else 2 if "_q2_default" in path.name else None
        if query is None:
            continue
        with np.load(path) as snap:
            probs, counts, truth = snap["probs"].astype(np.float32), snap["labeled_counts"], snap["truth"]
        cost = entropy_cost(probs)
        accuracy = float((probs.argmax(1) == truth).mean())
        for budget in budgets:
            omega = class_targets(counts, budget, query, INITIAL_PER_CLASS * counts.size)  # Eq. 4
            meta = {"imbalance": 0.1, "cycle": query, "snapshot": path.name}
            cases.append(({"probs": probs, "cost": cost, "omega": omega, "accuracy": accuracy}, budget, meta))
    return cases


def one_sided(probs: np.ndarray, cost: np.ndarray, omega: np.ndarray, budget: int, lam: float):  # noqa: ANN201
    """Objective, constraint matrix and bounds of Eq. 9 in one-sided form (see engine.py)."""
    n, n_classes = probs.shape
    c = np.concatenate([cost + lam * probs.sum(axis=1), np.full(n_classes, 2 * lam)])
    rows = sp.vstack([
        sp.hstack([sp.csr_matrix(probs.T), sp.identity(n_classes, format="csr")]),  # E_c + s_c >= Omega_c
        sp.hstack([sp.csr_matrix(np.ones((1, n))), sp.csr_matrix((1, n_classes))]),  # sum z = b
    ], format="csr")
    lower = np.concatenate([omega, [budget]])
    upper = np.concatenate([np.full(n_classes, np.inf), [budget]])
    var_upper = np.concatenate([np.ones(n), np.full(n_classes, np.inf)])
    return c, rows, lower, upper, var_upper


def true_objective(
    cost: np.ndarray, probs: np.ndarray, omega: np.ndarray, lam: float, z: np.ndarray
) -> tuple[float, float]:
    """Float objective of Eq. 9 and the L1 score (Eq. 10) of the expected counts for a 0/1 vector ``z``."""
    rows = np.flatnonzero(z > 0.5)
    expected = probs[rows].sum(axis=0)
    return float(cost[rows].sum() + lam * np.abs(omega - expected).sum()), l1_score(expected)


def run_engine(inst: dict, budget: int, lam: float, time_limit: float) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sel = balanced_select(inst["cost"], inst["probs"], budget, inst["omega"], lam, time_limit=time_limit)
    return {"objective": sel.objective, "l1_score": l1_score(sel.expected_counts), "status": sel.status,
            "fallback": sel.fallback, "own_lower_bound": sel.lower_bound, "own_gap": sel.gap, "timings": sel.timings}


def run_milp(inst: dict, budget: int, lam: float, time_limit: float) -> dict[str, Any]:
    probs, cost, omega = inst["probs"], inst["cost"], inst["omega"]
    c, rows, lower, upper, var_upper = one_sided(probs, cost, omega, budget, lam)
    n = probs.shape[0]
    res = milp(c, constraints=LinearConstraint(rows, lower, upper), bounds=Bounds(0, var_upper),
               integrality=np.r_[np.ones(n), np.zeros(probs.shape[1])], options={"time_limit": time_limit})
    if res.x is None:
        return {"objective": None, "l1_score": None, "status": f"no solution (HiGHS status {res.status})"}
    objective, score = true_objective(cost, probs, omega, lam, res.x[:n])
    return {"objective": objective, "l1_score": score,
            "status": "optimal" if res.status == 0 else f"time limit (HiGHS gap {res.mip_gap:.2e})"}


def run_cvxpy(inst: dict, budget: int, lam: float, time_limit: float) -> dict[str, Any]:
    """Eq. 8 as written (``norm1``), modelled in CVXPY and solved by HiGHS (the paper used Gurobi)."""
    import cvxpy as cp

    probs, cost, omega = inst["probs"], inst["cost"], inst["omega"]
    z = cp.Variable(probs.shape[0], boolean=True)
    problem = cp.Problem(cp.Minimize(cost @ z + lam * cp.norm1(omega - probs.T @ z)), [cp.sum(z) == budget])
    try:
        problem.solve(solver=cp.HIGHS, time_limit=time_limit)
    except cp.error.SolverError as err:
        return {"objective": None, "l1_score": None, "status": f"solver error: {str(err)[:60]}"}
    if z.value is None:
        return {"objective": None, "l1_score": None, "status": f"no solution ({problem.status})"}
    objective, score = true_objective(cost, probs, omega, lam, z.value)
    return {"objective": objective, "l1_score": score, "status": problem.status}


def run_cpsat(inst: dict, budget: int, lam: float, time_limit: float) -> dict[str, Any]:
    """A full CP-SAT model of the one-sided form, integer-scaled by 10^4, 2 workers."""
    from ortools.sat.python import cp_model

    probs, cost, omega = inst["probs"], inst["cost"], inst["omega"]
    n, n_classes = probs.shape
    scale = 10_000
    model = cp_model.CpModel()
    z = [model.new_bool_var(f"z{i}") for i in range(n)]
    model.add(sum(z) == budget)
    lin = cost + lam * probs.sum(axis=1)
    obj = np.rint(scale * (lin - lin.min())).astype(np.int64).tolist()
    weights = np.rint(scale * lam * probs).astype(np.int64)
    need = np.rint(scale * lam * omega).astype(np.int64)
    short = []
    for c in np.flatnonzero(need > 0):
        nz = np.flatnonzero(weights[:, c])
        s_c = model.new_int_var(0, int(need[c]), f"s{c}")
        model.add(cp_model.LinearExpr.weighted_sum([z[i] for i in nz], weights[nz, c].tolist()) + s_c >= int(need[c]))
        short.append(s_c)
    model.minimize(cp_model.LinearExpr.weighted_sum(z + short, obj + [2] * len(short)))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit
    solver.parameters.num_workers = 2
    status = solver.status_name(solver.solve(model))
    if status not in ("OPTIMAL", "FEASIBLE"):
        return {"objective": None, "l1_score": None, "status": f"no solution ({status})"}
    values = np.asarray(list(solver.response_proto.solution), dtype=float)[:n]
    objective, score = true_objective(cost, probs, omega, lam, values)
    return {"objective": objective, "l1_score": score, "status": status.lower()}


def run_lp(inst: dict, budget: int, lam: float, time_limit: float) -> dict[str, Any]:
    probs, cost, omega = inst["probs"], inst["cost"], inst["omega"]
    c, rows, lower, upper, var_upper = one_sided(probs, cost, omega, budget, lam)
    n_classes = probs.shape[1]
    res = linprog(c, A_ub=-rows[:n_classes], b_ub=-lower[:n_classes], A_eq=rows[n_classes:], b_eq=[budget],
                  bounds=np.stack([np.zeros_like(var_upper), var_upper], 1), method="highs",
                  options={"time_limit": time_limit})
    if res.status != 0:
        return {"bound": None, "status": f"HiGHS status {res.status}"}
    return {"bound": float(res.fun - lam * omega.sum()), "status": "HiGHS status 0",
            "class_prices": (-res.ineqlin.marginals).tolist()}  # duals of the one-sided rows, for run_certify


def run_certify(inst: dict, budget: int, lam: float, time_limit: float, goal_gap: float, lp_bound: float,
                class_prices: list[float]) -> dict[str, Any]:
    """Does any selection lie within ``goal_gap`` of the LP bound? HiGHS MILP on the rows that could be in one.

    ``lp_bound`` and ``class_prices`` are :func:`run_lp`'s ``bound`` and ``class_prices``. For class prices
    ``0 <= mu <= 2 lam`` (the LP's duals, clipped), ``L`` is their Lagrangian bound (the engine's,
    :func:`~cbal_lightning.selection.lp.lagrangian_bound`, here in float64; valid whatever the LP's tolerances) and
    ``rc_i = c_i - P_i mu - nu`` (``nu`` the b-th smallest ``c_i - P_i mu``). Every selection satisfies
    ``objective - L >= sum |rc_i|`` over the rows it sets against the side of their sign (1 when ``rc_i < 0``). A
    selection within the goal has ``objective - L <= slack = goal_gap |LP bound| / (1 - goal_gap) + (LP bound -
    L)``, so it changes no row with ``|rc_i| >= slack`` (reduced-cost fixing). The MILP over the other rows therefore
    answers the question exactly: a selection within the goal exists iff it finds one, and ``min(L + slack, its
    dual bound)`` is a valid lower bound on every selection of the pool. Returned: ``bound_above_lp`` (that bound
    less the LP bound) and ``proven_fraction`` (its share of the goal's slack; 1: no selection meets the goal).
    """
    probs, cost, omega = inst["probs"], inst["cost"], inst["omega"]
    n, n_classes = probs.shape
    exact = probs.astype(np.float64)  # the engine prices in the dtype of P; a certificate wants float64
    lin_cost = cost + lam * exact.sum(axis=1)  # one-sided form (engine.py): c_i = cost_i + lam r_i
    mu = np.clip(np.asarray(class_prices), 0.0, 2 * lam)
    lagrangian, nu = lagrangian_bound(lin_cost, exact, omega, budget, lam, mu)
    rc = priced(lin_cost, exact, mu) - nu
    goal_slack = goal_gap * abs(lp_bound) / (1 - goal_gap)  # (objective - LP bound) <= this within the goal
    slack = goal_slack + max(0.0, lp_bound - lagrangian)
    free = np.flatnonzero(np.abs(rc) < slack)
    fixed_in = (rc < 0) & (np.abs(rc) >= slack)  # rows that every selection within the goal takes
    k, left = free.size, budget - int(fixed_in.sum())
    sub = sp.hstack([sp.csr_matrix(exact[free].T), sp.identity(n_classes, format="csr")])
    cardinality = sp.hstack([sp.csr_matrix(np.ones((1, k))), sp.csr_matrix((1, n_classes))])
    need = omega - exact[fixed_in].sum(axis=0)
    res = milp(np.concatenate([lin_cost[free], np.full(n_classes, 2 * lam)]),  # z on the free rows, shortfalls s_c
               constraints=[LinearConstraint(sub, need, np.inf), LinearConstraint(cardinality, left, left)],
               bounds=Bounds(0, np.concatenate([np.ones(k), np.full(n_classes, np.inf)])),
               integrality=np.r_[np.ones(k), np.zeros(n_classes)],
               options={"time_limit": time_limit, "mip_rel_gap": 0.0})  # HiGHS's default 1e-4 would stop early
    constant = float(lin_cost[fixed_in].sum() - lam * omega.sum())
    dual = getattr(res, "mip_dual_bound", None)
    if res.status == 2:  # infeasible: no selection within the goal
        proven = lagrangian + slack
    elif dual is None or not np.isfinite(dual):
        proven = lagrangian
    else:  # HiGHS's bound holds within its tolerances: a 1e-8 relative margin, as in selection/exact.py
        proven = min(lagrangian + slack, dual + constant - 1e-8 * (1 + abs(dual + constant)))
    above = max(0.0, proven - lp_bound)
    out = {"free_rows": int(k), "slack": goal_slack, "bound_above_lp": above, "proven_fraction": above / goal_slack,
           "status": "optimal" if res.status == 0 else f"HiGHS status {res.status}", "best_gap": None}
    if res.x is not None:
        z = np.zeros(n)
        z[free] = res.x[:k]
        z[fixed_in] = 1.0
        out["best_gap"] = gap(true_objective(cost, probs, omega, lam, z)[0], lp_bound)
    return out


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _child(fn: Callable, args: tuple, conn: Any) -> None:
    start_rss = _rss_kib("VmRSS")
    start = time.perf_counter()
    out = fn(*args)
    out["seconds"] = time.perf_counter() - start
    out["peak_mib"] = _rss_kib("VmHWM") / 1024
    out["peak_delta_mib"] = (_rss_kib("VmHWM") - start_rss) / 1024
    conn.send(out)
    conn.close()


def measure(fn: Callable, *args: Any, kill_after: float) -> dict[str, Any]:
    """Run ``fn(*args)`` in a forked child; its result plus wall seconds and peak memory.

    HiGHS checks its time limit only now and then, so a child still running after ``kill_after`` seconds is
    killed and reported as such.
    """
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(fn, args, child))
    start = time.perf_counter()
    proc.start()
    child.close()
    if parent.poll(kill_after):
        out = parent.recv()
    else:
        proc.kill()
        out = {"objective": None, "l1_score": None, "bound": None, "status": f"killed after {kill_after:.0f}s",
               "seconds": time.perf_counter() - start, "peak_mib": None, "peak_delta_mib": None}
    proc.join()
    return out


def gap(objective: float | None, bound: float | None) -> float | None:
    if objective is None or bound is None:
        return None
    return (objective - bound) / max(abs(objective), 1e-9)


ALTERNATIVES = {"milp": run_milp, "cvxpy": run_cvxpy, "cpsat": run_cpsat}


def small_case(seed: int = 3) -> tuple[dict[str, Any], int]:
    """A small high-lambda case like the issue's: N=300, C=5, b=30, balanced, ~30 % accurate model, uneven
    cycle-3 style targets (sum 30). HiGHS cannot prove it optimal within minutes."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, size=300)
    logits = rng.normal(size=(300, 5))
    logits[np.arange(300), labels] += 0.6
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    cost = entropy_cost(probs)
    omega = np.array([10.0, 4.0, 8.0, 2.0, 6.0])
    return {"probs": probs, "cost": cost, "omega": omega, "accuracy": float((probs.argmax(1) == labels).mean())}, 30


def run_case(name: str, inst: dict, budget: int, lam: float, time_limit: float, alternatives: bool,
             kill_margin: float, meta: dict[str, Any], repeat: int = 1, certify: float = 0.0) -> dict[str, Any]:
    n, n_classes = inst["probs"].shape
    kill_after = time_limit + kill_margin
    lp = measure(run_lp, inst, budget, lam, 4 * time_limit + 60, kill_after=4 * time_limit + 60 + kill_margin)
    class_prices = lp.pop("class_prices", None)  # for --certify; not kept in the JSON
    runs = []
    for _ in range(max(1, repeat)):  # the 1-minute load average is logged with every run
        load = os.getloadavg()[0]
        runs.append({**measure(run_engine, inst, budget, lam, time_limit, kill_after=kill_after), "load": load})
        runs[-1]["gap_to_lp"] = gap(runs[-1]["objective"], lp["bound"])
    seconds = sorted(r["seconds"] for r in runs)
    engine = {**runs[0], "seconds_min": seconds[0], "seconds_median": float(np.median(seconds)),
              "gap_max": max((r["gap_to_lp"] for r in runs if r["gap_to_lp"] is not None), default=None),
              "repeats": [{k: r.get(k) for k in ("seconds", "gap_to_lp", "status", "fallback", "load")} for r in runs]}
    row = {"size": name, "n": n, "classes": n_classes, "budget": budget, "lam": lam, "time_limit": time_limit,
           "model_accuracy": inst["accuracy"], "omega_sum": float(inst["omega"].sum()), **meta,
           "lp": lp, "engine": engine}
    for key, fn in ALTERNATIVES.items():
        if not alternatives:
            continue
        out = measure(fn, inst, budget, lam, time_limit, kill_after=kill_after)
        out["gap_to_lp"] = gap(out["objective"], lp["bound"])
        row[key] = out
        engine_obj = row["engine"]["objective"]
        if out["objective"] is not None and engine_obj is not None:  # < 0: the engine's objective is lower
            out["engine_minus_this"] = engine_obj - out["objective"]
        out["engine_time_ratio"] = row["engine"]["seconds"] / out["seconds"]
    goal_s, goal_gap = GOALS.get(name, (time_limit, 1e-4))
    e = row["engine"]
    row["meets_goal"] = bool(e["gap_max"] is not None and e["seconds_median"] <= goal_s and e["gap_max"] <= goal_gap)
    if name == "small":  # goal: no worse than HiGHS MILP given the same time
        row["meets_goal"] = bool(row["milp"].get("engine_minus_this", -1.0) <= 1e-9 or row["milp"]["objective"] is None)
    print(f"{name} {meta.get('snapshot', '')} IF={meta.get('imbalance')} cycle={meta.get('cycle')} b={budget} "
          f"lam={lam:g}: engine {e['seconds']:.2f}s "
          f"(min {e['seconds_min']:.2f}, median {e['seconds_median']:.2f} of {len(e['repeats'])}) "
          f"gap {_fmt(e['gap_to_lp'], '.1e')} (max {_fmt(e['gap_max'], '.1e')}) [{e['status']}] "
          f"peak {_fmt(e['peak_mib'], '.0f')} MiB; "
          + ", ".join(f"{k} {row[k]['seconds']:.1f}s gap {_fmt(row[k]['gap_to_lp'], '.1e')}"
                      for k in ALTERNATIVES if k in row)
          + f"; LP {lp['seconds']:.1f}s; load {os.getloadavg()[0]:.1f}", flush=True)
    if (certify > 0 and not row["meets_goal"] and e["gap_max"] is not None and e["gap_max"] > goal_gap
            and class_prices is not None):
        row["certify"] = cert = measure(run_certify, inst, budget, lam, certify, goal_gap, lp["bound"], class_prices,
                                        kill_after=certify + 60 + kill_margin)
        print(f"  certify ({certify:g} s): {cert.get('free_rows')} rows with |rc| < {_fmt(cert.get('slack'), '.3g')}; "
              f"HiGHS best gap {_fmt(cert.get('best_gap'), '.1e')} [{cert['status']}]; proven bound "
              f"{_fmt(cert.get('proven_fraction'), '.3f')} of the goal's slack above the LP", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="cifar10lt,cifar100,tiny")
    parser.add_argument("--lams", default="0.1,1,3")
    parser.add_argument("--imbalance", default="0.1,1")
    parser.add_argument("--cycles", default="1,3")
    parser.add_argument("--time-limits", default="cifar10lt=3,cifar100=3,tiny=15")
    parser.add_argument("--alternatives", default="lam=1",
                        help="'all', 'none', or 'lam=1' (lam 1 everywhere plus every lam at CIFAR-10-LT size)")
    parser.add_argument("--kill-margin", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=1,
                        help="engine runs per case (min/median time, largest gap and each run's load are recorded)")
    parser.add_argument("--small", action="store_true", help="add the issue's N=300, C=5, b=30, lam=50 case")
    parser.add_argument("--imagenet", action="store_true", help="add N=1.28M, C=1000, b=64k (float32, 120 s)")
    parser.add_argument("--quick", action="store_true", help="CIFAR sizes, cycle 1, lam 1, no alternatives")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic pools (0: the tables' instances)")
    parser.add_argument("--sharpen", type=float, default=1.0,
                        help="multiply the synthetic logits (more confident posteriors, same accuracy)")
    parser.add_argument("--snapshots", type=Path, default=None,
                        help="also run on the real pool snapshots of benchmarks/posteriors.py in this folder")
    parser.add_argument("--snapshot-budgets", default="500,1350",
                        help="budgets for the snapshots: the CPU runs' 500 and 5 %% of the pool")
    parser.add_argument("--certify", type=float, default=0.0, metavar="SECONDS",
                        help="for each case that misses the gap goal, HiGHS MILP for this long on the rows that could "
                             "be in a selection within the goal (reduced-cost fixing): one found, or a proven bound")
    parser.add_argument("--out", default="benchmarks/results/selection.json")
    parser.add_argument("--append", action="store_true", help="add the rows to those already in --out")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.cycles, args.lams, args.alternatives = "cifar10lt,cifar100", "1", "1", "none"
    limits = dict(item.split("=") for item in args.time_limits.split(","))

    results = []
    for size in filter(None, args.sizes.split(",")):
        n, n_classes, budget = SIZES[size]
        for imbalance in (float(x) for x in args.imbalance.split(",")):
            for cycle in (int(x) for x in args.cycles.split(",")):
                inst = synthetic_pool(n, n_classes, budget, imbalance=imbalance, cycle=cycle, seed=args.seed,
                                      sharpen=args.sharpen)
                for lam in (float(x) for x in args.lams.split(",")):
                    alternatives = args.alternatives == "all" or (
                        args.alternatives == "lam=1" and (lam == 1.0 or size == "cifar10lt"))
                    results.append(run_case(size, inst, budget, lam, float(limits.get(size, 60)), alternatives,
                                            args.kill_margin,
                                            {"imbalance": imbalance, "cycle": cycle, "seed": args.seed,
                                             "sharpen": args.sharpen},
                                            args.repeat, args.certify))
    if args.snapshots is not None:
        budgets = [int(x) for x in args.snapshot_budgets.split(",")]
        for inst, budget, meta in snapshot_pools(args.snapshots, budgets):
            for lam in (float(x) for x in args.lams.split(",")):
                results.append(run_case("cifar10lt-real", inst, budget, lam, float(limits.get("cifar10lt", 3)),
                                        args.alternatives == "all", args.kill_margin, meta, args.repeat,
                                        args.certify))
    if args.small:
        inst, budget = small_case()
        for limit in (3.0, 10.0, 30.0):
            results.append(run_case("small", inst, budget, 50.0, limit, True, args.kill_margin,
                                    {"imbalance": 1.0, "cycle": 3}))
    if args.imagenet:
        n, n_classes, budget = SIZES["imagenet"]
        inst = synthetic_pool(n, n_classes, budget, imbalance=1.0, cycle=1, dtype=np.float32)
        row = {"size": "imagenet", "n": n, "classes": n_classes, "budget": budget, "lam": 1.0, "time_limit": 120.0,
               "imbalance": 1.0, "cycle": 1, "model_accuracy": inst["accuracy"],
               "omega_sum": float(inst["omega"].sum()),
               "engine": measure(run_engine, inst, budget, 1.0, 120.0, kill_after=400.0), "lp": {"bound": None}}
        row["engine"]["gap_to_lp"] = None  # no independent LP at this size: see own_lower_bound
        e = row["engine"]
        row["meets_goal"] = bool(e.get("own_gap") is not None and e["seconds"] <= 120.0 and e["own_gap"] <= 1e-3
                                 and e["peak_mib"] is not None and e["peak_mib"] <= 24 * 1024)
        print(f"imagenet: engine {row['engine']['seconds']:.1f}s [{row['engine']['status']}] "
              f"peak {_fmt(row['engine']['peak_mib'], '.0f')} MiB", flush=True)
        results.append(row)

    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"cpu_count": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "load_average_at_end": os.getloadavg(),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "memory": "peak_mib = VmHWM of the forked child (includes the inherited instance); "
                      "peak_delta_mib = VmHWM - VmRSS at the child's start"}
    runs = [meta]
    if args.append and out_path.exists():
        previous = json.loads(out_path.read_text())
        runs = [*previous.get("runs", [previous["meta"]]), meta]
        results = previous["results"] + results
    out_path.write_text(json.dumps({"meta": meta, "runs": runs, "results": results}, indent=2, default=float))
    print_table(results)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(results: list[dict[str, Any]]) -> None:
    """Markdown table: one row per case, the engine and each alternative's time, status and gap."""
    header = ["size", "IF", "cycle", "lam", "limit s", "engine s median (min)", "engine gap (max)", "engine status",
              "peak MiB (+delta)", "goal"]
    for key in ALTERNATIVES:
        header += [f"{key} s", f"{key} gap", f"engine - {key}"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in results:
        e = r["engine"]
        status = e["status"] + (f" ({e['fallback']})" if e.get("fallback") else "")
        seconds = _fmt(e.get("seconds_median", e["seconds"]), ".2f")
        if len(e.get("repeats", [])) > 1:
            seconds += f" ({_fmt(e['seconds_min'], '.2f')})"
        worst = e.get("gap_max", e["gap_to_lp"])
        cells = [r["size"], f"{r.get('imbalance', '')}", f"{r.get('cycle', '')}", f"{r['lam']:g}",
                 f"{r['time_limit']:g}", seconds,
                 _fmt(worst, ".1e") if worst is not None else f"{_fmt(e.get('own_gap'), '.1e')} (own)",
                 status,
                 f'{_fmt(e["peak_mib"], ".0f")} (+{_fmt(e["peak_delta_mib"], ".0f")})',
                 "yes" if r.get("meets_goal") else "no"]
        for key in ALTERNATIVES:
            alt = r.get(key)
            if alt is None:
                cells += ["", "", ""]
                continue
            cells += [_fmt(alt["seconds"], ".1f"), _fmt(alt["gap_to_lp"], ".1e") if alt["objective"] is not None
                      else alt["status"][:24], _fmt(alt.get("engine_minus_this"), ".3g")]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
