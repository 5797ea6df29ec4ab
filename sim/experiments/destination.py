r"""Where sharpening leads: per-sample accuracy of a tabular policy converges to the accuracy of its *initial*
majority vote (Theorem 1 under A1), and to that of the initial maj@N vote with a finite vote and a big step."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sharpen.answers import plurality_winners
from sharpen.theory import plurality_win_probs
from sim.core import (
    GRPOConfig,
    PriorConfig,
    TabularPolicy,
    exact_tilt,
    onehot_argmax,
    sample_counts,
    sample_prior,
    softmax,
)
from sim.registry import Experiment, register
from sim.results import SimResult, Verdict
from sim.train import train_answer_level

__all__ = ["DestinationConfig", "sharpening_destination"]


@dataclass(frozen=True)
class DestinationConfig:
    """Where sharpening leads, for tabular policies.

    Attributes
    ----------
    prior : the prior family
    n_rollouts : N of the finite-N vote
    beta_lockin : a small beta (big step): the first vote decides, so the prediction is exact in law
    beta_slow : a larger beta, reported against both predictions
    steps : tilt steps
    grpo_steps, grpo_lr : a sampled-GRPO run (majority voting, SGD) reported against the predictions
    n_datasets : random small datasets for the "accuracy falls iff pass@1 > maj-vote accuracy" check
    z_max : tolerance of the Monte-Carlo check, in standard errors
    seed : int
    """

    prior: PriorConfig = PriorConfig(n_questions=2000, n_answers=6, strength=0.7, spread=1.0)
    n_rollouts: int = 8
    beta_lockin: float = 0.05
    beta_slow: float = 1.0
    steps: int = 40
    grpo_steps: int = 300
    grpo_lr: float = 0.5
    n_datasets: int = 200
    z_max: float = 4.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_rollouts < 1:
            raise ValueError(f"n_rollouts: N must be >= 1, got {self.n_rollouts}")
        if not (self.beta_lockin > 0 and self.beta_slow > 0):
            raise ValueError("beta_lockin, beta_slow: must be > 0")
        for name, low in (("steps", 1), ("grpo_steps", 0), ("n_datasets", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"{name}: must be >= {low}, got {getattr(self, name)}")


def sharpening_destination(config: DestinationConfig = DestinationConfig()) -> SimResult:
    r"""Per-sample accuracy converges to the accuracy of the *initial* majority vote (Theorem 1 under A1).

    Mechanism: a tabular question only moves by its own votes. Under (A1) it locks onto its initial mode, so
    final pass@1 = share of questions whose initial mode is correct (``maj_acc``), exactly. With a finite vote of
    N and a big step (small beta) the first vote decides: the prediction is
    :math:`\frac1Q\sum_q\Pr[\mathrm{maj}_N(\pi^0_q)=c_q]` (:func:`sharpen.theory.plurality_win_probs`), checked
    within ``z_max`` standard errors. Small steps sit between the two. Hence accuracy falls under tabular
    sharpening iff initial pass@1 > initial majority-vote accuracy; checked on ``n_datasets`` random datasets.
    """
    rng = np.random.default_rng(config.seed)
    prior = sample_prior(config.prior, rng)
    p0 = prior.probs
    q = p0.shape[0]
    rows = np.arange(q)
    pass1_0 = float(p0[rows, prior.correct].mean())
    maj_acc = float((p0.argmax(axis=1) == prior.correct).mean())
    win = plurality_win_probs(p0, config.n_rollouts)[rows, prior.correct]
    maj_n_acc = float(win.mean())
    se = float(np.sqrt((win * (1 - win)).sum()) / q)
    # (a) A1: the population majority (exact, no sampling)
    z = np.log(p0)
    r = onehot_argmax(p0)
    acc_a1 = [pass1_0]
    for _ in range(config.steps):
        z = exact_tilt(z, r, config.beta_slow)
        acc_a1.append(float(softmax(z)[rows, prior.correct].mean()))
    gap_a1 = abs(acc_a1[-1] - maj_acc)
    # (b) finite N, big step and (c) finite N, small step
    finals = {}
    curves = {}
    for name, beta in (("lockin", config.beta_lockin), ("slow", config.beta_slow)):
        z = np.log(p0).copy()
        accs = [pass1_0]
        for _ in range(config.steps):
            counts = sample_counts(softmax(z), config.n_rollouts, rng)
            w = plurality_winners(counts, rng)
            z[rows, w] += 1.0 / beta
            accs.append(float(softmax(z)[rows, prior.correct].mean()))
        curves[name] = np.asarray(accs)
        finals[name] = accs[-1]
    z_lock = (finals["lockin"] - maj_n_acc) / max(se, 1e-12)
    # (d) sampled GRPO, reported
    pol = TabularPolicy(prior.logits)
    g = train_answer_level(
        pol,
        prior.correct,
        reward="majority_voting",
        grpo=GRPOConfig(n_rollouts=config.n_rollouts, lr=config.grpo_lr),
        steps=config.grpo_steps,
        rng=rng,
    )
    # (e) falls iff pass@1 > maj-vote accuracy, over random small datasets (under A1, where final = maj_acc)
    sign_ok, n_fall = 0, 0
    for _ in range(config.n_datasets):
        pc = PriorConfig(
            n_questions=20,
            n_answers=int(rng.integers(2, 8)),
            strength=float(rng.uniform(-0.5, 2.0)),
            spread=float(rng.uniform(0.3, 2.0)),
        )
        pr = sample_prior(pc, rng)
        pp = pr.probs
        rr = np.arange(pp.shape[0])
        zz = np.log(pp)
        rw = onehot_argmax(pp)
        for _ in range(60):
            zz = exact_tilt(zz, rw, 0.5)
        final = softmax(zz)[rr, pr.correct].mean()
        start = pp[rr, pr.correct].mean()
        ma = (pp.argmax(axis=1) == pr.correct).mean()
        fell = final < start - 1e-9
        n_fall += int(fell)
        sign_ok += int(fell == (start > ma + 1e-9))
    holds = gap_a1 < 1e-6 and abs(z_lock) < config.z_max and sign_ok == config.n_datasets
    summ = (
        f"Initial pass@1 {pass1_0:.3f}, majority-vote accuracy {maj_acc:.3f}, maj@{config.n_rollouts} accuracy "
        f"{maj_n_acc:.3f}. Under A1 final pass@1 = {acc_a1[-1]:.6f} (gap {gap_a1:.1e}). Finite N, big step: "
        f"{finals['lockin']:.3f} vs predicted {maj_n_acc:.3f} (z = {z_lock:.2f}); small step (beta={config.beta_slow:g}): "
        f"{finals['slow']:.3f}; sampled GRPO: {g['accuracy'][-1]:.3f}. Accuracy fell in {n_fall}/{config.n_datasets} "
        f"random datasets, always and only where pass@1 > majority accuracy ({sign_ok}/{config.n_datasets})."
    )
    numbers = {
        "pass1_initial": pass1_0,
        "maj_acc": maj_acc,
        "maj_n_acc": maj_n_acc,
        "maj_n_se": se,
        "final_a1": acc_a1[-1],
        "final_lockin": finals["lockin"],
        "z_lockin": z_lock,
        "final_slow": finals["slow"],
        "final_grpo": float(g["accuracy"][-1]),
        "datasets_fell": n_fall,
        "datasets_sign_ok": sign_ok,
    }
    traj = {
        "step": np.arange(config.steps + 1),
        "accuracy_a1": np.asarray(acc_a1),
        "accuracy_lockin": curves["lockin"],
        "accuracy_slow": curves["slow"],
        "grpo_step": np.arange(config.grpo_steps + 1),
        "grpo_accuracy": g["accuracy"],
    }
    cfg = asdict(config)
    return SimResult("destination", cfg, traj, Verdict("theorem", holds, summ, numbers))


def draw(res: SimResult, fig) -> None:
    """Left: pass@1 under the three tilt variants against the two predictions; right: sampled GRPO."""
    ax1, ax2 = fig.subplots(1, 2)
    t, nb = res.trajectories, res.verdict.numbers
    ax1.plot(t["step"], t["accuracy_a1"], label="A1 (population majority)")
    ax1.plot(t["step"], t["accuracy_lockin"], label="finite N, big step")
    ax1.plot(t["step"], t["accuracy_slow"], label="finite N, small step")
    ax1.axhline(nb["maj_acc"], ls="--", c="k", lw=1, label="initial maj-vote acc.")
    ax1.axhline(nb["maj_n_acc"], ls=":", c="k", lw=1, label="initial maj@N acc.")
    ax1.set(xlabel="tilt step", ylabel="pass@1", title="Where sharpening leads")
    ax1.legend(fontsize=7)
    ax2.plot(t["grpo_step"], t["grpo_accuracy"], label="sampled GRPO")
    ax2.axhline(nb["maj_acc"], ls="--", c="k", lw=1)
    ax2.set(xlabel="GRPO step", ylabel="pass@1", title="Sampled GRPO, tabular")
    ax2.legend(fontsize=7)


register(
    Experiment(
        "destination",
        "theorem",
        DestinationConfig,
        sharpening_destination,
        {"n_datasets": 50, "grpo_steps": 100},
        "Where sharpening leads: pass@1 -> initial majority-vote accuracy (tabular)",
        plot=draw,
    )
)
