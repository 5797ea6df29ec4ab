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

Writers append and flush line by line; :func:`read_jsonl` skips (and counts) a truncated or corrupt line
instead of failing, so the readable part of a killed run is still used. :meth:`RunWriter.truncate_after`
drops records past a checkpoint's step, which is what makes a resumed run's logs identical to an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

    def __post_init__(self) -> None:
        if self.n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {self.n_samples}")
        for name in ("p_majority", "p_initial_majority"):
            v = getattr(self, name)
            if not (0.0 <= v <= 1.0):
                raise ValueError(f"{name} must lie in [0, 1], got {v}")


def _jsonable(value: Any) -> Any:
    """Convert numpy/torch scalars and non-finite floats to plain JSON (NaN/inf -> None)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalar
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            value = value.tolist()
            return _jsonable(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_jsonl(path: str | os.PathLike) -> tuple[list[dict], int]:
    """Read a JSONL file, tolerating a run killed mid-write.

    Returns
    -------
    records : list of dict
        Every line that parses as a JSON object.
    n_bad : int
        Number of lines that did not (typically the last, truncated line of a killed run).

    Raises
    ------
    ValueError
        If ``path`` does not exist.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"path: no such file {p}")
    records: list[dict] = []
    n_bad = 0
    with p.open("r", encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                n_bad += 1
                continue
            if isinstance(obj, dict):
                records.append(obj)
            else:
                n_bad += 1
    return records, n_bad


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
        """Write ``obj`` as pretty JSON to ``run_dir/name`` atomically (write to a temp file, then rename)."""
        tmp = self.run_dir / (name + ".tmp")
        tmp.write_text(json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.run_dir / name)

    def _append(self, name: str, records: Iterable[Mapping[str, Any]]) -> None:
        lines = "".join(json.dumps(_jsonable(r), sort_keys=True) + "\n" for r in records)
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

        Corrupt lines (a write cut short by a kill) are dropped too. Rewrites each file atomically.
        """
        for name in LOG_FILES:
            path = self.run_dir / name
            if not path.exists():
                continue
            records, _ = read_jsonl(path)
            kept = [r for r in records if int(r.get("step", -1)) <= step]
            tmp = path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept), encoding="utf-8")
            os.replace(tmp, path)


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

    Missing optional files give empty lists; truncated lines are skipped and reported in ``Run.warnings``.

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
            recs, n_bad = read_jsonl(path)
            if n_bad:
                warnings.append(f"{name}: skipped {n_bad} unreadable line(s) (a run killed mid-write?)")
            logs[name] = recs
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
