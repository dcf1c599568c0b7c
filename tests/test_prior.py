"""Label-shift correction: pool-prior estimators, the corrected posteriors, selectors and the fallback."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cbal_lightning.selection import ClassBalanced, KCenterGreedy, kcenter_greedy
from cbal_lightning.selection.badge import Badge, badge_select
from cbal_lightning.selection.prior import (
    MIN_LABELS_PER_CLASS,
    PRIOR_FLOOR,
    PriorShift,
    PriorTracker,
    revealed_shift,
    bbse_prior,
    correct_posteriors,
    fit_calibration,
    label_prior,
    mlls_prior,
    revealed_prior,
)

MEANS = np.array([-2.0, 0.0, 2.0])  # x | y ~ N(MEANS[y], 1), three classes
TARGET = np.array([0.7, 0.2, 0.1])  # the pool's prior; the labeled data is balanced


def sample(n: int, prior: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.choice(len(prior), n, p=prior)
    return rng.normal(MEANS[y], 1.0), y


def model_probs(x: np.ndarray, overconfidence: float = 2.0) -> np.ndarray:
    """An overconfident model trained under a uniform prior: the Bayes posterior's logits times ``overconfidence``."""
    logits = -0.5 * (x[:, None] - MEANS) ** 2 * overconfidence
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def tv(a: np.ndarray, b: np.ndarray) -> float:
    return float(0.5 * np.abs(np.asarray(a) - np.asarray(b)).sum())


def mean_error(estimate, n: int, reps: int = 6) -> float:
    errors = []
    for rep in range(reps):
        rng = np.random.default_rng(1000 * n + rep)
        x_held, y_held = sample(n, np.full(3, 1 / 3), rng)
        x_pool, _ = sample(4 * n, TARGET, rng)
        errors.append(tv(estimate(model_probs(x_held), y_held, model_probs(x_pool)), TARGET))
    return float(np.mean(errors))


@pytest.mark.parametrize(
    "estimate",
    [
        lambda ph, yh, pp: mlls_prior(pp, label_prior(yh, 3), calibration=fit_calibration(ph, yh)),
        lambda ph, yh, pp: bbse_prior(ph, yh, pp),
    ],
    ids=["mlls-bcts", "bbse"],
)
def test_estimators_converge_to_the_true_prior(estimate) -> None:
    errors = [mean_error(estimate, n) for n in (60, 600, 6000)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.02


def test_calibration_repairs_what_plain_em_gets_wrong() -> None:
    rng = np.random.default_rng(0)
    x_held, y_held = sample(3000, np.full(3, 1 / 3), rng)
    x_pool, _ = sample(12000, TARGET, rng)
    held, pool = model_probs(x_held), model_probs(x_pool)
    plain = mlls_prior(pool, np.full(3, 1 / 3))
    calibrated = mlls_prior(pool, label_prior(y_held, 3), calibration=fit_calibration(held, y_held))
    assert tv(calibrated, TARGET) < 0.02 < tv(plain, TARGET)


def test_fit_calibration_finds_the_temperature() -> None:
    rng = np.random.default_rng(1)
    x, y = sample(5000, np.full(3, 1 / 3), rng)
    calibration = fit_calibration(model_probs(x, overconfidence=2.0), y)
    assert calibration.temperature == pytest.approx(2.0, rel=0.1)
    assert np.abs(calibration.bias).max() < 0.1  # no prior shift between the fit data and the model's prior


def test_revealed_prior_is_consistent_despite_a_selection_on_x() -> None:
    """The batch is chosen by a function of x (most uncertain first), so p(y|x) of the pool is unchanged."""
    errors = []
    for n in (300, 3000, 30000):
        rng = np.random.default_rng(n)
        x, y = sample(n, TARGET, rng)
        probs = model_probs(x)
        entropy = -(probs * np.log(probs)).sum(1)
        rows = np.argsort(-entropy)[: n // 5]
        rest = np.setdiff1d(np.arange(n), rows)
        errors.append(tv(revealed_prior(probs, rows, y[rows]), label_prior(y[rest], 3)))
    assert errors[0] > errors[2] and errors[2] < 0.02
    naive = label_prior(y[rows], 3)  # the batch's own labels are a biased estimate
    assert tv(naive, TARGET) > 0.1


def test_correction_is_the_identity_when_the_priors_agree() -> None:
    probs = np.random.default_rng(2).dirichlet(np.ones(4), size=50).astype(np.float32)
    prior = np.array([0.1, 0.2, 0.3, 0.4])
    corrected = correct_posteriors(probs, prior, prior)
    assert corrected.dtype == np.float32
    np.testing.assert_allclose(corrected, probs, rtol=1e-6)
    np.testing.assert_allclose(correct_posteriors(probs, [1, 1, 1, 1], [0.25] * 4), probs, rtol=1e-6)


def test_correction_follows_bayes_rule() -> None:
    probs = np.array([[0.5, 0.5], [0.8, 0.2]])
    corrected = correct_posteriors(probs, np.array([0.9, 0.1]), np.array([0.5, 0.5]))
    np.testing.assert_allclose(corrected, [[0.9, 0.1], [0.8 * 0.9 / (0.8 * 0.9 + 0.2 * 0.1), 0.2 * 0.1 / 0.74]])
    with pytest.raises(ValueError, match="pool_prior"):
        correct_posteriors(probs, np.array([0.5, -0.5]), np.array([0.5, 0.5]))


def test_tracker_falls_back_when_labels_are_too_few() -> None:
    rng = np.random.default_rng(3)
    x, y = sample(2 * MIN_LABELS_PER_CLASS, np.full(3, 1 / 3), rng)  # fewer than 5 per class on average
    pool = model_probs(sample(500, TARGET, rng)[0])
    tracker = PriorTracker()
    shift = tracker.shift(np.full(3, 1 / 3), pool, model_probs(x), y)
    assert shift.pool_prior is None and "fewer than 5 per class" in shift.reason
    np.testing.assert_array_equal(shift.correct(pool), pool)
    # a batch too small to re-estimate from, and nothing to carry forward: still no estimate, no crash
    tracker.observe(pool, np.arange(4), np.array([0, 1, 2, 0]))
    assert tracker.pool_prior is None


def test_tracker_carries_an_estimate_forward_less_the_revealed_counts() -> None:
    tracker = PriorTracker()
    tracker.pool_prior, tracker.method = np.array([0.5, 0.5]), "given"
    tracker.observe(np.full((100, 2), 0.5), np.arange(4), np.array([0, 0, 0, 0]))  # too few to re-estimate
    np.testing.assert_allclose(tracker.pool_prior, [46 / 96, 50 / 96])
    restored = PriorTracker()
    restored.load_state_dict(tracker.state_dict())
    np.testing.assert_allclose(restored.pool_prior, tracker.pool_prior)
    assert restored.method == "given"


def test_tracker_uses_held_out_labels_then_revealed_ones() -> None:
    rng = np.random.default_rng(4)
    x_held, y_held = sample(300, np.full(3, 1 / 3), rng)
    x_pool, y_pool = sample(3000, TARGET, rng)
    pool = model_probs(x_pool)
    tracker = PriorTracker()
    shift = tracker.shift(np.full(3, 1 / 3), pool, model_probs(x_held), y_held)
    uncorrected = tv(np.full(3, 1 / 3), label_prior(y_pool, 3))
    assert shift.method == "mlls-bcts" and tv(shift.pool_prior, label_prior(y_pool, 3)) < uncorrected / 4
    rows = np.argsort(pool.max(1))[:300]  # the least confident, as uncertainty sampling picks
    tracker.observe(pool, rows, y_pool[rows])
    assert tracker.method == "revealed"
    later = tracker.shift(np.full(3, 1 / 3), pool)
    remaining = label_prior(np.delete(y_pool, rows), 3)
    assert later.method == "revealed" and tv(later.pool_prior, remaining) < uncorrected / 4


def test_revealed_posteriors_follow_the_pool_samples_to_the_next_query() -> None:
    rng = np.random.default_rng(5)
    x, y = sample(600, TARGET, rng)
    pool, indices = model_probs(x).astype(np.float32), rng.permutation(10_000)[:600]  # train indices, any order
    rows = rng.choice(600, 90, replace=False)
    tracker = PriorTracker()
    tracker.observe(pool, rows, y[rows], indices)
    left = np.setdiff1d(np.arange(600), rows)
    kept = tracker.posteriors
    assert kept is not None and np.array_equal(kept.indices, np.sort(indices[left]))
    want = fit_calibration(pool[rows], y[rows]).apply(pool[left])[np.argsort(indices[left])]
    np.testing.assert_allclose(kept.probs, want, atol=1e-6)
    # the next query's pool: what was left, shuffled, and one sample that was never scored before
    order = rng.permutation(left)
    new = model_probs(np.array([0.3]))
    pool2 = np.concatenate([pool[order], new]).astype(np.float32)
    indices2 = np.concatenate([indices[order], [99_999]])
    shift = tracker.shift(np.full(3, 1 / 3), pool2, pool_indices=indices2)
    np.testing.assert_allclose(shift.calibrated[:-1], fit_calibration(pool[rows], y[rows]).apply(pool[order]), atol=1e-6)
    np.testing.assert_allclose(shift.calibrated[-1], correct_posteriors(new, tracker.pool_prior, np.full(3, 1 / 3))[0], atol=1e-6)
    np.testing.assert_array_equal(shift.correct(pool2), shift.calibrated)  # what the balance term counts
    assert tracker.shift(np.full(3, 1 / 3), pool2).calibrated is None  # no indices: the prior alone
    with pytest.raises(ValueError, match="pool_indices"):
        tracker.shift(np.full(3, 1 / 3), pool2, pool_indices=indices2[:3])
    with pytest.raises(ValueError, match="PriorShift.rows"):
        shift.correct(pool2[:5])
    np.testing.assert_allclose(shift.rows(np.arange(5)).correct(pool2[:5]), shift.correct(pool2)[:5])
    # state: round trip, checked when loaded, dropped when a batch is too small to re-estimate from
    restored = PriorTracker()
    restored.load_state_dict(tracker.state_dict())
    np.testing.assert_array_equal(restored.posteriors.probs, kept.probs)
    bad = tracker.state_dict() | {"posteriors": {"indices": kept.indices[::-1], "probs": kept.probs}}
    with pytest.raises(ValueError, match="posteriors"):
        PriorTracker().load_state_dict(bad)
    tracker.observe(pool2, np.arange(4), np.array([0, 0, 1, 2]), indices2)
    assert tracker.posteriors is None and tracker.method == "revealed"


def test_pool_calibrated_posteriors_mend_a_confusion_the_prior_leaves() -> None:
    # The model that chose the revealed batch is calibrated on it; the retrained model takes half of class 1 for the
    # rare class 2, confidently (a class-pair confusion, not a prior). Asked for class 2, the prior correction alone
    # picks those; counting the pool-calibrated posteriors instead, the batch holds true class 2.
    rng = np.random.default_rng(6)
    x, y = sample(3000, np.array([0.6, 0.3, 0.1]), rng)
    before = model_probs(x, overconfidence=1.0)
    rows = rng.choice(3000, 300, replace=False)
    tracker = PriorTracker()
    tracker.observe(before, rows, y[rows], np.arange(3000))
    left = np.setdiff1d(np.arange(3000), rows)
    after = model_probs(x[left], overconfidence=1.0)
    confused = (y[left] == 1) & (rng.random(left.size) < 0.5)
    after[confused] = [0.0005, 0.0005, 0.999]
    shift = tracker.shift(np.full(3, 1 / 3), after, pool_indices=left)
    picks = {}
    for name, used in (("prior", replace(shift, calibrated=None)), ("calibrated", shift)):
        chosen = ClassBalanced(lam=20.0, time_limit=5.0).select(np.zeros(left.size), after, 60, np.array([0.0, 0.0, 60.0]),
                                                                 prior_shift=used).indices
        picks[name] = int((y[left][chosen] == 2).sum())
    assert picks["calibrated"] >= picks["prior"] + 30, picks


def test_revealed_shift_calibrates_every_row() -> None:
    rng = np.random.default_rng(7)
    x, y = sample(800, TARGET, rng)
    probs, rows = model_probs(x), rng.choice(800, 120, replace=False)
    shift = revealed_shift(probs, rows, y[rows], np.full(3, 1 / 3), "pilot")
    np.testing.assert_allclose(shift.pool_prior, revealed_prior(probs, rows, y[rows]))
    assert shift.calibrated.dtype == np.float32 and shift.method == "pilot"
    np.testing.assert_allclose(shift.calibrated, fit_calibration(probs[rows], y[rows]).apply(probs), atol=1e-6)


def test_class_balanced_corrects_only_when_asked() -> None:
    # The model thinks the pool is balanced; the pool is 90 % class 0.
    probs = np.array([[0.6, 0.4]] * 6 + [[0.4, 0.6]] * 6)
    scores = np.linspace(1.0, 0.9, 12)
    shift = PriorShift(np.array([0.9, 0.1]), np.array([0.5, 0.5]), method="test")
    omega = np.array([0.0, 4.0])  # only class 1 is missing
    paper = ClassBalanced(lam=10.0, prior=None).select(scores, probs, 4, omega, prior_shift=shift)
    corrected = ClassBalanced(lam=10.0).select(scores, probs, 4, omega, prior_shift=shift)
    unknown = ClassBalanced(lam=10.0).select(scores, probs, 4, omega, prior_shift=PriorShift(None, np.array([0.5, 0.5]), "none"))
    np.testing.assert_array_equal(unknown.indices, paper.indices)  # the fallback is the paper's Eq. 8
    assert paper.expected_counts[1] == pytest.approx(2.4)
    assert corrected.expected_counts[1] == pytest.approx(
        correct_posteriors(probs[corrected.indices], shift.pool_prior, shift.train_prior)[:, 1].sum()
    )


def test_given_prior_and_bad_prior_arguments() -> None:
    shift = PriorShift(None, np.array([0.5, 0.5]), "none")
    selector = ClassBalanced(prior=[9, 1])
    assert selector.prior == (0.9, 0.1)
    np.testing.assert_allclose(selector.balance_probs(np.array([[0.5, 0.5]]), shift), [[0.9, 0.1]])
    # outside the callback (no prior_shift) a known prior is taken against a uniform labeled prior
    np.testing.assert_allclose(selector.balance_probs(np.array([[0.5, 0.5]]), None), [[0.9, 0.1]])
    assert ClassBalanced().balance_probs(np.array([[0.5, 0.5]]), None).tolist() == [[0.5, 0.5]]  # nothing to estimate
    for bad in ("oracle", [1.0], [0.5, -0.5], [np.nan, 1.0]):
        with pytest.raises(ValueError, match="prior"):
            ClassBalanced(prior=bad)


def test_greedy_balanced_selectors_count_corrected_posteriors() -> None:
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(3), size=40)
    emb = rng.normal(size=(40, 4)).astype(np.float32)
    omega = np.array([2.0, 2.0, 2.0])
    shift = PriorShift(np.array([0.8, 0.1, 0.1]), np.full(3, 1 / 3), "test")
    corrected = shift.correct(probs)
    got = KCenterGreedy(lam=5.0).select(None, probs, 6, omega, embeddings=emb, labeled_embeddings=emb[:2], prior_shift=shift)
    want = kcenter_greedy(emb, emb[:2], 6, probs=corrected, omega=omega, lam=5.0)
    np.testing.assert_array_equal(got.indices, want.indices)
    paper = KCenterGreedy(lam=5.0, prior=None).select(None, probs, 6, omega, embeddings=emb, labeled_embeddings=emb[:2],
                                                      prior_shift=shift)
    np.testing.assert_array_equal(paper.indices, kcenter_greedy(emb, emb[:2], 6, probs=probs, omega=omega, lam=5.0).indices)
    got = Badge(lam=5.0).select(None, probs, 6, omega, embeddings=emb, seed=1, prior_shift=shift)
    want = badge_select(probs, emb, 6, omega=omega, lam=5.0, seed=1, balance_probs=corrected)
    np.testing.assert_array_equal(got.indices, want.indices)


def test_held_out_estimate_keeps_every_class_selectable() -> None:
    """The EM can put a class at exactly zero; the tracker floors it at PRIOR_FLOOR / C."""
    rng = np.random.default_rng(6)
    x_held, y_held = sample(300, np.full(3, 1 / 3), rng)
    x_pool, _ = sample(3000, np.array([0.6, 0.4, 0.0]), rng)  # no class 2 at all in the pool
    pool = model_probs(x_pool)
    assert mlls_prior(pool, label_prior(y_held, 3), calibration=fit_calibration(model_probs(x_held), y_held))[2] < 1e-3
    shift = PriorTracker().shift(np.full(3, 1 / 3), pool, model_probs(x_held), y_held)
    assert shift.pool_prior[2] == pytest.approx(PRIOR_FLOOR / 3, rel=0.05)
    assert (shift.correct(pool)[:, 2] > 0).all()
