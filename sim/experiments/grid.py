r"""The sim grid: rewards x hyperparameter settings x seeds, all runs stepped together in one batch.

Every run is a tabular answer-level policy on its own dataset (``n_questions`` questions from the prior, seed per
run), trained with sampled GRPO (``n_rollouts`` per question, all questions every step: the paper-sized batch
64 x 8). All R runs are stacked into one ``(R * Q, K)`` logit array, so one step of the whole grid is a handful of
array operations.

Exactness: every reward here is a function of the rollout's answer (and the question's logits), so all rollouts
of an answer class share a reward and an advantage; the step samples Multinomial answer counts
(:func:`sim.core.sample_counts`), lays each group out class by class as an (R * Q, N) reward matrix, calls
:func:`sharpen.grpo.group_advantages` on it and forms the exact tabular gradient
:math:`\frac1N(\sum_i A_ie_{y_i}-(\sum_iA_i)\pi)`. Rewards come from :func:`sharpen.rewards.get_reward`, called
once per reward and step on one representative single-token response per (question, answer) class; the
majority-voting winner from :func:`sharpen.answers.plurality_winners`. At the answer level (one-token responses)
self-certainty and token entropy are constant within a group, so they give zero advantages: the grid shows that
(their failure modes need the token-level toy, :mod:`sim.token_toy`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from sharpen.answers import plurality_winners
from sharpen.grpo import group_advantages
from sharpen.rewards import PRESETS, Rollouts, available_rewards, get_reward, reward_info
from sim._threads import torch_single_thread
from sim.configs import GRPORuns
from sim.core import Optimizer, PriorConfig, sample_counts, sample_prior, softmax
from sim.plots import mean_line
from sim.registry import Experiment, register
from sim.results import SimResult, Verdict
from sim.train import categorical_kl

__all__ = ["GridConfig", "GridSetting", "run_grid", "GRID_REWARDS", "grid_rewards", "class_rewards"]

CLASS_REWARDS = ("majority_voting", "ground_truth")
"""The rewards :func:`class_rewards` gives each answer class itself (the plurality winner, the correct class)."""

GRID_REWARDS = ("majority_voting", *(name for name, spec in PRESETS.items() if spec.needs_logits))
"""The default: majority voting and the four certainty presets, the five intrinsic rewards."""


def grid_rewards() -> tuple[str, ...]:
    """The rewards the grid trains with: :data:`CLASS_REWARDS` and every registered reward that reads only the
    logits and tokens of a single-token response."""
    needs = {n: reward_info(n).needs for n in available_rewards()}
    single_token = [
        n for n, need in needs.items() if "logits" in need and need <= {"logits", "tokens"}
    ]
    return (*CLASS_REWARDS, *(n for n in single_token if n not in CLASS_REWARDS))


@dataclass(frozen=True)
class GridSetting:
    """One hyperparameter setting: optimizer, learning rate, std normalisation of the advantages."""

    optimizer: str = "sgd"
    lr: float = 0.1
    normalize_std: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer: must be 'sgd' or 'adam', got {self.optimizer!r}")
        if not self.lr > 0:
            raise ValueError(f"lr: must be > 0, got {self.lr}")

    @property
    def name(self) -> str:
        return f"{self.optimizer}-lr{self.lr:g}-{'std' if self.normalize_std else 'nostd'}"


DEFAULT_SETTINGS = (
    GridSetting("sgd", 0.1, True),
    GridSetting("sgd", 0.5, True),
    GridSetting("sgd", 0.1, False),
    GridSetting("adam", 0.01, True),
)


@dataclass(frozen=True)
class GridConfig(GRPORuns):
    """The grid.

    ``n_rollouts``, ``steps`` (0 allowed: the initial state only), ``seeds`` and ``seed`` come from
    :class:`sim.configs.GRPORuns`; seed s of every (reward, setting) draws dataset ``seed + s``, so the datasets
    are shared across rewards and settings.

    Attributes
    ----------
    rewards : rewards, each one of :func:`grid_rewards` (default: the five intrinsic ones)
    settings : hyperparameter settings
    prior : per-run dataset (n_questions = the batch: every question every step)
    eps : added to the group std
    """

    rewards: tuple[str, ...] = GRID_REWARDS
    settings: tuple[GridSetting, ...] = DEFAULT_SETTINGS
    prior: PriorConfig = PriorConfig(n_questions=64, n_answers=8, strength=1.0, spread=1.0)
    eps: float = 1e-6

    min_steps: ClassVar[int] = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        ok = grid_rewards()
        bad = [r for r in self.rewards if r not in ok]
        if bad or not self.rewards:
            raise ValueError(f"rewards: unknown {bad}; valid: {', '.join(ok)}")
        if not self.settings:
            raise ValueError("settings: need at least one")
        if self.n_rollouts < 2:
            raise ValueError(f"n_rollouts: need N >= 2 for group advantages, got {self.n_rollouts}")


def class_rewards(
    name: str, logits: np.ndarray, counts: np.ndarray, correct: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Reward of each answer class, ``(G, K)``, for groups with answer ``counts (G, K)``.

    Certainty rewards are computed by :func:`sharpen.rewards.get_reward` on one single-token response per class
    (logits ``(G * K, 1, K)``, token = the class); majority voting gives 1 to the plurality winner
    (:func:`sharpen.answers.plurality_winners`), ground truth to the correct class.
    """
    g, k = logits.shape
    if name == "majority_voting":
        out = np.zeros((g, k))
        out[np.arange(g), plurality_winners(counts, rng)] = 1.0
        return out
    if name == "ground_truth":
        out = np.zeros((g, k))
        out[np.arange(g), correct] = 1.0
        return out
    z = np.repeat(logits, k, axis=0)[:, None, :].astype(np.float32)  # (G*K, 1, K)
    tokens = np.tile(np.arange(k), g)[:, None]
    r = get_reward(name)(Rollouts(logits=z, tokens=tokens))
    return np.asarray(r, dtype=np.float64).reshape(g, k)


def _layout(counts: np.ndarray, n: int) -> np.ndarray:
    """(G, N, K) one-hot of the class of each rollout, groups laid out class by class (exchangeable)."""
    ends = np.cumsum(counts, axis=1)  # (G, K)
    cls = (np.arange(n)[None, :, None] >= ends[:, None, :]).sum(axis=2)  # (G, N)
    return cls[:, :, None] == np.arange(counts.shape[1])[None, None, :]


def run_grid(config: GridConfig = GridConfig()) -> SimResult:
    """Run the whole grid; per-run series ``(R, steps + 1)`` of pass@1, greedy accuracy, max prob., KL."""
    rewards, settings, n_seeds = tuple(config.rewards), tuple(config.settings), config.seeds
    q, n = config.prior.n_questions, config.n_rollouts
    datasets = [
        sample_prior(config.prior, np.random.default_rng(config.seed + s)) for s in range(n_seeds)
    ]
    # runs ordered (setting, reward, seed); rows of one run are contiguous
    runs = [(si, r, s) for si in range(len(settings)) for r in rewards for s in range(n_seeds)]
    n_runs = len(runs)
    z = np.concatenate([datasets[s].logits for _, _, s in runs])  # (R*Q, K)
    correct = np.concatenate([datasets[s].correct for _, _, s in runs])
    ref = softmax(z)
    run_of_row = np.repeat(np.arange(n_runs), q)
    rows_of_setting = [
        np.flatnonzero(np.repeat([si == j for j, _, _ in runs], q)) for si in range(len(settings))
    ]
    rows_of_reward = {
        r: np.flatnonzero(np.repeat([rr == r for _, rr, _ in runs], q)) for r in rewards
    }
    std_rows = np.concatenate(
        [rows_of_setting[i] for i, st in enumerate(settings) if st.normalize_std] or [[]]
    )
    std_mask = np.zeros(len(z), dtype=bool)
    std_mask[std_rows.astype(np.int64)] = True
    opts = [Optimizer(st.optimizer, st.lr) for st in settings]
    params = [{"z": z[rows].copy()} for rows in rows_of_setting]
    rng = np.random.default_rng(config.seed + 10_007)
    rows_all = np.arange(len(z))
    series = {
        key: np.empty((n_runs, config.steps + 1))
        for key in ("accuracy", "greedy_accuracy", "p_max", "kl")
    }

    def measure(step: int, p: np.ndarray) -> None:
        def per_run(x: np.ndarray) -> np.ndarray:
            return np.bincount(run_of_row, weights=x, minlength=n_runs) / q

        series["accuracy"][:, step] = per_run(p[rows_all, correct])
        series["greedy_accuracy"][:, step] = per_run((p.argmax(axis=1) == correct).astype(float))
        series["p_max"][:, step] = per_run(p.max(axis=1))
        series["kl"][:, step] = per_run(categorical_kl(p, ref))

    with torch_single_thread():
        for step in range(config.steps + 1):
            for rows, prm in zip(rows_of_setting, params, strict=True):
                z[rows] = prm["z"]
            p = softmax(z)
            measure(step, p)
            if step == config.steps:
                break
            counts = sample_counts(p, n, rng)
            r_cls = np.empty_like(p)
            for name, rows in rows_of_reward.items():
                r_cls[rows] = class_rewards(name, z[rows], counts[rows], correct[rows], rng)
            onehot = _layout(counts, n)  # (G, N, K)
            r = (onehot * r_cls[:, None, :]).sum(axis=2)  # (G, N)
            adv = np.empty_like(r)
            for norm, mask in ((True, std_mask), (False, ~std_mask)):
                if mask.any():
                    adv[mask] = group_advantages(r[mask], normalize_std=norm, eps=config.eps)
            per_class = (onehot * adv[:, :, None]).sum(axis=1)  # (G, K) = sum_i A_i e_{y_i}
            grad = (per_class - per_class.sum(axis=1, keepdims=True) * p) / n
            for rows, prm, opt in zip(rows_of_setting, params, opts, strict=True):
                opt.step(prm, {"z": grad[rows]})
    traj: dict[str, np.ndarray] = {"step": np.arange(config.steps + 1)}
    table: dict[str, dict[str, float]] = {}
    for key, arr in series.items():
        traj[f"runs/{key}"] = arr
    for r in rewards:
        sel = [i for i, (_, rr, _) in enumerate(runs) if rr == r]
        for key in ("accuracy", "p_max"):
            traj[f"{r}/{key}"] = series[key][sel]
        table[r] = {}
        for si, st in enumerate(settings):
            sel2 = [i for i, (sj, rr, _) in enumerate(runs) if rr == r and sj == si]
            table[r][st.name] = float(series["accuracy"][sel2, -1].mean())
    start = float(series["accuracy"][:, 0].mean())
    summary = (
        f"{n_runs} runs ({len(rewards)} rewards x {len(settings)} settings x {n_seeds} seeds) x {config.steps} steps, "
        f"{q} questions x {n} rollouts. Initial pass@1 {start:.3f}; final pass@1 (mean over seeds) per reward: "
        + "; ".join(
            f"{r}: " + ", ".join(f"{s} {v:.3f}" for s, v in row.items()) for r, row in table.items()
        )
        + "."
    )
    numbers = {
        "final_accuracy": table,
        "initial_accuracy": start,
        "rewards": list(rewards),
        "settings": [st.name for st in settings],
        "runs": [{"setting": settings[si].name, "reward": r, "seed": s} for si, r, s in runs],
    }
    cfg = asdict(config)
    return SimResult("grid", cfg, traj, Verdict("exploration", None, summary, numbers))


def draw(res: SimResult, fig) -> None:
    """pass@1 and mean max probability per reward (mean over settings and seeds, each run thin)."""
    t = res.trajectories
    axes = fig.subplots(1, 2)
    for key, ax, title in (
        ("accuracy", axes[0], "pass@1"),
        ("p_max", axes[1], "mean max probability"),
    ):
        for name in res.verdict.numbers["rewards"]:
            mean_line(ax, t["step"], t[f"{name}/{key}"], name)
        ax.set(xlabel="step", title=f"{title} (mean over settings and seeds)")
    axes[0].legend(fontsize=7)


register(
    Experiment(
        "grid",
        "exploration",
        GridConfig,
        run_grid,
        {"steps": 50, "seeds": 1},
        "Sim grid: 5 rewards x 4 settings x 3 seeds x 1000 steps (64 x 8), all runs batched",
        plot=draw,
    )
)
