"""A Prometheus estate as breaches: alerts across servers and Alertmanagers, rules that fail.

Users run several Prometheus servers (HA pairs, one per region) behind one Alertmanager
cluster. The console reads each server (``console.sources.prometheus``); this module makes one
breach list of what they say together:

- **Alerts.** Where a server's Alertmanager answered, *firing* alerts come from Alertmanager
  (deduplicated: what both servers of an HA pair sent is one alert there), with their silenced
  and inhibited state. *Pending* alerts exist only in Prometheus: they come from each server's
  own ``/api/v1/alerts``. A server without Alertmanager, or whose Alertmanager fails, gives its
  own firing alerts too, as does an alert Alertmanager has not received yet. The same alert
  (same labels) from several servers is one breach (docs/ARCHITECTURE.md, the data path).
- **Rules.** A rule whose health is ``err`` is an ERROR breach naming the rule and its error;
  a group whose last evaluation took longer than its interval is a WARN (its evaluations are
  being skipped).
- **Alertmanager.** One ERROR breach per Alertmanager that fails, whichever servers use it.

Pure functions of snapshots; ``since`` (first seen) is kept by the poller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

from console.model import PromAlert, PrometheusSnapshot, RuleGroup, Severity
from console.rules import Breach, State, alert_breach, alert_id, alert_value, format_duration

#: Rules in error shown one breach each, per server; beyond, one breach counts the rest.
MAX_RULE_BREACHES = 20

Since = Callable[[str, float], float]  # (breach id, seen at) -> since when it is shown


def alert_breaches(
    snapshots: Iterable[PrometheusSnapshot], runbooks_for_alert: Mapping[str, tuple[str, ...]] | None = None
) -> list[Breach]:
    """Every alert of the estate once: firing ones from Alertmanager where it answered, the
    rest (pending, and firing ones Alertmanager does not hold) from the servers themselves."""
    runbooks_for_alert = runbooks_for_alert or {}
    snapshots = sorted(snapshots, key=lambda s: s.source)
    # Each Alertmanager once: read through the first server (by name) that reached it.
    readers: dict[str, PrometheusSnapshot] = {}
    for s in snapshots:
        if s.alertmanager_alerts is not None and s.alertmanager_url not in readers:
            readers[s.alertmanager_url] = s
    shown: dict[str, Breach] = {}
    # alertname -> (labels, breach id) of the alerts Alertmanager holds
    held: dict[str, list[tuple[dict[str, str], str]]] = {}
    for s in readers.values():
        for alert in s.alertmanager_alerts or ():
            shown.setdefault(alert_id(alert), alert_breach(alert, s, runbooks_for_alert))
            held.setdefault(alert.name, []).append((dict(alert.labels), alert_id(alert)))
    for s in snapshots:
        for alert in s.alerts:
            holders = _held(alert, held)
            if holders:  # Alertmanager's copy is shown (with external labels, silences...),
                for held_id in holders:  # with the value only the server knows
                    copy = shown[held_id]
                    if not copy.value_text and alert.value:
                        shown[held_id] = replace(copy, value_text=alert_value(alert.value))
                continue
            breach = alert_breach(alert, s, runbooks_for_alert)
            known = shown.get(breach.id)
            if known is None or (known.state is State.PENDING and breach.state is State.FIRING):
                shown[breach.id] = breach  # one server of a pair fires while the other pends
    return list(shown.values())


def _held(alert: PromAlert, held: Mapping[str, list[tuple[dict[str, str], str]]]) -> list[str]:
    """The ids of Alertmanager's copies of this alert: its alerts of that name that carry every
    label of it (Alertmanager's copy may have more: the sender's external labels)."""
    labels = alert.labels
    return [id_ for other, id_ in held.get(alert.name, ()) if all(other.get(k) == v for k, v in labels)]


def rule_breaches(snapshot: PrometheusSnapshot, since: Since) -> list[Breach]:
    """ERROR for each rule that fails to evaluate, WARN for each group slower than its interval."""
    out: list[Breach] = []
    server = snapshot.label
    failing = [(g, r) for g in snapshot.rule_groups for r in g.rules if r.health == "err"]
    for group, rule in failing[:MAX_RULE_BREACHES]:
        breach_id = f"rule:{snapshot.source}:{group.file}:{group.name}:{rule.name}"
        out.append(
            Breach(
                id=breach_id,
                kind="rule",
                source=snapshot.source,
                title=f"rule {rule.name} fails to evaluate",
                state=State.ERROR,
                severity=Severity.UNKNOWN,
                since=since(breach_id, snapshot.taken_at),
                value_text=rule.last_error or "health err (no error text)",
                subject=f"{server} · group {group.name} ({group.file})",
                summary=f"{rule.type or 'rule'} {rule.name}: {rule.last_error}",
                labels=rule.labels,
                metric="rule",
            )
        )
    if len(failing) > MAX_RULE_BREACHES:
        breach_id = f"rule:{snapshot.source}:more"
        rest = failing[MAX_RULE_BREACHES:]
        out.append(
            Breach(
                id=breach_id,
                kind="rule",
                source=snapshot.source,
                title=f"{len(rest)} more rules fail to evaluate",
                state=State.ERROR,
                severity=Severity.UNKNOWN,
                since=since(breach_id, snapshot.taken_at),
                value_text=rest[0][1].last_error,
                subject=server,
                summary=", ".join(r.name for _, r in rest[:10]) + (" …" if len(rest) > 10 else ""),
                metric="rule",
            )
        )
    for group in snapshot.rule_groups:
        if group.slow:
            out.append(_slow_group(snapshot, group, since))
    return out


def _slow_group(snapshot: PrometheusSnapshot, group: RuleGroup, since: Since) -> Breach:
    assert group.interval is not None and group.evaluation_time is not None
    breach_id = f"rule-group:{snapshot.source}:{group.file}:{group.name}"
    return Breach(
        id=breach_id,
        kind="rule",
        source=snapshot.source,
        title=f"rule group {group.name} evaluates slower than its interval",
        state=State.FIRING,
        severity=Severity.WARNING,
        since=since(breach_id, snapshot.taken_at),
        value=group.evaluation_time,
        value_text=f"{format_duration(group.evaluation_time)} (interval {format_duration(group.interval)})",
        unit="s",
        subject=f"{snapshot.label} · {group.file}",
        summary="evaluations are skipped while one takes longer than the interval: its alerts come late",
        metric="rule_group",
    )


def alertmanager_breaches(snapshots: Iterable[PrometheusSnapshot], since: Since) -> list[Breach]:
    """One ERROR per Alertmanager that fails (however many servers send to it)."""
    out: dict[str, Breach] = {}
    for s in sorted(snapshots, key=lambda s: s.source):
        if not s.alertmanager_url or s.alertmanager_error is None or s.alertmanager_url in out:
            continue
        breach_id = f"alertmanager:{s.alertmanager_url}"
        out[s.alertmanager_url] = Breach(
            id=breach_id,
            kind="source",
            source=s.source,
            title="Alertmanager",
            state=State.ERROR,
            severity=Severity.UNKNOWN,
            since=since(breach_id, s.taken_at),
            value_text=str(s.alertmanager_error),
            subject=s.alertmanager_url,
            summary="firing alerts are read from Prometheus meanwhile (no silenced or inhibited state); acks cannot be made",
        )
    return list(out.values())
