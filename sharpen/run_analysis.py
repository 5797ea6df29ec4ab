r"""One run folder analysed: Theorem 1 fitted to its probes and its collapse step found and predicted.

:func:`analyze` joins :mod:`sharpen.fitting` (per-question fits, classes, pooled :math:`\hat\beta`, beta in the
run's units) and :mod:`sharpen.collapse` (Model Collapse Step by both rules, held-out peaks, early prediction)
into one :class:`RunAnalysis`; :func:`analyze_run` loads the folder first. Pure: the report, the overlay figure
and the ``sharpen fit`` command that writes them are :mod:`paper_figures.fit_report`.

Example
-------
>>> import tempfile
>>> from sharpen.records import RunWriter, ProbeRecord
>>> from sharpen.theory import majority_prob
>>> w = RunWriter(tempfile.mkdtemp())
>>> w.log_probes(ProbeRecord(int(k), "q0", 64, "7", float(p), "7", float(p))
...              for k, p in zip(range(0, 50, 10), majority_prob(0.4, 20.0, np.arange(0, 50, 10))))
>>> res = analyze_run(w.run_dir)
>>> res.questions[0].label, round(res.questions[0].beta, 3)
('sharpened', 20.0)
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sharpen.collapse import (
    AnalysisConfig,
    CollapsePrediction,
    CollapseReport,
    detect_collapse,
    early_prediction,
)
from sharpen.fitting import (
    CLASSES,
    MIN_FIT_POINTS,
    PooledFit,
    ProbeTrajectories,
    QuestionFit,
    beta_mapping,
    classify_questions,
    fit_trajectories,
    pool_slopes,
    trajectories_from_probes,
)
from sharpen.records import Run, RunHeader, load_run
from sharpen.theory import SharpeningFit

__all__ = ["RunAnalysis", "analyze", "analyze_run"]

_DEFAULT = AnalysisConfig()


@dataclass(frozen=True)
class RunAnalysis:
    """Everything ``sharpen fit`` reports on one run (see :func:`analyze`): ``header`` is the run's
    :class:`~sharpen.records.RunHeader`, ``kind`` and ``settings`` (:meth:`RunHeader.settings`) come from it;
    ``tolerance`` is the relative error counted as a correct early prediction (``AnalysisConfig.tolerance``)."""

    run_dir: str
    kind: str
    settings: dict[str, Any]
    trajectories: ProbeTrajectories | None
    fit: SharpeningFit | None
    questions: tuple[QuestionFit, ...]
    class_summary: dict[str, dict[str, float]]
    pooled: dict[str, PooledFit]
    beta_mapping: dict[str, float | None]
    collapse: CollapseReport
    predictions: tuple[CollapsePrediction, ...]
    needed_fraction: float | None
    warnings: tuple[str, ...] = field(default=())
    tolerance: float = AnalysisConfig.tolerance
    header: RunHeader | None = None


def _class_summary(questions: Sequence[QuestionFit]) -> dict[str, dict[str, float]]:
    total = len(questions)
    out = {}
    for c in CLASSES:
        qs = [q for q in questions if q.label == c]
        if not qs:
            out[c] = {"count": 0, "share": 0.0}
            continue
        med = lambda xs: float(np.nanmedian(xs)) if np.isfinite(xs).any() else math.nan  # noqa: E731
        out[c] = {
            "count": len(qs),
            "share": len(qs) / total,
            "median_r2_logit": med(np.array([q.r2_logit for q in qs])),
            "median_r2_p": med(np.array([q.r2_p for q in qs])),
            "median_beta": med(np.array([q.beta for q in qs])),
            "median_first_flip_step": med(np.array([q.first_flip_step for q in qs])),
            "mean_flips": float(np.mean([q.n_flips for q in qs])),
        }
    return out


def analyze(run: Run, config: AnalysisConfig = _DEFAULT) -> RunAnalysis:
    """Fit, classify, pool, map beta, detect and predict collapse for a loaded run."""
    if not isinstance(run, Run):
        raise ValueError(f"run: expected a sharpen.records.Run, got {type(run).__name__}")
    if not isinstance(config, AnalysisConfig):
        raise ValueError(f"config: expected AnalysisConfig, got {type(config).__name__}")
    warnings = list(run.warnings)
    header = run.header
    collapse = detect_collapse(run, config)
    if collapse.metric is None:
        warnings.append(f"metrics: no {config.collapse_metric} series; no Model Collapse Step")
    traj = fit = None
    questions: tuple[QuestionFit, ...] = ()
    pooled: dict[str, PooledFit] = {}
    predictions: tuple[CollapsePrediction, ...] = ()
    needed = None
    if run.probes:
        try:
            traj, w = trajectories_from_probes(run.probes)
            warnings.extend(w)
        except ValueError as exc:
            warnings.append(f"probes: {exc}")
    else:
        warnings.append("probes.jsonl: no probe records; no per-question fit")
    if traj is not None:
        fit = fit_trajectories(traj, level=config.level)
        questions = classify_questions(traj, fit)
        few = int((np.asarray(fit.n_points) < MIN_FIT_POINTS).sum())
        if few:
            warnings.append(
                f"fit: {few} of {len(questions)} question(s) have fewer than {MIN_FIT_POINTS} probe steps; "
                "their R^2 (1 for two points) says nothing: probe more often (probe_every)"
            )
        se = np.asarray(fit.slope_se)
        for name, members in (
            ("sharpened", [q.label == "sharpened" for q in questions]),
            ("all", [q.label not in ("insufficient", "saturated") for q in questions]),
        ):
            m = np.array(members, dtype=bool)
            pooled[name] = pool_slopes(np.asarray(fit.slope)[m], se[m], level=config.level)
        last = collapse.last_step if collapse.last_step is not None else float(traj.steps[-1])
        predictions, needed = early_prediction(traj, last, collapse.threshold_step, config, fit=fit)
    main = pooled.get("sharpened") or PooledFit(
        0,
        math.nan,
        math.nan,
        (math.nan,) * 2,
        math.nan,
        (math.nan,) * 2,
        math.nan,
        math.nan,
        math.nan,
    )
    return RunAnalysis(
        run_dir=str(run.run_dir),
        kind=header.kind,
        settings=header.settings(),
        trajectories=traj,
        fit=fit,
        questions=questions,
        class_summary=_class_summary(questions),
        pooled=pooled,
        beta_mapping=beta_mapping(main, header.lr),
        collapse=collapse,
        predictions=predictions,
        needed_fraction=needed,
        warnings=tuple(warnings),
        tolerance=config.tolerance,
        header=header,
    )


def analyze_run(run_dir: str | os.PathLike, config: AnalysisConfig = _DEFAULT) -> RunAnalysis:
    """Load a run folder (:func:`sharpen.records.load_run`) and :func:`analyze` it.

    Raises ``ValueError`` (with the folder named) for a missing folder or one with no logs.
    """
    return analyze(load_run(run_dir), config)
