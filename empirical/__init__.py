"""Real GRPO runs with intrinsic rewards on causal LMs (tiny Qwen3 on CPU by default; Qwen3-1.7B with vLLM).

Public surface: :class:`TrainConfig`, :data:`PRESETS`, :func:`preset` (from ``empirical.config``) and
``empirical.train.train(cfg, resume=False)``; the command is ``sharpen train`` (``empirical.cli``).
"""

from empirical.config import PRESETS, TrainConfig, preset

__all__ = ["PRESETS", "TrainConfig", "preset"]
