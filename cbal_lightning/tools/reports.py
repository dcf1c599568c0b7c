"""Reports from logged active-learning runs: accuracy curves, class distributions, gain tables (Fig. 2-6, Tables 1-3).

Layouts read by :func:`load_runs` (``root`` may be a folder or a ``.json`` file):

1. ``<root>/<method>/seed<k>/history.json`` -- the canonical layout: one folder per method, one per seed, each
   holding the :class:`~cbal_lightning.callback.ActiveLearningCallback`'s ``history`` as JSON. The callback writes
   ``history.json`` into its ``output_dir`` by itself, so ``output_dir=runs/<method>/seed<k>`` is all it takes;
   :func:`save_history` writes one from a history in memory. ``cbal-lightning sweep`` writes this layout one or
   two levels deeper (``<out>/<dataset>/if<IF>/<method>/seed<k>``): ``history.json`` files are found at any depth
   and the folder path all methods share is dropped from their names.
2. ``<root>/<method>/history.json`` -- a single seed per method (e.g. the demo's per-method folders).
3. Run folders named by a logger or by the callback, as ``cbal-lightning fit`` leaves them without ``output_dir``:
   ``lightning_logs/version_<n>/history.json`` (CSV, TensorBoard), ``<project>/<run id>/history.json`` (W&B),
   ``cbal_runs/version_<n>/history.json`` (no logger). Their folder names say nothing about the method, so the
   ``run.json`` the callback writes beside ``history.json`` does: the method (``Entropy-CB``), the seed and the
   datamodule. Runs are grouped by ``<datamodule>/<method>``, without the datamodule when all runs share it.
   Folders the user named (the callback's ``output_dir``, as in layouts 1-2) keep their folder names.
4. ``results.json`` files as written by ``cbal-lightning demo`` (``{method: history}``): ``root`` itself, or
   ``<root>/results.json``, or ``<root>/seed<k>/results.json`` (one demo run per seed). When any such file is
   found the folders of layouts 1-3 are ignored (the demo writes both kinds for the same runs).

``labeled_sets.jsonl`` holds only the labeled indices of each cycle (no accuracies, no class counts): it cannot
make a report on its own, and folders holding it without a ``history.json`` are skipped.

Pairs: a method ``"X-CB"`` is the class-balanced variant of the method ``"X"`` (e.g. ``Entropy`` /
``Entropy-CB``, ``KCenterGreedy`` / ``KCenterGreedy-CB``); ``"x_cb"`` / ``"x"`` (the experiment configs' file
names, e.g. ``entropy_cb`` / ``entropy``) pair the same way, and the suffix's case does not matter. Gains are the mean over seeds of the CB variant's test
accuracy minus the baseline's, in percentage points, per query cycle (cycles >= 1, as in the paper's tables).

Outputs of :func:`make_report` in ``out``: ``accuracy.png`` (mean +- std over seeds vs labeled-set size),
``class_distribution_<X>.png`` per pair (labeled samples per class each cycle, baseline row above CB row, L1
score of Eq. 10 in every title), ``gains.md`` and ``gains.csv``, and ``report.json`` (what it returns).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from cbal_lightning.io import atomic_write, atomic_write_json
from cbal_lightning.runs import RUN_FILE
from cbal_lightning.tools.plots import new_figure, save_figure
from cbal_lightning.selection import l1_score

__all__ = [
    "CB_SUFFIX",
    "save_history",
    "load_history",
    "load_runs",
    "method_pairs",
    "cb_baseline",
    "accuracy_summary",
    "gain_table",
    "plot_accuracy_seeds",
    "plot_pair_distribution",
    "make_report",
    "add_arguments",
    "run",
]

CB_SUFFIX = "-CB"
HISTORY_FILE = "history.json"
RESULTS_FILE = "results.json"
METRICS = ("acc", "mean_class_acc")
_SEED_DIR = re.compile(r"^seed[_-]?(\d+)$")
_CB_NAME = re.compile(r"^(.+?)[-_ ]cb$", re.IGNORECASE)  # "Entropy-CB" (demo, paper) and "entropy_cb" (configs)

History = list[dict[str, Any]]
Runs = dict[str, list[History]]  # method -> one history per seed


# ---------------------------------------------------------------------------------------------- files


def save_history(history: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write a callback ``history`` as JSON, atomically (``<root>/<method>/seed<k>/history.json`` for reports)."""
    return atomic_write_json(path, _jsonable(list(history)))


def load_history(path: str | Path) -> History:
    """Read a ``history.json`` (a JSON list of per-cycle records)."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, list) or not all(isinstance(r, dict) and "cycle" in r for r in data):
        raise ValueError(f"{path}: expected a JSON list of per-cycle records with a 'cycle' key (a callback history)")
    return data


def _read_results(path: Path) -> dict[str, History]:
    data = json.loads(path.read_text())
    if isinstance(data, list):  # a bare history: the method is the file's folder name
        return {path.parent.name: load_history(path)}
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise ValueError(f"{path}: expected {{method: history}} as written by `cbal-lightning demo`")
    return dict(data)


def _seed_key(path: Path) -> tuple[int, str]:
    match = _SEED_DIR.match(path.name)
    return (int(match.group(1)) if match else 1 << 30, path.name)


def _method_key(run_dir: Path, root: Path) -> tuple[Path, str]:
    """The method folder of a run folder (the parent of a ``seed<k>`` folder, else the run folder itself)."""
    method_dir = run_dir.parent if _SEED_DIR.match(run_dir.name) else run_dir
    try:
        key = method_dir.relative_to(root).as_posix()
    except ValueError:  # root is itself a seed folder
        key = method_dir.name
    return method_dir, (key if key not in ("", ".") else method_dir.resolve().name)


def _run_file_key(run_dir: Path) -> tuple[str, tuple[int, str]] | None:
    """Method and seed keys from the ``run.json`` of a run folder a logger or the callback named (layout 3), else
    ``None``: no ``run.json`` (older runs, :func:`save_history`), or a folder the user named (``output_dir``)."""
    try:
        info = json.loads((run_dir / RUN_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not isinstance(info, dict) or "method" not in info or info.get("folder_named_by") == "output_dir":
        return None
    key = f"{info['datamodule']}/{info['method']}" if info.get("datamodule") else str(info["method"])
    return key, (int(info.get("seed", 0)), run_dir.name)


def _strip_common_prefix(runs: Runs) -> Runs:
    """``digits/if0.1/entropy`` -> ``entropy`` when every method lies in the same ``digits/if0.1`` folder."""
    parts = [name.split("/") for name in runs]
    common = 0
    while all(len(p) > common + 1 for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    return {"/".join(p[common:]): histories for p, histories in zip(parts, runs.values())}


def load_runs(root: str | Path) -> Runs:
    """Every run under ``root`` as ``{method: [history of seed 0, history of seed 1, ...]}`` (see the module doc).

    ``history.json`` files are found at any depth, so the sweep's ``<out>/<dataset>/if<IF>/<method>/seed<k>``
    tree works from ``<out>`` or any folder inside it; methods are named by their folder's path below ``root``,
    without the part all of them share (``entropy_cb`` rather than ``digits/if0.1/entropy_cb``).

    Raises:
        FileNotFoundError: ``root`` does not exist or holds no run in a known layout.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"runs: {root} does not exist")
    runs: Runs = {}
    if root.is_file():
        results = [root]
    else:
        results = [root / RESULTS_FILE] if (root / RESULTS_FILE).is_file() else []
        results += sorted((p for p in root.glob(f"*/{RESULTS_FILE}") if _SEED_DIR.match(p.parent.name)),
                          key=lambda p: _seed_key(p.parent))
    if results:
        for path in results:
            for method, history in _read_results(path).items():
                runs.setdefault(method, []).append(history)
        return runs
    found = []
    for path in root.rglob(HISTORY_FILE):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue  # hidden folders (editor or notebook copies)
        named = _run_file_key(path.parent)
        if named is not None:
            found.append((named[0], named[1], named[0], path))
        else:
            method_dir, key = _method_key(path.parent, root)
            found.append((method_dir.as_posix(), _seed_key(path.parent), key, path))
    for _, _, key, path in sorted(found):
        runs.setdefault(key, []).append(load_history(path))
    if not runs:
        raise FileNotFoundError(
            f"runs: nothing found under {root}; expected <root>/<method>/seed<k>/{HISTORY_FILE}, "
            f"<root>/<method>/{HISTORY_FILE}, a logger's run folders (<root>/version_<n>/{HISTORY_FILE} with "
            f"{RUN_FILE}) or a {RESULTS_FILE} written by `cbal-lightning demo`"
        )
    return _strip_common_prefix(runs)


def cb_baseline(name: str) -> str | None:
    """The baseline of a class-balanced method name (``X-CB`` or ``X_cb``, any case), else ``None``."""
    match = _CB_NAME.match(name)
    return match.group(1) if match else None


def method_pairs(methods: Sequence[str]) -> list[tuple[str, str]]:
    """``(X, X-CB)`` (or ``(x, x_cb)``) for every CB method whose baseline is present, in the given order."""
    names = set(methods)
    return [(base, m) for m in methods if (base := cb_baseline(m)) is not None and base in names]


# ---------------------------------------------------------------------------------------------- numbers


def accuracy_summary(histories: Sequence[History], metric: str = "acc") -> dict[int, dict[str, float]]:
    """Per cycle, over the seeds that evaluated it: ``num_labeled`` (mean), ``mean``, ``std`` (ddof 0), ``n``."""
    by_cycle: dict[int, tuple[list[float], list[float]]] = {}
    for history in histories:
        for record in history:
            if record.get("test") is None:  # not evaluated yet, or no test set
                continue
            sizes, values = by_cycle.setdefault(int(record["cycle"]), ([], []))
            sizes.append(float(record["num_labeled"]))
            values.append(float(record["test"][metric]))
    return {
        cycle: {"num_labeled": float(np.mean(s)), "mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v)}
        for cycle, (s, v) in sorted(by_cycle.items())
    }


def gain_table(runs: Runs, metric: str = "acc") -> list[dict[str, Any]]:
    """Rows ``{method, baseline, cycle, num_labeled, cb_mean, cb_std, baseline_mean, baseline_std, gain, ...}``.

    ``gain`` = mean CB ``metric`` minus mean baseline ``metric``, in percentage points, for every query cycle
    (>= 1) that both evaluated. Means are over each method's own seeds.
    """
    rows = []
    for base, cb in method_pairs(list(runs)):
        a, b = accuracy_summary(runs[cb], metric), accuracy_summary(runs[base], metric)
        for cycle in sorted(set(a) & set(b)):
            if cycle < 1:
                continue
            rows.append({
                "method": cb, "baseline": base, "metric": metric, "cycle": cycle,
                "num_labeled": a[cycle]["num_labeled"],
                "cb_mean": 100 * a[cycle]["mean"], "cb_std": 100 * a[cycle]["std"], "cb_seeds": a[cycle]["n"],
                "baseline_mean": 100 * b[cycle]["mean"], "baseline_std": 100 * b[cycle]["std"],
                "baseline_seeds": b[cycle]["n"], "gain": 100 * (a[cycle]["mean"] - b[cycle]["mean"]),
            })
    return rows


def _markdown(rows_by_metric: Mapping[str, list[dict[str, Any]]]) -> str:
    titles = {"acc": "top-1 accuracy", "mean_class_acc": "mean per-class accuracy"}
    parts = ["# Performance gain of class balancing over the baselines\n",
             "Mean over seeds of the CB variant minus the baseline, percentage points, per query cycle "
             "(Tables 1-3 of the paper).\n"]
    for metric, rows in rows_by_metric.items():
        parts.append(f"\n## {titles.get(metric, metric)}\n")
        if not rows:
            parts.append("\nNo baseline / CB pair (methods named `X` and `X-CB`) with evaluated cycles.\n")
            continue
        cycles = sorted({r["cycle"] for r in rows})
        parts.append("\n| method | " + " | ".join(str(c) for c in cycles) + " |\n")
        parts.append("|---|" + "---:|" * len(cycles) + "\n")
        for method in dict.fromkeys(r["method"] for r in rows):
            gains = {r["cycle"]: r["gain"] for r in rows if r["method"] == method}
            cells = [f"{gains[c]:+.2f}" if c in gains else "-" for c in cycles]
            parts.append(f"| {method} (%) | " + " | ".join(cells) + " |\n")
    return "".join(parts)


def _csv(rows: list[dict[str, Any]]) -> str:
    columns = ["method", "baseline", "metric", "cycle", "num_labeled", "gain", "cb_mean", "cb_std", "cb_seeds",
               "baseline_mean", "baseline_std", "baseline_seeds"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------- figures


def plot_accuracy_seeds(runs: Runs, path: str | Path) -> Path:
    """Top-1 and mean per-class accuracy vs labeled-set size, mean +- std over seeds (Fig. 5/6 style).

    A CB method is drawn solid in the colour of its baseline, which is drawn dashed (as in the paper).
    """
    fig, axes = new_figure(1, 2, figsize=(11, 4.2))
    paired = dict((cb, base) for base, cb in method_pairs(list(runs)))
    colors: dict[str, str] = {}
    for name in runs:
        colors.setdefault(paired.get(name, name), f"C{len(colors) % 10}")
    for name, histories in runs.items():
        is_cb = name in paired
        base = paired.get(name, name)
        has_cb = name in paired.values()
        style = "-" if is_cb or not has_cb else "--"
        for ax, metric in zip(axes, METRICS):
            summary = accuracy_summary(histories, metric)
            if not summary:
                continue
            x = np.array([s["num_labeled"] for s in summary.values()])
            mean = 100 * np.array([s["mean"] for s in summary.values()])
            std = 100 * np.array([s["std"] for s in summary.values()])
            label = f"{name} ({len(histories)} seed{'s' if len(histories) != 1 else ''})"
            ax.plot(x, mean, style, marker="o", ms=3.5, color=colors[base], label=label)
            ax.fill_between(x, mean - std, mean + std, color=colors[base], alpha=0.15 if is_cb or not has_cb else 0.08)
    for ax, title in zip(axes, ("Top-1 accuracy (%)", "Mean per-class accuracy (%)")):
        ax.set(xlabel="labeled samples", title=title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return save_figure(fig, path)


def plot_pair_distribution(
    runs: Runs, baseline: str, cb: str, path: str | Path, class_names: Sequence[str] | None = None
) -> Path:
    """Labeled samples per class after every cycle, baseline row above its CB variant (Fig. 2/3, 11-13 style).

    Bars are the mean over seeds; the title of each panel gives the L1 score (Eq. 10) of those mean counts and,
    with several seeds, the mean +- std of the per-seed L1 scores.
    """
    rows = (baseline, cb)
    cycles = max(len(h) for name in rows for h in runs[name])
    fig, axes = new_figure(2, cycles, figsize=(2.6 * cycles, 4.6), squeeze=False, sharey=True)
    for r, name in enumerate(rows):
        for col in range(cycles):
            ax = axes[r, col]
            counts = [np.asarray(h[col]["labeled_counts"], dtype=np.float64) for h in runs[name] if col < len(h)]
            if not counts:
                ax.axis("off")
                continue
            mean = np.mean(counts, axis=0)
            ax.bar(np.arange(len(mean)), mean, color="C1" if r else "C0")
            title = f"{name}, cycle {col}\nL1 score {l1_score(mean):.3f}"
            if len(counts) > 1:
                scores = [l1_score(c) for c in counts]
                title += f" ({np.mean(scores):.3f}±{np.std(scores):.3f})"
            ax.set_title(title, fontsize=8)
            if len(mean) <= 20:
                names = list(class_names) if class_names is not None and len(class_names) == len(mean) else None
                ax.set_xticks(np.arange(len(mean)), names or [str(c) for c in range(len(mean))],
                              rotation=90 if names else 0, fontsize=6)
        axes[r, 0].set_ylabel("labeled samples")
    return save_figure(fig, path)



# ---------------------------------------------------------------------------------------------- the report


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def make_report(root: str | Path, out: str | Path, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Load the runs under ``root`` and write the figures and gain tables into ``out``.

    Returns:
        ``{"methods": {method: seeds}, "pairs": [[baseline, cb], ...], "accuracy": {method: {metric: {cycle:
        {num_labeled, mean, std, n}}}}, "gains": {metric: {cb_method: {cycle: gain in points}}}, "files": [...]}``,
        also written as ``out/report.json``. When a W&B run is active the figures are logged as ``wandb.Image``
        (``report/accuracy``, ``report/class_distribution/<X>``) and the gains as a ``wandb.Table``.
    """
    runs = load_runs(root)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pairs = method_pairs(list(runs))
    files = {"accuracy": plot_accuracy_seeds(runs, out / "accuracy.png")}
    for base, cb in pairs:
        files[f"class_distribution/{base}"] = plot_pair_distribution(
            runs, base, cb, out / f"class_distribution_{_safe_name(base)}.png", class_names
        )
    rows = {metric: gain_table(runs, metric) for metric in METRICS}
    files["gains_md"] = atomic_write(out / "gains.md", lambda f: f.write(_markdown(rows).encode()))
    csv_text = _csv([r for metric in METRICS for r in rows[metric]])
    files["gains_csv"] = atomic_write(out / "gains.csv", lambda f: f.write(csv_text.encode()))
    report = {
        "root": str(root),
        "methods": {m: len(h) for m, h in runs.items()},
        "pairs": [list(p) for p in pairs],
        "accuracy": {m: {metric: {str(c): s for c, s in accuracy_summary(h, metric).items()} for metric in METRICS}
                     for m, h in runs.items()},
        "gains": {metric: {cb: {str(r["cycle"]): r["gain"] for r in rows[metric] if r["method"] == cb}
                           for _, cb in pairs} for metric in METRICS},
        "files": [str(p) for p in files.values()],
    }
    files["report"] = atomic_write_json(out / "report.json", report, indent=1)
    report["files"].append(str(files["report"]))
    _log_to_wandb(files, rows["acc"] + rows["mean_class_acc"])
    return report


def _log_to_wandb(files: Mapping[str, Path], rows: list[dict[str, Any]]) -> None:
    """Log the PNGs (as ``wandb.Image``: offline W&B cannot log raw matplotlib figures) to the active W&B run."""
    wandb = sys.modules.get("wandb")  # never imported here: without an import nobody can have started a run
    if wandb is None or getattr(wandb, "run", None) is None:
        return
    payload: dict[str, Any] = {f"report/{k}": wandb.Image(str(p)) for k, p in files.items() if str(p).endswith(".png")}
    if rows:
        columns = list(rows[0])
        payload["report/gains"] = wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in rows])
    wandb.run.log(payload)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


# ---------------------------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``report --runs DIR --out DIR``."""
    parser.add_argument("--runs", required=True, help="runs folder (<method>/seed<k>/history.json, or a logger's folder: lightning_logs, "
                        "a W&B project folder) or a results.json")
    parser.add_argument("--out", default=None, help="output folder (default: <runs>/report)")
    parser.add_argument("--classes", default=None, help="comma-separated class names for the distribution plots")


def run(args: argparse.Namespace) -> None:
    runs = Path(args.runs)
    out = Path(args.out) if args.out else (runs.parent if runs.is_file() else runs) / "report"
    classes = args.classes.split(",") if getattr(args, "classes", None) else None
    report = make_report(runs, out, classes)
    print(", ".join(f"{m}: {n} seed{'s' if n != 1 else ''}" for m, n in report["methods"].items()))
    print((out / "gains.md").read_text())
    print("Files:\n  " + "\n  ".join(report["files"]))
