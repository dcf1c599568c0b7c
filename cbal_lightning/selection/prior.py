"""Label shift between the labeled set and the unlabeled pool: estimate the pool's class prior, correct P.

A model trained on a class-balanced labeled set carries a near-uniform class prior ``p_L(y)`` in its softmax
``P``, while a long-tailed pool has another prior ``q(y)``. Eq. 8 treats ``P`` as the pool's posterior, so it
balances ``P^T z`` while the true labels stay skewed. Under label shift (``p(x|y)`` shared, priors differ) the
pool posterior is (Saerens et al., 2002)::

    p'(y|x) = p(y|x) q(y) / p_L(y)  /  sum_k p(k|x) q(k) / p_L(k)

Estimators of ``q`` without pool labels, all numpy/scipy (no torch):

* :func:`mlls_prior`: maximum-likelihood label shift, the EM of Saerens et al., on posteriors calibrated with
  bias-corrected temperature scaling (BCTS, :func:`fit_calibration`) on held-out labeled predictions, as
  Alexandari et al. (ICML 2020) recommend.
* :func:`bbse_prior`: black-box shift estimation (Lipton et al., ICML 2018), a confusion matrix from held-out
  labeled predictions, inverted with non-negative least squares.
* :func:`revealed_prior`: the labels a query revealed. The batch was chosen by a function of ``x`` alone, so
  it leaves ``p(y|x)`` of the pool unchanged: BCTS fitted on the batch's predictions and revealed labels is a
  calibration *on pool data*, and the mean of the calibrated posteriors over the pool it was chosen from,
  minus the batch's revealed counts, estimates the prior of what remains.

Once labels were revealed, the balance term counts the posteriors of the model that chose the revealed
samples, calibrated on them (:func:`revealed_shift`, :meth:`PriorShift.correct`): a calibration out of sample,
on pool data. ``P`` of the model trained on those samples can only be corrected for the prior, and on
CIFAR-10-LT its class-pair confusions (cats counted as the tail class dog) were what that correction left.

``docs/prior.md`` has the measurements that chose between them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import minimize, nnls

__all__ = [
    "MIN_LABELS_PER_CLASS",
    "PRIOR_FLOOR",
    "Calibration",
    "PriorShift",
    "PriorTracker",
    "PoolPosteriors",
    "fit_calibration",
    "mlls_prior",
    "bbse_prior",
    "revealed_prior",
    "revealed_shift",
    "correct_posteriors",
    "label_prior",
]

MIN_LABELS_PER_CLASS = 5
"""Calibration sets smaller than this many labels per class (on average) give no estimate: the selector then
falls back to the uncorrected ``P`` and says why."""

PRIOR_FLOOR = 0.1
"""The held-out (MLLS) estimate keeps every class at ``PRIOR_FLOOR / C`` at least: on a small calibration set the EM
can put a class at exactly zero, which would make it unselectable (measured on CIFAR-10-LT, docs/prior.md)."""

_EPS = 1e-12
_CHUNK = 16384  # rows per block when a pass over the pool must not copy all of P


def _log_probs(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), _EPS, None))


def _check_probs(probs: np.ndarray, name: str = "probs") -> np.ndarray:
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[0] == 0 or probs.shape[1] < 2:
        raise ValueError(f"{name}: expected a non-empty (N, C) array of class probabilities with C >= 2, got shape {probs.shape}")
    return probs


def _check_prior(prior: np.ndarray, num_classes: int, name: str) -> np.ndarray:
    prior = np.asarray(prior, dtype=np.float64).reshape(-1)
    if prior.shape != (num_classes,) or not np.isfinite(prior).all() or (prior < 0).any() or prior.sum() <= 0:
        raise ValueError(f"{name}: expected {num_classes} non-negative finite class weights, got {prior!r}")
    return prior / prior.sum()


def _check_labels(labels: np.ndarray, n: int, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels).reshape(-1)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels: expected {n} integer class indices, got shape {labels.shape}, dtype {labels.dtype}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels: class indices must lie in 0..{num_classes - 1}")
    return labels.astype(np.int64)


def _check_indices(indices: np.ndarray, n: int) -> np.ndarray:
    indices = np.asarray(indices).reshape(-1)
    if indices.shape != (n,) or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"pool_indices: expected {n} integer train indices (one per row of pool_probs), got shape "
                         f"{indices.shape}, dtype {indices.dtype}")
    return indices.astype(np.int64)


def label_prior(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """The class distribution of ``labels`` (uniform when there are none).

    Example:
        >>> label_prior(np.array([0, 0, 1, 2]), 3)
        array([0.5 , 0.25, 0.25])
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64).reshape(-1), minlength=num_classes).astype(np.float64)
    return counts / counts.sum() if counts.sum() > 0 else np.full(num_classes, 1.0 / num_classes)


@dataclass(frozen=True)
class Calibration:
    """Bias-corrected temperature scaling: ``p_cal(y|x) = softmax(log p(y|x) / temperature + bias)``."""

    temperature: float
    bias: np.ndarray  # (C,), bias[0] = 0

    def apply(self, probs: np.ndarray, dtype: type = np.float64) -> np.ndarray:
        """Calibrated probabilities (same shape, ``dtype``), block by block."""
        probs = _check_probs(probs)
        out = np.empty(probs.shape, dtype=dtype)
        for start in range(0, len(probs), _CHUNK):
            logits = _log_probs(probs[start : start + _CHUNK]) / self.temperature + self.bias
            logits -= logits.max(axis=1, keepdims=True)
            block = np.exp(logits)
            out[start : start + _CHUNK] = block / block.sum(axis=1, keepdims=True)
        return out

    def mean(self, probs: np.ndarray) -> np.ndarray:
        """Column mean of :meth:`apply`, block by block (no full copy of a large ``probs``)."""
        probs = _check_probs(probs)
        total = np.zeros(probs.shape[1])
        for start in range(0, len(probs), _CHUNK):
            total += self.apply(probs[start : start + _CHUNK]).sum(axis=0)
        return total / len(probs)


def fit_calibration(
    probs: np.ndarray, labels: np.ndarray, *, temperature: bool = True, l2: float = 1e-3
) -> Calibration:
    """Fit BCTS (Alexandari et al., 2020) by minimising the negative log-likelihood of ``labels``.

    ``C + 1`` parameters (a temperature and ``C - 1`` free class biases); ``l2`` is a small ridge on the biases
    so that a class absent from ``labels`` gets a large negative bias instead of an infinite one.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> labels = rng.integers(0, 2, 400)
        >>> probs = np.where(labels[:, None] == np.arange(2), 0.7, 0.3)  # right 70 % of the time, but...
        >>> probs[rng.random(400) < 0.4] = [[0.7, 0.3]]                  # ...class 0 is favoured
        >>> cal = fit_calibration(probs, labels)
        >>> bool(cal.bias[1] > 0)
        True
    """
    probs = _check_probs(probs)
    n, num_classes = probs.shape
    labels = _check_labels(labels, n, num_classes)
    log_p = _log_probs(probs)
    onehot = np.zeros((n, num_classes))
    onehot[np.arange(n), labels] = 1.0

    def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
        inv_t = np.exp(-theta[0]) if temperature else 1.0
        bias = np.concatenate([[0.0], theta[1:]])
        z = log_p * inv_t + bias
        z -= z.max(axis=1, keepdims=True)
        soft = np.exp(z)
        norm = soft.sum(axis=1, keepdims=True)
        soft /= norm
        value = -(z[np.arange(n), labels] - np.log(norm[:, 0])).mean() + 0.5 * l2 * float(theta[1:] @ theta[1:])
        diff = (soft - onehot) / n
        grad = np.empty_like(theta)
        grad[0] = -(diff * log_p * inv_t).sum() if temperature else 0.0
        grad[1:] = diff.sum(axis=0)[1:] + l2 * theta[1:]
        return float(value), grad

    result = minimize(nll, np.zeros(num_classes), jac=True, method="L-BFGS-B")
    theta = result.x
    return Calibration(float(np.exp(theta[0])) if temperature else 1.0, np.concatenate([[0.0], theta[1:]]))


def mlls_prior(
    probs: np.ndarray,
    source_prior: np.ndarray,
    *,
    calibration: Calibration | None = None,
    max_iter: int = 1000,
    tol: float = 1e-8,
) -> np.ndarray:
    """Maximum-likelihood pool prior (the EM of Saerens et al.) from pool ``probs`` made under ``source_prior``.

    With ``calibration`` (fitted on held-out labeled data whose class distribution is ``source_prior``), the
    EM runs on calibrated posteriors: MLLS + BCTS.

    Example:
        >>> probs = np.array([[0.8, 0.2]] * 3 + [[0.2, 0.8]])  # three of four look like class 0
        >>> mlls_prior(probs, np.array([0.5, 0.5])).round(2)   # the EM sharpens that to a prior
        array([0.92, 0.08])
    """
    probs = _check_probs(probs)
    num_classes = probs.shape[1]
    source = _check_prior(source_prior, num_classes, "source_prior")
    base = calibration.apply(probs) if calibration is not None else np.asarray(probs, dtype=np.float64)
    base = base / np.clip(source, _EPS, None)  # p(y|x) / p_s(y): reweighted by q each step
    prior = source.copy()
    for _ in range(max_iter):
        weighted = base * prior
        new = (weighted / weighted.sum(axis=1, keepdims=True)).mean(axis=0)
        done = np.abs(new - prior).max() < tol
        prior = new
        if done:
            break
    return prior


def bbse_prior(heldout_probs: np.ndarray, heldout_labels: np.ndarray, pool_probs: np.ndarray) -> np.ndarray:
    """Black-box shift estimation (Lipton et al., 2018) with hard predictions.

    ``C[i, j] = P(predicted i | true j)`` from held-out labeled predictions; the pool's predicted-class
    distribution ``mu`` satisfies ``mu = C q`` under label shift; ``q`` is solved by non-negative least squares
    and normalised.

    Example:
        >>> held = np.array([[0.8, 0.2], [0.3, 0.7], [0.9, 0.1], [0.2, 0.8]])
        >>> bbse_prior(held, np.array([0, 1, 0, 1]), np.array([[0.7, 0.3]] * 3 + [[0.1, 0.9]]))
        array([0.75, 0.25])
    """
    heldout_probs = _check_probs(heldout_probs, "heldout_probs")
    pool_probs = _check_probs(pool_probs, "pool_probs")
    num_classes = heldout_probs.shape[1]
    labels = _check_labels(heldout_labels, len(heldout_probs), num_classes)
    predicted = heldout_probs.argmax(axis=1)
    confusion = np.zeros((num_classes, num_classes))
    np.add.at(confusion, (predicted, labels), 1.0)
    confusion /= np.clip(np.bincount(labels, minlength=num_classes), 1, None)
    mu = np.bincount(pool_probs.argmax(axis=1), minlength=num_classes) / len(pool_probs)
    prior, _ = nnls(confusion, mu)
    return prior / prior.sum() if prior.sum() > 0 else np.full(num_classes, 1.0 / num_classes)


def revealed_prior(probs: np.ndarray, rows: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Prior of the pool left after a query, from the labels the query revealed.

    ``probs`` are the model's posteriors on the whole pool at query time, ``rows`` the positions chosen and
    ``labels`` their revealed classes. BCTS fitted on ``probs[rows]`` against ``labels`` calibrates the model
    on pool data (the choice depended on ``x`` only); the calibrated posteriors summed over the pool, minus
    the revealed counts, are the expected class counts of what remains (each kept at half a sample at least).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> truth = (rng.random(4000) < 0.1).astype(int)                # 10 % class 1 in the pool
        >>> probs = np.where(truth[:, None] == np.arange(2), 0.6, 0.4)  # a weak model
        >>> rows = rng.choice(4000, 400, replace=False)
        >>> revealed_prior(probs, rows, truth[rows]).round(2)
        array([0.9, 0.1])
    """
    return _revealed(probs, rows, labels)[0]


def revealed_shift(
    probs: np.ndarray, rows: np.ndarray, labels: np.ndarray, train_prior: np.ndarray, method: str = "revealed"
) -> PriorShift:
    """The label shift after ``labels`` were revealed for ``probs[rows]``: :func:`revealed_prior`'s estimate, and
    every row of ``probs`` calibrated by the same fit (``calibrated``, float32), the posteriors the balance term
    counts (:meth:`PriorShift.correct`).

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.8, 0.2]] * 20)
        >>> shift = revealed_shift(probs, np.arange(80), np.array([0, 1, 1, 0] * 20), np.array([0.5, 0.5]))
        >>> shift.calibrated.shape, shift.method
        ((80, 2), 'revealed')
    """
    prior, calibration = _revealed(probs, rows, labels)
    return PriorShift(prior, train_prior, method, calibrated=calibration.apply(probs, np.float32))


def _revealed(probs: np.ndarray, rows: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, Calibration]:
    probs = _check_probs(probs)
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    labels = _check_labels(labels, len(rows), probs.shape[1])
    calibration = fit_calibration(probs[rows], labels)
    return _remaining_prior(calibration.mean(probs) * len(probs), labels), calibration


def _remaining_prior(expected_counts: np.ndarray, revealed: np.ndarray) -> np.ndarray:
    """Class prior of a pool with ``expected_counts`` per class once the ``revealed`` labels leave it (each class
    kept at half a sample at least)."""
    counts = np.maximum(expected_counts - np.bincount(revealed, minlength=len(expected_counts)), 0.5)
    return counts / counts.sum()


def correct_posteriors(probs: np.ndarray, pool_prior: np.ndarray, train_prior: np.ndarray) -> np.ndarray:
    """``p'(y|x) = p(y|x) q(y) / p_L(y)``, renormalised per row; keeps ``probs``' float dtype.

    The identity when ``pool_prior == train_prior``.

    Example:
        >>> correct_posteriors(np.array([[0.5, 0.5]]), np.array([0.9, 0.1]), np.array([0.5, 0.5]))
        array([[0.9, 0.1]])
    """
    probs = _check_probs(probs)
    num_classes = probs.shape[1]
    ratio = _check_prior(pool_prior, num_classes, "pool_prior") / np.clip(
        _check_prior(train_prior, num_classes, "train_prior"), _EPS, None
    )
    dtype = probs.dtype if np.issubdtype(probs.dtype, np.floating) else np.float64
    out = np.empty(probs.shape, dtype=dtype)
    for start in range(0, len(probs), _CHUNK):
        block = probs[start : start + _CHUNK] * ratio.astype(dtype)
        out[start : start + _CHUNK] = block / np.clip(block.sum(axis=1, keepdims=True), _EPS, None)
    return out


@dataclass(frozen=True)
class PriorShift:
    """What a selector needs to correct ``P`` for label shift: the pool's prior and the labeled set's, and, once
    labels were revealed, pool posteriors calibrated on them.

    ``pool_prior`` is ``None`` when no reliable estimate exists; ``reason`` then says why, and
    :meth:`correct` returns ``probs`` unchanged (the paper's Eq. 8). ``calibrated`` (optional): for the same rows
    as the ``probs`` :meth:`correct` is given, the posteriors of the model that chose the revealed labels,
    calibrated on them (:func:`revealed_shift`), which :meth:`correct` returns instead of correcting ``probs``;
    :meth:`rows` takes the rows of a part of the pool.

    Example:
        >>> shift = PriorShift(np.array([0.9, 0.1]), np.array([0.5, 0.5]), method="given")
        >>> shift.correct(np.array([[0.5, 0.5]]))
        array([[0.9, 0.1]])
        >>> replace(shift, calibrated=np.array([[0.7, 0.3]])).correct(np.array([[0.5, 0.5]]))
        array([[0.7, 0.3]])
    """

    pool_prior: np.ndarray | None
    train_prior: np.ndarray
    method: str
    reason: str = ""
    calibrated: np.ndarray | None = None

    def correct(self, probs: np.ndarray) -> np.ndarray:
        """The posteriors the balance term counts for ``probs``' rows: ``calibrated`` when given, else ``p'(y|x)``
        (above); in ``probs``' float dtype."""
        if self.pool_prior is None:
            return probs
        if self.calibrated is None:
            return correct_posteriors(probs, self.pool_prior, self.train_prior)
        probs = _check_probs(probs)
        if self.calibrated.shape != probs.shape:
            raise ValueError(f"PriorShift.calibrated has shape {self.calibrated.shape} but probs {probs.shape}: take "
                             "the rows of the part of the pool with PriorShift.rows(rows)")
        dtype = probs.dtype if np.issubdtype(probs.dtype, np.floating) else np.float64
        return self.calibrated.astype(dtype, copy=False)

    def rows(self, rows: np.ndarray) -> PriorShift:
        """The shift for ``probs[rows]``: ``calibrated`` restricted to those rows."""
        return self if self.calibrated is None else replace(self, calibrated=self.calibrated[rows])


@dataclass(frozen=True)
class PoolPosteriors:
    """Posteriors of pool samples by their train ``indices`` (sorted): what the tracker keeps between queries.

    Example:
        >>> kept = PoolPosteriors(np.array([3, 7]), np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32))
        >>> kept.take(np.array([7, 5, 3]))[1].tolist()  # found, and rows of 5: not kept
        [True, False, True]
    """

    indices: np.ndarray
    probs: np.ndarray

    def take(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(probs, found)``: the kept posteriors of ``indices`` (rows not kept: zeros) and which were kept."""
        pos = np.minimum(np.searchsorted(self.indices, indices), max(len(self.indices) - 1, 0))
        found = self.indices[pos] == indices if len(self.indices) else np.zeros(len(indices), dtype=bool)
        out = np.zeros((len(indices), self.probs.shape[1]), dtype=self.probs.dtype)
        out[found] = self.probs[pos[found]]
        return out, found


class PriorTracker:
    """The pool's class prior across the queries of a run, for the callback (state in :meth:`state_dict`).

    * The first query has no pool labels. Given held-out labeled predictions (the callback's opt-in
      ``calibration_fraction``), MLLS + BCTS (:func:`mlls_prior`) on them, every class kept at
      :data:`PRIOR_FLOOR` ``/ C`` at least; otherwise no estimate.
    * After every query, the revealed labels give the next estimate (:func:`revealed_prior`), and the
      calibrated posteriors of the pool left (``posteriors``, by train index, when :meth:`observe` is given the
      pool's indices): the next query's :class:`PriorShift` carries them for the samples still in the pool. A
      batch with fewer than :data:`MIN_LABELS_PER_CLASS` labels per class carries the previous estimate forward
      instead, less the revealed counts, without posteriors.
    * Without either, :meth:`shift` returns a :class:`PriorShift` with no pool prior and the reason, and the
      selector balances the uncorrected ``P``. An estimator that fails numerically does the same.

    Example:
        >>> tracker = PriorTracker()
        >>> tracker.shift(np.array([0.5, 0.5]), np.full((4, 2), 0.5)).reason
        'no held-out or revealed labels yet'
    """

    def __init__(self) -> None:
        self.pool_prior: np.ndarray | None = None
        self.method = "none"
        self.posteriors: PoolPosteriors | None = None

    @staticmethod
    def _enough(n_labels: int, num_classes: int) -> bool:
        return n_labels >= MIN_LABELS_PER_CLASS * num_classes

    def shift(
        self,
        train_prior: np.ndarray,
        pool_probs: np.ndarray,
        heldout_probs: np.ndarray | None = None,
        heldout_labels: np.ndarray | None = None,
        *,
        pool_indices: np.ndarray | None = None,
    ) -> PriorShift:
        """The label shift for this query: from the held-out labels when given, else the tracked estimate, with the
        kept posteriors of ``pool_indices`` (the train indices of ``pool_probs``' rows) when there are any; a row
        not kept gets its ``P`` corrected for the prior."""
        pool_probs = _check_probs(pool_probs, "pool_probs")
        num_classes = pool_probs.shape[1]
        train_prior = _check_prior(train_prior, num_classes, "train_prior")
        if heldout_labels is not None and len(heldout_labels) > 0:
            if not self._enough(len(heldout_labels), num_classes):
                return self._carried(train_prior, f"{len(heldout_labels)} held-out labels are fewer than "
                                     f"{MIN_LABELS_PER_CLASS} per class")
            try:
                calibration = fit_calibration(heldout_probs, heldout_labels)
                source = label_prior(heldout_labels, num_classes)
                prior = np.maximum(mlls_prior(pool_probs, source, calibration=calibration), PRIOR_FLOOR / num_classes)
                prior /= prior.sum()
            except (ValueError, FloatingPointError, np.linalg.LinAlgError) as err:
                return self._carried(train_prior, f"MLLS failed ({err})")
            if not np.isfinite(prior).all():
                return self._carried(train_prior, "MLLS gave a non-finite prior")
            self.pool_prior, self.method, self.posteriors = prior, "mlls-bcts", None
            return PriorShift(prior, train_prior, self.method)
        shift = self._carried(train_prior, "no held-out or revealed labels yet")
        if shift.pool_prior is None or self.posteriors is None or pool_indices is None:
            return shift
        if self.posteriors.probs.shape[1] != num_classes:
            raise ValueError(f"the tracked posteriors have {self.posteriors.probs.shape[1]} classes, the pool "
                             f"{num_classes}")
        calibrated, found = self.posteriors.take(_check_indices(pool_indices, len(pool_probs)))
        if not found.all():
            calibrated[~found] = correct_posteriors(pool_probs[~found], shift.pool_prior, train_prior)
        return replace(shift, calibrated=calibrated)

    def _carried(self, train_prior: np.ndarray, reason: str) -> PriorShift:
        if self.pool_prior is None:
            return PriorShift(None, train_prior, "none", reason)
        return PriorShift(self.pool_prior, train_prior, self.method)

    def observe(
        self, pool_probs: np.ndarray, rows: np.ndarray, labels: np.ndarray, pool_indices: np.ndarray | None = None
    ) -> None:
        """Update the estimate with the labels revealed for ``pool_probs[rows]``: the prior of what remains and, given
        ``pool_indices`` (the train indices of ``pool_probs``' rows), the calibrated posteriors of what remains."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        pool_probs = _check_probs(pool_probs, "pool_probs")
        num_classes = pool_probs.shape[1]
        self.posteriors = None
        if self._enough(len(rows), num_classes):
            try:
                prior, calibration = _revealed(pool_probs, rows, labels)
            except (ValueError, FloatingPointError, np.linalg.LinAlgError):
                prior = None  # carry the previous estimate forward below
            if prior is not None and np.isfinite(prior).all():
                self.pool_prior, self.method = prior, "revealed"
                if pool_indices is not None:
                    left = np.setdiff1d(np.arange(len(pool_probs)), rows)
                    indices = _check_indices(pool_indices, len(pool_probs))[left]
                    order = np.argsort(indices, kind="stable")
                    kept = calibration.apply(pool_probs[left[order]], np.float32)
                    self.posteriors = PoolPosteriors(indices[order], kept)
                return
        if self.pool_prior is not None:
            self.pool_prior = _remaining_prior(self.pool_prior * len(pool_probs), labels)

    def state_dict(self) -> dict[str, object]:
        """The estimate, its method and the kept posteriors (numpy arrays: ``{"indices", "probs"}``, or None)."""
        kept = None if self.posteriors is None else {"indices": self.posteriors.indices, "probs": self.posteriors.probs}
        return {"pool_prior": None if self.pool_prior is None else self.pool_prior.tolist(), "method": self.method,
                "posteriors": kept}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore :meth:`state_dict`'s output (arrays as numpy arrays or lists); checks shapes and values."""
        prior = state.get("pool_prior")
        self.pool_prior = None if prior is None else _check_prior(np.asarray(prior), len(prior), "pool_prior")  # type: ignore[arg-type]
        self.method = str(state.get("method", "none"))
        kept = state.get("posteriors")
        self.posteriors = None
        if kept is not None:
            indices = np.asarray(kept["indices"], dtype=np.int64).reshape(-1)  # type: ignore[index]
            probs = np.asarray(kept["probs"], dtype=np.float32)  # type: ignore[index]
            width = None if self.pool_prior is None else len(self.pool_prior)
            if (probs.ndim != 2 or len(probs) != len(indices) or probs.shape[1] != width
                    or (len(indices) > 1 and (np.diff(indices) <= 0).any()) or not np.isfinite(probs).all()):
                raise ValueError(f"posteriors: expected sorted unique indices and finite ({len(indices)}, {width}) "
                                 f"probabilities with a pool prior, got {probs.shape}")
            self.posteriors = PoolPosteriors(indices, probs)
