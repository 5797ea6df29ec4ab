r"""Early prediction of the Model Collapse Step on the real tiny LM, from the first quarter of each run.

Claim (what ``sharpen fit`` offers): Theorem 1 fitted to the exact probes of the first 25% of a majority-vote
run predicts the step at which reward accuracy falls below 1% (the Model Collapse Step) within +-20%. The runs
are ``rise_then_fall_real``'s majority-vote runs (same configurations, so the same run folders are reused).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import special, stats

from empirical.lab.experiments.rise_then_fall_real import QUICK as RISE_QUICK
from empirical.lab.experiments.rise_then_fall_real import RiseThenFallRealConfig, sweep_configs
from empirical.lab.registry import Experiment, register
from empirical.lab.runs import ensure_runs, load_runs, metric_series, probe_trajectories
from sim.configs import with_help
from sim.results import SimResult, Verdict

__all__ = ["EarlyCollapseRealConfig", "early_collapse_real", "trend_prediction"]


@dataclass(frozen=True)
class EarlyCollapseRealConfig(RiseThenFallRealConfig):
    """``rise_then_fall_real``'s majority-vote sweep, read for early prediction.

    Attributes
    ----------
    fraction : share of the run the predictors may see
    threshold : the Model Collapse Step's reward-accuracy threshold (paper: 0.01)
    smoothing : trailing mean (steps) of reward accuracy before the threshold rule, so one noisy batch cannot
        fire it
    tolerance : relative error counted as a correct prediction
    n_boot : bootstrap resamples of the probe questions for Theorem 1's interval
    """

    fraction: float = with_help(0.25, "share of the run the predictors see")
    threshold: float = with_help(0.01, "reward-accuracy threshold of the Model Collapse Step")
    smoothing: int = with_help(10, "trailing-mean window (steps) before the threshold rule")
    tolerance: float = with_help(0.2, "relative error counted as correct")
    n_boot: int = with_help(100, "bootstrap resamples for Theorem 1's interval")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.fraction <= 1 or not 0 < self.threshold < 1:
            raise ValueError(
                f"fraction, threshold: need (0, 1], (0, 1), got {self.fraction}, {self.threshold}"
            )
        if self.probe_every < 1:
            raise ValueError(
                f"probe_every: the Theorem-1 predictor reads probes, need >= 1, got {self.probe_every}"
            )


def trend_prediction(steps: np.ndarray, values: np.ndarray, threshold: float, upto: float) -> dict:
    r"""Extrapolate :math:`\mathrm{logit}` of a metric linearly from steps ``<= upto`` to where it crosses
    ``threshold``; a 95% interval from the slope's confidence interval. None where the fitted slope is not
    negative (no crossing ahead)."""
    keep = steps <= upto
    x = steps[keep].astype(float)
    y = special.logit(np.clip(values[keep], 1e-3, 1 - 1e-3))
    if x.size < 3:
        return {"step": None, "low": None, "high": None}
    fit = stats.linregress(x, y)
    t = stats.t.ppf(0.975, x.size - 2)
    target = special.logit(threshold)

    def crossing(slope: float) -> float | None:
        if not slope < 0:
            return None
        return float(x.mean() + (target - (fit.intercept + fit.slope * x.mean())) / slope)

    mid = crossing(fit.slope)
    steep, shallow = crossing(fit.slope - t * fit.stderr), crossing(fit.slope + t * fit.stderr)
    return {"step": mid, "low": steep, "high": shallow if shallow is not None else math.inf}


def early_collapse_real(config: EarlyCollapseRealConfig = EarlyCollapseRealConfig()) -> SimResult:
    r"""Predict each majority-vote run's Model Collapse Step from its first ``fraction``; compare with the
    observed step.

    Observed: :func:`sharpen.metrics.model_collapse_step` (threshold rule) on reward accuracy smoothed over
    ``smoothing`` steps. Predictors, both seeing steps ``<= fraction * steps`` only:

    * **Theorem 1** (``sharpen fit``'s predictor, :func:`sharpen.collapse.predict_collapse`): the exact probe
      trajectories fitted, mapped to reward accuracy under A1; its interval from a bootstrap over probe questions.
    * **trend** (:func:`trend_prediction`): the smoothed reward accuracy's logit extrapolated linearly.

    Verdict: reproduced when a predictor is within ``tolerance`` on every run that collapsed; not reproduced
    when neither is within it on any; partly otherwise (and when no run collapsed: None, said plainly).
    """
    from sharpen.collapse import NOISE_SIGMAS, predict_collapse
    from sharpen.metrics import model_collapse_step, trailing_mean

    cfg = config
    folders = ensure_runs(
        sweep_configs(cfg, "majority_voting", cfg.lrs, lr_schedule=cfg.lr_schedule),
        cfg.runs_dir,
        workers=cfg.workers,
    )
    runs = load_runs(folders)
    upto = cfg.fraction * cfg.steps
    rng = np.random.default_rng(cfg.seed)
    rows = []
    traj_out: dict[str, np.ndarray] = {}
    for k, run in enumerate(runs):
        lr, s = cfg.lrs[k // cfg.seeds], k % cfg.seeds
        st, ra = metric_series(run, "reward_accuracy")
        obs = model_collapse_step(
            ra, "threshold", steps=st, threshold=cfg.threshold, smoothing=cfg.smoothing
        )
        observed = None if obs is None else int(obs.step)
        peak = model_collapse_step(
            ra, "peak", steps=st, smoothing=cfg.smoothing, noise_sigmas=NOISE_SIGMAS
        )
        smooth = trailing_mean(ra, cfg.smoothing)
        traj_out[f"lr{lr:g}/seed{s}/reward_accuracy"] = smooth
        traj_out["step"] = st.astype(float)
        traj = probe_trajectories(run)
        horizon = 10 * cfg.steps
        th = predict_collapse(
            traj, upto, threshold=cfg.threshold, horizon=horizon, observed_step=observed
        )
        boot = []
        for _ in range(cfg.n_boot):
            idx = rng.integers(0, traj.n_questions, traj.n_questions)
            p = predict_collapse(traj.rows(idx), upto, threshold=cfg.threshold, horizon=horizon)
            boot.append(math.inf if p.predicted_step is None else p.predicted_step)
        with np.errstate(
            invalid="ignore"
        ):  # resamples that predict nothing count as an infinite step
            lo, hi = (float(np.quantile(boot, q)) for q in (0.025, 0.975))
        tr = trend_prediction(st, smooth, cfg.threshold, upto)
        row = {"lr": lr, "seed": s, "observed": observed,
               "observed_peak_rule": None if peak is None else int(peak.step),
               "min_smoothed_reward_accuracy": float(smooth.min()),
               "final_majority_ratio": float(metric_series(run, "majority_ratio")[1][-cfg.smoothing:].mean()),
               "theorem1": {"step": th.predicted_step, "low": lo, "high": hi, "note": th.note, "floor": th.floor},
               "trend": tr}  # fmt: skip
        for name in ("theorem1", "trend"):
            p = row[name]
            p["error_steps"] = (
                None if (p["step"] is None or observed is None) else p["step"] - observed
            )
            p["relative_error"] = None if p["error_steps"] is None else p["error_steps"] / observed
            p["covered"] = (
                None
                if observed is None
                else bool(p["low"] is not None and p["low"] <= observed <= p["high"])
            )
        rows.append(row)
    collapsed = [r for r in rows if r["observed"] is not None]
    scores = {}
    for name in ("theorem1", "trend"):
        ok = [
            r[name]["relative_error"] is not None
            and abs(r[name]["relative_error"]) <= cfg.tolerance
            for r in collapsed
        ]
        errs = [
            abs(r[name]["error_steps"]) for r in collapsed if r[name]["error_steps"] is not None
        ]
        scores[name] = {
            "within_tolerance": sum(ok),
            "predicted": sum(r[name]["step"] is not None for r in collapsed),
            "median_abs_error_steps": float(np.median(errs)) if errs else math.nan,
            "coverage": float(np.mean([r[name]["covered"] for r in collapsed]))
            if collapsed
            else math.nan,
        }
    n = len(collapsed)
    if n == 0:
        holds = None
    elif any(v["within_tolerance"] == n for v in scores.values()):
        holds = True
    elif all(v["within_tolerance"] == 0 for v in scores.values()):
        holds = False
    else:
        holds = None
    obs_text = ", ".join(f"lr {r['lr']:g} s{r['seed']}: {r['observed']}" for r in rows)
    summary = (
        f"{n} of {len(rows)} majority-vote runs collapsed (reward accuracy < {cfg.threshold:g}, {cfg.smoothing}-step "
        f"mean; observed MCS {obs_text}). From the first {cfg.fraction:.0%}: "
        + "; ".join(
            f"{name} predicted {v['predicted']} of {n}, {v['within_tolerance']} within +-{cfg.tolerance:.0%}, "
            f"median |error| {v['median_abs_error_steps']:.0f} steps, interval coverage {v['coverage']:.0%}"
            for name, v in scores.items()
        )
        + (
            f". Theorem 1's note on the first run: {rows[0]['theorem1']['note']}"
            if rows and rows[0]["theorem1"]["note"]
            else ""
        )
        + (
            f". No run reached the threshold: the smoothed reward accuracy bottoms out at "
            f"{min(r['min_smoothed_reward_accuracy'] for r in rows):.3f} (rollouts off the majority answer earn 0 "
            f"from both rewards; final majority ratio {min(r['final_majority_ratio'] for r in rows):.2f}-"
            f"{max(r['final_majority_ratio'] for r in rows):.2f}); the peak rule's decline steps: "
            + ", ".join(f"lr {r['lr']:g} s{r['seed']}: {r['observed_peak_rule']}" for r in rows)
            if rows and n == 0
            else ""
        )
        + "."
    )
    numbers = {"runs": rows, "scores": scores, "upto_step": upto}
    return SimResult(
        "early_collapse_real",
        asdict(cfg),
        traj_out,
        Verdict("exploration", holds, summary, numbers),
    )


def draw(res: SimResult, fig) -> None:
    """Left: smoothed reward accuracy per run with the threshold and the early window; right: predicted vs
    observed Model Collapse Step for both predictors (intervals as bars; unpredicted runs at the top)."""
    t, nb = res.trajectories, res.verdict.numbers
    ax1, ax2 = fig.subplots(1, 2)
    for key, v in t.items():
        if key.endswith("/reward_accuracy"):
            ax1.plot(t["step"], v, lw=0.8, label=key.split("/reward_accuracy")[0])
    ax1.axhline(res.config["threshold"], color="k", ls=":", lw=1)
    ax1.axvline(nb["upto_step"], color="grey", ls="--", lw=1, label="early window")
    ax1.set(
        xlabel="step", ylabel="reward accuracy (smoothed)", title="Majority-vote runs", yscale="log"
    )
    ax1.legend(fontsize=5)
    top = res.config["steps"] * 1.2
    for name, m in (("theorem1", "o"), ("trend", "s")):
        xs, ys, lo, hi = [], [], [], []
        for r in nb["runs"]:
            if r["observed"] is None:
                continue
            p = r[name]
            y = top if p["step"] is None else min(p["step"], top)
            xs.append(r["observed"])
            ys.append(y)
            lo.append(y - min(p["low"] if p["low"] is not None else y, y))
            hi.append(
                min(p["high"] if p["high"] is not None else top, top) - y
                if p["high"] is not None
                else 0
            )
        if xs:
            ax2.errorbar(xs, ys, yerr=[lo, np.maximum(hi, 0)], fmt=m, ms=4, capsize=2, label=name)
    ax2.plot([0, top], [0, top], "k--", lw=1)
    ax2.set(
        xlabel="observed MCS",
        ylabel="predicted MCS",
        title="Early prediction (top: none)",
        ylim=(0, top * 1.05),
    )
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=7)
    else:
        ax2.text(0.5, 0.5, "no run reached the threshold", ha="center", transform=ax2.transAxes)


register(
    Experiment(
        "early_collapse_real",
        "exploration",
        EarlyCollapseRealConfig,
        early_collapse_real,
        {
            **RISE_QUICK,
            "smoothing": 2,
            "n_boot": 10,
        },  # the same runs as rise_then_fall_real --quick
        "Early prediction of the Model Collapse Step from the first 25% of each run",
        plot=draw,
        figsize=(12.0, 4.2),
    )
)
