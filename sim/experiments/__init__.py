"""The simulator's experiments, one module each; importing this package registers them all.

Each module holds its frozen config, its function, its drawer and, at the bottom, one
``register(Experiment(...))`` call (:mod:`sim.registry`). The import order below is the registry's order (and
``sharpen sim --list``'s): the theorems, which must hold, then the explorations, which report.

Theorems: :mod:`~sim.experiments.theorem1`, :mod:`~sim.experiments.stability`,
:mod:`~sim.experiments.destination`. Explorations: :mod:`~sim.experiments.failure_modes` (token-level toy),
:mod:`~sim.experiments.rise_then_fall`, :mod:`~sim.experiments.dataset_size`,
:mod:`~sim.experiments.mcs_gt_gain` (shared task), :mod:`~sim.experiments.single_question`,
:mod:`~sim.experiments.self_verification` (shared task) and :mod:`~sim.experiments.grid`.

To add an experiment: write ``sim/experiments/<name>.py`` ending in its ``register`` call, add one import line
here, and a test.
"""

# The order is the registry's, not alphabetical:
# ruff: noqa: I001
from sim.experiments import (  # noqa: F401  (imported to register)
    theorem1,
    stability,
    destination,
    failure_modes,
    rise_then_fall,
    dataset_size,
    mcs_gt_gain,
    single_question,
    self_verification,
    grid,
)
