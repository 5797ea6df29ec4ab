"""Run records: the on-disk format every sharpen run writes and every analysis reads.

A *run folder* holds plain, append-only files, so a killed run loses at most the line being written and any
tool (``pandas.read_json(path, lines=True)``) reads them in one line:

==================  =================================================================================
``config.json``     the resolved configuration (``{"kind": "empirical"|"sim"|..., ...}``)
``env.json``        the environment: package versions, device, command line
``metrics.jsonl``   one record per training step: ``{"step": int, <metric name>: float, ...}``
                    (TTRL names: ``label_accuracy``, ``reward_accuracy``, ``majority_ratio``, ...)
``probes.jsonl``    one record per probe question per probe step (:class:`ProbeRecord`): the
                    per-question majority-probability trajectories that Theorem 1 is fitted to
``eval.jsonl``      one record per held-out evaluation: ``{"step": int, "split": str, <metric>: float}``
==================  =================================================================================

Writers append and flush line by line; ``config.json`` and rewritten logs are replaced atomically and fsync'd.
The readers skip a truncated, corrupt or invalid line instead of failing, so the readable part of a killed run is
still used: :func:`read_jsonl` counts them, :func:`read_log` (used by :func:`load_run`) names each by file and
line. :meth:`RunWriter.truncate_after` drops records past a checkpoint's step, which is what makes a resumed run's
logs identical to an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

CONFIG_FILE = "config.json"
ENV_FILE = "env.json"
METRICS_FILE = "metrics.jsonl"
PROBES_FILE = "probes.jsonl"
EVAL_FILE = "eval.jsonl"
LOG_FILES = (METRICS_FILE, PROBES_FILE, EVAL_FILE)


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

    def __post_init__(self) -> None:
        if self.n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {self.n_samples}")
        for name in self.SHARES:
            v = getattr(self, name)
            if v is not None and not (0.0 <= v <= 1.0):
                raise ValueError(f"{name} must lie in [0, 1], got {v}")


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


def _json_lines(path: Path) -> tuple[list[tuple[int, dict]], list[tuple[int, str]]]:
    """``(line number, object)`` for the lines of ``path`` that are UTF-8 JSON objects, and
    ``(line number, problem)`` for every other non-blank line. Bytes are decoded line by line, so one bad line
    does not fail the file."""
    records: list[tuple[int, dict]] = []
    problems: list[tuple[int, str]] = []
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                problems.append((number, "not valid UTF-8, line skipped"))
                continue
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                problems.append((number, "not valid JSON (a write cut short?), line skipped"))
                continue
            if isinstance(obj, dict):
                records.append((number, obj))
            else:
                problems.append((number, "not a JSON object, line skipped"))
    return records, problems


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
    records, problems = _json_lines(p)
    return [r for _, r in records], len(problems)


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
    lines, problems = _json_lines(p)
    key_names = LOG_KEYS.get(p.name, ("step",))
    seen: dict[tuple, int] = {}
    records: list[dict] = []
    for number, record in lines:
        if not _has_integer_step(record):
            step = record.get("step")
            problems.append((number, f"step must be an integer, got {step!r}; line skipped"))
            continue
        if p.name == PROBES_FILE:
            bad = [
                name
                for name in ProbeRecord.SHARES
                if record.get(name) is not None and not _is_share(record[name])
            ]
            if bad:
                values = ", ".join(f"{name} = {record[name]!r}" for name in bad)
                problems.append((number, f"{values} outside [0, 1]; line skipped"))
                continue
        key = tuple(_hashable(record.get(name)) for name in key_names)
        if key in seen:
            what = " ".join(f"{name} {record.get(name)!r}" for name in key_names)
            problems.append((number, f"{what} repeats line {seen[key]}"))
        else:
            seen[key] = number
        records.append(record)
    warnings = [
        f"{p.name}:{number}: {problem}" for number, problem in sorted(problems)[:MAX_LISTED]
    ]
    if len(problems) > MAX_LISTED:
        warnings.append(f"{p.name}: {len(problems) - MAX_LISTED} more problem(s) not listed")
    return records, warnings


def _is_share(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0.0 <= value <= 1.0


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value


class RunWriter:
    """Append-only writer of one run folder (see the module docstring for the layout).

    Example
    -------
    >>> import tempfile
    >>> w = RunWriter(tempfile.mkdtemp())
    >>> w.write_json("config.json", {"kind": "sim"})
    >>> w.log_metrics(0, {"majority_ratio": 0.5})
    >>> load_run(w.run_dir).metrics[0]["majority_ratio"]
    0.5
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def write_json(self, name: str, obj: Any) -> None:
        """Write ``obj`` as pretty JSON to ``run_dir/name`` atomically and durably (:func:`write_text_atomic`)."""
        write_text_atomic(
            self.run_dir / name, json.dumps(jsonable(obj), indent=2, sort_keys=True) + "\n"
        )

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
        """Append one held-out evaluation to ``eval.jsonl``."""
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


@dataclass(frozen=True)
class Run:
    """Everything a run folder holds, as plain Python data (see :func:`load_run`)."""

    run_dir: Path
    config: dict
    env: dict
    metrics: list[dict]
    probes: list[dict]
    evals: list[dict]
    warnings: tuple[str, ...] = field(default=())


def load_run(run_dir: str | os.PathLike) -> Run:
    """Load a run folder written by :class:`RunWriter`.

    Missing optional files give empty lists; each log file is read with :func:`read_log`, whose skipped and
    flagged lines (named by file and line) are reported in ``Run.warnings``.

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
    return Run(
        run_dir=d,
        config=jsons[CONFIG_FILE],
        env=jsons[ENV_FILE],
        metrics=logs[METRICS_FILE],
        probes=logs[PROBES_FILE],
        evals=logs[EVAL_FILE],
        warnings=tuple(warnings),
    )


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
