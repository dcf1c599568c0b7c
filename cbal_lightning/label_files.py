"""A query for people, as files: a CSV and a Label Studio import to fill in, and the answers read back, validated.

The files of the query of cycle ``k`` in ``folder`` (each written atomically; the CSV last, so its presence means
the query is complete; a query in two rounds, a random pilot first, names the pilot's files ``cycle_<k>_pilot.*``):

* ``cycle_<k>.csv``: columns ``index`` (train index), ``path`` (the image file, or the thumbnail when the data has
  no files), ``predicted`` (the model's class, when known) and ``label`` (empty: for the labeler, a class name or
  number). Only ``index`` and ``label`` are read back.
* ``cycle_<k>.manifest.json``: ``{"cycle", "indices", "classes"}``; the answers must cover exactly these indices.
* ``thumbs/<index>.png``: the raw input scaled to ``thumb_size`` pixels on its longer side (image data only).
* ``cycle_<k>.label_studio.json``: the same query as Label Studio tasks (``data.image``, ``data.index``, the model's
  guess as a prediction), with ``label_studio_config.xml``, the labeling interface (single choice, ``from_name``
  ``label``). Image data only.

Answers come back as the filled CSV or as Label Studio's JSON export (full "JSON" or "JSON-MIN") saved as
``cycle_<k>.annotations.json``; when that file exists it is used. :func:`read_answers` checks every entry and
reports all problems at once, before anything is labeled.

Example:
    >>> import tempfile, numpy as np
    >>> folder = tempfile.mkdtemp()
    >>> files = write_query(folder, 1, [7, 9], classes=["cat", "dog"])
    >>> text = files.csv.read_text().replace("7,,,", "7,,,dog").replace("9,,,", "9,,,0")
    >>> _ = files.csv.write_text(text)
    >>> read_answers(folder, 1, classes=["cat", "dog"], unlabeled=np.array([7, 8, 9]))
    (array([7, 9]), array([1, 0]))
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence
from xml.sax.saxutils import quoteattr

import numpy as np

from cbal_lightning.io import atomic_write, atomic_write_json

__all__ = ["QueryFiles", "query_files", "write_query", "read_answers", "answers_ready", "class_names"]

_SHOWN_ERRORS = 10
_FROM_NAME = "label"  # the Choices control of the Label Studio interface
_TO_NAME = "image"


def class_names(dm: Any) -> list[str]:
    """A datamodule's class names (``dm.classes``), or the class numbers as text when it has none."""
    names = getattr(dm, "classes", None)
    return [str(c) for c in names] if names else [str(c) for c in range(dm.num_classes)]


@dataclass(frozen=True)
class QueryFiles:
    """Where the files of one query live (see the module docstring)."""

    folder: Path
    cycle: int
    part: str = ""  # "pilot": the first round of a query in two rounds

    def _named(self, suffix: str) -> Path:
        return self.folder / f"cycle_{self.cycle}{'_' + self.part if self.part else ''}{suffix}"

    @property
    def csv(self) -> Path:
        return self._named(".csv")

    @property
    def manifest(self) -> Path:
        return self._named(".manifest.json")

    @property
    def label_studio_tasks(self) -> Path:
        return self._named(".label_studio.json")

    @property
    def label_studio_export(self) -> Path:
        return self._named(".annotations.json")

    @property
    def label_studio_config(self) -> Path:
        return self.folder / "label_studio_config.xml"

    @property
    def thumbs(self) -> Path:
        return self.folder / "thumbs"


def query_files(folder: str | Path, cycle: int, part: str = "") -> QueryFiles:
    """The file names of the query of ``cycle`` in ``folder`` (``part="pilot"``: of its pilot round)."""
    return QueryFiles(Path(folder), int(cycle), part)


def write_query(
    folder: str | Path,
    cycle: int,
    indices: Sequence[int] | np.ndarray,
    *,
    classes: Sequence[str],
    image: Callable[[int], Any] | None = None,
    paths: Sequence[str] | None = None,
    predicted: Sequence[int] | np.ndarray | None = None,
    thumb_size: int = 96,
    label_studio_root: str | Path | None = None,
    part: str = "",
) -> QueryFiles:
    """Write the query of ``cycle`` (train ``indices``) for people to label; see the module docstring.

    A complete query of the same indices already there is kept as it is (its CSV may be filled in already); one
    of other indices is renamed to ``*.replaced-<n>`` first, with a warning.

    Args:
        classes: class names, in class-number order.
        image: the raw input of a train index (PIL image, tensor or array); thumbnails and the Label Studio files
            are written when it gives images.
        paths: the file of every train index, when the data has files (image folders).
        predicted: the model's class per index.
        thumb_size: pixels of a thumbnail's longer side.
        label_studio_root: Label Studio's ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``; image URLs are
            ``/data/local-files/?d=<path relative to it>``. Default: ``/`` (absolute paths).
        part: ``"pilot"`` for the pilot round of a query in two rounds (files ``cycle_<k>_pilot.*``).
    """
    files = query_files(folder, cycle, part)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if _same_query(files, idx):
        return files
    _set_aside(files)
    names = [str(c) for c in classes]
    guesses = None if predicted is None else [names[int(p)] for p in np.asarray(predicted).reshape(-1)]
    shown = {int(i): paths[int(i)] for i in idx} if paths is not None else {}
    thumbs = _write_thumbnails(files, idx, image, thumb_size) if image is not None else {}
    for i, thumb in thumbs.items():
        shown.setdefault(i, str(thumb.resolve()))
    if thumbs:
        _write_label_studio(files, idx, shown, names, guesses, label_studio_root)
    atomic_write_json(files.manifest, {"cycle": files.cycle, "indices": idx.tolist(), "classes": names}, indent=1)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["index", "path", "predicted", "label"])
    for k, i in enumerate(idx.tolist()):
        writer.writerow([i, shown.get(i, ""), "" if guesses is None else guesses[k], ""])
    data = buffer.getvalue().encode()
    atomic_write(files.csv, lambda f: f.write(data))
    return files


def _same_query(files: QueryFiles, idx: np.ndarray) -> bool:
    if not (files.csv.is_file() and files.manifest.is_file()):
        return False
    try:
        return json.loads(files.manifest.read_text()).get("indices") == idx.tolist()
    except (OSError, ValueError):
        return False


def _set_aside(files: QueryFiles) -> None:
    """Rename an earlier query of this cycle (other indices, or incomplete) out of the way, keeping it."""
    found = [p for p in (files.csv, files.manifest, files.label_studio_tasks, files.label_studio_export) if p.exists()]
    if not found:
        return
    n = 1
    while any(p.with_name(f"{p.name}.replaced-{n}").exists() for p in found):
        n += 1
    for p in found:
        p.rename(p.with_name(f"{p.name}.replaced-{n}"))
    warnings.warn(f"{files.folder}: an earlier query of cycle {files.cycle} with other samples was renamed to "
                  f"*.replaced-{n}; its labels are not used", stacklevel=3)


def _write_thumbnails(files: QueryFiles, idx: np.ndarray, image: Callable[[int], Any], size: int) -> dict[int, Path]:
    from PIL import Image

    written: dict[int, Path] = {}
    for i in idx.tolist():
        picture = _to_pil(image(i))
        if picture is None:
            return {}  # not image data: no thumbnails
        longer = max(picture.size)
        if longer != size:
            factor = size / longer
            new = (max(1, round(picture.size[0] * factor)), max(1, round(picture.size[1] * factor)))
            picture = picture.resize(new, Image.NEAREST if factor > 1 else Image.LANCZOS)
        path = files.thumbs / f"{i}.png"
        atomic_write(path, lambda f, p=picture: p.save(f, format="PNG"))
        written[i] = path
    return written


def _to_pil(item: Any) -> Any:
    """A raw input (PIL, CHW/HW tensor or HWC/HW array, float in [0, 1] or uint8) as a PIL image; None if not an image."""
    from PIL import Image

    if isinstance(item, Image.Image):
        return item.convert("RGB") if item.mode not in ("RGB", "L") else item
    array = item.detach().cpu().numpy() if hasattr(item, "detach") else np.asarray(item)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.moveaxis(array, 0, -1)  # CHW -> HWC
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or min(array.shape[:2]) < 2 or not np.issubdtype(array.dtype, np.number):
        return None
    if np.issubdtype(array.dtype, np.floating):
        array = np.clip(array * 255.0 if array.max() <= 1.0 else array, 0, 255)
    return Image.fromarray(np.ascontiguousarray(array).astype(np.uint8))


def _write_label_studio(
    files: QueryFiles,
    idx: np.ndarray,
    shown: dict[int, str],
    names: list[str],
    guesses: list[str] | None,
    root: str | Path | None,
) -> None:
    base = Path(root or "/").resolve()
    tasks = []
    for k, i in enumerate(idx.tolist()):
        target = Path(shown[i]).resolve()
        try:
            relative = target.relative_to(base)
        except ValueError as err:
            raise ValueError(f"label_studio_root: {target} is not under {base}; pass the folder Label Studio serves "
                             "local files from (LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)") from err
        task: dict[str, Any] = {"data": {"image": f"/data/local-files/?d={relative.as_posix()}", "index": i, "path": shown[i]}}
        if guesses is not None:
            task["predictions"] = [{"model_version": f"cbal-cycle-{files.cycle}", "result": [
                {"from_name": _FROM_NAME, "to_name": _TO_NAME, "type": "choices", "value": {"choices": [guesses[k]]}}
            ]}]
        tasks.append(task)
    atomic_write_json(files.label_studio_tasks, tasks, indent=1)
    choices = "\n".join(f"    <Choice value={quoteattr(n)}/>" for n in names)
    config = (f'<View>\n  <Image name="{_TO_NAME}" value="$image"/>\n  <Choices name="{_FROM_NAME}" toName="{_TO_NAME}" '
              f'choice="single" showInline="true">\n{choices}\n  </Choices>\n</View>\n').encode()
    atomic_write(files.label_studio_config, lambda f: f.write(config))


# ------------------------------------------------------------------------------------------------ reading answers

@dataclass(frozen=True)
class _Entry:
    where: str  # "row 3", "task 12"
    index: str
    label: str | None  # None: no answer


def answers_ready(folder: str | Path, cycle: int, part: str = "") -> bool:
    """Whether the query of ``cycle`` (its ``part``) has answers to read: a Label Studio export, or a CSV with every
    label filled."""
    files = query_files(folder, cycle, part)
    if files.label_studio_export.is_file():
        return True
    if not files.csv.is_file():
        return False
    try:
        return all(e.label for e in _csv_entries(files.csv))
    except ValueError:
        return True  # unreadable: read_answers says why


def read_answers(
    folder: str | Path,
    cycle: int,
    *,
    classes: Sequence[str],
    unlabeled: np.ndarray,
    labeled_cycles: Callable[[int], int] | None = None,
    csv_path: str | Path | None = None,
    indices: Sequence[int] | np.ndarray | None = None,
    part: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate the answers to the query of ``cycle``: ``(indices, labels)``, int64, in file order.

    Reads ``cycle_<k>.annotations.json`` (Label Studio's export) when it exists, else the CSV (``csv_path``, default
    ``cycle_<k>.csv``). Checks, all reported together in one ``ValueError`` naming rows or tasks: the file is UTF-8
    and well formed; every entry's index is an integer, appears once and is in ``unlabeled``; every label is a class
    name or number; and the entries are exactly the query's indices (the manifest beside the file, or ``indices``
    when it is gone; without either a warning says lost or added entries cannot be told).

    Args:
        classes: class names, in class-number order.
        unlabeled: train indices that may be labeled now.
        labeled_cycles: the cycle an index was labeled in (-1 if not), to say why an index is refused.
        part: ``"pilot"``: the answers to the pilot round (``cycle_<k>_pilot.*``).
    """
    files = query_files(folder, cycle, part)
    names = [str(c) for c in classes]
    source = files.label_studio_export if files.label_studio_export.is_file() and csv_path is None else Path(csv_path or files.csv)
    entries = _label_studio_entries(source) if source == files.label_studio_export else _csv_entries(source)
    expected = _expected(files, cycle, indices, source)
    return _validate(source, entries, names, unlabeled, expected, labeled_cycles)


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")  # spreadsheet programs like to add a byte-order mark
    except UnicodeDecodeError as err:
        row = raw[: err.start].count(b"\n") + 1
        raise ValueError(
            f"{path}: row {row} is not UTF-8 (byte {err.start}: {raw[err.start:err.start + 1]!r}); nothing was "
            "labeled. Save the file as UTF-8 (\"CSV UTF-8\" in spreadsheet programs)."
        ) from err


def _csv_entries(path: Path) -> list[_Entry]:
    reader = csv.DictReader(io.StringIO(_read_text(path)))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in ("index", "label") if c not in header]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; the header is {header}")
    reader.fieldnames = header
    entries = []
    for row_number, row in enumerate(reader, start=2):  # row 1 is the header
        values = [(v or "").strip() for v in row.values() if isinstance(v, str)]
        if not any(values):
            continue  # a blank line
        entries.append(_Entry(f"row {row_number}", (row.get("index") or "").strip(), (row.get("label") or "").strip() or None))
    return entries


def _label_studio_entries(path: Path) -> list[_Entry]:
    """Entries of a Label Studio export: full "JSON" (tasks with ``annotations``) or "JSON-MIN" (flat records)."""
    try:
        tasks = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err}); export the project from Label Studio as JSON or JSON-MIN") from err
    if not isinstance(tasks, list):
        raise ValueError(f"{path}: a Label Studio export is a JSON list of tasks, got {type(tasks).__name__}")
    entries = []
    for n, task in enumerate(tasks, start=1):
        if not isinstance(task, dict):
            raise ValueError(f"{path}: task {n} is not an object")
        where = f"task {task.get('id', n)}"
        data = task.get("data", task)  # JSON-MIN puts the task data at the top level
        index = str(data.get("index", "")).strip() if isinstance(data, dict) else ""
        entries.append(_Entry(where, index, _label_studio_choice(task)))
    return entries


def _label_studio_choice(task: dict[str, Any]) -> str | None:
    if "annotations" not in task:  # JSON-MIN: {"label": "cat"} or {"label": {"choices": [...]}}
        value = task.get(_FROM_NAME)
        choices = value.get("choices") if isinstance(value, dict) else value if isinstance(value, list) else [value]
    else:  # the latest annotation that was not cancelled
        kept = [a for a in task["annotations"] if isinstance(a, dict) and not a.get("was_cancelled")]
        results = kept[-1].get("result", []) if kept else []
        found = [r for r in results if isinstance(r, dict) and r.get("from_name") == _FROM_NAME and r.get("type") == "choices"]
        choices = found[-1].get("value", {}).get("choices") if found else None
    if not choices or choices == [None]:
        return None
    return "|".join(str(c) for c in choices)  # several choices: refused as an unknown label


def _expected(files: QueryFiles, cycle: int, indices: Any, source: Path) -> set[int] | None:
    if files.manifest.is_file():
        manifest = json.loads(files.manifest.read_text())
        if int(manifest.get("cycle", cycle)) != int(cycle):
            raise ValueError(f"{files.manifest}: written for cycle {manifest['cycle']}, read as cycle {cycle}")
        return {int(i) for i in manifest.get("indices", [])}
    if indices is not None:
        return {int(i) for i in np.asarray(indices).reshape(-1)}
    warnings.warn(
        f"{source}: no manifest {files.manifest.name} beside it, so its entries are taken as the whole query: entries "
        "lost or added by hand cannot be detected (pass indices= with the queried indices).",
        stacklevel=3,
    )
    return None


def _validate(
    source: Path,
    entries: Iterable[_Entry],
    names: list[str],
    unlabeled: np.ndarray,
    expected: set[int] | None,
    labeled_cycles: Callable[[int], int] | None,
) -> tuple[np.ndarray, np.ndarray]:
    pool = set(np.asarray(unlabeled).reshape(-1).tolist())
    problems: dict[str, list[str]] = {}
    errors: list[str] = []
    seen: dict[int, list[str]] = {}
    found: list[int] = []
    labels: list[int] = []
    for entry in entries:
        try:
            index = int(entry.index)
        except ValueError:
            problems[entry.where] = [f"index {entry.index!r} is not an integer"]
            continue
        where = f"{entry.where} (index {index})"
        mine = problems.setdefault(where, [])
        label = None if entry.label is None else _parse_label(entry.label, names)
        if entry.label is None:
            mine.append("no label")
        elif label is None:
            shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            mine.append(f"unknown label {entry.label!r}; use one class name ({shown}) or a number 0..{len(names) - 1}")
        seen.setdefault(index, []).append(entry.where)
        if len(seen[index]) > 1:
            continue
        if index not in pool:
            cycle = labeled_cycles(index) if labeled_cycles is not None else -1
            mine.append(f"already labeled (in cycle {cycle})" if cycle >= 0 else "not in the unlabeled pool")
        elif expected is not None and index not in expected:
            mine.append("not part of the query")
        if label is not None and not mine:
            found.append(index)
            labels.append(label)
    for index, places in seen.items():
        if len(places) > 1:
            errors.append(f"{', '.join(places)}: index {index} appears {len(places)} times")
    if expected is not None:
        lost = sorted(expected - set(seen))
        if lost:
            errors.append(f"queried indices missing: {lost[:10]}{' ...' if len(lost) > 10 else ''} ({len(lost)} in all)")
    if not seen and not problems:
        errors.append("no entries")
    errors = [f"{where}: {'; '.join(p)}" for where, p in problems.items() if p] + errors
    if errors:
        shown = "\n  ".join(errors[:_SHOWN_ERRORS])
        more = f"\n  ... and {len(errors) - _SHOWN_ERRORS} more" if len(errors) > _SHOWN_ERRORS else ""
        raise ValueError(f"{source}: {len(errors)} problem(s), nothing was labeled:\n  {shown}{more}")
    return np.asarray(found, dtype=np.int64), np.asarray(labels, dtype=np.int64)


def _parse_label(text: str, names: list[str]) -> int | None:
    if text in names:
        return names.index(text)
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 0 <= value < len(names) else None
