"""The lab's checked experiments: each quick preset runs end to end on the tests' prior, writes a result folder
and a figure, and computes its verdict from its own numbers; the shared run folders are reused."""

from __future__ import annotations

import json

import numpy as np
import pytest

import empirical.lab.experiments  # noqa: F401  (fills LAB)
from empirical.lab.experiments.rise_then_fall_real import classify_curve
from empirical.lab.experiments.theorem1_real import beta_scaling
from empirical.lab.registry import LAB, get
from empirical.lab.runs import LabRuns, run_folder


def test_beta_scaling_recovers_a_power_law():
    lrs = np.repeat([1e-5, 2e-5, 4e-5], 3)
    noise = np.tile([0.98, 1.0, 1.02], 3)
    s = beta_scaling(lrs, 7.0 / lrs * noise)
    assert s["slope"] == pytest.approx(-1.0, abs=1e-9)
    assert s["ci_low"] <= -1 <= s["ci_high"] and s["n"] == 9
    assert np.isnan(
        beta_scaling([1e-5, 2e-5], [1.0, 2.0])["slope"]
    )  # two points: no error bar, no slope


def test_classify_curve_names_each_regime():
    base = np.array([0.5, 0.6, 0.7, 0.6, 0.5])
    seeds = np.stack([base + d for d in (-0.002, 0.0, 0.002)])
    assert classify_curve(seeds, 3.0)["regime"] == "rise_then_fall"
    assert classify_curve(seeds[:, :3], 3.0)["regime"] == "rise"
    assert classify_curve(seeds[:, 2:], 3.0)["regime"] == "fall"
    assert (
        classify_curve(np.stack([base * 0 + 0.5 + d for d in (-0.01, 0.0, 0.01)]), 3.0)["regime"]
        == "flat"
    )
    assert (
        classify_curve(seeds[:1], 3.0)["regime"] == "flat"
    )  # one seed: no standard error, no claim


def test_run_folders_are_named_by_what_changes_the_run(tmp_path):
    cfg = LabRuns(runs_dir=str(tmp_path))
    a = cfg.train_config("majority_voting", 1e-4, 0)
    assert run_folder(a, tmp_path) == run_folder(
        a.replace(out_dir="elsewhere", progress=True, report_to="tensorboard"), tmp_path
    )
    assert run_folder(a, tmp_path) != run_folder(a.replace(n_votes=a.n_rollouts * 2), tmp_path)
    assert run_folder(a, tmp_path) != run_folder(a.replace(lr=2e-4), tmp_path)
    assert run_folder(a, tmp_path) != run_folder(
        cfg.train_config("majority_voting", 1e-4, 1), tmp_path
    )
    with pytest.raises(ValueError, match="seeds"):
        LabRuns(seeds=0)


@pytest.fixture(scope="module")
def lab_out(tmp_path_factory):
    """One output folder for every quick experiment: their run folders are shared, as on the command line."""
    return tmp_path_factory.mktemp("lab")


# rise_then_fall_real before early_collapse_real: the second reads the first's majority-vote runs
@pytest.mark.parametrize(
    "name", ["theorem1_real", "rise_then_fall_real", "early_collapse_real", "single_question_real"]
)
def test_quick_lab_experiment_runs_end_to_end(name, tiny_model, lab_out):
    from sharpen.cli import main

    assert name in LAB
    out = lab_out
    argv = ["lab", name, "--quick", "--out", str(out), "--model", str(tiny_model), "--seeds", "1"]
    before = set((out / "quick-runs").iterdir()) if (out / "quick-runs").exists() else set()
    assert main(argv) == 0
    folder = out / name
    verdict = json.loads((folder / "verdict.json").read_text())
    assert verdict["holds"] in (True, False, None) and verdict["summary"]
    assert (folder / f"{name}.png").stat().st_size > 10_000
    runs = sorted((out / "quick-runs").iterdir())
    assert runs and all((r / "metrics.jsonl").exists() for r in runs)
    if (
        name == "early_collapse_real"
    ):  # nothing new: rise_then_fall_real ran the same configurations
        assert set(runs) == before
        assert verdict["numbers"]["runs"] and "theorem1" in verdict["numbers"]["scores"]
    assert isinstance(get(name).quick, dict)


def test_a_finished_run_folder_is_reused(tiny_model, lab_out):
    from empirical.lab.runs import ensure_runs

    cfg = LabRuns(model=str(tiny_model), seeds=1, steps=2, n_heldout=8, eval_every=2, probe_every=0,
                  rollout_batch_size=16, runs_dir=str(lab_out / "reuse"))  # fmt: skip
    configs = [cfg.train_config("majority_voting", 1e-4, 0)]
    (folder,) = ensure_runs(configs, cfg.runs_dir)
    stamp = (folder / "metrics.jsonl").stat().st_mtime_ns
    assert ensure_runs(configs, cfg.runs_dir) == [folder]
    assert (folder / "metrics.jsonl").stat().st_mtime_ns == stamp


def test_lab_rejects_unknown_experiments_and_options(capsys):
    from sharpen.cli import main

    assert main(["lab", "theorem1_rel"]) == 2
    assert "did you mean 'theorem1_real'" in capsys.readouterr().err
    assert main(["lab", "single_question_real", "--lrs", "1e-4"]) == 2
    assert "--lrs: not an option of single_question_real" in capsys.readouterr().err


# --- prior_ladder_real and dataset_size_real -------------------------------------------------------------


def _plain_collapse(values, w, threshold, decline, patience):
    """Both MCS rules by plain loops over the full ``w``-step windows (steps = indices)."""
    means = [sum(values[i - w + 1 : i + 1]) / w for i in range(w - 1, len(values))]
    thr = next((i + w - 1 for i, m in enumerate(means) if m < threshold), None)
    peak = None
    for j in range(1, len(means) - patience + 1):
        if all(means[k] <= max(means[:k]) - decline for k in range(j, j + patience)):
            peak = means.index(max(means[:j])) + w - 1
            break
    return thr, peak


def _plain_noise(values, w):
    d = np.diff(np.asarray(values, float))
    return 1.4826 * float(np.median(np.abs(d - np.median(d)))) / np.sqrt(2) / np.sqrt(w)


def test_collapse_steps_equal_plain_loops_on_full_windows():
    from empirical.lab.experiments.prior_ladder_real import collapse_steps

    rng = np.random.default_rng(3)
    for case in range(6):
        n, start = 300, 60 + 20 * case
        t = np.arange(n)
        level = np.where(t < start, 0.6, np.maximum(0.6 - 0.006 * (t - start), 0.0))
        values = np.clip(level + 0.06 * np.sqrt(level) * rng.standard_normal(n), 0, 1)
        steps = np.arange(n)
        d = max(0.05, 6 * _plain_noise(values, 25))
        thr, peak = _plain_collapse(values.tolist(), 25, 0.01, d, 3)
        got = collapse_steps(steps, values, threshold=0.01, smoothing=25, noise_sigmas=6)
        assert (got["threshold"], got["peak"]) == (thr, peak)
        assert peak is not None and thr is not None and peak < thr
        # the plain peak rule (decline 0.05), and a threshold the noise crosses
        plain = collapse_steps(steps, values, threshold=0.2, smoothing=25)
        want = _plain_collapse(values.tolist(), 25, 0.2, 0.05, 3)
        assert (plain["threshold"], plain["peak"]) == want
    none = {"threshold": None, "peak": None}
    assert collapse_steps(np.arange(10), np.zeros(10), smoothing=25) == none
    with pytest.raises(ValueError, match="steps, values"):
        collapse_steps(np.arange(3), np.zeros(4))


def test_one_lucky_first_batch_fires_no_rule():
    from empirical.lab.experiments.prior_ladder_real import collapse_steps
    from sharpen.metrics import model_collapse_step

    values = 0.7 + 0.01 * np.random.default_rng(0).standard_normal(200)
    values[0] = 0.95
    steps = np.arange(1, 201)
    # partial windows at the start: the first smoothed entry is the lucky batch, the rule "finds" a decline
    assert model_collapse_step(values, "peak", steps=steps, smoothing=25, noise_sigmas=6).step == 1
    none = {"threshold": None, "peak": None}
    assert collapse_steps(steps, values, smoothing=25, noise_sigmas=6) == none


def test_spearman_equals_pearson_of_average_ranks():
    from empirical.lab.experiments.prior_ladder_real import spearman

    def ranks(v):
        return [sum(1 for u in v if u < x) + (sum(1 for u in v if u == x) + 1) / 2 for x in v]

    rng = np.random.default_rng(1)
    for _ in range(5):
        x, y = rng.integers(0, 4, 9).astype(float), rng.normal(size=9)
        if np.ptp(x) == 0:
            continue
        assert spearman(x, y) == pytest.approx(np.corrcoef(ranks(x), ranks(y))[0, 1], abs=1e-12)
    # every run censored: no correlation
    assert np.isnan(spearman([600, 600, 600], [0.1, 0.2, 0.3]))


def test_bootstrap_spearman_intervals():
    from empirical.lab.experiments.prior_ladder_real import bootstrap_spearman

    mcs = np.repeat(np.arange(5)[:, None] * 100.0, 3, axis=1)  # (priors, seeds), no seed noise
    gain = np.repeat(np.arange(5)[:, None] * 0.1, 3, axis=1)
    up = bootstrap_spearman(mcs, gain, np.random.default_rng(0), 200)
    one = pytest.approx(1.0, abs=1e-12)
    assert (
        up["rho"] == one and up["low"] == one and up["high"] == one and 190 <= up["n_valid"] <= 200
    )
    down = bootstrap_spearman(mcs, -gain, np.random.default_rng(0), 200)
    assert down["rho"] == pytest.approx(-1.0, abs=1e-12) and down["high"] == down["rho"]
    again = bootstrap_spearman(mcs, -gain, np.random.default_rng(0), 200)
    assert again == down  # the interval is a function of the generator's seed
    flat = bootstrap_spearman(np.full((5, 3), 600.0), gain, np.random.default_rng(0), 50)
    assert np.isnan(flat["rho"]) and flat["n_valid"] == 0 and np.isnan(flat["low"])
    # seed noise far below the priors' spacing: a resample that draws a prior twice can order its two
    # copies differently in MCS and gain (independent runs), so the interval opens below 1 but stays high
    spaced = bootstrap_spearman(mcs + [-1.0, 0.0, 1.0], gain + [0.01, -0.01, 0.0],
                                np.random.default_rng(0), 200)  # fmt: skip
    assert spaced["rho"] == one and 0.5 < spaced["low"] < 1 and spaced["high"] == one
    noisy = bootstrap_spearman(mcs[:, :1] + 300 * np.random.default_rng(2).normal(size=(5, 3)), gain,
                               np.random.default_rng(0), 300)  # fmt: skip
    assert -1 <= noisy["low"] < noisy["high"] <= 1  # much seed noise: a wide interval
    with pytest.raises(ValueError, match="one row per prior"):
        bootstrap_spearman(mcs, gain[:4], np.random.default_rng(0), 10)


def test_ladder_verdict_asks_for_a_strong_positive_correlation():
    import doctest

    from empirical.lab.experiments import prior_ladder_real
    from empirical.lab.experiments.prior_ladder_real import ladder_verdict

    result = doctest.testmod(prior_ladder_real)
    assert result.failed == 0 and result.attempted >= 1
    nan = float("nan")
    assert ladder_verdict({"rho": 0.6, "low": 0.01, "high": 1.0}, 0.6) is True
    assert ladder_verdict({"rho": 0.6, "low": 0.0, "high": 1.0}, 0.6) is None  # interval touches 0
    assert ladder_verdict({"rho": 0.5, "low": 0.1, "high": 0.59}, 0.6) is False  # strong ruled out
    assert ladder_verdict({"rho": 0.0, "low": -0.5, "high": 0.9}, 0.6) is False
    assert (
        ladder_verdict({"rho": nan, "low": nan, "high": nan}, 0.6) is None
    )  # e.g. every run censored


def test_size_verdict_reads_the_collapse_shares():
    import doctest

    from empirical.lab.experiments import dataset_size_real
    from empirical.lab.experiments.dataset_size_real import size_verdict

    result = doctest.testmod(dataset_size_real)
    assert result.failed == 0 and result.attempted >= 3

    assert size_verdict({32: 0.0, 128: 0.0, 512: 1.0, 2048: 1.0}) is True
    assert size_verdict({32: 0.0, 128: 0.0, 512: 2 / 3, 2048: 1.0}) is None
    assert size_verdict({32: 1.0, 128: 1.0, 512: 1.0, 2048: 1.0}) is False  # no size effect
    assert size_verdict({32: 0.0, 128: 0.0, 512: 0.0, 2048: 0.0}) is False
    assert size_verdict({32: 0.0, 128: 0.0}) is False  # no large size: nothing to compare


def test_training_collapse_compares_the_last_window_with_the_prior():
    from empirical.lab.experiments.dataset_size_real import training_collapse

    rng = np.random.default_rng(4)
    for _ in range(5):
        v, a0 = rng.uniform(0, 1, 60), rng.uniform(0.3, 0.7)
        got = training_collapse(v, a0, 25, 0.1)
        first, last = float(np.mean(v[:25])), float(np.mean(v[-25:]))
        best = max(float(np.mean(v[i - 25 : i])) for i in range(25, 61))
        assert got["first"] == pytest.approx(first) and got["last"] == pytest.approx(last)
        assert got["best"] == pytest.approx(best) and got["collapsed"] == (last < a0 - 0.1)
    memorised = np.concatenate([np.full(30, 0.5), np.full(30, 0.7)])  # small sets: accuracy rises
    assert not training_collapse(memorised, 0.53, 25, 0.1)["collapsed"]
    fallen = np.concatenate([np.full(30, 0.5), np.full(30, 0.02)])
    assert training_collapse(fallen, 0.53, 25, 0.1)["collapsed"]
    # fell inside the first window: still seen
    fast = np.concatenate([np.full(5, 0.5), np.full(55, 0.05)])
    assert training_collapse(fast, 0.53, 25, 0.1)["collapsed"]
    with pytest.raises(ValueError, match="values"):
        training_collapse(np.zeros(10), 0.5, 25, 0.1)


def test_prior_ladder_and_dataset_size_configs_reject_bad_values():
    from empirical.lab.experiments.dataset_size_real import DatasetSizeRealConfig
    from empirical.lab.experiments.prior_ladder_real import PriorLadderRealConfig

    with pytest.raises(ValueError, match="pretrain_accuracies"):
        PriorLadderRealConfig(pretrain_accuracies=(0.7,))
    with pytest.raises(ValueError, match="pretrain_accuracies"):
        PriorLadderRealConfig(pretrain_accuracies=(0.5, 0.5))
    with pytest.raises(ValueError, match="eval_every"):
        PriorLadderRealConfig(gt_steps=240, eval_every=50)
    with pytest.raises(ValueError, match="control_size"):
        DatasetSizeRealConfig(control_size=100)
    with pytest.raises(ValueError, match="sizes"):
        DatasetSizeRealConfig(sizes=(128, 32))
    with pytest.raises(ValueError, match="rule"):
        DatasetSizeRealConfig(rule="both")


def test_quick_prior_ladder_and_dataset_size_run_end_to_end(tiny_model, lab_out):
    from sharpen.cli import main

    base = ["--quick", "--out", str(lab_out), "--model", str(tiny_model), "--seeds", "1"]
    assert main(["lab", "prior_ladder_real", "dataset_size_real", *base]) == 0
    for name in ("prior_ladder_real", "dataset_size_real"):
        assert (lab_out / name / f"{name}.png").stat().st_size > 10_000
    pl = json.loads((lab_out / "prior_ladder_real" / "verdict.json").read_text())
    nb = pl["numbers"]
    # a model folder: every rung is that prior, so the ladder is degenerate and decides nothing
    assert nb["degenerate_ladder"] is True and pl["holds"] is None and "degenerate" in pl["summary"]
    ladder = list(get("prior_ladder_real").quick["pretrain_accuracies"])
    assert [r["pretrain_accuracy"] for r in nb["rows"]] == ladder
    # the same prior, the same exact eval
    assert len({r["initial_accuracy"] for r in nb["rows"]}) == 1
    for r in nb["rows"]:
        assert r["headroom"] == pytest.approx(1 - r["initial_accuracy"])
        g = r["gt_gain_raw_runs"][0]
        assert r["gt_gain_normalised_runs"][0] == pytest.approx(g / r["headroom"])
        assert r["gt_final_accuracy"] - r["initial_accuracy"] == pytest.approx(g)
        for rule in ("threshold", "peak"):  # a censored run enters at the horizon
            pairs = zip(r[f"mcs_{rule}_runs"], r[f"mcs_{rule}_censored"], strict=True)
            assert all(m == 16 for m, c in pairs if c)
    assert nb["censored"]["threshold"] == sum(sum(r["mcs_threshold_censored"]) for r in nb["rows"])
    assert set(nb["spearman"]) == {
        f"{a}/{b}" for a in ("threshold", "peak") for b in ("raw", "normalised")
    }
    ds = json.loads((lab_out / "dataset_size_real" / "verdict.json").read_text())
    per = ds["numbers"]["per_size"]
    assert set(per) == {"8", "32"} and ds["holds"] is False  # no size >= 512: nothing to compare
    for e in per.values():
        assert 0 <= e["collapse_share"] <= 1 and e["final_kl"] >= 0 and np.isfinite(e["final_kl"])
        assert 0 < e["final_accuracy_se_questions"] < 0.1
    # the control trains on the same 32 questions and is scored on the same held-out set, from the same prior
    assert ds["numbers"]["control"]["initial_accuracy"] == per["32"]["initial_accuracy"]


# --- failure_modes_real and self_verification_real -------------------------------------------------------


def test_window_change_and_beyond():
    from empirical.lab.experiments.failure_modes_real import beyond, window_change

    x = np.array(
        [[1.0] * 5 + [3.0] * 5, [1.2] * 5 + [3.4] * 5, [0.8] * 5 + [2.6] * 5]
    )  # changes 2, 2.2, 1.8
    c = window_change(x, 5)
    assert (c["start"], c["end"], c["change"]) == pytest.approx((1.0, 3.0, 2.0))
    assert c["se"] == pytest.approx(np.std([2.0, 2.2, 1.8], ddof=1) / np.sqrt(3))
    assert beyond(c, +1, 1.0, 3.0) and not beyond(c, -1, 0.0, 3.0)
    assert not beyond(c, +1, 2.5, 3.0) and not beyond(c, +1, 0.0, 20.0)  # margin, then errors
    one = window_change(
        np.array([[1.0, 2.0, 3.0, 7.0, 8.0, 9.0]]), 3
    )  # one seed: the windows' spread
    assert one["change"] == pytest.approx(6.0) and one["se"] == pytest.approx(np.sqrt(2 / 3))
    assert not beyond({"change": 5.0, "se": float("nan")}, +1, 0.0, 3.0)  # no error: no evidence
    with pytest.raises(ValueError, match="window"):
        window_change(x, 6)


def _plain_hinge(t, x):
    """The flat-then-linear least-squares change point by brute force over every step, in float64."""
    best = None
    for tau in t:
        h = [max(0.0, s - tau) for s in t]
        n, sh, shh = len(t), sum(h), sum(v * v for v in h)
        sx, shx = sum(x), sum(a * b for a, b in zip(h, x, strict=True))
        det = n * shh - sh * sh
        a, b = (
            (sx / n, 0.0) if det == 0 else ((shh * sx - sh * shx) / det, (n * shx - sh * sx) / det)
        )
        sse = sum((v - a - b * g) ** 2 for v, g in zip(x, h, strict=True))
        if best is None or sse < best[1] * (1 - 1e-12):
            best = (tau, sse)
    return best[0]


def test_onset_step_finds_where_a_smoothed_departure_began():
    from empirical.lab.experiments.failure_modes_real import hinge_onset, onset_step

    t = np.arange(1, 121)
    for seed in range(4):
        rng = np.random.default_rng(seed)
        fall = np.where(t <= 60, 33.0, np.maximum(33.0 - 0.4 * (t - 60), 15.0)) + 0.5 * rng.normal(
            size=120
        )
        rise = 0.05 + np.where(t > 60, 0.004 * (t - 60), 0.0) + 0.01 * rng.normal(size=120)
        assert 55 <= onset_step(t, fall, -1, 6.6, 20) <= 65
        assert 55 <= onset_step(t, rise, +1, 0.1, 20) <= 65
        assert onset_step(t, fall, +1, 6.6, 20) is None  # the other direction
        assert onset_step(t, 33.0 + 0.5 * rng.normal(size=120), -1, 6.6, 20) is None  # noise only
        # one outlying batch, even a huge one, fires nothing: it moves a 20-step mean by 1/20 of itself
        spike = 0.05 + 0.01 * rng.normal(size=120)
        spike[70] = 1.0
        assert onset_step(t, spike, +1, 0.1, 20) is None
        assert hinge_onset(t[:90], fall[:90]) == _plain_hinge(t[:90].tolist(), fall[:90].tolist())
    assert hinge_onset(np.arange(5), np.arange(5.0)) == 0  # a line: the first step


def test_gradual_fall_modes_seen_and_three_way():
    from empirical.lab.experiments.failure_modes_real import (
        gradual_fall,
        modes_seen,
        slowest_first,
        three_way,
    )

    slow = gradual_fall(np.array([0.5, 0.6, 0.55, 0.5, 0.45, 0.4]), 1, 0.5)
    assert slow["gradual"] and slow["share"] == pytest.approx(0.25)
    cliff = gradual_fall(np.array([0.5, 0.6, 0.59, 0.2, 0.2]), 1, 0.5)
    assert not cliff["gradual"] and cliff["share"] == pytest.approx(0.39 / 0.4)
    assert not gradual_fall(np.array([0.5, 0.5]), 0, 0.5)["gradual"]  # no fall
    assert (slow["half_fall_index"], cliff["half_fall_index"]) == (3, 3)
    assert gradual_fall(np.array([0.5, 0.5]), 0, 0.5)["half_fall_index"] is None
    halves = {"a": 30, "b": None, "c": 90, "d": 30}
    settings = {f"{r}/lr0.0001": {"heldout": {"half_fall_step": h}} for r, h in halves.items()}
    assert slowest_first(settings, list(halves), 1e-4) == ["c", "a", "d", "b"]  # no fall last

    def setting(length=False, repetition=False, degradation=False, gradual=True):
        return {"detected": {"length": length, "repetition": repetition, "degradation": degradation},
                "heldout": {"gradual": gradual}}  # fmt: skip

    quiet = setting()
    assert modes_seen(setting(length=True), quiet)["length"]
    assert not modes_seen(setting(length=True), setting(length=True))[
        "length"
    ]  # the control shows it too
    m = modes_seen(setting(degradation=True), quiet)
    assert m["progressive"] and not m["abrupt_degradation"]
    m = modes_seen(setting(degradation=True, gradual=False), quiet)
    assert m["abrupt_degradation"] and not m["progressive"]
    m = modes_seen(
        setting(repetition=True, degradation=True), quiet
    )  # a fall that comes with repetition
    assert m["repetition"] and not m["progressive"] and not m["abrupt_degradation"]
    assert not any(modes_seen(setting(degradation=True), setting(degradation=True)).values())
    assert (three_way([True, True]), three_way([False, False]), three_way([True, None])) == (
        True, False, None)  # fmt: skip


def test_heldout_accuracy_se_is_the_sample_error_of_01_scores():
    from types import SimpleNamespace

    from empirical.lab.runs import heldout_accuracy

    evals = [
        {"step": 0, "avg@1": 0.25, "n_questions": 100},
        {"step": 10, "avg@1": 0.5, "n_questions": 100},
    ]
    steps, acc, se = heldout_accuracy(SimpleNamespace(evals=evals, metrics=[], run_dir="r"))
    assert steps.tolist() == [0, 10] and acc.tolist() == [0.25, 0.5]
    for a, s in zip(acc, se, strict=True):
        scores = np.r_[np.ones(round(100 * a)), np.zeros(100 - round(100 * a))]
        assert s == pytest.approx(scores.std(ddof=1) / 10)
    with pytest.raises(ValueError, match="logs no 'avg@4'"):
        heldout_accuracy(SimpleNamespace(evals=evals, metrics=[], run_dir="r"), k=4)


def test_compare_final_and_preset_fields():
    from empirical.config import preset
    from empirical.lab.experiments.self_verification_real import compare_final
    from empirical.lab.runs import preset_fields

    a = np.array([[0.1, 0.60], [0.1, 0.62], [0.1, 0.64]])
    b = np.array([[0.1, 0.30], [0.1, 0.31], [0.1, 0.29]])
    c = compare_final(a, b, 0.02, 0.02, 3.0)
    want_se = np.hypot(
        np.std([0.6, 0.62, 0.64], ddof=1), np.std([0.3, 0.31, 0.29], ddof=1)
    ) / np.sqrt(3)
    assert c["lead"] == pytest.approx(0.32) and c["se"] == pytest.approx(want_se) and c["leads"]
    one = compare_final(a[:1], b[:1], 0.05, 0.05, 3.0)  # one seed each: the questions' error
    assert one["se"] == pytest.approx(np.hypot(0.05, 0.05)) and one["leads"]
    assert not compare_final(b, a, 0.02, 0.02, 3.0)["leads"]
    got = preset_fields("tiny-reason-ttrl", ("task", "max_new_tokens"))
    assert got == {"task": "reason", "max_new_tokens": preset("tiny-reason-ttrl").max_new_tokens}


def test_failure_modes_and_self_verification_configs_reject_bad_values():
    from empirical.lab.experiments.failure_modes_real import FailureModesRealConfig
    from empirical.lab.experiments.self_verification_real import SelfVerificationRealConfig

    for bad in ({"rewards": ("ground_truth",)}, {"rewards": ("probability", "probability")}):
        with pytest.raises(ValueError, match="rewards"):
            FailureModesRealConfig(**bad)
    with pytest.raises(ValueError, match="smoothing"):
        FailureModesRealConfig(steps=30, smoothing=20)
    with pytest.raises(ValueError, match="preset"):
        FailureModesRealConfig(reasoning_preset="tiny-reason-nope")
    with pytest.raises(ValueError, match="max_drop_share"):
        FailureModesRealConfig(max_drop_share=0.0)
    with pytest.raises(ValueError, match="rewards"):
        SelfVerificationRealConfig(rewards=("majority_voting", "ground_truth"))
    with pytest.raises(ValueError, match="approach"):
        SelfVerificationRealConfig(approach=2.0)


@pytest.fixture(scope="module")
def reason_prior(tmp_path_factory):
    """A small reasoning prior (1-digit sums with the scratchpad, ~10 s): the quick runs' policy."""
    from empirical.tiny import PretrainConfig, pretrained_tiny_model

    prior = PretrainConfig(
        corpus="reason", digits=1, steps=200, batch_size=64, stop_at_accuracy=0.3, n_check=64
    )
    return pretrained_tiny_model(prior, root=tmp_path_factory.mktemp("reason-prior"))


def _finished_folders(cfg, reward, seeds, **changes):
    from empirical.lab.experiments.rise_then_fall_real import sweep_configs

    folders = [
        run_folder(c, cfg.runs_dir) for c in sweep_configs(cfg, reward, cfg.lrs, seeds, **changes)
    ]
    assert all((f / "metrics.jsonl").exists() for f in folders)
    return folders


def test_quick_failure_modes_real_runs_end_to_end_and_reuses_its_runs(reason_prior, lab_out):
    from empirical.lab.experiments.failure_modes_real import (
        PAPER_MODES,
        FailureModesRealConfig,
        reasoning_fields,
    )
    from sharpen.cli import main

    argv = ["lab", "failure_modes_real", "--quick", "--out", str(lab_out), "--model", str(reason_prior),
            "--seeds", "1"]  # fmt: skip
    assert main(argv) == 0
    folder = lab_out / "failure_modes_real"
    v = json.loads((folder / "verdict.json").read_text())
    assert v["holds"] in (True, False, None) and "length collapse" in v["summary"]
    assert (folder / "failure_modes_real.png").stat().st_size > 10_000
    nb, quick = v["numbers"], get("failure_modes_real").quick
    cfg = FailureModesRealConfig(**{**quick, "model": str(reason_prior), "seeds": 1,
                                    "runs_dir": str(lab_out / "quick-runs")})  # fmt: skip
    assert set(nb["rewards"]) == set(PAPER_MODES) and set(nb["by_mode"]) == {
        "length",
        "repetition",
        "progressive",
    }
    traj = np.load(folder / "trajectories.npz")
    w = cfg.smoothing
    for reward in (*PAPER_MODES, "ground_truth"):
        for lr in cfg.lrs:
            s = nb["settings"][f"{reward}/lr{lr:g}"]
            length = traj[f"{reward}/lr{lr:g}/length"]  # (seeds, steps) of the training batch
            assert length.shape == (1, cfg.steps) and 1 <= length.min() <= length.max() <= 64
            assert s["length"]["start"] == pytest.approx(length[:, :w].mean())
            assert s["length"]["end"] == pytest.approx(length[:, -w:].mean())
            acc = traj[f"{reward}/lr{lr:g}/heldout_accuracy"]  # (seeds, evals), binomial errors
            se = np.sqrt(acc * (1 - acc) / (cfg.n_heldout - 1)).mean()
            assert 0 <= s["heldout"]["initial"] <= 1 and s["heldout"][
                "se_questions"
            ] == pytest.approx(se)
            assert s["kl_end"] >= 0
    for row in nb["rewards"].values():
        seen = [e["paper_mode_seen"] for e in row["by_lr"].values()]
        assert row["holds"] == (True if all(seen) else False if not any(seen) else None)
    # the runs are reasoning runs, and asking again trains nothing
    fields = reasoning_fields()
    folders = [f for r in PAPER_MODES for f in _finished_folders(cfg, r, 1, **fields, log_kl=True)]
    folders += _finished_folders(cfg, "ground_truth", 1, **fields, log_kl=True)
    assert all(
        json.loads((f / "config.json").read_text())["train"]["task"] == "reason" for f in folders
    )
    stamps = [(f / "metrics.jsonl").stat().st_mtime_ns for f in folders]
    assert main(argv) == 0
    assert [(f / "metrics.jsonl").stat().st_mtime_ns for f in folders] == stamps


def test_quick_self_verification_real_runs_end_to_end(tiny_cache, lab_out):
    from sharpen.cli import main

    # model 'tiny' (the tiny prompts of Countdown and its verifier) with a 20-step Countdown prior
    argv = ["lab", "self_verification_real", "--quick", "--out", str(lab_out), "--seeds", "1",
            "--pretrain-steps", "20"]  # fmt: skip
    assert main(argv) == 0
    folder = lab_out / "self_verification_real"
    v = json.loads((folder / "verdict.json").read_text())
    assert v["holds"] in (True, False, None) and "Self-verification" in v["summary"]
    assert (folder / "self_verification_real.png").stat().st_size > 10_000
    arms = v["numbers"]["arms"]
    assert set(arms) == set(get("self_verification_real").quick["rewards"])
    assert len({a["initial"] for a in arms.values()}) == 1  # one prior, one held-out set, one seed
    gt, sv = arms["ground_truth"], arms["self_verification"]
    assert gt["reward_accuracy_end"] == 1.0 and gt["train_reward_end"] == gt["train_accuracy_end"]
    assert 0 <= sv["reward_accuracy_end"] <= 1 and 0 <= sv["train_reward_end"] <= 1
    checks = v["numbers"]["checks"]
    assert set(checks) == {"keeps_rising", "beats_majority_voting", "approaches_oracle"}
    assert (v["holds"] is True) == all(checks.values())


def test_runs_trained_in_parallel_log_what_runs_trained_in_turn(tiny_model, lab_out):
    from empirical.lab.runs import ensure_runs

    cfg = LabRuns(model=str(tiny_model), seeds=2, steps=3, n_heldout=8, eval_every=3, probe_every=0,
                  rollout_batch_size=16)  # fmt: skip
    configs = [cfg.train_config("majority_voting", 1e-4, s) for s in range(2)]
    both = ensure_runs(configs, lab_out / "in-parallel", workers=2)
    alone = ensure_runs(configs, lab_out / "in-turn")

    def logs(folder):
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]

    assert [f.name for f in both] == [f.name for f in alone]
    assert all(logs(a) == logs(b) and len(logs(a)) == 3 for a, b in zip(both, alone, strict=True))
    with pytest.raises(ValueError, match="workers"):
        ensure_runs(configs, lab_out / "in-turn", workers=0)


def test_every_lab_experiment_takes_workers_from_the_shared_fields():
    parallel = {
        "failure_modes_real",
        "self_verification_real",
        "prior_ladder_real",
        "dataset_size_real",
    }
    for name in LAB:
        cls = get(name).config_cls
        assert issubclass(cls, LabRuns)
        assert cls().workers == (2 if name in parallel else 1)
        for bad in (0, True, 1.5):
            with pytest.raises(ValueError, match=r"^workers: must be an integer >= 1"):
                cls(workers=bad)
