"""Lambda at every query by the paper's rule (``ClassBalanced(lam="auto")``) against fixed lambdas (issue 10).

On the CIFAR-10-LT pool snapshots of ``benchmarks/pilot.py`` (seeds 5 and 6, held apart from the design study;
IF 0.1, 1,000 initial labels, budget 500, SmallCNN: 35-36 % pool accuracy), every method picks from the same
snapshot and the batch is scored by Eq. 10 on its true labels:

* query 1: a pilot of 100 random samples (the library default), the other 400 by corrected Entropy-CB;
* query 2: the snapshot ``pilot.py`` reached (pilot of 100 at lambda 3), the prior from query 1's revealed labels.

Methods: Entropy (top-b of the whole pool, no pilot), corrected Entropy-CB with lambda 1, 3, 6, 12 and "auto", and "auto" with the oracle
prior (the pool's true class distribution: a ceiling, not a method). Needs ``pilot.py``'s cache (run it first).

    python benchmarks/auto_lambda.py [--cache /tmp/cbal-pilot-cache] [--out benchmarks/results/auto_lambda.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from balance import save_results  # noqa: E402
from cbal_lightning.selection import parse_lam  # noqa: E402
from pilot import TAIL, pilot_prior  # noqa: E402

PILOT = 100
BUDGET = 500
INITIAL = 1000


def queries(cache: Path, seed: int) -> list[dict[str, Any]]:
    """The two selection problems of a seed: rows to choose from, pool prior shifts, Eq. 4 targets."""
    from cbal_lightning.selection import ClassBalanced, class_targets
    from cbal_lightning.selection.prior import PriorShift, PriorTracker, label_prior

    s1 = dict(np.load(cache / f"seed{seed}_q1_init.npz"))
    s2 = dict(np.load(cache / f"seed{seed}_q2_pilot-revealed{PILOT}.npz"))
    c = s1["probs"].shape[1]
    pilot = np.random.default_rng(seed + 1).choice(len(s1["probs"]), PILOT, replace=False)  # as pilot.py's draw 0
    rest = np.setdiff1d(np.arange(len(s1["probs"])), pilot)
    estimate = pilot_prior("revealed", s1["probs"], pilot, s1["truth"][pilot])
    # query 1 of pilot.py's trajectory (lambda 3): its revealed labels give query 2's prior, as in the callback
    omega1 = class_targets(s1["labeled_counts"] + np.bincount(s1["truth"][pilot], minlength=c), BUDGET, 1, INITIAL)
    shift1 = PriorShift(estimate, label_prior(s1["train_labels"], c), "pilot")
    rows3 = ClassBalanced(lam=3.0, time_limit=10.0).select(
        s1["scores"][rest], s1["probs"][rest], BUDGET - PILOT, omega1, prior_shift=shift1).indices
    batch1 = np.concatenate([pilot, rest[rows3]])
    tracker = PriorTracker()
    tracker.observe(s1["probs"], batch1, s1["truth"][batch1])
    return [
        {"query": 1, "snap": s1, "rows": rest, "fixed": pilot, "budget": BUDGET - PILOT, "omega": omega1,
         "shift": shift1, "train_prior": shift1.train_prior},
        {"query": 2, "snap": s2, "rows": np.arange(len(s2["probs"])), "fixed": np.zeros(0, dtype=np.int64),
         "budget": BUDGET, "omega": class_targets(s2["labeled_counts"], BUDGET, 2, INITIAL),
         "shift": PriorShift(tracker.pool_prior, label_prior(s2["train_labels"], c), "revealed"),
         "train_prior": label_prior(s2["train_labels"], c)},
    ]


def run_query(q: dict[str, Any], lams: list[float | str]) -> dict[str, Any]:
    from cbal_lightning.selection import ClassBalanced, TopK, l1_score
    from cbal_lightning.selection.prior import PriorShift

    snap, rows = q["snap"], q["rows"]
    probs, scores, truth = snap["probs"][rows], snap["scores"][rows], snap["truth"][rows]
    c = probs.shape[1]
    oracle = PriorShift(np.bincount(truth, minlength=c) / len(truth), q["train_prior"], "oracle")
    plain = TopK().select(snap["scores"], snap["probs"], BUDGET, q["omega"]).indices  # Entropy: no pilot
    entropy = np.bincount(snap["truth"][plain], minlength=c)
    out = {"Entropy": {"l1": l1_score(entropy), "tail_picks": int(entropy[TAIL].sum()), "counts": entropy.tolist(),
                       "lam": 0.0, "seconds": 0.0, "status": "TOP_B"}}
    methods: dict[str, tuple[Any, Any]] = {}
    methods.update({f"CB lam={lam}": (ClassBalanced(lam=lam, time_limit=20.0), q["shift"]) for lam in lams})
    methods["CB-oracle lam=auto"] = (ClassBalanced(time_limit=20.0), oracle)
    for name, (selector, shift) in methods.items():
        start = time.perf_counter()
        sel = selector.select(scores, probs, q["budget"], q["omega"], prior_shift=shift)
        seconds = time.perf_counter() - start
        counts = np.bincount(np.concatenate([snap["truth"][q["fixed"]], truth[sel.indices]]), minlength=c)
        out[name] = {"l1": l1_score(counts), "tail_picks": int(counts[TAIL].sum()), "counts": counts.tolist(),
                     "lam": sel.lam, "seconds": seconds, "status": sel.status}
    return out


def table(records: list[dict[str, Any]]) -> str:
    methods = list(records[0]["methods"])
    mean = lambda m, q, k: float(np.mean([r["methods"][m][k] for r in records if r["query"] == q]))  # noqa: E731
    base = np.mean([mean("Entropy", q, "l1") for q in (1, 2)])
    lines = ["| method | query 1 L1 (tail picks) | query 2 L1 (tail picks) | mean q1-2 | vs Entropy | lambda chosen "
             "(q1; q2) | selection s |", "|---|---:|---:|---:|---:|---|---:|"]
    for m in methods:
        first2 = np.mean([mean(m, q, "l1") for q in (1, 2)])
        chosen = "; ".join(",".join(f"{r['methods'][m]['lam']:g}" for r in records if r["query"] == q) for q in (1, 2))
        cells = [f"{mean(m, q, 'l1'):.3f} ({mean(m, q, 'tail_picks'):.0f})" for q in (1, 2)]
        lines.append(f"| {m} | {cells[0]} | {cells[1]} | {first2:.3f} | {first2 / base:.2f}x | "
                     f"{chosen if m != 'Entropy' else '-'} | {max(r['methods'][m]['seconds'] for r in records):.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[5, 6])
    p.add_argument("--lams", type=parse_lam, nargs="+", default=[1.0, 3.0, 6.0, 12.0, "auto"])
    p.add_argument("--cache", type=Path, default=Path("/tmp/cbal-pilot-cache"))
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "auto_lambda.json")
    args = p.parse_args(argv)
    start = time.perf_counter()
    records = []
    for seed in args.seeds:
        for q in queries(args.cache, seed):
            records.append({"seed": seed, "query": q["query"], "methods": run_query(q, args.lams)})
            print(f"[seed {seed} query {q['query']}] " + ", ".join(
                f"{m} {v['l1']:.3f}" for m, v in records[-1]["methods"].items()), flush=True)
    text = table(records)
    print(text)
    save_results(args, start, text, records)


if __name__ == "__main__":
    main()
