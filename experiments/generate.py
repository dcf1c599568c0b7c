"""Write the paper's experiment grid as LightningCLI configs (run from the repository root).

    python experiments/generate.py          # rewrites experiments/<dataset>/if<IF>/<method>.yaml

Every file is complete on its own: ``cbal-lightning fit --config experiments/cifar10/if0.1/entropy_cb.yaml``.
Methods differ in the callback's scorer and selector lines only (plus ``head_dropout`` for BALD).
Protocol (Sec. 5.1): initial set 10 %, budget 5 % of the train set per cycle, 5 cycles; ResNet-18 from scratch
every cycle on CIFAR (SGD lr 0.02, momentum 0.9, weight decay 5e-4, 100 epochs, halved at 60 and 80);
ImageNet-pretrained ResNet-101 on Tiny-ImageNet (lr 0.01, 30 epochs, halved at 10, 15, 20, 25).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent

# lambda per method and dataset. Entropy-CB: the official code's 0.6 (CIFAR-10) and 2 (CIFAR-100); Tiny-ImageNet
# reuses CIFAR-100's. KCenterGreedy-CB: the official 5 (CIFAR-10) / 50 (CIFAR-100) divided by C, since the official
# code divides lambda by the number of classes and kcenter_greedy takes lambda as given. BALD-CB and VAAL-CB reuse
# Entropy-CB's values (their scores live on a similar scale); re-tune any of them with `cbal-lightning tune-lambda`.
# The grid reproduces the paper, so its balanced selectors balance the uncorrected P (`prior: null`, the paper's Eq. 8
# and Algorithm 2) with the official lambdas; delete that line for the library's label-shift-corrected default
# (docs/prior.md), and re-tune lambda for it.
LAMBDAS = {
    "cifar10": {"entropy": 0.6, "kcenter": 0.5},
    "cifar100": {"entropy": 2.0, "kcenter": 0.5},
    "tiny_imagenet": {"entropy": 2.0, "kcenter": 0.5},
    "digits": {"entropy": 1.0, "kcenter": 0.5},
}

DATASETS: dict[str, dict[str, Any]] = {
    "cifar10": {
        "data": {"class_path": "cbal_lightning.data.CIFAR10DataModule",
                 "init_args": {"root": "data", "batch_size": 128, "num_workers": 4}},
        "model": {"backbone": "resnet18_cifar", "lr": 0.02, "milestones": [60, 80]},
        "trainer": {"max_epochs": 100, "precision": "bf16-mixed", "log_every_n_steps": 50},
        "imbalance_factors": (1.0, 0.3, 0.1),
        "cycles": 5,
    },
    "cifar100": {
        "data": {"class_path": "cbal_lightning.data.CIFAR100DataModule",
                 "init_args": {"root": "data", "batch_size": 128, "num_workers": 4}},
        "model": {"backbone": "resnet18_cifar", "lr": 0.02, "milestones": [60, 80]},
        "trainer": {"max_epochs": 100, "precision": "bf16-mixed", "log_every_n_steps": 50},
        "imbalance_factors": (1.0, 0.3, 0.1),
        "cycles": 5,
    },
    "tiny_imagenet": {
        "data": {"class_path": "cbal_lightning.data.TinyImageNetDataModule",
                 "init_args": {"root": "data", "batch_size": 128, "num_workers": 8}},
        # torchvision downloads the ImageNet weights into $TORCH_HOME on first use; offline, place the file there
        # first, or pass --model.init_args.weights null (training from scratch: not the paper's protocol).
        "model": {"backbone": "resnet101", "weights": "IMAGENET1K_V2", "lr": 0.01, "milestones": [10, 15, 20, 25]},
        "trainer": {"max_epochs": 30, "precision": "bf16-mixed", "log_every_n_steps": 50},
        "imbalance_factors": (1.0, 0.3, 0.1),
        "cycles": 5,
    },
    "digits": {  # the embedded default: CPU-sized, to try a method in a minute
        "data": {"class_path": "cbal_lightning.data.DigitsDataModule", "init_args": {"batch_size": 32}},
        "model": {"backbone": "small_cnn", "lr": 0.05, "milestones": [9, 12]},
        "trainer": {"max_epochs": 15, "deterministic": True, "log_every_n_steps": 5},
        "imbalance_factors": (0.1,),
        "cycles": 4,
    },
}

ENTROPY = {"class_path": "cbal_lightning.scoring.Entropy"}
BALD = {"class_path": "cbal_lightning.scoring.BALD", "init_args": {"mc_samples": 10}}
VAAL = {"class_path": "cbal_lightning.scoring.vaal.VAAL"}
TOPK = {"class_path": "cbal_lightning.selection.TopK"}


def _balanced(lam: float) -> dict[str, Any]:
    return {"class_path": "cbal_lightning.selection.ClassBalanced", "init_args": {"lam": lam, "prior": None}}


def _kcenter(lam: float) -> dict[str, Any]:
    args: dict[str, Any] = {"lam": lam, "prior": None} if lam > 0 else {"lam": lam}
    return {"class_path": "cbal_lightning.selection.KCenterGreedy", "init_args": args}


def methods(dataset: str) -> dict[str, tuple[dict[str, Any], dict[str, Any], str]]:
    """Method name -> (scorer, selector, description)."""
    lam = LAMBDAS[dataset]
    return {
        "random": ({"class_path": "cbal_lightning.scoring.Random"}, TOPK, "Random sampling"),
        "entropy": (ENTROPY, TOPK, "Entropy, the plain strategy (lambda = 0)"),
        "entropy_cb": (ENTROPY, _balanced(lam["entropy"]), "Entropy-CB (Eq. 8)"),
        "entropy_l1_pseudo_label": (ENTROPY, {"class_path": "cbal_lightning.selection.PseudoLabelQuota"},
                                    "Entropy L1 pseudo-label (supplement H)"),
        "bald": (BALD, TOPK, "BALD with MC dropout before the head"),
        "bald_cb": (BALD, _balanced(lam["entropy"]), "BALD-CB (Eq. 9)"),
        "kcenter": (ENTROPY, _kcenter(0.0), "KCenterGreedy (core-set)"),
        "kcenter_cb": (ENTROPY, _kcenter(lam["kcenter"]), "KCenterGreedy-CB (Algorithm 2)"),
        "vaal": (VAAL, TOPK, "VAAL"),
        "vaal_cb": (VAAL, _balanced(lam["entropy"]), "VAAL-CB (Eq. 9)"),
    }


def config(dataset: str, imbalance_factor: float, method: str) -> tuple[str, dict[str, Any]]:
    """The comment header and the body of one config file."""
    spec = DATASETS[dataset]
    scorer, selector, description = methods(dataset)[method]
    model = {"class_path": "cbal_lightning.ImageClassifier", "init_args": dict(spec["model"])}
    if method.startswith("bald"):
        model["init_args"]["head_dropout"] = 0.5  # train with the dropout that BALD samples when scoring
    data = {"class_path": spec["data"]["class_path"],
            "init_args": {**spec["data"]["init_args"], "imbalance_factor": imbalance_factor}}
    trainer = {
        **spec["trainer"],
        "accelerator": "auto",
        "devices": 1,
        "limit_val_batches": 0,  # the callback evaluates every cycle's model on the balanced test set
        "callbacks": [
            {"class_path": "cbal_lightning.ActiveLearningCallback",
             "init_args": {"budget": 0.05, "cycles": spec["cycles"], "scorer": scorer, "selector": selector}},
            {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {"save_last": True}},
        ],
    }
    header = (
        f"# {description} on {dataset} (IF = {imbalance_factor:g}), written by experiments/generate.py.\n"
        f"#   cbal-lightning fit --config experiments/{dataset}/if{imbalance_factor:g}/{method}.yaml\n"
        "# Multi-GPU: --trainer.strategy ddp --trainer.devices 4.  W&B: --trainer.logger "
        "lightning.pytorch.loggers.WandbLogger --trainer.logger.init_args.project cbal\n"
    )
    return header, {"seed_everything": 0, "trainer": trainer, "model": model, "data": data}


def render(dataset: str, imbalance_factor: float, method: str) -> str:
    header, body = config(dataset, imbalance_factor, method)
    return header + yaml.safe_dump(body, sort_keys=False)


def grid() -> dict[Path, str]:
    """Every config file of the grid: path -> text."""
    return {
        ROOT / dataset / f"if{imbalance_factor:g}" / f"{method}.yaml": render(dataset, imbalance_factor, method)
        for dataset, spec in DATASETS.items()
        for imbalance_factor in spec["imbalance_factors"]
        for method in methods(dataset)
    }


def main() -> None:
    for path, text in grid().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


if __name__ == "__main__":
    main()
