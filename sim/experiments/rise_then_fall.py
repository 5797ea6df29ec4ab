r"""Rise-then-fall: under majority voting, held-out accuracy on the shared task (:mod:`sim.shared_task`) rises,
peaks and falls while the proxy reward goes to 1; ground-truth training does not fall."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from sim.core import GRPOConfig
from sim.plots import mean_line
from sim.registry import Experiment, register
from sim.results import SimResult, Verdict, holds_from_shares
from sim.shared_task import SharedTaskRuns, classify_curve, shared_runs, tail_mean

__all__ = ["RiseFallConfig", "rise_then_fall"]


@dataclass(frozen=True)
class RiseFallConfig(SharedTaskRuns):
    """Majority voting vs ground truth on the shared task, over shortcut strengths, optimizers and seeds.

    The GRPO runs (``n_rollouts``, ``steps``, ``seeds``, ``seed``) and the task, held-out set and batch
    (paper-sized: 64 x 8) come from :class:`sim.shared_task.SharedTaskRuns`; ``task.shortcut_bonus`` is replaced
    by each of ``shortcut_bonuses``.

    Attributes
    ----------
    shortcut_bonuses : initial logit bonuses of the shortcut answer to sweep
    optimizers : "adam" and/or "sgd"
    adam_lr, sgd_lr : learning rates
    n_questions : training questions
    rise, decline : thresholds of :func:`sim.shared_task.classify_curve` on held-out accuracy
    n_probe, probe_every : training questions whose answer distributions go to ``probes.jsonl`` (first seed of
        the first setting), every ``probe_every`` steps
    """

    shortcut_bonuses: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5)
    optimizers: tuple[str, ...] = ("adam", "sgd")
    adam_lr: float = 0.005
    sgd_lr: float = 0.01
    n_questions: int = 512
    rise: float = 0.02
    decline: float = 0.05
    n_probe: int = 32
    probe_every: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.shortcut_bonuses:
            raise ValueError("shortcut_bonuses: need at least one value")
        if not self.optimizers or any(o not in ("adam", "sgd") for o in self.optimizers):
            raise ValueError(f"optimizers: each must be 'adam' or 'sgd', got {self.optimizers}")
        if self.n_questions < 1:
            raise ValueError(f"n_questions: must be >= 1, got {self.n_questions}")
        if not (self.adam_lr > 0 and self.sgd_lr > 0):
            raise ValueError("adam_lr, sgd_lr: must be > 0")
        if self.probe_every < 1 or self.n_probe < 0:
            raise ValueError("probe_every >= 1 and n_probe >= 0 required")


def rise_then_fall(config: RiseFallConfig = RiseFallConfig()) -> SimResult:
    r"""Does held-out accuracy under majority voting rise, peak and fall while the proxy reward goes to 1?

    Mechanism (:class:`sim.shared_task.SharedTaskConfig`): the shared weights carry a transferable "correct"
    direction and a shared *shortcut* (one distractor per question, initially favoured by ``shortcut_bonus``).
    Majority voting pushes the correct direction on questions whose vote is right and the shortcut direction on
    questions whose vote is the shortcut, so the two directions race. Std-normalised GRPO gives contested groups
    the largest updates, and early on the contested questions are mostly correct-majority ones: held-out accuracy
    rises. But every step of the shortcut weight turns more questions' votes to the shortcut, which then push it
    further (a population-level Polya urn); once it overtakes, accuracy falls to near 0 while the now unanimous
    votes still earn the proxy reward. Ground truth always pushes the shortcut down. The race's outcome depends on
    how many questions start with a shortcut majority, hence the sweep over ``shortcut_bonus``. Verdict: the share
    of seeds with a rise-then-fall (:func:`classify_curve` on held-out accuracy) per (optimizer, shortcut bonus),
    and whether ground-truth training ever falls.
    """
    steps = config.steps
    traj: dict[str, np.ndarray] = {"step": np.arange(steps + 1)}
    shares: dict[str, float] = {}
    kinds: dict[str, list[str]] = {}
    gt_fell: dict[str, int] = {}
    peak_steps: dict[str, list[int]] = {}
    main = None
    for opt in config.optimizers:
        lr = config.adam_lr if opt == "adam" else config.sgd_lr
        grpo = GRPOConfig(config.n_rollouts, lr, opt, batch_size=config.batch_size)
        # every (bonus, seed) run of one reward advanced together; run i = bonus i // seeds, seed i % seeds
        tasks = [
            replace(config.task, shortcut_bonus=float(b))
            for b in config.shortcut_bonuses
            for _ in range(config.seeds)
        ]
        seeds = [
            config.seed + 1000 * s for _ in config.shortcut_bonuses for s in range(config.seeds)
        ]
        common = {"n_questions": config.n_questions, "n_heldout": config.n_heldout, "grpo": grpo}
        # the probes of the main run (the first of all), recorded in every run of its batch
        probe = np.arange(min(config.n_probe, config.n_questions)) if main is None else None
        # only the measured series read below are computed
        mv_runs = shared_runs(
            tasks,
            seeds,
            reward="majority_voting",
            steps=steps,
            probe=probe,
            series=("accuracy", "p_max", "kl", "eval/heldout/accuracy"),
            **common,
        )
        gt_runs = shared_runs(
            tasks,
            seeds,
            reward="ground_truth",
            steps=steps,
            series=("p_max", "eval/heldout/accuracy"),
            **common,
        )
        for i, bonus in enumerate(config.shortcut_bonuses):
            name = f"{opt}/bonus={bonus:g}"
            series: dict[str, list[np.ndarray]] = {}
            kinds[name], peak_steps[name], gt_fell[name] = [], [], 0
            for s in range(config.seeds):
                (mv, correct), (gt, _) = (
                    mv_runs[i * config.seeds + s],
                    gt_runs[i * config.seeds + s],
                )
                if main is None:
                    main = (name, mv, gt, correct[probe])
                h = mv["eval/heldout/accuracy"]
                kind = classify_curve(h, rise=config.rise, decline=config.decline)
                kinds[name].append(kind)
                peak_steps[name].append(int(np.argmax(h)))
                gt_kind = classify_curve(
                    gt["eval/heldout/accuracy"], rise=config.rise, decline=config.decline
                )
                gt_fell[name] += int(gt_kind in ("rise-then-fall", "fall only"))
                for key, arr in (
                    ("mv/heldout_accuracy", h),
                    ("mv/train_accuracy", mv["accuracy"]),
                    ("mv/reward_mean", mv["reward_mean"]),
                    ("mv/reward_accuracy", mv["reward_accuracy"]),
                    ("mv/p_max", mv["p_max"]),
                    ("mv/kl", mv["kl"]),
                    ("gt/heldout_accuracy", gt["eval/heldout/accuracy"]),
                    ("gt/p_max", gt["p_max"]),
                ):
                    series.setdefault(key, []).append(arr)
            for key, arrs in series.items():
                traj[f"{name}/{key}"] = np.stack(arrs)
            shares[name] = float(np.mean([k == "rise-then-fall" for k in kinds[name]]))
    assert main is not None
    name0, mv0, gt0, probe_correct = main
    # the main run's series under TTRL names (metrics.jsonl), and its probes (probes.jsonl)
    traj["majority_voting_reward"] = mv0["reward_mean"]
    traj["reward_accuracy"] = mv0["reward_accuracy"]
    traj["label_accuracy"] = mv0["label_accuracy"]
    traj["majority_ratio"] = mv0["majority_ratio"]
    traj["ground_truth_ratio"] = mv0["accuracy"]
    traj["val_accuracy"] = mv0["eval/heldout/accuracy"]
    traj["gt_run/val_accuracy"] = gt0["eval/heldout/accuracy"]
    traj["kl"] = mv0["kl"]
    if "probe_probs" in mv0:
        traj["probe/step"] = np.arange(0, steps + 1, config.probe_every)
        traj["probe/probs"] = mv0["probe_probs"][:: config.probe_every]
        traj["probe/correct"] = probe_correct
    any_gt_fall = sum(gt_fell.values())
    # reproduced needs the fall under majority voting *and* no fall under ground truth
    holds = holds_from_shares(shares)
    if holds is True and any_gt_fall:
        holds = None
    parts = []
    for name in shares:
        counts = {k: kinds[name].count(k) for k in dict.fromkeys(kinds[name])}
        seen = ", ".join(f"{k} {c}/{config.seeds}" for k, c in counts.items())
        parts.append(f"{name}: {seen}")
    summary = (
        f"Held-out accuracy under majority voting ({config.steps} steps, batch {config.batch_size} x "
        f"{config.n_rollouts}) -- "
        + "; ".join(parts)
        + f". Ground-truth training fell in {any_gt_fall} of "
        f"{config.seeds * len(shares)} runs."
    )
    numbers = {
        "share_rise_then_fall": shares,
        "kinds": kinds,
        "peak_step": peak_steps,
        "gt_fell": gt_fell,
        "final_mv_reward": {
            n: float(np.mean([tail_mean(r) for r in traj[f"{n}/mv/reward_mean"]])) for n in shares
        },
    }
    return SimResult(
        "rise_then_fall", asdict(config), traj, Verdict("exploration", holds, summary, numbers)
    )


def draw(res: SimResult, fig) -> None:
    """Left: the main setting's held-out accuracy under MV and GT and the MV proxy reward; middle, right: MV
    held-out accuracy per shortcut bonus, Adam and SGD."""
    t = res.trajectories
    ax1, ax2, ax3 = fig.subplots(1, 3)
    step = t["step"]
    settings = sorted({k.rsplit("/mv/", 1)[0] for k in t if "/mv/heldout_accuracy" in k})
    main = "adam/bonus=1" if "adam/bonus=1" in settings else settings[0]
    mean_line(ax1, step, t[f"{main}/mv/heldout_accuracy"], "majority voting")
    mean_line(ax1, step, t[f"{main}/gt/heldout_accuracy"], "ground truth")
    mean_line(ax1, step, t[f"{main}/mv/reward_mean"], "MV proxy reward", ls="--")
    ax1.set(xlabel="step", ylabel="held-out accuracy / reward", title=f"{main} (seeds thin)")
    ax1.legend(fontsize=7)
    for opt, ax in (("adam", ax2), ("sgd", ax3)):
        for name in settings:
            if name.startswith(opt + "/"):
                ax.plot(
                    step, t[f"{name}/mv/heldout_accuracy"].mean(axis=0), label=name.split("/")[1]
                )
        ax.set(xlabel="step", ylabel="held-out accuracy (MV, mean of seeds)", title=opt)
        if ax.lines:
            ax.legend(fontsize=7)


register(
    Experiment(
        "rise_then_fall",
        "exploration",
        RiseFallConfig,
        rise_then_fall,
        {
            "shortcut_bonuses": (1.0,),
            "optimizers": ("adam",),
            "n_questions": 64,
            "n_heldout": 64,
            "steps": 40,
            "seeds": 1,
            "n_probe": 4,
        },
        "Rise-then-fall of held-out accuracy under majority voting (shared weights, shortcut)",
        plot=draw,
        figsize=(15.0, 4.0),
    )
)
