"""Fixtures of the empirical tests: one pretrained tiny model per session, in a private cache folder."""

from __future__ import annotations

import os

import pytest

PRETRAIN_STEPS = (
    300  # shorter than the preset's 400: still an imperfect prior (about 55-60% greedy)
)


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """``build_trainer`` sets torch's thread count (``torch_threads``); give other tests theirs back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """``SHARPEN_CACHE`` pointing at a session folder holding the pretrained tiny model (built once, on one
    torch thread: ~20 s on 2 cores; two threads save a third when the machine is idle but run up to 10x slower
    when other processes compete for the cores)."""
    import torch

    from empirical.tiny import PretrainConfig, pretrained_tiny_model

    root = tmp_path_factory.mktemp("sharpen-cache")
    old = os.environ.get("SHARPEN_CACHE")
    os.environ["SHARPEN_CACHE"] = str(root)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pretrained_tiny_model(PretrainConfig(steps=PRETRAIN_STEPS))
    finally:
        torch.set_num_threads(threads)
    yield root
    if old is None:
        os.environ.pop("SHARPEN_CACHE", None)
    else:
        os.environ["SHARPEN_CACHE"] = old


@pytest.fixture
def tiny_config(tiny_cache, tmp_path):
    """A small, fast configuration of the tiny preset writing into a fresh folder."""
    from empirical.config import preset

    return preset("tiny-arith-ttrl").replace(
        pretrain_steps=PRETRAIN_STEPS,
        out_dir=str(tmp_path / "run"),
        progress=False,
        n_probe=16,
        probe_samples=16,
        n_eval=40,
        eval_every=0,
        checkpoint_every=0,
    )
