r"""Model Collapse Step against GT Gain over a ladder of priors on the real tiny LM.

Claim (the paper, Table 2): the step at which majority-vote training collapses ranks models the way the gain of
ground-truth training does -- a strong positive correlation, so the label-free MCS can stand in for GT Gain. Here
the "models" are tiny Qwen3 priors pretrained to different greedy accuracies (the prior's strength). Each prior
gets majority-vote runs (MCS, both rules) and ground-truth runs (GT Gain at a fixed budget), 3 seeds each, and the
Spearman correlation of MCS with GT Gain -- raw and normalised by headroom -- is read with a bootstrap interval.

Which reading the claim needs: the paper's models sit far below the ceiling (AIME24 accuracy of a few to 20%), so
its raw GT Gain is not bounded by headroom. The tiny priors span 0.3-0.9 greedy accuracy, where the raw gain of a
strong prior is capped by the little it has left to gain: raw gain then measures headroom, not trainability.
The gain normalised by headroom, :math:`g / (1 - A_0)`, is the share of the remaining headroom that ground-truth
training closes, the reading that transfers the paper's claim to a ladder near the ceiling; the verdict is read
on it, and the raw reading is reported beside it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from empirical.lab.registry import Experiment, register
from empirical.lab.runs import (
    WORKERS_HELP,
    LabRuns,
    ensure_runs,
    eval_series,
    load_runs,
    mean_se,
    metric_series,
)
from sim.configs import with_help
from sim.results import SimResult, Verdict

__all__ = [
    "PriorLadderRealConfig",
    "prior_ladder_real",
    "collapse_steps",
    "spearman",
    "bootstrap_spearman",
    "ladder_verdict",
]

RULES = ("threshold", "peak")
READINGS = ("raw", "normalised")


@dataclass(frozen=True)
class PriorLadderRealConfig(LabRuns):
    """Majority-vote and ground-truth GRPO on each of ``pretrain_accuracies``' priors, ``seeds`` seeds each.

    Chosen for the compute budget (the full run <= 25 min on 2 idle cores, the priors' pretraining included).
    Measured 2026-12-01 on the 2 shared cores: a GRPO step of 64 rollouts takes 0.05-0.07 s without the KL
    pass (about twice that with it; this experiment reads no KL, so ``log_kl`` is off), an exact eval of 1000
    held-out questions 0.8 s, run setup 2-3 s; the priors stop at 205 / 230 / 265 / 300 / 415 pretraining steps
    (targets 0.3 / 0.5 / 0.7 / 0.8 / 0.9) at 0.1-0.17 s a step. So: 15 majority-vote runs of 800 steps (57-70 s
    each, 17 evals) + 15 ground-truth runs of 250 steps (20-25 s each) = 19-24 min of one-core run time, on
    ``workers = 2`` processes 10-12 min, after the 4 new priors are pretrained one at a time (2-3 min; the 0.7
    prior is the lab's, usually cached): 12-15 min in all (``workers = 1``: 22-27 min). No probes (not read
    here). The horizon is 800 rather than the paper's 600 because at 600 the strongest prior had not reached
    the threshold (below).

    lr 3e-4, because the threshold rule needs a policy that becomes nearly deterministic: at the lab's lower
    learning rates (<= 2e-4, 64 rollouts a step) the smoothed reward accuracy of the 0.7 prior bottoms out at
    0.07-0.17 within 600 steps, since samples off the majority answer earn 0 from both rewards and so count as
    agreements. One seed each at 3e-4 (pilot runs): the 0.3 prior crossed 0.01 at step 352, the 0.7 prior at
    305, the 0.9 prior not within 600 (minimum 0.037): the horizon censors the strongest priors at the top
    of the ranking, where a later collapse belongs. Held-out accuracy falls from the first 100 steps on every
    prior at this lr; the ground-truth run lifts the 0.7 prior from 0.533 to 0.641 in its 250 steps.

    Attributes
    ----------
    pretrain_accuracies : the ladder: the greedy accuracy on held-out sums at which each prior's pretraining
        stops (a measured stopping point gives the same prior strength on every CPU; a step count would not).
        Applies to ``model='tiny'``; with a model folder every rung is that one prior (the ladder is degenerate
        and the verdict says so). :class:`LabRuns`' single ``pretrain_accuracy`` is not read here
    pretrain_steps : pretraining budget of each prior (a target not reached by then stops here: say so)
    lr : learning rate of both rewards (constant)
    steps : majority-vote horizon: a run that does not collapse by then is censored at ``steps``
    gt_steps : ground-truth budget of GT Gain (250 = one epoch of the 2000 training questions at 8 per step,
        as the paper's GT Gain is one epoch)
    n_train : training questions (the preset's 2000)
    threshold : the threshold rule's reward-accuracy level (the paper's MCS: first step below 0.01)
    smoothing : trailing-mean window of reward accuracy before either rule; only full windows are read
        (:func:`collapse_steps`), so no single batch can fire a rule
    n_boot : bootstrap resamples (priors, then seeds within each) of the Spearman interval
    strong : a Spearman correlation at least this large counts as the paper's "strong positive"
    workers : runs trained at a time, each in its own one-thread process (:func:`ensure_runs`)
    """

    pretrain_accuracies: tuple[float, ...] = with_help(
        (0.3, 0.5, 0.7, 0.8, 0.9),
        "the ladder: greedy accuracy at which each prior's pretraining stops",
    )
    pretrain_steps: int = with_help(1000, "pretraining budget of each prior (steps)")
    lr: float = with_help(3e-4, "learning rate of both rewards")
    steps: int = with_help(
        800, "majority-vote horizon (runs that do not collapse are censored here)"
    )
    gt_steps: int = with_help(
        250, "ground-truth budget of GT Gain (250 = one epoch of 2000 questions)"
    )
    n_train: int = with_help(2000, "training questions")
    eval_every: int = with_help(50, "steps between held-out evals (must divide steps and gt_steps)")
    probe_every: int = with_help(0, "steps between exact probes (0 = none: not read here)")
    threshold: float = with_help(0.01, "threshold rule: reward accuracy below this (paper: 0.01)")
    smoothing: int = with_help(
        25, "trailing-mean window (steps) of reward accuracy before either rule"
    )
    n_boot: int = with_help(2000, "bootstrap resamples of the Spearman interval")
    strong: float = with_help(0.6, "Spearman counted as a strong positive correlation")
    workers: int = with_help(2, WORKERS_HELP)

    def __post_init__(self) -> None:
        super().__post_init__()
        acc = self.pretrain_accuracies
        if len(acc) < 2 or any(not 0 < a <= 1 for a in acc) or len(set(acc)) != len(acc):
            raise ValueError(f"pretrain_accuracies: need >= 2 distinct values in (0, 1], got {acc}")
        for name in ("pretrain_steps", "gt_steps", "n_train", "smoothing", "n_boot"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {v!r}")
        if self.steps % self.eval_every or self.gt_steps % self.eval_every:
            raise ValueError(
                f"eval_every: must divide steps={self.steps} and gt_steps={self.gt_steps} (the last eval is "
                f"the budget's), got {self.eval_every}"
            )
        if not self.lr > 0:
            raise ValueError(f"lr: must be > 0, got {self.lr}")
        if not 0 < self.threshold < 1 or not -1 < self.strong <= 1:
            raise ValueError(
                f"threshold, strong: need (0, 1) and (-1, 1], got {self.threshold}, {self.strong}"
            )


def collapse_steps(
    steps: np.ndarray,
    values: np.ndarray,
    *,
    threshold: float = 0.01,
    smoothing: int = 25,
    min_decline: float = 0.05,
    patience: int = 3,
    noise_sigmas: float | None = None,
) -> dict[str, int | None]:
    r"""Model Collapse Step of a reward-accuracy series ``(S,)`` by both rules, read on full windows only.

    The series is smoothed by a trailing mean over ``smoothing`` steps and only the entries whose window is
    full (index ``>= smoothing - 1``) are kept: :func:`sharpen.metrics.model_collapse_step`'s own smoothing
    uses shorter windows at the start, so its first entry is one batch, and the peak rule's running maximum
    then starts at a single lucky batch. On the kept entries :math:`\bar r_t`:

    * ``threshold``: the first :math:`t` with :math:`\bar r_t <` ``threshold`` (the paper's MCS);
    * ``peak``: the step of the running maximum after which ``patience`` consecutive entries lie at least
      :math:`D = \max(\texttt{min\_decline}, k\,\hat\sigma)` below it, :math:`\hat\sigma` =
      :func:`sharpen.metrics.step_noise` of the raw series over ``smoothing`` (the noise of one full window;
      :math:`k` = ``noise_sigmas``, None or 0 = the plain rule), as the noise-aware rule of
      :func:`~sharpen.metrics.model_collapse_step` computes it.

    None where a rule does not fire (or fewer than ``smoothing`` entries exist).
    """
    from sharpen.metrics import model_collapse_step, step_noise, trailing_mean

    steps = np.asarray(steps, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    if steps.shape != values.shape or values.ndim != 1:
        raise ValueError(f"steps, values: need equal 1-D shapes, got {steps.shape}, {values.shape}")
    if values.size < smoothing:
        return {"threshold": None, "peak": None}
    kept = trailing_mean(values, smoothing)[smoothing - 1 :]
    at = steps[smoothing - 1 :]
    decline = min_decline
    if noise_sigmas:
        noise = step_noise(values, smoothing)
        decline = max(min_decline, noise_sigmas * noise) if math.isfinite(noise) else min_decline
    thr = model_collapse_step(kept, "threshold", steps=at, threshold=threshold)
    pk = model_collapse_step(kept, "peak", steps=at, min_decline=decline, patience=patience)
    return {
        "threshold": None if thr is None else int(thr.step),
        "peak": None if pk is None else int(pk.step),
    }


def spearman(x, y) -> float:
    """Spearman's rank correlation of two equal-length vectors (ties: average ranks); NaN when either is
    constant or has fewer than 2 entries."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(spearmanr(x, y).statistic)


def bootstrap_spearman(
    mcs: np.ndarray, gain: np.ndarray, rng: np.random.Generator, n_boot: int, level: float = 0.95
) -> dict[str, float]:
    r"""Spearman of the per-prior means of ``mcs`` ``(P, S)`` and ``gain`` ``(P, S')``, with a percentile
    bootstrap interval.

    Each resample draws ``P`` priors with replacement, then, within each drawn prior, its MCS seeds and its GT
    seeds with replacement (the two rewards' runs are independent), and takes the Spearman correlation of the
    resampled means. Resamples whose means are constant in either variable have no correlation and are left
    out (``n_valid`` counts the rest). NaN entries of ``gain`` are ignored in the means.
    """
    mcs, gain = np.atleast_2d(np.asarray(mcs, float)), np.atleast_2d(np.asarray(gain, float))
    p = mcs.shape[0]
    if gain.shape[0] != p:
        raise ValueError(f"mcs, gain: need one row per prior, got {mcs.shape}, {gain.shape}")
    with np.errstate(all="ignore"):
        rho = spearman(mcs.mean(axis=1), np.nanmean(gain, axis=1))
    boot = []
    for _ in range(n_boot):
        idx = rng.integers(0, p, p)
        m = mcs[idx[:, None], rng.integers(0, mcs.shape[1], (p, mcs.shape[1]))].mean(axis=1)
        with np.errstate(all="ignore"):
            g = np.nanmean(
                gain[idx[:, None], rng.integers(0, gain.shape[1], (p, gain.shape[1]))], axis=1
            )
        r = spearman(m, g) if np.isfinite(g).all() else math.nan
        if math.isfinite(r):
            boot.append(r)
    lo, hi = (
        (float(np.quantile(boot, (1 - level) / 2)), float(np.quantile(boot, (1 + level) / 2)))
        if boot
        else (math.nan, math.nan)
    )
    return {"rho": rho, "low": lo, "high": hi, "n_valid": len(boot)}


def ladder_verdict(corr: dict[str, float], strong: float) -> bool | None:
    """The paper's "strong positive correlation" read from :func:`bootstrap_spearman`'s ``corr``: True when
    ``rho >= strong`` and the interval's ``low > 0``; False when ``rho <= 0`` or the interval's ``high < strong``
    (a strong correlation is ruled out); None otherwise, and when ``rho`` is undefined (NaN).

    >>> ladder_verdict({"rho": 0.9, "low": 0.3, "high": 1.0}, 0.6), ladder_verdict({"rho": -0.8, "low": -1.0,
    ...     "high": 0.2}, 0.6), ladder_verdict({"rho": 0.7, "low": -0.5, "high": 1.0}, 0.6)
    (True, False, None)
    """
    rho, low, high = corr["rho"], corr["low"], corr["high"]
    if not math.isfinite(rho):
        return None
    if rho >= strong and low > 0:
        return True
    if rho <= 0 or high < strong:
        return False
    return None


def _prior_info(run) -> dict:
    """What pretraining ran for this run's prior (``pretrain.json`` in its model folder; empty if absent)."""
    path = Path(str(run.config.get("model_path", ""))) / "pretrain.json"
    if not path.is_file():
        return {}
    info = json.loads(path.read_text(encoding="utf-8"))
    checks = info.get("checks") or []
    return {"pretrain_steps_run": info.get("steps_run"),
            "pretrain_greedy_accuracy": float(checks[-1][1]) if checks else None}  # fmt: skip


def prior_ladder_real(config: PriorLadderRealConfig = PriorLadderRealConfig()) -> SimResult:
    r"""Per prior: MCS of its majority-vote runs (both rules), GT Gain of its ground-truth runs; Spearman of the
    two over the ladder.

    * **MCS** (:func:`collapse_steps` on the batch reward accuracy, ``smoothing``-step full windows): the
      threshold rule (reward accuracy < ``threshold``, the paper's) and the noise-aware peak rule
      (:data:`sharpen.collapse.NOISE_SIGMAS`). A run on which a rule does not fire within ``steps`` is
      **censored**: its MCS enters as ``steps`` (a lower bound; ranks then tie at the top), and the censored
      runs are counted.
    * **GT Gain**: held-out exact accuracy of the ground-truth run at ``gt_steps`` minus at step 0
      (:func:`sharpen.metrics.gt_gain`), and normalised by headroom, :math:`g / (1 - A_0)` with :math:`A_0`
      the prior's step-0 exact accuracy.
    * **Spearman** of the per-prior seed means (:func:`bootstrap_spearman`: 95% percentile interval over
      priors and seeds) for each rule and reading, and over the per-seed pairs (seed ``s``'s MCS with seed
      ``s``'s gain).

    Verdict (threshold rule, normalised gain): reproduced when the Spearman correlation is at least ``strong``
    and its interval excludes 0; not reproduced when it is at most 0 or its interval lies below ``strong``;
    partly otherwise (also when it is undefined, e.g. every run censored, or the ladder is degenerate).
    """
    from sharpen.collapse import NOISE_SIGMAS
    from sharpen.metrics import gt_gain, trailing_mean

    cfg = config
    common = dict(
        n_train=cfg.n_train, pretrain_steps=cfg.pretrain_steps, log_kl=False, checkpoint_every=0
    )
    mv_cfgs = [cfg.train_config("majority_voting", cfg.lr, s, pretrain_accuracy=a, steps=cfg.steps, **common)
               for a in cfg.pretrain_accuracies for s in range(cfg.seeds)]  # fmt: skip
    gt_cfgs = [cfg.train_config("ground_truth", cfg.lr, s, pretrain_accuracy=a, steps=cfg.gt_steps, **common)
               for a in cfg.pretrain_accuracies for s in range(cfg.seeds)]  # fmt: skip
    runs = load_runs(ensure_runs(mv_cfgs + gt_cfgs, cfg.runs_dir, workers=cfg.workers))
    mv, gt = runs[: len(mv_cfgs)], runs[len(mv_cfgs) :]
    n_p, n_s = len(cfg.pretrain_accuracies), cfg.seeds
    mcs = {r: np.zeros((n_p, n_s)) for r in RULES}
    censored = {r: np.zeros((n_p, n_s), dtype=bool) for r in RULES}
    gains = {k: np.zeros((n_p, n_s)) for k in READINGS}
    traj: dict[str, np.ndarray] = {}
    rows = []
    for i, acc in enumerate(cfg.pretrain_accuracies):
        ra_runs, mv_acc, gt_acc, min_ra, maj = [], [], [], [], []
        for s in range(n_s):
            run = mv[i * n_s + s]
            st, ra = metric_series(run, "reward_accuracy")
            found = collapse_steps(st, ra, threshold=cfg.threshold, smoothing=cfg.smoothing,
                                   noise_sigmas=NOISE_SIGMAS)  # fmt: skip
            for rule in RULES:
                censored[rule][i, s] = found[rule] is None
                mcs[rule][i, s] = cfg.steps if found[rule] is None else found[rule]
            smooth = trailing_mean(ra, cfg.smoothing)
            ra_runs.append(smooth)
            min_ra.append(
                float(smooth[cfg.smoothing - 1 :].min())
                if smooth.size >= cfg.smoothing
                else math.nan
            )
            maj.append(float(metric_series(run, "majority_ratio")[1][-cfg.smoothing :].mean()))
            mv_steps, mv_curve, _ = eval_series(run)
            mv_acc.append(mv_curve)
            g_steps, g_curve, g_se = eval_series(gt[i * n_s + s])
            gt_acc.append(g_curve)
            a0 = float(g_curve[0])
            gains["raw"][i, s] = gt_gain(a0, float(g_curve[-1]))
            gains["normalised"][i, s] = gains["raw"][i, s] / (1 - a0) if a0 < 1 else math.nan
        traj["step"] = st.astype(float)
        traj["mv_eval_step"], traj["gt_eval_step"] = mv_steps.astype(float), g_steps.astype(float)
        traj[f"prior{acc:g}/reward_accuracy"] = np.stack(ra_runs)
        traj[f"prior{acc:g}/mv_exact_accuracy"] = np.stack(mv_acc)
        traj[f"prior{acc:g}/gt_exact_accuracy"] = np.stack(gt_acc)
        initial = float(np.mean([c[0] for c in gt_acc]))
        row = {"pretrain_accuracy": float(acc), **_prior_info(gt[i * n_s]), "initial_accuracy": initial,
               "initial_accuracy_se": float(g_se[0]), "headroom": 1 - initial,
               "min_smoothed_reward_accuracy": min_ra, "final_majority_ratio": maj,
               "mv_final_accuracy": float(np.mean([c[-1] for c in mv_acc])),
               "mv_peak_eval_step": int(mv_steps[int(np.argmax(np.mean(mv_acc, axis=0)))]),
               "gt_final_accuracy": float(np.mean([c[-1] for c in gt_acc]))}  # fmt: skip
        for rule in RULES:
            row[f"mcs_{rule}_runs"] = [int(x) for x in mcs[rule][i]]
            row[f"mcs_{rule}_censored"] = [bool(x) for x in censored[rule][i]]
            row[f"mcs_{rule}"] = float(mcs[rule][i].mean())
        for k in READINGS:
            m, se = mean_se(gains[k][i])
            row[f"gt_gain_{k}_runs"] = [float(x) for x in gains[k][i]]
            row[f"gt_gain_{k}"], row[f"gt_gain_{k}_se"] = float(m), float(se)
        rows.append(row)
    rng = np.random.default_rng(cfg.seed)
    corr = {}
    for rule in RULES:
        for k in READINGS:
            c = bootstrap_spearman(mcs[rule], gains[k], rng, cfg.n_boot)
            c["rho_seed_pairs"] = spearman(mcs[rule].ravel(), gains[k].ravel())
            corr[f"{rule}/{k}"] = c
    n_cens = {rule: int(censored[rule].sum()) for rule in RULES}
    degenerate = cfg.model != "tiny"
    holds = None if degenerate else ladder_verdict(corr["threshold/normalised"], cfg.strong)

    def pretrained(r: dict) -> str:
        if r.get("pretrain_steps_run") is None:
            return ""
        short = r["pretrain_greedy_accuracy"] < r["pretrain_accuracy"]
        return f", {r['pretrain_steps_run']} pretraining steps" + (
            " (budget hit, target missed)" if short else ""
        )

    per_prior = "; ".join(
        f"{r['pretrain_accuracy']:g} (A0 {r['initial_accuracy']:.3f}{pretrained(r)}): MCS {r['mcs_threshold']:.0f} / "
        f"{r['mcs_peak']:.0f} ({sum(r['mcs_threshold_censored'])} / {sum(r['mcs_peak_censored'])} of {n_s} "
        f"censored), GT Gain {r['gt_gain_raw']:+.3f}+-{r['gt_gain_raw_se']:.3f} (normalised "
        f"{r['gt_gain_normalised']:+.2f})"
        for r in rows
    )
    corr_text = "; ".join(
        f"{key.replace('/', ' rule, ')} gain "
        + (
            f"{c['rho']:+.2f} (95% CI {c['low']:+.2f}..{c['high']:+.2f}; per-seed pairs "
            f"{c['rho_seed_pairs']:+.2f})"
            if math.isfinite(c["rho"])
            else "undefined (MCS or gain equal on every prior)"
        )
        for key, c in corr.items()
    )
    summary = (
        ("The model is a fixed folder, so every rung is the same prior: the ladder is degenerate. "
         if degenerate else "")
        + f"Per prior (greedy-accuracy target, step-0 exact accuracy A0): MCS threshold / peak rule, GT Gain at "
        f"{cfg.gt_steps} steps: {per_prior}. Spearman(MCS, GT Gain) over {n_p} priors: {corr_text}. Censored at "
        f"{cfg.steps} steps (entered as {cfg.steps}): {n_cens['threshold']} of {n_p * n_s} runs by the threshold "
        f"rule (reward accuracy < {cfg.threshold:g}), {n_cens['peak']} by the peak rule ({cfg.smoothing}-step "
        f"full windows, {cfg.seeds} seeds, lr {cfg.lr:g}). Verdict on the threshold rule with the normalised gain "
        f"(the paper: strong positive, here >= {cfg.strong:g} with the interval above 0)."
    )  # fmt: skip
    numbers = {"rows": rows, "spearman": corr, "censored": n_cens, "runs_per_rule": n_p * n_s,
               "degenerate_ladder": degenerate}  # fmt: skip
    for rule in RULES:
        traj[f"mcs_{rule}_seeds"] = mcs[rule]
    for k in READINGS:
        traj[f"gt_gain_{k}_seeds"] = gains[k]
    traj["pretrain_accuracy"] = np.array(cfg.pretrain_accuracies, dtype=float)
    return SimResult(
        "prior_ladder_real", asdict(cfg), traj, Verdict("exploration", holds, summary, numbers)
    )


def draw(res: SimResult, fig) -> None:
    """Left, middle: MCS (seed means, both rules; open markers: a censored seed) against raw and normalised GT
    Gain, each prior labelled by its accuracy target; right: smoothed reward accuracy per prior (seed mean)."""
    from sim.plots import mean_line

    t, nb = res.trajectories, res.verdict.numbers
    ax1, ax2, ax3 = fig.subplots(1, 3)
    rows = nb["rows"]
    for ax, k in ((ax1, "raw"), (ax2, "normalised")):
        g = np.array([r[f"gt_gain_{k}"] for r in rows])
        ge = np.array([r[f"gt_gain_{k}_se"] for r in rows])
        for rule, m in (("threshold", "o"), ("peak", "s")):
            y = np.array([r[f"mcs_{rule}"] for r in rows])
            cens = np.array([any(r[f"mcs_{rule}_censored"]) for r in rows])
            c = nb["spearman"][f"{rule}/{k}"]
            line = ax.errorbar(g, y, xerr=np.nan_to_num(ge), fmt=m, ms=5, capsize=2,
                               label=f"{rule} rule (rho {c['rho']:+.2f})")  # fmt: skip
            ax.scatter(g[cens], y[cens], s=80, facecolors="none", edgecolors=line[0].get_color())
        for r, x in zip(rows, g, strict=True):
            ax.annotate(f"{r['pretrain_accuracy']:g}", (x, r["mcs_threshold"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))  # fmt: skip
        ax.set(xlabel=f"GT Gain ({k})", ylabel="Model Collapse Step",
               title=f"MCS vs {k} GT Gain (ringed: a seed censored)")  # fmt: skip
        ax.legend(fontsize=7)
    for r in rows:
        a = r["pretrain_accuracy"]
        mean_line(ax3, t["step"], t[f"prior{a:g}/reward_accuracy"], f"prior {a:g}")
    ax3.axhline(res.config["threshold"], color="k", ls=":", lw=1)
    ax3.set(xlabel="step", ylabel="reward accuracy (trailing mean)", yscale="log",
            title="Majority-vote runs")  # fmt: skip
    ax3.legend(fontsize=7)


register(
    Experiment(
        "prior_ladder_real",
        "exploration",
        PriorLadderRealConfig,
        prior_ladder_real,
        {
            "pretrain_accuracies": (0.5, 0.7),
            "seeds": 2,
            "steps": 16,
            "gt_steps": 8,
            "eval_every": 8,
            "n_heldout": 64,
            "n_train": 64,
            "rollout_batch_size": 32,
            "smoothing": 4,
            "n_boot": 50,
            "workers": 1,
        },  # fmt: skip
        "MCS (both rules) vs GT Gain (raw, normalised) over >= 5 priors; Spearman with a bootstrap CI",
        plot=draw,
        figsize=(15.0, 4.2),
    )
)
