"""veRL's fixed probe set on CPU, without veRL: `sharpen data` writes the probe parquet, the trainer hook records
the probe questions' validation samples and votes training batches by data_source, and `sharpen fit`'s analysis
fits Theorem 1 to the exported run.

veRL is not importable in the main environment, so the hook module is imported over a stand-in for the one class it
subclasses (``verl.trainer.ppo.ray_trainer.RayPPOTrainer``) and fed DataProto-like batches (``.batch`` tensors,
``.non_tensor_batch`` object arrays); ``test_verl_env.py`` runs the hook on a real DataProto where veRL 0.9.1 is.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
import types
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

import sharpen.integrations
import sharpen.integrations.verl as verl_module
from empirical.data import DataRequest, prepare_data
from empirical.tasks import DAPO_INSTRUCTION
from sharpen.integrations.verl import ProbeSet, compute_score, export_verl_run
from sharpen.records import load_run
from sharpen.run_analysis import analyze_run


class _FakeRayPPOTrainer:
    """The methods of veRL's RayPPOTrainer the hook overrides, doing what matters here: nothing."""

    def _balance_batch(self, batch, metrics, *args, **kwargs):
        return None

    def _compute_old_log_prob(
        self, batch
    ):  # pragma: no cover - certainty rewards are not probed here
        raise NotImplementedError

    def _val_metrics_update(self, data_sources, sample_uids, reward_extra_infos_dict, sample_turns):
        return {"val-core/passed-through": float(len(sample_uids))}


@pytest.fixture
def hook(monkeypatch):
    """``sharpen.integrations.verl_trainer`` imported over the stand-in (removed again afterwards)."""
    names = ["verl", "verl.trainer", "verl.trainer.ppo", "verl.trainer.ppo.ray_trainer"]
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules["verl.trainer.ppo.ray_trainer"].RayPPOTrainer = _FakeRayPPOTrainer
    # veRL's configuration library, which the hook reads its (here: plain dict) config with
    fake = types.ModuleType("omegaconf")
    fake.OmegaConf = SimpleNamespace(
        to_container=lambda cfg, resolve=True: json.loads(json.dumps(cfg))
    )
    monkeypatch.setitem(sys.modules, "omegaconf", fake)
    monkeypatch.setattr(verl_module, "verl_version", lambda: verl_module.SUPPORTED_VERL)
    name = "sharpen.integrations.verl_trainer"
    real = sys.modules.pop(name, None)  # an import over real veRL, kept for afterwards
    module = importlib.import_module(name)
    yield module
    # the module built on the stand-in must not outlive the test (a later test may import it over real veRL)
    sys.modules.pop(name, None)
    if real is not None:
        sys.modules[name] = real
    if getattr(sharpen.integrations, "verl_trainer", None) is module:
        if real is None:
            delattr(sharpen.integrations, "verl_trainer")
        else:
            sharpen.integrations.verl_trainer = real


class _Config(dict):
    """The two access styles the hook uses on veRL's OmegaConf config: ``cfg.trainer`` and ``cfg.get(...)``."""

    def __getattr__(self, key):
        return self[key]


class _CodePoints:
    """A tokenizer whose ids are Unicode code points (0 = padding)."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids if i)


def _batch(texts, uids, truths, sources, infos):
    """A DataProto-like training batch: right-padded responses, object arrays of the rows' fields."""
    width = max(len(t) for t in texts) + 2
    responses = torch.zeros(len(texts), width, dtype=torch.long)
    mask = torch.zeros(len(texts), width, dtype=torch.long)
    for i, t in enumerate(texts):
        responses[i, : len(t)] = torch.tensor([ord(c) for c in t])
        mask[i, : len(t)] = 1
    return SimpleNamespace(
        batch={
            "responses": responses,
            "response_mask": mask,
            "rm_scores": torch.zeros(len(texts), width),
        },
        non_tensor_batch={
            "uid": np.array(uids, dtype=object),
            "reward_model": np.array([{"ground_truth": g} for g in truths], dtype=object),
            "data_source": np.array(sources, dtype=object),
            "extra_info": np.array(infos, dtype=object),
        },
    )


def _dapo_download(path, n=24, copies=3):
    """A DAPO-Math-17k-shaped file: n problems, each repeated ``copies`` times with its own index, as the real one."""
    rows = [
        {
            "data_source": "math_dapo",
            "prompt": [
                {
                    "role": "user",
                    "content": DAPO_INSTRUCTION.format(problem=f"What is {i} times 3?"),
                }
            ],
            "ability": "MATH",
            "reward_model": {"ground_truth": str(3 * i), "style": "rule-lighteval/MATH_v2"},
            "extra_info": {"index": f"{i}-{c}"},
        }
        for i in range(n)
        for c in range(copies)
    ]
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


@pytest.fixture
def data(tmp_path):
    """`sharpen data` on a DAPO-shaped download: training and probe parquet files."""
    done = prepare_data(DataRequest(dapo=str(_dapo_download(tmp_path / "dl.parquet")), out=str(tmp_path / "data"),
                                    n_probe=6))  # fmt: skip
    return {c.name: c.parquet for c in done}


def _trainer(hook, run_dir, **sharpen_opts):
    trainer = object.__new__(hook.SharpenRayPPOTrainer)  # no Ray workers: only the hook's own state
    trainer.config = _Config(
        trainer=_Config(balance_batch=True),
        sharpen={"reward": "majority_voting", "run_dir": str(run_dir), **sharpen_opts},
    )
    trainer.tokenizer = _CodePoints()
    trainer.global_steps = 0
    trainer._sharpen_setup()
    return trainer


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


BETA = 40.0  # steps: p_k = sigmoid(logit p0 + k / beta), Theorem 1
STEPS = range(0, 101, 10)  # validation at step 0 and every test_freq = 10 steps
VAL_N = 64  # samples per validation question


def _validation_pass(probes, p0, step, rng):
    """veRL's per-sample validation lists for the probe questions plus benchmark rows: uids, data_sources and
    reward_extra_infos_dict, with ``pred`` computed by compute_score as veRL's reward loop does.

    Each probe question's initial majority answer ``m`` holds round(VAL_N * p_k) samples; the others split between
    two other answers. Responses box a guess first and end in DAPO's ``Answer:`` line, the one that counts."""
    uids, sources, preds, accs = [], [], [], []
    for j, (qid, label) in enumerate(sorted(probes.labels.items())):
        p = _sigmoid(math.log(p0[j] / (1 - p0[j])) + step / BETA)
        m = (
            label if j % 2 == 0 else str(int(label) + 1)
        )  # half the questions start with a wrong majority
        others = [str(int(label) + 2), str(int(label) + 3)]
        k = round(VAL_N * p)
        answers = [m] * k + [others[i % 2] for i in range(VAL_N - k)]
        rng.shuffle(answers)
        for a in answers:
            out = compute_score(
                "math_dapo", f"I guess \\boxed{{{int(a) + 7}}}.\nAnswer: {a}", label
            )
            (
                uids.append(qid),
                sources.append("math_dapo"),
                preds.append(out["pred"]),
                accs.append(out["acc"]),
            )
    for i in range(3 * VAL_N):  # the benchmark's rows (AIME), keyed on their own uids
        out = compute_score("aime24", f"\\boxed{{{i % 5}}}", "3")
        uids.append(f"aime24-{i // VAL_N}"), sources.append("aime24"), preds.append(out["pred"])
        accs.append(out["acc"])
    return (
        np.array(sources, dtype=object),
        uids,
        {"pred": preds, "acc": accs, "score": [float(a) for a in accs]},
    )


def test_the_hook_probes_the_probe_set_in_validation_and_sharpen_fit_fits_it(hook, data, tmp_path):
    run_dir = tmp_path / "runs" / "verl" / "r"
    trainer = _trainer(hook, run_dir, probe_files=str(data["probe"]))
    probes = ProbeSet.read(data["probe"])
    assert len(probes.labels) == 6
    rng = np.random.default_rng(0)
    p0 = [0.35, 0.45, 0.55, 0.6, 0.4, 0.5]
    log = []
    train = pd.read_parquet(data["dapo"])
    for step in STEPS:
        trainer.global_steps = step
        if step:  # a training step before each later validation: 2 questions x 4 rollouts
            rows = train.iloc[[step // 10, step // 10 + 1]]
            texts, uids, truths, infos = [], [], [], []
            for r, (_, row) in enumerate(rows.iterrows()):
                label = row["reward_model"]["ground_truth"]
                # boxed guesses disagree; the Answer: lines (what math_dapo's scorer reads) agree 3 to 1
                for i, a in enumerate([label, label, label, "999"]):
                    texts.append(f"\\boxed{{{i}}}\nAnswer: {a}")
                    (
                        uids.append(f"random-uid-{step}-{r}"),
                        truths.append(label),
                        infos.append(dict(row["extra_info"])),
                    )
            batch = _batch(texts, uids, truths, ["math_dapo"] * 8, infos)
            metrics = {}
            trainer._balance_batch(batch, metrics)
            # the vote read the Answer: line, as compute_score("math_dapo") does, not the boxed guesses
            assert [rm["ground_truth"] for rm in batch.non_tensor_batch["reward_model"]] == truths[
                :1
            ] * 4 + truths[4:5] * 4
            assert (
                metrics["sharpen/label_accuracy"] == 1.0
                and metrics["sharpen/majority_ratio"] == 0.75
            )
            log.append({"step": step, "data": {**metrics, "critic/score/mean": 0.75}})
        sources, uids, infos = _validation_pass(probes, p0, step, rng)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # stable ids everywhere: no warning
            out = trainer._val_metrics_update(sources, uids, infos, [])
        assert out == {
            "val-core/passed-through": float(len(uids))
        }  # veRL's own metrics are untouched
        log.append(
            {"step": step, "data": {"val-core/math_dapo/acc/mean@64": float(np.mean(infos["acc"]))}}
        )
    (run_dir / "verl_metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in log))
    export_verl_run(run_dir / "verl_metrics.jsonl", run_dir)

    run = load_run(run_dir)
    # probe records only from the validation passes: the probe questions, at every validation step
    assert {p["question_id"] for p in run.probes} == set(probes.labels)
    assert sorted({p["step"] for p in run.probes}) == list(STEPS)
    assert all(p["n_samples"] == VAL_N for p in run.probes)
    first = {p["question_id"]: p for p in run.probes if p["step"] == 0}
    for j, (qid, label) in enumerate(sorted(probes.labels.items())):
        assert first[qid]["initial_majority_answer"] == (
            label if j % 2 == 0 else str(int(label) + 1)
        )
        assert first[qid]["majority_correct"] is (j % 2 == 0)

    res = analyze_run(run_dir)  # what `sharpen fit` reports
    assert res.kind == "verl"
    assert all(q.label == "sharpened" for q in res.questions), [q.label for q in res.questions]
    assert bool(np.all(res.fit.valid)) and bool(np.all(res.fit.sharpening))
    rho = np.asarray(res.fit.rho)
    assert np.all((rho > 0) & (rho < 1))
    np.testing.assert_allclose(rho, math.exp(-1 / BETA), atol=0.01)  # e^{-1/40} = 0.9753
    pooled = res.pooled["sharpened"].beta
    assert 0.8 * BETA < pooled < 1.25 * BETA, pooled


def test_without_a_probe_set_or_ids_the_hook_says_so_loudly(hook, data, tmp_path):
    with pytest.warns(UserWarning, match="NO PROBE SET"):
        plain = _trainer(hook, tmp_path / "a")
    assert plain._sharpen_probe_set is None
    plain._val_metrics_update(["aime24"], ["u"], {"pred": ["3"]}, [])  # nothing to probe, no error
    assert not (tmp_path / "a" / "probes.jsonl").exists()

    trainer = _trainer(hook, tmp_path / "b", probe_files=str(data["probe"]))
    probes = ProbeSet.read(data["probe"])
    random_uids = [
        f"uuid4-{i}" for i in range(len(probes.labels))
    ]  # a probe parquet without its uid column
    with pytest.warns(UserWarning, match="NO PROBE RECORDS: none of the 6 probe questions"):
        trainer._val_metrics_update(["math_dapo"] * 6, random_uids, {"pred": ["1"] * 6}, [])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: later passes do not repeat it
        trainer._val_metrics_update(["math_dapo"] * 6, random_uids, {"pred": ["1"] * 6}, [])
    assert not (tmp_path / "b" / "probes.jsonl").exists()

    other = _trainer(hook, tmp_path / "c", probe_files=str(data["probe"]))
    with pytest.warns(UserWarning, match="NO PROBE RECORDS: pred:.*compute_score"):
        other._val_metrics_update(["math_dapo"], [next(iter(probes.labels))], {"acc": [True]}, [])

    with pytest.raises(ValueError, match="sharpen.probe_files: no such parquet file"):
        _trainer(hook, tmp_path / "d", probe_files=str(tmp_path / "missing.parquet"))


def test_probe_set_reading_and_selection(data, tmp_path):
    probes = ProbeSet.read(data["probe"])
    frame = pd.read_parquet(data["probe"])
    assert (
        set(probes.labels) == set(frame["uid"]) == {e["question_id"] for e in frame["extra_info"]}
    )
    assert set(probes.labels) <= set(
        pd.read_parquet(data["dapo"])["uid"]
    )  # probes are training questions
    qid = sorted(probes.labels)[0]
    assert probes.select([qid, "other", qid], ["5", "5", ""]) == (
        [qid, qid],
        ["5", None],
        [probes.labels[qid]] * 2,
    )
    with pytest.raises(ValueError, match="lengths differ"):
        probes.select([qid], [])
    no_uid = tmp_path / "no_uid.parquet"
    frame.drop(columns=["uid"]).to_parquet(no_uid, index=False)
    with pytest.raises(ValueError, match="probe_files: .* has no 'uid' column"):
        ProbeSet.read(no_uid)
    twice = tmp_path / "twice.parquet"
    pd.concat([frame, frame]).to_parquet(twice, index=False)
    with pytest.raises(ValueError, match="duplicate uid"):
        ProbeSet.read(twice)
    with pytest.raises(ValueError, match="labels"):
        ProbeSet({})
