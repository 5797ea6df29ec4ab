"""Figure kind 2 -- rise-then-fall (paper Fig. 2): majority-vote vs ground-truth training against step.

Panels: held-out (validation) accuracy, majority (proxy) reward, reward accuracy, entropy.
Default data: two simulated runs from the same prior, majority-voting and ground-truth reward.
"""

from __future__ import annotations

from pathlib import Path

from paper_figures.data import FigureData, Panel, curve_data, draw_curves, load_runs, run_label
from paper_figures.simruns import SimRunSpec, ensure_run

KIND = "rise_fall"
PANELS = (
    Panel("heldout", "validation accuracy", "held-out accuracy (fraction correct)"),
    Panel("majority_reward", "proxy reward", "mean training reward"),
    Panel("reward_accuracy", "reward accuracy", "proxy reward = GT reward (fraction)"),
    Panel("entropy", "entropy", "policy entropy (nats)"),
)
DEFAULT_SPECS = (SimRunSpec(reward="majority_voting"), SimRunSpec(reward="ground_truth"))


def compute(run_dirs=None, *, cache: Path, specs=DEFAULT_SPECS) -> FigureData:
    dirs = list(run_dirs) if run_dirs else [ensure_run(s, cache / "runs") for s in specs]
    runs = load_runs(dirs)
    src = (
        "run folders " + ", ".join(Path(d).name for d in dirs)
        if run_dirs
        else "simulated runs (shared-weight answer-level policy, sampled GRPO)"
    )
    return FigureData(
        kind=KIND,
        title="Rise then fall? Majority-vote vs ground-truth reward",
        caption=f"Batch metrics (smoothed over 10 steps) and held-out accuracy against training step. Data: {src}.",
        source=";".join(str(d) for d in dirs),
        data=curve_data(runs, [run_label(r) for r in runs], PANELS, smoothing=10),
    )


def draw(fd: FigureData, axes=None):
    return draw_curves(fd, axes)
