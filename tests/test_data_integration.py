"""ImageFolderDataModule on the real CIFAR-10 images of ../shared/data (see its README.md)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

from cbal_lightning.data import ImageFolderDataModule
from cbal_lightning.data.summary import split_table

ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ARCHIVE.is_file(), reason=f"{ARCHIVE} is absent"),
]


@pytest.fixture(scope="module")
def cifar10_jpeg() -> Iterator[Path]:
    # A temporary directory removed at the end (pytest's tmp_path would keep 60,000 files per run), in memory where
    # possible: writing 60,000 small files to a busy disk can take a minute, to /dev/shm about a second.
    shm = Path("/dev/shm")
    in_memory = shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 1 << 30
    with tempfile.TemporaryDirectory(prefix="cifar10-jpeg-", dir=shm if in_memory else None) as tmp:
        if shutil.which("tar"):  # about 3 s; Python's tarfile is several times slower on 60,000 members
            subprocess.run(["tar", "-xzf", str(ARCHIVE), "-C", tmp], check=True)
        else:
            with tarfile.open(ARCHIVE) as tar:
                tar.extractall(tmp, filter="data")
        yield Path(tmp)


def test_cifar10_jpeg_long_tail_split(cifar10_jpeg: Path) -> None:
    dm = ImageFolderDataModule(root=str(cifar10_jpeg), imbalance_factor=0.1, eval_batch_size=256)
    assert dm.classes == CLASSES and dm.num_classes == 10 and dm.image_size == 32 and dm.padding == 4
    dm.setup("fit")
    split = dm.split
    assert len(dm.pools) == 50_000 and len(dm.test_dataset) == 10_000
    assert split.initial_per_class.tolist() == [500] * 10 and dm.pools.initial_size == 5_000
    assert split.available_per_class.sum() == 45_000  # pool candidates before the cut
    assert split.pool_per_class.tolist() == [4500] * 5 + [450] * 5
    assert dm.pools.num_unlabeled == 24_750 and dm.pools.num_candidates == 29_750
    assert np.bincount(dm.targets, minlength=10).tolist() == [5000] * 10
    assert "total" in split_table(dm)

    images, indices = next(iter(dm.pool_dataloader()))
    assert images.shape == (256, 3, 32, 32) and indices.tolist() == dm.pools.unlabeled_indices()[:256].tolist()
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (128, 3, 32, 32) and labels.dtype == torch.int64
    # ImageNet statistics roughly normalise CIFAR-10 (mean pixel ~0.47 vs 0.45)
    assert abs(images.mean().item()) < 0.5
