"""``cbal-lightning sweep``: run a grid of experiment configs over seeds, resuming what is already done.

Each (config, seed) gets a run folder ``<out>/<dataset>/<IF>/<method>/seed<k>`` holding the config it ran with
(``config.yaml``: the original plus seed, output folders, loggers), the callback's ``history.json`` and
``labeled_sets.jsonl``, CSV metrics and ``checkpoints/last.ckpt``. Running the sweep again skips finished runs
(a complete ``history.json``), resumes interrupted ones from ``last.ckpt``, and starts the others. With
``--wandb-project`` every run also logs to W&B, all in one group named after the sweep.

Example:
    cbal-lightning sweep experiments/cifar10/if0.1 --seeds 0 1 2 --out runs/cifar10-if0.1 --wandb-project cbal
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml

from cbal_lightning.callback import HISTORY_FILE
from cbal_lightning.io import atomic_write

__all__ = ["Run", "plan", "run_sweep", "add_arguments", "run"]


@dataclass(frozen=True)
class Run:
    """One (config, seed) of a sweep and what the sweep will do with it."""

    config: Path
    seed: int
    directory: Path
    action: Literal["skip", "resume", "start"]

    @property
    def checkpoint(self) -> Path:
        return self.directory / "checkpoints" / "last.ckpt"


def _configs(paths: Sequence[str | Path]) -> list[Path]:
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(sorted(path.rglob("*.yaml")))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"sweep: no config file or folder at {path}")
    if not found:
        raise FileNotFoundError(f"sweep: no *.yaml configs under {[str(p) for p in paths]}")
    return found


def _cycles(config: dict[str, Any]) -> int:
    for callback in config["trainer"]["callbacks"]:
        if callback["class_path"].endswith("ActiveLearningCallback"):
            return int(callback["init_args"]["cycles"])
    raise ValueError("config: trainer.callbacks has no ActiveLearningCallback")


def _finished(directory: Path, cycles: int) -> bool:
    try:
        history = json.loads((directory / HISTORY_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return len(history) == cycles + 1 and "test" in history[-1]


def plan(configs: Sequence[str | Path], seeds: Sequence[int], out: str | Path) -> list[Run]:
    """What a sweep over ``configs`` x ``seeds`` writing to ``out`` would do, run by run."""
    runs = []
    for config in _configs(configs):
        cycles = _cycles(yaml.safe_load(config.read_text()))
        name = Path(*config.resolve().parts[-3:]).with_suffix("")  # <dataset>/<IF>/<method>
        for seed in seeds:
            directory = Path(out) / name / f"seed{seed}"
            if _finished(directory, cycles):
                action = "skip"
            elif (directory / "checkpoints" / "last.ckpt").exists():
                action = "resume"
            else:
                action = "start"
            runs.append(Run(config, seed, directory, action))
    return runs


def _run_config(run: Run, group: str, wandb_project: str | None) -> dict[str, Any]:
    """The config a run executes: the grid's config with its seed, folders and loggers filled in."""
    config = yaml.safe_load(run.config.read_text())
    config["seed_everything"] = run.seed
    trainer = config["trainer"]
    trainer["default_root_dir"] = str(run.directory)
    loggers: list[dict[str, Any]] = [
        {"class_path": "lightning.pytorch.loggers.CSVLogger",
         "init_args": {"save_dir": str(run.directory), "name": "", "version": ""}},
    ]
    if wandb_project:
        loggers.append({"class_path": "lightning.pytorch.loggers.WandbLogger", "init_args": {
            "project": wandb_project, "group": group, "name": f"{run.directory.parent.name}-seed{run.seed}",
            "save_dir": str(run.directory), "id": f"{group}-{'-'.join(run.directory.parts[-4:])}".replace(".", "_"),
        }})
    trainer["logger"] = loggers
    for callback in trainer["callbacks"]:
        if callback["class_path"].endswith("ActiveLearningCallback"):
            callback["init_args"].update(seed=run.seed, output_dir=str(run.directory))
        if callback["class_path"].endswith("ModelCheckpoint"):
            callback.setdefault("init_args", {}).update(dirpath=str(run.directory / "checkpoints"), save_last=True)
    return config


def run_sweep(
    configs: Sequence[str | Path],
    seeds: Sequence[int] = (0, 1, 2),
    out: str | Path = "runs/sweep",
    *,
    wandb_project: str | None = None,
    extra_args: Sequence[str] = (),
    dry_run: bool = False,
) -> list[Run]:
    """Run (or resume) every unfinished (config, seed) in a subprocess, one after the other; return the plan."""
    runs = plan(configs, seeds, out)
    group = Path(out).name
    for run in runs:
        print(f"[sweep] {run.action:6s} {run.config} seed {run.seed} -> {run.directory}", flush=True)
        if run.action == "skip" or dry_run:
            continue
        config = yaml.safe_dump(_run_config(run, group, wandb_project), sort_keys=False).encode()
        path = atomic_write(run.directory / "config.yaml", lambda f: f.write(config))
        command = [sys.executable, "-m", "cbal_lightning.tools.cli", "fit", "--config", str(path), *extra_args]
        if run.action == "resume":
            command += ["--ckpt_path", str(run.checkpoint)]
        subprocess.run(command, check=True)
    return runs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("configs", nargs="+", help="config files or folders of them (e.g. experiments/cifar10/if0.1)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/sweep", help="sweep folder; its name is the W&B group")
    parser.add_argument("--wandb-project", default=None, help="also log every run to this W&B project")
    parser.add_argument("--dry-run", action="store_true", help="print the plan only")


def run(args: argparse.Namespace, extra_args: Sequence[str] = ()) -> None:
    run_sweep(args.configs, args.seeds, args.out, wandb_project=args.wandb_project, extra_args=extra_args,
              dry_run=args.dry_run)
