"""Fixtures of the empirical tests: one pretrained tiny model per session, in a private cache folder."""

from __future__ import annotations

import os

import pytest

# The tests' prior: pretraining stops at the first check with greedy accuracy >= 0.6 on the check sums (at
# most 600 steps). A step count would give a different prior on each CPU (torch's kernels differ); a measured
# stopping point gives an imperfect prior of the same strength on every machine.
PRETRAIN = {"steps": 600, "stop_at_accuracy": 0.6}
# scripts/check_portability.sh also runs the suite with two torch threads (other reduction orders, other bits)
TORCH_THREADS = int(os.environ.get("SHARPEN_TEST_TORCH_THREADS", "1"))


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """``build_trainer`` sets torch's thread count (``torch_threads``); give other tests theirs back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """``SHARPEN_CACHE`` pointing at a session folder holding the tests' pretrained tiny model (built once, on
    one torch thread: ~20 s on 2 idle cores)."""
    from empirical.tiny import PretrainConfig, pretrained_tiny_model

    root = tmp_path_factory.mktemp("sharpen-cache")
    old = os.environ.get("SHARPEN_CACHE")
    os.environ["SHARPEN_CACHE"] = str(root)
    pretrained_tiny_model(PretrainConfig(**PRETRAIN), threads=TORCH_THREADS)
    yield root
    if old is None:
        os.environ.pop("SHARPEN_CACHE", None)
    else:
        os.environ["SHARPEN_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_prior():
    """The tests' :class:`~empirical.tiny.PretrainConfig`."""
    from empirical.tiny import PretrainConfig

    return PretrainConfig(**PRETRAIN)


@pytest.fixture(scope="session")
def tiny_model(tiny_cache, tiny_prior):
    """Folder of the tests' pretrained tiny model (a local model folder any config can name)."""
    from empirical.tiny import pretrained_tiny_model

    return pretrained_tiny_model(tiny_prior)


@pytest.fixture
def tiny_config(tiny_model, tmp_path):
    """A small, fast configuration of the tiny preset on the tests' prior, writing into a fresh folder."""
    from empirical.config import preset

    return preset("tiny-arith-ttrl").replace(
        model=str(tiny_model),
        out_dir=str(tmp_path / "run"),
        progress=False,
        n_probe=16,
        probe_samples=16,
        n_eval=40,
        eval_every=0,
        checkpoint_every=0,
        torch_threads=TORCH_THREADS,
    )
