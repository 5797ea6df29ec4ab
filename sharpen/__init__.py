"""sharpen: unsupervised RL with verifiable rewards (URLVR) on language models.

Public modules (imported on first use, so ``import sharpen`` stays light):

- :mod:`sharpen.rewards` -- the unified cross-entropy reward as data, its five presets, the reward registry
- :mod:`sharpen.answers` -- answer extraction, canonicalisation, equivalence, the majority vote
- :mod:`sharpen.theory` -- Theorem 1 (geometric sharpening), finite-N majority stability, iterated tilts, fitting
- :mod:`sharpen.metrics` -- TTRL-named metrics, Model Collapse Step, GT gain
- :mod:`sharpen.grpo` -- group-normalised advantages, clipped surrogate, k3 KL
- :mod:`sharpen.records` -- the run-folder format written by runs and read by analyses: the typed ``RunHeader``,
  the metric names, the one probe-record builder, append-only JSONL
- :mod:`sharpen.fitting` -- Theorem 1 fitted to a run's probe questions: trajectories, classes, pooled beta
- :mod:`sharpen.collapse` -- the Model Collapse Step of a run, and its early prediction by Theorem 1
- :mod:`sharpen.run_analysis` -- both on one run folder (``analyze_run``); the ``sharpen fit`` report is
  :mod:`paper_figures.fit_report`
- :mod:`sharpen.integrations` -- TRL and veRL adapters (optional extras)
- :mod:`sharpen.testing` -- hypothesis strategies and ``check_reward`` for property-testing your own rewards
- :mod:`sharpen.reference` -- slow reference implementations of each reward's original formula
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_MODULES = (
    "answers",
    "collapse",
    "fitting",
    "grpo",
    "integrations",
    "metrics",
    "records",
    "reference",
    "rewards",
    "run_analysis",
    "testing",
    "theory",
)
__all__ = [*_MODULES, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f"sharpen.{name}")
    raise AttributeError(f"module 'sharpen' has no attribute {name!r}")
