"""Figure kind 4 -- per-question sharpening heat map (paper Fig. 4): questions x probe steps.

Colour says whether the current majority answer is correct (blue) or wrong (red); its depth is the confidence,
the majority's share of the probe samples. Rows are sorted by initial then final correctness. The caption reports
the share of questions whose majority correctness changed between the first and last probe (the paper: 3/25).

Default data: ``sim``'s ``single_question`` exploration -- the paper's setting, 25 questions each trained alone
for 100 steps with the trajectory-level entropy reward; its caption adds the exploration's flip share over every
question and seed, since 25 rows show only a handful of flips.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from paper_figures.data import FigureData, SimSpec, load_sim, run_description
from sharpen.fitting import trajectories_from_probes
from sharpen.records import load_run

KIND = "heatmap"
COMPACT = False  # a 256-colour palette bands the diverging colour scale; keep the full-colour PNG
# single_question saves the exact answer distributions of its first 25 questions (first seed, first reward)
SIM = SimSpec(
    "single_question",
    note="trajectory-level entropy reward, N = 8, SGD lr 0.1; exact probabilities",
)
_TABULAR = (
    "A tabular policy moves each question only through its own rollouts, as if it were trained alone (the "
    "paper's Fig. 4 setting, where 3/25 problems changed)"
)


def _flip_context(res) -> str:
    """The caption's setting and the exploration's flip shares over all its questions and seeds
    (``single_question`` results; "" for any other experiment)."""
    if res.experiment != "single_question":
        return ""
    cfg = res.config
    reward = cfg["rewards"][0]
    v = res.verdict.numbers[reward]
    total = int(cfg["prior"]["n_questions"]) * int(cfg["seeds"])
    return (
        f"Each question is trained alone for {cfg['steps']} steps, the paper's Fig. 4 setting (there 3/25 "
        f"problems changed). Over all {total} questions of the exploration ({cfg['seeds']} seeds, {reward}): "
        f"{v['flip_share']:.1%} flip greedy correctness (right->wrong {v['right_to_wrong']:.1%}, "
        f"wrong->right {v['wrong_to_right']:.1%}); confidence deepened for {v['confidence_deepened']:.0%}"
    )


def signed_confidence(p_majority: np.ndarray, majority_correct: np.ndarray) -> np.ndarray:
    """(Q, L): +p where the majority is correct, -p where wrong, NaN where unknown or not probed.

    >>> signed_confidence(np.array([[0.5, 0.9]]), np.array([[1.0, 0.0]])).tolist()
    [[0.5, -0.9]]
    """
    p = np.asarray(p_majority, dtype=float)
    c = np.asarray(majority_correct, dtype=float)
    if p.shape != c.shape:
        raise ValueError(f"majority_correct: shape {c.shape} differs from p_majority {p.shape}")
    return np.where(np.isnan(c), np.nan, np.where(c > 0.5, p, -p))


def sim_specs() -> list[SimSpec]:
    """The simulator run this kind reads without run folders: :data:`SIM`."""
    return [SIM]


def compute(run_dirs=None, *, cache: Path, sim: SimSpec | None = None) -> FigureData:
    sim = sim or SIM  # read at call time, so a caller (or a test) can swap the module default
    context = ""
    if run_dirs:
        run_dir = Path(run_dirs[0])
    else:
        run_dir, res = load_sim(sim, cache)
        context = _flip_context(res)
    run = load_run(run_dir)
    if not run.probes:
        raise ValueError(f"run_dirs: {run_dir} has no probes.jsonl for a per-question heat map")
    traj, _ = trajectories_from_probes(run.probes)
    z = signed_confidence(traj.p_majority, traj.majority_correct)
    if np.isnan(z).all():
        raise ValueError(f"run_dirs: the probes of {run_dir} carry no majority_correct")

    def edge(row, last):
        idx = np.flatnonzero(~np.isnan(row))
        return row[idx[-1 if last else 0]] if idx.size else np.nan

    first = np.array([edge(r, False) for r in z])
    last = np.array([edge(r, True) for r in z])
    order = np.lexsort((-np.nan_to_num(last), -np.nan_to_num(first)))
    changed = (np.sign(first) != np.sign(last)) & ~np.isnan(first) & ~np.isnan(last)
    src = run_description(run) if run_dirs else f"{sim.source()}. {context or _TABULAR}"
    return FigureData(
        kind=KIND,
        title="Per-question sharpening: correctness and confidence of the majority answer",
        caption=(
            f"Rows: {traj.n_questions} probe questions; columns: probe steps. Blue = majority correct, red = wrong, "
            f"depth = majority share. Correctness changed for {int(changed.sum())}/{traj.n_questions} questions "
            f"({changed.mean():.0%}); wrong->right {int(((first < 0) & (last > 0)).sum())}, right->wrong "
            f"{int(((first > 0) & (last < 0)).sum())}. Data: {src}."
        ),
        source=str(run_dir),
        data={
            "steps": traj.steps,
            "question_ids": [traj.question_ids[i] for i in order],
            "z": z[order],
            "changed": int(changed.sum()),
        },
    )


def draw(fd: FigureData, ax=None):
    import matplotlib.pyplot as plt

    from paper_figures.style import finish, new_figure

    d = fd.data
    z = np.asarray([[np.nan if v is None else v for v in row] for row in d["z"]], dtype=float)
    steps = np.asarray(d["steps"], dtype=float)
    if ax is None:
        fig, (ax,) = new_figure(1, width_per_panel=8.5, height=max(3.2, 0.16 * z.shape[0] + 1.5))
    else:
        fig = ax.figure
    im = ax.imshow(z, aspect="auto", cmap="RdBu", vmin=-1, vmax=1, interpolation="nearest")
    # round step values as ticks, placed between columns by interpolation (probe steps are increasing)
    from matplotlib.ticker import MaxNLocator

    values = [
        v
        for v in MaxNLocator(nbins=8).tick_values(steps[0], steps[-1])
        if steps[0] <= v <= steps[-1]
    ]
    ax.set_xticks(np.interp(values, steps, np.arange(steps.size)), [f"{v:g}" for v in values])
    ax.set_yticks(np.arange(z.shape[0]), d["question_ids"], fontsize=6)
    ax.set(xlabel="training step (probe)", ylabel="probe question")
    ax.grid(False)
    cb = plt.colorbar(im, ax=ax, fraction=0.04)
    cb.set_label("majority share: + correct / - wrong")
    return finish(fig, fd.title, fd.caption)
