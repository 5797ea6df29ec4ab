"""Figure kind 5 -- dataset size (paper Figs. 6-7): reward curves per training-set size, and KL to the start.

Panels: ground-truth reward, proxy reward, reward accuracy, KL(pi_t || pi_0). Default data: simulated
majority-vote runs with 32 ... 2048 training questions at a fixed step budget and batch size.
"""

from __future__ import annotations

from pathlib import Path

from paper_figures.data import FigureData, Panel, curve_data, draw_curves, load_runs, run_label
from paper_figures.simruns import SimRunSpec, ensure_run

KIND = "dataset_size"
SIZES = (32, 128, 512, 2048)
PANELS = (
    Panel("gt_reward", "ground-truth reward", "training accuracy (fraction correct)"),
    Panel("majority_reward", "proxy reward", "mean majority-vote reward"),
    Panel("reward_accuracy", "reward accuracy", "proxy reward = GT reward (fraction)"),
    Panel("kl", "KL to the initial policy", "KL(pi_t || pi_0) (nats)"),
)
DEFAULT_SPECS = tuple(SimRunSpec(reward="majority_voting", n_questions=n, n_probe=8) for n in SIZES)


def compute(run_dirs=None, *, cache: Path, specs=DEFAULT_SPECS) -> FigureData:
    dirs = list(run_dirs) if run_dirs else [ensure_run(s, cache / "runs") for s in specs]
    runs = load_runs(dirs)
    src = (
        "run folders " + ", ".join(Path(d).name for d in dirs)
        if run_dirs
        else "simulated majority-vote runs, batch 32 questions"
    )
    labels = [run_label(r, vary=("n_questions",)) for r in runs]
    return FigureData(
        kind=KIND,
        title="Dataset size: does a small training set avoid collapse?",
        caption=f"Training metrics (smoothed over 10 steps) against step, one line per training-set size. Data: {src}.",
        source=";".join(str(d) for d in dirs),
        data=curve_data(runs, labels, PANELS, smoothing=10),
    )


def draw(fd: FigureData, axes=None):
    import seaborn as sns

    labels = sorted(
        {s["label"] for p in fd.data["panels"] for s in p["series"]}, key=lambda s: (len(s), s)
    )
    colors = sns.color_palette("viridis", max(len(labels), 1))
    return draw_curves(
        fd, axes, styles={lab: {"color": c} for lab, c in zip(labels, colors, strict=True)}
    )
