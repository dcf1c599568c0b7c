"""The experiment grid: configs up to date with their generator, parsing and instantiating; the sweep runner."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from fixtures import write_tiny_imagenet
from lightning.pytorch import LightningModule

from cbal_lightning import ActiveLearningCallback
from cbal_lightning.tools.lightning_cli import ActiveLearningCLI
from cbal_lightning.data import ActiveDataModule
from cbal_lightning.tools.sweep import plan, run_sweep

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "experiments").rglob("*.yaml"))


def _generator():
    spec = importlib.util.spec_from_file_location("generate", REPO / "experiments" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configs_are_what_the_generator_writes() -> None:
    grid = _generator().grid()
    assert sorted(grid) == CONFIGS, "run `python experiments/generate.py`"
    for path, text in grid.items():
        assert path.read_text() == text, f"{path} differs from experiments/generate.py's output"
    # the paper's grid: 3 datasets x 3 imbalance factors x 10 methods, plus the digits default
    assert len(CONFIGS) == 3 * 3 * 10 + 10


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    write_tiny_imagenet(root, classes=["n01", "n02", "n03", "n04"], n_train=3, n_val=2)
    return root


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "experiments")))
def test_every_config_instantiates(config: Path, tiny_root: Path) -> None:
    args = ["--config", str(config), "--trainer.accelerator", "cpu", "--trainer.logger", "false"]
    if "tiny_imagenet" in config.parts:  # offline: no ImageNet weights, a fixture tree instead of the dataset
        args += ["--model.init_args.weights", "null", "--data.init_args.root", str(tiny_root)]
    cli = ActiveLearningCLI(LightningModule, ActiveDataModule, subclass_mode_model=True, subclass_mode_data=True,
                            run=False, args=args)
    callbacks = [cb for cb in cli.trainer.callbacks if isinstance(cb, ActiveLearningCallback)]
    assert len(callbacks) == 1 and callbacks[0].budget_arg == 0.05
    assert cli.model.num_classes == cli.datamodule.num_classes  # linked by the CLI
    assert cli.model.hparams.in_channels == cli.datamodule.in_channels


def _small_config(tmp_path: Path) -> Path:
    config = yaml.safe_load((REPO / "experiments" / "digits" / "if0.1" / "entropy_cb.yaml").read_text())
    config["trainer"].update(max_epochs=1, enable_progress_bar=False, enable_model_summary=False)
    config["trainer"]["callbacks"][0]["init_args"].update(cycles=1, progress=False)
    path = tmp_path / "grid" / "digits" / "if0.1" / "entropy_cb.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(config))
    return path


def test_sweep_runs_each_seed_once_and_skips_finished_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = _small_config(tmp_path)
    out = tmp_path / "sweep"
    runs = run_sweep([config.parent], seeds=[0, 1], out=out)
    assert [r.action for r in runs] == ["start", "start"]
    histories = [json.loads((r.directory / "history.json").read_text()) for r in runs]
    assert all(len(h) == 2 and "test" in h[-1] for h in histories)
    assert histories[0][1]["indices"] != histories[1][1]["indices"]  # seeds differ
    for r in runs:
        used = yaml.safe_load((r.directory / "config.yaml").read_text())
        assert used["seed_everything"] == r.seed
        assert (r.directory / "metrics.csv").exists() and (r.directory / "checkpoints" / "last.ckpt").exists()
    # a second call finds everything done
    assert [r.action for r in plan([config.parent], [0, 1], out)] == ["skip", "skip"]


def test_sweep_resumes_an_interrupted_run_from_its_last_checkpoint(tmp_path: Path) -> None:
    config = _small_config(tmp_path)
    directory = tmp_path / "sweep" / "digits" / "if0.1" / "entropy_cb" / "seed0"
    (directory / "checkpoints").mkdir(parents=True)
    (directory / "checkpoints" / "last.ckpt").write_bytes(b"")
    (directory / "history.json").write_text(json.dumps([{"cycle": 0, "num_labeled": 130}]))  # cycle 1 missing
    (run,) = plan([config], [0], tmp_path / "sweep")
    assert run.action == "resume" and run.checkpoint == directory / "checkpoints" / "last.ckpt"


def test_sweep_rejects_a_missing_config(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no config"):
        plan([tmp_path / "nope.yaml"], [0], tmp_path)
