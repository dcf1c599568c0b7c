"""The ``tune-lambda`` command: the paper's lambda sweep on a trained model (Sec. 4 "Regularizer lambda", Fig. 4).

The rule itself -- sweep lambda, choose the smallest after which the L1 part ``||Omega - P^T z||_1`` no longer
falls, widen the grid while it still falls -- is core: :mod:`cbal_lightning.selection.lambda_rule` (where
``ClassBalanced(lam="auto")``, the default, applies it at every query). This module runs it once for an
experiment config, as the paper did on the initial model, and draws Fig. 4:

* :func:`plot_lambda_sweep` draws both parts against lambda, with the plain method (lambda = 0) and the
  pseudo-label quota (supplement H) as horizontal reference lines, and the chosen lambda.
* :func:`tune_lambda` trains the config's model on the initial set, scores the pool and sweeps
  (``cbal-lightning tune-lambda --config FILE``). When the config's selector corrects for the pool's class prior
  (``ClassBalanced(prior="estimate")``, the default), the sweep balances the same corrected posteriors as the
  first query (docs/prior.md).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cbal_lightning.io import atomic_write_json
from cbal_lightning.tools.plots import new_figure, save_figure
from cbal_lightning.selection import balanced_select, class_targets, pseudo_label_quota
from cbal_lightning.selection.lambda_rule import (
    ATOL,
    choose_lambda,
    lambda_converged,
    sweep_lambda,
    sweep_point,
    widen_until_converged,
)

__all__ = [
    "DEFAULT_LAMS",
    "sweep_lambda",
    "widen_until_converged",
    "choose_lambda",
    "lambda_converged",
    "reference_points",
    "plot_lambda_sweep",
    "sweep_table",
    "tune_lambda",
    "add_arguments",
    "run",
]

DEFAULT_LAMS = tuple(float(x) for x in np.linspace(0.0, 3.0, 13))  # the paper's range (0, 3), step 0.25


def reference_points(cost: np.ndarray, probs: np.ndarray, budget: int, omega: np.ndarray) -> dict[str, dict[str, Any]]:
    """The paper's horizontal lines in Fig. 4: the plain method (top-b cost) and the pseudo-label quota (supp. H)."""
    plain = balanced_select(cost, probs, budget, omega, 0.0)
    quota = pseudo_label_quota(cost, probs, budget, omega)
    return {"plain": sweep_point(plain, None, "plain (lambda=0)"), "pseudo_label": sweep_point(quota, None, "pseudo-label quota")}


def plot_lambda_sweep(
    results: Sequence[dict[str, Any]],
    path: str | Path,
    references: dict[str, dict[str, Any]] | None = None,
    chosen: float | None = None,
    title: str | None = None,
) -> Path:
    """Fig. 4: the entropy part and the L1 part of Eq. 8 against lambda (plus the L1 score), PNG written atomically."""
    points = sorted(results, key=lambda r: r["lam"])
    lams = [p["lam"] for p in points]
    fig, axes = new_figure(1, 3, figsize=(13, 3.8))
    panels = (("cost", "cost part  $\\sum_i z_i$ cost$_i$ (entropy: z$^T$(P log P)1)"), ("l1", r"L1 part  $\|\Omega - P^T z\|_1$"),
              ("l1_score", "L1 score (Eq. 10) of $P^T z$"))
    for ax, (key, label) in zip(axes, panels):
        ax.plot(lams, [p[key] for p in points], marker="o", ms=4, color="C0", label="Eq. 8 optimum")
        for i, (name, ref) in enumerate((references or {}).items()):
            ax.axhline(ref[key], color=f"C{i + 1}", ls="--", lw=1, label=ref.get("name", name))
        if chosen is not None:
            ax.axvline(chosen, color="k", ls=":", lw=1, label=f"chosen lambda = {chosen:g}")
        ax.set(xlabel="lambda", title=label)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def sweep_table(results: Sequence[dict[str, Any]], chosen: float | None = None) -> str:
    """A plain-text table of the sweep (one row per lambda)."""
    lines = [f"{'lambda':>7} {'cost part':>13} {'L1 part':>9} {'L1 score':>9}  status"]
    for p in sorted(results, key=lambda r: r["lam"]):
        mark = "  <- chosen" if chosen is not None and p["lam"] == chosen else ""
        lines.append(f"{p['lam']:7.3g} {p['cost']:13.4f} {p['l1']:9.3f} {p['l1_score']:9.4f}  {p['status']}{mark}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- end to end


def _instantiate(config: str | Path, epochs: int | None, seed: int) -> tuple[Any, Any, Any, int]:
    """Model, datamodule and ActiveLearningCallback of a LightningCLI config, and the epochs to train.

    The config is parsed and instantiated by the same :class:`~cbal_lightning.tools.lightning_cli.ActiveLearningCLI` as
    ``cbal-lightning fit`` (so ``num_classes``/``in_channels`` follow the datamodule), but no Trainer is built from
    it: its strategy, devices, loggers and checkpoint callbacks are meant for the full run, not for this one.
    """
    from cbal_lightning.callback import ActiveLearningCallback
    from cbal_lightning.tools.lightning_cli import ActiveLearningCLI
    from lightning.pytorch import LightningModule

    from cbal_lightning.data import ActiveDataModule

    class _NoTrainerCLI(ActiveLearningCLI):
        def instantiate_trainer(self, **kwargs: Any) -> Any:
            self.trainer_config = self._get(self.config_init, "trainer", default={})
            return None

    args = ["--config", str(config), "--seed_everything", str(seed), "--trainer.logger", "false"]
    with warnings.catch_warnings():  # LightningCLI warns when sys.argv (ours) is non-empty besides args
        warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
        cli = _NoTrainerCLI(LightningModule, ActiveDataModule, subclass_mode_model=True, subclass_mode_data=True,
                            run=False, args=args, save_config_callback=None)
    trainer_config = dict(cli.trainer_config or {})
    callbacks = [cb for cb in trainer_config.get("callbacks") or [] if isinstance(cb, ActiveLearningCallback)]
    al = callbacks[0] if callbacks else None
    max_epochs = epochs
    if max_epochs is None:
        max_epochs = (al.epochs_per_cycle_arg if al is not None else None) or trainer_config.get("max_epochs") or 100
    return cli.model, cli.datamodule, al, int(max_epochs)


def tune_lambda(
    config: str | Path,
    lams: Sequence[float] = DEFAULT_LAMS,
    out: str | Path | None = None,
    epochs: int | None = None,
    budget: int | float | None = None,
    tol: float = 0.01,
    seed: int = 0,
    accelerator: str = "auto",
    time_limit: float | None = None,
    verbose: bool = True,
    max_lam: float = 100.0,
) -> dict[str, Any]:
    """Train the config's model on the initial labeled set, score the pool and sweep lambda (Fig. 4).

    The pool is scored with the config's scorer (entropy, BALD, margin, ...; entropy when the config has none or
    its scorer trains a model of its own, as VAAL does) and the sweep solves Eq. 8/9 with that score: it tunes
    ``ClassBalanced(lam)``. KCenterGreedy-CB and BADGE-CB use lambda in a greedy rule of their own (Algorithm 2)
    and are not covered.

    Args:
        config: a LightningCLI YAML (``model``, ``data``; the ``ActiveLearningCallback`` in ``trainer.callbacks``
            provides the budget and the epochs per cycle unless given here).
        lams: the lambda grid (default 0, 0.25, ..., 3).
        out: folder for ``lambda_sweep.json`` and ``lambda_sweep.png`` (default ``runs/tune_lambda``).
        epochs: training epochs on the initial set (default: the callback's ``epochs_per_cycle`` or the trainer's
            ``max_epochs``).
        budget: samples per query (int) or fraction of the train set (float < 1); default: the callback's.
        tol: see :func:`choose_lambda`.
        seed, accelerator: for training (one device).
        time_limit: solver seconds per lambda (default: the config's ``ClassBalanced(time_limit=...)``, else 30).
        max_lam: the grid is widened (x2 per step) until the L1 part converges or lambda reaches this.

    Returns:
        ``{"config", "budget", "epochs", "lams", "results", "references", "chosen_lambda", "converged", "prior",
        "tol", "files"}``, also written as ``out/lambda_sweep.json``.
    """
    from lightning.pytorch import Trainer, seed_everything

    from cbal_lightning.inference import predict_pool
    from cbal_lightning.scoring import Entropy, Scorer
    from cbal_lightning.query import estimate_shift, hold_out_for_calibration
    from cbal_lightning.selection.prior import PriorTracker

    out = Path(out or "runs/tune_lambda")
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(seed, workers=True, verbose=False)
    model, dm, al, max_epochs = _instantiate(config, epochs, seed)
    dm.setup("fit")
    budget_arg = budget if budget is not None else (al.budget_arg if al is not None else None)
    if budget_arg is None:
        raise ValueError("budget: the config has no ActiveLearningCallback; pass budget=")
    b = int(round(budget_arg * len(dm.pools))) if isinstance(budget_arg, float) and budget_arg < 1 else int(budget_arg)
    selector = getattr(al, "selector", None)
    if getattr(selector, "prior", None) is not None:  # hold out calibration labels as the callback's cycle 0 does
        hold_out_for_calibration(dm, al.calibration_fraction, al.seed)
    trainer = Trainer(
        max_epochs=max_epochs, accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
        limit_val_batches=0, enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(out),
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    pool = dm.pools.unlabeled_indices()
    loader = dm.eval_dataloader(pool, batch_size=dm.eval_batch_size)
    scorer = getattr(al, "scorer", None)
    if scorer is None or type(scorer).prepare is not Scorer.prepare:  # VAAL trains its own model in prepare()
        scorer = Entropy()
    preds = predict_pool(model, loader, scorer, cycle=1, device=model.device)
    omega = class_targets(dm.pools.labeled_counts(), b, 1, dm.pools.initial_size)  # Eq. 4 for the first query
    cost = -preds.scores.astype(np.float64)  # Eq. 8 (entropy): z^T (P log P) 1; Eq. 9 for other scores
    probs, prior = preds.probs, {"method": "none", "reason": "the selector balances the uncorrected P"}
    if selector is not None and getattr(selector, "prior", None) is not None:
        held = dm.pools.held_out_indices()
        held_preds = predict_pool(model, dm.eval_dataloader(held), Entropy(), cycle=1, device=model.device) if len(held) else None
        shift = estimate_shift(PriorTracker(), dm, preds, held_preds)
        probs = selector.balance_probs(probs, shift)  # the posteriors the first query balances
        prior = {"method": shift.method, "reason": shift.reason,
                 "estimated": None if shift.pool_prior is None else np.asarray(shift.pool_prior).tolist()}
        dm.pools.release_held_out()
    if time_limit is None:
        time_limit = float(getattr(selector, "time_limit", 30.0))
    results = sweep_lambda(cost, probs, b, omega, lams, time_limit=time_limit, seed=seed)
    results, converged = widen_until_converged(cost, probs, b, omega, results, tol, max_lam, time_limit=time_limit, seed=seed)
    references = reference_points(cost, probs, b, omega)
    chosen = choose_lambda(results, tol)
    png = plot_lambda_sweep(results, out / "lambda_sweep.png", references, chosen,
                            title=f"{Path(config).name}: b={b}, pool={len(pool)}, {max_epochs} epochs on the initial set")
    report = {
        "config": str(config), "scorer": repr(scorer), "budget": b, "epochs": max_epochs, "pool_size": int(len(pool)),
        "omega": omega.tolist(), "lams": [r["lam"] for r in results], "results": results,
        "references": references, "chosen_lambda": chosen, "converged": converged, "prior": prior, "tol": tol,
        "files": [str(png), str(out / "lambda_sweep.json")],
    }
    atomic_write_json(out / "lambda_sweep.json", report, indent=1)
    if verbose:
        print(sweep_table(results, chosen))
        for ref in references.values():
            print(f"{ref['name']:>22}: cost part {ref['cost']:.4f}, L1 part {ref['l1']:.3f}, L1 score {ref['l1_score']:.4f}")
        print(f"chosen lambda: {chosen:g} (smallest lambda after which the L1 part falls by <= {tol:g} x its value at "
              f"lambda={results[0]['lam']:g}, or by <= {ATOL:g} expected samples)")
        if results[-1]["lam"] > max(lams):
            print(f"the L1 part had not converged by lambda={max(lams):g}: the grid was widened to {results[-1]['lam']:g}")
        if not converged:
            print(f"warning: the L1 part still falls by more than {tol:g} x its lambda={results[0]['lam']:g} value "
                  f"between the last two lambdas, even at lambda={results[-1]['lam']:g} (--max-lam): not converged")
        print(f"pool prior: {prior['method']}" + (f" ({prior['reason']})" if prior.get("reason") else ""))
        print("Files: " + ", ".join(report["files"]))
    return report


# ---------------------------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``tune-lambda --config FILE.yaml [--lams 0 0.5 1 ...] [--out DIR] [--epochs N] [--budget B] [--tol T]``."""
    parser.add_argument("--config", required=True, help="experiment YAML (LightningCLI format, e.g. experiments/digits/entropy_cb.yaml)")
    parser.add_argument("--lams", type=float, nargs="+", default=list(DEFAULT_LAMS), help="lambda grid (default 0..3 step 0.25)")
    parser.add_argument("--out", default="runs/tune_lambda", help="folder for lambda_sweep.png / .json")
    parser.add_argument("--epochs", type=int, default=None, help="epochs on the initial set (default: the config's per-cycle epochs)")
    parser.add_argument("--budget", type=float, default=None, help="samples per query, or a fraction < 1 (default: the config's)")
    parser.add_argument("--tol", type=float, default=0.01, help="convergence tolerance of the L1 part, relative to lambda=0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--time-limit", type=float, default=None, help="solver seconds per lambda (default: the config's)")
    parser.add_argument("--max-lam", type=float, default=100.0, help="widen the grid (x2 per step) up to this lambda "
                        "until the L1 part converges")


def run(args: argparse.Namespace) -> None:
    budget = args.budget
    if budget is not None and budget >= 1:
        budget = int(budget)
    tune_lambda(args.config, args.lams, args.out, args.epochs, budget, args.tol, args.seed, args.accelerator,
                args.time_limit, max_lam=args.max_lam)
