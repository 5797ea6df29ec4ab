r"""Theorem 1: geometric convergence at rate :math:`e^{-1/\beta}` under the exact tilt, and the effective
:math:`\beta` of sampled GRPO (SGD/Adam, with/without std normalisation) with where logit-linearity holds."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sharpen.theory import fit_sharpening, majority_prob
from sim.core import (
    GRPOConfig,
    PriorConfig,
    TabularPolicy,
    exact_tilt,
    onehot_argmax,
    sample_prior,
    softmax,
)
from sim.registry import Experiment, register
from sim.results import SimResult, Verdict
from sim.train import train_answer_level

__all__ = ["Theorem1Config", "theorem1", "tilt_trajectory"]


@dataclass(frozen=True)
class Theorem1Config:
    """Theorem 1 checks.

    Attributes
    ----------
    betas : KL strengths beta > 0 for the exact tilt
    n_starts : random starting distributions per beta (Dirichlet(1) over K answers)
    n_answers : K >= 2
    max_logit_gain : the tilt runs for ``floor(beta * max_logit_gain)`` (at least 3) steps, so p_k stays
        representable below 1 in float64
    grpo_questions, grpo_steps, grpo_rollouts, grpo_lr : the sampled-GRPO part (tabular, majority voting)
    n_probe : questions of the Adam/std run written to ``probes.jsonl`` (exact distributions, every step)
    seed : int
    """

    betas: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    n_starts: int = 8
    n_answers: int = 4
    max_logit_gain: float = 15.0
    grpo_questions: int = 256
    grpo_steps: int = 60
    grpo_rollouts: int = 8
    grpo_lr: float = 0.05
    n_probe: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_probe < 0:
            raise ValueError(f"n_probe: must be >= 0, got {self.n_probe}")
        if not self.betas or any(not (b > 0) for b in self.betas):
            raise ValueError(f"betas: need at least one beta and every beta > 0, got {self.betas}")
        if self.n_answers < 2:
            raise ValueError(f"n_answers: K must be >= 2, got {self.n_answers}")
        if self.n_starts < 1 or self.grpo_questions < 1:
            raise ValueError("n_starts, grpo_questions: must be >= 1")
        if self.grpo_rollouts < 1:
            raise ValueError(f"grpo_rollouts: N must be >= 1, got {self.grpo_rollouts}")
        if not self.grpo_lr > 0 or self.grpo_steps < 2:
            raise ValueError("grpo_lr must be > 0 and grpo_steps >= 2")


def tilt_trajectory(p0: np.ndarray, beta: float, steps: int) -> np.ndarray:
    """Majority probability p_k, k = 0..steps, of the exact tilt toward the initial mode; p0 (M, K) -> (M, steps+1)."""
    z = np.log(np.asarray(p0, dtype=np.float64))
    r = onehot_argmax(p0)
    m = p0.argmax(axis=1)
    rows = np.arange(p0.shape[0])
    out = [softmax(z)[rows, m]]
    for _ in range(int(steps)):
        z = exact_tilt(z, r, beta)
        out.append(softmax(z)[rows, m])
    return np.stack(out, axis=1)


def theorem1(config: Theorem1Config = Theorem1Config()) -> SimResult:
    r"""Theorem 1: under the exact tilt the majority probability follows :math:`\mathrm{sigmoid}(\mathrm{logit}\,p_0+k/\beta)`
    and the fitted rate equals :math:`\rho=e^{-1/\beta}`; under sampled GRPO, the effective :math:`\beta` per setting.

    Mechanism: the tilt multiplies the majority's odds by :math:`e^{1/\beta}` per step, so its log-odds are linear
    in k. Sampled GRPO with SGD moves the majority logit by :math:`\eta\,c_wA_w(1-\pi_w)/N`-type amounts that
    depend on :math:`p`, so it is logit-linear only approximately; the fit reports :math:`\hat\beta` and
    :math:`R^2` on the logit scale, the test of that regime. Verdict: the exact part (|rho_hat - rho| < 1e-6 and the
    trajectory equal to :func:`sharpen.theory.majority_prob` to 1e-9).
    """
    rng = np.random.default_rng(config.seed)
    k = config.n_answers
    errs, rho_errs, traj_out = [], [], {}
    for b in config.betas:
        steps = max(3, int(np.floor(b * config.max_logit_gain)))
        p0 = rng.dirichlet(np.ones(k), size=config.n_starts)
        traj = tilt_trajectory(p0, b, steps)
        ks = np.arange(steps + 1)
        closed = majority_prob(traj[:, :1], b, ks[None, :])
        errs.append(float(np.abs(traj - closed).max()))
        fit = fit_sharpening(ks, traj)
        rho_errs.append(float(np.abs(fit.rho - np.exp(-1.0 / b)).max()))
        traj_out[f"tilt/beta={b:g}"] = traj
    # sampled GRPO: tabular, majority voting, four settings
    settings = [("sgd", True), ("sgd", False), ("adam", True), ("adam", False)]
    prior = sample_prior(
        PriorConfig(config.grpo_questions, k, strength=1.0, spread=1.0),
        np.random.default_rng(config.seed + 1),
    )
    grpo_numbers = {}
    for opt, norm in settings:
        pol = TabularPolicy(prior.logits)
        m0 = prior.probs.argmax(axis=1)
        rows = np.arange(config.grpo_questions)
        lr = config.grpo_lr if opt == "adam" else config.grpo_lr * 10
        cfg = GRPOConfig(n_rollouts=config.grpo_rollouts, lr=lr, optimizer=opt, normalize_std=norm)
        sub = np.random.default_rng(config.seed + 2)
        # one call, so Adam keeps its moments across steps; the probe records every question's distribution
        out = train_answer_level(
            pol,
            prior.correct,
            reward="majority_voting",
            grpo=cfg,
            steps=config.grpo_steps,
            rng=sub,
            probe=rows,
        )
        probs = out["probe_probs"]  # (S+1, Q, K), exact
        p = probs[:, rows, m0].T  # (Q, S+1), exact probabilities of the initial mode
        if (opt, norm) == ("adam", True):
            n_probe = min(config.n_probe, config.grpo_questions)
            traj_out["probe/step"] = np.arange(config.grpo_steps + 1)
            traj_out["probe/probs"] = probs[:, :n_probe]
            traj_out["probe/correct"] = prior.correct[:n_probe]
        ks = np.arange(p.shape[1])
        fit = fit_sharpening(ks, np.clip(p, 1e-12, 1 - 1e-12))
        name = f"{opt}/{'std' if norm else 'nostd'}"
        traj_out[f"grpo/{name}/p_initial_majority"] = p
        ok = fit.sharpening
        beta_med = float(np.median(fit.beta[ok])) if ok.any() else float("inf")
        grpo_numbers[name] = {
            "lr": lr,
            "beta_eff_median": beta_med,
            "beta_eff_x_lr": beta_med * lr,
            "r2_logit_median": float(np.nanmedian(fit.r2_logit)),
            "share_sharpening": float(ok.mean()),
            "share_flipped": float((p[:, -1] < p[:, 0]).mean()),
        }
    max_err, max_rho_err = max(errs), max(rho_errs)
    holds = max_rho_err < 1e-6 and max_err < 1e-9
    summ = (
        f"Exact tilt: max |p_k - closed form| = {max_err:.1e}, max |rho_hat - e^(-1/beta)| = {max_rho_err:.1e} "
        f"over beta in {list(config.betas)}. Sampled GRPO (majority voting, N={config.grpo_rollouts}): "
        + "; ".join(
            f"{n}: beta_eff~{v['beta_eff_median']:.3g} (R2_logit {v['r2_logit_median']:.2f})"
            for n, v in grpo_numbers.items()
        )
    )
    numbers = {"max_abs_err": max_err, "max_rho_err": max_rho_err, "grpo": grpo_numbers}
    return SimResult("theorem1", asdict(config), traj_out, Verdict("theorem", holds, summ, numbers))


def draw(res: SimResult, fig) -> None:
    """Left: the exact tilt's logit p_k (dots) on the line logit p_0 + k / beta; right: sampled GRPO's mean
    probability of the initial majority per setting."""
    ax1, ax2 = fig.subplots(1, 2)
    for name, traj in res.trajectories.items():
        if name.startswith("tilt/"):
            beta = float(name.split("=")[1])
            k = np.arange(traj.shape[1])
            lg = np.log(traj / (1 - traj))
            (line,) = ax1.plot(k, lg[0], "o", ms=3, label=f"beta={beta:g}")
            ax1.plot(k, lg[0, 0] + k / beta, "-", color=line.get_color(), lw=1)
        elif name.startswith("grpo/"):
            p = traj
            ax2.plot(
                np.arange(p.shape[1]),
                p.mean(axis=0),
                label=name.split("/")[1] + "/" + name.split("/")[2],
            )
    ax1.set(
        xlabel="step k", ylabel="logit p_k (dots) vs logit p0 + k/beta (lines)", title="Exact tilt"
    )
    ax1.legend(fontsize=7)
    ax2.set(
        xlabel="step",
        ylabel="mean prob. of initial majority",
        title="Sampled GRPO (majority voting)",
    )
    ax2.legend(fontsize=7)


register(
    Experiment(
        "theorem1",
        "theorem",
        Theorem1Config,
        theorem1,
        {"grpo_steps": 30},
        "Theorem 1: exact-tilt rate e^(-1/beta); effective beta of sampled GRPO",
        plot=draw,
    )
)
