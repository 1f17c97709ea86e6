"""Read a YAML file into plain data while remembering where every key and value came from.

This is the one YAML reader of the project (console.yaml and every runbook file). It turns
every failure into :class:`Problem` lines of the form ``file:line:col: message`` and never lets
an exception out for any input: binary junk, a huge file, alias bombs, deep nesting.
``${VAR}`` and ``${VAR:-default}`` are replaced from the environment in string values
(``$$`` is a literal ``$``); an undefined variable without a default is a problem.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Tag, ValidationError

from console import redact

MAX_BYTES = 4 * 1024 * 1024
# libyaml's parser when PyYAML has it (its wheels do): the same nodes and marks as the pure-Python
# one at ~1/17 of the CPU (the 49 files of the demo's config and runbook pack: 0.21 -> 0.012 s,
# most of the console's start-up beyond its imports); it stops nesting at 1000 levels itself.
_COMPOSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_NODES = 200_000
MAX_DEPTH = 64

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class ConfigError(Exception):
    """Raised with every problem found; ``str()`` is one line per problem, :meth:`lines` one
    line per distinct problem (what a person reads)."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(map(str, self.problems)))

    def lines(self, first: str | os.PathLike[str] | None = None) -> list[str]:
        """One line per distinct problem, the worst first: the problems of ``first`` (the file
        the operator gave, e.g. the config) before those of other files (the runbook pack),
        then a problem that occurs once before one repeated across files (a variable the config
        lacks, named in 96 places, is one problem); each at its first place, with how many more
        there are."""
        places: dict[str, list[Problem]] = {}
        for problem in self.problems:
            places.setdefault(problem.message, []).append(problem)
        head = None if first is None else os.path.abspath(first)

        def rank(group: list[Problem]) -> tuple:
            theirs = head is not None and any(os.path.abspath(p.file) == head for p in group)
            return (not theirs, len(group) > 1, group[0])

        out = []
        for group in sorted(places.values(), key=rank):
            line = str(group[0])
            if len(group) > 1:
                files = len({p.file for p in group})
                where = f" in {files} files" if files > 1 else ""
                line += f" (and {len(group) - 1} more place{'s' if len(group) > 2 else ''}{where})"
            out.append(line)
        return out


@dataclass
class Document:
    """Plain data from a YAML file, with positions: ``loc`` tuples map to (line, col), 1-based."""

    file: str
    data: Any
    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    #: Problems that did not stop parsing (undefined variables, duplicate keys): the caller
    #: reports them together with its own validation problems.
    problems: list[Problem] = field(default_factory=list)

    def where(self, loc: Loc, *, key: bool = False) -> tuple[int, int]:
        """Position of ``loc``, or of its nearest ancestor that has one."""
        loc = tuple(loc)
        if key and loc in self.keys:
            return self.keys[loc]
        while loc:
            if loc in self.values:
                return self.values[loc]
            loc = loc[:-1]
        return self.values.get((), (1, 1))

    def problem(self, loc: Loc, message: str, *, key: bool = False) -> Problem:
        line, col = self.where(loc, key=key)
        return Problem(self.file, line, col, message)


#: ``$$``, a well-formed ``${NAME}`` / ``${NAME:-default}``, or any other ``${`` (a problem).
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")


class _Builder:
    def __init__(self, file: str, env: Mapping[str, str]):
        self.file = file
        self.env = env
        self.doc = Document(file=file, data=None)
        self.problems: list[Problem] = []
        self.nodes = 0
        self.constructor = yaml.SafeLoader("")

    def build(self, node: yaml.Node, loc: Loc, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooBig(f"more than {MAX_NODES} YAML nodes (alias expansion?)", node)
        if depth > MAX_DEPTH:
            raise _TooBig(f"nesting deeper than {MAX_DEPTH} levels", node)
        self.doc.values[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            self.constructor.flatten_mapping(node)
            for key_node, value_node in node.value:
                key = self.build(key_node, (*loc, "<key>"), depth + 1)
                if not isinstance(key, str | int | float | bool) or key is None:
                    self._add(key_node, f"a key must be a plain scalar, not {type(key).__name__}")
                    continue
                key = str(key) if not isinstance(key, str) else key
                if key in result:
                    self._add(key_node, f"duplicate key '{_show(key)}'")
                    continue
                self.doc.keys[(*loc, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                result[key] = self.build(value_node, (*loc, key), depth + 1)
            self.doc.values.pop((*loc, "<key>"), None)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, index), depth + 1) for index, item in enumerate(node.value)]
        value = self.constructor.construct_object(node, deep=True)
        if isinstance(value, str):
            value = self._interpolate(value, node)
        elif isinstance(value, bytes):
            self._add(node, "binary values are not accepted")
            value = None
        return value

    def _interpolate(self, text: str, node: yaml.Node) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group() == "$$":
                return "$"
            if match.group() == "${":
                closed = "}" in text[match.end() :]
                self._add(
                    node,
                    "a variable is ${NAME} or ${NAME:-default} (NAME: letters, digits, _)"
                    if closed
                    else "unclosed '${' (no '}' after it)",
                    offset=match.start(),
                )
                return match.group()
            name, default = match.group(1), match.group(2)
            value = self.env.get(name)
            if value is None or (value == "" and default is not None):
                if default is not None:
                    return default
                self._add(node, f"undefined environment variable ${{{name}}}")
                return ""
            return value

        return _VAR.sub(replace, text) if "$" in text else text

    def _add(self, node: yaml.Node, message: str, offset: int | None = None) -> None:
        """A problem at ``node``; ``offset`` into a scalar's value points at its column when the
        scalar is on one line (plain, or quoted: one character further)."""
        mark = node.start_mark
        col = mark.column + 1
        if offset is not None and isinstance(node, yaml.ScalarNode) and mark.line == node.end_mark.line:
            col += offset + (1 if node.style in ("'", '"') else 0)
        self.problems.append(Problem(self.file, mark.line + 1, col, message))


class _TooBig(Exception):
    def __init__(self, message: str, node: yaml.Node):
        super().__init__(message)
        self.node = node


def _show(value: object, limit: int = 60) -> str:
    from console.sanitize import one_line

    return one_line(redact.scrub(str(value)), limit=limit)


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def read_document(path: Path | str, env: Mapping[str, str] | None = None) -> Document:
    """Read and parse one YAML file. Raises :class:`ConfigError`, never anything else."""
    file = str(path)
    env = os.environ if env is None else env
    try:
        size = os.stat(file).st_size
        if size > MAX_BYTES:
            raise ConfigError(
                [Problem(file, 1, 1, f"file is {size / 1e6:.1f} MB; the limit is {MAX_BYTES // 2**20} MiB")]
            )
        with open(file, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except ConfigError:
        raise
    except IsADirectoryError:
        raise ConfigError([Problem(file, 1, 1, "is a directory, not a file")]) from None
    except OSError as exc:
        raise ConfigError([Problem(file, 1, 1, f"cannot read: {exc.strerror or exc}")]) from None
    return parse_document(raw, file, env)


def parse_document(raw: bytes | str, file: str, env: Mapping[str, str] | None = None) -> Document:
    env = os.environ if env is None else env
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line, col = _line_col(raw[: exc.start].decode("utf-8", "replace"), exc.start)
            raise ConfigError(
                [Problem(file, line, col, f"not UTF-8 text (byte 0x{raw[exc.start]:02x})")]
            ) from None
    else:
        text = raw
    if "\x00" in text:
        line, col = _line_col(text, text.index("\x00"))
        raise ConfigError([Problem(file, line, col, "binary data (NUL byte) in a text file")])
    builder = _Builder(file, env)
    try:
        nodes = list(yaml.compose_all(text, Loader=_COMPOSER))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise ConfigError([Problem(file, line, col, f"YAML syntax: {_show(message, 200)}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(file, 1, 1, f"YAML syntax: {_show(exc, 200)}")]) from None
    except RecursionError:
        raise ConfigError([Problem(file, 1, 1, f"nesting deeper than {MAX_DEPTH} levels")]) from None
    if len(nodes) > 1:
        mark = nodes[1].start_mark
        raise ConfigError([Problem(file, mark.line + 1, 1, "more than one YAML document in the file")])
    if not nodes or nodes[0] is None:
        builder.doc.data = {}
        return builder.doc
    try:
        builder.doc.data = builder.build(nodes[0], (), 0)
    except _TooBig as exc:
        mark = exc.node.start_mark
        raise ConfigError([Problem(file, mark.line + 1, mark.column + 1, str(exc))]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise ConfigError([Problem(file, line, col, f"YAML: {_show(message, 200)}")]) from None
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        raise ConfigError([Problem(file, 1, 1, f"YAML: {_show(exc, 200)}")]) from None
    builder.doc.problems = builder.problems
    if not isinstance(builder.doc.data, dict):
        kind = "a list" if isinstance(builder.doc.data, list) else f"'{_show(builder.doc.data)}'"
        raise ConfigError([Problem(file, 1, 1, f"expected a mapping of keys at the top level, got {kind}")])
    return builder.doc


# --- pydantic errors -> problems -----------------------------------------------------------


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _tagged(annotation: Any) -> dict[str, Any]:
    """The members of a tagged union (each ``Annotated[X, Tag("t")]``) by tag, or {}."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return {}
    members: dict[str, Any] = {}
    for arg in typing.get_args(annotation):
        tags = [m for m in getattr(arg, "__metadata__", ()) if isinstance(m, Tag)]
        if not tags:
            return {}
        members[tags[0].tag] = typing.get_args(arg)[0]
    return members


def _unwrap(annotation: Any) -> Any:
    """The type inside Annotated[...] and Optional[...]; a tagged union stays whole, another union
    is taken for its first member."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType) and not _tagged(annotation):
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                return _unwrap(arg)
    return annotation


def _child(annotation: Any, part: str | int) -> Any:
    """The type of ``part`` inside ``annotation`` (a model's field, a list's item, a dict's
    value), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field_info = next(
            (f for name, f in annotation.model_fields.items() if (f.alias or name) == part), None
        )
        return None if field_info is None else field_info.rebuild_annotation()
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (list, tuple) and args:
        return args[0]
    if origin is dict and len(args) == 2:
        return args[1]
    return None


def _walk(model: type[BaseModel], loc: Loc) -> tuple[Loc, Any]:
    """``loc`` without the tags pydantic puts in it for a tagged union (the member it chose),
    and the type at its end (None when unknown)."""
    current: Any = model
    kept: list[str | int] = []
    for index, part in enumerate(loc):
        current = _unwrap(current)
        members = _tagged(current)
        if members and isinstance(part, str) and part in members:
            current = members[part]
            continue
        kept.append(part)
        current = _child(current, part)
        if current is None:
            return (*kept, *loc[index + 1 :]), None
    return tuple(kept), _unwrap(current)


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model at ``loc`` (a location as pydantic gives it), or None."""
    owner = _walk(model, loc)[1]
    return owner if isinstance(owner, type) and issubclass(owner, BaseModel) else None


def problems_from_validation(exc: ValidationError, doc: Document, model: type[BaseModel]) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False, include_input=True):
        raw: Loc = tuple(error["loc"])
        loc = _walk(model, raw)[0]
        kind = error["type"]
        message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if kind == "extra_forbidden":
            owner = _model_at(model, raw[:-1])
            hint = ""
            if owner is not None:
                names = [f.alias or n for n, f in owner.model_fields.items()]
                close = difflib.get_close_matches(str(loc[-1]), names, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(names)})"
            where = f" in {_dotted(loc[:-1])}" if loc[:-1] else ""
            problems.append(doc.problem(loc, f"unknown key '{_show(loc[-1])}'{where}{hint}", key=True))
        elif kind == "missing":
            where = f" in {_dotted(loc[:-1])}" if loc[:-1] else ""
            problems.append(doc.problem(loc[:-1], f"missing required key '{loc[-1]}'{where}"))
        else:
            label = _dotted(loc) or "top level"
            problems.append(doc.problem(loc, f"{label}: {_show(message, 200)}"))
    return problems
