"""long_tail_split: Sec. 5.1's initial set and long-tailed pool."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cbal_lightning.splits import keep_counts, keep_fractions, long_tail_split, validate_split_params

C, PER_CLASS = 10, 500
TARGETS = np.random.default_rng(0).permutation(np.repeat(np.arange(C), PER_CLASS))  # CIFAR-10 shape / 10


def _per_class(indices: np.ndarray) -> list[int]:
    return np.bincount(TARGETS[indices], minlength=C).tolist()


@pytest.mark.parametrize("imbalance_factor", [1.0, 0.3, 0.1, 0.01])
def test_step_counts_follow_the_formula(imbalance_factor: float) -> None:
    split = long_tail_split(TARGETS, initial_fraction=0.1, imbalance_factor=imbalance_factor, seed=1)
    initial = math.floor(0.1 * len(TARGETS) / C)
    available = PER_CLASS - initial
    tail = math.floor(available * imbalance_factor + 0.5)
    assert _per_class(split.initial) == [initial] * C
    assert _per_class(split.pool) == [available] * (C // 2) + [tail] * (C // 2)
    assert split.pool_per_class.tolist() == _per_class(split.pool)
    assert split.available_per_class.tolist() == [available] * C
    assert split.tail_classes == tuple(range(C // 2, C))


def test_cifar10_sized_split_with_if_01() -> None:
    targets = np.repeat(np.arange(10), 5000)
    split = long_tail_split(targets, imbalance_factor=0.1, seed=0)
    assert split.initial_per_class.tolist() == [500] * 10
    assert split.available_per_class.sum() == 45_000
    assert split.pool_per_class.tolist() == [4500] * 5 + [450] * 5


def test_exp_counts_follow_the_formula() -> None:
    split = long_tail_split(TARGETS, imbalance_factor=0.01, imbalance_type="exp", seed=0)
    available = PER_CLASS - 50
    expected = [math.floor(available * 0.01 ** (y / (C - 1)) + 0.5) for y in range(C)]
    assert _per_class(split.pool) == expected
    assert expected[0] == available and expected[-1] == 5  # 4.5 rounded half up
    assert split.tail_classes == tuple(range(1, C))
    assert np.allclose(keep_fractions(C, 0.01, "exp"), [0.01 ** (y / (C - 1)) for y in range(C)])


def test_initial_and_pool_are_disjoint_and_cover_the_candidates() -> None:
    split = long_tail_split(TARGETS, imbalance_factor=0.1, seed=0)
    assert np.intersect1d(split.initial, split.pool).size == 0
    assert split.candidates.tolist() == sorted(np.concatenate([split.initial, split.pool]).tolist())
    for array in (split.initial, split.pool):
        assert array.dtype == np.int64 and np.all(np.diff(array) > 0) and not array.flags.writeable
    # head classes lose nothing: initial + pool = the whole class
    head = np.isin(TARGETS, np.arange(C // 2))
    assert np.flatnonzero(head).tolist() == [i for i in split.candidates.tolist() if head[i]]


def test_same_seed_same_bytes_other_seed_other_split() -> None:
    a = long_tail_split(TARGETS, imbalance_factor=0.3, seed=7)
    b = long_tail_split(TARGETS.copy(), imbalance_factor=0.3, seed=7)
    c = long_tail_split(TARGETS, imbalance_factor=0.3, seed=8)
    assert a.initial.tobytes() == b.initial.tobytes() and a.pool.tobytes() == b.pool.tobytes()
    assert a.initial.tobytes() != c.initial.tobytes()


def test_initial_set_independent_of_imbalance_and_pools_nested() -> None:
    small = long_tail_split(TARGETS, imbalance_factor=0.1, seed=2)
    large = long_tail_split(TARGETS, imbalance_factor=0.3, seed=2)
    assert np.array_equal(small.initial, large.initial)
    assert np.isin(small.pool, large.pool).all()


def test_imbalance_factor_one_is_balanced() -> None:
    split = long_tail_split(TARGETS, imbalance_factor=1.0, seed=0)
    assert _per_class(split.pool) == [PER_CLASS - 50] * C
    assert len(split.candidates) == len(TARGETS)


def test_configurable_tail_classes() -> None:
    split = long_tail_split(TARGETS, imbalance_factor=0.1, tail_classes=[0, 3], seed=0)
    assert split.tail_classes == (0, 3)
    assert _per_class(split.pool) == [45, 450, 450, 45, 450, 450, 450, 450, 450, 450]


@pytest.mark.parametrize("kwargs, name", [
    ({"imbalance_factor": 0}, "imbalance_factor"), ({"imbalance_factor": -0.1}, "imbalance_factor"),
    ({"imbalance_factor": 1.5}, "imbalance_factor"), ({"imbalance_factor": True}, "imbalance_factor"),
    ({"initial_fraction": 0}, "initial_fraction"), ({"initial_fraction": 1}, "initial_fraction"),
    ({"initial_fraction": -0.2}, "initial_fraction"), ({"initial_fraction": 0.0001}, "initial_fraction"),
    ({"imbalance_type": "linear"}, "imbalance_type"), ({"tail_classes": [1, 1]}, "tail_classes"),
    ({"tail_classes": [10]}, "tail_classes"), ({"tail_classes": [1], "imbalance_type": "exp"}, "tail_classes"),
])
def test_bad_parameters_raise_naming_the_parameter(kwargs, name) -> None:
    with pytest.raises(ValueError, match=name):
        long_tail_split(TARGETS, **kwargs)


def test_validate_split_params_and_keep_counts() -> None:
    assert validate_split_params(0.1, 0.5, "step", [3, 1]) == (1, 3)
    assert validate_split_params(0.1, 0.5, "step") is None
    assert keep_counts([4500, 45, 10], [0.3, 0.1, 0.25]).tolist() == [1350, 5, 3]  # round half up


def test_empty_class_and_small_class() -> None:
    with pytest.raises(ValueError, match="no train samples"):
        long_tail_split([0, 0, 2, 2], num_classes=3, initial_fraction=0.5)
    with pytest.warns(UserWarning, match="fewer than"):
        split = long_tail_split([0] * 20 + [1], initial_fraction=0.5)
    assert split.initial_per_class.tolist() == [5, 1] and split.pool_per_class.tolist() == [15, 0]
