"""Figure kind 2 -- rise-then-fall (paper Fig. 2): majority-vote vs ground-truth training against step.

Panels: held-out (validation) accuracy, proxy reward, reward accuracy, and how peaked the policy is (entropy in
run folders; in the simulator, the mean probability of each question's top answer).

Default data: ``sim``'s ``rise_then_fall`` exploration (shared answer-level weights with a shared *shortcut*
distractor; majority voting and ground truth from the same start), Adam only, at three shortcut strengths: one
below, one inside and one above the band where the simulator's verdict finds a rise-then-fall. Lines are seed
means, bands the range over seeds.
"""

from __future__ import annotations

from pathlib import Path

from paper_figures.data import (
    HELDOUT,
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
    tally,
)
from sharpen.records import MAJORITY_REWARD

KIND = "rise_fall"
COMPACT = True  # PNG with a 256-colour palette (paper_figures.style.save)
TITLE = "Rise then fall? Majority-vote vs ground-truth reward"
PANELS = (
    HELDOUT,
    Panel(MAJORITY_REWARD, "proxy reward", "mean training reward"),
    REWARD_ACCURACY,
    Panel("entropy", "entropy", "policy entropy (nats)"),
)
# the simulator logs no entropy: how peaked the policy is shows as the mean probability of the top answer
SIM_PANELS = (
    HELDOUT,
    PROXY_REWARD,
    REWARD_ACCURACY,
    Panel("p_max", "confidence", "mean probability of the top answer"),
)
SIM = SimSpec(
    "rise_then_fall",
    overrides=(("optimizers", ("adam",)), ("shortcut_bonuses", (0.75, 1.25, 1.5))),
    note="Adam only, 3 of the 5 shortcut strengths",
)
SMOOTHING = 10


def sim_specs() -> list[SimSpec]:
    """The simulator run this kind reads without run folders: :data:`SIM`."""
    return [SIM]


def compute(run_dirs=None, *, cache: Path, sim: SimSpec | None = None) -> FigureData:
    """One line per run folder, or majority voting and ground truth per shortcut strength from ``sim``."""
    sim = sim or SIM  # read at call time, so a caller (or a test) can swap the module default
    if run_dirs:
        return runs_figure(
            KIND,
            TITLE,
            "Batch metrics and held-out accuracy against training step",
            run_dirs,
            PANELS,
        )
    # matplotlib and seaborn: imported when a figure is made, not with the command line
    from paper_figures.style import PALETTE

    run_dir, res = load_sim(sim, cache)
    t, steps = res.trajectories, res.trajectories["step"]
    cfg = res.config
    settings = [(o, b) for o in cfg["optimizers"] for b in cfg["shortcut_bonuses"]]
    panels = sim_panels(SIM_PANELS)
    for i, (opt, bonus) in enumerate(settings):
        name = f"{opt}/bonus={bonus:g}"
        color = PALETTE[(0, 4, 3, 5, 7)[i % 5]]
        tag = f"shortcut {bonus:g}" + (f", {opt}" if len(cfg["optimizers"]) > 1 else "")
        mv = {"style": {"color": color}, "steps": steps, "smoothing": SMOOTHING}
        gt = {"style": {"color": color, "ls": ":"}, "steps": steps, "smoothing": SMOOTHING}
        for p, key in zip(
            panels[:3], ("heldout_accuracy", "reward_mean", "reward_accuracy"), strict=True
        ):
            p["series"].append(seed_series(f"majority_voting, {tag}", t[f"{name}/mv/{key}"], **mv))
        panels[0]["series"].append(
            seed_series(f"ground_truth, {tag}", t[f"{name}/gt/heldout_accuracy"], **gt)
        )
        panels[3]["series"].append(
            seed_series(f"majority_voting, {tag}", t[f"{name}/mv/p_max"], **mv)
        )
        panels[3]["series"].append(seed_series(f"ground_truth, {tag}", t[f"{name}/gt/p_max"], **gt))
    kinds = res.verdict.numbers["kinds"]
    found = "; ".join(f"shortcut {b:g}: {tally(kinds[f'{o}/bonus={b:g}'])}" for o, b in settings)
    caption = (
        f"Solid: majority-vote reward; dotted: ground-truth reward, same start. Shortcut strength: the initial "
        f"logit bonus of one shared distractor answer per question. {cfg['n_questions']} training questions, "
        f"batch {cfg['batch_size']} x {cfg['n_rollouts']}; seed means (bands: range over {cfg['seeds']} "
        f"seeds), trailing mean over {SMOOTHING} steps; GT's proxy reward is its accuracy, not drawn. "
        f"Held-out accuracy under majority voting -- {found}. "
        f"Data: {sim.source()}."
    )
    return curves_figure(KIND, TITLE, caption, run_dir, panels, "reward, shortcut strength")


draw = draw_curves  # (FigureData, axes=None) -> Figure
