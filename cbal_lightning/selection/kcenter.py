"""KCenterGreedy (Sener & Savarese 2018) and its class-balanced variant KCenterGreedy-CB (Algorithm 2).

Memory design: the paper's Algorithm 2 keeps the full distance matrix ``D`` (N x L, growing by one column per
pick). Only its row minima are ever used, so we keep ``min_dist`` (N,) instead: it is initialised from chunks of
``chunk_size x chunk_size`` distances (never the N x L matrix) and each pick updates it with ONE row of distances to
the new center, O(N d) per step. Distances are Euclidean, computed in float32 as ``||a||^2 + ||b||^2 - 2 a.b``
on embeddings centred on the pool mean (translation-invariant, and it shrinks the cancellation error).

Lambda scaling: ``-d_j`` is in embedding units while the balance term counts expected samples, so ``lam`` has no
universal value; the paper's official code is reported to divide ``lam`` by the number of classes C. We use ``lam``
as given: pick it with a lambda sweep (the paper's Section 4 recipe: the smallest lam after which the L1 term stops
falling), or pass ``normalize=True`` to divide distances by their largest initial value, which puts ``d_j`` in
[0, 1] so that ``lam = 1`` weighs one expected sample of imbalance like the farthest point of the pool.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from cbal_lightning.selection._checks import check_budget, check_lam
from cbal_lightning.selection._greedy import (
    GreedyL1,
    check_balance_inputs,
    check_embeddings,
    default_device,
    single_thread_on_cpu,
)
from cbal_lightning.selection.result import Selection, evaluate
from cbal_lightning.selection.prior import PriorShift
from cbal_lightning.selection.selectors import PriorArg, Selector, check_prior_arg

__all__ = ["kcenter_greedy", "KCenterGreedy"]


def _sq_norms(x: torch.Tensor) -> torch.Tensor:
    """Row-wise squared Euclidean norms."""
    return (x * x).sum(dim=1)


def _initial_min_dist(pool: torch.Tensor, labeled: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """(N,) Euclidean distance of each pool row to its nearest labeled row, in chunk_size x chunk_size blocks."""
    pool_sq, labeled_sq = _sq_norms(pool), _sq_norms(labeled)
    min_sq = torch.full((pool.shape[0],), torch.inf, dtype=pool.dtype, device=pool.device)
    for i in range(0, pool.shape[0], chunk_size):
        block_min = min_sq[i : i + chunk_size]
        for k in range(0, labeled.shape[0], chunk_size):
            sq = pool_sq[i : i + chunk_size, None] + labeled_sq[None, k : k + chunk_size]
            sq.addmm_(pool[i : i + chunk_size], labeled[k : k + chunk_size].T, alpha=-2.0)
            torch.minimum(block_min, sq.min(dim=1).values, out=block_min)
    return min_sq.clamp_min_(0).sqrt_()


def _greedy_loop(
    pool: torch.Tensor,
    pool_sq: torch.Tensor,
    min_dist: torch.Tensor,
    replace_first: bool,
    tracker: GreedyL1 | None,
    lam: float,
    scale: float,
    picks: np.ndarray,
    pick_dist: np.ndarray,
) -> None:
    """Fill ``picks``/``pick_dist`` (pick order); ``replace_first``: the initial ``min_dist`` is not a distance
    to a center (no labeled set), so the first center's row replaces it instead of being min-ed in."""
    for step in range(picks.size):
        if tracker is None:
            j = int(torch.argmax(min_dist))
        else:  # Algorithm 2, line 3: argmin_j -d_j + lam * ||Omega - P^T z - q_j||_1
            objective = lam * tracker.candidate_l1() - min_dist.double().cpu().numpy() / scale
            j = int(np.argmin(objective))  # picked rows have min_dist = -inf, hence objective = +inf
            tracker.add(j)  # Algorithm 2, line 4
        picks[step], pick_dist[step] = j, float(min_dist[j]) / scale
        row = (pool_sq + pool_sq[j] - 2.0 * torch.mv(pool, pool[j])).clamp_min_(0).sqrt_()
        if step == 0 and replace_first:
            min_dist = row
        else:
            torch.minimum(min_dist, row, out=min_dist)  # Algorithm 2, line 6: add the new center's column
        min_dist[j] = -torch.inf  # Algorithm 2, line 5: drop the pick from the candidates (minimum keeps -inf)


def kcenter_greedy(
    embeddings: np.ndarray,
    labeled_embeddings: np.ndarray | None,
    budget: int,
    *,
    probs: np.ndarray | None = None,
    omega: np.ndarray | None = None,
    lam: float = 0.0,
    normalize: bool = False,
    chunk_size: int = 4096,
    device: str | torch.device | None = None,
) -> Selection:
    """KCenterGreedy (``lam = 0``) or KCenterGreedy-CB (``lam > 0``, Algorithm 2) over the pool ``embeddings``.

    Each step picks ``argmax_j d_j`` (plain) or ``argmin_j -d_j + lam ||Omega - P^T z - q_j||_1`` (Algorithm 2,
    line 3) among the not yet picked rows, where ``d_j`` is the distance to the nearest labeled or picked row.
    Without labeled rows the first pick uses the distance to the pool mean.

    Args:
        embeddings: (N, d) pool embeddings.
        labeled_embeddings: (L, d) labeled-set embeddings (None or L = 0: no labeled set).
        budget: number of rows to pick (b).
        probs: (N, C) softmax probabilities P; needed when ``lam > 0``, else only used for the balance statistics.
        omega: (C,) class targets Omega (Eq. 4); needed when ``lam > 0``.
        lam: balance weight; see the module docstring for its scale.
        normalize: divide distances by their largest initial value, so ``d_j`` lies in [0, 1].
        chunk_size: block size of the initial distance computation (memory ~ chunk_size^2 floats).
        device: torch device; default CUDA when available, else CPU.

    Returns:
        A :class:`Selection` with status "GREEDY". ``cost_term`` is ``-sum`` of the picks' distances at the time
        they were picked (normalised if ``normalize``), ``objective = cost_term + lam * l1_deviation``; no lower
        bound is known, so ``lower_bound`` is NaN and ``gap`` is inf.

    Example:
        >>> pool = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [9.0, 0.0]], dtype=np.float32)
        >>> kcenter_greedy(pool, np.array([[0.0, 0.0]], dtype=np.float32), 2).indices
        array([2, 3])
    """
    start = time.perf_counter()
    pool_np = check_embeddings(embeddings)
    n = pool_np.shape[0]
    labeled_np = np.zeros((0, pool_np.shape[1]), np.float32) if labeled_embeddings is None else labeled_embeddings
    labeled_np = check_embeddings(labeled_np, name="labeled_embeddings")
    if labeled_np.shape[1] != pool_np.shape[1]:
        raise ValueError(f"labeled_embeddings has {labeled_np.shape[1]} columns but embeddings has {pool_np.shape[1]}")
    budget = check_budget(budget, n)
    lam = check_lam(lam)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    probs, omega = check_balance_inputs(probs, omega, lam, n)

    device = torch.device(device) if device is not None else default_device()
    mean = pool_np.mean(axis=0, dtype=np.float64).astype(np.float32)
    pool = torch.from_numpy(pool_np - mean).to(device)
    pool_sq = _sq_norms(pool)
    if labeled_np.shape[0] > 0:
        min_dist = _initial_min_dist(pool, torch.from_numpy(labeled_np - mean).to(device), chunk_size)
    else:
        min_dist = pool_sq.sqrt()  # distance to the pool mean, for the first pick only
    scale = float(min_dist.max()) if normalize else 1.0
    scale = scale if scale > 0 else 1.0
    tracker = GreedyL1(probs, omega) if lam > 0 else None
    build = time.perf_counter() - start

    picks = np.empty(budget, dtype=np.int64)
    pick_dist = np.empty(budget, dtype=np.float64)
    with single_thread_on_cpu(device):
        _greedy_loop(pool, pool_sq, min_dist, labeled_np.shape[0] == 0, tracker, lam, scale, picks, pick_dist)

    cost = np.zeros(n)
    cost[picks] = -pick_dist
    timings = {"build": build, "search": time.perf_counter() - start - build, "total": time.perf_counter() - start}
    return evaluate(picks, cost, probs, omega, lam, lower_bound=float("nan"), status="GREEDY", timings=timings)


class KCenterGreedy(Selector):
    """Core-set KCenterGreedy on penultimate-layer embeddings; ``lam > 0`` gives KCenterGreedy-CB (Algorithm 2).

    Ignores ``scores`` and ``seed`` (the method is deterministic). See :func:`kcenter_greedy` for ``lam`` scaling.
    ``prior`` as for :class:`~cbal_lightning.selection.selectors.ClassBalanced`: by default the balance term counts
    ``P`` corrected for the pool's label shift (its prior, then calibrated posteriors); ``prior=None`` is the
    paper's Algorithm 2 exactly.

    Example:
        >>> pool = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [9.0, 0.0]], dtype=np.float32)
        >>> probs = np.array([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.9, 0.1]])
        >>> labeled = np.array([[0.0, 0.0]], dtype=np.float32)
        >>> KCenterGreedy().select(None, probs, 2, np.array([1.0, 1.0]), embeddings=pool,
        ...                        labeled_embeddings=labeled).indices
        array([2, 3])
        >>> KCenterGreedy(lam=10.0).select(None, probs, 2, np.array([1.0, 1.0]), embeddings=pool,
        ...                                labeled_embeddings=labeled).indices
        array([1, 3])
    """

    needs_embeddings: bool = True

    def __init__(
        self, lam: float = 0.0, chunk_size: int = 4096, normalize: bool = False, prior: PriorArg = "estimate"
    ) -> None:
        self.lam = lam
        self.chunk_size = chunk_size
        self.normalize = normalize
        self.prior = check_prior_arg(prior)

    def select(
        self,
        scores: np.ndarray | None,
        probs: np.ndarray,
        budget: int,
        omega: np.ndarray,
        *,
        seed: int = 0,
        embeddings: np.ndarray | None = None,
        labeled_embeddings: np.ndarray | None = None,
        prior_shift: PriorShift | None = None,
    ) -> Selection:
        return kcenter_greedy(  # Algorithm 2 counts P corrected for the pool's prior unless prior=None
            embeddings, labeled_embeddings, budget, probs=self.balance_probs(probs, prior_shift), omega=omega, lam=self.lam,
            normalize=self.normalize, chunk_size=self.chunk_size,
        )
