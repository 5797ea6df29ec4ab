"""Typed, frozen configuration of a GRPO run, its named presets and the memory estimate of ``--dry-run``.

Every field of :class:`TrainConfig` carries its help text in ``metadata["help"]``; :mod:`empirical.cli` builds
the command line from these fields, so nothing is written twice.

Every field is validated in ``__post_init__``: its type against its annotation (bools are not ints, floats must
be finite, ``Literal`` fields one of their choices), its range from ``_RANGES`` (e.g. ``n_rollouts >= 2``: a GRPO
group of one rollout has no advantage; probabilities in (0, 1]; step counts and intervals >= 0), then the
cross-field rules (whole groups per batch, mini- and micro-batches dividing it, data paths per task). Each error is
one line, ``ValueError("field_name: problem, got value")``.

>>> cfg = preset("tiny-arith-ttrl")
>>> cfg.reward, cfg.prompts_per_step, cfg.n_rollouts
('majority_voting', 16, 8)
>>> cfg.replace(lr=1e-4).lr
0.0001
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from empirical.reporters import REPORTERS
from empirical.rollout import BACKENDS
from sharpen.rewards import PRESETS as REWARD_PRESETS
from sharpen.rewards import available_rewards, reward_info

Backend = Literal[tuple(BACKENDS)]  # the rollout backends' table: "hf", "vllm"
ReportTo = Literal[tuple(REPORTERS)]  # the reporters' table: "none", "tensorboard", "wandb"
TaskName = Literal["arith", "countdown", "reason", "dapo", "math-jsonl"]
Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["float32", "bfloat16"]
Schedule = Literal["constant", "cosine"]
LossAgg = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"]


def _f(default, help: str):  # noqa: A002 - "help" reads best at the call sites
    return field(default=default, metadata={"help": help})


class _RewardHelp:
    """The ``reward`` field's help, written out when a command line is built: every reward registered then."""

    def __str__(self) -> str:
        return "training reward: " + ", ".join(available_rewards())

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


@dataclass(frozen=True)
class TrainConfig:
    """One GRPO run. Sections follow the loop: model, data, rollout, reward, optimisation, logging, checkpoint."""

    # --- model ---
    model: str = _f("tiny", "'tiny' (built and pretrained locally), a local HF folder, or a hub id")
    pretrain_steps: int = _f(
        1000,
        "tiny model: pretraining steps (the budget when pretrain_accuracy is set; else the prior is "
        "imperfect because it stops here)",
    )
    pretrain_corpus: Literal["arith", "countdown", "reason"] = _f(
        "arith", "tiny model: pretraining corpus"
    )
    pretrain_accuracy: float | None = _f(
        0.7,
        "tiny model: stop pretraining at the first check with this greedy accuracy on held-out sums (the same "
        "prior strength on every CPU; a step count gives another prior on each); none = run pretrain_steps",
    )
    trust_remote_code: bool = _f(False, "allow custom model code from the model folder / hub")
    device: Device = _f("auto", "'auto' picks cuda when available")
    precision: Precision = _f(
        "float32", "compute dtype; bfloat16 = fp32 master weights + bf16 autocast (GPU)"
    )
    gradient_checkpointing: bool = _f(
        False, "recompute activations in the backward pass (saves memory)"
    )
    # --- data ---
    task: TaskName = _f(
        "arith",
        "arith | countdown | reason (3-digit sums with a scratchpad; generated locally) | dapo (parquet) | "
        "math-jsonl",
    )
    data_path: str | None = _f(None, "training file for dapo / math-jsonl")
    heldout_path: str | None = _f(
        None, "held-out JSONL (MATH500/AIME/AMC) for validation; dapo/math-jsonl"
    )
    n_train: int = _f(
        2000, "training questions (generated tasks) or a cap on loaded rows (0 = all)"
    )
    n_heldout: int = _f(
        200, "held-out questions (generated tasks) or a cap on loaded rows (0 = all)"
    )
    shuffle: bool = _f(
        True, "reshuffle the training questions every epoch (False: file order, as the paper)"
    )
    data_seed: int = _f(0, "seed of the generated questions and their split")
    math_verify: bool = _f(
        False, "math tasks: fall back to Math-Verify's symbolic check when grading"
    )
    # --- rollout ---
    backend: Backend = _f("hf", "hf (transformers generate) or vllm (colocated engine, GPU)")
    rollout_batch_size: int = _f(128, "rollouts per step = prompts per step x n_rollouts")
    n_rollouts: int = _f(8, "samples per prompt (the GRPO group size N)")
    n_votes: int | None = _f(
        None,
        "samples per prompt for the vote (TTRL's n_votes_per_prompt; None = n_rollouts, else >= n_rollouts): "
        "the majority answer is voted over all of them, GRPO trains on the first n_rollouts (i.i.d. draws: a "
        "uniform random subset); answer-level rewards score against that vote, the vote metrics "
        "(majority_ratio, label_accuracy) describe it; other rewards score the trained rollouts only",
    )
    temperature: float = _f(
        1.0, "rollout temperature (also applied to the logits of the certainty rewards)"
    )
    top_p: float = _f(1.0, "rollout nucleus sampling")
    max_new_tokens: int = _f(6, "longest response in tokens")
    max_prompt_tokens: int = _f(1024, "prompts longer than this are left-truncated")
    vllm_gpu_memory_utilization: float = _f(
        0.35, "vllm: fraction of GPU memory the engine may take"
    )
    # --- reward ---
    reward: str = _f("majority_voting", _RewardHelp())
    reward_aggregate: Literal["mean", "sum"] | None = _f(
        None, "certainty rewards: token mean or sum"
    )
    verifier_temperature: float = _f(0.5, "self_verification: sampling temperature of the verifier")
    verifier_max_new_tokens: int = _f(6, "self_verification: longest verdict in tokens")
    # --- optimisation ---
    steps: int = _f(300, "optimizer steps on fresh rollouts")
    lr: float = _f(3e-5, "AdamW learning rate")
    lr_schedule: Schedule = _f("constant", "learning-rate schedule after warm-up")
    warmup_steps: int = _f(0, "linear warm-up steps")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    max_grad_norm: float = _f(1.0, "gradient clipping (0 = off)")
    clip_eps: float = _f(0.2, "PPO clip range")
    kl_coef: float = _f(
        0.0, "k3 KL penalty to the initial policy in the loss (0 = off, as in the paper)"
    )
    normalize_std: bool = _f(True, "GRPO std normalisation of advantages (False = Dr. GRPO)")
    adv_eps: float = _f(1e-6, "epsilon added to the group std (veRL 1e-6)")
    loss_agg: LossAgg = _f("token-mean", "loss aggregation (veRL token-mean = TRL 'dapo')")
    mini_batch_size: int | None = _f(
        None, "rollouts per optimizer update (None = whole batch, one update)"
    )
    micro_batch_size: int | None = _f(
        None, "rollouts per forward pass (gradient accumulation; None = mini-batch)"
    )
    reuse_forward: bool = _f(
        True,
        "one update per batch: take old log-probs and certainty rewards from the gradient pass "
        "(False: a separate no-grad pass first, as several mini-batches need)",
    )
    torch_threads: int = _f(
        1,
        "CPU threads for torch (0 = torch's default); 1 suits the tiny model (see the README)",
    )
    # --- logging ---
    out_dir: str = _f("sharpen-out/train/tiny-arith-ttrl", "run folder (logs, config, checkpoints)")
    probe_every: int = _f(20, "steps between probes of the fixed probe questions (0 = off)")
    n_probe: int = _f(32, "probe questions (see probe_selection)")
    probe_selection: Literal["stratified", "first"] = _f(
        "stratified",
        "stratified: spread the probe questions over exact initial majority probabilities in (0.2, 0.95), "
        "chosen from the first 8 x n_probe training questions (tasks that list their answers; else first); "
        "first: the first n_probe training questions",
    )
    exact_probes: bool = _f(
        True,
        "also probe with the exact answer distribution when the task lists its answers (needs top_p = 1)",
    )
    probe_samples: int = _f(32, "samples M per probe question")
    eval_every: int = _f(50, "steps between held-out evaluations (0 = off)")
    n_eval: int = _f(200, "held-out questions evaluated (0 = all)")
    eval_samples: int = _f(4, "samples per held-out question (avg@k)")
    eval_temperature: float = _f(0.6, "held-out sampling temperature")
    eval_top_p: float = _f(0.95, "held-out nucleus sampling")
    eval_greedy: bool = _f(True, "also log greedy held-out accuracy")
    log_kl: bool = _f(
        True, "log the k3 KL to the initial policy every step (one extra forward pass)"
    )
    progress: bool = _f(True, "show a progress bar")
    report_to: ReportTo = _f(
        "none",
        "also log metrics and evals to tensorboard (<run>/tensorboard; extra sharpen[tensorboard]) or to an "
        "offline wandb run (<run>/wandb; extra sharpen[wandb]); none = the JSONL logs only",
    )
    # --- checkpoint ---
    checkpoint_every: int = _f(50, "steps between checkpoints (0 = only at the end)")
    keep_checkpoints: int = _f(2, "checkpoints kept on disk")
    seed: int = _f(0, "seed of sampling and data order")

    def __post_init__(self) -> None:
        """Check every field: its annotated type, then its range, then the cross-field rules.

        Each error is one line, ``field_name: problem, got value``.
        """

        def need(ok: bool, name: str, problem: str) -> None:
            if not ok:
                raise ValueError(f"{name}: {problem}, got {getattr(self, name)!r}")

        for f in dataclasses.fields(self):
            problem = _type_problem(getattr(self, f.name), _field_types()[f.name])
            need(problem is None, f.name, problem or "")
        for name, (test, rule) in _RANGES.items():
            value = getattr(self, name)
            need(value is None or test(value), name, rule)
        for name in ("model", "out_dir", "data_path", "heldout_path"):
            value = getattr(self, name)
            need(value is None or value.strip() != "", name, "must be a non-empty string")
        need(self.reward in available_rewards(), "reward", f"must be one of {available_rewards()}")
        need(
            self.rollout_batch_size % self.n_rollouts == 0,
            "rollout_batch_size",
            f"must be divisible by n_rollouts={self.n_rollouts} (whole groups per step)",
        )
        need(
            self.n_votes is None or self.n_votes >= self.n_rollouts,
            "n_votes",
            f"must be >= n_rollouts={self.n_rollouts} (the vote covers every trained rollout) or None",
        )
        mini = self.mini_batch_size or self.rollout_batch_size
        micro = self.micro_batch_size or mini
        need(
            self.rollout_batch_size % mini == 0,
            "mini_batch_size",
            f"must divide rollout_batch_size={self.rollout_batch_size}",
        )
        need(mini % micro == 0, "micro_batch_size", f"must divide the mini-batch size {mini}")
        if self.task in ("dapo", "math-jsonl"):
            need(self.data_path is not None, "data_path", f"is required for task {self.task!r}")
            need(
                self.model != "tiny",
                "model",
                f"the tiny character model cannot read task {self.task!r}",
            )
        if "verifier" in reward_info(self.reward).needs:
            need(
                self.task == "countdown",
                "reward",
                "the policy as its verifier is implemented for the countdown task",
            )

    @property
    def prompts_per_step(self) -> int:
        """Questions per step, ``rollout_batch_size // n_rollouts``."""
        return self.rollout_batch_size // self.n_rollouts

    @property
    def votes_per_prompt(self) -> int:
        """Samples per prompt that vote, ``n_votes`` (``n_rollouts`` when None); the first ``n_rollouts`` of
        them are trained on."""
        return self.n_rollouts if self.n_votes is None else self.n_votes

    def replace(self, **changes) -> TrainConfig:
        """A validated copy with some fields changed."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"changes: unknown field(s) {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain-JSON form (what ``config.json`` holds under ``"train"``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"data: unknown field(s) {sorted(unknown)}")
        return cls(**data)


# ----------------------------------------------------------------------------------------------------------
# validation tables (read by TrainConfig.__post_init__)
# ----------------------------------------------------------------------------------------------------------

# Numeric ranges: field -> (test, the rule as the error states it); a None value (optional fields) is not tested.
# Every int and float field appears here (the config tests check it).
_POSITIVE_INT = (lambda v: v >= 1, "must be >= 1")
_NON_NEGATIVE = (lambda v: v >= 0, "must be >= 0")
_POSITIVE = (lambda v: v > 0, "must be > 0")
_GREEDY_OK = (lambda v: v >= 0, "must be >= 0 (0 = greedy)")
_TOP_P = (lambda v: 0 < v <= 1, "must lie in (0, 1]")
_RANGES: dict[str, tuple[typing.Callable[[float], bool], str]] = {
    # sizes and counts that must be positive
    **{
        name: _POSITIVE_INT
        for name in (
            "rollout_batch_size",
            "max_new_tokens",
            "max_prompt_tokens",
            "steps",
            "n_probe",
            "probe_samples",
            "eval_samples",
            "verifier_max_new_tokens",
            "keep_checkpoints",
            "mini_batch_size",  # None = the whole batch
            "micro_batch_size",  # None = the mini-batch
            "n_votes",  # None = n_rollouts; at least n_rollouts (a cross-field rule)
        )
    },
    "n_rollouts": (lambda v: v >= 2, "must be >= 2 (a GRPO group of one rollout has no advantage)"),
    # zero allowed: step counts and intervals (0 = off), caps (0 = all), seeds, thread counts, coefficients
    **{
        name: _NON_NEGATIVE
        for name in (
            "pretrain_steps",
            "n_train",
            "n_heldout",
            "data_seed",
            "probe_every",
            "eval_every",
            "n_eval",
            "checkpoint_every",
            "warmup_steps",
            "torch_threads",
            "seed",
            "weight_decay",
            "max_grad_norm",
            "clip_eps",
            "kl_coef",
            "adv_eps",
        )
    },
    "temperature": _POSITIVE,
    "lr": _POSITIVE,
    "verifier_temperature": _GREEDY_OK,
    "eval_temperature": _GREEDY_OK,
    "top_p": _TOP_P,
    "eval_top_p": _TOP_P,
    "vllm_gpu_memory_utilization": (lambda v: 0 < v < 1, "must lie in (0, 1)"),
    "pretrain_accuracy": (lambda v: 0 < v <= 1, "must lie in (0, 1]"),
}


@functools.cache
def _field_types() -> dict[str, object]:
    """Resolved annotations of :class:`TrainConfig` (they are strings under ``from __future__``)."""
    return typing.get_type_hints(TrainConfig)


def _type_problem(value: object, hint: object) -> str | None:
    """Why ``value`` does not fit the annotation ``hint`` (None if it does)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return None if value in args else f"must be one of {args}"
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        problems = [_type_problem(value, a) for a in inner]
        if any(p is None for p in problems):
            return None
        return problems[0] + (" or None" if type(None) in args else "")
    if hint is bool:
        return None if isinstance(value, bool) else "must be a bool"
    if hint is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        return None if ok else "must be an int"
    if hint is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        return None if ok and math.isfinite(value) else "must be a finite number"
    if hint is str:
        return None if isinstance(value, str) else "must be a string"
    raise TypeError(f"TrainConfig: no type rule for annotation {hint!r}")  # a new kind of field


# ----------------------------------------------------------------------------------------------------------
# presets
# ----------------------------------------------------------------------------------------------------------

_TINY = TrainConfig()
_CERTAINTY = [name for name, spec in REWARD_PRESETS.items() if spec.needs_logits]  # the four

PRESETS: dict[str, TrainConfig] = {
    # The embedded default: majority-vote (TTRL) reward on the tiny model, a few minutes on 2 CPU cores.
    "tiny-arith-ttrl": _TINY,
    **{
        f"tiny-arith-{name.replace('_', '-')}": _TINY.replace(
            reward=name, out_dir=f"sharpen-out/train/tiny-arith-{name.replace('_', '-')}"
        )
        for name in _CERTAINTY
    },
    "tiny-arith-ground-truth": _TINY.replace(
        reward="ground_truth", out_dir="sharpen-out/train/tiny-arith-ground-truth"
    ),
    "tiny-countdown-selfverify": _TINY.replace(
        task="countdown",
        pretrain_corpus="countdown",
        pretrain_steps=1500,
        pretrain_accuracy=None,  # a fixed budget: the accuracy check reads sums, a third of this corpus
        reward="self_verification",
        max_new_tokens=12,
        n_train=2000,
        n_heldout=200,
        out_dir="sharpen-out/train/tiny-countdown-selfverify",
    ),
    # Free-length reasoning: 3-digit sums with a carry scratchpad (empirical/reasoning.py), ~33-token responses
    # that can grow, shrink or repeat up to 64 tokens. The prior stops at the first check where greedy writes the
    # whole gold solution for 60% of the check questions (measured: step 210, greedy answer accuracy 0.65 and
    # sampled accuracy 0.28 at temperature 1 on 500 held-out questions; ~4 min on 1 thread of 2 busy cores).
    "tiny-reason-ttrl": _TINY.replace(
        task="reason",
        pretrain_corpus="reason",
        pretrain_steps=1000,
        pretrain_accuracy=0.6,
        max_new_tokens=64,
        out_dir="sharpen-out/train/tiny-reason-ttrl",
    ),
    # The paper's recipe (He et al. 2026, arXiv 2603.08660; docs/empirical.md): Qwen3-1.7B-Base on DAPO-Math-17k, 64 prompts x 8 rollouts, lr 1e-6,
    # temperature 1.0, no KL, responses up to 7168 tokens, colocated vLLM; validation avg@8 at T=0.6, top-p 0.95.
    "qwen3-1.7b-dapo-ttrl": TrainConfig(
        model="Qwen/Qwen3-1.7B-Base",
        device="cuda",
        precision="bfloat16",
        gradient_checkpointing=True,
        task="dapo",
        data_path="data/dapo-math-17k.parquet",
        heldout_path="data/aime24.jsonl",
        n_train=0,
        n_heldout=0,
        shuffle=False,
        backend="vllm",
        rollout_batch_size=512,
        n_rollouts=8,
        temperature=1.0,
        max_new_tokens=7168,
        max_prompt_tokens=1024,
        vllm_gpu_memory_utilization=0.3,
        reward="majority_voting",
        steps=600,
        lr=1e-6,
        micro_batch_size=1,
        out_dir="sharpen-out/train/qwen3-1.7b-dapo-ttrl",
        probe_every=20,
        n_probe=64,
        probe_samples=32,
        eval_every=20,
        n_eval=0,
        eval_samples=8,
        eval_greedy=False,
        log_kl=False,
        checkpoint_every=50,
        torch_threads=0,  # the GPU does the work; leave torch's CPU default
    ),
}


def preset(name: str) -> TrainConfig:
    """The named preset; ``ValueError`` listing the valid names for an unknown one."""
    if name not in PRESETS:
        raise ValueError(
            f"preset: unknown preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}"
        )
    return PRESETS[name]


# ----------------------------------------------------------------------------------------------------------
# memory estimate (--dry-run)
# ----------------------------------------------------------------------------------------------------------

# Architectures we can describe without reaching the hub (values from the public config.json files).
KNOWN_ARCHITECTURES = {
    "Qwen/Qwen3-1.7B-Base": {
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
    },
}


def model_dimensions(model: str) -> dict:
    """``config.json`` fields of a local model folder, or of a known hub id (no network)."""
    path = Path(model)
    if (path / "config.json").is_file():
        return json.loads((path / "config.json").read_text(encoding="utf-8"))
    if model in KNOWN_ARCHITECTURES:
        return dict(KNOWN_ARCHITECTURES[model])
    raise ValueError(
        f"model: no config.json under {model!r} and not a known architecture for the estimate"
    )


def parameter_count(dims: dict) -> int:
    """Parameters of a Qwen3-style decoder from its dimensions (embeddings, attention with q/k norms, MLP)."""
    h, i, n_layers = dims["hidden_size"], dims["intermediate_size"], dims["num_hidden_layers"]
    heads, kv, hd, v = (
        dims["num_attention_heads"],
        dims["num_key_value_heads"],
        dims["head_dim"],
        dims["vocab_size"],
    )
    attention = h * heads * hd + 2 * h * kv * hd + heads * hd * h + 2 * hd
    mlp = 3 * h * i
    per_layer = attention + mlp + 2 * h
    embeddings = v * h * (1 if dims.get("tie_word_embeddings", False) else 2)
    return n_layers * per_layer + embeddings + h


def estimate_memory_gib(cfg: TrainConfig, dims: dict) -> dict[str, float]:
    """Rough GPU memory (GiB) of one training step: fp32 master weights, grads and AdamW states (16 bytes per
    parameter), bf16 activations of one micro-batch with or without checkpointing, its full-vocabulary logits
    in fp32 (twice: logits and log-softmax), a frozen bf16 reference copy if the KL is used, and the vLLM
    engine's reserved share of the card (80 GiB assumed).
    """
    n = parameter_count(dims)
    gib = 1024**3
    micro = cfg.micro_batch_size or cfg.mini_batch_size or cfg.rollout_batch_size
    seq = cfg.max_prompt_tokens + cfg.max_new_tokens
    h, layers, v = dims["hidden_size"], dims["num_hidden_layers"], dims["vocab_size"]
    per_token_layer = (
        2 if cfg.gradient_checkpointing else 34
    ) * h  # bytes/2: checkpoint vs full activations
    activations = micro * seq * layers * per_token_layer * 2
    logits = micro * cfg.max_new_tokens * v * 4 * 2
    out = {
        "parameters_billion": n / 1e9,
        "weights_fp32": 4 * n / gib,
        "gradients_fp32": 4 * n / gib,
        "adamw_states_fp32": 8 * n / gib,
        "activations": activations / gib,
        "logits": logits / gib,
        "reference_model_bf16": (2 * n / gib) if (cfg.kl_coef > 0 or cfg.log_kl) else 0.0,
        "vllm_engine": (cfg.vllm_gpu_memory_utilization * 80) if cfg.backend == "vllm" else 0.0,
    }
    out["total"] = sum(v for k, v in out.items() if k != "parameters_billion")
    return out
