"""The vLLM version guard and weight sync of ``empirical.rollout.VLLMBackend``, with a fake ``vllm`` module.

vLLM is not installed here: the fake engine offers the two worker API shapes. From vLLM 0.16 the worker takes
``reload_weights(weights_iterator=...)``; before it ``reload_weights()`` takes no weights and the sync goes
through the model runner's ``model.load_weights(weights)``. A vLLM older than the floor, or one older than 0.16
without CUDA, is refused before the engine starts, naming the version; the ``gpu`` extra's floor matches.
(Here, not in tests/empirical, because the integration owns the weight-sync contract with vLLM.)
"""

from __future__ import annotations

import dataclasses
import sys
import types
from pathlib import Path

import pytest
import tomllib
import torch

from empirical.rollout import (
    VLLM_MIN_VERSION,
    VLLM_RELOAD_WEIGHTS_VERSION,
    VLLMBackend,
    check_vllm_version,
    vllm_weight_sync,
)


class _Head:
    """A tied lm_head whose quant method records its post-load repacking."""

    def __init__(self):
        self.repacked = 0
        self.quant_method = types.SimpleNamespace(process_weights_after_loading=self._repack)

    def _repack(self, layer):
        assert layer is self
        self.repacked += 1


class _Model:
    def __init__(self):
        self.lm_head, self.loaded = _Head(), None

    def load_weights(self, weights):
        self.loaded = list(weights)
        return {name for name, _ in self.loaded}


class _NewWorker:
    """vLLM >= 0.16: the worker's reload_weights takes the weights."""

    def __init__(self):
        self.model_runner = types.SimpleNamespace(model=_Model())
        self.reloaded = None

    def reload_weights(self, *, weights_iterator):
        self.reloaded = list(weights_iterator)


class _OldWorker(_NewWorker):
    """vLLM 0.10 .. 0.15: reload_weights() takes no weights (it re-reads the checkpoint from disk)."""

    def reload_weights(self):
        self.reloaded = "checkpoint"


class _LLM:
    """The two engine calls ``sync`` makes, recorded; ``worker`` is set per test (the API shape)."""

    instances: list = []
    worker_class: type = _NewWorker

    def __init__(self, **kwargs):
        self.kwargs, self.worker, self.resets = kwargs, _LLM.worker_class(), 0
        _LLM.instances.append(self)

    def collective_rpc(self, fn):
        return [fn(self.worker)]

    def reset_prefix_cache(self):
        self.resets += 1


@dataclasses.dataclass
class _EngineArgs:
    model: str = ""


def _fake_vllm(monkeypatch, version, worker=_NewWorker, cuda=False):
    vllm = types.ModuleType("vllm")
    vllm.__version__ = version
    vllm.LLM = _LLM
    engine = types.ModuleType("vllm.engine")
    arg_utils = types.ModuleType("vllm.engine.arg_utils")
    arg_utils.EngineArgs = _EngineArgs
    engine.arg_utils = arg_utils
    vllm.engine = engine
    for name, mod in (
        ("vllm", vllm),
        ("vllm.engine", engine),
        ("vllm.engine.arg_utils", arg_utils),
    ):
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(_LLM, "worker_class", worker)
    _LLM.instances.clear()


def _backend():
    return VLLMBackend(
        "model-dir", pad_id=0, eos_id=2, seed=0, max_model_len=64, gpu_memory_utilization=0.3,
        dtype="float32",
    )  # fmt: skip


def _model():
    torch.manual_seed(0)
    return torch.nn.Linear(2, 1)


def _assert_synced(llm, loaded, model):
    assert [name for name, _ in loaded] == ["weight", "bias"]
    for (_, got), want in zip(loaded, (model.weight, model.bias), strict=True):
        assert torch.equal(got, want.detach())
    assert (
        llm.worker.model_runner.model.lm_head.repacked == 1
    )  # the tied head repacked after the load
    assert llm.resets == 1


@pytest.mark.parametrize("version", ["0.16.0", "0.16.0rc1.dev5+cpu", "0.33.0", "1.0"])
@pytest.mark.parametrize("cuda", [False, True])
def test_a_vllm_from_0_16_syncs_through_reload_weights(monkeypatch, version, cuda):
    _fake_vllm(monkeypatch, version, _NewWorker, cuda=cuda)
    backend, model = _backend(), _model()
    backend.sync(model)
    (llm,) = _LLM.instances
    assert llm.worker.model_runner.model.loaded is None  # not the model runner's load_weights
    _assert_synced(llm, llm.worker.reloaded, model)


@pytest.mark.parametrize("version", ["0.10.0", "0.10.2", "0.12.0", "0.15.1", "0.15.99rc1"])
def test_an_older_cuda_vllm_syncs_through_the_model_runners_load_weights(monkeypatch, version):
    # was: refused before the engine started (the extra's floor was 0.16), so vLLM 0.10 .. 0.15 could not be used
    _fake_vllm(monkeypatch, version, _OldWorker, cuda=True)
    backend, model = _backend(), _model()
    assert _LLM.instances[0].kwargs["gpu_memory_utilization"] == 0.3
    backend.sync(model)
    (llm,) = _LLM.instances
    assert llm.worker.reloaded is None  # reload_weights() would re-read the stale checkpoint
    _assert_synced(llm, llm.worker.model_runner.model.loaded, model)
    with torch.no_grad():
        model.weight.add_(1.0)  # a second step: the engine gets the new values, not the first ones
    backend.sync(model)
    assert torch.equal(llm.worker.model_runner.model.loaded[0][1], model.weight.detach())
    assert llm.worker.model_runner.model.lm_head.repacked == 2 and llm.resets == 2


@pytest.mark.parametrize("version", ["0.9.2", "0.8.5", "0.7.3"])
def test_a_vllm_below_the_floor_is_refused_before_the_engine_starts(monkeypatch, version):
    _fake_vllm(monkeypatch, version, _OldWorker, cuda=True)
    with pytest.raises(ValueError, match=rf"needs vLLM >= 0\.10 \(found {version}\)"):
        _backend()
    assert _LLM.instances == []


@pytest.mark.parametrize("version", ["0.10.2", "0.15.1"])
def test_an_older_vllm_without_cuda_is_refused_before_the_engine_starts(monkeypatch, version):
    # the CPU build repacks its linear weights after loading: model.load_weights fails there halfway
    _fake_vllm(monkeypatch, version, _OldWorker, cuda=False)
    with pytest.raises(
        ValueError, match=rf"without CUDA needs vLLM >= 0\.16 \(found {version}\).*load_weights"
    ):
        _backend()
    assert _LLM.instances == []


def test_a_worker_without_the_api_its_version_claims_fails_loudly(monkeypatch):
    # a 0.16 version string on an engine whose worker still has the old reload_weights(): a clear error, not a
    # silently stale engine
    _fake_vllm(monkeypatch, "0.16.0", _OldWorker, cuda=True)
    backend = _backend()
    with pytest.raises(
        RuntimeError, match=r"weight sync through reload_weights failed on vLLM 0\.16\.0"
    ):
        backend.sync(_model())
    assert _LLM.instances[0].resets == 0


def test_vllm_weight_sync_picks_the_call_by_version():
    assert vllm_weight_sync("0.16", cuda=False) == "reload_weights"
    assert vllm_weight_sync("0.15.1", cuda=True) == "load_weights"
    assert vllm_weight_sync(".".join(map(str, VLLM_MIN_VERSION)), cuda=True) == "load_weights"
    assert (
        vllm_weight_sync(".".join(map(str, VLLM_RELOAD_WEIGHTS_VERSION)), cuda=False)
        == "reload_weights"
    )
    with pytest.raises(ValueError, match="without CUDA"):
        vllm_weight_sync("0.15.1", cuda=False)
    with pytest.raises(ValueError, match="cannot read"):
        vllm_weight_sync("unknown", cuda=True)


def test_check_vllm_version_and_the_extras_floor_agree():
    check_vllm_version("0.16")
    with pytest.raises(ValueError, match="cannot read"):
        check_vllm_version("unknown")
    pyproject = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    (gpu,) = pyproject["project"]["optional-dependencies"]["gpu"]
    assert gpu == "vllm>=" + ".".join(map(str, VLLM_MIN_VERSION))


def test_docstring_examples_run():
    import doctest

    import empirical.rollout as rollout

    result = doctest.testmod(rollout, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
