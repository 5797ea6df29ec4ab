"""Command-line plumbing shared by every ``sharpen`` command (private: the commands' own modules use it).

* :class:`CommandParser` -- an ``argparse`` parser whose errors are one line, ``sharpen <cmd>: error: <arg>:
  <problem>``, exit code 2, and whose help shows plain text where docstrings hold reST markup.
* :func:`add_dataclass_options` / :func:`given_options` -- one ``--field-name`` option per field of a frozen
  config dataclass: help from the field's ``metadata["help"]`` or its numpydoc ``Attributes`` entry, choices from
  ``Literal`` types (via :func:`typing.get_args`), ``--x/--no-x`` for booleans, ``none`` for optional fields,
  comma-separated values for tuples. Options nobody gave are absent, so "keep the default" needs no sentinel.
  ``--config FILE`` reads field values from a JSON, TOML or YAML file; an option given on the command line
  overrides the file (:func:`add_config_file_option`).
* :func:`dispatch` -- parse the command line, run the chosen command, turn its ``ValueError`` into the one-line
  error.
* :func:`output_dir` -- the one default output root, ``./sharpen-out/<command>``.
* :func:`closest` -- the nearest valid name for "did you mean" hints.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import re
import sys
import typing
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

OUTPUT_ROOT = Path("sharpen-out")


def output_dir(command: str) -> Path:
    """Default output folder of ``sharpen <command>``: ``./sharpen-out/<command>``."""
    return OUTPUT_ROOT / command


_REST_ROLE = re.compile(r":[a-z]+:`~?([^`]*?)`")
_REST_LITERAL = re.compile(r"``(.*?)``")


def plain(text: str | None) -> str | None:
    """``text`` without reST markup: ``:class:`~a.B``` -> ``B``, ````x```` -> ``x``."""
    if text is None:
        return None
    text = _REST_ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1], text)
    text = re.sub(r"\n\s*::\s*\n", "\n", text)  # a literal-block marker on its own line
    return _REST_LITERAL.sub(r"\1", text)


class _PlainFormatter(argparse.RawDescriptionHelpFormatter):
    def _format_text(self, text: str) -> str:
        return super()._format_text(plain(text))

    def _expand_help(self, action: argparse.Action) -> str:
        return plain(super()._expand_help(action))


def closest(name: str, valid: Iterable[str]) -> str | None:
    """The valid name nearest to ``name`` (``difflib``), or None when nothing is close."""
    match = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return match[0] if match else None


class CommandParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with one-line errors (exit 2) and plain-text help.

    ``argument --steps: invalid int value: 'x'`` becomes ``sharpen train: error: --steps: invalid int value:
    'x'``; an unknown option names the closest valid one.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _PlainFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> typing.NoReturn:
        message = re.sub(r"^argument ([^:]+): ", lambda m: m.group(1).split("/")[0] + ": ", message)
        self.exit(2, f"{self.prog}: error: {message}\n")

    def unknown_options(self, extra: Sequence[str]) -> typing.NoReturn:
        """Reject ``extra`` (what ``parse_known_args`` left over), naming the closest known option."""
        first = extra[0]
        if first.lower() in ("true", "false", "yes", "no", "1", "0", "on", "off"):
            self.error(
                f"{first}: unexpected argument (a boolean is --<option> or --no-<option>, no value)"
            )
        if not first.startswith("-"):
            self.error(f"{first}: unexpected argument (see {self.prog} --help)")
        hint = closest(first.split("=", 1)[0], self._option_string_actions)
        self.error(f"{first}: unknown option" + (f"; did you mean {hint}?" if hint else ""))


# ----------------------------------------------------------------------------------------------------------
# dataclass -> options
# ----------------------------------------------------------------------------------------------------------


def field_help(cls: type) -> dict[str, str]:
    """Help text per field of dataclass ``cls``: ``metadata["help"]``, else its numpydoc ``Attributes`` entry
    (``name : text`` or ``a, b : text``, continuation lines indented)."""
    helps: dict[str, str] = {}
    doc = cls.__doc__ or ""
    section = re.search(r"Attributes\n\s*-+\n(.*?)(?:\n\s*\n\s*[A-Z][a-z]+\n\s*-+\n|\Z)", doc, re.S)
    if section:
        names: list[str] = []
        for line in section.group(1).splitlines():
            entry = re.match(r"\s{0,8}([a-z_][a-z0-9_, ]*?)\s+:\s*(.*)", line)
            if entry and all(n.strip().isidentifier() for n in entry.group(1).split(",")):
                names = [n.strip() for n in entry.group(1).split(",")]
                for n in names:
                    helps[n] = entry.group(2).strip()
            elif names and line.strip():
                for n in names:
                    helps[n] = f"{helps[n]} {line.strip()}".strip()
    for f in dataclasses.fields(cls):
        if "help" in f.metadata:
            helps[f.name] = f.metadata["help"]
    return helps


def _none_or(kind):
    def parse(text: str):
        return None if text.lower() in ("none", "null", "") else kind(text)

    parse.__name__ = getattr(kind, "__name__", "value")
    return parse


def _tuple_of(kind):
    def parse(text: str):
        return tuple(kind(x) for x in text.split(",") if x.strip())

    parse.__name__ = f"comma-separated {kind.__name__}"
    return parse


def _option_kind(hint: Any) -> tuple[str, Any] | None:
    """How a field of type ``hint`` is read: ("bool", None), ("choice", choices), ("value", parse) or None
    (the field has no command-line form, e.g. a nested config)."""
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (
        typing.Union,
        getattr(__import__("types"), "UnionType", None),
    )
    optional = optional and type(None) in args
    inner = [a for a in args if a is not type(None)] if optional else [hint]
    if len(inner) != 1:
        return None
    base = inner[0]
    if base is bool:
        return ("bool", None) if not optional else None
    if typing.get_origin(base) is Literal:
        return ("choice", [*typing.get_args(base), *(["none"] if optional else [])])
    if typing.get_origin(base) is tuple:
        (item, *_) = typing.get_args(base)
        return ("value", _tuple_of(item)) if item in (int, float, str) else None
    if base in (int, float, str):
        return ("value", _none_or(base) if optional else base)
    return None


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """The command-line form of one config field: ``--flag``, how it is read, its help and shown default."""

    name: str
    kind: tuple[str, Any]
    help: str
    default: Any

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def from_file(self, value: Any) -> Any:
        """A value read from a config file (JSON / TOML / YAML types), checked and converted as its command-line
        text would be: a list of plain values is the comma-separated tuple, ``null`` is ``none``; a boolean field
        takes only true or false. Raises ``ValueError`` naming the problem. A table or nested list is refused
        unprinted: YAML aliases make them cheap to read and exponentially long to print."""
        kind, how = self.kind
        shown = {dict: "a table", list: "a list", tuple: "a list"}.get(type(value)) or repr(value)
        if kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"expected true or false, got {shown}")
            return value
        if isinstance(value, bool | dict):
            raise ValueError(f"expected a {self.name.replace('_', ' ')} value, got {shown}")
        if value is None:
            text = "none"
        elif isinstance(value, list | tuple):
            # scalars only: a YAML alias nests lists cheaply, their text would not be cheap
            if any(isinstance(v, list | tuple | dict) for v in value):
                raise ValueError("expected a list of plain values, got a nested list")
            text = ",".join(map(str, value))
        else:
            text = str(value)
        if kind == "choice":
            if text not in [str(c) for c in how]:
                raise ValueError(
                    f"invalid choice {value!r} (choose from {', '.join(map(str, how))})"
                )
            return text
        try:
            return how(text)
        except ValueError:
            raise ValueError(
                f"invalid {getattr(how, '__name__', 'value')} value {value!r}"
            ) from None

    def add_to(
        self, parser: argparse.ArgumentParser | argparse._ArgumentGroup, help: str | None = None
    ) -> None:
        """Add the option to ``parser``; absent from the namespace unless given (``default=SUPPRESS``)."""
        text = (help or self.help).replace("%", "%%")
        common = {"dest": self.name, "default": argparse.SUPPRESS, "help": text}
        if self.kind[0] == "bool":
            parser.add_argument(self.flag, action=argparse.BooleanOptionalAction, **common)
        elif self.kind[0] == "choice":
            choices = self.kind[1]
            parser.add_argument(self.flag, choices=choices, metavar="{" + ",".join(map(str, choices)) + "}",
                                **common)  # fmt: skip
        else:
            parser.add_argument(self.flag, type=self.kind[1], metavar=self.name.upper(), **common)


def option_specs(cls: type, *, defaults: Any = None, skip: Iterable[str] = ()) -> list[OptionSpec]:
    """One :class:`OptionSpec` per field of dataclass ``cls`` that has a command-line form (nested configs and
    other structured fields have none). ``defaults`` (an instance, e.g. a preset) feeds the shown defaults."""
    hints = typing.get_type_hints(cls)
    helps = field_help(cls)
    skip = set(skip)
    specs = []
    for f in dataclasses.fields(cls):
        kind = _option_kind(hints[f.name])
        if kind is None or f.name in skip:
            continue
        default = getattr(defaults, f.name) if defaults is not None else f.default
        if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        shown = (
            "none"
            if default is None
            else (",".join(map(str, default)) if isinstance(default, tuple) else default)
        )
        text = helps.get(f.name) or f.name.replace("_", " ")
        if default is not dataclasses.MISSING:
            text = f"{text} (default: {shown})"
        specs.append(OptionSpec(f.name, kind, text, default))
    return specs


def add_dataclass_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    defaults: Any = None,
    skip: Iterable[str] = (),
) -> list[str]:
    """Add ``--field-name`` for each field of dataclass ``cls`` that has a command-line form; return their names.

    An option not given is absent from the parsed namespace, so :func:`given_options` returns exactly what the
    user typed.
    """
    specs = option_specs(cls, defaults=defaults, skip=skip)
    for spec in specs:
        spec.add_to(parser)
    add_config_file_option(parser, specs)
    return [spec.name for spec in specs]


CONFIG_SUFFIXES = (".json", ".toml", ".yaml", ".yml")


def _loader(p: Path) -> tuple[str, Callable[[str], Any], type[Exception]]:
    """(format name, ``loads``, its parse error) for the file's suffix; ``ValueError`` if its parser is missing."""
    if p.suffix == ".json":
        return "JSON", json.loads, ValueError
    if p.suffix == ".toml":
        try:
            import tomllib as toml
        except ModuleNotFoundError:  # Python 3.10
            try:
                import tomli as toml
            except ModuleNotFoundError:
                raise ValueError(f"{p}: TOML needs Python 3.11+ or the tomli package") from None
        return "TOML", toml.loads, ValueError  # TOMLDecodeError is a ValueError
    try:
        import yaml
    except ModuleNotFoundError:
        raise ValueError(f"{p}: YAML needs the PyYAML package (pip install pyyaml)") from None
    # safe_load builds plain data only (no tags that construct objects or run code)
    return "YAML", yaml.safe_load, yaml.YAMLError


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The top-level table of a ``.json``, ``.toml`` or ``.yaml`` / ``.yml`` file (YAML through PyYAML's
    ``safe_load``, when PyYAML is installed). Raises ``ValueError`` naming the problem."""
    p = Path(path)
    if p.suffix not in CONFIG_SUFFIXES:
        raise ValueError(f"{p}: expected a .json, .toml or .yaml file")
    kind, loads, errors = _loader(p)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{p}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{p}: not UTF-8 text") from None
    try:
        data = loads(text)
    except errors as exc:
        problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{p}: not valid {kind} ({problem})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a table of field values, got {type(data).__name__}")
    return data


_FILE_VALUES = "_config_file_values"  # where ``--config`` leaves the file's values in the namespace


class _ConfigFile(argparse.Action):
    """``--config FILE``: read, check and convert the file's values, and keep them apart in the namespace, so
    :func:`given_options` lets the command line win wherever ``--config`` stands."""

    def __init__(self, option_strings, dest, *, specs: Sequence[OptionSpec], **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.specs = {spec.name: spec for spec in specs}

    def __call__(self, parser, namespace, values, option_string=None):
        file_values = {}
        try:
            for key, value in read_config_file(values).items():
                name = str(key).replace("-", "_")
                if name not in self.specs:
                    hint = closest(name, self.specs)
                    raise ValueError(f"{values}: unknown key {key!r}" + (f"; did you mean {hint!r}?" if hint else ""))  # fmt: skip
                try:
                    file_values[name] = self.specs[name].from_file(value)
                except ValueError as exc:
                    raise ValueError(f"{values}: {key}: {exc}") from None
        except ValueError as exc:
            parser.error(f"{option_string}: {exc}")
        setattr(namespace, _FILE_VALUES, file_values)
        setattr(namespace, self.dest, values)


def add_config_file_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, specs: Sequence[OptionSpec]
) -> None:
    """Add ``--config FILE``: values of the options in ``specs`` from a JSON, TOML or YAML file, keyed by field
    name (``lr = 1e-4``, ``steps = 600``; ``-`` or ``_`` alike). An option given on the command line overrides the
    file; a key that names no option, or a value its option would refuse, is a one-line error (exit 2).
    :func:`given_options` returns the file's values merged with the command line's."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        dest="config_file",
        action=_ConfigFile,
        specs=specs,
        default=argparse.SUPPRESS,
        help="field values from a JSON, TOML or YAML file (keys: field names); options given on the command "
        "line override them",
    )


def given_options(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The options among ``names`` that were given, on the command line or in the ``--config`` file (the command
    line wins); ``none`` already read as None."""
    values = {**getattr(args, _FILE_VALUES, {}), **vars(args)}
    return {n: (None if values[n] == "none" else values[n]) for n in names if n in values}


def fail(prog: str, message: str) -> int:
    """Print the one-line error ``<prog>: error: <message>`` to stderr; return exit code 2."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def dispatch(parser: CommandParser, argv: Sequence[str]) -> int:
    """Parse ``argv`` with ``parser`` (subcommands with ``dest="command"``, each setting ``func``) and run the
    chosen command; return its exit code.

    Left-over arguments are rejected by the subcommand's parser (naming the closest option); no command prints
    the help (exit 0); a ``ValueError`` from the command -- its validation, ``name: problem`` -- becomes the
    one-line error ``<prog> <command>: error: name: problem`` with exit code 2 (``SHARPEN_DEBUG=1`` re-raises).
    """
    args, extra = parser.parse_known_args(list(argv))
    command = getattr(args, "command", None)
    if extra:
        chosen = parser._subparsers._group_actions[0].choices.get(command) if command else None
        (chosen or parser).unknown_options(extra)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:
        if os.environ.get("SHARPEN_DEBUG"):
            raise
        return fail(f"{parser.prog} {command}", str(exc).splitlines()[0] if str(exc) else repr(exc))
