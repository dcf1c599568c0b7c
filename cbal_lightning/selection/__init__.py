"""Class-balanced batch selection: targets (Eq. 4), the Eq. 8/9 optimiser, baselines and selectors.

Names are imported on first access (PEP 562): the optimiser needs only NumPy, SciPy and OR-Tools, while the
KCenterGreedy and BADGE selectors load torch, so ``import cbal_lightning.selection`` stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_WHERE = {  # public name: submodule that defines it
    "class_targets": "targets",
    "l1_score": "balance",
    "expected_counts": "balance",
    "Selection": "result",
    "balanced_select": "engine",
    "objective_tolerance": "engine",
    "auto_lambda_select": "lambda_rule",
    "choose_lambda": "lambda_rule",
    "parse_lam": "_checks",
    "top_b": "baselines",
    "pseudo_label_quota": "baselines",
    "Selector": "selectors",
    "TopK": "selectors",
    "ClassBalanced": "selectors",
    "PseudoLabelQuota": "selectors",
    "kcenter_greedy": "kcenter",
    "KCenterGreedy": "kcenter",
    "badge_select": "badge",
    "Badge": "badge",
}

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    """Import the submodule holding ``name`` on first access and cache the attribute (PEP 562)."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
