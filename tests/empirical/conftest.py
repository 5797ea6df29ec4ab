"""Fixtures of the empirical tests: one pretrained tiny model per session, in a private cache folder."""

from __future__ import annotations

import os

import pytest

PRETRAIN_STEPS = (
    300  # shorter than the preset's 400: still an imperfect prior (about 55-60% greedy)
)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """``SHARPEN_CACHE`` pointing at a session folder holding the pretrained tiny model (built once)."""
    from empirical.tiny import PretrainConfig, pretrained_tiny_model

    root = tmp_path_factory.mktemp("sharpen-cache")
    old = os.environ.get("SHARPEN_CACHE")
    os.environ["SHARPEN_CACHE"] = str(root)
    pretrained_tiny_model(PretrainConfig(steps=PRETRAIN_STEPS))
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
