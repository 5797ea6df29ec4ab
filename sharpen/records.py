"""Run records: the on-disk format every sharpen run writes and every analysis reads.

A *run folder* holds plain, append-only files, so a killed run loses at most the line being written and any
tool (``pandas.read_json(path, lines=True)``) reads them in one line:

==================  =================================================================================
``config.json``     ``{"kind": ..., "header": RunHeader, <the writer's resolved configuration>}``: the
                    typed :class:`RunHeader` (kind, reward, lr, N, clip, seed, model, task ...) that
                    readers use, beside the writer's own configuration (:meth:`RunWriter.write_config`)
``env.json``        the environment: package versions, device, command line
``metrics.jsonl``   one record per training step: ``{"step": int, <metric name>: float, ...}``, under the
                    names of :data:`METRICS` (TTRL's: ``label_accuracy``, ``reward_accuracy``, ...)
``probes.jsonl``    one record per probe question per probe step (:class:`ProbeRecord`, built by
                    :func:`probe_record`): the per-question majority-probability trajectories that
                    Theorem 1 is fitted to
``eval.jsonl``      one record per held-out evaluation: ``{"step": int, "split": str, "accuracy": float,
                    <other metrics>}`` (:data:`HELDOUT_ACCURACY`)
==================  =================================================================================

Writers append and flush line by line; ``config.json`` and rewritten logs are replaced atomically and fsync'd.
The readers skip a truncated, corrupt or invalid line instead of failing, so the readable part of a killed run is
still used: :func:`read_jsonl` counts them, :func:`read_log` (used by :func:`load_run`) names each by file and
line. :meth:`RunWriter.truncate_after` drops records past a checkpoint's step, which is what makes a resumed run's
logs identical to an uninterrupted one.

Readers never search a writer's configuration: they read ``Run.header`` and the metric names below. A folder
written before the header existed still loads: :func:`load_run` reconstructs its header, and its older metric
and held-out names, once, from the old layout (:func:`header_of`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import numpy as np

from sharpen.answers import canonicalize, equivalent, majority_vote

CONFIG_FILE = "config.json"
ENV_FILE = "env.json"
METRICS_FILE = "metrics.jsonl"
PROBES_FILE = "probes.jsonl"
EVAL_FILE = "eval.jsonl"
LOG_FILES = (METRICS_FILE, PROBES_FILE, EVAL_FILE)

# ----------------------------------------------------------------------------------------------------------------
# metric names: what every writer logs and what `sharpen fit` and the figures read
# ----------------------------------------------------------------------------------------------------------------

REWARD_ACCURACY = "reward_accuracy"
LABEL_ACCURACY = "label_accuracy"
MAJORITY_RATIO = "majority_ratio"
GROUND_TRUTH_RATIO = "ground_truth_ratio"
MAJORITY_REWARD = "majority_voting_reward"
ENTROPY = "entropy"
RESPONSE_LENGTH = "response_length"
KL = "kl_to_initial"
HELDOUT_ACCURACY = "accuracy"

METRICS: dict[str, str] = {
    REWARD_ACCURACY: "share of rollouts whose proxy reward equals their ground-truth reward (the Model "
    "Collapse Step is read from it)",
    LABEL_ACCURACY: "share of prompts whose majority answer is correct",
    MAJORITY_RATIO: "mean share of a group's majority answer (unparseable answers in the denominator)",
    GROUND_TRUTH_RATIO: "share of correct rollouts (training accuracy)",
    MAJORITY_REWARD: "mean training (proxy) reward of the batch, whatever the reward (TTRL's name)",
    ENTROPY: "mean token entropy of the responses (nats)",
    RESPONSE_LENGTH: "mean response length (tokens)",
    KL: "KL divergence of the policy to the initial policy, per token",
    HELDOUT_ACCURACY: "eval.jsonl: held-out accuracy of one sample (avg@k), per split",
}
"""The metric names of ``metrics.jsonl`` (and, for :data:`HELDOUT_ACCURACY`, ``eval.jsonl``) that readers use,
with their meaning. Writers log these names (and may log others beside them)."""


# ----------------------------------------------------------------------------------------------------------------
# the probe record and its one builder
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeRecord:
    """One probe question at one step: what Theorem 1 is fitted to.

    Attributes
    ----------
    step : int
        Training step at which the probe was taken (0 = before any update).
    question_id : str
        Stable identifier of the question.
    n_samples : int
        Number of samples M drawn for this probe.
    majority_answer : str | None
        Plurality answer of the M samples now (None if nothing parsed).
    p_majority : float
        Share of the M samples giving ``majority_answer`` (unparseable samples count in M).
    initial_majority_answer : str | None
        Plurality answer at step 0 (the answer Theorem 1 predicts the policy locks onto).
    p_initial_majority : float
        Share of the M samples giving ``initial_majority_answer`` -- the trajectory p_k of Theorem 1.
    label : str | None
        Ground-truth answer, for measurement only.
    majority_correct : bool | None
        Whether ``majority_answer`` equals ``label``.
    sample_accuracy : float | None
        Share of the M samples that are correct (pass@1 estimate).
    exact_majority_answer, exact_p_majority, exact_initial_majority_answer, exact_p_initial_majority,
    exact_residual, exact_entropy, exact_accuracy, exact_vote_mode_prob : optional
        The exact answer distribution's summary where the task lists its answers
        (:func:`sharpen.exact.answer_summary`): the exact mode and its probability, the initial exact mode and
        its probability now (Theorem 1's :math:`p_k`, without sampling noise), the mass off the candidate
        list, the answer entropy, the expected accuracy of one sample and the probability that a vote of
        ``n_votes`` samples returns the mode. None when not computed (sampled probes only).
    """

    step: int
    question_id: str
    n_samples: int
    majority_answer: str | None
    p_majority: float
    initial_majority_answer: str | None
    p_initial_majority: float
    label: str | None = None
    majority_correct: bool | None = None
    sample_accuracy: float | None = None
    exact_majority_answer: str | None = None
    exact_p_majority: float | None = None
    exact_initial_majority_answer: str | None = None
    exact_p_initial_majority: float | None = None
    exact_residual: float | None = None
    exact_entropy: float | None = None
    exact_accuracy: float | None = None
    exact_vote_mode_prob: float | None = None

    # the fields that are probabilities or shares, so lie in [0, 1] (None: unknown)
    SHARES: ClassVar[tuple[str, ...]] = (
        "p_majority",
        "p_initial_majority",
        "sample_accuracy",
        "exact_p_majority",
        "exact_p_initial_majority",
        "exact_residual",
        "exact_accuracy",
        "exact_vote_mode_prob",
    )
    EXACT: ClassVar[tuple[str, ...]] = (
        "exact_majority_answer",
        "exact_p_majority",
        "exact_initial_majority_answer",
        "exact_p_initial_majority",
        "exact_residual",
        "exact_entropy",
        "exact_accuracy",
        "exact_vote_mode_prob",
    )

    def __post_init__(self) -> None:
        if self.n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {self.n_samples}")
        for name in self.SHARES:
            v = getattr(self, name)
            if v is not None and not (0.0 <= v <= 1.0):
                raise ValueError(f"{name} must lie in [0, 1], got {v}")


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
"""``initial`` of :func:`probe_record` when the question has no initial majority yet: this probe's own."""


def _text(answer: Hashable | None) -> str | None:
    return None if answer is None else str(answer)


def _key(answer: str | None) -> str | None:
    return None if answer is None else canonicalize(answer)


def probe_record(
    step: int,
    question_id: Hashable,
    answers: Sequence[Hashable | None],
    *,
    probs: Sequence[float] | None = None,
    n_samples: int | None = None,
    initial: str | None = UNSET,
    label: Hashable | None = None,
    grade: Callable[[str | None], bool] | None = None,
    math_verify: bool = False,
    exact: Mapping[str, Any] | None = None,
) -> ProbeRecord:
    r"""The :class:`ProbeRecord` of one question: the one builder of the record Theorem 1 is fitted to.

    Two kinds of probe, one rule:

    * **sampled** (``probs`` None): ``answers`` are the M sampled answers (None = unparseable). The majority is
      TTRL's plurality vote (:func:`sharpen.answers.majority_vote`: unparseable answers do not vote but stay
      in M, ties go to the answer seen first); shares are counts over M of the canonical answers
      (:func:`sharpen.answers.canonicalize`).
    * **exact** (``probs`` given): ``answers`` are K distinct answers and ``probs`` (K,) their probabilities
      under the policy (the mass off the list is unparseable); the majority is the most probable (ties to
      the first), shares are probabilities, and ``n_samples`` says how many samples the probe stands for.

    Parameters
    ----------
    step : int >= 0
    question_id : the question (written as a string)
    answers : (M,) sampled answers, or (K,) distinct answers with ``probs``
    probs : (K,) probabilities in [0, 1] of ``answers``, for an exact probe
    n_samples : M; default ``len(answers)`` (sampled); required with ``probs``
    initial : the question's initial majority answer :math:`\mathrm{maj}_0` (None: nothing parsed then);
        :data:`UNSET` (default) on its first probe, where this probe's majority becomes it
    label : ground truth, measurement only (None: correctness unknown unless ``grade`` is given)
    grade : answer -> bool, whether an answer is correct (default: :func:`sharpen.answers.equivalent` to
        ``label``, with ``math_verify``); called with None for an unparseable majority
    exact : the ``exact_*`` fields (:data:`ProbeRecord.EXACT`) of the question's exact answer distribution

    Returns
    -------
    ProbeRecord with ``p_initial_majority`` = share of :math:`\mathrm{maj}_0` -- Theorem 1's :math:`p_k`,
    ``sample_accuracy`` = share of correct answers, ``majority_correct`` = whether the majority is correct.

    >>> r = probe_record(0, "q1", ["3", "3", "5", None], label="3")
    >>> r.majority_answer, r.p_majority, r.sample_accuracy, r.initial_majority_answer
    ('3', 0.5, 0.5, '3')
    >>> probe_record(5, "q1", ["5", "5", "5", "3"], initial="3").p_initial_majority
    0.25
    >>> probe_record(0, "q2", ["0", "1", "2"], probs=[0.2, 0.5, 0.3], n_samples=10**6, label="2").p_majority
    0.5
    """
    if not isinstance(step, int | np.integer) or isinstance(step, bool) or step < 0:
        raise ValueError(f"step: must be an int >= 0, got {step!r}")
    texts = [_text(a) for a in answers]
    if not texts:
        raise ValueError("answers: empty")
    if grade is None and label is not None:
        gold = str(label)

        def grade(a: str | None) -> bool:
            return equivalent(gold, a, math_verify=math_verify)

    if probs is None:
        m = len(texts) if n_samples is None else int(n_samples)
        if m != len(texts):
            raise ValueError(
                f"n_samples: a sampled probe has one answer per sample, got {m} for {len(texts)}"
            )
        vote = majority_vote(texts)
        majority, p_majority = _text(vote.answer), vote.ratio
        keys = [_key(t) for t in texts]

        def share(answer: str | None) -> float:
            k = _key(answer)
            return 0.0 if k is None else sum(x == k for x in keys) / m

        def accuracy() -> float:
            graded: dict[str | None, bool] = {}
            for t in texts:
                if t not in graded:
                    graded[t] = bool(grade(t))
            return sum(graded[t] for t in texts) / m

    else:
        p = [float(x) for x in probs]
        if len(p) != len(texts) or len(set(texts)) != len(texts) or None in texts:
            raise ValueError("probs: need one probability per answer, and distinct, parsed answers")
        if n_samples is None:
            raise ValueError(
                "n_samples: required with probs (how many samples the exact probe stands for)"
            )
        m = int(n_samples)
        best = int(np.argmax(p))
        majority, p_majority = texts[best], p[best]
        prob = dict(zip(texts, p, strict=True))

        def share(answer: str | None) -> float:
            return prob.get(answer, 0.0)

        def accuracy() -> float:
            return sum(q for a, q in prob.items() if grade(a))

    first = majority if initial is UNSET else _text(initial)
    extra = dict(exact or {})
    bad = sorted(set(extra) - set(ProbeRecord.EXACT))
    if bad:
        raise ValueError(f"exact: not exact_* fields of ProbeRecord: {bad}")
    return ProbeRecord(
        step=int(step),
        question_id=str(question_id),
        n_samples=m,
        majority_answer=majority,
        p_majority=p_majority,
        initial_majority_answer=first,
        p_initial_majority=share(first),
        label=_text(label),
        majority_correct=None if grade is None else bool(grade(majority)),
        sample_accuracy=None if grade is None else accuracy(),
        **extra,
    )


def probe_records(
    step: int,
    question_ids: Sequence[Hashable],
    answers: Sequence[Hashable | None],
    labels: Sequence[Hashable | None] | None = None,
    *,
    initial: Mapping[str, str | None] | None = None,
    math_verify: bool = False,
) -> tuple[list[ProbeRecord], dict[str, str | None]]:
    """:func:`probe_record` for each question of a batch of sampled answers (TRL, veRL).

    Parameters
    ----------
    step : int >= 0
    question_ids : (B,) question of each sample; the samples of one question form its group (first-seen order)
    answers : (B,) extracted answers, None = unparseable
    labels : (B,) ground truth of each sample's question, or None (measurement only)
    initial : question id -> initial majority answer, from earlier calls (None = first call)
    math_verify : grade with Math-Verify's symbolic fallback

    Returns
    -------
    records : list of ProbeRecord, one per question
    initial : dict, ``initial`` updated with the questions seen for the first time

    >>> recs, initial = probe_records(0, ["q1"] * 4, ["3", "3", "5", None], labels=["3"] * 4)
    >>> recs[0].majority_answer, recs[0].p_majority, recs[0].sample_accuracy
    ('3', 0.5, 0.5)
    >>> recs, _ = probe_records(5, ["q1"] * 4, ["5", "5", "5", "3"], initial=initial)
    >>> recs[0].initial_majority_answer, recs[0].p_initial_majority
    ('3', 0.25)
    """
    qids = [
        str(q) for q in (question_ids.tolist() if hasattr(question_ids, "tolist") else question_ids)
    ]
    answers = list(answers)
    if len(qids) != len(answers) or not qids:
        raise ValueError(
            f"question_ids, answers: need equal, non-zero lengths, got {len(qids)} and {len(answers)}"
        )
    if labels is not None:
        labels = list(labels.tolist() if hasattr(labels, "tolist") else labels)
        if len(labels) != len(answers):
            raise ValueError(f"labels: expected length {len(answers)}, got {len(labels)}")
    groups: dict[str, list[int]] = {}
    for i, q in enumerate(qids):
        groups.setdefault(q, []).append(i)
    known = dict(initial or {})
    records = []
    for qid, rows in groups.items():
        label = None if labels is None else labels[rows[0]]
        rec = probe_record(step, qid, [answers[i] for i in rows], label=label,
                           initial=known.get(qid, UNSET), math_verify=math_verify)  # fmt: skip
        known.setdefault(qid, rec.initial_majority_answer)
        records.append(rec)
    return records, known


def initial_majorities(rows: Iterable[Mapping[str, object]]) -> dict[str, str | None]:
    """Initial majority of each question from probe rows already written (``probes.jsonl``, as dicts).

    The value of a question is the ``initial_majority_answer`` of its earliest-step row -- what
    :func:`probe_record` fixed the first time it saw the question, and what a resumed run must keep using. Rows
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
        answer = _text(row.get("initial_majority_answer"))
        if str(qid) not in first or step < first[str(qid)][0]:
            first[str(qid)] = (step, answer)
    return {qid: answer for qid, (_, answer) in first.items()}


# ----------------------------------------------------------------------------------------------------------------
# the run header: the typed contract between writers and readers
# ----------------------------------------------------------------------------------------------------------------

RunKind = Literal["empirical", "sim", "trl", "verl", "unknown"]
KINDS: tuple[str, ...] = get_args(RunKind)

_STR_FIELDS = ("reward", "model", "task", "optimizer")
_FLOAT_FIELDS = ("lr", "clip_eps", "kl_coef")  # finite, >= 0
# integer fields and their minimum
_INT_FIELDS = {
    "n_rollouts": 1,
    "seed": 0,
    "steps": 0,
    "batch_size": 1,
    "epochs": 1,
    "n_questions": 1,
}


@dataclass(frozen=True)
class RunHeader:
    """What a run was: written by every writer into ``config.json`` (``"header"``), read by every reader.

    Attributes
    ----------
    kind : "empirical" (``sharpen train``), "sim" (the simulator), "trl", "verl", or "unknown" (a folder whose
        writer did not say)
    reward : training reward, a registry name (``sharpen.rewards.available_rewards``)
    lr : learning rate
    n_rollouts : N, rollouts per prompt (the GRPO group size)
    clip_eps : PPO clip range
    seed : the run's seed
    model : the initial policy: hub id or folder (for a model sharpen pretrains, its folder: it names the prior)
    task : the task or dataset (for the simulator, the experiment)
    steps : training steps planned
    batch_size : prompts per step
    epochs : passes of the policy update over each batch of rollouts
    optimizer : optimizer name
    kl_coef : KL-loss coefficient (0 = no KL loss)
    n_questions : training questions

    Every field but ``kind`` may be None (unknown, or not a setting of this writer). Integers are checked
    (``n_rollouts``, ``batch_size``, ``epochs``, ``n_questions`` >= 1; ``seed``, ``steps`` >= 0), floats are
    finite and >= 0; a bad value raises ``ValueError`` naming the field.

    >>> h = RunHeader("empirical", reward="majority_voting", lr=3e-5, n_rollouts=8)
    >>> RunHeader.from_dict(h.to_dict()) == h, h.settings()
    (True, {'lr': 3e-05, 'n_rollouts': 8, 'reward': 'majority_voting'})
    """

    kind: RunKind
    reward: str | None = None
    lr: float | None = None
    n_rollouts: int | None = None
    clip_eps: float | None = None
    seed: int | None = None
    model: str | None = None
    task: str | None = None
    steps: int | None = None
    batch_size: int | None = None
    epochs: int | None = None
    optimizer: str | None = None
    kl_coef: float | None = None
    n_questions: int | None = None

    SETTINGS: ClassVar[tuple[str, ...]] = (
        "lr",
        "n_rollouts",
        "clip_eps",
        "batch_size",
        "epochs",
        "optimizer",
        "reward",
        "kl_coef",
    )
    """The settings that set the effective step size, in the order reports list them (:meth:`settings`)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: must be one of {KINDS}, got {self.kind!r}")
        for name in _STR_FIELDS + _FLOAT_FIELDS + tuple(_INT_FIELDS):
            value = getattr(self, name)
            problem = _field_problem(name, value)
            if problem:
                raise ValueError(f"{name}: {problem}, got {value!r}")
            if name in _FLOAT_FIELDS and value is not None:
                object.__setattr__(self, name, float(value))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (every field, None included)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> RunHeader:
        """The header :meth:`to_dict` wrote; ``ValueError`` for a field that is unknown, missing (``kind``) or bad."""
        if not isinstance(data, Mapping):
            raise ValueError(f"header: expected a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"header: unknown field(s) {unknown}")
        if "kind" not in data:
            raise ValueError("header: no kind")
        try:
            return cls(**data)
        except ValueError as err:
            raise ValueError(f"header.{err}") from None

    @classmethod
    def from_fields(cls, kind: str, values: Mapping[str, Any], **given: Any) -> RunHeader:
        """A header from the entries of ``values`` named like its fields that fit them (others are left out,
        e.g. a tuple of learning rates of a sweep), then ``given`` (checked).

        >>> RunHeader.from_fields("sim", {"lr": 0.1, "rewards": ("a", "b"), "n_rollouts": (4, 8)}, task="grid")
        RunHeader(kind='sim', reward=None, lr=0.1, n_rollouts=None, clip_eps=None, seed=None, model=None, task='grid', steps=None, batch_size=None, epochs=None, optimizer=None, kl_coef=None, n_questions=None)
        """
        names = _STR_FIELDS + _FLOAT_FIELDS + tuple(_INT_FIELDS)
        found = {n: values[n] for n in names if n in values and not _field_problem(n, values[n])}
        return cls(kind=kind, **{**found, **given})

    def settings(self) -> dict[str, Any]:
        """``{name: value}`` of the :data:`SETTINGS` that are known, in that order."""
        return {k: getattr(self, k) for k in self.SETTINGS if getattr(self, k) is not None}


def _field_problem(name: str, value: Any) -> str:
    """What is wrong with ``value`` for header field ``name`` ("" if nothing)."""
    if value is None:
        return ""
    if name in _STR_FIELDS:
        return "" if isinstance(value, str) else "must be a string or None"
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return "must be a number or None"
    if name in _FLOAT_FIELDS:
        return "" if math.isfinite(value) and value >= 0 else "must be finite and >= 0"
    if not isinstance(value, int | np.integer):
        return "must be an integer or None"
    low = _INT_FIELDS[name]
    return "" if value >= low else f"must be >= {low}"


def header_of(config: Any) -> RunHeader:
    """The header of a run's ``config.json``: its ``"header"`` entry, or, for a folder written before headers
    existed, the header reconstructed from the old layout (:func:`_header_from_old_layout`).

    Raises ``ValueError`` (naming the field) for a ``"header"`` entry that is not a valid header.

    >>> header_of({"kind": "trl", "header": RunHeader("trl", lr=1e-6).to_dict()}).lr
    1e-06
    >>> header_of({"kind": "trl", "trainer": {"learning_rate": 1e-6, "num_generations": 8}}).n_rollouts
    8
    """
    if isinstance(config, Mapping) and "header" in config:
        return RunHeader.from_dict(config["header"])
    return _header_from_old_layout(config if isinstance(config, Mapping) else {})


# ----------------------------------------------------------------------------------------------------------------
# JSON data and durable writes
# ----------------------------------------------------------------------------------------------------------------


def jsonable(value: Any, *, inf_as_text: bool = False) -> Any:
    """``value`` as plain JSON data: the one sanitiser every writer and report uses.

    Mappings become dicts with string keys; lists, tuples and arrays (numpy or torch, ``ndim >= 1``) become
    lists; numpy / torch scalars become Python numbers; dataclasses become dicts; paths become strings. JSON has
    no NaN or infinity: NaN becomes ``None``, and so does +-inf unless ``inf_as_text``, which writes ``"inf"`` /
    ``"-inf"`` (for a summary where infinity means something, e.g. "never", and must not read as "unknown").

    >>> jsonable({"a": (1.5, float("nan")), 2: float("inf")})
    {'a': [1.5, None], '2': None}
    >>> jsonable([float("-inf")], inf_as_text=True)
    ['-inf']
    """
    if type(value) in (list, tuple) and _plain_numbers(value):
        return list(value)
    if type(value) is np.ndarray and value.dtype.kind in "biuf" and np.isfinite(value).all():
        return value.tolist()  # nested lists of Python numbers already
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, inf_as_text=inf_as_text) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, inf_as_text=inf_as_text) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value), inf_as_text=inf_as_text)
    if isinstance(value, Path):
        return str(value)
    if getattr(value, "ndim", 0) and callable(
        getattr(value, "tolist", None)
    ):  # numpy / torch array
        return jsonable(value.tolist(), inf_as_text=inf_as_text)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        if inf_as_text and not math.isnan(value):
            return "inf" if value > 0 else "-inf"
        return None
    return value


def _plain_numbers(items: list | tuple) -> bool:
    """Whether every item is a finite Python float, or every item an int (bools included): items that
    :func:`jsonable` keeps as they are (a sum of floats is finite only if every one of them is)."""
    if all(type(v) is float for v in items):
        return math.isfinite(sum(items))
    return all(type(v) is int or type(v) is bool for v in items)


def fsync(path: str | os.PathLike) -> None:
    """Flush a file's, or a folder's, contents to disk (a folder: the names in it, e.g. after a rename)."""
    if os.name == "nt" and Path(path).is_dir():  # pragma: no cover - Windows cannot open folders
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` by ``text`` so that a kill or power loss leaves the old or the new file, never a mix:
    write a temporary sibling, fsync it, rename it over ``path``, fsync the folder."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, p)
    fsync(p.parent)


# ----------------------------------------------------------------------------------------------------------------
# reading: one pass over the file, checks on whole columns
# ----------------------------------------------------------------------------------------------------------------

_DECODER = json.JSONDecoder()
# Between two lines parsed in one call, a sentinel element: the JSON string "\u0000", which a text that holds no
# "\u0000" escape cannot otherwise produce (a raw NUL is not valid inside a JSON string).
_SENTINEL = '"\\u0000"'
_JOIN = "," + _SENTINEL + ","
# lines per call where a file is not all objects: a bad line sends the lines of its call to the line-by-line read
_CHUNK = 1000


def _json_lines(path: Path) -> tuple[list[int], list[dict], list[tuple[int, str]]]:
    """The line numbers and objects of the lines of ``path`` that are UTF-8 JSON objects, and ``(line number,
    problem)`` for every other non-blank line. One bad line does not fail the file.

    Each line is judged on its own (:func:`_parse_line_at`), but the lines that look like what writers write
    (open with ``{``, close with ``}``) are parsed in one ``json.loads`` call (:func:`_parse_joined`): the same
    objects, without a Python call per line and with each key decoded once. A file that is not valid UTF-8 as a
    whole is decoded line by line, so only its bad lines are lost."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return _json_lines_bytewise(data)
    del data
    sentinel_free = "\\u0000" not in text
    if sentinel_free:
        # every line an object (the usual file): parsed without splitting it; n lines, not counting a
        # blank one after the last newline
        n = text.count("\n") + 1 - text.endswith("\n")
        if text.startswith("{") and text.endswith(("}", "}\n")) and text.count("}\n{") == n - 1:
            # (while joining, the text, its replaced copy and the joined string are all alive: ~3x the file)
            objects = _parse_joined("".join(("[", text.replace("\n", _JOIN, n - 1), "]")), n)
            if objects is not None:
                return list(range(1, n + 1)), objects, []
    lines = text.split("\n")
    del text
    numbers: list[int] = []
    records: list[dict] = []
    problems: list[tuple[int, str]] = []
    if not sentinel_free:
        for number, line in enumerate(lines, start=1):
            _parse_line_at(line, number, numbers, records, problems)
        return numbers, records, problems
    index, objects, others = _objects_at_once(lines)
    for i in others:
        _parse_line_at(lines[i], i + 1, numbers, records, problems)
    if not numbers:  # every record came from the one-call parse
        return [i + 1 for i in index], objects, problems
    merged = sorted(
        [*zip([i + 1 for i in index], objects, strict=True), *zip(numbers, records, strict=True)],
        key=lambda pair: pair[0],
    )
    return [n for n, _ in merged], [r for _, r in merged], problems


def _parse_joined(joined: str, n: int) -> list[dict] | None:
    """The ``n`` objects of ``joined`` = ``"[" L1 S L2 S ... S Ln "]"`` (``S`` = :data:`_SENTINEL`), each what
    ``json.loads(Li)`` returns; None if ``joined`` does not parse or parses as anything else.

    The parse is accepted only as ``n`` dicts alternating with ``n - 1`` sentinels. The text held no
    ``\\u0000`` before the sentinels were put in, so every sentinel value is one of those: none was swallowed by a
    line that left a string or bracket open, and each ``Li`` holds exactly one JSON object."""
    try:
        out = json.loads(joined)
    except (
        ValueError,
        RecursionError,
    ):  # not JSON; an int past Python's digit limit; nested too deep
        return None
    objects, sentinels = out[::2], out[1::2]
    if (
        len(objects) != n
        or len(sentinels) != n - 1
        or sentinels.count("\x00") != n - 1
        or not set(map(type, objects)) <= {dict}
    ):
        return None
    return objects


def _objects_at_once(lines: list[str]) -> tuple[list[int], list[dict], list[int]]:
    """``(index, objects, others)``: the lines ``index`` (0-based, ascending) parsed by :func:`_parse_joined`
    into ``objects``, and the lines ``others`` (ascending) left to :func:`_parse_line_at`.

    The lines that open with ``{`` and close with ``}`` (or ``}\\r``) are parsed :data:`_CHUNK` at a time; a
    chunk that does not parse as one object per line goes to ``others`` whole."""
    candidates: list[int] = []
    others: list[int] = []
    for i, line in enumerate(lines):
        (candidates if line.startswith("{") and line.endswith(("}", "}\r")) else others).append(i)
    index: list[int] = []
    objects: list[dict] = []
    for start in range(0, len(candidates), _CHUNK):
        part = candidates[start : start + _CHUNK]
        chosen = [lines[i] for i in part]
        chosen[0] = "[" + chosen[0]
        chosen[-1] = chosen[-1] + "]"  # one line: both brackets on it
        got = _parse_joined(_JOIN.join(chosen), len(part))
        if got is None:
            others.extend(part)
        else:
            index.extend(part)
            objects.extend(got)
    others.sort()
    return index, objects, others


def _parse_line_at(
    line: str, number: int, numbers: list[int], records: list[dict], problems: list
) -> None:
    """Line ``number``: its object appended to ``records`` (``number`` to ``numbers``), or its problem to
    ``problems``. A line that opens an object is parsed as it is (``JSONDecoder.raw_decode``); any other line, or
    one that does not parse that way, is parsed as its own stripped text."""
    if line.startswith("{"):  # what writers write: one object from the first character
        try:
            obj, stop = _DECODER.raw_decode(line)
        except (ValueError, RecursionError):  # not JSON; an int past the digit limit; too deep
            stop = -1
        if stop == len(line) or (stop > 0 and not line[stop:].strip()):
            numbers.append(number)
            records.append(obj)
            return
    line = line.strip()
    if not line:
        return
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        problems.append((number, "not valid JSON (a write cut short?), line skipped"))
        return
    if isinstance(obj, dict):
        numbers.append(number)
        records.append(obj)
    else:
        problems.append((number, "not a JSON object, line skipped"))


def _json_lines_bytewise(data: bytes) -> tuple[list[int], list[dict], list[tuple[int, str]]]:
    numbers: list[int] = []
    records: list[dict] = []
    problems: list[tuple[int, str]] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            problems.append((number, "not valid UTF-8, line skipped"))
            continue
        _parse_line_at(line, number, numbers, records, problems)
    return numbers, records, problems


def columns(records: Sequence[Any], names: Sequence[str]) -> dict[str, list[Any]]:
    """``{name: [record.get(name) for record in records]}``: each field's values as one list (None where a
    record lacks the field or is not a mapping), how the readers turn records into columns.

    >>> columns([{"step": 0, "x": 1}, {"step": 1}], ["step", "x"])
    {'step': [0, 1], 'x': [1, None]}
    """
    out = {}
    for name in names:
        try:  # every record a mapping with the field (what writers write): one C loop
            out[name] = list(map(itemgetter(name), records))
        except (KeyError, TypeError):
            out[name] = [r.get(name) if isinstance(r, Mapping) else None for r in records]
    return out


def _has_integer_step(record: Mapping[str, Any]) -> bool:
    step = record.get("step")
    return isinstance(step, int) and not isinstance(step, bool)


def read_jsonl(path: str | os.PathLike) -> tuple[list[dict], int]:
    """Read a JSONL file, tolerating a run killed mid-write.

    Returns
    -------
    records : list of dict
        Every line that parses as a JSON object.
    n_bad : int
        Number of lines that did not (typically the last, truncated line of a killed run; also a line that is
        not valid UTF-8).

    Raises
    ------
    ValueError
        If ``path`` does not exist.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"path: no such file {p}")
    _, records, problems = _json_lines(p)
    return records, len(problems)


# what identifies one record of each log file; a second record with the same identity is flagged
LOG_KEYS = {
    METRICS_FILE: ("step",),
    PROBES_FILE: ("step", "question_id"),
    EVAL_FILE: ("step", "split"),
}
MAX_LISTED = 10  # problems listed per file; the rest are counted in one line


def read_log(path: str | os.PathLike) -> tuple[list[dict], list[str]]:
    """Read one of a run's log files, checking each record; problems are named by file and line.

    Skipped (with a warning): lines that are not UTF-8 JSON objects, records without an integer ``step``, and
    probe records (``probes.jsonl``) whose :attr:`ProbeRecord.SHARES` are not numbers in [0, 1].
    Flagged but kept: a repeated identity (:data:`LOG_KEYS`: a step of ``metrics.jsonl``, a (step, question)
    of ``probes.jsonl``, a (step, split) of ``eval.jsonl``) -- e.g. appended twice to a resumed run; which
    record to trust is the analysis's choice.

    The checks run on whole columns (one list per field, numpy where the values are numbers), so a file of a
    few hundred thousand probes is read in about the time the JSON parser needs.

    Returns
    -------
    records : list of dict
        The records kept, in file order.
    warnings : list of str
        ``"<file name>:<line>: problem"``, at most :data:`MAX_LISTED` of them, then a count of the rest.

    Raises
    ------
    ValueError
        If ``path`` does not exist.

    Example
    -------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "metrics.jsonl"
    >>> _ = p.write_text('{"step": 1}\\n{"step": "one"}\\n{"step": 1}\\n')
    >>> records, warnings = read_log(p)
    >>> [r["step"] for r in records]
    [1, 1]
    >>> warnings
    ["metrics.jsonl:2: step must be an integer, got 'one'; line skipped", 'metrics.jsonl:3: step 1 repeats line 1']
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"path: no such file {p}")
    numbers, records, problems = _json_lines(p)
    key_names = LOG_KEYS.get(p.name, ("step",))
    shares = ProbeRecord.SHARES if p.name == PROBES_FILE else ()
    cols = columns(records, dict.fromkeys(("step", *key_names, *shares)))
    steps = cols["step"]
    if set(map(type, steps)) == {int}:  # what writers write
        keep = np.ones(len(steps), dtype=bool)
    else:
        keep = np.array([type(s) is int for s in steps], dtype=bool)
    for i in np.flatnonzero(~keep):  # bool is an int subclass: type() tells them apart
        if not (isinstance(steps[i], int) and not isinstance(steps[i], bool)):
            problems.append(
                (numbers[i], f"step must be an integer, got {steps[i]!r}; line skipped")
            )
        else:
            keep[i] = True
    if p.name == PROBES_FILE:
        bad_shares = np.zeros(len(records), dtype=bool)
        out_of_range = {}
        for name in shares:
            bad = _bad_shares(cols[name])
            if bad is not None:
                out_of_range[name] = bad
                bad_shares |= bad
        for i in np.flatnonzero(bad_shares & keep):
            values = ", ".join(
                f"{name} = {records[i][name]!r}" for name, bad in out_of_range.items() if bad[i]
            )
            problems.append((numbers[i], f"{values} outside [0, 1]; line skipped"))
        keep &= ~bad_shares
    keys = [cols[name] for name in key_names]
    if not keep.all():
        index = np.flatnonzero(keep)
        records = [records[i] for i in index]
        numbers = [numbers[i] for i in index]
        keys = [[col[i] for i in index] for col in keys]
    problems.extend(_repeats(records, numbers, key_names, keys))
    problems.sort()
    warnings = [f"{p.name}:{number}: {problem}" for number, problem in problems[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        warnings.append(f"{p.name}: {len(problems) - MAX_LISTED} more problem(s) not listed")
    return records, warnings


def _bad_shares(values: list[Any]) -> np.ndarray | None:
    """(R,) True where a value is present but not a number in [0, 1]; None if every value is fine. ``values``
    are parsed JSON (no value but None equals None)."""
    # a field no record filled in (list.count tries identity first: one fast C pass over a column of None)
    if values and values[0] is None and values.count(None) == len(values):
        return None
    types = set(map(type, values))
    if types <= {type(None)}:
        return None
    bad = None
    if types <= {float, int, type(None)}:
        try:
            x = np.array(values, dtype=np.float64)  # None -> NaN
        except OverflowError:  # an integer beyond float range: checked one by one below
            pass
        else:
            with np.errstate(invalid="ignore"):
                bad = ~((x >= 0.0) & (x <= 1.0))  # NaN and inf are bad
            if type(None) in types:  # None (NaN in x) is not
                bad &= ~np.array([v is None for v in values], dtype=bool)
    if bad is None:
        bad = np.array([v is not None and not _is_share(v) for v in values], dtype=bool)
    return bad if bad.any() else None


def _repeats(
    records: list[dict], numbers: list[int], key_names: tuple[str, ...], key_columns: list[list]
) -> list[tuple[int, str]]:
    """``(line, "... repeats line n")`` for each record whose identity (``key_names``, one column each in
    ``key_columns``) an earlier one had."""
    hashable = [
        [_hashable(v) for v in col] if {dict, list} & set(map(type, col)) else col
        for col in key_columns
    ]
    # no repeats (the usual case): each column coded 0, 1, ... by first appearance, one integer key per record
    key = np.zeros(len(records), dtype=np.int64)
    for col in hashable:
        index = {v: i for i, v in enumerate(dict.fromkeys(col))}
        code = np.fromiter(map(index.__getitem__, col), dtype=np.int64, count=len(col))
        key = key * len(index) + code
    ordered = np.sort(key)  # (np.unique would hash: slower on many distinct keys)
    if not (ordered[1:] == ordered[:-1]).any():
        return []
    keys = list(zip(*hashable, strict=True))
    seen: dict[tuple, int] = {}
    out = []
    for key, number, record in zip(keys, numbers, records, strict=True):
        if key in seen:
            what = " ".join(f"{name} {record.get(name)!r}" for name in key_names)
            out.append((number, f"{what} repeats line {seen[key]}"))
        else:
            seen[key] = number
    return out


def _is_share(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value


# ----------------------------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------------------------


class RunWriter:
    """Append-only writer of one run folder (see the module docstring for the layout).

    Example
    -------
    >>> import tempfile
    >>> w = RunWriter(tempfile.mkdtemp())
    >>> w.write_config(RunHeader("sim", lr=0.1), {"experiment": "theorem1"})
    >>> w.log_metrics(0, {MAJORITY_RATIO: 0.5})
    >>> run = load_run(w.run_dir)
    >>> run.header.lr, run.metrics[0]["majority_ratio"]
    (0.1, 0.5)
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def write_json(self, name: str, obj: Any) -> None:
        """Write ``obj`` as pretty JSON to ``run_dir/name`` atomically and durably (:func:`write_text_atomic`)."""
        write_text_atomic(
            self.run_dir / name, json.dumps(jsonable(obj), indent=2, sort_keys=True) + "\n"
        )

    def write_config(self, header: RunHeader, config: Mapping[str, Any] | None = None) -> None:
        """Write ``config.json``: ``{"kind": header.kind, "header": header, **config}`` (``config``: the
        writer's own resolved configuration; it may not hold ``kind`` or ``header``)."""
        if not isinstance(header, RunHeader):
            raise ValueError(f"header: expected a RunHeader, got {type(header).__name__}")
        config = dict(config or {})
        clash = sorted({"kind", "header"} & set(config))
        if clash:
            raise ValueError(f"config: may not hold {clash} (the header says them)")
        self.write_json(CONFIG_FILE, {"kind": header.kind, "header": header.to_dict(), **config})

    def _append(self, name: str, records: Iterable[Mapping[str, Any]]) -> None:
        lines = "".join(json.dumps(jsonable(r), sort_keys=True) + "\n" for r in records)
        if not lines:
            return
        with (self.run_dir / name).open("a", encoding="utf-8") as fh:
            fh.write(lines)
            fh.flush()

    def log_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Append one step's batch metrics to ``metrics.jsonl``."""
        self._append(METRICS_FILE, [{"step": int(step), **metrics}])

    def log_probes(self, records: Iterable[ProbeRecord]) -> None:
        """Append probe records to ``probes.jsonl``."""
        self._append(PROBES_FILE, [dataclasses.asdict(r) for r in records])

    def log_eval(self, step: int, split: str, metrics: Mapping[str, Any]) -> None:
        """Append one held-out evaluation to ``eval.jsonl`` (its accuracy under :data:`HELDOUT_ACCURACY`)."""
        self._append(EVAL_FILE, [{"step": int(step), "split": split, **metrics}])

    def truncate_after(self, step: int) -> None:
        """Drop every log record with ``record["step"] > step`` (used when resuming from a checkpoint).

        Lines that cannot be placed -- a write cut short by a kill, invalid UTF-8 or JSON, a ``step`` that is
        not an integer -- are dropped too. Rewrites each file atomically (:func:`write_text_atomic`).
        """
        for name in LOG_FILES:
            path = self.run_dir / name
            if not path.exists():
                continue
            records, _ = read_jsonl(path)
            kept = [r for r in records if _has_integer_step(r) and r["step"] <= step]
            write_text_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))


# ----------------------------------------------------------------------------------------------------------------
# a run folder, loaded
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """Everything a run folder holds, as plain Python data (see :func:`load_run`); ``header`` defaults to
    :func:`header_of` ``(config)``."""

    run_dir: Path
    config: dict
    env: dict
    metrics: list[dict]
    probes: list[dict]
    evals: list[dict]
    warnings: tuple[str, ...] = field(default=())
    header: RunHeader = None  # type: ignore[assignment]  # filled in __post_init__

    def __post_init__(self) -> None:
        if self.header is None:
            object.__setattr__(self, "header", header_of(self.config))


def load_run(run_dir: str | os.PathLike) -> Run:
    """Load a run folder written by :class:`RunWriter`.

    Missing optional files give empty lists; each log file is read with :func:`read_log`, whose skipped and
    flagged lines (named by file and line) are reported in ``Run.warnings``. The header is ``config.json``'s
    (a bad one is reported and replaced by the old-layout reconstruction); a folder without one was written
    before headers existed, and its header and its older metric and held-out names are reconstructed from the
    old layout (:func:`_logs_from_old_layout`).

    Raises
    ------
    ValueError
        If ``run_dir`` is not a folder or holds none of the log files.
    """
    d = Path(run_dir)
    if not d.is_dir():
        raise ValueError(f"run_dir: {d} is not a folder")
    warnings: list[str] = []
    logs: dict[str, list[dict]] = {}
    for name in LOG_FILES:
        path = d / name
        if path.exists():
            logs[name], problems = read_log(path)
            warnings.extend(problems)
        else:
            logs[name] = []
    if not any((d / n).exists() for n in LOG_FILES):
        raise ValueError(f"run_dir: {d} holds none of {', '.join(LOG_FILES)}")
    jsons = {}
    for name in (CONFIG_FILE, ENV_FILE):
        path = d / name
        try:
            jsons[name] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        except json.JSONDecodeError:
            warnings.append(f"{name}: not valid JSON, ignored")
            jsons[name] = {}
    config = jsons[CONFIG_FILE] if isinstance(jsons[CONFIG_FILE], dict) else {}
    metrics, evals = logs[METRICS_FILE], logs[EVAL_FILE]
    if "header" in config:
        try:
            header = header_of(config)
        except ValueError as err:
            warnings.append(f"{CONFIG_FILE}: {err}; header reconstructed from the old layout")
            header = _header_from_old_layout(config)
    else:
        header = _header_from_old_layout(config)
        metrics, evals = _logs_from_old_layout(metrics, evals)
    return Run(
        run_dir=d,
        config=config,
        env=jsons[ENV_FILE],
        metrics=metrics,
        probes=logs[PROBES_FILE],
        evals=evals,
        warnings=tuple(warnings),
        header=header,
    )


# ----------------------------------------------------------------------------------------------------------------
# folders written before the header: their layout, read once, here
# ----------------------------------------------------------------------------------------------------------------

# where each writer kept its settings, and under which names: (section of config.json or None for the top
# level, {header field: name there}); every kind also has its same-named top-level entries
_OLD_LAYOUTS: dict[str, tuple[tuple[str | None, dict[str, str]], ...]] = {
    "empirical": (
        (None, {"model": "model_path"}),  # the resolved initial policy
        (
            "train",
            {
                "reward": "reward",
                "lr": "lr",
                "n_rollouts": "n_rollouts",
                "clip_eps": "clip_eps",
                "seed": "seed",
                "model": "model",
                "task": "task",
                "steps": "steps",
                "kl_coef": "kl_coef",
                "n_questions": "n_train",
            },
        ),
    ),
    "trl": (
        (
            "trainer",
            {
                "lr": "learning_rate",
                "n_rollouts": "num_generations",
                "clip_eps": "epsilon",
                "seed": "seed",
                "steps": "max_steps",
                "epochs": "num_iterations",
                "optimizer": "optim",
                "kl_coef": "beta",
            },
        ),
    ),
    "verl": ((None, {"model": "model_path", "batch_size": "prompts_per_step", "task": "name"}),),
    "sim": ((None, {"task": "experiment"}),),
}
# metric names runs logged before METRICS, tried in order when the current name is absent
_OLD_METRIC_NAMES: dict[str, tuple[str, ...]] = {
    REWARD_ACCURACY: ("train/reward_accuracy",),
    LABEL_ACCURACY: ("train/label_accuracy", "pseudo_label_acc"),
    MAJORITY_REWARD: ("reward_mean", "reward", "train/reward"),
    MAJORITY_RATIO: ("train/majority_ratio",),
    GROUND_TRUTH_RATIO: ("gt_reward", "accuracy"),
    ENTROPY: ("actor/entropy", "mean_token_entropy"),
    RESPONSE_LENGTH: ("response_length/mean", "length"),
    KL: ("kl", "kl_to_init", "kl_to_ref"),
}
# held-out names runs logged before HELDOUT_ACCURACY, after "avg@k"
_OLD_EVAL_NAMES = ("val_accuracy", "greedy_accuracy", "majority_accuracy")


def _header_from_old_layout(config: Mapping[str, Any]) -> RunHeader:
    """The header of a ``config.json`` written before headers: each writer's settings, where it kept them
    (:data:`_OLD_LAYOUTS`). Values that do not fit a field are left out.

    >>> h = _header_from_old_layout({"kind": "empirical", "model_path": "/m", "train": {
    ...     "lr": 3e-5, "n_rollouts": 8, "rollout_batch_size": 128, "model": "tiny", "n_train": 0}})
    >>> h.model, h.lr, h.batch_size, h.n_questions
    ('/m', 3e-05, 16, None)
    """
    kind = config.get("kind") if config.get("kind") in KINDS else "unknown"
    found: dict[str, Any] = {}
    header_fields = {f.name: f.name for f in dataclasses.fields(RunHeader) if f.name != "kind"}
    for section, names in ((None, header_fields), *_OLD_LAYOUTS.get(kind, ())):
        values = config if section is None else config.get(section)
        if not isinstance(values, Mapping):
            continue
        for name, old in names.items():
            if (
                name not in found
                and values.get(old) is not None
                and not _field_problem(name, values[old])
            ):
                found[name] = values[old]
    train = config.get("train")
    if kind == "empirical" and isinstance(train, Mapping) and "batch_size" not in found:
        size, n = train.get("rollout_batch_size"), train.get("n_rollouts")
        if isinstance(size, int) and isinstance(n, int) and n >= 1 and size >= n:
            found["batch_size"] = size // n
    if kind == "verl" and config.get("use_kl") is False:
        found["kl_coef"] = 0.0
    return RunHeader(kind=kind, **found)


def _logs_from_old_layout(metrics: list[dict], evals: list[dict]) -> tuple[list[dict], list[dict]]:
    """The metrics and held-out records of a folder written before :data:`METRICS`, under the current names.

    * a metric of :data:`METRICS` that a record lacks is read from its older names (:data:`_OLD_METRIC_NAMES`);
    * each ``eval.jsonl`` split without :data:`HELDOUT_ACCURACY` takes it from ``avg@k`` (any k), then
      :data:`_OLD_EVAL_NAMES`, then any other key holding "acc" (the first that the split logged);
    * a folder without ``eval.jsonl`` records (the simulator's) takes its held-out series from the batch metrics
      ``eval/<split>/...accuracy``, else ``val_accuracy`` or ``val/ground_truth_ratio`` (split "heldout").

    Records that change are copied; the others are returned as they are.
    """
    out_metrics = []
    for r in metrics:
        extra = {}
        for name, old in _OLD_METRIC_NAMES.items():
            if _number(r.get(name)) is None:
                value = next(
                    (_number(r.get(o)) for o in old if _number(r.get(o)) is not None), None
                )
                if value is not None:
                    extra[name] = value
        out_metrics.append({**r, **extra} if extra else r)
    out_evals = list(evals)
    splits = {str(r.get("split", "heldout")) for r in evals}
    for split in splits:
        rows = [i for i, r in enumerate(evals) if str(r.get("split", "heldout")) == split]
        if any(_number(evals[i].get(HELDOUT_ACCURACY)) is not None for i in rows):
            continue
        keys = sorted({k for i in rows for k in evals[i]})
        names = [k for k in keys if k.startswith("avg@")] + list(_OLD_EVAL_NAMES)
        names += [k for k in keys if "acc" in k.lower() and k not in names]
        name = next(
            (n for n in names if any(_number(evals[i].get(n)) is not None for i in rows)), None
        )
        for i in rows if name is not None else ():
            if _number(evals[i].get(name)) is not None:
                out_evals[i] = {**evals[i], HELDOUT_ACCURACY: _number(evals[i][name])}
    if not evals:
        series: dict[str, str] = {}
        keys = sorted({k for r in metrics for k in r})
        for key in keys:
            if key.startswith("eval/") and key.endswith("accuracy") and key.count("/") >= 2:
                series.setdefault(key.split("/")[1], key)
        if not series:
            key = next((k for k in ("val_accuracy", "val/ground_truth_ratio") if k in keys), None)
            series = {"heldout": key} if key else {}
        for split, key in sorted(series.items()):
            for r in metrics:
                if _number(r.get(key)) is not None and _has_integer_step(r):
                    out_evals.append(
                        {"step": r["step"], "split": split, HELDOUT_ACCURACY: _number(r[key])}
                    )
    return out_metrics, out_evals


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


# ----------------------------------------------------------------------------------------------------------------
# the environment
# ----------------------------------------------------------------------------------------------------------------


def environment_info() -> dict[str, Any]:
    """Package versions, Python, platform and device, for ``env.json``."""
    import platform
    import sys
    from importlib import metadata

    versions = {}
    for pkg in ("sharpen", "numpy", "scipy", "torch", "transformers", "trl", "vllm", "math-verify"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "argv": list(sys.argv),
    }
    try:
        import torch

        info["cuda"] = torch.cuda.is_available()
        if info["cuda"]:
            info["device_name"] = torch.cuda.get_device_name(0)
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass
    return info
