"""What a run records, computed from parsed answers and rewards (no model here): the per-step batch metrics
under TTRL's names, the per-question probe records that Theorem 1 is fitted to, and held-out accuracy.

>>> from empirical.tasks import arithmetic_task
>>> task = arithmetic_task(n_train=2, n_heldout=1, seed=0)
>>> q = task.heldout[0]
>>> heldout_metrics(task, [q], [q.label, "x", q.label, q.label], k=4)["avg@4"]
0.75
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from empirical.tasks import Question, Task
from sharpen import metrics as M
from sharpen.answers import canonicalize, majority_vote
from sharpen.exact import AnswerSummary
from sharpen.records import ProbeRecord


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
) -> dict[str, float]:
    """Batch metrics of one step (TTRL's metric names; docs/metrics.md).

    ``questions, answers, rewards (B,), correct (B,)`` row by row, rows grouped in consecutive blocks of ``n``;
    ``mask (B, T)`` the response tokens; ``token_entropy_sum`` the summed token entropy over them;
    ``sequence_logprob (B,)`` (probability reward only) the summed log-probabilities, for the underflow share.
    A binary reward is graded as TTRL's proxy label; a continuous one adds ``pseudo_label_acc`` and the
    point-biserial correlation with the ground truth.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.shape != (len(questions),) or len(answers) != len(questions) or len(questions) % n:
        raise ValueError(f"rewards, answers: need one per question in whole groups of n={n}")
    groups = [i // n for i in range(len(questions))]
    binary = bool(np.isin(rewards, (0.0, 1.0)).all())
    out = M.ttrl_metrics(
        answers,
        list(questions),  # a question is its own label: task.check grades an answer against it
        groups,
        proxy_rewards=rewards if binary else None,
        correct=correct,
        equivalent=lambda q, a: bool(task.check(q, a)),
    )
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
    """Per probe question (``m`` consecutive texts each): the majority answer and its share, the share of the
    *initial* majority answer ``initial_majority[qid]`` (this step's own majority when absent) and correctness;
    with ``exact`` (the questions' exact answer distributions, in the same order) the ``exact_*`` fields too.
    """
    if len(texts) != m * len(questions):
        raise ValueError(
            f"texts: expected {m} per question ({m * len(questions)}), got {len(texts)}"
        )
    records = []
    for i, q in enumerate(questions):
        answers = [task.parse(t) for t in texts[i * m : (i + 1) * m]]
        vote = majority_vote(answers)
        initial = initial_majority.get(q.qid, vote.answer)
        share = sum(canonicalize(a) == initial for a in answers) / m if initial is not None else 0.0
        records.append(
            ProbeRecord(
                step=step,
                question_id=q.qid,
                n_samples=m,
                majority_answer=vote.answer,
                p_majority=vote.ratio,
                initial_majority_answer=initial,
                p_initial_majority=share,
                label=q.label,
                majority_correct=bool(task.check(q, vote.answer)),
                sample_accuracy=float(np.mean([task.check(q, a) for a in answers])),
                **({} if exact is None else _exact_fields(exact, i)),
            )
        )
    return records


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
) -> dict[str, float]:
    """Held-out ``avg@k`` (mean correctness of ``k`` consecutive texts per question), ``maj@k`` (correctness of
    their majority answer) and, given one greedy text per question, ``greedy_accuracy``."""
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
    if greedy_texts is not None:
        out["greedy_accuracy"] = float(
            np.mean([task.correct(q, t) for q, t in zip(questions, greedy_texts, strict=True)])
        )
    return out
