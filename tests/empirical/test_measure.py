"""empirical.measure without a model: the probe records (through the one builder, sharpen.records.probe_record)
against plain counting, the held-out accuracy under the name every writer uses (with the behaviour and exact
accuracy it adds), a step's vote and its trained rows, and the run header."""

from __future__ import annotations

import numpy as np
import pytest

from empirical.behaviour import behaviour_metrics
from empirical.config import preset
from empirical.measure import Vote, heldout_metrics, probe_records, run_header, trained_rows
from empirical.tasks import arithmetic_task
from sharpen.answers import canonicalize, majority_vote
from sharpen.records import HELDOUT_ACCURACY, ProbeRecord, RunHeader

TASK = arithmetic_task(n_train=6, n_heldout=3, seed=0)


def reference(task, questions, texts, m, step, initial_majority):
    """The record of each probe question by plain counting over its m texts."""
    out = []
    for i, q in enumerate(questions):
        answers = [task.parse(t) for t in texts[i * m : (i + 1) * m]]
        vote = majority_vote(answers)
        initial = initial_majority.get(q.qid, vote.answer)
        share = 0.0 if initial is None else sum(canonicalize(a) == initial for a in answers) / m
        out.append(ProbeRecord(step, q.qid, m, vote.answer, vote.ratio, initial, share, q.label,
                               bool(task.check(q, vote.answer)),
                               float(np.mean([task.check(q, a) for a in answers]))))  # fmt: skip
    return out


def test_probe_records_equal_plain_counting():
    rng = np.random.default_rng(0)
    questions = TASK.train[:4]
    m = 6
    initial: dict = {}
    for step in (0, 5, 10):
        pool = [[q.label, str(int(q.label) + 1), "x", ""] for q in questions]
        texts = [str(rng.choice(pool[i])) for i in range(len(questions)) for _ in range(m)]
        got = probe_records(TASK, questions, texts, m=m, step=step, initial_majority=initial)
        assert got == reference(TASK, questions, texts, m, step, initial)
        for r in got:
            initial.setdefault(r.question_id, r.initial_majority_answer)


def test_heldout_accuracy_is_avg_at_k():
    q = TASK.heldout[0]
    out = heldout_metrics(TASK, [q], [q.label, "x", q.label, q.label], k=4)
    assert out[HELDOUT_ACCURACY] == out["avg@4"] == 0.75


def test_heldout_metrics_add_behaviour_and_the_exact_accuracy_with_its_standard_error():
    questions = list(TASK.heldout[:3])
    texts = [q.label for q in questions for _ in range(2)]
    texts[1] = "x"
    responses = [[5] * (i % 3 + 1) + [2] for i in range(6)]
    p = np.array([0.9, 0.5, 0.1])
    plain = heldout_metrics(TASK, questions, texts, k=2)
    out = heldout_metrics(TASK, questions, texts, k=2, responses=responses, eos_id=2, label_probs=p)
    behaviour = behaviour_metrics(responses, [TASK.parse(t) for t in texts], n=2, eos_id=2)
    assert out == {**plain, **behaviour, "exact_accuracy": 0.5,
                   "exact_accuracy_se": float(np.std(p, ddof=1) / np.sqrt(3))}  # fmt: skip
    one = heldout_metrics(TASK, questions[:1], texts[:2], k=2, label_probs=np.array([0.3]))
    assert one["exact_accuracy"] == 0.3 and np.isnan(one["exact_accuracy_se"])


def test_vote_of_parses_each_text_once_and_trains_on_the_first_rows_of_each_question():
    questions = list(TASK.train[:2])
    texts = [questions[0].label, "x", questions[0].label, "7", "7", "8"]  # 3 samples per question
    calls = []

    def parse(text):
        calls.append(text)
        return TASK.parse(text)

    vote = Vote.of(questions, texts, parse, n_rollouts=2)
    assert sorted(calls) == sorted(set(texts))  # each distinct text parsed once
    assert vote.size == 3 and vote.n_rollouts == 2
    assert vote.questions == [questions[0]] * 3 + [questions[1]] * 3
    assert vote.answers == [TASK.parse(t) for t in texts] and vote.texts == texts
    assert vote.keep.tolist() == trained_rows(2, 3, 2).tolist() == [0, 1, 3, 4]
    rows, answers, trained_texts = vote.trained()
    assert rows == [questions[0]] * 2 + [questions[1]] * 2
    assert answers == [vote.answers[i] for i in (0, 1, 3, 4)]
    assert trained_texts == [texts[i] for i in (0, 1, 3, 4)]
    for questions_, texts_, n in ((questions, texts[:5], 2), (questions, texts, 4), ([], [], 1)):
        with pytest.raises(ValueError, match="texts: need the same number"):
            Vote.of(questions_, texts_, parse, n_rollouts=n)


def test_run_header_of_a_preset():
    cfg = preset("tiny-arith-ttrl")
    h = run_header(cfg, "/cache/tiny", 200)
    assert h == RunHeader(
        "empirical", reward=cfg.reward, lr=cfg.lr, n_rollouts=cfg.n_rollouts, clip_eps=cfg.clip_eps,
        seed=cfg.seed, model="/cache/tiny", task=cfg.task, steps=cfg.steps,
        batch_size=cfg.rollout_batch_size // cfg.n_rollouts, epochs=1, optimizer="adamw", kl_coef=cfg.kl_coef,
        n_questions=200,
    )  # fmt: skip
    assert run_header(cfg, "/cache/tiny", 0).n_questions is None
