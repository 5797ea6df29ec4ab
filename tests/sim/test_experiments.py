"""Each theorem experiment's verdict (quick presets), result save/load, the CLI and the demo."""

from __future__ import annotations

import numpy as np
import pytest

from sim.api import available_experiments, run
from sim.cli import demo, main
from sim.results import load_result


@pytest.mark.parametrize("name", ["theorem1", "stability", "destination"])
def test_theorem_holds(name):
    res = run(name, quick=True)
    assert res.verdict.kind == "theorem"
    assert res.verdict.holds is True, res.verdict.summary


def test_theorem1_numbers():
    res = run("theorem1", quick=True, n_starts=3)
    assert res.verdict.numbers["max_rho_err"] < 1e-6
    adam = res.verdict.numbers["grpo"]["adam/std"]
    assert adam["share_sharpening"] > 0.5  # majority voting sharpens the initial majority


def test_stability_larger_n_locks_in_more():
    res = run("stability", quick=True)
    flips = np.asarray(res.trajectories["flip_exact"])
    assert flips[-1] < flips[0]


def test_result_roundtrip(tmp_path):
    res = run("stability", quick=True, ns=(1, 4), n_trials=500)
    res.save(tmp_path / "r")
    back = load_result(tmp_path / "r")
    assert back.experiment == "stability"
    assert back.verdict == res.verdict
    np.testing.assert_array_equal(back.trajectories["flip_mc"], res.trajectories["flip_mc"])


def test_unknown_experiment_and_field():
    with pytest.raises(ValueError, match="unknown experiment"):
        run("nope")
    with pytest.raises(ValueError, match="not fields"):
        run("theorem1", bogus=1)
    with pytest.raises(ValueError):
        run("theorem1", betas=(0.0,))


def test_cli_list_and_run(tmp_path, capsys):
    assert main(["--list"]) == 0
    assert "theorem1" in capsys.readouterr().out
    assert set(available_experiments()) >= {"theorem1", "stability", "destination"}
    assert main(["stability", "--quick", "--n-trials", "300", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "stability" / "stability.png").exists()
    assert (tmp_path / "stability" / "metrics.jsonl").exists() or (
        tmp_path / "stability" / "verdict.json"
    ).exists()


def test_demo_writes_pngs(tmp_path):
    demo(tmp_path)
    for name in ("theorem1", "stability", "destination"):
        assert (tmp_path / f"sim_{name}.png").stat().st_size > 1000
