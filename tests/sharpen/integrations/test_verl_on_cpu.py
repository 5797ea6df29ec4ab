"""sharpen.integrations.verl without veRL: scoring, pseudo-labels, actor rewards, parquet, recipe, export."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sharpen.integrations.verl import (
    NO_LABEL,
    QuestionKeys,
    VerlRecipe,
    answer_style_for,
    certainty_from_actor,
    compute_score,
    export_verl_run,
    inject_pseudo_labels,
    main,
    to_verl_rows,
    write_recipe,
    write_verl_parquet,
)
from sharpen.metrics import ttrl_metrics
from sharpen.records import load_run
from sharpen.rewards import PRESETS, Rollouts, get_reward, score, token_entropies, token_logprobs
from sharpen.testing import answer_lists

DAPO = "Let me compute. 3 + 4 = 7, times 2 is 14.\nAnswer: 14"


# --- compute_score ------------------------------------------------------------------------------------------


def test_compute_score_dapo_answer_line_and_boxed():
    assert compute_score("math_dapo", DAPO, "14") == {
        "score": 1.0, "acc": True, "pred": "14", "gt_score": 1.0, "label_correct": 1.0,
    }  # fmt: skip
    assert (
        compute_score("math_dapo", DAPO, 15)["score"] == 0.0
    )  # integer labels, as in DAPO's parquet
    assert (
        compute_score("math", r"so $\boxed{\dfrac{1}{2}}$.", r"\frac12")["pred"] == r"\frac{1}{2}"
    )
    assert compute_score("math", r"so $\boxed{\dfrac{1}{2}}$.", r"\frac{1}{2}")["score"] == 1.0
    unparsed = compute_score("math_dapo", "I am not sure", "14")
    assert unparsed["score"] == 0.0 and unparsed["pred"] == ""


def test_compute_score_dispatches_on_data_source():
    # was: data_source was ignored; GSM8K's "#### 42" and "The answer is 42." scored 0
    for source in ("openai/gsm8k", "gsm8k"):
        assert compute_score(source, "6 * 7 = 42\n#### 42", "42")["score"] == 1.0
        assert compute_score(source, "6 * 7 = 42. The answer is 42.", 42)["pred"] == "42"
        assert compute_score(source, "So the final answer is: 1,234. Done.", "1234")["score"] == 1.0
        assert (
            compute_score(source, r"so \boxed{42}", "42")["score"] == 1.0
        )  # a boxed answer still counts
        assert (
            compute_score(source, "#### 41\nThe answer is 42.", "42")["score"] == 0.0
        )  # #### first
    # math_dapo: the last "Answer:" line, as DAPO's prompt asks and veRL's scorer reads (not an earlier box)
    both = "I guessed \\boxed{13} first.\nAnswer: 14"
    assert compute_score("math_dapo", both, "14")["score"] == 1.0
    assert compute_score("math_dapo", r"so \boxed{14}", "14")["score"] == 0.0
    assert (
        compute_score("unknown/source", r"so \boxed{14}", "14")["score"] == 1.0
    )  # auto, as before
    # MATH: the last box only; AIME and unknown sources: box, else the Answer: line
    assert compute_score("HuggingFaceH4/MATH-500", "Answer: 3", "3")["score"] == 0.0
    assert compute_score("lighteval/MATH", r"$\boxed{\frac{1}{2}}$", r"\frac{1}{2}")["score"] == 1.0
    assert compute_score("aime24", "Answer: 33", "33")["score"] == 1.0
    assert compute_score("aime24", r"\boxed{33}", "33")["score"] == 1.0
    assert (
        compute_score("unknown/source", "The answer is 42.", "42")["score"] == 1.0
    )  # was 0.0: the math scorer reads "the answer is" phrases too, after boxes and Answer: labels
    # an explicit answer_style overrides the dispatch
    assert compute_score("math_dapo", r"\boxed{14}", "14", answer_style="auto")["score"] == 1.0
    assert compute_score("x", "#### 9", "9", answer_style="gsm8k")["score"] == 1.0
    with pytest.raises(ValueError, match="answer_style"):
        compute_score("x", "#### 9", "9", answer_style="hashes")
    assert [answer_style_for(s) for s in ("math_dapo", "gsm8k", "lighteval/MATH", "aime25", "?")] == [
        "answer_line", "gsm8k", "boxed", "auto", "auto",
    ]  # fmt: skip


def test_compute_score_dispatch_by_source_on_the_formats_models_write():
    cot = "Step 1 ... Step 3: so she has 42 apples. The answer is 42."
    for source in ("openai/gsm8k", "gsm8k", "math", "aime24", "sharpen/any"):
        assert compute_score(source, cot, "42")["score"] == 1.0, source
    minerva = "Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct."
    assert compute_score("math_dapo", minerva, "\\frac{1}{2}")["score"] == 1.0
    assert compute_score("math_dapo", "Answer: 13. No wait, Answer: 14", "14")["score"] == 1.0
    assert compute_score("aime25", "so \\boxed5", "5")["score"] == 1.0
    # MATH reads boxes only, DAPO Answer: labels only
    assert compute_score("HuggingFaceH4/MATH-500", cot, "42")["score"] == 0.0
    assert compute_score("math_dapo", cot, "42")["score"] == 0.0
    assert compute_score("openai/gsm8k", "#### 1,234", "1234")["pred"] == "1234"


def test_compute_score_warns_once_per_unknown_source(monkeypatch):
    import warnings

    import sharpen.integrations.verl as verl_module

    monkeypatch.setattr(verl_module, "_warned_sources", set())
    unknown = r"'my/source' is not one sharpen knows.*math scorer"
    with pytest.warns(UserWarning, match=unknown) as caught:
        assert compute_score("my/source", "The answer is 42.", "42")["score"] == 1.0
    assert len(caught) == 1
    with warnings.catch_warnings():  # no second warning, none for known sources or a chosen style
        warnings.simplefilter("error")
        compute_score("my/source", "Answer: 1", "1")
        for known in ("math_dapo", "openai/gsm8k", "HuggingFaceH4/MATH-500", "aime2025", "math"):
            compute_score(known, "Answer: 1", "1")
        compute_score("another/source", "Answer: 1", "1", answer_style="auto")
    with pytest.warns(UserWarning, match="'another/source'"):
        compute_score("another/source", "Answer: 1", "1")


def test_compute_score_against_a_pseudo_label_keeps_the_truth_for_measurement():
    out = compute_score("math_dapo", DAPO, "14", extra_info={"original_gt": "15"})
    assert (out["score"], out["gt_score"], out["label_correct"]) == (1.0, 0.0, 0.0)
    none = compute_score(
        "math_dapo", "Answer: " + NO_LABEL, NO_LABEL, extra_info={"original_gt": "15"}
    )
    assert none["score"] == 0.0  # no majority: nobody is rewarded


def test_compute_score_keys_are_always_the_same_and_bad_input_raises():
    keys = {
        frozenset(compute_score("d", s, "1", extra_info=e))
        for s in ("Answer: 1", "x")
        for e in (None, {})
    }
    assert len(keys) == 1
    with pytest.raises(ValueError, match="solution_str"):
        compute_score("d", None, "1")
    with pytest.raises(ValueError, match="ground_truth"):
        compute_score("d", "Answer: 1", None)


# --- stable question ids for the per-question records --------------------------------------------------------


def test_question_keys_use_a_stable_id_and_warn_once_when_there_is_none():
    # was: the hook keyed on extra_info.question_id, else veRL's uid (random per step): a DAPO parquet, whose rows
    # carry only extra_info.index, gave 100% "insufficient" questions in sharpen fit, silently
    keys = QuestionKeys()
    dapo = [{"index": "a1b2"}, {"index": "a1b2"}, {"index": 7}]
    assert keys(dapo, uids=["u1", "u2", "u3"]) == ["a1b2", "a1b2", "7"]
    assert keys([{"question_id": "q", "index": 3}], uids=["u"]) == ["q"]  # question_id first
    asked = []

    def prompts():
        asked.append(1)
        return ["What is 2+2?", "What is 2+2?", "What is 3+3?"]

    with pytest.warns(
        UserWarning, match=r"extra_info\.question_id, extra_info\.index.*hash of the prompt"
    ):
        hashed = keys([None, {}, {"split": "train"}], prompts=prompts, uids=["u1", "u2", "u3"])
    assert hashed[0] == hashed[1] != hashed[2] and hashed[0].startswith("prompt:")
    assert hashed == QuestionKeys()(
        [{}, {}, {}], prompts=prompts()
    )  # stable: same text, same id, any step
    with pytest.warns(
        UserWarning, match="NO STABLE QUESTION ID.*extra_info.question_id, extra_info.index"
    ):
        assert keys([{}, {}], prompts=lambda: None, uids=["u1", "u2"]) == ["u1", "u2"]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per kind: no second warning
        keys([{}, {}], prompts=lambda: None, uids=["u3", "u4"])
        keys([{}], prompts=["p"], uids=["u"])
    n_asked = len(asked)
    keys(dapo, prompts=prompts, uids=["u1", "u2", "u3"])
    assert len(asked) == n_asked  # the prompts are decoded only when some row lacks an id
    with pytest.raises(ValueError, match="no stable question id"):
        QuestionKeys()([{}])
    with pytest.raises(ValueError, match="uids"):
        QuestionKeys()([{}], uids=["u1", "u2"])


def test_question_keys_read_the_ids_to_verl_rows_writes():
    from empirical.tasks import arithmetic_task

    qs = arithmetic_task(n_train=3, n_heldout=0, seed=0).train
    rows = to_verl_rows(qs, data_source="math_dapo")
    assert QuestionKeys()([r["extra_info"] for r in rows]) == [q.qid for q in qs]


# --- pseudo-label injection ----------------------------------------------------------------------------------


@given(st.lists(answer_lists(4, 4, n_values=3), min_size=1, max_size=4))
def test_injected_labels_reproduce_the_majority_voting_reward(groups):
    answers = [a for g in groups for a in g]
    uids = [f"u{i}" for i, g in enumerate(groups) for _ in g]
    truths = ["0"] * len(answers)
    pl = inject_pseudo_labels(answers, uids, truths)
    expected = get_reward("majority_voting")(Rollouts(answers=answers, groups=uids))
    np.testing.assert_array_equal(pl.rewards, expected)
    # grading each response against its injected label (what veRL's per-sample loop does) gives the vote reward
    graded = [
        compute_score("d", f"Answer: {a}" if a else "none", lab)["score"]
        for a, lab in zip(answers, pl.labels, strict=True)
    ]
    np.testing.assert_array_equal(graded, expected)
    for i, g in enumerate(groups):  # one label per group; NO_LABEL exactly when nothing parsed
        labels = {lab for lab, u in zip(pl.labels, uids, strict=True) if u == f"u{i}"}
        assert len(labels) == 1 and (labels == {NO_LABEL}) == all(a is None for a in g)
    assert pl.original == truths
    ref = ttrl_metrics(answers, truths, uids, proxy_rewards=expected, correct=pl.correct)
    assert pl.metrics == pytest.approx(ref)


def test_inject_pseudo_labels_ttrl_tie_rule_and_validation():
    pl = inject_pseudo_labels(["5", "4", "4", "5", None], ["a"] * 5, ["4"] * 5)
    assert pl.labels == ["5"] * 5  # tie 2-2: the first-seen answer wins
    assert pl.metrics["label_accuracy"] == 0.0 and pl.metrics["majority_ratio"] == pytest.approx(
        0.4
    )
    with pytest.raises(ValueError, match="lengths differ"):
        inject_pseudo_labels(["1"], ["a", "b"], ["1"])


# --- certainty rewards from the actor pass -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["token_entropy", "trajectory_entropy", "probability"])
@pytest.mark.parametrize("aggregate", [None, "sum"])
def test_certainty_from_actor_equals_score_on_full_logits(name, aggregate):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, 11, generator=g) * 3
    tokens = torch.randint(0, 11, (5, 7), generator=g)
    mask = torch.ones(5, 7, dtype=torch.bool)
    mask[1, 4:] = False
    mask[3, 1:] = False
    tau = 0.7
    if name == "probability" and aggregate == "sum":
        pytest.skip("probability is a one-unit spec: aggregate does not apply")
    lp = token_logprobs(logits, tokens, temperature=tau)
    ent = token_entropies(logits, temperature=tau)
    got = certainty_from_actor(name, lp, ent, mask, aggregate=aggregate)
    spec = (
        PRESETS[name]
        if aggregate is None
        else dataclasses.replace(PRESETS[name], aggregate=aggregate)
    )
    want = (
        score(spec, Rollouts(logits=logits, tokens=tokens, mask=mask, temperature=tau))
        .double()
        .numpy()
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_certainty_from_actor_rejects_self_certainty_and_bad_masks():
    lp = np.zeros((2, 3))
    with pytest.raises(ValueError, match="TRL integration"):
        certainty_from_actor("self_certainty", lp, lp, np.ones((2, 3)))
    with pytest.raises(ValueError, match="no valid token"):
        certainty_from_actor("trajectory_entropy", lp, None, np.array([[1, 1, 1], [0, 0, 0]]))
    with pytest.raises(ValueError, match="entropies"):
        certainty_from_actor("token_entropy", lp, None, np.ones((2, 3)))


# --- data ------------------------------------------------------------------------------------------------------


def test_parquet_rows_load_back_through_the_dapo_loader(tmp_path):
    from empirical.tasks import DAPO_INSTRUCTION, Question, load_dapo

    qs = [
        Question(
            qid=f"p{i}",
            prompt=DAPO_INSTRUCTION.format(problem=f"What is {i}+{i}?"),
            label=str(2 * i),
        )
        for i in range(4)
    ]
    path = write_verl_parquet(to_verl_rows(qs, data_source="math_dapo"), tmp_path / "train.parquet")
    loaded = load_dapo(path)
    assert [(q.prompt, q.label) for q in loaded] == [(q.prompt, q.label) for q in qs]
    import pandas as pd

    frame = pd.read_parquet(path)
    assert list(frame.columns) == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    assert [e["question_id"] for e in frame["extra_info"]] == [
        "p0",
        "p1",
        "p2",
        "p3",
    ]  # stable prompt ids


def test_rows_of_generated_tasks_keep_meta_and_reject_duplicates():
    from empirical.tasks import arithmetic_task, countdown_task

    rows = to_verl_rows(
        countdown_task(n_train=3, n_heldout=0).train, data_source="sharpen/countdown"
    )
    meta = json.loads(rows[0]["extra_info"]["meta_json"])
    assert set(meta) == {"numbers", "target"}
    q = arithmetic_task(n_train=2, n_heldout=0).train[0]
    with pytest.raises(ValueError, match="duplicate"):
        to_verl_rows([q, q], data_source="sharpen/arith")


# --- recipe ----------------------------------------------------------------------------------------------------


def test_recipe_defaults_are_the_paper_setting():
    ov = dict(o.split("=", 1) for o in VerlRecipe.paper().overrides())
    assert ov["actor_rollout_ref.model.path"] == "Qwen/Qwen3-1.7B-Base"
    assert ov["data.train_batch_size"] == "64" and ov["actor_rollout_ref.rollout.n"] == "8"
    assert ov["actor_rollout_ref.rollout.temperature"] == "1.0"
    assert float(ov["actor_rollout_ref.actor.optim.lr"]) == 1e-6
    assert (
        ov["actor_rollout_ref.actor.use_kl_loss"] == "False"
        and ov["algorithm.use_kl_in_reward"] == "False"
    )
    assert ov["actor_rollout_ref.rollout.name"] == "vllm" and ov["trainer.n_gpus_per_node"] == "8"
    assert ov["reward.custom_reward_function.path"].endswith("verl_reward.py")
    assert "trainer.nnodes=4" in VerlRecipe.paper_multinode(4).overrides()


@pytest.mark.parametrize(
    "changes, match",
    [({"reward": "self_certainty"}, "TRL"), ({"n_rollouts": 1}, "n_rollouts"), ({"ppo_mini_batch_size": 48}, "divide"),
     ({"lr": 0.0}, "lr"), ({"name": "a b"}, "name")],
)  # fmt: skip
def test_recipe_validation(changes, match):
    with pytest.raises(ValueError, match=match):
        VerlRecipe(**changes)


def test_write_recipe_and_cli(tmp_path, capsys):
    paths = write_recipe(VerlRecipe(), tmp_path / "a")
    assert set(paths) == {"recipe", "overrides", "launch", "launch_multinode"}
    launch = paths["launch"].read_text()
    assert (
        "python -m sharpen.integrations.verl_trainer" in launch
        and "data.train_batch_size=64" in launch
    )
    assert (
        "ray start --head" in paths["launch_multinode"].read_text()
        and "trainer.nnodes=2" in paths["launch_multinode"].read_text()
    )
    assert (
        main(
            [
                "verl-recipe",
                "--out",
                str(tmp_path / "b"),
                "--reward",
                "probability",
                "--use-kl",
            ]
        )
        == 0
    )
    rec = json.loads((tmp_path / "b" / "recipe.json").read_text())
    assert rec["reward"] == "probability" and rec["use_kl"] is True and rec["verl"] == "0.9.1"
    assert "+sharpen.reward=probability" in (tmp_path / "b" / "overrides.txt").read_text().split()


# --- export ------------------------------------------------------------------------------------------------------


def test_export_verl_file_logger_to_a_sharpen_run(tmp_path):
    log = tmp_path / "verl.jsonl"
    lines = [
        {"step": 0, "data": {"val-core/math_dapo/acc/mean@8": 0.1}},
        {"step": 1, "data": {"sharpen/label_accuracy": 0.5, "sharpen/majority_ratio": 0.6, "actor/entropy": 1.2,
                             "response_length/mean": 300.0, "critic/score/mean": 0.4, "timing_s/gen": 3.0}},
    ]  # fmt: skip
    log.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"step": 2, "da')  # a killed run
    run = load_run(export_verl_run(log, tmp_path / "run", recipe=VerlRecipe()))
    assert run.config["kind"] == "verl" and run.config["prompts_per_step"] == 64
    (m,) = run.metrics
    assert (
        m["step"] == 1
        and m["label_accuracy"] == 0.5
        and m["entropy"] == 1.2
        and m["response_length"] == 300.0
    )
    assert run.evals[0]["val-core/math_dapo/acc/mean@8"] == 0.1


def test_docstring_examples_run():
    import doctest

    import sharpen.integrations.records as records
    import sharpen.integrations.verl as verl_module

    for mod in (verl_module, records):
        result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0 and result.attempted > 0, mod.__name__
