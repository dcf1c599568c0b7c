"""Which pool posteriors the balance term should count from the second query on (issue 10).

After the first query, the batch's labels are revealed and a new model is trained on them. Its ``P`` corrected
for the estimated pool prior (the default until this study) can be balanced while the true labels are not: the
retrained model's class-pair confusions (cats taken for dogs, a tail class) are not a prior effect. The model that
chose the batch, calibrated on the batch's labels (BCTS: out of sample, on pool data), is another estimate of the
pool posterior. On query-2 snapshots of real trained models (CIFAR-10-LT from the shared JPEGs, IF 0.1, 100
initial labels per class, budget 500, SmallCNN 10 epochs; query 1 as the library makes it: a random pilot of 100,
the other 400 by the corrected CB, ``lam="auto"``), every variant picks a batch from the same snapshot and the
batch is scored on its true labels (Eq. 10):

* ``prior``: the current ``P`` corrected by the revealed-label prior (:func:`correct_posteriors`);
* ``oracle prior``: the same with the pool's true prior (a ceiling for the prior correction, not a method);
* ``temperature``: the current ``P`` sharpened or softened by the previous model's fitted temperature, then ``prior``;
* ``previous, prior``: the previous model's ``P`` corrected by the same prior;
* ``previous, calibrated``: the previous model's ``P`` calibrated on the batch (BCTS; :meth:`PriorShift.correct`, the
  library's default);
* ``mean``: the mean of ``prior`` and ``previous, calibrated``;
* ``geometric``: their normalised geometric mean.

    python benchmarks/posteriors.py [--seeds 13 ... 24 5 6] [--out benchmarks/results/posteriors.json]

Snapshots are those of ``benchmarks/pilot.py`` (``--cache``; query 1: ``seed{s}_q1_init.npz``); the query-2
snapshots along the trajectory above are made here (~40 s each on 2 cores) and cached beside them.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from balance import make_datamodule, save_results  # noqa: E402
from pilot import TAIL, snapshot  # noqa: E402

PILOT, BUDGET, INITIAL = 100, 500, 1000


def first_query(snap: dict[str, np.ndarray], seed: int) -> np.ndarray:
    """Rows of query 1 as the callback picks them: a seeded random pilot, then the corrected CB for the rest."""
    from cbal_lightning.query import draw_pilot
    from cbal_lightning.selection import ClassBalanced, class_targets
    from cbal_lightning.selection.prior import label_prior, revealed_shift

    probs, scores, truth = snap["probs"], snap["scores"], snap["truth"]
    c = probs.shape[1]
    pilot = draw_pilot(len(probs), PILOT, 1, seed=seed)
    shift = revealed_shift(probs, pilot, truth[pilot], label_prior(snap["train_labels"], c), "pilot")
    rest = np.setdiff1d(np.arange(len(probs)), pilot)
    omega = class_targets(snap["labeled_counts"] + np.bincount(truth[pilot], minlength=c), BUDGET, 1, INITIAL)
    sel = ClassBalanced(lam="auto", time_limit=10.0).select(scores[rest], probs[rest], BUDGET - PILOT, omega,
                                                            prior_shift=shift.rows(rest))
    return np.concatenate([pilot, rest[sel.indices]])


def variants(s1: dict[str, np.ndarray], rows: np.ndarray, s2: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, Any]]:
    """Posteriors for the balance term at query 2: ``name -> (probs, prior_shift)``; a ``None`` shift means the
    probs are counted as given."""
    from cbal_lightning.selection.prior import (
        Calibration, PoolPosteriors, PriorShift, PriorTracker, fit_calibration, label_prior,
    )

    c = s1["probs"].shape[1]
    tracker = PriorTracker()
    tracker.observe(s1["probs"], rows, s1["truth"][rows], s1["pool"])
    train_prior = label_prior(s2["train_labels"], c)
    shift = tracker.shift(train_prior, s2["probs"], pool_indices=s2["pool"])
    prior_only = replace(shift, calibrated=None)
    calibrated = shift.correct(s2["probs"]).astype(np.float64)
    by_index = np.argsort(s1["pool"])
    previous = PoolPosteriors(s1["pool"][by_index], s1["probs"][by_index]).take(s2["pool"])[0]  # query 2's rows
    temperature = fit_calibration(s1["probs"][rows], s1["truth"][rows]).temperature
    corrected = prior_only.correct(s2["probs"]).astype(np.float64)
    geometric = np.sqrt(corrected * calibrated)
    oracle = np.bincount(s2["truth"], minlength=c) / len(s2["truth"])
    return {
        "prior": (s2["probs"], prior_only),
        "oracle prior": (s2["probs"], PriorShift(oracle, train_prior, "oracle")),
        "temperature": (Calibration(temperature, np.zeros(c)).apply(s2["probs"]), prior_only),
        "previous, prior": (PriorShift(tracker.pool_prior, label_prior(s1["train_labels"], c), "r").correct(previous), None),
        "previous, calibrated (default)": (s2["probs"], shift),
        "mean": (0.5 * (corrected + calibrated), None),
        "geometric": (geometric / geometric.sum(axis=1, keepdims=True), None),
    }


def run_seed(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from cbal_lightning.selection import ClassBalanced, class_targets, l1_score

    dm = make_datamodule("cifar10", seed, args)
    dm.setup("fit")
    s1 = snapshot(dm, seed, 1, args.epochs, args.cache, "init")
    rows = first_query(s1, seed)
    dm.pools.label(s1["pool"][rows], 1)
    s2 = snapshot(dm, seed, 2, args.epochs, args.cache, "default")
    c, truth = s2["probs"].shape[1], s2["truth"]
    omega = class_targets(s2["labeled_counts"], BUDGET, 2, INITIAL)  # Eq. 4
    out: dict[str, Any] = {"seed": seed, "pool_acc": [float((s["probs"].argmax(1) == s["truth"]).mean()) for s in (s1, s2)],
                           "query1_l1": l1_score(np.bincount(s1["truth"][rows], minlength=c)), "methods": {}}
    for name, (probs, shift) in variants(s1, rows, s2).items():
        selector = ClassBalanced(lam="auto", prior=None if shift is None else "estimate", time_limit=10.0)
        chosen = selector.select(s2["scores"], probs, BUDGET, omega, prior_shift=shift).indices
        counts = np.bincount(truth[chosen], minlength=c)
        out["methods"][name] = {"l1": l1_score(counts), "tail_picks": int(counts[TAIL].sum()), "counts": counts.tolist()}
    print(f"[seed {seed}] acc {out['pool_acc'][0]:.3f} -> {out['pool_acc'][1]:.3f}: "
          + ", ".join(f"{k} {v['l1']:.3f}" for k, v in out["methods"].items()), flush=True)
    return out


def table(records: list[dict[str, Any]]) -> str:
    names = list(records[0]["methods"])
    base = [r["methods"]["prior"]["l1"] for r in records]
    lines = ["| posteriors at query 2 | true-label L1 (mean) | tail picks | better than `prior` on |",
             "|---|---:|---:|---:|"]
    for m in names:
        l1 = [r["methods"][m]["l1"] for r in records]
        wins = sum(a < b for a, b in zip(l1, base))
        lines.append(f"| {m} | {np.mean(l1):.3f} | {np.mean([r['methods'][m]['tail_picks'] for r in records]):.0f} | "
                     f"{wins} of {len(records)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 5, 6])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache", type=Path, default=Path("/tmp/cbal-pilot-cache"))
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "posteriors.json")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    start = time.perf_counter()
    records = [run_seed(seed, args) for seed in args.seeds]
    text = table(records)
    print(text)
    save_results(args, start, text, records)


if __name__ == "__main__":
    main()
