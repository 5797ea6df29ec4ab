"""Figures of one run folder: compute from the JSONL records, then draw on given axes.

>>> fig_path = plot_run("runs/tiny-arith-ttrl", "runs/tiny-arith-ttrl.png")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sharpen.metrics import trailing_mean
from sharpen.records import load_run


def probe_curves(probes: list[dict]) -> dict[str, np.ndarray]:
    """Mean over probe questions, per probe step: ``p_majority``, ``p_initial_majority``, ``sample_accuracy``."""
    steps = np.array(sorted({int(r["step"]) for r in probes}))
    out = {"step": steps}
    for key in ("p_majority", "p_initial_majority", "sample_accuracy"):
        out[key] = np.array(
            [np.mean([float(r[key] or 0.0) for r in probes if r["step"] == s]) for s in steps]
        )
    return out


def draw_probes(ax, curves: dict[str, np.ndarray]):
    """Probe trajectories: majority probability (now and of the initial majority) and sample accuracy."""
    ax.plot(curves["step"], curves["p_majority"], marker="o", label="majority probability")
    ax.plot(
        curves["step"],
        curves["p_initial_majority"],
        marker=".",
        label="initial-majority probability",
    )
    ax.plot(curves["step"], curves["sample_accuracy"], ls="--", label="sample accuracy")
    ax.set(
        xlabel="step",
        ylabel="mean over probe questions",
        ylim=(0, 1),
        title="probe questions (train)",
    )
    ax.legend(fontsize=8)
    return ax


def draw_batch(ax, metrics: list[dict], window: int = 20):
    """Batch metrics (trailing mean over ``window`` logged values, :func:`sharpen.metrics.trailing_mean`):
    majority ratio, ground-truth reward, reward and label accuracy. Steps that did not log a metric are left out
    of its curve."""
    for key in ("majority_ratio", "ground_truth_ratio", "reward_accuracy", "label_accuracy"):
        logged = [(m["step"], m[key]) for m in metrics if m.get(key) is not None]
        if logged:
            steps, values = np.array(logged, dtype=float).T
            ax.plot(steps, trailing_mean(values, window), label=key)
    ax.set(xlabel="step", ylim=(0, 1), title=f"training batches (moving average of {window})")
    ax.legend(fontsize=8)
    return ax


def draw_eval(ax, evals: list[dict]):
    """Held-out accuracy: every ``avg@k`` / ``maj@k`` / ``greedy_accuracy`` column."""
    steps = [e["step"] for e in evals]
    keys = [k for k in evals[0] if k.startswith(("avg@", "maj@", "greedy"))]
    for key in keys:
        ax.plot(steps, [e[key] for e in evals], marker="o", label=key)
    ax.set(xlabel="step", ylim=(0, 1), title="held-out accuracy")
    ax.legend(fontsize=8)
    return ax


def plot_run(run_dir: str | Path, path: str | Path) -> Path:
    """Three panels (probes, batches, held-out) of a run folder saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = load_run(run_dir)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    if run.probes:
        draw_probes(axes[0], probe_curves(run.probes))
    if run.metrics:
        draw_batch(axes[1], run.metrics)
    if run.evals:
        draw_eval(axes[2], run.evals)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
