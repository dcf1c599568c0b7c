"""Figures of an active-learning run: accuracy versus labeled-set size, class distribution per cycle."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from cbal_lightning.io import atomic_write
from cbal_lightning.selection import l1_score

__all__ = ["new_figure", "save_figure", "plot_accuracy", "plot_class_distribution"]

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
        done = [r for r in history if "test" in r]
        sizes = [r["num_labeled"] for r in done]
        for ax, key in zip(axes, ("acc", "mean_class_acc")):
            ax.plot(sizes, [100 * r["test"][key] for r in done], marker="o", label=name)
    for ax, title in zip(axes, ("Top-1 accuracy (%)", "Mean per-class accuracy (%)")):
        ax.set(xlabel="labeled samples", title=title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    return save_figure(fig, path)


def plot_class_distribution(
    histories: Mapping[str, History], path: str | Path, class_names: Sequence[str] | None = None
) -> Path:
    """Labeled samples per class for every cycle (rows: methods, columns: cycles), L1 score (Eq. 10) above each."""
    cycles = max(len(h) for h in histories.values())
    fig, axes = new_figure(len(histories), cycles, figsize=(2.6 * cycles, 2.2 * len(histories)), squeeze=False, sharey=True)
    for row, (name, history) in enumerate(histories.items()):
        for col in range(cycles):
            ax = axes[row, col]
            if col >= len(history):
                ax.axis("off")
                continue
            counts = np.asarray(history[col]["labeled_counts"])
            ax.bar(np.arange(len(counts)), counts, color=f"C{row}")
            ax.set_title(f"{name}, cycle {col}\nL1 score {l1_score(counts):.3f}", fontsize=8)
            if class_names is not None and len(class_names) <= 20:
                ax.set_xticks(np.arange(len(counts)), class_names, rotation=90, fontsize=6)
    return save_figure(fig, path)
