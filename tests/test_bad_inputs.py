"""Property-based bad-input test: the public constructors and ``balanced_select`` either work or raise a
ValueError/TypeError that names the argument at fault, before any training step (a handful of examples each)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cbal_lightning import ActiveLearningCallback, DigitsDataModule
from cbal_lightning.scoring import Entropy
from cbal_lightning.selection import ClassBalanced, TopK
from cbal_lightning.selection.engine import balanced_select

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

# anything a config file, a notebook or a typo can hand over
ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 2000), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4), st.sampled_from([np.int64(3), np.int32(0), np.float32(0.5), np.float64(-1.0), np.bool_(True)]),
    st.lists(st.integers(-1, 12), max_size=3), st.just(Entropy()), st.just(TopK()),
)

CALLBACK_ARGS = ["budget", "cycles", "scorer", "selector", "epochs_per_cycle", "reset", "eval_batch_size", "seed",
                 "output_dir", "progress", "calibration_fraction", "pilot_fraction"]
DIGITS_ARGS = ["initial_fraction", "imbalance_factor", "imbalance_type", "tail_classes", "seed", "batch_size",
               "eval_batch_size", "num_workers", "test_fraction", "verify_images"]


def _works_or_names(call, name: str) -> bool:
    """Call; a refusal must be a ValueError/TypeError naming ``name``. Returns whether the call worked."""
    try:
        call()
    except (ValueError, TypeError) as err:
        assert name in str(err), f"{type(err).__name__} does not name {name!r}: {err}"
        return False
    return True


@SETTINGS
@given(name=st.sampled_from(CALLBACK_ARGS), value=ANYTHING)
def test_active_learning_callback(name: str, value) -> None:
    kwargs = {"budget": 40, "cycles": 2} | {name: value}
    if _works_or_names(lambda: ActiveLearningCallback(**kwargs), name):
        al = ActiveLearningCallback(**kwargs)
        assert isinstance(al.budget_arg, int) and al.budget_arg > 0 or 0 < al.budget_arg < 1
        assert isinstance(al.cycles, int) and al.cycles >= 1


@SETTINGS
@given(name=st.sampled_from(["lam", "time_limit", "workers", "prior"]), value=ANYTHING)
def test_class_balanced(name: str, value) -> None:
    if _works_or_names(lambda: ClassBalanced(**{name: value}), name):
        selector = ClassBalanced(**{name: value})
        assert (selector.lam == "auto" or selector.lam >= 0) and selector.time_limit > 0 and selector.workers >= 1


@SETTINGS
@given(name=st.sampled_from(DIGITS_ARGS), value=ANYTHING)
def test_digits_datamodule(name: str, value) -> None:
    _works_or_names(lambda: DigitsDataModule(**{name: value}), name)


@st.composite
def selection_problems(draw):
    """Mostly well-formed problems (N <= 8, C <= 3) with one argument possibly broken."""
    n, c = draw(st.integers(1, 8)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    probs = rng.dirichlet(np.ones(c), size=n)
    args = {"cost": -rng.random(n), "probs": probs, "budget": draw(st.integers(1, n)),
            "omega": np.full(c, 1.0), "lam": draw(st.floats(0, 3))}
    broken = draw(st.sampled_from([None, *args]))
    if broken is not None:
        args[broken] = draw(st.one_of(
            ANYTHING,
            st.just(np.full(n, np.nan)), st.just(-probs), st.just(np.zeros((n + 1, c))), st.just(np.ones(c + 1)),
            st.just(np.ones(n + 1)), st.just(np.int64(n + 1)), st.just(probs[:, :1] * 2),
        ))
    return args, broken


@SETTINGS
@given(problem=selection_problems())
def test_balanced_select(problem) -> None:
    args, broken = problem
    try:
        selection = balanced_select(args["cost"], args["probs"], args["budget"], args["omega"], args["lam"], time_limit=5)
    except (ValueError, TypeError) as err:
        assert broken is not None, f"a well-formed problem was refused: {err}"
        assert any(name in str(err) for name in ("cost", "probs", "budget", "omega", "lam")), str(err)
        return
    assert len(selection.indices) == len(set(selection.indices.tolist())) == int(args["budget"])


def test_the_property_tests_do_refuse_things() -> None:
    # guards the tests above against passing vacuously
    with pytest.raises(ValueError, match="budget"):
        ActiveLearningCallback(budget="40", cycles=2)
    with pytest.raises(ValueError, match="omega"):
        balanced_select(np.zeros(3), np.full((3, 2), 0.5), 1, np.ones(3), 1.0)
