"""The journal: fsync before acknowledging, kill -9 at any moment, several writers, redaction."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from console import redact
from console.journal import (
    ActionFailed,
    BreachChanged,
    Journal,
    JournalError,
    Note,
    Operator,
    PlanRecord,
    RunbookOpened,
    breach_events,
    read_journal,
    record_breaches,
)
from console.model import Severity
from console.rules import Breach, State
from console.timeline import timeline

ROOT = Path(__file__).resolve().parent.parent
OPERATOR = Operator("alice", "10.0.0.5", "console-host")

# A writer that acknowledges every event on stdout after append() returned (fsync done).
# Every few lines one is big (``pads`` x 8000 characters), so that a kill may land inside write().
WRITER = textwrap.dedent(
    """
    import sys
    from console.journal import Journal, Note, Operator
    journal = Journal(sys.argv[1], operator=Operator("writer", "", "h"))
    tag, every, pads = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    n = 0
    while True:
        n += 1
        pad = "x" * 8000 * (pads if n % every == 0 else 0)
        journal.append(Note(runbook=tag, step=str(n), text=pad))
        sys.stdout.write(f"{n}\\n")
        sys.stdout.flush()
    """
)


def _writer(path: Path, tag: str, every: int = 3, pads: int = 25) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), tag, str(every), str(pads)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_append_is_one_whole_line_with_the_common_fields(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j" / "journal.jsonl", operator=OPERATOR, environment="prod")
    event = journal.append(Note(text="hello", runbook="rb", step="s1"))
    data = (tmp_path / "j" / "journal.jsonl").read_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    written = json.loads(data)
    assert written == event.raw and event.text == "hello" and event.operator == written["operator"]
    assert written["event"] == "note" and written["ts"].endswith("Z")
    assert written["operator"] == "alice@console-host (ssh from 10.0.0.5)"
    assert (written["user"], written["ssh_client"], written["host"]) == ("alice", "10.0.0.5", "console-host")
    assert written["environment"] == "prod" and written["runbook"] == "rb"
    assert oct((tmp_path / "j" / "journal.jsonl").stat().st_mode & 0o777) == "0o600"


def test_operator_comes_from_the_ssh_environment() -> None:
    op = Operator.current({"USER": "bob", "SSH_CONNECTION": "192.0.2.7 51000 192.0.2.1 22"})
    assert (op.user, op.ssh_client) == ("bob", "192.0.2.7")
    assert (
        Operator.current({"LOGNAME": "carol", "SSH_CLIENT": "198.51.100.2 4000 22"}).ssh_client
        == "198.51.100.2"
    )
    assert Operator.current({"USER": "dave"}).ssh_client == ""


def test_kill_9_at_random_moments_loses_no_acknowledged_line(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    rng = random.Random(6)
    iterations, acked_total, torn = 60, 0, 0
    acknowledged: dict[str, int] = {}
    for i in range(iterations):
        tag = f"w{i}"
        proc = _writer(path, tag, every=rng.choice((2, 3, 5)), pads=rng.choice((25, 600)))
        assert proc.stdout is not None
        first = proc.stdout.readline()  # started and acknowledged at least one event
        assert first.strip() == "1", first
        time.sleep(rng.uniform(0, 0.03))
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read()  # not communicate(): readline() may have buffered more
        proc.wait(timeout=10)
        acks = [int(x) for x in (first + rest).split()]
        acknowledged[tag] = max(acks)
        acked_total += len(acks)
        # At most one partial line, and only at the very end.
        data = path.read_bytes()
        tail = data.rsplit(b"\n", 1)[-1]
        read = read_journal(path)
        assert read.partial_tail == bool(tail)
        torn += bool(tail)
        seen = [int(e.step) for e in read.events if e.runbook == tag]
        # Every acknowledged event is there, whole, in order; at most one more (written, not yet acked).
        assert seen[: len(acks)] == acks
        assert len(seen) - len(acks) in (0, 1)
    # A writer that starts after a torn tail begins a fresh line: earlier torn lines stay single
    # unreadable lines in the middle, each counted once, and nothing else is lost.
    read = read_journal(path)
    assert read.skipped == torn
    for tag, last in acknowledged.items():
        assert [int(e.step) for e in read.events if e.runbook == tag][:last] == list(range(1, last + 1))
    assert acked_total > iterations
    print(f"\nkill -9: {iterations} kills, {acked_total} acknowledged events, {torn} torn tails, none lost")


def test_several_processes_append_without_interleaving(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    writers = [_writer(path, f"p{i}", every=4, pads=25) for i in range(4)]
    # Run until every writer has appended a good number of events (a busy machine starts them late).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        tags = [e.runbook for e in read_journal(path).events]
        if all(tags.count(f"p{i}") > 20 for i in range(4)):
            break
        time.sleep(0.1)
    for proc in writers:
        proc.send_signal(signal.SIGTERM)
    counts = {}
    for i, proc in enumerate(writers):
        out, _ = proc.communicate(timeout=10)
        counts[f"p{i}"] = len(out.split())
    read = read_journal(path)
    assert read.skipped <= 4  # SIGTERM can tear at most each writer's last line
    for tag, count in counts.items():
        ns = [int(e.step) for e in read.events if e.runbook == tag]
        assert ns[:count] == list(range(1, count + 1)), tag
        assert count > 10
    # Every line in the file parsed as one event of one writer: no two lines interleaved.
    lines = path.read_bytes().split(b"\n")
    whole = [line for line in lines if line]
    assert len(whole) - read.skipped == len(read.events)


def test_a_torn_tail_is_skipped_and_the_next_event_starts_a_new_line(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, operator=OPERATOR)
    journal.append(Note(text="before"))
    with open(path, "ab") as handle:
        handle.write(b'{"ts": "2026-01-01T00:00:00Z", "event": "no')  # a writer died here
    assert read_journal(path).partial_tail
    journal.append(Note(text="after"))
    read = read_journal(path)
    assert [e.text for e in read.events] == ["before", "after"]
    assert read.skipped == 1 and not read.partial_tail


def test_corrupt_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    Journal(path, operator=OPERATOR).append(Note(text="one"))
    with open(path, "ab") as handle:
        handle.write(b'garbage\n[1,2]\n{"event": "x"}\n\xff\xfe\n\n')
    Journal(path, operator=OPERATOR).append(Note(text="two"))
    read = read_journal(path)
    assert [e.text for e in read.events] == ["one", "two"]
    assert read.skipped == 4


def test_since_filters_and_a_missing_file_is_empty(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    journal = Journal(tmp_path / "j.jsonl", operator=OPERATOR, clock=lambda: now[0])
    journal.append(Note(text="old"))
    now[0] += 3600
    journal.append(Note(text="new"))
    assert [e.text for e in journal.read(since=now[0] - 60).events] == ["new"]
    assert read_journal(tmp_path / "none.jsonl").events == ()


def test_redaction_of_a_canary_secret_everywhere(tmp_path: Path) -> None:
    canary = "canary-" + os.urandom(6).hex()
    redact.register(canary)
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, operator=OPERATOR)
    journal.append(
        ActionFailed(
            message=f"server said: token {canary} rejected",
            plan=PlanRecord(lines=(f"Authorization: Bearer {canary}",), title=canary),
            output=(f"{canary}\x1b[2J",),
            data={"nested": {"deep": [canary]}},
        )
    )
    journal.append(RunbookOpened(inputs={f"key-{canary}": canary}))
    data = path.read_text()
    assert canary not in data
    assert "\x1b" not in data and "\\u001b" not in data  # escape sequences are made visible
    assert "***" in data


def test_dev_full_refuses_with_a_reason() -> None:
    journal = Journal("/dev/full", operator=OPERATOR)
    with pytest.raises(JournalError, match="No space left on device"):
        journal.append(Note(text="x"))


def test_append_latency_with_fsync(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl", operator=OPERATOR)
    samples = []
    for i in range(200):
        started = time.perf_counter()
        journal.append(ActionFailed(message=f"line {i}", plan=PlanRecord(lines=("SELECT 1",) * 5)))
        samples.append(time.perf_counter() - started)
    samples.sort()
    median, p99 = samples[len(samples) // 2], samples[int(len(samples) * 0.99)]
    print(f"\njournal append with fsync: median {median * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms")
    assert median < 0.5


def _breach(
    breach_id: str, state: State = State.FIRING, severity: Severity = Severity.CRITICAL, **kw
) -> Breach:
    return Breach(
        id=breach_id,
        kind=kw.pop("kind", "threshold"),
        source=kw.pop("source", "postgres:demo"),
        title=kw.pop("title", breach_id),
        state=state,
        severity=severity,
        since=kw.pop("since", 1_800_000_000.0),
        **kw,
    )


def test_breach_diff_gives_start_change_and_end() -> None:
    a = _breach("postgres.demo.waiting")
    b = _breach("alert:HighErrorRate:1", State.PENDING, kind="alert", title="HighErrorRate")
    c = _breach("health.storefront")
    b_firing = _breach("alert:HighErrorRate:1", kind="alert", title="HighErrorRate")
    events = breach_events([a, b], [b_firing, c])
    kinds = [(event.kind, event.breach) for event in events]
    assert kinds == [
        ("breach.change", "alert:HighErrorRate:1"),
        ("breach.start", "health.storefront"),
        ("breach.end", "postgres.demo.waiting"),
    ]
    [change] = [e for e in events if isinstance(e, BreachChanged)]
    assert (change.from_state, change.state) == ("pending", "firing")
    assert breach_events([a], [a]) == []


def test_record_breaches_journals_the_diff_and_the_timeline_reads_it(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl", operator=OPERATOR)
    a = _breach("postgres.demo.waiting", value_text="3 sessions", subject="pid 42")
    record_breaches(journal, [], [a])
    record_breaches(journal, [a], [])
    entries = timeline(journal.read().events)
    assert [e.kind for e in entries] == ["breach.start", "breach.end"]
    assert entries[0].text == "postgres.demo.waiting firing: 3 sessions pid 42"
    # the system's breach, read as its severity; not a failure of the operator's (issue 18)
    assert (entries[0].outcome, entries[0].severity, entries[0].who) == ("breach", "CRIT", "system")
    assert (entries[1].outcome, entries[1].who) == ("ok", "system")


def test_a_breach_already_on_at_the_first_look_is_journaled_and_reported_as_begun_then_or_earlier(
    tmp_path: Path,
) -> None:
    """The journal kept the console's first look as the start of a breach already on: the
    incident report said it began at 13:08 and lasted 4m when it had been on for an hour."""
    from console.incident_report import build_report, render_markdown
    from console.runbooks import load_pack

    path = tmp_path / "journal.jsonl"
    journal = Journal(path, operator=OPERATOR)
    seen = _breach("postgres.demo.waiting", since=1_800_000_000.0, since_known=False)
    known = _breach("health.storefront", since=1_800_000_010.0)
    record_breaches(journal, [], [seen, known])
    record_breaches(journal, [seen, known], [])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line.get("since_first_look") for line in lines] == [True, None, True, None]
    texts = [e.text for e in timeline(journal.read().events)]
    assert (
        texts[2].endswith("since 2027-01-15T08:00:00.000000Z or earlier)") and "or earlier" not in texts[3]
    ), texts
    pack, _ = load_pack(Path(__file__).parent / "data" / "journal_0_1_runbooks", None)
    events = journal.read().events
    report = render_markdown(build_report(events, pack, since=0, until=events[-1].ts + 1, journal="j"))
    (row,) = [line for line in report.splitlines() if line.startswith("| postgres.demo.waiting |")]
    assert " or earlier |" in row and "| ≥" in row, row
    (row,) = [line for line in report.splitlines() if line.startswith("| health.storefront |")]
    assert "or earlier" not in row and "≥" not in row, row


def test_a_breach_two_consoles_journaled_is_one_timeline_entry(tmp_path: Path) -> None:
    """Alice's and Bob's consoles each journal the lock breach starting and ending, a refresh
    apart: the shared timeline reads it once. The same transition seen again later (a new
    episode) and one console's own events stay."""
    alice = Journal(tmp_path / "alice.jsonl", operator=OPERATOR)
    bob = Journal(tmp_path / "bob.jsonl", operator=Operator("bob", "", "other-host"))
    a = _breach("postgres.demo.waiting", value_text="3 sessions", subject="pid 42")
    record_breaches(alice, [], [a])
    record_breaches(bob, [], [dataclasses.replace(a, value_text="4 sessions")])  # measured a bit later
    record_breaches(alice, [a], [])
    record_breaches(bob, [a], [])
    events = [*alice.read().events, *bob.read().events]
    assert len({e.console for e in events}) == 2
    entries = timeline(events)
    assert [(e.kind, e.who) for e in entries] == [("breach.start", "system"), ("breach.end", "system")]
    assert "3 sessions" in entries[0].text  # the first console's

    later = [dataclasses.replace(e, ts=e.ts + 3600) for e in bob.read().events]  # another episode
    assert [e.kind for e in timeline([*events, *later])] == ["breach.start", "breach.end"] * 2
    assert [e.kind for e in timeline(alice.read().events)] == ["breach.start", "breach.end"]
