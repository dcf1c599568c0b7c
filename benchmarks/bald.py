"""BALD's pool-scoring time relative to one plain inference pass (issue target: at most T + 0.2 times).

    python benchmarks/bald.py [--n 2048] [--mc-samples 10] [--backbone resnet18_cifar] [--out benchmarks/results/bald.json]

Both passes run through :func:`cbal_lightning.inference.predict_pool` on the same images and model (eval mode,
``inference_mode``), so the ratio is what the callback pays. BALD runs the backbone once and the classifier head
``T`` times on dropped-out embeddings; the alternative it is compared with, ``T`` full MC-dropout passes, would
cost about ``T`` times the plain pass.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader, Dataset

from cbal_lightning.inference import predict_pool
from cbal_lightning.models import ImageClassifier
from cbal_lightning.scoring import BALD, Entropy


class _Images(Dataset):
    def __init__(self, n: int) -> None:
        self.images = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], i


class _FullPassBALD(BALD):
    """The usual MC-dropout implementation: ``T`` full forward passes with the dropout layer in train mode."""

    def __call__(self, model, images, indices, cycle, *, embed=False):
        model.head_dropout.train()
        try:
            passes = torch.stack([torch.softmax(model(images).float(), -1) for _ in range(self.mc_samples)])
        finally:
            model.head_dropout.eval()
        mean = passes.mean(0)
        mi = torch.special.entr(mean).sum(-1) - torch.special.entr(passes).sum(-1).mean(0)
        return mean, mi, None


def _time(model: ImageClassifier, loader: DataLoader, scorer, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        predict_pool(model, loader, scorer, 1, device=torch.device("cpu"))
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--mc-samples", type=int, default=10)
    parser.add_argument("--backbone", default="resnet18_cifar")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/bald.json")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = ImageClassifier(num_classes=100, backbone=args.backbone, head_dropout=0.5).eval()
    loader = DataLoader(_Images(args.n), batch_size=args.batch_size)
    plain = _time(model, loader, Entropy(), args.repeats)
    bald = _time(model, loader, BALD(mc_samples=args.mc_samples), args.repeats)
    full = _time(model, loader, _FullPassBALD(mc_samples=args.mc_samples), 1)
    result = {
        "n": args.n, "mc_samples": args.mc_samples, "backbone": args.backbone, "threads": torch.get_num_threads(),
        "plain_seconds": plain, "bald_seconds": bald, "ratio": bald / plain,
        "full_pass_bald_seconds": full, "speedup_over_full_passes": full / bald, "target_ratio": args.mc_samples + 0.2,
        "machine": platform.processor() or platform.machine(),
    }
    table = Table(title=f"Pool scoring, {args.n} images 32x32, {args.backbone}, CPU ({torch.get_num_threads()} threads)")
    for column in ("pass", "seconds", "images/s", "x plain"):
        table.add_column(column, justify="right")
    table.add_row("plain (Entropy)", f"{plain:.2f}", f"{args.n / plain:.0f}", "1.00")
    table.add_row(f"BALD, T={args.mc_samples} (ours)", f"{bald:.2f}", f"{args.n / bald:.0f}", f"{bald / plain:.2f}")
    table.add_row(f"BALD, T={args.mc_samples} full passes", f"{full:.2f}", f"{args.n / full:.0f}", f"{full / plain:.2f}")
    Console().print(table)
    Console().print(f"target: at most T + 0.2 = {args.mc_samples + 0.2:.1f} x plain")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
