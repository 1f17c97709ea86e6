"""What the harness starts besides the tools: the load, a health endpoint server, a Prometheus.

- :class:`Load`: ``python -m bench.load`` with N sessions (see bench/load.py), stopped on exit.
- :class:`HealthServer`: a real HTTP server (uvicorn, a raw ASGI app) on 127.0.0.1 answering
  ``GET /health/<i>`` with ``application/health+json`` ``{"status": "pass", ...}``, in a process
  of its own.
- :class:`PrometheusServer`: the real Prometheus binary scraping itself every second, with a
  throwaway TSDB; queries then have real series to evaluate.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import asyncpg
import yaml

from console.demo.pgcluster import set_parent_death_signal
from console.demo.ports import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def _stop(process: subprocess.Popen, timeout: float = 10) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Load:
    def __init__(self, dsn: str, sessions: int) -> None:
        self.dsn, self.sessions = dsn, sessions
        self.process: subprocess.Popen | None = None
        self.counts: dict = {}

    def __enter__(self) -> Load:
        started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.load", "--dsn", self.dsn, "--sessions", str(self.sessions)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=set_parent_death_signal,
        )
        line = self.process.stdout.readline()
        if not line:
            self.__exit__()
            raise RuntimeError(f"load generator for {self.sessions} sessions failed")
        self.counts = json.loads(line)
        self.counts["setup_s"] = time.monotonic() - started
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.stdin.close()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                _stop(self.process)
            self.process = None
            asyncio.run(self._wait_gone())

    async def _wait_gone(self, timeout: float = 60) -> None:
        """Backends exit a moment after their client hangs up: wait, so the next shape has
        every connection slot back."""
        conn = await asyncpg.connect(self.dsn)
        try:
            # A backend inside pg_sleep() notices its client is gone only when the sleep ends.
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE usename = current_user AND pid <> pg_backend_pid()"
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                left = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE usename = current_user AND pid <> pg_backend_pid()"
                )
                if left == 0:
                    return
                await asyncio.sleep(0.1)
        finally:
            await conn.close()


_ASGI = r"""
import sys, uvicorn
BODY = b'{"status": "pass", "checks": {"db:ping": [{"status": "pass", "observedValue": 1}]}}'
HEAD = [(b"content-type", b"application/health+json"), (b"content-length", str(len(BODY)).encode())]
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEAD})
    await send({"type": "http.response.body", "body": BODY})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False,
            backlog=4096, timeout_keep_alive=60)
"""


class HealthServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.port}/health/{i}"

    def __enter__(self) -> HealthServer:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _ASGI, str(self.port)], preexec_fn=set_parent_death_signal
        )
        _wait_http(self.url(0), self.process)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            _stop(self.process)


class PrometheusServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="ic-bench-prom-"))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def version(self) -> str:
        done = subprocess.run([PROMETHEUS, "--version"], capture_output=True, text=True, check=False)
        return (done.stdout or done.stderr).split("\n", 1)[0].strip()

    def __enter__(self) -> PrometheusServer:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{self.port}"]}]}
            ],
        }
        (self.directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={self.directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=set_parent_death_signal,
        )
        _wait_http(f"{self.url}/-/ready", self.process)
        # rate() over [1m] needs two samples of each series.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            body = _get(f"{self.url}/api/v1/query?query=count(rate(prometheus_http_requests_total%5B1m%5D))")
            if body and json.loads(body)["data"]["result"]:
                break
            time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            _stop(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.read()
    except OSError:
        return None


def _wait_http(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while _get(url) is None:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer")
        time.sleep(0.1)


PROMQL = (
    "sum by (handler) (rate(prometheus_http_requests_total[1m]))",
    "histogram_quantile(0.95, sum by (le) (rate(prometheus_http_request_duration_seconds_bucket[1m])))",
    "max(process_resident_memory_bytes)",
    "rate(process_cpu_seconds_total[1m])",
    "sum(up)",
)


def promql(i: int) -> str:
    """The i-th benchmark query: five shapes of query, made distinct by a constant."""
    return f"({PROMQL[i % len(PROMQL)]}) + {i}"
