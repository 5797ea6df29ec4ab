"""The public entry point: named experiments, their frozen configs, quick presets, ``run``.

>>> from sim import run
>>> res = run("theorem1", n_starts=2, grpo_steps=5)
>>> res.verdict.holds
True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sim.results import SimResult
from sim.theorems import (
    DestinationConfig,
    StabilityConfig,
    Theorem1Config,
    majority_stability,
    sharpening_destination,
    theorem1,
)

__all__ = ["Experiment", "EXPERIMENTS", "available_experiments", "run", "quick_config"]


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: its kind, config class, function and a quick config (for demos and tests)."""

    name: str
    kind: str
    config_cls: type
    fn: Callable[[Any], SimResult]
    quick: dict[str, Any]
    doc: str


EXPERIMENTS: dict[str, Experiment] = {}


def register(exp: Experiment) -> None:
    if exp.name in EXPERIMENTS:
        raise ValueError(f"name: experiment {exp.name!r} is registered twice")
    EXPERIMENTS[exp.name] = exp


register(
    Experiment(
        "theorem1",
        "theorem",
        Theorem1Config,
        theorem1,
        {"grpo_steps": 30},
        "Theorem 1: exact-tilt rate e^(-1/beta); effective beta of sampled GRPO",
    )
)
register(
    Experiment(
        "stability",
        "theorem",
        StabilityConfig,
        majority_stability,
        {"n_trials": 4000},
        "Majority stability: flip frequency vs exact plurality probability, vs N",
    )
)
register(
    Experiment(
        "destination",
        "theorem",
        DestinationConfig,
        sharpening_destination,
        {"n_datasets": 50, "grpo_steps": 100},
        "Where sharpening leads: pass@1 -> initial majority-vote accuracy (tabular)",
    )
)


def available_experiments() -> tuple[str, ...]:
    """Registered experiment names."""
    import sim.explorations  # noqa: F401  (explorations and the grid register themselves on import)
    import sim.grid  # noqa: F401

    return tuple(EXPERIMENTS)


def _get(name: str) -> Experiment:
    available_experiments()
    if name not in EXPERIMENTS:
        raise ValueError(f"name: unknown experiment {name!r}; valid: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def quick_config(name: str) -> Any:
    """The experiment's quick preset (small, seconds) as a config object."""
    exp = _get(name)
    return exp.config_cls(**exp.quick)


def run(name: str, *, quick: bool = False, **overrides: Any) -> SimResult:
    """Run experiment ``name`` with its default config (or the quick preset) and ``overrides`` of its fields."""
    exp = _get(name)
    fields = {f.name for f in dataclasses.fields(exp.config_cls)}
    bad = set(overrides) - fields
    if bad:
        raise ValueError(
            f"overrides: {sorted(bad)} are not fields of {exp.config_cls.__name__} ({sorted(fields)})"
        )
    base = dict(exp.quick) if quick else {}
    base.update(overrides)
    return exp.fn(exp.config_cls(**base))
