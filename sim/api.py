"""The public entry point: named experiments, their frozen configs, quick presets, ``run``.

The experiments live one per module in :mod:`sim.experiments` and register themselves in :mod:`sim.registry`;
importing this module imports them all.

>>> from sim import run
>>> res = run("theorem1", n_starts=2, grpo_steps=5)
>>> res.verdict.holds
True
"""

from __future__ import annotations

import dataclasses
from typing import Any

import sim.experiments  # noqa: F401  (each experiment module registers itself)
from sim.registry import EXPERIMENTS, Experiment, get
from sim.results import SimResult

__all__ = ["Experiment", "EXPERIMENTS", "available_experiments", "run", "quick_config"]


def available_experiments() -> tuple[str, ...]:
    """Registered experiment names, theorems first."""
    return tuple(EXPERIMENTS)


def quick_config(name: str) -> Any:
    """The experiment's quick preset (small, seconds) as a config object."""
    exp = get(name)
    return exp.config_cls(**exp.quick)


def run(name: str, *, quick: bool = False, **overrides: Any) -> SimResult:
    """Run experiment ``name`` with its default config (or the quick preset) and ``overrides`` of its fields."""
    exp = get(name)
    fields = {f.name for f in dataclasses.fields(exp.config_cls)}
    bad = set(overrides) - fields
    if bad:
        raise ValueError(
            f"overrides: {sorted(bad)} are not fields of {exp.config_cls.__name__} ({sorted(fields)})"
        )
    base = dict(exp.quick) if quick else {}
    base.update(overrides)
    return exp.fn(exp.config_cls(**base))
