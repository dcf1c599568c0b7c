"""The label-shift correction inside ActiveLearningCallback: hold-out, estimates, logging, state, fallback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer, seed_everything

from cbal_lightning import ActiveLearningCallback, DigitsDataModule, ImageClassifier
from cbal_lightning.callback import HISTORY_FILE
from cbal_lightning.selection import ClassBalanced

BUDGET = 60


class _SpyCallback(ActiveLearningCallback):
    """Records the size of the dataset each training epoch reads."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.epoch_sizes: list[int] = []

    def on_train_epoch_start(self, trainer: Trainer, pl_module) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self.epoch_sizes.append(len(trainer.train_dataloader.dataset))


def _run(
    tmp_path: Path, selector: ClassBalanced, initial_fraction: float, epochs: int = 1, calibration_fraction: float = 0.2
) -> tuple[DigitsDataModule, _SpyCallback]:
    seed_everything(0, verbose=False)
    dm = DigitsDataModule(imbalance_factor=0.1, seed=0, batch_size=32, initial_fraction=initial_fraction)
    al = _SpyCallback(budget=BUDGET, cycles=2, selector=selector, epochs_per_cycle=epochs, output_dir=str(tmp_path),
                      progress=False, calibration_fraction=calibration_fraction)
    trainer = Trainer(max_epochs=epochs, accelerator="cpu", devices=1, callbacks=[al], logger=False, limit_val_batches=0,
                      enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    model = ImageClassifier(num_classes=10, backbone="small_cnn", in_channels=1, lr=0.05, milestones=(100,))
    trainer.fit(model, datamodule=dm)
    return dm, al


def test_held_out_calibration_labels_then_revealed_ones_correct_the_default_selector(tmp_path: Path) -> None:
    dm, al = _run(tmp_path, ClassBalanced(lam=3.0, time_limit=5.0), initial_fraction=0.3, epochs=2)
    initial = dm.pools.initial_size
    held = sum(int(np.floor(0.2 * n)) for n in al.history[0]["labeled_counts"])
    assert held >= 50
    # cycle 0 trains without the held-out labels; from cycle 1 on they train with the rest
    assert al.epoch_sizes == [initial - held] * 2 + [initial + BUDGET] * 2 + [initial + 2 * BUDGET] * 2
    assert len(dm.pools.held_out_indices()) == 0
    first, second = al.history[1], al.history[2]
    assert first["prior"]["method"] == "mlls-bcts" and second["prior"]["method"] == "revealed"
    for record in (first, second):
        estimate = np.asarray(record["prior"]["used"])
        assert record["stats"]["prior_corrected"] == 1.0
        assert estimate.shape == (10,) and estimate.sum() == pytest.approx(1.0)
        assert record["prior"]["revealed"] and sum(record["prior"]["revealed"]) == pytest.approx(1.0)
        for key in ("l1_score", "expected_l1_score", "corrected_expected_l1_score", "prior_seconds"):
            assert np.isfinite(record["stats"][key])
    # the revealed-label prior covers every query so far
    revealed = dm.targets[np.concatenate([dm.pools.labeled_indices(cycle=1), dm.pools.labeled_indices(cycle=2)])]
    np.testing.assert_allclose(second["prior"]["revealed"], np.bincount(revealed, minlength=10) / len(revealed))
    assert json.loads((tmp_path / HISTORY_FILE).read_text())[2]["prior"]["method"] == "revealed"
    # from query 2 on, the balance term also counts the previous model's posteriors calibrated on the revealed labels
    assert first["prior"]["calibrated"] is False and second["prior"]["calibrated"] is True
    # the estimate and those posteriors (of the pool left) travel with the checkpoint, readable with weights_only
    state = al.state_dict()["prior"]
    assert state["method"] == "revealed" and len(state["pool_prior"]) == 10
    pool = dm.pools.unlabeled_indices()
    assert isinstance(state["posteriors"]["probs"], torch.Tensor) and state["posteriors"]["probs"].shape == (len(pool), 10)
    np.testing.assert_array_equal(state["posteriors"]["indices"].numpy(), np.sort(pool))
    torch.save(al.state_dict(), tmp_path / "state.pt")
    restored = ActiveLearningCallback(budget=BUDGET, cycles=2, output_dir=str(tmp_path))
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    np.testing.assert_array_equal(restored.prior.posteriors.probs, al.prior.posteriors.probs)
    assert restored.prior.method == "revealed"


def test_paper_mode_holds_nothing_out_and_balances_the_uncorrected_p(tmp_path: Path) -> None:
    dm, al = _run(tmp_path, ClassBalanced(lam=3.0, time_limit=5.0, prior=None), initial_fraction=0.3)
    initial = dm.pools.initial_size
    assert al.epoch_sizes[0] == initial
    for record in al.history[1:]:
        assert record["stats"]["prior_corrected"] == 0.0
        assert record["stats"]["corrected_expected_l1_score"] == pytest.approx(record["stats"]["expected_l1_score"])
    # the estimate is still logged (from the revealed labels), so the user sees the model's beliefs vs the labels
    assert al.history[2]["prior"]["estimated"] is not None


def test_too_few_initial_labels_fall_back_and_say_why(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO"):
        dm, al = _run(tmp_path, ClassBalanced(lam=3.0, time_limit=5.0), initial_fraction=0.1)  # 13 per class: 2 would be held out
    assert al.epoch_sizes[0] == dm.pools.initial_size  # nothing held out
    first = al.history[1]
    assert first["stats"]["prior_corrected"] == 0.0
    assert first["prior"]["reason"] == "no held-out or revealed labels yet"
    assert "fewer than 5 per class: nothing held out" in caplog.text
    assert "balancing the uncorrected P" in caplog.text
    assert al.history[2]["stats"]["prior_corrected"] == 1.0  # the revealed labels of query 1 take over


def test_calibration_fraction_is_checked() -> None:
    for bad in (-0.1, 1.0, "0.2", True):
        with pytest.raises(ValueError, match="calibration_fraction"):
            ActiveLearningCallback(budget=10, cycles=1, calibration_fraction=bad)


def test_by_default_nothing_is_held_out_and_the_revealed_labels_correct_from_query_two(tmp_path: Path) -> None:
    dm, al = _run(tmp_path, ClassBalanced(lam=3.0, time_limit=5.0), initial_fraction=0.3, calibration_fraction=0.0)
    assert al.epoch_sizes[0] == dm.pools.initial_size
    first, second = al.history[1], al.history[2]
    assert first["stats"]["prior_corrected"] == 0.0 and first["prior"]["reason"] == "no held-out or revealed labels yet"
    assert second["stats"]["prior_corrected"] == 1.0 and second["prior"]["method"] == "revealed"
