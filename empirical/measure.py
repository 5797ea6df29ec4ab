"""What a run records, computed from parsed answers, rewards and the batch's tensors (no model here): a step's
rows -- every sample that votes (:class:`Vote`) and the rows GRPO trains on (:func:`trained_rows`) -- and its
batch metrics under TTRL's names (:func:`step_metrics`, all of them with :func:`batch_metrics`), the
per-question probe records that Theorem 1 is fitted to, and held-out accuracy.

>>> from empirical.tasks import arithmetic_task
>>> task = arithmetic_task(n_train=2, n_heldout=1, seed=0)
>>> q = task.heldout[0]
>>> heldout_metrics(task, [q], [q.label, "x", q.label, q.label], k=4)["avg@4"]
0.75
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from empirical.behaviour import behaviour_metrics
from empirical.config import TrainConfig
from empirical.tasks import Question, Task
from sharpen import metrics as M
from sharpen.answers import majority_vote
from sharpen.exact import AnswerSummary
from sharpen.records import HELDOUT_ACCURACY, UNSET, ProbeRecord, RunHeader, probe_record

if TYPE_CHECKING:
    import torch

# ----------------------------------------------------------------------------------------------------------
# a step's rows: every sample that votes, and the rows trained on
# ----------------------------------------------------------------------------------------------------------


def trained_rows(n_prompts: int, n_votes: int, n_rollouts: int) -> np.ndarray:
    """The rows GRPO trains on among ``n_prompts * n_votes`` samples grouped by prompt: the first ``n_rollouts``
    of each prompt's ``n_votes``, in sampling order, ``(n_prompts * n_rollouts,)``. A prompt's samples are
    i.i.d. draws, so these are a uniform random subset of its vote (as TTRL trains on the first
    ``n_samples_per_prompt`` of its ``n_votes_per_prompt``). All rows when ``n_votes == n_rollouts``.

    >>> trained_rows(2, 4, 2).tolist()
    [0, 1, 4, 5]
    """
    return (np.arange(n_prompts)[:, None] * n_votes + np.arange(n_rollouts)[None, :]).reshape(-1)


@dataclass(frozen=True)
class Vote:
    """Every sample of one step, ``size`` (``n_votes``) consecutive per prompt, and the rows trained on: what an
    answer-level reward scores against and the vote metrics (``majority_ratio``, ``label_accuracy``) describe."""

    questions: list[Question]  # (V,) V = G * size, row i answers question i // size
    answers: list[str | None]  # (V,) parsed answers
    texts: list[str]  # (V,) decoded responses
    size: int  # samples per prompt, n_votes
    keep: np.ndarray  # (B,) the trained rows (trained_rows), B = G * n_rollouts

    @classmethod
    def of(
        cls,
        questions: Sequence[Question],
        texts: Sequence[str],
        parse: Callable[[str], str | None],
        n_rollouts: int,
    ) -> Vote:
        """The vote of ``texts`` (V,), ``V // G`` consecutive per question of ``questions`` (G,), their answers by
        ``parse`` (a function of the text: each distinct text is parsed once), trained on the first
        ``n_rollouts`` of each question's."""
        size = len(texts) // max(len(questions), 1)
        if not questions or size * len(questions) != len(texts) or size < n_rollouts:
            raise ValueError(
                f"texts: need the same number (>= n_rollouts={n_rollouts}) per question for "
                f"{len(questions)} (>= 1) questions, got {len(texts)}"
            )
        # a sharpened policy repeats a few texts
        parsed = {t: parse(t) for t in dict.fromkeys(texts)}
        rows = [q for q in questions for _ in range(size)]
        keep = trained_rows(len(questions), size, n_rollouts)
        return cls(rows, [parsed[t] for t in texts], list(texts), size, keep)

    @property
    def n_rollouts(self) -> int:
        """Trained rows per question (the GRPO group size)."""
        return len(self.keep) * self.size // len(self.questions)

    def trained(self) -> tuple[list[Question], list[str | None], list[str]]:
        """The trained rows' questions, answers and texts, ``(B,)`` each, row ``i`` answering question
        ``i // n_rollouts``."""
        keep = self.keep.tolist()
        return (
            [self.questions[i] for i in keep],
            [self.answers[i] for i in keep],
            [self.texts[i] for i in keep],
        )


# ----------------------------------------------------------------------------------------------------------
# a step's metrics
# ----------------------------------------------------------------------------------------------------------


def grade(task: Task, questions: Sequence[Question], answers: Sequence[str | None]) -> np.ndarray:
    """Ground truth ``task.check(q, a)`` per row as a float array ``(B,)``, each distinct (question, answer)
    pair graded once (a group's samples mostly repeat a few answers)."""
    if len(questions) != len(answers):
        raise ValueError(f"answers: expected {len(questions)}, got {len(answers)}")
    seen: dict[tuple[str, str | None], float] = {}
    for q, a in zip(questions, answers, strict=True):
        if (q.qid, a) not in seen:
            seen[q.qid, a] = float(task.check(q, a))
    return np.array([seen[q.qid, a] for q, a in zip(questions, answers, strict=True)])


def step_metrics(
    task: Task,
    questions: Sequence[Question],
    answers: Sequence[str | None],
    rewards: np.ndarray,
    correct: np.ndarray,
    *,
    n: int,
    mask: np.ndarray,
    token_entropy_sum: float,
    sequence_logprob: np.ndarray | None = None,
    votes: Sequence[str | None] | None = None,
) -> dict[str, float]:
    """Batch metrics of one step (TTRL's metric names; docs/metrics.md).

    ``questions, answers, rewards (B,), correct (B,)`` row by row, rows grouped in consecutive blocks of ``n``;
    ``mask (B, T)`` the response tokens; ``token_entropy_sum`` the summed token entropy over them;
    ``sequence_logprob (B,)`` (probability reward only) the summed log-probabilities, for the underflow share.
    A binary reward is graded as TTRL's proxy label; a continuous one adds ``pseudo_label_acc`` and the
    point-biserial correlation with the ground truth.

    ``votes`` (V,): the answers of every sample that voted, ``V / G`` consecutive per question in the order of
    the ``G`` groups (the trained rows being a subset of them); the metrics of the vote -- ``majority_ratio``
    and ``label_accuracy`` (whether the majority answer, the pseudo-label, is correct) -- then describe all of
    them; the rest describe the trained rows. With ``votes == answers`` the result is the same as without.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.shape != (len(questions),) or len(answers) != len(questions) or len(questions) % n:
        raise ValueError(f"rewards, answers: need one per question in whole groups of n={n}")
    n_groups = len(questions) // n
    if votes is not None and (len(votes) < len(questions) or len(votes) % n_groups):
        raise ValueError(
            f"votes: need the same number (>= n={n}) per question for {n_groups} questions, got {len(votes)}"
        )
    groups = [i // n for i in range(len(questions))]
    binary = bool(np.isin(rewards, (0.0, 1.0)).all())
    out = M.ttrl_metrics(
        answers,
        list(questions),  # a question is its own label: task.check grades an answer against it
        groups,
        proxy_rewards=rewards if binary else None,
        correct=correct,
        equivalent=_checker(task),
    )
    # the vote's own metrics, over all of its samples; when the vote is the trained rows themselves
    # (n_votes = n_rollouts), ttrl_metrics' values are already those (the same vote, the same mean)
    if votes is not None and list(votes) != list(answers):
        m = len(votes) // n_groups
        blocks = [list(votes[g * m : (g + 1) * m]) for g in range(n_groups)]
        label = [questions[g * n] for g in range(n_groups)]
        agree = [M.label_accuracy(b, q, _checker(task)) for b, q in zip(blocks, label, strict=True)]
        out["label_accuracy"] = float(np.asarray(agree, dtype=np.float64).mean())
        out["majority_ratio"] = float(np.asarray([M.majority_ratio(b) for b in blocks]).mean())
    if not binary:
        out["majority_voting_reward"] = M.majority_voting_reward(rewards)
        out["pseudo_label_acc"] = M.pseudo_label_acc(rewards, correct, groups)
        out["point_biserial"] = M.point_biserial(rewards, correct)
    if sequence_logprob is not None:
        out["underflow_fraction"] = M.underflow_fraction(sequence_logprob)
    out.update(
        reward_mean=float(rewards.mean()),
        reward_std=float(rewards.std()),
        frac_reward_zero_std=float((rewards.reshape(-1, n).std(-1) == 0).mean()),
        entropy=token_entropy_sum / float(mask.sum()),
        response_length=M.response_length(mask),
    )
    return out


def _checker(task: Task):
    """``task.check`` as a bool-valued equivalence ``(question, answer) -> bool``."""
    return lambda q, a: bool(task.check(q, a))


def batch_metrics(
    task: Task,
    vote: Vote,
    rewards: np.ndarray,
    correct: np.ndarray,
    *,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    eos_id: int,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor | None,
    entropy_sum: float,
    sequence_reward: bool = False,
) -> dict[str, float]:
    """Every batch metric of one step but the optimiser's: :func:`step_metrics` of the trained rows of ``vote``
    (``rewards``, ``correct`` (B,)) and of the whole vote, ``kl_to_initial`` (the k3 KL of ``logprobs`` to
    ``ref_logprobs``, token mean, when there is an initial policy) and
    :func:`empirical.behaviour.behaviour_metrics`.

    ``tokens, mask (B, T)`` the trained responses, ``logprobs, ref_logprobs (B, T)`` the sampled tokens'
    log-probabilities under the sampling and the initial policy, ``entropy_sum`` their token entropy summed
    over ``mask``; ``sequence_reward``: the reward is a sequence probability (the underflow share of the summed
    log-probabilities is logged).
    """
    questions, answers, texts = vote.trained()
    n = vote.n_rollouts
    seq_logp = (logprobs * mask).sum(-1).double().cpu().numpy() if sequence_reward else None
    out = step_metrics(task, questions, answers, rewards, correct, n=n, mask=mask.cpu().numpy(),
                       token_entropy_sum=entropy_sum, sequence_logprob=seq_logp, votes=vote.answers)  # fmt: skip
    if ref_logprobs is not None:
        from sharpen.grpo import kl_k3, masked_mean  # torch: only where a model's log-probs are

        out["kl_to_initial"] = float(masked_mean(kl_k3(logprobs, ref_logprobs), mask))
    out.update(behaviour_metrics(  # length, repetition, parse rate, distinct answers, sequence KL
        tokens, answers, n=n, mask=mask, eos_id=eos_id,
        logprobs=logprobs if ref_logprobs is not None else None, ref_logprobs=ref_logprobs,
        implied_answers=[task.implied(t) for t in texts] if task.implied else None))  # fmt: skip
    return out


def probe_records(
    task: Task,
    questions: Sequence[Question],
    texts: Sequence[str],
    *,
    m: int,
    step: int,
    initial_majority: Mapping[str, str | None],
    exact: AnswerSummary | None = None,
) -> list[ProbeRecord]:
    """Per probe question (``m`` consecutive texts each), its :func:`sharpen.records.probe_record`: the majority
    answer and its share, the share of the *initial* majority answer ``initial_majority[qid]`` (this step's own
    majority when absent), correctness by ``task.check``; with ``exact`` (the questions' exact answer
    distributions, in the same order) the ``exact_*`` fields too.
    """
    if len(texts) != m * len(questions):
        raise ValueError(
            f"texts: expected {m} per question ({m * len(questions)}), got {len(texts)}"
        )
    return [
        probe_record(
            step,
            q.qid,
            [task.parse(t) for t in texts[i * m : (i + 1) * m]],
            initial=initial_majority.get(q.qid, UNSET),
            label=q.label,
            grade=lambda a, q=q: bool(task.check(q, a)),
            exact=None if exact is None else _exact_fields(exact, i),
        )
        for i, q in enumerate(questions)
    ]


def _exact_fields(s: AnswerSummary, i: int) -> dict:
    """The ``exact_*`` fields of :class:`~sharpen.records.ProbeRecord` for question ``i`` of ``s``."""
    return {
        "exact_majority_answer": s.answer(int(s.majority[i])),
        "exact_p_majority": float(s.p_majority[i]),
        "exact_initial_majority_answer": s.answer(int(s.initial_majority[i])),
        "exact_p_initial_majority": float(s.p_initial_majority[i]),
        "exact_residual": float(s.residual[i]),
        "exact_entropy": float(s.entropy[i]),
        "exact_accuracy": None if s.accuracy is None else float(s.accuracy[i]),
        "exact_vote_mode_prob": None if s.vote_mode_prob is None else float(s.vote_mode_prob[i]),
    }


def stratified_probes(p0: np.ndarray, n: int, low: float = 0.2, high: float = 0.95) -> np.ndarray:
    """Indices of ``n`` questions whose initial majority probabilities ``p0`` spread evenly (by rank) over
    ``(low, high)``; when fewer lie inside, all of those plus the nearest outside ones. Sorted ascending.

    >>> stratified_probes(np.array([0.1, 0.3, 0.5, 0.99, 0.7, 0.9]), 3).tolist()
    [1, 4, 5]
    """
    p0 = np.asarray(p0, dtype=np.float64)
    n = min(int(n), p0.size)
    inside = np.flatnonzero((p0 > low) & (p0 < high))
    if inside.size >= n:
        ranked = inside[np.argsort(p0[inside], kind="stable")]
        pick = ranked[np.round(np.linspace(0, ranked.size - 1, n)).astype(int)]
    else:
        distance = np.maximum(low - p0, 0) + np.maximum(p0 - high, 0)
        pick = np.argsort(distance, kind="stable")[:n]
    return np.sort(pick)


def heldout_metrics(
    task: Task,
    questions: Sequence[Question],
    texts: Sequence[str],
    *,
    k: int,
    greedy_texts: Sequence[str] | None = None,
    responses: Sequence[Sequence[int]] | None = None,
    eos_id: int | None = None,
    label_probs: np.ndarray | None = None,
) -> dict[str, float]:
    """Held-out ``avg@k`` (mean correctness of ``k`` consecutive texts per question; also as ``accuracy``,
    :data:`sharpen.records.HELDOUT_ACCURACY`, the name readers read), ``maj@k`` (correctness of their majority
    answer) and, given one greedy text per question, ``greedy_accuracy``; given the texts' token ids
    ``responses``, their :func:`empirical.behaviour.behaviour_metrics`; given each question's label probability
    ``label_probs (Q,)`` (exact, at the rollout temperature), its mean ``exact_accuracy`` and the standard error
    over questions ``exact_accuracy_se`` (NaN for one question)."""
    if len(texts) != k * len(questions) or not questions:
        raise ValueError(f"texts: expected {k} per question for {len(questions)} (>= 1) questions")
    answers = [task.parse(t) for t in texts]
    rows = [q for q in questions for _ in range(k)]
    out = {
        f"avg@{k}": float(np.mean([task.check(q, a) for q, a in zip(rows, answers, strict=True)])),
        f"maj@{k}": float(
            np.mean(
                [
                    task.check(q, majority_vote(answers[i * k : (i + 1) * k]).answer)
                    for i, q in enumerate(questions)
                ]
            )
        ),
        "n_questions": len(questions),
    }
    out[HELDOUT_ACCURACY] = out[f"avg@{k}"]
    if greedy_texts is not None:
        out["greedy_accuracy"] = float(
            np.mean([task.correct(q, t) for q, t in zip(questions, greedy_texts, strict=True)])
        )
    if responses is not None:
        implied = [task.implied(t) for t in texts] if task.implied else None
        out.update(
            behaviour_metrics(responses, answers, n=k, eos_id=eos_id, implied_answers=implied)
        )
    if label_probs is not None:
        p = np.asarray(label_probs, dtype=np.float64)
        out["exact_accuracy"] = float(p.mean())
        out["exact_accuracy_se"] = (
            float(p.std(ddof=1) / math.sqrt(p.size)) if p.size > 1 else math.nan
        )
    return out


def run_header(cfg: TrainConfig, model_path: str, n_questions: int) -> RunHeader:
    """The :class:`sharpen.records.RunHeader` of a ``sharpen train`` run: ``cfg``'s settings, the resolved initial
    policy ``model_path`` (for the tiny model, its pretrained folder: it names the prior) and the number of
    training questions; AdamW, one pass over each batch (mini-batches split it, they do not repeat it)."""
    return RunHeader(
        kind="empirical",
        reward=cfg.reward,
        lr=cfg.lr,
        n_rollouts=cfg.n_rollouts,
        clip_eps=cfg.clip_eps,
        seed=cfg.seed,
        model=str(model_path),
        task=cfg.task,
        steps=cfg.steps,
        batch_size=cfg.rollout_batch_size // cfg.n_rollouts,
        epochs=1,
        optimizer="adamw",
        kl_coef=cfg.kl_coef,
        n_questions=n_questions or None,
    )
