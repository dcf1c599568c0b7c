"""Where the selection engine's gap goes, for the cases of a ``benchmarks/selection.py`` run that missed the goal.

With the LP's class prices ``y`` (``0 <= y <= 2 lam``) and budget price ``mu``, every selection ``z`` satisfies the
identity of ``cbal_lightning/selection/lp.py``::

    objective(z) - L(y) = sum of |rc_i| over the rows z sets against their sign       (reduced-cost part)
                        + sum_c penalty_c(d_c),  d = Omega - P^T z                      (balance part)
    penalty_c(d) = (2 lam - y_c) d  if d > 0  else  y_c |d|

where ``L(y)`` is the Lagrangian bound (the LP bound). The reduced-cost part is what the selection pays for leaving
the LP's cheapest rows; the balance part what it pays for the class deviations that the LP's fractional rows (up
to C + 1) avoid and whole rows cannot. Each missed case is rebuilt (synthetic pools from their seed, real ones
from ``--snapshots``), the LP solved to the end, the engine rerun at each ``--limits`` value and its gap split.

Usage: ``python benchmarks/selection_anatomy.py RESULTS.json [...] [--snapshots /tmp/cbal-pilot-cache] [--limits 3,20]
[--out benchmarks/results/selection_anatomy.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from selection import SIZES, snapshot_pools, synthetic_pool  # noqa: E402

from cbal_lightning.selection import balanced_select  # noqa: E402
from cbal_lightning.selection.lp import LinearRelaxation  # noqa: E402
from cbal_lightning.selection.rounding import objective  # noqa: E402


def gap_anatomy(
    cost: np.ndarray, probs: np.ndarray, omega: np.ndarray, lam: float, rows: np.ndarray, lp: LinearRelaxation
) -> dict[str, float]:
    """Split ``objective(rows) - lp.lower_bound`` into its reduced-cost and balance parts (both >= 0).

    ``lp`` must be solved; its ``rc`` are ``c_i - P_i y - mu`` at the prices of its bound.

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]])
        >>> cost, omega, lam = np.array([-0.5, -0.6, -0.1]), np.array([1.0, 1.0]), 1.0
        >>> lp = LinearRelaxation(cost + lam * probs.sum(axis=1), probs, omega, 2, lam)
        >>> lp.solve(time.perf_counter() + 10)
        >>> parts = gap_anatomy(cost, probs, omega, lam, np.array([0, 1]), lp)
        >>> round(parts["excess"], 6) == round(parts["reduced_cost"] + parts["balance"], 6)
        True
    """
    selected = np.zeros(cost.size, dtype=bool)
    selected[rows] = True
    wrong_side = np.where(selected, np.maximum(lp.rc, 0.0), np.maximum(-lp.rc, 0.0))
    deviation = omega - probs[rows].sum(axis=0, dtype=np.float64)
    penalty = np.where(deviation > 0, (2 * lam - lp.y) * deviation, -lp.y * deviation)
    return {"excess": objective(cost, probs, omega, lam, rows) - lp.lower_bound,
            "reduced_cost": float(wrong_side.sum()), "balance": float(penalty.sum()),
            "rows_off_side": int((wrong_side > 1e-12).sum()), "mean_abs_deviation": float(np.abs(deviation).mean())}


def rebuild(case: dict[str, Any], snapshots: Path | None) -> dict[str, Any] | None:
    """The instance of a results row: a synthetic pool from its size and seed, or a real pool snapshot."""
    if case["size"] in SIZES:
        n, n_classes, budget = SIZES[case["size"]]
        return synthetic_pool(n, n_classes, budget, imbalance=case["imbalance"], cycle=case["cycle"],
                              seed=case.get("seed", 0), sharpen=case.get("sharpen", 1.0))
    if snapshots is None or "snapshot" not in case:
        return None
    for inst, budget, meta in snapshot_pools(snapshots, [case["budget"]]):
        if meta["snapshot"] == case["snapshot"]:
            return inst
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path, nargs="+", help="JSON files written by benchmarks/selection.py")
    parser.add_argument("--snapshots", type=Path, default=None, help="the pool snapshots of its real cases")
    parser.add_argument("--limits", default="3,20", help="engine time limits to split the gap at")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/selection_anatomy.json"))
    args = parser.parse_args()
    limits = [float(x) for x in args.limits.split(",")]
    warnings.simplefilter("ignore", RuntimeWarning)  # the engine's time-limit warnings: the status says it
    records = []
    for case in (row for path in args.results for row in json.loads(path.read_text())["results"]):
        if case.get("meets_goal", True) or case["size"] in ("small", "imagenet"):
            continue
        inst = rebuild(case, args.snapshots)
        if inst is None:
            print(f"skipped (no instance): {case['size']} {case.get('snapshot', '')}", flush=True)
            continue
        cost, probs, omega, budget, lam = inst["cost"], inst["probs"], inst["omega"], case["budget"], case["lam"]
        lp = LinearRelaxation(cost + lam * probs.sum(axis=1, dtype=np.float64), probs, omega, budget, lam)
        lp.solve(time.perf_counter() + 600)
        tight = (lp.y > 1e-6) & (lp.y < 2 * lam - 1e-6)  # classes the LP holds exactly on target
        record = {key: case.get(key) for key in ("size", "snapshot", "imbalance", "cycle", "seed", "sharpen")}
        record.update(budget=budget, lam=lam, lp_solved=lp.solved, bound=lp.lower_bound, classes=probs.shape[1],
                      tight_classes=int(tight.sum()), fractional_rows=int(((lp.x > 1e-6) & (lp.x < 1 - 1e-6)).sum()),
                      goal_excess=1e-4 * abs(lp.lower_bound), runs={})
        for limit in limits:
            sel = balanced_select(cost, probs, budget, omega, lam, time_limit=limit)
            parts = gap_anatomy(cost, probs, omega, lam, sel.indices, lp)
            record["runs"][f"{limit:g}"] = {**parts, "gap": parts["excess"] / abs(sel.objective), "status": sel.status}
        records.append(record)
        print(" ".join([f"{case['size']} {case.get('snapshot', '')} IF={case.get('imbalance')} cycle={case.get('cycle')}",
                        f"b={budget} lam={lam:g}:"] + [
            f"[{k} s] gap {r['gap']:.2e}, reduced cost {r['reduced_cost'] / r['excess']:.0%}, balance "
            f"{r['balance'] / r['excess']:.0%}" for k, r in record["runs"].items()]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"command": " ".join(["python", *sys.argv]), "cpu_count": os.cpu_count(), "load_average_at_end": os.getloadavg()}
    args.out.write_text(json.dumps({"meta": meta, "results": records}, indent=2, default=float))
    print_table(records, limits)


def print_table(records: list[dict[str, Any]], limits: list[float]) -> None:
    """Markdown table: per case, the gap at each limit and the share of the excess each part takes at the first."""
    first = f"{limits[0]:g}"
    print("| case | b | lam | tight classes | LP fractional rows | "
          + " | ".join(f"gap at {x:g} s" for x in limits)
          + f" | excess / goal's | reduced-cost share | balance share | mean abs(Omega - P^T z) |")
    print("|" + "---|" * (9 + len(limits)))
    for r in records:
        run = r["runs"][first]
        name = (r["snapshot"] or "").replace(".npz", "") or f"{r['size']} IF {r['imbalance']:g} cycle {r['cycle']}"
        if (r.get("sharpen") or 1.0) != 1.0:
            name += f" sharpen {r['sharpen']:g}"
        print(f"| {name} | {r['budget']} | {r['lam']:g} | {r['tight_classes']}/{r['classes']} | {r['fractional_rows']} | "
              + " | ".join(f"{r['runs'][f'{x:g}']['gap']:.2e}" for x in limits)
              + f" | {run['excess'] / r['goal_excess']:.2f} | {run['reduced_cost'] / run['excess']:.2f} | "
              f"{run['balance'] / run['excess']:.2f} | {run['mean_abs_deviation']:.4f} |")


if __name__ == "__main__":
    main()
