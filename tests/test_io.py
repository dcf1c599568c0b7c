"""Atomic writes: all or nothing, and the file mode a plain open() would give."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from cbal_lightning.io import atomic_write, atomic_write_json


def test_a_failing_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = atomic_write_json(tmp_path / "state.json", {"cycle": 1})

    def explode(f) -> None:
        f.write(b'{"cycle": 2')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, explode)
    assert json.loads(path.read_text()) == {"cycle": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_written_files_get_the_mode_open_would_give(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "a.txt", lambda f: f.write(b"x"))
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
