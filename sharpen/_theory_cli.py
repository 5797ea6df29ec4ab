"""``sharpen theory``: print Theorem 1's trajectory and draw it; plus the ``theory`` demo step.

Three layers, as everywhere in sharpen: compute (pure, :func:`theorem_table`,
:func:`stability_table`) -> data on disk (CSV next to the figure) -> draw (functions that take
prepared arrays and an ``ax`` and return it). All the math lives in :mod:`sharpen.theory`.

Entry points (pyproject.toml): ``sharpen.commands: theory = sharpen._theory_cli:register`` and
``sharpen.demo: theory = sharpen._theory_cli:demo``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sharpen import theory
from sharpen._cli import fail, output_dir

__all__ = [
    "StabilityTable",
    "TheoremTable",
    "demo",
    "initial_answer_probs",
    "monte_carlo_win_prob",
    "register",
    "run",
    "stability_table",
    "theorem_table",
]


# ----------------------------------------------------------------------------------------------
# compute
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TheoremTable:
    """Theorem 1 at integer steps 0..steps for one (p0, beta)."""

    p0: float
    beta: float
    step: np.ndarray  # (S + 1,) int
    p: np.ndarray  # (S + 1,) majority mass p_k
    gap: np.ndarray  # (S + 1,) 1 - p_k, full precision
    bound: np.ndarray  # (S + 1,) (1 - p0) / p0 * rho^k
    contraction: np.ndarray  # (S + 1,) (1 - p_{k+1}) / (1 - p_k) at p_k


@dataclass(frozen=True)
class StabilityTable:
    """Majority stability (A1) along Theorem 1's path, for answer marginals ``probs`` and n votes."""

    probs: np.ndarray  # (K,) initial answer probabilities (rest unparseable)
    n: int
    win: np.ndarray  # (S + 1,) P[initial mode wins the vote at step k]
    stable: np.ndarray  # (S + 1,) P[votes 0..k-1 all returned the mode]
    hoeffding: np.ndarray  # (S + 1,) Hoeffding bound on P[mode loses at step k] (raw, may be > 1)


def theorem_table(p0: float, beta: float, steps: int) -> TheoremTable:
    """Theorem 1's trajectory, bound and contraction factor at steps 0..``steps``."""
    if not isinstance(steps, int | np.integer) or steps < 0:
        raise ValueError(f"steps: must be an integer >= 0, got {steps!r}")
    k = np.arange(steps + 1)
    p = theory.majority_prob(p0, beta, k)
    return TheoremTable(
        p0=float(p0),
        beta=float(beta),
        step=k,
        p=p,
        gap=theory.majority_gap(p0, beta, k),
        bound=theory.tail_bound(p0, beta, k),
        contraction=theory.contraction_factor(p, beta),
    )


def initial_answer_probs(p0: float, k_answers: int, unparseable: float = 0.0) -> np.ndarray:
    """Answer marginals (K,): the mode has ``p0``; the other K-1 answers share the parseable rest.

    Raises ``ValueError`` unless the mode is the unique largest answer.
    """
    if not isinstance(k_answers, int | np.integer) or k_answers < 1:
        raise ValueError(f"k_answers: must be an integer >= 1, got {k_answers!r}")
    if not (0.0 <= unparseable < 1.0):
        raise ValueError(f"unparseable: must lie in [0, 1), got {unparseable}")
    rest = 1.0 - unparseable - p0
    if rest < -1e-12:
        raise ValueError(f"p0: p0 + unparseable must be <= 1, got {p0} + {unparseable}")
    if k_answers == 1:
        if rest > 1e-12:
            raise ValueError(
                f"k_answers: with one answer the remaining mass 1 - p0 - unparseable = {rest:.4g} has no "
                "answer to go to; use k_answers >= 2, or set unparseable to 1 - p0 on purpose"
            )
        return np.array([p0])
    other = max(rest, 0.0) / (k_answers - 1)
    if other >= p0:
        raise ValueError(
            f"p0: the initial mode must be the unique largest answer, but each of the other "
            f"{k_answers - 1} answers gets {other:.4g} >= p0 = {p0}"
        )
    return np.array([p0] + [other] * (k_answers - 1))


def stability_table(probs, n: int, beta: float, steps: int) -> StabilityTable:
    """Per-step win probability of the initial mode, A1 survival and the Hoeffding bound."""
    probs = np.asarray(probs, dtype=np.float64)
    stable = theory.stability_curve(probs, n, beta, steps + 1)  # (S + 2,)
    win = stable[1:] / np.where(stable[:-1] > 0, stable[:-1], 1.0)
    mode = int(np.argmax(probs))
    pm = theory.majority_prob(probs[mode], beta, np.arange(steps + 1))
    shrink = theory.majority_gap(probs[mode], beta, np.arange(steps + 1)) / max(
        1 - probs[mode], 1e-300
    )
    path = probs[None, :] * shrink[:, None]
    path[:, mode] = pm
    return StabilityTable(
        probs=probs,
        n=int(n),
        win=win,
        stable=stable[:-1],
        hoeffding=theory.hoeffding_flip_bound(path, n),
    )


def monte_carlo_win_prob(
    probs, n: int, trials: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Monte-Carlo estimate (and its standard error) of P[answer 0 wins the plurality of n draws].

    Draws the answer counts (unparseable mass last), splits ties uniformly at random.
    """
    probs = np.asarray(probs, dtype=np.float64)
    full = np.append(probs, max(0.0, 1.0 - probs.sum()))
    counts = rng.multinomial(n, full, size=trials)[:, :-1]  # (trials, K) parseable answers
    top = counts.max(axis=1, keepdims=True)
    tied = (counts == top) & (top > 0)
    share = tied[:, 0] / np.maximum(tied.sum(axis=1), 1)
    est = float(share.mean())
    return est, float(share.std(ddof=1) / np.sqrt(trials))


# ----------------------------------------------------------------------------------------------
# draw (prepared arrays in, axes out)
# ----------------------------------------------------------------------------------------------


def _plot_p(ax, table: TheoremTable, color: str, label: str):
    fine = np.linspace(0, table.step[-1], 400)
    ax.plot(
        fine, theory.majority_prob(table.p0, table.beta, fine), color=color, lw=1.5, label=label
    )
    ax.plot(table.step, table.p, "o", color=color, ms=3.5)
    lower = np.clip(1.0 - table.bound, 0.0, 1.0)
    ax.plot(table.step, lower, "--", color=color, lw=1.0, alpha=0.8)
    ax.set_xlabel("step k")
    ax.set_ylabel("majority mass $p_k$")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("$p_k$ (solid) and the bound $1-\\frac{1-p_0}{p_0}\\rho^k$ (dashed)", fontsize=10)
    return ax


def _plot_logit(ax, table: TheoremTable, color: str, label: str):
    logit = np.log(table.p) - np.log(table.gap)
    ax.plot(table.step, logit, "o-", color=color, ms=3.5, lw=1.2, label=label)
    ax.set_xlabel("step k")
    ax.set_ylabel("logit $p_k$")
    ax.set_title("logit view: a straight line of slope $1/\\beta$", fontsize=10)
    return ax


def _plot_gap(ax, table: TheoremTable, color: str, label: str):
    ax.semilogy(table.step, table.gap, "o-", color=color, ms=3.5, lw=1.2, label=label)
    ax.semilogy(table.step, table.bound, "--", color=color, lw=1.0, alpha=0.8)
    ax.set_xlabel("step k")
    ax.set_ylabel("minority mass $1-p_k$ (log scale)")
    ax.set_title("$1-p_k$ (solid) under the geometric bound (dashed)", fontsize=10)
    return ax


def _plot_stability(ax, table: StabilityTable, color: str, label: str):
    k = np.arange(table.stable.size)
    ax.plot(k, table.stable, "o-", color=color, ms=3.5, lw=1.2, label=label)
    ax.plot(k, table.win, ":", color=color, lw=1.2)
    ax.set_xlabel("step k")
    ax.set_ylabel("probability")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(
        "P[votes 0..k-1 all return the initial mode] (solid);\nP[mode wins at step k] (dotted)",
        fontsize=10,
    )
    return ax


def _theorem_figure(tables: list[TheoremTable], stability: list[StabilityTable] | None = None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_panels = 3 + (1 if stability else 0)
    fig, axes = plt.subplots(1, n_panels, figsize=(4.6 * n_panels, 4.2), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, t in enumerate(tables):
        label = f"$p_0$={t.p0:g}, $\\beta$={t.beta:g} ($\\rho$={np.exp(-1 / t.beta):.3g})"
        c = colors[i % len(colors)]
        _plot_p(axes[0], t, c, label)
        _plot_logit(axes[1], t, c, label)
        _plot_gap(axes[2], t, c, label)
    for ax in axes[:3]:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    if stability:
        for i, s in enumerate(stability):
            label = f"n={s.n}, P0={np.array2string(s.probs, precision=2, separator=', ')}"
            _plot_stability(axes[3], s, colors[(i + len(tables)) % len(colors)], label)
        axes[3].grid(alpha=0.3)
        axes[3].legend(fontsize=7, loc="lower left")
    fig.suptitle(
        "Theorem 1 (majority-vote reward, reference refreshed every step): "
        "$p_k=\\mathrm{sigmoid}(\\mathrm{logit}\\,p_0+k/\\beta)$, $1-p_k\\to0$ at rate $\\rho=e^{-1/\\beta}$",
        fontsize=11,
    )
    return fig


def _write_csv(path: Path, header: list[str], columns: list[np.ndarray]) -> None:
    data = np.column_stack([np.asarray(c, dtype=np.float64) for c in columns])
    np.savetxt(path, data, delimiter=",", header=",".join(header), comments="", fmt="%.10g")


# ----------------------------------------------------------------------------------------------
# command
# ----------------------------------------------------------------------------------------------


def register(subparsers) -> None:
    """Add ``sharpen theory`` to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "theory",
        help="Theorem 1: majority-mass trajectory, bound, contraction (and majority stability)",
        description=(
            "Print Theorem 1's trajectory p_k = sigmoid(logit p0 + k/beta) with the geometric bound "
            "1 - p_k <= (1-p0)/p0 rho^k and the per-step contraction factor. With --n, add the exact "
            "probability that the plurality vote of n samples keeps returning the initial mode (A1). "
            "Also writes theorem1.png and theorem1.csv into --out."
        ),
    )
    parser.add_argument("--p0", type=float, default=0.3, help="initial majority mass (default 0.3)")
    parser.add_argument(
        "--beta", type=float, default=0.5, help="KL coefficient / step size (default 0.5)"
    )
    parser.add_argument("--steps", type=int, default=20, help="number of steps (default 20)")
    parser.add_argument(
        "--n", type=int, default=None, help="samples voting per step (adds the A1 columns)"
    )
    parser.add_argument(
        "--k-answers",
        type=int,
        default=4,
        help="distinct answers for --n: the mode has p0, the others share the rest equally (default 4)",
    )
    parser.add_argument(
        "--unparseable",
        type=float,
        default=0.0,
        help="mass of unparseable outputs for --n (default 0)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=output_dir("theory"),
        help=f"folder for theorem1.png / theorem1.csv (default: ./{output_dir('theory')})",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``sharpen theory``; returns the exit status."""
    try:
        table = theorem_table(args.p0, args.beta, args.steps)
        stab = None
        if args.n is not None:
            probs = initial_answer_probs(args.p0, args.k_answers, args.unparseable)
            stab = stability_table(probs, args.n, args.beta, args.steps)
    except ValueError as exc:
        return fail("sharpen theory", str(exc))

    print(
        f"Theorem 1: p0={table.p0:g}, beta={table.beta:g}, rho=e^(-1/beta)={np.exp(-1 / table.beta):.6g}"
    )
    header = f"{'step':>5} {'p_k':>12} {'1-p_k':>12} {'bound':>12} {'contraction':>12}"
    if stab is not None:
        print(
            f"majority stability: n={stab.n}, initial answer probabilities {np.round(stab.probs, 4).tolist()}"
        )
        header += f" {'P[win_k]':>10} {'P[A1<k]':>10} {'hoeffding':>10}"
    print(header)
    for i in range(table.step.size):
        row = (
            f"{table.step[i]:>5d} {table.p[i]:>12.6f} {table.gap[i]:>12.4e} "
            f"{table.bound[i]:>12.4e} {table.contraction[i]:>12.6f}"
        )
        if stab is not None:
            row += f" {stab.win[i]:>10.6f} {stab.stable[i]:>10.6f} {min(stab.hoeffding[i], 1.0):>10.4f}"
        print(row)
    print("bound: 1-p_k <= (1-p0)/p0 * rho^k; contraction: (1-p_{k+1})/(1-p_k), tends to rho.")
    if stab is not None:
        print(
            "P[A1<k]: the votes at steps 0..k-1 all returned the initial mode; hoeffding: capped at 1."
        )

    if args.out is not None:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        columns = [table.step, table.p, table.gap, table.bound, table.contraction]
        names = ["step", "p_k", "gap", "bound", "contraction"]
        if stab is not None:
            columns += [stab.win, stab.stable, stab.hoeffding]
            names += ["win_prob", "a1_survival", "hoeffding"]
        _write_csv(out / "theorem1.csv", names, columns)
        fig = _theorem_figure([table], [stab] if stab is not None else None)
        fig.savefig(out / "theorem1.png", dpi=130)
        import matplotlib.pyplot as plt

        plt.close(fig)
        print(f"wrote {out / 'theorem1.png'} and {out / 'theorem1.csv'}")
    return 0


# ----------------------------------------------------------------------------------------------
# demo step
# ----------------------------------------------------------------------------------------------

_DEMO_PAIRS = ((0.3, 0.5), (0.6, 2.0), (0.15, 4.0))
_DEMO_MARGINS = (0.02, 0.05, 0.1, 0.2)
_DEMO_UNPARSEABLE = 0.2
_DEMO_K = 4


def _margin_probs(margin: float) -> np.ndarray:
    """K=4 answers, 20% unparseable: the mode leads each of three equal rivals by ``margin``."""
    rival = (1.0 - _DEMO_UNPARSEABLE - margin) / _DEMO_K
    return np.array([rival + margin] + [rival] * (_DEMO_K - 1))


def demo(out_dir: Path) -> None:
    """Write theorem1.png (three (p0, beta) pairs) and majority_stability.png (+ CSVs) to out_dir."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # Theorem 1 for a few (p0, beta).
    tables = [theorem_table(p0, beta, 20) for p0, beta in _DEMO_PAIRS]
    fig = _theorem_figure(tables)
    fig.savefig(out_dir / "theorem1.png", dpi=130)
    plt.close(fig)
    _write_csv(
        out_dir / "theorem1.csv",
        ["p0", "beta", "step", "p_k", "gap", "bound", "contraction"],
        [
            np.concatenate([np.full(t.step.size, t.p0) for t in tables]),
            np.concatenate([np.full(t.step.size, t.beta) for t in tables]),
            np.concatenate([t.step for t in tables]),
            np.concatenate([t.p for t in tables]),
            np.concatenate([t.gap for t in tables]),
            np.concatenate([t.bound for t in tables]),
            np.concatenate([t.contraction for t in tables]),
        ],
    )

    # Majority stability: exact win probability of the mode vs n, a Monte-Carlo check, and A1
    # survival over training steps.
    rng = np.random.default_rng(0)
    ns = np.arange(1, 65)
    mc_ns = np.array([4, 8, 16, 32, 64])
    trials = 4000
    rows = []
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.4), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, margin in enumerate(_DEMO_MARGINS):
        probs = _margin_probs(margin)
        exact = np.array([theory.plurality_win_probs(probs, int(n))[0] for n in ns])
        mc = np.array([monte_carlo_win_prob(probs, int(n), trials, rng) for n in mc_ns])
        c = colors[i]
        axes[0].plot(ns, exact, "-", color=c, lw=1.5, label=f"margin $\\Delta$={margin:g} (exact)")
        axes[0].errorbar(mc_ns, mc[:, 0], yerr=2 * mc[:, 1], fmt="o", color=c, ms=4, capsize=2)
        rows += [(margin, int(n), e, np.nan, np.nan) for n, e in zip(ns, exact, strict=True)]
        rows += [(margin, int(n), np.nan, m, s) for n, (m, s) in zip(mc_ns, mc, strict=True)]
    axes[0].set_xlabel("samples voting, n")
    axes[0].set_ylabel("P[initial mode wins the plurality]")
    axes[0].set_ylim(0, 1.02)
    axes[0].set_title(
        f"K={_DEMO_K} answers, {_DEMO_UNPARSEABLE:.0%} unparseable; mode leads each rival by $\\Delta$\n"
        f"lines: exact; dots: Monte Carlo ({trials} votes each, $\\pm$2 SE)",
        fontsize=9,
    )
    axes[0].grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")

    beta, steps, margin = 5.0, 30, 0.05
    probs = _margin_probs(margin)
    for i, n in enumerate((8, 32)):
        table = stability_table(probs, n, beta, steps)
        _plot_stability(axes[1], table, colors[i + len(_DEMO_MARGINS)], f"n={n}")
    axes[1].set_title(
        f"A1 over training ($\\beta$={beta:g}, $\\Delta$={margin:g}): larger n locks in sooner and surer\n"
        "solid: P[votes 0..k-1 all return the initial mode]; dotted: P[mode wins at step k]",
        fontsize=9,
    )
    axes[1].grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="center right")
    fig.suptitle(
        "Majority stability (A1) with finite n: exact plurality-win probabilities", fontsize=11
    )
    fig.savefig(out_dir / "majority_stability.png", dpi=130)
    plt.close(fig)
    data = np.array(rows, dtype=np.float64)
    _write_csv(
        out_dir / "majority_stability.csv",
        ["margin", "n", "exact_win_prob", "mc_win_prob", "mc_se"],
        list(data.T),
    )
