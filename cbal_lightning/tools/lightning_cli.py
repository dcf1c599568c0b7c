"""``ActiveLearningCLI``: the LightningCLI behind ``cbal-lightning fit|validate|test`` and ``tune-lambda``."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.cli import LightningCLI

__all__ = ["ActiveLearningCLI"]


class ActiveLearningCLI(LightningCLI):
    """LightningCLI whose model follows the datamodule: output width ``num_classes``, input ``in_channels``."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_channels", "model.init_args.in_channels", apply_on="instantiate")
