"""The file veRL loads as its custom reward function (``reward.custom_reward_function.path``).

veRL executes this file by path, outside the package system, so it only re-exports
:func:`sharpen.integrations.verl.compute_score` (imported normally, from the installed ``sharpen``).
"""

from sharpen.integrations.verl import compute_score

__all__ = ["compute_score"]
