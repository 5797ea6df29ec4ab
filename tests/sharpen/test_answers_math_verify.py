r"""``equivalent(..., math_verify=True)`` under a deadline, on the main thread and off it.

Math-Verify's own timeouts use ``signal.alarm`` (main thread only), so off the main thread a power tower ran
for good (> 30 s before this fix). The checks now run in a worker process with a deadline; these tests give
each adversarial input a 2 s deadline and allow ``SLACK_S`` on top for a loaded machine (the measured time is
about 1.6 s: the worker stops itself at 80% of the deadline). The first check of a process also starts the
worker (about a second), so each test starts one before it measures.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from sharpen import answers
from sharpen.answers import equivalent

pytest.importorskip("math_verify")

TIMEOUT_S = 2.0
SLACK_S = 3.0
ADVERSARIAL = [
    "9^{9^{9}}",  # a power tower
    "(10^{7})!",
    "\\frac{1}{" * 400 + "2" + "}" * 400,  # deep \frac, 4,000 characters
    "{" * 2000 + "1" + "}" * 2000,  # deep braces
    "+".join(["2"] * 1500),  # a long sum
]


@pytest.fixture
def fresh_workers():
    """No idle worker before the test, none left after it (a test may replace the worker command)."""
    answers._stop_workers()
    yield
    answers._stop_workers()


def _timed(gold, pred, **kwargs):
    start = time.perf_counter()
    result = equivalent(gold, pred, math_verify=True, **kwargs)
    return result, time.perf_counter() - start


def _in_thread(f, *args, **kwargs):
    out = []
    t = threading.Thread(target=lambda: out.append(f(*args, **kwargs)))
    t.start()
    t.join(timeout=120)
    assert not t.is_alive()
    return out[0]


def test_adversarial_inputs_return_within_the_deadline_off_the_main_thread():
    assert equivalent("1/2", "0.5", math_verify=True)  # starts the worker
    for pred in ADVERSARIAL[:4]:
        result, dt = _in_thread(_timed, "1", pred, timeout=TIMEOUT_S)
        assert result is False, pred[:20]
        assert dt < TIMEOUT_S + SLACK_S, (pred[:20], dt)
    assert equivalent("1/2", "0.5", math_verify=True)  # the worker still answers


def test_adversarial_inputs_return_within_the_deadline_on_the_main_thread():
    assert threading.current_thread() is threading.main_thread()
    assert equivalent("1/2", "0.5", math_verify=True)
    for pred in (ADVERSARIAL[0], ADVERSARIAL[4]):
        result, dt = _timed("1", pred, timeout=TIMEOUT_S)
        assert result is False and dt < TIMEOUT_S + SLACK_S, (pred[:20], dt)


def test_concurrent_callers_each_get_a_worker(fresh_workers):
    equivalent("1/2", "0.5", math_verify=True)
    results = {}

    def check(key, gold, pred):
        results[key] = _timed(gold, pred, timeout=TIMEOUT_S)

    jobs = [("tower", "1", ADVERSARIAL[0]), ("fact", "1", ADVERSARIAL[1]), ("half", "1/2", "0.5")]
    threads = [threading.Thread(target=check, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results["tower"][0] is False and results["fact"][0] is False
    assert results["half"][0] is True  # not held up by, or killed with, the stuck checks
    # workers started by the other threads may be new: allow their start-up on top
    assert all(dt < TIMEOUT_S + SLACK_S + 10 for _, dt in results.values())


def test_a_worker_stuck_in_c_is_killed_and_replaced(fresh_workers, monkeypatch):
    """A worker that ignores its own timer (as in a long big-integer power in C) is killed at the deadline."""
    stuck = "import sys, time; print('ready', flush=True); sys.stdin.readline(); time.sleep(600)"
    monkeypatch.setattr(answers, "_WORKER_COMMAND", stuck)
    worker = answers._take_worker()
    with answers._idle_lock:
        answers._idle_workers.append(worker)
    result, dt = _in_thread(_timed, "1", "2", timeout=1.0)
    assert result is False and 1.0 <= dt < 1.0 + SLACK_S
    assert worker.proc.returncode is not None  # killed and reaped
    assert len(answers._idle_workers) == 1 and answers._idle_workers[0] is not worker  # replaced


def test_a_worker_that_dies_is_replaced(fresh_workers):
    assert equivalent("1/2", "0.5", math_verify=True)
    (worker,) = answers._idle_workers
    worker.proc.kill()
    worker.proc.wait()
    assert equivalent("1/2", "0.5", math_verify=True)  # a new worker, no error


def test_canonical_equality_does_not_start_a_worker(fresh_workers):
    start = time.perf_counter()
    for _ in range(1000):
        assert equivalent("1,000", "1000", math_verify=True)
    assert answers._idle_workers == []
    assert (time.perf_counter() - start) / 1000 < 1e-3  # measured: about 20 microseconds a call


def test_answers_are_not_executed(tmp_path):
    """Math-Verify parses LaTeX into sympy; nothing in an answer runs as Python.

    (The verdict is not asserted: where Math-Verify cannot parse an expression it falls back to its first
    number, so ``1+__import__(..)`` is "equivalent" to ``1``.)
    """
    marker = tmp_path / "x"
    payloads = [
        r"1+__import__('os').system('touch /tmp/x')",  # the report's; canonicalize drops its space
        f"1+__import__('pathlib').Path('{marker}').touch()",  # no space to drop
        f"__import__('pathlib').Path('{marker}').touch()",
    ]
    existed = os.path.exists("/tmp/x")
    for payload in payloads:
        for response in (f"so \\boxed{{{payload}}}", f"Answer: {payload}"):
            pred = answers.extract_answer(response)
            assert pred == payload
            equivalent("1", pred, math_verify=True)
            equivalent(pred, "2", math_verify=True)
    assert not marker.exists()
    assert os.path.exists("/tmp/x") == existed


def test_timeout_must_be_positive():
    with pytest.raises(ValueError, match="timeout"):
        equivalent("1", "2", math_verify=True, timeout=0)
