"""Figure kind 7 -- self-verification vs an intrinsic reward vs the oracle (paper Fig. 13).

Panels: validation accuracy and reward accuracy. Default data: simulated runs with a verifier of accuracy 0.9
(independent of the policy's confidence), trajectory-level entropy, and the ground-truth reward.
"""

from __future__ import annotations

from pathlib import Path

from paper_figures.data import FigureData, Panel, curve_data, draw_curves, load_runs, run_label
from paper_figures.simruns import SimRunSpec, ensure_run

KIND = "self_verification"
PANELS = (
    Panel("heldout", "validation accuracy", "held-out accuracy (fraction correct)"),
    Panel("reward_accuracy", "reward accuracy", "proxy reward = GT reward (fraction)"),
)
DEFAULT_SPECS = (
    SimRunSpec(reward="self_verification", verifier_accuracy=0.9),
    SimRunSpec(reward="trajectory_entropy"),
    SimRunSpec(reward="ground_truth"),
)


def compute(run_dirs=None, *, cache: Path, specs=DEFAULT_SPECS) -> FigureData:
    dirs = list(run_dirs) if run_dirs else [ensure_run(s, cache / "runs") for s in specs]
    runs = load_runs(dirs)
    src = (
        "run folders " + ", ".join(Path(d).name for d in dirs)
        if run_dirs
        else "simulated runs, verifier accuracy 0.9"
    )
    return FigureData(
        kind=KIND,
        title="External verification vs intrinsic reward vs oracle",
        caption=f"Held-out accuracy and reward accuracy (smoothed over 10 steps) against step. Data: {src}.",
        source=";".join(str(d) for d in dirs),
        data=curve_data(runs, [run_label(r) for r in runs], PANELS, smoothing=10),
    )


def draw(fd: FigureData, axes=None):
    styles = {"ground_truth": {"ls": ":"}}
    return draw_curves(fd, axes, styles=styles)
