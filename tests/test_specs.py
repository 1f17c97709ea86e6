"""Specs and runbook steps as discriminated unions: a step's ``action:`` names its kind with its
one key (``sql:``, ``signal:``, ...), a ``check:`` with ``sql:``/``promql:``/``http:``, a step is
one of check/action/manual/wait/escalate. The file shape and the problems a bad file gets (one
``file:line:col: message`` each, dotted paths without the union's tags) are as before."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from console.actions import (
    ActionSpec,
    ArgvActionSpec,
    CheckSpec,
    HttpAction,
    HttpActionSpec,
    PromQLCheckSpec,
    SqlAction,
    SqlActionSpec,
)
from console.runbooks import ActionStep, CheckStep, ManualStep, Runbook, Step, WaitStep
from console.yamlfile import parse_document, problems_from_validation

HEAD = "id: b\ntitle: B\nsteps:\n"

# (the steps of a runbook file, every problem it gets)
PROBLEMS = {
    "two step kinds": (
        "  - id: s1\n    title: one\n    manual: {}\n    wait: {seconds: 1, check: x}\n",
        ["4:5: steps[0]: a step is exactly one of: check, action, manual, wait, escalate (got manual, wait)"],
    ),
    "no step kind (a null one is none)": (
        "  - id: s1\n    title: one\n    manual: null\n",
        ["4:5: steps[0]: a step is exactly one of: check, action, manual, wait, escalate"],
    ),
    "two action kinds": (
        "  - id: s1\n    title: one\n    action:\n      sql: {cluster: main, statement: select 1}\n"
        "      http: {url: 'http://x/'}\n",
        ["7:7: steps[0].action: give exactly one of: sql, signal, http, argv, silence (got sql, http)"],
    ),
    "no action kind": (
        "  - id: s1\n    title: one\n    action: {dangerous: true}\n",
        ["6:13: steps[0].action: give exactly one of: sql, signal, http, argv, silence"],
    ),
    "no check kind": (
        "  - id: s1\n    title: one\n    check: {expect: {status: 200}}\n",
        ["6:12: steps[0].check: give exactly one of: sql, promql, http, health"],
    ),
    "a step that is no mapping": (
        "  - just a string\n",
        [
            "4:5: steps[0]: expected a mapping: a step is exactly one of: check, action, manual, wait, escalate"
        ],
    ),
    "an action that is no mapping": (
        "  - id: s1\n    title: one\n    action: [ls]\n",
        ["6:13: steps[0].action: expected a mapping: give exactly one of: sql, signal, http, argv, silence"],
    ),
    "an unknown key next to an action": (
        "  - id: s1\n    title: one\n    bogus: 1\n    action: {argv: [ls]}\n",
        ["6:5: unknown key 'bogus' in steps[0] (allowed: id, title, text, action)"],
    ),
    "a typo inside a kind's spec": (
        "  - id: s1\n    title: one\n    action:\n      sql: {cluster: main, statment: select 1}\n",
        [
            "7:12: missing required key 'statement' in steps[0].action.sql",
            "7:28: unknown key 'statment' in steps[0].action.sql (did you mean 'statement'?)",
        ],
    ),
    "a typo in what every action has": (
        "  - id: s1\n    title: one\n    action:\n      dangerus: true\n      argv: [ls]\n",
        ["7:7: unknown key 'dangerus' in steps[0].action (did you mean 'dangerous'?)"],
    ),
    "a bad timeout": (
        "  - id: s1\n    title: one\n    action:\n      timeout: 0\n      argv: [ls]\n",
        ["7:7: steps[0].action: timeout must be > 0"],
    ),
    "a bad expectation": (
        "  - id: s1\n    title: one\n    check:\n      promql: {query: up}\n      expect: {below: x}\n",
        [
            "8:23: steps[0].check.expect.below: Input should be a valid number, unable to parse string as a number"
        ],
    ),
    "a kind's own rule": (
        "  - id: s1\n    title: one\n    action:\n      silence: {comment: x}\n",
        [
            "7:16: steps[0].action.silence: give either 'matchers' (create a silence) or 'expire' (a silence id)"
        ],
    ),
}


@pytest.mark.parametrize("case", sorted(PROBLEMS))
def test_a_bad_step_reads_as_before_the_unions(case: str) -> None:
    steps, expected = PROBLEMS[case]
    doc = parse_document(HEAD + steps, "rb.yaml")
    with pytest.raises(ValidationError) as caught:
        Runbook.model_validate(doc.data)
    assert [str(p) for p in problems_from_validation(caught.value, doc, Runbook)] == [
        f"rb.yaml:{where}" for where in expected
    ]


def test_the_file_shape_is_unchanged_and_each_step_is_its_class() -> None:
    doc = parse_document(
        HEAD
        + "  - {id: look, title: Look, check: {promql: {query: up}, expect: {below: 1}}}\n"
        + "  - {id: fix, title: Fix, action: {argv: [flyctl, restart], timeout: 5s}}\n"
        + "  - {id: tell, title: Tell, manual: tell the owner}\n"
        + "  - {id: again, title: Again, wait: {seconds: 30, check: look}}\n",
        "rb.yaml",
    )
    runbook = Runbook.model_validate(doc.data)
    look, fix, tell, again = runbook.steps
    assert [type(s) for s in runbook.steps] == [CheckStep, ActionStep, ManualStep, WaitStep]
    assert [s.kind for s in runbook.steps] == ["check", "action", "manual", "wait"]
    assert isinstance(look, CheckStep) and isinstance(look.check, PromQLCheckSpec)
    assert look.check.kind == "promql" and look.check.expect.below == 1
    assert isinstance(fix, ActionStep) and isinstance(fix.action, ArgvActionSpec)
    assert fix.action.argv.command == ["flyctl", "restart"] and fix.action.timeout == 5
    assert isinstance(tell, ManualStep) and tell.manual.text == "tell the owner"
    assert isinstance(again, WaitStep) and runbook.waited_check(again) is look
    assert not hasattr(look, "action") and not hasattr(fix, "check")


def test_calling_the_base_builds_the_variant() -> None:
    spec = ActionSpec(http=HttpAction(url="http://x/fix"), dangerous=True)
    assert type(spec) is HttpActionSpec and spec.kind == "http" and spec.dangerous
    assert isinstance(spec, ActionSpec)
    assert type(ActionSpec(argv=["ls", "-l"])) is ArgvActionSpec  # the argv shorthand
    assert type(ActionSpec.model_validate({"sql": {"statement": "select 1"}})) is SqlActionSpec
    assert type(CheckSpec(promql={"query": "up"})) is PromQLCheckSpec
    assert type(Step(id="s", title="t", manual="do it")) is ManualStep
    with pytest.raises(
        ValidationError, match=r"give exactly one of: sql, signal, http, argv, silence \(got sql, http\)"
    ):
        ActionSpec(sql=SqlAction(statement="select 1"), http=HttpAction(url="http://x/"))
    with pytest.raises(ValidationError, match="give exactly one of: sql, promql, http, health"):
        CheckSpec(timeout=3)
