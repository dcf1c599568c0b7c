"""Multi-process (DDP on CPU, gloo) and kill-and-resume runs of the whole active-learning loop.

Each job runs ``tests/scripts/al_run.py`` in a subprocess, as a user's script would run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "al_run.py"
LABELED_SETS = "labeled_sets.jsonl"


def _command(out: Path, *args: str) -> list[str]:
    return [sys.executable, str(SCRIPT), "--out", str(out), *args]


def _env() -> dict[str, str]:
    return os.environ | {"WANDB_MODE": "offline", "CUDA_VISIBLE_DEVICES": "", "PYTHONHASHSEED": "0"}


def _run(out: Path, *args: str, timeout: float = 300) -> dict[int, dict]:
    proc = subprocess.run(_command(out, *args), env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = {int(p.stem[4:]): json.loads(p.read_text()) for p in out.glob("rank*.json")}
    assert results, f"the job wrote no results\n{proc.stderr[-4000:]}"
    return results


@pytest.mark.slow
@pytest.mark.parametrize("method", ["entropy-cb", "bald-cb", "kcenter-cb"])
def test_ddp_two_processes_select_what_one_process_selects(tmp_path: Path, method: str) -> None:
    # A frozen model (lr=0, no batch-norm) predicts the same whatever the sharding, so the two runs see the same P
    # (and, for BALD, the same hashed dropout masks; for KCenterGreedy, the same embeddings).
    args = ("--model", "frozen", "--cycles", "2", "--epochs", "1", "--method", method)
    single = _run(tmp_path / "single", *args)
    ddp = _run(tmp_path / "ddp", *args, "--devices", "2")

    assert sorted(ddp) == [0, 1], "both ranks must finish and report"
    assert ddp[0]["world_size"] == 2
    assert ddp[0]["labeled"] == ddp[1]["labeled"], "ranks disagree on the labeled set"
    assert ddp[0]["labeled"] == single[0]["labeled"], "sharded scoring changed the selection"
    for cycle in ("1", "2"):
        chosen = ddp[0]["labeled"][cycle]
        assert len(chosen) == len(set(chosen)) == 40
    # evaluation gathered every test sample once: same metrics as the single process
    for a, b in zip(ddp[0]["history"], single[0]["history"]):
        assert a["test"]["acc"] == pytest.approx(b["test"]["acc"])
        assert a.get("stats", {}).get("pool_size") == b.get("stats", {}).get("pool_size")


def _wait_for(predicate, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the job ended before the kill point: {proc.stderr.read()[-4000:]}")
        time.sleep(0.05)
    raise AssertionError("the job never reached the kill point")


def _kill_when(predicate, command: list[str], timeout: float = 240) -> None:
    """Start ``command`` and SIGKILL it once ``predicate()`` holds (half a second later, so files land)."""
    proc = subprocess.Popen(command, env=_env(), stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(predicate, proc, timeout=timeout)
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL


def _cycles_written(out: Path) -> list[int]:
    try:
        return [json.loads(line)["cycle"] for line in (out / LABELED_SETS).read_text().splitlines()]
    except (FileNotFoundError, json.JSONDecodeError):
        return []


@pytest.mark.slow
def test_a_job_killed_in_cycle_two_resumes_without_losing_or_repeating_labels(tmp_path: Path) -> None:
    args = ("--model", "cnn", "--cycles", "3", "--epochs", "2")
    reference = _run(tmp_path / "reference", *args)[0]

    out = tmp_path / "killed"
    # cycle 2's query is written, and its first epoch checkpointed: kill in the middle of cycle 2's training
    # (epochs 0-1: cycle 0, 2-3: cycle 1, 4-5: cycle 2, 6-7: cycle 3); the half second lets last.ckpt follow, and
    # the job is then sleeping inside cycle 2's second epoch
    _kill_when(lambda: 2 in _cycles_written(out) and any((out / "ckpt").glob("epoch=4-*.ckpt")),
               _command(out, *args, "--slow-cycle", "2"))
    assert not (out / "rank0.json").exists()
    before = [json.loads(line) for line in (out / LABELED_SETS).read_text().splitlines()]
    assert [line["cycle"] for line in before] == [0, 1, 2]

    resumed = _run(out, *args, "--ckpt-path", str(out / "ckpt" / "last.ckpt"))[0]
    # the labels of the cycles completed before the kill are kept exactly
    for line in before:
        assert resumed["labeled"][str(line["cycle"])] == line["indices"]
    # the run ends with every cycle, nothing labeled twice
    labeled = [i for c in sorted(resumed["labeled"]) for i in resumed["labeled"][c]]
    assert sorted(resumed["labeled"], key=int) == ["0", "1", "2", "3"]
    assert len(labeled) == len(set(labeled)) == len(reference["labeled"]["0"]) + 3 * 40
    assert [r["cycle"] for r in resumed["history"]] == [0, 1, 2, 3]
    # training on CPU is deterministic and the random states are restored: same result as never being killed
    assert resumed["labeled"] == reference["labeled"]


@pytest.mark.slow
def test_mid_epoch_checkpoints_in_two_cycles_resume_to_the_same_labeled_set(tmp_path: Path) -> None:
    # Every 3 steps: with 130 + 40 labeled and batches of 32, cycle 0 trains steps 1-5 and cycle 1 steps 6-11, so
    # step=3 is inside cycle 0's epoch and step=9 inside cycle 1's (and step=6, where Lightning itself stays
    # silent because 6 divides cycle 1's epoch of 6 batches, is mid-epoch too).
    args = ("--model", "cnn", "--cycles", "2", "--epochs", "1", "--every-n-steps", "3")
    reference = _run(tmp_path / "reference", *args)[0]
    step3 = tmp_path / "reference" / "steps" / "step=3.ckpt"

    # resume from cycle 0's mid-epoch checkpoint, then kill the job in the middle of cycle 1's epoch ...
    out = tmp_path / "killed"
    command = _command(out, *args, "--ckpt-path", str(step3), "--sleep-at-step", "10")
    _kill_when(lambda: (out / "steps" / "step=9.ckpt").is_file(), command)  # the job then sleeps after step 10
    assert _cycles_written(out) == [0, 1]

    # ... and resume from its cycle-1 mid-epoch checkpoint: the same batches, the same models, the same queries
    resumed = _run(out, *args, "--ckpt-path", str(out / "steps" / "step=9.ckpt"))[0]
    assert resumed["labeled"] == reference["labeled"]
    assert [r["test"]["acc"] for r in resumed["history"]] == [r["test"]["acc"] for r in reference["history"]]
