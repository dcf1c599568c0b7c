"""Human labeler round trip: export a query (CSV, manifest, thumbnails), fill labels, import, and the bad CSVs."""

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
from cbal_lightning.tools.labeling import export_query, import_labels, propose_query, read_labels, replay_labels, set_labels
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
    csv_path = export_query(digits, query, tmp_path, cycle=1, predicted=np.arange(8) % 10)
    rows = _rows(csv_path)
    assert list(rows[0]) == ["index", "path", "predicted", "label"]
    assert [int(r["index"]) for r in rows] == query.tolist()
    assert all(r["path"] == "" and r["label"] == "" for r in rows)  # in-memory digits have no files
    assert [r["predicted"] for r in rows] == [str(k % 10) for k in range(8)]
    thumb = Image.open(tmp_path / "thumbs" / f"{query[0]}.png")
    assert thumb.size == (96, 96) and thumb.mode == "L"  # 16x16 digits upscaled for the labeler
    # the human disagrees with the stored targets: every sample gets class (target + 1) % 10
    given = {int(i): str((int(digits.targets[i]) + 1) % 10) for i in query}
    _fill(csv_path, given)
    labeled = import_labels(digits, csv_path, cycle=1)
    assert labeled.tolist() == sorted(query.tolist())
    assert digits.pools.labeled_indices(cycle=1).tolist() == sorted(query.tolist())
    assert digits.pools.labeled_indices(cycle=0).tolist() == before.tolist()  # the initial set is untouched
    assert [int(digits.targets[i]) for i in query] == [int(given[int(i)]) for i in query]
    train = digits.train_dataset()  # the training loader serves the human labels
    position = {int(i): k for k, i in enumerate(train.indices)}
    assert [train.values[position[int(i)]] for i in query] == [int(given[int(i)]) for i in query]
    assert digits.pools.labeled_counts().sum() == len(before) + len(query)
    # the datamodule's checkpoint state carries the new labels and restores into a datamodule that has them
    state = digits.state_dict()
    assert state["pools"]["targets"][query].tolist() == [int(given[int(i)]) for i in query]
    fresh = DigitsDataModule(imbalance_factor=0.1, batch_size=32)
    fresh.setup("fit")
    with pytest.raises(ValueError, match="different labels"):
        fresh.load_state_dict(state)  # the stock targets differ from the human labels...
    assert replay_labels(fresh, tmp_path) == [1]  # ...until the labels are replayed
    fresh.load_state_dict(state)
    assert fresh.pools.labeled_indices(cycle=1).tolist() == sorted(query.tolist())


def test_class_numbers_and_names_are_both_accepted(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data", ["cat", "dog", "emu"], n_train=12, n_test=2, size=24)
    dm = ImageFolderDataModule(root=str(root), initial_fraction=0.25, batch_size=4)
    dm.setup("fit")
    query = dm.pools.unlabeled_indices()[:4]
    csv_path = export_query(dm, query, tmp_path / "q", cycle=1)
    rows = _rows(csv_path)
    assert list(rows[0]) == ["index", "path", "label"]  # no predicted column unless given
    for row in rows:
        path = Path(row["path"])
        assert path.is_file() and path.parent.parent == root / "train"
        assert Image.open(tmp_path / "q" / "thumbs" / f"{row['index']}.png").size == (96, 96)
    _fill(csv_path, {int(query[0]): "emu", int(query[1]): "0", int(query[2]): "dog", int(query[3]): "2"})
    import_labels(dm, csv_path, cycle=1)
    assert [int(dm.targets[i]) for i in query] == [2, 0, 1, 2]
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
        (lambda rows: rows.append(dict(rows[0])), r"rows 2, 6: index \d+ appears 2 times"),
        (lambda rows: rows.pop(), r"exported indices missing from the CSV"),
    ],
    ids=["empty", "unknown-name", "out-of-range", "not-int", "duplicate", "row-lost"],
)
def test_bad_csvs_raise_and_label_nothing(digits: DigitsDataModule, tmp_path: Path, edit, message: str) -> None:
    query = digits.pools.unlabeled_indices()[:4]
    csv_path = export_query(digits, query, tmp_path, cycle=1, thumbnails=False)
    rows = [r | {"label": "3"} for r in _rows(csv_path)]
    edit(rows)
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["index", "path", "label"])
        writer.writeheader()
        writer.writerows(rows)
    before = digits.pools.num_labeled
    with pytest.raises(ValueError, match=message):
        import_labels(digits, csv_path, cycle=1)
    assert digits.pools.num_labeled == before


def test_indices_outside_the_pool_and_manifest_checks(digits: DigitsDataModule, tmp_path: Path) -> None:
    labeled = digits.pools.labeled_indices()
    with pytest.raises(ValueError, match="not in the unlabeled pool"):
        export_query(digits, labeled[:2], tmp_path, cycle=1)
    query = digits.pools.unlabeled_indices()[:3]
    csv_path = export_query(digits, query, tmp_path, cycle=1, thumbnails=False)
    with pytest.raises(ValueError, match="exported for cycle 1, imported as cycle 2"):
        _fill(csv_path, {int(i): "1" for i in query}) or import_labels(digits, csv_path, cycle=2)
    # without the manifest, hand-made CSVs work too; an already labeled index is named with its cycle
    csv_path.with_suffix(".json").unlink()
    csv_path.write_text(f"index,label\n{query[0]},1\n{labeled[0]},2\n{len(digits.pools) + 5},1\n")
    with pytest.raises(ValueError, match=r"(?s)row 3 \(index \d+\): already labeled \(in cycle 0\).*out of range"):
        read_labels(digits, csv_path)
    csv_path.write_text("idx,lbl\n1,2\n")
    with pytest.raises(ValueError, match="missing column"):
        read_labels(digits, csv_path)
    with pytest.raises(ValueError, match="labels must lie"):
        set_labels(digits, query[:1], [10], cycle=1)


def test_propose_query_then_export(digits: DigitsDataModule, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ImageClassifier(num_classes=10, backbone="small_cnn", in_channels=1)
    indices, predicted = propose_query(model, digits, budget=12, cycle=1, selector=ClassBalanced(lam=1.0, time_limit=5))
    assert len(indices) == 12 and np.isin(indices, digits.pools.unlabeled_indices()).all()
    csv_path = export_query(digits, indices, tmp_path, cycle=1, predicted=predicted, thumbnails=False)
    manifest = json.loads(csv_path.with_suffix(".json").read_text())
    assert manifest["indices"] == indices.tolist() and manifest["classes"] == [str(c) for c in range(10)]


def test_a_csv_that_is_not_utf8_names_the_file_and_row(digits: DigitsDataModule, tmp_path: Path) -> None:
    query = digits.pools.unlabeled_indices()[:3]
    csv_path = export_query(digits, query, tmp_path, cycle=1, thumbnails=False)
    lines = [f"{i},,{label}" for i, label in zip(query, ("1", "caf\xe9", "2"))]
    csv_path.write_bytes(("index,path,label\n" + "\n".join(lines) + "\n").encode("latin-1"))  # a spreadsheet's export
    with pytest.raises(ValueError, match=rf"{csv_path}: row 3 is not UTF-8 \(byte \d+: b'\\xe9'\).*Save the file as UTF-8"):
        import_labels(digits, csv_path, cycle=1)
    assert digits.pools.num_labeled == digits.pools.initial_size


def test_without_the_manifest_lost_and_added_rows_are_reported(digits: DigitsDataModule, tmp_path: Path) -> None:
    query = digits.pools.unlabeled_indices()[:3]
    other = int(digits.pools.unlabeled_indices()[10])
    csv_path = export_query(digits, query, tmp_path, cycle=1, thumbnails=False)
    csv_path.with_suffix(".json").unlink()
    csv_path.write_text(f"index,label\n{query[0]},1\n{query[1]},2\n{other},3\n")  # row of query[2] lost, one added
    with pytest.raises(ValueError, match=rf"(?s)row 4 \(index {other}\): not part of the exported query.*"
                                         rf"exported indices missing from the CSV: \[{query[2]}\]"):
        import_labels(digits, csv_path, cycle=1, indices=query)
    with pytest.warns(UserWarning, match=r"no manifest query_cycle1.json beside it, so its 3 rows are taken as the whole query"):
        import_labels(digits, csv_path, cycle=1)
    assert digits.pools.labeled_indices(cycle=1).tolist() == sorted([int(query[0]), int(query[1]), other])


def test_a_bad_row_is_reported_once_with_all_its_problems(digits: DigitsDataModule, tmp_path: Path) -> None:
    query = digits.pools.unlabeled_indices()[:2]
    labeled = int(digits.pools.labeled_indices()[0])
    csv_path = export_query(digits, query, tmp_path, cycle=1, thumbnails=False)
    csv_path.write_text(f"index,path,label\n{query[0]},,1\n{query[1]},,2\n{labeled},,zebra\n")
    with pytest.raises(ValueError) as info:
        import_labels(digits, csv_path, cycle=1)
    message = str(info.value)
    assert "1 problem(s)" in message and message.count("row 4") == 1
    assert re.search(rf"row 4 \(index {labeled}\): unknown label 'zebra'.*; already labeled \(in cycle 0\); "
                     r"not part of the exported query", message)
