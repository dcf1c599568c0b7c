"""``ActiveDataModule``: a train set split into labeled / unlabeled pools, and a balanced test set (Sec. 5.1).

A subclass says how to read its images (:meth:`ActiveDataModule._load`) and sets ``num_classes``, ``classes``,
``in_channels``, ``image_size``, ``padding``, ``flip`` and ``stats`` in ``__init__``; the base class does the rest:

* ``setup()`` reads the data once and builds the long-tailed split (:func:`~cbal_lightning.splits.long_tail_split`)
  and the :class:`~cbal_lightning.pools.PoolState` (unless a checkpoint already provided the pools);
* ``train_dataloader()`` serves the labeled samples, augmented, as ``(image, label)``;
* ``pool_dataloader()`` serves the unlabeled pool, not augmented, as ``(image, train_index)``;
* ``val_dataloader()`` / ``test_dataloader()`` serve the untouched test set as ``(image, label)``;
* ``label(indices, cycle)`` reveals labels; the next ``train_dataloader()`` includes them;
* ``state_dict()`` / ``load_state_dict()`` carry the pools through Lightning checkpoints.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from cbal_lightning.data.errors import DatasetFormatError
from cbal_lightning.data.resumable import ResumableDataLoader
from cbal_lightning.data.transforms import Stats, eval_transform, train_transform
from cbal_lightning.pools import UNKNOWN, PoolState
from cbal_lightning.splits import LongTailSplit, long_tail_split, validate_split_params

__all__ = ["ActiveDataModule", "ImageFiles", "ImageSubset", "RawData"]


_SPLIT_DEFAULTS = {"initial_fraction": 0.1, "imbalance_factor": 1.0, "imbalance_type": "step", "tail_classes": None}


@dataclass(frozen=True)
class RawData:
    """What a subclass reads: indexable images (PIL images or tensors, untransformed) and int64 labels.

    Train labels may be ``UNKNOWN`` (-1): images nobody has labeled yet. Then the pool is real: every labeled train
    sample is the initial set and every unlabeled one the pool (no simulated long-tail cut).
    """

    train_images: Any
    train_targets: np.ndarray
    test_images: Any
    test_targets: np.ndarray


class ImageFiles(Dataset):
    """Images read lazily from ``paths``, as RGB PIL images (greyscale and palette files are converted)."""

    def __init__(self, paths: Sequence[str | os.PathLike]) -> None:
        self.paths = [str(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Image.Image:
        try:
            with Image.open(self.paths[i]) as image:
                return image.convert("RGB")
        except (OSError, SyntaxError, ValueError) as err:  # PIL: truncated, unidentified or corrupt files
            raise DatasetFormatError(
                f"{self.paths[i]}: unreadable image ({type(err).__name__}: {err}); replace the file, or pass "
                "verify_images='drop' to the datamodule to leave unreadable files out of the pool"
            ) from err

    def unreadable(self) -> list[tuple[int, str, str]]:
        """``(position, path, reason)`` of every file that cannot be decoded completely (reads every file)."""
        bad = []
        for i, path in enumerate(self.paths):
            try:
                with Image.open(path) as image:
                    image.load()
            except (OSError, SyntaxError, ValueError) as err:
                bad.append((i, path, f"{type(err).__name__}: {err}"))
        return bad


class ImageSubset(Dataset):
    """Items ``(transform(images[indices[k]]), int(values[k]))``: labels for training/testing, train indices for the pool."""

    def __init__(self, images: Any, indices: np.ndarray, values: np.ndarray, transform: Callable[[Any], torch.Tensor]):
        if len(indices) != len(values):
            raise ValueError(f"indices and values differ in length: {len(indices)} != {len(values)}")
        self.images, self.transform = images, transform
        self.indices = np.asarray(indices, dtype=np.int64)
        self.values = np.asarray(values, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[int(self.indices[k])]), int(self.values[k])


class ActiveDataModule(LightningDataModule):
    """Base class of the active-learning datamodules.

    Args:
        initial_fraction: the initial labeled set holds ``floor(initial_fraction * N / C)`` samples per class.
        imbalance_factor: IF in (0, 1], the fraction of each tail class kept in the pool (1 = balanced).
        imbalance_type: ``"step"`` (IF on ``tail_classes``, the paper's text) or ``"exp"`` (``IF ** (y / (C-1))``).
        tail_classes: classes cut by ``"step"``; default the second half ``C//2 .. C-1``.
        seed: seeds the split (and nothing else).
        batch_size: training batch size.
        eval_batch_size: batch size of the pool and test loaders.
        num_workers: DataLoader worker processes.
        pin_memory: default: whether CUDA is available.
        persistent_workers: default: ``num_workers > 0``.
        verify_images: ``"off"``; ``"fail"``: decode every image file at setup and raise with the list of unreadable
            ones; ``"drop"``: warn with that list and leave them out (train files leave the pool, and the initial
            set; test files leave the test set). Dropped train files are recorded in the pool state, so a resumed
            run agrees. Data held in memory (CIFAR, digits) has no files to check.
    """

    num_classes: int
    classes: list[str]
    in_channels: int = 3
    image_size: int
    padding: int = 4
    flip: bool = True
    stats: Stats
    resize: int | None = None

    def __init__(
        self,
        initial_fraction: float = 0.1,
        imbalance_factor: float = 1.0,
        imbalance_type: Literal["step", "exp"] = "step",
        tail_classes: list[int] | None = None,
        seed: int = 0,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        persistent_workers: bool | None = None,
        verify_images: Literal["off", "fail", "drop"] = "off",
    ) -> None:
        super().__init__()
        if tail_classes is not None and not isinstance(tail_classes, (list, tuple, np.ndarray)):
            raise ValueError(f"tail_classes must be a list of class indices or None, got {tail_classes!r}")
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed must be an int, got {seed!r}")
        if verify_images not in ("off", "fail", "drop"):
            raise ValueError(f"verify_images must be 'off', 'fail' or 'drop', got {verify_images!r}")
        self.verify_images = verify_images
        self._dropped = np.zeros(0, dtype=np.int64)  # train indices of unreadable files (verify_images="drop")
        tail = validate_split_params(initial_fraction, imbalance_factor, imbalance_type, tail_classes)
        for name, value, low in (("batch_size", batch_size, 1), ("eval_batch_size", eval_batch_size, 1), ("num_workers", num_workers, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        self.initial_fraction = float(initial_fraction)
        self.imbalance_factor = float(imbalance_factor)
        self.imbalance_type = imbalance_type
        self.tail_classes = None if tail is None else list(tail)
        self.seed = int(seed)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.persistent_workers = num_workers > 0 if persistent_workers is None else persistent_workers and num_workers > 0
        self.split: LongTailSplit | None = None
        self._data: RawData | None = None
        self._test: ImageSubset | None = None
        self._pools: PoolState | None = None
        self._pending_pools: dict[str, Any] | None = None

    @classmethod
    def from_datasets(
        cls,
        train: Dataset,
        test: Dataset | None = None,
        *,
        train_targets: Sequence[int] | np.ndarray | torch.Tensor,
        test_targets: Sequence[int] | np.ndarray | torch.Tensor | None = None,
        num_classes: int | None = None,
        classes: list[str] | None = None,
        train_transform: Callable[[Any], torch.Tensor] | None = None,
        eval_transform: Callable[[Any], torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> ActiveDataModule:
        """A datamodule over any map-style datasets: a :class:`~cbal_lightning.data.DatasetDataModule` (see its arguments).

        Example:
            >>> x, y = np.random.default_rng(0).normal(size=(90, 4)), np.arange(90) % 3
            >>> dm = ActiveDataModule.from_datasets(x[:60], x[60:], train_targets=y[:60], test_targets=y[60:])
            >>> dm.num_classes, dm.classes, dm.input_shape
            (3, ['0', '1', '2'], (4,))
        """
        from cbal_lightning.data.datasets import DatasetDataModule  # the subclass imports this module

        return DatasetDataModule(
            train, test, train_targets=train_targets, test_targets=test_targets, num_classes=num_classes,
            classes=classes, train_transform=train_transform, eval_transform=eval_transform, **kwargs,
        )

    # ------------------------------------------------------------------------------------------ subclass API
    def _load(self) -> RawData:
        """Read the train and test images and labels (called once, from :meth:`setup`)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _load()")

    def _check_tail_classes(self) -> None:
        """Subclasses call this at the end of ``__init__``, once ``num_classes`` is known."""
        if self.tail_classes and not (0 <= self.tail_classes[0] and self.tail_classes[-1] < self.num_classes):
            raise ValueError(f"tail_classes must lie in 0..{self.num_classes - 1}, got {self.tail_classes}")

    # ------------------------------------------------------------------------------------------ setup
    def setup(self, stage: str | None = None) -> None:
        """Read the data and build the split and the pools; later calls do nothing."""
        if self._data is not None:
            return
        data = self._load()
        self._check_targets(data)
        if (data.train_targets == UNKNOWN).any():  # a real pool: what is labeled starts the run, the rest is queried
            self.split = None
            self._warn_split_params_unused(int((data.train_targets == UNKNOWN).sum()))
        else:
            self.split = long_tail_split(
                data.train_targets, self.num_classes, initial_fraction=self.initial_fraction,
                imbalance_factor=self.imbalance_factor, imbalance_type=self.imbalance_type,
                tail_classes=self.tail_classes, seed=self.seed,
            )
        bad_train, bad_test = self._unreadable_files(data)
        self._data = data
        test_kept = np.setdiff1d(np.arange(len(data.test_targets)), bad_test)
        self._test = ImageSubset(data.test_images, test_kept, data.test_targets[test_kept], self.eval_transform)
        self._dropped = bad_train
        if self._pending_pools is not None:  # load_state_dict came before setup
            self._pools, self._pending_pools = self._restored(self._pending_pools), None
        elif self._pools is None:
            self._pools = self._initial_pools(data)
            self._pools.exclude(self._dropped)

    def _check_targets(self, data: RawData) -> None:
        name = type(self).__name__
        for split, targets, low in (("train", data.train_targets, UNKNOWN), ("test", data.test_targets, 0)):
            if len(targets) and (int(targets.min()) < low or int(targets.max()) >= self.num_classes):
                allowed = f"0..{self.num_classes - 1}" + (f" or {UNKNOWN} (unknown)" if low == UNKNOWN else "")
                raise ValueError(f"{name}: {split} labels must lie in {allowed}, found {int(targets.min())}..{int(targets.max())}")
        if not (data.train_targets != UNKNOWN).any():
            raise ValueError(f"{name}: no train sample has a label; active learning starts from a labeled set: label a "
                             "few samples of every class first")

    def _initial_pools(self, data: RawData) -> PoolState:
        """The paper's split (initial set + long-tailed pool) or, for a real pool, every known label in cycle 0."""
        if self.split is not None:
            return PoolState.from_split(self.split, data.train_targets)
        pools = PoolState(data.train_targets, num_classes=self.num_classes)
        pools.label(np.flatnonzero(data.train_targets != UNKNOWN), cycle=0)
        return pools

    def _warn_split_params_unused(self, unknown: int) -> None:
        given = {k: v for k, v in self._split_params().items() if k in _SPLIT_DEFAULTS and v != _SPLIT_DEFAULTS[k]}
        if given:
            warnings.warn(
                f"{type(self).__name__}: {unknown} train samples have no label, so the pool is real: every labeled sample "
                f"starts the run and every unlabeled one is the pool; {sorted(given)} (the paper's simulated split) "
                "are not used",
                stacklevel=3,
            )

    def _unreadable_files(self, data: RawData) -> tuple[np.ndarray, np.ndarray]:
        """Train and test positions of unreadable image files under ``verify_images`` (empty when "off")."""
        if self.verify_images == "off":
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        found = {split: images.unreadable() if isinstance(images, ImageFiles) else []
                 for split, images in (("train", data.train_images), ("test", data.test_images))}
        listed = [f"{path} ({reason})" for split in found for _, path, reason in found[split]]
        if listed:
            shown = "\n  ".join(listed[:20]) + (f"\n  ... and {len(listed) - 20} more" if len(listed) > 20 else "")
            if self.verify_images == "fail":
                raise DatasetFormatError(
                    f"{type(self).__name__}: {len(listed)} unreadable image file(s):\n  {shown}\nreplace them, or pass "
                    "verify_images='drop' to leave them out"
                )
            warnings.warn(f"{type(self).__name__}: leaving out {len(listed)} unreadable image file(s):\n  {shown}", stacklevel=2)
        return tuple(np.asarray([i for i, _, _ in found[split]], dtype=np.int64) for split in ("train", "test"))  # type: ignore[return-value]

    def _ready(self) -> RawData:
        if self._data is None:
            raise RuntimeError(f"{type(self).__name__}: call setup() first (Trainer.fit does it)")
        return self._data

    @property
    def pools(self) -> PoolState:
        """Which train samples are labeled (and in which cycle) and which are still in the pool."""
        self._ready()
        assert self._pools is not None
        return self._pools

    @property
    def targets(self) -> np.ndarray:
        """All train labels, ``(N,)`` int64, indexable by train index; ``UNKNOWN`` (-1) where nobody labeled it yet."""
        return self.pools.targets

    @property
    def train_transform(self) -> Callable[[Any], torch.Tensor]:
        mean, std = self.stats
        return train_transform(self.image_size, self.padding, mean, std, flip=self.flip, resize=self.resize)

    @property
    def eval_transform(self) -> Callable[[Any], torch.Tensor]:
        return eval_transform(*self.stats, resize=self.resize)

    # ------------------------------------------------------------------------------------------ datasets
    @property
    def test_dataset(self) -> Dataset:
        """The balanced test set, ``(image, label)`` items, evaluation transforms (empty when there is none)."""
        self._ready()
        return self._test

    def train_dataset(self) -> Dataset:
        """The labeled samples the model trains on (less any held out), ``(image, label)`` items, training augmentation."""
        data, labeled = self._ready(), self.pools.training_indices()
        return ImageSubset(data.train_images, labeled, self.targets[labeled], self.train_transform)

    def pool_dataset(self, indices: Sequence[int] | np.ndarray | None = None) -> Dataset:
        """The unlabeled pool (or the given part of it), ``(image, train_index)`` items, evaluation transforms."""
        pool = self.pools.unlabeled_indices()
        if indices is not None:
            wanted = np.asarray(indices, dtype=np.int64).reshape(-1)
            outside = wanted[~np.isin(wanted, pool)]
            if outside.size:
                raise ValueError(f"indices not in the unlabeled pool: {outside[:5].tolist()} ({outside.size} in all)")
            pool = wanted
        return self.eval_dataset(pool)

    def eval_dataset(self, indices: Sequence[int] | np.ndarray) -> Dataset:
        """Any train samples (e.g. the labeled set, for embeddings), ``(image, train_index)`` items, evaluation transforms."""
        data = self._ready()
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        bad = indices[(indices < 0) | (indices >= len(data.train_targets))]
        if bad.size:
            raise ValueError(f"indices out of range 0..{len(data.train_targets) - 1}: {bad[:5].tolist()}")
        return ImageSubset(data.train_images, indices, indices, self.eval_transform)

    def label(
        self,
        indices: Sequence[int] | np.ndarray | torch.Tensor,
        cycle: int,
        labels: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    ) -> None:
        """Label ``indices`` in ``cycle``: reveal known labels, or take ``labels`` a person gave (:meth:`PoolState.label`)."""
        self.pools.label(indices, cycle, labels)

    # ------------------------------------------------------------------------------------------ loaders
    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool = False, sampler: Sampler | None = None) -> DataLoader:
        return DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle, sampler=sampler, drop_last=False,
            num_workers=self.num_workers, pin_memory=self.pin_memory, persistent_workers=self.persistent_workers,
        )

    def train_dataloader(self) -> DataLoader:
        """The labeled samples in a new random order each epoch.

        In a single process it is a :class:`~cbal_lightning.data.resumable.ResumableDataLoader`, so a checkpoint
        saved mid-epoch resumes at the same batch; under DDP Lightning shards it with a ``DistributedSampler``.
        """
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            return self._loader(self.train_dataset(), self.batch_size, shuffle=True)
        return ResumableDataLoader(
            self.train_dataset(), self.batch_size, trained_batches=self._trained_batches, drop_last=False,
            num_workers=self.num_workers, pin_memory=self.pin_memory, persistent_workers=self.persistent_workers,
        )

    def _trained_batches(self) -> int | None:
        """Batches of the current epoch the fit loop has trained on (``None`` outside ``fit``)."""
        trainer = self.trainer
        return None if trainer is None else int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """The test set; an empty list (no validation) when there is none."""
        return self.test_dataloader()

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        """The test set; an empty list (nothing to test) when there is none."""
        return self._loader(self.test_dataset, self.eval_batch_size) if len(self.test_dataset) else []

    def pool_dataloader(
        self,
        indices: Sequence[int] | np.ndarray | None = None,
        *,
        sampler: Sampler | None = None,
        batch_size: int | None = None,
    ) -> DataLoader:
        """``(images, train_indices)`` batches of :meth:`pool_dataset` in index order (``sampler``: e.g. a DDP shard)."""
        return self._loader(self.pool_dataset(indices), batch_size or self.eval_batch_size, sampler=sampler)

    def eval_dataloader(
        self, indices: Sequence[int] | np.ndarray, *, sampler: Sampler | None = None, batch_size: int | None = None
    ) -> DataLoader:
        """``(images, train_indices)`` batches of :meth:`eval_dataset` in the given order."""
        return self._loader(self.eval_dataset(indices), batch_size or self.eval_batch_size, sampler=sampler)

    # ------------------------------------------------------------------------------------------ checkpoints
    def _split_params(self) -> dict[str, Any]:
        return {
            "initial_fraction": self.initial_fraction, "imbalance_factor": self.imbalance_factor,
            "imbalance_type": self.imbalance_type, "tail_classes": self.tail_classes, "seed": self.seed,
        }

    def state_dict(self) -> dict[str, Any]:
        """``{"pools": PoolState.state_dict(), "split": split parameters}``; readable with ``weights_only=True``.

        Before :meth:`setup` it holds the pools given to :meth:`load_state_dict`, or is empty.
        """
        pools = self._pending_pools if self._data is None else self.pools.state_dict()
        return {} if pools is None else {"pools": pools, "split": self._split_params()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Replace the pools with the saved ones (before or after :meth:`setup`).

        Raises:
            ValueError: the checkpoint was made with other split parameters or on another train set.
        """
        saved, current = dict(state_dict["split"]), self._split_params()
        saved["tail_classes"] = None if saved.get("tail_classes") is None else [int(c) for c in saved["tail_classes"]]
        diff = {k: (saved.get(k), v) for k, v in current.items() if saved.get(k) != v}
        if diff:
            detail = ", ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diff.items())
            raise ValueError(f"the checkpoint's data split differs from this datamodule's ({detail}); use the same arguments")
        if self._data is None:
            self._pending_pools = state_dict["pools"]
        else:
            self._pools = self._restored(state_dict["pools"])

    def _restored(self, state: dict[str, Any]) -> PoolState:
        pools = PoolState(self._ready().train_targets, num_classes=self.num_classes)
        pools.load_state_dict(state)
        new = self._dropped[np.isin(self._dropped, pools.candidate_indices())]
        if new.size:  # files that became unreadable after the checkpoint
            images = self._ready().train_images
            warnings.warn(
                f"{type(self).__name__}: {new.size} image file(s) unreadable now were in the checkpoint's pool "
                f"({', '.join(images.paths[i] for i in new[:5])}); leaving them out, so this run's later queries "
                "can differ from the original's",
                stacklevel=2,
            )
            pools.exclude(new)
        return pools

    def __repr__(self) -> str:
        pools = "not set up" if self._pools is None else repr(self._pools)
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._split_params().items())}; {pools})"
