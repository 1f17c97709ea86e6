"""Immutable snapshots: what a source saw at one moment, and nothing that can change later.

Every source returns one of these from ``poll()`` and never raises. A failed poll is a
snapshot too: ``error`` says what kind of failure and why, in one line. All text fields hold
sanitised (``console.sanitize.clean``) and redacted strings; widgets render them as Text.
Times are UNIX epoch seconds (float), durations are seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum


class ErrorKind(StrEnum):
    UNREACHABLE = "unreachable"
    AUTH_FAILED = "auth failed"
    PERMISSION_DENIED = "permission denied"
    TIMEOUT = "timeout"
    BAD_RESPONSE = "bad response"
    TLS = "tls error"
    CONFIG = "config error"
    INTERNAL = "internal error"


@dataclass(frozen=True, slots=True)
class SourceError:
    kind: ErrorKind
    reason: str  # one line, sanitised and redacted

    def __str__(self) -> str:
        return f"{self.kind}: {self.reason}"


class Severity(IntEnum):
    """Ordered so that ``max()`` gives the worst. UNKNOWN ranks between OK and WARNING."""

    OK = 0
    INFO = 1
    UNKNOWN = 2
    WARNING = 3
    CRITICAL = 4

    @property
    def word(self) -> str:
        return _SEVERITY_WORDS[self]

    @classmethod
    def from_word(cls, word: str) -> Severity:
        """The severity a :attr:`word` names (as the journal keeps it); OK for anything else."""
        return _SEVERITY_BY_WORD.get(word, cls.OK)

    @classmethod
    def from_label(cls, value: str | None) -> Severity:
        """Map a Prometheus ``severity`` label; anything unrecognised counts as a warning."""
        key = (value or "").strip().lower()
        return _SEVERITY_LABELS.get(key, cls.WARNING)


_SEVERITY_WORDS = {
    Severity.OK: "OK",
    Severity.INFO: "INFO",
    Severity.UNKNOWN: "UNKNOWN",
    Severity.WARNING: "WARN",
    Severity.CRITICAL: "CRIT",
}
_SEVERITY_BY_WORD = {word: severity for severity, word in _SEVERITY_WORDS.items()}
_SEVERITY_LABELS = {
    "critical": Severity.CRITICAL,
    "crit": Severity.CRITICAL,
    "page": Severity.CRITICAL,
    "sev0": Severity.CRITICAL,
    "sev1": Severity.CRITICAL,
    "high": Severity.CRITICAL,
    "warning": Severity.WARNING,
    "warn": Severity.WARNING,
    "medium": Severity.WARNING,
    "sev2": Severity.WARNING,
    "info": Severity.INFO,
    "low": Severity.INFO,
    "none": Severity.INFO,
}


class SourceKind(StrEnum):
    HEALTH = "health"
    PROMETHEUS = "prometheus"
    POSTGRES = "postgres"


class SourceKey(str):
    """The key of one source: ``prometheus``, ``health:<target>`` or ``postgres:<cluster>``.

    It is the text (the key of every mapping by source, the journal's ``source`` field) and it
    knows its parts, so nothing splits the text again: make it with :meth:`health`,
    :meth:`prometheus` or :meth:`postgres`. Text read back from outside (a journal, a test) is
    turned into one by :meth:`of`, once."""

    kind: SourceKind | None
    name: str

    def __new__(cls, kind: SourceKind | None, name: str = "", *, text: str | None = None) -> SourceKey:
        key = super().__new__(cls, text if text is not None else (f"{kind}:{name}" if name else str(kind)))
        key.kind, key.name = kind, name
        return key

    @classmethod
    def health(cls, target: str) -> SourceKey:
        return cls(SourceKind.HEALTH, target)

    @classmethod
    def prometheus(cls) -> SourceKey:
        return cls(SourceKind.PROMETHEUS)

    @classmethod
    def postgres(cls, cluster: str) -> SourceKey:
        return cls(SourceKind.POSTGRES, cluster)

    @property
    def dotted(self) -> str:
        """The key as threshold ids spell their source: ``postgres.main``, ``health.storefront``."""
        return f"{self.kind}.{self.name}" if self.kind and self.name else str(self).replace(":", ".")

    @classmethod
    def of(cls, text: str) -> SourceKey:
        if isinstance(text, SourceKey):
            return text
        kind, _, name = str(text).partition(":")
        try:
            return cls(SourceKind(kind), name, text=str(text))
        except ValueError:  # a source of another kind (a later release's): only its text is known
            return cls(None, "", text=str(text))


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """Fields every snapshot has. ``source`` is a stable key such as ``postgres:main``."""

    source: SourceKey
    taken_at: float
    latency: float | None = None
    error: SourceError | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.source, SourceKey):  # a key given as text (a test, a tool)
            object.__setattr__(self, "source", SourceKey.of(self.source))

    @property
    def ok(self) -> bool:
        return self.error is None


# --- health -------------------------------------------------------------------------------


class HealthStatus(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """One named check inside a health response (a health+json check, a Spring component,
    a Kubernetes ``[+]name ok`` line)."""

    name: str
    status: HealthStatus
    detail: str = ""

    @property
    def component(self) -> str:
        """What is checked: health+json names a check ``component:measurement``
        (``google-analytics:api``); other formats name the component alone."""
        return self.name.split(":", 1)[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthSnapshot(Snapshot):
    target: str
    url: str  # redacted for display
    format: str
    status: HealthStatus = HealthStatus.UNKNOWN
    http_status: int | None = None
    output: str = ""  # top-level message from the body, if any
    checks: tuple[HealthCheck, ...] = ()


# --- prometheus ---------------------------------------------------------------------------

Labels = tuple[tuple[str, str], ...]

#: Labels every series of a scrape target carries: said after the series' own, so that a cut
#: subject keeps what tells one alert from another (provider=hubspot, not instance=...).
TARGET_LABELS = ("job", "instance")


def _target_rank(label: tuple[str, str]) -> int:
    """0 for a series' own label; 1 + its place in TARGET_LABELS for a scrape target's. A
    probe's instance is the URL it probes (blackbox_exporter): what the series is about, so it
    counts as its own."""
    name, value = label
    if (name == "instance" and "://" in value) or name not in TARGET_LABELS:
        return 0
    return 1 + TARGET_LABELS.index(name)


def own_labels(labels: Labels, leave_out: tuple[str, ...] = ()) -> Labels:
    """The labels of ``labels`` that are the series' own (not ``leave_out``), in their order."""
    return tuple(kv for kv in labels if kv[0] not in leave_out and _target_rank(kv) == 0)


def label_subject(labels: Labels, leave_out: tuple[str, ...] = ()) -> str:
    """``k=v, ...`` of ``labels`` without ``leave_out``: the series' own labels in their order,
    then job, then instance."""
    kept = sorted((kv for kv in labels if kv[0] not in leave_out), key=_target_rank)  # stable
    return ", ".join(f"{k}={v}" for k, v in kept)


@dataclass(frozen=True, slots=True)
class Sample:
    labels: Labels
    value: float


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryResult:
    id: str
    query: str
    unit: str = ""
    value: float | None = None  # the one value thresholds look at (worst series)
    samples: tuple[Sample, ...] = ()
    error: SourceError | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PromAlert:
    name: str
    state: str  # pending | firing
    severity: Severity
    labels: Labels
    annotations: Labels
    active_at: float | None
    value: str = ""
    # An alert read from Alertmanager's /api/v2/alerts (``origin`` "alertmanager") says more:
    origin: str = "prometheus"  # prometheus | alertmanager
    fingerprint: str = ""  # Alertmanager's
    status: str = ""  # Alertmanager's state: active | suppressed | unprocessed
    silenced_by: tuple[str, ...] = ()  # ids of the silences that cover it
    inhibited_by: tuple[str, ...] = ()  # fingerprints of the alerts that inhibit it
    ends_at: float | None = None
    generator_url: str = ""  # the Prometheus (rule expression page) that sent it

    def annotation(self, key: str) -> str:
        return dict(self.annotations).get(key, "")

    def label(self, key: str) -> str:
        return dict(self.labels).get(key, "")


@dataclass(frozen=True, slots=True, kw_only=True)
class PromRule:
    name: str
    type: str  # alerting | recording
    state: str = ""  # inactive | pending | firing (alerting rules)
    health: str = ""  # ok | err | unknown
    last_error: str = ""
    query: str = ""
    duration: float | None = None  # the alerting rule's ``for``, seconds
    labels: Labels = ()  # the rule's own labels (``severity``...)
    evaluation_time: float | None = None  # seconds the last evaluation took
    last_evaluation: float | None = None
    alerts: int = 0  # its active (pending or firing) alerts
    severity: str = ""  # its ``severity`` label as written ("" when it has none)


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleGroup:
    name: str
    file: str
    rules: tuple[PromRule, ...] = ()
    interval: float | None = None  # seconds between evaluations
    evaluation_time: float | None = None  # seconds the group's last evaluation took
    last_evaluation: float | None = None
    #: rules the API listed for this group (more than ``rules`` when the source capped them)
    rules_total: int = 0

    @property
    def slow(self) -> bool:
        """Its last evaluation took longer than its interval (evaluations are being skipped)."""
        return bool(self.interval and self.evaluation_time and self.evaluation_time > self.interval)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrapeTarget:
    job: str
    instance: str
    health: str  # up | down | unknown
    last_error: str = ""
    last_scrape: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Silence:
    id: str
    state: str  # active | pending | expired
    matchers: tuple[str, ...]  # rendered as name=value / name=~value
    starts_at: float | None
    ends_at: float | None
    created_by: str = ""
    comment: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetSeries:
    """One Postgres cluster as a Prometheus sees it through postgres_exporter (the fleet view
    of clusters the console does not connect to: console/fleet_prom.py). ``None``: no series."""

    cluster: str  # the fleet label's value, or its alias (fleet.aliases)
    labels: Labels  # ((the fleet label, its raw value),): what alerts about it carry
    exporter_up: bool | None = None  # ``up`` of the exporter's scrape
    pg_up: bool | None = None  # ``pg_up``: the exporter reached Postgres
    scrape_age: float | None = None  # seconds from the last scrape to the query's evaluation
    connections_by_state: tuple[tuple[str, int], ...] = ()  # pg_stat_activity_count by state
    max_connections: int | None = None  # pg_settings_max_connections
    locks: int | None = None  # pg_locks_count, every mode (granted or awaited)
    longest_tx: float | None = None  # pg_stat_activity_max_tx_duration, seconds

    @property
    def connections_used(self) -> int | None:
        return sum(n for _, n in self.connections_by_state) if self.connections_by_state else None


@dataclass(frozen=True, slots=True, kw_only=True)
class PrometheusSnapshot(Snapshot):
    url: str
    name: str = ""  # the server's name in the config ("" for the single-server form)
    queries: tuple[QueryResult, ...] = ()
    alerts: tuple[PromAlert, ...] = ()
    rule_groups: tuple[RuleGroup, ...] = ()
    targets: tuple[ScrapeTarget, ...] = ()
    warnings: tuple[str, ...] = ()  # the API's partial-data warnings and infos, as Prometheus said them
    #: ("alerts" | "rules" | "targets", why) for each API endpoint that failed while others worked
    endpoint_errors: tuple[tuple[str, SourceError], ...] = ()
    alertmanager_url: str = ""
    silences: tuple[Silence, ...] = ()
    alertmanager_error: SourceError | None = None
    #: Alertmanager's alerts (active, silenced, inhibited, unprocessed), when it was read: None
    #: when no alertmanager_url is set or the read failed (see ``alertmanager_error``).
    alertmanager_alerts: tuple[PromAlert, ...] | None = None
    #: rules the rules API listed, all groups together (more than the rules kept when capped)
    rules_total: int = 0
    #: The clusters postgres_exporter reports through this server (config ``fleet:``); None when
    #: this server does not read the fleet, or the fleet queries failed (see endpoint_errors).
    fleet: tuple[FleetSeries, ...] | None = None
    #: When ``fleet`` was read: this poll's time, or an earlier poll's when this one's fleet
    #: queries failed (its last answer is kept, and ages).
    fleet_taken_at: float | None = None

    @property
    def label(self) -> str:
        """How the console names this server: its config name, or "prometheus"."""
        return self.name or "prometheus"

    @property
    def rules_kept(self) -> int:
        return sum(len(g.rules) for g in self.rule_groups)


# --- postgres -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LockWait:
    """The lock a waiting session asked for and did not get."""

    locktype: str
    mode: str
    relation: str = ""  # schema-qualified name, or an OID when in another database
    detail: str = ""  # what exactly: "tuple (0,1)", "transaction 731", "advisory key 1:2"
    since: float | None = None  # when the wait began (pg_locks.waitstart, PG14+)


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    pid: int
    backend_start: float | None
    user: str
    database: str
    application: str
    client: str
    state: str  # active | idle | idle in transaction | idle in transaction (aborted) | ...
    wait_event_type: str
    wait_event: str
    xact_start: float | None
    query_start: float | None
    state_change: float | None
    backend_type: str
    query: str
    blocked_by: tuple[int, ...] = ()
    lock: LockWait | None = None

    @property
    def waiting_on_lock(self) -> bool:
        return self.wait_event_type == "Lock"


@dataclass(frozen=True, slots=True, kw_only=True)
class LockNode:
    """A node of the blocking tree: roots are blockers that wait on nobody."""

    pid: int
    user: str
    state: str
    query: str
    lock: LockWait | None  # what this node waits for; None for a root
    waiting_for: float | None  # seconds in the current wait (state_change to server now)
    children: tuple[LockNode, ...] = ()

    def walk(self, depth: int = 0):
        """(depth, node) in pre-order. Iterative: a chain of nested ``yield from`` costs its
        depth for every node, and a lock chain can be hundreds deep."""
        stack = [(depth, self)]
        while stack:
            at, node = stack.pop()
            yield at, node
            stack.extend((at + 1, child) for child in reversed(node.children))


@dataclass(frozen=True, slots=True, kw_only=True)
class Statement:
    queryid: int | None
    query: str
    calls: int
    total_ms: float
    mean_ms: float
    rows: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Privileges:
    user: str
    superuser: bool = False
    pg_monitor: bool = False
    pg_signal_backend: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PostgresSnapshot(Snapshot):
    cluster: str
    dsn: str  # redacted
    server_version: str = ""
    server_version_num: int = 0
    server_now: float | None = None
    privileges: Privileges | None = None
    max_connections: int = 0
    reserved_connections: int = 0
    sessions: tuple[Session, ...] = ()
    connections_by_state: tuple[tuple[str, int], ...] = ()
    xact_total: int | None = None  # commits + rollbacks, all databases: rate = transactions/s
    lock_tree: tuple[LockNode, ...] = ()
    statements: tuple[Statement, ...] = ()
    statements_status: str = ""  # "ok", "not installed", "not loaded", "no permission"
    notes: tuple[str, ...] = ()  # explanations such as a missing pg_monitor role

    @property
    def connections_used(self) -> int:
        return sum(count for _, count in self.connections_by_state)

    def age(self, moment: float | None) -> float | None:
        """Seconds from ``moment`` (a server timestamp) to the server's clock at the snapshot."""
        if moment is None or self.server_now is None:
            return None
        return max(self.server_now - moment, 0.0)


AnySnapshot = HealthSnapshot | PrometheusSnapshot | PostgresSnapshot


@dataclass(frozen=True, slots=True)
class Measurement:
    """One value for one threshold, produced from a snapshot (see console.measure)."""

    threshold_id: str
    value: float | None
    error: SourceError | None = None
    subject: str = ""  # what was measured, in words, e.g. "pid 4242" or "storefront"
    at: float = 0.0
    details: tuple[str, ...] = field(default=())
    # The subject, structured (what runbooks and actions use; nothing parses ``subject``):
    pid: int | None = None  # the Postgres session it points at
    labels: Labels = ()  # the series' labels (a Prometheus query's worst sample)
    checks: tuple[HealthCheck, ...] = ()  # a health target's checks that do not pass
