"""Real-data evidence at CPU scale: Entropy(-CB) and KCenterGreedy(-CB) on long-tailed CIFAR-10 (IF = 0.1).

Uses the 60,000 real CIFAR-10 JPEGs of ``../shared/data/cifar10-jpeg.tar.gz`` (image-folder layout) through
``ImageFolderDataModule`` and drives every method through ``ActiveLearningCallback``, as ``cbal_lightning/tools/demo.py``
does. Scaled for a 2-core CPU: a small initial set (``--initial-fraction 0.02`` = 100 per class), ``--budget`` 500
per query, ``--cycles`` queries, SmallCNN trained ``--epochs`` per cycle from scratch.

    python experiments/real_data/cifar10_cpu.py --out docs/results/cifar10_cpu [--seeds 0 1] [--epochs N] [--cycles K]

Each (method, seed) run is a fresh subprocess (``--jobs`` at once, ``torch.set_num_threads(--threads)`` each) that
writes ``<out>/runs/<method>_seed<seed>.json``; finished runs are reused unless ``--force`` (so an interrupted
comparison can be continued). The parent then writes ``results.json``, ``table.md`` and the PNGs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cbal_lightning.selection import parse_lam

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ARCHIVE = REPO / ".." / "shared" / "data" / "cifar10-jpeg.tar.gz"
METHODS = ("Entropy", "Entropy-CB", "Entropy-CB-paper", "Entropy-CB-holdout", "Entropy-CB-oracle", "KCenterGreedy",
           "KCenterGreedy-CB")
PAIRS = (
    ("Entropy", "Entropy-CB"), ("Entropy-CB-paper", "Entropy-CB"), ("Entropy-CB-paper", "Entropy-CB-holdout"),
    ("Entropy-CB", "Entropy-CB-oracle"),
    ("KCenterGreedy", "KCenterGreedy-CB"),
)
HOLDOUT = 0.2  # calibration_fraction of "Entropy-CB-holdout": the first query's prior from held-out initial labels
CIFAR_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


# ----------------------------------------------------------------------------------------------- data


def default_cache() -> Path:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 1 << 30:
        return shm / "cbal-cifar10-jpeg"
    return Path(tempfile.gettempdir()) / "cbal-cifar10-jpeg"


def extract(archive: Path, cache: Path) -> Path:
    """Extract ``archive`` into ``cache`` once (a marker file says it is complete); return the image-folder root."""
    marker = cache / ".extracted"
    if not marker.exists():
        if not archive.exists():
            raise FileNotFoundError(f"archive not found: {archive} (pass --archive)")
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=cache.parent if cache.parent.exists() else None))
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data") if sys.version_info >= (3, 12) else tar.extractall(tmp)
        if cache.exists():
            shutil.rmtree(cache)
        tmp.rename(cache)
        marker.write_text(str(archive.resolve()))
    for root in (cache, *sorted(p for p in cache.iterdir() if p.is_dir())):
        if (root / "train").is_dir() and (root / "test").is_dir():
            return root
    raise FileNotFoundError(f"no train/ and test/ folders under {cache}")


# ----------------------------------------------------------------------------------------------- one run


def make_method(name: str, seed: int, args: argparse.Namespace, pool_prior: Any = None) -> tuple[Any, Any]:
    from cbal_lightning.scoring import Entropy
    from cbal_lightning.selection import ClassBalanced, TopK
    from cbal_lightning.selection.kcenter import KCenterGreedy

    return {
        "Entropy": lambda: (Entropy(), TopK()),
        "Entropy-CB": lambda: (Entropy(), ClassBalanced(lam=args.lam_entropy, time_limit=20.0, workers=args.threads)),
        "Entropy-CB-holdout": lambda: (Entropy(), ClassBalanced(lam=args.lam_entropy, time_limit=20.0, workers=args.threads)),
        "Entropy-CB-paper": lambda: (  # the paper's Eq. 8 on the uncorrected P
            Entropy(), ClassBalanced(lam=args.lam_entropy, time_limit=20.0, workers=args.threads, prior=None)
        ),
        "Entropy-CB-oracle": lambda: (  # a ceiling, not a method: the pool's true class prior, known from query 1
            Entropy(), ClassBalanced(lam=args.lam_entropy, time_limit=20.0, workers=args.threads, prior=pool_prior)
        ),
        "KCenterGreedy": lambda: (Entropy(), KCenterGreedy(lam=0.0, normalize=True)),
        "KCenterGreedy-CB": lambda: (Entropy(), KCenterGreedy(lam=args.lam_kcenter, normalize=True)),
    }[name]()


def run_one(method: str, seed: int, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    from lightning.pytorch import Trainer, seed_everything
    from lightning.pytorch.loggers import CSVLogger

    from cbal_lightning.callback import ActiveLearningCallback
    from cbal_lightning.data import ImageFolderDataModule
    from cbal_lightning.models import ImageClassifier

    start = time.perf_counter()
    seed_everything(seed, workers=True, verbose=False)
    dm = ImageFolderDataModule(
        root=str(root), image_size=32, mean=CIFAR_STATS[0], std=CIFAR_STATS[1], initial_fraction=args.initial_fraction,
        imbalance_factor=args.imbalance_factor, seed=seed, batch_size=args.batch_size, eval_batch_size=1024,
        num_workers=args.num_workers,
    )
    epochs = args.epochs
    model = ImageClassifier(
        num_classes=10, backbone=args.backbone, in_channels=3, lr=args.lr,
        milestones=(int(0.6 * epochs), int(0.8 * epochs)), channels_last=args.accelerator != "cpu",
    )
    pool_prior = None
    if method == "Entropy-CB-oracle":  # the true class counts of the pool, which no real run knows
        dm.setup("fit")
        pool_prior = np.bincount(dm.pools.targets[dm.pools.unlabeled_indices()], minlength=10).tolist()
    scorer, selector = make_method(method, seed, args, pool_prior)
    log_dir = Path(args.log_dir) / f"{method}_seed{seed}"
    al = ActiveLearningCallback(
        budget=args.budget, cycles=args.cycles, scorer=scorer, selector=selector, epochs_per_cycle=epochs,
        seed=seed, output_dir=str(log_dir), progress=False,
        calibration_fraction=HOLDOUT if method.endswith("-holdout") else 0.0,
    )
    trainer = Trainer(
        max_epochs=epochs, accelerator=args.accelerator, devices=1, callbacks=[al], precision=args.precision,
        logger=CSVLogger(args.log_dir, name=f"{method}_seed{seed}", version=""), limit_val_batches=0,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=10,
        deterministic=True if args.accelerator == "cpu" else "warn",  # some CUDA kernels (pooling backward) have no deterministic version
    )
    trainer.fit(model, datamodule=dm)
    return {
        "method": method, "seed": seed, "wall_seconds": time.perf_counter() - start,
        "selector": repr(selector), "scorer": repr(scorer),
        "initial_size": int(dm.pools.initial_size), "train_size": len(dm.pools), "classes": list(dm.classes),
        "history": al.history,
    }


def run_file(out: Path, method: str, seed: int) -> Path:
    return out / "runs" / f"{method}_seed{seed}.json"


# ----------------------------------------------------------------------------------------------- aggregation


def _ms(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def _fmt(values: list[float], pct: bool = True, digits: int = 1) -> str:
    m, s = _ms(values)
    k = 100.0 if pct else 1.0
    return f"{k * m:.{digits}f} ± {k * s:.{digits}f}" if len(values) > 1 else f"{k * m:.{digits}f}"


def summarize(runs: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """Per method and cycle: lists over seeds of the metrics; per pair: CB minus baseline per seed."""
    from cbal_lightning.selection import l1_score

    summary: dict[str, Any] = {}
    for method, by_seed in runs.items():
        cycles: list[dict[str, Any]] = []
        seeds = sorted(by_seed)
        n = min(len(by_seed[s]["history"]) for s in seeds)
        for c in range(n):
            recs = [by_seed[s]["history"][c] for s in seeds]
            cycles.append({
                "cycle": c,
                "num_labeled": [r["num_labeled"] for r in recs],
                "acc": [r["test"]["acc"] for r in recs if "test" in r],
                "mean_class_acc": [r["test"]["mean_class_acc"] for r in recs if "test" in r],
                "labeled_l1": [l1_score(np.asarray(r["labeled_counts"])) for r in recs],
                "query_l1": [r["stats"]["l1_score"] for r in recs if "stats" in r],
                "query_expected_l1": [r["stats"]["expected_l1_score"] for r in recs if "stats" in r],
                "tail_in_query": [int(np.isin(r["true"], [5, 6, 7, 8, 9]).sum()) for r in recs if "true" in r],
            })
        summary[method] = {"seeds": seeds, "cycles": cycles}
    return summary


def table_md(summary: dict[str, Any], runs: dict[str, dict[int, dict[str, Any]]]) -> str:
    lines = [
        "| method | cycle | labeled | test acc (%) | mean class acc (%) | L1 query batch (true labels) "
        "| L1 query (expected, P^T z) | tail-class picks / batch | L1 labeled set |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for method, s in summary.items():
        for c in s["cycles"]:
            lab = c["num_labeled"]
            lab_s = str(lab[0]) if len(set(lab)) == 1 else "/".join(map(str, lab))
            q = lambda key, pct=False, d=3: _fmt(c[key], pct=pct, digits=d) if c[key] else "-"  # noqa: E731
            lines.append(
                f"| {method} | {c['cycle']} | {lab_s} | {q('acc', True, 1)} | {q('mean_class_acc', True, 1)} "
                f"| {q('query_l1')} | {q('query_expected_l1')} | {q('tail_in_query', False, 0)} | {q('labeled_l1')} |"
            )
    lines += ["", "CB minus baseline (mean ± std over seeds of the per-seed difference; same seed = same split and "
              "same initial set). Accuracy in percentage points; for L1, negative = CB more balanced.", "",
              "| pair | cycle | Δ test acc (pp) | Δ mean class acc (pp) | Δ L1 query batch | Δ L1 labeled set |",
              "|---|---:|---:|---:|---:|---:|"]
    for base, cb in PAIRS:
        if base not in summary or cb not in summary:
            continue
        seeds = sorted(set(summary[base]["seeds"]) & set(summary[cb]["seeds"]))
        for cb_c, b_c in zip(summary[cb]["cycles"], summary[base]["cycles"]):
            def diff(key: str) -> list[float]:
                ib = dict(zip(summary[base]["seeds"], b_c[key])) if len(b_c[key]) == len(summary[base]["seeds"]) else {}
                ic = dict(zip(summary[cb]["seeds"], cb_c[key])) if len(cb_c[key]) == len(summary[cb]["seeds"]) else {}
                return [ic[s] - ib[s] for s in seeds if s in ib and s in ic]
            d = {k: diff(k) for k in ("acc", "mean_class_acc", "query_l1", "labeled_l1")}
            f = lambda v, pct, dg: ("+" if _ms(v)[0] >= 0 else "") + _fmt(v, pct, dg) if v else "-"  # noqa: E731
            lines.append(
                f"| {cb} − {base} | {cb_c['cycle']} | {f(d['acc'], True, 1)} | {f(d['mean_class_acc'], True, 1)} "
                f"| {f(d['query_l1'], False, 3)} | {f(d['labeled_l1'], False, 3)} |"
            )
    return "\n".join(lines) + "\n"


def plot_mean_std(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4), constrained_layout=True)
    for i, (method, s) in enumerate(summary.items()):
        style = dict(color=f"C{i // 2}", linestyle="-" if method.endswith("-CB") else "--", marker="o", capsize=3,
                     label=method)
        cycles = [c for c in s["cycles"] if c["acc"]]
        x = [float(np.mean(c["num_labeled"])) for c in cycles]
        for ax, key, k in ((axes[0], "acc", 100), (axes[1], "mean_class_acc", 100)):
            m = [k * _ms(c[key])[0] for c in cycles]
            e = [k * _ms(c[key])[1] for c in cycles]
            ax.errorbar(x, m, yerr=e, **style)
        q = [c for c in s["cycles"] if c["query_l1"]]
        axes[2].errorbar([float(np.mean(c["num_labeled"])) for c in q], [_ms(c["query_l1"])[0] for c in q],
                         yerr=[_ms(c["query_l1"])[1] for c in q], **style)
    for ax, title in zip(axes, ("Top-1 test accuracy (%)", "Mean per-class test accuracy (%)",
                                "L1 score of the query batch (true labels, Eq. 10)")):
        ax.set(xlabel="labeled samples (after the query)" if ax is axes[2] else "labeled samples", title=title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    n_seeds = max(len(s["seeds"]) for s in summary.values())
    fig.suptitle(f"Long-tailed CIFAR-10 (IF 0.1), SmallCNN on CPU; mean ± std over {n_seeds} seed(s)")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def aggregate(out: Path, args: argparse.Namespace, total_wall: float | None) -> None:
    from cbal_lightning.io import atomic_write_json
    from cbal_lightning.tools.plots import plot_accuracy, plot_class_distribution

    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for method in METHODS:
        for seed in args.seeds:
            f = run_file(out, method, seed)
            if f.exists():
                runs.setdefault(method, {})[seed] = json.loads(f.read_text())
    if not runs:
        raise SystemExit("no finished runs to aggregate")
    summary = summarize(runs)
    classes = next(iter(next(iter(runs.values())).values()))["classes"]
    (out / "table.md").write_text(table_md(summary, runs))
    plot_mean_std(summary, out / "accuracy_mean_std.png")
    seed0 = min(args.seeds)
    plot_accuracy({m: r[seed0]["history"] for m, r in runs.items() if seed0 in r}, out / f"accuracy_seed{seed0}.png")
    for base, cb in PAIRS:
        h = {m: runs[m][seed0]["history"] for m in (base, cb) if m in runs and seed0 in runs[m]}
        if len(h) == 2:  # both methods of the pair ran
            plot_class_distribution(h, out / f"class_distribution_{base.lower()}_seed{seed0}.png", classes)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    atomic_write_json(out / "results.json", {
        "config": config,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "note": "2 CPU cores shared with other engineers' test runs (timings noisy); no GPU",
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch_threads_per_run": args.threads, "concurrent_runs": args.jobs,
        },
        "total_wall_seconds": total_wall,
        "wall_seconds": {m: {str(s): r["wall_seconds"] for s, r in by.items()} for m, by in runs.items()},
        "summary": summary,
        "runs": {m: {str(s): r for s, r in by.items()} for m, by in runs.items()},
    })
    print((out / "table.md").read_text())


# ----------------------------------------------------------------------------------------------- main


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("docs/results/cifar10_cpu"))
    p.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    p.add_argument("--cache", type=Path, default=None, help="extraction dir (default /dev/shm/cbal-cifar10-jpeg)")
    p.add_argument("--log-dir", default=str(Path(tempfile.gettempdir()) / "cbal-cifar10-cpu-logs"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--cycles", type=int, default=4)
    p.add_argument("--budget", type=int, default=500)
    p.add_argument("--initial-fraction", type=float, default=0.02)
    p.add_argument("--imbalance-factor", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--lam-entropy", type=parse_lam, default=0.6, help="a number, or auto (the paper's rule at every query)")
    p.add_argument("--backbone", default="small_cnn", help="ImageClassifier backbone (the paper: resnet18_cifar)")
    p.add_argument("--accelerator", default="cpu", help="cpu, or gpu for experiments/gpu/")
    p.add_argument("--precision", default="32-true", help="Trainer precision (bf16-mixed on a GPU)")
    p.add_argument("--num-workers", type=int, default=0, help="dataloader workers per run")
    p.add_argument("--lam-kcenter", type=float, default=1.0)
    p.add_argument("--jobs", type=int, default=2, help="runs at once (subprocesses)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--force", action="store_true", help="rerun runs whose JSON exists")
    p.add_argument("--aggregate-only", action="store_true")
    p.add_argument("--single", nargs=2, metavar=("METHOD", "SEED"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    out = args.out
    root = extract(args.archive, args.cache or default_cache())
    if args.single:
        method, seed = args.single[0], int(args.single[1])
        result = run_one(method, seed, root, args)
        from cbal_lightning.io import atomic_write_json

        atomic_write_json(run_file(out, method, seed), result)
        print(f"[done] {method} seed {seed}: {result['wall_seconds']:.0f} s", flush=True)
        return
    if args.aggregate_only:
        aggregate(out, args, None)
        return
    (out / "runs").mkdir(parents=True, exist_ok=True)
    todo = [(m, s) for s in args.seeds for m in args.methods if args.force or not run_file(out, m, s).exists()]
    ran = bool(todo)
    passthrough = [a for a in (sys.argv[1:] if argv is None else argv)]
    start = time.perf_counter()
    running: list[tuple[subprocess.Popen, str, int, float]] = []
    failed = []
    while todo or running:
        while todo and len(running) < args.jobs:
            m, s = todo.pop(0)
            cmd = [sys.executable, __file__, *passthrough, "--single", m, str(s)]
            log = open(Path(args.log_dir).mkdir(parents=True, exist_ok=True) or Path(args.log_dir) / f"{m}_seed{s}.log", "w")
            print(f"[start] {m} seed {s} ({time.strftime('%H:%M:%S')})", flush=True)
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO), m, s, time.perf_counter()))
        time.sleep(2)
        for item in list(running):
            proc, m, s, t0 = item
            if proc.poll() is not None:
                running.remove(item)
                print(f"[exit {proc.returncode}] {m} seed {s} after {time.perf_counter() - t0:.0f} s", flush=True)
                if proc.returncode:
                    failed.append((m, s))
    total = time.perf_counter() - start
    print(f"all runs: {total:.0f} s; failed: {failed}", flush=True)
    aggregate(out, args, total if ran else None)  # None: every run was already there (see wall_seconds per run)


if __name__ == "__main__":
    main()
