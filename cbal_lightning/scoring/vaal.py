"""VAAL (Sinha, Ebrahimi, Darrell, "Variational Adversarial Active Learning", ICCV 2019) as a :class:`Scorer`.

A beta-VAE maps labeled and unlabeled images to a latent space; a discriminator learns to tell labeled latents
from unlabeled ones while the VAE, trained adversarially, tries to make both look labeled. The samples the
discriminator most confidently calls *unlabeled* are queried: ``score = 1 - D(mu(x))``.

VAAL-CB (Sec. 4 of the class-balanced AL paper, Eq. 9) is this scorer with
:class:`~cbal_lightning.selection.selectors.ClassBalanced`: cost ``u = -score`` and P from the task model.

Defaults follow the official code (github.com/sinhasam/vaal, ``arguments.py`` / ``solver.py`` / ``model.py``):
Adam with lr 5e-4 for VAE and discriminator, latent_dim 32, beta 1, adversary_param 1, num_vae_steps 2,
num_adv_steps 1, batch size 128, 100 epochs; VAE and discriminator are re-created every cycle. See
``docs/vaal.md`` for the deviations (iterations counted on the labeled set, eval-mode scoring, no augmentation).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from cbal_lightning.scoring.scorers import Scorer, class_probabilities

__all__ = ["VAE", "Discriminator", "VAAL"]


def _init_weights(module: nn.Module) -> None:
    """The official ``kaiming_init``: Kaiming-normal conv/linear weights, zero biases (BN keeps 1/0)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class VAE(nn.Module):
    """VAAL's VAE, adapted to square inputs of any power-of-two size >= 8.

    The encoder halves the resolution with 4x4 stride-2 convs (BN + ReLU) down to 2x2, doubling the channels
    from ``base_channels`` up to ``8 * base_channels``; linear heads give ``mu`` and ``logvar``. The decoder
    mirrors it from 4x4 with transposed convs and ends in a 1x1 transposed conv (linear output, for normalised
    images). At 32x32 with ``base_channels=128`` this is exactly the official CIFAR VAE (128-256-512-1024).

    Example:
        >>> vae = VAE(in_channels=1, image_size=16, base_channels=8)
        >>> recon, mu, logvar = vae(torch.randn(2, 1, 16, 16))
        >>> recon.shape, mu.shape, Discriminator(32)(mu).shape
        (torch.Size([2, 1, 16, 16]), torch.Size([2, 32]), torch.Size([2]))
    """

    def __init__(self, in_channels: int, image_size: int, latent_dim: int = 32, base_channels: int = 128) -> None:
        super().__init__()
        if image_size < 8 or image_size & (image_size - 1):
            raise ValueError(f"VAE: image_size must be a power of two >= 8, got {image_size}")
        stages = int(math.log2(image_size)) - 1  # stride-2 convs from image_size down to 2x2
        widths = [base_channels * 2 ** min(i, 3) for i in range(stages)]
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            layers += [nn.Conv2d(c, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(True)]
            c = w
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        self.fc_mu = nn.Linear(c * 2 * 2, latent_dim)
        self.fc_logvar = nn.Linear(c * 2 * 2, latent_dim)
        layers = [nn.Linear(latent_dim, c * 4 * 4), nn.Unflatten(1, (c, 4, 4))]
        for w in reversed(widths[:-1]):
            layers += [nn.ConvTranspose2d(c, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(True)]
            c = w
        self.decoder = nn.Sequential(*layers, nn.ConvTranspose2d(c, in_channels, 1))
        _init_weights(self)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, logvar)``, each (B, latent_dim)."""
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``(reconstruction, mu, logvar)``; the reparameterisation noise is drawn from ``generator``."""
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return self.decoder(mu + eps * (0.5 * logvar).exp()), mu, logvar


class Discriminator(nn.Module):
    """VAAL's adversary: an MLP ``latent -> hidden x depth -> 1`` with ReLUs (the official 5-layer MLP).

    :meth:`forward` returns the probability that a latent comes from the labeled set, shape (B,).
    """

    def __init__(self, latent_dim: int, hidden: int = 512, depth: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(latent_dim if i == 0 else hidden, hidden), nn.ReLU(True)]
        self.net = nn.Sequential(*layers, nn.Linear(hidden, 1))
        _init_weights(self)

    def logits(self, z: Tensor) -> Tensor:
        return self.net(z).squeeze(-1)

    def forward(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.logits(z))


def _index_batches(n: int, batch_size: int, count: int, generator: torch.Generator) -> list[list[int]]:
    """``count`` batches of ``min(batch_size, n)`` indices from consecutive random permutations of ``range(n)``."""
    size = min(batch_size, n)
    perms = torch.cat([torch.randperm(n, generator=generator) for _ in range(math.ceil(count * size / n))])
    return perms[: count * size].view(count, size).tolist()


class VAAL(Scorer):
    """VAAL scores ``1 - D(mu(x))``: the lower the discriminator's probability of "labeled", the more informative.

    :meth:`prepare` trains a fresh VAE and discriminator each cycle (as the official code does) on rank 0, on the
    labeled and unlabeled train images with evaluation transforms (no augmentation: the VAE sees the same images
    it later scores), and broadcasts the weights to all ranks. Scoring uses both networks in eval mode, so a
    score depends only on the image. Probabilities and embeddings come from the task model, as for every scorer.

    Args:
        latent_dim: VAE latent size (official: 32).
        base_channels: width of the first encoder conv (official: 128); lower it for CPU runs.
        epochs: VAE/discriminator training length: ``ceil(epochs * num_labeled / batch_size)`` iterations.
        batch_size: labeled and unlabeled batch size (official: 128).
        lr: Adam learning rate of both networks (official: 5e-4).
        beta: weight of the KL term (official: 1).
        adversary_param: weight of the VAE's adversarial loss (lambda2 in VAAL; official: 1).
        vae_steps: VAE updates per iteration (official: 2).
        adv_steps: discriminator updates per iteration (official: 1).
        seed: with the cycle, seeds initialisation, shuffling and VAE noise (the global RNG is untouched).
        progress: show a training progress bar on rank 0 (when the trainer has a progress bar).

    After :meth:`prepare`, ``discriminator_losses[cycle]`` and ``vae_losses[cycle]`` hold the per-update losses
    (on rank 0; empty elsewhere).
    """

    def __init__(
        self,
        latent_dim: int = 32,
        base_channels: int = 128,
        epochs: int = 100,
        batch_size: int = 128,
        lr: float = 5e-4,
        beta: float = 1.0,
        adversary_param: float = 1.0,
        vae_steps: int = 2,
        adv_steps: int = 1,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        for name, value in (("latent_dim", latent_dim), ("base_channels", base_channels), ("epochs", epochs),
                            ("batch_size", batch_size), ("vae_steps", vae_steps), ("adv_steps", adv_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"VAAL: {name} must be an int >= 1, got {value!r}")
        if lr <= 0:
            raise ValueError(f"VAAL: lr must be > 0, got {lr!r}")
        self.latent_dim = latent_dim
        self.base_channels = base_channels
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.beta = beta
        self.adversary_param = adversary_param
        self.vae_steps = vae_steps
        self.adv_steps = adv_steps
        self.seed = seed
        self.progress = progress
        self.vae: VAE | None = None
        self.discriminator: Discriminator | None = None
        self.prepared_cycle: int | None = None
        self.discriminator_losses: dict[int, list[float]] = {}
        self.vae_losses: dict[int, list[float]] = {}

    def __repr__(self) -> str:
        return (
            f"VAAL(latent_dim={self.latent_dim}, base_channels={self.base_channels}, epochs={self.epochs}, "
            f"batch_size={self.batch_size}, lr={self.lr}, beta={self.beta}, adversary_param={self.adversary_param}, "
            f"vae_steps={self.vae_steps}, adv_steps={self.adv_steps}, seed={self.seed})"
        )

    # ------------------------------------------------------------------ training

    def prepare(self, trainer: Any, pl_module: nn.Module, datamodule: Any, cycle: int) -> None:
        """Train VAE + discriminator on rank 0 for the query of ``cycle``, then broadcast them to every rank."""
        device = pl_module.device
        labeled = datamodule.eval_dataset(datamodule.pools.labeled_indices())
        unlabeled = datamodule.eval_dataset(datamodule.pools.unlabeled_indices())
        if len(labeled) == 0 or len(unlabeled) == 0:
            raise ValueError(f"VAAL: needs labeled and unlabeled samples, got {len(labeled)} and {len(unlabeled)}")
        channels, height, width = labeled[0][0].shape
        if height != width:
            raise ValueError(f"VAAL: square images needed, got {height}x{width}")
        seed = self.seed * 1_000_003 + cycle
        with torch.inference_mode(False), torch.enable_grad():
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)  # identical initial weights on every rank, global RNG untouched
                vae = VAE(channels, height, self.latent_dim, self.base_channels).to(device)
                discriminator = Discriminator(self.latent_dim).to(device)
            state = None
            if trainer.is_global_zero:
                progress = self.progress and getattr(trainer, "progress_bar_callback", None) is not None
                self._train(vae, discriminator, labeled, unlabeled, datamodule, cycle, seed, progress)
                state = {name: {k: v.detach().cpu() for k, v in net.state_dict().items()}
                         for name, net in (("vae", vae), ("discriminator", discriminator))}
            state = trainer.strategy.broadcast(state, src=0)
            vae.load_state_dict(state["vae"])
            discriminator.load_state_dict(state["discriminator"])
        self.vae, self.discriminator, self.prepared_cycle = vae.eval(), discriminator.eval(), cycle

    def _train(
        self, vae: VAE, discriminator: Discriminator, labeled: Dataset, unlabeled: Dataset, datamodule: Any,
        cycle: int, seed: int, progress: bool,
    ) -> None:
        """The official VAAL loop (``solver.py``) without the task model; losses go to the per-cycle histories."""
        device = next(vae.parameters()).device
        iterations = math.ceil(self.epochs * len(labeled) / self.batch_size)
        draws = iterations * (self.vae_steps + self.adv_steps - 1)
        shuffle = torch.Generator().manual_seed(seed)
        noise = torch.Generator(device=device).manual_seed(seed)
        loaders = [
            DataLoader(dataset, batch_sampler=_index_batches(len(dataset), self.batch_size, draws, shuffle),
                       num_workers=getattr(datamodule, "num_workers", 0),
                       pin_memory=getattr(datamodule, "pin_memory", False), generator=shuffle)  # not the global RNG
            for dataset in (labeled, unlabeled)
        ]
        batches = ((x.to(device, non_blocking=True), u.to(device, non_blocking=True)) for (x, _), (u, _) in zip(*loaders))
        opt_vae = torch.optim.Adam(vae.parameters(), lr=self.lr)
        opt_disc = torch.optim.Adam(discriminator.parameters(), lr=self.lr)
        vae.train()
        discriminator.train()
        vae_losses: list[Tensor] = []
        disc_losses: list[Tensor] = []
        for _ in tqdm(range(iterations), desc=f"VAAL (cycle {cycle})", disable=not progress, leave=False):
            x_lab, x_unlab = next(batches)
            for step in range(self.vae_steps):
                if step:
                    x_lab, x_unlab = next(batches)
                loss = self._vae_loss(vae, discriminator, x_lab, noise) + self._vae_loss(vae, discriminator, x_unlab, noise)
                opt_vae.zero_grad()
                loss.backward()
                opt_vae.step()
                vae_losses.append(loss.detach())
            for step in range(self.adv_steps):
                if step:
                    x_lab, x_unlab = next(batches)
                with torch.no_grad():
                    mu_lab, mu_unlab = vae.encode(x_lab)[0], vae.encode(x_unlab)[0]
                logits_lab, logits_unlab = discriminator.logits(mu_lab), discriminator.logits(mu_unlab)
                loss = F.binary_cross_entropy_with_logits(logits_lab, torch.ones_like(logits_lab)) + \
                    F.binary_cross_entropy_with_logits(logits_unlab, torch.zeros_like(logits_unlab))
                opt_disc.zero_grad()
                loss.backward()
                opt_disc.step()
                disc_losses.append(loss.detach())
        self.vae_losses[cycle] = torch.stack(vae_losses).tolist()
        self.discriminator_losses[cycle] = torch.stack(disc_losses).tolist()

    def _vae_loss(self, vae: VAE, discriminator: Discriminator, x: Tensor, noise: torch.Generator) -> Tensor:
        """MSE + beta * KL (summed over batch and latent, as in the official code) + adversary_param * BCE(D, 1)."""
        recon, mu, logvar = vae(x, generator=noise)
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        logits = discriminator.logits(mu)
        fool = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))  # make every latent look labeled
        return F.mse_loss(recon, x) + self.beta * kl + self.adversary_param * fool

    # ------------------------------------------------------------------ scoring

    def __call__(
        self, model: nn.Module, images: Tensor, indices: Tensor, cycle: int, *, embed: bool = False
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        if self.vae is None or self.discriminator is None or self.prepared_cycle != cycle:
            raise RuntimeError(
                f"VAAL: call prepare(trainer, pl_module, datamodule, {cycle}) before scoring cycle {cycle} "
                f"(prepared for cycle {self.prepared_cycle})."
            )
        probs, embeddings = class_probabilities(model, images, embed=embed)  # P of the task model, for VAAL-CB
        mu = self.vae.encode(images)[0]
        with torch.autocast(images.device.type, enabled=False):
            labeled_prob = self.discriminator(mu.float())
        return probs, (1.0 - labeled_prob).float(), embeddings

    def score(self, probs: Tensor, indices: Tensor, cycle: int) -> Tensor:
        raise TypeError("VAAL scores images (VAE + discriminator), not probabilities: call the scorer on a batch of images.")
