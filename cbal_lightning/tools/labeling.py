"""A person labeling queries from Python, without the callback's stop-and-resume loop.

The :class:`~cbal_lightning.callback.ActiveLearningCallback` with a :class:`~cbal_lightning.oracle.HumanOracle` runs
the whole loop inside ``fit`` (it writes each query, stops, and reads the answers when fit again). For a loop of your
own, one query at a time::

    indices, predicted = propose_query(model, dm, budget=500, cycle=1)       # score the pool, select (Eq. 8)
    export_query(dm, indices, "labeling", cycle=1, predicted=predicted)    # labeling/cycle_1.csv, thumbs/, Label Studio
    # ... a person fills the `label` column, or saves Label Studio's export as labeling/cycle_1.annotations.json ...
    import_labels(dm, "labeling", cycle=1)                                 # validate, then label in cycle 1

The files are those of :mod:`cbal_lightning.label_files`. Labels go through the public
:meth:`~cbal_lightning.data.ActiveDataModule.label`, so the pools (and the datamodule's checkpoint state) hold them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from cbal_lightning.label_files import QueryFiles, class_names, read_answers, write_query
from cbal_lightning.query import choose_batch, score_pool
from cbal_lightning.scoring import Entropy
from cbal_lightning.selection import ClassBalanced

__all__ = ["export_query", "read_labels", "import_labels", "propose_query"]



def _as_indices(indices: Any) -> np.ndarray:
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    array = np.asarray(indices).reshape(-1)
    if array.size and (array.dtype == bool or not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"indices must be integer train-set indices, got dtype {array.dtype}")
    return array.astype(np.int64)


def export_query(
    dm: Any,
    indices: Sequence[int] | np.ndarray | torch.Tensor,
    out_dir: str | Path,
    cycle: int,
    predicted: Sequence[int] | np.ndarray | None = None,
    *,
    thumbnails: bool = True,
    thumb_size: int = 96,
) -> QueryFiles:
    """Write the query of ``cycle`` for a person (:func:`cbal_lightning.label_files.write_query`): its files.

    Args:
        dm: a set-up :class:`~cbal_lightning.data.ActiveDataModule`.
        indices: train indices to label; all in the unlabeled pool, without repeats.
        predicted: optional predicted class per index.
        thumbnails: write ``thumbs/<index>.png`` and the Label Studio files (image data).
    """
    if isinstance(cycle, bool) or not isinstance(cycle, (int, np.integer)) or cycle < 0:
        raise ValueError(f"cycle must be a non-negative int, got {cycle!r}")
    idx = _as_indices(indices)
    if idx.size == 0:
        raise ValueError("indices: nothing to export")
    unique, counts = np.unique(idx, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"indices repeated: {unique[counts > 1][:10].tolist()}")
    outside = idx[~np.isin(idx, dm.pools.unlabeled_indices())]
    if outside.size:
        raise ValueError(f"indices not in the unlabeled pool (already labeled, cut by the imbalance or out of range): "
                         f"{outside[:10].tolist()} ({outside.size} in all)")
    names = class_names(dm)
    if predicted is not None:
        pred = _as_indices(predicted)
        if len(pred) != len(idx):
            raise ValueError(f"predicted has {len(pred)} entries for {len(idx)} indices")
        if pred.size and (pred.min() < 0 or pred.max() >= len(names)):
            raise ValueError(f"predicted classes must lie in 0..{len(names) - 1}")
    images = dm.eval_dataset(idx).images  # the raw, untransformed train inputs (indexable by train index)
    return write_query(
        out_dir, int(cycle), idx, classes=names, image=(lambda i: images[i]) if thumbnails else None,
        paths=getattr(images, "paths", None), predicted=predicted, thumb_size=thumb_size,
    )


def read_labels(
    dm: Any, out_dir: str | Path, cycle: int, indices: Sequence[int] | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate the answers to the query of ``cycle`` in ``out_dir``: ``(indices, labels)`` in file order.

    See :func:`cbal_lightning.label_files.read_answers`; ``indices`` (the exported ones) stand in for a lost manifest.
    """
    return read_answers(
        out_dir, cycle, classes=class_names(dm), unlabeled=dm.pools.unlabeled_indices(),
        labeled_cycles=lambda i: int(dm.pools.cycle_of([i])[0]) if 0 <= i < len(dm.pools) else -1, indices=indices,
    )


def import_labels(
    dm: Any, out_dir: str | Path, cycle: int, indices: Sequence[int] | np.ndarray | None = None
) -> np.ndarray:
    """Validate the answers (:func:`read_labels`) and label those samples in ``cycle``; returns them, sorted.

    Raises:
        ValueError: any problem in the answers (all listed, with rows); nothing is labeled then.
    """
    found, labels = read_labels(dm, out_dir, cycle, indices)
    dm.label(found, cycle, labels)
    return np.sort(found)


def propose_query(
    model: torch.nn.Module,
    dm: Any,
    budget: int,
    cycle: int,
    scorer: Any = None,
    selector: Any = None,
    *,
    device: torch.device | str | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Score the unlabeled pool with ``model`` and select ``budget`` samples, as the callback's query does.

    Args:
        scorer: default :class:`~cbal_lightning.scoring.Entropy`. Scorers that train something in ``prepare``
            (VAAL) need a trainer and are not supported here.
        selector: default :class:`~cbal_lightning.selection.ClassBalanced`; Omega is Eq. 4 from the labeled
            counts (the human labels included).
        device: where to score (the model is moved there); default: where the model's parameters are.

    Returns:
        ``(indices, predicted)``: the chosen train indices and the model's predicted class for each.
    """
    scorer = scorer if scorer is not None else Entropy()
    selector = selector if selector is not None else ClassBalanced()
    if device is not None:
        model.to(device)  # Lightning hands a model back on the CPU after fit
    scores = score_pool(model, dm, scorer, selector, cycle, device=next(model.parameters()).device)
    selection, _ = choose_batch(selector, scores, dm.pools, budget, cycle, seed=seed)
    return scores.pool.indices[selection.indices], scores.pool.probs[selection.indices].argmax(1)
