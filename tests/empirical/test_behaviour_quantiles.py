"""behaviour_metrics' length quantiles, taken in one np.quantile call, equal one call per quantile."""

from __future__ import annotations

import numpy as np
import pytest

from empirical.behaviour import _quantiles, behaviour_metrics


@pytest.mark.parametrize("seed", range(30))
def test_quantiles_in_one_call_equal_one_call_each(seed):
    rng = np.random.default_rng(seed)
    values = rng.integers(
        1, [2, 7, 65][seed % 3], size=int(rng.integers(1, 300))
    )  # ties, one value
    qs = [
        [0.1, 0.5, 0.9],
        [0.0, 1.0],
        [0.25],
        [0.33, 0.66, 0.999, 0.001],
        [float(q) for q in rng.random(5)],
    ][seed % 5]
    got = _quantiles(values, qs)
    assert got == [float(np.quantile(values, q)) for q in qs]
    assert all(type(v) is float for v in got)
    assert _quantiles(values, []) == []


def test_behaviour_length_quantiles_keep_their_names_order_and_values():
    responses = [[5, 6, 2], [5, 5, 5, 5, 2], [7, 2], [5]]
    m = behaviour_metrics(
        responses, ["1", None, "2", "2"], n=2, eos_id=2, quantiles=(0.9, 0.1, 0.5)
    )
    lengths = np.array([3, 5, 2, 1])
    keys = [k for k in m if k.startswith("behaviour/length_p")]
    assert keys == ["behaviour/length_p90", "behaviour/length_p10", "behaviour/length_p50"]
    assert [m[k] for k in keys] == [float(np.quantile(lengths, q)) for q in (0.9, 0.1, 0.5)]
    assert not any(
        k.startswith("behaviour/length_p")
        for k in behaviour_metrics(responses, [None] * 4, n=2, quantiles=())
    )
