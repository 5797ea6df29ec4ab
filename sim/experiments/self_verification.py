r"""External reward: self-verification with a simulated verifier of fixed accuracy vs majority voting vs ground
truth on the shared task (:mod:`sim.shared_task`). Does an external verifier keep improving instead of
collapsing?"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sim.configs import OneOptimizer
from sim.core import GRPOConfig
from sim.plots import mean_line
from sim.registry import Experiment, register
from sim.results import SimResult, Verdict, holds_from_shares
from sim.shared_task import SharedTaskRuns, classify_curve, shared_runs, tail_mean

__all__ = ["SelfVerificationConfig", "self_verification"]


@dataclass(frozen=True)
class SelfVerificationConfig(SharedTaskRuns, OneOptimizer):
    """Self-verification (verifier of fixed accuracy) vs majority voting vs ground truth on the shared task.

    The task (the ``rise_then_fall`` setting where majority voting collapses), held-out set, batch, optimizer and
    GRPO runs come from :class:`sim.shared_task.SharedTaskRuns` and :class:`sim.configs.OneOptimizer`, as in
    ``rise_then_fall``.

    Attributes
    ----------
    verifier_accuracies : accuracies of the simulated verifier (independent of the policy's confidence)
    n_questions : training questions
    rise, decline : thresholds of :func:`sim.shared_task.classify_curve`
    """

    verifier_accuracies: tuple[float, ...] = (0.6, 0.75, 0.9)
    n_questions: int = 512
    rise: float = 0.02
    decline: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.verifier_accuracies or any(not 0 <= a <= 1 for a in self.verifier_accuracies):
            raise ValueError(
                f"verifier_accuracies: each must lie in [0, 1], got {self.verifier_accuracies}"
            )
        if self.n_questions < 1:
            raise ValueError(f"n_questions: must be >= 1, got {self.n_questions}")


def self_verification(config: SelfVerificationConfig = SelfVerificationConfig()) -> SimResult:
    r"""Does an external verifier keep improving toward the ground-truth curve instead of collapsing?

    Mechanism: the verifier's verdict is right with probability ``a`` whatever the policy's confidence, so a
    correct rollout earns :math:`a` and a wrong one :math:`1-a` in expectation: for :math:`a>1/2` the expected
    advantage points at the correct answer on every question, like ground truth scaled by :math:`2a-1` plus
    noise. Majority voting instead rewards agreement, which the shortcut can win. Verdict: per verifier accuracy,
    the share of seeds whose held-out accuracy keeps rising without a fall (:func:`classify_curve` "rise only")
    and its final held-out accuracy vs ground truth and majority voting.
    """
    grpo = GRPOConfig(config.n_rollouts, config.lr, config.optimizer, batch_size=config.batch_size)
    traj: dict[str, np.ndarray] = {"step": np.arange(config.steps + 1)}
    arms = [("ground_truth", None), ("majority_voting", None)] + [
        ("self_verification", a) for a in config.verifier_accuracies
    ]
    finals: dict[str, float] = {}
    kinds: dict[str, list[str]] = {}
    seeds = [config.seed + 1000 * s for s in range(config.seeds)]
    batches = {}  # reward -> its runs, every (arm, seed) of one reward advanced together
    for reward in dict.fromkeys(r for r, _ in arms):
        accs = [0.9 if a is None else float(a) for r, a in arms if r == reward for _ in seeds]
        batches[reward] = shared_runs(
            [config.task] * len(accs),
            seeds * (len(accs) // len(seeds)),
            n_questions=config.n_questions,
            n_heldout=config.n_heldout,
            reward=reward,
            grpo=grpo,
            steps=config.steps,
            verifier_accuracies=accs,
            series=("eval/heldout/accuracy",),  # the one measured series read below
        )
    taken = dict.fromkeys(batches, 0)
    for reward, acc in arms:
        name = reward if acc is None else f"self_verification/acc={acc:g}"
        runs, ra = [], []
        kinds[name] = []
        for _ in seeds:
            out, _ = batches[reward][taken[reward]]
            taken[reward] += 1
            h = out["eval/heldout/accuracy"]
            runs.append(h)
            ra.append(out["reward_accuracy"])
            kinds[name].append(classify_curve(h, rise=config.rise, decline=config.decline))
        traj[f"{name}/heldout_accuracy"] = np.stack(runs)
        traj[f"{name}/reward_accuracy"] = np.stack(ra)
        finals[name] = float(np.mean([tail_mean(h) for h in runs]))
    sv = [n for n in kinds if n.startswith("self_verification")]
    shares = {n: float(np.mean([k == "rise only" for k in kinds[n]])) for n in sv}
    holds = holds_from_shares(shares)
    summary = (
        "Final held-out accuracy: "
        + ", ".join(f"{n} {v:.2f}" for n, v in finals.items())
        + ". Keeps rising without a fall: "
        + ", ".join(f"{n.split('/')[1]} {shares[n]:.0%}" for n in sv)
        + f" of {config.seeds} seeds; majority voting: "
        + ", ".join(
            f"{k} {kinds['majority_voting'].count(k)}/{config.seeds}"
            for k in dict.fromkeys(kinds["majority_voting"])
        )
        + "."
    )
    numbers = {"final_heldout": finals, "kinds": kinds, "share_rise_only": shares}
    return SimResult(
        "self_verification", asdict(config), traj, Verdict("exploration", holds, summary, numbers)
    )


def draw(res: SimResult, fig) -> None:
    """Held-out accuracy and batch reward accuracy per reward (mean over seeds, each seed thin)."""
    t = res.trajectories
    ax1, ax2 = fig.subplots(1, 2)
    names = [k.rsplit("/heldout_accuracy", 1)[0] for k in t if k.endswith("/heldout_accuracy")]
    for n in names:
        mean_line(ax1, t["step"], t[f"{n}/heldout_accuracy"], n)
        mean_line(ax2, t["step"], t[f"{n}/reward_accuracy"], n)
    ax1.set(xlabel="step", ylabel="held-out accuracy", title="External vs intrinsic reward")
    ax1.legend(fontsize=7)
    ax2.set(xlabel="step", ylabel="batch reward accuracy", title="Reward accuracy")


register(
    Experiment(
        "self_verification",
        "exploration",
        SelfVerificationConfig,
        self_verification,
        {
            "verifier_accuracies": (0.9,),
            "n_questions": 64,
            "n_heldout": 64,
            "steps": 20,
            "seeds": 1,
        },
        "External reward: self-verification (simulated verifier) vs majority voting vs ground truth",
        plot=draw,
    )
)
