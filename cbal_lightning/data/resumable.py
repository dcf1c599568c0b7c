"""A training loader that resumes mid-epoch exactly: Lightning's stateful-dataloader protocol, our own sampler.

Lightning saves ``state_dict()`` of every training loader that has ``state_dict``/``load_state_dict`` in each
checkpoint and hands it back to ``load_state_dict`` when a fit resumes in the middle of an epoch. A plain
``DataLoader`` has neither, so a ``ModelCheckpoint(every_n_train_steps=...)`` checkpoint restarts the epoch's
shuffle from scratch: other batches, another model, another labeled set after the next query.

:class:`ResumableDataLoader` shuffles like ``shuffle=True`` (a permutation drawn from the global torch RNG when
the epoch starts) and saves, with the checkpoint, the epoch's order, how many batches the fit loop has trained
on (read from the trainer: Lightning may fetch a batch ahead), and the global random states for the next batch.
Resuming serves the rest of the epoch in the same order; in the main process (``num_workers=0``) the next batch
is also drawn with the same augmentation randomness, so a seeded, deterministic CPU run continues exactly as the
uninterrupted one. With worker processes the samples resume in the same order but their augmentations are drawn
anew (workers keep their own random streams).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["ResumableDataLoader", "ResumableSampler", "rng_states", "set_rng_states"]


def rng_states() -> dict[str, Any]:
    """Python, NumPy and torch (CPU) random states in a form ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)), "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` returned (also after a round trip through a checkpoint)."""
    random.setstate(_as_tuple(states["python"]))
    np_state = states["numpy"]
    np.random.set_state({
        "bit_generator": "MT19937",
        "state": {"key": np.asarray(np_state["key"]).astype(np.uint32), "pos": int(np_state["pos"])},
        "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"]),
    })
    torch.set_rng_state(states["torch"])


def _as_tuple(value: Any) -> Any:
    """``random.setstate`` wants nested tuples; checkpoints may hand back lists."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


class ResumableSampler(Sampler[int]):
    """A fresh random order of ``range(n)`` each epoch (global torch RNG), or the rest of a saved one."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.order: list[int] = []
        self._resume: tuple[list[int], int] | None = None

    def __len__(self) -> int:
        return self.n

    def resume(self, order: list[int], start: int) -> None:
        """Make the next epoch serve ``order[start:]``."""
        self._resume = (order, start)

    def __iter__(self) -> Iterator[int]:
        if self._resume is not None:
            (self.order, start), self._resume = self._resume, None
        else:
            self.order, start = torch.randperm(self.n).tolist(), 0
        yield from self.order[start:]


class ResumableDataLoader(DataLoader):
    """A shuffling ``DataLoader`` whose position within the epoch travels in Lightning checkpoints.

    Args:
        dataset: the training samples.
        batch_size: samples per batch.
        trained_batches: returns how many batches of the current epoch the fit loop has trained on (the loader
            itself only knows how many it handed out, one more with Lightning's prefetching); ``None``: that count.
        **kwargs: other ``DataLoader`` arguments (not ``shuffle``, ``sampler`` or ``batch_sampler``).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        trained_batches: Callable[[], int | None] | None = None,
        **kwargs: Any,
    ) -> None:
        for name in ("shuffle", "sampler", "batch_sampler"):
            if kwargs.get(name):
                raise ValueError(f"{name}: ResumableDataLoader shuffles with its own sampler; do not pass {name}")
            kwargs.pop(name, None)
        super().__init__(dataset, batch_size=batch_size, sampler=ResumableSampler(len(dataset)), **kwargs)  # type: ignore[arg-type]
        self.trained_batches = trained_batches
        self._served = 0
        self._rng_before: dict[int, dict[str, Any]] = {}  # random states before fetching batch j, last few j
        self._pending: dict[str, Any] | None = None

    def __iter__(self) -> Iterator[Any]:
        pending, self._pending = self._pending, None
        sampler: ResumableSampler = self.sampler  # type: ignore[assignment]
        start = 0
        if pending is not None:
            start = int(pending["trained"])
            sampler.resume([int(i) for i in pending["order"]], start * self.batch_size)  # type: ignore[operator]
        self._served, self._rng_before = start, {}
        return self._batches(super().__iter__(), pending)

    def _batches(self, batches: Iterator[Any], pending: dict[str, Any] | None) -> Iterator[Any]:
        while True:
            j = self._served
            if pending is not None and self.num_workers == 0:
                # The next batch to train on is drawn with the random states it was (or would have been) drawn with:
                # those before it was fetched if it was prefetched before the checkpoint, else those at the
                # checkpoint; a batch fetched right after the checkpoint gets the checkpoint's states.
                prefetched = pending.get("rng_next") is not None
                if j == int(pending["trained"]):
                    set_rng_states(pending["rng_next"] if prefetched else pending["rng_now"])
                elif j == int(pending["trained"]) + 1 and prefetched:
                    set_rng_states(pending["rng_now"])
            self._rng_before[j] = rng_states()
            self._rng_before.pop(j - 4, None)
            try:
                batch = next(batches)
            except StopIteration:
                return
            self._served = j + 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """The epoch's order, the batches trained on, the random states before the next batch and now."""
        trained = self.trained_batches() if self.trained_batches is not None else None
        trained = self._served if trained is None else min(int(trained), self._served)
        sampler: ResumableSampler = self.sampler  # type: ignore[assignment]
        return {
            "order": torch.tensor(sampler.order, dtype=torch.int64),
            "trained": trained,
            "batch_size": self.batch_size,
            "rng_next": self._rng_before.get(trained) if trained < self._served else None,
            "rng_now": rng_states(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Serve the rest of the saved epoch from the next ``iter()``.

        Raises:
            ValueError: the saved order is for another number of samples or another batch size.
        """
        order = state_dict["order"]
        if len(order) != len(self.dataset) or int(state_dict["batch_size"]) != self.batch_size:  # type: ignore[arg-type]
            raise ValueError(
                f"the checkpoint's training loader state is for {len(order)} samples in batches of "
                f"{int(state_dict['batch_size'])}, this loader has {len(self.dataset)} in batches of {self.batch_size}; "  # type: ignore[arg-type]
                "resume with the same datamodule arguments"
            )
        self._pending = dict(state_dict)
