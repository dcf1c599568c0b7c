"""Class balance on the TRUE labels, with and without the label-shift correction (issue 10).

On pool snapshots of real trained models, every method picks a batch from the same predictions, and the
batch is scored by Eq. 10 on its true labels:

* CIFAR-10-LT from the real JPEGs of ``../shared/data/cifar10-jpeg.tar.gz`` (``ImageFolderDataModule``, IF 0.1,
  100 initial labels per class, budget 500, a weak SmallCNN: 35-50 % pool accuracy), queries 1-3, 2+ seeds;
* scikit-learn's digits (``DigitsDataModule``, IF 0.1, budget 5 %), queries 1-3.

Methods: Random, Entropy (top-b), PseudoLabelQuota (supplement H), CB as in the paper (``prior=None``), CB
corrected (the library default: the :class:`~cbal_lightning.selection.prior.PriorTracker` estimate), and CB
with the oracle prior (the pool's true class distribution: a ceiling, not a method). The labeled set grows
along the corrected CB's picks, cycle-0 training holds out ``--calibration-fraction`` of the initial set as the
callback's opt-in ``calibration_fraction`` does (so query 1's "CB-corrected" is that path; the library default's
query 1 is "CB-paper"), and the estimators are compared by their total-variation error.

    python benchmarks/balance.py [--seeds 5 6] [--queries 3] [--epochs 10] [--lams 1 3 auto] [--out benchmarks/results/balance.json]

Prints a table per dataset and writes JSON (every pick count, estimate and timing).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "experiments" / "real_data"))

from cbal_lightning.selection import parse_lam  # noqa: E402

CIFAR_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def make_datamodule(name: str, seed: int, args: argparse.Namespace) -> Any:
    from cbal_lightning.data import DigitsDataModule, ImageFolderDataModule

    if name == "digits":
        return DigitsDataModule(imbalance_factor=0.1, seed=seed, batch_size=32, num_workers=0)
    from cifar10_cpu import DEFAULT_ARCHIVE, default_cache, extract

    root = extract(DEFAULT_ARCHIVE, default_cache())
    return ImageFolderDataModule(
        root=str(root), image_size=32, mean=CIFAR_STATS[0], std=CIFAR_STATS[1], initial_fraction=0.02,
        imbalance_factor=0.1, seed=seed, batch_size=64, eval_batch_size=1024, num_workers=0,
    )


def train(dm: Any, name: str, seed: int, epochs: int) -> Any:
    """A fresh SmallCNN trained on ``dm``'s training indices (the labeled set less any held-out samples)."""
    from lightning.pytorch import Trainer, seed_everything

    from cbal_lightning.models import ImageClassifier

    seed_everything(seed, verbose=False)
    model = ImageClassifier(
        num_classes=dm.num_classes, backbone="small_cnn", in_channels=dm.in_channels, lr=0.05,
        milestones=(int(0.6 * epochs), int(0.8 * epochs)),
    )
    trainer = Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )
    trainer.fit(model, train_dataloaders=dm.train_dataloader())
    return model.eval()


def predict(model: Any, dm: Any, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(probs, scores)`` of ``indices`` (eval transforms), rows in ``indices`` order."""
    import torch

    from cbal_lightning.inference import predict_pool
    from cbal_lightning.scoring import Entropy

    out = predict_pool(model, dm.eval_dataloader(indices), Entropy(), 0, device=torch.device("cpu"))
    order = np.searchsorted(out.indices, indices)
    return out.probs[order], out.scores[order]


def select_all(
    scores: np.ndarray, probs: np.ndarray, budget: int, omega: np.ndarray, shift: Any, truth: np.ndarray,
    lams: list[float | str], seed: int,
) -> dict[str, np.ndarray]:
    """Row positions picked by every method on one snapshot."""
    from cbal_lightning.selection import ClassBalanced, PseudoLabelQuota, TopK

    picks = {
        "Random": np.random.default_rng(seed).choice(len(scores), budget, replace=False),
        "Entropy": TopK().select(scores, probs, budget, omega).indices,
        "PseudoLabelQuota": PseudoLabelQuota().select(scores, probs, budget, omega).indices,
    }
    oracle = np.bincount(truth, minlength=probs.shape[1]) / len(truth)
    for lam in lams:
        for name, prior in (("paper", None), ("corrected", "estimate"), ("oracle", oracle)):
            selector = ClassBalanced(lam=lam, prior=prior, time_limit=10.0)
            picks[f"CB-{name} lam={lam if isinstance(lam, str) else format(lam, 'g')}"] = selector.select(scores, probs, budget, omega, prior_shift=shift).indices
    return picks


def estimators(
    probs: np.ndarray, train_prior: np.ndarray, held: tuple[np.ndarray, np.ndarray] | None, tracked: np.ndarray | None
) -> dict[str, np.ndarray | None]:
    """Every pool-prior estimate available at this query (the tracker's is the one the default CB uses)."""
    from cbal_lightning.selection.prior import bbse_prior, fit_calibration, label_prior, mlls_prior

    out: dict[str, np.ndarray | None] = {"uncorrected (train prior)": train_prior, "MLLS, no calibration": mlls_prior(probs, train_prior)}
    if held is not None:
        held_probs, held_labels = held
        source = label_prior(held_labels, probs.shape[1])
        out["BBSE (held-out)"] = bbse_prior(held_probs, held_labels, probs)
        out["MLLS + BCTS (held-out)"] = mlls_prior(probs, source, calibration=fit_calibration(held_probs, held_labels))
    out["tracker (used)"] = tracked
    return out


def run_dataset(name: str, seed: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    from cbal_lightning.selection import class_targets, l1_score
    from cbal_lightning.selection.prior import MIN_LABELS_PER_CLASS, PriorTracker, label_prior
    from cbal_lightning.splits import stratified_subset

    dm = make_datamodule(name, seed, args)
    dm.setup("fit")
    pools, targets, num_classes = dm.pools, dm.targets, dm.num_classes
    budget = args.budget if name == "cifar10" else int(round(0.05 * len(pools)))
    tail = list(range(num_classes // 2, num_classes))
    held = stratified_subset(pools.labeled_indices(cycle=0), targets, args.calibration_fraction, seed)
    if len(held) >= MIN_LABELS_PER_CLASS * num_classes:
        pools.hold_out(held)
    tracker, records = PriorTracker(), []
    for query in range(1, args.queries + 1):
        start = time.perf_counter()
        epochs = args.epochs if name == "cifar10" else args.digits_epochs
        model = train(dm, name, seed * 100 + query, epochs)
        train_seconds = time.perf_counter() - start
        record: dict[str, Any] = {"dataset": name, "seed": seed, "query": query, "train_seconds": train_seconds}
        pool = pools.unlabeled_indices()
        probs, scores = predict(model, dm, pool)
        truth = targets[pool]
        record["pool_acc"] = float((probs.argmax(1) == truth).mean())
        held_idx = pools.held_out_indices()
        held_data = (predict(model, dm, held_idx)[0], targets[held_idx]) if len(held_idx) else None
        train_prior = label_prior(targets[pools.training_indices()], num_classes)
        t0 = time.perf_counter()
        shift = tracker.shift(train_prior, probs, *(held_data if held_data else (None, None)), pool_indices=pool)
        record["prior_seconds"] = time.perf_counter() - t0
        true_prior = np.bincount(truth, minlength=num_classes) / len(truth)
        record["true_prior"] = true_prior.tolist()
        record["estimates"] = {
            k: None if v is None else {"prior": np.asarray(v).tolist(), "tv": float(0.5 * np.abs(v - true_prior).sum())}
            for k, v in estimators(probs, train_prior, held_data, shift.pool_prior).items()
        }
        record["tracker_method"], record["tracker_reason"] = shift.method, shift.reason
        omega = class_targets(pools.labeled_counts(), budget, query, pools.initial_size)  # Eq. 4
        picks = select_all(scores, probs, budget, omega, shift, truth, args.lams, seed + query)
        record["methods"] = {
            m: {"l1": l1_score(np.bincount(truth[rows], minlength=num_classes)),
                "tail_picks": int(np.isin(truth[rows], tail).sum()),
                "counts": np.bincount(truth[rows], minlength=num_classes).tolist()}
            for m, rows in picks.items()
        }
        trajectory = picks[f"CB-corrected lam={args.trajectory_lam:g}"]
        t0 = time.perf_counter()
        tracker.observe(probs, trajectory, truth[trajectory], pool)  # the prior, and the calibrated posteriors kept
        record["prior_seconds"] += time.perf_counter() - t0
        pools.label(pool[trajectory], query)
        pools.release_held_out()
        records.append(record)
        print(f"[{name} seed {seed} query {query}] pool acc {record['pool_acc']:.3f}, "
              + ", ".join(f"{m} {v['l1']:.3f}" for m, v in record["methods"].items()), flush=True)
    return records


def table(records: list[dict[str, Any]], name: str) -> str:
    rows = [r for r in records if r["dataset"] == name]
    if not rows:
        return ""
    methods = list(rows[0]["methods"])
    queries = sorted({r["query"] for r in rows})
    lines = [f"### {name}: true-label L1 of the batch (Eq. 10; mean over seeds {sorted({r['seed'] for r in rows})}), tail picks in ()",
             "", "| method | " + " | ".join(f"query {q}" for q in queries) + " | mean q1-2 | vs Entropy |",
             "|---|" + "---:|" * (len(queries) + 2)]
    def mean(m: str, q: int, key: str) -> float:
        return float(np.mean([r["methods"][m][key] for r in rows if r["query"] == q]))
    base = np.mean([mean("Entropy", q, "l1") for q in queries[:2]])
    for m in methods:
        first2 = np.mean([mean(m, q, "l1") for q in queries[:2]])
        cells = [f"{mean(m, q, 'l1'):.3f} ({mean(m, q, 'tail_picks'):.0f})" for q in queries]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {first2:.3f} | {first2 / base:.2f}x |")
    lines += ["", f"Pool accuracy: " + ", ".join(f"q{q} {np.mean([r['pool_acc'] for r in rows if r['query'] == q]):.3f}" for q in queries),
              "", "Estimator error (total variation to the pool's true prior, mean over seeds; '-' = not available):", "",
              "| estimator | " + " | ".join(f"query {q}" for q in queries) + " |", "|---|" + "---:|" * len(queries)]
    names = list(dict.fromkeys(k for r in rows for k in r["estimates"]))
    for e in names:
        cells = []
        for q in queries:
            tvs = [r["estimates"][e]["tv"] for r in rows if r["query"] == q and r["estimates"].get(e)]
            cells.append(f"{np.mean(tvs):.3f}" if tvs else "-")
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    lines += ["", "Prior estimation seconds per query (estimate + update): "
              + ", ".join(f"{r['prior_seconds']:.2f}" for r in rows) + "; training seconds: "
              + ", ".join(f"{r['train_seconds']:.0f}" for r in rows)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=["cifar10", "digits"], choices=["cifar10", "digits"])
    p.add_argument("--seeds", type=int, nargs="+", default=[5, 6], help="split seeds (5, 6: held apart from the design study)")
    p.add_argument("--queries", type=int, default=3)
    p.add_argument("--epochs", type=int, default=10, help="SmallCNN epochs per cycle on CIFAR-10")
    p.add_argument("--digits-epochs", type=int, default=15)
    p.add_argument("--budget", type=int, default=500, help="CIFAR-10 samples per query (digits: 5 %% of train)")
    p.add_argument("--lams", type=parse_lam, nargs="+", default=[1.0, 3.0], help="numbers, or auto (the library default)")
    p.add_argument("--trajectory-lam", type=float, default=3.0, help="the corrected CB whose picks grow the labeled set")
    p.add_argument("--calibration-fraction", type=float, default=0.2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "balance.json")
    args = p.parse_args(argv)
    if args.trajectory_lam not in args.lams:
        p.error("--trajectory-lam must be one of --lams")
    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    start = time.perf_counter()
    records = [r for name in args.datasets for seed in args.seeds for r in run_dataset(name, seed, args)]
    text = "\n".join(table(records, name) for name in args.datasets)
    print(text)
    save_results(args, start, text, records)


def save_results(args: argparse.Namespace, start: float, table_text: str, records: list[dict[str, Any]]) -> None:
    """Write ``args.out``: the command, the arguments, the machine and its load, the wall time, the table, the records."""
    from cbal_lightning.io import atomic_write_json

    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, {
        "command": " ".join(["python", *sys.argv]), "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg()},
        "wall_seconds": time.perf_counter() - start, "table": table_text, "records": records,
    })


if __name__ == "__main__":
    main()
