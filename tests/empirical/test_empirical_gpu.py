"""Device-dependent checks: skipped cleanly without CUDA or vLLM."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from empirical.config import preset

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_vllm_backend_without_vllm_is_a_clear_error(tiny_config):
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    from empirical.train import build_trainer

    with pytest.raises(ValueError, match="needs the vllm package"):
        build_trainer(tiny_config.replace(backend="vllm"))


@pytest.mark.gpu
@needs_cuda
def test_tiny_preset_bf16_on_cuda(tiny_config):
    from empirical.train import train
    from sharpen.records import load_run

    cfg = tiny_config.replace(
        device="cuda", precision="bfloat16", steps=30, lr=2e-4, probe_every=30
    )
    run = load_run(train(cfg))
    p = {
        s: sum(r["p_majority"] for r in run.probes if r["step"] == s) / cfg.n_probe for s in (0, 30)
    }
    assert p[30] > p[0], p


def test_preset_for_gpu_is_complete():
    cfg = preset("qwen3-1.7b-dapo-ttrl")
    assert cfg.device == "cuda" and cfg.precision == "bfloat16" and cfg.backend == "vllm"
