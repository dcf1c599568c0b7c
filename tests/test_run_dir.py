"""One run folder per run, whatever the logger: the callback's files, the checkpoints and the config, never the
current folder; resuming continues in it; ``--ckpt_path last`` finds it; ``report`` groups its runs."""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from cbal_lightning import ActiveLearningCallback, DigitsDataModule, ImageClassifier
from cbal_lightning.scoring import Entropy
from cbal_lightning.selection import ClassBalanced
from cbal_lightning.tools.cli import main
from cbal_lightning.tools.reports import load_runs

REPO = Path(__file__).resolve().parents[1]
RUN_FILES = ("history.json", "labeled_sets.jsonl", "run.json")


class _CrashAtEpoch(Callback):
    """Fails when ``epoch`` starts, after the checkpoint of the epoch before it was saved: a crash between cycles."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: Trainer, pl_module: object) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("crash")


def _fit(logger, *callbacks: Callback, ckpt_path: str | None = None, **trainer_kwargs) -> ActiveLearningCallback:
    seed_everything(0, verbose=False)
    al = ActiveLearningCallback(budget=20, cycles=1, scorer=Entropy(), selector=ClassBalanced(lam=1.0),
                                epochs_per_cycle=1, progress=False)
    trainer = Trainer(max_epochs=1, accelerator="cpu", callbacks=[*callbacks, al, ModelCheckpoint(save_last=True)],
                      logger=logger, limit_val_batches=0, enable_progress_bar=False, enable_model_summary=False,
                      **trainer_kwargs)
    model = ImageClassifier(num_classes=10, backbone="small_cnn", in_channels=1, lr=0.05, milestones=(100,))
    trainer.fit(model, datamodule=DigitsDataModule(imbalance_factor=0.1, batch_size=64), ckpt_path=ckpt_path)
    return al


def _cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def test_wandb_run_writes_everything_into_its_run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import wandb

    cwd = _cwd(tmp_path, monkeypatch)
    logger = WandbLogger(project="cbal-tests", save_dir=str(tmp_path / "logs"), offline=True)
    try:
        al = _fit(logger)
        run_id = logger.version
    finally:
        wandb.finish()
    assert al.run_dir == tmp_path / "logs" / "cbal-tests" / run_id  # where ModelCheckpoint alone would have put it
    for name in RUN_FILES:
        assert (al.run_dir / name).is_file(), name
    assert (al.run_dir / "checkpoints" / "last.ckpt").is_file()
    assert json.loads((al.run_dir / "run.json").read_text())["method"] == "Entropy-CB"
    assert os.listdir(cwd) == []
    assert {m: len(h) for m, h in load_runs(tmp_path / "logs" / "cbal-tests").items()} == {"Entropy-CB": 1}


def test_no_logger_run_gets_a_folder_of_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = _cwd(tmp_path, monkeypatch)
    mine = ModelCheckpoint(dirpath=tmp_path / "mine", filename="mine", every_n_train_steps=3)  # a given dirpath stays
    al = _fit(False, mine, default_root_dir=tmp_path / "root")
    assert al.run_dir == tmp_path / "root" / "cbal_runs" / "version_0"
    assert sorted(p.name for p in al.run_dir.iterdir()) == ["checkpoints", *RUN_FILES]
    assert (al.run_dir / "checkpoints" / "last.ckpt").is_file()
    assert mine.dirpath == str(tmp_path / "mine") and (tmp_path / "mine" / "mine.ckpt").is_file()
    assert os.listdir(cwd) == []
    assert _fit(False, default_root_dir=tmp_path / "root").run_dir.name == "version_1"  # the next run: the next folder


def test_resume_with_a_new_logger_version_continues_in_the_run_dir(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="crash"):
        _fit(CSVLogger(tmp_path), _CrashAtEpoch(1))
    first = tmp_path / "lightning_logs" / "version_0"
    assert json.loads((first / "history.json").read_text())[0]["cycle"] == 0
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*dirpath has changed.*")  # the ModelCheckpoint keeps its state
        al = _fit(CSVLogger(tmp_path), ckpt_path=str(first / "checkpoints" / "last.ckpt"))
    assert al.run_dir == first
    history = json.loads((first / "history.json").read_text())
    assert [r["cycle"] for r in history] == [0, 1] and "test" in history[1]
    # the restored ModelCheckpoint knew epoch 0's file and replaced it (save_top_k=1): its state came back
    assert sorted(p.name for p in (first / "checkpoints").iterdir()) == ["epoch=1-step=6.ckpt", "last.ckpt"]
    assert torch.load(first / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == 1
    second = tmp_path / "lightning_logs" / "version_1"  # the logger's new version holds its metrics only
    assert (second / "metrics.csv").is_file() and not (second / "history.json").exists()
    assert not (second / "checkpoints").exists()
    assert {m: len(h) for m, h in load_runs(tmp_path / "lightning_logs").items()} == {"Entropy-CB": 1}

    fresh = ActiveLearningCallback(budget=20, cycles=1)  # a checkpoint whose run folder is gone: the new one stays
    fresh.run_dir = tmp_path / "new"
    state = torch.load(first / "checkpoints" / "last.ckpt", weights_only=False)["callbacks"]
    (saved,) = [s for key, s in state.items() if key.startswith("ActiveLearningCallback")]
    with pytest.warns(UserWarning, match="does not exist"):
        fresh.load_state_dict({**saved, "run_dir": str(tmp_path / "gone")})
    assert fresh.run_dir == tmp_path / "new"


def test_output_dir_must_be_a_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="output_dir: .* is a file"):
        ActiveLearningCallback(budget=20, cycles=1, output_dir=str(tmp_path / "file"))


def _cli_config(tmp_path: Path) -> Path:
    config = yaml.safe_load((REPO / "experiments" / "digits" / "if0.1" / "entropy_cb.yaml").read_text())
    config["trainer"].update(max_epochs=1, enable_progress_bar=False, enable_model_summary=False, logger={
        "class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path / "logs")}})
    config["trainer"]["callbacks"][0]["init_args"].update(cycles=1, budget=20, progress=False)
    config["data"]["init_args"]["batch_size"] = 64
    path = tmp_path / "entropy_cb.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_cli_fit_writes_the_config_into_the_run_dir_and_ckpt_path_last_finds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cwd = _cwd(tmp_path, monkeypatch)
    config = _cli_config(tmp_path)
    main(["fit", "--config", str(config)])
    run = tmp_path / "logs" / "lightning_logs" / "version_0"
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["callbacks"][0]["init_args"]["cycles"] == 1
    assert (run / "history.json").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert os.listdir(cwd) == []

    # a query checkpoint newer than last.ckpt (the human-labeling stop) is what "last" means
    query = shutil.copy(run / "checkpoints" / "last.ckpt", run / "checkpoints" / "query_cycle_1.ckpt")
    with caplog.at_level(logging.INFO):
        main(["fit", "--config", str(config), "--ckpt_path", "last"])
    assert f"resuming from {query}" in caplog.text
    assert not (tmp_path / "logs" / "lightning_logs" / "version_1" / "config.yaml").exists()
    assert (run / "config.yaml").is_file() and os.listdir(cwd) == []
