"""Drawing: a :class:`sim.results.SimResult` (data already computed) into a figure, and saving it.

Each experiment's drawer lives in its own module (:mod:`sim.experiments`) and is carried by its registry entry
(:attr:`sim.registry.Experiment.plot`, with its ``figsize``); :func:`plot_result` looks it up by the result's
experiment name and falls back to :func:`draw_generic`. Drawers take the result and a figure and share
:func:`mean_line`.

matplotlib (on the Agg backend) is imported on the first draw, not with this module: the experiment modules import
:func:`mean_line`, and ``import sim`` should not load matplotlib or switch a caller's backend.
"""

from __future__ import annotations

import warnings

import numpy as np

from sim.registry import EXPERIMENTS
from sim.results import SimResult

__all__ = ["plot_result", "save_figure", "mean_line", "draw_generic"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def mean_line(ax, x, arr, label, **kw):
    """Mean over seeds (thick) and each seed (thin); NaN entries (unlogged steps) are skipped.

    ``arr`` is ``(seeds, S)`` (or ``(S,)``, one seed); returns the mean's line.
    """
    arr = np.atleast_2d(arr)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(arr, axis=0)
    (line,) = ax.plot(x, mean, label=label, lw=1.6, **kw)
    if arr.shape[0] > 1:
        for row in arr:
            ax.plot(x, row, color=line.get_color(), lw=0.5, alpha=0.35)
    return line


def draw_generic(res: SimResult, fig) -> None:
    """Up to six panels, one per trajectory (every row of a 2-D one), against ``step`` where lengths match."""
    t = res.trajectories
    step = t.get("step")
    keys = [k for k, v in t.items() if k != "step" and v.ndim >= 1]
    n = max(1, min(len(keys), 6))
    axes = np.atleast_1d(fig.subplots(1, n))
    for ax, key in zip(axes, keys[:n], strict=False):
        v = t[key]
        x = step if step is not None and v.shape[-1] == len(step) else np.arange(v.shape[-1])
        if v.ndim == 1:
            ax.plot(x, v)
        else:
            for row in v.reshape(-1, v.shape[-1]):
                ax.plot(x, row, lw=1, alpha=0.7)
        ax.set(title=key, xlabel="step")


def plot_result(res: SimResult, fig=None, experiment=None):
    """Draw ``res`` into ``fig`` (a new figure by default) with its experiment's drawer; returns the figure.

    ``experiment``: the registry entry whose drawer to use (default: the simulator's entry of that name)."""
    import sim.experiments  # noqa: F401  (fills EXPERIMENTS: ``import sim`` alone is lazy)

    exp = experiment or EXPERIMENTS.get(res.experiment)
    figsize = exp.figsize if exp is not None else (11.0, 4.0)
    drawer = exp.plot if exp is not None and exp.plot is not None else draw_generic
    fig = fig or _pyplot().figure(figsize=figsize)
    drawer(res, fig)
    v = res.verdict
    if v.kind == "theorem":
        status = {True: "holds", False: "FAILS", None: "undecided"}[v.holds]
    else:
        status = {True: "reproduced", False: "not reproduced", None: "partly / depends on setting"}[
            v.holds
        ]
    fig.suptitle(f"{res.experiment}: {status}", fontsize=9)
    fig.tight_layout()
    return fig


def save_figure(res: SimResult, path, experiment=None) -> None:
    """Draw ``res`` (with ``experiment``'s drawer, see :func:`plot_result`) and save it as a PNG at ``path``."""
    fig = plot_result(res, experiment=experiment)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
