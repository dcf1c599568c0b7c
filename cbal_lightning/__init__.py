"""cbal-lightning: class-balanced active learning (Bengar et al.) as a PyTorch Lightning callback.

The names a user needs come from here; the modules hold the rest (see the README's architecture section).
Names are imported on first access (PEP 562), so ``import cbal_lightning.selection`` loads neither torch nor
Lightning.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

_WHERE = {  # public name: module that defines it
    "ActiveLearningCallback": "cbal_lightning.callback",
    "ActiveDataModule": "cbal_lightning.data",
    "CIFAR10DataModule": "cbal_lightning.data",
    "CIFAR100DataModule": "cbal_lightning.data",
    "DatasetDataModule": "cbal_lightning.data",
    "DigitsDataModule": "cbal_lightning.data",
    "ImageFolderDataModule": "cbal_lightning.data",
    "TinyImageNetDataModule": "cbal_lightning.data",
    "ImageClassifier": "cbal_lightning.models",
    "PoolState": "cbal_lightning.pools",
    "BALD": "cbal_lightning.scoring",
    "Entropy": "cbal_lightning.scoring",
    "LeastConfidence": "cbal_lightning.scoring",
    "Margin": "cbal_lightning.scoring",
    "Random": "cbal_lightning.scoring",
    "Scorer": "cbal_lightning.scoring",
    "Badge": "cbal_lightning.selection",
    "ClassBalanced": "cbal_lightning.selection",
    "KCenterGreedy": "cbal_lightning.selection",
    "PseudoLabelQuota": "cbal_lightning.selection",
    "Selector": "cbal_lightning.selection",
    "TopK": "cbal_lightning.selection",
    "long_tail_split": "cbal_lightning.splits",
}

try:
    __version__ = version("cbal-lightning")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    """Import the module holding ``name`` on first access and cache the attribute (PEP 562)."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
