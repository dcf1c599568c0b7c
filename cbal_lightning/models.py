"""Ready-made classifiers with the paper's training recipe (section 5.1, "Implementation details").

Every backbone splits into ``features`` (image -> penultimate embedding) and ``head`` (embedding -> logits),
so representativeness methods can read embeddings and BALD can put dropout in front of the head.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
import torchvision
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

__all__ = ["Backbone", "SmallCNN", "build_backbone", "ImageClassifier", "BACKBONES"]

BACKBONES = ("small_cnn", "resnet18_cifar", "resnet18", "resnet101")


class Backbone(nn.Module):
    """``features`` followed by a linear ``head``; ``embed(x)`` returns the penultimate embedding."""

    def __init__(self, features: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.features = features
        self.head = head

    def embed(self, x: Tensor) -> Tensor:
        return torch.flatten(self.features(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed(x))


class SmallCNN(Backbone):
    """A ~0.1M-parameter CNN for small images (the digits default); works for any input size >= 8x8.

    Example:
        >>> SmallCNN(num_classes=10, in_channels=1)(torch.zeros(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32) -> None:
        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        features = nn.Sequential(
            *block(in_channels, width),
            *block(width, width),
            nn.MaxPool2d(2),
            *block(width, 2 * width),
            *block(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(1),
        )
        super().__init__(features, nn.Linear(2 * width, num_classes))


def _torchvision_resnet(name: str, num_classes: int, in_channels: int, cifar_stem: bool, weights: str | None) -> Backbone:
    net = getattr(torchvision.models, name)(weights=weights)
    if cifar_stem:  # CIFAR variant: 3x3 stride-1 stem and no max-pool, as in the paper's ResNet-18
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    head = nn.Linear(net.fc.in_features, num_classes)
    net.fc = nn.Identity()
    return Backbone(net, head)


def build_backbone(
    name: Literal["small_cnn", "resnet18_cifar", "resnet18", "resnet101"],
    num_classes: int,
    in_channels: int = 3,
    weights: str | None = None,
) -> Backbone:
    """Build a named backbone.

    ``weights`` is passed to torchvision (e.g. ``"IMAGENET1K_V2"`` for the paper's pretrained ResNet-101 on
    Tiny-ImageNet). torchvision downloads weights into ``$TORCH_HOME`` the first time; offline, put the file
    there beforehand, otherwise the download fails with torchvision's error.

    Example:
        >>> build_backbone("resnet18_cifar", num_classes=10)(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 10])
    """
    if name == "small_cnn":
        if weights is not None:
            raise ValueError("weights: 'small_cnn' has no pretrained weights; pass weights=None.")
        return SmallCNN(num_classes, in_channels)
    if name == "resnet18_cifar":
        return _torchvision_resnet("resnet18", num_classes, in_channels, cifar_stem=True, weights=weights)
    if name in ("resnet18", "resnet101"):
        return _torchvision_resnet(name, num_classes, in_channels, cifar_stem=False, weights=weights)
    raise ValueError(f"backbone: unknown name {name!r}; choose one of {BACKBONES}.")


class ImageClassifier(LightningModule):
    """Cross-entropy classifier trained with SGD and a MultiStepLR schedule (the paper's recipe by default).

    Defaults follow section 5.1 for CIFAR: SGD, lr 0.02, momentum 0.9, weight decay 5e-4, the learning rate
    halved at epochs 60 and 80 of each cycle. The scheduler is rebuilt when the
    :class:`~cbal_lightning.callback.ActiveLearningCallback` resets the model, so the milestones restart each cycle.

    Args:
        num_classes: output width (linked to the datamodule's ``num_classes`` by the CLI).
        backbone: one of :data:`BACKBONES`; ``in_channels`` and ``weights`` go to :func:`build_backbone`.
        lr, momentum, weight_decay: SGD; milestones, gamma: MultiStepLR (epochs within a cycle).
        channels_last: NHWC memory format (faster convolutions with autocast on recent hardware).
        head_dropout: dropout on the penultimate embedding, before the head (for BALD's MC dropout).

    Example:
        >>> model = ImageClassifier(num_classes=10, backbone="small_cnn", in_channels=1)
        >>> model(torch.zeros(4, 1, 16, 16)).shape
        torch.Size([4, 10])
    """

    def __init__(
        self,
        num_classes: int = 10,
        backbone: str = "resnet18_cifar",
        in_channels: int = 3,
        weights: str | None = None,
        lr: float = 0.02,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        milestones: Sequence[int] = (60, 80),
        gamma: float = 0.5,
        channels_last: bool = False,
        head_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = build_backbone(backbone, num_classes, in_channels, weights)  # type: ignore[arg-type]
        self.head_dropout = nn.Dropout(head_dropout)  # before the head; train with it for BALD's MC dropout
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes, average="micro"),
                "mean_class_acc": MulticlassAccuracy(num_classes, average="macro"),
            }
        )
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    @property
    def num_classes(self) -> int:
        return self.hparams.num_classes

    def _prepare(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else x

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(self.embed(x))

    def embed(self, x: Tensor) -> Tensor:
        """Penultimate-layer embedding (used by KCenterGreedy, BADGE and BALD)."""
        return self.net.embed(self._prepare(x))

    def classify(self, embeddings: Tensor) -> Tensor:
        """Logits from penultimate embeddings: ``forward(x) == classify(embed(x))``."""
        return self.net.head(self.head_dropout(embeddings))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def _evaluate(self, batch: tuple[Tensor, Tensor], metrics: MetricCollection, loss_key: str) -> None:
        x, y = batch
        logits = self(x)
        self.log(loss_key, F.cross_entropy(logits, y), sync_dist=True, batch_size=len(y))
        metrics.update(logits, y)
        self.log_dict(metrics, on_step=False, on_epoch=True)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val/loss")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test/loss")

    def configure_optimizers(self):  # noqa: ANN201 - Lightning's own return type
        optimizer = torch.optim.SGD(
            self.parameters(),
            lr=self.hparams.lr,
            momentum=self.hparams.momentum,
            weight_decay=self.hparams.weight_decay,
        )
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(self.hparams.milestones), gamma=self.hparams.gamma
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
