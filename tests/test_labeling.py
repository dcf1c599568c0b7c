"""A person labeling from Python: export a query (CSV, manifest, thumbnails, Label Studio), fill labels, import, and the bad CSVs."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cbal_lightning.data import DigitsDataModule, ImageFolderDataModule
from cbal_lightning.tools.labeling import export_query, import_labels, propose_query, read_labels
from cbal_lightning.models import ImageClassifier
from cbal_lightning.selection import ClassBalanced
from fixtures import write_image_folder


@pytest.fixture
def digits() -> DigitsDataModule:
    dm = DigitsDataModule(imbalance_factor=0.1, batch_size=32)
    dm.setup("fit")
    return dm


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _fill(path: Path, labels: dict[int, str]) -> None:
    rows = _rows(path)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow(row | {"label": labels.get(int(row["index"]), row["label"])})


def test_digits_round_trip_labels_exactly_the_query(digits: DigitsDataModule, tmp_path: Path) -> None:
    pool = digits.pools.unlabeled_indices()
    query = pool[::50][:8]
    before = digits.pools.labeled_indices()
    files = export_query(digits, query, tmp_path, cycle=1, predicted=np.arange(8) % 10)
    csv_path = files.csv
    rows = _rows(csv_path)
    assert list(rows[0]) == ["index", "path", "predicted", "label"]
    assert [int(r["index"]) for r in rows] == query.tolist()
    assert all(Path(r["path"]).name == f"{r['index']}.png" and r["label"] == "" for r in rows)  # digits: the thumbnail
    assert [r["predicted"] for r in rows] == [str(k % 10) for k in range(8)]
    thumb = Image.open(tmp_path / "thumbs" / f"{query[0]}.png")
    assert thumb.size == (96, 96) and thumb.mode == "L"  # 16x16 digits upscaled for the labeler
    given = {int(i): str(int(digits.targets[i])) for i in query}  # a simulated pool: the person agrees with it
    _fill(csv_path, given)
    labeled = import_labels(digits, tmp_path, cycle=1)
    assert labeled.tolist() == sorted(query.tolist())
    assert digits.pools.labeled_indices(cycle=1).tolist() == sorted(query.tolist())
    assert digits.pools.labeled_indices(cycle=0).tolist() == before.tolist()  # the initial set is untouched
    assert digits.pools.labeled_counts().sum() == len(before) + len(query)


def test_a_person_disagreeing_with_a_known_label_is_refused(digits: DigitsDataModule, tmp_path: Path) -> None:
    query = digits.pools.unlabeled_indices()[:2]
    files = export_query(digits, query, tmp_path, cycle=1, thumbnails=False)
    _fill(files.csv, {int(i): str((int(digits.targets[i]) + 1) % 10) for i in query})
    with pytest.raises(ValueError, match="differ from the known labels"):
        import_labels(digits, tmp_path, cycle=1)
    assert digits.pools.num_labeled == digits.pools.initial_size


def test_a_real_pool_round_trip_through_the_checkpoint_state(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data", ["cat", "dog"], n_train=3, n_test=1, size=16)
    (root / "unlabeled" / "a").mkdir(parents=True)
    for k in range(4):
        Image.new("RGB", (16, 16), (10 * k, 0, 0)).save(root / "unlabeled" / "a" / f"{k}.png")
    dm = ImageFolderDataModule(root=str(root), batch_size=2)
    dm.setup("fit")
    unknown = dm.pools.unknown_indices()
    assert len(unknown) == 4 and dm.pools.num_labeled == 6 and (dm.targets[unknown] == -1).all()
    files = export_query(dm, unknown[:3], tmp_path / "q", cycle=1)
    tasks = json.loads(files.label_studio_tasks.read_text())
    assert [t["data"]["index"] for t in tasks] == unknown[:3].tolist()
    assert tasks[0]["data"]["image"].startswith("/data/local-files/?d=") and "unlabeled" in tasks[0]["data"]["image"]
    _fill(files.csv, {int(unknown[0]): "dog", int(unknown[1]): "0", int(unknown[2]): "cat"})
    import_labels(dm, tmp_path / "q", cycle=1)
    assert dm.targets[unknown[:3]].tolist() == [1, 0, 0] and dm.targets[unknown[3]] == -1
    state = dm.state_dict()  # the person's labels travel in the checkpoint state and restore into a fresh datamodule
    fresh = ImageFolderDataModule(root=str(root), batch_size=2)
    fresh.setup("fit")
    fresh.load_state_dict(state)
    assert fresh.pools.labeled_indices(cycle=1).tolist() == sorted(unknown[:3].tolist())
    assert fresh.targets[unknown[:3]].tolist() == [1, 0, 0]


def test_class_numbers_and_names_are_both_accepted(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data", ["cat", "dog", "emu"], n_train=12, n_test=2, size=24)
    dm = ImageFolderDataModule(root=str(root), initial_fraction=0.25, batch_size=4)
    dm.setup("fit")
    query = dm.pools.unlabeled_indices()[:4]
    csv_path = export_query(dm, query, tmp_path / "q", cycle=1).csv
    rows = _rows(csv_path)
    assert list(rows[0]) == ["index", "path", "predicted", "label"] and rows[0]["predicted"] == ""
    for row in rows:
        path = Path(row["path"])
        assert path.is_file() and path.parent.parent == root / "train"
        assert Image.open(tmp_path / "q" / "thumbs" / f"{row['index']}.png").size == (96, 96)
    names = {int(i): dm.classes[int(dm.targets[i])] for i in query}  # names and numbers of the true classes
    _fill(csv_path, {int(i): (name if k % 2 else str(dm.classes.index(name))) for k, (i, name) in enumerate(names.items())})
    import_labels(dm, tmp_path / "q", cycle=1)
    assert dm.pools.labeled_indices(cycle=1).tolist() == sorted(query.tolist())
    batch = next(iter(dm.train_dataloader()))  # training still works on the relabeled image folder
    assert batch[0].shape[1:] == (3, 24, 24)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda rows: rows[0].update(label=""), r"row 2 \(index \d+\): no label"),
        (lambda rows: rows[1].update(label="zebra"), r"row 3 \(index \d+\): unknown label 'zebra'"),
        (lambda rows: rows[1].update(label="10"), r"row 3 \(index \d+\): unknown label '10'"),
        (lambda rows: rows[2].update(index="x"), r"row 4: index 'x' is not an integer"),
        (lambda rows: rows.append(dict(rows[0])), r"row 2, row 6: index \d+ appears 2 times"),
        (lambda rows: rows.pop(), r"queried indices missing"),
    ],
    ids=["empty", "unknown-name", "out-of-range", "not-int", "duplicate", "row-lost"],
)
def test_bad_csvs_raise_and_label_nothing(digits: DigitsDataModule, tmp_path: Path, edit, message: str) -> None:
    query = digits.pools.unlabeled_indices()[:4]
    csv_path = export_query(digits, query, tmp_path, cycle=1, thumbnails=False).csv
    rows = [r | {"label": str(int(digits.targets[int(r["index"])]))} for r in _rows(csv_path)]
    edit(rows)
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["index", "path", "predicted", "label"])
        writer.writeheader()
        writer.writerows(rows)
    before = digits.pools.num_labeled
    with pytest.raises(ValueError, match=message):
        import_labels(digits, tmp_path, cycle=1)
    assert digits.pools.num_labeled == before


def test_indices_outside_the_pool_and_manifest_checks(digits: DigitsDataModule, tmp_path: Path) -> None:
    labeled = digits.pools.labeled_indices()
    with pytest.raises(ValueError, match="not in the unlabeled pool"):
        export_query(digits, labeled[:2], tmp_path, cycle=1)
    query = digits.pools.unlabeled_indices()[:3]
    files = export_query(digits, query, tmp_path, cycle=1, thumbnails=False)
    csv_path = files.csv
    manifest = json.loads(files.manifest.read_text())
    files.manifest.write_text(json.dumps(manifest | {"cycle": 2}))
    with pytest.raises(ValueError, match="written for cycle 2, read as cycle 1"):
        read_labels(digits, tmp_path, cycle=1)
    # without the manifest, hand-made CSVs work too; an already labeled index is named with its cycle
    files.manifest.unlink()
    csv_path.write_text(f"index,label\n{query[0]},1\n{labeled[0]},2\n{len(digits.pools) + 5},1\n")
    with pytest.warns(UserWarning, match="no manifest"), pytest.raises(
        ValueError, match=r"(?s)row 3 \(index \d+\): already labeled \(in cycle 0\).*row 4 .*not in the unlabeled pool"
    ):
        read_labels(digits, tmp_path, cycle=1)
    csv_path.write_text("idx,lbl\n1,2\n")
    with pytest.raises(ValueError, match="missing column"):
        read_labels(digits, tmp_path, cycle=1)
    with pytest.raises(ValueError, match="labels must be class indices"):
        digits.label(query[:1], 1, labels=[10])


def test_propose_query_then_export(digits: DigitsDataModule, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ImageClassifier(num_classes=10, backbone="small_cnn", in_channels=1)
    indices, predicted = propose_query(model, digits, budget=12, cycle=1, selector=ClassBalanced(lam=1.0, time_limit=5))
    assert len(indices) == 12 and np.isin(indices, digits.pools.unlabeled_indices()).all()
    files = export_query(digits, indices, tmp_path, cycle=1, predicted=predicted, thumbnails=False)
    manifest = json.loads(files.manifest.read_text())
    assert manifest["indices"] == indices.tolist() and manifest["classes"] == [str(c) for c in range(10)]


def test_a_csv_that_is_not_utf8_names_the_file_and_row(digits: DigitsDataModule, tmp_path: Path) -> None:
    query = digits.pools.unlabeled_indices()[:3]
    csv_path = export_query(digits, query, tmp_path, cycle=1, thumbnails=False).csv
    lines = [f"{i},,{label}" for i, label in zip(query, ("1", "caf\xe9", "2"))]
    csv_path.write_bytes(("index,path,label\n" + "\n".join(lines) + "\n").encode("latin-1"))  # a spreadsheet's export
    with pytest.raises(ValueError, match=rf"{csv_path}: row 3 is not UTF-8 \(byte \d+: b'\\xe9'\).*Save the file as UTF-8"):
        import_labels(digits, tmp_path, cycle=1)
    assert digits.pools.num_labeled == digits.pools.initial_size


def test_without_the_manifest_lost_and_added_rows_are_reported(digits: DigitsDataModule, tmp_path: Path) -> None:
    query = digits.pools.unlabeled_indices()[:3]
    other = int(digits.pools.unlabeled_indices()[10])
    files = export_query(digits, query, tmp_path, cycle=1, thumbnails=False)
    files.manifest.unlink()
    label = {int(i): int(digits.targets[i]) for i in [*query.tolist(), other]}
    files.csv.write_text(f"index,label\n{query[0]},{label[int(query[0])]}\n{query[1]},{label[int(query[1])]}\n{other},{label[other]}\n")
    with pytest.raises(ValueError, match=rf"(?s)row 4 \(index {other}\): not part of the query.*"
                                         rf"queried indices missing: \[{query[2]}\]"):
        import_labels(digits, tmp_path, cycle=1, indices=query)
    with pytest.warns(UserWarning, match=r"no manifest cycle_1.manifest.json beside it, so its entries are taken as the whole"):
        import_labels(digits, tmp_path, cycle=1)
    assert digits.pools.labeled_indices(cycle=1).tolist() == sorted([int(query[0]), int(query[1]), other])


def test_a_bad_row_is_reported_once_with_all_its_problems(digits: DigitsDataModule, tmp_path: Path) -> None:
    query = digits.pools.unlabeled_indices()[:2]
    labeled = int(digits.pools.labeled_indices()[0])
    files = export_query(digits, query, tmp_path, cycle=1, thumbnails=False)
    files.csv.write_text(f"index,path,label\n{query[0]},,1\n{query[1]},,2\n{labeled},,zebra\n")
    with pytest.raises(ValueError) as info:
        import_labels(digits, tmp_path, cycle=1)
    message = str(info.value)
    assert "1 problem(s)" in message and message.count("row 4") == 1
    assert re.search(rf"row 4 \(index {labeled}\): unknown label 'zebra'.*; already labeled \(in cycle 0\)", message)
