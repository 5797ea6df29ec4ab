"""Tidy experiment results: trajectories plus a verdict with its numbers, saved as a sharpen run folder.

A result folder is a :mod:`sharpen.records` run folder (``config.json`` with ``kind = "sim"``,
``metrics.jsonl`` with the per-step series, so the fitting and figure tools read simulated and real runs alike),
plus ``verdict.json`` and ``trajectories.npz`` (every array, any shape, for :mod:`paper_figures` to plot without
recomputation).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sharpen.records import RunWriter, environment_info

__all__ = ["Verdict", "SimResult", "load_result"]


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


@dataclass(frozen=True)
class SimResult:
    """An experiment's outcome.

    Attributes
    ----------
    experiment : registry name
    config : the resolved configuration (plain JSON-able values)
    trajectories : named arrays; ``step`` (S,) and any (S,)-long series are also written to ``metrics.jsonl``
    verdict : :class:`Verdict`
    """

    experiment: str
    config: dict[str, Any]
    trajectories: dict[str, np.ndarray]
    verdict: Verdict

    def save(self, run_dir: str | Path) -> Path:
        """Write the result folder; returns its path."""
        w = RunWriter(run_dir)
        w.write_json("config.json", {"kind": "sim", "experiment": self.experiment, **self.config})
        w.write_json("env.json", environment_info())
        w.write_json("verdict.json", asdict(self.verdict))
        np.savez_compressed(Path(run_dir) / "trajectories.npz", **self.trajectories)
        steps = self.trajectories.get("step")
        metrics = Path(run_dir) / "metrics.jsonl"
        if metrics.exists():
            metrics.unlink()
        if steps is not None and steps.ndim == 1:
            series = {
                k: v for k, v in self.trajectories.items() if k != "step" and v.shape == steps.shape
            }
            for i, s in enumerate(steps):
                w.log_metrics(int(s), {k: float(v[i]) for k, v in series.items()})
        return Path(run_dir)


def load_result(run_dir: str | Path) -> SimResult:
    """Read a folder written by :meth:`SimResult.save`."""
    d = Path(run_dir)
    for name in ("config.json", "verdict.json", "trajectories.npz"):
        if not (d / name).exists():
            raise ValueError(f"run_dir: {d} has no {name} (not a sim result folder)")
    config = json.loads((d / "config.json").read_text())
    experiment = config.pop("experiment")
    config.pop("kind", None)
    v = json.loads((d / "verdict.json").read_text())
    with np.load(d / "trajectories.npz") as npz:
        traj = {k: npz[k] for k in npz.files}
    return SimResult(experiment, config, traj, Verdict(**v))
