"""End to end on the demo stack, through the engine only, for every demo scenario: the fault
shows as a breach, the breach ranks its runbook first, and the operator walks EVERY step of that
runbook in order through RunbookSession — checks run, actions are previewed and confirmed with
what each plan asks for (the typed word the plan names), waits wait (at the demo's time scale:
``runbooks.time_scale`` 1/30 in the config the stack writes), manual and escalate steps are
ticked — then the breach clears, no step ends FAILED, and the journal holds every step.

No shortcut: the test never calls a demo endpoint or runs SQL to fix anything; it injects the
fault with DemoControl and watches the console's own Poller, exactly what the screen shows. The
two things an operator does outside the console are done here as the operator would, each at
the step that says so, and named in the case: typing the index in psql at the slow-queries
runbook's manual step (identifiers cannot be bound parameters), and, for provider-down, the
provider coming back (the scenario's fault cleared: the world, not a fix) before the runbook's
checked re-enable.

A check that fails before the fix is the need the runbook establishes; it must be settled by the
wait that re-runs it after the fix (RunbookSession.wait). An action whose preview finds nothing to
touch (the terminate after a cancel that took) is skipped, as an operator would.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from console.actions import Confirmation, ConfirmMode, Executor, Result, Status
from console.config import Config
from console.demo import shopdb
from console.demo.scenarios import BY_NAME, SCENARIOS
from console.incident_report import build_report
from console.journal import Journal, Operator, read_journal, record_breaches
from console.loader import load_config
from console.poller import Poller
from console.rules import Breach, State
from console.runbooks import Pack, RunbookSession, StepState, pack_for
from console.runbooks.schema import ActionStep, CheckStep, EscalateStep, ManualStep, WaitStep
from tests.fixtures.demo import DemoStack

OPERATOR = Operator("oncall", "192.0.2.10", "demo-host")
SHOW_TIMEOUT = 45.0
CLEAR_TIMEOUT = 45.0
JOURNAL_NAME = "e2e-journal.jsonl"
CONSOLE_ID = "e2e-walks"

Hook = Callable[["Walk"], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    scenario: str
    breach: str  # prefix of the breach id the operator opens the runbook from
    runbook: str  # the runbook that must rank first for it
    fix: str  # the step whose action fixes the fault
    by_hand: dict[str, Hook] = field(default_factory=dict)  # step id -> what the operator does there
    # step id -> what its first run must find: a check that reads the fault must say NOT MET
    # (the integration's status check passed on HTTP 200 while it said needs_reauth)
    finds: dict[str, str] = field(default_factory=dict)
    # checks no wait re-runs, which may end NOT MET: what they read is still true after the fix, or
    # has nothing to read (a quota's used share falls only at the daily reset; the wait re-checks
    # that it lasts)
    unsettled: frozenset[str] = frozenset()


@dataclass
class Walk:
    """One walk of a runbook: what the hooks may read."""

    case: Case
    stack: DemoStack
    config: Config
    session: RunbookSession
    results: dict[str, Result] = field(default_factory=dict)


async def _create_the_index(walk: Walk) -> None:
    """The operator at psql: the index the slowest statement lacks (reviews.product_id, the
    table the seq-scan step lists first), under the name it had."""
    conn = await asyncpg.connect(walk.config.postgres[0].dsn)
    try:
        await conn.execute(shopdb.CREATE_INDEX_SQL.replace("CREATE INDEX", "CREATE INDEX CONCURRENTLY"))
    finally:
        await conn.close()


async def _provider_recovers(walk: Walk) -> None:
    """HubSpot is back (the scenario's fault cleared; the integration stays switched off)."""
    walk.stack.control.reset(walk.case.scenario)


async def _previous_image(walk: Walk) -> None:
    """The operator reads the releases step's output: the image of the release before the
    current one becomes the rollback's input."""
    lines = walk.results["releases"].lines
    images = [m.group(0) for line in lines if (m := re.search(r"registry\.fly\.io/\S+", line))]
    assert images, lines
    previous = next(image for image in images[1:] if image != images[0])
    await walk.session.set_input("previous_image", previous)


CASES = [
    Case("lock-contention", "postgres.demo.waiting", "lock-contention", "terminate-root-blocker"),
    Case("long-running-query", "postgres.demo.long_running", "long-running-query", "cancel"),
    Case("idle-in-transaction", "postgres.demo.idle_in_transaction", "idle-in-transaction", "terminate-idle"),
    Case("connection-exhaustion", "postgres.demo.connections", "connection-exhaustion", "terminate-idle"),
    Case("slow-queries", "postgres.demo.mean_statement_time", "slow-database-queries", "reset-statistics",
         by_hand={"add-index": _create_the_index}),
    Case("error-spike", "prometheus.error_rate", "error-spike", "rollback",
         by_hand={"rollback": _previous_image}),
    Case("upstream-rate-limit", "prometheus.upstream_429_rate", "downstream-rate-limit", "route-only"),
    Case("provider-down", "health.sync-worker", "provider-down", "disable-integration",
         by_hand={"provider-back": _provider_recovers}),
    Case("oauth-expired", "alert:UpstreamAuthFailing:", "oauth-expired", "force-refresh",
         finds={"provider-status": 'state is "needs_reauth", expected "connected"'}),
    Case("partial-sync-failures", "alert:SyncJobFailure:", "partial-sync-failures", "retry-failed"),
    Case("duplicate-events", "alert:DuplicateEventsDetected:", "duplicate-events", "kill-switch"),
    # route-only stops the model calls: their share of failures has nothing to count (the probe re-checks)
    Case("llm-timeouts", "alert:ClassificationTimeouts:", "llm-provider-outage", "route-only", unsettled=frozenset({"provider-errors"})),
    Case("webhook-signature-failures", "alert:WebhookSignatureFailures:", "webhook-signature-failure", "rotate-secret"),
    Case("quota-exhausted", "health.storefront", "ga-quota-exhausted", "reduce-polling", unsettled=frozenset({"quota"})),
]  # fmt: skip


def test_every_demo_scenario_has_a_case() -> None:
    assert [c.scenario for c in CASES] == [s.name for s in SCENARIOS]


class Console:
    """What the console process holds: one Poller, one Executor, one journal; every new state's
    breach changes are journaled, as the app does."""

    def __init__(self, config: Config, journal_path: Path) -> None:
        self.config = config
        self.poller = Poller(config)
        self.journal = Journal(journal_path, operator=OPERATOR, environment=config.environment.name)
        # One console walks every case, one after the other, as one operator's would: with a new
        # console id per walk, route-only of llm-timeouts was refused as "already ran" by
        # upstream-rate-limit's walk a minute before (console/journal/claims.py, RECENT).
        self.journal.console = CONSOLE_ID
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
    console = Console(demo_config, tmp_path_factory.getbasetemp() / JOURNAL_NAME)
    yield console
    await console.poller.aclose()


def _ours(breaches: tuple[Breach, ...], scenario: str) -> list[Breach]:
    expected = BY_NAME[scenario].expected
    return [b for b in breaches if any(e.matches(b.id) for e in expected)]


def _shown(case: Case):
    """The breach the operator opens, firing (an alert is pending for its scaled-down ``for:``
    first: the operator acts on what fires), and every breach of the scenario at its severity."""
    expected = BY_NAME[case.scenario].expected

    def done(breaches: tuple[Breach, ...]) -> bool:
        firing = any(b.id.startswith(case.breach) and b.state == State.FIRING for b in breaches)
        return firing and all(
            any(e.matches(b.id) and b.severity == e.severity for b in breaches) for e in expected
        )

    return done


async def _walk(walk: Walk) -> list[str]:
    """Every step in order, as the operator does it; one line per step for the log."""
    session, log = walk.session, []
    for step in session.runbook.steps:
        started = time.monotonic()
        if hook := walk.case.by_hand.get(step.id):
            await hook(walk)
        match step:
            case CheckStep():
                result = await session.execute(step)
                # passed, or ran and found the problem (not met); never broken (failed)
                assert result.status in (Status.PASSED, Status.NOT_MET), (step.id, result.message)
                outcome = result.status
            case WaitStep():
                result = await session.execute(step)
                assert result.status == Status.PASSED, (step.id, result.message, result.lines)
                outcome = result.status
            case ActionStep():
                plan = await session.prepare(step)
                assert plan.confirm.default is False
                assert plan.preview is not None and not plan.preview.error, (step.id, plan.preview)
                if plan.targets == () and plan.preview.rows == () and step.action.kind == "signal":
                    # the preview lists no session: nothing to do (the cancel before it took)
                    assert step.id != walk.case.fix, f"{step.id}: the fix found nothing to act on"
                    await session.skip(step, "the preview lists no session")
                    log.append(f"  {step.id}: skipped (nothing to touch)")
                    continue
                if plan.confirm.mode == ConfirmMode.TYPED:
                    assert plan.confirm.expected, step.id
                    answer = Confirmation(typed=plan.confirm.expected)
                else:
                    assert plan.confirm.mode == ConfirmMode.YES_NO, (step.id, plan.confirm)
                    answer = Confirmation(yes=True)
                result = await session.execute(step, answer, plan)
                assert result.status == Status.SUCCEEDED, (step.id, result.message, result.lines)
                assert result.recorded
                outcome = f"{result.status} ({plan.confirm.mode})"
            case ManualStep() | EscalateStep():
                assert await session.mark_done(step)
                result, outcome = None, "done"
        if result is not None:
            walk.results[step.id] = result
        log.append(f"  {step.id}: {outcome} in {time.monotonic() - started:.1f}s")
    return log


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.scenario)
async def test_the_runbook_walked_step_by_step_clears_the_breach(
    case: Case, demo_stack: DemoStack, demo_config: Config, console: Console
) -> None:
    control = demo_stack.control
    await console.wait_for(lambda b: not _ours(b, case.scenario), SHOW_TIMEOUT, "a clean slate")
    started = time.monotonic()
    control.inject(case.scenario)
    try:
        breaches = await console.wait_for(_shown(case), SHOW_TIMEOUT, f"{case.scenario} to show")
        shown_after = time.monotonic() - started
        breach = next(b for b in breaches if b.id.startswith(case.breach) and b.state == State.FIRING)

        # R: the runbook the operator needs is the first one offered for this breach.
        ranked = console.pack.rank(breach, console.config)
        assert ranked[0].runbook.id == case.runbook, [(m.runbook.id, m.score, m.why) for m in ranked[:3]]
        session = await RunbookSession.open(ranked[0].runbook, console.executor, breach=breach)
        walk = Walk(case, demo_stack, demo_config, session)
        walked_at = time.monotonic()
        log = await _walk(walk)
        walked = time.monotonic() - walked_at

        await console.wait_for(
            lambda b: not _ours(b, case.scenario),
            CLEAR_TIMEOUT,
            f"{case.scenario} to clear after the runbook",
        )
        cleared_after = time.monotonic() - walked_at

        for step_id, words in case.finds.items():
            found = walk.results[step_id]
            assert (found.status, words in found.message) == (Status.NOT_MET, True), found.message
        # No step ends failed or not met: the checks that found the problem were settled by their waits.
        every = {s.step.id: s.state for s in session.steps}
        assert all(every[step_id] in (StepState.DONE, StepState.NOT_MET) for step_id in case.unsettled), every
        states = {step_id: state for step_id, state in every.items() if step_id not in case.unsettled}
        assert not {StepState.FAILED, StepState.NOT_MET} & set(states.values()), states
        assert states[case.fix] == StepState.DONE, states
        assert all(state in (StepState.DONE, StepState.SKIPPED) for state in states.values()), states
        # The journal holds every step of the run.
        events = [
            e
            for e in read_journal(console.journal.path).events
            if getattr(e, "run", "") == session.progress.run_id
        ]
        journaled = {getattr(e, "step", "") for e in events}
        assert set(every) <= journaled, set(every) - journaled
        print(
            f"\n{case.scenario}: shown {shown_after:.1f}s, {case.runbook} walked in {walked:.1f}s, "
            f"cleared {cleared_after:.1f}s after the walk began\n" + "\n".join(log)
        )
    finally:
        control.reset()


@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_the_sync_ratio_breach_names_the_integration_whose_syncs_fail(
    demo_stack: DemoStack, console: Console
) -> None:
    """The sync success ratio was one gauge for every integration: its breach (the CRIT at the
    top of the screen) named none, and the runbook opened from it checked its default integration's
    syncs, whichever was failing. The ratio is per provider now; the breach names HubSpot's, and
    the runbook's check reads HubSpot's syncs and finds them failing."""
    scenario = "partial-sync-failures"
    await console.wait_for(lambda b: not _ours(b, scenario), SHOW_TIMEOUT, "a clean slate")
    demo_stack.control.inject(scenario)
    try:

        def firing(breaches: tuple[Breach, ...]) -> bool:
            return any(b.id == "prometheus.sync_success_ratio" and b.state == State.FIRING for b in breaches)

        breaches = await console.wait_for(firing, SHOW_TIMEOUT, "the sync ratio breach")
        breach = next(b for b in breaches if b.id == "prometheus.sync_success_ratio")
        assert breach.label("provider") == "hubspot", breach
        ranked = console.pack.rank(breach, console.config)
        assert ranked[0].runbook.id == "partial-sync-failures", [m.runbook.id for m in ranked[:3]]
        session = await RunbookSession.open(ranked[0].runbook, console.executor, breach=breach)
        assert session.context.get("provider").text == "hubspot"
        check = session.runbook.step("success-ratio")
        assert 'provider="hubspot"' in "\n".join(session.plan(check).lines)
        result = await session.execute(check)
        assert result.status == Status.NOT_MET, result.message
    finally:
        demo_stack.control.reset()
        await console.wait_for(lambda b: not _ours(b, scenario), CLEAR_TIMEOUT, f"{scenario} to clear")


@pytest.mark.slow
async def test_the_journal_of_the_walks_exports_as_an_incident_report(
    demo_stack: DemoStack, demo_config: Config, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """After the cases above: the journal holds every breach start/end and every action; the
    report says so. (Runs alone too: then it checks an empty report.)"""
    path = tmp_path_factory.getbasetemp() / JOURNAL_NAME
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
