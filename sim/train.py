"""The sampled-GRPO training loop for answer-level policies (tabular or shared).

One step: pick a batch of questions, sample N rollouts each, score them with the chosen reward, compute group
advantages (:func:`sharpen.grpo.group_advantages`), turn them into a gradient in the logits, backpropagate to the
policy's parameters, step the optimizer. Answer-level rewards with one value per answer class (majority voting,
ground truth) use the *count path* (sample Multinomial counts, never the rollouts: exact because all rollouts
of a class share one advantage); every other reward samples the rollouts and calls :func:`sharpen.rewards.get_reward`.
Any registered reward that reads only what a sampled answer gives (:func:`answer_rewards`) trains here.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from sharpen.answers import plurality_winners
from sharpen.grpo import group_advantages
from sharpen.rewards import Rollouts, available_rewards, get_reward, reward_info
from sim.core import (
    GRPOConfig,
    Optimizer,
    SharedPolicy,
    binary_count_advantages,
    count_logit_grad,
    grpo_logit_grad,
    majority_class_advantages,
    sample_counts,
    sample_counts_runs,
    sample_rollouts,
    softmax,
    softmax_parts,
)

__all__ = [
    "SimulatedVerifier",
    "train_answer_level",
    "train_shared_runs",
    "measured_series",
    "TRAIN_SERIES",
    "EVAL_SERIES",
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
    q = np.asarray(q, dtype=np.float64)
    return _kl_from_log(np.asarray(p, dtype=np.float64), np.log(np.maximum(q, 1e-300)))


def _kl_from_log(p: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    """:func:`categorical_kl` with ``log_q = log(max(q, 1e-300))`` given (a fixed reference: log it once)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if p.dtype == np.float64 and log_q.dtype == np.float64 and p.shape == log_q.shape:
            terms = np.log(p)  # p (log p - log q) where p > 0, else 0, in place (the same numbers)
            terms -= log_q
            terms *= p
            np.copyto(terms, 0.0, where=~(p > 0))
        else:
            terms = np.where(p > 0, p * (np.log(p) - log_q), 0.0)
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


TRAIN_SERIES = ("accuracy", "greedy_accuracy", "p_max", "kl")
"""The series measured on a run's whole training set every step (exact, from the policy's probabilities)."""
EVAL_SERIES = ("accuracy", "greedy_accuracy")
"""The series measured on each extra question set (``eval/<name>/<series>``)."""


def measured_series(eval_names=()) -> tuple[str, ...]:
    """The measured series of a run with extra question sets ``eval_names``, in the order the trainers return
    them: :data:`TRAIN_SERIES`, then ``eval/<name>/<series>`` for each of :data:`EVAL_SERIES`.

    >>> measured_series(["heldout"])[-2:]
    ('eval/heldout/accuracy', 'eval/heldout/greedy_accuracy')
    """
    return TRAIN_SERIES + tuple(f"eval/{name}/{m}" for name in eval_names for m in EVAL_SERIES)


def _feature_products(f: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``f (R, Q, K, D)`` times each run's ``w (R, D)``: ``(R, Q, K)``, the ``features @ w`` of
    :meth:`sim.core.SharedPolicy.logits` for every run, as one ``(Q K, D) @ (D, 1)`` product per run (a
    product per question was ~2x slower; each entry is the same dot product over D, the same numbers here)."""
    r, q, k, d = f.shape
    return (f.reshape(r, q * k, d) @ w[:, :, None]).reshape(r, q, k)


def _chunks(n_runs: int, size: int, limit: int = 1 << 16) -> list[slice]:
    """Consecutive slices of ``n_runs`` runs, as many per slice as keep ``runs * size <= limit`` (at least one)."""
    step = max(1, limit // max(size, 1))
    return [slice(i, min(i + step, n_runs)) for i in range(0, n_runs, step)]


def _measure_probs(
    row: dict[str, np.ndarray],
    r: int,
    prefix: str,
    e: np.ndarray,
    total: np.ndarray,
    correct: np.ndarray,
    want: set[str],
) -> np.ndarray | None:
    """Run ``r``'s ``accuracy``, ``p_max`` and ``greedy_accuracy`` (under ``prefix``, those in ``want``) into
    ``row``, from the halves of ``p = softmax(z) = e / total`` (:func:`sim.core.softmax_parts`): mean
    ``p[q, correct[q]]`` (``e[q, correct[q]] / total[q]``, the same numbers), mean ``max_k p`` (``1 / total``)
    and the share of questions whose argmax is correct. Returns ``p`` if it formed it (for the argmax), else None.
    """
    if prefix + "accuracy" in want:
        row[prefix + "accuracy"][r] = (e[np.arange(len(correct)), correct] / total[:, 0]).mean()
    if prefix + "p_max" in want:
        row[prefix + "p_max"][r] = (1.0 / total[:, 0]).mean()
    if prefix + "greedy_accuracy" not in want:
        return None
    p = e / total
    row[prefix + "greedy_accuracy"][r] = (p.argmax(axis=1) == correct).mean()
    return p


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


def train_shared_runs(
    policies: list[SharedPolicy],
    corrects: list[np.ndarray],
    *,
    reward: str,
    grpo: GRPOConfig,
    steps: int,
    rngs: list[np.random.Generator],
    verifier_accuracies: list[float] | None = None,
    eval_questions: dict[str, tuple[list[SharedPolicy], list[np.ndarray]]] | None = None,
    probe: np.ndarray | None = None,
    series: Collection[str] | None = None,
) -> list[dict[str, np.ndarray]]:
    """R runs of :func:`train_answer_level` on shared policies of one shape, advanced together as stacked arrays.

    Run r trains ``policies[r]`` (its final parameters are written back) on ``corrects[r]`` with its own
    generator ``rngs[r]``, drawn in the order the one-run loop draws (batch, then counts and tie-breaks or
    rollouts and verifier verdicts), and its verifier of accuracy ``verifier_accuracies[r]`` (default 0.9); every
    other operation acts per question or per run, so each run's series equal ``train_answer_level(policies[r],
    corrects[r], rng=rngs[r], ...)`` bit for bit. The stacks: base logits (R, Q, K), features (R, Q, K, D),
    ``w`` (R, D), ``delta`` (R, Q, K). The reference of the KL metric is the initial policy; ``grpo`` must have
    ``epochs = 1`` and ``kl_coef = 0`` (one on-policy update: the setting of every shared-task run).

    Parameters
    ----------
    policies : R SharedPolicy of one shape (Q, K, D) and one ``per_question`` setting
    corrects : R (Q,) int arrays
    eval_questions : ``{name: (held, corrects)}``, R held-out SharedPolicy each whose ``w`` is run r's trained
        ``w`` (the same array) and R correct-answer arrays
    probe : (M,) question indices recorded every step in every run (``probe_probs``)
    series : the measured series to compute, from :func:`measured_series` (``accuracy``, ``greedy_accuracy``,
        ``p_max``, ``kl`` and ``eval/<name>/accuracy``, ``eval/<name>/greedy_accuracy``); None: all of them. A
        series not asked for is left out of the results (and not computed: measuring the whole training and
        held-out sets every step is most of a run's cost); the batch series are always there.

    Returns
    -------
    R dicts, each as :func:`train_answer_level` returns (less the series not asked for).
    """
    if reward not in answer_rewards():
        raise ValueError(f"reward: unknown {reward!r}; valid: {', '.join(answer_rewards())}")
    if int(steps) < 0:
        raise ValueError(f"steps: must be >= 0, got {steps}")
    if int(grpo.epochs) != 1 or grpo.kl_coef != 0.0:
        raise ValueError(
            "grpo: batched runs need epochs = 1 and kl_coef = 0 (use train_answer_level)"
        )
    n_runs = len(policies)
    if n_runs < 1:
        raise ValueError("policies: need at least one run")
    if len({id(p) for p in policies}) != n_runs:
        raise ValueError("policies: the same policy object appears twice (each run trains its own)")
    accs = [0.9] * n_runs if verifier_accuracies is None else list(verifier_accuracies)
    if len(corrects) != n_runs or len(rngs) != n_runs or len(accs) != n_runs:
        raise ValueError(
            f"corrects, rngs, verifier_accuracies: need one per policy ({n_runs}), got "
            f"{len(corrects)}, {len(rngs)}, {len(accs)}"
        )
    shape = policies[0].features.shape
    keys_p = sorted(policies[0].params)
    if any(pol.features.shape != shape or sorted(pol.params) != keys_p for pol in policies):
        raise ValueError(
            "policies: every run needs one shape (Q, K, D) and one per_question setting"
        )
    q_all = shape[0]
    correct = np.stack([np.asarray(c, dtype=np.int64) for c in corrects])
    if correct.shape != (n_runs, q_all):
        raise ValueError(f"corrects: expected {n_runs} arrays of shape ({q_all},)")
    base = np.stack([pol.base for pol in policies])
    feats = np.stack([pol.features for pol in policies])
    params = {k: np.stack([pol.params[k] for pol in policies]) for k in keys_p}
    evals = {}
    for name, (held, corr) in (eval_questions or {}).items():
        if len(held) != n_runs or len(corr) != n_runs:
            raise ValueError(f"eval_questions: {name!r} needs one policy and one array per run")
        if any(h.params["w"] is not pol.params["w"] for h, pol in zip(held, policies, strict=True)):
            raise ValueError(f"eval_questions: {name!r} policies must share their run's w")
        evals[name] = (
            np.stack([h.base for h in held]),
            np.stack([h.features for h in held]),
            np.stack([np.asarray(c, dtype=np.int64) for c in corr]),
        )
    runs = np.arange(n_runs)[:, None]

    def logits(b: np.ndarray, f: np.ndarray, delta: np.ndarray | None = None) -> np.ndarray:
        z = b + _feature_products(f, params["w"])
        return z if delta is None else z + delta

    delta_all = params.get("delta")
    n = int(grpo.n_rollouts)
    bsz = q_all if grpo.batch_size is None else min(int(grpo.batch_size), q_all)
    opt = Optimizer(grpo.optimizer, grpo.lr)
    verifiers: list[SimulatedVerifier | None] = [None] * n_runs
    if "verifier" in reward_info(reward).needs:
        verifiers = [SimulatedVerifier(a, g) for a, g in zip(accs, rngs, strict=True)]
    use_counts = reward in COUNT_PATH_REWARDS

    valid = measured_series(evals)
    if series is None:
        want = set(valid)
    else:
        want = set(series)
        unknown = sorted(want - set(valid))
        if unknown:
            raise ValueError(f"series: unknown {unknown}; valid: {', '.join(valid)}")
    measured = [key for key in valid if key in want]  # in the order of train_answer_level's dict
    batch_keys = ["reward_mean", "reward_accuracy", "label_accuracy", "majority_ratio"]
    out: dict[str, list[np.ndarray]] = {key: [] for key in measured if key in TRAIN_SERIES}
    out.update({key: [] for key in batch_keys})
    out.update({key: [] for key in measured if key not in TRAIN_SERIES})
    probes: list[np.ndarray] = []
    log_ref = None
    if "kl" in want:
        log_ref = np.log(np.maximum(softmax(logits(base, feats, delta_all)), 1e-300))
    train_wanted = probe is not None or any(key in want for key in TRAIN_SERIES)

    def chunk_logits(runs_c: slice, b: np.ndarray, f: np.ndarray) -> np.ndarray:
        # logits() for the runs of one chunk
        return b[runs_c] + _feature_products(f[runs_c], params["w"][runs_c])

    def measure() -> None:
        # a few runs at a time (the whole question sets of all runs at once would not fit the cache); softmax in
        # its two halves (sim.core.softmax_parts), so a series that needs one probability per question divides
        # only it
        row = {key: np.empty(n_runs) for key in measured}
        if train_wanted:
            for c in _chunks(n_runs, base[0].size):
                z = chunk_logits(c, base, feats)
                e_c, total_c = softmax_parts(z if delta_all is None else z + delta_all[c])
                for r, e, total in zip(range(n_runs)[c], e_c, total_c, strict=True):
                    p = _measure_probs(row, r, "", e, total, correct[r], want)
                    if probe is not None:
                        probes.append(e[probe] / total[probe])
                    if log_ref is not None:
                        p = e / total if p is None else p
                        row["kl"][r] = _kl_from_log(p, log_ref[r]).mean()
        for name, (hb, hf, hc) in evals.items():
            pre = f"eval/{name}/"
            if pre + "accuracy" in want or pre + "greedy_accuracy" in want:
                for c in _chunks(n_runs, hb[0].size):
                    e_c, total_c = softmax_parts(chunk_logits(c, hb, hf))
                    for r, e, total in zip(range(n_runs)[c], e_c, total_c, strict=True):
                        _measure_probs(row, r, pre, e, total, hc[r], want)
        for key, v in row.items():
            out[key].append(v)

    measure()
    for key in batch_keys:
        out[key].append(np.full(n_runs, np.nan))
    delta_grad = None if delta_all is None else np.zeros_like(delta_all)
    for _ in range(int(steps)):
        idx = None
        if bsz < q_all:
            idx = np.stack([np.sort(g.choice(q_all, size=bsz, replace=False)) for g in rngs])
            delta = None if delta_all is None else delta_all[runs, idx]
            f_b = feats[runs, idx]  # (R, B, K, D)
            z = logits(base[runs, idx], f_b, delta)
            corr = correct[runs, idx]
        else:
            f_b = feats
            z, corr = logits(base, feats, delta_all), correct
        p = softmax(z)
        rows = np.arange(p.shape[1])
        if use_counts:
            counts = sample_counts_runs(p, n, rngs)
            c_c = np.take_along_axis(counts, corr[..., None], axis=2)[..., 0]
            if reward == "majority_voting":
                label = np.stack([plurality_winners(counts[r], g) for r, g in enumerate(rngs)])
                c_w = np.where(
                    label >= 0,
                    np.take_along_axis(counts, np.maximum(label, 0)[..., None], axis=2)[..., 0],
                    0,
                )
            else:
                label, c_w = corr, c_c
            # the rewarded class (the vote, or the correct answer) gets a_pos, every other class a_neg
            a_pos, a_neg = binary_count_advantages(
                c_w.ravel(), n, normalize_std=grpo.normalize_std, eps=grpo.eps
            )
            a_pos, a_neg = a_pos.reshape(c_w.shape), a_neg.reshape(c_w.shape)
            cls_adv = np.broadcast_to(a_neg[..., None], p.shape).copy()
            ok = label >= 0
            r_ok, q_ok = np.nonzero(ok)
            cls_adv[r_ok, q_ok, label[ok]] = a_pos[ok]
            k_ = p.shape[2]  # count_logit_grad takes (G, K) groups
            grad = count_logit_grad(
                p.reshape(-1, k_), counts.reshape(-1, k_), cls_adv.reshape(-1, k_), n
            ).reshape(p.shape)
            agree = n - c_w - c_c + 2 * c_w * (label == corr)
            out["reward_mean"].append(c_w.mean(axis=1) / n)
            out["reward_accuracy"].append(agree.mean(axis=1) / n)
            out["label_accuracy"].append((label == corr).mean(axis=1))
            out["majority_ratio"].append(counts.max(axis=2).mean(axis=1) / n)
        else:
            ys = np.stack([sample_rollouts(p[r], n, g) for r, g in enumerate(rngs)])
            r_ = np.stack(
                [
                    _rollout_rewards(reward, z[r], ys[r], corr[r], verifiers[r])
                    for r in range(n_runs)
                ]
            )
            g_ = n_runs * p.shape[1]
            adv = np.asarray(
                group_advantages(
                    r_.reshape(g_, n), normalize_std=grpo.normalize_std, eps=grpo.eps, unbiased=True
                )
            )
            gt = (ys == corr[..., None]).astype(np.float64)
            counts = np.zeros_like(p, dtype=np.int64)
            np.add.at(counts, (runs, np.repeat(rows, n)[None, :], ys.reshape(n_runs, -1)), 1)
            out["reward_mean"].append(r_.reshape(n_runs, -1).mean(axis=1))
            out["reward_accuracy"].append((r_ == gt).reshape(n_runs, -1).mean(axis=1))
            out["label_accuracy"].append((counts.argmax(axis=2) == corr).mean(axis=1))
            out["majority_ratio"].append(counts.max(axis=2).mean(axis=1) / n)
            grad = grpo_logit_grad(p.reshape(g_, -1), ys.reshape(g_, n), adv).reshape(p.shape)
        # one einsum per run, as SharedPolicy.backward (its summation order)
        grads = {"w": np.stack([np.einsum("qkd,qk->d", f_b[r], grad[r]) for r in range(n_runs)])}
        if "delta" in params:
            g = delta_grad  # zeros plus the batch's gradient, as SharedPolicy.backward
            g.fill(0.0)
            if idx is None:
                g += grad
            else:  # indices are distinct within a run: the same sums as np.add.at
                g[runs, idx] += grad
            grads["delta"] = g
        opt.step(params, grads)
        measure()
    for r, pol in enumerate(policies):
        for k in keys_p:
            pol.params[k][...] = params[k][r]
    res = [
        {key: np.asarray([v[r] for v in vals], dtype=np.float64) for key, vals in out.items()}
        for r in range(n_runs)
    ]
    if probe is not None:  # appended step by step, run by run
        stacked = np.stack(probes).reshape(int(steps) + 1, n_runs, *probes[0].shape)
        for r in range(n_runs):
            res[r]["probe_probs"] = stacked[:, r].copy()
    return res
