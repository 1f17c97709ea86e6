"""What a check says it found (issue 18 item 16): '✖ FAILED: 4 rows, expected at most 0' made the
operator translate; a check names what it found, in the runbook's words when it gives them."""

from __future__ import annotations

from pathlib import Path

from console.actions.expect import Observed, evaluate
from console.actions.specs import Expect
from console.yamlfile import read_document

RUNBOOKS = Path(__file__).resolve().parents[1] / "config" / "runbooks"


def test_a_failed_row_check_says_what_it_found():
    expect = Expect(max_rows=0, found="blocked sessions")
    assert evaluate(expect, Observed(rows=4)) == (False, "found 4 blocked sessions (none expected)")
    assert evaluate(expect, Observed(rows=0)) == (True, "0 blocked sessions")
    assert evaluate(Expect(max_rows=2), Observed(rows=4)) == (False, "found 4 rows (at most 2 expected)")
    assert evaluate(Expect(min_rows=1), Observed(rows=0)) == (False, "found 0 rows (at least 1 expected)")


def test_a_failed_value_check_says_what_it_found():
    expect = Expect(below=3, found="sessions waiting on a lock")
    assert evaluate(expect, Observed(rows=1, values=[4])) == (
        False,
        "found 4 sessions waiting on a lock, expected below 3",
    )
    assert evaluate(Expect(below=3), Observed(rows=1, values=[4])) == (False, "value 4, expected below 3")


def test_the_shipped_diagnostics_checks_name_what_they_find():
    doc = read_document(RUNBOOKS / "database-connection-diagnostics.yaml")
    found = {s["id"]: s["check"].get("expect", {}).get("found") for s in doc.data["steps"] if "check" in s}
    assert (
        found["locks"].startswith("lock waits") and found["long-running"] == "queries running over 5 minutes"
    )
