"""``n_votes > n_rollouts`` (vote on more samples than GRPO trains on, as TTRL does) and ``report_to`` (metrics and
evals mirrored to TensorBoard or an offline wandb run) in the GRPO loop."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import types
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from empirical import cli
from empirical.config import preset
from empirical.measure import Vote, step_metrics, trained_rows
from empirical.reporters import REPORTERS, TensorBoardReporter, WandbReporter, scalars
from empirical.tasks import arithmetic_task
from empirical.train import Trainer, build_trainer, train
from sharpen.records import load_run
from sharpen.rewards import get_reward

# ----------------------------------------------------------------------------------------------------------
# slow references
# ----------------------------------------------------------------------------------------------------------


def plain_majority(answers: list[str | None]) -> str | None:
    """The plurality answer, unparseable answers not voting, a tie to the answer seen first (TTRL's rule)."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == best)


def plain_trained_rows(n_prompts: int, n_votes: int, n_rollouts: int) -> list[int]:
    rows = []
    for g in range(n_prompts):
        for j in range(n_rollouts):
            rows.append(g * n_votes + j)
    return rows


def without_timings(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in records]


# ----------------------------------------------------------------------------------------------------------
# n_votes: configuration
# ----------------------------------------------------------------------------------------------------------


def test_n_votes_defaults_to_n_rollouts_and_must_cover_them():
    base = preset("tiny-arith-ttrl")
    assert base.n_votes is None and base.votes_per_prompt == base.n_rollouts == 8
    assert base.replace(n_votes=8).votes_per_prompt == 8
    assert base.replace(n_votes=64).votes_per_prompt == 64
    # the trained batch is unchanged
    assert base.replace(n_votes=64).prompts_per_step == base.prompts_per_step
    message = (
        "n_votes: must be >= n_rollouts=8 (the vote covers every trained rollout) or None, got 4"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        base.replace(n_votes=4)


def test_cli_takes_n_votes_and_report_to(capsys):
    from sharpen.cli import main

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "--n-votes", "16", "--report-to", "tensorboard"])
    cfg = cli.config_from_args(args)
    assert (cfg.n_votes, cfg.votes_per_prompt, cfg.report_to) == (16, 16, "tensorboard")
    args = parser.parse_args(["train", "--n-votes", "none"])
    assert cli.config_from_args(args).n_votes is None
    assert main(["train", "--n-votes", "4", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "sharpen train: error: n_votes: must be >= n_rollouts=8 (the vote covers every trained rollout) "
        "or None, got 4"
    )


# ----------------------------------------------------------------------------------------------------------
# n_votes: the trained rows, the rewards and the vote metrics on known batches
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("g", "m", "n"), [(1, 2, 2), (3, 8, 8), (2, 6, 2), (4, 64, 32), (5, 7, 3)])
def test_trained_rows_are_the_first_n_rollouts_of_each_vote(g, m, n):
    rows = trained_rows(g, m, n)
    assert rows.tolist() == plain_trained_rows(g, m, n)
    assert rows.shape == (g * n,)
    if m == n:
        assert rows.tolist() == list(range(g * m))


def _scorer(**changes):
    """``Trainer.score_batch`` needs only the run's configuration for an answer-level reward."""
    cfg = preset("tiny-arith-ttrl").replace(**changes)
    return types.SimpleNamespace(cfg=cfg), get_reward(cfg.reward)


def _known_vote(task, votes: list[list[str | None]], n: int) -> Vote:
    m = len(votes[0])
    qs = task.train[: len(votes)]
    flat = [a for group in votes for a in group]
    return Vote([q for q in qs for _ in range(m)], flat, [str(a) for a in flat], m,
                trained_rows(len(votes), m, n))  # fmt: skip


def test_majority_reward_scores_trained_rollouts_against_the_whole_vote():
    task = arithmetic_task(n_train=4, n_heldout=1, seed=0)
    # group 0: the vote's majority is "2" (3 of 6); the trained pair alone would tie and elect "1"
    # group 1: "5" and "7" tie over the vote, "5" seen first; group 2: nothing parses among the trained
    votes = [
        ["1", "2", "2", "2", "1", "3"],
        [None, "5", "7", "7", None, "5"],
        [None, None, "4", "4", "9", None],
    ]
    vote = _known_vote(task, votes, n=2)
    trainer, reward_fn = _scorer(
        reward="majority_voting", n_rollouts=2, rollout_batch_size=6, n_votes=6
    )
    questions = [vote.questions[i] for i in vote.keep]
    answers = [vote.answers[i] for i in vote.keep]
    texts = [vote.texts[i] for i in vote.keep]
    got = Trainer.score_batch(trainer, reward_fn, questions, answers, texts, None, vote)
    expected = []
    for (
        group
    ) in votes:  # the slow reference: each trained answer against its group's plain majority
        label = plain_majority(group)
        expected += [float(a is not None and a == label) for a in group[:2]]
    assert got.tolist() == expected == [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    # without the vote (n_votes = n_rollouts) the same rows are scored against their own pair
    alone = Trainer.score_batch(trainer, reward_fn, questions, answers, texts, None)
    assert alone.tolist() == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]


def test_vote_share_and_ground_truth_read_the_vote_too():
    task = arithmetic_task(n_train=4, n_heldout=1, seed=0)
    labels = [q.label for q in task.train[:2]]
    votes = [[labels[0], "x", labels[0], labels[0]], ["y", labels[1], "y", "z"]]
    vote = _known_vote(task, votes, n=2)
    rows = vote.keep
    args = ([vote.questions[i] for i in rows], [vote.answers[i] for i in rows],
            [vote.texts[i] for i in rows], None, vote)  # fmt: skip
    trainer, share = _scorer(reward="vote_share", n_rollouts=2, rollout_batch_size=4, n_votes=4)
    assert Trainer.score_batch(trainer, share, *args).tolist() == [3 / 4, 1 / 4, 2 / 4, 1 / 4]
    trainer, truth = _scorer(reward="ground_truth", n_rollouts=2, rollout_batch_size=4, n_votes=4)
    truth = get_reward("ground_truth", check=task.check)
    assert Trainer.score_batch(trainer, truth, *args).tolist() == [1.0, 0.0, 0.0, 1.0]


def test_vote_metrics_describe_every_vote_and_the_rest_the_trained_rows():
    task = arithmetic_task(n_train=4, n_heldout=1, seed=0)
    qs = task.train[:2]
    wrong = [str(int(q.label) + 1) for q in qs]
    # the vote elects the label in group 0 (4 of 6) and a wrong answer in group 1 (3 of 6, two unparseable);
    # the trained pairs alone elect the opposite
    votes = [[wrong[0], qs[0].label, qs[0].label, qs[0].label, qs[0].label, "0"],
             [qs[1].label, wrong[1], wrong[1], None, wrong[1], None]]  # fmt: skip
    n, m = 2, 6
    vote = _known_vote(task, votes, n)
    questions = [q for q in qs for _ in range(n)]
    answers = [vote.answers[i] for i in vote.keep]
    correct = np.array([float(task.check(q, a)) for q, a in zip(questions, answers, strict=True)])
    rewards = np.array([1.0, 0.0, 0.0, 1.0])
    kw = dict(n=n, mask=np.ones((4, 3), dtype=bool), token_entropy_sum=6.0)
    trained_only = step_metrics(task, questions, answers, rewards, correct, **kw)
    with_vote = step_metrics(task, questions, answers, rewards, correct, votes=vote.answers, **kw)
    # slow reference of the vote metrics over all m samples per question
    majority = [plain_majority(group) for group in votes]
    assert (
        with_vote["label_accuracy"]
        == np.mean([majority[g] == qs[g].label for g in range(2)])
        == 0.5
    )
    ratio = [sum(a == majority[g] for a in votes[g]) / m for g in range(2)]
    assert with_vote["majority_ratio"] == np.mean(ratio) == (4 / 6 + 3 / 6) / 2
    assert (
        trained_only["label_accuracy"] == 0.5
    )  # group 0 elects wrong[0] (tie), group 1 the label (tie)
    assert trained_only["majority_ratio"] == 0.5
    for key in set(trained_only) - {"label_accuracy", "majority_ratio"}:
        assert with_vote[key] == trained_only[key], key
    # votes equal to the trained answers change nothing
    same = step_metrics(task, questions, answers, rewards, correct, votes=answers, **kw)
    assert same == trained_only
    with pytest.raises(ValueError, match="^votes: "):
        step_metrics(task, questions, answers, rewards, correct, votes=vote.answers[:5], **kw)


# ----------------------------------------------------------------------------------------------------------
# n_votes: the tiny model end to end
# ----------------------------------------------------------------------------------------------------------


def _short(cfg, **changes):
    """Three steps of 4 prompts x 8 rollouts, probes and an evaluation at steps 0 and 3."""
    short = dict(steps=3, rollout_batch_size=32, probe_every=3, n_probe=8, probe_samples=8, eval_every=3,
                 n_eval=16)  # fmt: skip
    return cfg.replace(**{**short, **changes})


def test_n_votes_equal_to_n_rollouts_logs_exactly_what_the_default_logs(tiny_config, tmp_path):
    runs = {}
    for name, n_votes in (("default", None), ("equal", 8)):
        cfg = _short(tiny_config, out_dir=str(tmp_path / name), n_votes=n_votes)
        run = load_run(train(cfg))
        runs[name] = (without_timings(run.metrics), run.probes, without_timings(run.evals))
    assert runs["default"] == runs["equal"]
    assert len(runs["default"][0]) == 3 and runs["default"][1] and runs["default"][2]


@pytest.mark.parametrize("reward", ["majority_voting", "self_certainty"])
def test_a_larger_vote_labels_from_all_votes_and_trains_on_n_rollouts(tiny_config, reward):
    cfg = tiny_config.replace(reward=reward, rollout_batch_size=32, n_votes=20, log_kl=False)
    trainer = build_trainer(cfg)
    metrics = trainer.train_step()
    batch, rewards = trainer.last_batch
    vote = trainer.last_vote
    g, n, m = cfg.prompts_per_step, cfg.n_rollouts, 20
    assert g == 4 and vote.size == m and len(vote.answers) == len(vote.questions) == g * m
    # the trained batch: n_rollouts per prompt, the first n of each prompt's m samples, in order
    assert batch.tokens.shape[0] == rewards.shape[0] == g * n
    assert [q.qid for q in vote.questions[::m]] == [vote.questions[i].qid for i in vote.keep[::n]]
    texts = trainer.tokenizer.batch_decode(
        [row[keep].tolist() for row, keep in zip(batch.tokens, batch.mask, strict=True)],
        skip_special_tokens=True,
    )
    assert [trainer.task.parse(t) for t in texts] == [vote.answers[i] for i in vote.keep]
    groups = [vote.answers[k * m : (k + 1) * m] for k in range(g)]
    labels = [plain_majority(group) for group in groups]  # the pseudo-labels, from all m votes
    if reward == "majority_voting":
        expected = [
            float(a is not None and a == labels[k]) for k in range(g) for a in groups[k][:n]
        ]
        assert rewards.tolist() == expected
    # the vote metrics describe all m samples per prompt
    ratio = [
        sum(a == labels[k] for a in groups[k]) / m if labels[k] is not None else 0.0
        for k in range(g)
    ]
    assert metrics["majority_ratio"] == pytest.approx(np.mean(ratio), abs=1e-15)
    hits = [
        labels[k] is not None and trainer.task.check(vote.questions[k * m], labels[k])
        for k in range(g)
    ]
    assert metrics["label_accuracy"] == np.mean(hits)
    assert metrics["reward_mean"] == pytest.approx(float(rewards.mean()), abs=1e-15)


# ----------------------------------------------------------------------------------------------------------
# report_to
# ----------------------------------------------------------------------------------------------------------


def _events(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_tensorboard_holds_the_logged_metrics_and_evals(tiny_config):
    pytest.importorskip("tensorboard")
    cfg = _short(tiny_config, report_to="tensorboard", n_votes=12)
    run_dir = train(cfg)
    run = load_run(run_dir)
    acc = _events(run_dir / "tensorboard")
    tags = set(acc.Tags()["scalars"])
    logged = {
        k for m in run.metrics for k, v in m.items() if k != "step" and isinstance(v, int | float)
    }
    assert {f"train/{k}" for k in logged} <= tags
    for key in logged:
        events = acc.Scalars(f"train/{key}")
        want = [(m["step"], m[key]) for m in run.metrics if isinstance(m.get(key), int | float)]
        assert [e.step for e in events] == [s for s, _ in want], key
        # TensorBoard stores float32: its values are metrics.jsonl's rounded to float32
        assert [e.value for e in events] == [float(np.float32(v)) for _, v in want], key
    for key in ("avg@4", "maj@4", "greedy_accuracy"):
        events = acc.Scalars(f"heldout/{key}")
        assert [(e.step, e.value) for e in events] == [
            (e["step"], float(np.float32(e[key]))) for e in run.evals
        ]
    assert [e.step for e in acc.Scalars("heldout/avg@4")] == [0, 3]
    config = acc.Tensors("config/text_summary")
    assert len(config) == 1 and b'"n_votes": 12' in config[0].tensor_proto.string_val[0]


def test_tensorboard_on_resume_hides_the_steps_after_the_checkpoint(tiny_config):
    pytest.importorskip("tensorboard")
    cfg = _short(
        tiny_config, report_to="tensorboard", probe_every=0, eval_every=0, checkpoint_every=2
    )
    run_dir = train(cfg)
    first = load_run(run_dir).metrics
    shutil.rmtree(run_dir / "checkpoints" / "step-000003")  # as if killed after logging step 3
    train(cfg, resume=True)  # from step 2: step 3 again
    again = load_run(run_dir).metrics
    events = _events(run_dir / "tensorboard").Scalars("train/reward_mean")
    assert [e.step for e in events] == [1, 2, 3]  # the first attempt's step 3 purged
    assert [e.value for e in events] == [float(np.float32(m["reward_mean"])) for m in again]
    assert without_timings(first) == without_timings(again)


def test_a_missing_reporter_package_fails_before_training(tiny_config, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    for name in ("wandb", "tensorboard"):
        with pytest.raises(ValueError, match=rf"^report_to: '{name}' needs the {name} package"):
            REPORTERS[name]("unused")
        cfg = tiny_config.replace(report_to=name)
        with pytest.raises(ValueError, match=rf"^report_to: '{name}' needs the {name} package"):
            train(cfg)
        assert not (
            Path(cfg.out_dir) / "config.json"
        ).exists()  # refused before the run folder is written
    from sharpen.cli import main

    assert main(["train", "--report-to", "wandb", "--out-dir", tiny_config.out_dir]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("sharpen train: error: report_to: 'wandb' needs the wandb package")
        and "\n" not in err
    )


def test_wandb_reporter_logs_offline_through_the_wandb_api(tmp_path, monkeypatch):
    calls = []

    class FakeRun:
        def log(self, data, step):
            calls.append(("log", data, step))

        def finish(self):
            calls.append(("finish",))

    def init(**kwargs):
        calls.append(("init", kwargs))
        return FakeRun()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    reporter = WandbReporter(tmp_path / "run")
    reporter.start(step=0, config={"lr": 1e-4})
    reporter.log(1, {"reward_mean": 0.25, "pseudo_label_acc": None, "flag": True}, section="train")
    reporter.log(1, {"note": "text"}, section="heldout")  # nothing numeric: nothing logged
    reporter.log(2, {"avg@4": 0.5}, section="heldout")
    reporter.close()
    reporter.close()
    assert calls == [
        ("init", {"project": "sharpen", "name": "run", "dir": str(tmp_path / "run"), "mode": "offline",
                  "config": {"lr": 1e-4}}),
        ("log", {"train/reward_mean": 0.25, "train/flag": 1.0}, 1),
        ("log", {"heldout/avg@4": 0.5}, 2),
        ("finish",),
    ]  # fmt: skip


def test_reporters_refuse_to_log_before_start_and_keep_only_numbers(tmp_path):
    pytest.importorskip("tensorboard")
    reporter = TensorBoardReporter(tmp_path)
    with pytest.raises(RuntimeError, match="start"):
        reporter.log(1, {"a": 1.0}, section="train")
    reporter.close()  # before start: nothing to close
    assert scalars({"a": np.float32(0.5), "b": np.int64(3), "c": [1], "d": None}, "s") == {
        "s/a": 0.5,
        "s/b": 3.0,
    }
    assert set(REPORTERS) == {"none", "tensorboard", "wandb"}
    assert json.dumps(sorted(REPORTERS)) == '["none", "tensorboard", "wandb"]'
