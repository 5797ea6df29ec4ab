"""The GRPO knobs the explorations' configs share, declared once and inherited.

Every exploration runs sampled GRPO over several seeds, so its frozen config inherits :class:`GRPORuns`
(``n_rollouts``, ``steps``, ``seeds``, ``seed``); one that trains with a single optimizer also inherits
:class:`OneOptimizer` (``optimizer``, ``lr``), and one on the shared answer-level task
:class:`sim.shared_task.SharedTaskRuns` (``task``, ``n_heldout``, ``batch_size``). The fields stay flat on each
config -- inheritance, not nesting -- so ``sharpen sim`` builds one ``--field-name`` option per field as before.
A config whose default differs re-declares just that field (its docstring then gives the help), and each
``__post_init__`` calls ``super().__post_init__()`` first, so every class validates its own fields once.

* :class:`GRPORuns` alone: ``GridConfig``; with the shared task: ``RiseFallConfig`` (two optimizers, each with
  its own learning rate field);
* :class:`OneOptimizer`: ``FailureModesConfig``, ``SingleQuestionConfig``; with the shared task:
  ``DatasetSizeConfig``, ``MCSConfig``, ``SelfVerificationConfig`` (``class MCSConfig(SharedTaskRuns,
  OneOptimizer)``; both bases inherit :class:`GRPORuns`, whose fields come first).

The theorem configs (:mod:`sim.experiments.theorem1`, ``stability``, ``destination``) run no seeds sweep and keep
their own fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

__all__ = ["GRPORuns", "OneOptimizer", "with_help"]


def with_help(default: Any, help: str) -> Any:  # noqa: A002 - "help" reads best at the call sites
    """A dataclass field with ``default`` and its ``--field-name`` help text (``metadata["help"]``)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class GRPORuns:
    """Sampled-GRPO runs: rollouts per question, steps per run, seeds and the base seed.

    ``min_steps`` (a class constant, not a field) is the fewest steps a run may have.
    """

    n_rollouts: int = with_help(8, "N, rollouts per question and step")
    steps: int = with_help(1000, "GRPO steps per run")
    seeds: int = with_help(3, "seeds per setting (each draws its own data)")
    seed: int = with_help(0, "base seed")

    min_steps: ClassVar[int] = 1

    def __post_init__(self) -> None:
        if int(self.n_rollouts) < 1:
            raise ValueError(f"n_rollouts: N must be >= 1, got {self.n_rollouts}")
        if int(self.steps) < self.min_steps:
            raise ValueError(f"steps: must be >= {self.min_steps}, got {self.steps}")
        if int(self.seeds) < 1:
            raise ValueError(f"seeds: must be >= 1, got {self.seeds}")


@dataclass(frozen=True)
class OneOptimizer(GRPORuns):
    """:class:`GRPORuns` with one optimizer and learning rate."""

    optimizer: Literal["sgd", "adam"] = with_help("adam", "optimizer")
    lr: float = with_help(0.005, "learning rate")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer: must be 'sgd' or 'adam', got {self.optimizer!r}")
        if not (np.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr: must be > 0, got {self.lr}")
