"""sim: a fast simulator of toy policies under intrinsic-reward GRPO.

Public surface: :func:`run` / :func:`available_experiments` (named experiments with frozen configs: the theorems
of :mod:`sim.theorems`, the explorations of :mod:`sim.explorations` and the grid of :mod:`sim.grid`),
:class:`SimResult` / :func:`load_result`, the policies and update rules of :mod:`sim.core`,
:func:`train_answer_level`, and the token-level toy (:mod:`sim.token_toy`).
"""

from sim.api import EXPERIMENTS, available_experiments, quick_config, run
from sim.core import (
    GRPOConfig,
    PriorConfig,
    SharedPolicy,
    TabularPolicy,
    exact_tilt,
    expected_gradient,
    sample_counts,
    sample_prior,
)
from sim.results import SimResult, Verdict, load_result
from sim.token_toy import TokenToyConfig, init_token_policy, sample_sequences, train_token_level
from sim.train import SimulatedVerifier, train_answer_level

__all__ = [
    "EXPERIMENTS",
    "available_experiments",
    "quick_config",
    "run",
    "GRPOConfig",
    "PriorConfig",
    "SharedPolicy",
    "TabularPolicy",
    "exact_tilt",
    "expected_gradient",
    "sample_counts",
    "sample_prior",
    "SimResult",
    "Verdict",
    "load_result",
    "SimulatedVerifier",
    "train_answer_level",
    "TokenToyConfig",
    "init_token_policy",
    "sample_sequences",
    "train_token_level",
]
