"""Figure kind 6 -- Model Collapse Step against GT Gain across priors (paper Figs. 11-12), with rank correlation.

For each prior (a strength of the correct answer in the simulator, or a group of run folders sharing a
``strength``/``model`` setting), the MCS comes from the majority-vote run's batch metrics
(:func:`sharpen.metrics.model_collapse_step`: the paper's threshold rule on reward accuracy, and the peak rule on
held-out accuracy), and the GT Gain from the ground-truth run (:func:`sharpen.metrics.gt_gain`: final minus initial
held-out accuracy). A run that never collapses is drawn at its last step as a censored (hollow) marker and left
out of the rank correlation.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import stats

from paper_figures.data import FigureData, _find
from paper_figures.simruns import SimRunSpec, ensure_run
from sharpen.analysis import eval_metric_names, metric_series, run_settings
from sharpen.metrics import gt_gain, model_collapse_step
from sharpen.records import Run, load_run

KIND = "mcs_gain"
STRENGTHS = (-0.5, 0.0, 0.5, 1.0, 1.5, 2.0)
GROUP_KEYS = ("model", "strength", "prior")


def default_specs(strengths=STRENGTHS, **kw) -> list[tuple[str, SimRunSpec, SimRunSpec]]:
    """(name, majority-vote spec, ground-truth spec) per prior strength; ``kw`` overrides SimRunSpec fields."""
    kw = {"n_probe": 4, **kw}
    return [
        (
            f"strength {s:g}",
            SimRunSpec(reward="majority_voting", strength=s, **kw),
            SimRunSpec(reward="ground_truth", strength=s, **kw),
        )
        for s in strengths
    ]


def _heldout(run: Run):
    recs = [r for r in run.evals if str(r.get("split", "heldout")) != "train"]
    return metric_series(recs, eval_metric_names(recs))


def collapse_steps(run: Run) -> dict[str, float | None]:
    """MCS by the threshold rule (reward accuracy < 0.01) and the peak rule (held-out accuracy), plus the run length."""
    _, st, ra = metric_series(run.metrics, ("reward_accuracy",))
    thr = model_collapse_step(ra, "threshold", steps=st.astype(int)) if ra.size else None
    _, hst, hv = _heldout(run)
    pk = (
        model_collapse_step(hv, "peak", steps=hst.astype(int), min_decline=0.02, patience=2)
        if hv.size
        else None
    )
    last = max([r.get("step", 0) for r in run.metrics] or [0])
    return {
        "threshold": None if thr is None else thr.step,
        "peak": None if pk is None else pk.step,
        "last": last,
    }


def heldout_gain(run: Run) -> float:
    """GT Gain of a ground-truth run: last minus first held-out accuracy."""
    _, _, hv = _heldout(run)
    if hv.size < 2:
        raise ValueError(f"run: {run.run_dir} logs no held-out accuracy series")
    return gt_gain(hv[0], hv[-1])


def _rank(x, y) -> float | None:
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return None
    return float(stats.spearmanr(x[ok], y[ok]).statistic)


def compute(run_dirs=None, *, cache: Path, specs=None) -> FigureData:
    if run_dirs:
        groups: dict[str, dict[str, Run]] = {}
        for d in run_dirs:
            run = load_run(d)
            key = next(
                (
                    f"{k}={_find(run.config, k)}"
                    for k in GROUP_KEYS
                    if _find(run.config, k) is not None
                ),
                None,
            )
            reward = run_settings(run.config).get("reward")
            if key and reward in ("majority_voting", "ground_truth"):
                groups.setdefault(key, {})[reward] = run
        pairs = [
            (k, g["majority_voting"], g["ground_truth"]) for k, g in groups.items() if len(g) == 2
        ]
        if not pairs:
            raise ValueError(
                "run_dirs: needs a majority_voting and a ground_truth run per prior (grouped by model/strength)"
            )
        src = f"{len(pairs)} pairs of run folders"
    else:
        pairs = [
            (
                name,
                load_run(ensure_run(mv, cache / "runs")),
                load_run(ensure_run(gt, cache / "runs")),
            )
            for name, mv, gt in (specs or default_specs())
        ]
        src = "simulated majority-vote and ground-truth runs per prior strength"
    rows = []
    for name, mv, gt in pairs:
        c = collapse_steps(mv)
        rows.append({"prior": name, "gain": heldout_gain(gt), **c})
    gains = [r["gain"] for r in rows]
    rho = {
        rule: _rank([r[rule] if r[rule] is not None else math.nan for r in rows], gains)
        for rule in ("threshold", "peak")
    }
    found = {rule: sum(r[rule] is not None for r in rows) for rule in ("threshold", "peak")}
    return FigureData(
        kind=KIND,
        title="Model Collapse Step against GT Gain across priors",
        caption=(
            f"MCS of the majority-vote run (threshold rule: reward accuracy < 0.01, found for {found['threshold']}/"
            f"{len(rows)}; peak rule on held-out accuracy, found for {found['peak']}/{len(rows)}; hollow = no collapse "
            f"within the run, drawn at its last step) vs GT Gain of the ground-truth run. Data: {src}."
        ),
        source=src,
        data={"rows": rows, "spearman": rho},
    )


def draw(fd: FigureData, ax=None):
    from paper_figures.style import PALETTE, finish, new_figure

    if ax is None:
        fig, (ax,) = new_figure(1, width_per_panel=6.5, height=4.2)
    else:
        fig = ax.figure
    rows = fd.data["rows"]
    for rule, marker, c in (("threshold", "o", PALETTE[0]), ("peak", "s", PALETTE[1])):
        r = fd.data["spearman"][rule]
        lab = f"{rule} rule (Spearman rho = {'n/a' if r is None else f'{r:+.2f}'})"
        for i, row in enumerate(rows):
            x = row[rule] if row[rule] is not None else row["last"]
            ax.scatter(
                x,
                row["gain"],
                marker=marker,
                s=40,
                edgecolors=c,
                facecolors=c if row[rule] is not None else "none",
                label=lab if i == 0 else None,
            )
            if rule == "threshold":
                ax.annotate(
                    row["prior"],
                    (x, row["gain"]),
                    fontsize=6,
                    xytext=(4, 3),
                    textcoords="offset points",
                )
    ax.axhline(0, color="gray", lw=0.8)
    ax.set(
        xlabel="Model Collapse Step (training steps)",
        ylabel="GT Gain (held-out accuracy, fraction)",
    )
    ax.legend(fontsize=7, loc="best")
    return finish(fig, fd.title, fd.caption)
