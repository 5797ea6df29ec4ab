r"""Rise then fall on the real tiny LM: a learning-rate sweep of majority-vote GRPO with a ground-truth control.

Claim (the paper, Fig. 2): under majority voting held-out accuracy first rises (it can match ground-truth
training), then falls while the proxy reward keeps rising; the ground-truth reward does not fall. The regime
can be narrow on a tiny model (too small an lr: a slow rise; too large: an immediate fall), so the verdict looks
for it over the sweep and the regime map reports every lr.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from empirical.lab.registry import Experiment, register
from empirical.lab.runs import LabRuns, ensure_runs, eval_series, load_runs, mean_se
from sim.configs import with_help
from sim.results import SimResult, Verdict

__all__ = [
    "QUICK",
    "RiseThenFallRealConfig",
    "rise_then_fall_real",
    "classify_curve",
    "sweep_configs",
]


@dataclass(frozen=True)
class RiseThenFallRealConfig(LabRuns):
    """Majority-vote and ground-truth GRPO at each of ``lrs`` for ``steps`` steps, ``seeds`` seeds each.

    Attributes
    ----------
    lrs : the sweep
    lr_schedule : 'constant' or 'cosine' (to 0 at ``steps``)
    n_se : a rise or fall counts when it exceeds this many standard errors over seeds
    """

    lrs: tuple[float, ...] = with_help(
        (4e-5, 6e-5, 8e-5, 1e-4, 1.4e-4, 2e-4), "learning rates of the sweep"
    )
    steps: int = with_help(300, "GRPO steps per run")
    lr_schedule: str = with_help("constant", "constant | cosine")
    probe_every: int = with_help(30, "steps between exact probes (read by early_collapse_real)")
    n_se: float = with_help(3.0, "standard errors a rise or a fall must exceed")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.lrs or any(not lr > 0 for lr in self.lrs):
            raise ValueError(f"lrs: need positive learning rates, got {self.lrs}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(
                f"lr_schedule: must be 'constant' or 'cosine', got {self.lr_schedule!r}"
            )


def sweep_configs(cfg: LabRuns, reward: str, lrs, seeds: int | None = None, **changes):
    """The train configs of one reward over ``lrs`` x ``seeds`` (default ``cfg.seeds``; lr-major order)."""
    return [
        cfg.train_config(reward, lr, s, **changes) for lr in lrs for s in range(seeds or cfg.seeds)
    ]


def classify_curve(curves: np.ndarray, n_se: float, se_questions: float = math.nan) -> dict:
    r"""Rise, peak and fall of held-out accuracy curves ``(seeds, S)`` (column 0 = before training).

    The peak step :math:`t^*` is the argmax of the seed mean; per seed the rise is
    :math:`A_s(t^*) - A_s(0)` and the fall :math:`A_s(t^*) - A_s(\mathrm{end})`; each counts when its mean
    exceeds ``n_se`` standard errors over seeds. With one seed there is no such error: ``se_questions`` (the
    standard error of one eval over the held-out questions) stands in, and without it nothing counts. Regime:
    ``rise_then_fall`` (both), ``rise`` (rise only), ``fall`` (fall only: the peak is at or near the start),
    ``flat`` (neither).
    """
    curves = np.atleast_2d(np.asarray(curves, dtype=np.float64))
    mean = curves.mean(axis=0)
    j = int(np.argmax(mean))
    rise, rise_se = mean_se(curves[:, j] - curves[:, 0])
    fall, fall_se = mean_se(curves[:, j] - curves[:, -1])
    if curves.shape[0] == 1:
        rise_se = fall_se = float(se_questions)
    rises = bool(math.isfinite(rise_se) and rise > n_se * max(rise_se, 1e-12))
    falls = bool(math.isfinite(fall_se) and fall > n_se * max(fall_se, 1e-12))
    regime = {(True, True): "rise_then_fall", (True, False): "rise", (False, True): "fall"}.get(
        (rises, falls), "flat"
    )
    return {"peak_index": j, "rise": float(rise), "rise_se": float(rise_se), "fall": float(fall),
            "fall_se": float(fall_se), "regime": regime}  # fmt: skip


def rise_then_fall_real(config: RiseThenFallRealConfig = RiseThenFallRealConfig()) -> SimResult:
    r"""Sweep lr; per lr and reward, the held-out exact accuracy curve over seeds and its regime.

    Held-out accuracy is the exact expected accuracy of one sample at the rollout temperature on
    ``n_heldout`` questions (``exact_accuracy`` of ``eval.jsonl``; its standard error over questions is
    reported too). :func:`classify_curve` gives each (lr, reward) its regime. Verdict: reproduced when at least
    one lr shows ``rise_then_fall`` under majority voting while the ground-truth control at that lr does not
    fall; not reproduced otherwise (the regime map says what each lr did).
    """
    cfg = config
    mv = load_runs(ensure_runs(sweep_configs(cfg, "majority_voting", cfg.lrs, lr_schedule=cfg.lr_schedule),
                               cfg.runs_dir, workers=cfg.workers))  # fmt: skip
    gt = load_runs(ensure_runs(sweep_configs(cfg, "ground_truth", cfg.lrs, cfg.control_seeds,
                                             lr_schedule=cfg.lr_schedule, probe_every=0), cfg.runs_dir,
                                workers=cfg.workers))  # fmt: skip
    traj: dict[str, np.ndarray] = {}
    regimes: dict[str, dict] = {}
    found = []
    for i, lr in enumerate(cfg.lrs):
        entry = {}
        for name, runs, n in (
            ("majority_voting", mv, cfg.seeds),
            ("ground_truth", gt, cfg.control_seeds),
        ):
            series = [eval_series(r) for r in runs[i * n : (i + 1) * n]]
            curves = np.stack([s[1] for s in series])
            traj["eval_step"] = series[0][0].astype(float)
            traj[f"{name}/lr{lr:g}/exact_accuracy"] = curves
            c = classify_curve(curves, cfg.n_se, float(np.nanmean([s[2] for s in series])))
            c["peak_step"] = int(series[0][0][c["peak_index"]])
            c["initial"], c["final"] = float(curves[:, 0].mean()), float(curves[:, -1].mean())
            c["peak"] = float(curves.mean(axis=0)[c["peak_index"]])
            c["se_questions"] = float(np.nanmean([s[2][c["peak_index"]] for s in series]))
            entry[name] = c
        regimes[f"{lr:g}"] = entry
        gt_falls = entry["ground_truth"]["regime"] in ("fall", "rise_then_fall")
        if entry["majority_voting"]["regime"] == "rise_then_fall" and not gt_falls:
            found.append(f"{lr:g}")
    holds = bool(found)
    text = "; ".join(
        f"lr {lr}: MV {e['majority_voting']['regime']} ({e['majority_voting']['initial']:.3f} -> peak "
        f"{e['majority_voting']['peak']:.3f} at step {e['majority_voting']['peak_step']} -> "
        f"{e['majority_voting']['final']:.3f}; rise {e['majority_voting']['rise']:+.3f}+-"
        f"{e['majority_voting']['rise_se']:.3f}, fall {e['majority_voting']['fall']:+.3f}+-"
        f"{e['majority_voting']['fall_se']:.3f}), GT {e['ground_truth']['regime']} (-> "
        f"{e['ground_truth']['final']:.3f})"
        for lr, e in regimes.items()
    )
    summary = (
        f"{'Rise-then-fall at lr ' + ', '.join(found) if found else 'No lr rose and then fell'} "
        f"(> {cfg.n_se:g} SE over {cfg.seeds} seeds, {cfg.steps} steps, {cfg.lr_schedule} lr; held-out exact "
        f"accuracy on {cfg.n_heldout} questions). {text}."
    )
    numbers = {"regimes": regimes, "rise_then_fall_lrs": found}
    return SimResult(
        "rise_then_fall_real", asdict(cfg), traj, Verdict("exploration", holds, summary, numbers)
    )


QUICK = {"seeds": 2, "steps": 12, "lrs": (3e-4,), "probe_every": 4, "n_probe": 6, "n_heldout": 64,
         "eval_every": 4, "rollout_batch_size": 32}  # fmt: skip
"""The quick preset; ``early_collapse_real``'s extends it, so its quick runs are these."""


def draw(res: SimResult, fig) -> None:
    """Left: held-out exact accuracy over steps per lr (MV solid, GT dashed; seeds thin); right: the regime map
    (lr x step heat map of the MV seed mean minus its start)."""
    from sim.plots import mean_line

    t, nb = res.trajectories, res.verdict.numbers
    ax1, ax2 = fig.subplots(1, 2)
    lrs = list(nb["regimes"])
    for k, lr in enumerate(lrs):
        c = f"C{k}"
        mv = nb["regimes"][lr]["majority_voting"]["regime"]
        mean_line(
            ax1,
            t["eval_step"],
            t[f"majority_voting/lr{lr}/exact_accuracy"],
            f"MV lr {lr} ({mv})",
            color=c,
        )
        mean_line(
            ax1,
            t["eval_step"],
            t[f"ground_truth/lr{lr}/exact_accuracy"],
            f"GT lr {lr}",
            color=c,
            ls="--",
        )
    ax1.set(xlabel="step", ylabel="held-out exact accuracy", title="Majority vote vs ground truth")
    ax1.legend(fontsize=6)
    grid = np.stack([t[f"majority_voting/lr{lr}/exact_accuracy"].mean(axis=0) for lr in lrs])
    delta = grid - grid[:, :1]
    lim = max(1e-3, float(np.abs(delta).max()))
    im = ax2.imshow(delta, aspect="auto", cmap="RdBu", vmin=-lim, vmax=lim, origin="lower",
                    extent=(t["eval_step"][0], t["eval_step"][-1], -0.5, len(lrs) - 0.5))  # fmt: skip
    ax2.set_yticks(range(len(lrs)), [f"lr {lr}" for lr in lrs])
    ax2.set(xlabel="step", title="Regime map: MV accuracy - start")
    fig.colorbar(im, ax=ax2)


register(
    Experiment(
        "rise_then_fall_real",
        "exploration",
        RiseThenFallRealConfig,
        rise_then_fall_real,
        QUICK,
        "Rise then fall of held-out accuracy under majority voting over an lr sweep, GT control",
        plot=draw,
        figsize=(12.0, 4.2),
    )
)
