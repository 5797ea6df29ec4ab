r"""Run records from TRL and veRL: per-question probe records, and a resume that keeps them exact.

Both engines produce, for some question at some step, M sampled answers; :func:`probe_records` (the one
builder, :func:`sharpen.records.probe_record`, applied per question) turns them into
:class:`sharpen.records.ProbeRecord` rows: the plurality answer now, its share, and the share of the answer that
was the plurality the *first* time the question was seen (:math:`p_k` of Theorem 1, measured against the initial
majority :math:`\mathrm{maj}_0`).

>>> recs, initial = probe_records(0, ["q1"] * 4, ["3", "3", "5", None], labels=["3"] * 4)
>>> recs, _ = probe_records(5, ["q1"] * 4, ["5", "5", "5", "3"], initial=initial)
>>> recs[0].initial_majority_answer, recs[0].p_initial_majority
('3', 0.25)

A resumed run must measure against the *first* majority, not the one at the checkpoint, and must not keep what
an interrupted run logged after its last checkpoint: :func:`resume_run` truncates the run folder to the
checkpoint's step and reloads the initial majorities from the ``probes.jsonl`` rows that remain, so the records
of a resumed run equal those of an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

from sharpen.records import PROBES_FILE, RunWriter, initial_majorities, probe_records, read_jsonl

__all__ = ["ResumedRecords", "initial_majorities", "probe_records", "resume_run"]


@dataclass(frozen=True)
class ResumedRecords:
    """What a resumed writer continues from (:func:`resume_run`).

    Attributes
    ----------
    step : the checkpoint's step
    initial : question id -> initial majority answer, from the earliest probe row of each question
    probed : the steps that have probe rows (all <= ``step``)
    """

    step: int
    initial: dict[str, str | None]
    probed: frozenset[int]


def resume_run(writer: RunWriter, step: int) -> ResumedRecords:
    """Make ``writer``'s run folder what it was at checkpoint ``step`` and return the state to continue from.

    Records after ``step`` are dropped from every log (:meth:`sharpen.records.RunWriter.truncate_after`: an
    interrupted run may have logged past its last checkpoint, and the resumed run logs those steps again), then
    the initial majorities are read back from the probe rows that remain
    (:func:`sharpen.records.initial_majorities`) -- never recomputed from the checkpoint's policy.

    >>> import tempfile
    >>> w = RunWriter(tempfile.mkdtemp())
    >>> for step, answers in ((0, ["3", "3", "5"]), (4, ["5", "5", "5"])):
    ...     w.log_probes(probe_records(step, ["q"] * 3, answers, initial={"q": "3"})[0])
    >>> state = resume_run(w, 2)
    >>> state.initial, sorted(state.probed)
    ({'q': '3'}, [0])
    """
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"step: must be an int >= 0, got {step!r}")
    writer.truncate_after(step)
    path = writer.run_dir / PROBES_FILE
    rows = read_jsonl(path)[0] if path.exists() else []
    probed = frozenset(int(r["step"]) for r in rows if isinstance(r.get("step"), int))
    return ResumedRecords(step=step, initial=initial_majorities(rows), probed=probed)
