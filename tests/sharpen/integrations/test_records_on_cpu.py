"""Run records of the integrations: the resume that keeps a resumed run's records equal to an uninterrupted one's
(truncation after the checkpoint, initial majorities reloaded, never recomputed), and the headers and held-out
accuracy that the veRL export writes."""

from __future__ import annotations

import json

import pytest

from sharpen import records
from sharpen.integrations import records as integration_records
from sharpen.integrations.records import probe_records, resume_run
from sharpen.records import HELDOUT_ACCURACY, KL, MAJORITY_REWARD, RunHeader, RunWriter, load_run


def _run(tmp_path):
    """Probes of one question at steps 0, 2, 4, 6: the majority moves from "3" to "5" by step 2."""
    w = RunWriter(tmp_path)
    initial = None
    for step, answers in (
        (0, ["3", "3", "5", "7"]),
        (2, ["5", "5", "3", "5"]),
        (4, ["5"] * 4),
        (6, ["5"] * 4),
    ):
        recs, initial = probe_records(step, ["q"] * 4, answers, initial=initial)
        w.log_probes(recs)
        w.log_metrics(step, {"reward": 0.5})
        w.log_eval(step, "heldout", {HELDOUT_ACCURACY: 0.5})
    return w


def test_resume_truncates_after_the_checkpoint_and_reloads_the_first_majority(tmp_path):
    w = _run(tmp_path)
    with (tmp_path / "probes.jsonl").open("a") as fh:
        fh.write('{"step": 7, "question_id": "q", "p_init')  # the interrupted run, killed mid-write
    state = resume_run(w, 2)
    run = load_run(tmp_path)
    assert [p["step"] for p in run.probes] == [0, 2] and run.warnings == ()
    assert [m["step"] for m in run.metrics] == [0, 2] and [e["step"] for e in run.evals] == [0, 2]
    # the first majority ("3"), not the checkpoint's ("5"): a recomputation would have taken the latter
    assert state == integration_records.ResumedRecords(
        step=2, initial={"q": "3"}, probed=frozenset({0, 2})
    )
    recs, _ = probe_records(4, ["q"] * 4, ["5"] * 4, initial=state.initial)
    assert recs[0].initial_majority_answer == "3" and recs[0].p_initial_majority == 0.0


def test_a_resumed_log_equals_the_uninterrupted_one(tmp_path):
    whole = _run(tmp_path / "whole")
    cut = _run(tmp_path / "cut")  # ran to step 6, last checkpoint at step 2
    state = resume_run(cut, 2)
    initial = state.initial
    # the resumed run logs steps 4 and 6 again
    for step, answers in ((4, ["5"] * 4), (6, ["5"] * 4)):
        recs, initial = probe_records(step, ["q"] * 4, answers, initial=initial)
        cut.log_probes(recs)
        cut.log_metrics(step, {"reward": 0.5})
        cut.log_eval(step, "heldout", {HELDOUT_ACCURACY: 0.5})
    for name in ("probes.jsonl", "metrics.jsonl", "eval.jsonl"):
        assert (tmp_path / "cut" / name).read_text() == (tmp_path / "whole" / name).read_text(), (
            name
        )
    assert whole.run_dir != cut.run_dir


def test_resume_of_an_empty_folder_and_bad_steps(tmp_path):
    state = resume_run(RunWriter(tmp_path), 3)
    assert state.initial == {} and state.probed == frozenset()
    for step in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="step: must be an int >= 0"):
            resume_run(RunWriter(tmp_path), step)


def test_one_builder_for_every_writer():
    # the integrations use the one builder of sharpen.records; there is no second copy
    assert integration_records.probe_records is records.probe_records
    assert integration_records.initial_majorities is records.initial_majorities


def test_verl_export_writes_the_recipe_header_and_heldout_accuracy(tmp_path):
    pytest.importorskip("pandas")
    from sharpen.integrations.verl import VerlRecipe, export_verl_run, hydra_header, recipe_header

    recipe = VerlRecipe(reward="majority_voting", lr=2e-6, n_rollouts=16, use_kl=False)
    log = tmp_path / "verl.jsonl"
    log.write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in (
                {"step": 1, "data": {"critic/score/mean": 0.25, "actor/kl_loss": 0.01}},
                {
                    "step": 2,
                    "data": {"sharpen/majority_voting_reward": 0.5, "critic/score/mean": 0.75},
                },
                {
                    "step": 2,
                    "data": {
                        "val-core/openai/gsm8k/acc/mean@8": 0.4,
                        "val-core/aime/acc/mean@8": 0.1,
                    },
                },
            )
        )
    )
    run = load_run(export_verl_run(log, tmp_path / "run", recipe=recipe))
    assert run.header == recipe_header(recipe) and run.warnings == ()
    h = run.header
    assert (h.kind, h.reward, h.lr, h.n_rollouts, h.kl_coef, h.batch_size) == ("verl", "majority_voting", 2e-6, 16,
                                                                               0.0, recipe.prompts_per_step)  # fmt: skip
    assert (
        run.config["kind"] == "verl" and run.config["prompts_per_step"] == recipe.prompts_per_step
    )
    # veRL's score only where the hook logged none
    assert [m[MAJORITY_REWARD] for m in run.metrics] == [0.25, 0.5]
    assert run.metrics[0][KL] == 0.01
    assert run.evals[0][HELDOUT_ACCURACY] == 0.1  # the first val-core .../acc/mean@n by name
    # without a recipe the hook's own header stays
    hook = RunWriter(tmp_path / "hooked")
    nested = {
        "actor_rollout_ref": {
            "actor": {"optim": {"lr": 3e-6}, "clip_ratio": 0.28},
            "rollout": {"n": 4},
        }
    }
    hook.write_config(hydra_header(nested, reward="ground_truth", steps=10), {"hydra": nested})
    again = load_run(export_verl_run(log, tmp_path / "hooked"))
    assert again.header == RunHeader("verl", reward="ground_truth", lr=3e-6, n_rollouts=4, clip_eps=0.28, steps=10,
                                     kl_coef=0.0)  # fmt: skip
    assert again.config["hydra"] == nested
