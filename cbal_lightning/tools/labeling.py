"""A human labeler in the loop: export a query as a CSV with thumbnails, import the filled-in labels.

In a simulated run the :class:`~cbal_lightning.callback.ActiveLearningCallback` reveals the dataset's own labels.
With a human labeler the loop is driven from Python, one query at a time::

    indices, predicted = propose_query(model, dm, budget=500, cycle=1)       # score the pool, select (Eq. 8)
    export_query(dm, indices, "labeling", cycle=1, predicted=predicted)    # labeling/query_cycle1.csv + thumbs/
    # ... a person fills the `label` column (class names or class numbers) ...
    import_labels(dm, "labeling/query_cycle1.csv", cycle=1)                # validate, then label in cycle 1
    # train the next cycle: trainer.fit(model, datamodule=dm) serves the new labels

Files written by :func:`export_query` into ``out_dir`` (each atomically; the CSV last, so its presence means the
export is complete):

* ``query_cycle<k>.csv``: columns ``index`` (train index), ``path`` (the image file for image-folder data, else
  empty), ``predicted`` (the model's class name, only when ``predicted`` is given) and ``label`` (empty: for the
  labeler). ``import_labels`` reads ``index`` and ``label`` and ignores every other column.
* ``query_cycle<k>.json``: the manifest ``{"cycle", "indices", "classes"}``; :func:`import_labels` checks that the
  CSV still holds exactly these indices (no row lost or added by hand).
* ``thumbs/<index>.png``: the raw train image (no normalisation), small images upscaled (nearest) and large ones
  shrunk to ``thumb_size`` pixels on the longer side.

Labels given by a person replace the dataset's stored targets of those samples (for real unlabeled data those
are placeholders -- e.g. the folder an image-folder image happens to sit in). :func:`set_labels` does this by
building a new :class:`~cbal_lightning.pools.PoolState` through its public API (same candidates, every earlier
labeling replayed with its cycle, the new targets) and installing it, with the new targets, in the datamodule.
``ActiveDataModule`` has no public setter for its pools, so this is the one place that assigns its private
``_pools`` and ``_data``; after that the training loader, ``labeled_counts()`` (hence Omega, Eq. 4) and the
datamodule's checkpoint state all use the human labels. To resume from a checkpoint in a new process, call
:func:`replay_labels` on the freshly built datamodule first: the checkpoint's pools are only accepted when the
datamodule's targets match them.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from cbal_lightning.io import atomic_write, atomic_write_json
from cbal_lightning.pools import PoolState
from cbal_lightning.query import choose_batch, score_pool
from cbal_lightning.scoring import Entropy
from cbal_lightning.selection import ClassBalanced

__all__ = [
    "export_query",
    "read_labels",
    "import_labels",
    "set_labels",
    "replay_labels",
    "propose_query",
    "query_csv_path",
]

_COLUMNS = ("index", "path", "predicted", "label")
_SHOWN_ERRORS = 10
_QUERY_NAME = re.compile(r"^query_cycle(\d+)\.csv$")


def query_csv_path(out_dir: str | Path, cycle: int) -> Path:
    """``out_dir/query_cycle<cycle>.csv``."""
    return Path(out_dir) / f"query_cycle{int(cycle)}.csv"


def _class_names(dm: Any) -> list[str]:
    names = getattr(dm, "classes", None)
    return [str(c) for c in names] if names else [str(c) for c in range(dm.num_classes)]


def _as_indices(indices: Any) -> np.ndarray:
    if isinstance(indices, torch.Tensor):
        indices = indices.detach().cpu().numpy()
    array = np.asarray(indices).reshape(-1)
    if array.size and (array.dtype == bool or not np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"indices must be integer train-set indices, got dtype {array.dtype}")
    return array.astype(np.int64)


def _check_unlabeled(dm: Any, indices: np.ndarray) -> None:
    unique, counts = np.unique(indices, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"indices repeated: {unique[counts > 1][:10].tolist()}")
    bad = indices[~np.isin(indices, dm.pools.unlabeled_indices())]
    if bad.size:
        raise ValueError(f"indices not in the unlabeled pool (already labeled, cut by the imbalance or out of range): "
                         f"{bad[:10].tolist()} ({bad.size} in all)")


def _to_pil(image: Any) -> Image.Image:
    """A raw train image (PIL, CHW/HW tensor or HWC/HW array, float in [0, 1] or uint8) as a PIL image."""
    if isinstance(image, Image.Image):
        return image.convert("RGB") if image.mode not in ("RGB", "L") else image
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.moveaxis(array, 0, -1)  # CHW -> HWC
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if np.issubdtype(array.dtype, np.floating):
        array = np.clip(array * 255.0 if array.max() <= 1.0 else array, 0, 255)
    return Image.fromarray(np.ascontiguousarray(array).astype(np.uint8))


def _thumbnail(image: Image.Image, size: int) -> Image.Image:
    longer = max(image.size)
    if longer == size:
        return image
    factor = size / longer
    new = (max(1, round(image.size[0] * factor)), max(1, round(image.size[1] * factor)))
    return image.resize(new, Image.NEAREST if factor > 1 else Image.LANCZOS)


def export_query(
    dm: Any,
    indices: Sequence[int] | np.ndarray | torch.Tensor,
    out_dir: str | Path,
    cycle: int,
    predicted: Sequence[int] | np.ndarray | None = None,
    *,
    thumbnails: bool = True,
    thumb_size: int = 96,
) -> Path:
    """Write the query of ``cycle`` for a human labeler (CSV, manifest, thumbnails; see the module docstring).

    Args:
        dm: a set-up :class:`~cbal_lightning.data.ActiveDataModule`.
        indices: train indices to label; all must be in the unlabeled pool, without repeats.
        out_dir: folder for the files.
        cycle: the query's cycle (names the files).
        predicted: optional predicted class per index (numbers), written as class names.
        thumbnails: write ``thumbs/<index>.png``.
        thumb_size: pixels of the thumbnails' longer side.

    Returns:
        The CSV's path.
    """
    if isinstance(cycle, bool) or not isinstance(cycle, (int, np.integer)) or cycle < 0:
        raise ValueError(f"cycle must be a non-negative int, got {cycle!r}")
    idx = _as_indices(indices)
    if idx.size == 0:
        raise ValueError("indices: nothing to export")
    _check_unlabeled(dm, idx)
    names = _class_names(dm)
    pred = None
    if predicted is not None:
        pred = _as_indices(predicted)
        if len(pred) != len(idx):
            raise ValueError(f"predicted has {len(pred)} entries for {len(idx)} indices")
        if pred.size and (pred.min() < 0 or pred.max() >= len(names)):
            raise ValueError(f"predicted classes must lie in 0..{len(names) - 1}")
    out_dir = Path(out_dir)
    images = dm.eval_dataset(idx).images  # the raw, untransformed train images (indexable by train index)
    paths = getattr(images, "paths", None)  # ImageFiles (image-folder data) keeps the file of every train index
    if thumbnails:
        for i in idx:
            thumb = _thumbnail(_to_pil(images[int(i)]), thumb_size)
            atomic_write(out_dir / "thumbs" / f"{int(i)}.png", lambda f, t=thumb: t.save(f, format="PNG"))
    atomic_write_json(out_dir / f"query_cycle{int(cycle)}.json",
                      {"cycle": int(cycle), "indices": idx.tolist(), "classes": names}, indent=1)
    columns = [c for c in _COLUMNS if c != "predicted" or pred is not None]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for k, i in enumerate(idx):
        row = {"index": int(i), "path": "" if paths is None else paths[int(i)], "label": ""}
        if pred is not None:
            row["predicted"] = names[int(pred[k])]
        writer.writerow([row[c] for c in columns])
    data = buffer.getvalue().encode()
    return atomic_write(query_csv_path(out_dir, cycle), lambda f: f.write(data))


def _parse_label(text: str, names: list[str]) -> int | None:
    if text in names:
        return names.index(text)
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 0 <= value < len(names) else None


def _read_utf8(csv_path: Path) -> str:
    """The CSV's text; a file that is not UTF-8 is refused with the row and byte where decoding failed."""
    raw = csv_path.read_bytes()
    try:
        return raw.decode("utf-8-sig")  # spreadsheet programs like to add a byte-order mark
    except UnicodeDecodeError as err:
        row = raw[: err.start].count(b"\n") + 1
        raise ValueError(
            f"{csv_path}: row {row} is not UTF-8 (byte {err.start}: {raw[err.start:err.start + 1]!r}); nothing was "
            "labeled. Save the file as UTF-8 (\"CSV UTF-8\" in spreadsheet programs)."
        ) from err


def read_labels(
    dm: Any, csv_path: str | Path, cycle: int | None = None, indices: Sequence[int] | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate a filled-in query CSV; return ``(indices, labels)`` as int64 arrays, in row order.

    Checks, all reported together in one ``ValueError`` naming the rows (row 1 is the header, data start at 2;
    each bad row once, with all its problems): the file is UTF-8; the ``index`` and ``label`` columns exist;
    every index is an integer, appears once and is in the unlabeled pool; every label is a class name of
    ``dm.classes`` or a class number ``0..C-1``; and the rows hold exactly the exported indices: those of the
    export's manifest ``query_cycle<k>.json`` beside the CSV (whose cycle must equal ``cycle`` if given), or
    ``indices`` when the manifest is gone. Without either, a warning says that lost or added rows cannot be told.
    """
    csv_path = Path(csv_path)
    names = _class_names(dm)
    text = _read_utf8(csv_path)
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in ("index", "label") if c not in header]
    if missing:
        raise ValueError(f"{csv_path}: missing column(s) {missing}; the header is {header}")
    reader.fieldnames = header
    errors: list[str] = []  # problems of the whole file
    row_errors: dict[int, list[str]] = {}  # problems of one row, reported on one line
    where_of: dict[int, str] = {}
    found: list[int] = []
    labels: list[int] = []
    rows_of: dict[int, list[int]] = {}
    unlabeled = set(dm.pools.unlabeled_indices().tolist())
    pools = dm.pools
    for row_number, row in enumerate(reader, start=2):
        raw_index = (row.get("index") or "").strip()
        raw_label = (row.get("label") or "").strip()
        if not raw_index and not raw_label and not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue  # a blank line
        try:
            index = int(raw_index)
        except ValueError:
            row_errors.setdefault(row_number, []).append(f"index {raw_index!r} is not an integer")
            where_of[row_number] = f"row {row_number}"
            continue
        where_of[row_number] = f"row {row_number} (index {index})"
        problems = row_errors.setdefault(row_number, [])
        if not raw_label:
            problems.append("no label")
        else:
            label = _parse_label(raw_label, names)
            if label is None:
                shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
                problems.append(f"unknown label {raw_label!r}; use a class name ({shown}) or a number "
                                f"0..{len(names) - 1}")
            else:
                found.append(index)
                labels.append(label)
        rows_of.setdefault(index, []).append(row_number)
        if index not in unlabeled and len(rows_of[index]) == 1:
            if not 0 <= index < len(pools):
                problems.append(f"index out of range 0..{len(pools) - 1}")
            elif pools.cycle_of([index])[0] >= 0:
                problems.append(f"already labeled (in cycle {int(pools.cycle_of([index])[0])})")
            else:
                problems.append("not in the candidate pool (cut by the imbalance)")
    for index, rows in rows_of.items():
        if len(rows) > 1:
            errors.append(f"rows {', '.join(map(str, rows))}: index {index} appears {len(rows)} times")
    manifest_path = csv_path.with_suffix(".json")
    exported: set[int] | None = None
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if cycle is not None and int(manifest.get("cycle", cycle)) != int(cycle):
            errors.append(f"{manifest_path.name}: exported for cycle {manifest['cycle']}, imported as cycle {cycle}")
        exported = set(int(i) for i in manifest.get("indices", []))
    elif indices is not None:
        exported = set(_as_indices(indices).tolist())
    elif rows_of:
        warnings.warn(
            f"{csv_path}: no manifest {manifest_path.name} beside it, so its {len(rows_of)} rows are taken as the "
            "whole query: rows lost or added by hand cannot be detected (pass indices= with the exported indices).",
            stacklevel=2,
        )
    if exported is not None:
        lost = sorted(exported - set(rows_of))
        if lost:
            errors.append(f"exported indices missing from the CSV: {lost[:10]}{' ...' if len(lost) > 10 else ''} "
                          f"({len(lost)} in all)")
        for index in sorted(set(rows_of) - exported):
            row_errors[rows_of[index][0]].append("not part of the exported query")
    if not rows_of and not row_errors:
        errors.append("no rows")
    errors = [f"{where_of[row]}: {'; '.join(problems)}" for row, problems in sorted(row_errors.items()) if problems] + errors
    if errors:
        shown = "\n  ".join(errors[:_SHOWN_ERRORS])
        more = f"\n  ... and {len(errors) - _SHOWN_ERRORS} more" if len(errors) > _SHOWN_ERRORS else ""
        raise ValueError(f"{csv_path}: {len(errors)} problem(s), nothing was labeled:\n  {shown}{more}")
    return np.asarray(found, dtype=np.int64), np.asarray(labels, dtype=np.int64)


def set_labels(dm: Any, indices: Sequence[int] | np.ndarray, labels: Sequence[int] | np.ndarray, cycle: int) -> None:
    """Label ``indices`` in ``cycle`` with the given ``labels`` (replacing the stored targets of those samples).

    Builds a new :class:`~cbal_lightning.pools.PoolState` with the same candidates and every earlier labeling
    (same cycles), labels ``indices`` in ``cycle``, and installs it and the new targets in the datamodule. All
    checks run before anything changes.
    """
    idx, lab = _as_indices(indices), _as_indices(labels)
    if len(idx) != len(lab):
        raise ValueError(f"{len(idx)} indices but {len(lab)} labels")
    pools: PoolState = dm.pools
    if lab.size and (lab.min() < 0 or lab.max() >= pools.num_classes):
        raise ValueError(f"labels must lie in 0..{pools.num_classes - 1}")
    if not (hasattr(dm, "_pools") and hasattr(dm, "_data")):
        raise TypeError(f"{type(dm).__name__} is not an ActiveDataModule: cannot replace its labels")
    if idx.size and (idx.min() < 0 or idx.max() >= len(pools)):
        raise ValueError(f"indices out of range 0..{len(pools) - 1}")
    targets = pools.targets.copy()
    targets[idx] = lab
    new = PoolState(targets, candidates=pools.candidate_indices(), num_classes=pools.num_classes)
    labeled = pools.labeled_indices()
    for c in np.unique(pools.cycle_of(labeled)):
        new.label(pools.labeled_indices(cycle=int(c)), int(c))
    new.label(idx, cycle)  # raises (nothing installed yet) for repeats, labeled or non-candidate indices
    dm._pools = new
    if dm._data is not None and hasattr(dm._data, "train_targets"):
        dm._data = dataclasses.replace(dm._data, train_targets=new.targets)


def import_labels(
    dm: Any, csv_path: str | Path, cycle: int, indices: Sequence[int] | np.ndarray | None = None
) -> np.ndarray:
    """Validate a filled-in query CSV (:func:`read_labels`) and label its samples in ``cycle`` (:func:`set_labels`).

    ``indices``: the exported indices, checked against the rows when the manifest beside the CSV is gone.

    Returns:
        The labeled train indices, sorted.

    Raises:
        ValueError: any problem in the CSV (all listed, with row numbers); nothing is labeled then.
    """
    found, labels = read_labels(dm, csv_path, cycle, indices)
    set_labels(dm, found, labels, cycle)
    return np.sort(found)


def replay_labels(dm: Any, folder: str | Path) -> list[int]:
    """Re-apply every ``query_cycle<k>.csv`` in ``folder`` in cycle order (e.g. before resuming from a checkpoint).

    Returns the cycles applied.
    """
    found = sorted((int(m.group(1)), p) for p in Path(folder).glob("query_cycle*.csv") if (m := _QUERY_NAME.match(p.name)))
    for cycle, path in found:
        import_labels(dm, path, cycle)
    return [c for c, _ in found]


def propose_query(
    model: torch.nn.Module,
    dm: Any,
    budget: int,
    cycle: int,
    scorer: Any = None,
    selector: Any = None,
    *,
    device: torch.device | str | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Score the unlabeled pool with ``model`` and select ``budget`` samples, as the callback's query does.

    Args:
        scorer: default :class:`~cbal_lightning.scoring.Entropy`. Scorers that train something in ``prepare``
            (VAAL) need a trainer and are not supported here.
        selector: default :class:`~cbal_lightning.selection.ClassBalanced`; Omega is Eq. 4 from the labeled
            counts (the human labels included).
        device: where to score (the model is moved there); default: where the model's parameters are.

    Returns:
        ``(indices, predicted)``: the chosen train indices and the model's predicted class for each.
    """
    scorer = scorer if scorer is not None else Entropy()
    selector = selector if selector is not None else ClassBalanced()
    if device is not None:
        model.to(device)  # Lightning hands a model back on the CPU after fit
    scores = score_pool(model, dm, scorer, selector, cycle, device=next(model.parameters()).device)
    selection, _ = choose_batch(selector, scores, dm.pools, budget, cycle, seed=seed)
    return scores.pool.indices[selection.indices], scores.pool.probs[selection.indices].argmax(1)
