"""Figure kind 7 -- self-verification vs an intrinsic reward vs the oracle (paper Fig. 13).

Panels: validation accuracy and reward accuracy.

Default data: ``sim``'s ``self_verification`` exploration on the shared answer-level task where majority voting
collapses: a simulated verifier whose verdict is right with a fixed probability (0.6, 0.75, 0.9, whatever the
policy's confidence), majority voting (the intrinsic reward), and ground truth (dotted); one line per seed.
"""

from __future__ import annotations

from pathlib import Path

from paper_figures.data import (
    HELDOUT,
    REWARD_ACCURACY,
    FigureData,
    SimSpec,
    curves_figure,
    draw_curves,
    load_sim,
    runs_figure,
    seed_lines,
    sim_panels,
    tally,
)

KIND = "self_verification"
COMPACT = True  # PNG with a 256-colour palette (paper_figures.style.save)
TITLE = "External verification vs intrinsic reward vs oracle"
PANELS = (HELDOUT, REWARD_ACCURACY)
SIM_KEYS = ("heldout_accuracy", "reward_accuracy")
SIM = SimSpec("self_verification", note="the experiment's default")
SMOOTHING = 10


def _label(arm: str) -> str:
    return arm.replace("/acc=", ", verifier accuracy ")


def sim_specs() -> list[SimSpec]:
    """The simulator run this kind reads without run folders: :data:`SIM`."""
    return [SIM]


def compute(run_dirs=None, *, cache: Path, sim: SimSpec | None = None) -> FigureData:
    """One line per run folder, or per arm of the simulator's experiment (``sim``)."""
    sim = sim or SIM  # read at call time, so a caller (or a test) can swap the module default
    if run_dirs:
        fd = runs_figure(
            KIND, TITLE, "Held-out accuracy and reward accuracy against step", run_dirs, PANELS
        )
        for p in fd.data["panels"]:
            for s in p["series"]:
                if s["label"].startswith("ground_truth"):
                    s["style"] = {"ls": ":"}
        return fd
    from paper_figures.style import PALETTE

    run_dir, res = load_sim(sim, cache)
    t, cfg = res.trajectories, res.config
    arms = ["ground_truth", "majority_voting"] + [
        f"self_verification/acc={a:g}" for a in cfg["verifier_accuracies"]
    ]
    shades = [
        PALETTE[3],
        PALETTE[1],
        PALETTE[7],
    ]  # vermillion, orange, grey: one per verifier accuracy
    panels = sim_panels(PANELS)
    for arm in arms:
        if arm == "ground_truth":
            style = {"ls": ":"}
        elif arm.startswith("self_verification"):
            style = {"color": list(shades[(arms.index(arm) - 2) % len(shades)])}
        else:
            style = None
        for p, key in zip(panels, SIM_KEYS, strict=True):
            # one line per seed: majority voting's seeds split (some collapse, some do not)
            p["series"] += seed_lines(
                _label(arm), t[f"{arm}/{key}"], steps=t["step"], smoothing=SMOOTHING, style=style
            )
    finals = res.verdict.numbers["final_heldout"]
    kinds = res.verdict.numbers["kinds"]
    caption = (
        f"{cfg['n_questions']} training questions, batch {cfg['batch_size']} x {cfg['n_rollouts']}, "
        f"{cfg['optimizer']} lr {cfg['lr']:g}; one line per seed ({cfg['seeds']} seeds), trailing "
        f"mean over {SMOOTHING} steps. Final held-out accuracy: ground truth {finals['ground_truth']:.2f}, "
        f"majority voting {finals['majority_voting']:.2f} ({tally(kinds['majority_voting'])}), verifier "
        f"accuracy {'/'.join(f'{a:g}' for a in cfg['verifier_accuracies'])}: "
        + "/".join(f"{finals[a]:.2f}" for a in arms[2:])
        + ". The paper compares with trajectory-level "
        f"entropy; here the intrinsic reward is majority voting. Data: {sim.source()}."
    )
    return curves_figure(KIND, TITLE, caption, run_dir, panels, "reward")


draw = draw_curves  # (FigureData, axes=None) -> Figure
