"""The tools that drive runs, kept apart from the library core: the ``cbal-lightning`` command (:mod:`.cli`,
:mod:`.lightning_cli`), the demo, grids over seeds (:mod:`.sweep`), lambda tuning (:mod:`.lambda_sweep`),
reports and plots, and the Python-driven labeling helpers (:mod:`.labeling`).

The core (data, pools, splits, scoring, selection, inference, query, oracles, callback, models) never imports
from here.
"""
