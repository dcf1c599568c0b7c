"""Figures of an active-learning run: accuracy versus labeled-set size, class distribution per cycle."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from cbal_lightning.io import atomic_write
from cbal_lightning.selection import l1_score

__all__ = ["new_figure", "save_figure", "plot_accuracy", "plot_class_distribution", "class_distribution_figure"]

History = Sequence[Mapping[str, Any]]


def new_figure(nrows: int, ncols: int, figsize: tuple[float, float], **subplots: Any) -> tuple[Figure, Any]:
    """A figure and its axes without pyplot, so the user's interactive backend is never switched or used."""
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(nrows, ncols, **subplots)


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` as a PNG atomically (temporary file + rename)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    data = buffer.getvalue()
    return atomic_write(path, lambda f: f.write(data))


def plot_accuracy(histories: Mapping[str, History], path: str | Path) -> Path:
    """Top-1 and mean per-class test accuracy against the labeled-set size, one line per method (Fig. 5/6 style)."""
    fig, axes = new_figure(1, 2, figsize=(10, 4))
    for name, history in histories.items():
        done = [r for r in history if r.get("test") is not None]
        sizes = [r["num_labeled"] for r in done]
        for ax, key in zip(axes, ("acc", "mean_class_acc")):
            ax.plot(sizes, [100 * r["test"][key] for r in done], marker="o", label=name)
    for ax, title in zip(axes, ("Top-1 accuracy (%)", "Mean per-class accuracy (%)")):
        ax.set(xlabel="labeled samples", title=title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    return save_figure(fig, path)


def plot_class_distribution(
    histories: Mapping[str, History],
    path: str | Path,
    class_names: Sequence[str] | None = None,
    tail_classes: Sequence[int] = (),
) -> Path:
    """Labeled samples per class for every cycle (rows: methods, columns: cycles), L1 score (Eq. 10) above each.

    Tail classes (those the long-tail split cut) are drawn hatched and starred; the title says how to read L1.
    """
    return save_figure(class_distribution_figure(histories, class_names, tail_classes), path)


def class_distribution_figure(
    histories: Mapping[str, History], class_names: Sequence[str] | None = None, tail_classes: Sequence[int] = ()
) -> Figure:
    """The figure of :func:`plot_class_distribution`."""
    cycles = max(len(h) for h in histories.values())
    fig, axes = new_figure(len(histories), cycles, figsize=(2.6 * cycles, 2.4 * len(histories) + 0.6), squeeze=False,
                           sharey=True)
    tail = {int(c) for c in tail_classes}
    for row, (name, history) in enumerate(histories.items()):
        for col in range(cycles):
            ax = axes[row, col]
            if col >= len(history):
                ax.axis("off")
                continue
            counts = np.asarray(history[col]["labeled_counts"])
            bars = ax.bar(np.arange(len(counts)), counts, color=f"C{row}")
            for c in tail & set(range(len(counts))):
                bars[c].set_hatch("///")
                bars[c].set_edgecolor("black")
            ax.set_title(f"{name}, cycle {col}\nL1 score {l1_score(counts):.3f}", fontsize=8)
            if class_names is not None and len(class_names) <= 20:
                labels = [f"{n}*" if c in tail else str(n) for c, n in enumerate(class_names)]
                ax.set_xticks(np.arange(len(counts)), labels, rotation=90, fontsize=6)
            if row == len(histories) - 1:
                ax.set_xlabel("class" + (" (* hatched: tail)" if tail else ""), fontsize=7)
            if col == 0:
                ax.set_ylabel("labeled samples", fontsize=7)
    fig.suptitle("Labeled samples per class in each cycle (L1 score, Eq. 10: lower L1 = more balanced)", fontsize=9)
    return fig
