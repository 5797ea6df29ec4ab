"""The figures' smoothers are :func:`sharpen.metrics.trailing_mean`, plus their documented gap rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from paper_figures.data import smooth
from sharpen.metrics import trailing_mean


def _plain_gap_mean(y: list[float], window: int) -> list[float]:
    """Reference: mean of the finite values among the last ``window`` entries; NaN where the entry is missing."""
    out = []
    for i, v in enumerate(y):
        present = [u for u in y[max(0, i - window + 1) : i + 1] if math.isfinite(u)]
        out.append(sum(present) / len(present) if math.isfinite(v) else math.nan)
    return out


@given(
    y=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40),
    window=st.integers(1, 12),
    spacing=st.sampled_from([1.0, 10.0]),
)
def test_smooth_without_gaps_is_trailing_mean_over_steps(y, window, spacing):
    # a window of `window * spacing` steps over a series logged every `spacing` steps = `window` entries
    x = np.arange(len(y)) * spacing
    got = smooth(x, np.array(y), int(window * spacing))
    want = np.array(y) if len(y) < window else trailing_mean(y, window)
    assert np.array_equal(got, want)


@given(
    y=st.lists(st.one_of(st.floats(-1e3, 1e3), st.just(math.nan), st.just(math.inf)), min_size=1, max_size=30),
    window=st.integers(1, 8),
)  # fmt: skip
def test_smooth_leaves_missing_values_out_of_the_mean(y, window):
    got = smooth(np.arange(len(y), dtype=float), np.array(y), window)
    if window <= 1 or len(y) < window:
        assert np.array_equal(got, np.array(y), equal_nan=True)
        return
    want = _plain_gap_mean(y, window)
    assert np.allclose(got, want, rtol=1e-12, atol=1e-9, equal_nan=True)


def test_batch_curves_are_trailing_means_of_the_logged_steps():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from empirical.plots import draw_batch

    metrics = [
        {"step": s, "majority_ratio": 0.1 * s, "label_accuracy": None if s == 2 else 0.5}
        for s in range(6)
    ]
    fig, ax = plt.subplots()
    try:
        draw_batch(ax, metrics, window=3)
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        mr = lines["majority_ratio"]
        assert np.array_equal(mr.get_xdata(), np.arange(6.0))
        assert np.array_equal(mr.get_ydata(), trailing_mean([0.1 * s for s in range(6)], 3))
        # the unlogged step 2 is left out, not a NaN that blanks the rest of the curve
        la = lines["label_accuracy"]
        assert la.get_xdata().tolist() == [0, 1, 3, 4, 5] and np.all(la.get_ydata() == 0.5)
    finally:
        plt.close(fig)
