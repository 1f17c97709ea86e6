"""Prometheus: instant PromQL queries, alerts, rule groups, scrape targets, Alertmanager silences.

Transport
    Queries go through prometheus-api-client (synchronous, requests) in one worker thread per
    poll, without retries (``Retry(total=0)``) and with a per-request timeout bounded by the poll
    deadline. A response hook on our own ``requests.Session`` reads every body with a size cap
    and keeps the API envelope: the library drops ``warnings``, the ``resultType`` and the
    error text, we do not. /api/v1/alerts, /api/v1/rules, /api/v1/targets?state=active and,
    when configured, Alertmanager's /api/v2/silences go through one ``httpx.AsyncClient``,
    concurrently with the queries; bodies are streamed with the same cap and decoded off the
    event loop. The configured headers go to Prometheus and to Alertmanager.

What a snapshot says when something fails
    - ``error`` is set only when nothing from Prometheus worked: alerts, rules and targets all
      failed and every query has an error. It is the alerts endpoint's error.
    - A query that fails (bad PromQL, timeout...) has its own ``QueryResult.error``; the other
      queries keep their values.
    - An endpoint that fails while something else worked leaves its tuple empty and is named
      with its error in ``endpoint_errors`` (so an empty ``alerts`` never silently means "no
      alerts"); a body without the expected field (``alerts``, ``groups``, ``activeTargets``,
      ``result``) is such a failure. ``warnings`` holds the API's own warnings and infos.
    - Alertmanager failures go to ``alertmanager_error`` only.

Every string from Prometheus or Alertmanager is sanitised here (``console.sanitize``) with a
length cap, and at most ``MAX_ITEMS`` alerts, rules, targets and silences are kept (the worst
first), so a hostile or huge response cannot flood the screen or the memory.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any, Generic, TypeVar

import httpx
import requests
import urllib3.exceptions
from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from console import fleet_prom, redact
from console.config import FleetSettings, Prometheus, Query
from console.model import (
    ErrorKind,
    FleetSeries,
    Labels,
    PromAlert,
    PrometheusSnapshot,
    PromRule,
    QueryResult,
    RuleGroup,
    Sample,
    ScrapeTarget,
    Severity,
    Silence,
    SourceError,
    SourceKey,
)
from console.sanitize import clean as _clean
from console.sanitize import one_line as _one_line
from console.sources.base import (
    BodyTooLarge,
    Stopwatch,
    close_discarded,
    discard_client,
    http_error,
    http_status_error,
    read_capped,
    source_error,
    tls_verify,
)

BODY_LIMIT = 16 * 1024 * 1024  # bytes per response; over it is an error
MAX_ITEMS = 1000  # alerts, rules (all groups together), targets, silences
MAX_SAMPLES = 20  # series kept per query, worst first
MAX_LABELS = 64  # labels / annotations kept per item
MAX_WARNINGS = 50
NAME_LIMIT = 200  # label names, alert/rule/job names
VALUE_LIMIT = 1024  # label values, matchers (one line)
TEXT_LIMIT = 4096  # annotations, rule queries, comments (newlines kept)
WORD_LIMIT = 32  # states and health words
AM_ALERTS_PARAMS = {"active": "true", "silenced": "true", "inhibited": "true", "unprocessed": "true"}
USER_AGENT = "incident-console"

T = TypeVar("T")


# Every string from Prometheus and Alertmanager goes through these two: sanitised, and the
# console's own secrets masked (a proxy, a scrape URL or an annotation may carry a token).
def clean(value: object, limit: int = TEXT_LIMIT) -> str:
    return _clean(redact.scrub(value) if isinstance(value, str) else value, limit)


def one_line(value: object, limit: int = 120) -> str:
    return _one_line(redact.scrub(value) if isinstance(value, str) else value, limit)


class _Failed(Exception):
    """A part of the poll failed with a classified error."""

    def __init__(self, error: SourceError):
        super().__init__(str(error))
        self.error = error


def _bad(text: object) -> _Failed:
    return _Failed(source_error(ErrorKind.BAD_RESPONSE, text))


@dataclass(frozen=True, slots=True)
class _Part(Generic[T]):
    """What one endpoint gave: a value, the API's warnings, or an error."""

    value: T
    warnings: tuple[str, ...] = ()
    error: SourceError | None = None
    total: int = 0  # items the endpoint listed, when more than those kept may have been


# --- decoding -----------------------------------------------------------------------------


def _parse_json(status: int, content_type: str, body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        if status >= 300:
            raise _Failed(http_status_error(status, body)) from None
        media = content_type.split(";", 1)[0].strip() or "no content type"
        raise _bad(f"not JSON ({media}): {_not_json(media, body, exc)}") from None


_TITLE = re.compile(rb"<title[^>]*>(.{0,400}?)</title>", re.IGNORECASE | re.DOTALL)
_LOGIN = re.compile(rb"type=[\"']?password|log ?in|sign ?in|single sign-on|oauth", re.IGNORECASE)
_LOGIN_URL = re.compile(r"log_?-?in|sign_?-?in|sso|oauth|auth", re.IGNORECASE)


def _not_json(media: str, body: bytes, exc: Exception) -> str:
    """What a body that is not JSON is: an HTML page (a login page?) or garbage."""
    head = body[:65536]
    if media != "text/html" and not head.lstrip()[:14].lower().startswith((b"<!doctype html", b"<html")):
        return str(exc)
    title = _TITLE.search(head)
    what = "an HTML page" + (
        f" titled {one_line(title.group(1).decode('utf-8', 'replace'), 80)!r}" if title else ""
    )
    if _LOGIN.search(head):
        what += " — a login page in front of the API? Point the console at the API itself, or give it a token header"
    return what


def redirect_error(status: int, location: str) -> SourceError:
    """A 3xx from an API: never followed (a redirect to a login page would read as HTML, or
    worse as an empty answer); said as what it is."""
    where = one_line(redact.url(location), 200) if location else "no Location"
    if location and _LOGIN_URL.search(location):
        return source_error(
            ErrorKind.AUTH_FAILED,
            f"HTTP {status}: redirected to a login page ({where}); the console needs the API itself "
            "(its own URL, or a token header)",
        )
    return source_error(
        ErrorKind.BAD_RESPONSE,
        f"HTTP {status}: redirected to {where} (redirects are not followed: configure that URL)",
    )


def _api_error(status: int, doc: dict[str, Any]) -> SourceError:
    kind_word, message = one_line(doc.get("errorType"), 40), one_line(doc.get("error"), 400)
    detail = ": ".join(x for x in (kind_word, message) if x)
    if status >= 300:
        base = http_status_error(status)
        kind = ErrorKind.TIMEOUT if kind_word == "timeout" else base.kind
        return source_error(kind, f"{base.reason}: {detail}" if detail else base.reason)
    kind = ErrorKind.TIMEOUT if kind_word == "timeout" else ErrorKind.BAD_RESPONSE
    return source_error(kind, detail or f"unexpected API status {one_line(doc.get('status'), 40)!r}")


def _envelope(status: int, content_type: str, body: bytes) -> tuple[Any, tuple[str, ...]]:
    """``data``, and the ``warnings`` and ``infos`` of a Prometheus API response (infos marked
    ``info:``); _Failed on anything else."""
    doc = _parse_json(status, content_type, body)
    if not isinstance(doc, dict):
        raise _bad(f"expected a JSON object, got {type(doc).__name__}")
    if status >= 300 or doc.get("status") != "success":
        raise _Failed(_api_error(status, doc))
    return doc.get("data"), _warnings(doc.get("warnings")) + _warnings(doc.get("infos"), "info: ")


def _warnings(raw: object, prefix: str = "") -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else [raw] if raw else []
    return tuple(prefix + one_line(w, 400) for w in items[:MAX_WARNINGS])


def _dicts(raw: object) -> Iterator[dict[str, Any]]:
    """The dict items of a JSON list (anything else in it is skipped)."""
    if isinstance(raw, list):
        yield from (item for item in raw if isinstance(item, dict))


def _field(data: object, key: str) -> Any:
    """``data[key]``; a body without it is a bad response, never an empty answer (an instant
    vector served on /api/v1/alerts must not read as "no alerts")."""
    if not isinstance(data, dict):
        raise _bad(f"expected an object with '{key}', got {type(data).__name__}")
    if key not in data:
        keys = ", ".join(one_line(k, NAME_LIMIT) for k in islice(data, 5)) or "none"
        raise _bad(f"no '{key}' in the answer's data (its keys: {keys})")
    return data[key]


def _list(data: object, key: str) -> list[Any]:
    value = _field(data, key)
    if not isinstance(value, list):
        raise _bad(f"'{key}' is {type(value).__name__}, expected a list")
    return value


def _labels(raw: object, *, multiline: bool = False) -> Labels:
    if not isinstance(raw, dict):
        return ()
    text = (lambda v: clean(v, TEXT_LIMIT)) if multiline else (lambda v: one_line(v, VALUE_LIMIT))
    items = sorted(raw.items(), key=lambda kv: str(kv[0]))[:MAX_LABELS]
    return tuple((one_line(k, NAME_LIMIT), text(v)) for k, v in items)


def _word(raw: object) -> str:
    return one_line(raw, WORD_LIMIT)


def _number(raw: object) -> float:
    """A sample value such as "1.5e+02", "NaN" or "+Inf"; anything unreadable is NaN."""
    try:
        return float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,12}))?\s*([Zz]|[+-]\d{2}:?\d{2})?"
)


def parse_time(raw: object) -> float | None:
    """RFC 3339 (with up to nanosecond fractions, as Prometheus and Alertmanager emit) or a
    number -> epoch seconds. Go's zero time ("0001-01-01T00:00:00Z") and garbage -> None."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw) if math.isfinite(raw) and raw > 0 else None
    match = _RFC3339.fullmatch(raw.strip()) if isinstance(raw, str) else None
    if match is None:
        return None
    date, clock, fraction, zone = match.groups()
    if not zone or zone in "Zz":
        zone = "+00:00"
    elif ":" not in zone:
        zone = f"{zone[:3]}:{zone[3:]}"
    try:
        seconds = datetime.fromisoformat(f"{date}T{clock}{zone}").timestamp()
    except ValueError:
        return None
    if seconds <= 0:
        return None
    return seconds + float(f"0.{fraction}") if fraction else seconds


# --- parsers: one small function per shape --------------------------------------------------


def _samples(result_type: str, result: Any) -> list[Sample]:
    if result_type == "scalar" and isinstance(result, list) and len(result) == 2:
        return [Sample((), _number(result[1]))]
    if result_type == "vector" and isinstance(result, list):
        return [
            Sample(_labels(item.get("metric")), _number(_pair_value(item.get("value"))))
            for item in _dicts(result)
        ]
    if result_type == "matrix":
        raise _bad("the query returns a range vector (matrix); use an instant vector")
    raise _bad(f"unsupported result type {one_line(result_type, 40)!r}")


def _pair_value(raw: object) -> object:
    return raw[1] if isinstance(raw, list) and len(raw) == 2 else None


def _result_type(data: object, result: Any) -> str:
    declared = data.get("resultType") if isinstance(data, dict) else None
    if isinstance(declared, str):
        return declared
    if isinstance(result, list) and result and isinstance(result[0], dict):
        return "matrix" if "values" in result[0] else "vector"
    return "scalar" if isinstance(result, list) and len(result) == 2 else "vector"


def query_value(
    samples: Iterable[Sample], direction: str = "above"
) -> tuple[float | None, tuple[Sample, ...]]:
    """The worst value (max for "above", min for "below"; NaN never counts, no samples -> None)
    and the samples worst first, NaN last, capped at MAX_SAMPLES."""
    samples = list(samples)
    numbers = sorted((s for s in samples if not math.isnan(s.value)), key=lambda s: s.value)
    if direction != "below":
        numbers.reverse()
    ordered = numbers + [s for s in samples if math.isnan(s.value)]
    return (numbers[0].value if numbers else None), tuple(ordered[:MAX_SAMPLES])


def _alert(raw: dict[str, Any]) -> PromAlert:
    labels = _labels(raw.get("labels"))
    names = dict(labels)
    return PromAlert(
        name=names.get("alertname", ""),
        state=_word(raw.get("state")),
        severity=Severity.from_label(names.get("severity")),
        labels=labels,
        annotations=_labels(raw.get("annotations"), multiline=True),
        active_at=parse_time(raw.get("activeAt")),
        value=one_line(raw.get("value"), 64),
    )


def _alerts(data: object) -> tuple[PromAlert, ...]:
    alerts = [_alert(raw) for raw in _dicts(_list(data, "alerts"))]
    alerts.sort(key=lambda a: (-a.severity, a.state != "firing", a.active_at or 0.0, a.name))
    return tuple(alerts[:MAX_ITEMS])


def _seconds(raw: object) -> float | None:
    """A duration in seconds as the rules API gives it (a number); anything else is None."""
    if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw) and raw >= 0:
        return float(raw)
    return None


def _rule(raw: dict[str, Any]) -> PromRule:
    alerts = raw.get("alerts")
    labels = _labels(raw.get("labels"))
    return PromRule(
        name=one_line(raw.get("name"), NAME_LIMIT),
        type=_word(raw.get("type")),
        state=_word(raw.get("state")),
        health=_word(raw.get("health")),
        last_error=one_line(raw.get("lastError"), 400),
        query=clean(raw.get("query"), TEXT_LIMIT),
        duration=_seconds(raw.get("duration")),
        labels=labels,
        severity=dict(labels).get("severity", ""),
        evaluation_time=_seconds(raw.get("evaluationTime")),
        last_evaluation=parse_time(raw.get("lastEvaluation")),
        alerts=len(alerts) if isinstance(alerts, list) else 0,
    )


def _rule_groups(data: object) -> _Part[tuple[RuleGroup, ...]]:
    """Every group, with at most MAX_ITEMS rules kept all together; ``_Part.value`` holds the
    groups, the count of rules the API listed travels as the part's ``total``."""
    groups: list[RuleGroup] = []
    room, total = MAX_ITEMS, 0
    for raw in _dicts(_list(data, "groups")):
        listed = raw.get("rules") if isinstance(raw.get("rules"), list) else []
        total += len(listed)
        if len(groups) >= MAX_ITEMS:
            continue  # counted, not kept
        rules = [_rule(rule) for rule in islice(_dicts(listed), room)]
        room -= len(rules)
        name, file = one_line(raw.get("name"), NAME_LIMIT), one_line(raw.get("file"), VALUE_LIMIT)
        groups.append(
            RuleGroup(
                name=name,
                file=file,
                rules=tuple(rules),
                interval=_seconds(raw.get("interval")),
                evaluation_time=_seconds(raw.get("evaluationTime")),
                last_evaluation=parse_time(raw.get("lastEvaluation")),
                rules_total=len(listed),
            )
        )
    return _Part(tuple(groups), total=total)


def _target(raw: dict[str, Any]) -> ScrapeTarget:
    labels = raw.get("labels") if isinstance(raw.get("labels"), dict) else {}
    return ScrapeTarget(
        job=one_line(labels.get("job") or raw.get("scrapePool"), NAME_LIMIT),
        instance=one_line(labels.get("instance") or raw.get("scrapeUrl"), VALUE_LIMIT),
        health=_word(raw.get("health")),
        last_error=one_line(raw.get("lastError"), 400),
        last_scrape=parse_time(raw.get("lastScrape")),
    )


def _targets(data: object) -> tuple[ScrapeTarget, ...]:
    targets = [_target(raw) for raw in _dicts(_list(data, "activeTargets"))]
    targets.sort(key=lambda t: (t.health == "up", t.job, t.instance))
    return tuple(targets[:MAX_ITEMS])


_MATCH_OPS = {(False, True): "=", (True, True): "=~", (False, False): "!=", (True, False): "!~"}


def matcher_text(raw: dict[str, Any]) -> str:
    """An Alertmanager matcher as name=value, name=~value, name!=value or name!~value."""
    op = _MATCH_OPS[(raw.get("isRegex") is True, raw.get("isEqual") is not False)]
    return f"{one_line(raw.get('name'), NAME_LIMIT)}{op}{one_line(raw.get('value'), VALUE_LIMIT)}"


def _silence(raw: dict[str, Any]) -> Silence:
    status = raw.get("status") if isinstance(raw.get("status"), dict) else {}
    return Silence(
        id=one_line(raw.get("id"), 64),
        state=_word(status.get("state")),
        matchers=tuple(matcher_text(m) for m in islice(_dicts(raw.get("matchers")), MAX_LABELS)),
        starts_at=parse_time(raw.get("startsAt")),
        ends_at=parse_time(raw.get("endsAt")),
        created_by=one_line(raw.get("createdBy"), NAME_LIMIT),
        comment=clean(raw.get("comment"), TEXT_LIMIT),
    )


_SILENCE_ORDER = {"active": 0, "pending": 1, "expired": 2}


def _silences(doc: object) -> tuple[Silence, ...]:
    if not isinstance(doc, list):
        raise _bad(f"expected a JSON list of silences, got {type(doc).__name__}")
    silences = [_silence(raw) for raw in _dicts(doc)]
    silences.sort(key=lambda s: (_SILENCE_ORDER.get(s.state, 3), -(s.ends_at or 0.0), s.id))
    return tuple(silences[:MAX_ITEMS])


def _am_alert(raw: dict[str, Any]) -> PromAlert:
    labels = _labels(raw.get("labels"))
    names = dict(labels)
    status = raw.get("status") if isinstance(raw.get("status"), dict) else {}

    def ids(key: str) -> tuple[str, ...]:
        found = status.get(key)
        items = found if isinstance(found, list) else []
        return tuple(one_line(x, 64) for x in items[:MAX_LABELS])

    return PromAlert(
        name=names.get("alertname", ""),
        state="firing",  # Alertmanager holds the alerts Prometheus fires
        severity=Severity.from_label(names.get("severity")),
        labels=labels,
        annotations=_labels(raw.get("annotations"), multiline=True),
        active_at=parse_time(raw.get("startsAt")),
        origin="alertmanager",
        fingerprint=one_line(raw.get("fingerprint"), 64),
        status=_word(status.get("state")),
        silenced_by=ids("silencedBy"),
        inhibited_by=ids("inhibitedBy"),
        ends_at=parse_time(raw.get("endsAt")),
        generator_url=one_line(raw.get("generatorURL"), VALUE_LIMIT),
    )


def _am_alerts(doc: object) -> tuple[PromAlert, ...]:
    if not isinstance(doc, list):
        raise _bad(f"expected a JSON list of alerts, got {type(doc).__name__}")
    alerts = [_am_alert(raw) for raw in _dicts(doc)]
    alerts.sort(key=lambda a: (-a.severity, a.active_at or 0.0, a.name))
    return tuple(alerts[:MAX_ITEMS])


# --- errors from requests (the query path) ------------------------------------------------


def _causes(exc: BaseException) -> list[BaseException]:
    """exc, its causes/contexts, urllib3's MaxRetryError.reason and exception args, breadth first."""
    found: list[BaseException] = []
    todo: list[object] = [exc]
    while todo and len(found) < 16:
        item = todo.pop(0)
        if isinstance(item, BaseException) and item not in found:
            found.append(item)
            todo += [getattr(item, "reason", None), item.__cause__, item.__context__, *item.args]
    return found


def requests_error(exc: BaseException) -> SourceError:
    """Classify an exception from requests/urllib3/prometheus-api-client with a one-line reason."""
    if isinstance(exc, _Failed):
        return exc.error
    if isinstance(exc, BodyTooLarge):
        return source_error(ErrorKind.BAD_RESPONSE, exc)
    chain = _causes(exc)
    oserror = next((e for e in chain if isinstance(e, OSError) and e.strerror), None)
    detail = oserror.strerror if oserror else str(exc)
    if any(isinstance(e, requests.exceptions.SSLError | ssl.SSLError) for e in chain):
        return source_error(ErrorKind.TLS, detail)
    # NewConnectionError subclasses urllib3's ConnectTimeoutError: test it before timeouts.
    if any(isinstance(e, urllib3.exceptions.NewConnectionError) for e in chain):
        return source_error(ErrorKind.UNREACHABLE, f"cannot connect: {detail}")
    timeouts = requests.Timeout | urllib3.exceptions.TimeoutError | TimeoutError
    if any(isinstance(e, timeouts) for e in chain):
        return source_error(ErrorKind.TIMEOUT, "no answer in time")
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
        return source_error(ErrorKind.CONFIG, exc)
    if isinstance(exc, requests.ConnectionError):
        return source_error(ErrorKind.UNREACHABLE, detail)
    if isinstance(exc, requests.RequestException):
        return source_error(ErrorKind.BAD_RESPONSE, f"{type(exc).__name__}: {exc}")
    return source_error(ErrorKind.INTERNAL, f"{type(exc).__name__}: {exc}")


def _read_capped_sync(response: requests.Response, limit: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        response.close()
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(64 * 1024):
        size += len(chunk)
        if size > limit:
            response.close()
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    response._content = body  # requests' body cache: the library's .json() reads this copy
    return body


# --- the source ---------------------------------------------------------------------------


class PrometheusSource:
    """Polls one Prometheus (and optionally its Alertmanager). ``poll()`` never raises."""

    key = SourceKey.prometheus()
    kind = "prometheus"

    def __init__(
        self,
        config: Prometheus,
        interval: float,
        *,
        body_limit: int = BODY_LIMIT,
        fleet: FleetSettings | None = None,
    ):
        self.config = config
        #: ``fleet:`` when it names this server: each poll also reads the Postgres fleet
        #: (postgres_exporter's metrics, console/fleet_prom.py).
        self.fleet = fleet
        self._last_fleet: tuple[tuple[FleetSeries, ...], float] | None = None
        self.key = config.key  # prometheus, or prometheus:<name> for a server of a list
        self.name = config.name or ""
        self.interval = interval
        # Each part is bounded by config.timeout and they run side by side; a second of slack
        # lets the poll report per-part timeouts before the poller's hard limit hits.
        self.timeout = config.timeout + 1.0
        self.body_limit = body_limit
        self.url = redact.url(config.url)
        self.alertmanager_url = redact.url(config.alertmanager_url or "")
        self._base = config.url.rstrip("/")
        self._am_base = (config.alertmanager_url or "").rstrip("/")
        self._headers = {"User-Agent": USER_AGENT} | {k: h.value for k, h in config.headers.items()}
        # load_config registers these too; a source built from a bare config must not leak them.
        redact.register(*config.secrets())
        self._seen = threading.local()  # the envelope the response hook saw, per thread
        self._session = requests.Session()
        self._session.verify = config.verify_tls
        self._session.headers.update(self._headers)
        self._session.hooks["response"].append(self._on_response)
        self._session.max_redirects = 0  # a 3xx is an error the hook names (redirect_error)
        self._prom = PrometheusConnect(
            url=self._base,
            headers=None,  # already on the session
            retry=Retry(total=0, raise_on_status=False),
            session=self._session,
            timeout=config.timeout,  # type: ignore[arg-type]  # float works (requests)
        )
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._interrupted = False

    # -- Source protocol --

    async def poll(self) -> PrometheusSnapshot:
        watch = Stopwatch()
        try:
            return await self._poll(watch)
        except Exception as exc:  # a bug here must not take the poller down
            error = source_error(ErrorKind.INTERNAL, f"{type(exc).__name__}: {exc}")
            return self.failed(error, watch.taken_at, watch.elapsed)
        finally:
            if self._interrupted:  # a request timed out or was cancelled (see discard_client)
                self._interrupted = False
                client, self._client = self._client, None
                if self._client_loop is asyncio.get_running_loop():
                    discard_client(client)

    def failed(self, error: SourceError, taken_at: float, latency: float | None) -> PrometheusSnapshot:
        return PrometheusSnapshot(
            source=self.key,
            name=self.name,
            taken_at=taken_at,
            latency=latency,
            error=error,
            url=self.url,
            alertmanager_url=self.alertmanager_url,
        )

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await client.aclose()
        await close_discarded()
        self._prom.close()

    # -- one poll --

    async def _poll(self, watch: Stopwatch) -> PrometheusSnapshot:
        queries, alerts, rules, targets, silences, am_alerts, fleet = await asyncio.gather(
            self._queries(),
            self._api("/api/v1/alerts", _alerts),
            self._api("/api/v1/rules", _rule_groups),
            self._api("/api/v1/targets", _targets, {"state": "active"}),
            self._alertmanager("/api/v2/silences", _silences),
            # every alert Alertmanager holds: active, silenced, inhibited and not yet routed
            self._alertmanager("/api/v2/alerts", _am_alerts, AM_ALERTS_PARAMS),
            self._fleet(watch.taken_at),
        )
        parts = {"alerts": alerts, "rules": rules, "targets": targets}
        failures = tuple((name, part.error) for name, part in parts.items() if part.error)
        nothing_worked = len(failures) == len(parts) and all(q.error for q in queries.value)
        if fleet.error is not None:
            failures += (("fleet", fleet.error),)
        warnings = [*queries.warnings, *(w for part in parts.values() for w in part.warnings)]
        am_read = bool(self._am_base) and am_alerts.error is None
        return PrometheusSnapshot(
            source=self.key,
            name=self.name,
            taken_at=watch.taken_at,
            latency=watch.elapsed,
            error=failures[0][1] if nothing_worked else None,
            endpoint_errors=() if nothing_worked else failures,
            url=self.url,
            queries=queries.value,
            alerts=alerts.value,
            rule_groups=rules.value,
            rules_total=rules.total,
            targets=targets.value,
            warnings=tuple(dict.fromkeys(warnings))[:MAX_WARNINGS],
            alertmanager_url=self.alertmanager_url,
            silences=silences.value,
            alertmanager_error=silences.error or am_alerts.error,
            alertmanager_alerts=am_alerts.value if am_read else None,
            fleet=fleet.value[0] if fleet.value else None,
            fleet_taken_at=fleet.value[1] if fleet.value else None,
        )

    # -- PromQL through prometheus-api-client, in a thread --

    async def _queries(self) -> _Part[tuple[QueryResult, ...]]:
        budget = self.config.timeout
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(self._run_queries, time.monotonic() + budget), budget + 0.5
            )
        except TimeoutError:  # the thread is stuck (DNS?); it ends on its own request timeout
            error = source_error(ErrorKind.TIMEOUT, "queries did not finish in time")
            return _Part(tuple(self._result(q, error=error) for q in self.config.queries))

    def _run_queries(self, deadline: float) -> _Part[tuple[QueryResult, ...]]:
        results: list[QueryResult] = []
        warnings: list[str] = []
        for query in self.config.queries:
            remaining = deadline - time.monotonic()
            if remaining <= 0.05:
                late = source_error(ErrorKind.TIMEOUT, "poll deadline reached before this query ran")
                results.append(self._result(query, error=late))
                continue
            result, notes = self._run_query(query, remaining)
            results.append(result)
            warnings += notes
        return _Part(tuple(results), tuple(warnings))

    def _run_query(self, query: Query, timeout: float) -> tuple[QueryResult, tuple[str, ...]]:
        seen = self._seen
        seen.data, seen.warnings, seen.error = None, (), None
        try:
            result = self._prom.custom_query(query.query, timeout=timeout)  # type: ignore[arg-type]
            if seen.error:
                raise _Failed(seen.error)
            direction = query.threshold.direction if query.threshold else "above"
            value, samples = query_value(_samples(_result_type(seen.data, result), result), direction)
        except Exception as exc:  # PrometheusApiClientException, RequestException, anything
            return self._result(query, error=seen.error or requests_error(exc)), seen.warnings
        return self._result(query, value=value, samples=samples), seen.warnings

    def _on_response(self, response: requests.Response, *args: object, **kwargs: object) -> None:
        """requests response hook (runs before the library sees the response): read the body
        with a cap and keep the envelope's data, warnings and error for ``_run_query``."""
        seen = self._seen
        if response.is_redirect:  # not followed (max_redirects 0): say where it led
            seen.error = redirect_error(response.status_code, response.headers.get("location", ""))
            response._content = b""  # requests reads a redirect's body before it refuses to go on
            response.close()
            return
        body = _read_capped_sync(response, self.body_limit)
        try:
            seen.data, seen.warnings = _envelope(
                response.status_code, response.headers.get("content-type", ""), body
            )
            _field(seen.data, "result")  # the library indexes data["result"] blindly
        except _Failed as exc:
            seen.error = exc.error

    def _result(self, query: Query, **fields: Any) -> QueryResult:
        return QueryResult(id=query.id, query=query.query, unit=query.unit, **fields)

    # -- the Postgres fleet through postgres_exporter's metrics --

    async def _fleet(self, taken_at: float) -> _Part[tuple[tuple[FleetSeries, ...], float] | None]:
        """The fleet queries side by side (instant queries through httpx, like the other API
        reads: capped, without retries), and when they were read. A failed query is named in
        endpoint_errors as ``fleet``; the clusters come from those that answered; without
        ``up``, the last answer stays, with its time (its rows age and go stale)."""
        if self.fleet is None:
            return _Part(None)
        named = fleet_prom.queries(self.fleet)
        parts = await asyncio.gather(
            *(self._api("/api/v1/query", fleet_prom.parse_vector, {"query": q}) for q in named.values())
        )
        failed = [(name, part.error) for name, part in zip(named, parts, strict=True) if part.error]
        error = SourceError(failed[0][1].kind, f"{failed[0][0]}: {failed[0][1].reason}") if failed else None
        answers = {name: list(part.value) for name, part in zip(named, parts, strict=True) if not part.error}
        if "up" not in answers:
            return _Part(self._last_fleet, error=error)
        warnings = tuple(w for part in parts for w in part.warnings)
        self._last_fleet = (fleet_prom.assemble(self.fleet, answers), taken_at)
        return _Part(self._last_fleet, warnings, error=error)

    # -- the HTTP API through httpx --

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = httpx.AsyncClient(
                headers=self._headers,
                verify=tls_verify(self.config.verify_tls),
                timeout=self.config.timeout,
                follow_redirects=False,
            )
            self._client_loop = loop
        return self._client

    async def _fetch(self, url: str, decode: Callable[[int, str, bytes], T], params: dict[str, str]) -> T:
        """GET ``url`` within the timeout, body capped, then ``decode`` it in a worker thread."""
        try:
            async with asyncio.timeout(self.config.timeout):
                async with self._http().stream("GET", url, params=params) as response:
                    body = await read_capped(response, self.body_limit)
        except (TimeoutError, asyncio.CancelledError):
            self._interrupted = True  # the client is discarded once the poll's other requests are done
            raise
        if response.is_redirect:
            raise _Failed(redirect_error(response.status_code, response.headers.get("location", "")))
        content_type = response.headers.get("content-type", "")
        return await asyncio.to_thread(decode, response.status_code, content_type, body)

    async def _api(
        self,
        path: str,
        parse: Callable[[Any], tuple[T, ...] | _Part[tuple[T, ...]]],
        params: dict[str, str] | None = None,
    ) -> _Part[tuple[T, ...]]:
        def decode(status: int, content_type: str, body: bytes) -> _Part[tuple[T, ...]]:
            data, warnings = _envelope(status, content_type, body)
            parsed = _guarded(parse, data, path)
            if isinstance(parsed, _Part):
                return _Part(parsed.value, warnings, total=parsed.total)
            return _Part(parsed, warnings)

        try:
            return await self._fetch(self._base + path, decode, params or {})
        except Exception as exc:
            return _Part((), error=_fetch_error(exc))

    async def _alertmanager(
        self, path: str, parse: Callable[[Any], tuple[T, ...]], params: dict[str, str] | None = None
    ) -> _Part[tuple[T, ...]]:
        """One of Alertmanager's v2 endpoints (a bare JSON list, no envelope)."""
        if not self._am_base:
            return _Part(())
        what = path.rsplit("/", 1)[-1]

        def decode(status: int, content_type: str, body: bytes) -> _Part[tuple[T, ...]]:
            if status >= 300:
                raise _Failed(http_status_error(status, body))
            return _Part(_guarded(parse, _parse_json(status, content_type, body), what))

        try:
            return await self._fetch(self._am_base + path, decode, params or {})
        except Exception as exc:
            error = _fetch_error(exc)
            return _Part((), error=SourceError(error.kind, f"{what}: {error.reason}"))


def _guarded(parse: Callable[[Any], T], data: Any, what: str) -> T:
    """Run a parser; a shape it did not expect is a bad response, not an internal error."""
    try:
        return parse(data)
    except _Failed:
        raise
    except Exception as exc:
        raise _bad(f"unexpected {what} data ({type(exc).__name__}: {exc})") from None


def _fetch_error(exc: BaseException) -> SourceError:
    if isinstance(exc, _Failed):
        return exc.error
    if isinstance(exc, BodyTooLarge):
        return source_error(ErrorKind.BAD_RESPONSE, exc)
    return http_error(exc)
