"""The lab's experiments by name: :class:`sim.registry.Experiment` entries, a registry of their own.

Each module of :mod:`empirical.lab.experiments` ends with one ``register(Experiment(...))`` call; importing that
package fills :data:`LAB` in the order of its imports.
"""

from __future__ import annotations

from sim.registry import Experiment, Registry

__all__ = ["Experiment", "LAB", "register", "get"]

LAB = Registry("lab experiment")


def register(exp: Experiment) -> Experiment:
    """Add ``exp`` to :data:`LAB`; a name registered twice raises ``ValueError``."""
    return LAB.add(exp)


def get(name: str) -> Experiment:
    """The lab experiment ``name``; an unknown name raises ``ValueError`` listing the valid ones."""
    import empirical.lab.experiments  # noqa: F401  (fills LAB)

    return LAB.lookup(name)
