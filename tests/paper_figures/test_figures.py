"""paper_figures: the sim cache, each kind's compute step on the simulator's quick presets and on run folders,
each draw step headless to a non-empty PNG, and the demo step on a synthetic training run."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from paper_figures import (
    cli,
    dataset_size,
    failure_modes,
    heatmap,
    mcs_gain,
    rise_fall,
    self_verification,
    stability,
    theory_fit,
)
from paper_figures import data as data_module
from paper_figures.data import (
    FigureData,
    SimSpec,
    cached,
    run_label,
    seed_series,
    sim_result,
    sim_run_dir,
    smooth,
    tally,
)
from paper_figures.style import save
from sharpen.records import ProbeRecord, Run, RunHeader, RunWriter, load_run
from sharpen.theory import majority_prob

SIM_KINDS = (
    theory_fit,
    heatmap,
    rise_fall,
    failure_modes,
    dataset_size,
    mcs_gain,
    self_verification,
)


def quick(mod) -> SimSpec:
    """The module's default experiment on its quick preset (seconds instead of a minute)."""
    return SimSpec(mod.SIM.experiment, quick=True, note="quick preset")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("figcache")


@pytest.fixture
def quick_defaults(monkeypatch):
    for mod in SIM_KINDS:
        monkeypatch.setattr(mod, "SIM", quick(mod))


def _png_ok(fig, tmp_path, name):
    (path,) = save(fig, tmp_path, name, formats=("png",))
    assert path.stat().st_size > 5_000
    return path


@pytest.mark.parametrize("mod", [data_module, heatmap, mcs_gain, stability])
def test_docstring_examples_run(mod):
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 1 and result.failed == 0


# ----------------------------------------------------------------------------------------------
# the sim cache
# ----------------------------------------------------------------------------------------------


def test_sim_run_dir_runs_once_per_resolved_config(cache):
    spec = SimSpec("dataset_size", quick=True)
    d = sim_run_dir(spec, cache)
    assert d.parent == cache / "runs" and d.name.startswith("dataset_size-")
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["kind"] == "sim" and cfg["sizes"] == [32, 256]  # the quick preset, resolved
    mtime = (d / "trajectories.npz").stat().st_mtime_ns
    # the same config spelt differently (an override equal to the preset) is the same folder, not rerun
    again = sim_run_dir(
        SimSpec("dataset_size", quick=True, overrides=(("sizes", (32, 256)),)), cache
    )
    assert again == d and (d / "trajectories.npz").stat().st_mtime_ns == mtime
    other = sim_run_dir(SimSpec("dataset_size", quick=True, overrides=(("seeds", 2),)), cache)
    assert (
        other != d
        and sim_result(
            SimSpec("dataset_size", quick=True, overrides=(("seeds", 2),)), cache
        ).config["seeds"]
        == 2
    )
    # a folder whose config no longer matches (edited, or written by older code) is rerun
    (d / "config.json").write_text(json.dumps({**cfg, "steps": 1}))
    assert sim_run_dir(spec, cache) == d
    assert json.loads((d / "config.json").read_text())["steps"] == cfg["steps"]
    assert not list(d.parent.glob("*.tmp*"))


def test_sim_spec_validates_and_describes():
    with pytest.raises(ValueError, match="unknown 'nope'"):
        SimSpec("nope").config()
    with pytest.raises(ValueError, match="not fields"):
        SimSpec("dataset_size", overrides=(("colour", 1),)).config()
    with pytest.raises(ValueError, match="pairs"):
        SimSpec("dataset_size", overrides=("seeds",))
    spec = SimSpec("rise_then_fall", overrides=(("shortcut_bonuses", (1.0, 1.5)),), note="two")
    assert spec.source() == "sim 'rise_then_fall' (shortcut_bonuses=(1, 1.5)) (two)"


def test_cache_reuses_and_recomputes_on_new_key(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return FigureData("k", "t", "c", "s", {"x": [1.0, float("nan")]})

    a = cached(tmp_path / "d.json", {"a": 1}, compute)
    b = cached(tmp_path / "d.json", {"a": 1}, compute)
    assert len(calls) == 1 and a.data["x"][0] == 1.0 and b.data == {"x": [1.0, None]}  # NaN -> null
    cached(tmp_path / "d.json", {"a": 2}, compute)
    assert len(calls) == 2


# ----------------------------------------------------------------------------------------------
# the shared series helpers
# ----------------------------------------------------------------------------------------------


@given(
    y=st.lists(st.floats(-10, 10), min_size=1, max_size=40),
    window=st.integers(1, 12),
)
def test_smooth_is_a_trailing_mean(y, window):
    x = np.arange(len(y), dtype=float)
    s = smooth(x, np.array(y), window)
    for i in range(len(y)) if len(y) >= window else ():
        assert s[i] == pytest.approx(np.mean(y[max(0, i - window + 1) : i + 1]), abs=1e-9)
    assert np.allclose(smooth(x, np.full(len(y), 3.0), window), 3.0)


def test_smooth_keeps_gaps_and_rejects_bad_input():
    s = smooth(np.arange(4.0), np.array([1.0, np.nan, 3.0, 5.0]), 2)
    assert np.isnan(s[1]) and s[2] == 3.0 and s[3] == 4.0
    with pytest.raises(ValueError, match="window"):
        smooth(np.arange(3.0), np.zeros(3), 0)
    with pytest.raises(ValueError, match="shape"):
        smooth(np.arange(3.0), np.zeros(4), 2)


def test_seed_series_band_and_helpers():
    v = np.array([[0.0, 1.0, 2.0], [2.0, 3.0, 4.0]])
    s = seed_series("a", v, steps=np.array([0, 10, 20]), style={"ls": ":"})
    assert s["y"] == [1.0, 2.0, 3.0] and s["lo"] == [0.0, 1.0, 2.0] and s["hi"] == [2.0, 3.0, 4.0]
    assert s["x"] == [0.0, 10.0, 20.0] and s["style"] == {"ls": ":"} and s["n_seeds"] == 2
    assert "lo" not in seed_series("one seed", v[0])
    with pytest.raises(ValueError, match="steps"):
        seed_series("a", v, steps=np.arange(4))
    assert tally(["a", "b", "a"]) == "a 2/3, b 1/3"
    # a legend reads the run's header, never the writer's configuration
    run = Run(
        Path("r"), {"x": {"n_questions": 6}}, {}, [], [], [], header=RunHeader("sim", n_questions=5)
    )
    assert run_label(run, ["n_questions"]) == "r, n_questions=5"
    with pytest.raises(ValueError, match="vary"):
        run_label(run, ["sizes"])


# ----------------------------------------------------------------------------------------------
# each kind from the simulator (quick presets)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mod,labels",
    [
        (rise_fall, {"majority_voting, shortcut 1", "ground_truth, shortcut 1"}),
        (failure_modes, set(failure_modes.SIM.config().rewards)),
        (dataset_size, {"Q = 32", "Q = 256"}),
        (
            self_verification,
            {"ground_truth", "majority_voting", "self_verification, verifier accuracy 0.9"},
        ),
    ],
)
def test_curve_kinds_from_the_simulator(mod, labels, cache, tmp_path):
    spec = quick(mod)
    fd = mod.compute(None, cache=cache, sim=spec)
    steps = spec.config().steps
    for panel in fd.data["panels"]:
        assert panel["series"], panel["title"]
        for s in panel["series"]:
            assert len(s["x"]) == len(s["y"]) == steps + 1
            assert s["x"][0] == 0 and s["x"][-1] == steps
    assert {s["label"] for p in fd.data["panels"] for s in p["series"]} == labels
    assert "quick preset" in fd.caption and fd.source == str(sim_run_dir(spec, cache))
    _png_ok(mod.draw(fd), tmp_path, mod.KIND)


def test_curve_values_are_the_simulators_seed_means(cache):
    spec = SimSpec("dataset_size", quick=True, overrides=(("seeds", 2),))
    res = sim_result(spec, cache)
    fd = dataset_size.compute(None, cache=cache, sim=spec)
    kl = next(s for s in fd.data["panels"][3]["series"] if s["label"] == "Q = 32")
    raw = res.trajectories["Q=32/kl"]  # (2 seeds, S)
    # smoothing is a trailing mean over 10 steps: at step 9 it averages steps 0..9 of each seed
    assert kl["y"][9] == pytest.approx(raw[:, :10].mean())
    assert kl["lo"][9] == pytest.approx(raw[:, :10].mean(axis=1).min())


def test_theory_fit_and_heatmap_from_the_simulator(cache, tmp_path):
    spec = quick(theory_fit)
    fd = theory_fit.compute(None, cache=cache, sim=spec)
    steps = spec.config().grpo_steps
    p = np.asarray(fd.data["p_initial"], dtype=float)
    assert p.shape == (spec.config().n_probe, steps + 1)
    # the probes are exact: at step 0 the initial majority's share is the largest answer probability
    probs0 = sim_result(spec, cache).trajectories["probe/probs"][0]
    assert np.allclose(p[:, 0], probs0.max(axis=1), atol=1e-12)
    _png_ok(theory_fit.draw(fd), tmp_path, "k1")
    hd = heatmap.compute(None, cache=cache, sim=spec)
    z = np.asarray(hd.data["z"], dtype=float)
    assert z.shape == p.shape and np.all(np.abs(z) <= 1)
    assert "trained alone" in hd.caption
    _png_ok(heatmap.draw(hd), tmp_path, "k4")


def test_heatmap_default_is_single_question_training(cache, tmp_path):
    assert heatmap.SIM.experiment == "single_question"
    spec = quick(heatmap)
    cfg = spec.config()
    res = sim_result(spec, cache)
    fd = heatmap.compute(None, cache=cache, sim=spec)
    z = np.asarray(fd.data["z"], dtype=float)
    assert z.shape == (cfg.n_probe, cfg.steps + 1) and np.all(np.abs(z) <= 1)
    # the caption's count is the sim's probes: greedy correctness at the first vs the last probe step
    p, c = res.trajectories["probe/probs"], res.trajectories["probe/correct"]
    changed = ((p[0].argmax(axis=1) == c) != (p[-1].argmax(axis=1) == c)).sum()
    assert fd.data["changed"] == changed and f"changed for {changed}/{cfg.n_probe}" in fd.caption
    share = res.verdict.numbers[cfg.rewards[0]]["flip_share"]
    assert "trained alone" in fd.caption and f"{share:.1%} flip greedy correctness" in fd.caption
    _png_ok(heatmap.draw(fd), tmp_path, "k4_single")


def test_mcs_gain_per_seed_points_and_spearman(cache, tmp_path):
    spec = SimSpec("mcs_gt_gain", quick=True, overrides=(("seeds", 2),), note="2 seeds")
    run_dir = sim_run_dir(spec, cache)
    res = sim_result(spec, cache)
    fd = mcs_gain.compute(None, cache=cache, sim=spec)
    points = [p for r in fd.data["rows"] for p in r["runs"]]
    sim_gains = [g for r in res.verdict.numbers["rows"] for g in r["gt_gain_runs"]]
    assert len(points) == 4 and [p["gain"] for p in points] == pytest.approx(sim_gains)
    for r in fd.data["rows"]:
        assert r["gain"] == pytest.approx(np.mean([p["gain"] for p in r["runs"]]))
        assert r["peak_censored"] == sum(p["peak_censored"] for p in r["runs"])
    for rule in ("threshold", "peak"):
        want = mcs_gain.spearman([p[rule] for p in points], [p["gain"] for p in points])
        assert fd.data["spearman"][rule] == want
    assert fd.data["spearman_means"] == {"threshold": None, "peak": None}  # two priors
    _png_ok(mcs_gain.draw(fd), tmp_path, "k6_seeds")
    # a folder cached before per-seed gains were stored is simulated again
    verdict = json.loads((run_dir / "verdict.json").read_text())
    for r in verdict["numbers"]["rows"]:
        del r["gt_gain_runs"]
    (run_dir / "verdict.json").write_text(json.dumps(verdict))
    again = mcs_gain.compute(None, cache=cache, sim=spec)
    assert [p["gain"] for r in again.data["rows"] for p in r["runs"]] == pytest.approx(sim_gains)


def test_mcs_gain_rows_from_the_simulator(cache, tmp_path):
    spec = quick(mcs_gain)
    res = sim_result(spec, cache)
    fd = mcs_gain.compute(None, cache=cache, sim=spec)
    rows = fd.data["rows"]
    assert [r["prior"] for r in rows] == ["strength 0", "strength 2"]
    for r, sim_row in zip(rows, res.verdict.numbers["rows"], strict=True):
        assert r["gain"] == pytest.approx(sim_row["gt_gain"])
        assert r["peak"] == pytest.approx(sim_row["mcs_peak"])
        assert 0 <= r["threshold_censored"] <= r["n_runs"] == spec.config().seeds
        if r["threshold_censored"] == r["n_runs"]:
            assert r["threshold"] == r["last"] == spec.config().steps
    assert fd.data["spearman"] == {
        "threshold": None,
        "peak": None,
    }  # two priors: no rank correlation
    _png_ok(mcs_gain.draw(fd), tmp_path, "k6")


def test_spearman_of_censored_points_ties_them():
    assert mcs_gain.spearman([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    assert mcs_gain.spearman([10, 1000, 1000], [0.1, 0.2, 0.3]) == pytest.approx(0.866, abs=1e-3)
    assert mcs_gain.spearman([1, 2], [1, 2]) is None
    with pytest.raises(ValueError, match="shape"):
        mcs_gain.spearman([1, 2, 3], [1, 2])


def test_stability_theory_and_simulation(cache, tmp_path):
    assert stability.flip_probability((0.5, 0.3, 0.2), 1) == pytest.approx(
        0.5
    )  # one sample: mode w.p. 0.5
    with pytest.raises(ValueError, match="delta"):
        stability.margin_probs(0.9)
    fd = stability.compute(None, cache=cache, n_trials=400, ns=(1, 8))
    for s in fd.data["by_n"]:
        theory_at = dict(zip(s["n"], s["theory"], strict=True))
        for n, f in zip(s["sim_n"], s["sim"], strict=True):
            assert abs(f - theory_at[n]) < 5 * np.sqrt(0.25 / 400)  # Monte-Carlo error, 5 sigma
    _png_ok(stability.draw(fd), tmp_path, "k8")


# ----------------------------------------------------------------------------------------------
# from run folders (--from) and the command
# ----------------------------------------------------------------------------------------------


def test_curve_kinds_from_a_sim_run_folder(cache, tmp_path):
    # a rise_then_fall result folder is a sharpen run folder: metrics.jsonl with TTRL names, and its held-out
    # series (val_accuracy) in eval.jsonl as every writer's held-out accuracy
    d = sim_run_dir(quick(rise_fall), cache)
    fd = rise_fall.compute([d], cache=cache)
    by = {p["metric"]: p["series"] for p in fd.data["panels"]}
    assert (
        by["heldout"][0]["name"] == "accuracy"
        and by["reward_accuracy"][0]["name"] == "reward_accuracy"
    )
    assert (
        by["heldout"][0]["x"] == sim_result(quick(rise_fall), cache).trajectories["step"].tolist()
    )
    assert by["entropy"] == []  # not logged: the panel says so instead of failing
    assert "run folders" in fd.caption
    _png_ok(rise_fall.draw(fd), tmp_path, "k2_runs")


def test_build_all_from_runs_reports_what_it_cannot_draw(cache, tmp_path):
    d = sim_run_dir(quick(theory_fit), cache)
    written, errors = cli.build_all(
        tmp_path,
        run_dirs=[d],
        cache=cache,
        only=["fig1", "fig4", "fig6"],
        formats=("png",),
        progress=False,
    )
    assert set(written) == {"fig1_theory_fit", "fig4_heatmap"}
    assert "fig6_mcs_gain" in errors and "per prior" in errors["fig6_mcs_gain"]
    with pytest.raises(ValueError, match="unknown figure"):
        cli.build("fig9", tmp_path, cache=cache)
    assert len(cli.FIGURES) == 8
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds none of"):
        theory_fit.compute([tmp_path / "empty"], cache=cache)


def _train_run(run_dir):
    """A synthetic training-run folder: 4 probe questions sharpening as Theorem 1 says, metrics, evals."""
    w = RunWriter(run_dir)
    w.write_json("config.json", {"kind": "empirical", "reward": "majority_voting", "lr": 1e-4})
    steps = np.arange(0, 101, 10)
    recs = []
    for q, p0 in enumerate((0.3, 0.4, 0.5, 0.6)):
        for k, p in zip(steps, majority_prob(p0, 40.0, steps), strict=True):
            recs.append(
                ProbeRecord(
                    int(k), f"q{q}", 64, "A", float(p), "A", float(p), "A", q % 2 == 0, float(p)
                )
            )
    w.log_probes(recs)
    for k in range(101):
        w.log_metrics(k, {"reward_accuracy": 0.9, "majority_voting_reward": 0.8})
    for k in steps:
        w.log_eval(int(k), "heldout", {"accuracy": 0.5})
    return run_dir


def test_demo_fits_the_training_runs_and_draws_kinds_1_and_4_from_each(
    tmp_path, capsys, monkeypatch
):
    out = tmp_path / "demo"
    for name in ("run_a", "run_b"):
        _train_run(out / "train" / name)
    # the demo draws from its runs only (no simulator runs), into the one shared cache
    monkeypatch.setenv("SHARPEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cli, "simulate", lambda *a, **k: pytest.fail("the demo ran the simulator"))
    cli.demo(out / "figures")
    assert list((tmp_path / "cache" / "figures").rglob("*.json"))
    for name in ("run_a", "run_b"):
        assert (out / "train" / name / "fit_report.md").exists()
        assert load_run(out / "train" / name).probes
        for fig in cli.DEMO_FIGURES:
            assert (out / "figures" / name / f"{fig}.png").stat().st_size > 5_000
    text = capsys.readouterr().out
    assert "pooled beta" in text and "not drawn" not in text


def test_default_build_key_follows_the_resolved_sim_config(quick_defaults, cache, tmp_path):
    (path,) = cli.build("fig5_dataset_size", tmp_path, cache=cache, formats=("png",))
    stored = json.loads((cache / "data" / "fig5_dataset_size-sim.json").read_text())
    assert json.loads(stored["_key"])["sim"]["config"]["sizes"] == [32, 256]
    assert path.stat().st_size > 5_000


def test_figure_data_from_a_run_that_grew_is_recomputed(tmp_path):
    run = _train_run(tmp_path / "run")
    cache = tmp_path / "cache"
    cli.build("fig2_rise_fall", tmp_path / "out", run_dirs=[run], cache=cache, formats=("png",))
    stored = cache / "data" / "fig2_rise_fall-runs.json"
    steps = json.loads(stored.read_text())["data"]["panels"][2]["series"][0]["x"]
    RunWriter(run).log_metrics(101, {"reward_accuracy": 0.5})  # the run goes on
    cli.build("fig2_rise_fall", tmp_path / "out", run_dirs=[run], cache=cache, formats=("png",))
    grown = json.loads(stored.read_text())["data"]["panels"][2]["series"][0]["x"]
    assert grown[-1] == 101 and len(grown) == len(steps) + 1


def test_default_cache_is_outside_the_output_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SHARPEN_CACHE", str(tmp_path / "home-cache"))
    written, errors = cli.build_all(
        tmp_path / "gallery", only=["fig8"], formats=("png",), progress=False
    )
    assert not errors and set(written) == {"fig8_stability"}
    runs = tmp_path / "home-cache" / "figures" / "runs"
    # the eight vote-frequency runs ran in two worker processes, each into its own complete folder
    assert len(list(runs.glob("stability-*"))) == len(stability.sim_specs()) == 8
    assert not list(runs.glob("*.tmp*")) and cli.sim_specs(stability) == stability.sim_specs()
    with pytest.raises(ValueError, match="jobs"):
        cli.simulate(stability.sim_specs(), runs.parent, jobs=0)
    assert sorted(p.name for p in (tmp_path / "gallery").iterdir()) == ["fig8_stability.png"]


def test_simulations_yield_the_cached_runs_first_then_each_run_once(tmp_path):
    specs = stability.sim_specs(n_trials=100)[:3]  # vote-frequency runs, each in a moment
    sim_run_dir(specs[1], tmp_path)
    slow = SimSpec("self_verification", quick=True)  # a slow experiment: started after the rest
    got = list(cli.simulations([slow, *specs, specs[0]], tmp_path, jobs=1))
    assert got == [specs[1], specs[0], specs[2], slow]
    assert list(cli.simulations(specs, tmp_path, jobs=2)) == specs  # all cached: nothing runs
    # two processes on an empty cache: test_default_cache_is_outside_the_output_folder
