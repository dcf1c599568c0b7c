"""The first query's pilot: random labels first, the pool prior from them, the rest balanced with it (docs/prior.md)."""

from __future__ import annotations

import numpy as np
import pytest

from cbal_lightning.inference import PoolPredictions
from cbal_lightning.pools import PoolState
from cbal_lightning.query import PoolScores, choose_batch, choose_with_pilot, draw_pilot, pilot_size
from cbal_lightning.selection import ClassBalanced, KCenterGreedy, class_targets, l1_score

MEANS = np.array([-2.0, 0.0, 2.0])  # x | y ~ N(MEANS[y], 1), three classes
POOL_PRIOR = np.array([0.8, 0.15, 0.05])  # long-tailed pool; the labeled set is balanced


def _problem(n: int = 1500, initial: int = 60, seed: int = 0) -> tuple[PoolScores, PoolState, np.ndarray]:
    """A pool under label shift, scored by a weak model trained under a uniform prior."""
    rng = np.random.default_rng(seed)
    targets = np.concatenate([np.repeat(np.arange(3), initial // 3), rng.choice(3, n, p=POOL_PRIOR)])
    x = rng.normal(MEANS[targets], 1.5)
    logits = -0.5 * (x[:, None] - MEANS) ** 2
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    pools = PoolState(targets)
    pools.label(np.arange(initial), cycle=0)
    pool = pools.unlabeled_indices()
    entropy = -(probs[pool] * np.log(probs[pool])).sum(1)
    return PoolScores(PoolPredictions(pool, probs[pool].astype(np.float32), entropy.astype(np.float32), 0.0), None), pools, targets


def test_pilot_size_keeps_five_labels_per_class_and_at_most_half_the_budget() -> None:
    assert pilot_size(0.2, 500, 10) == 100
    assert pilot_size(0.05, 500, 10) == 50  # raised to 5 per class
    assert pilot_size(0.2, 60, 10) == 0  # 50 would be most of the budget
    assert pilot_size(0.0, 500, 10) == 0


def test_pilot_corrects_the_rest_and_balances_the_true_labels() -> None:
    scores, pools, targets = _problem()
    budget, size, train_prior = 150, 30, np.full(3, 1 / 3)
    selector = ClassBalanced(lam=3.0, time_limit=1.0)
    pilot = draw_pilot(len(scores.pool.indices), size, 1, seed=0)
    labels = targets[scores.pool.indices[pilot]]
    rows, selection, omega, shift = choose_with_pilot(selector, scores, pools, budget, 1, pilot, labels, train_prior)
    assert len(rows) == len(np.unique(rows)) == budget and len(selection.indices) == budget - size
    pilot_labels = targets[scores.pool.indices[rows[:size]]]
    expected = class_targets(pools.labeled_counts() + np.bincount(pilot_labels, minlength=3), budget, 1, pools.initial_size)
    np.testing.assert_allclose(omega, expected)  # Eq. 4 counts the pilot as labeled
    assert shift.method == "pilot" and 0.5 * np.abs(shift.pool_prior - POOL_PRIOR).sum() < 0.1
    with_pilot = l1_score(np.bincount(targets[scores.pool.indices[rows]], minlength=3))
    plain, _ = choose_batch(ClassBalanced(lam=3.0, time_limit=1.0, prior=None), scores, pools, budget, 1)
    without = l1_score(np.bincount(targets[scores.pool.indices[plain.indices]], minlength=3))
    assert with_pilot < without - 0.1


def test_pilot_is_seeded() -> None:
    first, again, other = draw_pilot(1500, 30, 1, seed=3), draw_pilot(1500, 30, 1, seed=3), draw_pilot(1500, 30, 2, seed=3)
    np.testing.assert_array_equal(first, again)
    assert len(np.unique(first)) == 30 and not np.array_equal(first, other)  # another cycle, another draw


def test_pilot_joins_the_labeled_embeddings_of_a_greedy_selector() -> None:
    scores, pools, targets = _problem(n=600)
    rng = np.random.default_rng(1)
    pool, labeled = scores.pool, pools.labeled_indices()
    with_embeddings = PoolScores(
        PoolPredictions(pool.indices, pool.probs, pool.scores, 0.0, rng.normal(size=(len(pool.indices), 4)).astype(np.float32)),
        PoolPredictions(labeled, np.full((len(labeled), 3), 1 / 3, np.float32), np.zeros(len(labeled), np.float32), 0.0,
                        rng.normal(size=(len(labeled), 4)).astype(np.float32)),
    )
    pilot = draw_pilot(len(pool.indices), 30, 1)
    rows, selection, _, _ = choose_with_pilot(KCenterGreedy(lam=1.0), with_embeddings, pools, 80, 1, pilot,
                                              targets[pool.indices[pilot]], np.full(3, 1 / 3))
    assert len(rows) == len(np.unique(rows)) == 80 and len(selection.indices) == 50


@pytest.mark.parametrize("bad", [-0.1, 0.6, "0.2", True])
def test_pilot_fraction_is_checked(bad) -> None:
    from cbal_lightning import ActiveLearningCallback

    with pytest.raises(ValueError, match="pilot_fraction"):
        ActiveLearningCallback(budget=10, cycles=1, pilot_fraction=bad)


def test_the_default_callback_starts_the_first_query_with_a_pilot(tmp_path) -> None:
    from lightning.pytorch import Trainer, seed_everything

    from cbal_lightning import ActiveLearningCallback, DigitsDataModule, ImageClassifier

    seed_everything(0, verbose=False)
    dm = DigitsDataModule(imbalance_factor=0.1, seed=0, batch_size=32)
    al = ActiveLearningCallback(budget=100, cycles=2, selector=ClassBalanced(lam=3.0, time_limit=2.0), epochs_per_cycle=1,
                                output_dir=str(tmp_path), progress=False)
    trainer = Trainer(max_epochs=1, accelerator="cpu", devices=1, callbacks=[al], logger=False, limit_val_batches=0,
                      enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(ImageClassifier(num_classes=10, backbone="small_cnn", in_channels=1, lr=0.05, milestones=(100,)), datamodule=dm)
    first, second = al.history[1], al.history[2]
    assert first["stats"]["pilot_size"] == 50 and first["prior"]["method"] == "pilot"
    assert first["stats"]["prior_corrected"] == 1.0 and len(set(first["indices"])) == 100
    assert second["stats"]["pilot_size"] == 0 and second["prior"]["method"] == "revealed"
    assert al.state_dict()["prior"]["method"] == "revealed"  # the tracker learned from the whole first batch


def test_a_pilot_whenever_the_selector_estimates_the_prior_people_included() -> None:
    from types import SimpleNamespace

    from cbal_lightning import ActiveLearningCallback
    from cbal_lightning.oracle import HumanOracle
    from cbal_lightning.selection.prior import PriorShift

    dm, none_yet = SimpleNamespace(num_classes=10), PriorShift(None, np.full(10, 0.1), "none", "no labels yet")
    for callback, size in ((ActiveLearningCallback(budget=500, cycles=1, selector=ClassBalanced(prior=None)), 0),
                           (ActiveLearningCallback(budget=500, cycles=1, pilot_fraction=0.0), 0),
                           (ActiveLearningCallback(budget=500, cycles=1, oracle=HumanOracle()), 100),  # in a round of its own
                           (ActiveLearningCallback(budget=500, cycles=1), 100)):
        callback.budget = 500
        assert callback._pilot_size(dm, none_yet) == size
    estimated = PriorShift(np.full(10, 0.1), np.full(10, 0.1), "revealed")
    assert callback._pilot_size(dm, estimated) == 0  # later queries: the revealed labels


def test_a_pilot_labeled_by_people_is_found_again_in_the_rescored_pool() -> None:
    from cbal_lightning.callback import _rows_of

    pool = np.array([5, 2, 9, 7])  # the train indices of the pool rows, in the order the scorer returned them
    np.testing.assert_array_equal(_rows_of(pool, np.array([9, 2])), [2, 1])
    for gone in (np.array([3]), np.array([10])):  # labeled meanwhile, or never in the pool
        with pytest.raises(RuntimeError, match="no longer in the unlabeled pool"):
            _rows_of(pool, gone)
