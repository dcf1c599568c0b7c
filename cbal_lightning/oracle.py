"""Who answers a query: the dataset's own labels (a simulation) or people, through files.

:class:`~cbal_lightning.callback.ActiveLearningCallback` asks its oracle for the labels of each queried batch:

* :class:`SimulatedOracle` reveals labels the dataset already has: the paper's protocol, benchmarks and tests.
* :class:`HumanOracle` writes the samples without a known label to files for people (a CSV and a Label Studio
  import, :mod:`cbal_lightning.label_files`); the callback then saves a checkpoint and stops the fit. Running the
  same fit again from that checkpoint reads the filled CSV or Label Studio's export and continues. Samples whose
  label is known are revealed as by the simulated oracle.

Example:
    >>> SimulatedOracle(), HumanOracle(thumb_size=64)
    (SimulatedOracle(), HumanOracle(thumb_size=64, label_studio_root=None))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cbal_lightning.label_files import QueryFiles, answers_ready, class_names, query_files, read_answers, write_query
from cbal_lightning.pools import UNKNOWN

__all__ = ["Oracle", "SimulatedOracle", "HumanOracle", "QUERIES_FOLDER"]

QUERIES_FOLDER = "queries"  # inside the run directory


class Oracle:
    """Base class of the oracles: :class:`SimulatedOracle` or :class:`HumanOracle`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SimulatedOracle(Oracle):
    """Reveals the labels the dataset has; a pool with unknown labels is refused before training."""


class HumanOracle(Oracle):
    """People label the queried samples whose label is unknown, through files in ``<run dir>/queries/``.

    Args:
        thumb_size: pixels of the thumbnails' longer side (image data).
        label_studio_root: the folder Label Studio serves local files from (``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``);
            image URLs in the import file are relative to it. Default ``/``.
    """

    def __init__(self, thumb_size: int = 96, label_studio_root: str | None = None) -> None:
        if isinstance(thumb_size, bool) or not isinstance(thumb_size, int) or thumb_size < 8:
            raise ValueError(f"thumb_size: expected an int >= 8 (pixels), got {thumb_size!r}")
        if label_studio_root is not None and not isinstance(label_studio_root, str):
            raise TypeError(f"label_studio_root: expected a folder path or None, got {label_studio_root!r}")
        self.thumb_size = thumb_size
        self.label_studio_root = label_studio_root

    def __repr__(self) -> str:
        return f"{type(self).__name__}(thumb_size={self.thumb_size}, label_studio_root={self.label_studio_root!r})"

    def ask(
        self, dm: Any, run_dir: Path, cycle: int, indices: np.ndarray, predicted: np.ndarray, part: str = ""
    ) -> QueryFiles:
        """Write the query files for the samples of ``indices`` without a known label (rank 0 only); ``part="pilot"``
        for the pilot round of the first query."""
        unknown = np.asarray(indices)[dm.targets[np.asarray(indices)] == UNKNOWN]
        rows = np.isin(np.asarray(indices), unknown)
        images = getattr(dm.eval_dataset(unknown), "images", None)
        return write_query(
            run_dir / QUERIES_FOLDER, cycle, unknown, classes=class_names(dm),
            image=None if images is None else (lambda i: images[i]),
            paths=getattr(images, "paths", None), predicted=np.asarray(predicted)[rows],
            thumb_size=self.thumb_size, label_studio_root=self.label_studio_root, part=part,
        )

    @staticmethod
    def files(run_dir: Path, cycle: int, part: str = "") -> QueryFiles:
        return query_files(run_dir / QUERIES_FOLDER, cycle, part)

    @staticmethod
    def ready(run_dir: Path, cycle: int, part: str = "") -> bool:
        """Whether people answered the query of ``cycle`` (a fully filled CSV or a Label Studio export)."""
        return answers_ready(run_dir / QUERIES_FOLDER, cycle, part)

    def answers(self, dm: Any, run_dir: Path, cycle: int, indices: np.ndarray, part: str = "") -> np.ndarray:
        """The labels of ``indices``: known ones revealed, the others read from the answer files, all validated.

        Raises:
            ValueError: any problem in the answers, all listed, naming the file and its rows; nothing is labeled.
        """
        indices = np.asarray(indices, dtype=np.int64)
        labels = dm.targets[indices].copy()
        unknown = labels == UNKNOWN
        if unknown.any():
            found, given = read_answers(
                run_dir / QUERIES_FOLDER, cycle, classes=class_names(dm), unlabeled=dm.pools.unlabeled_indices(),
                labeled_cycles=lambda i: int(dm.pools.cycle_of([i])[0]) if 0 <= i < len(dm.pools) else -1,
                indices=indices[unknown], part=part,
            )
            answer = dict(zip(found.tolist(), given.tolist()))
            labels[unknown] = [answer[i] for i in indices[unknown].tolist()]
        return labels

