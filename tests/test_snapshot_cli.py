"""`incident-console snapshot` end to end: the real CLI against real Postgres, Prometheus and HTTP."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

import yaml

from console.demo.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
QUIET_PG = {
    "connections": None,
    "long_running": None,
    "idle_in_transaction": None,
    "mean_statement_time": None,
}


async def run_cli(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "console.cli", *args,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode, out.decode(), err.decode()


def write_config(tmp_path: Path, **sections) -> Path:
    config = {"environment": {"name": "cli-test"}, **sections}
    path = tmp_path / "console.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def test_lock_chain_prints_the_tree_and_exits_critical(tmp_path, pg_server, pg_lock_chain):
    chain = await pg_lock_chain()
    path = write_config(
        tmp_path,
        postgres=[
            {"name": "main", "dsn": pg_server.dsn(), "thresholds": {**QUIET_PG, "waiting": {"critical": 1}}}
        ],
    )
    code, out, err = await run_cli("snapshot", "--config", str(path))
    assert code == 2, (out, err)
    assert "Traceback" not in err
    lines = out.splitlines()
    breach = next(line for line in lines if "sessions waiting on a lock" in line)
    assert breach.strip().startswith("✖ CRIT") and "firing" in breach
    tree = lines[lines.index("  blocking tree:") + 1 :]
    root = next(i for i, line in enumerate(tree) if f"pid {chain.holder} " in line)
    assert "holds locks, idle in transaction" in tree[root]
    assert re.search(rf"└─ pid {chain.second} .*waits ShareLock on {chain.table}", tree[root + 1])
    assert re.search(rf"   └─ pid {chain.third} .*waits ExclusiveLock on {chain.table}", tree[root + 2])

    code, out, _ = await run_cli("snapshot", "--config", str(path), "--format", "json")
    assert code == 2
    data = json.loads(out)
    assert data["exit_code"] == 2 and data["worst"] == "critical"
    (breach,) = [b for b in data["breaches"] if b["id"] == "postgres.main.waiting"]
    assert (breach["state"], breach["severity"], breach["value"]) == ("firing", "critical", 2.0)
    roots = data["sources"]["postgres:main"]["lock_tree"]
    holder = next(r for r in roots if r["pid"] == chain.holder)
    assert holder["children"][0]["pid"] == chain.second
    assert holder["children"][0]["children"][0]["pid"] == chain.third

    await chain.release()
    code, out, _ = await run_cli("snapshot", "--config", str(path))
    assert code == 0, out
    assert "BREACHES (0)" in out


async def test_exit_codes_warning_unknown_and_ok(tmp_path, http_server, prometheus_server, test_gauge):
    http_server.route("/health", json={"status": "warn", "output": "disk 91%"})
    health = [{"name": "web", "url": http_server.url("/health"), "severity": "critical"}]
    path = write_config(tmp_path, health=health)
    code, out, _ = await run_cli("snapshot", "--config", str(path))
    assert code == 1, out
    assert re.search(r"▲ WARN\s+firing\s+web health\s+WARN", out)

    http_server.route("/health", json={"status": "pass"})
    test_gauge.set(5)
    prom = prometheus_server.config(
        {"id": "gauge", "query": f"max({test_gauge.selector})", "threshold": {"warning": 10, "critical": 50}}
    ).model_dump(by_alias=True, exclude_none=True)
    path = write_config(tmp_path, health=health, prometheus=prom)
    deadline = asyncio.get_running_loop().time() + 15
    while True:  # wait for the first scrape of the gauge
        code, out, _ = await run_cli("snapshot", "--config", str(path), "--format", "json")
        gauge = json.loads(out)["sources"]["prometheus"]["queries"][0]
        if gauge["value"] is not None or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.5)
    assert gauge["value"] == 5.0
    assert code == 0, out

    health.append({"name": "gone", "url": f"http://127.0.0.1:{free_port()}/health"})
    path = write_config(tmp_path, health=health, prometheus=prom)
    code, out, _ = await run_cli("snapshot", "--config", str(path))
    assert code == 3, out
    assert re.search(r"! ERROR\s+error\s+gone health\s+unreachable", out)


async def test_bad_config_is_unknown_with_positioned_lines(tmp_path):
    path = tmp_path / "console.yaml"
    path.write_text("health:\n  - name: x\n    url: nope\n")
    code, out, err = await run_cli("snapshot", "--config", str(path))
    assert code == 3 and out == ""
    assert err.strip() == f"{path}:3:10: health[0].url: bad URL 'nope': expected http(s)://host[:port]/path"


async def test_a_config_that_watches_nothing_is_unknown_not_ok(tmp_path):
    """No health target, Prometheus server or Postgres cluster: the snapshot said "worst: ● OK"
    and exited 0, the header said ● OK and the wall ALL CLEAR, about nothing at all."""
    from console.poller import Poller
    from console.present import overall_badge
    from panels.wall import breach_tiles
    from tests.ui_data import config

    code, out, _ = await run_cli("snapshot", "--config", str(write_config(tmp_path)))
    assert code == 3, out
    assert "worst: ? UNKNOWN" in out and "none: nothing watched (the config names no health target" in out
    code, out, _ = await run_cli("snapshot", "--format", "json", "--config", str(write_config(tmp_path)))
    assert code == 3 and json.loads(out)["exit_code"] == 3 and json.loads(out)["worst"] == "unknown", out
    state = Poller(config(health=[], prometheus=None, postgres=[])).state
    assert overall_badge(state, 0.0) == "○ NOTHING WATCHED"
    assert breach_tiles(state, 0.0)[0].big == "NOTHING WATCHED"


async def test_a_reader_that_leaves_early_gets_no_traceback(tmp_path):
    """`incident-console snapshot --format json | head -1`: the reader closed the pipe and the
    command printed a BrokenPipeError traceback (twice: again when Python flushed stdout)."""
    import os

    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "console.cli", "snapshot", "--format", "json", "--config",
        str(write_config(tmp_path)), cwd=ROOT, stdout=write, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    os.close(write)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 141 and err.decode() == ""
