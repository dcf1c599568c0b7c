"""Small on-disk datasets in the real layouts, for the datamodule tests."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def _cifar_images(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """N x 3072 uint8 rows (R plane, G plane, B plane) whose brightness encodes the label."""
    noise = rng.integers(0, 50, size=(len(labels), 3072))
    return (noise + 20 * labels[:, None]).clip(0, 255).astype(np.uint8)


def _labels(num_classes: int, n_per_class: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.repeat(np.arange(num_classes), n_per_class))


def write_cifar10(root: str | Path, n_per_class: int = 10, n_test_per_class: int = 4, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` as torchvision downloads it."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = _labels(10, n_per_class, rng)
    for i, part in enumerate(np.array_split(np.arange(len(labels)), 5), start=1):
        _pickle(folder / f"data_batch_{i}", {b"batch_label": f"training batch {i} of 5".encode(),
                                             b"labels": labels[part].tolist(), b"data": _cifar_images(rng, labels[part])})
    test = _labels(10, n_test_per_class, rng)
    _pickle(folder / "test_batch", {b"labels": test.tolist(), b"data": _cifar_images(rng, test)})
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _pickle(folder / "batches.meta", {b"label_names": [n.encode() for n in names], b"num_vis": 3072})
    return folder


def write_cifar100(root: str | Path, n_per_class: int = 10, n_test_per_class: int = 2, seed: int = 0) -> Path:
    """``root/cifar-100-python/{train, test, meta}`` with fine and coarse labels."""
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, n in (("train", n_per_class), ("test", n_test_per_class)):
        fine = _labels(100, n, rng)
        _pickle(folder / name, {b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 5).tolist(),
                                b"data": _cifar_images(rng, fine % 10)})
    _pickle(folder / "meta", {b"fine_label_names": [f"class{c:02d}".encode() for c in range(100)],
                              b"coarse_label_names": [f"super{c:02d}".encode() for c in range(20)]})
    return folder


def _jpeg(path: Path, size: int, value: int, grey: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size, size) if grey else (size, size, 3), value, dtype=np.uint8)
    pixels[: size // 2] //= 2  # not uniform, so crops differ from the original
    Image.fromarray(pixels, mode="L" if grey else "RGB").save(path, format="JPEG")


def write_tiny_imagenet(root: str | Path, classes: Sequence[str], n_train: int = 6, n_val: int = 2, size: int = 64) -> Path:
    """``root/tiny-imagenet-200`` with wnids.txt, words.txt, train/<wnid>/images and val/ (one greyscale JPEG)."""
    folder = Path(root) / "tiny-imagenet-200"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("".join(f"{w}\n" for w in classes))
    (folder / "words.txt").write_text("".join(f"{w}\tthing {i}, other name\n" for i, w in enumerate(classes)))
    for c, wnid in enumerate(classes):
        (folder / "train" / wnid / f"{wnid}_boxes.txt").parent.mkdir(parents=True, exist_ok=True)
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(n_train):
            _jpeg(folder / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", size, 40 + 30 * c, grey=(c, i) == (0, 0))
    lines = []
    for c, wnid in enumerate(classes):
        for i in range(n_val):
            name = f"val_{c * n_val + i}.JPEG"
            _jpeg(folder / "val" / "images" / name, size, 40 + 30 * c)
            lines.append(f"{name}\t{wnid}\t0\t0\t{size - 1}\t{size - 1}\n")
    (folder / "val" / "val_annotations.txt").write_text("".join(lines))
    return folder


def write_image_folder(root: str | Path, classes: Sequence[str], n_train: int = 6, n_test: int = 2, size: int = 32) -> Path:
    """``root/train/<class>/*.jpg`` and ``root/test/<class>/*.jpg`` (the first train image is greyscale)."""
    root = Path(root)
    for split, n in (("train", n_train), ("test", n_test)):
        for c, name in enumerate(classes):
            for i in range(n):
                _jpeg(root / split / name / f"{i:04d}.jpg", size, 40 + 30 * c, grey=(split, c, i) == ("train", 0, 0))
    return root
