"""benchmarks/gpu_check.py end to end on CPU with tiny dims, and its Qwen3-1.7B architecture against the project's."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_architecture_is_qwen3_1_7b(gpu_check):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from empirical.config import KNOWN_ARCHITECTURES, parameter_count

    known = KNOWN_ARCHITECTURES["Qwen/Qwen3-1.7B-Base"]
    assert {k: gpu_check.QWEN3_1_7B[k] for k in known} == known
    with torch.device("meta"):  # no memory, no time: the shapes only
        model = Qwen3ForCausalLM(Qwen3Config(**gpu_check.QWEN3_1_7B, layer_types=None))
    n = sum(p.numel() for p in model.parameters())
    assert n == parameter_count(known) == 1_720_574_976  # tied embeddings counted once
    assert model.lm_head.weight is model.model.embed_tokens.weight


@pytest.mark.parametrize("dtype, size", [("float32", 4), ("bfloat16", 2)])
def test_tiny_run_on_cpu_reports_a_consistent_breakdown_and_bound(
    gpu_check, tmp_path, capsys, dtype, size
):
    out = tmp_path / "summary.json"
    steps = 3 if dtype == "float32" else 2
    code = gpu_check.main(["--tiny", "--steps", str(steps), "--dtype", dtype, "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "decode vs the memory-bandwidth bound (4.8 TB/s)" in printed and "step 1:" in printed
    s = json.loads(out.read_text())
    shape = s["shape"]
    assert (shape["rows"], shape["new_tokens"], s["dtype"], s["device"]) == (32, 16, dtype, "cpu")
    assert s["steps_run"] == steps and s["steps_timed"] == list(
        range(2, steps + 1)
    )  # step 1 is the warm-up
    assert s["weight_bytes"] == s["parameters"] * size
    from empirical.config import parameter_count

    assert s["parameters"] == parameter_count(gpu_check.TINY)
    step = s["warmup_step"]
    phases = step["phases_s"]
    assert set(phases) == {"generate", "forward", "backward", "optimizer", "other"}
    assert all(phases[k] > 0 for k in ("generate", "forward", "backward", "optimizer"))
    assert math.isclose(
        sum(phases.values()), step["step_s"], rel_tol=1e-9
    )  # the phases partition the step
    assert (
        step["rows"] == 32
        and 32 <= step["generated_tokens"] <= 32 * 16
        and 1 <= step["decode_steps"] <= 16
    )
    # the weights-only bound: decode_steps reads of every weight at the given bandwidth
    bound_s = step["decode_steps"] * s["weight_bytes"] / 4.8e12
    assert math.isclose(
        step["decode_bound_tokens_per_s"], step["generated_tokens"] / bound_s, rel_tol=1e-9
    )
    assert math.isclose(
        step["decode_ratio_to_weight_bound"], bound_s / phases["generate"], rel_tol=1e-9
    )
    assert (
        step["decode_ratio_to_weight_kv_bound"] > step["decode_ratio_to_weight_bound"]
    )  # the KV reads add time
    assert s["peak_memory_gib"] > 0 and s["median"]["step_tokens_per_s"] > 0


def test_bad_flags_are_refused(gpu_check):
    for argv in (
        ["--tiny", "--micro-batch", "5"],
        ["--tiny", "--rollouts", "1"],
        ["--tiny", "--steps", "0"],
    ):
        with pytest.raises(SystemExit) as exc:
            gpu_check.parse_args(argv)
        assert exc.value.code == 2
