"""Templates: ``{{name}}`` / ``{{name|fallback}}`` references, the values they take (trusted or
not, secret or not) and how a value is encoded for text, URLs, PromQL and argv."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from console import redact
from console.sanitize import one_line

MASK = redact.MASK

# --- templates --------------------------------------------------------------------------------

_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_REF = re.compile(rf"^\s*({_NAME})\s*(?:\|\s*(.*?)\s*)?$", re.DOTALL)
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")


class TemplateError(ValueError):
    pass


class RenderError(Exception):
    """A spec cannot become a plan: a variable without a value, an unknown cluster..."""


@dataclass(frozen=True, slots=True)
class Ref:
    name: str
    fallback_name: str | None = None
    fallback_text: str | None = None


def _parse_ref(inner: str) -> Ref:
    match = _REF.match(inner)
    if not match:
        raise TemplateError(
            f"'{{{{{inner[:40]}}}}}' is not a reference: use {{{{name}}}} or {{{{name|fallback}}}}"
        )
    name, fallback = match.group(1), match.group(2)
    if fallback is None:
        return Ref(name)
    if len(fallback) >= 2 and fallback[0] in "'\"" and fallback[-1] == fallback[0]:
        return Ref(name, fallback_text=fallback[1:-1])
    if _NUMBER.match(fallback):
        return Ref(name, fallback_text=fallback)
    if re.fullmatch(_NAME, fallback):
        return Ref(name, fallback_name=fallback)
    raise TemplateError(
        f"bad fallback '{fallback[:40]}' in {{{{{inner[:40]}}}}}: use a name, a number or 'text'"
    )


def template_refs(text: str) -> list[Ref]:
    """The references in ``text``; raises TemplateError on a malformed one."""
    refs = [_parse_ref(m.group(1)) for m in _TEMPLATE.finditer(text)]
    rest = _TEMPLATE.sub("", text)
    if "{{" in rest or "}}" in rest:
        raise TemplateError("unbalanced '{{' or '}}'")
    return refs


def template_names(text: str) -> set[str]:
    names = set()
    for ref in template_refs(text):
        names.add(ref.name)
        if ref.fallback_name:
            names.add(ref.fallback_name)
    return names


@dataclass(frozen=True, slots=True)
class Value:
    text: str
    trusted: bool = True  # from the config or the runbook; False: from a backend
    secret: bool = False


@dataclass(frozen=True, slots=True)
class Context:
    """Values templates refer to. Build it with :func:`console.runbooks.build_context`."""

    values: Mapping[str, Value] = field(default_factory=dict)

    def get(self, name: str) -> Value | None:
        return self.values.get(name)

    def with_values(self, trusted: bool = True, **values: object) -> Context:
        new = {k: Value(str(v), trusted) for k, v in values.items() if v is not None}
        return Context({**self.values, **new})

    def public(self) -> dict[str, str]:
        """Non-secret values, for the journal."""
        return {k: v.text for k, v in sorted(self.values.items()) if not v.secret}

    def lookup(self, ref: Ref) -> Value:
        value = self.values.get(ref.name)
        if value is not None:
            return value
        if ref.fallback_name is not None:
            value = self.values.get(ref.fallback_name)
            if value is not None:
                return value
        if ref.fallback_text is not None:
            return Value(ref.fallback_text)
        alternative = f" or '{ref.fallback_name}'" if ref.fallback_name else ""
        raise RenderError(
            f"'{ref.name}'{alternative} has no value here (open the runbook from a breach, or set it)"
        )


def _enc_text(value: Value) -> str:
    return value.text


def _enc_url(value: Value) -> str:
    return value.text if value.trusted else quote(value.text, safe="")


def _enc_promql(value: Value) -> str:
    return value.text.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'").replace("\n", "\\n")


def _enc_argv(value: Value) -> str:
    if not value.trusted and value.text.startswith("-"):
        raise RenderError(
            f"refusing '{one_line(value.text, 40)}' as a command argument: it would read as an option"
        )
    return value.text


_ENCODERS: dict[str, Callable[[Value], str]] = {
    "text": _enc_text,
    "url": _enc_url,
    "promql": _enc_promql,
    "argv": _enc_argv,
}


def render_text(template: str, ctx: Context, mode: str = "text") -> tuple[str, str]:
    """``template`` with its references replaced: (the real text, the text to show)."""
    encode = _ENCODERS[mode]
    real: list[str] = []
    shown: list[str] = []
    last = 0
    for match in _TEMPLATE.finditer(template):
        literal = template[last : match.start()]
        value = ctx.lookup(_parse_ref(match.group(1)))
        text = encode(value)
        real += [literal, text]
        shown += [literal, MASK if value.secret else text]
        last = match.end()
    real.append(template[last:])
    shown.append(template[last:])
    return "".join(real), redact.scrub("".join(shown))


def render_json(value: Any, ctx: Context) -> tuple[Any, Any]:
    """Every string inside a JSON value rendered: (the real value, the value to show)."""
    if isinstance(value, str):
        return render_text(value, ctx)
    if isinstance(value, Mapping):
        pairs = {k: render_json(v, ctx) for k, v in value.items()}
        return {k: p[0] for k, p in pairs.items()}, {k: p[1] for k, p in pairs.items()}
    if isinstance(value, list):
        pairs_list = [render_json(v, ctx) for v in value]
        return [p[0] for p in pairs_list], [p[1] for p in pairs_list]
    return value, value
