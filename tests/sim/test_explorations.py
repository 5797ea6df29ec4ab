"""Explorations and the sim grid: each runs (tiny configs), keeps its books, and is deterministic.

Explorations have no "right answer" to assert -- their verdicts are findings -- so these tests check bookkeeping
(shapes, ranges, KL >= 0, counts), determinism (same seed -> identical trajectories), the result files readable by
sharpen's analysis tools, and the exactness of the grid's batched count path against explicit rollouts.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sharpen.fitting import trajectories_from_probes
from sharpen.grpo import group_advantages
from sharpen.records import read_jsonl
from sim.api import available_experiments, run
from sim.core import grpo_logit_grad, sample_counts, softmax
from sim.experiments.failure_modes import classify_failure
from sim.experiments.grid import GridConfig, GridSetting, _layout, class_rewards
from sim.plots import save_figure
from sim.shared_task import SharedTaskConfig, classify_curve, make_shared_task

EXPLORATIONS = (
    "failure_modes",
    "rise_then_fall",
    "dataset_size",
    "mcs_gt_gain",
    "single_question",
    "self_verification",
    "grid",
)
TINY = {
    "failure_modes": {"steps": 6, "rewards": ("probability", "majority_voting")},
    "rise_then_fall": {"steps": 12, "n_questions": 32, "n_heldout": 16, "batch_size": 16},
    "dataset_size": {"steps": 8, "sizes": (8, 64), "n_heldout": 16},
    "mcs_gt_gain": {"steps": 12, "n_questions": 64, "n_heldout": 16},
    "single_question": {"steps": 8},
    "self_verification": {"steps": 8, "n_questions": 32, "n_heldout": 16, "batch_size": 16},
    "grid": {"steps": 6},
}


def test_every_exploration_is_registered():
    assert set(EXPLORATIONS) <= set(available_experiments())


def _assert_same(a, b):
    assert set(a.trajectories) == set(b.trajectories)
    for k in a.trajectories:
        np.testing.assert_array_equal(a.trajectories[k], b.trajectories[k], err_msg=k)
    assert a.verdict.summary == b.verdict.summary and a.verdict.holds == b.verdict.holds
    dump = json.dumps  # NaN != NaN, so compare the numbers as text
    assert dump(a.verdict.numbers, sort_keys=True) == dump(b.verdict.numbers, sort_keys=True)


@pytest.mark.parametrize("name", EXPLORATIONS)
def test_exploration_runs_is_deterministic_and_saves(name, tmp_path):
    res = run(name, quick=True, **TINY[name])
    _assert_same(res, run(name, quick=True, **TINY[name]))
    v = res.verdict
    assert v.kind == "exploration" and v.holds in (True, False, None) and v.summary
    for key, arr in res.trajectories.items():
        if arr.dtype.kind == "f":
            assert np.isfinite(arr[~np.isnan(arr)]).all(), key
        if key.endswith(
            ("accuracy", "ratio", "reward_mean", "p_max", "unparseable", "repetition_rate")
        ):
            assert np.nanmin(arr) >= 0 and np.nanmax(arr) <= 1 + 1e-12, key
        if key.endswith("kl") or "/kl" in key:
            assert np.nanmin(arr) >= 0, key
    out = res.save(tmp_path / name)
    assert (out / "metrics.jsonl").exists() and (out / "verdict.json").exists()
    save_figure(res, tmp_path / f"{name}.png")
    assert (tmp_path / f"{name}.png").stat().st_size > 1000


def test_rise_then_fall_writes_probes_readable_by_sharpen_analysis(tmp_path):
    res = run("rise_then_fall", quick=True, **TINY["rise_then_fall"], n_probe=3, probe_every=4)
    res.save(tmp_path / "r")
    records, bad = read_jsonl(tmp_path / "r" / "probes.jsonl")
    assert bad == 0 and len(records) == 3 * 4  # 3 questions x probe steps 0, 4, 8, 12
    traj, _ = trajectories_from_probes(records)
    p = res.trajectories["probe/probs"]
    m0 = p[0].argmax(axis=1)
    np.testing.assert_allclose(traj.p_initial[0], p[:, 0, m0[0]])
    np.testing.assert_array_equal(traj.steps, [0, 4, 8, 12])
    metrics, _ = read_jsonl(tmp_path / "r" / "metrics.jsonl")
    assert {"majority_voting_reward", "reward_accuracy", "label_accuracy", "val_accuracy"} <= set(
        metrics[1]
    )
    # the run contract: a header, the held-out series in eval.jsonl, KL under its METRICS name
    from sharpen.records import KL, load_run

    folder = load_run(tmp_path / "r")
    h = folder.header
    assert (h.kind, h.task, h.n_rollouts, h.seed) == (
        "sim",
        "rise_then_fall",
        res.config["n_rollouts"],
        0,
    )
    assert [e["accuracy"] for e in folder.evals] == res.trajectories["val_accuracy"].tolist()
    assert [m[KL] for m in folder.metrics] == res.trajectories["kl"].tolist()


def test_single_question_writes_exact_probes_that_sharpen_fit_reads(tmp_path):
    from sharpen.run_analysis import analyze_run
    from sim.api import EXPERIMENTS
    from sim.core import sample_prior
    from sim.experiments.single_question import SingleQuestionConfig

    kw = {"steps": 8, "seeds": 1, "rewards": ("trajectory_entropy",), "probe_every": 2}
    cfg = SingleQuestionConfig(**{**EXPERIMENTS["single_question"].quick, **kw})
    n = cfg.prior.n_questions
    res = run("single_question", quick=True, **kw, n_probe=n)
    p = res.trajectories["probe/probs"]  # (L, M, K)
    assert p.shape == (5, n, cfg.prior.n_answers)
    np.testing.assert_array_equal(res.trajectories["probe/step"], [0, 2, 4, 6, 8])
    # step 0 is the first seed's prior exactly
    prior = sample_prior(cfg.prior, np.random.default_rng(cfg.seed))
    np.testing.assert_allclose(p[0], prior.probs, atol=1e-12)
    np.testing.assert_array_equal(res.trajectories["probe/correct"], prior.correct)
    # probing every question of the one seed reproduces the verdict's flip share exactly
    c = res.trajectories["probe/correct"]
    flipped = (p[0].argmax(axis=1) == c) != (p[-1].argmax(axis=1) == c)
    assert flipped.mean() == res.verdict.numbers["trajectory_entropy"]["flip_share"]
    # recording probes draws no random numbers: the run is the same without them
    plain = run("single_question", quick=True, **kw, n_probe=0)
    assert "probe/probs" not in plain.trajectories
    assert json.dumps(plain.verdict.numbers) == json.dumps(res.verdict.numbers)
    # the folder holds per-question trajectories that sharpen fit reads
    res5 = run("single_question", quick=True, **kw, n_probe=5)
    res5.save(tmp_path / "sq")
    records, bad = read_jsonl(tmp_path / "sq" / "probes.jsonl")
    assert bad == 0 and len(records) == 5 * 5
    fit = analyze_run(tmp_path / "sq")
    assert len(fit.questions) == 5
    np.testing.assert_allclose(fit.trajectories.p_majority, p[:, :5].max(axis=2).T, atol=1e-12)
    with pytest.raises(ValueError, match="n_probe"):
        SingleQuestionConfig(n_probe=-1)


def test_mcs_gt_gain_keeps_per_seed_gains():
    res = run("mcs_gt_gain", quick=True, **{**TINY["mcs_gt_gain"], "seeds": 2})
    rows = res.verdict.numbers["rows"]
    t = res.trajectories
    assert t["gt_gain_seeds"].shape == t["mcs_threshold_seeds"].shape == (len(rows), 2)
    for i, r in enumerate(rows):
        assert len(r["gt_gain_runs"]) == 2
        assert r["gt_gain"] == pytest.approx(np.mean(r["gt_gain_runs"]))
        np.testing.assert_array_equal(t["gt_gain_seeds"][i], r["gt_gain_runs"])
        np.testing.assert_array_equal(t["mcs_peak_seeds"][i], r["mcs_peak_runs"])
    nb = res.verdict.numbers
    assert {"spearman_threshold_seeds", "spearman_peak_seeds"} <= set(nb)
    assert "per-seed pairs" in res.verdict.summary


def test_shared_task_structure():
    cfg = SharedTaskConfig(n_answers=5, n_features=6)
    base, correct, f = make_shared_task(cfg, 40, np.random.default_rng(0))
    assert base.shape == (40, 5) and f.shape == (40, 5, 6)
    rows = np.arange(40)
    np.testing.assert_array_equal(f[rows, correct, 0], cfg.correct_weight)
    assert (f[:, :, 0] != 0).sum() == 40  # only the correct answer carries the skill feature
    sc = f[:, :, 1].argmax(axis=1)
    assert (f[:, :, 1].sum(axis=1) == 1).all() and (
        sc != correct
    ).all()  # one shortcut, never correct
    with pytest.raises(ValueError, match="n_answers"):
        SharedTaskConfig(n_answers=2)
    with pytest.raises(ValueError, match="n_questions"):
        make_shared_task(cfg, 0, np.random.default_rng(0))


def test_classifiers():
    assert (
        classify_curve(np.r_[0.2, 0.4, 0.5, 0.1, 0.0], rise=0.02, decline=0.05) == "rise-then-fall"
    )
    assert classify_curve(np.r_[0.2, 0.4, 0.5, 0.6, 0.7], rise=0.02, decline=0.05) == "rise only"
    assert classify_curve(np.r_[0.2, 0.1, 0.0, 0.0, 0.0], rise=0.02, decline=0.05) == "fall only"
    s = {
        "response_length": np.r_[3.0, 2.0, 1.0, 1.0],
        "repetition_rate": np.r_[0.2, 0.1, 0.0, 0.0],
        "ground_truth_ratio": np.r_[0.6, 0.5, 0.5, 0.5],
    }
    assert classify_failure(s) == "length collapse"
    s2 = {
        **s,
        "response_length": np.r_[3.0, 6, 11, 12],
        "repetition_rate": np.r_[0.2, 0.5, 0.9, 0.9],
    }
    assert classify_failure(s2) == "repetition collapse"


def test_grid_count_layout_gradient_equals_rollout_gradient():
    """The grid's class-by-class layout gives the same advantages and gradient as explicit rollouts."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((50, 5))
    p = softmax(z)
    n = 8
    counts = sample_counts(p, n, rng)
    onehot = _layout(counts, n)
    np.testing.assert_array_equal(onehot.sum(axis=1), counts)
    ys = onehot.argmax(axis=2)  # the explicit rollouts of that layout
    for name in ("majority_voting", "trajectory_entropy", "probability"):
        r_cls = class_rewards(name, z, counts, np.zeros(50, dtype=int), np.random.default_rng(1))
        r = (onehot * r_cls[:, None, :]).sum(axis=2)
        np.testing.assert_array_equal(r, np.take_along_axis(r_cls, ys, axis=1))
        adv = group_advantages(r)
        per_class = (onehot * adv[:, :, None]).sum(axis=1)
        grad = (per_class - per_class.sum(axis=1, keepdims=True) * p) / n
        np.testing.assert_allclose(grad, grpo_logit_grad(p, ys, adv), atol=1e-12)


def test_grid_certainty_rewards_are_constant_within_a_group_at_answer_level():
    res = run("grid", rewards=("self_certainty", "token_entropy"), steps=5, seeds=1)
    acc = res.trajectories["runs/accuracy"]
    np.testing.assert_allclose(acc, acc[:, :1].repeat(acc.shape[1], axis=1), atol=1e-12)


def test_bad_configs():
    with pytest.raises(ValueError, match="rewards"):
        GridConfig(rewards=("nope",))
    with pytest.raises(ValueError, match="optimizer"):
        GridSetting(optimizer="rmsprop")
    with pytest.raises(ValueError, match="lr"):
        GridSetting(lr=0.0)
    for name, bad in (
        ("failure_modes", {"rewards": ("nope",)}),
        ("rise_then_fall", {"optimizers": ("lion",)}),
        ("dataset_size", {"sizes": (0,)}),
        ("mcs_gt_gain", {"strengths": (1.0,)}),
        ("single_question", {"rewards": ("nope",)}),
        ("self_verification", {"verifier_accuracies": (1.5,)}),
    ):
        with pytest.raises(ValueError):
            run(name, quick=True, **bad)


def test_theorem1_writes_exact_probes_of_the_adam_run(tmp_path):
    res = run("theorem1", quick=True, grpo_steps=5, n_probe=3, grpo_questions=16)
    res.save(tmp_path / "t")
    records, bad = read_jsonl(tmp_path / "t" / "probes.jsonl")
    assert bad == 0 and len(records) == 3 * 6
    traj, _ = trajectories_from_probes(records)
    np.testing.assert_allclose(
        traj.p_initial, res.trajectories["grpo/adam/std/p_initial_majority"][:3]
    )
