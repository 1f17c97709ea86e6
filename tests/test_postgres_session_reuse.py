"""An unchanged session is not parsed again: the same Session object comes back, and a session
that changed comes back with its new values (bench/RESULTS.md: parsing 1000 sessions a second
was a fifth of the engine's time)."""

from __future__ import annotations


async def test_unchanged_sessions_are_the_same_objects_changed_ones_are_new(
    pg_server, pg_sessions, pg_source
):
    idle = await pg_sessions.open(application_name="ic-reuse-idle")
    await idle.execute("SELECT 1")
    busy = await pg_sessions.open(application_name="ic-reuse-busy")
    source = pg_source(pg_server)

    def by_pid(snapshot):
        assert snapshot.error is None, snapshot.error
        return {s.pid: s for s in snapshot.sessions}

    first = by_pid(await source.poll())
    second = by_pid(await source.poll())
    assert second[idle.get_server_pid()] is first[idle.get_server_pid()]
    await busy.execute("SELECT 2 /* now another query */")
    third = by_pid(await source.poll())
    assert third[idle.get_server_pid()] is first[idle.get_server_pid()]
    changed = third[busy.get_server_pid()]
    assert changed is not first[busy.get_server_pid()] and "another query" in changed.query
    await idle.close()
    fourth = by_pid(await source.poll())
    assert idle.get_server_pid() not in fourth and len(source._known) == len(fourth)
