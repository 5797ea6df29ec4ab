r"""Slow reference implementations of each intrinsic reward's *original* formula.

Written straight from the original papers' equations with explicit Python loops in float64, independent of
:mod:`sharpen.rewards` (no shared helper), so that the tests can check that every preset of the unified formula
equals the method it claims to be. Use them to verify, never to train: they are O(B·T·V) Python loops.

==========================  ===================================================================  ===================
function                    formula                                                              preset it checks
==========================  ===================================================================  ===================
``intuitor_self_certainty``  :math:`\frac1T\sum_t \mathrm{KL}(U\Vert\pi^t)`                         ``self_certainty`` − log V
``rent_entropy``            :math:`-\frac1T\sum_t H(\pi^t)`                                      ``token_entropy``
``emrl_token_entropy``      :math:`-\sum_t H(\pi^t)`                                             ``token_entropy``, sum
``urlvr_trajectory``        :math:`\frac1T\sum_t\log\pi^t(y_t)`                                  ``trajectory_entropy``
``emrl_sequence_loglik``    :math:`\sum_t\log\pi^t(y_t)=\log\pi(y\mid x)`                        ``trajectory_entropy``, sum
``rlsc_probability``        :math:`\prod_t\pi^t(y_t)`                                            ``probability``
``ttrl_majority_reward``    :math:`\mathbb 1[\mathrm{ans}(y)=\mathrm{maj}(Y)]`, first-seen ties  ``majority_voting``
==========================  ===================================================================  ===================

All take numpy arrays: ``logits (B, T, V)``, ``tokens (B, T)``, ``mask (B, T)``; ``temperature`` divides the
logits as in veRL's actor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence

import numpy as np

__all__ = [
    "emrl_sequence_loglik",
    "emrl_token_entropy",
    "intuitor_self_certainty",
    "rent_entropy",
    "rlsc_probability",
    "ttrl_majority_reward",
    "urlvr_trajectory",
]


def _softmax_row(z: np.ndarray, temperature: float) -> list[float]:
    """pi(v) = exp(z_v/tau) / sum_u exp(z_u/tau), with the max subtracted for stability."""
    scaled = [float(v) / temperature for v in z]
    top = max(scaled)
    weights = [math.exp(v - top) for v in scaled]
    total = math.fsum(weights)
    return [w / total for w in weights]


def _valid_positions(mask: np.ndarray | None, b: int, t_len: int) -> list[int]:
    if mask is None:
        return list(range(t_len))
    return [t for t in range(t_len) if mask[b, t]]


def _per_position(
    logits: np.ndarray,
    mask: np.ndarray | None,
    temperature: float,
    value: Callable[[list[float], int, int], float],
) -> list[list[float]]:
    """``value(pi, b, t)`` at every valid position, row by row, with ``pi`` = softmax(logits[b, t] / temperature)."""
    logits = np.asarray(logits, dtype=np.float64)
    n_b, t_len, _ = logits.shape
    return [
        [
            value(_softmax_row(logits[b, t], temperature), b, t)
            for t in _valid_positions(mask, b, t_len)
        ]
        for b in range(n_b)
    ]


def intuitor_self_certainty(
    logits: np.ndarray, mask: np.ndarray | None = None, temperature: float = 1.0
) -> np.ndarray:
    r"""Intuitor (RLIF): token mean of :math:`\mathrm{KL}(U\Vert\pi^t)=\sum_v\frac1V\log\frac{1/V}{\pi^t(v)}`."""

    def kl_uniform(pi: list[float], b: int, t: int) -> float:
        vocab = len(pi)
        return math.fsum((1.0 / vocab) * math.log((1.0 / vocab) / p) for p in pi)

    return np.array(
        [math.fsum(r) / len(r) for r in _per_position(logits, mask, temperature, kl_uniform)]
    )


def _entropies(
    logits: np.ndarray, mask: np.ndarray | None, temperature: float
) -> list[list[float]]:
    return _per_position(
        logits, mask, temperature, lambda pi, b, t: -math.fsum(p * math.log(p) for p in pi if p > 0)
    )


def rent_entropy(
    logits: np.ndarray, mask: np.ndarray | None = None, temperature: float = 1.0
) -> np.ndarray:
    r"""RENT: :math:`-\frac1T\sum_t H(\pi^t)` (mean over response tokens)."""
    return np.array([-math.fsum(r) / len(r) for r in _entropies(logits, mask, temperature)])


def emrl_token_entropy(
    logits: np.ndarray, mask: np.ndarray | None = None, temperature: float = 1.0
) -> np.ndarray:
    r"""EM-RL (token level): :math:`-\sum_t H(\pi^t)` (sum over response tokens)."""
    return np.array([-math.fsum(r) for r in _entropies(logits, mask, temperature)])


def _sampled_probs(
    logits: np.ndarray, tokens: np.ndarray, mask: np.ndarray | None, temperature: float
) -> list[list[float]]:
    return _per_position(logits, mask, temperature, lambda pi, b, t: pi[int(tokens[b, t])])


def emrl_sequence_loglik(
    logits: np.ndarray, tokens: np.ndarray, mask: np.ndarray | None = None, temperature: float = 1.0
) -> np.ndarray:
    r"""EM-RL (sequence level): :math:`\log\pi_\theta(y\mid x)=\sum_t\log\pi^t(y_t)`."""
    rows = _sampled_probs(logits, tokens, mask, temperature)
    return np.array([math.fsum(math.log(p) for p in r) for r in rows])


def urlvr_trajectory(
    logits: np.ndarray, tokens: np.ndarray, mask: np.ndarray | None = None, temperature: float = 1.0
) -> np.ndarray:
    r"""URLVR's trajectory-level entropy reward: :math:`\frac1T\sum_t\log\pi^t(y_t)`."""
    rows = _sampled_probs(logits, tokens, mask, temperature)
    return np.array([math.fsum(math.log(p) for p in r) / len(r) for r in rows])


def rlsc_probability(
    logits: np.ndarray, tokens: np.ndarray, mask: np.ndarray | None = None, temperature: float = 1.0
) -> np.ndarray:
    r"""RLSC: :math:`\pi_\theta(y\mid x)=\prod_t\pi^t(y_t)`, multiplied directly (float64)."""
    return np.array([math.prod(r) for r in _sampled_probs(logits, tokens, mask, temperature)])


def ttrl_majority_reward(answers: Sequence[Hashable | None]) -> np.ndarray:
    """TTRL: 1 if a rollout's answer equals the group's plurality answer, else 0.

    The plurality ignores unparseable (None) answers; ties go to the answer that appears first.
    """
    order: list[Hashable] = []
    counts: dict[Hashable, int] = {}
    for a in answers:
        if a is None:
            continue
        if a not in counts:
            order.append(a)
            counts[a] = 0
        counts[a] += 1
    if not order:
        return np.zeros(len(answers))
    winner = order[0]
    for a in order[1:]:
        if counts[a] > counts[winner]:
            winner = a
    return np.array([1.0 if (a is not None and a == winner) else 0.0 for a in answers])
