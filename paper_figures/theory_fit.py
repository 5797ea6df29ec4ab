"""Figure kind 1 -- theory vs measurement: per-question p_k with fitted Theorem 1 curves, logit view, residuals.

Compute: :func:`sharpen.run_analysis.analyze_run` on one run folder (default: the simulated majority-vote run).
Draw: :func:`paper_figures.fit_report.draw_overlay_arrays` on the cached arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from paper_figures.data import FigureData, SimSpec, run_description, sim_run_dir
from paper_figures.fit_report import draw_overlay_arrays
from sharpen.records import load_run
from sharpen.run_analysis import analyze_run

KIND = "theory_fit"
COMPACT = True  # PNG with a 256-colour palette (paper_figures.style.save)
# theorem1 saves the probes of its sampled-GRPO run with Adam and std-normalised advantages
SIM = SimSpec(
    "theorem1",
    note="sampled GRPO on a tabular policy, majority voting, N = 8, Adam lr 0.05; exact probabilities",
)


def sim_specs() -> list[SimSpec]:
    """The simulator run this kind reads without run folders: :data:`SIM`."""
    return [SIM]


def compute(run_dirs=None, *, cache: Path, sim: SimSpec | None = None) -> FigureData:
    """Fit the first run folder given (or the simulated default) and keep what the overlay draws."""
    sim = sim or SIM  # read at call time, so a caller (or a test) can swap the module default
    run_dir = Path(run_dirs[0]) if run_dirs else sim_run_dir(sim, cache)
    res = analyze_run(run_dir)
    if res.trajectories is None:
        raise ValueError(f"run_dirs: {run_dir} has no probes.jsonl to fit Theorem 1 to")
    pooled = res.pooled.get("sharpened")
    shares = {c: v["share"] for c, v in res.class_summary.items() if v["count"]}
    src = run_description(load_run(run_dir)) if run_dirs else sim.source()
    share_txt = ", ".join(f"{c} {s:.0%}" for c, s in shares.items())
    return FigureData(
        kind=KIND,
        title="Theorem 1 against measured majority-probability trajectories",
        caption=(
            f"{'Exact probability' if res.trajectories.source == 'exact' else 'Share'} p_k of each probe "
            f"question's initial majority answer (markers, {res.trajectories.n_questions} "
            f"questions, up to 12 shown) and its Theorem 1 fit (dashed). Classes: {share_txt}. Data: {src}."
        ),
        source=str(run_dir),
        data={
            "steps": res.trajectories.steps,
            "p_initial": res.trajectories.p_initial,
            "n_samples": res.trajectories.n_samples,
            "intercept": np.asarray(res.fit.intercept),
            "slope": np.asarray(res.fit.slope),
            "labels": [q.label for q in res.questions],
            "pooled_beta": None if pooled is None or not pooled.n_questions else pooled.beta,
            "n_pooled": 0 if pooled is None else pooled.n_questions,
        },
    )


def draw(fd: FigureData, axes=None):
    from paper_figures.style import finish, new_figure

    d = fd.data
    if axes is None:
        fig, axes = new_figure(3, width_per_panel=4.6)
    f = lambda x: np.asarray([[np.nan if v is None else v for v in row] for row in x], dtype=float)  # noqa: E731
    g = lambda x: np.asarray([np.nan if v is None else v for v in x], dtype=float)  # noqa: E731
    fig = draw_overlay_arrays(
        d["steps"],
        f(d["p_initial"]),
        f(d["n_samples"]),
        g(d["intercept"]),
        g(d["slope"]),
        d["labels"],
        pooled_beta=d["pooled_beta"],
        n_pooled=d["n_pooled"],
        axes=axes,
    )
    return finish(fig, fd.title, fd.caption)
