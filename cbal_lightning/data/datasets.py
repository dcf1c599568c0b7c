"""``DatasetDataModule``: any map-style datasets (tabular rows, text embeddings, audio, images) with label arrays.

The labels come from ``train_targets`` / ``test_targets``, never from the items: an item may be the input ``x`` or a
tuple/list ``(x, ...)`` whose element 0 is the input (so a ``TensorDataset(x, y)`` works as it is). A NumPy array or
a tensor is itself a dataset of its rows. ``ActiveDataModule.from_datasets(...)`` builds one; subclass it to build
the datasets in your own ``__init__`` (what ``cbal-lightning fit`` needs: see ``examples/tabular_wine.py``).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from cbal_lightning.data.datamodule import ActiveDataModule, RawData

__all__ = ["DatasetDataModule", "Targets", "to_float_tensor"]

Targets = Sequence[int] | np.ndarray | torch.Tensor
"""Class indices, one per item: a list, a NumPy array or a tensor of ints."""


def to_float_tensor(x: Any) -> torch.Tensor:
    """The default transform: a tensor unchanged, anything else (a NumPy row, a list of numbers) as float32.

    Example:
        >>> to_float_tensor(np.array([1, 2])), to_float_tensor(torch.tensor([3]))
        (tensor([1., 2.]), tensor([3]))
    """
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x), dtype=torch.float32)


class _Inputs(Dataset):
    """The inputs of a dataset: element 0 of tuple/list items, the item itself otherwise."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        item = self.dataset[i]
        return item[0] if isinstance(item, (tuple, list)) else item


def _check_dataset(name: str, dataset: Any) -> int:
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise TypeError(
            f"{name} must be a map-style dataset (with __len__ and __getitem__), got {type(dataset).__name__}; wrap "
            "features in torch.utils.data.TensorDataset(x) or pass a NumPy array/tensor of rows"
        )
    if len(dataset) == 0:
        raise ValueError(f"{name} is empty; pass a dataset with at least one item")
    return len(dataset)


def _check_targets(name: str, targets: Any, length: int, *, unknown: bool) -> np.ndarray:
    """``targets`` as int64, one per item; ``-1`` (unknown) only where ``unknown`` is allowed."""
    array = np.asarray(targets.detach().cpu() if isinstance(targets, torch.Tensor) else targets)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one class index per item (1-D), got shape {array.shape}; pass e.g. y.ravel()")
    if len(array) != length:
        raise ValueError(f"{name} has {len(array)} labels for {length} items; pass one label per item, in dataset order")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"{name} must hold integer class indices, got dtype {array.dtype}; map names to indices first, e.g. "
            "classes, y = np.unique(names, return_inverse=True)"
        )
    low = -1 if unknown else 0
    if int(array.min()) < low:
        allowed = "class indices >= 0, or -1 for an unknown label" if unknown else "known class indices >= 0"
        raise ValueError(f"{name} holds {int(array.min())}; it must hold {allowed}")
    return array.astype(np.int64)


class DatasetDataModule(ActiveDataModule):
    """An active-learning datamodule over any map-style datasets, with labels given as arrays.

    Args:
        train: the train set (split into the initial labeled set and the pool); items ``x`` or ``(x, ...)``.
        test: the test set, or ``None``: then no test metrics are computed (validation and test loaders are empty).
        train_targets: one class index per train item; ``-1`` marks a sample whose label is unknown.
        test_targets: one known class index per test item (required with ``test``).
        num_classes: default ``len(classes)``, else the largest known label + 1.
        classes: class names; default ``["0", "1", ...]``.
        train_transform: applied to a train input for training; default :func:`to_float_tensor`.
        eval_transform: applied to inputs for scoring, embedding and testing; default :func:`to_float_tensor`.
        **kwargs: :class:`~cbal_lightning.data.ActiveDataModule` arguments (split, batch sizes, workers).

    ``input_shape`` is the shape of one transformed input; ``in_channels`` its first dimension (channels of an
    image, features of a row); ``image_size`` the side of square ``(C, H, W)`` inputs, else ``None``.

    Example:
        >>> x, y = torch.randn(200, 5), torch.arange(200) % 4
        >>> dm = DatasetDataModule(x, train_targets=y, initial_fraction=0.2)
        >>> dm.setup("fit")
        >>> dm.num_classes, dm.input_shape, dm.pools.initial_size, len(dm.test_dataset)
        (4, (5,), 40, 0)
    """

    def __init__(
        self,
        train: Dataset,
        test: Dataset | None = None,
        *,
        train_targets: Targets,
        test_targets: Targets | None = None,
        num_classes: int | None = None,
        classes: list[str] | None = None,
        train_transform: Callable[[Any], torch.Tensor] | None = None,
        eval_transform: Callable[[Any], torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        train_y = _check_targets("train_targets", train_targets, _check_dataset("train", train), unknown=True)
        if (test is None) != (test_targets is None):
            raise ValueError("test and test_targets go together: pass both (a test set and its labels) or neither")
        test_y = np.zeros(0, dtype=np.int64)
        if test is not None:
            test_y = _check_targets("test_targets", test_targets, _check_dataset("test", test), unknown=False)
        known = np.concatenate([train_y[train_y >= 0], test_y])
        if known.size == 0:
            raise ValueError("train_targets holds no known label (all -1); label a few samples of every class first")
        self.num_classes = self._num_classes(num_classes, classes, int(known.max()))
        self.classes = [str(c) for c in range(self.num_classes)] if classes is None else list(classes)
        for name, fn in (("train_transform", train_transform), ("eval_transform", eval_transform)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be a callable (input -> tensor) or None, got {type(fn).__name__}")
        self._train_fn = train_transform or to_float_tensor
        self._eval_fn = eval_transform or to_float_tensor
        self._train_set, self._test_set = _Inputs(train), None if test is None else _Inputs(test)
        self._train_y, self._test_y = train_y, test_y
        self.input_shape = self._input_shape()
        self.in_channels = self.input_shape[0] if self.input_shape else 1
        square = len(self.input_shape) == 3 and self.input_shape[1] == self.input_shape[2]
        self.image_size: int | None = self.input_shape[1] if square else None  # type: ignore[assignment]
        self._check_tail_classes()

    @staticmethod
    def _num_classes(num_classes: int | None, classes: list[str] | None, largest: int) -> int:
        if classes is not None and (isinstance(classes, str) or not all(isinstance(c, str) for c in classes)):
            raise ValueError(f"classes must be a list of class names (str), got {classes!r}")
        if num_classes is None:
            num_classes = len(classes) if classes is not None else largest + 1
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}; pass num_classes= or classes=")
        if classes is not None and len(classes) != num_classes:
            raise ValueError(f"classes names {len(classes)} classes but num_classes={num_classes}; make them agree")
        if largest >= num_classes:
            raise ValueError(
                f"the targets hold class {largest} but num_classes={num_classes}; pass num_classes >= {largest + 1} "
                "(or as many classes names), or fix the labels"
            )
        return int(num_classes)

    def _input_shape(self) -> tuple[int, ...]:
        """Transform the first train (and test) input both ways: tensors of one shape, or an error naming the transform."""
        shapes = {}
        items = [("train", self._train_set[0])] + ([] if self._test_set is None else [("test", self._test_set[0])])
        for split, x in items:
            for name, fn in (("train_transform", self._train_fn), ("eval_transform", self._eval_fn)):
                out = fn(x)
                if not isinstance(out, torch.Tensor):
                    raise TypeError(
                        f"{name} must return a torch.Tensor, got {type(out).__name__} for the first {split} input "
                        f"({type(x).__name__}); end it in a conversion to a tensor"
                    )
                shapes[f"{name} of the first {split} input"] = tuple(out.shape)
        if len(set(shapes.values())) > 1:
            raise ValueError(f"inputs must transform to one shape, got {shapes}; resize or pad them in the transforms")
        return next(iter(shapes.values()))

    def _load(self) -> RawData:
        return RawData(self._train_set, self._train_y, [] if self._test_set is None else self._test_set, self._test_y)

    @property
    def train_transform(self) -> Callable[[Any], torch.Tensor]:
        return self._train_fn

    @property
    def eval_transform(self) -> Callable[[Any], torch.Tensor]:
        return self._eval_fn
