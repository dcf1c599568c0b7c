"""Pool inference and test-set evaluation, sharded across ranks and gathered with sample indices.

Under DDP each rank runs a disjoint shard (``DistributedSampler(shuffle=False)``). The sampler pads the last
shard with repeated samples so that all shards have equal length, which also keeps ``all_gather`` on
equal-sized tensors (gloo returns garbage for unequal ones); gathering the indices alongside lets us drop the
padding duplicates, so every rank ends with exactly one row per sample in index order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sized
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar
from lightning.pytorch.strategies import Strategy
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchmetrics.functional.classification import multiclass_accuracy
from tqdm.auto import tqdm

from cbal_lightning.scoring import Scorer

__all__ = ["PoolPredictions", "shard_sampler", "predict_pool", "evaluate_classifier", "IndexedDataset", "progress_bar"]


@dataclass(frozen=True)
class PoolPredictions:
    """What the model says about the unlabeled pool: one row per pool sample, sorted by train index."""

    indices: np.ndarray  # (N,) int64 train-set indices, sorted and unique
    probs: np.ndarray  # (N, C) float32 softmax probabilities (P of Eq. 1)
    scores: np.ndarray  # (N,) float32 informativeness, higher = more informative
    seconds: float  # wall time of the pass, gathering included
    embeddings: np.ndarray | None = None  # (N, d) float32 penultimate embeddings, when asked for


class IndexedDataset(Dataset):
    """Wraps a dataset of ``(image, label)`` items into ``(image, label, position)``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[Tensor, int, int]:
        image, label = self.dataset[i]
        return image, label, i


def shard_sampler(dataset: Sized, strategy: Strategy | None) -> DistributedSampler | None:
    """A deterministic, non-shuffling shard of ``dataset`` (anything with a length) for this rank, or ``None``."""
    if strategy is None or strategy.world_size <= 1:
        return None
    return DistributedSampler(
        dataset, num_replicas=strategy.world_size, rank=strategy.global_rank, shuffle=False, drop_last=False
    )


def _gather_unique(strategy: Strategy | None, indices: Tensor, *values: Tensor) -> tuple[np.ndarray, ...]:
    """All-gather equal-length shards, drop padding duplicates, return numpy arrays sorted by index."""
    if strategy is not None and strategy.world_size > 1:
        indices = strategy.all_gather(indices).reshape(-1)
        values = tuple(v_all.reshape(-1, *v.shape[1:]) for v, v_all in zip(values, map(strategy.all_gather, values)))
    idx = indices.cpu().numpy().astype(np.int64)
    unique, first = np.unique(idx, return_index=True)
    return (unique, *(v.cpu().numpy()[first] for v in values))


@contextmanager
def progress_bar(progress: bool | ProgressBar | None, total: int, desc: str) -> Iterator[Callable[[], None]]:
    """A bar of ``total`` steps; yields the function that advances it by one.

    ``progress`` is the trainer's progress bar callback (its style: Lightning's Rich or tqdm bar, drawn beside the
    training bar), ``True`` for a plain tqdm bar outside a trainer, or ``False``/``None`` for none.
    """
    if isinstance(progress, RichProgressBar) and progress.is_enabled and progress.progress is not None:
        rich = progress.progress
        task = rich.add_task(desc, total=total)
        try:
            yield lambda: rich.update(task, advance=1)
        finally:
            rich.remove_task(task)
    elif isinstance(progress, TQDMProgressBar) and progress.is_enabled:
        bar = progress.init_validation_tqdm()
        bar.set_description(desc)
        bar.reset(total=total)
        try:
            yield bar.update
        finally:
            bar.close()
    elif progress is True:
        bar = tqdm(total=total, desc=desc, leave=False)
        try:
            yield bar.update
        finally:
            bar.close()
    else:
        yield lambda: None


def _autocast(device: torch.device) -> torch.autocast:
    # Mixed precision only on CUDA; probabilities are computed in float32 from the logits either way.
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.inference_mode()
def predict_pool(
    model: nn.Module,
    loader: DataLoader,
    scorer: Scorer,
    cycle: int,
    *,
    device: torch.device,
    strategy: Strategy | None = None,
    progress: bool | ProgressBar | None = False,
    embed: bool = False,
    desc: str = "scoring pool",
) -> PoolPredictions:
    """Score every ``(image, index)`` batch of ``loader`` with ``scorer`` in eval mode, then gather across ranks.

    With ``embed=True`` the penultimate embeddings are kept too (see :class:`~cbal_lightning.scoring.Scorer`).
    ``progress``: see :func:`progress_bar`.

    Raises:
        ValueError: the model gives NaN or inf probabilities; the message names the model, how many rows and
            which train indices.
    """
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    probs, scores, indices, embeddings = [], [], [], []
    try:
        with progress_bar(progress, len(loader), f"{desc} (cycle {cycle})") as advance:
            for images, idx in loader:
                _score_batch(model, scorer, images, idx, cycle, device, embed, (probs, scores, indices, embeddings))
                advance()
    finally:
        model.train(was_training)
    if not indices:
        raise ValueError("loader: no samples to score (the unlabeled pool is empty).")
    extra = (torch.cat(embeddings),) if embed else ()
    idx, p, s, *h = _gather_unique(strategy, torch.cat(indices), torch.cat(probs), torch.cat(scores), *extra)
    bad = ~np.isfinite(p).all(axis=1)
    if bad.any():
        shown = idx[bad][:10].tolist()
        raise ValueError(
            f"model: {type(model).__name__} gave NaN or inf class probabilities for {int(bad.sum())} of {len(idx)} "
            f"samples while {desc} in cycle {cycle} (train indices {shown}{' ...' if bad.sum() > 10 else ''}); "
            "training diverged: lower the learning rate or clip gradients (Trainer(gradient_clip_val=...))."
        )
    return PoolPredictions(
        idx, p.astype(np.float32), s.astype(np.float32), time.perf_counter() - start,
        h[0].astype(np.float32) if embed else None,
    )


def _score_batch(
    model: nn.Module, scorer: Scorer, images: Tensor, idx: Tensor, cycle: int, device: torch.device, embed: bool,
    out: tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]],
) -> None:
    """Score one batch and append probabilities, scores, indices (and embeddings) to the lists of ``out``."""
    probs, scores, indices, embeddings = out
    images = images.to(device, non_blocking=True)
    idx = idx.to(device, non_blocking=True)
    with _autocast(device):
        p, s, h = scorer(model, images, idx, cycle, embed=embed)
    probs.append(p.float())
    scores.append(s.float())
    indices.append(idx.long())
    if embed:
        embeddings.append(h.float())


@torch.inference_mode()
def evaluate_classifier(
    model: nn.Module,
    loader: DataLoader,
    num_classes: int,
    *,
    device: torch.device,
    strategy: Strategy | None = None,
    progress: bool | ProgressBar | None = False,
    desc: str = "test set",
) -> dict[str, float | list[float]]:
    """Top-1 accuracy, mean per-class accuracy and per-class accuracy on ``(image, label, position)`` batches.

    Predictions are gathered with their positions before the metrics are computed, so sharded runs count every
    test sample exactly once (the padding of distributed samplers would otherwise bias the result).
    ``progress``: see :func:`progress_bar`.
    """
    was_training = model.training
    model.eval()
    preds, targets, positions = [], [], []
    try:
        with progress_bar(progress, len(loader), desc) as advance:
            for images, labels, pos in loader:
                with _autocast(device):
                    logits = model(images.to(device, non_blocking=True))
                preds.append(logits.argmax(dim=-1))
                targets.append(labels.to(device))
                positions.append(pos.to(device))
                advance()
    finally:
        model.train(was_training)
    _, pred, target = _gather_unique(strategy, torch.cat(positions), torch.cat(preds), torch.cat(targets))
    pred_t, target_t = torch.from_numpy(pred), torch.from_numpy(target)
    per_class = multiclass_accuracy(pred_t, target_t, num_classes, average="none")
    return {
        "acc": float(multiclass_accuracy(pred_t, target_t, num_classes, average="micro")),
        "mean_class_acc": float(multiclass_accuracy(pred_t, target_t, num_classes, average="macro")),
        "per_class_acc": [float(a) for a in per_class],
    }
