"""What a health endpoint's answer says, in each of the four formats the config names:
``health+json`` (pass/warn/fail with checks), Spring actuator (UP/DOWN/OUT_OF_SERVICE with
components), Kubernetes ``/livez`` ``/readyz`` (status code and ``[+]name ok`` lines) and plain
``status`` (2xx or not).

Shared by the health source (a panel's polls) and the runbooks' ``health`` check, so that both
read a target the same way. Real endpoints disagree with the specs, so the parsers are tolerant;
whatever the body says is sanitised and capped here, and a body that is no health answer raises
:class:`NotHealth`, never anything else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, NamedTuple

from console import redact
from console.model import HealthCheck, HealthStatus
from console.sanitize import clean, one_line

__all__ = [
    "AUTH_CODES",
    "BODY_LIMIT",
    "MAX_CHECKS",
    "MAX_DEPTH",
    "NAME_LIMIT",
    "NotHealth",
    "Verdict",
    "checks_of",
    "parse",
]

BODY_LIMIT = 1024 * 1024
MAX_CHECKS = 200
MAX_DEPTH = 8  # Spring components nest; anything deeper is shown as one check
NAME_LIMIT = 120
DETAIL_LIMIT = 1000
OUTPUT_LIMIT = 4000
AUTH_CODES = frozenset({401, 403, 407})

PASS, WARN, FAIL, UNKNOWN = HealthStatus.PASS, HealthStatus.WARN, HealthStatus.FAIL, HealthStatus.UNKNOWN

_ALIASES: dict[str, HealthStatus] = {
    **dict.fromkeys(("pass", "ok", "up", "healthy", "green", "true"), PASS),
    **dict.fromkeys(("warn", "warning", "degraded", "yellow"), WARN),
    **dict.fromkeys(
        ("fail", "error", "down", "out_of_service", "unhealthy", "critical", "red", "false"), FAIL
    ),
    "unknown": UNKNOWN,
}


class Verdict(NamedTuple):
    status: HealthStatus
    output: str = ""
    checks: Iterable[HealthCheck] = ()  # may be lazy: :func:`checks_of` takes what is kept


class NotHealth(Exception):
    """The body is not a health answer in the configured format."""


def parse(format: str, code: int, content_type: str, body: bytes) -> Verdict:
    """The answer ``(code, Content-Type header as sent, body)`` read as ``format`` says;
    NotHealth when it is none (an auth error's page, a body that is not JSON where JSON was
    expected). The header is untrusted: only its media type, one line, capped, is kept."""
    media_type = one_line(content_type.split(";")[0], 60)
    return _PARSERS[format](code, media_type, body)


def checks_of(verdict: Verdict) -> tuple[tuple[HealthCheck, ...], str]:
    """The verdict's checks with distinct names, at most MAX_CHECKS of them, and its output
    (which says so when more were left out)."""
    checks = tuple(islice(_distinct(verdict.checks), MAX_CHECKS + 1))
    output = verdict.output
    if len(checks) > MAX_CHECKS:
        checks = checks[:MAX_CHECKS]
        output = _join(output, f"(only the first {MAX_CHECKS} checks are kept)")
    return checks, output


# --- untrusted text -----------------------------------------------------------------------


def _text(value: object, limit: int = DETAIL_LIMIT) -> str:
    """Body text made safe: secrets masked, controls made visible, length capped."""
    if value is None:
        return ""
    if not isinstance(value, str):
        value = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return clean(redact.scrub(value), limit=limit).strip()


def _name(value: object) -> str:
    return one_line(redact.scrub(str(value)), NAME_LIMIT)


def _join(*parts: str) -> str:
    return "\n".join(part for part in parts if part)


def _status(value: object) -> HealthStatus | None:
    """A status word (or JSON boolean) from the alias table; None when unrecognised."""
    if not isinstance(value, str | bool):
        return None
    return _ALIASES.get(str(value).strip().lower().replace("-", "_").replace(" ", "_"))


def _first(data: dict[str, Any], *keys: str) -> Any:
    return next((data[key] for key in keys if data.get(key)), None)


def _ok(code: int) -> bool:
    return 200 <= code < 300


# --- formats ------------------------------------------------------------------------------


def _json_object(code: int, content_type: str, body: bytes) -> dict[str, Any]:
    if not body.strip():
        raise NotHealth(f"HTTP {code}, empty body where JSON was expected")
    try:
        try:
            data = json.loads(body)  # detects UTF-16/32 too
        except UnicodeDecodeError:  # one stray byte in a message must not hide the status
            data = json.loads(body.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        word = body.decode("utf-8", "replace").strip()
        if len(word) <= 32 and _status(word) is not None:  # a bare "OK" from a simple endpoint
            return {"status": word}
        raise NotHealth(f"HTTP {code}, body is not JSON ({content_type or 'no content type'})") from None
    if isinstance(data, str | bool):
        return {"status": data}
    if not isinstance(data, dict):
        raise NotHealth(f"HTTP {code}, JSON body is not an object ({type(data).__name__})")
    return data


def _top_status(code: int, data: dict[str, Any]) -> tuple[HealthStatus, str]:
    """The body's status wins over the HTTP code; without one, fall back to the code."""
    raw = data.get("status")
    status = _status(raw)
    if status is not None:
        return status, ""
    if code in AUTH_CODES:
        raise NotHealth(f"HTTP {code}")  # e.g. a proxy's or Spring Security's error body
    note = "no status in body" if raw is None else f"unrecognised status '{_name(raw)}'"
    return (UNKNOWN if _ok(code) else FAIL), note


def _check(name: object, entry: object) -> HealthCheck:
    if not isinstance(entry, dict):  # a bare "UP" or true instead of an object
        status = _status(entry)
        return HealthCheck(_name(name), status or UNKNOWN, "" if status else _text(entry))
    return HealthCheck(_name(name), _status(entry.get("status")) or UNKNOWN, _text(_detail(entry)))


def _detail(entry: dict[str, Any]) -> Any:
    text = _first(entry, "output", "error", "message", "description")
    if text:
        return text
    details = entry.get("details", entry.get("data"))  # Spring / MicroProfile
    if isinstance(details, dict) and details.get("error"):
        return details["error"]
    if details:
        return details
    if "observedValue" in entry:
        return f"{entry['observedValue']} {entry.get('observedUnit') or ''}".strip()
    return ""


def _parse_health_json(code: int, content_type: str, body: bytes) -> Verdict:
    data = _json_object(code, content_type, body)
    status, note = _top_status(code, data)
    output = _text(_first(data, "output", "description", "message"), OUTPUT_LIMIT)
    checks, plain = data.get("checks"), ""
    details = data.get("details")
    if not checks and isinstance(details, dict):
        # Older drafts of health+json (and Tyk gateways) put the components under "details".
        checks, plain = _components(details), _plain_details(details)
    return Verdict(status, _join(note, output, _notes(data.get("notes")), plain), _health_checks(checks))


def _is_component(value: object) -> bool:
    if isinstance(value, list):
        return any(isinstance(entry, dict) for entry in value)
    return isinstance(value, dict) and "status" in value


def _components(details: dict[str, Any]) -> dict[str, Any]:
    """The entries of a ``details`` object that are components (an object with a status, or a
    list of objects): the rest are details of the service itself."""
    return {key: value for key, value in details.items() if _is_component(value)}


def _plain_details(details: dict[str, Any]) -> str:
    """The entries of a ``details`` object that are no component, as ``name: value`` lines: a
    plain value (Steeltoe's ``"item3": false``) is shown as what it is, never as a status."""
    lines = [
        f"{_name(key)}: {_text(value, NAME_LIMIT)}"
        for key, value in details.items()
        if not _is_component(value)
    ]
    return "\n".join(islice(lines, MAX_CHECKS))


def _notes(notes: object) -> str:
    """health+json ``notes``: an array of strings (one taken as is)."""
    if isinstance(notes, list):
        return "\n".join(_text(note, OUTPUT_LIMIT) for note in islice(notes, MAX_CHECKS))
    return _text(notes, OUTPUT_LIMIT)


def _distinct(checks: Iterable[HealthCheck]) -> Iterator[HealthCheck]:
    """Checks with distinct names: a second component of the same name is ``name #2``."""
    seen: dict[str, int] = {}
    for check in checks:
        count = seen[check.name] = seen.get(check.name, 0) + 1
        if count > 1:
            name = f"{check.name} #{count}"
            while name in seen:  # a body that also names one "db #2"
                count += 1
                name = f"{check.name} #{count}"
            seen[name] = 1
            check = HealthCheck(name, check.status, check.detail)
        yield check


def _health_checks(checks: object) -> Iterator[HealthCheck]:
    """``checks`` as {name: [entries]} (draft), {name: entry} (older) or [entry with a name]."""
    if isinstance(checks, list):
        for i, entry in enumerate(checks):
            name = entry.get("name") if isinstance(entry, dict) else None
            yield _check(name or f"check {i + 1}", entry)
        return
    if not isinstance(checks, dict):
        return
    for key, value in checks.items():
        entries = value if isinstance(value, list) else [value]
        for i, entry in enumerate(entries):
            component = entry.get("componentId") if isinstance(entry, dict) else None
            name = key if len(entries) == 1 else f"{_name(key)}/{component or i + 1}"
            yield _check(name, entry)


def _parse_spring(code: int, content_type: str, body: bytes) -> Verdict:
    data = _json_object(code, content_type, body)
    status, note = _top_status(code, data)
    output = _text(_first(data, "description", "message"), OUTPUT_LIMIT)
    details = data.get("details")
    # Spring Boot 2.0/2.1 and Steeltoe: the plain values beside the components under "details".
    plain = _plain_details(details) if isinstance(details, dict) and "components" not in data else ""
    return Verdict(status, _join(note, output, plain), _spring_checks(data, "", 0))


def _spring_children(node: dict[str, Any]) -> dict[str, Any]:
    components = node.get("components")
    if isinstance(components, dict):
        return components
    # Spring Boot 2.0/2.1 nested components under "details"; 1.x put them beside "status".
    details = node.get("details")
    pool = details if isinstance(details, dict) else node
    return {key: value for key, value in pool.items() if isinstance(value, dict) and "status" in value}


def _spring_checks(node: dict[str, Any], prefix: str, depth: int) -> Iterator[HealthCheck]:
    """Leaf components, flattened to ``db/primary`` names."""
    for key, child in _spring_children(node).items():
        name = f"{prefix}/{_name(key)}" if prefix else _name(key)
        if depth < MAX_DEPTH and isinstance(child, dict) and _spring_children(child):
            yield from _spring_checks(child, name, depth + 1)
        else:
            yield _check(name, child)


_K8S_LINE = re.compile(r"\[([+-])\](\S+)\s*(.*)")


def _parse_k8s(code: int, content_type: str, body: bytes) -> Verdict:
    """The status code decides; ``?verbose`` lines become checks, other lines the output."""
    if code in AUTH_CODES:
        raise NotHealth(f"HTTP {code}")
    lines = [line.strip() for line in body.decode("utf-8", "replace").splitlines()]
    matches = (_K8S_LINE.fullmatch(line) for line in lines)
    checks = (_k8s_check(*match.groups()) for match in matches if match)
    notes = "\n".join(line for line in lines if line and not _K8S_LINE.fullmatch(line))
    return Verdict(PASS if _ok(code) else FAIL, _text(notes, OUTPUT_LIMIT), checks)


def _k8s_check(sign: str, name: str, rest: str) -> HealthCheck:
    detail = "" if rest == "ok" else rest.removeprefix("failed:").strip()
    return HealthCheck(_name(name), PASS if sign == "+" else FAIL, _text(detail))


def _parse_status(code: int, content_type: str, body: bytes) -> Verdict:
    if code in AUTH_CODES:
        raise NotHealth(f"HTTP {code}")
    return Verdict(PASS if _ok(code) else FAIL)


_PARSERS: dict[str, Callable[[int, str, bytes], Verdict]] = {
    "health+json": _parse_health_json,
    "spring": _parse_spring,
    "k8s": _parse_k8s,
    "status": _parse_status,
}
