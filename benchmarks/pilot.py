"""The first query's pool prior (issue 10): a random pilot inside the query vs cross-fitting vs no correction.

Query 1 has no revealed labels. Two ways to estimate the pool's class prior for it, measured here on pool
snapshots of real trained models (CIFAR-10-LT from the shared JPEGs, IF 0.1, 100 initial labels per class,
budget 500, SmallCNN, 10 epochs: ~30-40 % pool accuracy), seeds held apart from the design study:

* **Pilot**: label ``m`` random pool samples first (part of the budget), estimate the prior from their
  labels (the revealed-label estimator: BCTS on the pilot, a calibration on pool data; or Dirichlet-smoothed
  counts), then choose the other ``b - m`` with the corrected ``P`` and Eq. 4 targets that count the pilot
  as labeled. The whole batch (pilot + rest) is scored.
* **Cross-fitting** (k = 2): two models, each trained on half of the initial set, predict the other half and
  the pool; BCTS + MLLS per fold, the two estimates averaged. Its cost (two more trainings and pool passes)
  is measured.

Every method picks from the same snapshot; the batch is scored by Eq. 10 on its true labels. Query 2 is
measured on the snapshot reached by the ``--trajectory`` pilot (its prior from the revealed labels of query 1,
as the library does from query 2 on).

    python benchmarks/pilot.py [--seeds 5 6] [--pilots 0 25 50 75 100] [--out benchmarks/results/pilot.json]

Snapshots (probabilities, scores, labels) are cached under ``--cache`` so that the selection part can be re-run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from balance import make_datamodule, predict, save_results, train  # noqa: E402

TAIL = list(range(5, 10))


def snapshot(dm: Any, seed: int, query: int, epochs: int, cache: Path, tag: str) -> dict[str, np.ndarray]:
    """Pool probabilities, scores and true labels of a model trained on ``dm``'s labeled set (cached)."""
    path = cache / f"seed{seed}_q{query}_{tag}.npz"
    if path.exists():
        return dict(np.load(path))
    start = time.perf_counter()
    model = train(dm, "cifar10", seed * 100 + query, epochs)
    train_seconds = time.perf_counter() - start
    pool = dm.pools.unlabeled_indices()
    t0 = time.perf_counter()
    probs, scores = predict(model, dm, pool)
    out = {"pool": pool, "probs": probs, "scores": scores, "truth": dm.targets[pool],
           "labeled_counts": dm.pools.labeled_counts(), "train_labels": dm.targets[dm.pools.training_indices()],
           "train_seconds": np.array(train_seconds), "predict_seconds": np.array(time.perf_counter() - t0)}
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def crossfit(dm: Any, seed: int, epochs: int, cache: Path, k: int) -> dict[str, Any]:
    """k-fold cross-fitted MLLS + BCTS on the initial set: per fold a model trained on the other folds."""
    from cbal_lightning.selection.prior import PRIOR_FLOOR, fit_calibration, label_prior, mlls_prior

    path = cache / f"seed{seed}_crossfit{k}.json"
    if path.exists():
        return json.loads(path.read_text())
    labeled = dm.pools.labeled_indices()
    folds = np.array_split(np.random.default_rng(seed).permutation(labeled), k)
    pool = dm.pools.unlabeled_indices()
    estimates, seconds = [], []
    for i, held in enumerate(folds):
        start = time.perf_counter()
        dm.pools.hold_out(held)
        model = train(dm, "cifar10", seed * 100 + 50 + i, epochs)
        held_probs = predict(model, dm, held)[0]
        pool_probs = predict(model, dm, pool)[0]
        dm.pools.release_held_out()
        cal = fit_calibration(held_probs, dm.targets[held])
        q = np.maximum(mlls_prior(pool_probs, label_prior(dm.targets[held], dm.num_classes), calibration=cal),
                       PRIOR_FLOOR / dm.num_classes)
        estimates.append((q / q.sum()).tolist())
        seconds.append(time.perf_counter() - start)
    out = {"estimates": estimates, "prior": np.mean(estimates, axis=0).tolist(), "seconds": seconds}
    path.write_text(json.dumps(out))
    return out


def pilot_prior(kind: str, probs: np.ndarray, rows: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The pool prior (of what remains) from a random pilot's labels."""
    from cbal_lightning.selection.prior import revealed_prior

    c = probs.shape[1]
    if kind == "revealed":
        return revealed_prior(probs, rows, labels)
    counts = np.bincount(labels, minlength=c) + 0.5  # Dirichlet(1/2) smoothing
    return counts / counts.sum()


def pilot_select(snap: dict[str, np.ndarray], m: int, kind: str, lam: float, budget: int, query: int,
                 initial: int, seed: int) -> np.ndarray:
    """Rows of a pilot of ``m`` random samples, then ``budget - m`` by CB with the pilot-corrected P (Eq. 4 counts
    the pilot as labeled)."""
    from cbal_lightning.selection import ClassBalanced, class_targets
    from cbal_lightning.selection.prior import PriorShift, label_prior

    probs, scores, truth = snap["probs"], snap["scores"], snap["truth"]
    c = probs.shape[1]
    pilot = np.random.default_rng(seed).choice(len(probs), m, replace=False)
    counts = snap["labeled_counts"] + np.bincount(truth[pilot], minlength=c)
    shift = PriorShift(pilot_prior(kind, probs, pilot, truth[pilot]), label_prior(snap["train_labels"], c), f"pilot-{kind}")
    rest = np.setdiff1d(np.arange(len(probs)), pilot)
    omega = class_targets(counts, budget, query, initial)  # Eq. 4, the pilot counted as labeled
    sel = ClassBalanced(lam=lam, time_limit=10.0).select(scores[rest], probs[rest], budget - m, omega, prior_shift=shift)
    return np.concatenate([pilot, rest[sel.indices]])


def standard(snap: dict[str, np.ndarray], lam: float, budget: int, query: int, initial: int, seed: int,
             estimates: dict[str, np.ndarray | None]) -> dict[str, np.ndarray]:
    """Random, Entropy, and CB with each given pool prior (None: the paper's Eq. 8)."""
    from cbal_lightning.selection import ClassBalanced, TopK, class_targets
    from cbal_lightning.selection.prior import PriorShift, label_prior

    probs, scores, truth = snap["probs"], snap["scores"], snap["truth"]
    c = probs.shape[1]
    omega = class_targets(snap["labeled_counts"], budget, query, initial)  # Eq. 4
    train_prior = label_prior(snap["train_labels"], c)
    picks = {"Random": np.random.default_rng(seed).choice(len(probs), budget, replace=False),
             "Entropy": TopK().select(scores, probs, budget, omega).indices}
    for name, q in estimates.items():
        shift = None if q is None else PriorShift(np.asarray(q), train_prior, name)
        picks[name] = ClassBalanced(lam=lam, prior=None if q is None else "estimate", time_limit=10.0).select(
            scores, probs, budget, omega, prior_shift=shift).indices
    return picks


def describe(truth: np.ndarray, rows: np.ndarray, c: int) -> dict[str, Any]:
    from cbal_lightning.selection import l1_score

    counts = np.bincount(truth[rows], minlength=c)
    return {"l1": l1_score(counts), "tail_picks": int(counts[TAIL].sum()), "counts": counts.tolist()}


def run_seed(seed: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    from cbal_lightning.selection.prior import PriorTracker

    dm = make_datamodule("cifar10", seed, args)
    dm.setup("fit")
    c, initial, b = dm.num_classes, dm.pools.initial_size, args.budget
    records = []
    snap = snapshot(dm, seed, 1, args.epochs, args.cache, "init")
    oracle = np.bincount(snap["truth"], minlength=c) / len(snap["truth"])
    cf = crossfit(dm, seed, args.epochs, args.cache, args.crossfit) if args.crossfit > 1 else None
    estimates: dict[str, Any] = {"CB-paper": None, "CB-oracle": oracle}
    if cf is not None:
        estimates[f"CB-crossfit{args.crossfit}"] = np.asarray(cf["prior"])
    t0 = time.perf_counter()
    picks = standard(snap, args.lam, b, 1, initial, seed + 1, estimates)
    for kind in args.kinds:
        for m in args.pilots:
            for d in range(args.draws):  # draw 0 is the trajectory's pilot
                picks[f"pilot-{kind} m={m} draw={d}"] = pilot_select(snap, m, kind, args.lam, b, 1, initial, seed + 1 + 100 * d)
    rec = {"seed": seed, "query": 1, "pool_acc": float((snap["probs"].argmax(1) == snap["truth"]).mean()),
           "train_seconds": float(snap["train_seconds"]), "predict_seconds": float(snap["predict_seconds"]),
           "select_seconds": time.perf_counter() - t0, "true_prior": oracle.tolist(),
           "crossfit": cf, "methods": {k: describe(snap["truth"], v, c) for k, v in picks.items()}}
    if cf is not None:
        rec["crossfit_tv"] = float(0.5 * np.abs(np.asarray(cf["prior"]) - oracle).sum())
    records.append(rec)
    print(f"[seed {seed} q1] acc {rec['pool_acc']:.3f} " + ", ".join(f"{k} {v['l1']:.3f}" for k, v in rec["methods"].items()), flush=True)
    # query 2 on the trajectory of the chosen pilot; the tracker learns the prior from query 1's revealed labels
    rows = pilot_select(snap, args.trajectory, args.trajectory_kind, args.lam, b, 1, initial, seed + 1)
    tracker = PriorTracker()
    tracker.observe(snap["probs"], rows, snap["truth"][rows])
    dm.pools.label(snap["pool"][rows], 1)
    snap2 = snapshot(dm, seed, 2, args.epochs, args.cache, f"pilot-{args.trajectory_kind}{args.trajectory}")
    oracle2 = np.bincount(snap2["truth"], minlength=c) / len(snap2["truth"])
    picks = standard(snap2, args.lam, b, 2, initial, seed + 2,
                     {"CB-paper": None, "CB-corrected (revealed)": tracker.pool_prior, "CB-oracle": oracle2})
    rec = {"seed": seed, "query": 2, "pool_acc": float((snap2["probs"].argmax(1) == snap2["truth"]).mean()),
           "train_seconds": float(snap2["train_seconds"]), "true_prior": oracle2.tolist(),
           "tracker_tv": float(0.5 * np.abs(tracker.pool_prior - oracle2).sum()),
           "methods": {k: describe(snap2["truth"], v, c) for k, v in picks.items()}}
    records.append(rec)
    print(f"[seed {seed} q2] acc {rec['pool_acc']:.3f} " + ", ".join(f"{k} {v['l1']:.3f}" for k, v in rec["methods"].items()), flush=True)
    return records


def table(records: list[dict[str, Any]]) -> str:
    """Mean true-label L1 (tail picks) per method at queries 1 and 2, pilots averaged over their draws; the ratio of
    the mean over queries 1-2 to Entropy's, where the method at query 2 is the library's (revealed labels)."""
    def mean(query: int, prefix: str, key: str = "l1") -> float:
        return float(np.mean([v[key] for r in records if r["query"] == query
                              for k, v in r["methods"].items() if k == prefix or k.startswith(prefix + " draw=")]))

    q1 = list(dict.fromkeys(k.split(" draw=")[0] for r in records if r["query"] == 1 for k in r["methods"]))
    entropy = (mean(1, "Entropy") + mean(2, "Entropy")) / 2
    q2_default = mean(2, "CB-corrected (revealed)")
    lines = ["| method at query 1 | query 1 L1 (tail picks) | mean q1-2 with the default's query 2 | vs Entropy |",
             "|---|---:|---:|---:|"]
    for m in q1:
        both = (mean(1, m) + (mean(2, "Entropy") if m == "Entropy" else q2_default)) / 2
        lines.append(f"| {m} | {mean(1, m):.3f} ({mean(1, m, 'tail_picks'):.0f}) | {both:.3f} | {both / entropy:.2f}x |")
    q2 = list(dict.fromkeys(k for r in records if r["query"] == 2 for k in r["methods"]))
    lines += ["", "| method at query 2 | query 2 L1 (tail picks) |", "|---|---:|"]
    lines += [f"| {m} | {mean(2, m):.3f} ({mean(2, m, 'tail_picks'):.0f}) |" for m in q2]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[5, 6])
    p.add_argument("--pilots", type=int, nargs="+", default=[50, 75, 100, 150])
    p.add_argument("--draws", type=int, default=4, help="random pilots per size and snapshot")
    p.add_argument("--kinds", nargs="+", default=["revealed", "counts"], choices=["revealed", "counts"])
    p.add_argument("--trajectory", type=int, default=100, help="pilot size whose batch (draw 0) grows the labeled set")
    p.add_argument("--trajectory-kind", default="revealed", choices=["revealed", "counts"])
    p.add_argument("--crossfit", type=int, default=2, help="folds (0: skip)")
    p.add_argument("--lam", type=float, default=3.0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--budget", type=int, default=500)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", type=Path, default=Path("/tmp/cbal-pilot-cache"))
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "pilot.json")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    start = time.perf_counter()
    records = [r for seed in args.seeds for r in run_seed(seed, args)]
    text = table(records)
    print(text)
    save_results(args, start, text, records)


if __name__ == "__main__":
    main()
