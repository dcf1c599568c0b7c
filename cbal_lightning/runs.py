"""One folder per active-learning run: where it goes, what describes it, and where its last checkpoint is.

The :class:`~cbal_lightning.callback.ActiveLearningCallback` writes ``history.json``, ``labeled_sets.jsonl`` and
``run.json`` into its run folder, and points every ``ModelCheckpoint`` without a ``dirpath`` at
``<run folder>/checkpoints``. The folder is, in this order:

1. the callback's ``output_dir`` when given;
2. the first logger's folder, exactly as Lightning's ``ModelCheckpoint`` resolves it:
   ``<save_dir or default_root_dir>/<name>/<version>`` (``version_<n>`` for an integer version): a CSV or
   TensorBoard logger's ``log_dir``, ``<save_dir>/<project>/<run id>`` for a ``WandbLogger``;
3. without a logger, ``<default_root_dir>/cbal_runs/version_<n>`` with the next free ``n``.

``run.json`` names the method (``Entropy-CB``: scorer and selector), the seed and the datamodule, so that
reports can group runs whose folders a logger named (``version_0``, a W&B run id).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, Sequence

from cbal_lightning.selection.selectors import ClassBalanced, TopK

__all__ = [
    "CHECKPOINTS_FOLDER",
    "DEFAULT_RUNS_FOLDER",
    "RUN_FILE",
    "RunDirSource",
    "run_dir_source",
    "new_run_dir",
    "run_folders",
    "find_last_checkpoint",
    "method_name",
]

CHECKPOINTS_FOLDER = "checkpoints"
DEFAULT_RUNS_FOLDER = "cbal_runs"
RUN_FILE = "run.json"
LAST_CHECKPOINT_PATTERNS = ("last*.ckpt", "query_cycle_*.ckpt")

RunDirSource = Literal["output_dir", "logger", "default_root_dir"]
_VERSION = re.compile(r"^version_(\d+)$")


def run_dir_source(trainer: Any, output_dir: str | os.PathLike | None) -> RunDirSource:
    """Which rule names the run folder: the callback's ``output_dir``, the first logger, or ``default_root_dir``."""
    if output_dir is not None:
        return "output_dir"
    return "logger" if trainer.loggers else "default_root_dir"


def new_run_dir(trainer: Any, output_dir: str | os.PathLike | None) -> Path:
    """The run folder of a run starting now (absolute; see the module doc). Call it on rank 0 and broadcast it:
    other ranks have no logger experiment (no W&B run id) and may see another ``version_<n>`` free."""
    source = run_dir_source(trainer, output_dir)
    if source == "output_dir":
        assert output_dir is not None
        return Path(output_dir).resolve()
    if source == "logger":
        logger = trainer.loggers[0]
        version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
        return Path(os.path.join(logger.save_dir or trainer.default_root_dir, str(logger.name), version)).resolve()
    root = Path(trainer.default_root_dir) / DEFAULT_RUNS_FOLDER
    taken = [int(m.group(1)) for p in (root.iterdir() if root.is_dir() else ()) if (m := _VERSION.match(p.name))]
    return (root / f"version_{max(taken, default=-1) + 1}").resolve()


def run_folders(trainer: Any, output_dir: str | os.PathLike | None) -> list[Path]:
    """Every run folder a new fit with this trainer and ``output_dir`` may continue: ``output_dir`` itself, else all
    version folders of the first logger (``<save_dir>/<name>/*``), else ``<default_root_dir>/cbal_runs/*``.

    Reads no logger's ``version``, so it creates no W&B run and no logger folder."""
    source = run_dir_source(trainer, output_dir)
    if source == "output_dir":
        assert output_dir is not None
        return [Path(output_dir)]
    if source == "logger":
        logger = trainer.loggers[0]
        base = Path(logger.save_dir or trainer.default_root_dir) / str(logger.name)
    else:
        base = Path(trainer.default_root_dir) / DEFAULT_RUNS_FOLDER
    return [base, *sorted(p for p in base.glob("*") if p.is_dir())]


def find_last_checkpoint(checkpoint_dirs: Sequence[str | os.PathLike]) -> Path | None:
    """The newest (by modification time) ``last*.ckpt`` or ``query_cycle_*.ckpt`` in any of ``checkpoint_dirs``;
    ``None`` when there is none."""
    found = {
        path
        for folder in checkpoint_dirs
        for pattern in LAST_CHECKPOINT_PATTERNS
        for path in Path(folder).glob(pattern)
        if path.is_file()
    }
    return max(found, key=lambda p: (p.stat().st_mtime, str(p))) if found else None


def method_name(scorer: Any, selector: Any) -> str:
    """The method's name in the paper's style, from the scorer and the selector.

    ``TopK``: the scorer's name (``Entropy``); ``ClassBalanced``: ``<scorer>-CB`` (``Entropy-CB``); a selector with
    its own balance weight ``lam`` (``KCenterGreedy``, ``Badge``): its name, with ``-CB`` when ``lam > 0``; any other
    selector: ``<scorer>-<selector>`` (``Entropy-PseudoLabelQuota``).

    Example:
        >>> from cbal_lightning.scoring import Entropy
        >>> from cbal_lightning.selection import ClassBalanced, KCenterGreedy, TopK
        >>> [method_name(Entropy(), s) for s in (TopK(), ClassBalanced(lam=1.0), KCenterGreedy(lam=0.5))]
        ['Entropy', 'Entropy-CB', 'KCenterGreedy-CB']
    """
    score, select = type(scorer).__name__, type(selector).__name__
    if isinstance(selector, TopK):
        return score
    if isinstance(selector, ClassBalanced):
        return f"{score}-CB"
    lam = getattr(selector, "lam", None)
    if lam is not None:
        return f"{select}-CB" if lam > 0 else select
    return f"{score}-{select}"
