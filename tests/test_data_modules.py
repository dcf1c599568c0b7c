"""The datamodules on small fixtures in the real on-disk layouts (see tests/fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DistributedSampler

from cbal_lightning.data import (
    ActiveDataModule, CIFAR10DataModule, CIFAR100DataModule, DatasetFormatError, DatasetNotFoundError,
    DigitsDataModule, ImageFolderDataModule, TinyImageNetDataModule,
)
from cbal_lightning.data.summary import DATAMODULES, build_datamodule, split_table
from cbal_lightning.pools import PoolState
from fixtures import write_cifar10, write_cifar100, write_image_folder, write_tiny_imagenet

WNIDS = ["n03", "n01", "n02"]  # not sorted: the class order must follow wnids.txt


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("data")
    write_cifar10(base / "c10")
    write_cifar100(base / "c100")
    write_tiny_imagenet(base / "tiny", WNIDS, n_train=10, n_val=2)
    write_image_folder(base / "folder", ["cat", "dog", "emu", "fox"], n_train=10, n_test=2)
    return {"c10": base / "c10", "c100": base / "c100", "tiny": base / "tiny", "folder": base / "folder"}


def _make(name: str, roots: dict[str, Path], **kwargs) -> ActiveDataModule:
    kwargs.setdefault("imbalance_factor", 0.5)
    kwargs.setdefault("batch_size", 8)
    kwargs.setdefault("eval_batch_size", 16)
    root = {"cifar10": "c10", "cifar100": "c100", "tiny-imagenet": "tiny", "imagefolder": "folder"}.get(name)
    if root:
        kwargs["root"] = str(roots[root])
    dm = build_datamodule(name, **kwargs)
    dm.setup("fit")
    return dm


# name, num_classes, train size, test size, image shape
CASES = [
    ("cifar10", 10, 100, 40, (3, 32, 32)),
    ("cifar100", 100, 1000, 200, (3, 32, 32)),
    ("tiny-imagenet", 3, 30, 6, (3, 64, 64)),
    ("imagefolder", 4, 40, 8, (3, 32, 32)),
    ("digits", 10, 1347, 450, (1, 16, 16)),
]


@pytest.mark.parametrize("name, num_classes, n_train, n_test, shape", CASES, ids=[c[0] for c in CASES])
def test_sizes_shapes_and_loaders(roots, name, num_classes, n_train, n_test, shape) -> None:
    dm = _make(name, roots)
    assert dm.num_classes == num_classes == len(dm.classes)
    assert dm.in_channels == shape[0] and dm.image_size == shape[1]
    assert len(dm.targets) == len(dm.pools) == n_train and dm.targets.dtype == np.int64
    assert len(dm.test_dataset) == n_test
    image, label = dm.test_dataset[0]
    assert image.shape == shape and image.dtype == torch.float32 and isinstance(label, int)

    # the pool loader: (images, train indices) of exactly the unlabeled pool, deterministic
    batches = list(dm.pool_dataloader())
    indices = torch.cat([i for _, i in batches])
    assert indices.tolist() == dm.pools.unlabeled_indices().tolist()
    assert all(x.shape[1:] == shape for x, _ in batches)
    again = torch.cat([x for x, _ in dm.pool_dataloader()])
    assert torch.equal(torch.cat([x for x, _ in batches]), again)
    test_a = torch.cat([x for x, _ in dm.test_dataloader()])
    assert torch.equal(test_a, torch.cat([x for x, _ in dm.val_dataloader()]))

    # the train loader: the labeled samples with their labels
    labels = torch.cat([y for _, y in dm.train_dataloader()])
    assert sorted(labels.tolist()) == sorted(dm.targets[dm.pools.labeled_indices()].tolist())


def test_class_order_names_and_greyscale_of_tiny_imagenet(roots) -> None:
    dm = TinyImageNetDataModule(root=str(roots["tiny"]))
    assert dm.wnids == WNIDS and dm.classes == ["thing 0", "thing 1", "thing 2"]
    same = TinyImageNetDataModule(root=str(roots["tiny"] / "tiny-imagenet-200"))  # the folder itself
    same.setup()
    dm.setup()
    # fixtures: class c has brightness 40 + 30c, so the label order follows wnids.txt
    means = [dm.test_dataset[k][0].mean().item() for k in range(len(dm.test_dataset))]
    labels = [dm.test_dataset[k][1] for k in range(len(dm.test_dataset))]
    assert labels == [0, 0, 1, 1, 2, 2] and means == sorted(means)
    grey = dm.train_dataset().images  # every train image, whether labeled or not
    with Image.open(grey.paths[0]) as on_disk:
        assert on_disk.mode == "L"  # the fixture's greyscale JPEG
    assert grey[0].mode == "RGB" and dm.eval_transform(grey[0]).shape == (3, 64, 64)
    assert np.array_equal(same.targets, dm.targets)


def test_greyscale_jpeg_becomes_rgb_in_image_folder(roots) -> None:
    dm = _make("imagefolder", roots, imbalance_factor=1.0)
    images = dm.train_dataset().images
    with Image.open(images.paths[0]) as on_disk:
        assert on_disk.mode == "L" and images.paths[0].endswith("train/cat/0000.jpg")
    assert images[0].mode == "RGB" and dm.eval_transform(images[0]).shape == (3, 32, 32)
    assert dm.classes == ["cat", "dog", "emu", "fox"]


def test_train_loader_augments_and_label_grows_it(roots) -> None:
    dm = _make("cifar10", roots)
    train = dm.train_dataset()
    torch.manual_seed(0)
    first = torch.stack([train[k][0] for k in range(len(train))])
    second = torch.stack([train[k][0] for k in range(len(train))])
    assert not torch.equal(first, second)  # random crops and flips
    plain = torch.stack([dm.eval_transform(train.images[i]) for i in train.indices])
    assert first.shape == plain.shape

    before = dm.pools.num_labeled
    chosen = dm.pools.unlabeled_indices()[:7]
    dm.label(chosen, cycle=1)
    assert len(dm.train_dataloader().dataset) == before + 7
    assert not np.isin(chosen, torch.cat([i for _, i in dm.pool_dataloader()]).numpy()).any()
    with pytest.raises(ValueError, match="twice"):
        dm.label(chosen[:1], cycle=2)


def test_pool_dataloader_accepts_a_ddp_sampler_and_indices(roots) -> None:
    dm = _make("digits", roots, imbalance_factor=0.1)
    dataset = dm.pool_dataset()
    seen = []
    for rank in (0, 1):
        sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=False)
        seen += torch.cat([i for _, i in dm.pool_dataloader(sampler=sampler, batch_size=64)]).tolist()
    assert sorted(set(seen)) == dm.pools.unlabeled_indices().tolist()
    part = dm.pools.unlabeled_indices()[:5]
    assert torch.cat([i for _, i in dm.pool_dataloader(part)]).tolist() == part.tolist()
    with pytest.raises(ValueError, match="unlabeled pool"):
        dm.pool_dataset(dm.pools.labeled_indices()[:1])


def test_state_dict_round_trip_before_and_after_setup(roots, tmp_path: Path) -> None:
    dm = _make("digits", roots, imbalance_factor=0.1, seed=3)
    dm.label(dm.pools.unlabeled_indices()[:40], cycle=1)
    torch.save(dm.state_dict(), tmp_path / "dm.pt")
    state = torch.load(tmp_path / "dm.pt", weights_only=True)

    after = _make("digits", roots, imbalance_factor=0.1, seed=3)  # set up, then restored (Lightning's order)
    after.load_state_dict(state)
    before = DigitsDataModule(imbalance_factor=0.1, seed=3)  # restored, then set up
    before.load_state_dict(state)
    before.setup("fit")
    for restored in (after, before):
        assert restored.pools.labeled_indices(cycle=1).tolist() == dm.pools.labeled_indices(cycle=1).tolist()
        assert len(restored.train_dataloader().dataset) == dm.pools.num_labeled

    with pytest.raises(ValueError, match="seed: checkpoint 3, now 4"):
        DigitsDataModule(imbalance_factor=0.1, seed=4).load_state_dict(state)


def test_trainer_restores_the_pools_from_a_checkpoint(tmp_path: Path) -> None:
    from lightning.pytorch import Trainer

    from cbal_lightning.models import ImageClassifier

    def trainer(epochs: int) -> Trainer:
        return Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                       enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, limit_train_batches=1)

    dm = DigitsDataModule(imbalance_factor=0.1, batch_size=16)
    model = ImageClassifier(num_classes=10, backbone="small_cnn", in_channels=1)
    first = trainer(1)
    first.fit(model, datamodule=dm)
    dm.label(dm.pools.unlabeled_indices()[:40], cycle=1)
    first.save_checkpoint(tmp_path / "last.ckpt")

    resumed = DigitsDataModule(imbalance_factor=0.1, batch_size=16)
    trainer(2).fit(ImageClassifier(num_classes=10, backbone="small_cnn", in_channels=1), datamodule=resumed,
                   ckpt_path=tmp_path / "last.ckpt")
    assert resumed.pools.labeled_indices(cycle=1).tolist() == dm.pools.labeled_indices(cycle=1).tolist()


@pytest.mark.parametrize("cls, folder, expected", [
    (CIFAR10DataModule, "cifar-10-batches-py", "data_batch_1..5, test_batch"),
    (CIFAR100DataModule, "cifar-100-python", "train, test, meta"),
])
def test_missing_cifar_names_the_path_and_download(tmp_path: Path, cls, folder, expected) -> None:
    dm = cls(root=str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="download=True") as err:
        dm.setup("fit")
    assert str(tmp_path / folder) in str(err.value) and expected in str(err.value)
    assert "cs.toronto.edu" in str(err.value)


def test_corrupt_cifar_pickle_names_the_file(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path, n_per_class=10)
    (folder / "data_batch_3").write_bytes(b"\x80\x04 not a pickle")
    with pytest.raises(DatasetFormatError, match="data_batch_3"):
        CIFAR10DataModule(root=str(tmp_path)).setup("fit")


def test_cifar_class_names_from_meta(roots) -> None:
    assert _make("cifar10", roots).classes[:3] == ["airplane", "automobile", "bird"]
    assert _make("cifar100", roots).classes[-1] == "class99"


def test_missing_tiny_imagenet_and_image_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="tiny-imagenet-200.zip") as err:
        TinyImageNetDataModule(root=str(tmp_path))
    assert str(tmp_path / "tiny-imagenet-200" / "wnids.txt") in str(err.value)
    with pytest.raises(DatasetNotFoundError, match="train"):
        ImageFolderDataModule(root=str(tmp_path))


def test_image_folder_class_lists_must_match(tmp_path: Path) -> None:
    write_image_folder(tmp_path, ["cat", "dog"], n_train=10, n_test=1)
    (tmp_path / "test" / "eel").mkdir()
    with pytest.raises(DatasetFormatError, match="only in test: \\['eel'\\]"):
        ImageFolderDataModule(root=str(tmp_path))


def test_image_folder_resize_and_stats(tmp_path: Path) -> None:
    write_image_folder(tmp_path, ["a", "b"], n_train=10, n_test=1, size=40)
    dm = ImageFolderDataModule(root=str(tmp_path), image_size=24, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    dm.setup()
    assert dm.test_dataset[0][0].shape == (3, 24, 24) and dm.padding == 3
    assert ImageFolderDataModule(root=str(tmp_path)).image_size == 40


@pytest.mark.parametrize("kwargs, name", [
    ({"imbalance_factor": 0}, "imbalance_factor"), ({"imbalance_factor": 2}, "imbalance_factor"),
    ({"initial_fraction": 1.0}, "initial_fraction"), ({"imbalance_type": "log"}, "imbalance_type"),
    ({"tail_classes": [10]}, "tail_classes"), ({"batch_size": 0}, "batch_size"), ({"test_fraction": 1}, "test_fraction"),
])
def test_bad_arguments_fail_at_construction(kwargs, name) -> None:
    with pytest.raises(ValueError, match=name):
        DigitsDataModule(**kwargs)


def test_summary_registry_and_table(roots) -> None:
    assert set(DATAMODULES) == {"cifar10", "cifar100", "tiny-imagenet", "imagefolder", "digits"}
    with pytest.raises(ValueError, match="unknown dataset"):
        build_datamodule("mnist")
    table = split_table(_make("cifar10", roots, imbalance_factor=0.5))
    lines = table.splitlines()
    assert "airplane" in table and lines[-1].split() == ["total", "10", "90", "70", "80", "5"]
    assert lines[3].split()[-1] == "no" and lines[-3].split()[-1] == "yes"


def test_accessing_data_before_setup_says_so() -> None:
    with pytest.raises(RuntimeError, match="setup"):
        DigitsDataModule().pools


def test_state_dict_before_setup_is_empty_or_the_pending_pools(roots) -> None:
    assert DigitsDataModule().state_dict() == {}
    dm = _make("digits", roots)
    pending = DigitsDataModule(imbalance_factor=0.5)
    pending.load_state_dict(dm.state_dict())
    assert torch.equal(pending.state_dict()["pools"]["cycles"], dm.pools.state_dict()["cycles"])


def test_eval_dataset_serves_any_train_samples_without_augmentation() -> None:
    from cbal_lightning.data import DigitsDataModule

    dm = DigitsDataModule(imbalance_factor=0.1)
    dm.setup("fit")
    labeled = dm.pools.labeled_indices()[:5]
    dataset = dm.eval_dataset(labeled)
    assert [int(dataset[k][1]) for k in range(5)] == labeled.tolist()  # items carry their train index
    assert torch.equal(dataset[0][0], dm.eval_dataset(labeled)[0][0])  # deterministic: no augmentation
    images, indices = next(iter(dm.eval_dataloader(labeled, batch_size=5)))
    assert images.shape[0] == 5 and indices.tolist() == labeled.tolist()
    with pytest.raises(ValueError, match="out of range"):
        dm.eval_dataset([len(dm.pools)])


def test_unreadable_images_are_named_and_verify_images_fails_or_drops_them(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs", ["a", "b"], n_train=6, n_test=2)
    bad = root / "train" / "b" / "0003.jpg"
    bad.write_bytes(bad.read_bytes()[:300])  # a truncated JPEG: its header reads, its pixels do not
    kwargs = dict(root=str(root), initial_fraction=0.5, batch_size=4)

    dm = ImageFolderDataModule(**kwargs)
    dm.setup("fit")
    index = dm.eval_dataset(np.arange(12)).images.paths.index(str(bad))
    with pytest.raises(DatasetFormatError, match=rf"{bad}: unreadable image .*verify_images='drop'"):
        dm.eval_dataset([index])[0]

    with pytest.raises(DatasetFormatError, match=rf"(?s)1 unreadable image file\(s\):\n  {bad} \(OSError"):
        ImageFolderDataModule(verify_images="fail", **kwargs).setup("fit")

    dropped = ImageFolderDataModule(verify_images="drop", **kwargs)
    with pytest.warns(UserWarning, match=rf"leaving out 1 unreadable image file\(s\):\n  {bad}"):
        dropped.setup("fit")
    assert index not in dropped.pools.candidate_indices() and index not in dropped.pools.labeled_indices()
    assert dropped.pools.num_candidates == 11
    assert all(dropped.train_dataset()[k][0].shape == (3, 32, 32) for k in range(dropped.pools.num_labeled))

    # a resume agrees: the dropped file is recorded in the saved pool state
    resumed = ImageFolderDataModule(verify_images="drop", **kwargs)
    with pytest.warns(UserWarning, match="leaving out 1"):
        resumed.setup("fit")
    resumed.load_state_dict(dropped.state_dict())
    assert resumed.pools.candidate_indices().tolist() == dropped.pools.candidate_indices().tolist()
    with pytest.raises(ValueError, match="verify_images must be 'off', 'fail' or 'drop'"):
        ImageFolderDataModule(verify_images="yes", **kwargs)


def test_a_deleted_image_file_is_explained_on_load(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imgs", ["a", "b"], n_train=6, n_test=2)
    dm = ImageFolderDataModule(root=str(root), initial_fraction=0.5)
    dm.setup("fit")
    (root / "train" / "b" / "0003.jpg").unlink()
    fewer = ImageFolderDataModule(root=str(root), initial_fraction=0.5)
    fewer.setup("fit")
    with pytest.raises(ValueError, match="if image files were deleted, put them back and pass verify_images='drop'"):
        fewer.load_state_dict(dm.state_dict())


def test_pool_exclude_unlabels_the_initial_set_but_never_a_query() -> None:
    pools = PoolState([0, 1, 0, 1, 2, 2])
    pools.label([0, 1], cycle=0)
    pools.label([4], cycle=1)
    pools.exclude([1, 3])
    assert pools.labeled_indices().tolist() == [0, 4] and pools.candidate_indices().tolist() == [0, 2, 4, 5]
    restored = PoolState([0, 1, 0, 1, 2, 2])
    restored.load_state_dict(pools.state_dict())  # the exclusion travels with the state
    assert restored.candidate_indices().tolist() == [0, 2, 4, 5]
    with pytest.raises(ValueError, match=r"cannot exclude indices labeled by a query \(cycles >= 1\): \[4\]"):
        pools.exclude([4])
