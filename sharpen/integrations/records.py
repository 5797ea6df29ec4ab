r"""Per-question probe records from sampled answers -- what ``sharpen fit`` fits Theorem 1 to.

Both engines produce, for some question at some step, M sampled answers. :func:`probe_records` turns them into
:class:`sharpen.records.ProbeRecord` rows: the plurality answer now, its share, and the share of the answer that
was the plurality the *first* time the question was seen (:math:`p_k` of Theorem 1, measured against the initial
majority :math:`\mathrm{maj}_0`). The vote follows TTRL's rule (:func:`sharpen.answers.majority_vote`):
unparseable answers do not vote but stay in M.

>>> recs, initial = probe_records(0, ["q1"] * 4, ["3", "3", "5", None], labels=["3"] * 4)
>>> recs[0].majority_answer, recs[0].p_majority, recs[0].sample_accuracy
('3', 0.5, 0.5)
>>> recs, _ = probe_records(5, ["q1"] * 4, ["5", "5", "5", "3"], initial=initial)
>>> recs[0].initial_majority_answer, recs[0].p_initial_majority
('3', 0.25)

A resumed run must keep measuring against the *first* majority, not the one at the checkpoint:
:func:`initial_majorities` recovers ``initial`` from the ``probes.jsonl`` rows already written.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence

from sharpen.answers import canonicalize, equivalent, majority_vote
from sharpen.records import ProbeRecord
from sharpen.rewards import group_indices

__all__ = ["initial_majorities", "probe_records"]


def _key(answer: Hashable | None) -> Hashable | None:
    return canonicalize(answer) if isinstance(answer, str) else answer


def _text(answer: Hashable | None) -> str | None:
    return None if answer is None else str(answer)


def probe_records(
    step: int,
    question_ids: Sequence[Hashable],
    answers: Sequence[Hashable | None],
    labels: Sequence[Hashable | None] | None = None,
    *,
    initial: Mapping[str, str | None] | None = None,
    math_verify: bool = False,
) -> tuple[list[ProbeRecord], dict[str, str | None]]:
    """One :class:`~sharpen.records.ProbeRecord` per question in a batch of sampled answers.

    Parameters
    ----------
    step : int >= 0
        Training step of the samples.
    question_ids : (B,) hashables
        Question of each sample; the samples of one question form its group (first-seen order).
    answers : (B,) extracted answers, None = unparseable
    labels : (B,) ground truth of each sample's question, or None (measurement only)
    initial : mapping question id -> initial majority answer, from earlier calls (None = first call)
    math_verify : grade with Math-Verify's symbolic fallback

    Returns
    -------
    records : list of ProbeRecord, one per question
    initial : dict, ``initial`` updated with the questions seen for the first time
    """
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"step: must be an int >= 0, got {step!r}")
    qids = list(question_ids.tolist() if hasattr(question_ids, "tolist") else question_ids)
    answers = list(answers)
    if len(qids) != len(answers) or not qids:
        raise ValueError(
            f"question_ids, answers: need equal, non-zero lengths, got {len(qids)} and {len(answers)}"
        )
    if labels is not None:
        labels = list(labels.tolist() if hasattr(labels, "tolist") else labels)
        if len(labels) != len(answers):
            raise ValueError(f"labels: expected length {len(answers)}, got {len(labels)}")
    known = dict(initial or {})
    records = []
    for idx in group_indices(qids, len(qids)):
        qid = str(qids[idx[0]])
        group = [answers[i] for i in idx]
        vote = majority_vote(group)
        majority = _text(vote.answer)
        if qid not in known:
            known[qid] = majority
        first = known[qid]
        keys = [_key(a) for a in group]
        first_key = _key(first)
        p_first = 0.0 if first_key is None else sum(k == first_key for k in keys) / len(group)
        label = majority_correct = sample_accuracy = None
        if labels is not None and labels[idx[0]] is not None:
            label = str(labels[idx[0]])
            majority_correct = bool(equivalent(label, majority, math_verify=math_verify))
            sample_accuracy = sum(
                equivalent(label, _text(a), math_verify=math_verify) for a in group
            ) / len(group)
        records.append(
            ProbeRecord(
                step=step,
                question_id=qid,
                n_samples=len(group),
                majority_answer=majority,
                p_majority=vote.ratio,
                initial_majority_answer=first,
                p_initial_majority=p_first,
                label=label,
                majority_correct=majority_correct,
                sample_accuracy=sample_accuracy,
            )
        )
    return records, known


def initial_majorities(rows: Iterable[Mapping[str, object]]) -> dict[str, str | None]:
    """Initial majority of each question from probe rows already written (``probes.jsonl``, as dicts).

    The value of a question is the ``initial_majority_answer`` of its earliest-step row -- what
    :func:`probe_records` fixed the first time it saw the question, and must keep using after a resume. Rows
    without an integer ``step`` or a ``question_id`` are ignored.

    >>> initial_majorities([{"step": 4, "question_id": "q1", "initial_majority_answer": "3"},
    ...                     {"step": 0, "question_id": "q1", "initial_majority_answer": "3"},
    ...                     {"step": 0, "question_id": "q2", "initial_majority_answer": None}])
    {'q1': '3', 'q2': None}
    """
    first: dict[str, tuple[int, str | None]] = {}
    for row in rows:
        step, qid = row.get("step"), row.get("question_id")
        if not isinstance(step, int) or isinstance(step, bool) or qid is None:
            continue
        answer = row.get("initial_majority_answer")
        answer = None if answer is None else str(answer)
        if str(qid) not in first or step < first[str(qid)][0]:
            first[str(qid)] = (step, answer)
    return {qid: answer for qid, (_, answer) in first.items()}
