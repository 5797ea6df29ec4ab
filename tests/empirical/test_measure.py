"""empirical.measure without a model: the probe records (through the one builder, sharpen.records.probe_record)
against plain counting, the held-out accuracy under the name every writer uses, and the run header."""

from __future__ import annotations

import numpy as np

from empirical.config import preset
from empirical.measure import heldout_metrics, probe_records, run_header
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
