"""Exact answer distributions: equal to brute-force enumeration, matched by sampling, and fast."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from empirical.exact import candidate_ids, candidate_logprobs, exact_probe, label_probs
from empirical.policy import sample
from empirical.tiny import EOS_ID, PAD_ID, build_tokenizer
from sharpen.exact import VOTE_TOP_K, answer_summary
from sharpen.theory import plurality_win_probs

TAU = 0.8


@pytest.fixture(scope="module")
def model_and_tok(tiny_model):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model).eval(), build_tokenizer()


def _prompts(tok, texts):
    return [tok(t)["input_ids"] for t in texts]


@torch.no_grad()
def _enumerate(model, prompt: list[int], depth: int, vocab: int) -> dict[tuple[int, ...], float]:
    """Brute force: the probability of every response of <= ``depth`` tokens then EOS, by expanding the whole
    token tree one level at a time (every prefix over the full vocabulary)."""
    out: dict[tuple[int, ...], float] = {}
    level = {(): 0.0}  # prefix -> log-prob
    for _ in range(depth + 1):
        prefixes = list(level)
        ids = torch.tensor([prompt + list(p) for p in prefixes])
        logp = torch.log_softmax(model(input_ids=ids).logits[:, -1].double() / TAU, dim=-1)
        nxt = {}
        for row, p in enumerate(prefixes):
            out[p] = float(np.exp(level[p] + float(logp[row, EOS_ID])))
            if len(p) < depth:
                for t in range(4, vocab):  # real characters (special tokens never start an answer)
                    nxt[p + (t,)] = level[p] + float(logp[row, t])
        level = nxt
    return out


def test_candidate_probabilities_equal_brute_force_enumeration(model_and_tok):
    model, tok = model_and_tok
    texts = ["3+4=", "12+9=", "47+38="]
    candidates = [str(k) for k in range(100)]  # every 1- and 2-character sum
    logp = candidate_logprobs(
        model, _prompts(tok, texts), candidate_ids(tok, candidates, EOS_ID), temperature=TAU
    )
    for i, text in enumerate(texts):
        tree = _enumerate(model, tok(text)["input_ids"], depth=2, vocab=len(tok))
        by_text = {tok.decode(list(k)): v for k, v in tree.items()}
        # float32 logits from differently shaped batches differ in the last bits (measured: rtol 5e-6)
        np.testing.assert_allclose(
            np.exp(logp[i]), [by_text[c] for c in candidates], rtol=1e-4, atol=1e-12
        )
        # the enumeration is a distribution: what stops within 2 characters plus what goes on sums to <= 1
        assert sum(tree.values()) <= 1 + 1e-12


def test_label_probabilities_equal_the_labels_column_of_the_candidate_scores(model_and_tok):
    model, tok = model_and_tok
    texts, labels = ["3+4=", "12+9=", "47+38=", "5+5="], ["7", "21", "85", "11"]
    candidates = [str(k) for k in range(100)]
    full = np.exp(candidate_logprobs(model, _prompts(tok, texts), candidate_ids(tok, candidates, EOS_ID),
                                     temperature=TAU))  # fmt: skip
    got = label_probs(
        model, _prompts(tok, texts), candidate_ids(tok, labels, EOS_ID), temperature=TAU
    )
    want = [full[i, candidates.index(a)] for i, a in enumerate(labels)]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-12)
    with pytest.raises(ValueError, match="label_ids"):
        label_probs(model, _prompts(tok, texts), candidate_ids(tok, labels[:2], EOS_ID))


def test_candidate_probabilities_match_sampled_frequencies(model_and_tok):
    model, tok = model_and_tok
    texts = ["21+30=", "18+77=", "56+44="]  # one prompt length: no padding
    candidates = [str(k) for k in range(199)]
    summary = exact_probe(
        model, tok, _prompts(tok, texts), candidates, temperature=TAU, eos_id=EOS_ID
    )
    probs = np.exp(
        candidate_logprobs(
            model, _prompts(tok, texts), candidate_ids(tok, candidates, EOS_ID), temperature=TAU
        )
    )
    m = 4000
    rows = _prompts(tok, texts)
    ids = torch.tensor(rows)  # equal lengths: no padding needed
    gen = torch.Generator().manual_seed(0)
    tokens, _ = sample(model, ids, torch.ones_like(ids), m, temperature=TAU, top_p=1.0, max_new_tokens=6,
                       eos_id=EOS_ID, pad_id=PAD_ID, generator=gen)  # fmt: skip
    index = {c: j for j, c in enumerate(candidates)}
    for i in range(len(texts)):
        freq = np.zeros(len(candidates))
        for row in tokens[i * m : (i + 1) * m].tolist():
            if EOS_ID in row:  # exactly a candidate followed by the end token
                text = tok.decode(row[: row.index(EOS_ID)])
                if text in index:
                    freq[index[text]] += 1
        freq /= m
        p = probs[i]
        se = np.sqrt(p * (1 - p) / m)
        assert np.all(np.abs(freq - p) <= 4.5 * se + 2.0 / m), np.max(np.abs(freq - p) - 4.5 * se)
        assert abs((1 - freq.sum()) - summary.residual[i]) <= 4.5 * np.sqrt(0.25 / m) + 2.0 / m


def test_exact_probe_of_64_questions_and_199_sums_is_fast(model_and_tok):
    model, tok = model_and_tok
    rng = np.random.default_rng(0)
    texts = [f"{a}+{b}=" for a, b in rng.integers(0, 100, size=(64, 2))]
    labels = [str(int(a) + int(b)) for a, b in (t[:-1].split("+") for t in texts)]
    candidates = [str(k) for k in range(199)]
    exact_probe(
        model, tok, _prompts(tok, texts[:2]), candidates, temperature=1.0, eos_id=EOS_ID
    )  # warm-up
    start = time.perf_counter()
    s = exact_probe(model, tok, _prompts(tok, texts), candidates, temperature=1.0, eos_id=EOS_ID,
                    labels=labels, n_votes=8)  # fmt: skip
    seconds = time.perf_counter() - start
    print(f"exact probe, 64 questions x 199 candidates: {seconds:.2f} s")
    assert seconds < 5.0  # goal 1 s on 2 idle cores; the margin is for a loaded machine
    assert s.p_majority.shape == (64,) and np.all((0 <= s.residual) & (s.residual < 0.5))
    assert np.all(s.accuracy <= s.p_majority + 1e-12)
    print(f"vote-mode probability: largest bound width {s.vote_mode_prob_gap.max():.2g}")
    assert np.all((0 <= s.vote_mode_prob_gap) & (s.vote_mode_prob_gap < 0.05))  # measured: <= 0.032


def test_answer_summary_against_plain_definitions():
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(6), size=5) * 0.9  # 10% residual
    cands = tuple("abcdef")
    init = np.array([0, 1, 2, -1, 5])
    gold = np.array([1, -1, 2, 3, 0])
    s = answer_summary(p, cands, initial_majority=init, correct=gold, n_votes=5)
    np.testing.assert_allclose(s.residual, 0.1)
    assert s.majority.tolist() == p.argmax(1).tolist()
    np.testing.assert_allclose(s.p_majority, p.max(1))
    np.testing.assert_allclose(s.p_initial_majority, [p[0, 0], p[1, 1], p[2, 2], 0.0, p[4, 5]])
    np.testing.assert_allclose(s.accuracy, [p[0, 1], 0.0, p[2, 2], p[3, 3], p[4, 0]])
    full = np.concatenate([p, np.full((5, 1), 0.1)], axis=1)
    np.testing.assert_allclose(s.entropy, -(full * np.log(full)).sum(1))
    # with <= VOTE_TOP_K answers the vote probability is the exact plurality probability
    assert len(cands) <= VOTE_TOP_K
    np.testing.assert_allclose(
        s.vote_mode_prob,
        [plurality_win_probs(p[i], 5)[p[i].argmax()] for i in range(5)],
        rtol=1e-12,
    )
    assert np.all(s.vote_mode_prob_gap == 0)


def test_vote_probability_bounds_hold_beyond_the_top_k():
    rng = np.random.default_rng(5)
    p = rng.dirichlet(np.full(VOTE_TOP_K + 4, 0.3), size=3) * 0.95
    s = answer_summary(p, [str(i) for i in range(p.shape[1])], n_votes=6)
    exact = np.array([plurality_win_probs(p[i], 6)[p[i].argmax()] for i in range(3)])
    assert np.all(np.abs(s.vote_mode_prob - exact) <= s.vote_mode_prob_gap / 2 + 1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"probs": np.array([[0.6, 0.6]])}, "probs"),
        ({"probs": np.array([[np.nan, 0.1]])}, "probs"),
        ({"probs": np.array([[0.5, 0.1]]), "candidates": ("a", "a")}, "candidates"),
        ({"probs": np.array([[0.5, 0.1]]), "correct": np.array([2])}, "correct"),
        ({"probs": np.array([[0.5, 0.1]]), "n_votes": 0}, "n_votes"),
    ],
)
def test_answer_summary_rejects_bad_input(kwargs, match):
    kwargs = {"candidates": ("a", "b"), **kwargs}
    with pytest.raises(ValueError, match=f"^{match}:"):
        answer_summary(**kwargs)


def test_a_run_probes_exactly_on_stratified_questions_and_fit_uses_them(tiny_config):
    from empirical.train import train
    from paper_figures.fit_report import short_table
    from sharpen.records import load_run
    from sharpen.run_analysis import analyze_run

    run_dir = train(tiny_config.replace(steps=6, probe_every=3, lr=1e-3))
    probes = load_run(run_dir).probes
    assert sorted({r["step"] for r in probes}) == [0, 3, 6]
    assert all(r["exact_p_initial_majority"] is not None for r in probes)
    first = [r for r in probes if r["step"] == 0]
    # at step 0 the initial exact mode is the mode, and the probes spread over p0 in (0.2, 0.95)
    assert all(r["exact_initial_majority_answer"] == r["exact_majority_answer"] for r in first)
    p0 = np.array([r["exact_p_majority"] for r in first])
    assert np.all((0.2 < p0) & (p0 < 0.95)) and p0.max() - p0.min() > 0.3
    # the same questions are probed at every step
    assert [r["question_id"] for r in probes if r["step"] == 6] == [r["question_id"] for r in first]
    # the sampled shares scatter around the exact values (16 samples: SE <= 0.125 per question)
    sampled = np.array([r["p_initial_majority"] for r in first])
    assert abs(sampled.mean() - p0.mean()) < 0.1
    res = analyze_run(run_dir)
    assert res.trajectories.source == "exact"
    np.testing.assert_allclose(res.trajectories.p_initial[:, 0], p0)
    assert "exact answer distributions" in short_table(res)
