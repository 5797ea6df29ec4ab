"""Shared timing helpers for the scripts in ``benchmarks/``: interleaved repetitions, the machine line, goals.

Every benchmark times its contenders *interleaved*: repetition ``r`` runs each contender once, in an order rotated
by ``r``, so a burst of load from other processes hits all contenders alike; ratios are taken between medians of
the same run. Nothing here imports torch.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping

__all__ = ["Goal", "bytecode_env", "cpu_line", "interleave", "load_line", "median"]


def interleave(
    contenders: Mapping[str, Callable[[], object]],
    repeats: int,
    *,
    warmup: int = 1,
    setup: Mapping[str, Callable[[], object]] | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each contender, ``repeats`` calls each, interleaved with a rotating order.

    ``setup[name]`` (optional) runs untimed before each call of ``name`` (e.g. to reset state). ``warmup`` untimed
    rounds run first (compilation, caches, first-touch page faults).
    """
    names = list(contenders)
    times: dict[str, list[float]] = {name: [] for name in names}
    setup = setup or {}
    for r in range(warmup + repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            if name in setup:
                setup[name]()
            t0 = time.perf_counter()
            contenders[name]()
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[name].append(dt)
    return times


def bytecode_env(cache_dir: str) -> dict[str, str]:
    """The environment for a timed child process, with Python's bytecode cache on (under ``cache_dir``).

    An installed package runs from compiled bytecode (``pip install`` writes it); an environment that sets
    ``PYTHONDONTWRITEBYTECODE`` makes every fresh process compile each module it imports from source (about
    1-2 s for numpy, scipy, matplotlib and sharpen), a cost a user's install does not pay. The caller runs the
    command once untimed to fill ``cache_dir``.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = cache_dir
    return env


def median(xs) -> float:
    return float(statistics.median(xs))


def cpu_line() -> str:
    """CPU model, core count and the SIMD / bf16 flags that change which kernels torch and numpy run."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    bf16 = "native bf16" if {"avx512_bf16", "amx_bf16"} & flags else "no native bf16"
    return f"{os.cpu_count()}-core {model}, {simd}, {bf16}"


def load_line(before: tuple[float, float, float]) -> str:
    """The 1/5/15-minute load averages before the run and now."""
    after = os.getloadavg()
    return "load average (1/5/15 min) before: {} / after: {}".format(
        ", ".join(f"{x:.2f}" for x in before), ", ".join(f"{x:.2f}" for x in after)
    )


class Goal:
    """A stated target ``value <= limit`` (or ``>=``), printed with met / missed and the margin."""

    def __init__(self, text: str, value: float, limit: float, *, at_least: bool = False) -> None:
        self.text, self.value, self.limit, self.at_least = text, value, limit, at_least

    @property
    def met(self) -> bool:
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def __str__(self) -> str:
        sign = ">=" if self.at_least else "<="
        verdict = "MET" if self.met else "MISSED"
        off = self.value / self.limit if self.limit else float("inf")
        return f"goal: {self.text}: {self.value:.2f} (goal {sign} {self.limit:g}) -> {verdict} ({off:.2f}x the goal)"
