"""The reasoning task (sums with a carry scratchpad): format, parsing, grading, its prior and a GRPO run."""

from __future__ import annotations

import math
import os
import re

import numpy as np
import pytest
import torch

from empirical import tiny
from empirical.behaviour import behaviour_metrics
from empirical.config import preset
from empirical.reasoning import (
    answer_candidates,
    final_answer_logprobs,
    max_sequence_tokens,
    parse_final_answer,
    reasoning_corpus,
    reasoning_task,
    response_tokens,
    scratchpad_answer,
    worked_solution,
)
from empirical.tasks import build_task
from empirical.tiny import PretrainConfig, build_tokenizer, check_sums, pretrained_tiny_model

# as tests/empirical/conftest.py: scripts/check_portability.sh also runs the suite with two torch threads
TORCH_THREADS = int(os.environ.get("SHARPEN_TEST_TORCH_THREADS", "1"))

# The tests' reasoning prior: 1-digit sums (100 questions) learn in ~40 steps of 64 sequences (~10 s on one
# thread); pretraining stops at the first check where greedy writes the gold solution for 30% of the checks.
SMALL_PRIOR = PretrainConfig(
    corpus="reason", digits=1, steps=200, batch_size=64, stop_at_accuracy=0.3, n_check=64
)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tests here run torch directly too: on TORCH_THREADS threads (conftest restores the count after)."""
    torch.set_num_threads(TORCH_THREADS)


@pytest.fixture(scope="module")
def reason_model(tmp_path_factory):
    """Folder of the small reasoning prior, pretrained once for this module."""
    return pretrained_tiny_model(
        SMALL_PRIOR, root=tmp_path_factory.mktemp("reason-cache"), threads=TORCH_THREADS
    )


# ----------------------------------------------------------------------------------------------------------
# format, parsing, grading
# ----------------------------------------------------------------------------------------------------------

_STEP = re.compile(r"(\d)\+(\d)\+([01])=(\d\d)")


def test_worked_solution_is_the_column_addition():
    assert worked_solution(47, 385, digits=3) == "7+5+0=12 4+8+1=13 0+3+1=04 a:432"
    assert worked_solution(0, 0, digits=2) == "0+0+0=00 0+0+0=00 a:0"
    rng = np.random.default_rng(0)
    for digits in (1, 3, 5):
        shortest, longest = response_tokens(digits)
        for a, b in rng.integers(0, 10**digits, size=(50, 2)):
            text = worked_solution(int(a), int(b), digits=digits)
            steps = _STEP.findall(text)
            assert len(steps) == digits and text.count(" ") == digits
            carry = 0
            for col, (x, y, c, zz) in enumerate(steps):  # column col from the right
                assert int(x) == a // 10**col % 10 and int(y) == b // 10**col % 10
                assert int(c) == carry and int(zz) == int(x) + int(y) + carry
                carry = int(zz) // 10
            assert parse_final_answer(text) == scratchpad_answer(text) == str(a + b)
            assert shortest <= len(text) + 1 <= longest  # + the end token
    assert max_sequence_tokens(9) <= 128


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("7+5+0=12 a:12", "12"),
        ("a:0012", "12"),
        ("a:12 ", "12"),
        ("anything at all a:3 a:5", "5"),  # the last answer counts
        ("7+5+0=12 a:", None),
        ("7+5+0=12 4+8+1=1", None),  # cut by the length cap
        ("a:12 a", None),  # kept writing after its answer
        ("12", None),
        ("", None),
        ("a:-3", None),
        ("a:" + "9" * 13, None),
    ],
)
def test_parse_final_answer(text, answer):
    assert parse_final_answer(text) == answer


def test_scratchpad_answer_reads_the_steps_as_written():
    # a wrong step (9+3=12) read faithfully, a final answer that ignores the steps, no steps at all
    assert scratchpad_answer("2+7+0=09 7+8+0=15 9+3+1=12 a:1559") == "1259"
    assert (
        scratchpad_answer("1+1+0=02 1+1+0=02 1+1+0=02 1+1+0=02") == "2222"
    )  # a repeated step counts
    assert scratchpad_answer("a:12") is None and scratchpad_answer("") is None


def test_task_splits_grades_and_lists_no_candidates():
    task = reasoning_task(n_train=300, n_heldout=50, digits=2, seed=3)
    ids = [q.qid for q in task.train + task.heldout]
    assert len(set(ids)) == 350 and task.name == "reason" and task.candidates is None
    assert task.implied is scratchpad_answer
    for q in task.train[:20]:
        a, b = q.get("a"), q.get("b")
        assert q.prompt == f"q: {a}+{b}=" and q.label == str(a + b) and not q.chat
        assert task.correct(q, q.get("solution"))
        assert task.correct(q, f"other steps a:{q.label}")  # the reasoning is not graded
        assert not task.correct(q, f"a:{a + b + 1}") and not task.check(q, None)
    cands = set(answer_candidates(2))
    assert len(cands) == 199 and {q.label for q in task.train} <= cands
    with pytest.raises(ValueError, match="digits"):
        reasoning_task(digits=0)
    with pytest.raises(ValueError, match="n_train"):
        reasoning_task(n_train=90, n_heldout=20, digits=1)


def test_preset_and_build_task():
    cfg = preset("tiny-reason-ttrl")
    assert (cfg.task, cfg.pretrain_corpus, cfg.reward) == ("reason", "reason", "majority_voting")
    assert cfg.max_new_tokens >= max(response_tokens(3)) + 16  # room to grow
    assert cfg.pretrain_accuracy is not None and cfg.pretrain_accuracy < 1
    task = build_task(cfg.replace(n_train=10, n_heldout=5))
    assert task.name == "reason" and len(task.train) == 10 and len(task.heldout) == 5


# ----------------------------------------------------------------------------------------------------------
# the prior: corpus, cache key, stopping rule
# ----------------------------------------------------------------------------------------------------------


def test_corpus_check_set_and_cache_key():
    prompts, completions = reasoning_corpus(20, np.random.default_rng(0), digits=3)
    for p, c in zip(prompts, completions, strict=True):
        a, b = map(int, p[3:-1].split("+"))
        assert c == worked_solution(a, b, digits=3)
    cfg = PretrainConfig(corpus="reason", stop_at_accuracy=0.6)
    check_p, check_c = check_sums(cfg)
    assert len(check_p) == cfg.n_check and check_p[0].startswith("q: ") and " a:" in check_c[0]
    assert check_sums(cfg) == (check_p, check_c)  # fixed per config
    assert cfg.cache_key().startswith("tiny-qwen3-reason3-acc0.6-")
    assert (
        cfg.cache_key()
        != PretrainConfig(corpus="reason", digits=4, stop_at_accuracy=0.6).cache_key()
    )
    # adding ``digits`` left the keys of the priors cached before it unchanged
    assert PretrainConfig(steps=400).cache_key() == "tiny-qwen3-arith-400-9d0436e389"
    with pytest.raises(ValueError, match="max_positions"):
        PretrainConfig(corpus="reason", digits=5, model=tiny.TinyModelConfig(max_positions=64))


def test_stopping_rule_stops_at_the_first_check_reaching_the_target(monkeypatch):
    """The rule, with a scripted accuracy: checks every 5 steps, stop at the first value >= 0.5."""
    script = iter([0.1, 0.45, 0.5, 0.9])
    monkeypatch.setattr(tiny, "greedy_accuracy", lambda *args: next(script))
    cfg = PretrainConfig(corpus="reason", digits=1, steps=100, batch_size=4, stop_at_accuracy=0.5)
    log = tiny.pretrain(tiny.build_tiny_model(cfg.model), build_tokenizer(), cfg)
    assert log["steps_run"] == 15 and log["checks"] == [(5, 0.1), (10, 0.45), (15, 0.5)]


def test_small_prior_stops_early_and_the_check_is_greedy_decoding(reason_model):
    import json

    from transformers import AutoModelForCausalLM

    info = json.loads((reason_model / "pretrain.json").read_text())
    accs = [a for _, a in info["checks"]]
    assert info["steps_run"] < SMALL_PRIOR.steps  # the rule fired within the budget
    assert accs[-1] >= SMALL_PRIOR.stop_at_accuracy > max(accs[:-1], default=0.0)
    # the teacher-forced check equals greedy decoding writing the gold solution, question by question
    model = AutoModelForCausalLM.from_pretrained(reason_model).eval()
    tok = build_tokenizer()
    prompts, solutions = check_sums(SMALL_PRIOR)
    texts = _greedy(model, tok, prompts, max(response_tokens(1)))
    by_decoding = np.mean([t == s for t, s in zip(texts, solutions, strict=True)])
    assert tiny.greedy_accuracy(model, tok, prompts, solutions) == pytest.approx(by_decoding)
    assert pretrained_tiny_model(SMALL_PRIOR, root=reason_model.parent) == reason_model  # cached


def _greedy(model, tok, prompts, max_new_tokens):
    from empirical.rollout import HFBackend

    rows = [tok(p)["input_ids"] for p in prompts]
    gen = HFBackend(model, pad_id=tiny.PAD_ID, eos_id=tiny.EOS_ID).generate(
        rows, 1, temperature=0.0, top_p=1.0, max_new_tokens=max_new_tokens
    )
    return tok.batch_decode(gen.response_ids, skip_special_tokens=True)


def test_final_answer_logprobs_teacher_force_the_answer_after_the_scratchpad(reason_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(reason_model).eval()
    tok = build_tokenizer()
    prompts, solutions = ["q: 7+5=", "q: 3+4="], [worked_solution(7, 5, digits=1), "3+4+0=07 a:7"]
    pads = [s.rsplit(" a:", 1)[0] for s in solutions]
    cands = answer_candidates(1)
    logp = final_answer_logprobs(model, tok, prompts, pads, cands, eos_id=tiny.EOS_ID)
    assert logp.shape == (2, 19) and (np.exp(logp).sum(1) <= 1 + 1e-9).all()
    # one entry by hand: the full sequence's token log-probs after the "a:"
    ids = tok(prompts[0] + pads[0] + " a:12")["input_ids"] + [tiny.EOS_ID]
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
    tail = len(tok("12", add_special_tokens=False)["input_ids"]) + 1
    want = sum(float(lp[t - 1, ids[t]]) for t in range(len(ids) - tail, len(ids)))
    assert logp[0, cands.index("12")] == pytest.approx(want, abs=1e-5)


# ----------------------------------------------------------------------------------------------------------
# GRPO on the task
# ----------------------------------------------------------------------------------------------------------


def test_short_grpo_run_records_and_behaviour_metrics(reason_model, tmp_path):
    from empirical.train import build_trainer, train
    from sharpen.records import load_run

    cfg = preset("tiny-reason-ttrl").replace(
        model=str(reason_model), out_dir=str(tmp_path / "run"), progress=False,
        n_train=64, n_heldout=8, rollout_batch_size=16, n_rollouts=4, steps=3, lr=1e-3,
        probe_every=0, eval_every=3, n_eval=8, eval_samples=2, checkpoint_every=0,
        torch_threads=TORCH_THREADS,
    )  # fmt: skip
    run = load_run(train(cfg))
    assert [m["step"] for m in run.metrics] == [1, 2, 3]
    assert [e["step"] for e in run.evals] == [0, 3]
    for m in run.metrics:
        assert math.isfinite(m["kl_to_initial"]) and 1 <= m["response_length"] <= 64

    # the behaviour metrics of a training batch, on the task the prior was trained on
    trainer = build_trainer(cfg.replace(out_dir=str(tmp_path / "steps")))
    trainer.task = reasoning_task(n_train=64, n_heldout=8, digits=1)
    trainer.train_step()
    batch, _ = trainer.last_batch
    texts = trainer.tokenizer.batch_decode(batch.tokens, skip_special_tokens=True)
    answers = [trainer.task.parse(t) for t in texts]
    ref = torch.log_softmax(
        torch.randn(*batch.tokens.shape, 50), -1
    )  # stand-in reference log-probs
    ref = ref.gather(-1, batch.tokens[..., None])[..., 0]
    implied = [trainer.task.implied(t) for t in texts]
    m = behaviour_metrics(batch.tokens, answers, n=4, mask=batch.mask, eos_id=trainer.eos_id,
                          logprobs=ref, ref_logprobs=ref, implied_answers=implied)  # fmt: skip
    assert 1 <= m["behaviour/length_p10"] <= m["behaviour/length_p50"] <= m["behaviour/length_p90"]
    assert m["behaviour/length_max"] <= 64 and 0 <= m["behaviour/truncated"] <= 1
    assert 0 <= m["behaviour/repeat_4gram"] < 1 and m["behaviour/longest_repeat_max"] <= 64
    assert 0 < m["behaviour/parse_rate"] <= 1 and 1 <= m["behaviour/distinct_answers"] <= 4
    assert 0 <= m["behaviour/answer_follows_steps"] <= 1
    assert m["behaviour/kl_seq_k3"] == 0.0 and m["behaviour/kl_token_k3"] == 0.0  # same policy
    # the ragged form (Generation.response_ids) gives the same numbers
    ragged = [
        row[: int(k)].tolist() for row, k in zip(batch.tokens, batch.mask.sum(1), strict=True)
    ]
    assert behaviour_metrics(ragged, answers, n=4, eos_id=trainer.eos_id) == {
        k: v for k, v in m.items() if "kl" not in k and "follows" not in k
    }
