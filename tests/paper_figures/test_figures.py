"""paper_figures: each kind's compute step on small data, each draw step headless to a non-empty PNG."""

from __future__ import annotations

import numpy as np
import pytest

from paper_figures import (
    dataset_size,
    failure_modes,
    heatmap,
    mcs_gain,
    rise_fall,
    self_verification,
    stability,
    theory_fit,
)
from paper_figures.cli import FIGURES, build, build_all
from paper_figures.data import FigureData, cached
from paper_figures.simruns import SimRunSpec, ensure_run
from paper_figures.style import save
from sharpen.records import load_run

TINY = dict(
    n_questions=16, n_heldout=8, n_answers=4, steps=20, probe_every=5, n_probe=4, probe_samples=16
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("figcache")


@pytest.fixture(scope="module")
def mv_run(cache):
    return ensure_run(SimRunSpec(reward="majority_voting", **TINY), cache / "runs")


def _png_ok(fig, tmp_path, name):
    (path,) = save(fig, tmp_path, name, formats=("png",))
    assert path.stat().st_size > 5_000
    return path


def test_simulated_run_folder_is_a_sharpen_run(mv_run):
    run = load_run(mv_run)
    assert not run.warnings
    steps = sorted({r["step"] for r in run.probes})
    assert steps == [0, 5, 10, 15, 20]
    assert {r["question_id"] for r in run.probes} == {"q000", "q001", "q002", "q003"}
    ra = [r["reward_accuracy"] for r in run.metrics if "reward_accuracy" in r]
    assert len(ra) == 20 and all(0 <= x <= 1 for x in ra)
    kl = [r["kl"] for r in run.metrics if "kl" in r]
    assert kl[0] == 0.0 and min(kl) >= 0
    # cached: a second call returns the same folder without retraining
    mtime = (mv_run / "metrics.jsonl").stat().st_mtime_ns
    assert ensure_run(SimRunSpec(reward="majority_voting", **TINY), mv_run.parent) == mv_run
    assert (mv_run / "metrics.jsonl").stat().st_mtime_ns == mtime


def test_theory_fit_and_heatmap_from_a_run(mv_run, cache, tmp_path):
    fd = theory_fit.compute([mv_run], cache=cache)
    assert np.asarray(fd.data["p_initial"], dtype=float).shape == (4, 5)
    assert len(fd.data["labels"]) == 4
    _png_ok(theory_fit.draw(fd), tmp_path, "k1")
    hd = heatmap.compute([mv_run], cache=cache)
    z = np.asarray(hd.data["z"], dtype=float)
    assert z.shape == (4, 5) and np.all(np.abs(z) <= 1)
    _png_ok(heatmap.draw(hd), tmp_path, "k4")


def test_signed_confidence():
    z = heatmap.signed_confidence(np.array([[0.6, 0.8]]), np.array([[1.0, np.nan]]))
    assert z[0, 0] == 0.6 and np.isnan(z[0, 1])
    with pytest.raises(ValueError, match="majority_correct"):
        heatmap.signed_confidence(np.ones((1, 2)), np.ones((2, 1)))


@pytest.mark.parametrize(
    "mod,rewards",
    [
        (rise_fall, ("majority_voting", "ground_truth")),
        (failure_modes, ("majority_voting", "probability")),
        (self_verification, ("self_verification", "ground_truth")),
    ],
)
def test_curve_kinds_from_simulation(mod, rewards, cache, tmp_path):
    fd = mod.compute(None, cache=cache, specs=tuple(SimRunSpec(reward=r, **TINY) for r in rewards))
    for panel in fd.data["panels"]:
        for s in panel["series"]:
            assert len(s["x"]) == len(s["y"]) > 0
    labels = {s["label"] for p in fd.data["panels"] for s in p["series"]}
    assert labels == set(rewards)
    _png_ok(mod.draw(fd), tmp_path, mod.KIND)


def test_dataset_size_labels_sizes(cache, tmp_path):
    specs = tuple(
        SimRunSpec(reward="majority_voting", **{**TINY, "n_questions": n}) for n in (8, 32)
    )
    fd = dataset_size.compute(None, cache=cache, specs=specs)
    labels = {s["label"] for s in fd.data["panels"][3]["series"]}
    assert labels == {"majority_voting, n_questions=8", "majority_voting, n_questions=32"}
    _png_ok(dataset_size.draw(fd), tmp_path, "k5")


def test_mcs_gain_pairs_and_rank(cache, tmp_path):
    fd = mcs_gain.compute(None, cache=cache, specs=mcs_gain.default_specs((0.0, 2.0), **TINY))
    rows = fd.data["rows"]
    assert [r["prior"] for r in rows] == ["strength 0", "strength 2"]
    assert all(r["last"] == 20 and np.isfinite(r["gain"]) for r in rows)
    _png_ok(mcs_gain.draw(fd), tmp_path, "k6")
    with pytest.raises(ValueError, match="ground_truth run per prior"):
        mcs_gain.compute(
            [cache / "runs" / next(iter(sorted((cache / "runs").iterdir()))).name], cache=cache
        )


def test_stability_theory_and_simulation(cache, tmp_path):
    assert stability.flip_probability((0.5, 0.3, 0.2), 1) == pytest.approx(
        0.5
    )  # one sample: mode drawn w.p. 0.5
    with pytest.raises(ValueError, match="delta"):
        stability.margin_probs(0.9)
    fd = stability.compute(None, cache=cache, n_trials=400, ns=(1, 8))
    for s in fd.data["by_n"]:
        theory_at = dict(zip(s["n"], s["theory"], strict=True))
        for n, f in zip(s["sim_n"], s["sim"], strict=True):
            assert abs(f - theory_at[n]) < 5 * np.sqrt(0.25 / 400)  # Monte-Carlo error, 5 sigma
    _png_ok(stability.draw(fd), tmp_path, "k8")


def test_cache_reuses_and_recomputes_on_new_key(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return FigureData("k", "t", "c", "s", {"x": [1.0, float("nan")]})

    a = cached(tmp_path / "d.json", {"a": 1}, compute)
    b = cached(tmp_path / "d.json", {"a": 1}, compute)
    assert (
        len(calls) == 1 and a.data["x"][0] == 1.0 and b.data == {"x": [1.0, None]}
    )  # NaN stored as null
    cached(tmp_path / "d.json", {"a": 2}, compute)
    assert len(calls) == 2


def test_build_all_from_runs_reports_what_it_cannot_draw(mv_run, cache, tmp_path):
    written, errors = build_all(
        tmp_path,
        run_dirs=[mv_run],
        cache=cache,
        only=["fig1", "fig2", "fig6"],
        formats=("png",),
        progress=False,
    )
    assert set(written) == {"fig1_theory_fit", "fig2_rise_fall"}
    assert "fig6_mcs_gain" in errors and "per prior" in errors["fig6_mcs_gain"]
    with pytest.raises(ValueError, match="unknown figure"):
        build("fig9", tmp_path, cache=cache)
    assert len(FIGURES) == 8
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds none of"):
        theory_fit.compute([tmp_path / "empty"], cache=cache)
