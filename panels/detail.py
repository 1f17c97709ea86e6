"""Full text of a session or a breach: read-only, selectable, copyable."""

from __future__ import annotations

import time
from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from console.model import HealthSnapshot, Session
from console.rules import Breach, format_duration
from panels.footer import Footer


def _utc(epoch: float | None) -> str:
    return "—" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))


def session_detail(cluster: str, session: Session, server_now: float | None) -> str:
    def age(moment: float | None) -> str:
        return (
            "" if moment is None or server_now is None else f" ({format_duration(server_now - moment)} ago)"
        )

    lock = ""
    if session.lock is not None:
        lock = f"{session.lock.mode} on {session.lock.relation or session.lock.locktype}"
    # The query first: at 80x24 what the session runs must not be below the fold (issue 18).
    lines = [
        session.query or "(no query)",
        "",
        f"cluster      {cluster}",
        f"pid          {session.pid}",
        f"backend      started {_utc(session.backend_start)}{age(session.backend_start)}",
        f"user         {session.user}",
        f"database     {session.database}",
        f"application  {session.application}",
        f"client       {session.client}",
        f"state        {session.state}",
        f"wait         {session.wait_event_type}:{session.wait_event}" if session.wait_event_type else "wait",
        f"waits for    {lock}" if lock else "waits for    —",
        f"blocked by   {', '.join(map(str, session.blocked_by)) or '—'}",
        f"transaction  {_utc(session.xact_start)}{age(session.xact_start)}",
        f"query start  {_utc(session.query_start)}{age(session.query_start)}",
    ]
    return "\n".join(lines)


def health_detail(snapshot: HealthSnapshot, last_good: HealthSnapshot | None) -> str:
    lines = [
        f"target       {snapshot.target}",
        f"url          {snapshot.url}",
        f"format       {snapshot.format}",
        f"polled       {_utc(snapshot.taken_at)}",
        f"latency      {'' if snapshot.latency is None else f'{snapshot.latency * 1000:.0f} ms'}",
        f"http         {snapshot.http_status or '—'}",
        f"status       {snapshot.status.value}",
    ]
    if snapshot.error is not None:
        lines.append(f"error        {snapshot.error}")
        if last_good is not None:
            lines.append(f"last good    {last_good.status.value} at {_utc(last_good.taken_at)}")
    if snapshot.output:
        lines += ["", snapshot.output]
    if snapshot.checks:
        lines += ["", "checks:"] + [
            f"  {c.status.value:<8}{c.name}  {c.detail}".rstrip() for c in snapshot.checks
        ]
    return "\n".join(lines)


def breach_detail(breach: Breach, now: float, ack: str = "", runbooks: Sequence[str] | None = None) -> str:
    """``runbooks``: the ones ``R`` offers for this breach, best first (None: the config's links)."""
    runbooks = breach.runbooks if runbooks is None else runbooks
    lines = [
        f"{breach.title}",
        f"id           {breach.id}",
        f"state        {breach.state.value}, severity {breach.severity.word}" + (f", {ack}" if ack else ""),
        f"since        {_utc(breach.since)} ({format_duration(breach.age(now))})"
        + ("" if breach.since_known else ", or earlier: already so when this console started"),
        f"value        {breach.value_text} {breach.level_text}".rstrip(),
        f"subject      {breach.subject or '—'}",
        f"runbooks     {', '.join(runbooks) or '—'}",
    ]
    if breach.runbook_url:
        lines.append(f"runbook url  {breach.runbook_url}")
    if breach.summary:
        lines += ["", breach.summary]
    if breach.labels:
        lines += ["", "labels:"] + [f"  {k}={v}" for k, v in breach.labels]
    return "\n".join(lines)


class DetailScreen(ModalScreen[None]):
    """The text is untrusted but already sanitised; TextArea shows it literally."""

    BINDINGS = [
        Binding("escape,q", "dismiss", "Close", id="detail_close"),
        Binding("y", "copy", "Copy all", id="detail_copy"),
    ]
    DEFAULT_CSS = """
    DetailScreen { align: center middle; }
    DetailScreen > Vertical { width: 90%; height: 85%; border: thick $accent; background: $surface; }
    DetailScreen TextArea { height: 1fr; }
    DetailScreen .title { height: 1; text-style: bold; }
    """

    def __init__(self, title: str, body: str) -> None:
        super().__init__()
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        from rich.text import Text
        from textual.widgets import TextArea  # with its document modules: on first use (start-up)

        with Vertical():
            yield Static(Text(self.title_text), classes="title")
            yield TextArea(
                self.body, read_only=True, soft_wrap=True, show_line_numbers=False, id="detail-text"
            )
        yield Footer()

    def action_copy(self) -> None:
        area = self.query_one("#detail-text")
        self.app.copy_to_clipboard(area.selected_text or self.body)
        self.notify("copied to the clipboard")
