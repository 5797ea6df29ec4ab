"""`sharpen data`: downloaded DAPO-Math-17k, AIME 2024, MATH-500 and GSM8K files -> sharpen's JSONL and veRL's
parquet, deduplicated, with stable ids; then the veRL recipe and the paper preset dry-run on what it wrote.

The fixture files are generated here in each source's public layout (problems written for this project), each with
duplicated rows as the real downloads have.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from empirical.data import SOURCES, DataRequest, prepare_data, read_source
from empirical.tasks import DAPO_INSTRUCTION, load_dapo, load_math_jsonl
from sharpen.cli import main
from sharpen.integrations.verl import compute_score, text_id, verl_data_summary


def _dapo_rows(n, copies, order=None):
    """DAPO-Math-17k's layout: veRL messages + reward_model; every prompt ``copies`` times, each row its own index."""
    rows = [
        {
            "data_source": "math_dapo",
            "prompt": [
                {"role": "user", "content": DAPO_INSTRUCTION.format(problem=f"Find {i} squared.")}
            ],
            "ability": "MATH",
            "reward_model": {"ground_truth": str(i * i), "style": "rule-lighteval/MATH_v2"},
            "extra_info": {"index": f"{i:04d}-{c}"},
        }
        for c in range(copies)
        for i in range(n)
    ]
    return rows if order is None else [rows[j] for j in order]


def _write(path, rows):
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        pd.DataFrame(rows).to_parquet(path, index=False)
    return path


@pytest.fixture
def downloads(tmp_path):
    """One file per source, shaped like its hub download, with duplicates."""
    d = tmp_path / "downloads"
    d.mkdir()
    aime = [
        {"ID": f"2024-I-{i}", "Problem": f"AIME problem {i}.", "Answer": 100 + i} for i in range(5)
    ]
    math500 = [{"problem": f"Simplify $\\frac{{{2 * i}}}{{4}}$.", "solution": "...", "answer": f"\\frac{{{i}}}{{2}}",
                "subject": "Algebra", "level": 1, "unique_id": f"test/algebra/{i}.json"} for i in range(1, 5)]  # fmt: skip
    gsm = [{"question": f"Ann has {i} boxes of 250 pens. How many pens?", "answer": f"{i} * 250 = {i * 250}\n#### {i * 250:,}"}
           for i in range(1, 7)]  # fmt: skip
    return {
        "dapo": _write(d / "dapo-math-17k.parquet", _dapo_rows(12, 4)),
        "aime24": _write(d / "aime_2024.jsonl", aime + aime[:2]),
        "math500": _write(d / "test.jsonl", math500 + math500[-1:]),
        "gsm8k_train": _write(d / "train-00000-of-00001.parquet", gsm + gsm[:3]),
        "gsm8k_test": _write(d / "test-00000-of-00001.parquet", gsm[:2]),
    }


def test_every_source_is_deduplicated_with_stable_ids_in_both_files(downloads, tmp_path):
    out = tmp_path / "data"
    done = {
        c.name: c
        for c in prepare_data(
            DataRequest(out=str(out), n_probe=5, **{k: str(v) for k, v in downloads.items()})
        )
    }
    expected = {"dapo": (48, 12), "probe": (5, 5), "aime24": (7, 5), "math500": (5, 4), "gsm8k_train": (9, 6),
                "gsm8k_test": (2, 2)}  # fmt: skip
    assert {n: (c.rows_read, c.questions) for n, c in done.items()} == expected
    assert done["dapo"].duplicates == 36
    for name, c in done.items():
        source = SOURCES["dapo" if name == "probe" else name]
        folder = out / source.folder
        assert c.parquet == folder / f"{'probe' if name == 'probe' else source.split}.parquet"
        frame = pd.read_parquet(c.parquet)
        lines = [json.loads(x) for x in c.jsonl.read_text(encoding="utf-8").splitlines()]
        # the same id, label and prompt in both files; the id is the problem text's hash, prefixed by the source
        assert (
            list(frame["uid"])
            == [e["question_id"] for e in frame["extra_info"]]
            == [x["id"] for x in lines]
        )
        assert [rm["ground_truth"] for rm in frame["reward_model"]] == [x["answer"] for x in lines]
        assert [m[0]["content"] for m in frame["prompt"]] == [x["prompt"] for x in lines]
        prefix = source.name.split("_")[0]
        assert all(x["id"] == f"{prefix}-{text_id(x['problem'])}" for x in lines)
        assert set(frame["data_source"]) == {source.data_source}
        assert (
            verl_data_summary(c.parquet)["ids"] == "uid"
            and verl_data_summary(c.parquet)["ids_unique"]
        )
        # the prompt asks for the answer in the form the data_source's scorer reads
        reply = {"math_dapo": "Answer: {}", "aime24": "Answer: {}", "HuggingFaceH4/MATH-500": "so \\boxed{{{}}}",
                 "openai/gsm8k": "so\n#### {}"}[source.data_source]  # fmt: skip
        for x in lines:
            assert (
                compute_score(
                    source.data_source, "work.\n" + reply.format(x["answer"]), x["answer"]
                )["score"]
                == 1.0
            )
    # labels: GSM8K's number after ####, commas removed; AIME's integer answers as text
    gsm = [json.loads(x) for x in done["gsm8k_train"].jsonl.read_text().splitlines()]
    assert [x["answer"] for x in gsm] == [str(i * 250) for i in range(1, 7)]
    assert 'output the final answer after "####"' in gsm[0]["prompt"]
    math500 = pd.read_parquet(done["math500"].parquet)
    assert math500["prompt"][0][0]["content"].endswith("output the final answer within \\boxed{}.")
    assert json.loads(math500["extra_info"][0]["meta_json"]) == {"source_id": "test/algebra/1.json"}
    # sharpen train reads both: the parquet through load_dapo, the JSONL through load_math_jsonl -- DAPO's JSONL
    # problem is the bare problem, so the math-jsonl loader's DAPO instruction rebuilds the exact prompt
    train_jsonl = load_math_jsonl(done["dapo"].jsonl)
    train_parquet = load_dapo(done["dapo"].parquet)
    assert [q.prompt for q in train_jsonl] == [q.prompt for q in train_parquet]
    assert [q.qid for q in train_jsonl] == list(pd.read_parquet(done["dapo"].parquet)["uid"])
    assert [q.label for q in load_math_jsonl(done["aime24"].jsonl)] == [
        str(100 + i) for i in range(5)
    ]


def test_ids_do_not_depend_on_the_download_order_or_layout(tmp_path):
    order = list(range(36))[::-1]  # the same rows reversed
    a = read_source(SOURCES["dapo"], _write(tmp_path / "a.parquet", _dapo_rows(12, 3)))[0]
    b = read_source(SOURCES["dapo"], _write(tmp_path / "b.parquet", _dapo_rows(12, 3, order)))[0]
    assert {q.qid: q.label for q in a} == {q.qid: q.label for q in b} and [q.qid for q in a] != [
        q.qid for q in b
    ]
    # AIME in DAPO's layout (BytedTsinghua-SIA/AIME-2024) and flat (HuggingFaceH4/aime_2024): same ids
    flat = [{"id": i, "problem": f"Find {i} squared.", "answer": str(i * i)} for i in range(12)]
    from_flat = read_source(SOURCES["aime24"], _write(tmp_path / "flat.parquet", flat))[0]
    from_dapo = read_source(SOURCES["aime24"], tmp_path / "a.parquet")[0]
    assert [q.qid for q in from_flat] == [q.qid for q in from_dapo]
    assert [q.prompt for q in from_flat] == [
        q.prompt for q in from_dapo
    ]  # DAPO's instruction in both


def test_the_probe_set_is_a_seeded_sample_of_the_training_questions(downloads, tmp_path):
    def probe_ids(seed, n, out):
        done = prepare_data(
            DataRequest(
                dapo=str(downloads["dapo"]), out=str(tmp_path / out), n_probe=n, probe_seed=seed
            )
        )
        train, probe = (pd.read_parquet(c.parquet) for c in done)
        assert set(probe["uid"]) <= set(train["uid"])
        assert [e["split"] for e in probe["extra_info"]] == ["probe"] * len(probe)
        return list(probe["uid"])

    assert probe_ids(0, 5, "a") == probe_ids(0, 5, "b")  # deterministic in the seed
    assert probe_ids(0, 5, "a") != probe_ids(1, 5, "c")
    assert len(probe_ids(0, 100, "d")) == 12  # more than there are: all of them
    done = prepare_data(
        DataRequest(dapo=str(downloads["dapo"]), out=str(tmp_path / "e"), n_probe=0)
    )
    assert [c.name for c in done] == ["dapo"]


def _error(capsys, argv):
    code = main(argv)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and len(err) == 1, err
    return err[0]


def test_bad_input_is_one_line_naming_the_option_with_exit_code_2(downloads, tmp_path, capsys):
    out = ["--out", str(tmp_path / "o")]
    assert "sharpen data: error: sources: give at least one" in _error(capsys, ["data", *out])
    line = _error(capsys, ["data", "--dapo", str(tmp_path / "nope.parquet"), *out])
    assert (
        line.startswith("sharpen data: error: dapo: no such file")
        and "BytedTsinghua-SIA/DAPO-Math-17k" in line
    )
    wrong = _write(tmp_path / "wrong.parquet", [{"text": "x", "label": 1}])
    line = _error(capsys, ["data", "--aime24", str(wrong), *out])
    assert (
        line.startswith("sharpen data: error: aime24:")
        and "'problem'" in line
        and "['label', 'text']" in line
    )
    no_hashes = _write(tmp_path / "gsm.parquet", [{"question": "q", "answer": "it is 4"}])
    assert "gsm8k_train: row 0 of" in _error(
        capsys, ["data", "--gsm8k-train", str(no_hashes), *out]
    )
    bad_line = tmp_path / "bad.jsonl"
    bad_line.write_text('{"problem": "p", "answer": "1"}\n[1, 2]\n')
    assert "math500: line 2 of" in _error(capsys, ["data", "--math500", str(bad_line), *out])
    null = _write(tmp_path / "null.jsonl", [{"problem": "p", "answer": None}])
    assert "'answer' is null" in _error(capsys, ["data", "--math500", str(null), *out])
    blank = _write(tmp_path / "blank.jsonl", [{"problem": "p", "answer": "  "}])
    assert "'answer' is empty" in _error(capsys, ["data", "--math500", str(blank), *out])
    csv = tmp_path / "x.csv"
    csv.write_text("problem,answer\n")
    assert "expected a .parquet or .jsonl file" in _error(
        capsys, ["data", "--math500", str(csv), *out]
    )
    not_parquet = tmp_path / "broken.parquet"
    not_parquet.write_bytes(b"not parquet")
    assert "not a readable parquet file" in _error(
        capsys, ["data", "--dapo", str(not_parquet), *out]
    )
    assert "n_probe" in _error(
        capsys, ["data", "--dapo", str(downloads["dapo"]), "--n-probe", "-1", *out]
    )
    # nothing was written by any failed call -- a good file next to a bad one is not half-converted either
    assert _error(capsys, ["data", "--dapo", str(downloads["dapo"]), "--aime24", str(wrong), *out])
    assert not (tmp_path / "o").exists()


def test_two_commands_from_downloaded_files_to_a_validated_veRL_recipe(
    downloads, tmp_path, capsys, monkeypatch
):
    # the documented path: `sharpen data` into ~/data, then `sharpen verl-recipe` with its default paths
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    before = main(
        ["verl-recipe", "--dry-run"]
    )  # was: "no such DAPO parquet file" and nowhere to get it
    assert before == 2 and "train_files: no such parquet file" in capsys.readouterr().err
    assert (
        main(["data", "--dapo", str(downloads["dapo"]), "--aime24", str(downloads["aime24"])]) == 0
    )
    printed = capsys.readouterr().out
    assert "dapo         48 rows -> 12 questions (36 duplicates dropped)" in printed
    assert "next: sharpen verl-recipe --out verl-recipe" in printed
    assert main(["verl-recipe", "--dry-run"]) == 0
    report = json.loads(capsys.readouterr().out)
    data = report["data"]
    assert (
        data["train_files"]["rows"],
        data["val_files"]["rows"],
        data["probe_files"]["questions"],
    ) == (12, 5, 12)
    assert data["warnings"] == [] and data["probe_files"]["ids"] == "uid"
    assert main(["verl-recipe", "--out", str(tmp_path / "recipe")]) == 0
    assert "data: train 12 rows, val 5 rows, probe 12 rows" in capsys.readouterr().out
    launch = (tmp_path / "recipe" / "launch.sh").read_text()
    assert '+sharpen.probe_files="$HOME/data/dapo-math-17k/probe.parquet"' in launch
    # the paper preset of `sharpen train` dry-runs on the same files
    home = tmp_path / "home" / "data"
    argv = ["train", "--preset", "qwen3-1.7b-dapo-ttrl", "--dry-run",
            "--data-path", str(home / "dapo-math-17k" / "train.parquet"), "--heldout-path", str(home / "aime24" / "test.jsonl")]  # fmt: skip
    assert main(argv) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["data"]["train"] == 12 and dry["data"]["heldout"] == 5
