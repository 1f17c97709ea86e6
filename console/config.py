"""The one configuration schema (pydantic) and the one loader.

``check-config``, ``snapshot``, the TUI and the tests all call :func:`load_config`. Every
problem comes back as ``file:line:col: message`` through :class:`console.yamlfile.ConfigError`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from console import redact
from console.model import SourceKey, SourceKind
from console.yamlfile import ConfigError, Document, Problem, problems_from_validation, read_document

CONFIG_ENV = "INCIDENT_CONSOLE_CONFIG"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$")


def parse_duration(value: Any) -> float:
    """``5``, ``"5s"``, ``"250ms"``, ``"2m"``, ``"1h"`` -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 5s, 250ms or 2m, not a boolean")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"expected a duration such as 5s, 250ms or 2m, got {value!r:.40}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a duration must be a finite number of seconds >= 0")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"'{value[:40]}' is not a valid name: use letters, digits, '_', '-', '.', ':' (max 63)"
        )
    return value


Name = Annotated[str, AfterValidator(_check_name)]


def check_http_url(value: str) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or " " in value:
        raise ValueError(f"bad URL '{redact.url(str(value))[:80]}': expected http(s)://host[:port]/path")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"bad URL '{redact.url(value)[:80]}': invalid port") from None
    return value


HttpUrl = Annotated[str, BeforeValidator(lambda v: check_http_url(v) if isinstance(v, str) else v)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def __repr_args__(self) -> Any:
        # repr() and rich's pretty printer (Textual's crash report shows every frame's locals)
        # both read this: a config in a traceback must not print its DSNs, tokens and headers.
        for name, value in super().__repr_args__():
            yield name, _masked(self, name, value)


def _masked(model: BaseModel, name: str | None, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if name == "value" and getattr(model, "secret", False):
        return redact.MASK
    if name == "dsn":
        return redact.dsn(value)
    return redact.url(value) if "://" in value else redact.scrub(value)


class Threshold(Model):
    """Levels on one measured value. ``direction: above`` breaches when value >= level."""

    id: str | None = None
    warning: float | None = None
    critical: float | None = None
    direction: Literal["above", "below"] = "above"
    for_: Duration = Field(0.0, alias="for")
    keep_firing_for: Duration = 0.0
    recovery: float | None = None
    runbooks: list[str] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        return None if value is None else _check_name(value)

    @model_validator(mode="after")
    def _levels(self) -> Threshold:
        if self.warning is None and self.critical is None:
            raise ValueError("a threshold needs a warning level, a critical level, or both")
        for name in ("warning", "critical", "recovery"):
            level = getattr(self, name)
            if level is not None and not math.isfinite(level):
                raise ValueError(f"{name} must be a finite number")
        above = self.direction == "above"
        both = self.warning is not None and self.critical is not None
        if both and (self.warning > self.critical if above else self.warning < self.critical):
            raise ValueError(
                f"warning ({self.warning:g}) and critical ({self.critical:g}) are in the wrong order "
                f"for direction '{self.direction}': warning must be reached first"
            )
        if self.recovery is not None:
            first = self.first_level
            if (above and self.recovery > first) or (not above and self.recovery < first):
                raise ValueError(
                    f"recovery ({self.recovery:g}) must be on the healthy side of the first level ({first:g})"
                )
        return self

    @property
    def first_level(self) -> float:
        levels = [x for x in (self.warning, self.critical) if x is not None]
        return min(levels) if self.direction == "above" else max(levels)

    def breached(self, value: float, level: float) -> bool:
        return value >= level if self.direction == "above" else value <= level

    def recovered(self, value: float) -> bool:
        """True when ``value`` is back on the healthy side of the recovery level."""
        line = self.first_level if self.recovery is None else self.recovery
        if self.recovery is None:
            return not self.breached(value, line)
        return value <= line if self.direction == "above" else value >= line


def _threshold(**levels: Any) -> Threshold:
    return Threshold.model_validate(levels)


class Header(Model):
    # Trimmed: a field value has no surrounding whitespace (RFC 9110 5.5), and httpx refuses to
    # send one that has: "Bearer ${TOKEN:-}" with TOKEN unset made every request fail.
    value: Annotated[str, AfterValidator(str.strip)]
    secret: bool = False


def _header(value: Any) -> Any:
    return {"value": value} if isinstance(value, str) else value


def _header_secrets(headers: dict[str, Header]) -> list[str]:
    return [v for h in headers.values() if h.secret for v in redact.secrets_in_header(h.value)]


class Variable(Model):
    """A value runbooks refer to as ``{{name}}``: a URL, an app name, a token (``secret: true``)."""

    value: str
    secret: bool = False


def _variable(value: Any) -> Any:
    return (
        {"value": str(value)}
        if isinstance(value, str | int | float) and not isinstance(value, bool)
        else value
    )


class Wall(Model):
    rotate: Duration = 15.0  # seconds per page
    tiles: int = Field(6, ge=1, le=24)  # worst breaches shown as tiles on the first page


class UI(Model):
    bell: bool = True  # ring the terminal bell once for each new critical breach
    keymap: dict[str, str] = Field(default_factory=dict)  # binding id -> keys, e.g. {quit: "ctrl+q"}
    wall: Wall = Field(default_factory=Wall)


class RunbookSettings(Model):
    """``runbooks:`` how the pack is checked and walked (docs/ARCHITECTURE.md, Runbooks)."""

    #: check-config (and the console) refuse a pack that breaks a safety rule of
    #: console/runbooks/lint.py; without it, ``incident-console runbook lint`` only reports them.
    strict: bool = False
    #: Multiplies wait steps' seconds and the range windows of PromQL checks (a demo walks a
    #: runbook that waits 15 minutes in seconds). 1: as written.
    time_scale: float = Field(1.0, gt=0, le=1000)
    #: A scaled range window keeps at least this (rate() needs a few scrapes); only when scaled.
    min_window: Duration = 5.0
    #: The index of the seed scenarios the pack's ``covers:`` name, relative to this file. An
    #: absent file: no coverage report.
    seed_scenarios: str = "seed-scenarios.yaml"

    @field_validator("time_scale")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("time_scale must be a finite number > 0")
        return value


class Environment(Model):
    name: str = "default"
    production: bool = False


class Refresh(Model):
    health: Duration = 10.0
    prometheus: Duration = 10.0
    postgres: Duration = 2.0

    @model_validator(mode="after")
    def _positive(self) -> Refresh:
        for name in ("health", "prometheus", "postgres"):
            if getattr(self, name) < 0.05:
                raise ValueError(f"refresh.{name} must be at least 50ms")
        return self


class HealthTarget(Model):
    name: Name
    url: HttpUrl
    format: Literal["health+json", "spring", "k8s", "status"] = "health+json"
    timeout: Duration = 3.0
    verify_tls: bool | str = True
    headers: dict[str, Annotated[Header, BeforeValidator(_header)]] = Field(default_factory=dict)
    severity: Literal["warning", "critical"] = "critical"
    for_: Duration = Field(0.0, alias="for")
    latency: Threshold | None = None
    runbooks: list[str] = Field(default_factory=list)

    def secrets(self) -> list[str]:
        return _header_secrets(self.headers) + redact.secrets_in_url(self.url)


class Query(Model):
    id: Name
    query: str = Field(min_length=1)
    title: str = ""
    unit: str = ""
    threshold: Threshold | None = None


class Prometheus(Model):
    #: Names the server: its source is ``prometheus:<name>`` and the console shows its health,
    #: targets and rules under it. Required when ``prometheus:`` is a list; without one (the
    #: single-server form) the source is ``prometheus``.
    name: Name | None = None
    url: HttpUrl
    alertmanager_url: HttpUrl | None = None
    timeout: Duration = 5.0
    verify_tls: bool | str = True
    headers: dict[str, Annotated[Header, BeforeValidator(_header)]] = Field(default_factory=dict)
    queries: list[Query] = Field(default_factory=list)

    def secrets(self) -> list[str]:
        urls = [self.url] + ([self.alertmanager_url] if self.alertmanager_url else [])
        return _header_secrets(self.headers) + [v for url in urls for v in redact.secrets_in_url(url)]

    @property
    def key(self) -> SourceKey:
        """The server's source key: ``prometheus:<name>``, or ``prometheus`` without a name."""
        return SourceKey(SourceKind.PROMETHEUS, self.name) if self.name else SourceKey.prometheus()

    @property
    def label(self) -> str:
        return self.name or "prometheus"


def _prometheus_servers(value: Any) -> Any:
    """``prometheus:`` is one server (a mapping, the original form) or a list of named ones."""
    if value is None:
        return []
    return [value] if isinstance(value, Mapping) else value


class PostgresThresholds(Model):
    """Defaults follow the source runbooks: long-running > 5 min, avg query > 100 ms
    (alert > 500 ms), connections against max_connections. ``null`` turns one off."""

    connections: Threshold | None = Field(default_factory=lambda: _threshold(warning=0.8, critical=0.95))
    long_running: Threshold | None = Field(default_factory=lambda: _threshold(warning=300, critical=900))
    idle_in_transaction: Threshold | None = Field(
        default_factory=lambda: _threshold(warning=60, critical=300)
    )
    waiting: Threshold | None = Field(default_factory=lambda: _threshold(warning=1, critical=5))
    mean_statement_time: Threshold | None = Field(
        default_factory=lambda: _threshold(warning=100, critical=500)
    )


class PostgresCluster(Model):
    name: Name
    dsn: str
    statement_timeout: Duration = 2.0
    lock_timeout: Duration = 1.0
    connect_timeout: Duration = 5.0
    statements_top: int = Field(10, ge=0, le=200)
    #: Seconds between two reads of the top statements (0: every refresh). Reading
    #: pg_stat_statements was a quarter of the refresh statement's server time (bench/CHANGES.md).
    statements_every: Duration = Field(10.0, ge=0)
    thresholds: PostgresThresholds = Field(default_factory=PostgresThresholds)

    def secrets(self) -> list[str]:
        return redact.secrets_in_dsn(self.dsn)

    @field_validator("dsn")
    @classmethod
    def _dsn(cls, value: str) -> str:
        scheme = urlsplit(value).scheme if "://" in value else ""
        if scheme not in ("postgres", "postgresql"):
            raise ValueError(f"bad DSN '{redact.dsn(value)[:80]}': expected postgresql://user@host:port/db")
        return value


TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?$")


def _table_name(value: str) -> str:
    if not TABLE_NAME.match(value):
        raise ValueError(
            f"'{value[:70]}' is not a table name: lower-case letters, digits, _ (schema.table allowed)"
        )
    return value


class SharedJournal(Model):
    """A journal table in a Postgres the team already runs, shared by every console of the
    environment (``incident-console journal init`` creates it)."""

    dsn: str
    table: Annotated[str, AfterValidator(_table_name)] = "incident_journal"
    connect_timeout: Duration = 5.0
    statement_timeout: Duration = 5.0

    def secrets(self) -> list[str]:
        return redact.secrets_in_dsn(self.dsn)

    @field_validator("dsn")
    @classmethod
    def _dsn(cls, value: str) -> str:
        return PostgresCluster._dsn(value)

    def cluster(self) -> PostgresCluster:
        """The store as a connection target (the one way the console connects to Postgres)."""
        return PostgresCluster(
            name="journal",
            dsn=self.dsn,
            statement_timeout=self.statement_timeout,
            lock_timeout=self.statement_timeout,
            connect_timeout=self.connect_timeout,
        )


class JournalSettings(Model):
    #: The local journal (JSONL), always written first. Default:
    #: $XDG_STATE_HOME/incident-console/journal.jsonl (~/.local/state when XDG_STATE_HOME is
    #: unset); a relative path is relative to the config file.
    path: str | None = None
    #: The incident the events of this console belong to (a ticket id, a name); "" for none.
    incident: str = ""
    shared: SharedJournal | None = None


def _journal(value: Any) -> Any:
    return {"path": value} if isinstance(value, str) or value is None else value


class SnapshotSettings(Model):
    """``snapshot:`` how ``incident-console snapshot`` turns what it saw into its exit code."""

    #: false (default): a *pending* Prometheus alert (its ``for`` not yet waited out) counts at
    #: most as a warning, whatever its severity label; true: at its severity (a pending critical
    #: exits 2), as before.
    strict_pending: bool = False


_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class FleetSettings(Model):
    """``fleet:`` the fleet view: one row per Postgres cluster (README, the fleet view)."""

    #: The Fleet tab: ``auto`` with more than 3 clusters or a fleet read through Prometheus,
    #: ``always``, ``never``.
    tab: Literal["auto", "always", "never"] = "auto"
    #: The Prometheus server whose postgres_exporter metrics give a row to each cluster it
    #: scrapes (its ``name`` in ``prometheus:``; ``prometheus`` for the single-server form).
    #: Unset: no rows through Prometheus.
    prometheus: str | None = None
    #: The label that names a cluster on the exporter's series (``instance``: its scrape target).
    label: str = "instance"
    #: Label matchers every fleet query adds (PromQL, inside the braces): the exporter's job.
    match: str = 'job="postgres"'
    #: Label value -> the cluster name shown (and matched against ``postgres:`` names: a
    #: cluster with a direct DSN shows its direct row, which drills down).
    aliases: dict[str, Name] = Field(default_factory=dict)
    #: A scrape older than this is shown stale.
    stale_after: Duration = 60.0

    @field_validator("label")
    @classmethod
    def _label(cls, value: str) -> str:
        if not _LABEL_NAME.match(value):
            raise ValueError(f"'{value[:40]}' is not a Prometheus label name: letters, digits, '_'")
        return value

    @field_validator("match")
    @classmethod
    def _match(cls, value: str) -> str:
        if "{" in value or "}" in value or "\n" in value:
            raise ValueError('match: label matchers without braces, e.g. job="postgres"')
        return value.strip()


class Config(Model):
    environment: Environment = Field(default_factory=Environment)
    read_only: bool = False
    refresh: Refresh = Field(default_factory=Refresh)
    ui: UI = Field(default_factory=UI)
    runbooks_dir: str = "runbooks"
    runbooks: RunbookSettings = Field(default_factory=RunbookSettings)
    #: The journal: a path (the local file), or {path, incident, shared: {dsn, table}}.
    journal: Annotated[JournalSettings, BeforeValidator(_journal)] = Field(default_factory=JournalSettings)
    variables: dict[str, Annotated[Variable, BeforeValidator(_variable)]] = Field(default_factory=dict)
    health: list[HealthTarget] = Field(default_factory=list)
    #: ``prometheus:`` in the file: one server (a mapping) or several (a list, each named).
    prometheus_servers: Annotated[list[Prometheus], BeforeValidator(_prometheus_servers)] = Field(
        default_factory=list, alias="prometheus"
    )
    postgres: list[PostgresCluster] = Field(default_factory=list)
    fleet: FleetSettings = Field(default_factory=FleetSettings)
    snapshot: SnapshotSettings = Field(default_factory=SnapshotSettings)

    _path: Path | None = PrivateAttr(default=None)
    _prometheus_listed: bool = PrivateAttr(default=False)  # ``prometheus:`` was written as a list

    @model_validator(mode="wrap")
    @classmethod
    def _remember_prometheus_form(cls, data: Any, handler: Any) -> Config:
        config = handler(data)
        listed = isinstance(data, Mapping) and isinstance(data.get("prometheus"), list)
        config._prometheus_listed = listed
        return config

    @property
    def prometheus(self) -> Prometheus | None:
        """The first (with one, the only) Prometheus server: where runbook PromQL checks and
        acks go. Every server: :attr:`prometheus_servers`."""
        return self.prometheus_servers[0] if self.prometheus_servers else None

    @property
    def fleet_server(self) -> Prometheus | None:
        """The server ``fleet.prometheus`` names (None: no fleet through Prometheus)."""
        wanted = self.fleet.prometheus
        return next((s for s in self.prometheus_servers if wanted and s.label == wanted), None)

    @property
    def fleet_tab(self) -> bool:
        """Whether the console shows the Fleet tab (``fleet.tab``)."""
        if self.fleet.tab != "auto":
            return self.fleet.tab == "always"
        return len(self.postgres) > 3 or self.fleet_server is not None

    _runbook_ids: frozenset[str] = PrivateAttr(default=frozenset())

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def runbooks_path(self) -> Path:
        base = self._path.parent if self._path else Path.cwd()
        return (base / self.runbooks_dir).resolve()

    @property
    def seed_scenarios_path(self) -> Path:
        base = self._path.parent if self._path else Path.cwd()
        return (base / self.runbooks.seed_scenarios).resolve()

    def threshold_levels(self) -> dict[str, Threshold]:
        """Every threshold by id: what ``{threshold: <id>}`` in a runbook refers to."""
        return {b.id: b.threshold for b in self.thresholds()}

    @property
    def runbook_ids(self) -> frozenset[str]:
        return self._runbook_ids

    def journal_path(self, env: Mapping[str, str] | None = None) -> Path:
        env = os.environ if env is None else env
        if self.journal.path:
            path = Path(os.path.expanduser(self.journal.path))
            base = self._path.parent if self._path else Path.cwd()
            return path if path.is_absolute() else (base / path)
        state = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        return Path(state) / "incident-console" / "journal.jsonl"

    def thresholds(self) -> list[BoundThreshold]:
        return [bound for bound, _ in _bound_thresholds(self)]

    def threshold(self, threshold_id: str) -> BoundThreshold | None:
        return next((b for b in self.thresholds() if b.id == threshold_id), None)

    def secrets(self) -> list[str]:
        """Every secret value in the config, for :func:`console.redact.register`."""
        owners: list[HealthTarget | Prometheus | PostgresCluster | SharedJournal] = [
            *self.health,
            *self.postgres,
            *self.prometheus_servers,
        ]
        if self.journal.shared:
            owners.append(self.journal.shared)
        found = [secret for owner in owners for secret in owner.secrets()]
        return found + [
            s for v in self.variables.values() if v.secret for s in redact.secrets_in_header(v.value)
        ]


@dataclass(frozen=True, slots=True)
class BoundThreshold:
    """A threshold tied to the value it watches. ``id`` is explicit or derived:
    ``health.<target>``, ``health.<target>.latency``, ``prometheus.<query>``,
    ``postgres.<cluster>.<metric>``."""

    id: str
    source: SourceKey  # the snapshot source key: health:<name>, prometheus, postgres:<name>
    metric: str  # status | latency | query:<id> | connections | long_running | ...
    title: str
    unit: str
    threshold: Threshold
    runbooks: tuple[str, ...]


HEALTH_STATUS_VALUES = {"pass": 0.0, "warn": 1.0, "fail": 2.0}

_PG_METRICS = {
    "connections": ("connections used / max_connections", "ratio"),
    "long_running": ("longest running query", "s"),
    "idle_in_transaction": ("longest idle-in-transaction session", "s"),
    "waiting": ("sessions waiting on a lock", "sessions"),
    "mean_statement_time": ("slowest mean statement time", "ms"),
}


def _bound_thresholds(config: Config) -> list[tuple[BoundThreshold, tuple]]:
    out: list[tuple[BoundThreshold, tuple]] = []
    for i, target in enumerate(config.health):
        levels = {"warning": 1.0, "critical": 2.0} if target.severity == "critical" else {"warning": 1.0}
        status = _threshold(**levels, **{"for": target.for_})
        out.append(
            (
                BoundThreshold(
                    f"health.{target.name}",
                    SourceKey.health(target.name),
                    "status",
                    f"{target.name} health",
                    "",
                    status,
                    tuple(target.runbooks),
                ),
                ("health", i),
            )
        )
        if target.latency:
            out.append(
                (
                    BoundThreshold(
                        target.latency.id or f"health.{target.name}.latency",
                        SourceKey.health(target.name),
                        "latency",
                        f"{target.name} latency",
                        "s",
                        target.latency,
                        tuple(target.runbooks) + tuple(target.latency.runbooks),
                    ),
                    ("health", i, "latency"),
                )
            )
    for server, where in _prometheus_locations(config):
        for i, query in enumerate(server.queries):
            if query.threshold:
                out.append(
                    (
                        BoundThreshold(
                            # prometheus.<query> whichever server runs it: runbooks name it so
                            # (query ids are unique across the servers)
                            query.threshold.id or f"prometheus.{query.id}",
                            server.key,
                            f"query:{query.id}",
                            query.title or query.id,
                            query.unit,
                            query.threshold,
                            tuple(query.threshold.runbooks),
                        ),
                        (*where, "queries", i, "threshold"),
                    )
                )
    for i, cluster in enumerate(config.postgres):
        for metric, (title, unit) in _PG_METRICS.items():
            threshold = getattr(cluster.thresholds, metric)
            if threshold is not None:
                out.append(
                    (
                        BoundThreshold(
                            threshold.id or f"postgres.{cluster.name}.{metric}",
                            SourceKey.postgres(cluster.name),
                            metric,
                            f"{cluster.name}: {title}",
                            unit,
                            threshold,
                            tuple(threshold.runbooks),
                        ),
                        ("postgres", i, "thresholds", metric),
                    )
                )
    return out


def _prometheus_locations(config: Config) -> list[tuple[Prometheus, tuple]]:
    """Each server with where it is in the file: ``("prometheus",)`` for the single-server form,
    ``("prometheus", i)`` in a list."""
    if not config._prometheus_listed:
        return [(server, ("prometheus",)) for server in config.prometheus_servers]
    return [(server, ("prometheus", i)) for i, server in enumerate(config.prometheus_servers)]


def _cross_check(config: Config, doc: Document, runbook_ids: frozenset[str] | None) -> list[Problem]:
    problems: list[Problem] = []

    def unique(items: list[tuple[str, tuple]], what: str) -> None:
        seen: dict[str, tuple] = {}
        for value, loc in items:
            if value in seen:
                line, _ = doc.where(seen[value])
                problems.append(
                    doc.problem(loc, f"duplicate {what} '{value}' (first defined at line {line})")
                )
            else:
                seen[value] = loc

    unique([(t.name, ("health", i, "name")) for i, t in enumerate(config.health)], "health target name")
    unique(
        [(c.name, ("postgres", i, "name")) for i, c in enumerate(config.postgres)], "postgres cluster name"
    )
    servers = _prometheus_locations(config)
    if config._prometheus_listed:
        for server, where in servers:
            if not server.name:
                problems.append(
                    doc.problem(
                        where, "missing required key 'name': every server of a prometheus: list is named"
                    )
                )
        unique([(s.name, (*where, "name")) for s, where in servers if s.name], "prometheus server name")
    unique(
        [(q.id, (*where, "queries", i, "id")) for s, where in servers for i, q in enumerate(s.queries)],
        "query id",
    )
    if config.fleet.prometheus and config.fleet_server is None:
        names = ", ".join(s.label for s in config.prometheus_servers) or "none configured"
        problems.append(
            doc.problem(
                ("fleet", "prometheus"),
                f"no prometheus server named '{config.fleet.prometheus[:40]}' (servers: {names})",
            )
        )
    bound = _bound_thresholds(config)
    unique([(b.id, loc) for b, loc in bound], "threshold id")
    if runbook_ids is not None:
        for b, loc in bound:
            for runbook in b.runbooks:
                if runbook not in runbook_ids:
                    problems.append(
                        doc.problem(loc, f"runbook '{runbook}' does not exist in {config.runbooks_dir}/")
                    )
    return problems


def find_config_path(
    explicit: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Path:
    """``--config``, then $INCIDENT_CONSOLE_CONFIG, then $XDG_CONFIG_HOME, then ./config/."""
    env = os.environ if env is None else env
    cwd = cwd or Path.cwd()
    if explicit:
        return Path(explicit)
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    xdg = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    candidate = xdg / "incident-console" / "console.yaml"
    if candidate.is_file():
        return candidate
    return cwd / "config" / "console.yaml"


def read_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> tuple[Config, Document]:
    """Read and validate one config file (not yet cross-checked: see console.loader)."""
    config_path = find_config_path(path, env)
    if not config_path.exists():
        raise ConfigError([Problem(str(config_path), 1, 1, "config file not found")])
    doc = read_document(config_path, env)
    single = isinstance(doc.data, Mapping) and isinstance(doc.data.get("prometheus"), Mapping)
    try:
        config = Config.model_validate(doc.data)
    except ValidationError as exc:
        problems = problems_from_validation(exc, _as_listed(doc) if single else doc, Config)
        if single:  # the single-server form: no "[0]" in what the problems say
            problems = [
                replace(p, message=p.message.replace("prometheus[0]", "prometheus")) for p in problems
            ]
        raise ConfigError(doc.problems + problems) from None
    config._path = config_path.resolve()
    return config, doc


def _as_listed(doc: Document) -> Document:
    """The document with the single ``prometheus:`` mapping's positions also under
    ``prometheus[0]``: where validation (which sees a list of one) places its problems."""
    copy = replace(doc, values=dict(doc.values), keys=dict(doc.keys))
    for table in (copy.values, copy.keys):
        for loc, position in list(table.items()):
            if loc[:1] == ("prometheus",) and len(loc) > 1:
                table.setdefault(("prometheus", 0, *loc[1:]), position)
        if ("prometheus",) in table:
            table.setdefault(("prometheus", 0), table[("prometheus",)])
    return copy


def cross_check(config: Config, doc: Document, runbook_ids: frozenset[str] | None) -> list[Problem]:
    """Problems between the parts of a config, and with the runbook ids it links (None: not
    checked). With none, the config is complete: its secrets are registered for masking."""
    problems = list(doc.problems) + _cross_check(config, doc, runbook_ids)
    if not problems:
        config._runbook_ids = runbook_ids or frozenset()
        redact.register(*config.secrets())
    return problems
