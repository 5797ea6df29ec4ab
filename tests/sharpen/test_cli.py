"""The ``sharpen`` command as a newcomer meets it: one-line errors with exit code 2, no silent no-ops, fast help."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Literal

import pytest

from sharpen._cli import CommandParser, add_dataclass_options, field_help, given_options, plain
from sharpen.cli import main


def _error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(lines) == 1, captured.err  # one line, no traceback, no usage block
    return lines[0]


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse exits
        return int(exc.code)


@pytest.mark.parametrize(
    ("argv", "prefix", "words"),
    [
        (["trian"], "sharpen: error: trian: unknown command", ["did you mean train"]),
        (
            ["sim", "theorm1"],
            "sharpen sim: error: experiment:",
            ["'theorm1'", "did you mean 'theorem1'"],
        ),
        (["sim", "destination", "--steps", "-5"], "sharpen sim: error: steps:", [">= 1", "-5"]),
        (["sim", "stability", "--ns", "0"], "sharpen sim: error: ns:", [">= 1"]),
        (
            ["sim", "theorem1", "--steps", "-5"],
            "sharpen sim: error: --steps: not an option of theorem1",
            [],
        ),
        (["sim", "theorem1", "--per-question", "yes"], "sharpen sim: error:", []),
        (["figures", "--jobs", "0"], "sharpen figures: error: --jobs:", [">= 1"]),
        (["figures", "--only", "zzz"], "sharpen figures: error: --only:", ["'zzz'"]),
        (
            ["figures", "--from", "/nonexistent/run"],
            "sharpen figures: error: --from:",
            ["/nonexistent/run"],
        ),
        (["demo", "--only", "zzz"], "sharpen demo: error: --only:", ["'zzz'"]),
        (
            ["fit", "--noise-sigmas", "-1", "some-run"],
            "sharpen fit: error: noise_sigmas:",
            [">= 0"],
        ),
        (["theory", "--n", "8", "--k-answers", "1"], "sharpen theory: error: k_answers:", ["0.7"]),
        (
            ["theory", "--stesp", "3"],
            "sharpen theory: error: --stesp: unknown option",
            ["did you mean --steps"],
        ),
        (["theory", "--steps", "x"], "sharpen theory: error: --steps: invalid int value", []),
    ],
)
def test_every_user_error_is_one_line_with_exit_code_2(capsys, argv, prefix, words):
    assert _run(argv) == 2
    line = _error_line(capsys)
    assert line.startswith(prefix), line
    for w in words:
        assert w in line, line


def test_help_imports_no_command_and_no_torch(cli_in_fresh_process):
    heavy = ("torch", "sim", "empirical", "paper_figures", "seaborn", "scipy")
    text, loaded = cli_in_fresh_process(["--help"], heavy)
    assert loaded == [], loaded
    assert all(c in text for c in ("demo", "theory", "sim", "train", "fit", "figures")), text
    assert "``" not in text and ":class:" not in text, text


def test_subcommand_help_is_plain_text(capsys):
    assert _run(["sim", "--help"]) == 0
    text = capsys.readouterr().out
    assert "CFG_" not in text and "``" not in text and ":class:" not in text
    # a field several experiments share names each of them
    assert "theorem1, " in text or "theorem1:" in text


def test_plain_strips_rest_markup():
    assert plain("see :class:`~empirical.config.TrainConfig` and ``sharpen train``") == (
        "see TrainConfig and sharpen train"
    )


def test_dataclass_options_one_rule_for_every_type():
    @dataclass(frozen=True)
    class Cfg:
        """A config.

        Attributes
        ----------
        steps : how many steps
            (continued)
        mode : which mode
        """

        steps: int = 3
        mode: Literal["a", "b"] = "a"
        flag: bool = False
        path: str | None = None
        ns: tuple[int, ...] = (1, 2)

    assert field_help(Cfg)["steps"] == "how many steps (continued)"
    parser = CommandParser(prog="t")
    names = add_dataclass_options(parser, Cfg)
    assert given_options(parser.parse_args([]), names) == {}
    got = given_options(
        parser.parse_args(
            ["--steps", "5", "--mode", "b", "--flag", "--path", "none", "--ns", "4,8"]
        ),
        names,
    )
    assert got == {"steps": 5, "mode": "b", "flag": True, "path": None, "ns": (4, 8)}
    assert given_options(parser.parse_args(["--no-flag"]), names) == {"flag": False}
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "c"])


@dataclass(frozen=True)
class _FileCfg:
    steps: int = 3
    mode: Literal["a", "b"] = "a"
    flag: bool = False
    path: str | None = None
    ns: tuple[int, ...] = (1, 2)
    lr: float = 0.1


def test_config_file_gives_field_values_and_the_command_line_overrides_them(tmp_path):
    parser = CommandParser(prog="t")
    names = add_dataclass_options(parser, _FileCfg)
    toml = tmp_path / "run.toml"
    toml.write_text('steps = 7\nmode = "b"\nflag = true\npath = "x"\nns = [3, 4]\nlr = 1e-4\n')
    got = given_options(parser.parse_args(["--config", str(toml)]), names)
    assert got == {"steps": 7, "mode": "b", "flag": True, "path": "x", "ns": (3, 4), "lr": 1e-4}
    # the command line wins, before or after --config
    for argv in (["--steps", "9", "--config", str(toml)], ["--config", str(toml), "--steps", "9"]):
        assert given_options(parser.parse_args(argv), names) == {**got, "steps": 9}
    js = tmp_path / "run.json"
    js.write_text('{"path": null, "ns": [5]}')
    assert given_options(parser.parse_args(["--config", str(js)]), names) == {
        "path": None,
        "ns": (5,),
    }
    assert given_options(parser.parse_args([]), names) == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"stpes": 7}', "unknown key 'stpes'; did you mean 'steps'?"),
        ('{"flag": 1}', "flag: expected true or false, got 1"),
        ('{"steps": 2.5}', "steps: invalid int value 2.5"),
        ('{"mode": "c"}', "mode: invalid choice 'c' (choose from a, b)"),
        ('{"steps": true}', "steps: expected a steps value, got True"),
        ("[1, 2]", "expected a table of field values, got list"),
        ("{not json", "not valid JSON"),
    ],
)
def test_config_file_problems_are_one_line_errors_naming_the_key(tmp_path, capsys, text, message):
    parser = CommandParser(prog="t")
    add_dataclass_options(parser, _FileCfg)
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--config", str(path)])
    assert exc.value.code == 2
    line = _error_line(capsys)
    assert line.startswith(f"t: error: --config: {path}: ") and message in line, line


def test_train_reads_a_config_file(tmp_path, capsys):
    from empirical import cli as train_cli

    path = tmp_path / "run.toml"
    path.write_text('lr = 1e-4\nsteps = 600\nout-dir = "runs/fast"\n')
    parser = CommandParser(prog="sharpen")
    train_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "--config", str(path), "--steps", "20"])
    cfg = train_cli.config_from_args(args)
    assert (cfg.lr, cfg.steps, cfg.out_dir) == (1e-4, 20, "runs/fast")
    path.write_text("lrr = 1e-4\n")
    assert _run(["train", "--config", str(path), "--dry-run"]) == 2
    assert "unknown key 'lrr'; did you mean 'lr'?" in _error_line(capsys)
    path.with_suffix(".ini").write_text("lr = 1")
    assert _run(["train", "--config", str(path.with_suffix(".ini"))]) == 2
    assert "expected a .json, .toml or .yaml file" in _error_line(capsys)


def test_fit_warns_when_questions_have_fewer_than_four_probe_steps(tmp_path, capsys):
    from sharpen.records import ProbeRecord, RunWriter

    w = RunWriter(tmp_path / "run")
    w.write_json("config.json", {"kind": "empirical"})
    w.log_probes(
        ProbeRecord(step, f"q{q}", 32, "7", p, "7", p)
        for q in range(3)
        for step, p in ((0, 0.4), (10, 0.6))  # two probe steps: a line through two points, R^2 = 1
    )
    assert _run(["fit", str(tmp_path / "run"), "--no-figure"]) == 0
    out = capsys.readouterr().out
    assert "fewer than 4 probe steps" in out and "3 of 3 question(s)" in out


def test_config_file_reads_yaml_safely(tmp_path):
    pytest.importorskip("yaml")
    parser = CommandParser(prog="t")
    names = add_dataclass_options(parser, _FileCfg)
    path = tmp_path / "run.yaml"
    # PyYAML reads 1e-4 (no dot) as a string: the option's own parser turns it into the float
    path.write_text("steps: 7\nmode: b\nflag: true\npath: null\nns: [3, 4]\nlr: 1e-4\n")
    got = given_options(parser.parse_args(["--config", str(path)]), names)
    assert got == {"steps": 7, "mode": "b", "flag": True, "path": None, "ns": (3, 4), "lr": 1e-4}
    (tmp_path / "run.yml").write_text("steps: 2\n")
    assert given_options(parser.parse_args(["--config", str(tmp_path / "run.yml")]), names) == {
        "steps": 2
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("!!python/object/apply:os.system ['echo hi']", "not valid YAML"),  # no tag runs code
        ("steps: [1, 2", "not valid YAML"),
        ("- 1\n- 2\n", "expected a table of field values, got list"),
        ("", "expected a table of field values, got NoneType"),
        ("flag: 1\n", "flag: expected true or false, got 1"),
    ],
)
def test_yaml_config_problems_are_one_line_errors(tmp_path, capsys, text, message):
    pytest.importorskip("yaml")
    parser = CommandParser(prog="t")
    add_dataclass_options(parser, _FileCfg)
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--config", str(path)])
    assert exc.value.code == 2
    line = _error_line(capsys)
    assert line.startswith(f"t: error: --config: {path}: ") and message in line, line


def test_yaml_config_without_pyyaml_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml -> ModuleNotFoundError
    parser = CommandParser(prog="t")
    add_dataclass_options(parser, _FileCfg)
    path = tmp_path / "run.yaml"
    path.write_text("steps: 7\n")
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--config", str(path)])
    assert exc.value.code == 2
    assert "YAML needs the PyYAML package" in _error_line(capsys)


@pytest.mark.parametrize("value", ["true", "yes", "0", "Flase"])
def test_a_value_after_a_boolean_option_is_an_error(capsys, value):
    parser = CommandParser(prog="t")
    add_dataclass_options(parser, _FileCfg)
    args, extra = parser.parse_known_args(["--flag", value])
    assert args.flag is True and extra == [value]
    with pytest.raises(SystemExit) as exc:
        parser.unknown_options(extra)
    assert exc.value.code == 2
    assert _error_line(capsys).startswith(f"t: error: {value}: unexpected argument")


def test_top_level_help_shows_each_commands_own_help_line(capsys):
    """``sharpen --help`` reads each command's ``help=`` from source; it equals what ``register`` passes."""
    from importlib.metadata import entry_points

    from sharpen.cli import _summary

    for ep in entry_points(group="sharpen.commands"):
        parser = CommandParser(prog="sharpen")
        sub = parser.add_subparsers(dest="command")
        ep.load()(sub)
        (action,) = [a for a in sub._choices_actions if a.dest == ep.name]
        assert _summary(ep) == plain(action.help), ep.name


def test_every_command_built_from_a_config_uses_the_one_helper(tmp_path, capsys):
    """``sharpen fit`` and ``sharpen verl-recipe`` take every field of their configs, with ``--config``."""
    from typing import get_args, get_origin, get_type_hints

    from sharpen.collapse import AnalysisConfig
    from sharpen.integrations.verl import VerlRecipe

    assert _run(["fit", "--help"]) == 0
    text = capsys.readouterr().out
    for f in ("level", "threshold", "noise_sigmas", "early_fractions", "tolerance"):
        assert "--" + f.replace("_", "-") in text, f
    assert set(AnalysisConfig.__dataclass_fields__) <= set(a.dest for a in _fit_parser()._actions)
    assert _run(["verl-recipe", "--help"]) == 0
    text = capsys.readouterr().out
    literals = [t for t in get_type_hints(VerlRecipe).values() if get_origin(t) is Literal]
    assert literals and all("{" + ",".join(get_args(t)) + "}" in text for t in literals)
    assert "--use-kl" in text and "--no-use-kl" in text
    assert "--config FILE" in text
    cfg = tmp_path / "recipe.toml"
    cfg.write_text('reward = "probability"\nnnodes = 2\nuse_kl = true\n')
    out = tmp_path / "r"
    assert _run(["verl-recipe", "--out", str(out), "--config", str(cfg), "--no-use-kl"]) == 0
    import json

    rec = json.loads((out / "recipe.json").read_text())
    assert (rec["reward"], rec["nnodes"], rec["use_kl"]) == ("probability", 2, False)


def _fit_parser() -> CommandParser:
    from paper_figures.fit_report import register

    parser = CommandParser(prog="sharpen")
    register(parser.add_subparsers(dest="command"))
    return parser._subparsers._group_actions[0].choices["fit"]


@pytest.mark.parametrize(
    ("argv", "prefix"),
    [
        (["verl-recipe", "--use-kl", "true"], "sharpen verl-recipe: error: true: unexpected argument"),
        (["verl-recipe", "--rollout-engine", "x"], "sharpen verl-recipe: error: --rollout-engine: invalid choice"),
        (["verl-recipe", "--reward", "self_certainty"], "sharpen verl-recipe: error: "),
        (["verl-recipe", "--n-rollouts", "1"], "sharpen verl-recipe: error: n_rollouts:"),
        (["verl-recipe", "--nnodes", "x"], "sharpen verl-recipe: error: --nnodes: invalid int value"),
        (["fit", "--tolerance", "0", "run"], "sharpen fit: error: tolerance: must be > 0"),
        (["fit", "--early-fractions", "0.5,0.2", "run"], "sharpen fit: error: early_fractions:"),
    ],
)  # fmt: skip
def test_config_commands_errors_are_one_line(capsys, argv, prefix):
    assert _run(argv) == 2
    line = _error_line(capsys)
    assert line.startswith(prefix), line


def test_verl_module_entry_point_uses_the_same_errors(tmp_path, capsys):
    from sharpen.integrations import verl

    assert _run_main(verl.main, ["verl-recipe", "--out", str(tmp_path / "r"), "--val-n", "2"]) == 0
    assert (tmp_path / "r" / "launch.sh").is_file()
    capsys.readouterr()
    assert (
        _run_main(verl.main, ["export", str(tmp_path / "missing.jsonl"), str(tmp_path / "run")])
        == 2
    )
    assert _error_line(capsys).startswith("python -m sharpen.integrations.verl export: error: ")
    assert _run_main(verl.main, ["verl-recipe", "--no-such"]) == 2
    assert "--no-such: unknown option" in _error_line(capsys)


def _run_main(main_fn, argv: list[str]) -> int:
    try:
        return main_fn(argv)
    except SystemExit as exc:
        return int(exc.code)


def test_fit_noise_sigmas_zero_and_none_are_the_plain_rule(tmp_path, monkeypatch):
    from paper_figures import fit_report

    seen = []
    monkeypatch.setattr(fit_report, "analyze_run", lambda run, config: seen.append(config) or 1 / 0)
    for value in ("0", "none"):
        with pytest.raises(ZeroDivisionError):
            _run(["fit", "--noise-sigmas", value, "--tolerance", "0.3", str(tmp_path)])
    assert [(c.noise_sigmas, c.tolerance) for c in seen] == [(None, 0.3), (None, 0.3)]


def test_yaml_aliases_cannot_blow_up_a_value(tmp_path, capsys):
    """Nested aliases are cheap to parse and exponential to print (10**9 entries here): refused at once."""
    pytest.importorskip("yaml")
    items = ["&a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    items += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    parser = CommandParser(prog="t")
    add_dataclass_options(parser, _FileCfg)
    for text, message in [
        (f"ns: [{', '.join(items)}]\n", "ns: expected a list of plain values"),
        (f"steps: {{x: [{', '.join(items)}]}}\n", "steps: expected a steps value, got a table"),
    ]:
        path.write_text(text)
        with pytest.raises(SystemExit):
            parser.parse_args(["--config", str(path)])
        assert message in _error_line(capsys)
