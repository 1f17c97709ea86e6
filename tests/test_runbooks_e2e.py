"""End to end on the demo stack, through the engine only: a fault shows as a breach, the breach
ranks its runbook first, the runbook's action runs through RunbookSession and the Executor
(preview, the confirmation the plan asks for, journal), and the breach clears.

No shortcut: the test never calls a demo endpoint or runs SQL to fix anything; it injects the
fault with DemoControl and watches the console's own Poller, exactly what the screen shows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from console.actions import Confirmation, ConfirmMode, Executor, Status
from console.config import Config
from console.demo.scenarios import BY_NAME
from console.incident_report import build_report
from console.journal import Journal, Operator, read_journal, record_breaches
from console.loader import load_config
from console.poller import Poller
from console.rules import Breach, State
from console.runbooks import Pack, RunbookSession, pack_for
from tests.fixtures.demo import DemoStack

OPERATOR = Operator("oncall", "192.0.2.10", "demo-host")
SHOW_TIMEOUT = 45.0
CLEAR_TIMEOUT = 60.0


@dataclass(frozen=True)
class Case:
    scenario: str
    breach: str  # prefix of the breach id the operator opens the runbook from
    runbook: str
    step: str
    confirm: ConfirmMode
    word: str = ""  # the typed word, when known in advance ("" for a pid: read from the preview)


CASES = [
    Case("lock-contention", "postgres.demo.waiting", "lock-contention", "terminate-root-blocker", ConfirmMode.TYPED),
    Case("idle-in-transaction", "postgres.demo.idle_in_transaction", "idle-in-transaction", "terminate-idle", ConfirmMode.TYPED, "demo"),
    Case("provider-down", "health.sync-worker", "provider-down", "disable-integration", ConfirmMode.TYPED, "hubspot"),
    Case("oauth-expired", "alert:UpstreamAuthFailing:", "oauth-expired", "force-refresh", ConfirmMode.YES_NO),
    Case("partial-sync-failures", "alert:SyncJobFailure:", "partial-sync-failures", "retry-failed", ConfirmMode.YES_NO),
    Case("upstream-rate-limit", "alert:UpstreamRateLimited:", "downstream-rate-limit", "route-only", ConfirmMode.YES_NO),
    Case("error-spike", "alert:HighErrorRate:", "error-spike", "restart", ConfirmMode.TYPED, "storefront"),
]  # fmt: skip


class Console:
    """What the console process holds: one Poller, one Executor, one journal; every new state's
    breach changes are journaled, as the app does."""

    def __init__(self, config: Config, journal_path: Path) -> None:
        self.config = config
        self.poller = Poller(config)
        self.journal = Journal(journal_path, operator=OPERATOR, environment=config.environment.name)
        self.executor = Executor(config, self.journal)
        self.pack: Pack = pack_for(config)
        self.breaches: tuple[Breach, ...] = ()

    async def poll(self) -> tuple[Breach, ...]:
        state = await self.poller.poll_all()
        record_breaches(self.journal, self.breaches, state.breaches)
        self.breaches = state.breaches
        return state.breaches

    async def wait_for(self, done, timeout: float, what: str) -> tuple[Breach, ...]:
        deadline = time.monotonic() + timeout
        while True:
            breaches = await self.poll()
            if done(breaches):
                return breaches
            if time.monotonic() > deadline:
                seen = [(b.id, b.severity.word, str(b.state)) for b in breaches]
                pytest.fail(f"timed out after {timeout:g}s waiting for {what}; breaches: {seen}")
            await asyncio.sleep(0.5)


@pytest.fixture(scope="module")
def demo_config(demo_stack: DemoStack) -> Config:
    return load_config(demo_stack.config_path)


@pytest.fixture
async def console(demo_config: Config, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Console]:
    console = Console(demo_config, tmp_path_factory.getbasetemp() / "e2e-journal.jsonl")
    yield console
    await console.poller.aclose()


def _ours(breaches: tuple[Breach, ...], scenario: str) -> list[Breach]:
    expected = BY_NAME[scenario].expected
    return [b for b in breaches if any(e.matches(b.id) for e in expected)]


def _shown(case: Case):
    """Every breach of the scenario at its severity, and the one the operator opens firing (an
    alert is pending for its scaled-down ``for:`` first): the operator acts on what fires."""
    expected = BY_NAME[case.scenario].expected

    def done(breaches: tuple[Breach, ...]) -> bool:
        firing = any(b.id.startswith(case.breach) and b.state == State.FIRING for b in breaches)
        return firing and all(
            any(e.matches(b.id) and b.severity == e.severity for b in breaches) for e in expected
        )

    return done


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.scenario)
async def test_the_runbook_action_clears_the_breach(
    case: Case, demo_stack: DemoStack, console: Console
) -> None:
    control = demo_stack.control
    await console.wait_for(lambda b: not _ours(b, case.scenario), SHOW_TIMEOUT, "a clean slate")
    started = time.monotonic()
    control.inject(case.scenario)
    try:
        breaches = await console.wait_for(_shown(case), SHOW_TIMEOUT, f"{case.scenario} to show")
        shown_after = time.monotonic() - started
        breach = next(b for b in breaches if b.id.startswith(case.breach))

        # R: the runbook the operator needs is the first one offered for this breach.
        ranked = console.pack.rank(breach, console.config)
        assert ranked[0].runbook.id == case.runbook, [(m.runbook.id, m.score, m.why) for m in ranked[:3]]
        session = await RunbookSession.open(ranked[0].runbook, console.executor, breach=breach)
        step = session.runbook.step(case.step)

        # x: the dialog shows the plan and its preview, then asks for what the plan says.
        plan = await session.prepare(step)
        assert plan.confirm.mode == case.confirm
        assert plan.confirm.default is False
        _check_preview(case, session, plan)
        word = case.word or plan.confirm.expected
        assert plan.confirm.expected == (word if case.confirm == ConfirmMode.TYPED else "")
        answer = Confirmation(typed=word) if case.confirm == ConfirmMode.TYPED else Confirmation(yes=True)
        result = await session.execute(step, answer, plan)
        assert result.status == Status.SUCCEEDED, (result.message, result.lines)
        assert result.recorded
        acted_at = time.monotonic()

        await console.wait_for(
            lambda b: not _ours(b, case.scenario), CLEAR_TIMEOUT, f"{case.scenario} to clear after {step.id}"
        )
        cleared_after = time.monotonic() - acted_at
        assert session.progress.status(step.id).state == "done"
        print(
            f"\n{case.scenario}: shown {shown_after:.1f}s, {case.runbook}/{case.step}: {result.message}; "
            f"cleared {cleared_after:.1f}s after the action"
        )
    finally:
        control.reset()


def _check_preview(case: Case, session: RunbookSession, plan) -> None:
    preview = plan.preview
    assert preview is not None and not preview.error, preview
    if case.scenario == "lock-contention":
        # Only the root blocker: it blocks others and waits on nobody.
        assert len(plan.targets) == 1
        assert plan.confirm.expected == str(plan.targets[0].pid)
        blocking = preview.columns.index("blocking")
        assert int(preview.rows[0][blocking]) >= 1
    elif case.scenario == "idle-in-transaction":
        # "terminate sessions idle > 5 min": the demo scales 5 min to its threshold's 5 s; the
        # preview lists exactly the sessions that will be terminated, and nothing younger.
        assert session.context.get("older_than").text == "5"
        assert len(plan.targets) >= 2
        assert len(preview.rows) == len(plan.targets)
        assert preview.columns[:2] == ("pid", "backend_start") and "idle_for" in preview.columns
    else:
        assert preview.note.startswith("touches: ")


@pytest.mark.slow
async def test_the_journal_of_the_run_exports_as_an_incident_report(
    demo_stack: DemoStack, demo_config: Config, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """After the cases above: the journal holds every breach start/end and every action; the
    report says so. (Runs alone too: then it checks an empty report.)"""
    path = tmp_path_factory.getbasetemp() / "e2e-journal.jsonl"
    read = read_journal(path)
    report = build_report(read.events, pack_for(demo_config), since=0, journal=str(path))
    assert read.skipped == 0
    succeeded = [a for a in report.actions if a.result == "succeeded"]
    assert {a.runbook for a in succeeded} <= {c.runbook for c in CASES}
    for action in succeeded:
        assert action.confirmation in ("yes", "typed") and action.duration is not None
        assert demo_config.variables["admin_token"].value not in "\n".join(action.lines)
    assert all(b.ended is not None for b in report.breaches if any(b.id.startswith(c.breach) for c in CASES))
    assert demo_config.variables["admin_token"].value not in path.read_text()
