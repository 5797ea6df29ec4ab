r"""Five failure modes of intrinsic rewards on the token-level toy (:mod:`sim.token_toy`): length collapse,
repetition collapse and gradual degradation, with ground truth as the control.

Like every exploration, it reports rather than asserts: the verdict gives the share of seeds showing the
paper's failure mode per reward (``holds`` True when it is at least 2/3 for every reward, False when none shows
it, None otherwise).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sim.configs import OneOptimizer
from sim.plots import mean_line
from sim.registry import Experiment, register
from sim.results import SimResult, Verdict, holds_from_shares
from sim.token_toy import TokenToyConfig, init_token_policy, token_rewards, train_token_runs

__all__ = ["FailureModesConfig", "failure_modes", "classify_failure", "PREDICTED_MODE"]

PREDICTED_MODE = {
    "ground_truth": "no collapse",
    "majority_voting": "gradual degradation",
    "self_certainty": "gradual degradation",
    "token_entropy": "repetition collapse",
    "trajectory_entropy": "repetition collapse",
    "probability": "length collapse",
}
"""The failure mode the paper reports for each reward: the rewards this experiment trains and judges."""


@dataclass(frozen=True)
class FailureModesConfig(OneOptimizer):
    """Five intrinsic rewards (and ground truth as the control) on the token-level toy.

    GRPO uses the token-mean loss and std-normalised advantages; ``n_rollouts``, ``seeds``, ``seed`` and
    ``optimizer`` come from :class:`sim.configs.OneOptimizer`. Each seed draws its own task and held-out questions.

    Attributes
    ----------
    steps : GRPO steps (every question every step: N rollouts each)
    lr : learning rate
    toy : the task and initial policy (:class:`sim.token_toy.TokenToyConfig`)
    rewards : rewards to train with
    n_val : held-out questions sharing the habits (theta, alpha) but not the per-question guesses
    length_ratio, repetition, decline : classification thresholds (see :func:`classify_failure`)
    """

    steps: int = 600
    lr: float = 0.03
    toy: TokenToyConfig = TokenToyConfig()
    rewards: tuple[str, ...] = tuple(PREDICTED_MODE)
    n_val: int = 128
    length_ratio: float = 0.6
    repetition: float = 0.5
    decline: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        # the toy's rewards with a paper prediction to judge them by
        valid = [r for r in PREDICTED_MODE if r in token_rewards()]
        bad = [r for r in self.rewards if r not in valid]
        if bad or not self.rewards:
            raise ValueError(f"rewards: unknown {bad}; valid: {', '.join(valid)}")
        if self.n_val < 1:
            raise ValueError(f"n_val: must be >= 1, got {self.n_val}")


def classify_failure(
    series: dict[str, np.ndarray],
    *,
    length_ratio: float = 0.6,
    repetition: float = 0.5,
    decline: float = 0.1,
) -> str:
    """Name the failure mode of one run from its per-step series (index 0 = before training).

    Over the last 10% of the steps ("final"): **length collapse** if the final mean response length is at most
    ``length_ratio`` times the initial one; **repetition collapse** if the final repetition rate is at least
    ``repetition``; otherwise **gradual degradation** if the final held-out accuracy lies at least ``decline`` below
    its best value (and below the initial one); otherwise **no collapse**.
    """
    s = len(series["response_length"])
    tail = slice(max(1, s - max(1, s // 10)), s)
    acc = series.get("val/ground_truth_ratio", series["ground_truth_ratio"])
    final_len = float(series["response_length"][tail].mean())
    if final_len <= length_ratio * float(series["response_length"][0]):
        return "length collapse"
    if float(series["repetition_rate"][tail].mean()) >= repetition:
        return "repetition collapse"
    final_acc = float(acc[tail].mean())
    if final_acc <= float(acc.max()) - decline and final_acc < float(acc[0]):
        return "gradual degradation"
    return "no collapse"


def _first_below(acc: np.ndarray, level: float) -> float:
    hit = np.flatnonzero(acc < level)
    return float(hit[0]) if hit.size else float("nan")


def failure_modes(config: FailureModesConfig = FailureModesConfig()) -> SimResult:
    r"""Five failure modes on the token-level toy (:mod:`sim.token_toy`).

    Mechanism: a shared policy decides how long to "reason" (reasoning tokens; a consecutive repeat makes no
    progress, a shared copy bonus makes repeats likely) before emitting an answer token; enough distinct reasoning
    gives the correct answer a bonus. The *probability* reward :math:`\pi(y)` is a product over tokens, so every
    extra token lowers it: it teaches answering at once (length collapse, guessing). Token-mean rewards
    (*token/trajectory entropy*, *self-certainty*) are raised by padding the response with confident tokens, and
    repeating the previous token in the same state is the cheapest confident token; a response that never answers
    avoids the uncertain answer position altogether (repetition collapse, unparseable at the length limit).
    *Majority voting* only sees the answer: in this toy, reasoning makes answers agree, so it rewards reasoning.
    Verdict: per reward, the share of seeds showing the paper's failure mode (:func:`classify_failure`), and the
    step at which held-out accuracy first drops 0.1 below its start.
    """
    rewards = tuple(config.rewards)
    traj: dict[str, np.ndarray] = {"step": np.arange(config.steps + 1)}
    modes: dict[str, list[str]] = {r: [] for r in rewards}
    fall_step: dict[str, list[float]] = {r: [] for r in rewards}
    keys = (
        "ground_truth_ratio",
        "val/ground_truth_ratio",
        "response_length",
        "repetition_rate",
        "unparseable",
        "mean_token_entropy",
        "reward_mean",
        "label_accuracy",
        "majority_ratio",
    )
    # every (reward, seed) run is trained at once (sim.token_toy.train_token_runs: the numbers of one run at a time)
    plan = [(reward, config.seed + 1000 * s) for reward in rewards for s in range(config.seeds)]
    val_cfg = TokenToyConfig(**{**asdict(config.toy), "n_questions": config.n_val})
    outs = train_token_runs(
        [init_token_policy(config.toy, np.random.default_rng(seed)) for _, seed in plan],
        rewards=[reward for reward, _ in plan],
        steps=config.steps,
        rngs=[np.random.default_rng(seed + 2) for _, seed in plan],
        n_rollouts=config.n_rollouts,
        lr=config.lr,
        optimizer=config.optimizer,
        val_policies=[
            init_token_policy(val_cfg, np.random.default_rng(seed + 1)) for _, seed in plan
        ],
    )
    for reward in rewards:
        runs = [out for (r, _), out in zip(plan, outs, strict=True) if r == reward]
        for out in runs:
            modes[reward].append(
                classify_failure(
                    out,
                    length_ratio=config.length_ratio,
                    repetition=config.repetition,
                    decline=config.decline,
                )
            )
            va = out["val/ground_truth_ratio"]
            fall_step[reward].append(_first_below(va, va[0] - config.decline))
        for k in keys:
            arr = np.stack([out[k] for out in runs])  # (seeds, S + 1)
            traj[f"{reward}/{k}/seeds"] = arr
            traj[f"{reward}/{k}"] = arr.mean(axis=0)
    shares = {r: float(np.mean([m == PREDICTED_MODE[r] for m in modes[r]])) for r in rewards}
    holds = holds_from_shares(shares)
    parts = []
    for r in rewards:
        counts = {m: modes[r].count(m) for m in dict.fromkeys(modes[r])}
        fs = [f for f in fall_step[r] if np.isfinite(f)]
        when = f", held-out acc. -0.1 at step {int(np.median(fs))}" if fs else ""
        seen = ", ".join(f"{m} {c}/{config.seeds}" for m, c in counts.items())
        parts.append(f"{r}: {seen} (paper: {PREDICTED_MODE[r]}{when})")
    summary = "; ".join(parts) + "."
    numbers = {
        "modes": modes,
        "share_predicted": shares,
        "fall_step": fall_step,
        "final": {
            r: {
                k: float(traj[f"{r}/{k}"][-1])
                for k in (
                    "val/ground_truth_ratio",
                    "response_length",
                    "repetition_rate",
                    "unparseable",
                )
            }
            for r in rewards
        },
        "initial": {
            r: {
                k: float(traj[f"{r}/{k}"][0])
                for k in ("val/ground_truth_ratio", "response_length", "repetition_rate")
            }
            for r in rewards
        },
    }
    return SimResult(
        "failure_modes", asdict(config), traj, Verdict("exploration", holds, summary, numbers)
    )


def draw(res: SimResult, fig) -> None:
    """Per reward (mean over seeds, each seed thin): held-out accuracy, response length, repetition, unparseable."""
    t = res.trajectories
    rewards = res.config["rewards"]
    panels = [
        ("val/ground_truth_ratio", "held-out accuracy"),
        ("response_length", "response length (tokens)"),
        ("repetition_rate", "repetition rate"),
        ("unparseable", "unparseable share"),
    ]
    axes = fig.subplots(1, len(panels))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for r in rewards:
            mean_line(ax, t["step"], t[f"{r}/{key}/seeds"], r)
        ax.set(xlabel="step", title=title)
    axes[0].legend(fontsize=6)


register(
    Experiment(
        "failure_modes",
        "exploration",
        FailureModesConfig,
        failure_modes,
        {"toy": TokenToyConfig(n_questions=16), "seeds": 1, "steps": 30, "n_val": 32},
        "Five failure modes on the token-level toy: length / repetition collapse / gradual",
        plot=draw,
        figsize=(15.0, 4.0),
    )
)
