"""The sampled-GRPO training loop for answer-level policies (tabular or shared).

One step: pick a batch of questions, sample N rollouts each, score them with the chosen reward, compute group
advantages (:func:`sharpen.grpo.group_advantages`), turn them into a gradient in the logits, backpropagate to the
policy's parameters, step the optimizer. Answer-level rewards with one value per answer class (majority voting,
ground truth) use the *count path* (sample Multinomial counts, never the rollouts: exact because all rollouts
of a class share one advantage); every other reward samples the rollouts and calls :func:`sharpen.rewards.get_reward`.
Any registered reward that reads only what a sampled answer gives (:func:`answer_rewards`) trains here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sharpen.grpo import group_advantages
from sharpen.rewards import Rollouts, available_rewards, get_reward, reward_info
from sim.core import (
    GRPOConfig,
    Optimizer,
    binary_count_advantages,
    count_logit_grad,
    grpo_logit_grad,
    majority_class_advantages,
    sample_counts,
    sample_rollouts,
    softmax,
)

__all__ = [
    "SimulatedVerifier",
    "train_answer_level",
    "categorical_kl",
    "answer_rewards",
    "COUNT_PATH_REWARDS",
]

COUNT_PATH_REWARDS = ("majority_voting", "ground_truth")
"""The rewards with an exact count-path implementation here (one value per answer class)."""

ROLLOUT_FIELDS = frozenset({"answers", "groups", "labels", "logits", "tokens", "verifier"})
"""What a sampled answer gives a reward: the answer (index), its question's group and correct answer, the
question's logits with the answer as the response's one token, and a :class:`SimulatedVerifier`."""


def answer_rewards() -> tuple[str, ...]:
    """The registered rewards the answer-level loop trains with: those that need only :data:`ROLLOUT_FIELDS`."""
    return tuple(n for n in available_rewards() if reward_info(n).needs <= ROLLOUT_FIELDS)


@dataclass(frozen=True)
class SimulatedVerifier:
    """A verifier whose verdict is right with probability ``accuracy``, independent of the policy's confidence.

    Called as ``verifier(rollouts) -> (B,)`` 0/1 scores (the calling convention of
    ``get_reward("self_verification", verifier=...)``); reads ``rollouts.answers`` and ``rollouts.labels``.
    """

    accuracy: float
    rng: np.random.Generator

    def __post_init__(self) -> None:
        if not 0.0 <= self.accuracy <= 1.0:
            raise ValueError(f"accuracy: must lie in [0, 1], got {self.accuracy}")

    def __call__(self, rollouts: Rollouts) -> np.ndarray:
        truth = np.asarray(
            [
                a is not None and a == g
                for a, g in zip(rollouts.answers, rollouts.labels, strict=True)
            ]
        )
        right = self.rng.random(truth.shape) < self.accuracy
        return np.where(right, truth, ~truth).astype(np.float64)


def categorical_kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    r"""Exact :math:`\mathrm{KL}(p\Vert q)=\sum_k p_k\log(p_k/q_k)` per row of ``(Q, K)`` arrays, >= 0."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(np.maximum(q, 1e-300))), 0.0)
    return np.maximum(terms.sum(axis=-1), 0.0)


def _rollout_rewards(
    reward: str, logits: np.ndarray, rollouts: np.ndarray, correct: np.ndarray, verifier
) -> np.ndarray:
    """(G, N) rewards of sampled answers, from :mod:`sharpen.rewards` (answer index = the one 'token')."""
    g, n = rollouts.shape
    flat = rollouts.ravel()
    needs = reward_info(reward).needs
    fields = {"answers": flat.tolist(), "labels": np.repeat(correct, n).tolist()}
    if "logits" in needs:  # (B, 1, K): the answer is the response's only token
        fields.update(logits=np.repeat(logits, n, axis=0)[:, None, :], tokens=flat[:, None])
    ro = Rollouts(groups=np.repeat(np.arange(g), n), **fields)
    fn = get_reward(reward, verifier=verifier) if "verifier" in needs else get_reward(reward)
    return np.asarray(fn(ro), dtype=np.float64).reshape(g, n)


def train_answer_level(
    policy,
    correct: np.ndarray,
    *,
    reward: str,
    grpo: GRPOConfig,
    steps: int,
    rng: np.random.Generator,
    ref_logits: np.ndarray | None = None,
    verifier_accuracy: float = 0.9,
    eval_questions: dict[str, tuple[object, np.ndarray]] | None = None,
    force_rollouts: bool = False,
    probe: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Train ``policy`` in place with sampled GRPO for ``steps`` steps; return per-step trajectories.

    Parameters
    ----------
    policy : TabularPolicy or SharedPolicy
    correct : (Q,) int, correct answer per question (for measurement, and the ground-truth reward)
    reward : one of :func:`answer_rewards`
    ref_logits : (Q, K), reference for the KL penalty and the KL metric (default: the initial policy)
    eval_questions : ``{name: (policy_like, correct)}`` extra question sets measured each step (held-out
        questions of a shared policy); each ``policy_like`` has ``logits()``.
    force_rollouts : use the rollout path even for count-path rewards (for equivalence tests).
    probe : (M,) question indices whose full answer distributions are recorded every step (``probe_probs``).

    Returns
    -------
    dict of (steps + 1,) arrays (index 0 = before training): ``accuracy`` (mean pi(correct) over all questions,
    exact pass@1), ``greedy_accuracy``, ``majority_correct`` (argmax = correct), ``p_max`` (mean max prob),
    ``kl`` (mean exact KL to the reference), and per-step batch metrics ``reward_mean``, ``reward_accuracy``,
    ``label_accuracy`` (batch vote correct), ``majority_ratio``; plus ``eval/<name>/accuracy``; with ``probe``
    also ``probe_probs`` (steps + 1, M, K).
    """
    if reward not in answer_rewards():
        raise ValueError(f"reward: unknown {reward!r}; valid: {', '.join(answer_rewards())}")
    if int(steps) < 0:
        raise ValueError(f"steps: must be >= 0, got {steps}")
    correct = np.asarray(correct, dtype=np.int64)
    q_all = policy.n_questions
    if correct.shape != (q_all,):
        raise ValueError(f"correct: expected shape ({q_all},), got {correct.shape}")
    ref = softmax(
        policy.logits() if ref_logits is None else np.asarray(ref_logits, dtype=np.float64)
    )
    n = int(grpo.n_rollouts)
    bsz = q_all if grpo.batch_size is None else min(int(grpo.batch_size), q_all)
    opt = Optimizer(grpo.optimizer, grpo.lr)
    verifier = None
    if "verifier" in reward_info(reward).needs:
        verifier = SimulatedVerifier(verifier_accuracy, rng)
    use_counts = reward in COUNT_PATH_REWARDS and not force_rollouts and grpo.epochs == 1
    use_counts = use_counts and grpo.kl_coef == 0.0

    keys = ["accuracy", "greedy_accuracy", "p_max", "kl"]
    batch_keys = ["reward_mean", "reward_accuracy", "label_accuracy", "majority_ratio"]
    out: dict[str, list[float]] = {key: [] for key in keys + batch_keys}
    evals = eval_questions or {}
    for name in evals:
        out[f"eval/{name}/accuracy"] = []
        out[f"eval/{name}/greedy_accuracy"] = []
    rows_all = np.arange(q_all)
    probes: list[np.ndarray] = []

    def measure() -> None:
        p = softmax(policy.logits())
        if probe is not None:
            probes.append(p[probe])
        out["accuracy"].append(float(p[rows_all, correct].mean()))
        out["greedy_accuracy"].append(float((p.argmax(axis=1) == correct).mean()))
        out["p_max"].append(float(p.max(axis=1).mean()))
        out["kl"].append(float(categorical_kl(p, ref).mean()))
        for name, (pol, corr) in evals.items():
            pe = softmax(pol.logits())
            out[f"eval/{name}/accuracy"].append(float(pe[np.arange(len(corr)), corr].mean()))
            out[f"eval/{name}/greedy_accuracy"].append(float((pe.argmax(axis=1) == corr).mean()))

    measure()
    for key in batch_keys:
        out[key].append(np.nan)
    for _ in range(int(steps)):
        idx = np.sort(rng.choice(q_all, size=bsz, replace=False)) if bsz < q_all else None
        z = policy.logits(idx)
        p = softmax(z)
        corr = correct if idx is None else correct[idx]
        rows = np.arange(p.shape[0])
        if use_counts:
            counts = sample_counts(p, n, rng)
            if reward == "majority_voting":
                cls_adv, winners = majority_class_advantages(
                    counts, rng, normalize_std=grpo.normalize_std, eps=grpo.eps
                )
                label = winners
            else:
                a_pos, a_neg = binary_count_advantages(
                    counts[rows, corr], n, normalize_std=grpo.normalize_std, eps=grpo.eps
                )
                cls_adv = np.broadcast_to(a_neg[:, None], p.shape).copy()
                cls_adv[rows, corr] = a_pos
                label = corr
            grad = count_logit_grad(p, counts, cls_adv, n)
            c_w = np.where(label >= 0, counts[rows, np.maximum(label, 0)], 0)
            c_c = counts[rows, corr]
            agree = n - c_w - c_c + 2 * c_w * (label == corr)
            out["reward_mean"].append(float(c_w.mean() / n))
            out["reward_accuracy"].append(float(agree.mean() / n))
            out["label_accuracy"].append(float((label == corr).mean()))
            out["majority_ratio"].append(float(counts.max(axis=1).mean() / n))
            opt.step(policy.params, policy.backward(idx, grad))
        else:
            ys = sample_rollouts(p, n, rng)
            r = _rollout_rewards(reward, z, ys, corr, verifier)
            adv = np.asarray(
                group_advantages(r, normalize_std=grpo.normalize_std, eps=grpo.eps, unbiased=True)
            )
            gt = (ys == corr[:, None]).astype(np.float64)
            counts = np.zeros_like(p, dtype=np.int64)
            np.add.at(counts, (np.repeat(rows, n), ys.ravel()), 1)
            out["reward_mean"].append(float(r.mean()))
            out["reward_accuracy"].append(float((r == gt).mean()))
            out["label_accuracy"].append(float((counts.argmax(axis=1) == corr).mean()))
            out["majority_ratio"].append(float(counts.max(axis=1).mean() / n))
            old_p = p
            ref_b = ref if idx is None else ref[idx]
            for epoch in range(int(grpo.epochs)):
                if epoch > 0:
                    p = softmax(policy.logits(idx))
                grad = grpo_logit_grad(
                    p,
                    ys,
                    adv,
                    old_probs=old_p if grpo.epochs > 1 else None,
                    clip_eps=grpo.clip_eps,
                )
                if grpo.kl_coef > 0:
                    logr = np.log(np.maximum(p, 1e-300)) - np.log(np.maximum(ref_b, 1e-300))
                    kl = (p * logr).sum(axis=1, keepdims=True)
                    grad = grad - grpo.kl_coef * p * (
                        logr - kl
                    )  # ascent on -kl_coef * KL(pi || ref)
                opt.step(policy.params, policy.backward(idx, grad))
        measure()
    res = {key: np.asarray(v, dtype=np.float64) for key, v in out.items()}
    if probe is not None:
        res["probe_probs"] = np.stack(probes)
    return res
