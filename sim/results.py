"""Tidy experiment results: trajectories plus a verdict with its numbers, saved as a sharpen run folder.

A result folder is a :mod:`sharpen.records` run folder (``config.json`` with its
:class:`~sharpen.records.RunHeader`, ``kind = "sim"``; ``metrics.jsonl`` with the per-step series, ``eval.jsonl``
with the held-out accuracy, so the fitting and figure tools read simulated and real runs alike),
plus ``verdict.json`` and ``trajectories.npz`` (every array, any shape, for :mod:`paper_figures` to plot without
recomputation).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sharpen.records import (
    HELDOUT_ACCURACY,
    KL,
    ProbeRecord,
    RunHeader,
    RunWriter,
    environment_info,
    probe_record,
)

__all__ = [
    "Verdict",
    "SimResult",
    "load_result",
    "probe_records",
    "holds_from_shares",
    "EXACT_PROBE_SAMPLES",
    "HELDOUT_SERIES",
    "METRIC_NAMES",
]

EXACT_PROBE_SAMPLES = 1_000_000
"""``n_samples`` written in a probe record whose probabilities are exact (the simulator knows the policy)."""

HELDOUT_SERIES = "val_accuracy"
"""The (S,) trajectory an experiment stores its held-out accuracy under; written to ``eval.jsonl`` (split
``"heldout"``) as :data:`sharpen.records.HELDOUT_ACCURACY`."""

METRIC_NAMES = {"kl": KL}
"""The simulator's series names that ``metrics.jsonl`` writes under :data:`sharpen.records.METRICS` names."""


def probe_records(
    steps: np.ndarray, probs: np.ndarray, correct: np.ndarray, prefix: str = "q"
) -> list[ProbeRecord]:
    """:class:`sharpen.records.ProbeRecord` s from exact answer distributions (:func:`sharpen.records.probe_record`
    with ``probs``).

    Parameters
    ----------
    steps : (S,) probe steps
    probs : (S, M, K) answer distribution of each probed question at each step
    correct : (M,) correct answer index

    The majority answer is the argmax; the initial majority is the argmax at the first probe step; answers are
    written as their index (a string), ``n_samples`` as :data:`EXACT_PROBE_SAMPLES` (the probabilities are exact).
    """
    probs = np.asarray(probs, dtype=np.float64)
    steps = np.asarray(steps)
    if probs.ndim != 3 or probs.shape[0] != steps.shape[0]:
        raise ValueError(f"probs: expected shape (S={steps.shape[0]}, M, K), got {probs.shape}")
    correct = np.asarray(correct)
    if correct.shape != (probs.shape[1],):
        raise ValueError(f"correct: expected shape ({probs.shape[1]},), got {correct.shape}")
    answers = [str(k) for k in range(probs.shape[2])]
    initial = [answers[k] for k in probs[0].argmax(axis=1)]
    labels = [str(int(c)) for c in correct]
    out = []
    for i, s in enumerate(steps):
        p = np.clip(probs[i], 0.0, 1.0)
        for q in range(probs.shape[1]):
            out.append(
                probe_record(
                    int(s),
                    f"{prefix}{q}",
                    answers,
                    probs=p[q],
                    n_samples=EXACT_PROBE_SAMPLES,
                    initial=initial[q],
                    label=labels[q],
                    grade=lambda a, c=labels[q]: a == c,
                )
            )
    return out


@dataclass(frozen=True)
class Verdict:
    """What an experiment concludes.

    Attributes
    ----------
    kind : "theorem" (must hold) or "exploration" (does a toy mechanism reproduce a finding?)
    holds : theorem holds / finding reproduced (True, False), or None for "partly / depends on the setting"
    summary : one or two sentences with the numbers
    numbers : the figures behind the summary
    """

    kind: Literal["theorem", "exploration"]
    holds: bool | None
    summary: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("theorem", "exploration"):
            raise ValueError(f"kind: must be 'theorem' or 'exploration', got {self.kind!r}")


def holds_from_shares(shares: dict[str, float], need: float = 2 / 3) -> bool | None:
    """An exploration's ``holds`` from the share of seeds showing the phenomenon in each case.

    True when every case reaches ``need`` (2/3 by default), False when no seed of any case shows it, None
    (partly) otherwise.

    >>> holds_from_shares({"a": 1.0, "b": 2 / 3}), holds_from_shares({"a": 0.0}), holds_from_shares({"a": 0.5})
    (True, False, None)
    """
    vals = list(shares.values())
    if all(v >= need for v in vals):
        return True
    if all(v == 0 for v in vals):
        return False
    return None


@dataclass(frozen=True)
class SimResult:
    """An experiment's outcome.

    Attributes
    ----------
    experiment : registry name
    config : the resolved configuration (plain JSON-able values)
    trajectories : named arrays; ``step`` (S,) and any (S,)-long series are also written to ``metrics.jsonl``
        (under :data:`METRIC_NAMES` where renamed), :data:`HELDOUT_SERIES` also to ``eval.jsonl``;
        ``probe/step`` (L,), ``probe/probs`` (L, M, K) and ``probe/correct`` (M,), when present, to
        ``probes.jsonl`` (:func:`probe_records`)
    verdict : :class:`Verdict`
    """

    experiment: str
    config: dict[str, Any]
    trajectories: dict[str, np.ndarray]
    verdict: Verdict

    def save(self, run_dir: str | Path) -> Path:
        """Write the result folder; returns its path."""
        w = RunWriter(run_dir)
        w.write_config(self.header(), {"experiment": self.experiment, **self.config})
        w.write_json("env.json", environment_info())
        w.write_json("verdict.json", asdict(self.verdict))
        np.savez_compressed(Path(run_dir) / "trajectories.npz", **self.trajectories)
        steps = self.trajectories.get("step")
        for name in ("metrics.jsonl", "probes.jsonl", "eval.jsonl"):
            (Path(run_dir) / name).unlink(missing_ok=True)
        if "probe/probs" in self.trajectories:
            t = self.trajectories
            w.log_probes(probe_records(t["probe/step"], t["probe/probs"], t["probe/correct"]))
        if steps is not None and steps.ndim == 1:
            series = {
                METRIC_NAMES.get(k, k): v
                for k, v in self.trajectories.items()
                if k != "step" and v.shape == steps.shape
            }
            for i, s in enumerate(steps):
                w.log_metrics(int(s), {k: float(v[i]) for k, v in series.items()})
            if HELDOUT_SERIES in series:
                for i, s in enumerate(steps):
                    w.log_eval(
                        int(s), "heldout", {HELDOUT_ACCURACY: float(series[HELDOUT_SERIES][i])}
                    )
        return Path(run_dir)

    def header(self) -> RunHeader:
        """The run header: kind "sim", the experiment as the task, and the config's settings that are single
        values (a sweep over several, e.g. ``rewards``, is left out)."""
        return RunHeader.from_fields("sim", self.config, task=self.experiment)


def load_result(run_dir: str | Path) -> SimResult:
    """Read a folder written by :meth:`SimResult.save`."""
    d = Path(run_dir)
    for name in ("config.json", "verdict.json", "trajectories.npz"):
        if not (d / name).exists():
            raise ValueError(f"run_dir: {d} has no {name} (not a sim result folder)")
    config = json.loads((d / "config.json").read_text())
    experiment = config.pop("experiment")
    config.pop("kind", None)
    config.pop("header", None)
    v = json.loads((d / "verdict.json").read_text())
    with np.load(d / "trajectories.npz") as npz:
        traj = {k: npz[k] for k in npz.files}
    return SimResult(experiment, config, traj, Verdict(**v))
