"""The journal's file format does not change: a journal written by the previous release
(tests/data/journal_0_1.jsonl, written by the code before the typed journal, plus a line of a
later release, a torn line and junk) reads into typed events, makes the same incident report the
previous release made of it (tests/data/journal_0_1.report.*), and every event written again
gives the same JSON the previous release wrote and reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from console.incident_report import build_report, render_json, render_markdown
from console.journal import EVENT_TYPES, Journal, Kind, Operator, UnknownEvent, read_journal, to_json
from console.runbooks import load_pack

DATA = Path(__file__).parent / "data"
OLD = DATA / "journal_0_1.jsonl"
# The runbook the journal's run used, as the pack had it then: the report counts its steps.
RUNBOOKS = DATA / "journal_0_1_runbooks"
# The window the golden reports were made with (the previous release's build_report).
SINCE, UNTIL = 1796032799.0, 1796399206.961807


def old_records() -> list[dict]:
    out = []
    for line in OLD.read_bytes().split(b"\n"):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        out.append(record)
    return out


def test_every_kind_of_the_previous_release_reads_as_its_class() -> None:
    read = read_journal(OLD)
    assert (len(read.events), read.skipped, read.partial_tail) == (28, 2, False)
    new_in_this_release = {Kind.ACTION_CLAIMED}
    assert {e.kind for e in read.events if not isinstance(e, UnknownEvent)} == set(Kind) - new_in_this_release
    for event in read.events:
        if isinstance(event, UnknownEvent):
            assert event.kind == "presence.joined" and event.operator == "bob@wall"
        else:
            assert type(event) is EVENT_TYPES[Kind(event.raw["event"])]


def test_the_report_of_an_old_journal_is_what_the_previous_release_made() -> None:
    """The golden files are that release's report but for intended changes: a breach in the
    timeline is the system's, read as its severity (was: the operator's, failed; issue 18); the
    JSON counts checks not met apart from failed ones (``not_met``, ``unmet_steps``: none in that
    journal, whose failed checks are all checks that could not run); a breach says whether its
    start is known (``started_known``: an old journal's are, it never says otherwise)."""
    pack, problems = load_pack(RUNBOOKS, None)
    assert not problems
    report = build_report(read_journal(OLD).events, pack, since=SINCE, until=UNTIL, journal=OLD.name)
    assert render_markdown(report) == (DATA / "journal_0_1.report.md").read_text()
    assert render_json(report) == (DATA / "journal_0_1.report.json").read_text()


@pytest.mark.parametrize("record", old_records(), ids=lambda r: str(r.get("event")))
def test_an_event_written_again_is_the_line_the_previous_release_wrote(record: dict, tmp_path: Path) -> None:
    [event] = [e for e in read_journal(OLD).events if e.raw == record] or [None]
    assert event is not None
    if isinstance(event, UnknownEvent):
        pytest.skip("a later release's event: this release does not write it")
    stamp = {
        "ts",
        "event",
        "operator",
        "user",
        "ssh_client",
        "host",
        "environment",
        "console",
        "incident",
        "id",
    }
    own = {k: v for k, v in record.items() if k not in stamp}
    again = to_json(event)
    # Written again: the same keys and values; only empty ones may be left out or added (the
    # previous release reads a missing output, data, message or runbook as empty).
    assert {k: v for k, v in own.items() if v} == {k: v for k, v in again.items() if v}
    assert all(not own[k] for k in set(own) - set(again)) and all(not again[k] for k in set(again) - set(own))
    journal = Journal(tmp_path / "j.jsonl", operator=Operator("alice", "10.0.0.5", "console-host"))
    written = journal.append(event)
    assert to_json(written) == again  # and it reads back the same
