"""The tiny Qwen3: tokenizer, save/load round trip, the cached imperfect prior."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from empirical.tasks import arithmetic_task
from empirical.tiny import (
    CHARACTERS,
    PretrainConfig,
    TinyModelConfig,
    build_tiny_model,
    build_tokenizer,
    pretrained_tiny_model,
)

PRETRAIN_STEPS = 300  # as in conftest.py


def test_tokenizer_is_one_token_per_character():
    tok = build_tokenizer()
    text = "12+34=46 t16:(3+5)*2?true"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) == len(text) + 1
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert len(tok) == 4 + len(CHARACTERS) == 50


def test_save_and_load_round_trip_exactly(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = build_tiny_model(seed=3)
    assert sum(p.numel() for p in model.parameters()) == 498_688
    model.save_pretrained(tmp_path)
    build_tokenizer().save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    for (name, a), (_, b) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert tok("7+8=")["input_ids"] == build_tokenizer()("7+8=")["input_ids"]


def test_config_validation():
    with pytest.raises(ValueError, match="num_kv_heads"):
        TinyModelConfig(num_heads=4, num_kv_heads=3)
    with pytest.raises(ValueError, match="corpus"):
        PretrainConfig(corpus="poetry")
    with pytest.raises(ValueError, match="steps"):
        PretrainConfig(steps=-1)


def test_cached_prior_is_imperfect_and_not_recomputed(tiny_cache):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = PretrainConfig(steps=PRETRAIN_STEPS)
    path = pretrained_tiny_model(cfg)
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert pretrained_tiny_model(cfg) == path  # second call: cache hit, nothing rewritten
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    task = arithmetic_task(n_train=200, n_heldout=0, seed=11)
    rows = [tok(q.prompt)["input_ids"] for q in task.train]
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=(ids != 0).long(),
            max_new_tokens=5,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=2,
        )
    texts = tok.batch_decode(out[:, width:], skip_special_tokens=True)
    acc = np.mean([task.correct(q, t) for q, t in zip(task.train, texts, strict=True)])
    assert 0.3 <= acc <= 0.8, acc  # the useful band: imperfect by construction
