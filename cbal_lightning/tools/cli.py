"""The cbal-lightning command.

  cbal-lightning demo                 the README's main command (digits, CPU-friendly)
  cbal-lightning split --data cifar10 --root DIR --imbalance-factor 0.1
                                      the long-tail split as a per-class table
  cbal-lightning sweep experiments/cifar10/if0.1 --seeds 0 1 2
                                      a grid of configs over seeds, resumable
  cbal-lightning report --runs runs/cifar10-if0.1
                                      figures and gain tables from the runs' history.json
  cbal-lightning tune-lambda --config experiments/cifar10/if1/entropy_cb.yaml
                                      the lambda sweep of Sec. 4
  cbal-lightning fit --config experiments/cifar10/if0.1/entropy_cb.yaml
                                      any run through LightningCLI: every Trainer option, logger and
                                      strategy from YAML or flags (also validate and test)
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, Sequence

from cbal_lightning.selection import parse_lam

__all__ = ["main"]

# Subcommands whose arguments live in their own module, imported only when that subcommand runs, so that
# `cbal-lightning --help` starts in well under a second of CPU (torch and Lightning are not imported).
_MODULE_COMMANDS = {
    "sweep": ("cbal_lightning.tools.sweep", "run experiment configs over seeds, resuming what is done (arguments after -- go to every fit)"),
    "report": ("cbal_lightning.tools.reports", "accuracy curves (mean +- std over seeds), class distributions and CB-gain tables from runs"),
    "tune-lambda": ("cbal_lightning.tools.lambda_sweep", "Sec. 4 / Fig. 4: solve one query for a range of lambda and pick lambda"),
}


def _lightning_cli(argv: Sequence[str] | None) -> None:
    from lightning.pytorch import LightningModule

    from cbal_lightning.data import ActiveDataModule
    from cbal_lightning.tools.lightning_cli import ActiveLearningCLI

    ActiveLearningCLI(
        LightningModule,  # any model: --model mymodule.MyModel, or class_path in the YAML
        ActiveDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=None if argv is None else list(argv),  # None: LightningCLI reads sys.argv itself
        save_config_kwargs={"overwrite": True},
    )


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; only ``command``'s module-defined arguments are loaded (see ``_MODULE_COMMANDS``)."""
    parser = argparse.ArgumentParser(prog="cbal-lightning", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="Random vs Entropy vs Entropy-CB on long-tailed digits (under a minute on CPU)")
    demo.add_argument("--out", default="runs/demo", help="output folder for the table, plots and logs")
    demo.add_argument("--cycles", type=int, default=4)
    demo.add_argument("--epochs", type=int, default=8, help="training epochs per cycle")
    demo.add_argument("--imbalance-factor", type=float, default=0.1)
    demo.add_argument("--lam", type=parse_lam, default="auto",
                      help="lambda of Entropy-CB (Eq. 8): a number, or auto (the paper's rule at every query; default)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--accelerator", default="auto")

    split = sub.add_parser("split", help="print the long-tail split of a dataset as a per-class table")
    split.add_argument("--data", required=True, help="cifar10, cifar100, tiny-imagenet, imagefolder or digits")
    split.add_argument("--root", default=None, help="dataset folder (not needed for digits)")
    split.add_argument("--download", action="store_true", help="fetch CIFAR-10/100 into --root if it is missing")
    split.add_argument("--imbalance-factor", type=float, default=1.0)
    split.add_argument("--imbalance-type", choices=("step", "exp"), default="step")
    split.add_argument("--initial-fraction", type=float, default=0.1)
    split.add_argument("--seed", type=int, default=0)

    for name, (module, help_text) in _MODULE_COMMANDS.items():
        subparser = sub.add_parser(name, help=help_text)
        if name == command:
            importlib.import_module(module).add_arguments(subparser)

    for name in ("fit", "validate", "test"):
        sub.add_parser(name, help=f"LightningCLI {name} (see: cbal-lightning {name} --help)", add_help=False)
    return parser


def _split(args: argparse.Namespace) -> None:
    from cbal_lightning.data.errors import DatasetNotFoundError
    from cbal_lightning.data.summary import build_datamodule, split_table

    kwargs: dict[str, Any] = dict(
        imbalance_factor=args.imbalance_factor, imbalance_type=args.imbalance_type,
        initial_fraction=args.initial_fraction, seed=args.seed,
    )
    if args.root is not None:
        kwargs["root"] = args.root
    if args.download:
        kwargs["download"] = True
    dm = build_datamodule(args.data, **kwargs)
    try:
        dm.setup("fit")
    except DatasetNotFoundError as err:  # the datamodule's hint names its Python argument; say the flag here
        sys.exit(f"cbal-lightning split: {str(err).replace('pass download=True', 'pass --download')}")
    print(split_table(dm))


def main(argv: Sequence[str] | None = None) -> None:
    words = list(sys.argv[1:] if argv is None else argv)
    if words and words[0] in ("fit", "validate", "test"):
        _lightning_cli(argv)
        return
    extra: list[str] = []
    if "--" in words:
        words, extra = words[: words.index("--")], words[words.index("--") + 1 :]
    command = next((w for w in words if not w.startswith("-")), None)
    args = _parser(command).parse_args(words)
    if args.command in _MODULE_COMMANDS:
        module = importlib.import_module(_MODULE_COMMANDS[args.command][0])
        if args.command == "sweep":
            module.run(args, extra)  # arguments after -- go to every fit
        else:
            module.run(args)
    elif args.command == "demo":
        from cbal_lightning.tools.demo import main as demo_main

        demo_main(args)
    elif args.command == "split":
        _split(args)


if __name__ == "__main__":
    main()
