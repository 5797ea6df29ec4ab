"""Figure kind 3 -- the five intrinsic rewards' failure modes (paper Fig. 3).

Panels: label accuracy, validation accuracy, response length. Default data: simulated answer-level runs, one per
reward; an answer-level policy has no response length, so that panel fills only from token-level runs (the
tiny-LM presets of ``sharpen train``).
"""

from __future__ import annotations

from pathlib import Path

from paper_figures.data import FigureData, Panel, curve_data, draw_curves, load_runs, run_label
from paper_figures.simruns import SimRunSpec, ensure_run

KIND = "failure_modes"
REWARDS = (
    "majority_voting",
    "self_certainty",
    "token_entropy",
    "trajectory_entropy",
    "probability",
)
PANELS = (
    Panel("label_accuracy", "label accuracy", "majority label correct (fraction)"),
    Panel("heldout", "validation accuracy", "held-out accuracy (fraction correct)"),
    Panel("response_length", "response length", "mean response length (tokens)"),
)
DEFAULT_SPECS = tuple(SimRunSpec(reward=r) for r in REWARDS)


def compute(run_dirs=None, *, cache: Path, specs=DEFAULT_SPECS) -> FigureData:
    dirs = list(run_dirs) if run_dirs else [ensure_run(s, cache / "runs") for s in specs]
    runs = load_runs(dirs)
    src = (
        "run folders " + ", ".join(Path(d).name for d in dirs)
        if run_dirs
        else (
            "simulated answer-level runs: no response length, and token entropy / self-certainty score the distribution, "
            "not the sampled answer, so all rollouts of a group tie and those policies do not move"
        )
    )
    return FigureData(
        kind=KIND,
        title="Five intrinsic rewards: how each one fails",
        caption=f"Label accuracy (smoothed over 10 steps), held-out accuracy and response length against step, one line per reward. Data: {src}.",
        source=";".join(str(d) for d in dirs),
        data=curve_data(runs, [run_label(r) for r in runs], PANELS, smoothing=10),
    )


def draw(fd: FigureData, axes=None):
    return draw_curves(fd, axes)
