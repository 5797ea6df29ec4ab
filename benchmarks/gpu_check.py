"""GRPO steps of a randomly initialised Qwen3-1.7B at the paper's shape with sharpen's ``hf`` backend in bf16:
tokens/s, peak memory, the step by phase, and decode speed against the memory-bandwidth bound.

Needs torch (CUDA for the real check) and transformers; no vLLM, no model hub, no network: the model is built from
the Qwen3-1.7B(-Base) architecture written out below (:data:`QWEN3_1_7B`) with random weights, the prompts are
random digit strings through the tiny model's character tokenizer (generated ids beyond its 50 characters decode
modulo its size), and the reward is the majority vote on each response's first character -- the numbers measure
speed, not learning. One step is :meth:`empirical.train.Trainer.train_step`, the loop ``sharpen train`` runs.

    python benchmarks/gpu_check.py                                           # first try: 16 x 8, 256 tokens
    python benchmarks/gpu_check.py --prompts 64 --rollouts 8 --new-tokens 1024   # the paper's shape (64 x 8)
    python benchmarks/gpu_check.py --tiny                                    # tiny dims on CPU, seconds

**Precision.** The weights, gradients and AdamW states are bf16 (``--dtype bfloat16``, the default on CUDA). The
trainer's own ``precision="bfloat16"`` keeps fp32 master weights and samples from them in fp32, whose KV cache at
512 rows x 1152 tokens would need about 135 GB; in bf16 it takes about 67 GB.

**The step by phase.** ``generate`` (the KV-cached sampler: prefill + decode), ``forward`` (the policy's
response logits with grad, micro-batch by micro-batch), ``backward`` (``Tensor.backward``), ``optimizer`` (grad
clip + fused AdamW) and ``other`` (tokenising, decoding, grading, rewards, advantages, metrics); on CUDA each
phase is timed between ``torch.cuda.synchronize`` calls. Step 1 warms up (kernel selection, allocator) and is
reported apart; the figures are the medians of the later steps.

**The decode bound.** Each decode step reads every weight once (``bytes = parameters x bytes per parameter``,
tied embeddings once), so ``rows x bandwidth / bytes`` tokens/s is the most a batch of ``rows`` can decode;
``--bandwidth-tbs`` (default 4.8, an H200) sets the bandwidth. The script also prints the tighter bound that adds
the KV cache read at each step. On CPU the ratio is printed but means little.

Stops early (after a full step) when the next step would pass ``--max-seconds``. ``--json FILE`` writes the
summary.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import resource
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from empirical.config import KNOWN_ARCHITECTURES

QWEN3_1_7B = {
    # Qwen/Qwen3-1.7B-Base config.json (the architecture only; the weights here are random): the dimensions
    # sharpen already knows, plus what building the model needs
    **KNOWN_ARCHITECTURES["Qwen/Qwen3-1.7B-Base"],
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
}
TINY = {
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 512,
    "rope_theta": 10000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}
PHASES = ("generate", "forward", "backward", "optimizer", "other")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--tiny", action="store_true", help="tiny dims on CPU (seconds; what the test runs)"
    )
    p.add_argument(
        "--prompts", type=int, default=None, help="prompts per step (default 16; tiny 4; paper 64)"
    )
    p.add_argument(
        "--rollouts", type=int, default=8, help="rollouts per prompt, the GRPO group (default 8)"
    )
    p.add_argument(
        "--new-tokens",
        type=int,
        default=None,
        help="response length (default 256; tiny 16; 1024+ long)",
    )
    p.add_argument(
        "--prompt-tokens",
        type=int,
        default=None,
        help="prompt length in tokens (default 128; tiny 8)",
    )
    p.add_argument(
        "--steps", type=int, default=3, help="GRPO steps, the first one a warm-up (default 3)"
    )
    p.add_argument(
        "--micro-batch",
        type=int,
        default=None,
        help="rows per forward/backward (default 8; tiny 16)",
    )
    p.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="recompute activations in backward (default: on, off with --tiny)")  # fmt: skip
    p.add_argument("--dtype", choices=("bfloat16", "float32"), default=None,
                   help="weights, gradients, optimizer states (default: bfloat16 on CUDA, float32 on CPU)")  # fmt: skip
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    p.add_argument(
        "--bandwidth-tbs", type=float, default=4.8, help="memory bandwidth in TB/s (H200: 4.8)"
    )
    p.add_argument(
        "--max-seconds", type=float, default=420.0, help="stop before a step would pass this"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the summary to this file")
    args = p.parse_args(argv)
    small = args.tiny
    args.prompts = args.prompts or (4 if small else 16)
    args.new_tokens = args.new_tokens or (16 if small else 256)
    args.prompt_tokens = args.prompt_tokens or (8 if small else 128)
    args.micro_batch = args.micro_batch or (16 if small else 8)
    if args.gradient_checkpointing is None:
        args.gradient_checkpointing = not small
    for name in ("prompts", "new_tokens", "prompt_tokens", "steps", "micro_batch"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(args, name)}")
    if args.rollouts < 2:
        p.error(f"--rollouts: GRPO needs groups of >= 2, got {args.rollouts}")
    if (args.prompts * args.rollouts) % args.micro_batch:
        p.error(f"--micro-batch: must divide prompts x rollouts = {args.prompts * args.rollouts}")
    if args.bandwidth_tbs <= 0:
        p.error("--bandwidth-tbs: must be > 0")
    return args


# ------------------------------------------------------------------------------------------------------
# model, tokenizer, task, trainer
# ------------------------------------------------------------------------------------------------------


class WideTokenizer:
    """The tiny model's character tokenizer in front of a model with a larger vocabulary: prompts encode as
    characters; a generated id decodes as ``id mod (characters)`` (ids of special tokens are skipped)."""

    chat_template = None

    def __init__(self) -> None:
        from empirical.tiny import build_tokenizer

        self.base = build_tokenizer()
        self.size = len(self.base)
        self.eos_token_id, self.pad_token_id = self.base.eos_token_id, self.base.pad_token_id

    def __call__(self, text: str, **kwargs):
        return self.base(text, **kwargs)

    def batch_decode(self, rows, skip_special_tokens: bool = True) -> list[str]:
        return self.base.batch_decode(
            [[i % self.size for i in r] for r in rows], skip_special_tokens=skip_special_tokens
        )


def build_model(
    dims: dict, device: torch.device, dtype: torch.dtype, seed: int, checkpointing: bool, tok
):
    """A randomly initialised ``Qwen3ForCausalLM`` with ``dims``, built on ``device`` in ``dtype``."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(**dims, layer_types=None, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                         bos_token_id=tok.base.bos_token_id)  # fmt: skip
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(
            device
        ):  # initialise on the device: seconds on a GPU instead of minutes on a CPU
            model = Qwen3ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    if checkpointing:
        model.gradient_checkpointing_enable()
    return model


def build_trainer(args: argparse.Namespace, device: torch.device, dtype: torch.dtype):
    from empirical.config import TrainConfig
    from empirical.rollout import HFBackend
    from empirical.tasks import DataCursor, Question, Task
    from empirical.train import Trainer

    tok = WideTokenizer()
    model = build_model(
        TINY if args.tiny else QWEN3_1_7B,
        device,
        dtype,
        args.seed,
        args.gradient_checkpointing,
        tok,
    )
    rng = np.random.default_rng(args.seed)
    questions = tuple(
        Question(f"q{i}", "".join(map(str, rng.integers(0, 10, args.prompt_tokens - 2))) + "=", "7")
        for i in range(args.prompts * max(1, args.steps))
    )  # <bos> + digits + "=": prompt_tokens tokens each, fresh questions every step
    task = Task(
        "gpu-check",
        questions,
        (),
        parse=lambda text: text[:1] or None,
        check=lambda q, a: a == q.label,
    )
    cfg = TrainConfig(
        model="tiny", device=device.type, precision="bfloat16" if dtype == torch.bfloat16 else "float32",
        gradient_checkpointing=args.gradient_checkpointing, rollout_batch_size=args.prompts * args.rollouts,
        n_rollouts=args.rollouts, max_new_tokens=args.new_tokens, max_prompt_tokens=args.prompt_tokens + 8,
        micro_batch_size=args.micro_batch, lr=1e-6, shuffle=False, log_kl=False, probe_every=0, eval_every=0,
        progress=False, steps=args.steps, torch_threads=0, seed=args.seed,
    )  # fmt: skip
    generator = torch.Generator(device=device).manual_seed(args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0, fused=True)
    return Trainer(
        cfg=cfg, task=task, model=model, ref_model=None, tokenizer=tok,
        backend=HFBackend(model, pad_id=tok.pad_token_id, eos_id=tok.eos_token_id, generator=generator),
        optimizer=optimizer, scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0),
        rng=np.random.default_rng(args.seed), generator=generator, cursor=DataCursor(list(range(len(questions)))),
        pad_id=tok.pad_token_id, eos_id=tok.eos_token_id, device=device,
        autocast=False,  # bf16 weights compute in bf16 already; autocast would upcast softmax-like ops
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------------
# timing
# ------------------------------------------------------------------------------------------------------


class PhaseClock:
    """Seconds per phase of one ``train_step``, by wrapping what it calls; on CUDA each phase is bracketed by
    ``torch.cuda.synchronize`` so asynchronous kernels are charged to the phase that launched them."""

    def __init__(self, trainer, device: torch.device) -> None:
        self.acc: dict[str, float] = defaultdict(float)
        self.generated: list[list[int]] = []
        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self.undo = []
        self._wrap(trainer.backend, "generate", "generate", record=True)
        self._wrap(trainer, "forward", "forward")
        self._wrap(torch.Tensor, "backward", "backward")
        self._wrap(torch.nn.utils, "clip_grad_norm_", "optimizer")
        self._wrap(trainer.optimizer, "step", "optimizer")

    def _wrap(self, obj, name: str, phase: str, record: bool = False) -> None:
        original = getattr(obj, name)

        @functools.wraps(original)
        def timed(*a, **k):
            self.sync()
            t0 = time.perf_counter()
            try:
                out = original(*a, **k)
                self.sync()
            finally:
                self.acc[phase] += time.perf_counter() - t0
            if record:
                self.generated.append([len(r) for r in out.response_ids])
            return out

        setattr(obj, name, timed)
        self.undo.append((obj, name, original))

    def close(self) -> None:
        for obj, name, original in reversed(self.undo):
            setattr(obj, name, original)


def peak_memory_gib(device: torch.device) -> float:
    """Peak memory so far: CUDA's allocated peak on a GPU, the process's peak resident set on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def decode_bound(
    model, dims: dict, lengths: list[int], prompt_len: int, bandwidth: float
) -> dict[str, float]:
    """Seconds the decode of ``lengths`` (tokens per row, all rows of one generate call) needs at least.

    ``weights``: every decode step reads all weights once -- ``max(lengths)`` steps of ``bytes(weights) /
    bandwidth``. ``weights_kv``: plus the KV cache each step reads, ``(prompt_len + t)`` cached positions per
    active row at step ``t``, ``2 x layers x kv_heads x head_dim`` values each.
    """
    weight_bytes = sum(
        p.numel() * p.element_size() for p in model.parameters()
    )  # tied embeddings counted once
    size = next(model.parameters()).element_size()
    kv_per_token = (
        2 * dims["num_hidden_layers"] * dims["num_key_value_heads"] * dims["head_dim"] * size
    )
    kv_bytes = sum(n * prompt_len + n * (n - 1) / 2 for n in lengths) * kv_per_token
    steps = max(lengths)
    return {
        "weight_bytes": float(weight_bytes),
        "weights": steps * weight_bytes / bandwidth,
        "weights_kv": (steps * weight_bytes + kv_bytes) / bandwidth,
    }


def run(args: argparse.Namespace) -> dict:
    want_cuda = args.device == "cuda" or (
        args.device == "auto" and torch.cuda.is_available() and not args.tiny
    )
    if want_cuda and not torch.cuda.is_available():
        raise SystemExit("gpu_check: --device cuda: CUDA is not available")
    device = torch.device("cuda" if want_cuda else "cpu")
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    dims = TINY if args.tiny else QWEN3_1_7B
    t_build = time.perf_counter()
    trainer = build_trainer(args, device, dtype)
    build_s = time.perf_counter() - t_build
    n_params = sum(p.numel() for p in trainer.model.parameters())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    bandwidth = args.bandwidth_tbs * 1e12
    steps, started = [], time.perf_counter()
    print(f"gpu_check: {_count(n_params)} parameters ({'tiny' if args.tiny else 'Qwen3-1.7B architecture'}, "
          f"random weights), {str(dtype).replace('torch.', '')}, {device}; built in {build_s:.1f} s", flush=True)  # fmt: skip
    for i in range(args.steps):
        elapsed = time.perf_counter() - started
        if steps and elapsed + max(s["step_s"] for s in steps) > args.max_seconds:
            print(
                f"gpu_check: stopping after {i} steps (--max-seconds {args.max_seconds:g})",
                flush=True,
            )
            break
        clock = PhaseClock(trainer, device)
        t0 = time.perf_counter()
        try:
            metrics = trainer.train_step()
        finally:
            clock.close()
        step_s = time.perf_counter() - t0
        batch, _ = trainer.last_batch
        lengths = [n for call in clock.generated for n in call]
        gen_tokens = int(sum(lengths))
        prompt_len = int(batch.prompt_ids.shape[1])
        trained_tokens = (
            int(batch.mask.sum()) + int(batch.prompt_mask.sum()) * args.rollouts
        )  # every row's tokens
        bound = decode_bound(trainer.model, dims, lengths, prompt_len, bandwidth)
        phases = {k: clock.acc.get(k, 0.0) for k in PHASES[:-1]}
        phases["other"] = max(0.0, step_s - sum(phases.values()))
        factor = (
            8 if args.gradient_checkpointing else 6
        )  # forward 2, backward 4, recompute 2 FLOPs/param/token
        step = {
            "step": i + 1,
            "step_s": step_s,
            "phases_s": phases,
            "generated_tokens": gen_tokens,
            "rows": len(lengths),
            "decode_steps": max(lengths),
            "generate_tokens_per_s": gen_tokens / phases["generate"],
            "step_tokens_per_s": gen_tokens / step_s,
            "train_tokens_per_s": trained_tokens
            / max(phases["forward"] + phases["backward"], 1e-9),
            "train_tflops": factor
            * n_params
            * trained_tokens
            / max(phases["forward"] + phases["backward"], 1e-9)
            / 1e12,
            "decode_bound_tokens_per_s": gen_tokens / bound["weights"],
            "decode_ratio_to_weight_bound": bound["weights"] / phases["generate"],
            "decode_ratio_to_weight_kv_bound": bound["weights_kv"] / phases["generate"],
            "peak_memory_gib": peak_memory_gib(device),
            "majority_ratio": float(metrics["majority_ratio"]),
            "loss": float(metrics["loss"]),
        }
        steps.append(step)
        print(f"step {step['step']}: {step_s:6.2f} s  " + "  ".join(f"{k} {v:.2f}" for k, v in phases.items())
              + f"  | {gen_tokens} tokens, {step['generate_tokens_per_s']:.0f} tok/s decode"
              f" ({step['decode_ratio_to_weight_bound']:.1%} of the weight-read bound)"
              f"  peak {step['peak_memory_gib']:.1f} GiB", flush=True)  # fmt: skip
    timed = steps[1:] or steps  # step 1 warms up
    med = lambda key: statistics.median(s[key] for s in timed)  # noqa: E731
    summary = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "dtype": str(dtype).replace("torch.", ""),
        "parameters": n_params,
        "weight_bytes": bound["weight_bytes"],
        "shape": {
            "prompts": args.prompts,
            "rollouts": args.rollouts,
            "rows": args.prompts * args.rollouts,
            "prompt_tokens": args.prompt_tokens,
            "new_tokens": args.new_tokens,
            "micro_batch": args.micro_batch,
            "gradient_checkpointing": args.gradient_checkpointing,
        },  # fmt: skip
        "bandwidth_tbs": args.bandwidth_tbs,
        "build_s": build_s,
        "steps_run": len(steps),
        "steps_timed": [s["step"] for s in timed],
        "warmup_step": steps[0],
        "median": {
            "step_s": med("step_s"),
            "phases_s": {k: statistics.median(s["phases_s"][k] for s in timed) for k in PHASES},
            **{
                k: med(k)
                for k in (
                    "generate_tokens_per_s",
                    "step_tokens_per_s",
                    "train_tokens_per_s",
                    "train_tflops",
                    "decode_bound_tokens_per_s",
                    "decode_ratio_to_weight_bound",
                    "decode_ratio_to_weight_kv_bound",
                )
            },  # fmt: skip
        },
        "peak_memory_gib": max(s["peak_memory_gib"] for s in steps),
        "wall_s": time.perf_counter() - started + build_s,
    }
    return summary


def _count(n: int) -> str:
    return f"{n / 1e9:.3f}B" if n >= 1e8 else f"{n / 1e6:.3f}M"


def report(summary: dict) -> str:
    m, shape = summary["median"], summary["shape"]
    share = {k: v / m["step_s"] for k, v in m["phases_s"].items()}
    lines = [
        f"device {summary['device']}, torch {summary['torch']}, {summary['dtype']}, "
        f"{_count(summary['parameters'])} parameters ({summary['weight_bytes'] / 1e9:.3g} GB of weights)",
        f"shape: {shape['prompts']} prompts x {shape['rollouts']} rollouts = {shape['rows']} rows, "
        f"{shape['prompt_tokens']}-token prompts, {shape['new_tokens']} new tokens, micro-batch {shape['micro_batch']}, "
        f"gradient checkpointing {'on' if shape['gradient_checkpointing'] else 'off'}",
        f"step (median of steps {summary['steps_timed']}): {m['step_s']:.2f} s = "
        + ", ".join(f"{k} {m['phases_s'][k]:.2f} s ({share[k]:.0%})" for k in PHASES),
        f"tokens/s: {m['step_tokens_per_s']:.0f} generated per step-second; decode {m['generate_tokens_per_s']:.0f}; "
        f"training {m['train_tokens_per_s']:.0f} ({m['train_tflops']:.1f} TFLOP/s at 6-8 N FLOPs/token)",
        f"decode vs the memory-bandwidth bound ({summary['bandwidth_tbs']:g} TB/s): weights-only bound "
        f"{m['decode_bound_tokens_per_s']:.0f} tok/s -> {m['decode_ratio_to_weight_bound']:.1%} of it; "
        f"with the KV-cache reads {m['decode_ratio_to_weight_kv_bound']:.1%}",
        f"peak memory {summary['peak_memory_gib']:.2f} GiB; wall {summary['wall_s']:.0f} s "
        f"(model built in {summary['build_s']:.1f} s)",
    ]  # fmt: skip
    if summary["device"] == "cpu":
        lines.append("(CPU run: the bandwidth bound is the GPU's and means little here)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere in a checkout
    args = parse_args(argv)
    summary = run(args)
    print(report(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0 if all(math.isfinite(v) for v in summary["median"]["phases_s"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
