"""Scorers: what is informative. Uncertainty scores and BALD (:mod:`.scorers`) and VAAL (:mod:`.vaal`).

Any scorer combines with any selector (:mod:`cbal_lightning.selection`): Eq. 9 replaces the entropy term of
Eq. 8 by the scorer's ``-score``.
"""

from cbal_lightning.scoring.scorers import (
    BALD,
    Entropy,
    LeastConfidence,
    Margin,
    Random,
    Scorer,
    class_probabilities,
    hashed_uniform,
)
from cbal_lightning.scoring.vaal import VAAL

__all__ = ["class_probabilities", "Scorer", "Random", "Entropy", "Margin", "LeastConfidence", "BALD", "VAAL", "hashed_uniform"]
