"""KCenterGreedy(-CB) and BADGE against direct implementations of their definitions on small inputs."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from cbal_lightning.selection import _greedy, badge, kcenter
from cbal_lightning.selection._greedy import GreedyL1
from cbal_lightning.selection.badge import Badge, badge_select, gradient_factors
from cbal_lightning.selection.kcenter import KCenterGreedy, kcenter_greedy


def _data(seed: int, n: int = 60, n_labeled: int = 7, dim: int = 5, n_classes: int = 4):
    rng = np.random.default_rng(seed)
    pool = rng.standard_normal((n, dim)).astype(np.float32)
    labeled = rng.standard_normal((n_labeled, dim)).astype(np.float32)
    logits = rng.standard_normal((n, n_classes)) * 2 + np.array([2.0, 0.5, 0.0, -1.0])[:n_classes]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return pool, labeled, probs


def _reference_kcenter(pool, labeled, budget, probs=None, omega=None, lam=0.0, scale=1.0):
    """Algorithm 2 literally: full N x (L + i) distance matrix D, min over its rows, brute-force L1 per candidate."""
    pool, labeled = pool.astype(np.float64), labeled.astype(np.float64)
    dist = np.linalg.norm(pool[:, None] - labeled[None], axis=2) / scale
    picked: list[int] = []
    for _ in range(budget):
        d = dist.min(axis=1)
        objective = -d
        if lam > 0:
            residual = omega - probs[picked].sum(axis=0)
            objective = objective + lam * np.abs(residual[None] - probs).sum(axis=1)
        objective[picked] = np.inf
        j = int(np.argmin(objective))
        picked.append(j)
        dist = np.column_stack([dist, np.linalg.norm(pool - pool[j], axis=1) / scale])
    return np.sort(picked)


def _reference_badge(probs, embeddings, budget, seed):
    """k-means++ seeding on explicitly materialised (N, C*d) gradient embeddings."""
    grads = (gradient_factors(probs)[:, :, None] * embeddings.astype(np.float64)[:, None, :]).reshape(len(probs), -1)
    rng = np.random.default_rng(seed)
    picked = [int(np.argmax((grads**2).sum(axis=1)))]
    d2 = ((grads - grads[picked[0]]) ** 2).sum(axis=1)
    for _ in range(budget - 1):
        d2[picked] = 0.0
        cumulative = np.cumsum(d2)
        j = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
        picked.append(j)
        d2 = np.minimum(d2, ((grads - grads[j]) ** 2).sum(axis=1))
    return np.sort(picked)


@pytest.mark.parametrize("seed", range(4))
def test_kcenter_matches_definition(seed):
    pool, labeled, _ = _data(seed)
    np.testing.assert_array_equal(kcenter_greedy(pool, labeled, 12).indices, _reference_kcenter(pool, labeled, 12))


@pytest.mark.parametrize(("seed", "lam"), [(0, 0.3), (1, 1.0), (2, 3.0), (3, 10.0)])
def test_kcenter_cb_matches_algorithm_2(seed, lam):
    pool, labeled, probs = _data(seed)
    omega = np.array([1.0, 4.0, 4.0, 3.0])
    chosen = kcenter_greedy(pool, labeled, 12, probs=probs, omega=omega, lam=lam)
    np.testing.assert_array_equal(chosen.indices, _reference_kcenter(pool, labeled, 12, probs, omega, lam))
    assert math.isclose(chosen.l1_deviation, np.abs(omega - probs[chosen.indices].sum(axis=0)).sum())


def test_kcenter_cb_reduces_to_plain_at_small_lam():
    pool, labeled, probs = _data(5)
    plain = kcenter_greedy(pool, labeled, 15)
    for lam in (0.0, 1e-9):
        cb = kcenter_greedy(pool, labeled, 15, probs=probs, omega=np.full(4, 15 / 4), lam=lam)
        np.testing.assert_array_equal(cb.indices, plain.indices)


def test_kcenter_cb_large_lam_balances():
    pool, labeled, probs = _data(6, n=300)
    omega = np.full(4, 10.0)
    plain = kcenter_greedy(pool, labeled, 40, probs=probs, omega=omega)
    balanced = kcenter_greedy(pool, labeled, 40, probs=probs, omega=omega, lam=100.0)
    assert balanced.l1_deviation < 0.3 * plain.l1_deviation


def test_kcenter_chunking_invariance():
    pool, labeled, probs = _data(7, n=50, n_labeled=23)
    omega = np.full(4, 3.0)
    for lam in (0.0, 2.0):
        big = kcenter_greedy(pool, labeled, 12, probs=probs, omega=omega, lam=lam)
        small = kcenter_greedy(pool, labeled, 12, probs=probs, omega=omega, lam=lam, chunk_size=3)
        np.testing.assert_array_equal(small.indices, big.indices)
        assert math.isclose(small.cost_term, big.cost_term, rel_tol=1e-5)


def test_kcenter_normalize_and_no_labeled_set():
    pool, labeled, probs = _data(8)
    omega = np.full(4, 3.0)
    dist = np.linalg.norm(pool[:, None].astype(np.float64) - labeled[None], axis=2)
    normalized = kcenter_greedy(pool, labeled, 12, probs=probs, omega=omega, lam=1.0, normalize=True)
    expected = _reference_kcenter(pool, labeled, 12, probs, omega, 1.0, scale=dist.min(axis=1).max())
    np.testing.assert_array_equal(normalized.indices, expected)
    assert -12 <= normalized.cost_term <= 0
    np.testing.assert_array_equal(kcenter_greedy(pool, labeled, 12, normalize=True).indices,
                                  kcenter_greedy(pool, labeled, 12).indices)
    for empty in (None, np.zeros((0, 5), np.float32)):  # no labeled set: first pick farthest from the pool mean
        np.testing.assert_array_equal(kcenter_greedy(pool, empty, 12).indices, _reference_no_labeled(pool, 12))


def _reference_no_labeled(pool, budget):
    pool = pool.astype(np.float64)
    first = int(np.argmax(np.linalg.norm(pool - pool.mean(axis=0), axis=1)))
    return np.sort(np.r_[first, _reference_kcenter(pool, pool[[first]], budget - 1)])


def test_greedy_l1_matches_brute_force():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(6, 0.3), size=80)
    omega = np.array([0.0, 0.4, 2.5, 6.0, 1.0, 3.0])  # closed, middle and open classes from the start
    tracker, residual = GreedyL1(probs, omega), omega.copy()
    for j in rng.permutation(80)[:30]:
        np.testing.assert_allclose(tracker.candidate_l1(), np.abs(residual[None] - probs).sum(axis=1), atol=1e-9)
        tracker.add(int(j))
        residual -= probs[j]


def test_selection_statistics():
    pool, labeled, probs = _data(9)
    chosen = kcenter_greedy(pool, labeled, 10, probs=probs, omega=np.full(4, 2.5), lam=0.5)
    assert chosen.status == "GREEDY" and math.isnan(chosen.lower_bound)
    assert math.isclose(chosen.objective, chosen.cost_term + 0.5 * chosen.l1_deviation)
    assert chosen.cost_term < 0 and chosen.summary()["status"] == "GREEDY"


@pytest.mark.parametrize("seed", range(4))
def test_badge_matches_kmeanspp_on_explicit_gradients(seed):
    _, _, probs = _data(seed, n=40)
    embeddings = np.random.default_rng(seed + 10).standard_normal((40, 6)).astype(np.float32)
    chosen = badge_select(probs, embeddings, 10, seed=seed)
    assert chosen.indices.size == 10 and np.unique(chosen.indices).size == 10
    np.testing.assert_array_equal(chosen.indices, _reference_badge(probs, embeddings, 10, seed))


def test_balanced_badge():
    _, _, probs = _data(11, n=200)
    embeddings = np.random.default_rng(1).standard_normal((200, 8)).astype(np.float32)
    omega = np.full(4, 5.0)
    plain = badge_select(probs, embeddings, 20, seed=3)
    np.testing.assert_array_equal(badge_select(probs, embeddings, 20, omega=omega, lam=0.0, seed=3).indices,
                                  plain.indices)
    plain_l1 = np.mean([badge_select(probs, embeddings, 20, omega=omega, seed=s).l1_deviation for s in range(3)])
    tilted = [badge_select(probs, embeddings, 20, omega=omega, lam=20.0, seed=s) for s in range(3)]
    assert all(np.unique(t.indices).size == 20 for t in tilted)
    assert np.mean([t.l1_deviation for t in tilted]) < 0.5 * plain_l1


def test_badge_duplicates_fall_back_to_uniform():
    probs = np.tile([[0.7, 0.3]], (5, 1))
    embeddings = np.ones((5, 3), np.float32)  # every gradient embedding coincides: D^2 = 0 after the first pick
    chosen = badge_select(probs, embeddings, 3, seed=1)
    assert chosen.indices.size == 3 and 0 in chosen.indices


def test_selectors():
    pool, labeled, probs = _data(12)
    omega = np.full(4, 2.0)
    assert KCenterGreedy.needs_embeddings and Badge.needs_embeddings
    selected = KCenterGreedy(lam=1.0).select(None, probs, 8, omega, embeddings=pool, labeled_embeddings=labeled)
    np.testing.assert_array_equal(selected.indices,
                                  kcenter_greedy(pool, labeled, 8, probs=probs, omega=omega, lam=1.0).indices)
    badge = Badge(lam=1.0).select(None, probs, 8, omega, seed=4, embeddings=pool, labeled_embeddings=labeled)
    np.testing.assert_array_equal(badge.indices, badge_select(probs, pool, 8, omega=omega, lam=1.0, seed=4).indices)


def test_bad_inputs_name_the_argument():
    pool, labeled, probs = _data(13)
    omega = np.full(4, 2.0)
    with pytest.raises(ValueError, match="embeddings"):
        KCenterGreedy().select(None, probs, 5, omega, labeled_embeddings=labeled)
    with pytest.raises(ValueError, match="embeddings"):
        Badge().select(None, probs, 5, omega)
    with pytest.raises(ValueError, match="embeddings"):
        badge_select(probs, pool[:-1], 5)
    with pytest.raises(ValueError, match="labeled_embeddings"):
        kcenter_greedy(pool, labeled[:, :3], 5)
    with pytest.raises(ValueError, match="embeddings"):
        kcenter_greedy(pool[:, 0], labeled, 5)
    with pytest.raises(ValueError, match="probs"):
        kcenter_greedy(pool, labeled, 5, probs=probs[:-1], omega=omega, lam=1.0)
    with pytest.raises(ValueError, match="omega"):
        kcenter_greedy(pool, labeled, 5, probs=probs, lam=1.0)
    with pytest.raises(ValueError, match="omega"):
        badge_select(probs, pool, 5, lam=1.0)
    for call in (lambda: kcenter_greedy(pool, labeled, 61), lambda: badge_select(probs, pool, 61)):
        with pytest.raises(ValueError, match="budget"):
            call()
    with pytest.raises(ValueError, match="chunk_size"):
        kcenter_greedy(pool, labeled, 5, chunk_size=0)
    with pytest.raises(ValueError, match="lam"):
        kcenter_greedy(pool, labeled, 5, probs=probs, omega=omega, lam=-1.0)


@pytest.mark.parametrize("module", [_greedy, kcenter, badge])
def test_doctests(module):
    assert doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0
