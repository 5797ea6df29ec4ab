r"""The shared answer-level task: correctness and a shortcut as features that every question shares.

:class:`SharedTaskConfig` draws questions whose logits share parameters, :math:`z_{qk}=b_{qk}+\phi_{qk}\cdot w`,
so training some questions moves others; :func:`shared_run` trains one such policy and measures it on held-out
questions, :func:`shared_runs` trains many at once (the same series, run by run, bit for bit). The explorations ``rise_then_fall``, ``dataset_size``, ``mcs_gt_gain`` and ``self_verification`` run on
it; their configs inherit :class:`SharedTaskRuns`. :func:`classify_curve` names the shape of a held-out accuracy
curve.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from sim._threads import torch_single_thread
from sim.configs import GRPORuns, with_help
from sim.core import GRPOConfig, PriorConfig, SharedPolicy, sample_prior
from sim.train import train_answer_level, train_shared_runs

__all__ = [
    "SharedTaskConfig",
    "SharedTaskRuns",
    "make_shared_task",
    "shared_run",
    "shared_runs",
    "classify_curve",
    "tail_mean",
]


@dataclass(frozen=True)
class SharedTaskConfig:
    r"""Answer-level questions whose logits share parameters: :math:`z_{qk}=b_{qk}+\phi_{qk}\cdot w`.

    Features :math:`\phi_{qk}\in\mathbb R^D`: coordinate 0 is ``correct_weight`` on the correct answer (the
    transferable "skill"), coordinate 1 is 1 on one wrong answer per question, the *shortcut* (a shared error
    pattern, e.g. a plausible distractor), the other D - 2 are idiosyncratic N(0, 1/D) answer embeddings (what lets
    the shared weights also memorise individual questions). Base logits :math:`b` are the prior
    (:class:`sim.core.PriorConfig` with ``strength``, ``spread``) plus ``shortcut_bonus`` on the shortcut answer.
    ``w`` starts at 0.

    Attributes
    ----------
    n_answers : K >= 3 (a correct answer, a shortcut and at least one other)
    n_features : D >= 3
    correct_weight : feature value of the correct answer on coordinate 0
    shortcut_bonus : initial logit bonus of the shortcut answer
    strength, spread : the prior of the base logits
    """

    n_answers: int = 8
    n_features: int = 16
    correct_weight: float = 1.0
    shortcut_bonus: float = 1.0
    strength: float = 1.0
    spread: float = 1.0

    def __post_init__(self) -> None:
        if self.n_answers < 3:
            raise ValueError(
                f"n_answers: need K >= 3 (correct, shortcut, other), got {self.n_answers}"
            )
        if self.n_features < 3:
            raise ValueError(f"n_features: need D >= 3, got {self.n_features}")
        if not self.spread > 0:
            raise ValueError(f"spread: must be > 0, got {self.spread}")


@dataclass(frozen=True)
class SharedTaskRuns(GRPORuns):
    """:class:`sim.configs.GRPORuns` on the shared task: the task, a held-out set and a batch of questions."""

    task: SharedTaskConfig = SharedTaskConfig()
    n_heldout: int = with_help(512, "held-out questions (same task, drawn after the training set)")
    batch_size: int = with_help(64, "questions per GRPO step")

    def __post_init__(self) -> None:
        super().__post_init__()
        if int(self.n_heldout) < 1:
            raise ValueError(f"n_heldout: must be >= 1, got {self.n_heldout}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size: must be >= 1, got {self.batch_size}")


def make_shared_task(
    config: SharedTaskConfig, n_questions: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``n_questions`` questions: base logits (Q, K), correct answers (Q,), features (Q, K, D)."""
    if int(n_questions) < 1:
        raise ValueError(f"n_questions: the dataset must not be empty, got {n_questions}")
    q, k, d = int(n_questions), config.n_answers, config.n_features
    prior = sample_prior(PriorConfig(q, k, config.strength, config.spread), rng)
    rows = np.arange(q)
    feats = rng.standard_normal((q, k, d)) / np.sqrt(d)
    feats[:, :, :2] = 0.0
    feats[rows, prior.correct, 0] = config.correct_weight
    shortcut = (prior.correct + 1 + rng.integers(0, k - 1, size=q)) % k
    feats[rows, shortcut, 1] = 1.0
    base = prior.logits.copy()
    base[rows, shortcut] += config.shortcut_bonus
    return base, prior.correct, feats


def shared_run(
    task: SharedTaskConfig,
    *,
    n_questions: int,
    n_heldout: int,
    reward: str,
    grpo: GRPOConfig,
    steps: int,
    seed: int,
    per_question: bool = False,
    probe: np.ndarray | None = None,
    verifier_accuracy: float = 0.9,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Train a fresh shared policy (dataset and held-out set from ``seed``); returns its series and train labels.

    The held-out policy shares the trained weights ``w`` (the same array), so ``eval/heldout/accuracy`` is the
    trained policy on questions it never saw.
    """
    data_rng = np.random.default_rng(seed)
    base, correct, feats = make_shared_task(task, n_questions, data_rng)
    hb, hc, hf = make_shared_task(task, n_heldout, data_rng)
    pol = SharedPolicy(base, feats, per_question=per_question)
    held = SharedPolicy(hb, hf)
    held.params["w"] = pol.params["w"]  # the same array: the optimizer updates it in place
    with torch_single_thread():
        out = train_answer_level(
            pol,
            correct,
            reward=reward,
            grpo=grpo,
            steps=steps,
            rng=np.random.default_rng(seed + 1),
            eval_questions={"heldout": (held, hc)},
            probe=probe,
            verifier_accuracy=verifier_accuracy,
        )
    return out, correct


def shared_runs(
    tasks: list[SharedTaskConfig],
    seeds: list[int],
    *,
    n_questions: int,
    n_heldout: int,
    reward: str,
    grpo: GRPOConfig,
    steps: int,
    per_question: bool = False,
    probe: np.ndarray | None = None,
    verifier_accuracies: list[float] | None = None,
    series: Collection[str] | None = None,
) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
    """:func:`shared_run` for each ``(tasks[r], seeds[r], verifier_accuracies[r])``, all runs advanced together.

    Each run draws its dataset and held-out set from ``seed`` and trains with its own generator ``seed + 1``
    (:func:`sim.train.train_shared_runs`), so run r's series and labels equal those of ``shared_run(tasks[r],
    seed=seeds[r], ...)`` bit for bit; ``probe`` is recorded in every run. ``series``: the measured series to
    compute (the held-out set is ``eval/heldout/...``), None for all; the others are left out of the results.
    """
    if len(tasks) != len(seeds) or not seeds:
        raise ValueError(
            f"tasks, seeds: need one task per seed and at least one, got {len(tasks)}, {len(seeds)}"
        )
    pols, held, corrects, held_correct, rngs = [], [], [], [], []
    for task, seed in zip(tasks, seeds, strict=True):
        data_rng = np.random.default_rng(seed)
        base, correct, feats = make_shared_task(task, n_questions, data_rng)
        hb, hc, hf = make_shared_task(task, n_heldout, data_rng)
        pol = SharedPolicy(base, feats, per_question=per_question)
        h = SharedPolicy(hb, hf)
        h.params["w"] = pol.params["w"]
        pols.append(pol)
        held.append(h)
        corrects.append(correct)
        held_correct.append(hc)
        rngs.append(np.random.default_rng(seed + 1))
    with torch_single_thread():
        outs = train_shared_runs(
            pols,
            corrects,
            reward=reward,
            grpo=grpo,
            steps=steps,
            rngs=rngs,
            verifier_accuracies=verifier_accuracies,
            eval_questions={"heldout": (held, held_correct)},
            probe=probe,
            series=series,
        )
    return list(zip(outs, corrects, strict=True))


def tail_mean(x: np.ndarray, frac: float = 0.05) -> float:
    """Mean of the last ``frac`` of ``x`` (at least one entry), NaNs skipped: a curve's "final" value."""
    n = max(1, int(round(len(x) * frac)))
    return float(np.nanmean(x[-n:]))


def classify_curve(acc: np.ndarray, *, rise: float, decline: float) -> str:
    """``"rise-then-fall"`` (peak >= start + ``rise`` and final <= peak - ``decline``), ``"rise only"``,
    ``"fall only"`` (final <= start - ``decline`` without a rise) or ``"flat"``; final = mean of the last 5%."""
    start, peak, final = float(acc[0]), float(np.max(acc)), tail_mean(acc)
    rose = peak >= start + rise
    fell = final <= peak - decline
    if rose and fell:
        return "rise-then-fall"
    if rose:
        return "rise only"
    if final <= start - decline:
        return "fall only"
    return "flat"
