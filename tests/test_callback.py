"""End-to-end behaviour of ActiveLearningCallback on the digits default (CPU, offline)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import CSVLogger, Logger

from cbal_lightning import ActiveLearningCallback, DigitsDataModule, ImageClassifier
from cbal_lightning.callback import HISTORY_FILE, LABELED_SETS_FILE
from cbal_lightning.scoring import Entropy, LeastConfidence, Margin, Random
from cbal_lightning.selection import ClassBalanced, PseudoLabelQuota, TopK

BUDGET = 40


def _model(**kwargs) -> ImageClassifier:
    return ImageClassifier(num_classes=10, backbone="small_cnn", in_channels=1, lr=0.05, milestones=(100,), **kwargs)


def _trainer(tmp_path: Path, callbacks: list, epochs: int = 1, logger: Logger | bool | None = None) -> Trainer:
    return Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, callbacks=callbacks,
        logger=CSVLogger(tmp_path, name="logs", version="") if logger is None else logger,
        limit_val_batches=0, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        log_every_n_steps=1,
    )


def _run(tmp_path: Path, scorer=None, selector=None, cycles: int = 2, epochs: int = 1, **trainer_kwargs):
    seed_everything(0, verbose=False)
    dm = DigitsDataModule(imbalance_factor=0.1, seed=0, batch_size=32)
    al = ActiveLearningCallback(
        budget=BUDGET, cycles=cycles, scorer=scorer, selector=selector or ClassBalanced(lam=1.0),
        epochs_per_cycle=epochs, output_dir=str(tmp_path), progress=False,
    )
    trainer = _trainer(tmp_path, [al], epochs=epochs, **trainer_kwargs)
    trainer.fit(_model(), datamodule=dm)
    return dm, al, trainer


def test_two_cycles_grow_the_labeled_set_by_the_budget(tmp_path: Path) -> None:
    dm, al, trainer = _run(tmp_path, scorer=Entropy(), cycles=2, epochs=2)

    initial = dm.pools.initial_size
    assert [r["num_labeled"] for r in al.history] == [initial, initial + BUDGET, initial + 2 * BUDGET]
    labeled = dm.pools.labeled_indices()
    assert len(labeled) == len(np.unique(labeled)) == initial + 2 * BUDGET
    for cycle in (1, 2):
        chosen = dm.pools.labeled_indices(cycle=cycle)
        assert len(chosen) == BUDGET
        assert sorted(al.history[cycle]["indices"]) == chosen.tolist()
    # every cycle's model was trained for epochs_per_cycle epochs and evaluated on the test set
    assert trainer.current_epoch == 2 * 3
    assert all(0.0 <= r["test"]["acc"] <= 1.0 and len(r["test"]["per_class_acc"]) == 10 for r in al.history)

    # the human-readable record matches the pools
    lines = [json.loads(line) for line in (tmp_path / LABELED_SETS_FILE).read_text().splitlines()]
    assert [line["cycle"] for line in lines] == [0, 1, 2]
    assert [line["indices"] for line in lines] == [dm.pools.labeled_indices(cycle=c).tolist() for c in range(3)]
    # and the whole history, test metrics of the last cycle included, for reports
    assert json.loads((tmp_path / HISTORY_FILE).read_text()) == json.loads(json.dumps(al.history))

    # metrics reached the Lightning logger once per cycle
    rows = list(csv.DictReader(open(tmp_path / "logs" / "metrics.csv")))
    evaluated = [r for r in rows if r.get("al/test/acc")]
    assert [int(float(r["al/cycle"])) for r in evaluated] == [0, 1, 2]
    queried = [r for r in rows if r.get("al/query/l1_score")]
    assert [int(float(r["al/query/cycle"])) for r in queried] == [1, 2]
    assert all(r["al/query/objective"] and r["al/query/inference_seconds"] for r in queried)


def test_class_balanced_query_is_more_balanced_than_top_k(tmp_path: Path) -> None:
    _, balanced, _ = _run(tmp_path / "cb", scorer=Entropy(), selector=ClassBalanced(lam=5.0), cycles=1)
    _, plain, _ = _run(tmp_path / "plain", scorer=Entropy(), selector=TopK(), cycles=1)
    cb, top = balanced.history[1]["stats"], plain.history[1]["stats"]
    assert cb["expected_l1_score"] < top["expected_l1_score"]


@pytest.mark.parametrize(
    "scorer, selector",
    [(Random(seed=1), TopK()), (Margin(), PseudoLabelQuota()), (LeastConfidence(), ClassBalanced(lam=0.5))],
    ids=["random-topk", "margin-pseudolabel", "leastconf-cb"],
)
def test_any_scorer_combines_with_any_selector(tmp_path: Path, scorer, selector) -> None:
    dm, al, _ = _run(tmp_path, scorer=scorer, selector=selector, cycles=1)
    assert len(dm.pools.labeled_indices(cycle=1)) == BUDGET
    assert al.history[1]["stats"]["pool_size"] == dm.pools.num_unlabeled + BUDGET


def test_scratch_reset_restores_initial_weights_and_rebuilds_the_optimizer(tmp_path: Path) -> None:
    seed_everything(0, verbose=False)
    dm = DigitsDataModule(imbalance_factor=0.1, seed=0, batch_size=32)
    model = _model()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    seen = {}

    class Spy(ActiveLearningCallback):
        def _reset_model(self, trainer, pl_module):
            before = trainer.optimizers[0]
            super()._reset_model(trainer, pl_module)
            seen["weights"] = {k: v.clone() for k, v in pl_module.state_dict().items()}
            seen["new_optimizer"] = trainer.optimizers[0] is not before
            seen["lr"] = trainer.optimizers[0].param_groups[0]["lr"]

    al = Spy(budget=BUDGET, cycles=1, selector=TopK(), epochs_per_cycle=1, output_dir=str(tmp_path), progress=False)
    _trainer(tmp_path, [al]).fit(model, datamodule=dm)
    assert all(torch.equal(initial[k], seen["weights"][k]) for k in initial)
    assert seen["new_optimizer"] and seen["lr"] == pytest.approx(0.05)


def test_budget_too_large_for_the_later_cycles_fails_before_training(tmp_path: Path) -> None:
    dm = DigitsDataModule(imbalance_factor=0.1, seed=0, batch_size=32)
    dm.setup("fit")
    per_query = dm.pools.num_unlabeled // 3 + 1  # fine for one or two queries, too much for three
    al = ActiveLearningCallback(budget=per_query, cycles=3, epochs_per_cycle=1, output_dir=str(tmp_path))
    trainer = _trainer(tmp_path, [al])
    with pytest.raises(ValueError, match="budget"):
        trainer.fit(_model(), datamodule=dm)
    assert trainer.global_step == 0


def test_model_width_mismatch_fails_before_training(tmp_path: Path) -> None:
    al = ActiveLearningCallback(budget=BUDGET, cycles=1, epochs_per_cycle=1, output_dir=str(tmp_path))
    trainer = _trainer(tmp_path, [al])
    wrong = ImageClassifier(num_classes=7, backbone="small_cnn", in_channels=1)
    with pytest.raises(ValueError, match="num_classes"):
        trainer.fit(wrong, datamodule=DigitsDataModule())
    assert trainer.global_step == 0


@pytest.mark.parametrize("kwargs, name", [
    (dict(budget=0, cycles=1), "budget"), (dict(budget=1.5, cycles=1), "budget"),
    (dict(budget=10, cycles=0), "cycles"), (dict(budget=10, cycles=1, reset="hot"), "reset"),
])
def test_bad_arguments_name_the_parameter(kwargs, name) -> None:
    with pytest.raises(ValueError, match=name):
        ActiveLearningCallback(**kwargs)


class BrokenLogger(Logger):
    name, version = "broken", "0"

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        if any(key.startswith("al/") for key in metrics):
            raise OSError("disk full")


def test_a_failing_logger_does_not_lose_the_selection(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="failed to log"):
        dm, al, _ = _run(tmp_path, scorer=Entropy(), cycles=1, logger=BrokenLogger())
    assert len(dm.pools.labeled_indices(cycle=1)) == BUDGET
    lines = (tmp_path / LABELED_SETS_FILE).read_text().splitlines()
    assert json.loads(lines[1])["indices"] == dm.pools.labeled_indices(cycle=1).tolist()


def test_state_dict_round_trips_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    _, al, _ = _run(tmp_path, scorer=Entropy(), cycles=1)
    torch.save(al.state_dict(), tmp_path / "state.pt")
    restored = ActiveLearningCallback(budget=BUDGET, cycles=1)
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert restored.cycle == al.cycle == 1
    assert restored.history == al.history
    assert restored.epochs_per_cycle == 1 and restored.budget == BUDGET
