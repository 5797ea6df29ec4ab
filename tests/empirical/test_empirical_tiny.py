"""The tiny Qwen3: tokenizer, save/load round trip, the cached imperfect prior."""

from __future__ import annotations

import json

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
    check_sums,
    greedy_accuracy,
    pretrained_tiny_model,
)


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


def _greedy_by_generate(model, tok, prompts: list[str], max_new_tokens: int = 5) -> list[str]:
    rows = [tok(p)["input_ids"] for p in prompts]
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=(ids != 0).long(),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=2,
        )
    return tok.batch_decode(out[:, width:], skip_special_tokens=True)


def test_cached_prior_is_imperfect_and_not_recomputed(tiny_model, tiny_prior):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = tiny_prior
    path = pretrained_tiny_model(cfg)
    assert path == tiny_model
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert pretrained_tiny_model(cfg) == path  # second call: cache hit, nothing rewritten
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    # the stopping rule: the last check is the first to reach the target, on every machine
    info = json.loads((path / "pretrain.json").read_text())
    accs = [a for _, a in info["checks"]]
    assert accs[-1] >= cfg.stop_at_accuracy > max(accs[:-1], default=0.0)
    assert info["steps_run"] == info["checks"][-1][0] < cfg.steps
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    # the teacher-forced check equals greedy decoding exactly, question by question
    prompts, answers = check_sums(cfg)
    texts = _greedy_by_generate(model, tok, prompts)
    by_generate = np.mean([t == a for t, a in zip(texts, answers, strict=True)])
    assert greedy_accuracy(model, tok, prompts, answers) == by_generate == accs[-1]
    # and on other questions the prior is imperfect: a band around the target (SE ~0.035 on 200 questions)
    task = arithmetic_task(n_train=200, n_heldout=0, seed=11)
    texts = _greedy_by_generate(model, tok, [q.prompt for q in task.train])
    acc = np.mean([task.correct(q, t) for q, t in zip(task.train, texts, strict=True)])
    assert 0.45 <= acc <= 0.85, acc


def test_stop_at_accuracy_validation():
    with pytest.raises(ValueError, match="stop_at_accuracy"):
        PretrainConfig(stop_at_accuracy=1.5)
    with pytest.raises(ValueError, match="check_every"):
        PretrainConfig(stop_at_accuracy=0.5, check_every=0)
    assert PretrainConfig().cache_key() != PretrainConfig(stop_at_accuracy=0.6).cache_key()
