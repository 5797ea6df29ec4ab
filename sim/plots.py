"""Drawing: each function takes a :class:`sim.results.SimResult` (data already computed) and an optional ``ax``."""

from __future__ import annotations

import warnings

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


def _mean_line(ax, x, arr, label, **kw):
    """Mean over seeds (thick) and each seed (thin); NaN entries (unlogged steps) are skipped."""
    arr = np.atleast_2d(arr)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(arr, axis=0)
    (line,) = ax.plot(x, mean, label=label, lw=1.6, **kw)
    if arr.shape[0] > 1:
        for row in arr:
            ax.plot(x, row, color=line.get_color(), lw=0.5, alpha=0.35)
    return line


def _failure_modes(res: SimResult, fig) -> None:
    t = res.trajectories
    rewards = res.config["rewards"]
    panels = [
        ("val/ground_truth_ratio", "held-out accuracy"),
        ("response_length", "response length (tokens)"),
        ("repetition_rate", "repetition rate"),
        ("unparseable", "unparseable share"),
    ]
    axes = fig.subplots(1, len(panels))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for r in rewards:
            _mean_line(ax, t["step"], t[f"{r}/{key}/seeds"], r)
        ax.set(xlabel="step", title=title)
    axes[0].legend(fontsize=6)


def _rise_then_fall(res: SimResult, fig) -> None:
    t = res.trajectories
    ax1, ax2, ax3 = fig.subplots(1, 3)
    step = t["step"]
    settings = sorted({k.rsplit("/mv/", 1)[0] for k in t if "/mv/heldout_accuracy" in k})
    main = "adam/bonus=1" if "adam/bonus=1" in settings else settings[0]
    _mean_line(ax1, step, t[f"{main}/mv/heldout_accuracy"], "majority voting")
    _mean_line(ax1, step, t[f"{main}/gt/heldout_accuracy"], "ground truth")
    _mean_line(ax1, step, t[f"{main}/mv/reward_mean"], "MV proxy reward", ls="--")
    ax1.set(xlabel="step", ylabel="held-out accuracy / reward", title=f"{main} (seeds thin)")
    ax1.legend(fontsize=7)
    for opt, ax in (("adam", ax2), ("sgd", ax3)):
        for name in settings:
            if name.startswith(opt + "/"):
                ax.plot(
                    step, t[f"{name}/mv/heldout_accuracy"].mean(axis=0), label=name.split("/")[1]
                )
        ax.set(xlabel="step", ylabel="held-out accuracy (MV, mean of seeds)", title=opt)
        if ax.lines:
            ax.legend(fontsize=7)


def _dataset_size(res: SimResult, fig) -> None:
    t = res.trajectories
    ax1, ax2, ax3 = fig.subplots(1, 3)
    sizes = res.config["sizes"]
    for q in sizes:
        _mean_line(ax1, t["step"], t[f"Q={q}/ground_truth_ratio"], f"Q={q}")
        _mean_line(ax2, t["step"], t[f"Q={q}/kl"], f"Q={q}")
    ax1.set(xlabel="step", ylabel="training accuracy (GT reward)", title="Majority voting")
    ax1.legend(fontsize=7)
    ax2.set(xlabel="step", ylabel="KL(pi || pi_0)", title="KL to the initial policy")
    share = [res.verdict.numbers["collapse_share"][str(q)] for q in sizes]
    ax3.bar([str(q) for q in sizes], share)
    ax3.set(xlabel="dataset size Q", ylabel="share of seeds that collapse", ylim=(0, 1.05))


def _mcs(res: SimResult, fig) -> None:
    t = res.trajectories
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(t["gt_gain"], t["mcs_threshold"], "o-", label="threshold rule (reward acc. < 0.01)")
    ax1.plot(t["gt_gain"], t["mcs_peak"], "s--", label="peak rule (held-out acc.)")
    for x, y, s in zip(t["gt_gain"], t["mcs_threshold"], t["strength"], strict=True):
        ax1.annotate(f"{s:g}", (x, y), fontsize=7)
    ax1.set(
        xlabel="GT Gain (1 epoch, held-out)", ylabel="Model Collapse Step", title="MCS vs GT Gain"
    )
    ax1.legend(fontsize=7)
    for s in t["strength"]:
        _mean_line(ax2, t["step"], t[f"strength={s:g}/reward_accuracy"], f"strength {s:g}")
    ax2.set(xlabel="step", ylabel="batch reward accuracy (MV)", title="Reward accuracy")
    ax2.legend(fontsize=7)


def _single_question(res: SimResult, fig) -> None:
    ax1, ax2 = fig.subplots(1, 2)
    nb = res.verdict.numbers
    names = list(nb)
    x = np.arange(len(names))
    for i, (key, label) in enumerate(
        [
            ("right_to_wrong", "right->wrong"),
            ("wrong_to_right", "wrong->right"),
            ("greedy_changed", "greedy changed"),
        ]
    ):
        ax1.bar(x + 0.25 * i, [nb[n][key] for n in names], width=0.25, label=label)
    ax1.axhline(0.12, ls="--", c="k", lw=1, label="paper: 12% flip")
    ax1.set_xticks(x + 0.25, names, fontsize=7)
    ax1.set(ylabel="share of questions", title="Single-question training")
    ax1.legend(fontsize=7)
    t = res.trajectories
    for n in names:
        _mean_line(ax2, t["step"], t[f"{n}/greedy_accuracy"], n)
    ax2.set(xlabel="step", ylabel="greedy accuracy", title="Greedy accuracy")
    ax2.legend(fontsize=7)


def _self_verification(res: SimResult, fig) -> None:
    t = res.trajectories
    ax1, ax2 = fig.subplots(1, 2)
    names = [k.rsplit("/heldout_accuracy", 1)[0] for k in t if k.endswith("/heldout_accuracy")]
    for n in names:
        _mean_line(ax1, t["step"], t[f"{n}/heldout_accuracy"], n)
        _mean_line(ax2, t["step"], t[f"{n}/reward_accuracy"], n)
    ax1.set(xlabel="step", ylabel="held-out accuracy", title="External vs intrinsic reward")
    ax1.legend(fontsize=7)
    ax2.set(xlabel="step", ylabel="batch reward accuracy", title="Reward accuracy")


def _grid(res: SimResult, fig) -> None:
    t = res.trajectories
    axes = fig.subplots(1, 2)
    for key, ax, title in (
        ("accuracy", axes[0], "pass@1"),
        ("p_max", axes[1], "mean max probability"),
    ):
        for name in res.verdict.numbers["rewards"]:
            _mean_line(ax, t["step"], t[f"{name}/{key}"], name)
        ax.set(xlabel="step", title=f"{title} (mean over settings and seeds)")
    axes[0].legend(fontsize=7)


_DRAW = {
    "theorem1": _theorem1,
    "stability": _stability,
    "destination": _destination,
    "failure_modes": _failure_modes,
    "rise_then_fall": _rise_then_fall,
    "dataset_size": _dataset_size,
    "mcs_gt_gain": _mcs,
    "single_question": _single_question,
    "self_verification": _self_verification,
    "grid": _grid,
}


def plot_result(res: SimResult, fig=None):
    """Draw ``res`` into ``fig`` (a new figure by default); returns the figure."""
    wide = res.experiment in ("failure_modes", "rise_then_fall", "dataset_size")
    fig = fig or plt.figure(figsize=(15, 4) if wide else (11, 4))
    drawer = _DRAW.get(res.experiment)
    if drawer is None:
        drawer = getattr(res, "_drawer", None) or _generic
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


def save_figure(res: SimResult, path) -> None:
    """Draw ``res`` and save it as a PNG at ``path``."""
    fig = plot_result(res)
    fig.savefig(path, dpi=110)
    plt.close(fig)
