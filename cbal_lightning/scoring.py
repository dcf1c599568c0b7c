"""Scorers: how informative each unlabeled sample is (higher = more informative).

A scorer says *what* is informative; a selector (:mod:`cbal_lightning.selection.selectors`) says *how* b samples
are chosen from the scores. Any scorer combines with any selector: the class-balanced selector minimises
``-score`` plus the balance term (Eq. 8/9), so with :class:`Entropy` the cost is exactly ``z^T (P * log P) 1``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["Scorer", "Random", "Entropy", "Margin", "LeastConfidence"]


class Scorer(ABC):
    """Maps a batch of pool images to class probabilities and informativeness scores.

    Subclasses implement :meth:`score`; those that need more than one forward pass (MC dropout) override
    :meth:`__call__`. Scores must depend only on the sample (and the cycle), never on the batch it came in,
    so that single-process and sharded multi-process runs score identically.
    """

    def __call__(self, model: nn.Module, images: Tensor, indices: Tensor, cycle: int) -> tuple[Tensor, Tensor]:
        """Return ``(probs, scores)`` for one batch: ``probs`` (B, C) float32, ``scores`` (B,) float32."""
        probs = torch.softmax(model(images).float(), dim=-1)
        return probs, self.score(probs, indices, cycle).float()

    @abstractmethod
    def score(self, probs: Tensor, indices: Tensor, cycle: int) -> Tensor:
        """Informativeness of each row of ``probs`` (higher = more informative)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Entropy(Scorer):
    """Predictive entropy ``H = -sum_i p_i log p_i`` (Eq. 6).

    Example:
        >>> Entropy().score(torch.tensor([[0.5, 0.5], [1.0, 0.0]]), torch.arange(2), 1)
        tensor([0.6931, 0.0000])
    """

    def score(self, probs: Tensor, indices: Tensor, cycle: int) -> Tensor:
        return torch.special.entr(probs).sum(dim=-1)  # Eq. 6: entr(p) = -p log p, entr(0) = 0


class Margin(Scorer):
    """Negative margin between the two most probable classes (small margin = informative).

    Example:
        >>> Margin().score(torch.tensor([[0.5, 0.4, 0.1], [0.9, 0.05, 0.05]]), torch.arange(2), 1)
        tensor([-0.1000, -0.8500])
    """

    def score(self, probs: Tensor, indices: Tensor, cycle: int) -> Tensor:
        top2 = probs.topk(2, dim=-1).values
        return top2[:, 1] - top2[:, 0]


class LeastConfidence(Scorer):
    """One minus the probability of the predicted class.

    Example:
        >>> LeastConfidence().score(torch.tensor([[0.5, 0.5], [0.9, 0.1]]), torch.arange(2), 1)
        tensor([0.5000, 0.1000])
    """

    def score(self, probs: Tensor, indices: Tensor, cycle: int) -> Tensor:
        return 1.0 - probs.max(dim=-1).values


class Random(Scorer):
    """Uniform random scores, a pure function of ``(seed, cycle, index)``.

    Hashing the index (SplitMix64) instead of drawing from a generator keeps the scores identical however
    the pool is batched or sharded across ranks, and independent of the global random state.

    Example:
        >>> s = Random(seed=0).score(torch.zeros(3, 2), torch.tensor([7, 8, 9]), cycle=1)
        >>> bool(((s >= 0) & (s < 1)).all()), torch.equal(s, Random(seed=0).score(torch.zeros(3, 2), torch.tensor([7, 8, 9]), 1))
        (True, True)
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def score(self, probs: Tensor, indices: Tensor, cycle: int) -> Tensor:
        key = np.uint64((self.seed * 1_000_003 + cycle) & 0xFFFFFFFF) << np.uint64(32)
        x = indices.detach().cpu().numpy().astype(np.uint64) ^ key
        # SplitMix64 finaliser; uint64 arithmetic wraps modulo 2**64 by design.
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
        uniform = (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)
        return torch.from_numpy(uniform).to(device=probs.device, dtype=torch.float32)

    def __repr__(self) -> str:
        return f"Random(seed={self.seed})"
