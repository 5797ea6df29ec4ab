"""The experiment registry: one :class:`Experiment` per name, carrying everything its callers need.

Each module of :mod:`sim.experiments` ends with one ``register(Experiment(...))`` call; this module imports no
experiment. Importing :mod:`sim.experiments` (which :mod:`sim.api` does; ``import sim`` alone is lazy and imports
neither) fills the registry, in the order of that package's imports.

>>> import sim.experiments
>>> from sim.registry import get
>>> get("theorem1").kind
'theorem'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from sim.results import SimResult

__all__ = ["Experiment", "EXPERIMENTS", "Registry", "register", "get"]


@dataclass(frozen=True)
class Experiment:
    """A registered experiment.

    Attributes
    ----------
    name : registry name (``sharpen sim <name>``; also :attr:`sim.results.SimResult.experiment`)
    kind : "theorem" (must hold) or "exploration" (reports what a toy mechanism does)
    config_cls : its frozen config dataclass; every field is an override of :func:`sim.api.run`
    fn : ``fn(config) -> SimResult``
    quick : the quick preset, as field overrides of ``config_cls`` (seconds; for demos and tests)
    doc : one line for ``sharpen sim --list``
    plot : ``plot(result, fig)`` draws a result into a figure (None: :func:`sim.plots.plot_result` draws every
        series generically)
    figsize : the figure size, inches
    """

    name: str
    kind: Literal["theorem", "exploration"]
    config_cls: type
    fn: Callable[[Any], SimResult]
    quick: dict[str, Any]
    doc: str
    plot: Callable[[SimResult, Any], None] | None = None
    figsize: tuple[float, float] = (11.0, 4.0)

    def __post_init__(self) -> None:
        if self.kind not in ("theorem", "exploration"):
            raise ValueError(f"kind: must be 'theorem' or 'exploration', got {self.kind!r}")
        if not dataclasses.is_dataclass(self.config_cls):
            raise ValueError(f"config_cls: {self.config_cls!r} is not a dataclass")
        fields = {f.name for f in dataclasses.fields(self.config_cls)}
        bad = sorted(set(self.quick) - fields)
        if bad:
            raise ValueError(
                f"quick: {bad} are not fields of {self.config_cls.__name__} ({sorted(fields)})"
            )


class Registry(dict):
    """Experiments by name, in registration order (a ``dict``); ``what`` names them in error messages. The
    simulator's is :data:`EXPERIMENTS`; the real-LM lab has its own (:data:`empirical.lab.registry.LAB`)."""

    def __init__(self, what: str) -> None:
        super().__init__()
        self.what = what

    def add(self, exp: Experiment) -> Experiment:
        """Add ``exp``; a name registered twice raises ``ValueError``."""
        if exp.name in self:
            raise ValueError(f"name: {self.what} {exp.name!r} is registered twice")
        self[exp.name] = exp
        return exp

    def lookup(self, name: str) -> Experiment:
        """The entry ``name``; an unknown name raises ``ValueError`` listing the valid ones."""
        if name not in self:
            raise ValueError(f"name: unknown {self.what} {name!r}; valid: {', '.join(self)}")
        return self[name]


EXPERIMENTS = Registry("experiment")


def register(exp: Experiment) -> Experiment:
    """Add ``exp`` to :data:`EXPERIMENTS`; a name registered twice raises ``ValueError``."""
    return EXPERIMENTS.add(exp)


def get(name: str) -> Experiment:
    """The experiment registered as ``name``; an unknown name raises ``ValueError`` listing the valid ones."""
    return EXPERIMENTS.lookup(name)
