"""``ActiveLearningCLI``: the LightningCLI behind ``cbal-lightning fit|validate|test`` and ``tune-lambda``."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.cli import LightningCLI, _get_module_type, _InstantiatorFn

__all__ = ["ActiveLearningCLI"]

LINKED = ("num_classes", "in_channels")
"""Datamodule attributes given to the model's ``__init__`` when it has a parameter of that name."""


class _AcceptedLinksOnly:
    """Lightning's model instantiator, told only of the linked values the chosen model class accepts.

    jsonargparse ignores a link whose target the chosen subclass lacks (``in_channels`` for an MLP), but Lightning
    still writes the linked value into the model's hparams; ``fit --ckpt_path`` would then pass it to ``__init__``
    and fail. ``kwargs`` are the arguments the class is built with, so a link is kept when its target is among them.
    """

    def __init__(self, instantiator: _InstantiatorFn) -> None:
        self.instantiator = instantiator

    def __call__(self, class_type: type, *args: Any, applied_instantiation_links: dict, **kwargs: Any) -> Any:
        links = {key: value for key, value in applied_instantiation_links.items()
                 if not key.startswith("model.init_args.") or key.rsplit(".", 1)[1] in kwargs}
        return self.instantiator(class_type, *args, applied_instantiation_links=links, **kwargs)


class ActiveLearningCLI(LightningCLI):
    """LightningCLI whose model follows the datamodule: ``num_classes`` and ``in_channels``, where ``__init__`` has them.

    Any LightningModule and any ActiveDataModule subclass can be chosen (subclass mode); a link whose target the
    chosen model lacks is skipped, so a model without ``in_channels`` (or ``num_classes``) is built as configured.
    """

    def add_arguments_to_parser(self, parser: Any) -> None:
        for name in LINKED:
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")

    def _add_instantiators(self) -> None:
        super()._add_instantiators()  # registers Lightning's model instantiator; this replaces it with the filtered one
        self.parser.add_instantiator(
            _AcceptedLinksOnly(_InstantiatorFn(cli=self, key="model")), _get_module_type(self._model_class),
            subclasses=self.subclass_mode_model,
        )
