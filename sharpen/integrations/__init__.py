"""sharpen inside other RL engines: TRL's ``GRPOTrainer`` and veRL (Ray, multi-GPU, multi-node).

Modules (none is imported by ``import sharpen``; each imports its engine only when it needs it):

- :mod:`sharpen.integrations.trl` -- TRL reward functions for the answer-level rewards (majority voting with
  group-aware gathering, ground truth, self-verification), :class:`~sharpen.integrations.trl.CertaintyReward` and
  the ``GRPOTrainer`` subclass that scores it from the policy's full-vocabulary logits, and the callback that writes
  sharpen's run records (extra ``trl``).
- :mod:`sharpen.integrations.verl` -- veRL's ``compute_score``, pseudo-label injection over plain arrays, the
  certainty rewards from the actor's per-token log-probs/entropies, conversion of questions to veRL's parquet
  schema, the typed recipe (Qwen3-1.7B-Base / DAPO-Math-17k / GRPO) and its launch scripts, and the export of a
  veRL run to sharpen's run format. Pure Python: runs without veRL.
- :mod:`sharpen.integrations.verl_trainer` -- the thin veRL trainer hook (extra ``verl``, pinned to
  :data:`sharpen.integrations.verl.SUPPORTED_VERL`, checked at import).
- :mod:`sharpen.integrations.records` -- per-question probe records from sampled answers, and the resume that
  keeps a resumed run's records equal to an uninterrupted one's (shared by both).
"""

from __future__ import annotations

__all__ = ["records", "trl", "verl", "verl_trainer"]
