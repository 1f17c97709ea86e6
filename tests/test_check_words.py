"""What a check says it found (issue 18 item 16): '✖ FAILED: 4 rows, expected at most 0' made the
operator translate; a check names what it found, in the runbook's words when it gives them."""

from __future__ import annotations

from pathlib import Path

from console.actions.expect import Observed, verdict
from console.actions.plans import Status
from console.actions.specs import Expect
from console.yamlfile import read_document

OK, NOT_MET = Status.SUCCEEDED, Status.NOT_MET
RUNBOOKS = Path(__file__).resolve().parents[1] / "config" / "runbooks"


def test_a_failed_row_check_says_what_it_found():
    expect = Expect(max_rows=0, found="blocked sessions")
    assert verdict(expect, Observed(rows=4)) == (NOT_MET, "found 4 blocked sessions (none expected)")
    assert verdict(expect, Observed(rows=0)) == (OK, "0 blocked sessions")
    assert verdict(Expect(max_rows=2), Observed(rows=4)) == (NOT_MET, "found 4 rows (at most 2 expected)")
    assert verdict(Expect(min_rows=1), Observed(rows=0)) == (NOT_MET, "found 0 rows (at least 1 expected)")


def test_a_failed_value_check_says_what_it_found():
    expect = Expect(below=3, found="sessions waiting on a lock")
    assert verdict(expect, Observed(rows=1, values=[4])) == (
        NOT_MET,
        "found 4 sessions waiting on a lock, expected below 3",
    )
    assert verdict(Expect(below=3), Observed(rows=1, values=[4])) == (NOT_MET, "value 4, expected below 3")


def test_the_shipped_diagnostics_checks_name_what_they_find():
    doc = read_document(RUNBOOKS / "database-connection-diagnostics.yaml")
    found = {s["id"]: s["check"].get("expect", {}).get("found") for s in doc.data["steps"] if "check" in s}
    assert (
        found["locks"].startswith("lock waits") and found["long-running"] == "queries running over 5 minutes"
    )


def test_a_check_that_cannot_be_judged_is_failed_not_unmet():
    """'not met' says the check ran and found the problem; a value it cannot compare, or a
    threshold it could not resolve, is the check's own failure (docs/ARCHITECTURE.md, Runbooks)."""
    assert verdict(Expect(below=3), Observed(rows=1, values=["n/a"])) == (
        Status.FAILED,
        "a value is not a number",
    )
    unresolved = Expect.model_validate({"below": {"threshold": "postgres.main.waiting"}})
    assert verdict(unresolved, Observed(rows=1, values=[1]))[0] is Status.FAILED
    assert verdict(Expect(below=3), Observed(rows=1, values=[2]))[0] is Status.SUCCEEDED


def test_a_value_not_equal_reads_as_a_number_like_the_others():
    """'value 2.8888888888888893, expected 0' (a PromQL rate, in the demo's oauth-expired): the
    equals expectation printed the float whole, where below/above print it with :g."""
    assert verdict(Expect(equals=0), Observed(rows=1, values=[2.8888888888888893])) == (
        NOT_MET,
        "value 2.88889, expected 0",
    )
    assert verdict(Expect(equals="ok"), Observed(rows=1, values=["degraded"])) == (
        NOT_MET,
        "value degraded, expected ok",
    )
