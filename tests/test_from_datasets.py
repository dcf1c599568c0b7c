"""Any dataset and any model: ``ActiveDataModule.from_datasets`` through the callback and through ``cbal-lightning fit``."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from lightning.pytorch import LightningModule, Trainer, seed_everything
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from cbal_lightning import ActiveDataModule, ActiveLearningCallback, DatasetDataModule
from cbal_lightning.scoring import Entropy
from cbal_lightning.selection import ClassBalanced, KCenterGreedy
from cbal_lightning.tools.cli import main
from cbal_lightning.tools.reports import make_report


def blobs(n: int, classes: int = 3, features: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Separable Gaussian blobs: float32 rows and int labels, ``n`` per class."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n)
    centers = 4 * rng.normal(size=(classes, features))
    return (centers[y] + rng.normal(size=(len(y), features))).astype(np.float32), y


class MLP(LightningModule):
    """A tabular model that is not an ImageClassifier: forward, embed and classify."""

    def __init__(self, num_classes: int, in_features: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, 16), nn.ReLU())
        self.head = nn.Linear(16, num_classes)

    def embed(self, x: Tensor) -> Tensor:
        return self.body(x)

    def classify(self, h: Tensor) -> Tensor:
        return self.head(h)

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(self.embed(x))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.05)


def _fit(dm: ActiveDataModule, al: ActiveLearningCallback, epochs: int = 2) -> None:
    seed_everything(0, verbose=False)
    trainer = Trainer(max_epochs=epochs, accelerator="cpu", callbacks=[al], logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(MLP(num_classes=dm.num_classes), datamodule=dm)


X, Y = blobs(4)  # 12 rows of 4 features, classes 0, 1, 2


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(train_targets=Y[:-1]), ValueError, r"train_targets has 11 labels for 12 items"),
    (dict(train_targets=Y.astype(float)), ValueError, r"train_targets must hold integer class indices"),
    (dict(train_targets=Y.reshape(3, 4)), ValueError, r"train_targets must be one class index per item \(1-D\)"),
    (dict(train_targets=Y - 2), ValueError, r"train_targets holds -2; it must hold class indices >= 0, or -1"),
    (dict(train_targets=np.full(12, -1)), ValueError, r"train_targets holds no known label"),
    (dict(train_targets=Y, test=X), ValueError, r"test and test_targets go together"),
    (dict(train_targets=Y, test=X, test_targets=Y - 1), ValueError, r"test_targets holds -1; it must hold known"),
    (dict(train_targets=Y, num_classes=2), ValueError, r"the targets hold class 2 but num_classes=2; pass num_classes >= 3"),
    (dict(train_targets=Y, classes=["a", "b"], num_classes=3), ValueError, r"classes names 2 classes but num_classes=3"),
    (dict(train_targets=np.zeros(12, dtype=int)), ValueError, r"num_classes must be an int >= 2, got 1"),
    (dict(train_targets=Y, train=5), TypeError, r"train must be a map-style dataset"),
    (dict(train_targets=Y, eval_transform="norm"), TypeError, r"eval_transform must be a callable"),
    (dict(train_targets=Y, train_transform=lambda x: x.tolist()), TypeError, r"train_transform must return a torch.Tensor"),
    (dict(train_targets=Y, test=X[:, :3], test_targets=Y), ValueError, r"inputs must transform to one shape"),
])
def test_bad_arguments_fail_at_construction_naming_the_parameter(kwargs: dict[str, Any], error: type, match: str) -> None:
    kwargs = {"train": X, **kwargs}
    with pytest.raises(error, match=match):
        ActiveDataModule.from_datasets(kwargs.pop("train"), kwargs.pop("test", None), **kwargs)


def test_items_may_be_plain_inputs_or_tuples_and_labels_come_from_the_targets() -> None:
    wrong = torch.full((12,), 7)  # labels inside the items are ignored
    for train in (X, torch.from_numpy(X), TensorDataset(torch.from_numpy(X), wrong), [(row, "meta") for row in X]):
        dm = ActiveDataModule.from_datasets(train, train, train_targets=Y, test_targets=Y, initial_fraction=0.5)
        dm.setup("fit")
        x, index = dm.eval_dataset([5])[0]
        assert x.dtype == torch.float32 and torch.equal(x, torch.from_numpy(X[5])) and index == 5
        assert [int(y) for _, y in dm.train_dataset()] == Y[dm.pools.labeled_indices()].tolist()
        assert [int(y) for _, y in dm.test_dataset] == Y.tolist()
    assert isinstance(dm, DatasetDataModule) and dm.classes == ["0", "1", "2"] and dm.num_classes == 3
    assert (dm.input_shape, dm.in_channels, dm.image_size) == ((4,), 4, None)


def test_transforms_apply_to_the_input_for_training_and_for_evaluation() -> None:
    images = torch.rand(12, 2, 8, 8)
    dm = ActiveDataModule.from_datasets(
        images, images, train_targets=Y, test_targets=Y, classes=["a", "b", "c"], initial_fraction=0.5,
        train_transform=lambda x: x + 10, eval_transform=lambda x: x - 10,
    )
    dm.setup("fit")
    assert (dm.input_shape, dm.in_channels, dm.image_size, dm.classes) == ((2, 8, 8), 2, 8, ["a", "b", "c"])
    labeled = dm.pools.labeled_indices()
    assert torch.equal(dm.train_dataset()[0][0], images[labeled[0]] + 10)
    assert torch.equal(dm.eval_dataset([3])[0][0], images[3] - 10)
    assert torch.equal(dm.test_dataset[4][0], images[4] - 10)


def test_unknown_labels_make_the_known_ones_the_labeled_set_and_the_rest_the_pool() -> None:
    targets = Y.copy()
    targets[[1, 7]] = -1
    dm = DatasetDataModule(X, train_targets=targets)
    dm.setup("fit")
    assert dm.pools.labeled_indices().tolist() == [0, 2, 3, 4, 5, 6, 8, 9, 10, 11]
    assert dm.pools.unlabeled_indices().tolist() == [1, 7]


def test_without_a_test_set_the_callback_runs_and_records_no_test_metrics(tmp_path: Path) -> None:
    x, y = blobs(30)
    dm = ActiveDataModule.from_datasets(x, train_targets=y, batch_size=16)
    dm.setup("fit")
    assert len(dm.test_dataset) == 0 and dm.test_dataloader() == [] and dm.val_dataloader() == []
    al = ActiveLearningCallback(budget=6, cycles=1, selector=KCenterGreedy(), output_dir=str(tmp_path), progress=False)
    _fit(dm, al, epochs=1)
    assert [r["test"] for r in al.history] == [None, None]
    assert dm.pools.num_labeled == 9 + 6
    saved = json.loads((tmp_path / "history.json").read_text())
    assert [r["test"] for r in saved] == [None, None]
    report = make_report(tmp_path, tmp_path / "report")  # histories without test metrics: no crash, no numbers
    assert report["accuracy"] == {next(iter(report["methods"])): {"acc": {}, "mean_class_acc": {}}}


def test_tabular_run_with_a_custom_model_labels_each_cycle(tmp_path: Path) -> None:
    (x_train, y_train), (x_test, y_test) = blobs(40, seed=1), blobs(10, seed=1)
    dm = ActiveDataModule.from_datasets(TensorDataset(torch.from_numpy(x_train)), x_test, train_targets=y_train,
                                        test_targets=y_test, imbalance_factor=0.2, batch_size=16)
    al = ActiveLearningCallback(budget=5, cycles=2, scorer=Entropy(), selector=ClassBalanced(lam=1.0),
                                output_dir=str(tmp_path), progress=False)
    _fit(dm, al)
    assert [r["cycle"] for r in al.history] == [0, 1, 2]
    assert [r["num_labeled"] for r in al.history] == [12, 17, 22]
    for cycle in (1, 2):
        revealed = dm.pools.labeled_indices(cycle=cycle)
        assert sorted(al.history[cycle]["indices"]) == revealed.tolist()
        assert al.history[cycle]["true"] == y_train[al.history[cycle]["indices"]].tolist()  # the revealed labels
    assert all(0 <= r["test"]["acc"] <= 1 and len(r["test"]["per_class_acc"]) == 3 for r in al.history)
    lines = (tmp_path / "labeled_sets.jsonl").read_text().splitlines()
    assert [json.loads(line)["num_labeled"] for line in lines] == [12, 17, 22]


def test_tabular_rows_without_labels_are_asked_for_and_answered_through_the_csv(tmp_path: Path) -> None:
    x, y = blobs(10)
    known = np.r_[0:3, 10:13, 20:23]  # three labeled rows per class, the rest nobody has labeled
    targets = np.full(len(y), -1)
    targets[known] = y[known]

    def fit(ckpt: str | None = None) -> tuple[ActiveLearningCallback, DatasetDataModule]:
        dm = DatasetDataModule(x, train_targets=targets, classes=["r", "g", "b"], batch_size=8)
        al = ActiveLearningCallback(budget=4, cycles=1, output_dir=str(tmp_path), progress=False)
        seed_everything(0, verbose=False)
        Trainer(max_epochs=1, accelerator="cpu", callbacks=[al], logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False).fit(MLP(3), datamodule=dm, ckpt_path=ckpt)
        return al, dm

    al, _ = fit()
    assert al.waiting_for_labels is not None and not (tmp_path / "queries" / "thumbs").exists()  # rows: no pictures
    lines = al.waiting_for_labels.read_text().splitlines()
    asked = [int(line.split(",")[0]) for line in lines[1:]]
    filled = [f"{i},,{line.split(',')[2]},{'rgb'[y[i]]}" for i, line in zip(asked, lines[1:])]  # the index is the row
    al.waiting_for_labels.write_text("\n".join([lines[0], *filled]) + "\n")
    al, dm = fit(str(tmp_path / "checkpoints" / "query_cycle_1.ckpt"))
    assert al.waiting_for_labels is None and sorted(asked) == dm.pools.labeled_indices(cycle=1).tolist()
    assert dm.targets[asked].tolist() == y[asked].tolist() and al.history[1]["true"] == y[al.history[1]["indices"]].tolist()


USER_MODULE = '''
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn

from cbal_lightning.data import DatasetDataModule


class Blobs(DatasetDataModule):
    def __init__(self, per_class: int = 30, **kwargs):
        rng = np.random.default_rng(0)
        y = np.repeat(np.arange(3), per_class)
        x = (4 * rng.normal(size=(3, 4))[y] + rng.normal(size=(len(y), 4))).astype(np.float32)
        super().__init__(x, x[::3], train_targets=y, test_targets=y[::3], **kwargs)


class Linear(LightningModule):
    def __init__(self, num_classes: int, in_features: int = 4, lr: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.layer = nn.Linear(in_features, num_classes)

    def forward(self, x):
        return self.layer(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
'''


def test_cli_fit_takes_any_lightning_module_and_datamodule_subclass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "user_tabular.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    config = {
        "seed_everything": 0,
        "trainer": {
            "max_epochs": 1, "accelerator": "cpu", "logger": False, "default_root_dir": str(tmp_path),
            "enable_progress_bar": False, "enable_model_summary": False,
            "callbacks": [{"class_path": "cbal_lightning.ActiveLearningCallback",
                           "init_args": {"budget": 4, "cycles": 1, "output_dir": str(tmp_path), "progress": False}}],
        },
        "model": {"class_path": "user_tabular.Linear", "init_args": {"lr": 0.05}},
        "data": {"class_path": "user_tabular.Blobs", "init_args": {"batch_size": 16}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["fit", "--config", str(path)])
    history = json.loads((tmp_path / "history.json").read_text())
    assert [r["num_labeled"] for r in history] == [9, 13] and history[-1]["test"] is not None
    (ckpt,) = (tmp_path / "checkpoints").glob("*.ckpt")
    hparams = torch.load(ckpt, weights_only=True)["hyper_parameters"]
    assert hparams["num_classes"] == 3 and hparams["lr"] == 0.05  # linked from the datamodule
    assert "in_channels" not in hparams  # Linear has no in_channels: not linked, so a --ckpt_path resume can build it
