"""The embedded default model: a tiny Qwen3 with a character-level tokenizer, pretrained locally.

No machine this project runs on can download weights, so the default language model is built here:

* :func:`build_tokenizer` -- a ``tokenizers`` WordLevel vocabulary of 50 symbols (``<pad> <bos> <eos> <unk>``,
  digits, ``+-*/=() ?:`` and ``a``-``z``), one token per character, ``<bos>`` prepended, left padding.
* :func:`build_tiny_model` -- a 2-layer ``Qwen3ForCausalLM`` (hidden 128, 4 heads, tied embeddings; ~0.5M
  parameters, 2 MB).
* :func:`pretrain` -- next-token training on a synthetic corpus (:mod:`empirical.tasks`; ``reason``: worked
  multi-digit additions, :mod:`empirical.reasoning`) that *stops early*, so
  the prior is imperfect by construction: after a fixed number of steps, or -- the portable dial -- at the first
  check where greedy accuracy on fixed held-out sums reaches ``stop_at_accuracy``. Training's bits differ across
  CPUs (torch picks other kernels), so a step count gives a different prior on each machine (the 400-step prior
  scored 0.66 greedy on one machine, 0.77 on another); a measured stopping point gives the same strength everywhere.
* :func:`pretrained_tiny_model` -- the cached entry point: pretrains once, saves with ``save_pretrained``
  (safetensors) under ``$SHARPEN_CACHE`` (default ``~/.cache/sharpen``) and loads it from there afterwards.

Example
-------
>>> tok = build_tokenizer()
>>> tok.decode(tok("12+34=")["input_ids"], skip_special_tokens=True)
'12+34='
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import string
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)
CHARACTERS = string.digits + "+-*/=() ?:" + string.ascii_lowercase


def build_tokenizer():
    """Character-level tokenizer over :data:`CHARACTERS` (``PreTrainedTokenizerFast``, left padding).

    Token ids: ``<pad>=0, <bos>=1, <eos>=2, <unk>=3``, then one id per character. Encoding prepends ``<bos>``.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in CHARACTERS:
        vocab[ch] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(""), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", BOS_ID)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        padding_side="left",
    )


@dataclass(frozen=True)
class TinyModelConfig:
    """Architecture of the tiny Qwen3 (defaults: 498,688 parameters)."""

    hidden_size: int = 128
    """Width of the residual stream."""
    intermediate_size: int = 512
    """Width of the MLP."""
    num_layers: int = 2
    """Number of transformer blocks."""
    num_heads: int = 4
    """Attention heads."""
    num_kv_heads: int = 2
    """Key/value heads (grouped-query attention)."""
    head_dim: int = 32
    """Per-head width."""
    max_positions: int = 128
    """Longest sequence (prompt + response) in tokens."""

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be a positive int, got {value!r}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_kv_heads: must divide num_heads")


def build_tiny_model(config: TinyModelConfig = TinyModelConfig(), *, seed: int = 0):
    """A freshly initialised tiny ``Qwen3ForCausalLM`` (float32, eval mode), deterministic in ``seed``."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(
        vocab_size=len(SPECIAL_TOKENS) + len(CHARACTERS),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        head_dim=config.head_dim,
        max_position_embeddings=config.max_positions,
        tie_word_embeddings=True,
        layer_types=None,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(cfg)
    model.generation_config.pad_token_id = PAD_ID
    model.generation_config.eos_token_id = EOS_ID
    model.generation_config.bos_token_id = BOS_ID
    return model.eval()


@dataclass(frozen=True)
class PretrainConfig:
    """How the tiny model's prior is made. Every field enters the cache key (``digits`` only for ``reason``)."""

    corpus: Literal["arith", "countdown", "reason"] = "arith"
    """``arith``: ``a+b=`` sums; ``countdown``: arithmetic + Countdown solutions + verification examples;
    ``reason``: ``digits``-digit sums with a carry scratchpad (:mod:`empirical.reasoning`)."""
    steps: int = 500
    """Optimizer steps. The prior is imperfect *because* training stops here (500 -> ~70% on ``arith``)."""
    lr: float = 3e-3
    """AdamW learning rate (constant)."""
    batch_size: int = 128
    """Sequences per step."""
    max_operand: int = 99
    """Operands are drawn from 0..max_operand."""
    seed: int = 0
    """Initialisation and data seed."""
    model: TinyModelConfig = TinyModelConfig()
    """Architecture."""
    stop_at_accuracy: float | None = None
    """Stop at the first check where greedy accuracy on the check sums reaches this (``steps`` is then the
    budget); ``None``: run exactly ``steps`` steps. For ``reason``, accuracy means writing the whole gold worked
    solution (:func:`check_sums`)."""
    check_every: int = 5
    """Steps between accuracy checks (when ``stop_at_accuracy`` is set)."""
    n_check: int = 256
    """Held-out questions of the accuracy check (:func:`check_sums`, drawn with seed ``seed + 1``; fixed per
    config)."""
    digits: int = 3
    """``reason`` corpus: operand digits (operands ``0 .. 10^digits - 1``). Other corpora ignore it, and it
    enters their cache key only when ``reason`` is chosen (so their keys did not change when it was added)."""

    def __post_init__(self) -> None:
        if self.corpus not in ("arith", "countdown", "reason"):
            raise ValueError(
                f"corpus: must be 'arith', 'countdown' or 'reason', got {self.corpus!r}"
            )
        if self.steps < 0:
            raise ValueError(f"steps: must be >= 0, got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"lr: must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {self.batch_size}")
        if self.max_operand < 1:
            raise ValueError(f"max_operand: must be >= 1, got {self.max_operand}")
        if self.stop_at_accuracy is not None and not 0 < self.stop_at_accuracy <= 1:
            raise ValueError(f"stop_at_accuracy: must be in (0, 1], got {self.stop_at_accuracy}")
        if self.check_every < 1:
            raise ValueError(f"check_every: must be >= 1, got {self.check_every}")
        if self.n_check < 1:
            raise ValueError(f"n_check: must be >= 1, got {self.n_check}")
        from empirical.reasoning import max_sequence_tokens

        longest = max_sequence_tokens(self.digits)  # validates digits (1..9), whatever the corpus
        if self.corpus == "reason" and longest > self.model.max_positions:
            raise ValueError(
                f"digits: {self.digits}-digit worked solutions take {longest} positions, more than "
                f"model.max_positions={self.model.max_positions}"
            )

    def cache_key(self) -> str:
        """Short hash of the configuration: the cache folder name."""
        fields = asdict(self)
        if (
            self.corpus != "reason"
        ):  # unused: keep the keys of priors cached before the field existed
            del fields["digits"]
        blob = json.dumps(fields, sort_keys=True).encode()
        stop = "" if self.stop_at_accuracy is None else f"acc{self.stop_at_accuracy:g}-"
        corpus = f"reason{self.digits}" if self.corpus == "reason" else self.corpus
        return f"tiny-qwen3-{corpus}-{stop}{self.steps}-{hashlib.sha256(blob).hexdigest()[:10]}"


def encode_pairs(
    tokenizer, prompts: list[str], completions: list[str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded ``<bos> prompt completion <eos>`` with a loss mask on the completion and ``<eos>``.

    Returns ``input_ids (B, L)``, ``attention_mask (B, L)`` and ``loss_mask (B, L)`` (1 where the token is a
    completion token to be predicted).
    """
    rows, masks = [], []
    for p, c in zip(prompts, completions, strict=True):
        p_ids = tokenizer(p)["input_ids"]
        c_ids = tokenizer(c, add_special_tokens=False)["input_ids"] + [EOS_ID]
        rows.append(p_ids + c_ids)
        masks.append([0] * len(p_ids) + [1] * len(c_ids))
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    loss = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (r, m) in enumerate(zip(rows, masks, strict=True)):
        ids[i, width - len(r) :] = torch.tensor(r)
        attn[i, width - len(r) :] = 1
        loss[i, width - len(r) :] = torch.tensor(m)
    return ids, attn, loss


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions for a left-padded batch, ``cumsum(mask) - 1`` (clamped at 0), as ``generate`` uses them."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def check_sums(config: PretrainConfig) -> tuple[list[str], list[str]]:
    """The fixed held-out prompts and answers of the accuracy check (seed ``config.seed + 1``).

    ``a+b=`` sums and their answers, or for the ``reason`` corpus ``q: a+b=`` and the whole worked solution
    (:func:`empirical.reasoning.reasoning_check`): :func:`greedy_accuracy` then counts the prompts whose greedy
    response *is* the gold solution -- a lower bound on greedy answer accuracy (a wrong step may still end in
    the right sum), decided in one teacher-forced pass.
    """
    if config.corpus == "reason":
        from empirical.reasoning import reasoning_check

        return reasoning_check(config.n_check, digits=config.digits, seed=config.seed + 1)
    rng = np.random.default_rng(config.seed + 1)
    pairs = rng.integers(0, config.max_operand + 1, size=(config.n_check, 2))
    return [f"{a}+{b}=" for a, b in pairs], [str(a + b) for a, b in pairs]


@torch.no_grad()
def greedy_accuracy(model, tokenizer, prompts: list[str], answers: list[str]) -> float:
    """Share of ``prompts`` whose greedy continuation is exactly ``answer <eos>``, in one teacher-forced pass.

    Greedy decoding returns ``answer <eos>`` iff the argmax at every position of ``answer <eos>`` is that
    position's token (the first wrong argmax is where greedy leaves the answer), so one forward pass over
    ``prompt answer <eos>`` decides it exactly, without generating.
    """
    ids, attn, lmask = encode_pairs(tokenizer, prompts, answers)
    was_training = model.training
    model.eval()
    logits = model(input_ids=ids, attention_mask=attn, position_ids=position_ids(attn)).logits
    model.train(was_training)
    hit = logits[:, :-1].argmax(-1) == ids[:, 1:]  # (B, L-1): position t predicts token t+1
    target = lmask[:, 1:].bool()
    return float((hit | ~target).all(-1).float().mean())


def pretrain(model, tokenizer, config: PretrainConfig, *, progress: bool = False) -> dict:
    """Train ``model`` in place on ``config.corpus``; return ``{"losses", "checks", "steps_run"}``.

    Runs ``config.steps`` steps, or stops at the first check (every ``check_every`` steps) whose greedy accuracy
    on :func:`check_sums` reaches ``config.stop_at_accuracy``; ``checks`` lists ``(step, accuracy)``. The loss
    is the token-mean cross-entropy on completion tokens only (the prompt is given). Deterministic in
    ``config.seed`` on one machine: the corpus comes from a numpy Generator seeded with it and no sampling
    touches the global torch RNG. ``progress`` shows a bar on stderr.
    """
    from empirical.tasks import pretraining_corpus

    rng = np.random.default_rng(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    check = check_sums(config) if config.stop_at_accuracy is not None else None
    losses: list[float] = []
    checks: list[tuple[int, float]] = []
    bar = _progress_bar(config.steps, "pretraining the tiny model") if progress else None
    model.train()
    for step in range(1, config.steps + 1):
        prompts, completions = pretraining_corpus(
            config.corpus,
            config.batch_size,
            rng,
            max_operand=config.max_operand,
            digits=config.digits,
        )
        ids, attn, lmask = encode_pairs(tokenizer, prompts, completions)
        logits = model(input_ids=ids, attention_mask=attn, position_ids=position_ids(attn)).logits
        target_mask = lmask[:, 1:].bool()  # logits at t predict token t+1
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1][target_mask], ids[:, 1:][target_mask]
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
        if check is not None and step % config.check_every == 0:
            checks.append((step, greedy_accuracy(model, tokenizer, *check)))
            if bar is not None:
                bar.set_postfix(loss=f"{losses[-1]:.3f}", greedy=f"{checks[-1][1]:.3f}")
            if checks[-1][1] >= config.stop_at_accuracy:
                break
    if bar is not None:
        bar.close()
    model.eval()
    return {"losses": losses, "checks": checks, "steps_run": len(losses)}


def _progress_bar(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", file=sys.stderr, leave=False)


def cache_dir() -> Path:
    """``$SHARPEN_CACHE`` if set, else ``~/.cache/sharpen``."""
    return Path(os.environ.get("SHARPEN_CACHE", Path.home() / ".cache" / "sharpen")).expanduser()


def pretrained_tiny_model(
    config: PretrainConfig = PretrainConfig(),
    *,
    root: Path | None = None,
    threads: int = 1,
    progress: bool = False,
) -> Path:
    """Folder of the pretrained tiny model for ``config``, pretraining (20-60 s on CPU) only if not cached.

    The folder holds ``config.json``, ``model.safetensors``, the tokenizer files and ``pretrain.json`` (the
    pretraining config, the steps run, the accuracy checks, the final loss); load it with ``from_pretrained``.
    Pretraining runs on ``threads`` torch threads (restored afterwards; one is fastest for this model, and under
    load two threads on two cores can be several times slower). Written to a temporary folder and renamed, so a
    killed pretraining never leaves a half-written cache entry.
    """
    root = cache_dir() if root is None else Path(root)
    target = root / config.cache_key()
    if (target / "pretrain.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    model = build_tiny_model(config.model, seed=config.seed)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            log = pretrain(model, tokenizer, config, progress=progress)
    finally:
        torch.set_num_threads(old_threads)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    info = {
        "config": asdict(config),
        "steps_run": log["steps_run"],
        "checks": log["checks"],
        "final_loss": log["losses"][-1] if log["losses"] else None,
    }
    (tmp / "pretrain.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    try:
        os.replace(tmp, target)
    except OSError:  # another process won the race: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return target
