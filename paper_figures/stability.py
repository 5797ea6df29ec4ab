"""Figure kind 8 -- majority stability (A1): flip probability against N and against the margin.

Theory (dashed): the exact plurality probability :func:`sharpen.theory.plurality_win_probs`, flip = 1 - P[mode
wins], and the Hoeffding bound (dotted). Simulated points: Monte-Carlo vote frequencies from ``sim``'s
``stability`` experiment (:func:`sim.run`), with binomial 95% error bars.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from paper_figures.data import FigureData, SimSpec, sim_result
from sharpen.theory import hoeffding_flip_bound, plurality_win_probs

KIND = "stability"
COMPACT = True  # PNG with a 256-colour palette (paper_figures.style.save)
SIM = None  # several simulator runs: sim_specs()
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


NS = (1, 2, 4, 8, 16, 32, 64)
N_TRIALS = 4000


def _spec(probs, n_values, n_trials: int) -> SimSpec:
    """One vote-frequency run of ``sim``'s ``stability`` experiment (one tilt step: only the vote matters)."""
    over = (
        ("probs", tuple(probs)),
        ("ns", tuple(n_values)),
        ("n_trials", n_trials),
        ("k_steps", 1),
    )
    return SimSpec("stability", overrides=over)


def sim_specs(n_trials: int = N_TRIALS, ns=NS) -> list[SimSpec]:
    """Every simulator run the figure reads: one per distribution (over ``ns``), one per margin (over N = 8, 32)."""
    return [_spec(p, ns, n_trials) for p in DISTRIBUTIONS] + [
        _spec(margin_probs(d), MARGIN_NS, n_trials) for d in MARGINS
    ]


def compute(run_dirs=None, *, cache: Path, n_trials: int = N_TRIALS, ns=NS) -> FigureData:
    """Theory curves (dense) and simulated points (``sim``'s ``stability`` experiment, cached) vs N and margin."""

    def flips(probs, n_values) -> np.ndarray:
        return sim_result(_spec(probs, n_values, n_trials), cache).trajectories["flip_mc"]

    n_dense = np.arange(1, max(ns) + 1)
    by_n = []
    for probs in DISTRIBUTIONS:
        by_n.append(
            {
                "label": "P = (" + ", ".join(f"{x:g}" for x in probs) + ")",
                "n": n_dense,
                "theory": [flip_probability(probs, n) for n in n_dense],
                "sim_n": ns,
                "sim": flips(probs, ns),
            }
        )
    d_dense = np.linspace(0.005, 0.4, 80)
    by_margin = []
    at_margin = np.stack(
        [flips(margin_probs(d), MARGIN_NS) for d in MARGINS]
    )  # (margins, len(MARGIN_NS))
    for j, n in enumerate(MARGIN_NS):
        sims = at_margin[:, j]
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
        source="sharpen.theory + sim 'stability'",
        data={"by_n": by_n, "by_margin": by_margin, "n_trials": n_trials},
    )


def _measured(ax, x, freq, n_trials: int, *, marker: str, color, label: str) -> None:
    """Simulated vote frequencies with 95% binomial error bars."""
    y = np.asarray(freq, dtype=float)
    yerr = 1.96 * np.sqrt(y * (1 - y) / n_trials)
    ax.errorbar(x, y, yerr=yerr, fmt=marker, color=color, ms=4, capsize=2, label=label)


def draw(fd: FigureData, axes=None):
    from paper_figures.style import PALETTE, THEORY, finish, new_figure

    if axes is None:
        fig, axes = new_figure(2, width_per_panel=5.2)
    else:
        fig = axes[0].figure
    t = fd.data["n_trials"]
    ax = axes[0]
    for i, s in enumerate(fd.data["by_n"]):
        ax.plot(s["n"], s["theory"], **{**THEORY, "color": PALETTE[i]})
        _measured(ax, s["sim_n"], s["sim"], t, marker="o", color=PALETTE[i], label=s["label"])
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
        _measured(ax, s["sim_delta"], s["sim"], t, marker="s", color=c, label=s["label"])
    ax.plot([], [], **THEORY, label="exact (theory)")
    ax.plot([], [], color="gray", ls=":", label="Hoeffding bound")
    ax.set(
        xlabel="margin P(mode) - P(runner-up)",
        ylabel="P(initial mode loses the vote)",
        title="flip probability vs margin",
        ylim=(-0.02, 1.02),
    )
    ax.legend(fontsize=7, title="markers: simulated", title_fontsize=7)
    return finish(fig, fd.title, fd.caption)
