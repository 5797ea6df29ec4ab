"""The vLLM version guard of ``empirical.rollout.VLLMBackend``, with a fake ``vllm`` module (vLLM is not installed).

``VLLMBackend.sync`` calls the worker's ``reload_weights(weights_iterator=...)``, which vLLM adds in 0.16: an older
vLLM must be refused before the engine starts, naming the version, and the ``gpu`` extra's floor must match.
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

from empirical.rollout import VLLM_MIN_VERSION, VLLMBackend, check_vllm_version


class _Worker:
    def __init__(self):
        self.loaded = None
        self.model_runner = types.SimpleNamespace(model=types.SimpleNamespace(lm_head=None))

    def reload_weights(self, *, weights_iterator):
        self.loaded = list(weights_iterator)


class _LLM:
    """The two engine calls ``sync`` makes, recorded."""

    instances: list = []

    def __init__(self, **kwargs):
        self.kwargs, self.worker, self.resets = kwargs, _Worker(), 0
        _LLM.instances.append(self)

    def collective_rpc(self, fn):
        return [fn(self.worker)]

    def reset_prefix_cache(self):
        self.resets += 1


@dataclasses.dataclass
class _EngineArgs:
    model: str = ""


def _fake_vllm(monkeypatch, version):
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
    _LLM.instances.clear()


def _backend():
    return VLLMBackend(
        "model-dir", pad_id=0, eos_id=2, seed=0, max_model_len=64, gpu_memory_utilization=0.3,
        dtype="float32",
    )  # fmt: skip


@pytest.mark.parametrize("version", ["0.10.2", "0.15.1", "0.15.99rc1"])
def test_an_older_vllm_is_refused_before_the_engine_starts(monkeypatch, version):
    # was: accepted (the extra said vllm>=0.10), then the first sync died inside the worker with a TypeError
    _fake_vllm(monkeypatch, version)
    with pytest.raises(
        ValueError, match=rf"needs vLLM >= 0\.16 \(found {version}\).*reload_weights"
    ):
        _backend()
    assert _LLM.instances == []  # refused before building the engine


@pytest.mark.parametrize("version", ["0.16.0", "0.16.0rc1.dev5+cpu", "0.33.0", "1.0"])
def test_a_supported_vllm_syncs_through_reload_weights(monkeypatch, version):
    _fake_vllm(monkeypatch, version)
    backend = _backend()
    model = torch.nn.Linear(2, 1)
    backend.sync(model)
    (llm,) = _LLM.instances
    assert [name for name, _ in llm.worker.loaded] == ["weight", "bias"]
    torch.testing.assert_close(llm.worker.loaded[0][1], model.weight.detach())
    assert llm.resets == 1


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
