r"""Majority stability at finite N: measured majority-flip frequencies vs
:func:`sharpen.theory.plurality_win_probs`, and whole-trajectory stability vs
:func:`sharpen.theory.stability_prob`."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sharpen.answers import plurality_winners
from sharpen.theory import plurality_win_probs, stability_prob
from sim.core import sample_counts, softmax
from sim.registry import Experiment, register
from sim.results import SimResult, Verdict

__all__ = ["StabilityConfig", "majority_stability", "finite_n_tilt"]


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


def draw(res: SimResult, fig) -> None:
    """Left: one vote's flip probability vs N, exact and measured; right: whole-trajectory stability."""
    ax1, ax2 = fig.subplots(1, 2)
    t = res.trajectories
    n = t["n"]
    ax1.plot(n, t["flip_exact"], "-", label="exact (sharpen.theory)")
    ax1.plot(n, t["flip_mc"], "o", label="measured")
    ax1.set(xscale="log", xlabel="N", ylabel="P[majority != initial mode]", title="One vote")
    ax1.legend(fontsize=7)
    ax2.plot(n, t["stable_exact"], "-", label="exact stability_prob")
    ax2.plot(n, t["stable_mc"], "o", label="measured")
    ax2.set(xscale="log", xlabel="N", ylabel="P[mode wins every step]", title="Finite-N tilt")
    ax2.legend(fontsize=7)


register(
    Experiment(
        "stability",
        "theorem",
        StabilityConfig,
        majority_stability,
        {"n_trials": 4000},
        "Majority stability: flip frequency vs exact plurality probability, vs N",
        plot=draw,
    )
)
