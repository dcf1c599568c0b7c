"""VAAL scorer: architecture, training in ``prepare`` (rank 0 + broadcast), scoring, and the AL loop on digits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from torch import nn

from cbal_lightning import ActiveLearningCallback, DigitsDataModule, ImageClassifier
from cbal_lightning.callback import LABELED_SETS_FILE
from cbal_lightning.selection import ClassBalanced, TopK
from cbal_lightning.scoring.vaal import VAAL, VAE, Discriminator

SMALL = dict(base_channels=4, epochs=5, batch_size=32, progress=False)  # 21 iterations on the 130 initial digits


def _model() -> ImageClassifier:
    return ImageClassifier(num_classes=10, backbone="small_cnn", in_channels=1, lr=0.05, milestones=(100,))


def _trainer(rank0: bool = True, state: dict | None = None) -> SimpleNamespace:
    """The two trainer attributes ``prepare`` uses; ``state``: what rank 0 'sends' to a non-zero rank."""
    broadcast = (lambda obj, src=0: obj) if rank0 else (lambda obj, src=0: state)
    return SimpleNamespace(is_global_zero=rank0, strategy=SimpleNamespace(broadcast=broadcast))


def _score(scorer: VAAL, model: nn.Module, images: torch.Tensor, cycle: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    was_training = model.training
    model.eval()  # as predict_pool does
    with torch.inference_mode():
        probs, scores, _ = scorer(model, images, torch.arange(len(images)), cycle)
    model.train(was_training)
    return probs, scores


@pytest.fixture(scope="module")
def digits() -> DigitsDataModule:
    dm = DigitsDataModule(imbalance_factor=0.1, batch_size=32)
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def pool_images(digits: DigitsDataModule) -> torch.Tensor:
    pool = digits.eval_dataset(digits.pools.unlabeled_indices()[:96])
    return torch.stack([pool[i][0] for i in range(len(pool))])


@pytest.fixture(scope="module")
def trained(digits: DigitsDataModule) -> tuple[VAAL, ImageClassifier, dict, torch.Tensor]:
    model = _model().train()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    scorer = VAAL(**SMALL)
    scorer.prepare(_trainer(), model, digits, cycle=1)
    return scorer, model, weights, rng


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [16, 32, 64])
def test_vae_and_discriminator_shapes(size: int, channels: int) -> None:
    vae = VAE(channels, size, latent_dim=8, base_channels=4)
    recon, mu, logvar = vae(torch.randn(3, channels, size, size))
    assert recon.shape == (3, channels, size, size)
    assert mu.shape == logvar.shape == (3, 8)
    prob = Discriminator(8)(mu)
    assert prob.shape == (3,) and bool(((prob >= 0) & (prob <= 1)).all())


def test_vae_matches_the_official_cifar_architecture() -> None:
    vae = VAE(3, 32)  # defaults: latent 32, base 128
    convs = [m.out_channels for m in vae.encoder if isinstance(m, nn.Conv2d)]
    deconvs = [m.out_channels for m in vae.decoder if isinstance(m, nn.ConvTranspose2d)]
    assert convs == [128, 256, 512, 1024] and vae.fc_mu.in_features == 1024 * 2 * 2
    assert deconvs == [512, 256, 128, 3] and vae.decoder[0].out_features == 1024 * 4 * 4
    assert [m.out_features for m in Discriminator(32).net if isinstance(m, nn.Linear)] == [512, 512, 512, 512, 1]
    with pytest.raises(ValueError, match="power of two"):
        VAE(3, 24)


def test_prepare_trains_the_discriminator_and_scores_are_probabilities(trained, pool_images) -> None:
    scorer, model, weights, rng = trained
    losses = scorer.discriminator_losses[1]
    assert len(losses) == 21 and len(scorer.vae_losses[1]) == 2 * 21  # ceil(5 * 130 / 32) iterations
    k = 5
    assert sum(losses[-k:]) / k < sum(losses[:k]) / k  # the discriminator learns labeled vs unlabeled

    # the task model, its mode and the global RNG are left alone
    assert model.training
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)

    probs, scores = _score(scorer, model, pool_images)
    assert probs.shape == (96, 10) and scores.shape == (96,) and scores.dtype == torch.float32
    assert bool(((scores >= 0) & (scores <= 1)).all()) and scores.std() > 0
    torch.testing.assert_close(probs.sum(1), torch.ones(96))
    # a score depends only on its image, not on the batch it came in
    _, first = _score(scorer, model, pool_images[:40])
    torch.testing.assert_close(first, scores[:40])


def test_same_seed_same_scores_other_seed_other_scores(trained, digits, pool_images) -> None:
    scorer, model, _, _ = trained
    _, scores = _score(scorer, model, pool_images)
    again = VAAL(**SMALL)
    again.prepare(_trainer(), model, digits, cycle=1)
    assert again.discriminator_losses == scorer.discriminator_losses
    assert torch.equal(_score(again, model, pool_images)[1], scores)
    other = VAAL(**SMALL, seed=1)
    other.prepare(_trainer(), model, digits, cycle=1)
    assert not torch.equal(_score(other, model, pool_images)[1], scores)


def test_other_ranks_load_the_broadcast_networks(trained, digits, pool_images) -> None:
    scorer, model, _, _ = trained
    sent = {"vae": scorer.vae.state_dict(), "discriminator": scorer.discriminator.state_dict()}
    follower = VAAL(**SMALL)
    follower.prepare(_trainer(rank0=False, state=sent), model, digits, cycle=1)  # trains nothing
    assert follower.discriminator_losses == {}
    assert torch.equal(_score(follower, model, pool_images)[1], _score(scorer, model, pool_images)[1])


def test_scoring_needs_images_and_a_prepared_cycle(trained, pool_images) -> None:
    scorer, model, _, _ = trained
    with pytest.raises(TypeError, match="scores images"):
        scorer.score(torch.full((2, 10), 0.1), torch.arange(2), 1)
    with pytest.raises(RuntimeError, match="call prepare"):
        _score(scorer, model, pool_images, cycle=2)
    with pytest.raises(RuntimeError, match="call prepare"):
        _score(VAAL(**SMALL), model, pool_images)


@pytest.mark.parametrize("selector", [TopK(), ClassBalanced(lam=1.0)], ids=["VAAL", "VAAL-CB"])
def test_one_cycle_on_digits(tmp_path: Path, selector) -> None:
    seed_everything(0, verbose=False)
    dm = DigitsDataModule(imbalance_factor=0.1, batch_size=32)
    al = ActiveLearningCallback(
        budget=40, cycles=1, scorer=VAAL(**SMALL), selector=selector, epochs_per_cycle=1, progress=False,
        output_dir=str(tmp_path),
    )
    trainer = Trainer(
        max_epochs=1, accelerator="cpu", devices=1, callbacks=[al], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )
    trainer.fit(_model(), datamodule=dm)

    initial = dm.pools.initial_size
    assert [r["num_labeled"] for r in al.history] == [initial, initial + 40]
    assert len(dm.pools.labeled_indices(cycle=1)) == 40
    assert len(al.scorer.discriminator_losses[1]) == 21
    scores = al.history[1]["scores"]
    assert len(scores) == 40 and all(0.0 <= s <= 1.0 for s in scores)
    lines = (tmp_path / LABELED_SETS_FILE).read_text().splitlines()
    assert [json.loads(line)["num_labeled"] for line in lines] == [initial, initial + 40]


DDP_SCRIPT = """
import json, sys
from pathlib import Path
sys.path.insert(0, {scripts!r})
from al_run import FrozenLinear  # lr=0, no batch-norm: the same predictions however the pool is sharded
from lightning.pytorch import Trainer, seed_everything
from cbal_lightning import ActiveLearningCallback, DigitsDataModule
from cbal_lightning.selection import ClassBalanced
from cbal_lightning.scoring.vaal import VAAL

out, devices = Path(sys.argv[1]), int(sys.argv[2])
seed_everything(0, verbose=False)
dm = DigitsDataModule(imbalance_factor=0.1, batch_size=32)
al = ActiveLearningCallback(budget=40, cycles=1, scorer=VAAL(**{small!r}), selector=ClassBalanced(lam=1.0, time_limit=20),
                            epochs_per_cycle=1, output_dir=str(out), progress=False)
trainer = Trainer(max_epochs=1, accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
                  callbacks=[al], logger=False, enable_checkpointing=False, limit_val_batches=0,
                  enable_progress_bar=False, enable_model_summary=False)
trainer.fit(FrozenLinear(), datamodule=dm)
(out / f"rank{{trainer.global_rank}}.json").write_text(json.dumps({{
    "labeled": dm.pools.labeled_indices(cycle=1).tolist(), "trained": sorted(al.scorer.discriminator_losses),
}}))
"""


@pytest.mark.slow
def test_ddp_rank0_trains_and_broadcasts(tmp_path: Path) -> None:
    script = tmp_path / "vaal_run.py"
    script.write_text(DDP_SCRIPT.format(scripts=str(Path(__file__).parent / "scripts"), small=SMALL))
    env = os.environ | {"CUDA_VISIBLE_DEVICES": "", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    results = {}
    for devices in (1, 2):
        out = tmp_path / f"devices{devices}"
        out.mkdir()
        proc = subprocess.run([sys.executable, str(script), str(out), str(devices)], env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-4000:]
        results[devices] = [json.loads((out / f"rank{r}.json").read_text()) for r in range(devices)]
    (single,), (rank0, rank1) = results[1], results[2]
    assert rank0["trained"] == [1] and rank1["trained"] == []  # only rank 0 trains; rank 1 loads its weights
    assert rank0["labeled"] == rank1["labeled"] == single["labeled"]
    assert len(single["labeled"]) == 40
