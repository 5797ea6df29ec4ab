"""Tests of the ``sharpen theory`` command and the theory demo step (files, not stdout scraping)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from sharpen import theory as th
from sharpen._theory_cli import (
    demo,
    initial_answer_probs,
    monte_carlo_win_prob,
    register,
    stability_table,
    theorem_table,
)


def _parse(argv):
    parser = argparse.ArgumentParser(prog="sharpen")
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_theorem_table_matches_the_theory():
    t = theorem_table(0.3, 0.5, 20)
    np.testing.assert_allclose(t.p, th.majority_prob(0.3, 0.5, np.arange(21)))
    assert np.all(t.gap <= t.bound * (1 + 1e-12))
    assert t.contraction[-1] == pytest.approx(float(th.rho(0.5)), rel=1e-6)


def test_stability_table_is_consistent():
    probs = initial_answer_probs(0.4, 4, unparseable=0.1)
    np.testing.assert_allclose(probs, [0.4, 0.5 / 3, 0.5 / 3, 0.5 / 3])
    s = stability_table(probs, 8, 1.0, 6)
    np.testing.assert_allclose(s.stable, th.stability_curve(probs, 8, 1.0, 6))
    np.testing.assert_allclose(s.win[0], th.plurality_win_probs(probs, 8)[0])
    assert np.all(s.hoeffding >= 1 - s.win - 1e-12)
    with pytest.raises(ValueError, match="^p0:"):
        initial_answer_probs(0.2, 3)  # the others would get 0.4 each


def test_monte_carlo_helper_agrees_with_exact():
    probs = np.array([0.35, 0.3, 0.15])
    est, se = monte_carlo_win_prob(probs, 10, 20_000, np.random.default_rng(1))
    assert abs(est - th.plurality_win_probs(probs, 10)[0]) <= 4 * se


def test_command_writes_plot_and_csv(tmp_path):
    args = _parse(
        [
            "theory",
            "--p0",
            "0.3",
            "--beta",
            "0.5",
            "--steps",
            "12",
            "--n",
            "8",
            "--out",
            str(tmp_path),
        ]
    )
    assert args.func(args) == 0
    assert (tmp_path / "theorem1.png").stat().st_size > 10_000
    data = np.genfromtxt(tmp_path / "theorem1.csv", delimiter=",", names=True)
    assert data.shape == (13,)
    np.testing.assert_allclose(data["p_k"], th.majority_prob(0.3, 0.5, np.arange(13)), rtol=1e-9)


def test_command_rejects_bad_input(tmp_path):
    args = _parse(["theory", "--beta", "-1", "--out", str(tmp_path)])
    assert args.func(args) == 2
    assert not (tmp_path / "theorem1.png").exists()


def test_demo_writes_figures(tmp_path):
    demo(tmp_path)
    for name in ("theorem1.png", "majority_stability.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    data = np.genfromtxt(tmp_path / "majority_stability.csv", delimiter=",", names=True)
    mc = ~np.isnan(data["mc_win_prob"])
    assert mc.sum() == 20
    # Every Monte-Carlo point sits within 4 SE of the exact curve at the same (margin, n).
    for row in data[mc]:
        exact = data[(data["margin"] == row["margin"]) & (data["n"] == row["n"]) & ~mc][
            "exact_win_prob"
        ]
        assert abs(row["mc_win_prob"] - exact[0]) <= 4 * row["mc_se"] + 1e-3
