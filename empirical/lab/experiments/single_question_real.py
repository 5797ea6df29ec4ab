r"""Single-question training on the real tiny LM: each question trained alone; whose exact mode changes
correctness, and does confidence always deepen? (the paper: 3 of 25 = 12% flip greedy correctness)

Claim (the paper, Fig. 4): trained alone, a question's distribution sharpens onto its initial mode, so only a
few questions change correctness, and confidence deepens whether the mode is right or wrong.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from empirical.lab.registry import Experiment, register
from empirical.lab.runs import LabRuns, ensure_runs, load_runs, mean_se
from sim.configs import with_help
from sim.results import SimResult, Verdict

__all__ = ["SingleQuestionRealConfig", "single_question_real"]

PAPER_FLIP = 0.12
REPRODUCED = (0.04, 0.25)
"""Flip shares counted as reproducing the paper's 3/25: the range such a count allows at about 95%."""


@dataclass(frozen=True)
class SingleQuestionRealConfig(LabRuns):
    """``n_questions`` arithmetic questions, each the whole training set of its own run (one group per step).

    Question ``i`` is the single training question generated with ``data_seed = question_seed + i``; seed ``s``
    reruns every question with sampling seed ``seed + s``.
    """

    n_questions: int = with_help(25, "questions, each trained alone")
    question_seed: int = with_help(1000, "data_seed of the first question")
    reward: str = with_help("majority_voting", "training reward")
    lr: float = with_help(3e-4, "learning rate")
    steps: int = with_help(100, "GRPO steps per question (one group of n_rollouts each)")
    probe_every: int = with_help(10, "steps between exact probes of the question")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_questions < 1 or self.probe_every < 1:
            raise ValueError(
                f"n_questions, probe_every: need >= 1, got {self.n_questions}, {self.probe_every}"
            )


def single_question_real(
    config: SingleQuestionRealConfig = SingleQuestionRealConfig(),
) -> SimResult:
    r"""Train each question alone; compare its exact mode and mode probability before and after.

    Correctness is that of the exact mode of the answer distribution at the rollout temperature (the answer a
    vote of many samples returns; greedy decoding of a sequence need not agree with it on every question).
    Per seed: the share of questions whose mode changes correctness (right -> wrong, wrong -> right), whose
    mode changes at all, and whose mode probability grew. Verdict: reproduced when the mean flip share over
    seeds lies in :data:`REPRODUCED` (about the range 3/25 allows).
    """
    cfg = config
    configs = [
        cfg.train_config(
            cfg.reward,
            cfg.lr,
            s,
            n_train=1,
            data_seed=cfg.question_seed + i,
            n_heldout=1,
            n_eval=0,
            eval_every=0,
            rollout_batch_size=cfg.n_rollouts,
            n_probe=1,
            probe_selection="first",
            log_kl=False,
            checkpoint_every=0,
        )  # fmt: skip
        for s in range(cfg.seeds)
        for i in range(cfg.n_questions)
    ]
    runs = load_runs(ensure_runs(configs, cfg.runs_dir, workers=cfg.workers))
    shape = (cfg.seeds, cfg.n_questions)
    c0, c1, changed, p0, p1 = (np.zeros(shape) for _ in range(5))
    probe_p = []
    for idx, run in enumerate(runs):
        s, i = divmod(idx, cfg.n_questions)
        recs = sorted(run.probes, key=lambda r: r["step"])
        first, last = recs[0], recs[-1]
        c0[s, i] = first["exact_majority_answer"] == first["label"]
        c1[s, i] = last["exact_majority_answer"] == last["label"]
        changed[s, i] = first["exact_majority_answer"] != last["exact_majority_answer"]
        p0[s, i], p1[s, i] = first["exact_p_majority"], last["exact_p_majority"]
        if s == 0:
            probe_p.append([r["exact_p_initial_majority"] for r in recs])
    per_seed = {
        "flip": (c0 != c1).mean(axis=1),
        "right_to_wrong": ((c0 == 1) & (c1 == 0)).mean(axis=1),
        "wrong_to_right": ((c0 == 0) & (c1 == 1)).mean(axis=1),
        "mode_changed": changed.mean(axis=1),
        "confidence_deepened": (p1 > p0).mean(axis=1),
        "initially_correct": c0.mean(axis=1),
    }
    numbers = {}
    for k, v in per_seed.items():
        m, se = mean_se(v)
        numbers[k] = {"mean": float(m), "se": float(se), "per_seed": [float(x) for x in v]}
    wrong_deepened = float(((p1 > p0) & (c0 == 0)).sum() / max(1, (c0 == 0).sum()))
    numbers["confidence_deepened_when_wrong"] = wrong_deepened
    flip = numbers["flip"]["mean"]
    holds = REPRODUCED[0] <= flip <= REPRODUCED[1]
    summary = (
        f"{flip:.1%} +- {numbers['flip']['se']:.1%} of {cfg.n_questions} questions trained alone changed the "
        f"correctness of their exact mode (right->wrong {numbers['right_to_wrong']['mean']:.1%}, wrong->right "
        f"{numbers['wrong_to_right']['mean']:.1%}; mode changed {numbers['mode_changed']['mean']:.1%}); the mode's "
        f"probability grew on {numbers['confidence_deepened']['mean']:.1%} ({wrong_deepened:.1%} of wrong modes); "
        f"{cfg.seeds} seeds, {cfg.steps} steps at lr {cfg.lr:g} with {cfg.reward} (paper: 12% of 25 flip greedy "
        f"correctness; reproduced within {REPRODUCED[0]:.0%}-{REPRODUCED[1]:.0%})."
    )
    steps = np.array(sorted({r["step"] for r in runs[0].probes}), dtype=float)
    traj = {"probe_step": steps, "p_initial_mode": np.array(probe_p), "initially_correct": c0[0],
            "p_mode_before": p0, "p_mode_after": p1}  # fmt: skip
    return SimResult(
        "single_question_real", asdict(cfg), traj, Verdict("exploration", holds, summary, numbers)
    )


def draw(res: SimResult, fig) -> None:
    """Left: each question's exact probability of its initial mode over steps (seed 0; green = initially
    right); right: mode probability before vs after training, every seed."""
    t = res.trajectories
    ax1, ax2 = fig.subplots(1, 2)
    for row, ok in zip(t["p_initial_mode"], t["initially_correct"], strict=True):
        ax1.plot(t["probe_step"], row, color="C2" if ok else "C3", lw=0.9, alpha=0.8)
    ax1.set(
        xlabel="step",
        ylabel="exact p of the initial mode",
        title="Each question trained alone (seed 0)",
    )
    ax2.scatter(t["p_mode_before"].ravel(), t["p_mode_after"].ravel(), s=10)
    ax2.plot([0, 1], [0, 1], "k--", lw=1)
    ax2.set(
        xlabel="mode probability before",
        ylabel="after",
        title="Confidence deepens above the diagonal",
    )


register(
    Experiment(
        "single_question_real",
        "exploration",
        SingleQuestionRealConfig,
        single_question_real,
        {"seeds": 1, "n_questions": 3, "steps": 6, "probe_every": 3},
        "Single-question training on the tiny LM: share whose exact mode flips correctness (paper 12%)",
        plot=draw,
    )
)
