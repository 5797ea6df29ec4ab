r"""The policy model: loading, the response forward pass with shared prompts, and KV-cached sampling.

A GRPO batch holds ``n`` responses to each of ``G`` prompts. Both the sampler and the trainer's forward pass run
each prompt through the model **once** (``(G, P)`` tokens), copy its key/value cache to the ``n`` rows that
share it, and run only the responses on top (``(B, T)`` tokens, ``B = G n``). Gradients flow back through the
copied cache into the prompt pass, so the result equals a forward over the full ``(B, P + T)`` sequences (to
float rounding) at about half the work for short responses. Identical rows (same prompt and response) run
once and are copied, which again adds up gradients exactly.

* :class:`Packed` -- a batch of rollouts as tensors: unique left-padded prompts, the row -> prompt index, the
  right-padded responses and their mask.
* :func:`response_logits` -- logits aligned with the response tokens, ``(B, T, V)``: the logit at position
  ``t`` predicts ``tokens[:, t]`` (model positions ``P-1 .. P+T-2``: shift by one, drop the last).
* :func:`sample` -- temperature / top-p sampling with a KV cache and EOS stopping, driven by a
  ``torch.Generator``; returns the tokens and their log-probabilities under the temperature-scaled policy.

Example
-------
>>> from empirical.tiny import EOS_ID, PAD_ID, build_tiny_model
>>> model = build_tiny_model(seed=0)
>>> ids, mask = left_pad([[1, 5, 6], [1, 7]], PAD_ID)  # two prompts, (2, 3)
>>> tokens, logp = sample(model, ids, mask, 4, temperature=1.0, top_p=1.0, max_new_tokens=3,
...                       eos_id=EOS_ID, pad_id=PAD_ID, generator=torch.Generator().manual_seed(0))
>>> tokens.shape[0], bool((logp <= 0).all())  # 4 samples of each prompt
(8, True)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

# ----------------------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------------------


def resolve_model_path(
    model: str,
    *,
    pretrain_corpus: str = "arith",
    pretrain_steps: int = 1000,
    pretrain_accuracy: float | None = 0.7,
    progress: bool = False,
) -> str:
    """Folder (or hub id) of the initial policy; ``"tiny"`` pretrains and caches the tiny model if needed
    (:class:`empirical.tiny.PretrainConfig` from the ``pretrain_*`` arguments; ``progress`` shows a bar)."""
    if model == "tiny":
        from empirical.tiny import PretrainConfig, pretrained_tiny_model

        prior = PretrainConfig(
            corpus=pretrain_corpus, steps=pretrain_steps, stop_at_accuracy=pretrain_accuracy
        )
        return str(pretrained_tiny_model(prior, progress=progress))
    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ValueError(f"model: {path} is not a Hugging Face model folder (no config.json)")
        return str(path)
    if model.startswith(("/", ".", "~")) or model.count("/") != 1:
        raise ValueError(f"model: no such model folder {model!r} (and not a hub id 'org/name')")
    return model


def load_model(
    path: str,
    device: torch.device,
    *,
    trust_remote_code: bool = False,
    gradient_checkpointing: bool = False,
):
    """A causal LM in float32 (master weights; bf16 enters through autocast) and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the run's own bar reports progress; per-file loading bars are noise
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float32, trust_remote_code=trust_remote_code
        )
    except OSError as err:
        raise ValueError(
            f"model: cannot load {path!r} (no local folder and no hub access?): {err}"
        ) from None
    if gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model.to(device), tokenizer


# ----------------------------------------------------------------------------------------------------------
# batches of rollouts as tensors
# ----------------------------------------------------------------------------------------------------------


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id lists as a left-padded ``(N, L)`` long tensor and its ``(N, L)`` 0/1 attention mask."""
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("rows: need at least one row, each with at least one token")
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.as_tensor(list(r), dtype=torch.long)
        mask[i, width - len(r) :] = 1
    return ids, mask


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a left-padded batch, ``cumsum(mask) - 1`` clamped at 0 (what ``generate`` uses)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


@dataclass(frozen=True)
class Packed:
    """Rollouts as trainer tensors, each distinct prompt stored once.

    ``prompt_ids (G, P)`` left-padded distinct prompts with ``prompt_mask (G, P)``; ``prompt_index (B,)`` the
    prompt of each row; ``tokens (B, T)`` right-padded responses (pad after EOS) with ``mask (B, T)`` (bool).
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    prompt_index: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor

    def rows(self, index: slice | torch.Tensor) -> Packed:
        """The rows ``index`` (a slice or a tensor of row numbers), keeping only the prompts they use."""
        used, inverse = torch.unique(self.prompt_index[index], return_inverse=True)
        return Packed(
            self.prompt_ids[used],
            self.prompt_mask[used],
            inverse,
            self.tokens[index],
            self.mask[index],
        )

    def distinct(self) -> tuple[Packed, torch.Tensor | None]:
        """The distinct rows (same prompt, response and mask) and, if some repeat, ``inverse (B,)`` with
        ``self`` row ``i`` = distinct row ``inverse[i]``; ``(self, None)`` when all rows differ."""
        key = torch.cat([self.prompt_index[:, None], self.tokens, self.mask.long()], 1)
        unique, inverse = torch.unique(key, dim=0, return_inverse=True)
        if unique.shape[0] == key.shape[0]:
            return self, None
        rows = torch.arange(key.shape[0], device=key.device)
        first = torch.full((unique.shape[0],), key.shape[0], device=key.device).scatter_reduce(
            0, inverse, rows, reduce="amin"
        )  # one representative row (the first) per distinct row
        return self.rows(first), inverse

    def sequences(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Full rows ``(B, P+T)``: prompt then response ids, and the attention mask (for checking and for
        models that cannot share a cache under gradient checkpointing)."""
        ids = torch.cat([self.prompt_ids[self.prompt_index], self.tokens], 1)
        attn = torch.cat([self.prompt_mask[self.prompt_index], self.mask.long()], 1)
        return ids, attn


def pack(
    prompt_ids: Sequence[Sequence[int]],
    response_ids: Sequence[Sequence[int]],
    pad_id: int,
    device: torch.device | str = "cpu",
) -> Packed:
    """Pad per-row prompts and responses into :class:`Packed` tensors (identical prompts stored once)."""
    if len(prompt_ids) != len(response_ids) or not prompt_ids:
        raise ValueError(
            "prompt_ids, response_ids: need as many prompts as responses, at least one"
        )
    if any(len(r) == 0 for r in response_ids):
        raise ValueError("response_ids: every response needs at least one token")
    distinct: dict[tuple[int, ...], int] = {}
    index = [distinct.setdefault(tuple(p), len(distinct)) for p in prompt_ids]
    ids, mask = left_pad(list(distinct), pad_id)
    width = max(len(r) for r in response_ids)
    # one tensor from padded Python lists: a per-row copy costs ~10x more at 512 rows
    tokens = torch.tensor(
        [list(r) + [pad_id] * (width - len(r)) for r in response_ids], dtype=torch.long
    )
    lengths = torch.tensor([len(r) for r in response_ids])
    keep = torch.arange(width)[None, :] < lengths[:, None]
    index_t = torch.as_tensor(index, dtype=torch.long)
    return Packed(*(t.to(device) for t in (ids, mask, index_t, tokens, keep)))


# ----------------------------------------------------------------------------------------------------------
# forward passes
# ----------------------------------------------------------------------------------------------------------


@functools.cache
def _cache_argument(model_class: type) -> str:
    """transformers 5.2x renamed ``past_key_values`` to ``cache`` (argument and output field)."""
    return (
        "cache"
        if "cache" in inspect.signature(model_class.forward).parameters
        else "past_key_values"
    )


def _call(model, cache=None, **inputs):
    """``model(**inputs, use_cache=True)`` returning ``(logits, cache)`` under either transformers naming."""
    name = _cache_argument(type(model))
    if cache is not None:
        inputs[name] = cache
    out = model(**inputs, use_cache=True)
    return out.logits, out[name]


def prefill(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, index: torch.Tensor):
    """Run each prompt once and fan its cache out to the rows ``index`` that share it.

    Returns ``(logits (B, V), cache, attention (B, P), next_position (B,))``: the logits of the last prompt
    position (they predict the first response token), the cache with ``B = len(index)`` rows, the rows'
    attention mask and the position of their first response token.
    """
    logits, cache = _call(
        model,
        input_ids=prompt_ids,
        attention_mask=prompt_mask,
        position_ids=positions(prompt_mask),
        logits_to_keep=1,
    )
    cache.batch_select_indices(index)
    return logits[:, -1][index], cache, prompt_mask[index], prompt_mask.sum(-1)[index]


def _checkpointing(model) -> bool:
    """Whether gradient (activation) checkpointing is on; transformers renamed the property in 5.2x."""
    new = hasattr(type(model), "is_activation_checkpointing")
    return bool(
        getattr(model, "is_activation_checkpointing" if new else "is_gradient_checkpointing", False)
    )


def response_logits(model, batch: Packed, *, autocast: bool = False) -> torch.Tensor:
    """Logits aligned with the response tokens, ``(B, T, V)``; differentiable when grad is enabled.

    The logit at ``t`` is the model's prediction of ``batch.tokens[:, t]`` given the prompt and
    ``tokens[:, :t]``. Prompts run once (see the module docstring), and so do identical rows (frequent for
    short answers and for a collapsing policy): their logits are copies, so gradients add up exactly as if
    every row had run. Under gradient checkpointing, which drops caches, full ``(B, P+T)`` rows run instead.
    """
    distinct, inverse = batch.distinct()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        logits = _response_logits(model, distinct)
    return logits if inverse is None else logits[inverse]


def _response_logits(model, batch: Packed) -> torch.Tensor:
    t_len = batch.tokens.shape[1]
    if _checkpointing(model):
        ids, attn = batch.sequences()
        out = model(input_ids=ids, attention_mask=attn, position_ids=positions(attn), use_cache=False,
                    logits_to_keep=t_len + 1)  # fmt: skip
        return out.logits[:, :-1]
    first, cache, attn, start = prefill(
        model, batch.prompt_ids, batch.prompt_mask, batch.prompt_index
    )
    if t_len == 1:
        return first[:, None]
    logits, _ = _call(
        model,
        cache,
        input_ids=batch.tokens[:, :-1],
        attention_mask=torch.cat([attn, batch.mask[:, :-1].long()], 1),
        position_ids=start[:, None] + torch.arange(t_len - 1, device=start.device),
    )
    return torch.cat([first[:, None], logits], 1)


# ----------------------------------------------------------------------------------------------------------
# sampling
# ----------------------------------------------------------------------------------------------------------


def pick_tokens(
    logits: torch.Tensor,
    *,
    temperature: float,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""One token per row from ``logits (B, V)``: greedy at ``temperature == 0``, else a draw from
    :math:`\mathrm{softmax}(z/\tau)` restricted to the nucleus (the fewest most likely tokens whose mass reaches
    ``top_p``) and renormalised.

    Returns ``(tokens (B,), logprobs (B,))``; the log-probability is :math:`\log\mathrm{softmax}(z/\tau)` at the
    token, before the nucleus cut (the value the trainer's ``token_logprobs`` recomputes); greedy uses
    :math:`\tau = 1`.
    """
    if temperature < 0 or not 0 < top_p <= 1:
        raise ValueError(
            f"temperature, top_p: need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}"
        )
    logp = torch.log_softmax(logits.float() / (temperature or 1.0), -1)  # (B, V)
    if temperature == 0:
        tokens = logp.argmax(-1)
    else:
        probs = logp.exp()
        if top_p < 1:
            sorted_p, order = probs.sort(-1, descending=True)
            outside = (
                sorted_p.cumsum(-1) - sorted_p
            ) >= top_p  # mass before the token already reaches top_p
            probs = probs.scatter(-1, order, sorted_p.masked_fill(outside, 0.0))
        tokens = torch.multinomial(probs, 1, generator=generator)[:, 0]
    return tokens, logp.gather(-1, tokens[:, None])[:, 0]


@torch.inference_mode()
def sample(
    model,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    n: int,
    *,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` responses to each of the ``G`` left-padded prompts ``(G, P)``, with a KV cache.

    Row ``i`` answers prompt ``i // n``. A row stops after its EOS (later positions hold ``pad_id`` and
    log-probability 0) and leaves the batch, so finished rows cost nothing; the loop ends when every row has
    stopped or after ``max_new_tokens``.

    Returns ``(tokens (G n, T), logprobs (G n, T))`` with ``T <= max_new_tokens``.
    """
    if n < 1 or max_new_tokens < 1:
        raise ValueError(f"n, max_new_tokens: must be >= 1, got {n}, {max_new_tokens}")
    device = prompt_ids.device
    index = torch.arange(prompt_ids.shape[0], device=device).repeat_interleave(n)
    logits, cache, attn, position = prefill(model, prompt_ids, prompt_mask, index)
    tokens = torch.full((index.shape[0], max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros(tokens.shape, device=device)
    active = torch.arange(index.shape[0], device=device)  # rows still generating
    for t in range(max_new_tokens):
        token, logp = pick_tokens(logits, temperature=temperature, top_p=top_p, generator=generator)
        tokens[active, t], logprobs[active, t] = token, logp
        going = token != eos_id
        if t == max_new_tokens - 1 or not bool(going.any()):
            break
        if not bool(going.all()):  # drop finished rows from the batch and the cache
            keep = going.nonzero()[:, 0]
            active, token, attn, position = active[keep], token[keep], attn[keep], position[keep]
            cache.batch_select_indices(keep)
        attn = torch.cat([attn, torch.ones_like(attn[:, :1])], 1)
        logits, cache = _call(
            model,
            cache,
            input_ids=token[:, None],
            attention_mask=attn,
            position_ids=position[:, None] + t,
        )
        logits = logits[:, -1]
    return tokens[:, : t + 1], logprobs[:, : t + 1]
