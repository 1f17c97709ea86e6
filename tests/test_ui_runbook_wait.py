"""A wait step on the runbook screen: RUNNING with the time left, counting down, then its check's
result (issue 17)."""

from __future__ import annotations

from console.journal import Journal
from console.runbooks import Runbook, RunbookSession, StepState
from panels.runbook import RunbookScreen
from tests import ui_data
from tests.fixtures.http_servers import StubServer
from tests.pilot import wait_for
from tests.test_ui import Clock, make_app
from tests.test_ui_runbooks import STAGING, goto_step


def row_text(screen: RunbookScreen, step_id: str) -> str:
    return " ".join(str(cell) for cell in screen.query_one("#rb-steps").get_row(step_id))


async def test_a_waiting_step_shows_running_with_the_time_left(tmp_path, http_server: StubServer) -> None:
    http_server.route("/health", json={"status": "pass"})
    clock = Clock()
    app = make_app(
        config=ui_data.config(environment=STAGING), clock=clock, journal=Journal(tmp_path / "journal.jsonl")
    )
    runbook = Runbook.model_validate(
        {
            "id": "wait-here",
            "title": "Wait here",
            "steps": [
                {"id": "look", "title": "Look", "check": {"http": {"url": http_server.url("/health")}}},
                {"id": "again", "title": "Look again later", "wait": {"seconds": 3, "check": "look"}},
            ],
        }
    )
    async with app.run_test(size=(120, 40)) as pilot:
        session = await RunbookSession.open(runbook, app.executor)
        await app.push_screen(RunbookScreen(session))
        screen = app.screen
        assert isinstance(screen, RunbookScreen)
        await goto_step(pilot, screen, "again")
        assert "TODO" in row_text(screen, "again")
        await pilot.press("x")
        await wait_for(
            pilot,
            lambda: "◌ RUNNING 3 s left" in row_text(screen, "again"),
            what=lambda: row_text(screen, "again"),
        )
        detail = screen.query_one("#rb-detail-text")
        assert "◌ RUNNING 3 s left" in str(detail.render())
        clock.now += 1.2  # the screen's next tick counts down
        await wait_for(
            pilot,
            lambda: "◌ RUNNING 2 s left" in row_text(screen, "again"),
            what=lambda: row_text(screen, "again"),
        )
        status = session.progress.status("again")
        await wait_for(pilot, lambda: status.state == StepState.DONE, what="the wait's check passed")
        await wait_for(
            pilot, lambda: "✔ DONE" in row_text(screen, "again"), what=lambda: row_text(screen, "again")
        )
        assert "left" not in row_text(screen, "again")
        assert http_server.hits("/health") == 1
