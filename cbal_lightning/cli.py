"""The ``cbal-lightning`` command.

* ``cbal-lightning demo``: the README's main command (digits, CPU-friendly).
* ``cbal-lightning split --data cifar10 --root DIR --imbalance-factor 0.1``: the long-tail split as a table.
* ``cbal-lightning sweep experiments/cifar10/if0.1 --seeds 0 1 2``: a grid of configs over seeds, resumable.
* ``cbal-lightning report --runs runs/cifar10-if0.1``: figures and gain tables from the runs' ``history.json``.
* ``cbal-lightning tune-lambda --config experiments/cifar10/if1/entropy_cb.yaml``: the lambda sweep of Sec. 4.
* ``cbal-lightning fit --config experiments/cifar10/if0.1/entropy_cb.yaml``: any run, through LightningCLI (so every
  Trainer option, logger and strategy is available from YAML or flags); also ``validate``/``test``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from lightning.pytorch.cli import LightningCLI

from cbal_lightning import lambda_sweep, reports, sweep
from cbal_lightning.data import ActiveDataModule
from cbal_lightning.models import ImageClassifier

__all__ = ["main", "ActiveLearningCLI"]


class ActiveLearningCLI(LightningCLI):
    """LightningCLI whose model follows the datamodule: output width ``num_classes``, input ``in_channels``."""

    def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 - jsonargparse parser
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.in_channels", "model.init_args.in_channels", apply_on="instantiate")


def _lightning_cli(argv: Sequence[str] | None) -> None:
    ActiveLearningCLI(
        ImageClassifier,
        ActiveDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=None if argv is None else list(argv),  # None: LightningCLI reads sys.argv itself
        save_config_kwargs={"overwrite": True},
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cbal-lightning", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="Random vs Entropy vs Entropy-CB on long-tailed digits (about a minute on CPU)")
    demo.add_argument("--out", default="runs/demo", help="output folder for the table, plots and logs")
    demo.add_argument("--cycles", type=int, default=4)
    demo.add_argument("--epochs", type=int, default=15, help="training epochs per cycle")
    demo.add_argument("--imbalance-factor", type=float, default=0.1)
    demo.add_argument("--lam", type=float, default=1.0, help="lambda of Entropy-CB (Eq. 8)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--accelerator", default="auto")

    split = sub.add_parser("split", help="print the long-tail split of a dataset as a per-class table")
    split.add_argument("--data", required=True, help="cifar10, cifar100, tiny-imagenet, imagefolder or digits")
    split.add_argument("--root", default=None, help="dataset folder (not needed for digits)")
    split.add_argument("--imbalance-factor", type=float, default=1.0)
    split.add_argument("--imbalance-type", choices=("step", "exp"), default="step")
    split.add_argument("--initial-fraction", type=float, default=0.1)
    split.add_argument("--seed", type=int, default=0)

    sweep.add_arguments(sub.add_parser(
        "sweep", help="run experiment configs over seeds, resuming what is done (arguments after -- go to every fit)"))
    reports.add_arguments(sub.add_parser(
        "report", help="accuracy curves (mean +- std over seeds), class distributions and CB-gain tables from runs"))
    lambda_sweep.add_arguments(sub.add_parser(
        "tune-lambda", help="Sec. 4 / Fig. 4: solve one query for a range of lambda and pick lambda"))

    for name in ("fit", "validate", "test"):
        sub.add_parser(name, help=f"LightningCLI {name} (see `cbal-lightning {name} --help`)", add_help=False)
    return parser


def _split(args: argparse.Namespace) -> None:
    from cbal_lightning.data.summary import build_datamodule, split_table

    kwargs = dict(
        imbalance_factor=args.imbalance_factor, imbalance_type=args.imbalance_type,
        initial_fraction=args.initial_fraction, seed=args.seed,
    )
    if args.root is not None:
        kwargs["root"] = args.root
    dm = build_datamodule(args.data, **kwargs)
    dm.setup("fit")
    print(split_table(dm))


def main(argv: Sequence[str] | None = None) -> None:
    words = list(sys.argv[1:] if argv is None else argv)
    if words and words[0] in ("fit", "validate", "test"):
        _lightning_cli(argv)
        return
    extra: list[str] = []
    if "--" in words:
        words, extra = words[: words.index("--")], words[words.index("--") + 1 :]
    args = _parser().parse_args(words)
    if args.command == "sweep":
        sweep.run(args, extra)
    elif args.command == "report":
        reports.run(args)
    elif args.command == "tune-lambda":
        lambda_sweep.run(args)
    elif args.command == "demo":
        from cbal_lightning.demo import main as demo_main

        demo_main(args)
    elif args.command == "split":
        _split(args)


if __name__ == "__main__":
    main()
