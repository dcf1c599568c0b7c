"""Class-balanced batch selection: targets (Eq. 4), the Eq. 8/9 optimiser, baselines and selectors."""

from cbal_lightning.selection.badge import Badge, badge_select
from cbal_lightning.selection.balance import expected_counts, l1_score
from cbal_lightning.selection.baselines import pseudo_label_quota, top_b
from cbal_lightning.selection.engine import balanced_select, objective_tolerance
from cbal_lightning.selection.kcenter import KCenterGreedy, kcenter_greedy
from cbal_lightning.selection.result import Selection
from cbal_lightning.selection.selectors import ClassBalanced, PseudoLabelQuota, Selector, TopK
from cbal_lightning.selection.targets import class_targets

__all__ = [
    "class_targets",
    "l1_score",
    "expected_counts",
    "Selection",
    "balanced_select",
    "objective_tolerance",
    "top_b",
    "pseudo_label_quota",
    "Selector",
    "TopK",
    "ClassBalanced",
    "PseudoLabelQuota",
    "kcenter_greedy",
    "KCenterGreedy",
    "badge_select",
    "Badge",
]
