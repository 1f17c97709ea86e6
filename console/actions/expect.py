"""Expectations of a check: what was observed (rows, values, HTTP status and body) against
``Expect``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from console.actions.plans import SHOW_LINES, Outcome, Preview, Status
from console.actions.specs import Expect
from console.sanitize import one_line


@dataclass(slots=True)
class Observed:
    """What a check saw: SQL rows or PromQL series and their values, or an HTTP answer."""

    rows: int | None = None
    values: list[Any] | None = None
    #: the answer is one value (a scalar, a series without labels): its count is noise
    one_value: bool = False
    status: int | None = None
    body: bytes = b""
    content_type: str = ""


def first_column(rows: Sequence[asyncpg.Record]) -> list[Any]:
    return [row[0] for row in rows if len(row)]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float | Decimal):
        return float(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    return None


def _expect_status(expect: Expect, seen: Observed) -> tuple[bool, str]:
    if seen.status is None:
        return True, ""
    wanted = expect.status
    ok = seen.status in wanted if wanted else 200 <= seen.status < 300
    return ok, "" if ok else f"expected HTTP {', '.join(map(str, wanted)) if wanted else '2xx'}"


def _json_path(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            raise KeyError(path)
    return doc


def _expect_json(expect: Expect, seen: Observed) -> tuple[bool, str]:
    if not expect.json_:
        return True, ""
    try:
        doc = json.loads(seen.body)
    except ValueError:
        return False, "the answer is not JSON"
    for path, wanted in expect.json_.items():
        try:
            got = _json_path(doc, path)
        except KeyError:
            return False, f"no '{path}' in the answer"
        if got != wanted:
            return (
                False,
                f"{path} is {one_line(json.dumps(got), 60)}, expected {one_line(json.dumps(wanted), 60)}",
            )
    return True, ", ".join(f"{p} = {json.dumps(v)}" for p, v in expect.json_.items())


def _expect_contains(expect: Expect, seen: Observed) -> tuple[bool, str]:
    if expect.contains is None:
        return True, ""
    ok = expect.contains in seen.body.decode("utf-8", "replace")
    return ok, "" if ok else f"the answer does not contain '{one_line(expect.contains, 40)}'"


def _count(n: int, expect: Expect) -> str:
    """'4 blocked sessions' (the check's words for its rows), else '4 rows'."""
    return f"{n} {expect.found}" if expect.found else f"{n} row{'s' if n != 1 else ''}"


def _expect_rows(expect: Expect, seen: Observed) -> tuple[bool, str]:
    """Say what was found, then what was expected (issue 18: '✖ FAILED: 4 rows, expected at
    most 0' made the operator translate)."""
    if seen.rows is None:
        return True, ""
    if expect.max_rows is not None and seen.rows > expect.max_rows:
        wanted = "none expected" if expect.max_rows == 0 else f"at most {expect.max_rows} expected"
        return False, f"found {_count(seen.rows, expect)} ({wanted})"
    if expect.min_rows is not None and seen.rows < expect.min_rows:
        return False, f"found {_count(seen.rows, expect)} (at least {expect.min_rows} expected)"
    return True, "" if seen.one_value else _count(seen.rows, expect)


class Unjudgeable(Exception):
    """What was observed cannot be held against ``expect``: the check broke, it found nothing."""


def _expect_values(expect: Expect, seen: Observed) -> tuple[bool, str]:
    if expect.below is None and expect.above is None and expect.equals is None:
        number = _number(seen.values[0]) if seen.one_value and seen.values else None
        return True, "" if number is None else f"value {number:g}"
    if expect.references:  # a kind resolves them when it renders (KindContext.resolve_expect)
        raise Unjudgeable("a threshold reference was not resolved")
    values = seen.values or []
    if not values:
        return expect.no_data == "pass", "no value" + ("" if expect.no_data == "pass" else " (no data)")

    def what(n: float) -> str:
        return f"found {n:g} {expect.found}" if expect.found else f"value {n:g}"

    if expect.equals is not None:
        wanted = _number(expect.equals)
        for got in values:  # every series (or row), not the first: one provider of several refused
            same = _number(got) == wanted if wanted is not None else str(got) == str(expect.equals)
            if not same:  # a number as the other expectations say it (2.88889, not 2.8888888888888893)
                number = _number(got)
                seen = what(number) if number is not None else f"value {one_line(str(got), 40)}"
                return False, f"{seen}, expected {expect.equals}"
    numbers = [_number(v) for v in values]
    if (expect.below is not None or expect.above is not None) and None in numbers:
        raise Unjudgeable("a value is not a number")

    for n in numbers:
        if expect.below is not None and not n < expect.below:
            return False, f"{what(n)}, expected below {expect.below:g}"
        if expect.above is not None and not n > expect.above:
            return False, f"{what(n)}, expected above {expect.above:g}"
    worst = (
        max(numbers)
        if expect.below is not None
        else (min(numbers) if numbers and None not in numbers else None)
    )
    return True, f"value {worst:g}" if isinstance(worst, float) else "value as expected"


_EXPECTATIONS = (_expect_status, _expect_json, _expect_contains, _expect_rows, _expect_values)


def verdict(expect: Expect, seen: Observed) -> tuple[Status, str]:
    """SUCCEEDED when every given field of ``expect`` holds, NOT_MET when one does not (what was
    found), FAILED when what was seen cannot be judged; and why, in words."""
    notes = []
    try:
        for rule in _EXPECTATIONS:
            ok, why = rule(expect, seen)
            if not ok:
                return Status.NOT_MET, why
            if why:
                notes.append(why)
    except Unjudgeable as exc:
        return Status.FAILED, str(exc)
    return Status.SUCCEEDED, "; ".join(notes) or "as expected"


def judge(expect: Expect, seen: Observed, table: Preview) -> Outcome:
    """A SQL check's outcome: judged by ``expect``, the rows it read as its lines."""
    status, why = verdict(expect, seen)
    return Outcome(status, why, table.lines()[:SHOW_LINES])
