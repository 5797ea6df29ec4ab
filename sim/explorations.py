"""Explorations: does a toy mechanism reproduce an empirical finding of the paper? Each reports honestly.

Every exploration runs over several seeds (and where it says so, several settings) and its verdict gives the share
of seeds and the range of settings in which the phenomenon appears: ``holds=True`` (reproduced in at least 2/3 of
the seeds of every case), ``False`` (in none), ``None`` (partly). Nothing here is tuned to a knife edge: defaults
were set once from the mechanism's logic, and the verdicts report what happens.

Registered in :mod:`sim.api` on import (``failure_modes``, ``rise_then_fall``, ``dataset_size``, ``mcs_gt_gain``,
``single_question``, ``self_verification``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from sim._threads import torch_single_thread
from sim.api import Experiment, register
from sim.core import GRPOConfig, PriorConfig, SharedPolicy, TabularPolicy, sample_prior, softmax
from sim.results import SimResult, Verdict
from sim.token_toy import TOKEN_REWARDS, TokenToyConfig, init_token_policy, train_token_level
from sim.train import train_answer_level

__all__ = ["FailureModesConfig", "failure_modes", "classify_failure"]


def _verdict_from_shares(shares: dict[str, float], need: float = 2 / 3) -> bool | None:
    vals = list(shares.values())
    if all(v >= need for v in vals):
        return True
    if all(v == 0 for v in vals):
        return False
    return None


# ------------------------------------------------------------------------------------------------------------
# 6. Five failure modes (token-level toy)
# ------------------------------------------------------------------------------------------------------------

PREDICTED_MODE = {
    "probability": "length collapse",
    "token_entropy": "repetition collapse",
    "trajectory_entropy": "repetition collapse",
    "self_certainty": "gradual degradation",
    "majority_voting": "gradual degradation",
    "ground_truth": "no collapse",
}


@dataclass(frozen=True)
class FailureModesConfig:
    """Five intrinsic rewards (and ground truth as the control) on the token-level toy.

    Attributes
    ----------
    toy : the task and initial policy (:class:`sim.token_toy.TokenToyConfig`)
    rewards : rewards to train with
    seeds : number of seeds (each draws its own task and held-out questions)
    steps : GRPO steps (every question every step: N rollouts each)
    n_rollouts, lr, optimizer : GRPO (token-mean loss, std-normalised advantages)
    n_val : held-out questions sharing the habits (theta, alpha) but not the per-question guesses
    length_ratio, repetition, decline : classification thresholds (see :func:`classify_failure`)
    seed : base seed
    """

    toy: TokenToyConfig = TokenToyConfig()
    rewards: tuple[str, ...] = TOKEN_REWARDS
    seeds: int = 3
    steps: int = 600
    n_rollouts: int = 8
    lr: float = 0.03
    optimizer: str = "adam"
    n_val: int = 128
    length_ratio: float = 0.6
    repetition: float = 0.5
    decline: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [r for r in self.rewards if r not in TOKEN_REWARDS]
        if bad or not self.rewards:
            raise ValueError(f"rewards: unknown {bad}; valid: {', '.join(TOKEN_REWARDS)}")
        if self.seeds < 1 or self.steps < 1 or self.n_val < 1:
            raise ValueError("seeds, steps, n_val: must be >= 1")
        if self.n_rollouts < 1:
            raise ValueError(f"n_rollouts: N must be >= 1, got {self.n_rollouts}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer: must be 'sgd' or 'adam', got {self.optimizer!r}")


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
    for reward in rewards:
        runs: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        for s in range(config.seeds):
            seed = config.seed + 1000 * s
            pol = init_token_policy(config.toy, np.random.default_rng(seed))
            val_cfg = TokenToyConfig(**{**asdict(config.toy), "n_questions": config.n_val})
            val = init_token_policy(val_cfg, np.random.default_rng(seed + 1))
            out = train_token_level(
                pol,
                reward=reward,
                steps=config.steps,
                rng=np.random.default_rng(seed + 2),
                n_rollouts=config.n_rollouts,
                lr=config.lr,
                optimizer=config.optimizer,
                val_policy=val,
            )
            for k in keys:
                runs[k].append(out[k])
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
            arr = np.stack(runs[k])  # (seeds, S + 1)
            traj[f"{reward}/{k}/seeds"] = arr
            traj[f"{reward}/{k}"] = arr.mean(axis=0)
    shares = {r: float(np.mean([m == PREDICTED_MODE[r] for m in modes[r]])) for r in rewards}
    holds = _verdict_from_shares(shares)
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


register(
    Experiment(
        "failure_modes",
        "exploration",
        FailureModesConfig,
        failure_modes,
        {"toy": TokenToyConfig(n_questions=16), "seeds": 1, "steps": 30, "n_val": 32},
        "Five failure modes on the token-level toy: length / repetition collapse / gradual",
    )
)


# ------------------------------------------------------------------------------------------------------------
# The shared task of explorations 4, 5, 7, 8: correctness and a shortcut as shared features
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SharedTaskConfig:
    r"""Answer-level questions whose logits share parameters: :math:`z_{qk}=b_{qk}+\phi_{qk}\cdot w`.

    Features :math:`\phi_{qk}\in\mathbb R^D`: coordinate 0 is ``correct_weight`` on the correct answer (the
    transferable "skill"), coordinate 1 is 1 on one wrong answer per question, the *shortcut* (a shared error
    pattern, e.g. a plausible distractor), the other D - 2 are idiosyncratic N(0, 1/D) answer embeddings (what lets
    the shared weights also memorise individual questions). Base logits :math:`b` are the prior
    (:class:`sim.core.PriorConfig` with ``strength``, ``spread``) plus ``shortcut_bonus`` on the shortcut answer.
    ``w`` starts at 0.

    Attributes
    ----------
    n_answers : K >= 3 (a correct answer, a shortcut and at least one other)
    n_features : D >= 3
    correct_weight : feature value of the correct answer on coordinate 0
    shortcut_bonus : initial logit bonus of the shortcut answer
    strength, spread : the prior of the base logits
    """

    n_answers: int = 8
    n_features: int = 16
    correct_weight: float = 1.0
    shortcut_bonus: float = 1.0
    strength: float = 1.0
    spread: float = 1.0

    def __post_init__(self) -> None:
        if self.n_answers < 3:
            raise ValueError(
                f"n_answers: need K >= 3 (correct, shortcut, other), got {self.n_answers}"
            )
        if self.n_features < 3:
            raise ValueError(f"n_features: need D >= 3, got {self.n_features}")
        if not self.spread > 0:
            raise ValueError(f"spread: must be > 0, got {self.spread}")


def make_shared_task(
    config: SharedTaskConfig, n_questions: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``n_questions`` questions: base logits (Q, K), correct answers (Q,), features (Q, K, D)."""
    if int(n_questions) < 1:
        raise ValueError(f"n_questions: the dataset must not be empty, got {n_questions}")
    q, k, d = int(n_questions), config.n_answers, config.n_features
    prior = sample_prior(PriorConfig(q, k, config.strength, config.spread), rng)
    rows = np.arange(q)
    feats = rng.standard_normal((q, k, d)) / np.sqrt(d)
    feats[:, :, :2] = 0.0
    feats[rows, prior.correct, 0] = config.correct_weight
    shortcut = (prior.correct + 1 + rng.integers(0, k - 1, size=q)) % k
    feats[rows, shortcut, 1] = 1.0
    base = prior.logits.copy()
    base[rows, shortcut] += config.shortcut_bonus
    return base, prior.correct, feats


def _shared_run(
    task: SharedTaskConfig,
    *,
    n_questions: int,
    n_heldout: int,
    reward: str,
    grpo: GRPOConfig,
    steps: int,
    seed: int,
    per_question: bool = False,
    probe: np.ndarray | None = None,
    verifier_accuracy: float = 0.9,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Train a fresh shared policy (dataset and held-out set from ``seed``); returns its series and train labels."""
    data_rng = np.random.default_rng(seed)
    base, correct, feats = make_shared_task(task, n_questions, data_rng)
    hb, hc, hf = make_shared_task(task, n_heldout, data_rng)
    pol = SharedPolicy(base, feats, per_question=per_question)
    held = SharedPolicy(hb, hf)
    held.params["w"] = pol.params["w"]  # the same array: the optimizer updates it in place
    with torch_single_thread():
        out = train_answer_level(
            pol,
            correct,
            reward=reward,
            grpo=grpo,
            steps=steps,
            rng=np.random.default_rng(seed + 1),
            eval_questions={"heldout": (held, hc)},
            probe=probe,
            verifier_accuracy=verifier_accuracy,
        )
    return out, correct


def _tail_mean(x: np.ndarray, frac: float = 0.05) -> float:
    n = max(1, int(round(len(x) * frac)))
    return float(np.nanmean(x[-n:]))


def classify_curve(acc: np.ndarray, *, rise: float, decline: float) -> str:
    """``"rise-then-fall"`` (peak >= start + ``rise`` and final <= peak - ``decline``), ``"rise only"``,
    ``"fall only"`` (final <= start - ``decline`` without a rise) or ``"flat"``; final = mean of the last 5%."""
    start, peak, final = float(acc[0]), float(np.max(acc)), _tail_mean(acc)
    rose = peak >= start + rise
    fell = final <= peak - decline
    if rose and fell:
        return "rise-then-fall"
    if rose:
        return "rise only"
    if final <= start - decline:
        return "fall only"
    return "flat"


# ------------------------------------------------------------------------------------------------------------
# 4. Rise-then-fall
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RiseFallConfig:
    """Majority voting vs ground truth on the shared task, over shortcut strengths, optimizers and seeds.

    Attributes
    ----------
    task : the shared task (its ``shortcut_bonus`` is replaced by each of ``shortcut_bonuses``)
    shortcut_bonuses : initial logit bonuses of the shortcut answer to sweep
    optimizers : "adam" and/or "sgd"
    adam_lr, sgd_lr : learning rates
    n_questions, n_heldout, batch_size, n_rollouts, steps : data and GRPO (paper-sized batch: 64 x 8)
    seeds : seeds per setting
    rise, decline : thresholds of :func:`classify_curve` on held-out accuracy
    n_probe, probe_every : training questions whose answer distributions go to ``probes.jsonl`` (first seed of
        the first setting), every ``probe_every`` steps
    seed : base seed
    """

    task: SharedTaskConfig = SharedTaskConfig()
    shortcut_bonuses: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5)
    optimizers: tuple[str, ...] = ("adam", "sgd")
    adam_lr: float = 0.005
    sgd_lr: float = 0.01
    n_questions: int = 512
    n_heldout: int = 512
    batch_size: int = 64
    n_rollouts: int = 8
    steps: int = 1000
    seeds: int = 3
    rise: float = 0.02
    decline: float = 0.05
    n_probe: int = 32
    probe_every: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.shortcut_bonuses:
            raise ValueError("shortcut_bonuses: need at least one value")
        if not self.optimizers or any(o not in ("adam", "sgd") for o in self.optimizers):
            raise ValueError(f"optimizers: each must be 'adam' or 'sgd', got {self.optimizers}")
        if min(self.n_questions, self.n_heldout, self.batch_size, self.steps, self.seeds) < 1:
            raise ValueError("n_questions, n_heldout, batch_size, steps, seeds: must be >= 1")
        if self.n_rollouts < 1:
            raise ValueError(f"n_rollouts: N must be >= 1, got {self.n_rollouts}")
        if not (self.adam_lr > 0 and self.sgd_lr > 0):
            raise ValueError("adam_lr, sgd_lr: must be > 0")
        if self.probe_every < 1 or self.n_probe < 0:
            raise ValueError("probe_every >= 1 and n_probe >= 0 required")


def rise_then_fall(config: RiseFallConfig = RiseFallConfig()) -> SimResult:
    r"""Does held-out accuracy under majority voting rise, peak and fall while the proxy reward goes to 1?

    Mechanism (:class:`SharedTaskConfig`): the shared weights carry a transferable "correct" direction and a
    shared *shortcut* (one distractor per question, initially favoured by ``shortcut_bonus``). Majority voting
    pushes the correct direction on questions whose vote is right and the shortcut direction on questions whose
    vote is the shortcut, so the two directions race. Std-normalised GRPO gives contested groups the largest
    updates, and early on the contested questions are mostly correct-majority ones: held-out accuracy rises. But
    every step of the shortcut weight turns more questions' votes to the shortcut, which then push it further (a
    population-level Polya urn); once it overtakes, accuracy falls to near 0 while the now unanimous votes still
    earn the proxy reward. Ground truth always pushes the shortcut down. The race's outcome depends on how many
    questions start with a shortcut majority, hence the sweep over ``shortcut_bonus``. Verdict: the share of
    seeds with a rise-then-fall (:func:`classify_curve` on held-out accuracy) per (optimizer, shortcut bonus),
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
        for bonus in config.shortcut_bonuses:
            task = replace(config.task, shortcut_bonus=float(bonus))
            name = f"{opt}/bonus={bonus:g}"
            series: dict[str, list[np.ndarray]] = {}
            kinds[name], peak_steps[name], gt_fell[name] = [], [], 0
            for s in range(config.seeds):
                seed = config.seed + 1000 * s
                probe = np.arange(min(config.n_probe, config.n_questions)) if main is None else None
                mv, correct = _shared_run(
                    task,
                    n_questions=config.n_questions,
                    n_heldout=config.n_heldout,
                    reward="majority_voting",
                    grpo=grpo,
                    steps=steps,
                    seed=seed,
                    probe=probe,
                )
                gt, _ = _shared_run(
                    task,
                    n_questions=config.n_questions,
                    n_heldout=config.n_heldout,
                    reward="ground_truth",
                    grpo=grpo,
                    steps=steps,
                    seed=seed,
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
    holds = _verdict_from_shares(shares)
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
            n: float(np.mean([_tail_mean(r) for r in traj[f"{n}/mv/reward_mean"]])) for n in shares
        },
    }
    return SimResult(
        "rise_then_fall", asdict(config), traj, Verdict("exploration", holds, summary, numbers)
    )


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
    )
)


# ------------------------------------------------------------------------------------------------------------
# 5. Dataset size
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetSizeConfig:
    """Majority voting on training sets of different sizes, at a fixed step budget (the paper: 600 steps).

    Attributes
    ----------
    task : the shared task (same parameters as ``rise_then_fall``)
    sizes : training-set sizes Q
    per_question : add a trainable per-question term (lets small sets be memorised question by question)
    optimizer, lr, batch_size, n_rollouts, steps : GRPO (batch 32 as in the paper's dataset-size runs)
    n_heldout : held-out questions
    seeds : seeds per size
    decline : a run *collapses* when its final training accuracy (exact pass@1 over the whole training set,
        the GT reward) lies ``decline`` below its best value and below its start
    seed : base seed
    """

    task: SharedTaskConfig = SharedTaskConfig()
    sizes: tuple[int, ...] = (32, 128, 512, 2048, 16384)
    per_question: bool = True
    optimizer: str = "adam"
    lr: float = 0.005
    batch_size: int = 32
    n_rollouts: int = 8
    steps: int = 600
    n_heldout: int = 512
    seeds: int = 3
    decline: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.sizes or min(self.sizes) < 1:
            raise ValueError(f"sizes: every size must be >= 1, got {self.sizes}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer: must be 'adam' or 'sgd', got {self.optimizer!r}")
        if min(self.batch_size, self.n_rollouts, self.steps, self.n_heldout, self.seeds) < 1:
            raise ValueError("batch_size, n_rollouts, steps, n_heldout, seeds: must be >= 1")


def dataset_size(config: DatasetSizeConfig = DatasetSizeConfig()) -> SimResult:
    r"""Dataset size at a fixed step budget: final accuracy, collapse and KL per size, over seeds.

    Mechanism: the shared task of :func:`rise_then_fall` (Adam, shortcut bonus from ``task``) plus, with
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
        for s in range(config.seeds):
            out, _ = _shared_run(
                config.task,
                n_questions=int(size),
                n_heldout=config.n_heldout,
                reward="majority_voting",
                grpo=grpo,
                steps=config.steps,
                seed=config.seed + 1000 * s,
                per_question=config.per_question,
            )
            acc = out["accuracy"]
            final = _tail_mean(acc)
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
                np.mean([_tail_mean(a) for a in keys["ground_truth_ratio"]])
            ),
            "initial_train_accuracy": float(np.mean([a[0] for a in keys["ground_truth_ratio"]])),
            "final_val_accuracy": float(np.mean([_tail_mean(a) for a in keys["val_accuracy"]])),
            "final_reward": float(np.mean([_tail_mean(a) for a in keys["majority_voting_reward"]])),
            "final_reward_accuracy": float(
                np.mean([_tail_mean(a) for a in keys["reward_accuracy"]])
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


register(
    Experiment(
        "dataset_size",
        "exploration",
        DatasetSizeConfig,
        dataset_size,
        {"sizes": (32, 256), "steps": 30, "seeds": 1, "n_heldout": 64},
        "Dataset size 32..16384 at a fixed step budget: collapse share, accuracy, KL",
    )
)


# ------------------------------------------------------------------------------------------------------------
# 7. Model Collapse Step vs GT Gain
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MCSConfig:
    """Model Collapse Step vs GT Gain across "models" = priors of different strength on the shared task.

    Attributes
    ----------
    task : the shared task (its ``strength`` is replaced by each of ``strengths``)
    strengths : prior strengths, one simulated model each
    n_questions : dataset size; GT Gain trains one epoch over it (``n_questions / batch_size`` steps)
    n_heldout, batch_size, n_rollouts, optimizer, lr : GRPO
    steps : majority-voting horizon; a run that never collapses is censored at it
    seeds : seeds per model
    threshold, consecutive : the threshold rule on batch reward accuracy (the paper: first step < 0.01)
    min_decline, patience : the peak rule on held-out accuracy
    seed : base seed
    """

    task: SharedTaskConfig = SharedTaskConfig()
    strengths: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5)
    n_questions: int = 2048
    n_heldout: int = 512
    batch_size: int = 64
    n_rollouts: int = 8
    optimizer: str = "adam"
    lr: float = 0.005
    steps: int = 1000
    seeds: int = 3
    threshold: float = 0.01
    consecutive: int = 1
    min_decline: float = 0.05
    patience: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.strengths) < 2:
            raise ValueError(f"strengths: need at least two models, got {self.strengths}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer: must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.n_questions < self.batch_size:
            raise ValueError("n_questions: must be >= batch_size (one epoch is at least one step)")
        if min(self.batch_size, self.n_rollouts, self.steps, self.seeds, self.n_heldout) < 1:
            raise ValueError("batch_size, n_rollouts, steps, seeds, n_heldout: must be >= 1")


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def mcs_vs_gt_gain(config: MCSConfig = MCSConfig()) -> SimResult:
    r"""Does the Model Collapse Step rank models like GT Gain does, and how much cheaper is it?

    Mechanism: each simulated model is the shared task with a different prior strength (how strongly the
    correct answer is favoured at the start). A stronger prior gives more correct-majority questions, so the
    correct direction wins the race of :func:`rise_then_fall` more often and later (or never): the collapse step
    should grow with strength, and so should the gain of one epoch of ground-truth training. MCS uses
    :func:`sharpen.metrics.model_collapse_step` with both rules (threshold on batch reward accuracy; peak of
    held-out accuracy); GT Gain uses :func:`sharpen.metrics.gt_gain` on held-out accuracy after one epoch.
    Cost, in sampled responses: GT Gain needs ``n_questions * N``, MCS ``MCS * batch * N`` (no labels).
    Verdict: the Spearman correlation between mean MCS (censored at ``steps``) and mean GT Gain across models;
    the summary also gives it over the per-seed pairs (seed ``s`` of a model: the MCS of its majority-vote run and
    the GT Gain of its ground-truth run, which share the dataset). Per-seed values are kept in the verdict's rows
    (``mcs_threshold_runs``, ``mcs_peak_runs``, ``gt_gain_runs``) and in the trajectories as (models, seeds)
    arrays ``mcs_threshold_seeds``, ``mcs_peak_seeds``, ``gt_gain_seeds``.
    """
    from sharpen.metrics import gt_gain, model_collapse_step

    epoch = config.n_questions // config.batch_size
    grpo = GRPOConfig(config.n_rollouts, config.lr, config.optimizer, batch_size=config.batch_size)
    traj: dict[str, np.ndarray] = {"step": np.arange(config.steps + 1)}
    rows = []
    for strength in config.strengths:
        task = replace(config.task, strength=float(strength))
        mcs_t, mcs_p, gains, collapsed = [], [], [], []
        ra_runs, ha_runs = [], []
        for s in range(config.seeds):
            seed = config.seed + 1000 * s
            mv, _ = _shared_run(
                task,
                n_questions=config.n_questions,
                n_heldout=config.n_heldout,
                reward="majority_voting",
                grpo=grpo,
                steps=config.steps,
                seed=seed,
            )
            gt, _ = _shared_run(
                task,
                n_questions=config.n_questions,
                n_heldout=config.n_heldout,
                reward="ground_truth",
                grpo=grpo,
                steps=epoch,
                seed=seed,
            )
            ra, ha = mv["reward_accuracy"], mv["eval/heldout/accuracy"]
            ra_runs.append(ra)
            ha_runs.append(ha)
            t = model_collapse_step(
                ra, "threshold", threshold=config.threshold, consecutive=config.consecutive
            )
            p = model_collapse_step(
                ha, "peak", min_decline=config.min_decline, patience=config.patience
            )
            collapsed.append(t is not None)
            mcs_t.append(t.step if t is not None else config.steps)
            mcs_p.append(p.step if p is not None else config.steps)
            h = gt["eval/heldout/accuracy"]
            gains.append(gt_gain(h[0], h[-1]))
        traj[f"strength={strength:g}/reward_accuracy"] = np.stack(ra_runs)
        traj[f"strength={strength:g}/heldout_accuracy"] = np.stack(ha_runs)
        rows.append(
            {
                "strength": float(strength),
                "mcs_threshold": float(np.mean(mcs_t)),
                "mcs_peak": float(np.mean(mcs_p)),
                "gt_gain": float(np.mean(gains)),
                "collapse_share": float(np.mean(collapsed)),
                "mcs_threshold_runs": [int(x) for x in mcs_t],
                "mcs_peak_runs": [int(x) for x in mcs_p],
                "gt_gain_runs": [float(x) for x in gains],
            }
        )
    mt = np.array([r["mcs_threshold"] for r in rows])
    mp = np.array([r["mcs_peak"] for r in rows])
    gg = np.array([r["gt_gain"] for r in rows])
    rho_t, rho_p = _spearman(mt, gg), _spearman(mp, gg)
    # per seed: (models, seeds) arrays; the Spearman correlation over every (MCS, GT Gain) pair
    mt_s = np.array([r["mcs_threshold_runs"] for r in rows], dtype=np.float64)
    mp_s = np.array([r["mcs_peak_runs"] for r in rows], dtype=np.float64)
    gg_s = np.array([r["gt_gain_runs"] for r in rows])
    rho_t_s, rho_p_s = _spearman(mt_s.ravel(), gg_s.ravel()), _spearman(mp_s.ravel(), gg_s.ravel())
    # cost in sampled responses (N cancels): one GT epoch per model vs the summed collapse steps x batch
    gt_cost = len(rows) * config.n_questions
    cost_t = gt_cost / (float(mt.sum()) * config.batch_size)
    cost_p = gt_cost / (float(mp.sum()) * config.batch_size)
    good = [np.isfinite(x) and x >= 0.8 for x in (rho_t, rho_p)]
    holds: bool | None = True if all(good) else (None if any(good) else False)
    traj["strength"] = np.array([r["strength"] for r in rows])
    traj["mcs_threshold"], traj["mcs_peak"], traj["gt_gain"] = mt, mp, gg
    traj["mcs_threshold_seeds"], traj["mcs_peak_seeds"], traj["gt_gain_seeds"] = mt_s, mp_s, gg_s
    summary = (
        "Per prior strength (MCS threshold rule / peak rule / GT Gain / collapse share): "
        + "; ".join(
            f"{r['strength']:g}: {r['mcs_threshold']:.0f} / {r['mcs_peak']:.0f} / {r['gt_gain']:+.3f} / "
            f"{r['collapse_share']:.2f}"
            for r in rows
        )
        + f". Spearman(MCS, GT Gain) over model means: threshold rule {rho_t:.2f}, peak rule {rho_p:.2f}; over "
        f"the {gg_s.size} per-seed pairs: {rho_t_s:.2f}, {rho_p_s:.2f} (censored at {config.steps}). Cost GT Gain / MCS in sampled responses: {cost_t:.2f} (threshold rule), "
        f"{cost_p:.2f} (peak rule); the paper: 5.6 (a 17k-question epoch vs collapse within hundreds of steps)."
    )
    numbers = {
        "rows": rows,
        "spearman_threshold": rho_t,
        "spearman_peak": rho_p,
        "spearman_threshold_seeds": rho_t_s,
        "spearman_peak_seeds": rho_p_s,
        "cost_ratio_threshold": cost_t,
        "cost_ratio_peak": cost_p,
        "epoch_steps": epoch,
    }
    return SimResult(
        "mcs_gt_gain", asdict(config), traj, Verdict("exploration", holds, summary, numbers)
    )


register(
    Experiment(
        "mcs_gt_gain",
        "exploration",
        MCSConfig,
        mcs_vs_gt_gain,
        {"strengths": (0.0, 2.0), "n_questions": 128, "n_heldout": 64, "steps": 40, "seeds": 1},
        "Model Collapse Step (both rules) vs GT Gain across prior strengths; cost ratio",
    )
)


# ------------------------------------------------------------------------------------------------------------
# 8a. Single-question training
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SingleQuestionConfig:
    """Each question trained alone (tabular: a question only moves by its own rollouts).

    Training all questions of a tabular policy in one batch is exactly training each alone (same update per
    question; SGD and Adam both act per coordinate), so one run covers them all.

    Attributes
    ----------
    prior : the questions' initial distributions
    rewards : answer-level rewards to train with (the paper: trajectory-level entropy, reading not certain)
    steps : updates per question (the paper: 100 epochs of one question)
    n_rollouts, lr, optimizer : GRPO
    seeds : seeds (each draws its own questions)
    seed : base seed
    n_probe, probe_every : the first ``n_probe`` questions of the first seed, trained with the first reward,
        have their answer distributions saved every ``probe_every`` steps (``probes.jsonl``: per-question
        trajectories of the majority and initial-majority probability; the paper's Fig. 4 shows 25 problems)
    """

    prior: PriorConfig = PriorConfig(n_questions=500, n_answers=8, strength=1.0, spread=1.0)
    rewards: tuple[str, ...] = ("trajectory_entropy", "majority_voting")
    steps: int = 100
    n_rollouts: int = 8
    lr: float = 0.1
    optimizer: str = "sgd"
    seeds: int = 3
    seed: int = 0
    n_probe: int = 25
    probe_every: int = 1

    def __post_init__(self) -> None:
        from sim.core import ANSWER_REWARDS

        bad = [r for r in self.rewards if r not in ANSWER_REWARDS]
        if bad or not self.rewards:
            raise ValueError(f"rewards: unknown {bad}; valid: {', '.join(ANSWER_REWARDS)}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer: must be 'adam' or 'sgd', got {self.optimizer!r}")
        if min(self.steps, self.n_rollouts, self.seeds) < 1:
            raise ValueError("steps, n_rollouts, seeds: must be >= 1")
        if self.n_probe < 0 or self.probe_every < 1:
            raise ValueError(
                f"n_probe, probe_every: need n_probe >= 0 and probe_every >= 1, got {self.n_probe}, "
                f"{self.probe_every}"
            )


def single_question(config: SingleQuestionConfig = SingleQuestionConfig()) -> SimResult:
    r"""Single-question training: what share of questions flip greedy correctness? (the paper: 3/25 = 12%)

    Mechanism: a question trained alone is a tabular policy; Theorem 1 says it sharpens onto its *initial* mode,
    so its greedy answer -- and its greedy correctness -- only changes when a finite vote (or, for certainty
    rewards, a sampled rollout's reward) pushes another answer past the mode before lock-in. That happens when
    the top two answers start close. Verdict (reported, no threshold of our own): the share that flip greedy
    correctness (right -> wrong and wrong -> right), the share whose greedy answer changes at all, and the
    share whose confidence (max probability) deepened, per reward, against the paper's 12%.

    Probes (``probes.jsonl``, :func:`sim.results.probe_records`): the first ``n_probe`` questions of the first
    seed under the first reward, every ``probe_every`` steps -- exact answer distributions, so ``sharpen fit``
    and figure 4 read each question's sharpening (or flip) step by step.
    """
    traj: dict[str, np.ndarray] = {"step": np.arange(config.steps + 1)}
    numbers: dict[str, dict[str, float]] = {}
    grpo = GRPOConfig(config.n_rollouts, config.lr, config.optimizer)
    n_probe = min(config.n_probe, config.prior.n_questions)
    for reward in config.rewards:
        flips, r2w, w2r, changed, deeper, accs = [], [], [], [], [], []
        for s in range(config.seeds):
            rng = np.random.default_rng(config.seed + 1000 * s)
            prior = sample_prior(config.prior, rng)
            pol = TabularPolicy(prior.logits)
            main = n_probe > 0 and s == 0 and reward == config.rewards[0]
            probe = np.arange(n_probe) if main else None
            with torch_single_thread():
                out = train_answer_level(
                    pol,
                    prior.correct,
                    reward=reward,
                    grpo=grpo,
                    steps=config.steps,
                    rng=rng,
                    probe=probe,
                )
            if main:  # recording probes draws no random numbers: the run is the same without them
                traj["probe/step"] = np.arange(0, config.steps + 1, config.probe_every)
                traj["probe/probs"] = out["probe_probs"][:: config.probe_every]
                traj["probe/correct"] = prior.correct[probe]
            p0, p1 = prior.probs, softmax(pol.logits())
            g0, g1 = p0.argmax(axis=1), p1.argmax(axis=1)
            c0, c1 = g0 == prior.correct, g1 == prior.correct
            flips.append(float((c0 != c1).mean()))
            r2w.append(float((c0 & ~c1).mean()))
            w2r.append(float((~c0 & c1).mean()))
            changed.append(float((g0 != g1).mean()))
            deeper.append(float((p1.max(axis=1) > p0.max(axis=1)).mean()))
            accs.append(out["greedy_accuracy"])
        traj[f"{reward}/greedy_accuracy"] = np.stack(accs)
        numbers[reward] = {
            "flip_share": float(np.mean(flips)),
            "flip_share_range": [float(min(flips)), float(max(flips))],
            "right_to_wrong": float(np.mean(r2w)),
            "wrong_to_right": float(np.mean(w2r)),
            "greedy_changed": float(np.mean(changed)),
            "confidence_deepened": float(np.mean(deeper)),
        }
    reproduced = [0.04 <= v["flip_share"] <= 0.25 for v in numbers.values()]
    holds: bool | None = True if all(reproduced) else (False if not any(reproduced) else None)
    summary = (
        "; ".join(
            f"{r}: {v['flip_share']:.1%} flip greedy correctness (seeds {v['flip_share_range'][0]:.1%}-"
            f"{v['flip_share_range'][1]:.1%}; right->wrong {v['right_to_wrong']:.1%}, wrong->right "
            f"{v['wrong_to_right']:.1%}), greedy answer changed {v['greedy_changed']:.1%}, confidence deepened "
            f"{v['confidence_deepened']:.1%}"
            for r, v in numbers.items()
        )
        + " (paper: 12% of 25 problems; counted as reproduced within 4-25%, the range a 3/25 count allows at "
        "about 95%)."
    )
    return SimResult(
        "single_question", asdict(config), traj, Verdict("exploration", holds, summary, numbers)
    )


register(
    Experiment(
        "single_question",
        "exploration",
        SingleQuestionConfig,
        single_question,
        {"prior": PriorConfig(n_questions=64, n_answers=8), "steps": 20, "seeds": 1},
        "Single-question training: share of questions whose greedy correctness flips (paper 12%)",
    )
)


# ------------------------------------------------------------------------------------------------------------
# 8b. External reward: self-verification with a simulated verifier
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SelfVerificationConfig:
    """Self-verification (verifier of fixed accuracy) vs majority voting vs ground truth on the shared task.

    Attributes
    ----------
    task : the shared task (the ``rise_then_fall`` setting where majority voting collapses)
    verifier_accuracies : accuracies of the simulated verifier (independent of the policy's confidence)
    n_questions, n_heldout, batch_size, n_rollouts, optimizer, lr, steps, seeds : as in ``rise_then_fall``
    rise, decline : thresholds of :func:`classify_curve`
    seed : base seed
    """

    task: SharedTaskConfig = SharedTaskConfig()
    verifier_accuracies: tuple[float, ...] = (0.6, 0.75, 0.9)
    n_questions: int = 512
    n_heldout: int = 512
    batch_size: int = 64
    n_rollouts: int = 8
    optimizer: str = "adam"
    lr: float = 0.005
    steps: int = 1000
    seeds: int = 3
    rise: float = 0.02
    decline: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.verifier_accuracies or any(not 0 <= a <= 1 for a in self.verifier_accuracies):
            raise ValueError(
                f"verifier_accuracies: each must lie in [0, 1], got {self.verifier_accuracies}"
            )
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer: must be 'adam' or 'sgd', got {self.optimizer!r}")
        if (
            min(
                self.n_questions,
                self.n_heldout,
                self.batch_size,
                self.n_rollouts,
                self.steps,
                self.seeds,
            )
            < 1
        ):
            raise ValueError("sizes, steps and seeds must be >= 1")


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
    for reward, acc in arms:
        name = reward if acc is None else f"self_verification/acc={acc:g}"
        runs, ra = [], []
        kinds[name] = []
        for s in range(config.seeds):
            out, _ = _shared_run(
                config.task,
                n_questions=config.n_questions,
                n_heldout=config.n_heldout,
                reward=reward,
                grpo=grpo,
                steps=config.steps,
                seed=config.seed + 1000 * s,
                verifier_accuracy=0.9 if acc is None else float(acc),
            )
            h = out["eval/heldout/accuracy"]
            runs.append(h)
            ra.append(out["reward_accuracy"])
            kinds[name].append(classify_curve(h, rise=config.rise, decline=config.decline))
        traj[f"{name}/heldout_accuracy"] = np.stack(runs)
        traj[f"{name}/reward_accuracy"] = np.stack(ra)
        finals[name] = float(np.mean([_tail_mean(h) for h in runs]))
    sv = [n for n in kinds if n.startswith("self_verification")]
    shares = {n: float(np.mean([k == "rise only" for k in kinds[n]])) for n in sv}
    holds = _verdict_from_shares(shares)
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
    )
)
