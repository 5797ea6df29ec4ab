"""sharpen figures' simulator workers start with one BLAS / OpenMP thread each (paper_figures.cli), and the
parent's environment is left as it was."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from paper_figures.cli import THREAD_VARIABLES, single_threaded_children


def thread_settings() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in THREAD_VARIABLES}


def test_workers_started_inside_see_one_thread_and_the_parent_is_restored(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # a user's own setting
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    before = thread_settings()
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        with single_threaded_children():
            assert thread_settings() == dict.fromkeys(THREAD_VARIABLES, "1")
            future = pool.submit(thread_settings)  # the worker starts here
        assert thread_settings() == before
        assert future.result() == dict.fromkeys(THREAD_VARIABLES, "1")
        assert pool.submit(thread_settings).result() == dict.fromkeys(THREAD_VARIABLES, "1")
