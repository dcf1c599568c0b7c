"""Scorers and pool inference: the numbers, shard invariance, and dropping DistributedSampler padding."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from cbal_lightning import inference, scoring
from cbal_lightning.inference import IndexedDataset, _gather_unique, evaluate_classifier, predict_pool
from cbal_lightning.scoring import Entropy, LeastConfidence, Margin, Random


def test_doctests() -> None:
    for module in (scoring, inference):
        assert doctest.testmod(module).failed == 0


def test_entropy_matches_the_definition() -> None:
    probs = torch.softmax(torch.randn(50, 7, generator=torch.Generator().manual_seed(0)), dim=-1)
    expected = -(probs * probs.log()).sum(-1)
    torch.testing.assert_close(Entropy().score(probs, torch.arange(50), 1), expected)
    assert Entropy().score(torch.eye(3), torch.arange(3), 1).abs().max() == 0  # 0 log 0 = 0, not NaN


def test_margin_and_least_confidence_rank_uncertain_samples_first() -> None:
    probs = torch.tensor([[0.34, 0.33, 0.33], [0.6, 0.3, 0.1], [0.98, 0.01, 0.01]])
    for scorer in (Margin(), LeastConfidence(), Entropy()):
        scores = scorer.score(probs, torch.arange(3), 1)
        assert scores.argsort(descending=True).tolist() == [0, 1, 2], scorer


def test_random_scores_depend_on_index_seed_and_cycle_only() -> None:
    idx = torch.arange(1000)
    a = Random(seed=3).score(torch.zeros(1000, 2), idx, cycle=1)
    # same samples in another order and batching give the same score per sample
    perm = torch.randperm(1000, generator=torch.Generator().manual_seed(1))
    parts = [Random(seed=3).score(torch.zeros(100, 2), perm[i : i + 100], cycle=1) for i in range(0, 1000, 100)]
    torch.testing.assert_close(torch.cat(parts), a[perm])
    assert not torch.equal(a, Random(seed=4).score(torch.zeros(1000, 2), idx, cycle=1))
    assert not torch.equal(a, Random(seed=3).score(torch.zeros(1000, 2), idx, cycle=2))
    assert 0.45 < float(a.mean()) < 0.55  # roughly uniform


class _FakeStrategy:
    """Two ranks in one process: ``all_gather`` stacks this rank's tensor with the other rank's."""

    world_size = 2
    global_rank = 0

    def __init__(self, other: list[torch.Tensor]) -> None:
        self.other = other

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return torch.stack([tensor, self.other.pop(0)])


def test_gather_drops_the_padding_duplicates_of_distributed_samplers() -> None:
    dataset = TensorDataset(torch.arange(5))
    shards = [list(DistributedSampler(dataset, num_replicas=2, rank=r, shuffle=False)) for r in range(2)]
    assert shards == [[0, 2, 4], [1, 3, 0]]  # rank 1 is padded with sample 0 again
    idx = [torch.tensor(s) for s in shards]
    vals = [i.float()[:, None] * torch.ones(1, 3) for i in idx]
    unique, values = _gather_unique(_FakeStrategy([idx[1], vals[1]]), idx[0], vals[0])
    assert unique.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(values[:, 0], [0, 1, 2, 3, 4])


class _Pool(Dataset):
    def __init__(self, images: torch.Tensor, indices: torch.Tensor) -> None:
        self.images, self.indices = images, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.images[i], self.indices[i]


def test_predict_pool_is_batch_invariant_sorted_and_restores_train_mode() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3))
    model.train()
    images = torch.randn(37, 4)
    indices = torch.randperm(100)[:37]
    pool = _Pool(images, indices)
    small = predict_pool(model, DataLoader(pool, batch_size=5), Entropy(), 1, device=torch.device("cpu"))
    large = predict_pool(model, DataLoader(pool, batch_size=64), Entropy(), 1, device=torch.device("cpu"))
    assert model.training  # restored
    assert small.indices.tolist() == sorted(indices.tolist())
    assert small.probs.dtype == np.float32 and small.probs.shape == (37, 3)
    np.testing.assert_allclose(small.probs.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(small.probs, large.probs, atol=1e-6)  # eval mode: no dropout, BN running stats
    np.testing.assert_allclose(small.scores, large.scores, atol=1e-6)


def test_predict_pool_rejects_an_empty_pool() -> None:
    with pytest.raises(ValueError, match="no samples"):
        predict_pool(nn.Linear(2, 2), DataLoader(_Pool(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))),
                     Entropy(), 1, device=torch.device("cpu"))


def test_evaluate_classifier_reports_accuracy_and_per_class_accuracy() -> None:
    class Lookup(nn.Module):  # predicts class 0 for feature < 0.5, else class 1
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([0.5 - x, x - 0.5], dim=1)

    x = torch.tensor([[0.1], [0.2], [0.9], [0.8], [0.7], [0.3]])
    y = torch.tensor([0, 1, 1, 1, 1, 0])  # one class-1 sample misclassified
    loader = DataLoader(IndexedDataset(TensorDataset(x, y)), batch_size=4)
    result = evaluate_classifier(Lookup(), loader, 2, device=torch.device("cpu"))
    assert result["acc"] == pytest.approx(5 / 6)
    assert result["per_class_acc"] == pytest.approx([1.0, 0.75])
    assert result["mean_class_acc"] == pytest.approx(0.875)


class _TwoClassHead(nn.Module):
    """embed = identity on 2 features; classify = a fixed linear map (so MC passes can be computed by hand)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(x))


def test_bald_is_zero_when_all_passes_agree() -> None:
    from cbal_lightning.scoring import BALD

    x = torch.randn(16, 2)
    probs, mi, _ = BALD(mc_samples=5, dropout=0.0)(_TwoClassHead(), x, torch.arange(16), cycle=1)
    assert mi.abs().max() < 1e-6
    torch.testing.assert_close(probs, torch.softmax(x, -1))


def test_bald_matches_a_hand_computation_with_the_same_masks() -> None:
    from cbal_lightning.scoring import BALD, hashed_uniform

    model, x, idx = _TwoClassHead(), torch.tensor([[2.0, -1.0], [0.5, 0.5]]), torch.tensor([3, 11])
    bald = BALD(mc_samples=3, dropout=0.5, seed=7)
    probs, mi, _ = bald(model, x, idx, cycle=2)
    passes = []
    for t in range(3):
        keys = (idx[:, None] * 3 + t) * 2 + torch.arange(2)[None, :]
        keep = (hashed_uniform(keys, seed=7 * 1_000_003 + 2) >= 0.5).float()
        passes.append(torch.softmax(x * keep * 2.0, -1))
    stacked = torch.stack(passes)
    mean = stacked.mean(0)
    expected = -(mean * mean.log()).sum(-1) + (stacked * stacked.clamp_min(1e-12).log()).sum(-1).mean(0)
    torch.testing.assert_close(probs, mean)
    torch.testing.assert_close(mi, expected)
    assert (mi >= -1e-6).all()


def test_bald_dropout_is_active_while_scoring_only() -> None:
    from cbal_lightning.models import ImageClassifier
    from cbal_lightning.scoring import BALD

    torch.manual_seed(0)
    model = ImageClassifier(num_classes=4, backbone="small_cnn", in_channels=1, head_dropout=0.5).eval()
    images = torch.randn(32, 1, 8, 8)
    with torch.inference_mode():
        deterministic = torch.softmax(model(images), -1)
        probs, mi, _ = BALD(mc_samples=8, dropout=0.5)(model, images, torch.arange(32), cycle=1)
        again = torch.softmax(model(images), -1)
    assert (mi > 1e-7).all(), "MC passes agreed: dropout was not active"
    assert not torch.allclose(probs, deterministic, atol=1e-4)
    torch.testing.assert_close(again, deterministic)  # eval-mode predictions are untouched afterwards
    # shard invariance: the same samples in other batches get the same score
    with torch.inference_mode():
        _, mi_half, _ = BALD(mc_samples=8, dropout=0.5)(model, images[16:], torch.arange(16, 32), cycle=1)
    torch.testing.assert_close(mi_half, mi[16:])
