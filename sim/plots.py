"""Drawing: each function takes a :class:`sim.results.SimResult` (data already computed) and an optional ``ax``."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sim.results import SimResult  # noqa: E402

__all__ = ["plot_result", "save_figure"]


def _theorem1(res: SimResult, fig) -> None:
    ax1, ax2 = fig.subplots(1, 2)
    for name, traj in res.trajectories.items():
        if name.startswith("tilt/"):
            beta = float(name.split("=")[1])
            k = np.arange(traj.shape[1])
            lg = np.log(traj / (1 - traj))
            (line,) = ax1.plot(k, lg[0], "o", ms=3, label=f"beta={beta:g}")
            ax1.plot(k, lg[0, 0] + k / beta, "-", color=line.get_color(), lw=1)
        elif name.startswith("grpo/"):
            p = traj
            ax2.plot(
                np.arange(p.shape[1]),
                p.mean(axis=0),
                label=name.split("/")[1] + "/" + name.split("/")[2],
            )
    ax1.set(
        xlabel="step k", ylabel="logit p_k (dots) vs logit p0 + k/beta (lines)", title="Exact tilt"
    )
    ax1.legend(fontsize=7)
    ax2.set(
        xlabel="step",
        ylabel="mean prob. of initial majority",
        title="Sampled GRPO (majority voting)",
    )
    ax2.legend(fontsize=7)


def _stability(res: SimResult, fig) -> None:
    ax1, ax2 = fig.subplots(1, 2)
    t = res.trajectories
    n = t["n"]
    ax1.plot(n, t["flip_exact"], "-", label="exact (sharpen.theory)")
    ax1.plot(n, t["flip_mc"], "o", label="measured")
    ax1.set(xscale="log", xlabel="N", ylabel="P[majority != initial mode]", title="One vote")
    ax1.legend(fontsize=7)
    ax2.plot(n, t["stable_exact"], "-", label="exact stability_prob")
    ax2.plot(n, t["stable_mc"], "o", label="measured")
    ax2.set(xscale="log", xlabel="N", ylabel="P[mode wins every step]", title="Finite-N tilt")
    ax2.legend(fontsize=7)


def _destination(res: SimResult, fig) -> None:
    ax1, ax2 = fig.subplots(1, 2)
    t, nb = res.trajectories, res.verdict.numbers
    ax1.plot(t["step"], t["accuracy_a1"], label="A1 (population majority)")
    ax1.plot(t["step"], t["accuracy_lockin"], label="finite N, big step")
    ax1.plot(t["step"], t["accuracy_slow"], label="finite N, small step")
    ax1.axhline(nb["maj_acc"], ls="--", c="k", lw=1, label="initial maj-vote acc.")
    ax1.axhline(nb["maj_n_acc"], ls=":", c="k", lw=1, label="initial maj@N acc.")
    ax1.set(xlabel="tilt step", ylabel="pass@1", title="Where sharpening leads")
    ax1.legend(fontsize=7)
    ax2.plot(t["grpo_step"], t["grpo_accuracy"], label="sampled GRPO")
    ax2.axhline(nb["maj_acc"], ls="--", c="k", lw=1)
    ax2.set(xlabel="GRPO step", ylabel="pass@1", title="Sampled GRPO, tabular")
    ax2.legend(fontsize=7)


def _generic(res: SimResult, fig) -> None:
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


_DRAW = {"theorem1": _theorem1, "stability": _stability, "destination": _destination}


def plot_result(res: SimResult, fig=None):
    """Draw ``res`` into ``fig`` (a new figure by default); returns the figure."""
    fig = fig or plt.figure(figsize=(11, 4))
    drawer = _DRAW.get(res.experiment)
    if drawer is None:
        drawer = getattr(res, "_drawer", None) or _generic
    drawer(res, fig)
    fig.suptitle(
        f"{res.experiment}: {'holds' if res.verdict.holds else res.verdict.holds}", fontsize=9
    )
    fig.tight_layout()
    return fig


def save_figure(res: SimResult, path) -> None:
    """Draw ``res`` and save it as a PNG at ``path``."""
    fig = plot_result(res)
    fig.savefig(path, dpi=110)
    plt.close(fig)
