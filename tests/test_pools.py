"""PoolState: labeling invariants, errors without side effects, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cbal_lightning.pools import PoolState
from cbal_lightning.splits import long_tail_split

TARGETS = [0, 1, 0, 1, 2, 2, 0, 1]


def _snapshot(pools: PoolState) -> dict:
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in pools.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a)


@st.composite
def _pools_and_batches(draw):
    n = draw(st.integers(1, 40))
    targets = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
    candidates = sorted(draw(st.sets(st.integers(0, n - 1))))
    order = draw(st.permutations(candidates))
    cuts = sorted(draw(st.lists(st.integers(0, len(order)), max_size=4)))
    batches = [list(order[a:b]) for a, b in zip([0, *cuts], [*cuts, len(order)])]
    return targets, candidates, batches


@settings(max_examples=60, deadline=None)
@given(_pools_and_batches())
def test_labeling_keeps_labeled_and_unlabeled_a_partition_of_the_candidates(case) -> None:
    targets, candidates, batches = case
    pools = PoolState(targets, candidates=candidates)
    for cycle, batch in enumerate(batches):
        pools.label(batch, cycle)
        labeled, unlabeled = pools.labeled_indices(), pools.unlabeled_indices()
        assert np.intersect1d(labeled, unlabeled).size == 0
        assert np.union1d(labeled, unlabeled).tolist() == candidates
        assert pools.num_labeled + pools.num_unlabeled == pools.num_candidates == len(candidates)
        assert sorted(pools.labeled_indices(cycle=cycle).tolist()) == sorted(batch)
        assert pools.cycle_of(batch).tolist() == [cycle] * len(batch)
        counts = pools.labeled_counts() + pools.unlabeled_counts()
        assert counts.tolist() == np.bincount(np.asarray(targets)[candidates], minlength=pools.num_classes).tolist()
    assert pools.num_unlabeled == 0


def test_example_and_counts() -> None:
    pools = PoolState(TARGETS, candidates=[0, 1, 2, 3, 4, 5], num_classes=4)
    pools.label([0, 1], cycle=0)
    pools.label(np.array([4]), cycle=1)
    assert pools.labeled_indices().tolist() == [0, 1, 4]
    assert pools.unlabeled_indices().tolist() == [2, 3, 5]
    assert pools.labeled_counts().tolist() == [1, 1, 1, 0]
    assert pools.unlabeled_counts().tolist() == [1, 1, 1, 0]
    assert (pools.initial_size, pools.last_cycle, len(pools)) == (2, 1, 8)
    assert pools.cycle_of(torch.tensor([4, 6])).tolist() == [1, -1]
    assert pools.labeled_indices().dtype == np.int64


@pytest.mark.parametrize("indices, cycle, message", [
    ([0, 0], 1, "repeated"),
    ([1], 1, "already labeled"),
    ([7], 1, "outside the candidate pool"),
    ([8], 1, "out of range"),
    ([-1], 1, "out of range"),
    ([2], -1, "cycle"),
    ([2.0], 1, "integer"),
    ([2, 1], 1, "already labeled"),  # a valid index beside an invalid one: nothing is labeled
])
def test_bad_labels_raise_and_change_nothing(indices, cycle, message) -> None:
    pools = PoolState(TARGETS, candidates=range(7))
    pools.label([1], cycle=0)
    before = _snapshot(pools)
    with pytest.raises(ValueError, match=message):
        pools.label(indices, cycle)
    assert _same(before, pools.state_dict())


def test_from_split_labels_the_initial_set_in_cycle_zero() -> None:
    targets = np.repeat(np.arange(4), 50)
    split = long_tail_split(targets, initial_fraction=0.1, imbalance_factor=0.2, seed=3)
    pools = PoolState.from_split(split, targets)
    assert pools.labeled_indices(cycle=0).tolist() == split.initial.tolist()
    assert pools.unlabeled_indices().tolist() == split.pool.tolist()
    assert pools.num_candidates == len(split.initial) + len(split.pool)


def _labeled_pools() -> PoolState:
    pools = PoolState(TARGETS, candidates=range(7))
    pools.label([0, 2], 0)
    pools.label([5], 1)
    return pools


def test_state_round_trips_through_a_weights_only_torch_file(tmp_path: Path) -> None:
    pools = _labeled_pools()
    torch.save(pools.state_dict(), tmp_path / "pools.pt")
    state = torch.load(tmp_path / "pools.pt", weights_only=True)
    restored = PoolState.from_state_dict(state)
    assert _same(pools.state_dict(), restored.state_dict())
    into = PoolState(TARGETS)
    into.load_state_dict(state)
    assert into.unlabeled_indices().tolist() == [1, 3, 4, 6]


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_save_and_load_files_atomically(tmp_path: Path, suffix: str) -> None:
    pools = _labeled_pools()
    path = pools.save(tmp_path / "sub" / f"pools{suffix}")
    assert path.exists() and not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert _same(pools.state_dict(), PoolState.load(path).state_dict())
    pools.label([6], 2)
    pools.save(path)  # overwrite in place
    assert PoolState.load(path).cycle_of([6]).tolist() == [2]


def test_load_state_dict_rejects_another_train_set_and_keeps_its_state() -> None:
    pools = _labeled_pools()
    other = PoolState([2, 1, 0, 1, 2, 2, 0, 1])
    before = _snapshot(other)
    with pytest.raises(ValueError, match="different labels"):
        other.load_state_dict(pools.state_dict())
    with pytest.raises(ValueError, match="covers a train set of 8"):
        PoolState([0, 1, 2]).load_state_dict(pools.state_dict())
    assert _same(before, other.state_dict())


@pytest.mark.parametrize("targets, kwargs, message", [
    ([], {}, "non-empty"), ([0, -2], {}, "or -1 for unknown"), ([-1, -1], {}, "num_classes: no label is known"), ([0, 3], {"num_classes": 2}, "num_classes"),
    ([0, 1], {"candidates": [2]}, "out of range"),
])
def test_bad_construction(targets, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        PoolState(targets, **kwargs)


def test_held_out_samples_are_labeled_but_not_trained_on_and_persist() -> None:
    pools = PoolState(np.array([0, 0, 1, 1, 2, 2]))
    pools.label([0, 1, 2, 3], cycle=0)
    pools.hold_out([1, 3])
    assert pools.training_indices().tolist() == [0, 2] and pools.held_out_indices().tolist() == [1, 3]
    assert pools.num_labeled == 4 and pools.labeled_counts().tolist() == [2, 2, 0]  # still labeled: Eq. 4 counts them
    with pytest.raises(ValueError, match="only labeled samples can be held out"):
        pools.hold_out([4])
    state = pools.state_dict()
    restored = PoolState(np.array([0, 0, 1, 1, 2, 2]))
    restored.load_state_dict(state)
    assert restored.held_out_indices().tolist() == [1, 3]
    older = {k: v for k, v in state.items() if k != "held_out"}  # a checkpoint written before hold-outs existed
    restored.load_state_dict(older)
    assert restored.held_out_indices().size == 0
    tampered = dict(state, held_out=torch.tensor([False, False, False, False, True, False]))  # an unlabeled sample
    with pytest.raises(ValueError, match="held_out"):
        restored.load_state_dict(tampered)
    pools.exclude([3])  # an unreadable held-out image leaves the hold-out with the universe
    assert pools.held_out_indices().tolist() == [1]
    pools.release_held_out()
    assert pools.training_indices().tolist() == [0, 1, 2]


def test_unknown_labels_are_given_by_a_person_and_checked() -> None:
    pools = PoolState([0, 1, -1, -1, 2], num_classes=3)
    pools.label([0, 1], cycle=0)
    assert pools.has_unknown and pools.unknown_indices().tolist() == [2, 3]
    with pytest.raises(ValueError, match="no known label, pass the labels a person gave"):
        pools.label([2, 4], cycle=1)  # the simulated oracle cannot reveal index 2
    with pytest.raises(ValueError, match="differ from the known labels"):
        pools.label([2, 4], cycle=1, labels=[1, 0])  # index 4 is known to be class 2
    with pytest.raises(ValueError, match="one per index"):
        pools.label([2, 4], cycle=1, labels=[1])
    assert pools.num_labeled == 2 and pools.targets[2] == -1  # nothing changed
    pools.label([2, 4], cycle=1, labels=[1, 2])
    assert pools.targets.tolist() == [0, 1, 1, -1, 2] and not pools.targets.flags.writeable
    assert pools.labeled_counts().tolist() == [1, 2, 1] and pools.unlabeled_counts().tolist() == [0, 0, 0]
    # the person's labels travel in the state and restore into pools built from the dataset (which lacks them)
    fresh = PoolState([0, 1, -1, -1, 2], num_classes=3)
    fresh.load_state_dict(pools.state_dict())
    assert fresh.targets.tolist() == [0, 1, 1, -1, 2] and fresh.labeled_indices(cycle=1).tolist() == [2, 4]
    forged = pools.state_dict()
    forged["targets"][3] = 0  # a label for a sample nobody labeled
    with pytest.raises(ValueError, match="different labels"):
        PoolState([0, 1, -1, -1, 2], num_classes=3).load_state_dict(forged)
