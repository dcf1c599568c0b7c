"""Class targets (Eq. 4), the L1 score (Eq. 10), expected counts, Selection.summary and the module doctests."""

import doctest
import importlib

import numpy as np
import pytest

from cbal_lightning.selection import Selection, class_targets, expected_counts, l1_score, top_b


@pytest.mark.parametrize(
    ("counts", "budget", "cycle", "initial", "expected"),
    [
        ([10, 10, 10], 3, 1, 30, [1, 1, 1]),  # Eq. 5: uniform initial set -> b/C each
        ([12, 10, 11], 3, 2, 30, [0, 2, 1]),  # after one query: (2*3 + 30)/3 = 12 per class
        ([20, 5], 10, 3, 10, [0, 15]),  # (3*10 + 10)/2 = 20; class 0 already full -> clipped at 0
        ([0, 0, 0, 0], 8, 1, 0, [2, 2, 2, 2]),  # no initial set
    ],
)
def test_class_targets_by_hand(counts, budget, cycle, initial, expected):
    omega = class_targets(np.array(counts), budget, cycle, initial)
    assert omega.dtype == np.float64 and omega.shape == (len(counts),)
    np.testing.assert_allclose(omega, expected)


def test_class_targets_fractional_share():
    np.testing.assert_allclose(class_targets(np.array([1, 0, 0]), 2, 1, 1), [0.0, 1.0, 1.0])


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"labeled_counts": np.zeros((2, 2))}, "labeled_counts"),
        ({"labeled_counts": np.array([-1, 2])}, "labeled_counts"),
        ({"budget": 0}, "budget"),
        ({"budget": 2.5}, "budget"),
        ({"cycle": 0}, "cycle"),
        ({"initial_size": -1}, "initial_size"),
    ],
)
def test_class_targets_rejects_bad_arguments(kwargs, name):
    args = {"labeled_counts": np.array([1, 2]), "budget": 4, "cycle": 1, "initial_size": 3} | kwargs
    with pytest.raises(ValueError, match=name):
        class_targets(**args)


@pytest.mark.parametrize(
    ("counts", "score"),
    [([4, 4, 4, 4], 0.0), ([0, 0, 7, 0], 1.0), ([0, 0, 0], 0.0), ([3], 0.0), ([2, 0], 1.0), ([3, 1], 0.5),
     ([2.5, 2.5], 0.0)],
)
def test_l1_score_by_hand(counts, score):
    assert l1_score(np.array(counts)) == pytest.approx(score)


def test_l1_score_in_unit_interval():
    rng = np.random.default_rng(0)
    for _ in range(50):
        assert 0.0 <= l1_score(rng.integers(0, 20, size=rng.integers(2, 10))) <= 1.0


def test_expected_counts_is_p_transpose_z():
    probs = np.random.default_rng(1).dirichlet(np.ones(4), size=10)
    z = np.zeros(10)
    z[[1, 4, 7]] = 1
    np.testing.assert_allclose(expected_counts(probs, np.array([1, 4, 7])), probs.T @ z)


def test_summary_is_flat_scalars():
    probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])
    sel = top_b(np.array([0.0, -1.0, -2.0]), 2, probs, np.array([1.0, 1.0]), lam=2.0)
    summary = sel.summary()
    assert isinstance(sel, Selection)
    assert set(summary) == {
        "objective", "cost_term", "balance_term", "l1_deviation", "lower_bound", "gap", "status", "fallback",
        "lam", "build_seconds", "lp_seconds", "search_seconds", "solve_seconds",
    }
    assert all(isinstance(v, (int, float, str)) for v in summary.values())
    assert summary["fallback"] == "none" and summary["status"] == "TOP_B"
    assert sel.objective == pytest.approx(-3.0 + 2.0 * 0.6)  # E = [0.7, 1.3] -> L1 = 0.6
    assert sel.balance_term == pytest.approx(2.0 * sel.l1_deviation)


@pytest.mark.parametrize(
    "module", ["targets", "balance", "result", "baselines", "engine", "lp", "rounding", "exact", "selectors"]
)
def test_doctests(module):
    mod = importlib.import_module(f"cbal_lightning.selection.{module}")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
