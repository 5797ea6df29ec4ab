"""Theorem experiments: mathematical statements the simulator must reproduce exactly (or within Monte-Carlo error).

* :func:`theorem1` -- geometric convergence at rate :math:`e^{-1/\\beta}` under the exact tilt; the effective
  :math:`\\beta` of sampled GRPO (SGD/Adam, with/without std normalisation) and where logit-linearity holds.
* :func:`majority_stability` -- measured majority-flip frequencies vs :func:`sharpen.theory.plurality_win_probs`,
  and whole-trajectory stability vs :func:`sharpen.theory.stability_prob`.
* :func:`sharpening_destination` -- per-sample accuracy converges to the accuracy of the *initial* majority vote.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sharpen.answers import plurality_winners
from sharpen.theory import fit_sharpening, majority_prob, plurality_win_probs, stability_prob
from sim.core import (
    GRPOConfig,
    PriorConfig,
    TabularPolicy,
    exact_tilt,
    sample_counts,
    sample_prior,
    softmax,
)
from sim.results import SimResult, Verdict
from sim.train import train_answer_level

__all__ = [
    "Theorem1Config",
    "theorem1",
    "StabilityConfig",
    "majority_stability",
    "DestinationConfig",
    "sharpening_destination",
]


def _onehot_argmax(p: np.ndarray) -> np.ndarray:
    r = np.zeros_like(p)
    r[np.arange(p.shape[0]), p.argmax(axis=1)] = 1.0
    return r


# ------------------------------------------------------------------------------------------------------------
# Theorem 1
# ------------------------------------------------------------------------------------------------------------


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
    r = _onehot_argmax(p0)
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


# ------------------------------------------------------------------------------------------------------------
# Majority stability
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StabilityConfig:
    """Majority-stability checks.

    Attributes
    ----------
    probs : initial answer distribution (sums to 1)
    ns : rollout counts N to test
    n_trials : Monte-Carlo votes per N
    beta, k_steps : the finite-N tilt run for the whole-trajectory check
    z_max : |z| above which a measured frequency disagrees with the exact value (4 sigma: with 2 x len(ns)
        comparisons a false alarm has probability < 1e-3)
    seed : int
    """

    probs: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1)
    ns: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    n_trials: int = 20000
    beta: float = 1.0
    k_steps: int = 5
    z_max: float = 4.0
    seed: int = 0

    def __post_init__(self) -> None:
        p = np.asarray(self.probs, dtype=np.float64)
        if p.size < 2:
            raise ValueError(f"probs: need K >= 2 answers, got {self.probs}")
        if (p < 0).any() or abs(p.sum() - 1.0) > 1e-9:
            raise ValueError(f"probs: must be >= 0 and sum to 1, got sum {p.sum()}")
        if not self.ns or min(self.ns) < 1:
            raise ValueError(f"ns: every N must be >= 1, got {self.ns}")
        if self.n_trials < 100:
            raise ValueError(f"n_trials: need >= 100, got {self.n_trials}")
        if not self.beta > 0:
            raise ValueError(f"beta: must be > 0, got {self.beta}")
        if self.k_steps < 1:
            raise ValueError(f"k_steps: must be >= 1, got {self.k_steps}")


def finite_n_tilt(
    p0: np.ndarray, n: int, beta: float, steps: int, rng: np.random.Generator
) -> np.ndarray:
    r"""Winners ``(M, steps)`` of the finite-N majority-flip process from ``p0 (M, K)``:
    :math:`\hat m_k\sim\mathrm{Plurality}(\mathrm{Mult}(N,P_k))`, :math:`P_{k+1}\propto P_ke^{\mathbb 1[a=\hat m_k]/\beta}`."""
    z = np.log(np.maximum(np.asarray(p0, dtype=np.float64), 1e-300))
    winners = np.empty((z.shape[0], int(steps)), dtype=np.int64)
    rows = np.arange(z.shape[0])
    for s in range(int(steps)):
        counts = sample_counts(softmax(z), n, rng)
        w = plurality_winners(counts, rng)
        winners[:, s] = w
        z[rows, w] += 1.0 / beta
    return winners


def majority_stability(config: StabilityConfig = StabilityConfig()) -> SimResult:
    r"""Majority stability (A1) at finite N: measured vs exact.

    Per N, ``n_trials`` votes of N samples from ``probs``: the share whose plurality winner is not the mode is
    compared with :math:`1-\Pr[\hat m=\text{mode}]` from :func:`sharpen.theory.plurality_win_probs` (z-score with the
    binomial standard error). Then ``n_trials`` runs of the finite-N tilt for ``k_steps`` steps: the share that keep
    the mode as winner at every step vs :func:`sharpen.theory.stability_prob`. Verdict: every |z| < ``z_max`` and
    the exact flip probability does not increase with N (larger N locks in the initial mode more surely).
    """
    rng = np.random.default_rng(config.seed)
    p = np.asarray(config.probs, dtype=np.float64)
    mode = int(p.argmax())
    ns = np.asarray(config.ns)
    t = config.n_trials
    flip_mc, flip_exact, z1, stay_mc, stay_exact, z2 = [], [], [], [], [], []
    for n in ns:
        counts = sample_counts(np.broadcast_to(p, (t, p.size)), int(n), rng)
        f_mc = float((plurality_winners(counts, rng) != mode).mean())
        f_ex = float(1.0 - plurality_win_probs(p, int(n))[mode])
        se = max(np.sqrt(f_ex * (1 - f_ex) / t), 1e-12)
        flip_mc.append(f_mc)
        flip_exact.append(f_ex)
        z1.append(
            (f_mc - f_ex) / se if f_ex * (1 - f_ex) > 0 else (0.0 if f_mc == f_ex else np.inf)
        )
        w = finite_n_tilt(np.broadcast_to(p, (t, p.size)), int(n), config.beta, config.k_steps, rng)
        s_mc = float((w == mode).all(axis=1).mean())
        s_ex = float(stability_prob(p, int(n), config.beta, config.k_steps))
        se2 = max(np.sqrt(s_ex * (1 - s_ex) / t), 1e-12)
        stay_mc.append(s_mc)
        stay_exact.append(s_ex)
        z2.append(
            (s_mc - s_ex) / se2 if s_ex * (1 - s_ex) > 0 else (0.0 if s_mc == s_ex else np.inf)
        )
    flip_exact_a = np.asarray(flip_exact)
    monotone = bool(np.all(np.diff(flip_exact_a) <= 1e-12))
    max_z = float(np.max(np.abs(np.concatenate([z1, z2]))))
    holds = max_z < config.z_max and monotone
    summ = (
        f"Flip frequency vs exact over N={list(config.ns)}: max |z| = {max_z:.2f} (< {config.z_max} required); "
        f"exact flip probability falls from {flip_exact_a[0]:.3f} (N={ns[0]}) to {flip_exact_a[-1]:.2e} "
        f"(N={ns[-1]}), monotone: {monotone}; {config.k_steps}-step stability at N={ns[-1]}: "
        f"{stay_mc[-1]:.3f} measured vs {stay_exact[-1]:.3f} exact."
    )
    traj = {
        "n": ns,
        "flip_mc": np.asarray(flip_mc),
        "flip_exact": flip_exact_a,
        "z_flip": np.asarray(z1),
        "stable_mc": np.asarray(stay_mc),
        "stable_exact": np.asarray(stay_exact),
        "z_stable": np.asarray(z2),
    }
    numbers = {
        "max_abs_z": max_z,
        "monotone": monotone,
        "flip_exact": flip_exact,
        "flip_mc": flip_mc,
    }
    return SimResult("stability", asdict(config), traj, Verdict("theorem", holds, summ, numbers))


# ------------------------------------------------------------------------------------------------------------
# Where sharpening leads
# ------------------------------------------------------------------------------------------------------------


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
    r = _onehot_argmax(p0)
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
        rw = _onehot_argmax(pp)
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
