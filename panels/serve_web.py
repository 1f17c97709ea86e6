"""The web server behind ``incident-console serve`` (aiohttp + textual-serve's AppService). UI
side: console/serve.py parses and checks, then takes this through console.app when serve starts.

One engine for every viewer: :func:`_serve` starts console/feed.py's :class:`Engine` (the Poller
and the thresholds, polling the backends once) before it listens; each viewer's console process
(``run --web``, textual-serve's model: a process per websocket) gets the engine's feed socket in
``$INCIDENT_CONSOLE_FEED`` and renders the states it publishes, polling nothing itself.

Routes: ``/`` the page, ``/ws`` one viewer (a console process per websocket), ``/static`` the
terminal's JavaScript, CSS and font from the textual-serve package. Nothing loads from elsewhere
(a wall screen may have no internet). Every request passes the same gate (:meth:`Gate.check`):

- token (when set): ``/?token=…`` is compared in constant time, answered with a cookie holding an
  HMAC of the token (never the token) and a redirect to the URL without it, so the token leaves
  the address bar and a reload after a server restart still gets in;
- no token and no proxy (loopback only): the Host header must be a loopback name, so a web page
  cannot reach the console through DNS rebinding;
- a websocket's Origin must be this server's (or ``--public-url``'s): another site open in the
  same browser cannot start a viewer.
The viewer cap is counted on live console processes; a full server answers 503 on both routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import html
import importlib.util
import json
import secrets
import shlex
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlencode, urlsplit

from aiohttp import WSMsgType, web

from console.feed import FEED_ENV, Engine
from console.sanitize import one_line
from console.serve import EXIT_ERROR, EXIT_OK, ServeSettings, is_loopback

if TYPE_CHECKING:
    from textual_serve.app_service import AppService

COOKIE = "incident_console_wall"
COOKIE_MAX_AGE = 400 * 24 * 3600  # the longest a browser keeps one
FULL_RETRY_SECONDS = 15
RECONNECT_SECONDS = 10
STOP_GRACE_SECONDS = 5.0
MAX_TERMINAL = 1000  # cells: a bigger resize request is clamped


def child_command(config_path: Path) -> str:
    """The console process of one viewer: wall, read-only, no action (``run --web``)."""
    argv = [sys.executable, "-m", "console.entry", "run", "--web", "--config", str(config_path)]
    return "exec " + shlex.join(argv)  # exec: the shell textual-serve starts becomes the console


def viewer_service_class(feed: Path | None = None) -> type[AppService]:
    """textual-serve's AppService, closing the page's websocket when the console process ends
    (otherwise the page keeps showing the last frame of a dead console), and handing the console
    the engine's feed (``$INCIDENT_CONSOLE_FEED``)."""
    from textual_serve.app_service import AppService

    class ViewerService(AppService):
        def _build_environment(self, width: int = 80, height: int = 24) -> dict[str, str]:
            environment = super()._build_environment(width=width, height=height)
            if feed is not None:
                environment[FEED_ENV] = str(feed)
            return environment

        async def run(self) -> None:
            await super().run()
            with contextlib.suppress(Exception):
                await self.remote_close()

        async def halt(self) -> None:
            """Ask the console to quit; SIGTERM, then SIGKILL, if it has not gone in time."""
            process = self._process
            if process is None:
                return
            if process.returncode is None:
                with contextlib.suppress(Exception):
                    await self.send_meta({"type": "quit"})
            steps = ((None, STOP_GRACE_SECONDS), (process.terminate, 3.0), (process.kill, 10.0))
            for escalate, grace in steps:
                if process.returncode is not None:
                    break
                if escalate is not None:
                    with contextlib.suppress(ProcessLookupError):
                        escalate()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), grace)
            if self._task is not None:  # its reader ends at the process's end of output
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._task, 5.0)

        @property
        def pid(self) -> int | None:
            return self._process.pid if self._process is not None else None

    return ViewerService


def static_dir() -> Path:
    spec = importlib.util.find_spec("textual_serve")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def cookie_value(token: str) -> str:
    return hmac.new(token.encode(), b"incident-console serve viewer", hashlib.sha256).hexdigest()


def same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class Refused(Exception):
    def __init__(self, status: int, line: str, retry: int | None = None) -> None:
        super().__init__(line)
        self.status, self.line, self.retry = status, line, retry


class Gate:
    """Who may see the wall (the checks in the module docstring), shared by both routes."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.cookie = cookie_value(settings.token) if settings.token else None

    def client(self, request: web.Request) -> str:
        """Who asked, for the log: behind the proxy, the address the proxy added (the last one)."""
        forwarded = request.headers.get("X-Forwarded-For", "") if self.settings.behind_proxy else ""
        return one_line(forwarded.split(",")[-1].strip() or request.remote or "?", 60)

    def check(self, request: web.Request, *, websocket: bool = False) -> None:
        settings = self.settings
        if not settings.token and not settings.behind_proxy:
            host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
            if not is_loopback(host):
                shown = one_line(request.host, 80)  # the sender's text, into the page and the log
                raise Refused(403, f"this wall display answers on localhost only, not as {shown}")
        origin = request.headers.get("Origin")
        if origin is not None and websocket:
            allowed = {f"{request.scheme}://{request.host}".lower()}
            if settings.public_url:
                allowed.add(origin_of(settings.public_url))
            if settings.behind_proxy and (proto := request.headers.get("X-Forwarded-Proto")):
                allowed.add(f"{proto}://{request.host}".lower())
            if origin.lower() not in allowed:
                raise Refused(403, "this wall display does not serve pages of another site")
        if self.cookie is None:
            return
        offered = request.query.get("token")
        if offered is not None:
            if not same(offered, settings.token or ""):
                raise Refused(403, "wrong token for this wall display")
            return
        if not same(request.cookies.get(COOKIE), self.cookie):
            raise Refused(401, "this wall display needs its token: open it once as …/?token=<token>")


class WallServer:
    def __init__(self, settings: ServeSettings, log: TextIO, feed: Path | None = None) -> None:
        self.settings = settings
        self.gate = Gate(settings)
        self.log = log
        self.command = child_command(settings.config_path)
        self.viewers: dict[str, AppService] = {}
        self.service_class = viewer_service_class(feed)

    def say(self, line: str) -> None:
        print(f"serve: {line}", file=self.log, flush=True)

    def make_app(self) -> web.Application:
        app = web.Application()
        app.add_routes(
            [
                web.get("/", self.handle_index),
                web.get("/ws", self.handle_websocket),
                web.static("/static", static_dir()),
            ]
        )
        app.on_shutdown.append(self.on_shutdown)
        return app

    @property
    def full(self) -> bool:
        return len(self.viewers) >= self.settings.max_viewers

    def full_refusal(self) -> Refused:
        n = self.settings.max_viewers
        return Refused(
            503,
            f"All {n} viewer slot{'s' if n != 1 else ''} of this wall display are in use: close another "
            f"viewer, or restart serve with a higher --max-viewers. This page retries every "
            f"{FULL_RETRY_SECONDS} s.",
            retry=FULL_RETRY_SECONDS,
        )

    # --- the page ---------------------------------------------------------------------------

    async def handle_index(self, request: web.Request) -> web.StreamResponse:
        try:
            self.gate.check(request)
        except Refused as refused:
            self.say(f"refused a page for {self.gate.client(request)}: {refused.line}")
            return refusal_page(refused, self.settings.title)
        if "token" in request.query:  # accepted: keep it in a cookie, out of the address bar
            rest = {k: v for k, v in request.query.items() if k != "token"}
            # Relative: a proxy may publish this page under a path prefix.
            location = "./" + (f"?{urlencode(rest)}" if rest else "")
            response = web.Response(status=303, headers={**SECURITY_HEADERS, "Location": location})
            secure = (self.settings.public_url or "").startswith("https:") or request.secure
            response.set_cookie(
                COOKIE, self.gate.cookie or "", max_age=COOKIE_MAX_AGE, httponly=True, samesite="Strict",
                secure=secure, path="/",
            )  # fmt: skip
            return response
        if self.full:
            return refusal_page(self.full_refusal(), self.settings.title)
        return page(self.settings.title, font_size(request.query.get("fontsize")))

    # --- one viewer -------------------------------------------------------------------------

    async def handle_websocket(self, request: web.Request) -> web.StreamResponse:
        client = self.gate.client(request)
        try:
            self.gate.check(request, websocket=True)
            if self.full:
                raise self.full_refusal()
        except Refused as refused:
            self.say(f"refused a viewer from {client}: {refused.line}")
            return web.Response(status=refused.status, text=refused.line + "\n")
        websocket = web.WebSocketResponse(heartbeat=15)
        await websocket.prepare(request)
        width = clamp(request.query.get("width"), 80)
        height = clamp(request.query.get("height"), 24)
        service = self.service_class(
            self.command,
            write_bytes=websocket.send_bytes,
            write_str=websocket.send_str,
            close=websocket.close,
            download_manager=_NoDownloads(),
        )
        key = secrets.token_hex(8)
        # Counted from before its process starts until that process has ended: never over the cap.
        self.viewers[key] = service
        try:
            await service.start(width, height)
            self.say(
                f"viewer {len(self.viewers)}/{self.settings.max_viewers} from {client} (pid {service.pid})"
            )
            await self.relay(websocket, service)
        finally:
            await self.retire(key)
            self.say(f"viewer from {client} left ({len(self.viewers)}/{self.settings.max_viewers})")
        return websocket

    async def retire(self, key: str) -> None:
        if (service := self.viewers.get(key)) is not None:
            await service.halt()
            self.viewers.pop(key, None)

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.retire(key) for key in list(self.viewers)), return_exceptions=True)

    async def relay(self, websocket: web.WebSocketResponse, service: AppService) -> None:
        """Browser -> console: keys, size, focus. Anything malformed is dropped."""
        async for message in websocket:
            if message.type != WSMsgType.TEXT:
                continue
            try:
                envelope = json.loads(message.data)
            except ValueError:
                continue
            if not isinstance(envelope, list) or not envelope:
                continue
            kind, data = envelope[0], (envelope[1] if len(envelope) > 1 else None)
            if kind == "stdin" and isinstance(data, str):
                await service.send_bytes(data.encode("utf-8", "replace"))
            elif kind == "resize" and isinstance(data, dict):
                await service.set_terminal_size(clamp(data.get("width"), 80), clamp(data.get("height"), 24))
            elif kind == "ping" and isinstance(data, str | int):
                await websocket.send_json(["pong", data])
            elif kind == "blur":
                await service.blur()
            elif kind == "focus":
                await service.focus()

    async def on_shutdown(self, app: web.Application) -> None:
        await self.stop_all()


class _NoDownloads:
    """The wall delivers no files (textual-serve's download route is not served)."""

    async def cancel_app_downloads(self, app_service_id: str) -> None:
        return None

    async def create_download(self, **kwargs: Any) -> None:
        raise KeyError("downloads are off")

    async def chunk_received(self, delivery_key: str, chunk: bytes | str) -> None:
        return None


def clamp(value: object, default: int) -> int:
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default
    return max(1, min(number, MAX_TERMINAL))


def font_size(value: str | None) -> int:
    try:
        return max(8, min(int(value or 16), 64))
    except ValueError:
        return 16


# --- pages ----------------------------------------------------------------------------------

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} · wall</title>
<link rel="stylesheet" href="static/css/xterm.css">
<style>
@font-face {{ font-family: 'Roboto Mono'; font-weight: 100 700;
  src: url('static/fonts/RobotoMono-VariableFont_wght.ttf') format('truetype'); }}
html, body {{ margin: 0; padding: 0; background: #0c181f; overflow: hidden; }}
.textual-terminal {{ width: 100vw; height: 100vh; }}
#closed {{ display: none; position: absolute; inset: 0; z-index: 10; align-items: center;
  justify-content: center; background: rgba(12, 24, 31, 0.85); color: #fff;
  font: 24px 'Roboto Mono', monospace; }}
body.-closed #closed {{ display: flex; }}
</style>
<script src="static/js/textual.js"></script>
<script nonce="{nonce}">
(function () {{
  // textual.js starts the terminal on window.onload. Point it at this page's own websocket (any
  // path prefix a proxy adds included), and start once the bundled font is in, so the terminal
  // measures its cells with the font it draws with.
  const start = window.onload;
  window.onload = function (event) {{
    const terminal = document.getElementById("terminal");
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const base = location.pathname.replace(/[^/]*$/, "");
    terminal.dataset.sessionWebsocketUrl = scheme + "//" + location.host + base + "ws";
    document.fonts.load("{font_size}px 'Roboto Mono'").finally(function () {{ start(event); }});
  }};
  // Nobody stands at a wall screen to press a button: when the console goes away, come back.
  new MutationObserver(function () {{
    if (!document.body.classList.contains("-closed") || window.icReconnecting) return;
    window.icReconnecting = true;
    let left = {reconnect};
    const note = document.getElementById("closed-note");
    (function tick() {{
      note.textContent = "Disconnected from the console. Reconnecting in " + left + " s";
      if (left-- <= 0) location.reload(); else setTimeout(tick, 1000);
    }})();
  }}).observe(document.documentElement, {{ attributes: true, subtree: true, attributeFilter: ["class"] }});
}})();
</script>
</head>
<body>
<div id="closed"><div id="closed-note">Disconnected from the console.</div></div>
<div id="terminal" class="textual-terminal" data-session-websocket-url="" data-font-size="{font_size}"></div>
</body>
</html>
"""

REFUSAL = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
{refresh}<title>{title} · wall</title>
<style>
html, body {{ margin: 0; height: 100%; background: #0c181f; color: #fff; }}
body {{ display: flex; align-items: center; justify-content: center; font: 28px monospace; }}
p {{ max-width: 60em; padding: 1em; }}
</style>
</head>
<body><p id="refusal">{line}</p></body>
</html>
"""


def page(title: str, size: int) -> web.Response:
    nonce = secrets.token_urlsafe(16)
    body = PAGE.format(title=html.escape(title), nonce=nonce, font_size=size, reconnect=RECONNECT_SECONDS)
    csp = (
        f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; font-src 'self'; frame-ancestors 'none'"
    )
    headers = {**SECURITY_HEADERS, "Content-Security-Policy": csp}
    return web.Response(text=body, content_type="text/html", headers=headers)


def refusal_page(refused: Refused, title: str) -> web.Response:
    refresh = f'<meta http-equiv="refresh" content="{refused.retry}">\n' if refused.retry else ""
    body = REFUSAL.format(refresh=refresh, title=html.escape(title), line=html.escape(refused.line))
    headers = {**SECURITY_HEADERS, "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}
    if refused.retry:
        headers["Retry-After"] = str(refused.retry)
    return web.Response(status=refused.status, text=body, content_type="text/html", headers=headers)


# --- running --------------------------------------------------------------------------------


async def _serve(settings: ServeSettings, out: TextIO, err: TextIO, engine: Engine | None) -> int:
    if engine is not None:  # polling from now on, viewers or not: history and `for:` hold
        await engine.start(err)
        print(f"serve: engine polling; its feed for the viewers: {engine.path}", file=err, flush=True)
    try:
        return await _listen(settings, out, err, engine)
    finally:
        if engine is not None:
            await engine.aclose()


async def _listen(settings: ServeSettings, out: TextIO, err: TextIO, engine: Engine | None) -> int:
    server = WallServer(settings, err, engine.path if engine is not None else None)
    # No access log: a first visit's URL carries the token.
    runner = web.AppRunner(
        server.make_app(), access_log=None, handle_signals=False, shutdown_timeout=STOP_GRACE_SECONDS * 2
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        print(f"serve: cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}", file=err)
        return EXIT_ERROR
    port = runner.addresses[0][1] if runner.addresses else settings.port
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = settings.public_url or f"http://{host}:{port}/"
    guard = (
        "token required" if settings.token else "behind an authenticating proxy" if settings.behind_proxy
        else "this machine only"
    )  # fmt: skip
    print(
        f"incident-console serve: {url} (wall, read-only; up to {settings.max_viewers} viewers; {guard})",
        file=out,
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        server.say("stopping: closing the viewers")
        await runner.cleanup()
        await server.stop_all()  # any viewer whose handler the shutdown cancelled mid-way
    return EXIT_OK


def serve_forever(settings: ServeSettings, out: TextIO, err: TextIO, engine: Engine | None = None) -> int:
    """Serve until SIGINT/SIGTERM/SIGHUP; ``engine`` (console/feed.py) polls for every viewer
    (without one, each viewer's console would poll for itself, as before issue 20)."""
    return asyncio.run(_serve(settings, out, err, engine))
