"""Mistakes fail at fit start, before any training step, with a message that names the argument and the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from cbal_lightning import ActiveLearningCallback, DigitsDataModule, ImageClassifier
from cbal_lightning.tools.cli import main
from cbal_lightning.inference import predict_pool
from cbal_lightning.scoring import BALD, Entropy
from cbal_lightning.selection import ClassBalanced
from cbal_lightning.selection.kcenter import KCenterGreedy


class Plain(LightningModule):
    """A linear classifier without embed/classify; counts its training steps; ``fault`` breaks its forward."""

    def __init__(self, fault: str | None = None, in_features: int = 16 * 16, classes: int = 10) -> None:
        super().__init__()
        self.head = nn.Linear(in_features, classes)
        self.fault, self.steps = fault, 0

    def forward(self, x: torch.Tensor):
        logits = self.head(torch.flatten(x, 1))
        if self.fault == "nan":
            logits = logits.clone()
            logits[1] = float("nan")
        if self.fault == "dict":
            return {"logits": logits}
        return logits

    def training_step(self, batch, batch_idx):
        self.steps += 1
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(tmp_path: Path, model: LightningModule, datamodule=True, max_epochs: int | None = 1, ckpt_path=None,
         callbacks=(), **al_kwargs) -> ActiveLearningCallback:
    al_kwargs = {"budget": 40, "cycles": 1, "epochs_per_cycle": 1, "progress": False} | al_kwargs
    al = ActiveLearningCallback(output_dir=str(tmp_path), **al_kwargs)
    trainer = Trainer(
        max_epochs=max_epochs, accelerator="cpu", devices=1, callbacks=[al, *callbacks], logger=False,
        limit_val_batches=0, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=bool(callbacks), default_root_dir=tmp_path,
    )
    dm = DigitsDataModule(imbalance_factor=0.1, batch_size=32) if datamodule else None
    if dm is None:
        trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader([(torch.zeros(1, 16, 16), 0)]))
    else:
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return al


# ------------------------------------------------------------------------------------------ the model (item 2)

@pytest.mark.parametrize("scorer, selector, needer", [
    (Entropy(), KCenterGreedy(lam=1.0), "KCenterGreedy"),
    (BALD(mc_samples=2), ClassBalanced(), "BALD"),
])
def test_a_model_without_embed_and_classify_is_refused_for_embedding_methods(tmp_path, scorer, selector, needer):
    model = Plain()
    with pytest.raises(TypeError, match=rf"model: Plain lacks embed and classify\(\), which {needer}"):
        _fit(tmp_path, model, scorer=scorer, selector=selector)
    assert model.steps == 0


def test_a_model_for_three_channels_on_one_channel_data_fails_before_training(tmp_path):
    model = ImageClassifier(num_classes=10)  # the README's model: 3 input channels, digits have 1
    with pytest.raises(ValueError, match=r"ImageClassifier fails on a real batch of shape \(4, 1, 16, 16\).*in_channels=datamodule.in_channels \(1\)"):
        _fit(tmp_path, model)
    assert model.global_step == 0


def test_nan_logits_at_fit_start_name_the_model_count_and_rows(tmp_path):
    model = Plain(fault="nan")
    with pytest.raises(ValueError, match=r"model: Plain gives NaN or inf logits for 1 of 4 samples before training \(train indices \[\d+\]\)"):
        _fit(tmp_path, model)
    assert model.steps == 0


def test_a_forward_returning_a_dict_is_refused(tmp_path):
    model = Plain(fault="dict")
    with pytest.raises(TypeError, match=r"Plain.forward returned a dict \(keys \['logits'\]\); it must return the logits"):
        _fit(tmp_path, model)
    assert model.steps == 0


def test_nan_while_scoring_the_pool_names_the_model_count_and_train_indices():
    images = torch.zeros(6, 1, 16, 16)
    indices = torch.tensor([10, 11, 12, 13, 14, 15])
    loader = torch.utils.data.DataLoader(list(zip(images, indices)), batch_size=4)
    # row 1 of each batch of 4 is NaN: train indices 11 and 15
    with pytest.raises(ValueError, match=r"model: Plain gave NaN or inf class probabilities for 2 of 6 samples "
                                         r"while scoring pool in cycle 2 \(train indices \[11, 15\]\).*learning rate"):
        predict_pool(Plain(fault="nan"), loader, Entropy(), 2, device=torch.device("cpu"))


# ------------------------------------------------------------------------------------------ configuration (item 5)

def test_max_epochs_none_without_epochs_per_cycle_is_refused(tmp_path):
    model = Plain()
    with pytest.raises(ValueError, match=r"epochs_per_cycle: not given and Trainer\(max_epochs=1000\)"):
        _fit(tmp_path, model, max_epochs=None, epochs_per_cycle=None)
    assert model.steps == 0


@pytest.mark.parametrize("kwargs, pattern", [
    ({"epochs_per_cycle": 1.5}, r"epochs_per_cycle: expected a whole number"),
    ({"budget": 0}, r"budget: expected"),
    ({"budget": 1.5}, r"budget: expected"),
    ({"cycles": 2.0}, r"cycles: expected"),
    ({"eval_batch_size": 0}, r"eval_batch_size: expected"),
])
def test_callback_arguments_are_checked_at_construction(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        ActiveLearningCallback(**({"budget": 10, "cycles": 1} | kwargs))


def test_numpy_integers_are_accepted_as_budget_and_cycles():
    al = ActiveLearningCallback(budget=np.int64(40), cycles=np.int32(2), epochs_per_cycle=np.int64(3))
    assert (al.budget_arg, al.cycles, al.epochs_per_cycle_arg) == (40, 2, 3)
    assert type(al.budget_arg) is int and type(al.cycles) is int
    assert ActiveLearningCallback(budget=np.float32(0.05), cycles=1).budget_arg == pytest.approx(0.05)


def test_class_balanced_refuses_a_negative_lambda_at_construction():
    with pytest.raises(ValueError, match=r"lam must be a finite number >= 0, got -1"):
        ClassBalanced(lam=-1)


def test_fit_without_a_datamodule_says_how_to_call_fit(tmp_path):
    with pytest.raises(TypeError, match=r"fit was called without one: call trainer.fit\(model, datamodule=dm\)"):
        _fit(tmp_path, Plain(), datamodule=False)


def test_split_of_missing_cifar_suggests_the_download_flag(tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["split", "--data", "cifar10", "--root", str(tmp_path)])
    message = str(info.value.code)
    assert message.startswith("cbal-lightning split: CIFAR-10 not found at")
    assert "pass --download" in message and "download=True" not in message


# ------------------------------------------------------------------------------------------ checkpoints (item 4)

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    """Two checkpoints of a one-query run of the linear model: after epoch 0 (cycle 0) and epoch 1 (cycle 1)."""
    folder = tmp_path_factory.mktemp("ckpt")
    seed_everything(0, verbose=False)
    _fit(folder, Plain(), selector=ClassBalanced(time_limit=10),
         callbacks=[ModelCheckpoint(dirpath=folder, filename="{epoch}", save_top_k=-1, every_n_epochs=1)])
    return folder


def test_a_tampered_pool_state_is_refused_on_load(checkpoints, tmp_path):
    ckpt = torch.load(checkpoints / "epoch=1.ckpt", weights_only=False)
    cycles = ckpt["DigitsDataModule"]["pools"]["cycles"]
    candidates = ckpt["DigitsDataModule"]["pools"]["candidates"]
    extra = int(np.flatnonzero(candidates.numpy() & (cycles.numpy() < 0))[0])
    cycles[extra] = 1  # 41 labels in cycle 1 where the history recorded 40
    torch.save(ckpt, tmp_path / "tampered.ckpt")
    model = Plain()
    with pytest.raises(ValueError, match=r"tampered.ckpt: its pool state disagrees with the active-learning history.*"
                                         r"cycle 1: the history recorded 40 queried indices, the pools hold 41"):
        _fit(tmp_path, model, ckpt_path=str(tmp_path / "tampered.ckpt"))
    assert model.steps == 0


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_an_unreadable_checkpoint_names_the_file_and_the_previous_one(checkpoints, tmp_path, damage):
    folder = tmp_path / "ckpts"
    folder.mkdir()
    good = (checkpoints / "epoch=0.ckpt").read_bytes()
    (folder / "epoch=0.ckpt").write_bytes(good)
    bad = folder / "last.ckpt"
    raw = (checkpoints / "epoch=1.ckpt").read_bytes()
    bad.write_bytes({"truncated": raw[: len(raw) // 2], "empty": b"", "garbage": bytes(range(256)) * 8}[damage])
    with pytest.raises(ValueError, match=rf"ckpt_path: {bad} is not a readable checkpoint .*resume from the previous "
                                         rf"one, e.g. ckpt_path='{folder / 'epoch=0.ckpt'}'"):
        _fit(tmp_path, Plain(), ckpt_path=str(bad))


def test_an_intact_checkpoint_still_resumes(checkpoints, tmp_path):
    al = _fit(tmp_path, Plain(), ckpt_path=str(checkpoints / "epoch=0.ckpt"), selector=ClassBalanced(time_limit=10))
    assert [r["num_labeled"] for r in al.history] == [130, 170]


class PlainLoaderDigits(DigitsDataModule):
    """Digits served by a plain shuffled DataLoader, as a custom datamodule might."""

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.train_dataset(), batch_size=self.batch_size, shuffle=True)


@pytest.mark.parametrize("datamodule, says", [
    (lambda: DigitsDataModule(imbalance_factor=0.1, batch_size=32, num_workers=1), "augmentations are drawn anew"),
    (lambda: PlainLoaderDigits(imbalance_factor=0.1, batch_size=32), "the training loader is not resumable"),
])
def test_a_mid_epoch_resume_that_cannot_be_exact_says_what_differs(tmp_path, datamodule, says):
    # 130 labeled samples in batches of 32: step 3 is batch 3 of 5 of epoch 0
    steps = ModelCheckpoint(dirpath=tmp_path / "steps", filename="{step}", save_top_k=-1, every_n_train_steps=3)

    def fit(ckpt_path=None, callbacks=()):
        al = ActiveLearningCallback(budget=40, cycles=1, selector=ClassBalanced(time_limit=10), epochs_per_cycle=1,
                                    output_dir=str(tmp_path), progress=False)
        trainer = Trainer(max_epochs=1, accelerator="cpu", callbacks=[al, *callbacks], logger=False,
                          limit_val_batches=0, enable_progress_bar=False, enable_model_summary=False,
                          default_root_dir=tmp_path)
        trainer.fit(Plain(), datamodule=datamodule(), ckpt_path=ckpt_path)

    fit(callbacks=[steps])
    with pytest.warns(UserWarning, match=rf"step=3.ckpt was saved after batch 3 of 5 of epoch 0 \(cycle 0\).*{says}"):
        fit(ckpt_path=str(tmp_path / "steps" / "step=3.ckpt"))
