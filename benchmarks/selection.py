"""Benchmark of the class-balanced selection engine against HiGHS on synthetic pools of the paper's sizes.

For each size and lambda, on one seeded synthetic long-tailed softmax matrix (half the classes rarer by
IF = 0.1, a model of ~65 % accuracy, cost = negative entropy as in Eq. 8, Omega from Eq. 4 at cycle 2):

* ``engine``: :func:`cbal_lightning.selection.balanced_select`, wall time including model building;
* ``milp``: ``scipy.optimize.milp`` (HiGHS branch and bound) on the same float problem, in the same one-sided
  form (z binary, one shortfall per class), with the same time limit;
* ``lp``: the full LP relaxation alone (``scipy.optimize.linprog(method="highs")``), whose optimum is the
  lower bound every gap is measured against: ``gap = (objective - LP bound) / |objective|``.

Each method runs in a forked child process; memory is the child's peak resident set (VmHWM, which includes
the ~N*C*8 bytes of the inherited instance) and its increase over the RSS at the start of the method.

Usage: ``python benchmarks/selection.py [--sizes cifar10lt,cifar100,tiny] [--lams 0.1,1,3] [--time-limit 60]
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

SIZES = {  # name: (pool N, classes C, budget b)
    "cifar10lt": (25_000, 10, 2_500),
    "cifar100": (45_000, 100, 2_500),
    "tiny": (90_000, 200, 5_000),
}
IMBALANCE = 0.1
TARGET_ACCURACY = 0.65


def synthetic_pool(n: int, n_classes: int, budget: int, seed: int = 0) -> dict[str, Any]:
    """Seeded long-tailed pool: probabilities, Eq. 8 cost and Eq. 4 targets at cycle 2."""
    rng = np.random.default_rng(seed)
    weights = np.where(np.arange(n_classes) < n_classes // 2, 1.0, IMBALANCE)
    weights /= weights.sum()
    labels = rng.choice(n_classes, size=n, p=weights)
    noise = rng.normal(size=(n, n_classes))
    jitter = rng.normal(size=n)

    def softmax(margin: float) -> np.ndarray:
        logits = noise.copy()
        logits[np.arange(n), labels] += margin + jitter
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        return logits / logits.sum(axis=1, keepdims=True)

    def accuracy(margin: float) -> float:
        logits = noise[:5000].copy()
        logits[np.arange(min(n, 5000)), labels[:5000]] += margin + jitter[:5000]
        return float((logits.argmax(axis=1) == labels[:5000]).mean())

    low, high = 0.0, 10.0  # bisect the true-class margin for the target accuracy
    for _ in range(30):
        mid = (low + high) / 2
        low, high = (mid, high) if accuracy(mid) < TARGET_ACCURACY else (low, mid)
    probs = softmax(high)
    cost = (probs * np.log(np.maximum(probs, 1e-300))).sum(axis=1)  # Eq. 8: z^T (P log P) 1
    initial = 2 * budget // n_classes * n_classes  # uniform initial set
    first_query = rng.multinomial(budget, 0.5 * weights + 0.5 / n_classes)  # a partly balanced cycle 1
    counts = initial // n_classes + first_query
    omega = class_targets(counts, budget, 2, initial)  # Eq. 4 for the second query
    return {"probs": probs, "cost": cost, "omega": omega, "accuracy": float((probs.argmax(1) == labels).mean())}


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
            "fallback": sel.fallback, "own_lower_bound": sel.lower_bound, "timings": sel.timings}


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


def run_lp(inst: dict, budget: int, lam: float, time_limit: float) -> dict[str, Any]:
    probs, cost, omega = inst["probs"], inst["cost"], inst["omega"]
    c, rows, lower, upper, var_upper = one_sided(probs, cost, omega, budget, lam)
    n_classes = probs.shape[1]
    res = linprog(c, A_ub=-rows[:n_classes], b_ub=-lower[:n_classes], A_eq=rows[n_classes:], b_eq=[budget],
                  bounds=np.stack([np.zeros_like(var_upper), var_upper], 1), method="highs",
                  options={"time_limit": time_limit})
    bound = float(res.fun - lam * omega.sum()) if res.status == 0 else None
    return {"bound": bound, "status": f"HiGHS status {res.status}"}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="cifar10lt,cifar100,tiny")
    parser.add_argument("--lams", default="0.1,1,3")
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--out", default="benchmarks/results/selection.json")
    args = parser.parse_args()

    results = []
    for size in args.sizes.split(","):
        n, n_classes, budget = SIZES[size]
        inst = synthetic_pool(n, n_classes, budget)
        for lam in (float(x) for x in args.lams.split(",")):
            kill_after = 2 * args.time_limit + 30
            lp = measure(run_lp, inst, budget, lam, args.time_limit, kill_after=kill_after)
            engine = measure(run_engine, inst, budget, lam, args.time_limit, kill_after=kill_after)
            mip = measure(run_milp, inst, budget, lam, args.time_limit, kill_after=kill_after)
            for out in (engine, mip):
                out["gap_to_lp"] = gap(out["objective"], lp["bound"])
            row = {"size": size, "n": n, "classes": n_classes, "budget": budget, "lam": lam,
                   "model_accuracy": inst["accuracy"], "omega_sum": float(inst["omega"].sum()),
                   "engine": engine, "milp": mip, "lp": lp, "engine_over_milp_time": engine["seconds"] / mip["seconds"]}
            results.append(row)
            print(f"{size} lam={lam}: engine {engine['seconds']:.2f}s gap {engine['gap_to_lp']:.2e} "
                  f"[{engine['status']}], milp {mip['seconds']:.2f}s [{mip['status']}], lp {lp['seconds']:.2f}s",
                  flush=True)

    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"cpu_count": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "time_limit": args.time_limit,
            "memory": "peak_mib = VmHWM of the forked child (includes the inherited instance); "
                      "peak_delta_mib = VmHWM - VmRSS at the child's start"}
    out_path.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print_table(results)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(results: list[dict[str, Any]]) -> None:
    header = ["size", "lam", "engine s", "engine gap", "engine L1", "engine status", "engine peak MiB (+delta)",
              "MILP s", "MILP gap", "MILP L1", "MILP status", "MILP peak MiB (+delta)", "LP s", "engine/MILP time"]
    rows = [[
        r["size"], f"{r['lam']:g}", _fmt(r["engine"]["seconds"], ".2f"), _fmt(r["engine"]["gap_to_lp"], ".1e"),
        _fmt(r["engine"]["l1_score"], ".3f"), r["engine"]["status"],
        f'{_fmt(r["engine"]["peak_mib"], ".0f")} (+{_fmt(r["engine"]["peak_delta_mib"], ".0f")})',
        _fmt(r["milp"]["seconds"], ".2f"), _fmt(r["milp"]["gap_to_lp"], ".1e"), _fmt(r["milp"]["l1_score"], ".3f"),
        r["milp"]["status"], f'{_fmt(r["milp"]["peak_mib"], ".0f")} (+{_fmt(r["milp"]["peak_delta_mib"], ".0f")})',
        _fmt(r["lp"]["seconds"], ".2f"),
        _fmt(r["engine_over_milp_time"], ".3f"),
    ] for r in results]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(" | ".join(header))
        for row in rows:
            print(" | ".join(row))
        return
    table = Table(*header, title="balanced_select vs HiGHS (gap to the LP bound)")
    for row in rows:
        table.add_row(*row)
    Console(width=220).print(table)


if __name__ == "__main__":
    main()
