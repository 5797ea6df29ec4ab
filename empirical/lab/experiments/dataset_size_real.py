r"""Training-set size on the real tiny LM: majority-vote GRPO on 32 to 2048 arithmetic questions at a fixed step
budget, with a ground-truth control.

Claim (the paper, Figs. 6-7, DAPO subsets, 600 steps, 3 seeds): small training sets (<= 128 questions) never
collapse -- the proxy reward goes to 1 while the ground-truth reward stays high, "localised overfitting", each
question memorised on its own -- while sets of >= 512 questions always collapse; the KL to the initial policy at
step 600 is 0.057 on 32 questions and about twice that on 512.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from empirical.lab.experiments.prior_ladder_real import collapse_steps
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

__all__ = ["DatasetSizeRealConfig", "dataset_size_real", "size_verdict", "training_collapse"]

PAPER_KL = {32: 0.057, 512: 0.114}
"""The paper's KL to the initial policy at step 600 (512: "about twice" the 32-question value)."""


RULES = ("accuracy", "threshold", "peak")


@dataclass(frozen=True)
class DatasetSizeRealConfig(LabRuns):
    """Majority voting on the first ``n`` training questions for each ``n`` of ``sizes``, ``seeds`` seeds each;
    ground truth at ``control_size`` (``control_seeds`` seeds).

    Chosen for the compute budget (the full run <= 25 min on 2 idle cores). Measured 2026-12-01 on the 2 shared
    cores: a GRPO step of 64 rollouts takes 0.09-0.11 s with the KL pass (``log_kl``, read here), an exact eval
    of 1000 held-out questions 0.8 s, run setup 2-3 s. So 4 sizes x 3 seeds + 3 ground-truth controls = 15 runs
    of 600 steps (the paper's budget) with 13 evals each, 67-79 s a run: 17-20 min of one-core run time, 8-10
    min on ``workers = 2`` processes (``workers = 1``: 17-20 min), on the lab's 0.7 prior (usually cached; else
    under a minute to pretrain). 64 rollouts per step = 8 questions: 600 steps are 150 epochs of 32
    questions, 37.5 of 128, 9.4 of 512 and 2.3 of 2048 (the paper, 32 questions per step: 600, 150, 37.5,
    9.4).

    lr 1e-4 and the ``accuracy`` rule, from single pilot runs of the 0.7 prior (2000 questions unless said): at
    lr 1e-4 the training accuracy (the ground-truth reward of the rollouts, 25-step means) went 0.50 -> a
    plateau near 0.30 -> 0.01 from step ~400, a late collapse inside the budget as in the paper; its reward
    accuracy bottomed out at 0.14-0.17 (samples off the majority earn 0 from both rewards and count as
    agreements), so the paper's threshold rule (< 0.01) cannot fire at this lr, and the peak rule fires on the
    first fall of reward accuracy that sharpening itself causes. At 3e-4 every size collapses at once
    (training accuracy ~0 within 100 steps on 32 and on 512 questions; the threshold rule fired at step 507 on
    32 questions and not at all on 512), so no size effect could show there.

    The training sets are nested (the first ``n`` of one shuffled list); each size's held-out set is the next
    ``n_heldout`` questions of that list, so the held-out sets differ between sizes (uniform draws from the
    same sums): compare each size's accuracy with its own start.

    Attributes
    ----------
    sizes : training-set sizes (``n_train`` of each run), increasing
    lr : learning rate (constant)
    control_size : the size of the ground-truth control (one of ``sizes``)
    rule : the collapse rule of the verdict (all three are reported): ``accuracy``
        (:func:`training_collapse`: the training accuracy's last ``smoothing``-step mean lies more than
        ``decline`` below the prior's exact accuracy), ``threshold`` (reward accuracy below ``threshold``, the paper's MCS) or
        ``peak`` (the noise-aware peak rule on reward accuracy)
    decline : the ``accuracy`` rule's fall
    threshold, smoothing : as in :func:`empirical.lab.experiments.prior_ladder_real.collapse_steps`
    control_seeds : seeds of the ground-truth control (3 here: the control's held-out curve gets an error bar)
    workers : runs trained at a time, each in its own one-thread process (:func:`ensure_runs`)
    """

    sizes: tuple[int, ...] = with_help((32, 128, 512, 2048), "training-set sizes (n_train)")
    lr: float = with_help(1e-4, "learning rate")
    steps: int = with_help(600, "GRPO steps per run (the paper's budget)")
    eval_every: int = with_help(50, "steps between held-out evals (must divide steps)")
    probe_every: int = with_help(0, "steps between exact probes (0 = none: not read here)")
    control_size: int = with_help(2048, "training-set size of the ground-truth control")
    rule: str = with_help("accuracy", "collapse rule of the verdict: accuracy | threshold | peak")
    decline: float = with_help(
        0.1, "accuracy rule: fall of the training accuracy that is a collapse"
    )
    threshold: float = with_help(0.01, "threshold rule: reward accuracy below this (paper: 0.01)")
    smoothing: int = with_help(25, "trailing-mean window (steps) before every rule")
    control_seeds: int = with_help(3, "seeds of the ground-truth control")
    workers: int = with_help(2, WORKERS_HELP)

    def __post_init__(self) -> None:
        super().__post_init__()
        s = self.sizes
        if not s or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in s):
            raise ValueError(f"sizes: need positive integers, got {s}")
        if list(s) != sorted(set(s)):
            raise ValueError(f"sizes: must be strictly increasing, got {s}")
        if self.control_size not in s:
            raise ValueError(f"control_size: must be one of sizes {s}, got {self.control_size}")
        if self.rule not in RULES:
            raise ValueError(f"rule: must be one of {RULES}, got {self.rule!r}")
        if self.steps % self.eval_every:
            raise ValueError(f"eval_every: must divide steps={self.steps}, got {self.eval_every}")
        if not self.lr > 0 or not 0 < self.threshold < 1 or not 0 < self.decline < 1:
            raise ValueError(
                f"lr, threshold, decline: need > 0, (0, 1), (0, 1), got {self.lr}, {self.threshold}, "
                f"{self.decline}"
            )
        w = self.smoothing
        if isinstance(w, bool) or not isinstance(w, int) or w < 1 or w > self.steps:
            raise ValueError(f"smoothing: must be an integer in [1, steps], got {w!r}")
        for name in ("control_seeds",):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {v!r}")


def training_collapse(values: np.ndarray, start: float, smoothing: int, decline: float) -> dict:
    r"""The ``accuracy`` rule on a training-accuracy series ``(S,)`` (one entry per step).

    With :math:`\bar a_{\text{last}}` the mean of the last ``smoothing`` entries and :math:`A_0` = ``start``
    (the prior's accuracy: its exact held-out accuracy at step 0, the expected accuracy of one rollout on a
    uniform draw of questions), the run collapsed when :math:`\bar a_{\text{last}} < A_0 -` ``decline``: the
    rollouts' ground-truth accuracy ended well below the prior's (small sets memorised question by question
    keep or raise it; a collapse onto shared wrong answers takes it towards 0). The prior's exact accuracy
    rather than the first training batches, because at a high lr a run can fall within its first window.
    Returns ``first`` (the first full window's mean), ``last``, ``best`` (the largest full-window mean),
    ``start`` and ``collapsed``.

    >>> training_collapse(np.array([0.5, 0.5, 0.1, 0.1]), 0.5, 2, 0.1)["collapsed"]
    True
    """
    from sharpen.metrics import trailing_mean

    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size < smoothing:
        raise ValueError(
            f"values: need a 1-D series of >= {smoothing} entries, got shape {v.shape}"
        )
    full = trailing_mean(v, smoothing)[smoothing - 1 :]
    last = float(full[-1])
    return {"first": float(full[0]), "last": last, "best": float(full.max()), "start": float(start),
            "collapsed": last < start - decline}  # fmt: skip


def size_verdict(shares: dict[int, float], small: int = 128, large: int = 512) -> bool | None:
    r"""The paper's pattern from the collapse share of each size: True when every size ``<= small`` has share 0
    and every size ``>= large`` share 1 (and both kinds exist); False when the large sizes collapse no more
    often than the small ones (mean share) -- no size effect in the paper's direction; None otherwise.

    >>> size_verdict({32: 0.0, 128: 0.0, 512: 1.0, 2048: 1.0}), size_verdict({32: 0.0, 2048: 0.0})
    (True, False)
    >>> size_verdict({32: 0.0, 128: 1 / 3, 512: 1.0}) is None
    True
    """
    lo = [v for n, v in shares.items() if n <= small]
    hi = [v for n, v in shares.items() if n >= large]
    if lo and hi and all(v == 0 for v in lo) and all(v == 1 for v in hi):
        return True
    if not lo or not hi or np.mean(hi) <= np.mean(lo):
        return False
    return None


def dataset_size_real(config: DatasetSizeRealConfig = DatasetSizeRealConfig()) -> SimResult:
    r"""Per size: collapse, held-out exact accuracy and KL to the initial policy.

    * **Collapse** by three rules, all on ``smoothing``-step full windows: ``accuracy``
      (:func:`training_collapse` on the rollouts' ground-truth accuracy, ``ground_truth_ratio``), and the two
      MCS rules on reward accuracy (:func:`~empirical.lab.experiments.prior_ladder_real.collapse_steps`,
      firing within ``steps``). The verdict reads ``rule``.
    * **Held-out accuracy**: exact accuracy of one sample on ``n_heldout`` questions at the start, the peak and
      the end (mean over seeds with its standard error over seeds, and the standard error over questions of
      one eval).
    * **KL**: the loop's ``kl_to_initial`` (k3 per token at the rollout temperature) averaged over the last
      ``smoothing`` steps, and the sequence-level ``behaviour/kl_seq_k3``; the ratio of the 512- to the
      32-question KL beside the paper's ~2.

    Verdict: :func:`size_verdict` on the collapse share of each size (the paper: <= 128 never, >= 512 always).
    """
    from sharpen.collapse import NOISE_SIGMAS
    from sharpen.metrics import trailing_mean

    cfg = config
    mv_cfgs = [cfg.train_config("majority_voting", cfg.lr, s, n_train=n, checkpoint_every=0)
               for n in cfg.sizes for s in range(cfg.seeds)]  # fmt: skip
    gt_cfgs = [cfg.train_config("ground_truth", cfg.lr, s, n_train=cfg.control_size, checkpoint_every=0)
               for s in range(cfg.control_seeds)]  # fmt: skip
    runs = load_runs(ensure_runs(mv_cfgs + gt_cfgs, cfg.runs_dir, workers=cfg.workers))
    mv, gt = runs[: len(mv_cfgs)], runs[len(mv_cfgs) :]
    w = cfg.smoothing
    traj: dict[str, np.ndarray] = {}

    def read(runs, key: str) -> dict:
        series: dict[str, list] = {}
        found = []
        for run in runs:
            st, ra = metric_series(run, "reward_accuracy")
            train_acc = metric_series(run, "ground_truth_ratio")[1]
            f = collapse_steps(
                st, ra, threshold=cfg.threshold, smoothing=w, noise_sigmas=NOISE_SIGMAS
            )
            es, acc, se = eval_series(run)
            found.append({"accuracy": training_collapse(train_acc, acc[0], w, cfg.decline), **f})
            for name, v in (("reward_accuracy", ra), ("train_accuracy", train_acc),
                            ("kl", metric_series(run, "kl_to_initial")[1]),
                            ("kl_seq", metric_series(run, "behaviour/kl_seq_k3")[1]),
                            ("majority_ratio", metric_series(run, "majority_ratio")[1])):  # fmt: skip
                series.setdefault(name, []).append(trailing_mean(v, w))
            series.setdefault("exact_accuracy", []).append(acc)
            series.setdefault("se", []).append(se)
            traj["step"], traj["eval_step"] = st.astype(float), es.astype(float)
        for name in ("reward_accuracy", "train_accuracy", "exact_accuracy", "kl"):
            traj[f"{key}/{name}"] = np.stack(series[name])
        out: dict = {
            "collapsed": {"accuracy": [f["accuracy"]["collapsed"] for f in found],
                          **{r: [f[r] is not None for f in found] for r in ("threshold", "peak")}},
            "mcs": {r: [f[r] for f in found] for r in ("threshold", "peak")},
            "train_accuracy_first": [f["accuracy"]["first"] for f in found],
            "train_accuracy_last": [f["accuracy"]["last"] for f in found],
        }  # fmt: skip
        acc = np.stack(series["exact_accuracy"])  # (seeds, evals)
        j = int(np.argmax(acc.mean(axis=0)))
        for name, col in (("initial", 0), ("peak", j), ("final", -1)):
            m, se = mean_se(acc[:, col])
            out[f"{name}_accuracy"], out[f"{name}_accuracy_se_seeds"] = float(m), float(se)
            out[f"{name}_accuracy_se_questions"] = float(np.nanmean([s[col] for s in series["se"]]))
        out["peak_step"] = int(traj["eval_step"][j])
        out["change"], out["change_se"] = (float(v) for v in mean_se(acc[:, -1] - acc[:, 0]))
        for name in ("kl", "kl_seq", "reward_accuracy", "train_accuracy", "majority_ratio"):
            m, se = mean_se(np.array([v[-1] for v in series[name]]))
            out[f"final_{name}"], out[f"final_{name}_se"] = float(m), float(se)
        out["collapse_share"] = float(np.mean(out["collapsed"][cfg.rule]))
        return out

    per_size = {
        str(n): read(mv[i * cfg.seeds : (i + 1) * cfg.seeds], f"n{n}")
        for i, n in enumerate(cfg.sizes)
    }
    control = read(gt, f"ground_truth/n{cfg.control_size}")
    shares = {n: per_size[str(n)]["collapse_share"] for n in cfg.sizes}
    holds = size_verdict(shares)
    kl = {n: per_size[str(n)]["final_kl"] for n in cfg.sizes}
    ratio = kl[512] / kl[32] if 512 in kl and 32 in kl and kl[32] > 0 else math.nan

    def count(e: dict, rule: str) -> str:
        return f"{sum(e['collapsed'][rule])}/{len(e['collapsed'][rule])}"

    size_text = "; ".join(
        f"{n}: collapsed {count(e, 'accuracy')} / {count(e, 'threshold')} / {count(e, 'peak')} (training accuracy "
        f"first window {np.mean(e['train_accuracy_first']):.3f} -> last {np.mean(e['train_accuracy_last']):.3f}, "
        f"reward accuracy -> "
        f"{e['final_reward_accuracy']:.3f}), held-out {e['initial_accuracy']:.3f} -> peak {e['peak_accuracy']:.3f} "
        f"(step {e['peak_step']}) -> {e['final_accuracy']:.3f}+-{e['final_accuracy_se_seeds']:.3f} (SE over "
        f"questions {e['final_accuracy_se_questions']:.3f}), KL {e['final_kl']:.3f}+-{e['final_kl_se']:.3f}"
        + (f" (paper {PAPER_KL[n]:.3f})" if n in PAPER_KL else "")
        for n, e in ((n, per_size[str(n)]) for n in cfg.sizes)
    )  # fmt: skip
    summary = (
        f"Majority voting per training-set size ({cfg.seeds} seeds, {cfg.steps} steps, lr {cfg.lr:g}; collapsed "
        f"runs by the accuracy rule (training accuracy ends > {cfg.decline:g} below the prior's exact accuracy) / the threshold "
        f"rule (reward accuracy < {cfg.threshold:g}) / the peak rule, {w}-step means; the verdict reads the "
        f"{cfg.rule} rule): {size_text}. KL 512/32 = {ratio:.2f} (paper ~2). Ground-truth control at "
        f"{cfg.control_size} ({cfg.control_seeds} seed(s)): held-out {control['initial_accuracy']:.3f} -> "
        f"{control['final_accuracy']:.3f}, collapsed {count(control, cfg.rule)}. The paper: <= 128 never "
        f"collapse, >= 512 always."
    )  # fmt: skip
    numbers = {"per_size": per_size, "collapse_share": {str(k): v for k, v in shares.items()},
               "control": control, "kl_ratio_512_32": ratio, "paper_kl": {str(k): v for k, v in PAPER_KL.items()}}  # fmt: skip
    traj["sizes"] = np.array(cfg.sizes, dtype=float)
    return SimResult(
        "dataset_size_real", asdict(cfg), traj, Verdict("exploration", holds, summary, numbers)
    )


def draw(res: SimResult, fig) -> None:
    """Per size (seed means, seeds thin; the ground-truth control dashed): training accuracy (the ``accuracy``
    rule's metric), reward accuracy (the MCS rules'), held-out exact accuracy and KL to the initial policy."""
    from sim.plots import mean_line

    t, nb, c = res.trajectories, res.verdict.numbers, res.config
    axes = fig.subplots(1, 4)
    panels = (("train_accuracy", "step", f"training accuracy (GT reward, {c['smoothing']}-step mean)"),
              ("reward_accuracy", "step", f"reward accuracy ({c['smoothing']}-step mean)"),
              ("exact_accuracy", "eval_step", "held-out exact accuracy"),
              ("kl", "step", "KL to the initial policy (k3 per token)"))  # fmt: skip
    for ax, (name, x, label) in zip(axes, panels, strict=True):
        for k, n in enumerate(c["sizes"]):
            share = nb["collapse_share"][str(n)]
            mean_line(
                ax,
                t[x],
                t[f"n{n}/{name}"],
                f"{n} ({c['rule']}: {share:.0%} collapsed)",
                color=f"C{k}",
            )
        mean_line(ax, t[x], t[f"ground_truth/n{c['control_size']}/{name}"], f"GT {c['control_size']}",
                  color="k", ls="--")  # fmt: skip
        ax.set(xlabel="step", ylabel=label)
    axes[1].axhline(c["threshold"], color="k", ls=":", lw=1)
    axes[1].set_yscale("log")
    axes[0].set_title("Majority voting per training-set size")
    axes[0].legend(fontsize=6)


register(
    Experiment(
        "dataset_size_real",
        "exploration",
        DatasetSizeRealConfig,
        dataset_size_real,
        {
            "sizes": (8, 32),
            "control_size": 32,
            "seeds": 2,
            "steps": 16,
            "eval_every": 8,
            "n_heldout": 64,
            "rollout_batch_size": 32,
            "smoothing": 4,
            "control_seeds": 1,
            "workers": 1,
        },  # fmt: skip
        "Training-set size 32..2048 under majority voting: collapse, held-out accuracy, KL; GT control",
        plot=draw,
        figsize=(19.0, 4.2),
    )
)
