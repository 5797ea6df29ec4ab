r"""Failure modes of the five intrinsic rewards on the real tiny LM, on the reasoning task (sums with a scratchpad).

Claim (the paper, Fig. 3): each intrinsic reward fails in its own way. The probability reward collapses in length
(a product of token probabilities favours short responses); token- and trajectory-level entropy collapse into
repetition (repeating a unit lowers the mean token entropy and raises the mean log-probability); self-certainty
and majority voting degrade progressively (held-out accuracy declines slowly, self-certainty the slowest).

The task is :mod:`empirical.reasoning` (preset ``tiny-reason-ttrl``): ``q: 47+385=`` ->
``7+5+0=12 4+8+1=13 0+3+1=04 a:432``, worked solutions of about 33 tokens that may shrink, grow (up to the
preset's 64-token cap) or repeat. Every step logs the training batch's failure-mode metrics
(:mod:`empirical.behaviour`): response length, repeated 4-gram share, longest repeated run, parse rate, distinct
answers, KL to the initial policy; every held-out eval samples one response per held-out question.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from empirical.lab.experiments.rise_then_fall_real import classify_curve, sweep_configs
from empirical.lab.registry import Experiment, register
from empirical.lab.runs import (
    WORKERS_HELP,
    LabRuns,
    ensure_runs,
    heldout_accuracy,
    load_runs,
    mean_se,
    metric_series,
    preset_fields,
)
from sim.configs import with_help
from sim.results import SimResult, Verdict

__all__ = [
    "FailureModesRealConfig",
    "failure_modes_real",
    "PAPER_MODES",
    "reasoning_fields",
    "window_change",
    "onset_step",
    "hinge_onset",
    "gradual_fall",
    "beyond",
    "read_setting",
    "modes_seen",
    "three_way",
    "slowest_first",
]

PAPER_MODES = {
    "probability": "length",
    "token_entropy": "repetition",
    "trajectory_entropy": "repetition",
    "self_certainty": "progressive",
    "majority_voting": "progressive",
}
"""The failure mode the paper gives each intrinsic reward (registry names)."""

MODE_WORDS = {
    "length": "length collapse",
    "repetition": "repetition collapse",
    "progressive": "progressive degradation",
}
REPEAT = "behaviour/repeat_4gram"
RUN = "behaviour/longest_repeat_mean"
LENGTH = "behaviour/length_mean"
SERIES = {  # name in this experiment -> the training-batch metric logged every step
    "length": LENGTH,
    "repeat_4gram": REPEAT,
    "longest_repeat": RUN,
    "parse_rate": "behaviour/parse_rate",
    "distinct_answers": "behaviour/distinct_answers",
    "train_accuracy": "ground_truth_ratio",
    "reward": "reward_mean",
}


def reasoning_fields(name: str = "tiny-reason-ttrl") -> dict:
    """The fields of preset ``name`` that make a run one of the reasoning task (task, prior corpus, prior
    budget, length cap), as ``changes`` for :meth:`LabRuns.train_config`."""
    return preset_fields(name, ("task", "pretrain_corpus", "pretrain_steps", "max_new_tokens"))


@dataclass(frozen=True)
class FailureModesRealConfig(LabRuns):
    r"""Each reward of ``rewards`` at each of ``lrs``, ``seeds`` seeds, on the reasoning task; ground truth at each lr.

    Budget (the full run <= 25 min on 2 idle cores): measured 2026-12-02, a step of 64 rollouts of ~33 tokens
    with the KL pass takes 0.35-0.45 s on an idle core (0.8-1.0 s at 128 rollouts), a held-out eval of 1000
    questions (one sample each) 2 s, a run's start 3 s; a response grown to the 64-token cap about doubles a
    step. 5 rewards x 2 lrs x 3 seeds + 2 ground-truth runs = 32 runs of 120 steps at 64 rollouts (8
    questions x 8) with 9 evals: 32 x (120 x 0.45 + 9 x 2 + 3) s = 40 min of one core, trained two at a time
    (``workers``, one one-thread process per core): about 20 min, 25 with some responses at the cap.
    (One at a time it would fit only ~60 steps.)

    The learning rates, from one-seed pilots of 100-150 steps (2026-12-02, held-out accuracy of the prior
    0.54): at 3e-4 every intrinsic reward took held-out accuracy to <= 0.04 within 10 steps (probability then
    shortened its responses 33.5 -> ~20 tokens from step ~40; token entropy and self-certainty raised the
    repeated 4-gram share 0.05 -> 0.26 / 0.36; majority voting to 0.13) while ground truth went 0.54 -> 0.60;
    at 1e-4 majority voting fell gradually (0.54 -> 0.02 over 150 steps), self-certainty fast (0.12 at step
    15), token entropy with repetition (0.05 -> 0.22), probability rose to 0.62 and fell to 0.42 without
    shortening. 1e-4 and 3e-4 therefore span a slow and a fast regime; below 1e-4 the budget's 120 steps
    would show little.

    Verdict rules (margins set from the task's structure, not from the outcome of the full runs; ``S`` below:
    standard error over seeds, with one seed the standard error of the two window means from their steps'
    spread):

    * **length collapse** at an lr: the training batch's mean response length over the last ``smoothing``
      steps is below that of the first ``smoothing`` by more than ``n_se`` S and by more than
      ``min_length_drop`` of the first window's length, and the ground-truth control at that lr does not fall
      so (:func:`window_change`);
    * **repetition collapse**: the repeated 4-gram share rises by more than ``n_se`` S and ``min_repeat_rise``,
      or the mean longest repeated run by more than ``n_se`` S and ``min_run_rise`` tokens (half a 9-token
      column step: a worked solution's own runs, ``=00`` or ``+0+0``, are 2-3 tokens, one looped step is
      18 or more); ground truth not;
    * **progressive degradation**: held-out accuracy falls (:func:`classify_curve`, ``n_se`` S from its
      seed-mean peak to the end; the ground-truth control does not fall), gradually (:func:`gradual_fall`: no
      interval between evals holds more than ``max_drop_share`` of the fall), without length or repetition
      collapse.

    A reward's claim holds when its paper mode appears at every lr, partly at some, not at all otherwise; the
    experiment holds when every reward's does, is not reproduced when none does, partly otherwise. The paper's
    "self-certainty the slowest" is reported per lr (:func:`slowest_first`), not judged.

    Onset (the step each begins; :func:`onset_step`, per seed, the median reported): the per-step series is
    averaged over full ``smoothing``-step windows; a departure from the first window in the mode's direction
    is confirmed where it exceeds the mode's margin (length: ``min_length_drop`` of the start, repetition:
    ``min_repeat_rise`` of the 4-gram share, degradation: ``min_accuracy_drop`` of the training batch's
    accuracy) and :data:`sharpen.collapse.NOISE_SIGMAS` step-to-step noise deviations for 3 consecutive
    windows; the onset is the change point of a flat-then-linear least-squares fit to the raw series up to
    there (:func:`hinge_onset`). No single batch can confirm a departure.

    Attributes
    ----------
    rewards : the intrinsic rewards (registry names; :data:`PAPER_MODES` holds their paper modes)
    lrs : learning rates (every reward at each)
    reasoning_preset : the preset whose task, prior corpus, prior budget and length cap the runs take
    log_kl : log the k3 KL to the initial policy every step (one extra forward pass; a failure-mode metric)
    workers : runs trained at a time, each in its own one-thread process (:func:`ensure_runs`)
    smoothing : window (steps) of the start / end means and of the onset rule's trailing mean
    n_se : a change counts when it exceeds this many standard errors
    min_length_drop, min_repeat_rise, min_run_rise, min_accuracy_drop, max_drop_share : the margins above
    """

    rewards: tuple[str, ...] = with_help(tuple(PAPER_MODES), "intrinsic rewards (registry names)")
    lrs: tuple[float, ...] = with_help((1e-4, 3e-4), "learning rates")
    steps: int = with_help(120, "GRPO steps per run")
    eval_every: int = with_help(15, "steps between held-out evals")
    probe_every: int = with_help(0, "steps between probes (0 = none: not read here)")
    pretrain_accuracy: float = with_help(
        0.6, "the reasoning prior: greedy writes the whole gold solution for this share of checks"
    )
    reasoning_preset: str = with_help(
        "tiny-reason-ttrl", "preset of the task, prior and length cap"
    )
    log_kl: bool = with_help(True, "log the KL to the initial policy every step")
    workers: int = with_help(2, WORKERS_HELP)
    smoothing: int = with_help(20, "window (steps) of start/end means and of the onset rule")
    n_se: float = with_help(3.0, "standard errors a change must exceed")
    min_length_drop: float = with_help(0.2, "length collapse: relative drop of mean length")
    min_repeat_rise: float = with_help(
        0.1, "repetition collapse: rise of the repeated 4-gram share"
    )
    min_run_rise: float = with_help(
        4.5, "repetition collapse: rise of the mean longest repeated run (tokens; half a step)"
    )
    min_accuracy_drop: float = with_help(0.05, "degradation onset: drop of training accuracy")
    max_drop_share: float = with_help(
        0.5, "gradual: largest share of the fall in one eval interval"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        bad = [r for r in self.rewards if r not in PAPER_MODES]
        if not self.rewards or bad or len(set(self.rewards)) != len(self.rewards):
            raise ValueError(
                f"rewards: need distinct names among {', '.join(PAPER_MODES)}, got {self.rewards}"
            )
        if not self.lrs or any(not lr > 0 for lr in self.lrs):
            raise ValueError(f"lrs: need positive learning rates, got {self.lrs}")
        if isinstance(self.smoothing, bool) or not isinstance(self.smoothing, int):
            raise ValueError(f"smoothing: must be an integer, got {self.smoothing!r}")
        if not 1 <= self.smoothing <= self.steps // 2:
            raise ValueError(
                f"smoothing: must lie in 1..steps/2 = {self.steps // 2} (two disjoint windows), "
                f"got {self.smoothing}"
            )
        for name in (
            "n_se",
            "min_length_drop",
            "min_repeat_rise",
            "min_run_rise",
            "min_accuracy_drop",
        ):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if not 0 < self.max_drop_share <= 1:
            raise ValueError(f"max_drop_share: must lie in (0, 1], got {self.max_drop_share}")
        # an unknown preset fails here, naming the valid ones
        reasoning_fields(self.reasoning_preset)


def window_change(series: np.ndarray, window: int) -> dict:
    r"""Change of ``(seeds, S)`` per-step series from their first ``window`` steps to their last ``window``.

    Per seed :math:`\Delta_s = \bar x_{s,\mathrm{end}} - \bar x_{s,\mathrm{start}}`; returns the seed means of
    the start, the end and :math:`\Delta`, and the standard error of :math:`\Delta` over seeds -- with one seed,
    :math:`\sqrt{v_\mathrm{start}/w + v_\mathrm{end}/w}` from the steps' variances within the two windows
    (batch noise only, no training noise).
    """
    x = np.atleast_2d(np.asarray(series, dtype=np.float64))
    w = int(window)
    if not 1 <= w <= x.shape[1] // 2:
        raise ValueError(
            f"window: must lie in 1..{x.shape[1] // 2} for {x.shape[1]} steps, got {window}"
        )
    start, end = x[:, :w].mean(axis=1), x[:, -w:].mean(axis=1)
    change, se = mean_se(end - start)
    if x.shape[0] == 1:
        var = (x[0, :w].var(ddof=1) + x[0, -w:].var(ddof=1)) / w if w > 1 else math.nan
        se = math.sqrt(var)
    return {
        "start": float(start.mean()),
        "end": float(end.mean()),
        "change": float(change),
        "se": float(se),
    }


def beyond(change: dict, direction: int, margin: float, n_se: float) -> bool:
    """Whether a :func:`window_change` moved in ``direction`` (+1 up, -1 down) by more than ``margin`` and more
    than ``n_se`` standard errors (a NaN error counts as no evidence)."""
    d = direction * change["change"]
    return bool(math.isfinite(change["se"]) and d > margin and d > n_se * change["se"])


def onset_step(
    steps: np.ndarray,
    values: np.ndarray,
    direction: int,
    margin: float,
    smoothing: int,
    *,
    patience: int = 3,
    noise_sigmas: float | None = None,
) -> int | None:
    r"""The step a failure begins in one run's per-step series (a smoothed change-point rule).

    With :math:`s_j` the mean of the ``smoothing`` steps ending at step :math:`t_j` (full windows only, so the
    first entry already averages ``smoothing`` batches and no single batch can move the baseline) and
    :math:`d_j = \mathrm{direction}\,(s_j - s_0)` the departure from the first window in the failure's direction
    (``-1``: a fall, ``+1``: a rise), the departure is *confirmed* at the first :math:`j` that starts
    ``patience`` consecutive entries with :math:`d \ge D`, :math:`D = \max(\mathrm{margin},
    k\hat\sigma)` (:math:`\hat\sigma` = :func:`sharpen.metrics.step_noise` of the series at this smoothing,
    :math:`k` = ``noise_sigmas``, default :data:`sharpen.collapse.NOISE_SIGMAS`). To place the change, the raw
    series up to the end of the confirming windows is fitted by least squares with a hinge -- a constant level
    until :math:`\tau`, then a straight line from it -- and the onset is the best :math:`\tau` among the logged
    steps (:func:`hinge_onset`). None when no departure is confirmed.
    """
    from sharpen.collapse import NOISE_SIGMAS
    from sharpen.metrics import step_noise, trailing_mean

    x = np.asarray(values, dtype=np.float64)
    t = np.asarray(steps)
    w = int(smoothing)
    if x.size < w + patience - 1:
        return None
    s = trailing_mean(x, w)[w - 1 :]  # s[j]: mean of x[j .. j + w - 1], at step t[j + w - 1]
    d = direction * (s - s[0])
    noise = step_noise(x, w)
    k = NOISE_SIGMAS if noise_sigmas is None else noise_sigmas
    need = max(margin, k * noise) if math.isfinite(noise) else margin
    held = d >= need
    confirm = next((j for j in range(len(d) - patience + 1) if held[j : j + patience].all()), None)
    if confirm is None:
        return None
    upto = confirm + patience - 1 + w  # raw entries up to the last confirming window's end
    return hinge_onset(t[:upto], x[:upto])


def hinge_onset(steps: np.ndarray, values: np.ndarray) -> int:
    r"""The least-squares change point of a flat-then-linear fit: the step :math:`\tau` minimising
    :math:`\min_{a,b}\sum_i (x_i - a - b\,\max(0, t_i - \tau))^2` over the logged steps (the first on ties;
    the first step when the whole series is a line). ``(S,)`` steps and values, ``S >= 1``."""
    t = np.asarray(steps, dtype=np.float64)
    x = np.asarray(values, dtype=np.float64)
    best, best_sse = 0, math.inf
    for i, tau in enumerate(t):
        design = np.stack([np.ones_like(t), np.maximum(0.0, t - tau)], axis=1)  # (S, 2)
        coef, *_ = np.linalg.lstsq(design, x, rcond=None)
        sse = float(((x - design @ coef) ** 2).sum())
        if sse < best_sse * (1 - 1e-12):  # a later tau must be better beyond rounding
            best, best_sse = i, sse
    return int(t[best])


def gradual_fall(mean_curve: np.ndarray, peak_index: int, max_share: float) -> dict:
    """Whether the fall of a seed-mean held-out curve after its peak is spread out: the largest fall between
    two consecutive evals after ``peak_index`` is at most ``max_share`` of the whole fall (peak to end); and
    ``half_fall_index``, the first eval at or below the peak minus half the fall (None without a fall), which
    orders the rewards by how fast they degrade."""
    c = np.asarray(mean_curve, dtype=np.float64)
    total = float(c[peak_index] - c[-1])
    drops = -np.diff(c[peak_index:])
    largest = float(drops.max()) if drops.size else 0.0
    share = largest / total if total > 0 else math.nan
    half = np.nonzero(c[peak_index:] <= c[peak_index] - total / 2)[0] if total > 0 else []
    return {
        "largest_drop": largest,
        "share": share,
        "gradual": bool(total > 0 and share <= max_share),
        "half_fall_index": int(peak_index + half[0]) if len(half) else None,
    }


def _median(xs: list[int | None]) -> float | None:
    hits = [x for x in xs if x is not None]
    return float(np.median(hits)) if hits else None


def read_setting(cfg: FailureModesRealConfig, group: list, key: str, traj: dict) -> dict:
    """The numbers of one (reward, lr) from its runs ``group`` (one per seed): start/end window changes of
    length and repetition, the held-out curve's regime and gradualness, end-of-run parse rate, distinct answers
    and KL, what :func:`beyond` detects and each mode's onset per seed. Fills ``traj[key/...]``."""
    w = cfg.smoothing
    per = {name: [metric_series(r, m) for r in group] for name, m in SERIES.items()}
    traj["step"] = per["length"][0][0].astype(float)
    for name, ss in per.items():
        traj[f"{key}/{name}"] = np.stack([s[1] for s in ss])  # (seeds, steps)
    ev = [heldout_accuracy(r) for r in group]
    curves = np.stack([e[1] for e in ev])  # (seeds, evals)
    traj["eval_step"] = ev[0][0].astype(float)
    traj[f"{key}/heldout_accuracy"] = curves
    se_q = float(np.nanmean([e[2] for e in ev]))
    length, repeat, run_len = (window_change(traj[f"{key}/{n}"], w)
                               for n in ("length", "repeat_4gram", "longest_repeat"))  # fmt: skip
    fall = classify_curve(curves, cfg.n_se, se_q)
    mean = curves.mean(axis=0)
    grad = gradual_fall(mean, fall["peak_index"], cfg.max_drop_share)
    kl = [metric_series(r, "kl_to_initial")[1][-w:].mean() for r in group] if cfg.log_kl else []
    margins = {"length": cfg.min_length_drop * length["start"], "repetition": cfg.min_repeat_rise,
               "degradation": cfg.min_accuracy_drop}  # fmt: skip
    onset_of = {"length": ("length", -1), "repetition": ("repeat_4gram", +1),
                "degradation": ("train_accuracy", -1)}  # fmt: skip
    onsets = {mode: [onset_step(*per[name][k], sign, margins[mode], w) for k in range(len(group))]
              for mode, (name, sign) in onset_of.items()}  # fmt: skip
    return {
        "length": length,
        "repeat_4gram": repeat,
        "longest_repeat": run_len,
        "heldout": {**fall, "initial": float(mean[0]), "final": float(mean[-1]),
                    "peak": float(mean[fall["peak_index"]]), "peak_step": int(ev[0][0][fall["peak_index"]]),
                    "se_questions": se_q, **grad,
                    "half_fall_step": None if grad["half_fall_index"] is None else int(ev[0][0][grad["half_fall_index"]])},
        "parse_rate_end": float(traj[f"{key}/parse_rate"][:, -w:].mean()),
        "distinct_answers_end": float(traj[f"{key}/distinct_answers"][:, -w:].mean()),
        "kl_end": float(np.mean(kl)) if kl else None,
        "seeds": len(group),
        "detected": {
            "length": beyond(length, -1, margins["length"], cfg.n_se),
            "repetition": beyond(repeat, +1, cfg.min_repeat_rise, cfg.n_se)
            or beyond(run_len, +1, cfg.min_run_rise, cfg.n_se),
            "degradation": fall["regime"] in ("fall", "rise_then_fall"),
        },
        "onset_steps": onsets,
        "onset_median": {m: _median(v) for m, v in onsets.items()},
    }  # fmt: skip


def modes_seen(setting: dict, control: dict) -> dict[str, bool]:
    """The failure modes of one (reward, lr) against the ground-truth control at the same lr: a change the
    control shows too is not the reward's. ``progressive``: a gradual held-out fall without length or repetition
    collapse; ``abrupt_degradation``: a fall that is not gradual, without them."""
    d, g = setting["detected"], control["detected"]
    length = d["length"] and not g["length"]
    repetition = d["repetition"] and not g["repetition"]
    falls = d["degradation"] and not g["degradation"] and not length and not repetition
    gradual = setting["heldout"]["gradual"]
    return {"length": length, "repetition": repetition, "progressive": falls and gradual,
            "abrupt_degradation": falls and not gradual}  # fmt: skip


def three_way(values: list[bool | None]) -> bool | None:
    """True when every value is True, False when every one is False, None (partly) otherwise."""
    if all(v is True for v in values):
        return True
    return False if all(v is False for v in values) else None


def failure_modes_real(
    config: FailureModesRealConfig = FailureModesRealConfig(),
) -> SimResult:
    r"""Train every (reward, lr, seed) and the ground-truth control on the reasoning task; detect each failure
    mode from the logged series (the rules of :class:`FailureModesRealConfig`) and compare with the paper's."""
    cfg = config
    fields = {**reasoning_fields(cfg.reasoning_preset), "log_kl": cfg.log_kl}
    seeds = {r: cfg.seeds for r in cfg.rewards} | {"ground_truth": cfg.control_seeds}
    configs = {r: sweep_configs(cfg, r, cfg.lrs, n, **fields) for r, n in seeds.items()}
    folders = iter(
        ensure_runs([c for cs in configs.values() for c in cs], cfg.runs_dir, workers=cfg.workers)
    )
    traj: dict[str, np.ndarray] = {}
    settings: dict[str, dict] = {}
    for reward, cs in configs.items():
        runs = load_runs([next(folders) for _ in cs])  # lr-major: seeds[reward] runs per lr
        n = seeds[reward]
        for i, lr in enumerate(cfg.lrs):
            key = f"{reward}/lr{lr:g}"
            settings[key] = read_setting(cfg, runs[i * n : (i + 1) * n], key, traj)
    rows = {}
    for reward in cfg.rewards:
        per_lr = {}
        for lr in cfg.lrs:
            seen = modes_seen(settings[f"{reward}/lr{lr:g}"], settings[f"ground_truth/lr{lr:g}"])
            per_lr[f"{lr:g}"] = {"modes": [m for m, v in seen.items() if v] or ["none"],
                                 "paper_mode_seen": seen[PAPER_MODES[reward]]}  # fmt: skip
        share = float(np.mean([v["paper_mode_seen"] for v in per_lr.values()]))
        rows[reward] = {"paper_mode": PAPER_MODES[reward], "by_lr": per_lr, "share_of_lrs": share,
                        "holds": three_way([v["paper_mode_seen"] for v in per_lr.values()])}  # fmt: skip
    words = {True: "holds", False: "not reproduced", None: "partly"}
    by_mode = {
        mode: words[three_way([rows[r]["holds"] for r in cfg.rewards if PAPER_MODES[r] == mode])]
        for mode in MODE_WORDS
        if any(PAPER_MODES[r] == mode for r in cfg.rewards)
    }
    holds = three_way([r["holds"] for r in rows.values()])
    order = {f"{lr:g}": slowest_first(settings, cfg.rewards, lr) for lr in cfg.lrs}
    summary = _summary(cfg, settings, rows, by_mode, order)
    numbers = {"settings": settings, "rewards": rows, "by_mode": by_mode, "slowest_first": order}
    return SimResult(
        "failure_modes_real", asdict(cfg), traj, Verdict("exploration", holds, summary, numbers)
    )


def slowest_first(settings: dict, rewards, lr: float) -> list[str]:
    """The rewards at ``lr`` whose held-out accuracy fell by half its fall, slowest first (by the eval step
    of :func:`gradual_fall`'s ``half_fall_index``; ties in the given order); rewards without a fall last."""

    def step(r):
        s = settings[f"{r}/lr{lr:g}"]["heldout"]["half_fall_step"]
        return -math.inf if s is None else s

    return sorted(rewards, key=step, reverse=True)


def _summary(
    cfg: FailureModesRealConfig, settings: dict, rows: dict, by_mode: dict, order: dict
) -> str:
    """The verdict's sentence: per mode the word, then per reward and lr what was seen, with the numbers."""
    parts = []
    for reward, row in rows.items():
        bits = []
        for lr, v in row["by_lr"].items():
            s = settings[f"{reward}/lr{lr}"]
            h, ln, rp = s["heldout"], s["length"], s["repeat_4gram"]
            onset = s["onset_median"]
            bits.append(
                f"lr {lr}: {'+'.join(v['modes'])} (length {ln['start']:.1f}->{ln['end']:.1f}+-{ln['se']:.1f}, "
                f"4-gram repeats {rp['start']:.3f}->{rp['end']:.3f}, held-out {h['initial']:.3f}->{h['final']:.3f}, "
                f"onset length/repetition/degradation {onset['length']}/{onset['repetition']}/{onset['degradation']})"
            )
        parts.append(
            f"{reward} [paper: {MODE_WORDS.get(row['paper_mode'], '-')}] " + "; ".join(bits)
        )
    gt = "; ".join(
        f"lr {lr:g}: held-out {settings[f'ground_truth/lr{lr:g}']['heldout']['initial']:.3f}->"
        f"{settings[f'ground_truth/lr{lr:g}']['heldout']['final']:.3f}, length "
        f"{settings[f'ground_truth/lr{lr:g}']['length']['end']:.1f}"
        for lr in cfg.lrs
    )
    head = "; ".join(f"{MODE_WORDS[m]}: {w}" for m, w in by_mode.items())
    return (
        f"{head} ({cfg.seeds} seeds, {cfg.steps} steps at lr {', '.join(f'{x:g}' for x in cfg.lrs)}, "
        f"{cfg.rollout_batch_size} rollouts per step, held-out accuracy on {cfg.n_heldout} questions; a change "
        f"counts beyond {cfg.n_se:g} SE and its margin). "
        + ". ".join(parts)
        + f". Ground truth: {gt}. Slowest held-out fall first (paper: self-certainty the slowest): "
        + "; ".join(f"lr {lr}: {', '.join(rs)}" for lr, rs in order.items())
        + "."
    )


QUICK = {"seeds": 1, "steps": 8, "lrs": (1e-3,), "n_heldout": 64, "eval_every": 4, "smoothing": 3,
         "rollout_batch_size": 16}  # fmt: skip
"""The quick preset: every reward and the control, a few steps each (checks the mechanism, not the verdict)."""


def draw(res: SimResult, fig) -> None:
    """Three panels over steps, one line per reward (seed mean; solid: the largest lr, dashed: the smallest;
    ground truth black): the training batch's mean response length, its repeated 4-gram share (smoothed), and
    held-out accuracy."""
    from sharpen.metrics import trailing_mean
    from sim.plots import mean_line

    t, cfg = res.trajectories, res.config
    lrs = sorted(cfg["lrs"])
    names = [*cfg["rewards"], "ground_truth"]
    axes = fig.subplots(1, 3)
    w = cfg["smoothing"]
    for k, reward in enumerate(names):
        color = "k" if reward == "ground_truth" else f"C{k}"
        for lr, ls in ((lrs[-1], "-"), (lrs[0], "--")) if len(lrs) > 1 else ((lrs[0], "-"),):
            key = f"{reward}/lr{lr:g}"
            label = f"{reward} lr {lr:g}"
            for ax, name in zip(axes[:2], ("length", "repeat_4gram"), strict=True):
                smooth = np.stack([trailing_mean(row, w) for row in t[f"{key}/{name}"]])
                mean_line(ax, t["step"], smooth, label, color=color, ls=ls)
            mean_line(
                axes[2], t["eval_step"], t[f"{key}/heldout_accuracy"], label, color=color, ls=ls
            )
    axes[0].set(
        xlabel="step", ylabel="mean response length (tokens)", title="Length (training batch)"
    )
    axes[1].set(xlabel="step", ylabel="repeated 4-gram share", title="Repetition (training batch)")
    axes[2].set(xlabel="step", ylabel="held-out accuracy (avg@1)", title="Held-out accuracy")
    axes[2].legend(fontsize=5)


register(
    Experiment(
        "failure_modes_real",
        "exploration",
        FailureModesRealConfig,
        failure_modes_real,
        QUICK,
        "Failure mode of each intrinsic reward on the reasoning task: length, repetition, degradation",
        plot=draw,
        figsize=(15.0, 4.2),
    )
)
