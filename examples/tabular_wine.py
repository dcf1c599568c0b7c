"""Class-balanced active learning on tabular data: scikit-learn's wine features and a small MLP (CPU, seconds).

Nothing here is an image: the 13 wine features go through ``ActiveDataModule.from_datasets`` and a plain
LightningModule (not ``ImageClassifier``) with ``forward``, ``embed`` and ``classify``.

    python examples/tabular_wine.py                                            # from Python
    PYTHONPATH=examples cbal-lightning fit --config examples/tabular_wine.yaml  # the same from the CLI

The CLI finds ``tabular_wine.WineDataModule`` and ``tabular_wine.TinyMLP`` (the YAML's class paths) through
``PYTHONPATH``; ``num_classes`` is linked from the datamodule, ``in_features`` is set in the YAML.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer, seed_everything
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split
from torch import Tensor, nn

from cbal_lightning import ActiveDataModule, ActiveLearningCallback
from cbal_lightning.data import DatasetDataModule
from cbal_lightning.scoring import Entropy
from cbal_lightning.selection import ClassBalanced


def wine_split(test_fraction: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardised wine features (statistics of the train part), stratified: ``x_train, x_test, y_train, y_test``."""
    wine = load_wine()
    x_train, x_test, y_train, y_test = train_test_split(
        wine.data.astype(np.float32), wine.target, test_size=test_fraction, stratify=wine.target, random_state=seed
    )
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    return (x_train - mean) / std, (x_test - mean) / std, y_train, y_test


class WineDataModule(DatasetDataModule):
    """The wine split as a datamodule class, so that a YAML can name it (``class_path: tabular_wine.WineDataModule``)."""

    def __init__(self, test_fraction: float = 0.3, **kwargs: Any) -> None:
        x_train, x_test, y_train, y_test = wine_split(test_fraction)
        super().__init__(x_train, x_test, train_targets=y_train, test_targets=y_test,
                         classes=list(load_wine().target_names), **kwargs)


class TinyMLP(LightningModule):
    """Two hidden layers; ``embed`` is the last hidden layer and ``classify`` the linear head (for KCenter/BADGE/BALD)."""

    def __init__(self, num_classes: int, in_features: int = 13, hidden: int = 32, lr: float = 0.01) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.body = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        return self.body(x)

    def classify(self, h: Tensor) -> Tensor:
        return self.head(h)

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(self.embed(x))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main() -> None:
    seed_everything(0)
    x_train, x_test, y_train, y_test = wine_split()
    dm = ActiveDataModule.from_datasets(x_train, x_test, train_targets=y_train, test_targets=y_test,
                                        imbalance_factor=0.2, batch_size=16)
    al = ActiveLearningCallback(budget=6, cycles=3, scorer=Entropy(), selector=ClassBalanced(lam=1.0), progress=False)
    trainer = Trainer(max_epochs=30, accelerator="cpu", callbacks=[al], logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir="runs/tabular_wine")
    trainer.fit(TinyMLP(num_classes=dm.num_classes, in_features=dm.input_shape[0]), datamodule=dm)
    for record in al.history:
        print(f"cycle {record['cycle']}: {record['num_labeled']} labeled {record['labeled_counts']}, "
              f"test accuracy {record['test']['acc']:.3f}, mean per-class {record['test']['mean_class_acc']:.3f}")


if __name__ == "__main__":
    main()
