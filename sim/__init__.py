"""sim: a fast simulator of toy policies under intrinsic-reward GRPO.

Public surface: :func:`run` / :func:`available_experiments` / :func:`quick_config` (named experiments with frozen
configs), :class:`SimResult` / :func:`load_result`, the policies and update rules of :mod:`sim.core`,
:func:`train_answer_level` (:func:`train_shared_runs`: many shared-task runs at once), and the token-level toy
(:mod:`sim.token_toy`; :func:`train_token_runs`, :func:`sample_runs` and :class:`TokenRuns`: many runs at once).

Layout:

* :mod:`sim.experiments` -- one module per experiment (``theorem1``, ``stability``, ``destination``,
  ``failure_modes``, ``rise_then_fall``, ``dataset_size``, ``mcs_gt_gain``, ``single_question``,
  ``self_verification``, ``grid``), each with its frozen config, its function, its drawer and one
  ``register(Experiment(...))`` call; importing the package registers them all.
* :mod:`sim.registry` -- :class:`~sim.registry.Experiment` and the registry (imports no experiment);
  :mod:`sim.api` -- ``run``, ``available_experiments``, ``quick_config`` over it.
* :mod:`sim.configs` -- the GRPO knobs the explorations' configs inherit (``n_rollouts``, ``steps``, ``seeds``,
  ``seed``; ``optimizer``, ``lr``).
* The toy mechanisms: :mod:`sim.core` (answer-level policies, update rules), :mod:`sim.train` (the sampled-GRPO
  loop), :mod:`sim.fast` (the fast tabular step), :mod:`sim.token_toy` (the token-level toy),
  :mod:`sim.shared_task` (answer-level questions with shared features).
* :mod:`sim.results` (results and verdicts on disk), :mod:`sim.plots` (drawing), :mod:`sim.cli`
  (``sharpen sim``).
"""

# Lazy: ``import sim`` (and ``import sim.fast``) loads neither torch nor scipy; a name is imported from its module
# the first time it is used (PEP 562). Every name of ``__all__`` maps to the module that defines it.
_LAZY = {
    "EXPERIMENTS": "sim.api",
    "available_experiments": "sim.api",
    "quick_config": "sim.api",
    "run": "sim.api",
    "GRPOConfig": "sim.core",
    "PriorConfig": "sim.core",
    "SharedPolicy": "sim.core",
    "TabularPolicy": "sim.core",
    "exact_tilt": "sim.core",
    "expected_gradient": "sim.core",
    "sample_counts": "sim.core",
    "sample_prior": "sim.core",
    "SimResult": "sim.results",
    "Verdict": "sim.results",
    "load_result": "sim.results",
    "TokenRuns": "sim.token_toy",
    "TokenToyConfig": "sim.token_toy",
    "init_token_policy": "sim.token_toy",
    "sample_runs": "sim.token_toy",
    "sample_sequences": "sim.token_toy",
    "train_token_level": "sim.token_toy",
    "train_token_runs": "sim.token_toy",
    "SimulatedVerifier": "sim.train",
    "train_answer_level": "sim.train",
    "train_shared_runs": "sim.train",
}

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
    "train_shared_runs",
    "TokenRuns",
    "TokenToyConfig",
    "init_token_policy",
    "sample_runs",
    "sample_sequences",
    "train_token_level",
    "train_token_runs",
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'sim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
