"""Reports from logged runs: loading the layouts, pairing X / X-CB, gain tables, figures, W&B logging."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import pytest

from cbal_lightning.tools import reports
from cbal_lightning.tools.cli import main
from cbal_lightning.tools.reports import gain_table, load_runs, make_report, method_pairs, save_history


def _history(accs: list[float], counts: list[list[int]]) -> list[dict]:
    history = []
    for cycle, (acc, c) in enumerate(zip(accs, counts)):
        record = {"cycle": cycle, "num_labeled": int(sum(c)), "labeled_counts": c,
                  "test": {"acc": acc, "mean_class_acc": acc - 0.01, "per_class_acc": [acc] * len(c)}}
        if cycle:
            record.update(indices=[cycle], stats={"l1_score": 0.1})
        history.append(record)
    return history


COUNTS = [[5, 5, 5], [9, 6, 5], [13, 7, 5]]
BALANCED = [[5, 5, 5], [7, 7, 6], [9, 8, 8]]


def _write_tree(root: Path) -> None:
    for seed, shift in enumerate((0.0, 0.02)):
        save_history(_history([0.50 + shift, 0.60 + shift, 0.70 + shift], COUNTS), root / "Entropy" / f"seed{seed}" / "history.json")
        save_history(_history([0.50 + shift, 0.62 + shift, 0.73 + shift], BALANCED), root / "Entropy-CB" / f"seed{seed}" / "history.json")
    save_history(_history([0.5, 0.55, 0.6], COUNTS), root / "Random" / "seed0" / "history.json")


def test_method_pairs_follow_the_naming_convention() -> None:
    assert method_pairs(["Random", "Entropy", "Entropy-CB", "VAAL-CB", "BALD-CB", "BALD"]) == [
        ("Entropy", "Entropy-CB"), ("BALD", "BALD-CB")]


def test_tree_layout_gains_and_files(tmp_path: Path) -> None:
    _write_tree(tmp_path / "runs")
    runs = load_runs(tmp_path / "runs")
    assert {m: len(h) for m, h in runs.items()} == {"Entropy": 2, "Entropy-CB": 2, "Random": 1}
    report = make_report(tmp_path / "runs", tmp_path / "out")
    assert report["pairs"] == [["Entropy", "Entropy-CB"]]
    gains = report["gains"]["acc"]["Entropy-CB"]
    assert gains == pytest.approx({"1": 2.0, "2": 3.0})  # cycle 0 is left out, as in the paper's tables
    acc = report["accuracy"]["Entropy"]["acc"]["1"]
    assert acc["mean"] == pytest.approx(0.61) and acc["std"] == pytest.approx(0.01) and acc["n"] == 2
    for name in ("accuracy.png", "class_distribution_Entropy.png"):
        data = (tmp_path / "out" / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5_000
    markdown = (tmp_path / "out" / "gains.md").read_text()
    assert "| Entropy-CB (%) | +2.00 | +3.00 |" in markdown
    rows = list(csv.DictReader((tmp_path / "out" / "gains.csv").open()))
    assert [(r["metric"], r["cycle"], float(r["gain"])) for r in rows] == [
        ("acc", "1", 2.0), ("acc", "2", 3.0), ("mean_class_acc", "1", 2.0), ("mean_class_acc", "2", 3.0)]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["gains"] == report["gains"]


def test_demo_results_json_counts_as_one_seed_per_file(tmp_path: Path) -> None:
    results = {"Random": _history([0.5, 0.55], COUNTS[:2]), "Entropy": _history([0.5, 0.6], COUNTS[:2]),
               "Entropy-CB": _history([0.5, 0.64], BALANCED[:2])}
    (tmp_path / "results.json").write_text(json.dumps(results))
    save_history(results["Entropy"], tmp_path / "Entropy" / "history.json")  # the demo writes these too: ignored
    runs = load_runs(tmp_path)
    assert {m: len(h) for m, h in runs.items()} == {"Random": 1, "Entropy": 1, "Entropy-CB": 1}
    assert load_runs(tmp_path / "results.json").keys() == runs.keys()
    for seed in (0, 1):
        (tmp_path / "multi" / f"seed{seed}").mkdir(parents=True)
        (tmp_path / "multi" / f"seed{seed}" / "results.json").write_text(json.dumps(results))
    assert [len(h) for h in load_runs(tmp_path / "multi").values()] == [2, 2, 2]
    assert gain_table(runs)[0]["gain"] == pytest.approx(4.0)


def test_single_seed_method_folders_and_errors(tmp_path: Path) -> None:
    save_history(_history([0.5, 0.6], COUNTS[:2]), tmp_path / "runs" / "Entropy" / "history.json")
    assert list(load_runs(tmp_path / "runs")) == ["Entropy"]
    report = make_report(tmp_path / "runs", tmp_path / "out")  # no pair: an accuracy plot and empty tables
    assert report["pairs"] == [] and report["gains"] == {"acc": {}, "mean_class_acc": {}}
    assert "No baseline / CB pair" in (tmp_path / "out" / "gains.md").read_text()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="nothing found"):
        load_runs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_runs(tmp_path / "missing")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="per-cycle records"):
        load_runs(tmp_path / "bad.json")


def test_cli_entry_points(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_tree(tmp_path / "runs")
    parser = argparse.ArgumentParser()
    reports.add_arguments(parser)
    reports.run(parser.parse_args(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "o")]))
    assert "| Entropy-CB (%) |" in capsys.readouterr().out
    main(["report", "--runs", str(tmp_path / "runs")])  # default out: <runs>/report
    assert (tmp_path / "runs" / "report" / "gains.csv").is_file()


def test_figures_go_to_an_active_wandb_run(tmp_path: Path) -> None:
    import wandb

    _write_tree(tmp_path / "runs")
    run = wandb.init(project="cbal-tests", dir=str(tmp_path), mode="offline")
    try:
        make_report(tmp_path / "runs", tmp_path / "out")
        run_dir = Path(run.dir).parent
    finally:
        wandb.finish()
    images = list(run_dir.glob("files/media/images/report/*.png"))
    assert any("accuracy" in p.name for p in images), sorted(run_dir.rglob("*"))
    assert "wandb" in sys.modules


def test_sweep_tree_with_config_names(tmp_path: Path) -> None:
    """``cbal-lightning sweep`` writes <out>/<dataset>/if<IF>/<method>/seed<k>/history.json with file-stem names."""
    exp = tmp_path / "out" / "digits" / "if0.1"
    for seed in (0, 1):
        save_history(_history([0.5, 0.6], COUNTS[:2]), exp / "entropy" / f"seed{seed}" / "history.json")
        save_history(_history([0.5, 0.65], BALANCED[:2]), exp / "entropy_cb" / f"seed{seed}" / "history.json")
        save_history(_history([0.5, 0.55], COUNTS[:2]), exp / "entropy_l1_pseudo_label" / f"seed{seed}" / "history.json")
    (exp / ".hidden" / "seed0").mkdir(parents=True)
    (exp / ".hidden" / "seed0" / "history.json").write_text("not json")
    for root in (tmp_path / "out", exp):
        runs = load_runs(root)
        assert {m: len(h) for m, h in runs.items()} == {"entropy": 2, "entropy_cb": 2, "entropy_l1_pseudo_label": 2}
    assert load_runs(exp / "entropy")  # a single method folder
    assert reports.cb_baseline("VAAL-CB") == "VAAL" and reports.cb_baseline("pseudo_label") is None
    report = make_report(tmp_path / "out", tmp_path / "rep")
    assert report["pairs"] == [["entropy", "entropy_cb"]]
    assert report["gains"]["acc"]["entropy_cb"] == pytest.approx({"1": 5.0})


def test_logger_named_run_folders_are_grouped_by_run_json(tmp_path: Path) -> None:
    """``cbal-lightning fit`` without output_dir: ``lightning_logs/version_<n>`` (or a W&B run id) names no method."""
    logs = tmp_path / "lightning_logs"
    runs = [("Entropy", 0, COUNTS), ("Entropy-CB", 0, BALANCED), ("Entropy", 1, COUNTS), ("Entropy-CB", 1, BALANCED)]
    for version, (method, seed, counts) in enumerate(runs):
        save_history(_history([0.5, 0.6, 0.7], counts), logs / f"version_{version}" / "history.json")
        (logs / f"version_{version}" / "run.json").write_text(json.dumps(
            {"method": method, "seed": seed, "datamodule": "DigitsDataModule", "folder_named_by": "logger"}))
    assert {m: len(h) for m, h in load_runs(logs).items()} == {"Entropy": 2, "Entropy-CB": 2}
    assert make_report(logs, tmp_path / "out")["pairs"] == [["Entropy", "Entropy-CB"]]
    # another datamodule keeps the runs apart; a folder the user named (output_dir) keeps its name
    save_history(_history([0.5, 0.6], COUNTS[:2]), logs / "version_9" / "history.json")
    (logs / "version_9" / "run.json").write_text(json.dumps({"method": "Entropy", "seed": 0, "datamodule": "CIFAR10DataModule"}))
    save_history(_history([0.5, 0.6], COUNTS[:2]), logs / "mine" / "history.json")
    (logs / "mine" / "run.json").write_text(json.dumps({"method": "Entropy", "folder_named_by": "output_dir"}))
    assert {m: len(h) for m, h in load_runs(logs).items()} == {
        "CIFAR10DataModule/Entropy": 1, "DigitsDataModule/Entropy": 2, "DigitsDataModule/Entropy-CB": 2, "mine": 1}
