"""Figure kind 6 -- Model Collapse Step against GT Gain across priors (paper Figs. 11-12), with rank correlation.

One small point per seed and one large point (the mean over seeds) per prior ("model"): the Model Collapse Step
of its majority-vote training by two rules of :func:`sharpen.metrics.model_collapse_step` -- the paper's
threshold rule on batch reward accuracy (< 0.01) and the peak rule on held-out accuracy -- against its GT Gain
(:func:`sharpen.metrics.gt_gain`: held-out accuracy after ground-truth training minus before). A run that never
collapses is *censored*: drawn hollow at its last step, and ranked there (a lower bound, so censored runs tie)
in the Spearman correlation, which is taken over the per-seed points (``spearman``; over the prior means:
``spearman_means``).

Default data: ``sim``'s ``mcs_gt_gain`` exploration (six prior strengths of the shared answer-level task, three
seeds each, seed ``s``'s majority-vote and ground-truth runs sharing a dataset; GT Gain after one epoch). From
run folders: majority-voting and ground-truth runs paired by their ``model`` / ``strength`` / ``prior`` setting,
one point per pair.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from paper_figures.data import (
    FigureData,
    SimSpec,
    heldout_series,
    load_runs,
    load_sim,
)
from sharpen.collapse import metric_series
from sharpen.metrics import gt_gain, model_collapse_step
from sharpen.records import Run

KIND = "mcs_gain"
COMPACT = True  # PNG with a 256-colour palette (paper_figures.style.save)
TITLE = "Model Collapse Step against GT Gain across priors"
RULES = ("threshold", "peak")
SIM = SimSpec("mcs_gt_gain", note="the experiment's default")


def collapse_steps(run: Run) -> dict[str, float | None]:
    """MCS of a run folder by the threshold rule (reward accuracy < 0.01) and the peak rule (held-out accuracy),
    plus its last step; a rule that finds no collapse gives None."""
    _, st, ra = metric_series(run.metrics, ("reward_accuracy",))
    thr = model_collapse_step(ra, "threshold", steps=st.astype(int)) if ra.size else None
    _, hst, hv = heldout_series(run)
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
    """GT Gain of a ground-truth run folder: last minus first held-out accuracy."""
    _, _, hv = heldout_series(run)
    if hv.size < 2:
        raise ValueError(f"run: {run.run_dir} logs no held-out accuracy series")
    return gt_gain(hv[0], hv[-1])


def spearman(x, y) -> float | None:
    """Spearman's rank correlation of finite pairs (None with fewer than 3 or a constant side).

    >>> spearman([1, 2, 3, 4], [10, 30, 20, 40])
    0.8
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape:
        raise ValueError(f"y: shape {y.shape} differs from x {x.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return None
    from scipy import stats  # imported when needed, not with the CLI

    return round(float(stats.spearmanr(x[ok], y[ok]).statistic), 12)


def _point(gain: float, steps: dict[str, float | None], last: float) -> dict:
    """One run (or seed): its GT Gain and, per rule, the MCS (``last`` where censored) and whether censored."""
    pt = {"gain": float(gain)}
    for rule in RULES:
        v = steps[rule]
        pt[rule] = float(last if v is None else v)
        pt[f"{rule}_censored"] = int(v is None)
    return pt


def _row(prior: str, runs: list[dict], last: float) -> dict:
    """A prior: the mean over its per-seed points ``runs`` (:func:`_point`) and how many were censored."""
    if not runs:
        raise ValueError(f"runs: prior {prior!r} has no run")
    row = {
        "prior": prior,
        "gain": float(np.mean([r["gain"] for r in runs])),
        "last": float(last),
        "n_runs": len(runs),
        "runs": runs,
    }
    for rule in RULES:
        row[rule] = float(np.mean([r[rule] for r in runs]))
        row[f"{rule}_censored"] = int(sum(r[f"{rule}_censored"] for r in runs))
    return row


def _rows_from_runs(run_dirs) -> list[dict]:
    groups: dict[str, dict[str, Run]] = {}
    for run in load_runs(run_dirs):
        key = None if run.header.model is None else f"model={run.header.model}"  # the prior
        reward = run.header.reward
        if key and reward in ("majority_voting", "ground_truth"):
            groups.setdefault(key, {})[reward] = run
    pairs = [(k, g["majority_voting"], g["ground_truth"]) for k, g in groups.items() if len(g) == 2]
    if not pairs:
        raise ValueError(
            "run_dirs: needs a majority_voting and a ground_truth run per prior (grouped by the header's model)"
        )
    return [
        _row(name, [_point(heldout_gain(gt), c, c["last"])], c["last"])
        for name, mv, gt in pairs
        for c in [collapse_steps(mv)]
    ]


def _rows_from_sim(res) -> list[dict]:
    """Per-seed points from the verdict's rows (a seed without collapse is recorded at the horizon)."""
    horizon = int(res.config["steps"])
    rows = []
    for r in res.verdict.numbers["rows"]:
        per_rule = [r[f"mcs_{rule}_runs"] for rule in RULES]
        runs = []
        for i, gain in enumerate(r["gt_gain_runs"]):
            steps = {
                rule: v[i] if int(v[i]) < horizon else None
                for rule, v in zip(RULES, per_rule, strict=True)
            }
            runs.append(_point(gain, steps, horizon))
        rows.append(_row(f"strength {r['strength']:g}", runs, horizon))
    return rows


def _has_seed_gains(res) -> bool:
    return all("gt_gain_runs" in r for r in res.verdict.numbers["rows"])


def sim_specs() -> list[SimSpec]:
    """The simulator run this kind reads without run folders: :data:`SIM`."""
    return [SIM]


def compute(run_dirs=None, *, cache: Path, sim: SimSpec | None = None) -> FigureData:
    """Rows ``{prior, gain, threshold, peak, *_censored, last, n_runs}`` and the Spearman correlation per rule."""
    sim = sim or SIM  # read at call time, so a caller (or a test) can swap the module default
    if run_dirs:
        rows = _rows_from_runs(run_dirs)
        src, source = f"{len(rows)} pairs of run folders", ";".join(str(d) for d in run_dirs)
        what = "one majority-vote run and one ground-truth run per prior; GT Gain = last - first held-out accuracy"
    else:
        run_dir, res = load_sim(sim, cache)
        if not _has_seed_gains(res):  # cached before per-seed GT gains were stored: run it again
            shutil.rmtree(run_dir)
            run_dir, res = load_sim(sim, cache)
        rows = _rows_from_sim(res)
        cfg = res.config
        src, source = f"{sim.source()}", str(run_dir)
        what = (
            f"{cfg['n_questions']} training questions, batch {cfg['batch_size']} x {cfg['n_rollouts']}, "
            f"{cfg['steps']} majority-vote steps; MCS = mean over {cfg['seeds']} seeds (a censored seed counts "
            f"as {cfg['steps']}); GT Gain after one epoch of ground-truth training"
        )
    points = [p for r in rows for p in r["runs"]]
    rho = {rule: spearman([p[rule] for p in points], [p["gain"] for p in points]) for rule in RULES}
    rho_means = {
        rule: spearman([r[rule] for r in rows], [r["gain"] for r in rows]) for rule in RULES
    }
    found = {rule: sum(r[f"{rule}_censored"] < r["n_runs"] for r in rows) for rule in RULES}

    def fmt(v):
        return "n/a" if v is None else f"{v:+.2f}"

    return FigureData(
        kind=KIND,
        title=TITLE,
        caption=(
            f"MCS by the threshold rule (batch reward accuracy < 0.01; collapse seen for {found['threshold']}/"
            f"{len(rows)} priors) and the peak rule (held-out accuracy past its peak; {found['peak']}/{len(rows)}) "
            f"against GT Gain. Small points: single runs (seeds); large points: the mean per prior. Hollow: no "
            f"collapse (for a mean: in some run), drawn at the horizon. Spearman over the {len(points)} runs; over "
            f"the prior means: threshold {fmt(rho_means['threshold'])}, peak {fmt(rho_means['peak'])}. {what}. "
            f"Data: {src}."
        ),
        source=source,
        data={"rows": rows, "spearman": rho, "spearman_means": rho_means},
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
        ax.scatter(
            [],
            [],
            marker=marker,
            color=c,
            label=f"{rule} rule (Spearman over runs {'n/a' if r is None else f'{r:+.2f}'})",
        )
        for row in rows:
            runs = row.get("runs", [])
            if len(runs) > 1:  # the seeds, small and light, behind their mean
                for censored in (0, 1):
                    pts = [p for p in runs if p[f"{rule}_censored"] == censored]
                    ax.scatter(
                        [p[rule] for p in pts],
                        [p["gain"] for p in pts],
                        marker=marker,
                        s=14,
                        edgecolors=c,
                        facecolors="none" if censored else c,
                        linewidths=0.8,
                        alpha=0.45,
                        zorder=2,
                    )
            full = row[f"{rule}_censored"] == 0
            ax.scatter(
                row[rule],
                row["gain"],
                marker=marker,
                s=60,
                edgecolors=c,
                facecolors=c if full else "white",
                linewidths=1.6,
                zorder=3,
            )
    for row in rows:  # name each prior once, at its peak-rule point
        ax.annotate(
            row["prior"],
            (row["peak"], row["gain"]),
            fontsize=7,
            xytext=(5, -3),
            textcoords="offset points",
        )
    if any(len(row.get("runs", [])) > 1 for row in rows):
        ax.scatter(
            [], [], marker="o", s=14, color="gray", alpha=0.45, label="small: one run (seed)"
        )
        ax.scatter([], [], marker="o", s=60, color="gray", label="large: mean over seeds")
    ax.scatter(
        [],
        [],
        marker="o",
        facecolors="none",
        edgecolors="gray",
        label="hollow: censored (no collapse)",
    )
    ax.axvline(max(r["last"] for r in rows), color="gray", ls=":", lw=1, label="end of the runs")
    ax.axhline(0, color="gray", lw=0.8)
    ax.set(
        xlabel="Model Collapse Step (training steps)",
        ylabel="GT Gain (held-out accuracy, fraction)",
    )
    ax.legend(fontsize=7, loc="best")
    return finish(fig, fd.title, fd.caption)
