"""``ActiveLearningCLI``: the LightningCLI behind ``cbal-lightning fit|validate|test`` and ``tune-lambda``."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback, _get_module_type, _InstantiatorFn
from lightning.pytorch.utilities import rank_zero_info

from cbal_lightning.callback import ActiveLearningCallback
from cbal_lightning.runs import CHECKPOINTS_FOLDER, find_last_checkpoint, run_folders

__all__ = ["ActiveLearningCLI", "RunDirSaveConfigCallback"]


def _active_learning_callback(trainer: Trainer) -> ActiveLearningCallback | None:
    return next((cb for cb in trainer.callbacks if isinstance(cb, ActiveLearningCallback)), None)


class RunDirSaveConfigCallback(SaveConfigCallback):
    """LightningCLI's ``config.yaml``, written into the ``ActiveLearningCallback``'s run folder on ``fit``.

    Lightning's :class:`SaveConfigCallback` writes into ``trainer.log_dir`` during ``setup``: for a ``WandbLogger``
    that is its ``save_dir``, by default the current folder. With an ``ActiveLearningCallback`` a fit's config goes
    to the callback's :attr:`~cbal_lightning.callback.ActiveLearningCallback.run_dir` instead, at fit start: a
    resumed fit continues in its checkpoint's run folder, which is known only once the checkpoint is restored.
    Other subcommands, and trainers without the callback, save as Lightning does.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit" or _active_learning_callback(trainer) is None:
            super().setup(trainer, pl_module, stage)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        al = _active_learning_callback(trainer)
        if al is None or self.already_saved:
            return
        assert al.run_dir is not None  # the callback's on_fit_start ran first (it comes first in trainer.callbacks)
        path = al.run_dir / self.config_filename
        if not self.overwrite and trainer.strategy.broadcast(path.is_file()):
            raise RuntimeError(
                f"{type(self).__name__}: {path} exists (a run already wrote its config there); delete it, pass "
                'save_config_kwargs={"overwrite": True}, or give the ActiveLearningCallback another output_dir.'
            )
        if trainer.is_global_zero:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, str(path), skip_none=False, overwrite=self.overwrite,
                             multifile=self.multifile)
            self.save_config(trainer, pl_module, "fit")
        self.already_saved = True


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
    """LightningCLI whose model follows the datamodule (``num_classes`` and ``in_channels``, where the model's
    ``__init__`` has them), whose config goes into the run folder (:class:`RunDirSaveConfigCallback`), and whose
    ``--ckpt_path last`` finds the run's newest checkpoint in any of the run folders (:meth:`before_fit`).

    Any LightningModule and any ActiveDataModule subclass can be chosen (subclass mode); a link whose target the
    chosen model lacks is skipped, so a model without ``in_channels`` (or ``num_classes``) is built as configured.
    """

    def __init__(self, *args: Any, save_config_callback: type[SaveConfigCallback] | None = RunDirSaveConfigCallback,
                 **kwargs: Any) -> None:
        super().__init__(*args, save_config_callback=save_config_callback, **kwargs)

    def add_arguments_to_parser(self, parser: Any) -> None:
        for name in LINKED:
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")

    def _add_instantiators(self) -> None:
        super()._add_instantiators()  # registers Lightning's model instantiator; this replaces it with the filtered one
        self.parser.add_instantiator(
            _AcceptedLinksOnly(_InstantiatorFn(cli=self, key="model")), _get_module_type(self._model_class),
            subclasses=self.subclass_mode_model,
        )

    def before_fit(self) -> None:
        """Turn ``--ckpt_path last`` into the newest ``last*.ckpt`` or ``query_cycle_*.ckpt`` among the ``checkpoints``
        folders of the run folders this fit may continue (:func:`cbal_lightning.runs.run_folders`: the callback's
        ``output_dir``, else every version folder of the first logger, else ``<default_root_dir>/cbal_runs/*``) and
        the ``dirpath`` of every ModelCheckpoint that has one.

        Lightning's own ``"last"`` looks only in the ModelCheckpoints' folders of the new fit, which is a new version
        folder when a CSV or TensorBoard logger starts one. Without the callback, or when nothing is found,
        ``"last"`` is left to Lightning (it warns and starts afresh).
        """
        config = self.config_init[self.subcommand]
        al = _active_learning_callback(self.trainer)
        if config.get("ckpt_path") != "last" or al is None:
            return
        folders = [folder / CHECKPOINTS_FOLDER for folder in run_folders(self.trainer, al.output_dir_arg)]
        folders += [cb.dirpath for cb in self.trainer.checkpoint_callbacks
                    if isinstance(cb, ModelCheckpoint) and cb.dirpath]
        found = find_last_checkpoint(folders)
        if found is not None:
            rank_zero_info(f"[active learning] --ckpt_path last: resuming from {found}, the newest checkpoint of "
                           "the run folders")
            config["ckpt_path"] = str(found)
