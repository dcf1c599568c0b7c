"""What a user sees: a fast ``--help`` without reST markup, progress in the trainer's bar style, a readable figure."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from rich.progress import Progress

from cbal_lightning import ActiveLearningCallback, DigitsDataModule, ImageClassifier
from cbal_lightning.tools.cli import _parser
from cbal_lightning.inference import progress_bar
from cbal_lightning.tools.plots import class_distribution_figure
from cbal_lightning.selection import TopK

COMMAND = [sys.executable, "-c", "from cbal_lightning.tools.cli import main; main()"]


def _child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def test_help_takes_well_under_two_cpu_seconds() -> None:
    before = _child_cpu_seconds()
    proc = subprocess.run([*COMMAND, "--help"], capture_output=True, text=True, timeout=60)
    cpu = _child_cpu_seconds() - before
    assert proc.returncode == 0 and "tune-lambda" in proc.stdout
    assert cpu < 2.0, f"cbal-lightning --help used {cpu:.2f} s of CPU"


@pytest.mark.parametrize("command", [None, "demo", "split", "sweep", "report", "tune-lambda"])
def test_help_texts_have_no_restructuredtext_markup(command: str | None) -> None:
    parser = _parser(command)
    text = parser.format_help() if command is None else parser._subparsers._group_actions[0].choices[command].format_help()
    assert "usage: cbal-lightning" in text
    assert "``" not in text and ":class:" not in text and ":func:" not in text


class RecordingBar(TQDMProgressBar):
    """Lightning's tqdm bar, recording the descriptions of the extra bars drawn beside the training bar."""

    def __init__(self) -> None:
        super().__init__()
        self.drawn: list[str] = []

    def init_validation_tqdm(self):
        bar = super().init_validation_tqdm()
        original = bar.set_description
        bar.set_description = lambda desc, *a, **k: (self.drawn.append(desc), original(desc, *a, **k))[1]
        return bar


def test_pool_scoring_and_test_evaluation_draw_in_the_trainers_progress_bar(tmp_path: Path) -> None:
    seed_everything(0, verbose=False)
    bar = RecordingBar()
    al = ActiveLearningCallback(budget=20, cycles=1, selector=TopK(), epochs_per_cycle=1, output_dir=str(tmp_path))
    trainer = Trainer(max_epochs=1, accelerator="cpu", callbacks=[al, bar], logger=False, limit_val_batches=0,
                      enable_checkpointing=False, enable_model_summary=False)
    model = ImageClassifier(num_classes=10, backbone="small_cnn", in_channels=1, milestones=(100,))
    trainer.fit(model, datamodule=DigitsDataModule(imbalance_factor=0.1, batch_size=64))
    assert bar.drawn == ["test set (cycle 0)", "scoring pool (cycle 1)", "test set (cycle 1)"]


def test_progress_bar_adds_and_removes_a_task_of_a_rich_bar() -> None:
    bar = RichProgressBar()
    bar.progress = Progress(disable=True)
    with progress_bar(bar, total=3, desc="scoring pool (cycle 1)") as advance:
        (task,) = bar.progress.tasks
        assert (task.description, task.total) == ("scoring pool (cycle 1)", 3)
        for _ in range(3):
            advance()
        assert task.completed == 3
    assert bar.progress.tasks == []


def test_class_distribution_figure_is_labeled_and_marks_the_tail() -> None:
    history = [{"labeled_counts": [5, 5, 1, 1]}, {"labeled_counts": [6, 6, 3, 3]}]
    fig = class_distribution_figure({"Entropy": history, "Entropy-CB": history}, ["a", "b", "c", "d"], tail_classes=[2, 3])
    assert "lower L1 = more balanced" in fig._suptitle.get_text()
    axes = fig.axes
    assert all(ax.get_ylabel() == "labeled samples" for ax in axes[::2])
    assert axes[-1].get_xlabel() == "class (* hatched: tail)"
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["a", "b", "c*", "d*"]
    assert [p.get_hatch() for p in axes[0].patches] == [None, None, "///", "///"]
