"""A small active-learning job on digits, run in a subprocess by the DDP and kill/resume tests.

Writes ``<out>/rank<r>.json`` with the labeled indices per cycle and the callback's history on every rank.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from cbal_lightning import ActiveLearningCallback, DigitsDataModule, ImageClassifier
from cbal_lightning.scoring import BALD, Entropy
from cbal_lightning.selection import ClassBalanced
from cbal_lightning.selection.kcenter import KCenterGreedy


class FrozenLinear(LightningModule):
    """A linear classifier trained with lr=0 and no batch-norm: its predictions never change, whatever the sharding."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(16 * 16, 10)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x, 1)

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


class SlowDown(Callback):
    """Sleeps after every epoch of one cycle, so that a test can kill the job inside it."""

    def __init__(self, cycle: int, epochs_per_cycle: int, seconds: float) -> None:
        self.cycle, self.epochs_per_cycle, self.seconds = cycle, epochs_per_cycle, seconds

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch // self.epochs_per_cycle == self.cycle:
            time.sleep(self.seconds)


class SleepAtStep(Callback):
    """Sleeps after training step ``step`` (global), so that a test can kill the job in the middle of an epoch."""

    def __init__(self, step: int, seconds: float) -> None:
        self.step, self.seconds = step, seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            time.sleep(self.seconds)


METHODS = {
    "entropy-cb": (Entropy, lambda: ClassBalanced(lam=1.0, time_limit=20)),
    "bald-cb": (lambda: BALD(mc_samples=4), lambda: ClassBalanced(lam=1.0, time_limit=20)),
    "kcenter-cb": (Entropy, lambda: KCenterGreedy(lam=5.0)),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--model", choices=("frozen", "cnn"), default="cnn")
    parser.add_argument("--cycles", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--ckpt-path", default=None)
    parser.add_argument("--slow-cycle", type=int, default=-1)
    parser.add_argument("--method", choices=sorted(METHODS), default="entropy-cb")
    parser.add_argument("--every-n-steps", type=int, default=0, help="also checkpoint every N training steps")
    parser.add_argument("--sleep-at-step", type=int, default=-1)
    args = parser.parse_args()
    out = Path(args.out)

    seed_everything(0, workers=True, verbose=False)
    dm = DigitsDataModule(imbalance_factor=0.1, seed=0, batch_size=32)
    model = FrozenLinear() if args.model == "frozen" else ImageClassifier(
        num_classes=10, backbone="small_cnn", in_channels=1, lr=0.05, milestones=(100,)
    )
    al = ActiveLearningCallback(
        budget=args.budget, cycles=args.cycles, scorer=METHODS[args.method][0](), selector=METHODS[args.method][1](),
        epochs_per_cycle=args.epochs, output_dir=str(out), progress=False,
    )
    callbacks = [al, ModelCheckpoint(dirpath=out / "ckpt", save_last=True, save_top_k=-1, every_n_epochs=1)]
    if args.every_n_steps:
        callbacks.append(ModelCheckpoint(dirpath=out / "steps", filename="{step}", save_top_k=-1,
                                         every_n_train_steps=args.every_n_steps))
    if args.sleep_at_step >= 0:
        callbacks.append(SleepAtStep(args.sleep_at_step, seconds=30))
    if args.slow_cycle >= 0:
        callbacks.append(SlowDown(args.slow_cycle, args.epochs, seconds=1.5))
    trainer = Trainer(
        max_epochs=args.epochs, accelerator="cpu", devices=args.devices,
        strategy="ddp" if args.devices > 1 else "auto", callbacks=callbacks,
        logger=CSVLogger(out, name="logs", version=""), limit_val_batches=0, enable_progress_bar=False,
        enable_model_summary=False, deterministic=True, log_every_n_steps=1,
    )
    trainer.fit(model, datamodule=dm, ckpt_path=args.ckpt_path)
    pools = dm.pools
    result = {
        "labeled": {c: pools.labeled_indices(cycle=c).tolist() for c in range(pools.last_cycle + 1)},
        "history": al.history,
        "world_size": trainer.world_size,
    }
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "offline")
    main()
