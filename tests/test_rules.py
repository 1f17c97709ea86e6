"""The threshold engine, driven by a fake clock: pending/firing/recovering, hysteresis, nodata, error."""

from __future__ import annotations

import pytest

from console.config import BoundThreshold, Threshold
from console.model import (
    ErrorKind,
    Measurement,
    PromAlert,
    PrometheusSnapshot,
    Severity,
    SourceError,
    label_subject,
)
from console.rules import State, ThresholdEngine, alert_breaches, exit_code, sort_breaches, worst


def bound(id="t", **levels) -> BoundThreshold:
    return BoundThreshold(id, "test", "value", id, "", Threshold.model_validate(levels), ("rb",))


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def tick(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def feed(engine: ThresholdEngine, clock: Clock, value, *, id="t", error=None, step=1.0):
    engine.update([Measurement(id, value, error)], clock.tick(step))
    return engine.state_of(id)


def test_pending_then_firing_after_for():
    engine, clock = ThresholdEngine([bound(warning=10, critical=20, **{"for": "3s"})]), Clock()
    assert feed(engine, clock, 5) is State.OK
    assert feed(engine, clock, 12) is State.PENDING
    started = clock.now
    assert feed(engine, clock, 12) is State.PENDING
    assert feed(engine, clock, 13) is State.PENDING
    assert feed(engine, clock, 13) is State.FIRING  # 3 s after the breach began
    (breach,) = engine.breaches()
    assert breach.severity is Severity.WARNING
    assert breach.since == started
    assert breach.level_text == ">= 10"
    assert breach.runbooks == ("rb",)


def test_a_breach_already_on_at_the_first_look_says_its_start_is_unknown():
    """A console opened mid-incident showed "firing for 3s" for a breach ten minutes old: its
    since is its first look, a lower bound. Seen ok once, the next episode's start is known."""
    engine, clock = (
        ThresholdEngine([bound(warning=10), bound("u", warning=10), bound("e", warning=10)]),
        Clock(),
    )
    feed(engine, clock, 12)
    feed(engine, clock, 5, id="u")
    feed(engine, clock, None, id="e", error=SourceError(ErrorKind.TIMEOUT, "no answer"))
    (first,) = [b for b in engine.breaches() if b.id == "t"]
    assert (first.state, first.since_known, first.since) == (State.FIRING, False, 1001.0)
    (error,) = [b for b in engine.breaches() if b.id == "e"]
    assert not error.since_known  # the source was already failing: since when is unknown
    feed(engine, clock, 12, id="u")
    assert [b.since_known for b in engine.breaches() if b.id == "u"] == [True]
    feed(engine, clock, 5)
    feed(engine, clock, 12)
    (again,) = [b for b in engine.breaches() if b.id == "t"]
    assert (again.since_known, again.since) == (True, clock.now)


def test_a_dip_during_pending_restarts_the_for_timer():
    engine, clock = ThresholdEngine([bound(warning=10, **{"for": "2s"})]), Clock()
    feed(engine, clock, 11)
    feed(engine, clock, 1)
    assert feed(engine, clock, 11) is State.PENDING
    assert feed(engine, clock, 11) is State.PENDING
    assert feed(engine, clock, 11) is State.FIRING


def test_no_for_fires_at_once_and_escalates_to_critical():
    engine, clock = ThresholdEngine([bound(warning=10, critical=20)]), Clock()
    assert feed(engine, clock, 10) is State.FIRING
    assert engine.breaches()[0].severity is Severity.WARNING
    feed(engine, clock, 25)
    assert engine.breaches()[0].severity is Severity.CRITICAL
    assert engine.breaches()[0].level_text == ">= 20"
    feed(engine, clock, 15)
    assert engine.breaches()[0].severity is Severity.WARNING


def test_recovery_level_stops_flapping_on_the_line():
    engine, clock = ThresholdEngine([bound(warning=10, recovery=8)]), Clock()
    assert feed(engine, clock, 10.2) is State.FIRING
    for value in (9.8, 10.1, 9.5, 10.0, 8.5, 9.9):  # hovering on the line, above recovery
        assert feed(engine, clock, value) is State.FIRING
    assert engine.breaches()[0].severity is Severity.WARNING
    assert feed(engine, clock, 7.9) is State.OK


def test_without_recovery_level_it_clears_below_the_line():
    engine, clock = ThresholdEngine([bound(warning=10)]), Clock()
    feed(engine, clock, 10)
    assert feed(engine, clock, 9.99) is State.OK


def test_keep_firing_for_gives_recovering_then_ok():
    engine, clock = ThresholdEngine([bound(critical=5, keep_firing_for="10s")]), Clock()
    feed(engine, clock, 6)
    assert feed(engine, clock, 1) is State.RECOVERING
    assert engine.breaches()[0].severity is Severity.CRITICAL
    assert feed(engine, clock, 1, step=5) is State.RECOVERING
    assert feed(engine, clock, 7) is State.FIRING  # back over the line: the same episode
    assert feed(engine, clock, 1) is State.RECOVERING
    assert feed(engine, clock, 1, step=10) is State.OK
    assert engine.breaches() == []


def test_direction_below():
    engine, clock = ThresholdEngine([bound(direction="below", warning=0.95, critical=0.9)]), Clock()
    assert feed(engine, clock, 0.99) is State.OK
    assert feed(engine, clock, 0.93) is State.FIRING
    assert engine.breaches()[0].severity is Severity.WARNING
    feed(engine, clock, 0.5)
    assert engine.breaches()[0].severity is Severity.CRITICAL
    assert engine.breaches()[0].level_text == "<= 0.9"


def test_nodata_and_error_are_never_ok():
    engine, clock = ThresholdEngine([bound(warning=10)]), Clock()
    assert feed(engine, clock, None) is State.NODATA
    assert engine.breaches()[0].counted_severity is Severity.UNKNOWN
    assert engine.breaches()[0].value_text == "no data"
    error = SourceError(ErrorKind.UNREACHABLE, "connection refused")
    assert feed(engine, clock, None, error=error) is State.ERROR
    assert engine.breaches()[0].value_text == "unreachable: connection refused"
    assert exit_code(engine.breaches()) == 3


def test_a_failed_poll_does_not_reset_pending_or_firing():
    engine, clock = ThresholdEngine([bound(warning=10, **{"for": "4s"})]), Clock()
    feed(engine, clock, 11)
    started = clock.now
    error = SourceError(ErrorKind.TIMEOUT, "slow")
    assert feed(engine, clock, None, error=error) is State.ERROR
    assert feed(engine, clock, 11) is State.PENDING
    assert feed(engine, clock, 11, step=2) is State.FIRING  # 4 s since the breach began
    assert engine.breaches()[0].since == started
    assert feed(engine, clock, None, error=error) is State.ERROR
    assert feed(engine, clock, 12) is State.FIRING


def test_unknown_threshold_ids_are_ignored():
    engine, clock = ThresholdEngine([bound(warning=1)]), Clock()
    engine.update([Measurement("other", 100)], clock.tick(1))
    assert engine.breaches() == []


def test_sorting_and_exit_codes():
    engine, clock = (
        ThresholdEngine(
            [bound("a", warning=1), bound("b", critical=1), bound("c", warning=1), bound("d", warning=1)]
        ),
        Clock(),
    )
    engine.update([Measurement("c", 5)], clock.tick(1))  # oldest warning
    engine.update([Measurement("a", 5), Measurement("b", 5), Measurement("d", None)], clock.tick(1))
    ordered = [b.id for b in sort_breaches(engine.breaches())]
    assert ordered == ["b", "c", "a", "d"]
    assert worst(engine.breaches()) is Severity.CRITICAL
    assert exit_code(engine.breaches()) == 2
    engine.update([Measurement("b", 0)], clock.tick(1))
    assert exit_code(engine.breaches()) == 1
    engine.update([Measurement("a", 0), Measurement("c", 0)], clock.tick(1))
    assert exit_code(engine.breaches()) == 3
    engine.update([Measurement("d", 0)], clock.tick(1))
    assert exit_code(engine.breaches()) == 0


def test_firing_sorts_before_pending_at_equal_severity():
    engine, clock = ThresholdEngine([bound("p", warning=1, **{"for": "1h"}), bound("f", warning=1)]), Clock()
    engine.update([Measurement("p", 5)], clock.tick(1))
    engine.update([Measurement("f", 5)], clock.tick(1))
    assert [b.id for b in sort_breaches(engine.breaches())] == ["f", "p"]


def test_prometheus_alerts_map_into_breaches():
    alerts = (
        PromAlert(name="HighErrorRate", state="firing", severity=Severity.from_label("critical"),
                  labels=(("alertname", "HighErrorRate"), ("job", "storefront"), ("severity", "critical")),
                  annotations=(("summary", "5xx above 5%"), ("runbook_url", "https://runbooks/x")),
                  active_at=900.0, value="0.07"),
        PromAlert(name="SyncJobFailure", state="pending", severity=Severity.from_label("bogus"),
                  labels=(("alertname", "SyncJobFailure"),), annotations=(), active_at=950.0),
    )  # fmt: skip
    snapshot = PrometheusSnapshot(source="prometheus", taken_at=1000.0, url="http://p", alerts=alerts)
    breaches = sort_breaches(alert_breaches(snapshot, {"HighErrorRate": ("high-error-rate",)}))
    first, second = breaches
    assert (first.title, first.state, first.severity) == ("HighErrorRate", State.FIRING, Severity.CRITICAL)
    assert first.runbooks == ("high-error-rate",) and first.runbook_url == "https://runbooks/x"
    assert first.subject == "job=storefront" and first.summary == "5xx above 5%"
    assert first.age(1000.0) == pytest.approx(100.0)
    assert (second.state, second.severity) == (State.PENDING, Severity.WARNING)
    assert first.id != second.id


def test_an_alerts_subject_says_its_own_labels_before_the_scrape_targets():
    """Labels come sorted, so a subject read "instance=127.0.0.1:22962, job=sync-work…" in the
    Subject column and the provider whose syncs fail was cut off. The series' own labels come
    first, then job, then instance."""
    labels = (("alertname", "SyncSuccessRatioLow"), ("instance", "127.0.0.1:22962"), ("job", "sync-worker"),
              ("provider", "hubspot"), ("queue", "q1"), ("severity", "warning"))  # fmt: skip
    alert = PromAlert(name="SyncSuccessRatioLow", state="firing", severity=Severity.WARNING, labels=labels,
                      annotations=(), active_at=900.0)  # fmt: skip
    snapshot = PrometheusSnapshot(source="prometheus", taken_at=1000.0, url="http://p", alerts=(alert,))
    (breach,) = alert_breaches(snapshot, {})
    assert breach.subject == "provider=hubspot, queue=q1, job=sync-worker, instance=127.0.0.1:22962"
    assert breach.labels == labels  # the labels themselves keep Prometheus's order
    # A probe's instance is the URL it probes: the series' own subject, not the scrape target.
    probe = (("instance", "https://shop.example/health"), ("job", "blackbox"))
    assert label_subject(probe) == "instance=https://shop.example/health, job=blackbox"


def test_alert_values_read_as_numbers():
    from console.rules import alert_value

    assert alert_value("1.0018e+00") == "1.002"
    assert alert_value("0e+00") == "0"
    assert alert_value("3.2451612903225806e-01") == "0.3245"
    assert alert_value("NaN") == "NaN"
    assert alert_value("") == ""


def test_numbers_in_the_thousands_read_whole_not_in_exponents():
    """A queue of 10440 items read "1.044e+04 items (>= 100 items)" in the demo's breach row:
    four significant digits turned exponent from 10 000 on, though exponents were meant for
    values of a million and up."""
    from console.rules import alert_value, format_number

    assert format_number(10440, "items") == "10440 items"
    assert format_number(1234.4) == "1234"
    assert format_number(-98765.4) == "-98765"
    assert format_number(999_999.4) == "999999"
    assert format_number(2_500_000) == "2.500e+06"
    assert format_number(0.5556, "/s") == "0.5556 /s"
    assert format_number(12.34567) == "12.35"
    assert alert_value("1.044e+04") == "10440"


def test_silence_for_matches_an_alert_like_alertmanager():
    from console.model import Silence
    from console.rules import Breach, silence_for

    alert = Breach(
        id="alert:HighErrorRate:1",
        kind="alert",
        title="HighErrorRate",
        source="prometheus",
        state=State.FIRING,
        severity=Severity.CRITICAL,
        since=0.0,
        labels=(("alertname", "HighErrorRate"), ("job", "storefront")),
    )

    def silence(*matchers: str, state: str = "active", ends: float = 100.0) -> Silence:
        return Silence(id=f"s{ends}", state=state, matchers=matchers, starts_at=0.0, ends_at=ends)

    assert silence_for(alert, [silence("alertname=HighErrorRate")]).id == "s100.0"
    assert silence_for(alert, [silence("alertname=HighErrorRate", "job=sync-worker")]) is None
    assert silence_for(alert, [silence("job=~store.*"), silence("job!=x", ends=200.0)]).id == "s200.0"
    assert silence_for(alert, [silence("job!~store.*")]) is None
    assert silence_for(alert, [silence("alertname=HighErrorRate", state="expired")]) is None
    assert silence_for(alert, [silence("job=~[")]) is None  # a broken regex matches nothing
