"""Which train samples are labeled, in which active-learning cycle, and which may still be queried.

A label is known or unknown (``UNKNOWN``, -1): a simulated oracle reveals known labels; samples nobody has
labeled yet get theirs from a person (``label(indices, cycle, labels=...)``).

Example:
    >>> pools = PoolState([0, 1, 0, 1, 2, 2], candidates=[0, 1, 2, 3, 4])
    >>> pools.label([0, 1], cycle=0)
    >>> pools.label([4], cycle=1)
    >>> pools.labeled_indices().tolist(), pools.unlabeled_indices().tolist(), pools.labeled_counts().tolist()
    ([0, 1, 4], [2, 3], [1, 1, 1])
    >>> pools.cycle_of([4, 5]).tolist()
    [1, -1]
    >>> real = PoolState([0, 1, -1, -1], num_classes=2)     # two images nobody has labeled
    >>> real.label([0, 1], cycle=0); real.unknown_indices().tolist()
    [2, 3]
    >>> real.label([3], cycle=1, labels=[1]); real.labeled_counts().tolist()
    [1, 2]
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from cbal_lightning.io import atomic_write

if TYPE_CHECKING:
    from cbal_lightning.splits import LongTailSplit

__all__ = ["PoolState", "UNKNOWN"]

UNKNOWN = -1  # the label of a sample nobody has labeled yet

_FORMAT_VERSION = 1
_SHOWN = 5  # offending indices quoted in an error message


def _show(indices: np.ndarray) -> str:
    head = ", ".join(str(int(i)) for i in indices[:_SHOWN])
    return f"[{head}{', ...' if len(indices) > _SHOWN else ''}] ({len(indices)} in all)"


def _as_index_array(indices: Any, name: str = "indices") -> np.ndarray:
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    array = np.asarray(indices)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be integer train-set indices, got dtype {array.dtype}")
    return array.reshape(-1).astype(np.int64)


class PoolState:
    """For every index of the train set: is it in the active-learning universe, is it labeled, in which cycle.

    Args:
        targets: train labels, ``UNKNOWN`` (-1) where nobody knows them yet; the simulated oracle reveals the known
            ones on labeling, a person gives the others (:meth:`label` with ``labels``).
        candidates: indices of the active-learning universe (initial set + long-tailed pool); the others (cut by the
            imbalance) are never served. ``None``: all indices.
        num_classes: default ``max(targets) + 1``; required when no label is known.
    """

    def __init__(
        self,
        targets: Sequence[int] | np.ndarray,
        candidates: Sequence[int] | np.ndarray | None = None,
        num_classes: int | None = None,
    ) -> None:
        targets = _as_index_array(targets, "targets")
        if targets.size == 0:
            raise ValueError("targets must be non-empty")
        if targets.min() < UNKNOWN:
            raise ValueError(f"targets must be class indices, or {UNKNOWN} for unknown, found {int(targets.min())}")
        if num_classes is None and targets.max() == UNKNOWN:
            raise ValueError("num_classes: no label is known, so it cannot be inferred from targets; pass it")
        inferred = int(targets.max()) + 1
        if num_classes is not None and inferred > num_classes:
            raise ValueError(f"targets contain class {inferred - 1} but num_classes={num_classes}")
        self.num_classes: int = int(num_classes if num_classes is not None else inferred)
        self._targets = targets
        self._targets.setflags(write=False)
        self._candidate = np.ones(len(targets), dtype=bool)
        if candidates is not None:
            cand = _as_index_array(candidates, "candidates")
            bad = cand[(cand < 0) | (cand >= len(targets))]
            if bad.size:
                raise ValueError(f"candidates out of range 0..{len(targets) - 1}: {_show(bad)}")
            self._candidate[:] = False
            self._candidate[cand] = True
        self._cycle = np.full(len(targets), -1, dtype=np.int64)
        self._held_out = np.zeros(len(targets), dtype=bool)  # labeled, but kept out of training (calibration)

    @classmethod
    def from_split(cls, split: LongTailSplit, targets: Sequence[int] | np.ndarray) -> PoolState:
        """Pools of a :class:`~cbal_lightning.splits.LongTailSplit`: candidates = initial + pool, initial labeled in cycle 0."""
        pools = cls(targets, candidates=split.candidates, num_classes=split.num_classes)
        pools.label(split.initial, cycle=0)
        return pools

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> PoolState:
        """A new PoolState from :meth:`state_dict` output."""
        pools = cls(_to_numpy(state["targets"]), num_classes=int(state["num_classes"]))
        pools.load_state_dict(state)
        return pools

    # ----------------------------------------------------------------------------------------------- queries
    def __len__(self) -> int:
        return len(self._targets)

    def __repr__(self) -> str:
        return (
            f"PoolState(size={len(self)}, candidates={self.num_candidates}, labeled={self.num_labeled}, "
            f"unlabeled={self.num_unlabeled}, last_cycle={self.last_cycle})"
        )

    @property
    def targets(self) -> np.ndarray:
        """Train labels, ``(N,)`` int64, read-only; ``UNKNOWN`` (-1) where no label is known yet."""
        return self._targets

    @property
    def has_unknown(self) -> bool:
        """Whether some unlabeled candidate has no known label (a person must label it when it is queried)."""
        return bool(len(self.unknown_indices()))

    def unknown_indices(self) -> np.ndarray:
        """Sorted int64 indices of the unlabeled candidates whose label nobody knows yet."""
        return np.flatnonzero(self._candidate & (self._cycle < 0) & (self._targets == UNKNOWN)).astype(np.int64)

    @property
    def num_candidates(self) -> int:
        return int(self._candidate.sum())

    @property
    def num_labeled(self) -> int:
        return int((self._cycle >= 0).sum())

    @property
    def num_unlabeled(self) -> int:
        """Candidates not yet labeled."""
        return int((self._candidate & (self._cycle < 0)).sum())

    @property
    def initial_size(self) -> int:
        """Number labeled in cycle 0."""
        return int((self._cycle == 0).sum())

    @property
    def last_cycle(self) -> int:
        """Highest cycle with labels (0 after the initial set; -1 while nothing is labeled)."""
        return int(self._cycle.max())

    def candidate_indices(self) -> np.ndarray:
        """Sorted int64 indices of the active-learning universe."""
        return np.flatnonzero(self._candidate).astype(np.int64)

    def labeled_indices(self, cycle: int | None = None) -> np.ndarray:
        """Sorted int64 labeled indices; with ``cycle=k`` only those labeled in cycle ``k``."""
        mask = self._cycle >= 0 if cycle is None else self._cycle == int(cycle)
        return np.flatnonzero(mask).astype(np.int64)

    def training_indices(self) -> np.ndarray:
        """Sorted int64 labeled indices the model trains on: the labeled set less the held-out samples."""
        return np.flatnonzero((self._cycle >= 0) & ~self._held_out).astype(np.int64)

    def held_out_indices(self) -> np.ndarray:
        """Sorted int64 labeled indices kept out of training (see :meth:`hold_out`)."""
        return np.flatnonzero(self._held_out).astype(np.int64)

    def unlabeled_indices(self) -> np.ndarray:
        """Sorted int64 indices of the candidates not labeled yet."""
        return np.flatnonzero(self._candidate & (self._cycle < 0)).astype(np.int64)

    def labeled_counts(self) -> np.ndarray:
        """``(C,)`` int64 labeled samples per class (true labels)."""
        return np.bincount(self._targets[self._cycle >= 0], minlength=self.num_classes).astype(np.int64)

    def unlabeled_counts(self) -> np.ndarray:
        """``(C,)`` int64 unlabeled candidates per class among those with a known label (for analysis of simulated
        runs only: a real learner can't see them)."""
        known = self._targets[self.unlabeled_indices()]
        return np.bincount(known[known != UNKNOWN], minlength=self.num_classes).astype(np.int64)

    def cycle_of(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
        """The cycle in which each index was labeled, -1 for unlabeled (int64, same length as ``indices``)."""
        idx = _as_index_array(indices)
        self._check_range(idx)
        return self._cycle[idx].copy()

    # ----------------------------------------------------------------------------------------------- updates
    def label(
        self,
        indices: Sequence[int] | np.ndarray | torch.Tensor,
        cycle: int,
        labels: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    ) -> None:
        """Mark ``indices`` labeled in ``cycle``. All checks run before anything changes.

        Args:
            indices: train indices.
            cycle: the cycle that labels them (0: the initial set).
            labels: the labels a person gave, one per index; needed for samples whose label is unknown. Where a
                label is known already, a given one must agree. ``None``: reveal the known labels.

        Raises:
            ValueError: negative or non-integer cycle; an index out of range, outside the candidates, already
                labeled or repeated in ``indices``; a label missing for an unknown sample, out of range or in
                conflict with a known one.
        """
        if isinstance(cycle, bool) or not isinstance(cycle, (int, np.integer)) or cycle < 0:
            raise ValueError(f"cycle must be a non-negative int, got {cycle!r}")
        idx = _as_index_array(indices)
        self._check_range(idx)
        unique, counts = np.unique(idx, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"cannot label indices twice: repeated in `indices`: {_show(unique[counts > 1])}")
        outside = idx[~self._candidate[idx]]
        if outside.size:
            raise ValueError(f"cannot label indices outside the candidate pool (cut by the imbalance): {_show(outside)}")
        done = idx[self._cycle[idx] >= 0]
        if done.size:
            cycles = sorted(set(self._cycle[done].tolist()))
            raise ValueError(f"cannot label indices twice: already labeled (in cycles {cycles}): {_show(done)}")
        targets = self._targets
        if labels is None:
            unknown = idx[targets[idx] == UNKNOWN]
            if unknown.size:
                raise ValueError(f"labels: these samples have no known label, pass the labels a person gave: {_show(unknown)}")
        else:
            given = _as_index_array(labels, "labels")
            if len(given) != len(idx):
                raise ValueError(f"labels: {len(given)} labels for {len(idx)} indices; give one per index")
            out = given[(given < 0) | (given >= self.num_classes)]
            if out.size:
                raise ValueError(f"labels must be class indices 0..{self.num_classes - 1}, got {_show(out)}")
            clash = idx[(targets[idx] != UNKNOWN) & (targets[idx] != given)]
            if clash.size:
                raise ValueError(f"labels: differ from the known labels of {_show(clash)}")
            targets = targets.copy()
            targets[idx] = given
            targets.setflags(write=False)
        self._targets = targets
        self._cycle[idx] = int(cycle)

    def hold_out(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> None:
        """Keep labeled ``indices`` out of training until :meth:`release_held_out` (e.g. to calibrate on them).

        Raises:
            ValueError: an index out of range or not labeled; nothing changes then.
        """
        idx = _as_index_array(indices)
        self._check_range(idx)
        unlabeled = idx[self._cycle[idx] < 0]
        if unlabeled.size:
            raise ValueError(f"only labeled samples can be held out; not labeled: {_show(unlabeled)}")
        self._held_out[idx] = True

    def release_held_out(self) -> None:
        """Return every held-out sample to training."""
        self._held_out[:] = False

    def exclude(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> None:
        """Take ``indices`` out of the active-learning universe (e.g. unreadable images): never served, never queried.

        Those in the initial set (cycle 0) are unlabeled too; the state saved afterwards records the exclusion.

        Raises:
            ValueError: an index out of range, or one labeled by a query (cycle >= 1): its label is part of the run.
        """
        idx = _as_index_array(indices)
        self._check_range(idx)
        queried = idx[self._cycle[idx] >= 1]
        if queried.size:
            raise ValueError(f"cannot exclude indices labeled by a query (cycles >= 1): {_show(queried)}")
        self._candidate[idx] = False
        self._cycle[idx] = -1
        self._held_out[idx] = False

    def _check_range(self, idx: np.ndarray) -> None:
        bad = idx[(idx < 0) | (idx >= len(self))]
        if bad.size:
            raise ValueError(f"indices out of range 0..{len(self) - 1}: {_show(bad)}")

    # ----------------------------------------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        """Torch tensors and Python primitives only, so ``torch.load(weights_only=True)`` reads it back."""
        return {
            "version": _FORMAT_VERSION,
            "num_classes": self.num_classes,
            "targets": torch.from_numpy(self._targets.copy()),
            "candidates": torch.from_numpy(self._candidate.copy()),
            "cycles": torch.from_numpy(self._cycle.copy()),
            "held_out": torch.from_numpy(self._held_out.copy()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore labels and candidates. The checkpoint must describe this train set (same size, labels, classes);
        labels it holds for samples this train set has no label for (given by a person) are taken over.

        Raises:
            ValueError: a checkpoint made on another train set, or an inconsistent one; nothing changes then.
        """
        version = int(state.get("version", _FORMAT_VERSION))
        if version > _FORMAT_VERSION:
            raise ValueError(f"pool state format {version} is newer than this version of cbal_lightning understands")
        targets = _to_numpy(state["targets"]).astype(np.int64)
        candidates = _to_numpy(state["candidates"]).astype(bool)
        cycles = _to_numpy(state["cycles"]).astype(np.int64)
        held_out = _to_numpy(state["held_out"]).astype(bool) if "held_out" in state else np.zeros(len(cycles), bool)
        if len(targets) != len(self):
            raise ValueError(
                f"the saved pool state covers a train set of {len(targets)} samples but this train set has {len(self)}: "
                "it was saved for another dataset (or another root/image folder); if image files were deleted, put "
                "them back and pass verify_images='drop' to leave unreadable ones out"
            )
        if int(state["num_classes"]) != self.num_classes:
            raise ValueError(f"the saved pool state has {state['num_classes']} classes, this train set {self.num_classes}")
        if len(candidates) != len(self) or len(cycles) != len(self):
            raise ValueError("corrupt pool state: 'candidates' and 'cycles' must have one entry per train sample")
        known = self._targets != UNKNOWN  # labels a person gave in the saved run are unknown to the dataset
        diff = np.flatnonzero((known & (targets != self._targets)) | (~known & (targets != UNKNOWN) & (cycles < 0)))
        if diff.size:
            raise ValueError(f"the saved pool state has different labels at train indices {_show(diff)}: another dataset?")
        if ((cycles >= 0) & (targets == UNKNOWN)).any():
            raise ValueError("corrupt pool state: a labeled sample without a label")
        if (cycles < -1).any() or ((cycles >= 0) & ~candidates).any():
            raise ValueError("corrupt pool state: a labeled index outside the candidates, or a cycle below -1")
        if len(held_out) != len(self) or (held_out & (cycles < 0)).any():
            raise ValueError("corrupt pool state: 'held_out' must mark labeled samples only, one entry per train sample")
        targets.setflags(write=False)
        self._targets = targets
        self._candidate = candidates
        self._cycle = cycles
        self._held_out = held_out

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically: ``.npz`` (compressed numpy) for that suffix, JSON otherwise. Returns the path."""
        path = Path(path)
        state = self.state_dict()
        if path.suffix == ".npz":
            arrays = {k: v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for k, v in state.items()}
            return atomic_write(path, lambda f: np.savez_compressed(f, **arrays))
        obj = {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
        data = json.dumps(obj, separators=(",", ":")).encode()
        return atomic_write(path, lambda f: f.write(data))

    @classmethod
    def load(cls, path: str | os.PathLike) -> PoolState:
        """Read a file written by :meth:`save` (either format, recognised by content)."""
        raw = Path(path).read_bytes()
        if raw[:2] == b"PK":
            with np.load(io.BytesIO(raw)) as npz:
                state: dict[str, Any] = {k: npz[k] for k in npz.files}
            state = {k: (v.item() if v.ndim == 0 else v) for k, v in state.items()}
        else:
            state = {k: (np.asarray(v) if isinstance(v, list) else v) for k, v in json.loads(raw).items()}
        return cls.from_state_dict(state)


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)
