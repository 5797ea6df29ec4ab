r"""Dataset size at a fixed step budget: majority voting on training sets of 32 to 16,384 questions of the shared
task (:mod:`sim.shared_task`); final accuracy, collapse share and KL per size."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sim.configs import OneOptimizer
from sim.core import GRPOConfig
from sim.plots import mean_line
from sim.registry import Experiment, register
from sim.results import SimResult, Verdict
from sim.shared_task import SharedTaskRuns, shared_runs, tail_mean

__all__ = ["DatasetSizeConfig", "dataset_size"]


@dataclass(frozen=True)
class DatasetSizeConfig(SharedTaskRuns, OneOptimizer):
    """Majority voting on training sets of different sizes, at a fixed step budget (the paper: 600 steps).

    The task (same parameters as ``rise_then_fall``), the held-out set, the GRPO runs and the optimizer come from
    :class:`sim.shared_task.SharedTaskRuns` and :class:`sim.configs.OneOptimizer`.

    Attributes
    ----------
    steps : GRPO steps (the paper's budget)
    batch_size : questions per GRPO step (32 as in the paper's dataset-size runs)
    sizes : training-set sizes Q
    per_question : add a trainable per-question term (lets small sets be memorised question by question)
    decline : a run *collapses* when its final training accuracy (exact pass@1 over the whole training set,
        the GT reward) lies ``decline`` below its best value and below its start
    """

    steps: int = 600
    batch_size: int = 32
    sizes: tuple[int, ...] = (32, 128, 512, 2048, 16384)
    per_question: bool = True
    decline: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.sizes or min(self.sizes) < 1:
            raise ValueError(f"sizes: every size must be >= 1, got {self.sizes}")


def dataset_size(config: DatasetSizeConfig = DatasetSizeConfig()) -> SimResult:
    r"""Dataset size at a fixed step budget: final accuracy, collapse and KL per size, over seeds.

    Mechanism: the shared task of ``rise_then_fall`` (Adam, shortcut bonus from ``task``) plus, with
    ``per_question``, a trainable per-question logit term. A small set is revisited every step (32 questions,
    batch 32), so each question can sharpen onto its own majority through its own term ("localised
    overfitting"): the shared weights get consistent, question-specific pressure. A large set is seen about once
    in 600 steps, so the per-question terms barely move and everything goes through the shared weights -- the
    regime where the shortcut can take over. Verdict: per size, the share of seeds that collapse (training
    accuracy falls ``decline`` below its best), final accuracies and KL, and whether a threshold separates
    non-collapsing small sets from collapsing large ones (the paper: <= 128 never, >= 512 always; KL at 512 about
    twice that at 32).
    """
    traj: dict[str, np.ndarray] = {"step": np.arange(config.steps + 1)}
    grpo = GRPOConfig(config.n_rollouts, config.lr, config.optimizer, batch_size=config.batch_size)
    per_size: dict[str, dict[str, float]] = {}
    collapse_share: dict[int, float] = {}
    for size in config.sizes:
        coll, keys = [], {}
        runs = shared_runs(  # the seeds of one size advanced together
            [config.task] * config.seeds,
            [config.seed + 1000 * s for s in range(config.seeds)],
            n_questions=int(size),
            n_heldout=config.n_heldout,
            reward="majority_voting",
            grpo=grpo,
            steps=config.steps,
            per_question=config.per_question,
            series=("accuracy", "kl", "eval/heldout/accuracy"),  # the measured series read below
        )
        for out, _ in runs:
            acc = out["accuracy"]
            final = tail_mean(acc)
            coll.append(final <= float(acc.max()) - config.decline and final < float(acc[0]))
            for key, arr in (
                ("ground_truth_ratio", acc),
                ("val_accuracy", out["eval/heldout/accuracy"]),
                ("majority_voting_reward", out["reward_mean"]),
                ("reward_accuracy", out["reward_accuracy"]),
                ("kl", out["kl"]),
            ):
                keys.setdefault(key, []).append(arr)
        for key, arrs in keys.items():
            traj[f"Q={size}/{key}"] = np.stack(arrs)
        collapse_share[int(size)] = float(np.mean(coll))
        per_size[str(size)] = {
            "collapse_share": collapse_share[int(size)],
            "final_train_accuracy": float(
                np.mean([tail_mean(a) for a in keys["ground_truth_ratio"]])
            ),
            "initial_train_accuracy": float(np.mean([a[0] for a in keys["ground_truth_ratio"]])),
            "final_val_accuracy": float(np.mean([tail_mean(a) for a in keys["val_accuracy"]])),
            "final_reward": float(np.mean([tail_mean(a) for a in keys["majority_voting_reward"]])),
            "final_reward_accuracy": float(
                np.mean([tail_mean(a) for a in keys["reward_accuracy"]])
            ),
            "final_kl": float(np.mean([a[-1] for a in keys["kl"]])),
        }
    sizes = sorted(collapse_share)
    shares = [collapse_share[s] for s in sizes]
    # a clean threshold: every size below it never collapses, every size from it on always does
    threshold = None
    for i in range(len(sizes) + 1):
        if all(v == 0 for v in shares[:i]) and all(v == 1 for v in shares[i:]):
            threshold = sizes[i] if i < len(sizes) else None
            break
    small = [s for s in sizes if s <= 128]
    large = [s for s in sizes if s >= 512]
    paper_like = all(collapse_share[s] == 0 for s in small) and all(
        collapse_share[s] == 1 for s in large
    )
    holds: bool | None
    if paper_like and small and large:
        holds = True
    elif not any(shares):
        holds = False
    else:
        holds = None
    kl_ratio = (
        per_size[str(512)]["final_kl"] / per_size[str(32)]["final_kl"]
        if 512 in collapse_share and 32 in collapse_share and per_size["32"]["final_kl"] > 0
        else float("nan")
    )
    summary = (
        "Collapse share per size: "
        + ", ".join(f"Q={s}: {collapse_share[s]:.2f}" for s in sizes)
        + f" ({config.seeds} seeds, {config.steps} steps, batch {config.batch_size}). Final training accuracy: "
        + ", ".join(f"{s}: {per_size[str(s)]['final_train_accuracy']:.2f}" for s in sizes)
        + ". KL: "
        + ", ".join(f"{s}: {per_size[str(s)]['final_kl']:.3f}" for s in sizes)
        + (f" (KL 512/32 = {kl_ratio:.2f}; paper ~2)" if np.isfinite(kl_ratio) else "")
        + (f". Clean threshold at Q = {threshold}." if threshold else ". No clean size threshold.")
    )
    numbers = {
        "per_size": per_size,
        "collapse_share": {str(k): v for k, v in collapse_share.items()},
        "threshold": threshold,
        "kl_ratio_512_32": kl_ratio,
    }
    return SimResult(
        "dataset_size", asdict(config), traj, Verdict("exploration", holds, summary, numbers)
    )


def draw(res: SimResult, fig) -> None:
    """Per size: training accuracy and KL to the initial policy over steps, and the share of seeds that collapse."""
    t = res.trajectories
    ax1, ax2, ax3 = fig.subplots(1, 3)
    sizes = res.config["sizes"]
    for q in sizes:
        mean_line(ax1, t["step"], t[f"Q={q}/ground_truth_ratio"], f"Q={q}")
        mean_line(ax2, t["step"], t[f"Q={q}/kl"], f"Q={q}")
    ax1.set(xlabel="step", ylabel="training accuracy (GT reward)", title="Majority voting")
    ax1.legend(fontsize=7)
    ax2.set(xlabel="step", ylabel="KL(pi || pi_0)", title="KL to the initial policy")
    share = [res.verdict.numbers["collapse_share"][str(q)] for q in sizes]
    ax3.bar([str(q) for q in sizes], share)
    ax3.set(xlabel="dataset size Q", ylabel="share of seeds that collapse", ylim=(0, 1.05))


register(
    Experiment(
        "dataset_size",
        "exploration",
        DatasetSizeConfig,
        dataset_size,
        {"sizes": (32, 256), "steps": 30, "seeds": 1, "n_heldout": 64},
        "Dataset size 32..16384 at a fixed step budget: collapse share, accuracy, KL",
        plot=draw,
        figsize=(15.0, 4.0),
    )
)
