"""Every strategy of the paper's grid, with and without class balancing, runs through the callback on digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from lightning.pytorch import Trainer, seed_everything

from cbal_lightning import ActiveLearningCallback, DigitsDataModule, ImageClassifier
from cbal_lightning.scoring import BALD, Entropy
from cbal_lightning.selection import ClassBalanced, TopK
from cbal_lightning.selection.badge import Badge
from cbal_lightning.selection.kcenter import KCenterGreedy
from cbal_lightning.scoring.vaal import VAAL

BUDGET = 40

STRATEGIES = {
    "bald": (lambda: BALD(mc_samples=4), TopK),
    "bald-cb": (lambda: BALD(mc_samples=4), lambda: ClassBalanced(lam=1.0, time_limit=10)),
    "kcenter": (Entropy, lambda: KCenterGreedy()),
    "kcenter-cb": (Entropy, lambda: KCenterGreedy(lam=5.0)),
    "badge": (Entropy, lambda: Badge()),
    "badge-cb": (Entropy, lambda: Badge(lam=5.0)),
    "vaal": (lambda: VAAL(base_channels=8, epochs=1, batch_size=32, progress=False), TopK),
    "vaal-cb": (lambda: VAAL(base_channels=8, epochs=1, batch_size=32, progress=False), lambda: ClassBalanced(lam=1.0, time_limit=10)),
}


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_strategy_completes_two_cycles(tmp_path: Path, name: str) -> None:
    make_scorer, make_selector = STRATEGIES[name]
    seed_everything(0, verbose=False)
    dm = DigitsDataModule(imbalance_factor=0.1, batch_size=32)
    al = ActiveLearningCallback(budget=BUDGET, cycles=2, scorer=make_scorer(), selector=make_selector(),
                                epochs_per_cycle=1, output_dir=str(tmp_path), progress=False)
    trainer = Trainer(max_epochs=1, accelerator="cpu", callbacks=[al], logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    model = ImageClassifier(num_classes=10, backbone="small_cnn", in_channels=1, lr=0.05, milestones=(100,), head_dropout=0.5)
    trainer.fit(model, datamodule=dm)

    labeled = dm.pools.labeled_indices()
    assert len(labeled) == len(np.unique(labeled)) == dm.pools.initial_size + 2 * BUDGET
    for cycle in (1, 2):
        assert len(dm.pools.labeled_indices(cycle=cycle)) == BUDGET
        stats = al.history[cycle]["stats"]
        assert 0.0 <= stats["l1_score"] <= 1.0 and stats["pool_size"] > BUDGET
    assert "test" in al.history[-1]
