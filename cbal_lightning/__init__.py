"""cbal-lightning: class-balanced active learning (Bengar et al.) as a PyTorch Lightning callback.

The names a user needs come from here; the modules hold the rest (see the README's architecture section).
"""

from importlib.metadata import PackageNotFoundError, version

from cbal_lightning.callback import ActiveLearningCallback
from cbal_lightning.data import (
    ActiveDataModule,
    CIFAR10DataModule,
    CIFAR100DataModule,
    DigitsDataModule,
    ImageFolderDataModule,
    TinyImageNetDataModule,
)
from cbal_lightning.models import ImageClassifier
from cbal_lightning.pools import PoolState
from cbal_lightning.scoring import BALD, Entropy, LeastConfidence, Margin, Random, Scorer
from cbal_lightning.selection import Badge, ClassBalanced, KCenterGreedy, PseudoLabelQuota, Selector, TopK
from cbal_lightning.splits import long_tail_split

try:
    __version__ = version("cbal-lightning")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "ActiveDataModule",
    "ActiveLearningCallback",
    "BALD",
    "Badge",
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "ClassBalanced",
    "DigitsDataModule",
    "Entropy",
    "ImageClassifier",
    "ImageFolderDataModule",
    "KCenterGreedy",
    "LeastConfidence",
    "Margin",
    "PoolState",
    "PseudoLabelQuota",
    "Random",
    "Scorer",
    "Selector",
    "TinyImageNetDataModule",
    "TopK",
    "long_tail_split",
]
