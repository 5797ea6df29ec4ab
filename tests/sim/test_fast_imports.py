"""The fast tabular step's cheap parts: lazy imports, exact tie ranks, and the flat-index update."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from scipy import stats

from sim.fast import _uniform_ranks, tabular_majority_step

ALPHA = 1e-3


def test_import_sim_and_sim_fast_load_neither_torch_nor_scipy():
    code = (
        "import sys, sim, sim.fast\n"
        "heavy = [m for m in ('torch', 'scipy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert callable(sim.fast.tabular_majority_step) and 'run' in dir(sim)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_public_names_still_resolve_lazily():
    import sim

    for name in sim.__all__:
        assert getattr(sim, name) is not None


def test_uniform_ranks_are_uniform_for_every_bound():
    rng = np.random.default_rng(0)
    bounds = np.repeat(np.arange(1, 8, dtype=np.uint8), 6000)
    j = _uniform_ranks(bounds, rng)
    assert j.dtype == np.uint8 and (j < bounds).all()
    assert (j[bounds == 1] == 0).all()
    for t in range(2, 8):
        observed = np.bincount(j[bounds == t], minlength=t)
        assert stats.chisquare(observed).pvalue > ALPHA


def test_uniform_ranks_fall_back_for_many_ties():
    rng = np.random.default_rng(1)
    bounds = np.full(3000, 30, dtype=np.uint8)  # lcm(1..30) does not fit in 32 bits
    j = _uniform_ranks(bounds, rng)
    assert (j < 30).all() and stats.chisquare(np.bincount(j, minlength=30)).pvalue > ALPHA


def test_fast_step_flat_update_equals_the_two_dimensional_one():
    z = np.random.default_rng(2).standard_normal((6, 700)).astype(np.float32)
    c_order, f_order = z.copy(), np.asfortranarray(z)
    w_c = tabular_majority_step(c_order, 8, 0.1, np.random.default_rng(3))
    w_f = tabular_majority_step(f_order, 8, 0.1, np.random.default_rng(3))
    np.testing.assert_array_equal(w_c, w_f)
    np.testing.assert_array_equal(c_order, f_order)
