"""No action run twice: a claim on what an action touches, held while it runs.

With a shared journal two consoles on two machines race on one real Postgres; without one the
claim is this machine's (file locks) and the confirmation says so."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from console.actions import Confirmation, Executor, Status
from console.actions.kinds.http_action import HttpAction
from console.actions.kinds.sql_statement import SqlAction
from console.actions.specs import ActionSpec
from console.journal import ActionClaimed, Journal, Operator, read_journal
from console.journal.claims import LocalClaims
from console.journal.shared import SharedJournal
from panels.plan import plan_text
from tests.test_actions import YES, _connected, _session, ctx, make_config


def console(config, tmp: Path, name: str, claims=None) -> Executor:
    tmp.mkdir(parents=True, exist_ok=True)
    journal = Journal(tmp / "journal.jsonl", operator=Operator(name, "", f"{name}-host"), environment="prod")
    return Executor(config, journal, claims=claims)


async def test_without_a_shared_journal_claims_are_this_machines_and_the_dialog_says_so(
    pg_server, pg_sessions, tmp_path
):
    config = make_config(tmp_path, pg=pg_server)
    shared_dir = tmp_path / "machine"  # two consoles on one machine share the journal's directory
    alice = console(config, shared_dir, "alice")
    bob = console(config, shared_dir, "bob")
    _, pid, started = await _session(pg_sessions, "ic-claim-victim")
    plan = await alice.preview(alice.signal_plan("main", pid, started, "terminate"))
    assert plan.claimed == "claims: this machine only (no shared journal configured)"
    assert "claims: this machine only" in str(plan_text(plan))
    # bob holds the pid (as while his terminate runs): alice is refused and told who
    keys = plan.claim_keys()
    assert keys == (f"postgres:main pid {pid}",)
    assert not (await bob.claims.claim(keys)).held
    bob.journal.append(plan.event(ActionClaimed, claims=keys))
    seen = await alice.preview(alice.signal_plan("main", pid, started, "terminate"))
    assert seen.claimed.startswith(f"bob@bob-host is running 'terminate pid {pid} on main'")
    assert "⚠ bob@bob-host is running" in str(plan_text(seen))
    result = await alice.execute(seen, Confirmation(typed=str(pid)))
    assert result.status == Status.REFUSED and "bob@bob-host is running" in result.message
    assert await _connected(pg_server, pid)  # nothing ran
    await bob.claims.release(keys)
    result = await alice.execute(seen, Confirmation(typed=str(pid)))
    assert result.status == Status.SUCCEEDED
    kinds = [e.kind for e in read_journal(alice.journal.path).events]
    assert kinds[-3:] == ["action.claimed", "action.confirmed", "action.succeeded"]
    assert isinstance(alice.claims, LocalClaims) and not alice.claims._held  # released
    assert alice.claims.directory == alice.journal.path.with_name("journal.jsonl.claims")


async def test_a_race_to_terminate_the_same_pid_runs_exactly_one_signal(
    pg_server, pg_sessions, store, tmp_path
):
    """100 trials: two consoles with a shared journal confirm a terminate of the same session at
    the same moment; exactly one signal is sent each time."""
    _, limited, _ = store
    config = make_config(tmp_path, pg=pg_server)
    links, executors = [], []
    for name in ("alice", "bob"):
        ex = console(config, tmp_path / name, name)
        link = SharedJournal(limited, ex.journal.path, environment="prod", console=ex.journal.console,
                             operator=str(ex.operator))  # fmt: skip
        ex.claims = link
        links.append(link), executors.append(ex)
    tasks = [asyncio.create_task(link.run()) for link in links]
    try:
        signals, refused, started_at = 0, 0, time.monotonic()
        for _ in range(100):
            _, pid, started = await _session(pg_sessions, "ic-race-victim")
            plans = [await ex.preview(ex.signal_plan("main", pid, started, "terminate")) for ex in executors]
            results = await asyncio.gather(
                *(
                    ex.execute(plan, Confirmation(typed=str(pid)))
                    for ex, plan in zip(executors, plans, strict=True)
                )
            )
            sent = [r for r in results if r.status == Status.SUCCEEDED]
            signals += len(sent)
            refused += sum(1 for r in results if r.status == Status.REFUSED)
            assert len(sent) == 1, [r.message for r in results]
            assert not await _connected(pg_server, pid)
        assert signals == 100 and refused == 100
        print(f"\n100 races in {time.monotonic() - started_at:.1f} s: 100 signals, 100 refusals")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for link in links:
            await link.aclose()


async def test_the_same_action_confirmed_after_another_console_ran_it_is_refused_saying_so(
    pg_server, pg_sessions, tmp_path
):
    """Two engineers confirm the same terminate one after the other: the second is told the first
    already did it, instead of failing on a session that is gone (a shared runbook step then
    read FAILED although the first had done it)."""
    config = make_config(tmp_path, pg=pg_server)
    alice = console(config, tmp_path / "machine", "alice")
    bob = console(config, tmp_path / "machine", "bob")
    _, pid, started = await _session(pg_sessions, "ic-twice-victim")
    seen_by_alice = await alice.preview(alice.signal_plan("main", pid, started, "terminate"))
    seen_by_bob = await bob.preview(bob.signal_plan("main", pid, started, "terminate"))
    assert (await alice.execute(seen_by_alice, Confirmation(typed=str(pid)))).status == Status.SUCCEEDED
    result = await bob.execute(seen_by_bob, Confirmation(typed=str(pid)))
    assert result.status == Status.REFUSED
    assert result.message.startswith(
        f"not run: alice@alice-host already ran 'terminate pid {pid} on main' on this target at "
    )
    kinds = [e.kind for e in read_journal(bob.journal.path).events if e.console == bob.journal.console]
    assert kinds[-1] == "action.refused" and "action.confirmed" not in kinds


async def test_a_request_to_the_same_url_with_another_body_is_another_action(http_server, tmp_path):
    """Route-only then back to normal mode are two POSTs to /admin/mode: the claim knew the URL
    only, so the second engineer's "normal" was refused for ten minutes as "already ran" (and a
    second walk of route-only in the e2e suite was refused for the first's). The body is part of
    what the action is: the same body is still refused while it is the newest action there;
    after another one (normal mode), route-only is needed again and runs."""
    http_server.route("/fix", json={"ok": True})
    config = make_config(tmp_path, base_url=http_server.url("").rstrip("/"))
    alice = console(config, tmp_path / "machine", "alice")
    bob = console(config, tmp_path / "machine", "bob")

    def mode(executor: Executor, value: str):
        return executor.render(
            ActionSpec(http=HttpAction(url="{{base_url}}/fix", json={"mode": value})), ctx(config)
        )

    assert (await alice.execute(mode(alice, "route-only"), YES)).status == Status.SUCCEEDED
    twice = await bob.execute(mode(bob, "route-only"), YES)
    assert twice.status == Status.REFUSED
    assert "alice@alice-host already ran 'POST " in twice.message and '{"mode":"route-only"}' in twice.message
    normal = mode(bob, "normal")
    assert '{"mode":"normal"}' in normal.summary
    assert (await bob.execute(normal, YES)).status == Status.SUCCEEDED
    # alice's route-only is no longer the newest action there: needed again, carol's runs
    carol = console(config, tmp_path / "machine", "carol")
    assert (await carol.execute(mode(carol, "route-only"), YES)).status == Status.SUCCEEDED
    assert http_server.hits("/fix") == 3


async def test_a_statement_with_other_bound_values_is_another_action(pg_server, tmp_path):
    """The same SQL with another value bound (reset one statement's statistics, then another's)
    is another action: the summary carries the values, as an HTTP action's carries its body."""
    config = make_config(tmp_path, pg=pg_server)
    alice = console(config, tmp_path / "machine", "alice")
    bob = console(config, tmp_path / "machine", "bob")

    def select(executor: Executor, value: int):
        spec = ActionSpec(sql=SqlAction(cluster="main", statement="SELECT $1::int AS chosen", params=[value]))
        return executor.render(spec, ctx(config))

    first = select(alice, 1)
    assert first.summary == "SQL on main: SELECT $1::int AS chosen [$1 = 1]"
    assert (await alice.execute(first, YES)).status == Status.SUCCEEDED
    assert (await bob.execute(select(bob, 2), YES)).status == Status.SUCCEEDED
    assert (await alice.execute(select(alice, 2), YES)).status == Status.REFUSED  # bob's, the newest there


async def test_another_command_of_the_same_program_does_not_make_a_restart_new_again(tmp_path):
    """Only a request to the same URL replaces an earlier one's effect: ``fly status`` between two
    engineers' ``fly machine restart`` of the same machine does not make the second restart
    anything but a repeat (a command's target is its program, shared by every command)."""
    config = make_config(tmp_path)
    alice = console(config, tmp_path / "machine", "alice")
    bob = console(config, tmp_path / "machine", "bob")
    carol = console(config, tmp_path / "machine", "carol")

    def run(executor: Executor, *argv: str):
        return executor.render(ActionSpec(argv=["/bin/echo", *argv]), ctx(config))

    assert (await alice.execute(run(alice, "machine", "restart", "m1"), YES)).status == Status.SUCCEEDED
    assert (await bob.execute(run(bob, "status"), YES)).status == Status.SUCCEEDED
    again = await carol.execute(run(carol, "machine", "restart", "m1"), YES)
    assert (
        again.status == Status.REFUSED
        and "alice@alice-host already ran 'run /bin/echo machine" in again.message
    )
