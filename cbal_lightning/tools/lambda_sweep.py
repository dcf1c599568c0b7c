"""Choosing the balance weight lambda (paper Sec. 4 "Regularizer lambda", Fig. 4; Sec. 5.1 "Implementation details").

The paper trains a model on the initial labeled set, minimises Eq. 8 for every lambda in (0, 3), plots the two
parts of the objective -- the entropy part ``z^T (P log P) 1`` and the L1 part ``||Omega - P^T z||_1`` -- against
lambda, and "chooses the smallest lambda after which the L1 loss converges and does not diminish further".

* :func:`sweep_lambda` solves Eq. 8/9 (:func:`~cbal_lightning.selection.balanced_select`) for each lambda and
  records both parts and the L1 score (Eq. 10) of the expected counts ``P^T z``.
* :func:`choose_lambda` makes the paper's rule precise: with ``L(lam)`` the L1 part and ``L0`` its value at the
  smallest lambda of the grid (lambda = 0, the plain method), it returns the smallest grid lambda ``lam_k`` such
  that no larger grid lambda lowers the L1 part by more than ``tol * L0``:
  ``L(lam_k) - min_{j > k} L(lam_j) <= tol * L0``. Past ``lam_k`` the L1 loss has converged up to ``tol`` (1 % of
  the plain method's imbalance by default).
* :func:`plot_lambda_sweep` draws Fig. 4: both parts against lambda, with the plain method (lambda = 0) and the
  pseudo-label quota (supplement H) as horizontal reference lines, and the chosen lambda.
* :func:`widen_until_converged` extends the grid geometrically (x2 per step, up to ``max_lam``) while the L1 part
  still falls between its last two lambdas, and says whether it converged.
* :func:`tune_lambda` does all of it for an experiment config (``cbal-lightning tune-lambda --config FILE``). When
  the config's selector corrects for the pool's class prior (``ClassBalanced(prior="estimate")``, the default),
  the sweep balances the same corrected posteriors as the first query (docs/prior.md).

Why the curves are monotone: for optimal selections ``z1``, ``z2`` at ``lam1 < lam2`` optimality gives
``c1 + lam1 L1 <= c2 + lam1 L2`` and ``c2 + lam2 L2 <= c1 + lam2 L1``; adding them, ``(lam2 - lam1)(L2 - L1) <= 0``,
so the L1 part never grows with lambda and then ``c1 <= c2``: the cost part never falls (the entropy of the
selection never grows). The solver stops within a relative gap of 1e-4, so tiny violations are possible.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cbal_lightning.io import atomic_write_json
from cbal_lightning.tools.plots import new_figure, save_figure
from cbal_lightning.selection import balanced_select, class_targets, l1_score, pseudo_label_quota

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


def _point(selection: Any, lam: float | None, name: str) -> dict[str, Any]:
    counts = np.asarray(selection.expected_counts, dtype=np.float64)
    return {
        "name": name,
        "lam": None if lam is None else float(lam),
        "cost": float(selection.cost_term),  # z^T cost; for entropy scores z^T (P log P) 1 = -(sum of entropies)
        "score": -float(selection.cost_term),  # sum of the selected samples' scores (entropy)
        "l1": float(selection.l1_deviation),  # ||Omega - P^T z||_1, not weighted by lambda
        "l1_score": l1_score(counts) if counts.size else 0.0,  # Eq. 10 on the expected counts
        "objective": float(selection.cost_term + (lam or 0.0) * selection.l1_deviation),
        "lower_bound": float(selection.lower_bound),  # the solver's bound: objective - lower_bound bounds the gap
        "status": selection.status,
        "expected_counts": counts.tolist(),
    }


def sweep_lambda(
    cost: np.ndarray,
    probs: np.ndarray,
    budget: int,
    omega: np.ndarray,
    lams: Sequence[float] = DEFAULT_LAMS,
    **solver_kwargs: Any,
) -> list[dict[str, Any]]:
    """Solve Eq. 8/9 for every lambda in ``lams`` (sorted ascending) and record the parts of the objective.

    Args:
        cost: (N,) per-sample cost, lower = more informative (``-entropy`` for Eq. 8).
        probs: (N, C) softmax probabilities of the pool.
        budget: samples per query ``b``.
        omega: (C,) class targets (Eq. 4).
        lams: non-negative lambdas; duplicates are dropped.
        **solver_kwargs: passed to :func:`~cbal_lightning.selection.balanced_select` (``time_limit``, ``workers``...).

    Returns:
        One dict per lambda: ``lam``, ``cost`` (the entropy part ``sum z_i cost_i``), ``score`` (``-cost``, the
        summed informativeness), ``l1`` (``||Omega - P^T z||_1``), ``l1_score`` (Eq. 10 of ``P^T z``),
        ``objective``, the solver's ``lower_bound`` on it, ``status`` and ``expected_counts``.

        With ``eps_k = objective_k - lower_bound_k`` (how far from optimal the solver may have stopped), the
        monotonicity argument of the module docstring holds up to ``L(lam_j) - L(lam_k) <= (eps_j + eps_k) /
        (lam_j - lam_k)`` for ``lam_k < lam_j``.
    """
    grid = sorted({float(x) for x in lams})
    if not grid or grid[0] < 0 or not np.all(np.isfinite(grid)):
        raise ValueError(f"lams: expected finite non-negative values, got {list(lams)!r}")
    results = []
    for lam in grid:
        selection = balanced_select(cost, probs, budget, omega, lam, **solver_kwargs)
        results.append(_point(selection, lam, f"lambda={lam:g}"))
    return results


def widen_until_converged(
    cost: np.ndarray,
    probs: np.ndarray,
    budget: int,
    omega: np.ndarray,
    results: Sequence[dict[str, Any]],
    tol: float = 0.01,
    max_lam: float = 100.0,
    **solver_kwargs: Any,
) -> tuple[list[dict[str, Any]], bool]:
    """Extend a sweep by doubling its largest lambda while the L1 part has not converged (:func:`lambda_converged`).

    Returns the widened results (sorted by lambda) and whether the L1 part converged by ``max_lam``.

    Example:
        >>> probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.2, 0.8]])
        >>> cost, omega = -np.array([0.8, 0.7, 0.6, 0.2]), np.array([1.0, 1.0])
        >>> grid = sweep_lambda(cost, probs, 2, omega, [0, 0.25, 0.5])  # L1 part 1.6, 1.6, 0.2: still falling
        >>> results, ok = widen_until_converged(cost, probs, 2, omega, grid)
        >>> ok, [r["lam"] for r in results]
        (True, [0.0, 0.25, 0.5, 1.0])
    """
    results = sorted(results, key=lambda r: r["lam"])
    while not lambda_converged(results, tol) and results[-1]["lam"] < max_lam:
        lam = min(max(2.0 * results[-1]["lam"], 0.25), max_lam)
        results.append(sweep_lambda(cost, probs, budget, omega, [lam], **solver_kwargs)[0])
    return results, lambda_converged(results, tol)


def reference_points(cost: np.ndarray, probs: np.ndarray, budget: int, omega: np.ndarray) -> dict[str, dict[str, Any]]:
    """The paper's horizontal lines in Fig. 4: the plain method (top-b cost) and the pseudo-label quota (supp. H)."""
    plain = balanced_select(cost, probs, budget, omega, 0.0)
    quota = pseudo_label_quota(cost, probs, budget, omega)
    return {"plain": _point(plain, None, "plain (lambda=0)"), "pseudo_label": _point(quota, None, "pseudo-label quota")}


def choose_lambda(results: Sequence[dict[str, Any]], tol: float = 0.01) -> float:
    """The smallest lambda after which the L1 part no longer diminishes (see the module docstring).

    Returns the smallest grid ``lam_k`` with ``L(lam_k) - min_{j > k} L(lam_j) <= tol * L0``, where ``L0`` is the
    L1 part at the smallest lambda of the grid. If ``L0 == 0`` (already balanced) that smallest lambda is returned.

    Example:
        >>> pts = [{"lam": l, "l1": v} for l, v in [(0, 10.0), (0.5, 6.0), (1, 3.0), (1.5, 2.95), (2, 2.95)]]
        >>> choose_lambda(pts, tol=0.01)
        1.0
    """
    if not 0 <= tol < 1:
        raise ValueError(f"tol: expected a value in [0, 1), got {tol!r}")
    points = sorted(results, key=lambda r: r["lam"])
    if not points:
        raise ValueError("results: empty sweep")
    l1 = np.array([p["l1"] for p in points], dtype=np.float64)
    threshold = tol * l1[0]
    best_after = np.append(np.minimum.accumulate(l1[::-1])[::-1][1:], np.inf)  # min over j > k
    for k, p in enumerate(points):
        if l1[k] - best_after[k] <= threshold:
            return float(p["lam"])
    return float(points[-1]["lam"])  # unreachable: the last point always qualifies


def lambda_converged(results: Sequence[dict[str, Any]], tol: float = 0.01) -> bool:
    """Whether the L1 part has converged inside the grid: its last step falls by at most ``tol * L0``.

    When it has not, :func:`choose_lambda` returns the largest lambda of the grid, and a wider grid may pick a
    larger one.
    """
    points = sorted(results, key=lambda r: r["lam"])
    if len(points) < 2:
        return False
    return points[-2]["l1"] - points[-1]["l1"] <= tol * points[0]["l1"]


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
              f"lambda={results[0]['lam']:g})")
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
