"""Simulated run folders for the figures' default data, produced with :mod:`sim`'s public API.

When no run folder is given, a figure needs simulated training runs with the same files a real run
writes (``metrics.jsonl``, ``probes.jsonl``, ``eval.jsonl``, ``config.json``), so that every figure
has one reading path. :func:`ensure_run` trains an answer-level policy with
:func:`sim.train.train_answer_level` (sampled GRPO, SGD) in chunks of ``probe_every`` steps and,
between chunks, probes the first ``n_probe`` training questions with ``probe_samples`` sampled
answers (:func:`sim.core.sample_counts`, on a separate random stream so probing does not change
training). Held-out questions share the policy's weights and are never trained on.

The policy is :class:`sim.core.SharedPolicy` (shared weights over random answer features plus a
per-question term), so training on some questions moves the others -- the mechanism behind
held-out changes and dataset-size effects. Nothing here is tuned to produce a finding: the
figures show whatever this simulation gives.

Runs are cached: a folder whose ``config.json`` equals the spec is reused.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from sharpen.records import ProbeRecord, RunWriter

__all__ = ["SimRunSpec", "ensure_run"]

SIM_REWARDS = (
    "majority_voting",
    "ground_truth",
    "self_verification",
    "probability",
    "trajectory_entropy",
    "token_entropy",
    "self_certainty",
    "vote_share",
)


@dataclass(frozen=True)
class SimRunSpec:
    """One simulated training run.

    Attributes
    ----------
    reward : reward name (see :data:`SIM_REWARDS`).
    n_questions : training questions Q.
    n_heldout : held-out questions (share the weights, never trained).
    n_answers : answers per question K.
    strength : prior strength: logit bonus of the correct answer (see :class:`sim.core.PriorConfig`).
    n_features : dimension D of the shared answer features.
    lr : SGD learning rate.
    n_rollouts : N rollouts per question and step.
    batch_size : questions per step (None: all).
    steps : training steps.
    probe_every : steps between probes.
    n_probe : probe questions (the first of the training set).
    probe_samples : samples M per probe.
    verifier_accuracy : accuracy of the simulated verifier (self-verification only).
    seed : seed of the prior, training and probing streams.
    """

    reward: str = "majority_voting"
    n_questions: int = 64
    n_heldout: int = 64
    n_answers: int = 6
    strength: float = 0.7
    n_features: int = 8
    lr: float = 0.3
    n_rollouts: int = 8
    batch_size: int | None = 32
    steps: int = 300
    probe_every: int = 10
    n_probe: int = 24
    probe_samples: int = 64
    verifier_accuracy: float = 0.9
    seed: int = 0
    policy: Literal["shared"] = "shared"

    def __post_init__(self) -> None:
        if self.reward not in SIM_REWARDS:
            raise ValueError(f"reward: unknown {self.reward!r}; valid: {', '.join(SIM_REWARDS)}")
        for name in ("n_questions", "n_heldout", "n_answers", "n_features", "n_rollouts"):
            if int(getattr(self, name)) < (2 if name == "n_answers" else 1):
                raise ValueError(f"{name}: too small, got {getattr(self, name)}")
        if self.steps < 1 or self.probe_every < 1 or self.probe_samples < 1 or self.n_probe < 1:
            raise ValueError("steps, probe_every, probe_samples, n_probe: must be >= 1")
        if not self.lr > 0:
            raise ValueError(f"lr: must be > 0, got {self.lr}")

    def key(self) -> dict:
        return {"kind": "sim", "experiment": "paper_figures.simruns", **asdict(self)}


class _Heldout:
    """Held-out questions of a shared policy: the same weights, fixed base and features."""

    def __init__(self, policy, base: np.ndarray, features: np.ndarray) -> None:
        self.policy, self.base, self.features = policy, base, features

    def logits(self) -> np.ndarray:
        return self.base + self.features @ self.policy.params["w"]


def _probe_records(step, probs, correct, init_answer, m, rng) -> list[ProbeRecord]:
    from sim.core import sample_counts

    counts = sample_counts(probs, m, rng)  # (P, K)
    out = []
    for q in range(probs.shape[0]):
        c = counts[q]
        maj = int(np.argmax(c))
        ia = maj if init_answer[q] < 0 else int(init_answer[q])
        out.append(
            ProbeRecord(
                step=int(step),
                question_id=f"q{q:03d}",
                n_samples=int(m),
                majority_answer=str(maj),
                p_majority=float(c[maj] / m),
                initial_majority_answer=str(ia),
                p_initial_majority=float(c[ia] / m),
                label=str(int(correct[q])),
                majority_correct=bool(maj == correct[q]),
                sample_accuracy=float(c[correct[q]] / m),
            )
        )
    return out


def ensure_run(spec: SimRunSpec, root: str | Path) -> Path:
    """The run folder of ``spec`` under ``root`` (created by training if not cached); returns its path."""
    from sim.core import GRPOConfig, PriorConfig, SharedPolicy, sample_prior, softmax
    from sim.train import train_answer_level

    if not isinstance(spec, SimRunSpec):
        raise ValueError(f"spec: expected SimRunSpec, got {type(spec).__name__}")
    key = spec.key()
    tag = f"{spec.reward}-q{spec.n_questions}-s{spec.strength:g}-lr{spec.lr:g}-seed{spec.seed}"
    run_dir = Path(root) / tag
    cfg = run_dir / "config.json"
    if cfg.exists() and (run_dir / "probes.jsonl").exists():
        try:
            if json.loads(cfg.read_text()) == json.loads(json.dumps(key)):
                return run_dir
        except json.JSONDecodeError:
            pass
    if run_dir.exists():
        for f in run_dir.iterdir():
            if f.is_file():
                f.unlink()
    rng = np.random.default_rng(spec.seed)
    probe_rng = np.random.default_rng([spec.seed, 1])
    q_all = spec.n_questions + spec.n_heldout
    prior = sample_prior(
        PriorConfig(n_questions=q_all, n_answers=spec.n_answers, strength=spec.strength), rng
    )
    features = rng.standard_normal((q_all, spec.n_answers, spec.n_features)) / np.sqrt(
        spec.n_features
    )
    tr, ho = slice(0, spec.n_questions), slice(spec.n_questions, q_all)
    policy = SharedPolicy(prior.logits[tr], features[tr], per_question=True)
    heldout = _Heldout(policy, prior.logits[ho], features[ho])
    correct = prior.correct[tr]
    grpo = GRPOConfig(
        n_rollouts=spec.n_rollouts,
        lr=spec.lr,
        optimizer="sgd",
        batch_size=spec.batch_size,
        clip_eps=None,
    )
    ref = policy.logits().copy()
    w = RunWriter(run_dir)
    w.write_json("config.json", key)
    n_probe = min(spec.n_probe, spec.n_questions)
    init_answer = np.full(n_probe, -1)
    first = _probe_records(
        0, softmax(ref[:n_probe]), correct[:n_probe], init_answer, spec.probe_samples, probe_rng
    )
    init_answer = np.array([int(r.majority_answer) for r in first])
    w.log_probes(first)
    done = 0
    while done < spec.steps:
        chunk = min(spec.probe_every, spec.steps - done)
        traj = train_answer_level(
            policy,
            correct,
            reward=spec.reward,
            grpo=grpo,
            steps=chunk,
            rng=rng,
            ref_logits=ref,
            verifier_accuracy=spec.verifier_accuracy,
            eval_questions={"heldout": (heldout, prior.correct[ho])},
        )
        lo = 0 if done == 0 else 1  # index 0 repeats the previous chunk's last state
        for i in range(lo, chunk + 1):
            rec = {k: float(v[i]) for k, v in traj.items() if not k.startswith("eval/")}
            rec["ground_truth_ratio"] = rec.pop("accuracy")
            rec["majority_voting_reward"] = rec.pop("reward_mean")
            w.log_metrics(done + i, {k: v for k, v in rec.items() if np.isfinite(v)})
        done += chunk
        p = softmax(policy.logits())
        ent = float(-(p * np.log(np.maximum(p, 1e-300))).sum(axis=1).mean())
        w.log_metrics(done, {"entropy": ent})
        w.log_eval(
            done,
            "heldout",
            {
                "accuracy": float(traj["eval/heldout/accuracy"][-1]),
                "greedy_accuracy": float(traj["eval/heldout/greedy_accuracy"][-1]),
            },
        )
        w.log_probes(
            _probe_records(
                done, p[:n_probe], correct[:n_probe], init_answer, spec.probe_samples, probe_rng
            )
        )
    # held-out at step 0 (before training) for the curves
    p0 = softmax(heldout.base + heldout.features @ np.zeros(spec.n_features))
    c_ho = prior.correct[ho]
    w.log_eval(
        0,
        "heldout",
        {
            "accuracy": float(p0[np.arange(len(c_ho)), c_ho].mean()),
            "greedy_accuracy": float((p0.argmax(axis=1) == c_ho).mean()),
        },
    )
    return run_dir
