"""Datamodules that split a train set into a labeled set and a long-tailed unlabeled pool (Sec. 5.1)."""

from cbal_lightning.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from cbal_lightning.data.datamodule import ActiveDataModule
from cbal_lightning.data.datasets import DatasetDataModule
from cbal_lightning.data.digits import DigitsDataModule
from cbal_lightning.data.errors import DatasetFormatError, DatasetNotFoundError
from cbal_lightning.data.image_folder import ImageFolderDataModule
from cbal_lightning.data.tiny_imagenet import TinyImageNetDataModule

__all__ = [
    "ActiveDataModule", "CIFAR10DataModule", "CIFAR100DataModule", "DatasetDataModule", "DatasetFormatError", "DatasetNotFoundError",
    "DigitsDataModule", "ImageFolderDataModule", "TinyImageNetDataModule",
]
