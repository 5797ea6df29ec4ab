"""sharpen.records.jsonable: its fast paths (lists of plain numbers, finite numeric arrays) give what the plain
recursive walk gives, value for value and type for type."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from sharpen.records import jsonable


def _walk(value, *, inf_as_text=False):
    """The sanitiser written as a plain recursive walk, element by element."""
    if isinstance(value, Mapping):
        return {str(k): _walk(v, inf_as_text=inf_as_text) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(v, inf_as_text=inf_as_text) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _walk(dataclasses.asdict(value), inf_as_text=inf_as_text)
    if isinstance(value, Path):
        return str(value)
    if getattr(value, "ndim", 0) and callable(getattr(value, "tolist", None)):
        return _walk(value.tolist(), inf_as_text=inf_as_text)
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return ("inf" if value > 0 else "-inf") if inf_as_text and not math.isnan(value) else None
    return value


def _random_value(rng, depth=0):
    kind = int(rng.integers(0, 13 if depth < 3 else 8))
    if kind == 0:
        return float(rng.standard_normal())
    if kind == 1:
        return float(rng.choice([math.nan, math.inf, -math.inf, 1e308, -0.0]))
    if kind == 2:
        return int(rng.integers(-5, 5))
    if kind == 3:
        return bool(rng.integers(0, 2))
    if kind == 4:
        return rng.choice([None, "text", np.float32(1.5), np.int64(3)])
    if kind == 5:
        shape = tuple(int(s) for s in rng.integers(0, 4, rng.integers(0, 3)))
        a = (rng.standard_normal(shape) * 10).astype(
            rng.choice([np.float64, np.float32, np.int32, np.bool_])
        )
        if a.size and a.dtype.kind == "f" and rng.random() < 0.3:
            a.reshape(-1)[0] = rng.choice([np.nan, np.inf])
        return a
    if kind == 6:  # a list of floats, finite or not, or one overflowing in its sum
        floats = [float(x) for x in rng.standard_normal(rng.integers(0, 6))]
        return floats + [float(rng.choice([math.nan, math.inf, 1.7e308]))] * int(rng.integers(0, 3))
    if kind == 7:
        return [int(x) for x in rng.integers(0, 9, rng.integers(0, 5))] + [True] * int(
            rng.integers(0, 2)
        )
    if kind == 8:
        return [_random_value(rng, depth + 1) for _ in range(rng.integers(0, 5))]
    if kind == 9:
        return tuple(_random_value(rng, depth + 1) for _ in range(rng.integers(0, 5)))
    if kind == 10:
        return {i: _random_value(rng, depth + 1) for i in range(rng.integers(0, 4))}
    if kind == 11:
        return torch.tensor(rng.standard_normal(3))
    return Path("a") / "b"


def test_jsonable_equals_the_plain_walk():
    rng = np.random.default_rng(0)
    for _ in range(3000):
        value = _random_value(rng)
        for inf_as_text in (False, True):
            got, want = (
                jsonable(value, inf_as_text=inf_as_text),
                _walk(value, inf_as_text=inf_as_text),
            )
            assert json.dumps(got) == json.dumps(want)
            assert type(got) is type(want)
            if isinstance(want, list):
                assert [type(x) for x in got] == [type(x) for x in want]
