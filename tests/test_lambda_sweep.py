"""Lambda sweep (paper Sec. 4, Fig. 4): monotone parts of the objective, the choice rule, ``lam="auto"`` at every
query, the end-to-end command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from cbal_lightning.tools.cli import main
from cbal_lightning.selection import ClassBalanced, class_targets
from cbal_lightning.selection.lambda_rule import (
    AUTO_LAMS,
    AUTO_REL_GAP,
    ATOL,
    auto_lambda_select,
    choose_lambda,
    lambda_converged,
    sweep_lambda,
    widen_until_converged,
)
from cbal_lightning.tools.lambda_sweep import plot_lambda_sweep, reference_points, sweep_table

REPO = Path(__file__).resolve().parents[1]

DIGITS_CONFIG = {  # the shape of experiments/digits/if0.1/entropy_cb.yaml, used when that file is absent
    "seed_everything": 0,
    "trainer": {
        "max_epochs": 15,
        "callbacks": [{
            "class_path": "cbal_lightning.ActiveLearningCallback",
            "init_args": {"budget": 0.05, "cycles": 4, "selector": {
                "class_path": "cbal_lightning.selection.ClassBalanced", "init_args": {"lam": 1.0}}},
        }],
    },
    "model": {"class_path": "cbal_lightning.ImageClassifier",
              "init_args": {"backbone": "small_cnn", "lr": 0.05, "milestones": [9, 12]}},
    "data": {"class_path": "cbal_lightning.data.DigitsDataModule",
             "init_args": {"imbalance_factor": 0.1, "batch_size": 32}},
}


def _long_tailed_problem(n: int = 400, classes: int = 6, budget: int = 30, seed: int = 0):
    """Softmax outputs of a model biased towards the head classes, entropy costs, Eq. 4 targets."""
    rng = np.random.default_rng(seed)
    true = rng.choice(classes, size=n, p=np.linspace(2.0, 0.2, classes) / np.linspace(2.0, 0.2, classes).sum())
    logits = rng.normal(size=(n, classes)) + 2.5 * np.eye(classes)[true] + np.linspace(1.0, -1.0, classes)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    cost = (probs * np.log(probs)).sum(1)  # Eq. 8's cost: -entropy
    omega = class_targets(np.full(classes, 10), budget, 1, 10 * classes)
    return cost, probs, budget, omega


def test_parts_of_the_objective_are_monotone_in_lambda() -> None:
    cost, probs, budget, omega = _long_tailed_problem(n=300, budget=30, seed=1)
    lams = np.linspace(0, 1, 5)
    results = sweep_lambda(cost, probs, budget, omega, lams, time_limit=3.0)
    assert [r["lam"] for r in results] == pytest.approx(lams)
    l1 = np.array([r["l1"] for r in results])
    part = np.array([r["cost"] for r in results])
    # Exact optima give (lam2 - lam1)(L2 - L1) <= 0; a solver stopping eps = objective - bound from the optimum
    # weakens that to (lam2 - lam1)(L2 - L1) <= eps1 + eps2.
    eps = np.array([r["objective"] - r["lower_bound"] for r in results]) + 1e-9
    for k in range(len(results) - 1):
        slack = (eps[k] + eps[k + 1]) / (lams[k + 1] - lams[k])
        assert l1[k + 1] <= l1[k] + slack, (k, l1)  # more weight on balance: the L1 part never grows
        assert part[k + 1] >= part[k] - lams[k] * slack - eps[k], (k, part)  # nor does the informativeness
    assert np.all(np.diff(l1) <= 1e-3 * l1[0]), l1  # and in practice within 0.1 % of the plain method's L1
    assert l1[-1] < 0.5 * l1[0]  # balancing does something on this long-tailed problem
    assert results[0]["status"] == "TOP_B"
    assert all(0 <= r["l1_score"] <= 1 for r in results)
    assert results[-1]["l1_score"] < results[0]["l1_score"]
    chosen = choose_lambda(results)
    assert lams[0] <= chosen <= lams[-1] and chosen in [r["lam"] for r in results]
    refs = reference_points(cost, probs, budget, omega)
    assert refs["plain"]["l1"] == pytest.approx(l1[0]) and refs["plain"]["cost"] == pytest.approx(part[0])
    assert refs["pseudo_label"]["l1"] >= l1[-1] - 1e-9  # Eq. 8 at lambda=3 balances at least as well (Fig. 4)
    assert "<- chosen" in sweep_table(results, chosen)


def test_choose_lambda_rule() -> None:
    def pts(values):
        return [{"lam": 0.5 * k, "l1": v} for k, v in enumerate(values)]

    assert choose_lambda(pts([10, 6, 3, 2.95, 2.95, 2.92])) == 1.0  # 3 - 2.92 = 0.08 <= 0.01 * 10
    assert choose_lambda(pts([10, 6, 3, 2.95, 2.95, 2.92]), tol=0.001, atol=0) == 2.5  # 0.03 > 0.01: keeps going
    assert choose_lambda(pts([10, 6, 3, 2.95, 2.95, 2.92]), tol=0.001) == 1.0  # but 0.08 < half a sample (ATOL)
    assert choose_lambda(pts([2, 0.4, 0.1, 0.0])) == 0.5 and lambda_converged(pts([2, 0.6, 0.4]))  # within ATOL of 0
    assert choose_lambda(pts([10, 6, 3, 3, 3, 1])) == 2.5  # a late drop counts: "no longer diminishes"
    assert choose_lambda(pts([0, 0, 0])) == 0.0  # already balanced
    assert choose_lambda(list(reversed(pts([5, 1, 1])))) == 0.5  # order of the results does not matter
    assert lambda_converged(pts([10, 6, 3, 2.95])) and not lambda_converged(pts([10, 6, 3, 2]))
    with pytest.raises(ValueError, match="tol"):
        choose_lambda(pts([1, 0]), tol=1.5)
    with pytest.raises(ValueError, match="empty"):
        choose_lambda([])
    with pytest.raises(ValueError, match="non-negative"):
        sweep_lambda(np.zeros(3), np.full((3, 2), 0.5), 1, np.ones(2), [-1.0])


def test_plot_is_written(tmp_path: Path) -> None:
    cost, probs, budget, omega = _long_tailed_problem(n=300, budget=30, seed=1)
    results = sweep_lambda(cost, probs, budget, omega, [0, 0.5, 1], time_limit=2.0)
    path = plot_lambda_sweep(results, tmp_path / "sweep.png", reference_points(cost, probs, budget, omega), 1.0)
    assert path.read_bytes().startswith(b"\x89PNG") and path.stat().st_size > 5_000


def test_tune_lambda_on_the_digits_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo_config = REPO / "experiments" / "digits" / "if0.1" / "entropy_cb.yaml"
    config = yaml.safe_load(repo_config.read_text()) if repo_config.is_file() else DIGITS_CONFIG
    config["trainer"]["enable_progress_bar"] = False
    for callback in config["trainer"]["callbacks"]:  # the library's default selector, not the paper grid's prior: null
        callback.get("init_args", {}).get("selector", {}).get("init_args", {}).pop("prior", None)
    path = tmp_path / "digits.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "sweep"
    main(["tune-lambda", "--config", str(path), "--epochs", "3", "--lams", "0", "1", "2", "--out", str(out),
          "--time-limit", "2", "--accelerator", "cpu", "--max-lam", "8"])
    printed = capsys.readouterr().out
    assert "chosen lambda" in printed
    report = json.loads((out / "lambda_sweep.json").read_text())
    assert report["budget"] == round(0.05 * 1347) and report["epochs"] == 3  # budget 0.05 of the 1,347 train images
    assert report["lams"][:3] == [0.0, 1.0, 2.0] and report["lams"][3:] in ([], [4.0], [4.0, 8.0])  # widened x2
    assert report["converged"] or report["lams"][-1] == 8.0
    assert 0.0 <= report["chosen_lambda"] <= report["lams"][-1]
    # nothing held out by default (calibration_fraction=0): the first query's sweep balances the uncorrected P
    assert report["prior"]["method"] == "none" and "no held-out" in report["prior"]["reason"]
    l1 = [r["l1"] for r in report["results"]]
    assert all(b <= a + 1e-3 * max(a, 1.0) for a, b in zip(l1, l1[1:])), l1
    assert sum(report["omega"]) == pytest.approx(report["budget"])  # a uniform initial set: Omega(1) = b / C each
    assert (out / "lambda_sweep.png").read_bytes().startswith(b"\x89PNG")


def test_widening_stops_where_the_l1_part_converges_or_at_max_lam() -> None:
    probs = np.array([[0.9, 0.1]] * 6 + [[0.45, 0.55]] * 2)
    cost = -np.array([0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.1, 0.05])
    omega = np.array([2.0, 2.0])
    grid = sweep_lambda(cost, probs, 4, omega, [0.0, 0.5, 1.0])  # L1 part 3.2, 3.2, 1.4: still falling
    assert not lambda_converged(grid)
    results, converged = widen_until_converged(cost, probs, 4, omega, grid, max_lam=1.0)
    assert not converged and [r["lam"] for r in results] == [0.0, 0.5, 1.0]  # capped: reported as not converged
    results, converged = widen_until_converged(cost, probs, 4, omega, grid, max_lam=100.0)
    assert converged and [r["lam"] for r in results] == [0.0, 0.5, 1.0, 2.0]
    assert results[-1]["l1"] == pytest.approx(results[-2]["l1"])


def test_auto_lambda_is_the_rule_over_the_grid() -> None:
    cost, probs, budget, omega = _long_tailed_problem(n=200, budget=60, seed=1)  # rare classes cannot fill Omega
    full, converged = widen_until_converged(
        cost, probs, budget, omega, sweep_lambda(cost, probs, budget, omega, AUTO_LAMS, rel_gap=AUTO_REL_GAP),
        max_lam=1024.0, rel_gap=AUTO_REL_GAP)
    chosen = choose_lambda(full)
    assert converged and 0 < chosen < max(r["lam"] for r in full)  # the rule chose inside the grid
    sel = ClassBalanced().select(-cost, probs, budget, omega)  # lam="auto" is the default
    assert sel.lam == chosen
    at_chosen = next(r for r in full if r["lam"] == chosen)
    assert sel.l1_deviation == pytest.approx(at_chosen["l1"], abs=1e-6)
    assert sel.objective == pytest.approx(sel.cost_term + chosen * sel.l1_deviation)
    assert sel.l1_deviation < 0.7 * full[0]["l1"]  # and the chosen selection balances (as far as the pool allows)
    assert sel.timings["total"] >= sel.timings["lp"]  # the whole sweep's time


def test_auto_lambda_stops_once_balanced_within_half_a_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    import cbal_lightning.selection.lambda_rule as rule

    solved = []
    solve = rule.balanced_select
    monkeypatch.setattr(rule, "balanced_select", lambda *a, **k: solved.append(a[4]) or solve(*a, **k))
    cost, probs, budget, omega = _long_tailed_problem(n=200, budget=20, seed=1)  # Omega reachable
    sel = auto_lambda_select(cost, probs, budget, omega)
    assert sel.l1_deviation <= ATOL and sel.lam == 1.0  # lambda 0.5 leaves 1.02, lambda 1 0.32
    assert solved == [0.0, 0.25, 0.5, 1.0]  # no larger lambda can lower it by more than ATOL: not solved


def test_auto_lambda_widens_a_grid_that_has_not_converged() -> None:
    probs = np.array([[0.9, 0.1]] * 6 + [[0.45, 0.55]] * 2 + [[0.1, 0.9]] * 2)
    cost = -np.array([0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.1, 0.05, 0.0, 0.0])  # the rare class costs much score
    sel = auto_lambda_select(cost, probs, 4, np.array([2.0, 2.0]), lams=[0.0, 0.5])  # L1 part 3.2, 1.6: falling
    assert sel.lam == 1.0 and sel.indices.tolist() == [0, 1, 8, 9]  # doubled to 1 (L1 0) and 2 (0): 1 chosen


def test_auto_lambda_keeps_to_its_time_limit() -> None:
    cost, probs, budget, omega = _long_tailed_problem(n=20_000, budget=2_000, seed=3, classes=20)
    with pytest.warns(RuntimeWarning, match="cut the lambda sweep"):
        sel = auto_lambda_select(cost, probs, budget, omega, time_limit=0.05)
    assert sel.fallback == "time_limit" and sel.timings["total"] < 0.05 + 1.5  # contract +0.5 s; margin for load
    assert len(sel.indices) == budget and sel.lam in AUTO_LAMS


def test_class_balanced_lam_argument() -> None:
    assert ClassBalanced().lam == "auto" and ClassBalanced(lam=2).lam == 2.0
    assert ClassBalanced().balances and ClassBalanced(lam=0.5).balances and not ClassBalanced(lam=0).balances
    with pytest.raises(ValueError, match="lam.*'auto'"):
        ClassBalanced(lam="automatic")
