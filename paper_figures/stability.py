"""Figure kind 8 -- majority stability (A1): flip probability against N and against the margin.

Theory (dashed): the exact plurality probability :func:`sharpen.theory.plurality_win_probs`, flip = 1 - P[mode
wins], and the Hoeffding bound (dotted). Simulated points: Monte-Carlo vote frequencies from ``sim``'s
``stability`` experiment (:func:`sim.run`), with binomial 95% error bars.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from paper_figures.data import FigureData
from sharpen.theory import hoeffding_flip_bound, plurality_win_probs

KIND = "stability"
DISTRIBUTIONS = ((0.5, 0.3, 0.2), (0.4, 0.3, 0.2, 0.1), (0.35, 0.3, 0.2, 0.15))
MARGIN_NS = (8, 32)
MARGINS = (0.02, 0.05, 0.1, 0.2, 0.3)


def margin_probs(delta: float, rest: float = 0.2) -> tuple[float, float, float]:
    """Three answers: mode and runner-up ``delta`` apart, ``rest`` on a third answer.

    >>> margin_probs(0.2)
    (0.5, 0.3, 0.2)
    """
    if not 0 <= delta <= 1 - rest:
        raise ValueError(f"delta: must lie in [0, {1 - rest}], got {delta}")
    a = (1 - rest + delta) / 2
    return (round(a, 12), round(1 - rest - a, 12), rest)


def flip_probability(probs, n: int) -> float:
    """Exact probability that the mode of ``probs`` loses a plurality vote of ``n`` samples."""
    p = np.asarray(probs, dtype=float)
    return float(1.0 - plurality_win_probs(p, int(n))[int(np.argmax(p))])


def compute(
    run_dirs=None, *, cache: Path, n_trials: int = 4000, ns=(1, 2, 4, 8, 16, 32, 64)
) -> FigureData:
    """Theory curves (dense) and simulated points (``sim.run("stability")``) vs N and vs margin."""
    from sim import run as sim_run

    n_dense = np.arange(1, max(ns) + 1)
    by_n = []
    for probs in DISTRIBUTIONS:
        res = sim_run("stability", probs=tuple(probs), ns=tuple(ns), n_trials=n_trials, k_steps=1)
        by_n.append(
            {
                "label": "P = (" + ", ".join(f"{x:g}" for x in probs) + ")",
                "n": n_dense,
                "theory": [flip_probability(probs, n) for n in n_dense],
                "sim_n": res.trajectories["n"],
                "sim": res.trajectories["flip_mc"],
            }
        )
    d_dense = np.linspace(0.005, 0.4, 80)
    by_margin = []
    for n in MARGIN_NS:
        sims = [
            float(
                sim_run(
                    "stability", probs=margin_probs(d), ns=(n,), n_trials=n_trials, k_steps=1
                ).trajectories["flip_mc"][0]
            )
            for d in MARGINS
        ]
        by_margin.append(
            {
                "label": f"N = {n}",
                "delta": d_dense,
                "theory": [flip_probability(margin_probs(d), n) for d in d_dense],
                "hoeffding": [
                    float(min(1.0, hoeffding_flip_bound(margin_probs(d), n))) for d in d_dense
                ],
                "sim_delta": MARGINS,
                "sim": sims,
            }
        )
    return FigureData(
        kind=KIND,
        title="Majority stability (A1): how often the initial mode loses the vote",
        caption=(
            f"Exact plurality flip probability (dashed) and simulated vote frequencies ({n_trials} votes per point, "
            "95% binomial bars) from sim's 'stability' experiment; right: mode vs runner-up margin with 0.2 on a "
            "third answer, Hoeffding bound dotted."
        ),
        source="sharpen.theory + sim.run('stability')",
        data={"by_n": by_n, "by_margin": by_margin, "n_trials": n_trials},
    )


def draw(fd: FigureData, axes=None):
    from paper_figures.style import PALETTE, THEORY, finish, new_figure

    if axes is None:
        fig, axes = new_figure(2, width_per_panel=5.2)
    else:
        fig = axes[0].figure
    t = fd.data["n_trials"]
    ax = axes[0]
    for i, s in enumerate(fd.data["by_n"]):
        c = PALETTE[i]
        ax.plot(s["n"], s["theory"], **{**THEORY, "color": c})
        y = np.asarray(s["sim"], dtype=float)
        ax.errorbar(
            s["sim_n"],
            y,
            yerr=1.96 * np.sqrt(y * (1 - y) / t),
            fmt="o",
            color=c,
            ms=4,
            capsize=2,
            label=s["label"],
        )
    ax.plot([], [], **THEORY, label="exact (theory)")
    ax.set(
        xscale="log",
        xlabel="rollouts N voting (log scale)",
        ylabel="P(initial mode loses the vote)",
        title="flip probability vs N",
    )
    ax.legend(fontsize=7, title="markers: simulated", title_fontsize=7)
    ax = axes[1]
    for i, s in enumerate(fd.data["by_margin"]):
        c = PALETTE[i + 3]
        ax.plot(s["delta"], s["theory"], **{**THEORY, "color": c})
        ax.plot(s["delta"], s["hoeffding"], color=c, ls=":", lw=1.2)
        y = np.asarray(s["sim"], dtype=float)
        ax.errorbar(
            s["sim_delta"],
            y,
            yerr=1.96 * np.sqrt(y * (1 - y) / t),
            fmt="s",
            color=c,
            ms=4,
            capsize=2,
            label=s["label"],
        )
    ax.plot([], [], **THEORY, label="exact (theory)")
    ax.plot([], [], color="gray", ls=":", label="Hoeffding bound")
    ax.set(
        xlabel="margin P(mode) - P(runner-up)",
        ylabel="P(initial mode loses the vote)",
        title="flip probability vs margin",
        ylim=(-0.02, 1.02),
    )
    ax.legend(fontsize=7)
    return finish(fig, fd.title, fd.caption)
