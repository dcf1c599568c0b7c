"""What a user sees: W&B (offline) tracking, the ``cbal-lightning`` commands, and the experiment configs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.loggers import WandbLogger

from cbal_lightning import ActiveLearningCallback, DigitsDataModule, ImageClassifier
from cbal_lightning.tools.cli import main
from cbal_lightning.scoring import Entropy
from cbal_lightning.selection import ClassBalanced

REPO = Path(__file__).resolve().parents[1]


def test_wandb_offline_run_holds_the_cycle_keys(tmp_path: Path) -> None:
    import wandb

    seed_everything(0, verbose=False)
    logger = WandbLogger(project="cbal-tests", save_dir=str(tmp_path), offline=True)
    al = ActiveLearningCallback(budget=40, cycles=1, scorer=Entropy(), selector=ClassBalanced(lam=1.0),
                                epochs_per_cycle=1, output_dir=str(tmp_path), progress=False)
    trainer = Trainer(max_epochs=1, accelerator="cpu", callbacks=[al], logger=logger, limit_val_batches=0,
                      enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    model = ImageClassifier(num_classes=10, backbone="small_cnn", in_channels=1, lr=0.05, milestones=(100,))
    trainer.fit(model, datamodule=DigitsDataModule(imbalance_factor=0.1, batch_size=32))
    run_dir = Path(logger.experiment.dir).parent
    wandb.finish()

    # Offline runs keep the history in the binary run-<id>.wandb log (protobuf records; keys are stored as text)
    # and the tables as JSON files under files/media.
    (record_file,) = run_dir.glob("run-*.wandb")
    keys = ("al/cycle", "al/num_labeled", "al/test/acc", "al/test/mean_class_acc", "al/test/class_acc/9",
            "al/query/l1_score", "al/query/expected_l1_score", "al/labeled_l1_score", "al/query/objective",
            "al/query/lower_bound", "al/query/gap", "al/query/status", "al/query/inference_seconds",
            "al/query/selection_seconds", "al/selected_samples", "al/labeled_per_class")
    deadline = time.monotonic() + 60  # the wandb-core service may still be flushing the file after finish()
    while not all(k.encode() in record_file.read_bytes() for k in keys) and time.monotonic() < deadline:
        time.sleep(0.5)
    raw = record_file.read_bytes()
    for key in keys:
        assert key.encode() in raw, f"{key} missing from the W&B run"
    (samples_file,) = run_dir.glob("files/media/table/al/selected_samples_*.table.json")
    samples = json.loads(samples_file.read_text())
    assert samples["columns"] == ["index", "predicted", "true", "score"]
    assert [row[0] for row in samples["data"]] == al.history[1]["indices"]
    (counts_file,) = run_dir.glob("files/media/table/al/labeled_per_class_table_*.table.json")
    counts = json.loads(counts_file.read_text())
    assert [row[1] for row in counts["data"]] == al.history[1]["labeled_counts"]


def test_demo_command_prints_the_table_and_writes_the_figures(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cbal_lightning.tools.cli", "demo", "--out", str(tmp_path), "--cycles", "1", "--epochs", "2"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for method in ("Random", "Entropy", "Entropy-CB"):
        assert method in proc.stdout
    assert "mean class acc" in proc.stdout
    for name in ("accuracy.png", "class_distribution.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5_000
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"Random", "Entropy", "Entropy-CB"}
    assert all(len(history) == 2 and "test" in history[-1] for history in results.values())


def _digits_config(tmp_path: Path) -> Path:
    config = yaml.safe_load((REPO / "experiments" / "digits" / "if0.1" / "entropy_cb.yaml").read_text())
    config["trainer"].update(max_epochs=1, default_root_dir=str(tmp_path), logger=False, enable_progress_bar=False)
    config["trainer"]["callbacks"][0]["init_args"].update(cycles=1, output_dir=str(tmp_path), progress=False)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_cli_fit_runs_an_experiment_config(tmp_path: Path) -> None:
    main(["fit", "--config", str(_digits_config(tmp_path))])
    lines = [json.loads(line) for line in (tmp_path / "labeled_sets.jsonl").read_text().splitlines()]
    assert [line["cycle"] for line in lines] == [0, 1]
    dm = DigitsDataModule(imbalance_factor=0.1)
    dm.setup("fit")
    budget = round(0.05 * len(dm.pools))  # budget: 0.05 in the config = 5 % of the train set
    assert len(lines[1]["indices"]) == budget
    assert lines[1]["num_labeled"] == lines[0]["num_labeled"] + budget


def test_cli_split_prints_the_per_class_table(capsys: pytest.CaptureFixture[str]) -> None:
    main(["split", "--data", "digits", "--imbalance-factor", "0.1"])
    out = capsys.readouterr().out
    assert "initial" in out and "pool" in out
    assert out.count("\n") >= 11  # one row per class and a total
