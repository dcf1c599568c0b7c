"""Scorers: how informative each unlabeled sample is (higher = more informative).

A scorer says *what* is informative; a selector (:mod:`cbal_lightning.selection.selectors`) says *how* b samples
are chosen from the scores. Any scorer combines with any selector: the class-balanced selector minimises
``-score`` plus the balance term (Eq. 8/9), so with :class:`Entropy` the cost is exactly ``z^T (P * log P) 1``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["class_probabilities", "Scorer", "Random", "Entropy", "Margin", "LeastConfidence", "BALD", "hashed_uniform"]


def class_probabilities(model: nn.Module, images: Tensor, *, embed: bool = False) -> tuple[Tensor, Tensor | None]:
    """Softmax probabilities P (float32) of a batch, and its penultimate embeddings when ``embed`` is set.

    Example:
        >>> from cbal_lightning.models import ImageClassifier
        >>> model = ImageClassifier(num_classes=3, backbone="small_cnn", in_channels=1).eval()
        >>> probs, h = class_probabilities(model, torch.zeros(2, 1, 8, 8), embed=True)
        >>> probs.shape, h.shape
        (torch.Size([2, 3]), torch.Size([2, 64]))
    """
    if embed:
        embeddings = model.embed(images)
        logits = model.classify(embeddings)
    else:
        embeddings, logits = None, model(images)
    return torch.softmax(logits.float(), dim=-1), embeddings


class Scorer(ABC):
    """Maps a batch of pool images to class probabilities and informativeness scores.

    Subclasses implement :meth:`score`; those that need more than one forward pass (MC dropout) override
    :meth:`__call__`, and those with a model of their own (VAAL) train it in :meth:`prepare`. Scores must
    depend only on the sample (and the cycle), never on the batch it came in, so that single-process and
    sharded multi-process runs score identically.

    With ``embed=True`` the model must provide ``embed(x)`` (penultimate embedding) and ``classify(h)``
    (embedding -> logits), as :class:`~cbal_lightning.models.ImageClassifier` does; the embedding is returned
    for representativeness selectors (KCenterGreedy, BADGE).
    """

    def __call__(
        self, model: nn.Module, images: Tensor, indices: Tensor, cycle: int, *, embed: bool = False
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Return ``(probs, scores, embeddings)`` for one batch: (B, C), (B,) float32 and (B, d) or ``None``."""
        probs, embeddings = class_probabilities(model, images, embed=embed)
        return probs, self.score(probs, indices, cycle).float(), embeddings

    def prepare(self, trainer: Any, pl_module: nn.Module, datamodule: Any, cycle: int) -> None:
        """Called on every rank before the pool of ``cycle`` is scored; a no-op unless the scorer trains a model."""

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


def hashed_uniform(keys: Tensor, seed: int) -> Tensor:
    """Uniform [0, 1) float32 numbers that are a pure function of ``(seed, key)``: SplitMix64 on int64 tensors.

    Hashing instead of drawing from a generator keeps random scores and dropout masks identical however the pool
    is batched or sharded across ranks, and independent of the global random state.

    Example:
        >>> u = hashed_uniform(torch.arange(4), seed=0)
        >>> bool(((u >= 0) & (u < 1)).all()), torch.equal(u[2:], hashed_uniform(torch.arange(2, 4), seed=0))
        (True, True)
    """

    def shift(x: Tensor, k: int) -> Tensor:  # logical right shift of int64 bit patterns
        return (x >> k) & ((1 << (64 - k)) - 1)

    def wrap(c: int) -> int:  # a uint64 constant as the int64 with the same bits
        return c - (1 << 64) if c >= 1 << 63 else c

    x = keys.long() ^ wrap((seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % (1 << 64))
    # SplitMix64 finaliser; int64 arithmetic wraps modulo 2**64 like the uint64 original.
    x = x + wrap(0x9E3779B97F4A7C15)
    x = (x ^ shift(x, 30)) * wrap(0xBF58476D1CE4E5B9)
    x = (x ^ shift(x, 27)) * wrap(0x94D049BB133111EB)
    x = x ^ shift(x, 31)
    return shift(x, 40).float() / float(1 << 24)  # the top 24 bits: exact in float32


class Random(Scorer):
    """Uniform random scores, a pure function of ``(seed, cycle, index)`` (see :func:`hashed_uniform`).

    Example:
        >>> s = Random(seed=0).score(torch.zeros(3, 2), torch.tensor([7, 8, 9]), cycle=1)
        >>> bool(((s >= 0) & (s < 1)).all()), torch.equal(s, Random(seed=0).score(torch.zeros(3, 2), torch.tensor([7, 8, 9]), 1))
        (True, True)
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def score(self, probs: Tensor, indices: Tensor, cycle: int) -> Tensor:
        return hashed_uniform(indices.to(probs.device), seed=self.seed * 1_000_003 + cycle)

    def __repr__(self) -> str:
        return f"Random(seed={self.seed})"


class BALD(Scorer):
    """BALD (Houlsby et al.) with MC dropout (Gal et al.): mutual information between prediction and weights.

    ``score = H[mean_t p_t] - mean_t H[p_t]`` over ``mc_samples`` stochastic passes. The model runs once up to
    its penultimate embedding (batch-norm in eval mode); dropout with probability ``dropout`` is applied to
    that embedding before the classifier head, ``mc_samples`` times. This is how BALD works with models that
    have no dropout layer (ResNets): train them with the same dropout before the head
    (``ImageClassifier(head_dropout=0.5)``) so that the MC passes sample the trained distribution. The model
    must provide ``embed(x)`` and ``classify(h)``. Cost: one backbone pass plus ``mc_samples`` head passes;
    memory O(B x C) per batch (running sums, never the T x B x C tensor).

    Dropout masks are hashed from ``(seed, cycle, sample index, pass, unit)``, so scores do not depend on
    batching or sharding. The returned probabilities are the MC mean, the P used by BALD-CB (Eq. 9).

    Example:
        >>> from cbal_lightning.models import ImageClassifier
        >>> model = ImageClassifier(num_classes=3, backbone="small_cnn", in_channels=1).eval()
        >>> probs, mi, _ = BALD(mc_samples=4)(model, torch.randn(2, 1, 8, 8), torch.arange(2), cycle=1)
        >>> probs.shape, mi.shape, bool((mi >= -1e-6).all())
        (torch.Size([2, 3]), torch.Size([2]), True)
    """

    def __init__(self, mc_samples: int = 10, dropout: float = 0.5, seed: int = 0) -> None:
        if mc_samples < 1:
            raise ValueError(f"mc_samples must be >= 1, got {mc_samples}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.mc_samples = mc_samples
        self.dropout = dropout
        self.seed = seed

    def __call__(
        self, model: nn.Module, images: Tensor, indices: Tensor, cycle: int, *, embed: bool = False
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        if not (hasattr(model, "embed") and hasattr(model, "classify")):
            raise TypeError(
                f"BALD: {type(model).__name__} needs embed(x) and classify(h) methods (see ImageClassifier) so that "
                "MC dropout can be applied before the classifier head."
            )
        h = model.embed(images).float()
        mean_probs = torch.zeros(len(h), 0, device=h.device)
        mean_entropy = torch.zeros(len(h), device=h.device)
        units = torch.arange(h.shape[1], device=h.device)
        for t in range(self.mc_samples):
            keys = (indices.to(h.device).long()[:, None] * self.mc_samples + t) * h.shape[1] + units[None, :]
            keep = hashed_uniform(keys, seed=self.seed * 1_000_003 + cycle) >= self.dropout
            probs = torch.softmax(model.classify(h * keep / (1.0 - self.dropout)).float(), dim=-1)
            mean_probs = probs if t == 0 else mean_probs + probs
            mean_entropy += torch.special.entr(probs).sum(-1)
        mean_probs /= self.mc_samples
        mean_entropy /= self.mc_samples
        mutual_information = torch.special.entr(mean_probs).sum(-1) - mean_entropy
        return mean_probs, mutual_information, h if embed else None

    def score(self, probs: Tensor, indices: Tensor, cycle: int) -> Tensor:
        raise TypeError("BALD scores images (MC dropout), not probabilities: call the scorer on a batch of images.")

    def __repr__(self) -> str:
        return f"BALD(mc_samples={self.mc_samples}, dropout={self.dropout}, seed={self.seed})"
