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
  ``t`` predicts ``tokens[:, t]`` (model positions ``P-1 .. P+T-2``: shift by one, drop the last). Where most
  padded positions are padding (long responses of mixed lengths), only the others run (:class:`_Positions`),
  with the same logits and gradients.
* :func:`sample` -- temperature / top-p sampling with a KV cache and EOS stopping, driven by a
  ``torch.Generator``, each distinct prefix run once; returns the tokens and their log-probabilities under the
  temperature-scaled policy.
* :class:`PromptPass` -- the prompts run once with grad for a training step: the sampler continues from it
  and the trainer's forward over the same prompts and weights takes it instead of running them again.
* :func:`qwen3_forward` -- transformers' Qwen3 forward op for op (the same numbers) without its per-call
  Python; both passes above use it for a plain transformers Qwen3, transformers' own forward otherwise.

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

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


def row_slices(start: int, stop: int, size: int) -> list[slice]:
    """``[start, stop)`` cut into consecutive slices of ``size`` rows (the last may be shorter): a batch's
    mini- or micro-batches (:meth:`Packed.chunks`).

    >>> row_slices(0, 5, 2)
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    return [slice(i, min(i + size, stop)) for i in range(start, stop, size)]


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id lists as a left-padded ``(N, L)`` long tensor and its ``(N, L)`` 0/1 attention mask."""
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("rows: need at least one row, each with at least one token")
    width = max(len(r) for r in rows)
    # one tensor from padded Python lists (a per-row copy costs more than the whole batch)
    ids = torch.tensor([[pad_id] * (width - len(r)) + list(r) for r in rows], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
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

    def chunks(
        self, size: int, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[slice, Packed]]:
        """Rows ``[start, stop)`` (default: all) as consecutive micro-batches of ``size`` rows, each as
        ``(rows, self.rows(rows))`` (the slices of :func:`row_slices`)."""
        stop = self.tokens.shape[0] if stop is None else stop
        for rows in row_slices(start, stop, size):
            yield rows, self.rows(rows)

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


def _forward(model, plain: bool | None = None):
    """``model``'s forward as ``fn(cache=None, **inputs) -> (logits, cache)``: :func:`qwen3_forward` for a plain
    transformers Qwen3 (the same ops, so the same numbers), else ``model(**inputs, use_cache=True)`` under either
    transformers naming. Chosen once per pass (a prompt pass and its decode calls, or a training forward): the
    check walks every module, about a tenth of a decode call's cost; ``plain``: its result, if known."""
    if _qwen3_plain(model) if plain is None else plain:
        return functools.partial(qwen3_forward, model)
    return functools.partial(_transformers_forward, model)


def _transformers_forward(model, cache=None, **inputs):
    name = _cache_argument(type(model))
    if cache is not None:
        inputs[name] = cache
    out = model(**inputs, use_cache=True)
    return out.logits, out[name]


def _qwen3_plain(model) -> bool:
    """Whether :func:`qwen3_forward` computes ``model``'s forward: a transformers ``Qwen3ForCausalLM`` (not a
    subclass or a wrapper) on transformers 5, SDPA attention, every layer full causal attention, no attention
    dropout, no activation checkpointing (read from the layers, which are what checkpointing wraps)."""
    if not _is_qwen3_class(type(model)):
        return False
    config = model.config
    return (
        config._attn_implementation == "sdpa"
        and getattr(config, "is_causal", True)
        and all(kind == "full_attention" for kind in config.layer_types)
        and not config.attention_dropout
        and not any(getattr(layer, "gradient_checkpointing", False) for layer in model.model.layers)
        and all(_plain_module(m) for m in model.modules())
    )


_PLAIN_TORCH = (torch.nn.ModuleList, torch.nn.Linear, torch.nn.Embedding)


def _plain_module(m) -> bool:
    """A module :func:`qwen3_forward` reads as transformers would run it: one of torch's plain containers,
    linears and embeddings (not an adapter, a quantised linear or a swapped-in kernel) or a transformers Qwen3 or
    activation class, with no forward hooks."""
    cls = type(m)
    known = cls in _PLAIN_TORCH or cls.__module__.startswith(
        ("transformers.models.qwen3.", "transformers.activations")
    )
    return known and not m._forward_hooks and not m._forward_pre_hooks


@functools.cache
def _is_qwen3_class(cls: type) -> bool:
    import transformers

    major = int(transformers.__version__.split(".")[0])
    return (
        cls.__name__ == "Qwen3ForCausalLM"
        and cls.__module__.startswith("transformers.models.qwen3")
        and major == 5  # the major version qwen3_forward is checked against
    )


def _rms_norm(norm, x: torch.Tensor, at: _AllPositions | _Positions | None = None) -> torch.Tensor:
    """transformers' ``Qwen3RMSNorm.forward``, op for op: ``w * x / sqrt(mean(x^2) + eps)`` in float32. With
    ``at`` (a packed pass, :class:`_Positions`) the per-token part runs on the packed rows and the weight's
    product on the padded layout (its gradient is a sum over positions)."""
    dtype = x.dtype
    x = x.to(torch.float32)
    variance = x.pow(2).mean(-1, keepdim=True)
    x = x * torch.rsqrt(variance + norm.variance_epsilon)
    if at is None:
        return norm.weight * x.to(dtype)
    return at.pack(norm.weight * at.unpack(x.to(dtype)))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _causal_mask(attention_mask: torch.Tensor, q_len: int, past: int) -> torch.Tensor | None:
    """The boolean SDPA mask transformers builds for a full-attention layer, ``(B, 1, q_len, past + q_len)``:
    key ``j`` is seen by query ``i`` if ``j <= past + i`` and ``attention_mask[:, j]``; None (SDPA's own causal
    rule) when nothing is padded and the query is one token or the whole sequence, as transformers returns."""
    kv_len, padding = past + q_len, attention_mask.bool()
    if padding.shape[-1] != kv_len:
        raise ValueError(
            f"attention_mask: needs {kv_len} columns (cached + new tokens), got {padding.shape[-1]}"
        )
    if (q_len == 1 or kv_len == q_len) and bool(padding.all()):
        return None
    device = attention_mask.device
    causal = (
        torch.arange(kv_len, device=device) <= torch.arange(past, kv_len, device=device)[:, None]
    )
    return causal[None, None] & padding[:, None, None, :]


class _AllPositions:
    """Every position of a ``(B, L)`` pass runs: the layout transformers computes in (packing is the identity)."""

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        return x

    unpack = pack

    def linear(self, x: torch.Tensor, module) -> torch.Tensor:
        return F.linear(x, module.weight, module.bias)


class _Positions:
    """Only the positions ``keep (B, L)`` of a padded pass run, packed as ``(N, ...)`` rows in row-major order.

    A position-wise operation (a linear, the MLP's activation, a residual sum, a norm's per-token part) gives
    each kept position the numbers the padded pass gives it, wherever a matrix product's row does not depend on
    how many rows the product has (true of this project's torch CPU build, as :data:`SMALL_BATCH` relies on too;
    elsewhere the same to rounding); what mixes positions runs on the padded layout, zeros where nothing
    ran: the attention, and every sum over positions that a parameter's gradient is -- a linear's ``dY^T X``
    (:class:`_PackedLinear`), a norm weight's product. Skipped positions only ever meet the kept ones through
    exact zeros (a masked key's weight, a masked loss's gradient), and every tensor is read by the same
    operations as in the padded pass (so gradients add up in the same order): the kept logits and all gradients
    are the padded pass's, bit for bit under that condition (tested, and to rounding without it); the skipped
    positions' logits are 0.
    """

    def __init__(self, keep: torch.Tensor) -> None:
        flat = keep.reshape(-1)
        self.shape = tuple(keep.shape)
        self.index = flat.nonzero()[:, 0]  # (N,) padded row of each packed row
        packed_row = flat.long().cumsum(0) - 1  # (B L,) at a kept row, its packed row
        # (B L,) the row of [packed rows; a zero row] each padded row reads: a kept row its own, others the zero
        self.spread_index = torch.where(flat, packed_row, self.index.shape[0])
        # (B L,) a packed row for every padded row: itself where kept, a kept neighbour elsewhere
        self.source = packed_row.clamp(min=0)

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, ...)`` -> the kept rows ``(N, ...)``."""
        return _Pack.apply(x.reshape(-1, *x.shape[2:]), self)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, ...)`` -> ``(B, L, ...)``, zeros at the skipped positions."""
        return _Unpack.apply(x, self).view(*self.shape, *x.shape[1:])

    def spread(self, x: torch.Tensor) -> torch.Tensor:
        """Packed rows ``(N, ...)`` in the padded layout ``(B L, ...)``, zeros elsewhere (plain tensors; copies)."""
        zero = x.new_zeros((1, *x.shape[1:]))
        return torch.cat([x, zero]).index_select(0, self.spread_index)

    def linear(self, x: torch.Tensor, module) -> torch.Tensor:
        return _PackedLinear.apply(x, module.weight, self)


class _Pack(torch.autograd.Function):
    """The kept rows of ``x (B L, ...)``; the gradient is copied back into zeros (exact, signed zeros kept)."""

    @staticmethod
    def forward(ctx, x, at):
        ctx.at = at
        return x.index_select(0, at.index)

    @staticmethod
    def backward(ctx, grad):
        return ctx.at.spread(grad), None


class _Unpack(torch.autograd.Function):
    """``x (N, ...)`` in the padded layout ``(B L, ...)``, zeros elsewhere; the gradient is the kept rows."""

    @staticmethod
    def forward(ctx, x, at):
        ctx.at = at
        return at.spread(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.index_select(0, ctx.at.index), None


class _PackedLinear(torch.autograd.Function):
    """``x W^T`` for packed rows ``x (N, K)`` (the product transformers' linear computes for each row) and its
    input gradient ``dY W``; the weight gradient ``dY^T X`` is the padded pass's product over all ``B L`` rows,
    ``dY`` zero at the skipped ones (``X`` there is any kept row: finite, multiplied by zero), so it is summed in
    the padded pass's order."""

    @staticmethod
    def forward(ctx, x, weight, at):
        ctx.save_for_backward(x, weight)
        ctx.at = at
        return x.mm(weight.t())

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        dx = grad.mm(weight) if ctx.needs_input_grad[0] else None
        dw = None
        if ctx.needs_input_grad[1]:
            dw = ctx.at.spread(grad).t().mm(x.index_select(0, ctx.at.source))
        return dx, dw, None


PACK_BELOW = 0.75
"""A training or scoring pass over responses (:func:`response_logits`) runs only the positions the mask keeps
(:class:`_Positions`, the same numbers where row products do not depend on the row count) when at most this share of the padded ``(B, L)`` positions is kept:
there the saved work outweighs the copies in and out of the padded layout (measured, forward + backward on a
tiny reasoning-task batch: 1.2-1.4x faster at 54% kept, 1.1x at 70%, break-even near 85%, 0.9x at 100%)."""


def _packable(model, keep: torch.Tensor) -> bool:
    """Whether the packed pass (:class:`_Positions`) runs for positions ``keep (B, L)``: on CPU (where it was
    measured to pay and to give the padded pass's numbers), linears without biases (a bias gradient is a sum
    over positions too), some but at most :data:`PACK_BELOW` of the positions kept."""
    attention = [layer.self_attn for layer in model.model.layers]
    return (
        keep.device.type == "cpu"
        and 0 < int(keep.sum()) <= PACK_BELOW * keep.numel()
        and all(m.bias is None for a in attention for m in (a.q_proj, a.k_proj, a.v_proj, a.o_proj))
        and model.lm_head.bias is None
    )


def qwen3_forward(
    model,
    cache=None,
    *,
    input_ids,
    attention_mask,
    position_ids,
    logits_to_keep: int = 0,
    packed: bool = False,
):
    """The forward pass of a transformers Qwen3 causal LM with a KV cache, returning ``(logits, cache)``.

    The same tensor operations in the same order as transformers' ``Qwen3ForCausalLM.forward`` (its modules'
    weights, its rotary embedding and SDPA attention functions, the same boolean mask), so the logits and, under
    autograd, the gradients are the same to the bit (checked against transformers in the tests); what it leaves
    out is transformers' per-call Python (output capturing, keyword handling, mask building, module hooks),
    ~1/4 of a decode call of the tiny model. Used by :func:`_forward` only where :func:`_qwen3_plain` holds.

    ``packed``: only the new positions the attention mask keeps run (:class:`_Positions`; needs linears
    without biases and ``logits_to_keep = 0``): the same logits there and the same gradients, zeros elsewhere.
    """
    from transformers.cache_utils import DynamicCache
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    inner, config = model.model, model.config
    if cache is None:
        cache = DynamicCache(config=config)
    mask = _causal_mask(attention_mask, input_ids.shape[1], cache.get_seq_length())
    # the layout of position-wise work: (B, L, ...) padded, or (N, ...) kept positions only
    at = _Positions(attention_mask[:, -input_ids.shape[1] :].bool()) if packed else _AllPositions()
    hidden = at.pack(inner.embed_tokens(input_ids))  # (B, L, H) or (N, H)
    cos, sin = inner.rotary_emb(hidden, position_ids)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (B, 1, L, D), broadcast over heads
    heads = (*input_ids.shape, -1, config.head_dim)
    for i, layer in enumerate(inner.layers):
        attn, mlp = layer.self_attn, layer.mlp
        x = _rms_norm(layer.input_layernorm, hidden, at)
        q = _rms_norm(attn.q_norm, at.unpack(at.linear(x, attn.q_proj)).view(heads))
        k = _rms_norm(attn.k_norm, at.unpack(at.linear(x, attn.k_proj)).view(heads))
        v = at.unpack(at.linear(x, attn.v_proj)).view(heads).transpose(1, 2)
        q, k = q.transpose(1, 2), k.transpose(1, 2)  # (B, heads, L, D)
        q, k = (q * cos) + (_rotate_half(q) * sin), (k * cos) + (_rotate_half(k) * sin)
        k, v = cache.update(k, v, i)
        out, _ = sdpa_attention_forward(attn, q, k, v, mask, dropout=0.0, scaling=attn.scaling,
                                        sliding_window=attn.sliding_window)  # fmt: skip
        out = out.reshape(*heads[:-2], -1).contiguous()
        hidden = hidden + at.linear(at.pack(out), attn.o_proj)
        x = _rms_norm(layer.post_attention_layernorm, hidden, at)
        x = mlp.act_fn(at.linear(x, mlp.gate_proj)) * at.linear(x, mlp.up_proj)
        hidden = hidden + at.linear(x, mlp.down_proj)
    hidden = _rms_norm(inner.norm, hidden, at)
    if packed:
        return at.unpack(at.linear(hidden, model.lm_head)), cache
    return model.lm_head(hidden[:, -logits_to_keep:] if logits_to_keep else hidden), cache


def _versions(model) -> tuple[int, ...]:
    """The parameters' version counters: every in-place change (an optimizer step, a load) bumps them."""
    return tuple(p._version for p in model.parameters())


@dataclass
class PromptPass:
    """One run of left-padded prompts ``(G, P)`` through the model (:func:`prompt_pass`): the last position's
    logits ``(G, 1, V)`` and the key/value cache, holding the autograd graph when grad was on, and the weights'
    version counters when it ran.

    The sampler continues from a detached copy (:func:`sample`'s ``prompts``); the trainer's next forward over
    the same prompts takes the pass itself (:func:`response_logits`' ``prompts``) instead of running them again:
    the same operations on the same weights, so the same logits and, through the same graph, the same gradients.
    It is taken once (the forward extends its cache), by the model that ran it only, and only while the weights
    are those it ran with."""

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    logits: torch.Tensor | None
    cache: object
    versions: tuple[int, ...]
    model: object = field(
        repr=False, compare=False
    )  # the model that ran it (another may share the versions)

    def fits(self, model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> bool:
        """Whether this pass is ``model``'s on these prompts, its weights unchanged, and not taken yet."""
        return (
            self.logits is not None
            and model is self.model
            and self.prompt_ids.shape == prompt_ids.shape
            and self.versions == _versions(model)
            and torch.equal(self.prompt_ids, prompt_ids)
            and torch.equal(self.prompt_mask, prompt_mask)
        )

    def take(self, model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor):
        """``(logits, cache)`` of the pass where it :meth:`fits` (once), else None."""
        if not self.fits(model, prompt_ids, prompt_mask):
            return None
        taken, self.logits = (self.logits, self.cache), None
        return taken

    def detached(self, config) -> tuple[torch.Tensor, object]:
        """The logits and a copy of the cache without the graph, for the sampler to extend."""
        from transformers.cache_utils import DynamicCache

        cache = DynamicCache(config=config)
        for i, layer in enumerate(self.cache.layers):
            cache.update(layer.keys.detach(), layer.values.detach(), i)
        return self.logits.detach(), cache


def prompt_pass(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> PromptPass | None:
    """Run the prompts ``(G, P)`` once with grad (a :class:`PromptPass`); for a plain transformers Qwen3 only
    (:func:`qwen3_forward`, whose cache :meth:`PromptPass.detached` copies), None for other models."""
    if not _qwen3_plain(model):
        return None
    with torch.enable_grad():
        logits, cache = qwen3_forward(model, input_ids=prompt_ids, attention_mask=prompt_mask,
                                      position_ids=positions(prompt_mask), logits_to_keep=1)  # fmt: skip
    return PromptPass(prompt_ids, prompt_mask, logits, cache, _versions(model), model)


def prefill(
    model,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    index: torch.Tensor,
    *,
    prompts: PromptPass | None = None,
    forward=None,
):
    """Run each prompt once (or take ``prompts``, the same pass already run: :meth:`PromptPass.take`) and fan its
    cache out to the rows ``index`` that share it.

    Returns ``(logits (B, V), cache, attention (B, P), next_position (B,))``: the logits of the last prompt
    position (they predict the first response token), the cache with ``B = len(index)`` rows, the rows'
    attention mask and the position of their first response token. ``forward``: :func:`_forward` of ``model``.
    """
    taken = None if prompts is None else prompts.take(model, prompt_ids, prompt_mask)
    logits, cache = taken or (forward or _forward(model))(
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


def response_logits(
    model, batch: Packed, *, autocast: bool = False, prompts: PromptPass | None = None
) -> torch.Tensor:
    """Logits aligned with the response tokens, ``(B, T, V)``; differentiable when grad is enabled.

    The logit at ``t`` is the model's prediction of ``batch.tokens[:, t]`` given the prompt and
    ``tokens[:, :t]``. Prompts run once (see the module docstring), and so do identical rows (frequent for
    short answers and for a collapsing policy): their logits are copies, so gradients add up exactly as if
    every row had run. Under gradient checkpointing, which drops caches, full ``(B, P+T)`` rows run instead.
    ``prompts``: the sampler's pass over these prompts (:class:`PromptPass`), taken instead of a new one where it
    fits (not under autocast, which it did not run in). Where a row has ended (``mask`` false) the logits hold
    numbers no caller may read: the padded pass's, or 0 where the packed pass skipped the position.
    """
    distinct, inverse = batch.distinct()
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        logits = _response_logits(model, distinct, None if autocast else prompts)
    return logits if inverse is None else logits[inverse]


def _response_logits(model, batch: Packed, prompts: PromptPass | None) -> torch.Tensor:
    t_len = batch.tokens.shape[1]
    if _checkpointing(model):
        ids, attn = batch.sequences()
        out = model(input_ids=ids, attention_mask=attn, position_ids=positions(attn), use_cache=False,
                    logits_to_keep=t_len + 1)  # fmt: skip
        return out.logits[:, :-1]
    plain = _qwen3_plain(model)
    forward = _forward(model, plain)
    first, cache, attn, start = prefill(model, batch.prompt_ids, batch.prompt_mask, batch.prompt_index,
                                        prompts=prompts, forward=forward)  # fmt: skip
    if t_len == 1:
        return first[:, None]
    keep = batch.mask[:, :-1]  # the response positions that are inputs
    packed = {"packed": True} if plain and _packable(model, keep) else {}
    logits, _ = forward(
        cache,
        input_ids=batch.tokens[:, :-1],
        attention_mask=torch.cat([attn, keep.long()], 1),
        position_ids=start[:, None] + torch.arange(t_len - 1, device=start.device),
        **packed,
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


SMALL_BATCH = 4
"""Fewest rows a decode call of :func:`sample` runs once the batch has that many: a call over fewer distinct
prefixes is padded with copies. A matrix product over 1-3 rows may take another BLAS kernel (MKL's small-matrix
path rounds differently from its blocked one), so keeping every call of a batch of >= 4 rows at >= 4 rows keeps
the deduplicated sampler's logits those of the per-row one, bit for bit, wherever each row's product does not
depend on the other rows (measured with this project's torch CPU build, whose MKL products do not for >= 4)."""


def _branch(
    node: torch.Tensor, token: torch.Tensor, vocab: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The next step's prefixes: rows ``(A,)`` at prefix ``node`` that drew ``token`` move to the distinct pairs
    ``(node, token)``. Returns ``(parent (U,), token (U,), node (A,))``: each new prefix's old one and last
    token, and each row's new prefix. With fewer than :data:`SMALL_BATCH` rows every row is its own prefix (the
    call keeps the rows' own size); else calls over fewer distinct pairs are padded to that size with copies of
    the first (no row points at a copy).

    >>> [t.tolist() for t in _branch(torch.tensor([0, 0, 0, 1, 1]), torch.tensor([7, 9, 7, 7, 7]), 10)]
    [[0, 0, 1, 0], [7, 9, 7, 7], [0, 1, 0, 2, 2]]
    """
    if node.shape[0] < SMALL_BATCH:
        return node, token, torch.arange(node.shape[0], device=node.device)
    # the distinct (prefix, token) pairs, sorted, and each row's pair
    pairs, node = torch.unique(node * vocab + token, return_inverse=True)
    if pairs.shape[0] < SMALL_BATCH:
        pairs = torch.cat([pairs, pairs[:1].expand(SMALL_BATCH - pairs.shape[0])])
    return pairs // vocab, pairs % vocab, node


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
    prompts: PromptPass | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` responses to each of the ``G`` left-padded prompts ``(G, P)``, with a KV cache.

    Row ``i`` answers prompt ``i // n``. Rows that agree so far (the same prompt and the same tokens) share one
    next-token distribution, so the model runs once per distinct *prefix*: the prompt pass once per prompt,
    then each decode call once per distinct (prefix, token) pair of the last step (see :func:`_branch`), with
    the cache rows copied where prefixes branch; every row still draws its own token, in row order, from its
    prefix's logits (the draws and the generator's state are those of one call per row). A row stops after
    its EOS (later positions hold ``pad_id`` and log-probability 0) and leaves the batch; the loop ends when
    every row has stopped or after ``max_new_tokens``. A sharpened policy repeats a few prefixes, so a call
    runs far fewer rows than the batch holds (measured: ~4x fewer on the tiny arithmetic task's 16 x 8).
    ``prompts``: this prompt pass already run (:func:`prompt_pass`, kept for the trainer), continued from a
    detached copy instead of a new one.

    Returns ``(tokens (G n, T), logprobs (G n, T))`` with ``T <= max_new_tokens``.
    """
    if n < 1 or max_new_tokens < 1:
        raise ValueError(f"n, max_new_tokens: must be >= 1, got {n}, {max_new_tokens}")
    device, (n_prompts, width) = prompt_ids.device, prompt_ids.shape
    # a prompt pass is a plain transformers Qwen3's (prompt_pass) and fits only the model that ran it
    forward = _forward(model, True if prompts is not None else None)
    if prompts is None:
        logits, cache = forward(input_ids=prompt_ids, attention_mask=prompt_mask,
                                position_ids=positions(prompt_mask), logits_to_keep=1)  # fmt: skip
    elif prompts.fits(model, prompt_ids, prompt_mask):
        logits, cache = prompts.detached(model.config)
    else:
        raise ValueError("prompts: a prompt pass of other prompts, other weights or another model")
    logits = logits[:, -1]  # (U, V): one row per prefix, here the prompts
    # each prefix's attention mask for the whole response, allocated once; step t reads P + t + 1 columns
    attn = torch.cat([prompt_mask, prompt_mask.new_ones(n_prompts, max_new_tokens)], 1)
    position = prompt_mask.sum(-1)  # (U,) position of each prefix's first response token
    # (A,) the prefix of each active row
    node = torch.arange(n_prompts, device=device).repeat_interleave(n)
    active = torch.arange(node.shape[0], device=device)  # (A,) rows still generating
    span = torch.arange(
        node.shape[0], device=device
    )  # to spot a step where no prefix branched or ended
    tokens = torch.full((node.shape[0], max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros(tokens.shape, device=device)
    for t in range(max_new_tokens):
        row_logits = logits[node]  # (A, V): each row reads its prefix's logits
        token, logp = pick_tokens(
            row_logits, temperature=temperature, top_p=top_p, generator=generator
        )
        tokens[active, t], logprobs[active, t] = token, logp
        going = token != eos_id
        if t == max_new_tokens - 1 or not bool(going.any()):
            break
        if not bool(going.all()):  # finished rows leave the batch
            keep = going.nonzero()[:, 0]
            active, token, node = active[keep], token[keep], node[keep]
        parent, token, node = _branch(node, token, logits.shape[-1])
        same = parent.shape[0] == position.shape[0] and torch.equal(parent, span[: parent.shape[0]])
        if not same:  # prefixes branched or ended: copy their cache rows
            cache.batch_select_indices(parent)
            attn, position = attn[parent], position[parent]
        logits, cache = forward(cache, input_ids=token[:, None], attention_mask=attn[:, : width + t + 1],
                                position_ids=position[:, None] + t)  # fmt: skip
        logits = logits[:, -1]
    return tokens[:, : t + 1], logprobs[:, : t + 1]
