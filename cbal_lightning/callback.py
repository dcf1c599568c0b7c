"""``ActiveLearningCallback``: every active-learning cycle inside one ``trainer.fit`` call.

Cycle ``k`` trains for ``epochs_per_cycle`` epochs on the labeled pool as it stands after ``k`` queries
(cycle 0 = the initial labeled set). When the first epoch of cycle ``k + 1`` starts, the callback

1. evaluates the model of cycle ``k`` on the balanced test set,
2. scores the unlabeled pool with the :class:`~cbal_lightning.scoring.Scorer` (sharded across ranks),
3. lets the :class:`~cbal_lightning.selection.selectors.Selector` choose ``budget`` samples on rank 0 with the
   class targets Omega of Eq. 4, broadcasts them, and labels them on every rank,
4. re-initialises the model, its optimizer and LR scheduler, and reloads the training data.

Doing the query at the start of the next cycle (rather than at the end of the last epoch) means any
checkpoint, wherever a ``ModelCheckpoint`` saved it, holds a consistent pair of (model, pools): resuming from
the checkpoint of a cycle's last epoch runs the query that the crash interrupted, exactly once.

When people label (a pool with unknown labels, :class:`~cbal_lightning.oracle.HumanOracle`), steps 1-3 run at the
end of the cycle's last epoch instead: the batch is chosen, its samples without a known label are written to
``<run dir>/queries/cycle_<k>.csv`` (and a Label Studio import), a checkpoint ``checkpoints/query_cycle_<k>.ckpt``
holds the model, the pools and the chosen batch, and the fit stops. Fitting again from that checkpoint reads the
answers (validated before any training), labels the batch in cycle ``k`` and goes on. A first query that starts
with a pilot (``pilot_fraction``) takes two rounds: the pilot's random samples first (``cycle_1_pilot.csv``,
``query_cycle_1_pilot.ckpt``); the fit from that checkpoint reads them, chooses the rest of the batch with the
prior they give, writes ``cycle_1.csv`` and stops again before any training.
"""

from __future__ import annotations

import copy
import json
import numbers
import os
import pickle
import random
import time
from pathlib import Path
import zipfile
from typing import Any, Literal

import numpy as np
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from cbal_lightning.data.resumable import ResumableDataLoader
from cbal_lightning.inference import IndexedDataset, evaluate_classifier, shard_sampler
from cbal_lightning.io import atomic_write, atomic_write_json
from cbal_lightning.oracle import HumanOracle, Oracle, SimulatedOracle
from cbal_lightning.pools import UNKNOWN
from cbal_lightning.runs import CHECKPOINTS_FOLDER, RUN_FILE, method_name, new_run_dir, run_dir_source
from cbal_lightning.query import (
    PoolScores, choose_batch, choose_with_pilot, draw_pilot, estimate_shift, hold_out_for_calibration, pilot_size,
    score_pool,
)
from cbal_lightning.scoring import BALD, Entropy, Scorer
from cbal_lightning.selection import l1_score
from cbal_lightning.selection.prior import MIN_LABELS_PER_CLASS, PriorShift, PriorTracker, label_prior
from cbal_lightning.selection.selectors import ClassBalanced, Selector

__all__ = ["ActiveLearningCallback"]

LABELED_SETS_FILE = "labeled_sets.jsonl"
HISTORY_FILE = "history.json"


class ActiveLearningCallback(Callback):
    """Run ``cycles`` rounds of query-label-retrain inside a single ``trainer.fit(model, datamodule=dm)``.

    Args:
        budget: samples labeled per query (``b``); a float in (0, 1) is a fraction of the whole train set
            (the paper uses 0.05).
        cycles: number of queries; the model is trained ``cycles + 1`` times.
        scorer: what is informative (default :class:`~cbal_lightning.scoring.Entropy`).
        selector: how the batch is chosen (default :class:`~cbal_lightning.selection.selectors.ClassBalanced`).
        epochs_per_cycle: training epochs per cycle; default: the Trainer's ``max_epochs``. The callback sets the
            fit loop's ``max_epochs`` to ``epochs_per_cycle * (cycles + 1)``.
        reset: ``"scratch"`` restores the weights the model had when fit started (the paper trains from scratch
            each cycle); ``"warm"`` keeps training the current weights. Optimizer and LR scheduler are rebuilt
            from ``configure_optimizers`` in both cases, so schedules restart each cycle.
        eval_batch_size: batch size for pool scoring and test evaluation.
        seed: seeds the selector (and nothing global).
        output_dir: the run folder (:attr:`run_dir`) for ``history.json``, ``labeled_sets.jsonl``, ``run.json`` and
            the checkpoints of every ``ModelCheckpoint`` without a ``dirpath``; default: the first logger's folder as
            ``ModelCheckpoint`` resolves it (``<save_dir>/<name>/<version>``), without a logger
            ``<default_root_dir>/cbal_runs/version_<n>`` (:mod:`cbal_lightning.runs`). A resumed run without
            ``output_dir`` continues in the folder its checkpoint was written for.
        progress: show progress while scoring the pool and evaluating on the test set, in the style of the
            trainer's progress bar (rank 0 only; nothing when the trainer has no progress bar).
        calibration_fraction: share of every class of the initial labeled set kept out of cycle 0's training, so
            that the first query can estimate the pool's class prior too (MLLS + BCTS, docs/prior.md); the held-out
            samples join training from cycle 1. Off by default (0): with weak models this estimate proved
            unreliable and the hold-out cost cycle-0 accuracy (docs/prior.md); the first query's pilot
            (``pilot_fraction``) estimates the prior instead, and later queries estimate it from the labels the
            previous query revealed either way. Used only when the selector corrects
            for the prior (its ``prior`` is not ``None``) and the share gives at least 5 labels per class.
        pilot_fraction: share of the first query's budget labeled at random before the rest is chosen (at least 5
            per class, at most half the budget): their labels estimate the pool's class prior, which corrects ``P``
            for the rest of the batch, and Eq. 4 counts them as labeled (docs/prior.md). Used when the selector
            balances an estimated prior (``prior="estimate"``, ``lam > 0``) and nothing else gave an estimate yet.
            With ``HumanOracle`` the first query then takes two file rounds (the pilot, then the rest). 0: no pilot
            (the first query is the paper's Eq. 8, one round).
        oracle: who labels the queried samples: :class:`~cbal_lightning.oracle.SimulatedOracle` reveals the
            dataset's labels, :class:`~cbal_lightning.oracle.HumanOracle` asks people through files and stops the
            fit until they answer. Default: simulated when every pool sample has a label, else ``HumanOracle()``.

    The datamodule must be an :class:`~cbal_lightning.data.ActiveDataModule` (or provide ``pools``,
    ``num_classes``, ``targets``, ``eval_dataset``, ``eval_dataloader``, ``test_dataset`` and ``label``).
    The model's ``forward`` must return logits of width ``num_classes``; selectors that need embeddings
    (KCenterGreedy, BADGE) and BALD also need ``embed(x)`` and ``classify(h)``, as ``ImageClassifier`` has.

    Example:
        >>> from cbal_lightning.selection.selectors import ClassBalanced
        >>> ActiveLearningCallback(budget=0.05, cycles=4, selector=ClassBalanced(lam=0.6))
        ActiveLearningCallback(budget=0.05, cycles=4, scorer=Entropy(), selector=ClassBalanced(lam=0.6, time_limit=30.0, workers=2, prior='estimate'))
    """

    def __init__(
        self,
        budget: int | float,
        cycles: int,
        scorer: Scorer | None = None,
        selector: Selector | None = None,
        epochs_per_cycle: int | None = None,
        reset: Literal["scratch", "warm"] = "scratch",
        eval_batch_size: int = 1024,
        seed: int = 0,
        output_dir: str | None = None,
        progress: bool = True,
        calibration_fraction: float = 0.0,
        oracle: Oracle | None = None,
        pilot_fraction: float = 0.2,
    ) -> None:
        if isinstance(budget, (bool, np.bool_)) or not (
            isinstance(budget, numbers.Integral) and budget > 0 or isinstance(budget, numbers.Real)
            and not isinstance(budget, numbers.Integral) and 0 < budget < 1
        ):
            raise ValueError(f"budget: expected a positive int (samples) or a float in (0, 1) (fraction), got {budget!r}.")
        if not _is_int(cycles) or cycles < 1:
            raise ValueError(f"cycles: expected an int >= 1, got {cycles!r}.")
        if epochs_per_cycle is not None and (not _is_int(epochs_per_cycle) or epochs_per_cycle < 1):
            raise ValueError(f"epochs_per_cycle: expected a whole number of epochs >= 1 or None, got {epochs_per_cycle!r}.")
        if not _is_int(eval_batch_size) or eval_batch_size < 1:
            raise ValueError(f"eval_batch_size: expected an int >= 1, got {eval_batch_size!r}.")
        if not _is_int(seed):
            raise ValueError(f"seed: expected an int, got {seed!r}.")
        if output_dir is not None and not isinstance(output_dir, (str, os.PathLike)):
            raise TypeError(f"output_dir: expected a folder path or None, got {output_dir!r}.")
        if output_dir is not None and os.path.isfile(output_dir):
            raise ValueError(f"output_dir: {output_dir} is a file; pass a folder (created if missing) or None.")
        if not isinstance(progress, (bool, np.bool_)):
            raise TypeError(f"progress: expected True or False, got {progress!r}.")
        if scorer is not None and not isinstance(scorer, Scorer):
            raise TypeError(f"scorer: expected a cbal_lightning.scoring.Scorer such as Entropy(), got {scorer!r}.")
        if selector is not None and not isinstance(selector, Selector):
            raise TypeError(f"selector: expected a cbal_lightning.selection.Selector such as ClassBalanced(), got {selector!r}.")
        if oracle is not None and not isinstance(oracle, Oracle):
            raise TypeError(f"oracle: expected a cbal_lightning.oracle.Oracle such as HumanOracle(), got {oracle!r}.")
        budget = int(budget) if isinstance(budget, numbers.Integral) else float(budget)
        cycles, epochs_per_cycle = int(cycles), None if epochs_per_cycle is None else int(epochs_per_cycle)
        if reset not in ("scratch", "warm"):
            raise ValueError(f"reset: expected 'scratch' or 'warm', got {reset!r}.")
        if isinstance(calibration_fraction, bool) or not isinstance(calibration_fraction, numbers.Real) or not (
            0 <= calibration_fraction < 1
        ):
            raise ValueError(f"calibration_fraction: expected a float in [0, 1), got {calibration_fraction!r}.")
        if isinstance(pilot_fraction, bool) or not isinstance(pilot_fraction, numbers.Real) or not (
            0 <= pilot_fraction <= 0.5
        ):
            raise ValueError(f"pilot_fraction: expected a float in [0, 0.5], got {pilot_fraction!r}.")
        self.budget_arg = budget
        self.cycles = cycles
        self.scorer = scorer if scorer is not None else Entropy()
        self.selector = selector if selector is not None else ClassBalanced()
        self.epochs_per_cycle_arg = epochs_per_cycle
        self.reset = reset
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.output_dir_arg = output_dir
        self.progress = progress
        self.calibration_fraction = float(calibration_fraction)
        self.pilot_fraction = float(pilot_fraction)
        self.oracle_arg = oracle
        self.oracle: Oracle = oracle if oracle is not None else SimulatedOracle()  # resolved at fit start
        self.waiting_for_labels: Path | None = None  # the CSV people fill in, while a fit is stopped for them
        self._answers: np.ndarray | None = None  # the labels of the pending batch, read at fit start

        # State saved with every checkpoint.
        self.cycle = 0  # the cycle whose training is running: labels of queries 1..cycle are in the pools
        self.history: list[dict[str, Any]] = []  # one record per cycle: size, test metrics, query statistics
        self.budget: int | None = None
        self.epochs_per_cycle: int | None = None
        self._initial_weights: dict[str, torch.Tensor] | None = None
        self.run_dir: Path | None = None  # resolved in setup; restored with the checkpoint unless output_dir is given
        self._checkpoints: list[ModelCheckpoint] = []  # the ModelCheckpoints whose dirpath follows run_dir
        self.prior = PriorTracker()  # the pool's class prior, estimated query by query
        self.pending: dict[str, Any] | None = None  # a chosen batch waiting for people's labels

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(budget={self.budget_arg!r}, cycles={self.cycles}, "
            f"scorer={self.scorer!r}, selector={self.selector!r})"
        )

    # ------------------------------------------------------------------ hooks

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        dm = self._datamodule(trainer)
        if trainer.max_steps != -1:
            raise ValueError("Trainer(max_steps=...): the active-learning loop counts epochs; leave max_steps unset.")
        if self.epochs_per_cycle is None and self.epochs_per_cycle_arg is None and trainer.max_epochs in (None, -1, 1000):
            # Lightning turns Trainer(max_epochs=None) into 1000 epochs before any hook runs: 1000 per cycle here
            raise ValueError(
                f"epochs_per_cycle: not given and Trainer(max_epochs={trainer.max_epochs}) (Lightning's value for "
                "max_epochs=None) would train that many epochs in every cycle; pass "
                "ActiveLearningCallback(epochs_per_cycle=...) or Trainer(max_epochs=...)."
            )
        if not isinstance(trainer.strategy.checkpoint_io, _NamedCheckpointIO):  # Lightning reads ckpt_path after setup
            trainer.strategy.checkpoint_io = _NamedCheckpointIO(trainer.strategy.checkpoint_io)
        if self.epochs_per_cycle is None:
            self.epochs_per_cycle = self.epochs_per_cycle_arg or trainer.max_epochs
        trainer.fit_loop.max_epochs = self.epochs_per_cycle * (self.cycles + 1)
        if self.budget is None:
            arg = self.budget_arg
            self.budget = int(round(arg * len(dm.pools))) if isinstance(arg, float) else arg
        run_dir = new_run_dir(trainer, self.output_dir_arg) if trainer.is_global_zero else None  # rank 0 knows the W&B id
        self.run_dir = trainer.strategy.broadcast(run_dir)
        # Lightning sets up ModelCheckpoints after every other callback: a dirpath set here is the one they use
        self._checkpoints = [
            cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.dirpath is None
        ]
        self._point_checkpoints()

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        dm = self._datamodule(trainer)
        self.run_dir = trainer.strategy.broadcast(self.run_dir)  # rank 0's, should ranks see a restored one differently
        self._point_checkpoints()
        rank_zero_info(f"[active learning] run folder: {self.run_dir}")
        assert self.epochs_per_cycle is not None  # set in setup, or restored from the checkpoint
        trainer.fit_loop.max_epochs = self.epochs_per_cycle * (self.cycles + 1)
        self._check_model(pl_module, dm)
        self._check_budget(dm)
        self._resolve_oracle(dm)
        if self.history:  # restored from a checkpoint
            self._check_pools_against_history(dm, trainer.ckpt_path)
        self.waiting_for_labels, self._answers = None, None
        if self.pending is not None:
            self._answers = self._read_answers(trainer, dm)
        if self._initial_weights is None:
            self._initial_weights = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        if not self.history:
            self.history.append(
                {"cycle": 0, "num_labeled": dm.pools.num_labeled, "labeled_counts": dm.pools.labeled_counts().tolist()}
            )
        if self.cycle == 0 and trainer.global_step == 0:
            self._hold_out_for_calibration(dm)
        self._write_files(trainer)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._warn_if_resumed_mid_epoch_inexactly(trainer)
        self._advance_cycle_if_due(trainer, pl_module)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._advance_cycle_if_due(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """At the end of a cycle's last epoch, when people label the pool: choose the next batch and, if some of its
        labels are unknown, ask for them and stop the fit (the next fit from the saved checkpoint goes on)."""
        assert self.epochs_per_cycle is not None
        last_epoch = trainer.current_epoch + 1 == (self.cycle + 1) * self.epochs_per_cycle
        if not (isinstance(self.oracle, HumanOracle) and last_epoch and self.pending is None and self.cycle < self.cycles):
            return
        dm = self._datamodule(trainer)
        if not dm.pools.has_unknown:
            return
        self._evaluate(trainer, pl_module)
        cycle = self.cycle + 1
        self.pending = self._choose(trainer, pl_module, cycle)
        indices = np.asarray(self.pending["indices"], dtype=np.int64)
        if not (dm.targets[indices] == UNKNOWN).any():
            return  # every label known: revealed when the next cycle starts
        self._ask_people(trainer, dm, cycle, indices, self.pending.get("part", ""))

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._evaluate(trainer, pl_module)  # the last cycle's model

    def state_dict(self) -> dict[str, Any]:
        return {
            "cycle": self.cycle,
            "history": copy.deepcopy(self.history),
            "budget": self.budget,
            "epochs_per_cycle": self.epochs_per_cycle,
            "initial_weights": self._initial_weights,
            "rng": _get_rng_states(),
            "prior": _tensors(self.prior.state_dict()),
            "pending": _pending_state(self.pending),
            "run_dir": None if self.run_dir is None else str(self.run_dir),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.cycle = state_dict["cycle"]
        self.history = copy.deepcopy(state_dict["history"])
        self.budget = state_dict["budget"]
        self.epochs_per_cycle = state_dict["epochs_per_cycle"]
        self._initial_weights = state_dict["initial_weights"]
        self.prior.load_state_dict(_arrays(state_dict.get("prior", {})))
        self.pending = _pending_from_state(state_dict.get("pending"))
        # Continue the random streams where the checkpoint left them. This must happen now, during the restore:
        # a resumed fit creates its first train-dataloader iterator (which draws from the global RNG) before any
        # later hook runs.
        _set_rng_states(state_dict["rng"])
        if state_dict.get("run_dir") is not None and self.output_dir_arg is None:
            self._continue_in(Path(state_dict["run_dir"]))

    def _continue_in(self, saved: Path) -> None:
        """A restored run keeps its run folder, and the ModelCheckpoints pointed at it follow. This happens during
        the restore, before Lightning restores those ModelCheckpoints (it restores them last): their state is then
        kept (best and last paths), which a dirpath changed later would discard."""
        if saved == self.run_dir:
            return
        if not saved.is_dir():
            rank_zero_warn(
                f"ActiveLearningCallback: the checkpoint's run folder {saved} does not exist (moved or deleted); this "
                f"run continues in {self.run_dir}. Pass output_dir=... to choose the folder."
            )
            return
        self.run_dir = saved
        self._point_checkpoints()

    def _point_checkpoints(self) -> None:
        assert self.run_dir is not None
        for checkpoint in self._checkpoints:
            checkpoint.dirpath = str(self.run_dir / CHECKPOINTS_FOLDER)

    def _warn_if_resumed_mid_epoch_inexactly(self, trainer: Trainer) -> None:
        """Say what will differ when a mid-epoch checkpoint resumes with a loader that cannot continue exactly.

        Lightning's own warning is skipped whenever the global step divides the epoch length, which here changes
        every cycle; this one looks at the epoch's batch counter instead.
        """
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        total = trainer.num_training_batches
        if not trainer.fit_loop.restarting or not 0 < done < total:
            return
        loaders = trainer.train_dataloader
        loaders = list(loaders.values()) if isinstance(loaders, dict) else loaders if isinstance(loaders, (list, tuple)) else [loaders]
        if not all(isinstance(dl, ResumableDataLoader) for dl in loaders):
            rank_zero_warn(
                f"ActiveLearningCallback: {trainer.ckpt_path} was saved after batch {done} of {total} of epoch "
                f"{trainer.current_epoch} (cycle {self.cycle}) and the training loader is not resumable (a DDP shard "
                f"or a plain DataLoader): this epoch restarts its shuffle and trains on only {total - done} batches, "
                "so this cycle's model and every later query can differ from an uninterrupted run. Resume from an "
                "end-of-epoch checkpoint (ModelCheckpoint(every_n_epochs=...)) for identical results."
            )
        elif any(dl.num_workers > 0 for dl in loaders):
            rank_zero_warn(
                f"ActiveLearningCallback: {trainer.ckpt_path} was saved after batch {done} of {total} of epoch "
                f"{trainer.current_epoch} (cycle {self.cycle}); the rest of the epoch is served in the saved order "
                "but its augmentations are drawn anew in the worker processes (num_workers > 0), so this cycle's "
                "model and later queries can differ from an uninterrupted run (num_workers=0 resumes exactly)."
            )

    # ------------------------------------------------------------------ the cycle

    def _advance_cycle_if_due(self, trainer: Trainer, pl_module: LightningModule) -> None:
        assert self.epochs_per_cycle is not None
        due = min(trainer.current_epoch // self.epochs_per_cycle, self.cycles)
        if due <= self.cycle:
            return
        if due > self.cycle + 1:
            raise RuntimeError(
                f"epoch {trainer.current_epoch} belongs to cycle {due} but only {self.cycle} queries were made; "
                "was epochs_per_cycle changed between runs?"
            )
        if self.pending is not None and self.pending.get("part") == "pilot":
            self._choose_after_pilot(trainer, pl_module, due)
            if trainer.should_stop:
                return  # people label the rest of the batch first
        self._evaluate(trainer, pl_module)
        self._query(trainer, pl_module, self.cycle + 1)
        self.cycle += 1
        self._reset_model(trainer, pl_module)
        _reload_train_dataloader(trainer)

    def _query(self, trainer: Trainer, pl_module: LightningModule, cycle: int) -> None:
        """Choose a batch (or take the one waiting for people), label it on every rank (Algorithm 1, one iteration)."""
        dm = self._datamodule(trainer)
        if self.pending is not None and self.pending["cycle"] == cycle:
            record, labels, self.pending, self._answers = self.pending, self._answers, None, None
            record.pop("pilot_labels", None)  # in `labels` now, and in the record's "true" once revealed
        else:
            record, labels = self._choose(trainer, pl_module, cycle), None
        self._reveal(trainer, dm, record, labels)

    def _choose(
        self, trainer: Trainer, pl_module: LightningModule, cycle: int, pilot: tuple[np.ndarray, np.ndarray] | None = None
    ) -> dict[str, Any]:
        """Score the pool on every rank, select on rank 0 and broadcast: the query's record, before labeling.

        ``pilot``: the train indices and labels of a pilot people labeled in a round of its own.
        """
        dm = self._datamodule(trainer)
        assert self.budget is not None
        self.scorer.prepare(trainer, pl_module, dm, cycle)
        scores = score_pool(
            pl_module, dm, self.scorer, self.selector, cycle, device=pl_module.device, strategy=trainer.strategy,
            batch_size=self.eval_batch_size, progress=self._show_progress(trainer),
        )
        record = self._select(dm, scores, cycle, pilot) if trainer.is_global_zero else None
        record = trainer.strategy.broadcast(record, src=0)
        self.prior.load_state_dict(record.pop("tracker"))  # every rank carries rank 0's estimate
        return record

    def _reveal(self, trainer: Trainer, dm: Any, record: dict[str, Any], labels: np.ndarray | None) -> None:
        """Label the record's batch (known labels, or ``labels`` people gave), then describe it on the true labels."""
        cycle = record["cycle"]
        indices = np.asarray(record["indices"], dtype=np.int64)
        dm.label(indices, cycle, labels)
        dm.pools.release_held_out()  # the calibration samples train from now on
        true = dm.targets[indices]
        start = time.perf_counter()
        pool_indices = record.pop("pool_indices", None)  # None in a checkpoint saved before it was kept
        self.prior.observe(np.asarray(record.pop("pool_probs")), np.asarray(record.pop("rows")), true,
                           None if pool_indices is None else np.asarray(pool_indices))  # next estimate
        record["stats"]["prior_seconds"] += time.perf_counter() - start
        record["true"] = true.tolist()
        record["stats"]["l1_score"] = l1_score(np.bincount(true, minlength=dm.num_classes))  # Eq. 10, revealed labels
        revealed = dm.pools.labeled_indices()[dm.pools.cycle_of(dm.pools.labeled_indices()) > 0]
        record["prior"]["revealed"] = label_prior(dm.targets[revealed], dm.num_classes).tolist()
        record["num_labeled"] = dm.pools.num_labeled
        record["labeled_counts"] = dm.pools.labeled_counts().tolist()
        record["labeled_l1_score"] = l1_score(dm.pools.labeled_counts())
        self.history.append(record)
        self._write_files(trainer)  # before logging: a failing logger must not lose the selection
        self._log(trainer, {f"al/query/{k}": v for k, v in record["stats"].items()} | {
            "al/query/cycle": cycle, "al/num_labeled": record["num_labeled"], "al/labeled_l1_score": record["labeled_l1_score"],
        } | {
            f"al/prior/{kind}/{c}": p for kind in ("estimated", "revealed") for c, p in enumerate(record["prior"][kind] or [])
        })
        self._log_to_wandb(trainer, dm, record)
        rank_zero_info(
            f"[active learning] cycle {cycle}: labeled {len(record['indices'])} samples "
            f"(batch L1 score {record['stats']['l1_score']:.3f}, solver {record['stats']['status']}), "
            f"{record['num_labeled']} labeled in all"
        )

    # ------------------------------------------------------------------ people in the loop

    def _resolve_oracle(self, dm: Any) -> None:
        unknown = len(dm.pools.unknown_indices())
        if self.oracle_arg is None:
            self.oracle = HumanOracle() if unknown else SimulatedOracle()
        elif unknown and not isinstance(self.oracle, HumanOracle):
            raise ValueError(
                f"oracle: {self.oracle!r} reveals labels the dataset has, but {unknown} pool samples have none; pass "
                "oracle=HumanOracle() (people label the queries through files) or leave oracle unset."
            )

    def _ask_people(self, trainer: Trainer, dm: Any, cycle: int, indices: np.ndarray, part: str = "") -> None:
        """Write the query files for ``indices`` (rank 0), save a checkpoint that holds the pending batch, stop the fit.

        ``part="pilot"``: the pilot round of the first query (its files and checkpoint say so).
        """
        assert self.pending is not None and self.run_dir is not None and isinstance(self.oracle, HumanOracle)
        files = self.oracle.files(self.run_dir, cycle, part)
        if trainer.is_global_zero:
            predicted = np.asarray(self.pending["predicted"])[-len(indices):]  # the rest follows a pilot's labels
            self.oracle.ask(dm, self.run_dir, cycle, indices, predicted, part)
        trainer.strategy.barrier("ActiveLearningCallback.ask_people")
        checkpoint = self.run_dir / CHECKPOINTS_FOLDER / f"query_cycle_{cycle}{'_' + part if part else ''}.ckpt"
        trainer.save_checkpoint(checkpoint)
        trainer.should_stop = True
        self.waiting_for_labels = files.csv
        unknown = int((dm.targets[indices] == UNKNOWN).sum())
        what = ("samples drawn at random from the pool (a pilot: their labels estimate the pool's class mix, which "
                "the rest of this query is then balanced on) need labels" if part == "pilot" else "samples need labels")
        rank_zero_info(
            f"[active learning] cycle {cycle}: {unknown} {what}. Fill the 'label' column of {files.csv} "
            f"(class names or numbers 0..{dm.num_classes - 1}), or import {files.label_studio_tasks.name} into Label "
            f"Studio and save its JSON export as {files.label_studio_export}. Then run the same fit again with "
            f"ckpt_path={str(checkpoint)!r} (cbal-lightning fit ... --ckpt_path last, or that path)."
        )

    def _read_answers(self, trainer: Trainer, dm: Any) -> np.ndarray | None:
        """The labels of the pending batch (rank 0 reads and validates, every rank gets them); None: all known.

        Raises:
            ValueError: the answers are missing or wrong (all problems listed); nothing has changed.
        """
        assert self.pending is not None and self.run_dir is not None
        cycle, part = self.pending["cycle"], self.pending.get("part", "")
        known = np.asarray(self.pending.get("pilot_labels", []), dtype=np.int64)  # a pilot people labeled before
        indices = np.asarray(self.pending["indices"], dtype=np.int64)[len(known):]
        if not (dm.targets[indices] == UNKNOWN).any():
            return np.concatenate([known, dm.targets[indices]]) if len(known) else None
        result: tuple[np.ndarray | None, str] = (None, "")
        assert isinstance(self.oracle, HumanOracle)  # _resolve_oracle refused any other with unknown labels pending
        if trainer.is_global_zero:
            if not self.oracle.ready(self.run_dir, cycle, part):
                files = self.oracle.files(self.run_dir, cycle, part)
                result = (None, f"the query of cycle {cycle} waits for labels: fill every 'label' of {files.csv}, or save "
                                f"Label Studio's JSON export as {files.label_studio_export}, then run this fit again.")
            else:
                try:
                    result = (np.concatenate([known, self.oracle.answers(dm, self.run_dir, cycle, indices, part)]), "")
                except ValueError as err:
                    result = (None, str(err))
        labels, problem = trainer.strategy.broadcast(result, src=0)
        if problem:
            raise ValueError(problem)
        return labels

    def _choose_after_pilot(self, trainer: Trainer, pl_module: LightningModule, cycle: int) -> None:
        """People labeled the first query's pilot: choose the rest of the batch with the prior it gives (the model
        is still the one the pilot was drawn for) and, when some of the rest's labels are unknown, ask for them and
        stop the fit before any training."""
        assert self.pending is not None and self._answers is not None  # read and checked at fit start
        dm = self._datamodule(trainer)
        pilot = (np.asarray(self.pending["indices"], dtype=np.int64), self._answers)
        self.pending, self._answers = self._choose(trainer, pl_module, cycle, pilot), None
        self.pending["pilot_labels"] = pilot[1].tolist()
        rest = np.asarray(self.pending["indices"], dtype=np.int64)[len(pilot[0]):]
        if (dm.targets[rest] == UNKNOWN).any():
            self._ask_people(trainer, dm, cycle, rest)
        else:
            self._answers = np.concatenate([pilot[1], dm.targets[rest]])

    def _select(
        self, dm: Any, scores: PoolScores, cycle: int, given: tuple[np.ndarray, np.ndarray] | None = None
    ) -> dict[str, Any]:
        """Choose the batch and describe it: the history record of this query (rank 0). ``given``: the train indices
        and labels of the pilot people labeled; a pilot whose labels are unknown is itself the record (its round)."""
        assert self.budget is not None
        start = time.perf_counter()
        preds, held = scores.pool, scores.heldout
        shift = estimate_shift(self.prior, dm, preds, held)  # held-out labels at query 1 (opt-in), then revealed ones
        prior_seconds = time.perf_counter() - start
        pilot = len(given[0]) if given is not None else self._pilot_size(dm, shift)
        if pilot:  # the first query labels a random pilot, whose labels give the prior for the rest
            if given is None:
                drawn = draw_pilot(len(preds.indices), pilot, cycle, seed=self.seed)
                labels = dm.targets[preds.indices[drawn]]
                if (labels == UNKNOWN).any():  # people label the pilot in a round of its own
                    return self._pilot_round(cycle, preds.indices[drawn], preds.probs[drawn])
            else:
                drawn, labels = _rows_of(preds.indices, given[0]), given[1]
            rows, selection, omega, shift = choose_with_pilot(
                self.selector, scores, dm.pools, self.budget, cycle, drawn, labels, shift.train_prior, seed=self.seed,
            )
        else:
            selection, omega = choose_batch(
                self.selector, scores, dm.pools, self.budget, cycle, seed=self.seed, prior_shift=shift
            )
            rows = selection.indices
        used = self.selector.shift_for(shift)
        if self.selector.prior is not None and (used is None or used.pool_prior is None):
            rank_zero_info(f"[active learning] cycle {cycle}: balancing the uncorrected P ({shift.reason}).")
        seconds = time.perf_counter() - start - prior_seconds
        chosen = preds.indices[rows]
        picked = preds.probs[rows]
        predicted = picked.argmax(1)
        stats = dict(selection.summary())
        stats.update(
            expected_l1_score=l1_score(picked.sum(0)),  # Eq. 10 on the model's P^T z
            # what the balance term counted
            corrected_expected_l1_score=l1_score(self.selector.balance_probs(picked, shift.rows(rows)).sum(0)),
            prior_corrected=float(used is not None and used.pool_prior is not None),
            pseudo_label_l1_score=l1_score(np.bincount(predicted, minlength=dm.num_classes)),
            inference_seconds=scores.seconds,
            selection_seconds=seconds,
            prior_seconds=prior_seconds,
            pool_size=len(preds.indices),
            pilot_size=pilot,
        )
        estimate = None if used is None else used.pool_prior
        return {
            "cycle": cycle,
            "indices": chosen.tolist(),
            "predicted": predicted.tolist(),
            "scores": preds.scores[rows].tolist(),
            "omega": omega.tolist(),
            "stats": stats,
            "prior": {
                "method": "none" if used is None else used.method,
                "reason": shift.reason if used is None or used.pool_prior is None else "",
                "estimated": None if shift.pool_prior is None else np.asarray(shift.pool_prior).tolist(),
                "used": None if estimate is None else np.asarray(estimate).tolist(),
                "calibrated": used is not None and used.pool_prior is not None and used.calibrated is not None,
            },
            "tracker": self.prior.state_dict(),
            "pool_probs": preds.probs,  # with "rows" and "pool_indices": the prior estimate once labels are revealed
            "rows": rows,
            "pool_indices": preds.indices,
        }

    def _pilot_round(self, cycle: int, indices: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
        """The record of a pilot people label first: the random samples, the model's guesses, nothing chosen yet."""
        return {
            "cycle": cycle, "part": "pilot", "indices": indices.tolist(), "predicted": probs.argmax(1).tolist(),
            "tracker": self.prior.state_dict(),
        }

    def _pilot_size(self, dm: Any, shift: PriorShift) -> int:
        """Samples the query labels at random first (0: none): only while a balanced selector that estimates the
        prior has no estimate yet."""
        balances = self.selector.prior == "estimate" and self.selector.balances
        if not balances or shift.pool_prior is not None:
            return 0
        assert self.budget is not None
        return pilot_size(self.pilot_fraction, self.budget, dm.num_classes)

    def _hold_out_for_calibration(self, dm: Any) -> None:
        """Keep ``calibration_fraction`` of every class of the initial set out of cycle 0's training (same on every
        rank: seeded), for the first query's prior estimate; skipped when the selector does not use it."""
        if self.selector.prior is None or self.calibration_fraction == 0 or len(dm.pools.held_out_indices()):
            return
        if not hold_out_for_calibration(dm, self.calibration_fraction, self.seed):
            rank_zero_info(
                f"[active learning] calibration_fraction={self.calibration_fraction} of the initial set holds fewer "
                f"than {MIN_LABELS_PER_CLASS} per class: nothing held out; the first query balances the uncorrected P."
            )

    def _evaluate(self, trainer: Trainer, pl_module: LightningModule) -> None:
        record = self.history[self.cycle]
        if "test" in record:
            return
        dm = self._datamodule(trainer)
        metrics = {"al/cycle": self.cycle, "al/num_labeled": record["num_labeled"]}
        if len(dm.test_dataset) == 0:  # e.g. ActiveDataModule.from_datasets(train, test=None)
            record["test"] = None
            self._write_files(trainer)
            self._log(trainer, metrics)
            if self.cycle == 0:
                rank_zero_info("[active learning] the datamodule has no test set: cycles are not evaluated.")
            return
        dataset = IndexedDataset(dm.test_dataset)
        loader = DataLoader(dataset, batch_size=self.eval_batch_size, sampler=shard_sampler(dataset, trainer.strategy))
        record["test"] = evaluate_classifier(
            pl_module, loader, dm.num_classes, device=pl_module.device, strategy=trainer.strategy,
            progress=self._show_progress(trainer), desc=f"test set (cycle {self.cycle})",
        )
        metrics.update({f"al/test/{k}": v for k, v in record["test"].items() if k != "per_class_acc"})
        metrics.update({f"al/test/class_acc/{c}": a for c, a in enumerate(record["test"]["per_class_acc"])})
        self._write_files(trainer)
        self._log(trainer, metrics)
        rank_zero_info(
            f"[active learning] cycle {self.cycle}: {record['num_labeled']} labeled, test accuracy "
            f"{record['test']['acc']:.4f}, mean per-class accuracy {record['test']['mean_class_acc']:.4f}"
        )

    def _reset_model(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.reset == "scratch":
            assert self._initial_weights is not None
            pl_module.load_state_dict(self._initial_weights)
        trainer.strategy.setup_optimizers(trainer)  # fresh optimizer state and LR schedule for the new cycle

    # ------------------------------------------------------------------ checks, logging, files

    @staticmethod
    def _datamodule(trainer: Trainer) -> Any:
        dm = trainer.datamodule
        if dm is None:
            raise TypeError(
                "ActiveLearningCallback needs the pools of an ActiveDataModule, but fit was called without one: call "
                "trainer.fit(model, datamodule=dm) with e.g. cbal_lightning.DigitsDataModule() instead of passing "
                "dataloaders."
            )
        needed = ("pools", "num_classes", "targets", "eval_dataset", "eval_dataloader", "test_dataset", "label")
        missing = [name for name in needed if not hasattr(dm, name)]
        if missing:
            raise TypeError(
                "ActiveLearningCallback needs trainer.fit(model, datamodule=dm) with an ActiveDataModule "
                f"(cbal_lightning.data); the datamodule given lacks {missing}."
            )
        return dm

    def _check_model(self, pl_module: LightningModule, dm: Any) -> None:
        """Before any training: what the scorer and selector need of the model, and one real batch through it.

        The batch is a few labeled train samples with evaluation transforms (no random numbers are drawn).
        """
        name = type(pl_module).__name__
        needs = [type(obj).__name__ for obj in (self.scorer, self.selector)
                 if isinstance(obj, BALD) or getattr(obj, "needs_embeddings", False)]
        lacking = [m for m in ("embed", "classify") if not callable(getattr(pl_module, m, None))]
        if needs and lacking:
            raise TypeError(
                f"model: {name} lacks {' and '.join(lacking)}(), which {' and '.join(needs)} need(s) (the penultimate "
                "embedding embed(x) and the head classify(h), as ImageClassifier has); add them to the model or "
                "use a scorer/selector without embeddings (Entropy with ClassBalanced or TopK)."
            )
        indices = dm.pools.labeled_indices()[:4]
        dataset = dm.eval_dataset(indices)
        images = torch.stack([dataset[k][0] for k in range(len(indices))]).to(pl_module.device)
        was_training = pl_module.training
        pl_module.eval()
        try:
            with torch.inference_mode():
                try:
                    logits = pl_module(images)
                    if needs:
                        head = pl_module.classify(pl_module.embed(images))
                except RuntimeError as err:
                    fix = (f"build it with in_channels=datamodule.in_channels ({getattr(dm, 'in_channels', images.shape[1])})"
                           if images.ndim == 4 else f"it must take inputs of shape {tuple(images.shape[1:])}")
                    raise ValueError(
                        f"model: {name} fails on a real batch of shape {tuple(images.shape)} "
                        f"{'(N, channels, H, W) ' if images.ndim == 4 else ''}from {type(dm).__name__} ({err}); its "
                        f"input must match the data: {fix}."
                    ) from err
        finally:
            pl_module.train(was_training)
        if isinstance(logits, dict):
            raise TypeError(
                f"model: {name}.forward returned a dict (keys {sorted(logits)}); it must return the logits tensor "
                f"(N, num_classes): move other outputs to another method."
            )
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != len(indices):
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(f"model: {name}.forward must return logits of shape (N, num_classes), got {shape} for N={len(indices)}.")
        if logits.shape[1] != dm.num_classes:
            raise ValueError(
                f"model: its output has {logits.shape[1]} logits but the datamodule has num_classes={dm.num_classes}; "
                "build the model with num_classes=datamodule.num_classes."
            )
        if needs and (not isinstance(head, torch.Tensor) or tuple(head.shape) != tuple(logits.shape)):
            raise ValueError(f"model: {name}.classify(embed(x)) must give the same (N, num_classes) logits as forward(x).")
        bad = ~torch.isfinite(logits).all(dim=1)
        if bad.any():
            rows = indices[bad.cpu().numpy()].tolist()
            raise ValueError(
                f"model: {name} gives NaN or inf logits for {len(rows)} of {len(indices)} samples before training "
                f"(train indices {rows}); check its initialisation and the data's normalisation."
            )

    def _check_pools_against_history(self, dm: Any, ckpt_path: str | None) -> None:
        """A restored callback and restored pools must tell the same story: every query's indices, every size."""
        pools = dm.pools
        problems = []
        if pools.last_cycle != self.cycle:
            problems.append(f"the pools hold labels up to cycle {pools.last_cycle}, the callback is in cycle {self.cycle}")
        total = 0
        for record in self.history:
            cycle = record["cycle"]
            labeled = pools.labeled_indices(cycle=cycle)
            total += len(labeled)
            if "indices" in record and sorted(record["indices"]) != labeled.tolist():
                problems.append(f"cycle {cycle}: the history recorded {len(record['indices'])} queried indices, the "
                                f"pools hold {len(labeled)} labeled in that cycle, not the same ones")
            elif total != record["num_labeled"]:
                problems.append(f"cycle {cycle}: the history recorded {record['num_labeled']} labeled samples, the "
                                f"pools hold {total}")
        if problems:
            raise ValueError(
                f"checkpoint {ckpt_path}: its pool state disagrees with the active-learning history saved beside it ("
                + "; ".join(problems) + "); it was modified or assembled from different runs: resume from an earlier "
                "checkpoint of this run."
            )

    def _check_budget(self, dm: Any) -> None:
        assert self.budget is not None
        queries_left = self.cycles - self.cycle
        available = dm.pools.num_unlabeled
        if self.budget * queries_left > available:
            raise ValueError(
                f"budget: {queries_left} more queries of {self.budget} samples need {self.budget * queries_left} "
                f"unlabeled samples but the pool holds {available}; lower budget or cycles "
                f"(at most {available // queries_left} per query for {queries_left} queries)."
            )

    def _show_progress(self, trainer: Trainer) -> ProgressBar | None:
        """The trainer's progress bar on rank 0 when ``progress`` is on: pool scoring and test evaluation draw in its style."""
        return trainer.progress_bar_callback if self.progress and trainer.is_global_zero else None

    def _log(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        if not trainer.is_global_zero:
            return
        numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float, np.number))}
        for logger in trainer.loggers:
            try:
                logger.log_metrics(numeric, step=trainer.global_step)
            except Exception as err:  # a broken logger must not cost the cycle
                rank_zero_warn(f"ActiveLearningCallback: {type(logger).__name__} failed to log ({err!r}); continuing.")

    def _log_to_wandb(self, trainer: Trainer, dm: Any, record: dict[str, Any]) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not loggers or not trainer.is_global_zero:
            return
        import wandb

        counts = dm.pools.labeled_counts()
        names = list(getattr(dm, "classes", None) or range(dm.num_classes))
        bars = wandb.Table(columns=["class", "labeled"], data=[[str(n), int(c)] for n, c in zip(names, counts)])
        samples = wandb.Table(
            columns=["index", "predicted", "true", "score"],
            data=[list(row) for row in zip(record["indices"], record["predicted"], record["true"], record["scores"])],
        )
        cycle = record["cycle"]
        payload = {
            "al/labeled_per_class": wandb.plot.bar(bars, "class", "labeled", title=f"Labeled samples per class, cycle {cycle}"),
            "al/selected_samples": samples,
            "al/query/status": record["stats"]["status"],
            "trainer/global_step": trainer.global_step,
        }
        for logger in loggers:
            try:
                logger.experiment.log(payload)
            except Exception as err:
                rank_zero_warn(f"ActiveLearningCallback: W&B failed to log the cycle {cycle} tables ({err!r}); continuing.")

    def _write_files(self, trainer: Trainer) -> None:
        """Rewrite ``labeled_sets.jsonl`` (one line per cycle with the indices labeled in it), ``history.json``
        (every cycle's record, for :mod:`cbal_lightning.tools.reports`) and ``run.json`` (what ran: method, seed,
        datamodule) atomically in the run folder."""
        if not trainer.is_global_zero or self.run_dir is None:
            return
        dm = self._datamodule(trainer)
        atomic_write_json(self.run_dir / RUN_FILE, {
            "method": method_name(self.scorer, self.selector), "scorer": repr(self.scorer),
            "selector": repr(self.selector), "seed": self.seed, "datamodule": type(dm).__name__,
            "budget": self.budget, "cycles": self.cycles,
            "folder_named_by": run_dir_source(trainer, self.output_dir_arg),
        }, indent=1)
        atomic_write_json(self.run_dir / HISTORY_FILE, self.history)
        lines = []
        for record in self.history:
            cycle = record["cycle"]
            line = {"cycle": cycle, "num_labeled": record["num_labeled"]}
            line.update({k: record[k] for k in ("stats", "scores") if k in record})
            line["indices"] = dm.pools.labeled_indices(cycle=cycle).tolist()
            lines.append(json.dumps(line))
        data = ("\n".join(lines) + "\n").encode()
        atomic_write(self.run_dir / LABELED_SETS_FILE, lambda f: f.write(data))


def _is_int(value: Any) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


class _NamedCheckpointIO(CheckpointIO):
    """The trainer's checkpoint IO, with unreadable checkpoints refused by name and the previous one suggested.

    Lightning checkpoints are zip archives (``torch.save``): an empty, truncated or foreign file has no zip
    directory, and is refused before ``torch.load`` fails with an ``EOFError`` or an unpickling error; a file whose
    content is damaged further in gets the same message from the error ``torch.load`` raises.
    """

    def __init__(self, inner: CheckpointIO) -> None:
        self.inner = inner

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        self.inner.save_checkpoint(checkpoint, path, storage_options)

    def remove_checkpoint(self, path: Any) -> None:
        self.inner.remove_checkpoint(path)

    def teardown(self) -> None:
        self.inner.teardown()

    def load_checkpoint(self, path: Any, map_location: Any | None = None, **kwargs: Any) -> dict[str, Any]:
        if os.path.isfile(path):
            try:
                with zipfile.ZipFile(path):
                    pass
            except (zipfile.BadZipFile, OSError) as err:
                reason = f"{type(err).__name__}: {err}" if os.path.getsize(path) else "the file is empty"
                raise ValueError(_unreadable(path, reason)) from err
        try:
            return self.inner.load_checkpoint(path, map_location=map_location, **kwargs)
        except (EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
            raise ValueError(_unreadable(path, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")) from err


def _unreadable(path: Any, reason: str) -> str:
    """The message for an unreadable checkpoint: its name, why, and the newest other checkpoint beside it."""
    here = Path(path)
    others = sorted((p for p in here.parent.glob("*.ckpt") if p != here), key=lambda p: p.stat().st_mtime, reverse=True)
    hint = f"resume from the previous one, e.g. ckpt_path={str(others[0])!r}" if others else "resume from an earlier checkpoint"
    return (f"ckpt_path: {path} is not a readable checkpoint ({reason}; truncated by a crash during the write, or "
            f"not a Lightning checkpoint); {hint}.")


def _reload_train_dataloader(trainer: Trainer) -> None:
    """Make the fit loop rebuild the training dataloader now, so the new labels are used from this epoch on.

    Lightning 2.x exposes no public call for this mid-fit; ``reload_dataloaders_every_n_epochs`` would reload
    every epoch. Resetting the fit loop's combined loader is what that option does internally.
    """
    loop = trainer.fit_loop
    loop._combined_loader = None
    loop.setup_data()
    if loop._combined_loader is not None:
        for dl in loop._combined_loader.flattened:
            _set_sampler_epoch(dl, loop.epoch_progress.current.processed)


def _get_rng_states() -> dict[str, Any]:
    """Python, NumPy and torch random states in a form ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state(legacy=False)
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)), "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]), "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(_as_tuple(states["python"]))
    np_state = states["numpy"]
    np.random.set_state({
        "bit_generator": "MT19937",
        "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
        "has_gauss": np_state["has_gauss"], "gauss": np_state["gauss"],
    })
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _as_tuple(value: Any) -> Any:
    """``random.setstate`` wants nested tuples; checkpoints may hand back lists."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


_PENDING_ARRAYS = ("pool_probs", "rows", "pool_indices")  # a query's arrays kept until its labels are revealed


def _pending_state(pending: dict[str, Any] | None) -> dict[str, Any] | None:
    """A pending record for a checkpoint: its arrays as tensors, so ``torch.load(weights_only=True)`` reads it."""
    if pending is None:
        return None
    state = copy.deepcopy({k: v for k, v in pending.items() if k not in _PENDING_ARRAYS})
    return state | _tensors({k: pending[k] for k in _PENDING_ARRAYS if k in pending})  # a pilot round has none yet


def _pending_from_state(state: dict[str, Any] | None) -> dict[str, Any] | None:
    if state is None:
        return None
    pending = copy.deepcopy({k: v for k, v in state.items() if k not in _PENDING_ARRAYS})
    return pending | _arrays({k: state[k] for k in _PENDING_ARRAYS if k in state})


def _tensors(state: Any) -> Any:
    """``state`` with every numpy array (nested in dicts) as a tensor, for a checkpoint read with ``weights_only``."""
    if isinstance(state, dict):
        return {k: _tensors(v) for k, v in state.items()}
    return torch.from_numpy(np.ascontiguousarray(state)) if isinstance(state, np.ndarray) else state


def _arrays(state: Any) -> Any:
    """The inverse of :func:`_tensors`."""
    if isinstance(state, dict):
        return {k: _arrays(v) for k, v in state.items()}
    return state.numpy() if isinstance(state, torch.Tensor) else state


def _rows_of(pool_indices: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Positions of the train ``indices`` in ``pool_indices`` (all present)."""
    order = np.argsort(pool_indices, kind="stable")
    found = np.searchsorted(pool_indices, indices, sorter=order)
    if (found >= len(order)).any() or not np.array_equal(pool_indices[order[found]], indices):
        raise RuntimeError("the pilot's samples are no longer in the unlabeled pool; were the pools changed between fits?")
    return order[found]
