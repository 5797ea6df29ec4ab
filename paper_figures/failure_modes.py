"""Figure kind 3 -- the five intrinsic rewards' failure modes (paper Fig. 3).

Panels: label accuracy, validation accuracy, response length, and the repetition rate (what tells repetition
collapse from length collapse).

Default data: ``sim``'s ``failure_modes`` exploration on the token-level toy (:mod:`sim.token_toy`: a small
autoregressive policy over reasoning and answer tokens, so responses have a length and can repeat), one line per
reward with ground truth as the control (dotted), one line per seed.
"""

from __future__ import annotations

from pathlib import Path

from paper_figures.data import (
    HELDOUT,
    FigureData,
    Panel,
    SimSpec,
    curves_figure,
    draw_curves,
    load_sim,
    runs_figure,
    seed_lines,
    sim_panels,
    tally,
)

KIND = "failure_modes"
COMPACT = True  # PNG with a 256-colour palette (paper_figures.style.save)
TITLE = "Five intrinsic rewards: how each one fails"
PANELS = (
    Panel("label_accuracy", "label accuracy", "majority label correct (fraction)"),
    HELDOUT,
    Panel("response_length", "response length", "mean response length (tokens)"),
    Panel("repetition_rate", "repetition", "reasoning tokens repeating the last (fraction)"),
)
# sim series name per panel: label accuracy, held-out accuracy, length, repetition
SIM_KEYS = ("label_accuracy", "val/ground_truth_ratio", "response_length", "repetition_rate")
SIM = SimSpec("failure_modes", note="the experiment's default: 6 rewards x 3 seeds x 600 steps")
SMOOTHING = 20


def sim_specs() -> list[SimSpec]:
    """The simulator run this kind reads without run folders: :data:`SIM`."""
    return [SIM]


def compute(run_dirs=None, *, cache: Path, sim: SimSpec | None = None) -> FigureData:
    """One line per run folder, or per reward of the token-level toy (``sim``)."""
    sim = sim or SIM  # read at call time, so a caller (or a test) can swap the module default
    if run_dirs:
        return runs_figure(
            KIND,
            TITLE,
            "Label accuracy, held-out accuracy, response length against step",
            run_dirs,
            PANELS,
        )
    run_dir, res = load_sim(sim, cache)
    t, cfg = res.trajectories, res.config
    panels = sim_panels(PANELS)
    for reward in cfg["rewards"]:
        # one line per seed: the seeds of one reward can fail in different ways, and their mean would not
        style = {"ls": ":"} if reward == "ground_truth" else None
        for p, key in zip(panels, SIM_KEYS, strict=True):
            p["series"] += seed_lines(
                reward,
                t[f"{reward}/{key}/seeds"],
                steps=t["step"],
                smoothing=SMOOTHING,
                style=style,
            )
    modes = res.verdict.numbers["modes"]
    found = "; ".join(f"{r}: {tally(modes[r])}" for r in cfg["rewards"])
    caption = (
        f"Token-level toy, {cfg['toy']['n_questions']} training questions x {cfg['n_rollouts']} rollouts, "
        f"{cfg['optimizer']} lr {cfg['lr']:g}; held-out: {cfg['n_val']} questions; one line per seed "
        f"({cfg['seeds']} seeds), trailing mean over {SMOOTHING} steps. Failure mode per seed, by sim's classifier "
        f"-- {found} (paper: probability -> length collapse, token and trajectory entropy -> repetition, "
        f"self-certainty and majority voting -> gradual degradation). Data: {sim.source()}."
    )
    return curves_figure(KIND, TITLE, caption, run_dir, panels, "reward")


draw = draw_curves  # (FigureData, axes=None) -> Figure
