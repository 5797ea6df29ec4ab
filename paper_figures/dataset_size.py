"""Figure kind 5 -- dataset size (paper Figs. 6-7): reward curves per training-set size, and KL to the start.

Panels: ground-truth reward, proxy reward, reward accuracy, KL(pi_t || pi_0).

Default data: ``sim``'s ``dataset_size`` exploration (majority voting on the shared answer-level task with a
per-question term, 600 steps at batch 32, sizes 32 ... 16384, three seeds), one colour per size; lines are seed
means, bands the range over seeds.
"""

from __future__ import annotations

from pathlib import Path

from paper_figures.data import (
    PROXY_REWARD,
    REWARD_ACCURACY,
    FigureData,
    Panel,
    SimSpec,
    curves_figure,
    draw_curves,
    load_sim,
    runs_figure,
    seed_series,
    sim_panels,
)
from sharpen.records import GROUND_TRUTH_RATIO, KL

KIND = "dataset_size"
COMPACT = True  # PNG with a 256-colour palette (paper_figures.style.save)
TITLE = "Dataset size: does a small training set avoid collapse?"
PANELS = (
    Panel(GROUND_TRUTH_RATIO, "ground-truth reward", "training accuracy (fraction correct)"),
    PROXY_REWARD,
    REWARD_ACCURACY,
    Panel(KL, "KL to the initial policy", r"KL($\pi_t\,\|\,\pi_0$) (nats)"),
)
SIM_KEYS = ("ground_truth_ratio", "majority_voting_reward", "reward_accuracy", "kl")
SIM = SimSpec("dataset_size", note="the experiment's default")
SMOOTHING = 10


def size_colors(sizes) -> dict:
    """A viridis colour per size, small to large (shared by both data sources)."""
    import seaborn as sns

    sizes = sorted(sizes)
    return dict(zip(sizes, sns.color_palette("viridis", max(len(sizes), 1)), strict=False))


def sim_specs() -> list[SimSpec]:
    """The simulator run this kind reads without run folders: :data:`SIM`."""
    return [SIM]


def compute(run_dirs=None, *, cache: Path, sim: SimSpec | None = None) -> FigureData:
    """One line per run folder (labelled with its ``n_questions``), or per training-set size from ``sim``."""
    sim = sim or SIM  # read at call time, so a caller (or a test) can swap the module default
    if run_dirs:
        fd = runs_figure(
            KIND,
            TITLE,
            "Training metrics against step, one line per training-set size",
            run_dirs,
            PANELS,
            vary=("n_questions",),
        )
        labels = sorted(
            {s["label"] for p in fd.data["panels"] for s in p["series"]}, key=lambda s: (len(s), s)
        )
        colors = size_colors(range(len(labels)))
        for p in fd.data["panels"]:
            for s in p["series"]:
                s["style"] = {"color": list(colors[labels.index(s["label"])])}
        return fd
    run_dir, res = load_sim(sim, cache)
    t, cfg = res.trajectories, res.config
    colors = size_colors(cfg["sizes"])
    panels = sim_panels(PANELS)
    for size in cfg["sizes"]:
        style = {"color": list(colors[size])}
        for p, key in zip(panels, SIM_KEYS, strict=True):
            p["series"].append(
                seed_series(
                    f"Q = {size}",
                    t[f"Q={size}/{key}"],
                    steps=t["step"],
                    smoothing=SMOOTHING,
                    style=style,
                )
            )
    share = res.verdict.numbers["collapse_share"]
    kl_ratio = res.verdict.numbers.get("kl_ratio_512_32")
    collapsed = ", ".join(f"{s}: {share[str(s)]:.0%}" for s in cfg["sizes"])
    caption = (
        f"Majority voting, {cfg['steps']} steps at batch {cfg['batch_size']} x {cfg['n_rollouts']}, "
        f"{cfg['optimizer']} lr {cfg['lr']:g}; seed means (bands: range over {cfg['seeds']} seeds), trailing "
        f"mean over {SMOOTHING} steps. Share of seeds whose training accuracy collapsed, per size -- "
        f"{collapsed}"
        + (f"; KL(512)/KL(32) at the end = {kl_ratio:.2f} (paper: about 2)" if kl_ratio else "")
        + f". Data: {sim.source()}."
    )
    return curves_figure(KIND, TITLE, caption, run_dir, panels, "training-set size")


draw = draw_curves  # (FigureData, axes=None) -> Figure
