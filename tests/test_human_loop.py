"""People in the loop: a pool of images nobody has labeled, queries answered through files, stop and resume."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cbal_lightning.oracle import HumanOracle, SimulatedOracle

CLASSES = ["a", "b", "c"]
HERE = Path(__file__).parent

# One fit of the loop; run in-process by most tests and as a subprocess by the kill test (argv: root run ckpt slow).
FIT = '''
import sys, time
from lightning.pytorch import Callback, Trainer, seed_everything
from cbal_lightning import ActiveLearningCallback, ImageClassifier, ImageFolderDataModule
from cbal_lightning.oracle import HumanOracle
from cbal_lightning.selection import ClassBalanced


class Slow(Callback):  # after the callback's hook: sleeps once the labels are imported, before cycle 1 trains
    def on_train_epoch_start(self, trainer, pl_module):
        time.sleep(float(sys.argv[4]) if len(sys.argv) > 4 else 0.0)


def fit(root, run, ckpt=None, cycles=2, oracle=None, slow=False, budget=4):
    seed_everything(0)
    dm = ImageFolderDataModule(root=root, batch_size=4)
    al = ActiveLearningCallback(budget=budget, cycles=cycles, selector=ClassBalanced(lam=1.0, time_limit=5), output_dir=run,
                                oracle=oracle, progress=False)
    trainer = Trainer(max_epochs=1, callbacks=[al] + ([Slow()] if slow else []), logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, deterministic=True)
    trainer.fit(ImageClassifier(num_classes=3, backbone="small_cnn", lr=0.05), datamodule=dm, ckpt_path=ckpt)
    return al, dm


if __name__ == "__main__":
    fit(sys.argv[1], sys.argv[2], sys.argv[3] if sys.argv[3] != "-" else None, slow=True)
'''


@pytest.fixture(scope="module")
def fit_module(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("human_loop_code")
    (folder / "human_loop_fit.py").write_text(FIT)
    sys.path.insert(0, str(folder))
    import human_loop_fit

    yield human_loop_fit
    sys.path.remove(str(folder))


def _image_tree(root: Path, unlabeled: int = 24) -> dict[str, str]:
    """train/<class>/ (4 labeled per class), test/<class>/, and unlabeled/ in two sub-folders; returns the hidden truth."""
    for split, n in (("train", 4), ("test", 2)):
        for c, name in enumerate(CLASSES):
            for i in range(n):
                path = root / split / name / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (16, 16), (70 * c + 20, 40, 200 - 60 * c)).save(path)
    truth = {}
    for k in range(unlabeled):
        c = (k * 7) % 3
        path = root / "unlabeled" / f"batch{k % 2}" / f"img{k:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16), (70 * c + 20 + k % 4, 40, 200 - 60 * c)).save(path)
        truth[str(path)] = CLASSES[c]
    return truth


def _fill_csv(path: Path, truth: dict[str, str]) -> dict[str, str]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["label"] = truth[row["path"]]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return {row["path"]: row["label"] for row in rows}


def _label_studio_export(tasks_file: Path, out: Path, truth: dict[str, str]) -> dict[str, str]:
    """What Label Studio exports ("JSON") after a person chose one class per task, with a cancelled first try."""
    tasks = json.loads(tasks_file.read_text())
    exported = []
    for k, task in enumerate(tasks, start=1):
        choice = {"from_name": "label", "to_name": "image", "type": "choices", "origin": "manual",
                  "value": {"choices": [truth[task["data"]["path"]]]}}
        exported.append({
            "id": k, "data": task["data"], "meta": {}, "project": 1, "predictions": [],
            "annotations": [
                {"id": 2 * k, "was_cancelled": True, "result": [], "completed_by": 1, "task": k},
                {"id": 2 * k + 1, "was_cancelled": False, "ground_truth": False, "result": [choice], "completed_by": 1,
                 "task": k, "lead_time": 2.5, "created_at": "2026-11-29T18:00:00Z"},
            ],
        })
    out.write_text(json.dumps(exported))
    return {task["data"]["path"]: truth[task["data"]["path"]] for task in tasks}


def _labels_by_path(dm) -> dict[str, str]:
    paths = dm.eval_dataset(np.arange(len(dm.pools))).images.paths
    return {paths[i]: CLASSES[int(dm.targets[i])] for i in dm.pools.labeled_indices(cycle=None) if dm.pools.cycle_of([i])[0] > 0}


@pytest.mark.parametrize("answers", ["csv", "label_studio"])
def test_stop_fill_resume_until_done(fit_module, tmp_path: Path, answers: str) -> None:
    truth = _image_tree(tmp_path / "data")
    root, run = str(tmp_path / "data"), tmp_path / "run"
    filled: dict[str, str] = {}
    ckpt = None
    for cycle in (1, 2):
        al, dm = fit_module.fit(root, str(run), ckpt)
        files = HumanOracle.files(run, cycle)
        assert al.waiting_for_labels == files.csv and dm.pools.last_cycle == cycle - 1  # stopped, nothing labeled yet
        ckpt = str(run / "checkpoints" / f"query_cycle_{cycle}.ckpt")
        assert Path(ckpt).is_file() and files.manifest.is_file() and files.label_studio_config.is_file()
        assert len(list(files.thumbs.glob("*.png"))) == 4 * cycle
        if answers == "csv":
            filled |= _fill_csv(files.csv, truth)
        else:
            filled |= _label_studio_export(files.label_studio_tasks, files.label_studio_export, truth)
    al, dm = fit_module.fit(root, str(run), ckpt)
    assert al.waiting_for_labels is None and al.cycle == 2 and len(al.history) == 3
    assert _labels_by_path(dm) == filled and len(filled) == 8  # exactly the filled samples, with the filled labels
    assert dm.pools.num_labeled == 12 + 8 and dm.pools.labeled_indices(cycle=0).tolist() == list(range(12))
    for record in al.history[1:]:  # Eq. 10 on the revealed labels, computed once the batch was labeled
        assert len(record["true"]) == 4 and 0 <= record["stats"]["l1_score"] <= 1
    assert all("acc" in record["test"] for record in al.history)


def test_the_first_query_asks_for_a_random_pilot_then_for_the_rest(fit_module, tmp_path: Path) -> None:
    truth = _image_tree(tmp_path / "data", unlabeled=60)
    root, run = str(tmp_path / "data"), tmp_path / "run"
    al, dm = fit_module.fit(root, str(run), cycles=1, budget=30)  # pilot: 5 per class of 3 (pilot_fraction=0.2 is fewer)
    pilot_files, rest_files = HumanOracle.files(run, 1, "pilot"), HumanOracle.files(run, 1)
    assert al.waiting_for_labels == pilot_files.csv and pilot_files.csv.name == "cycle_1_pilot.csv"
    assert (run / "checkpoints" / "query_cycle_1_pilot.ckpt").is_file() and not rest_files.csv.exists()
    assert dm.pools.last_cycle == 0 and al.pending["part"] == "pilot" and len(al.pending["indices"]) == 15
    pilot = _fill_csv(pilot_files.csv, truth)

    al, dm = fit_module.fit(root, str(run), str(run / "checkpoints" / "query_cycle_1_pilot.ckpt"), cycles=1, budget=30)
    assert al.waiting_for_labels == rest_files.csv and dm.pools.last_cycle == 0 and al.cycle == 0  # stopped before training
    rest = _fill_csv(rest_files.csv, truth)
    assert len(rest) == 15 and not set(rest) & set(pilot)
    assert al.pending["pilot_labels"] == [CLASSES.index(pilot[p]) for p in pilot]  # in file order = pending order

    al, dm = fit_module.fit(root, str(run), str(run / "checkpoints" / "query_cycle_1.ckpt"), cycles=1, budget=30)
    record = al.history[1]
    assert al.waiting_for_labels is None and al.cycle == 1 and "acc" in record["test"]
    assert _labels_by_path(dm) == pilot | rest and len(record["true"]) == 30  # one batch: the pilot, then the rest
    assert record["stats"]["pilot_size"] == 15 and record["prior"]["method"] == "pilot" and record["prior"]["calibrated"]
    assert record["stats"]["prior_corrected"] == 1.0 and "pilot_labels" not in record
    assert al.state_dict()["prior"]["method"] == "revealed"  # the tracker learned from the whole batch


def test_resuming_before_the_labels_are_in_changes_nothing(fit_module, tmp_path: Path) -> None:
    truth = _image_tree(tmp_path / "data")
    root, run = str(tmp_path / "data"), tmp_path / "run"
    al, _ = fit_module.fit(root, str(run), cycles=1)
    ckpt = str(run / "checkpoints" / "query_cycle_1.ckpt")
    with pytest.raises(ValueError, match=r"waits for labels: fill every 'label' of .*cycle_1.csv"):
        fit_module.fit(root, str(run), ckpt, cycles=1)
    rows = list(csv.DictReader(al.waiting_for_labels.open()))
    _fill_csv(al.waiting_for_labels, truth)
    text = al.waiting_for_labels.read_text().replace(f",{truth[rows[1]['path']]}\n", ",zebra\n", 1)
    al.waiting_for_labels.write_text(text)
    with pytest.raises(ValueError, match=r"row \d \(index \d+\): unknown label 'zebra'"):
        fit_module.fit(root, str(run), ckpt, cycles=1)
    history = json.loads((run / "history.json").read_text())
    assert len(history) == 1  # the failed resumes labeled nothing
    _fill_csv(al.waiting_for_labels, truth)
    al, dm = fit_module.fit(root, str(run), ckpt, cycles=1)
    assert al.cycle == 1 and dm.pools.num_labeled == 16


def test_a_pool_without_labels_needs_people(fit_module, tmp_path: Path) -> None:
    _image_tree(tmp_path / "data")
    with pytest.raises(ValueError, match=r"oracle: SimulatedOracle\(\) reveals labels the dataset has, but 24 pool samples"):
        fit_module.fit(str(tmp_path / "data"), str(tmp_path / "run"), oracle=SimulatedOracle())


def test_a_process_killed_between_the_stop_and_the_resume_loses_nothing(fit_module, tmp_path: Path) -> None:
    truth = _image_tree(tmp_path / "data")
    root, run = str(tmp_path / "data"), tmp_path / "run"
    al, _ = fit_module.fit(root, str(run), cycles=2)
    ckpt = run / "checkpoints" / "query_cycle_1.ckpt"
    filled = _fill_csv(al.waiting_for_labels, truth)
    # the resumed fit imports the labels, then is killed while it trains cycle 1 (no checkpoint saved after the import)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(fit_module.__file__).parent), os.environ.get("PYTHONPATH", "")]))
    log = (tmp_path / "killed.log").open("w")
    job = subprocess.Popen([sys.executable, fit_module.__file__, root, str(run), str(ckpt), "30"], env=env,
                           stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and job.poll() is None:
            history = json.loads((run / "history.json").read_text()) if (run / "history.json").is_file() else []
            if len(history) == 2:  # the cycle-1 batch is labeled in the killed process's memory and files
                break
            time.sleep(0.2)
        assert job.poll() is None, f"the resumed fit ended before it could be killed:\n{(tmp_path / 'killed.log').read_text()[-3000:]}"
        job.send_signal(signal.SIGKILL)
    finally:
        job.kill()
        job.wait()
    assert not (run / "checkpoints" / "query_cycle_2.ckpt").exists()
    al, dm = fit_module.fit(root, str(run), str(ckpt), cycles=2)  # the same checkpoint and answers again
    assert al.waiting_for_labels == HumanOracle.files(run, 2).csv
    assert _labels_by_path(dm) == filled and dm.pools.last_cycle == 1


def test_the_split_command_describes_a_real_pool_and_an_empty_unlabeled_folder_is_refused(tmp_path: Path) -> None:
    from cbal_lightning.data import DatasetNotFoundError, ImageFolderDataModule
    from cbal_lightning.data.summary import split_table

    _image_tree(tmp_path / "data")
    with pytest.warns(UserWarning, match=r"the pool is real.*\['imbalance_factor'\].*are not used"):
        table = split_table(ImageFolderDataModule(root=str(tmp_path / "data"), imbalance_factor=0.1))
    assert "a real pool: 12 labeled samples start the run, 24 unlabeled samples" in table
    for path in (tmp_path / "data" / "unlabeled").rglob("*.png"):
        path.unlink()
    with pytest.raises(DatasetNotFoundError, match="holds no images"):
        ImageFolderDataModule(root=str(tmp_path / "data")).setup("fit")


CONFIG = """
seed_everything: 0
trainer:
  max_epochs: 1
  accelerator: cpu
  enable_progress_bar: false
  enable_model_summary: false
  default_root_dir: {runs}
  logger:
    class_path: lightning.pytorch.loggers.CSVLogger
    init_args:
      save_dir: {runs}
  callbacks:
  - class_path: cbal_lightning.ActiveLearningCallback
    init_args:
      budget: 4
      cycles: 1
      progress: false
model:
  class_path: cbal_lightning.ImageClassifier
  init_args:
    backbone: small_cnn
data:
  class_path: cbal_lightning.data.ImageFolderDataModule
  init_args:
    root: {root}
    batch_size: 4
"""


def test_the_cli_stops_for_labels_and_continues_with_ckpt_path_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cbal_lightning.tools.cli import main

    truth = _image_tree(tmp_path / "data")
    for path in sorted((tmp_path / "data" / "test").rglob("*.png")):  # no test/: a real pool often has no test set
        path.unlink()
    for folder in sorted((tmp_path / "data" / "test").iterdir()):
        folder.rmdir()
    (tmp_path / "data" / "test").rmdir()
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(runs=tmp_path / "runs", root=tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", str(config)])
    run = tmp_path / "runs" / "lightning_logs" / "version_0"
    files = HumanOracle.files(run, 1)
    assert (run / "checkpoints" / "query_cycle_1.ckpt").is_file() and (run / "config.yaml").is_file()
    filled = _fill_csv(files.csv, truth)
    main(["fit", "--config", str(config), "--ckpt_path", "last"])  # a new logger version; the run's folder goes on
    history = json.loads((run / "history.json").read_text())
    assert [r["cycle"] for r in history] == [0, 1] and [r["test"] for r in history] == [None, None]
    paths = {row["index"]: row["path"] for row in csv.DictReader(files.csv.open())}
    assert {paths[str(i)]: CLASSES[t] for i, t in zip(history[1]["indices"], history[1]["true"])} == filled
