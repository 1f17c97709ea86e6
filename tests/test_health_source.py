"""HealthSource against real HTTP(S) servers on 127.0.0.1: every format, DESIGN section 5
variants, faults (timeouts, resets, redirects, huge bodies, TLS) and hostile bodies."""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from console.config import HealthTarget
from console.demo.ports import free_port
from console.healthformats import MAX_CHECKS, MAX_DEPTH, NAME_LIMIT
from console.model import ErrorKind, HealthSnapshot, HealthStatus
from console.sources.health import HealthSource
from tests.fixtures.http_servers import StubServer

PASS, WARN, FAIL, UNKNOWN = HealthStatus.PASS, HealthStatus.WARN, HealthStatus.FAIL, HealthStatus.UNKNOWN


def target(url: str, **fields: Any) -> HealthTarget:
    return HealthTarget.model_validate({"name": "svc", "url": url, "timeout": 2, **fields})


async def probe(url: str, **fields: Any) -> HealthSnapshot:
    source = HealthSource(target(url, **fields), interval=5)
    try:
        return await source.poll()
    finally:
        await source.aclose()


async def serve(server: StubServer, fmt: str = "health+json", path: str = "/health", **route: Any):
    server.route(path, **route)
    return await probe(server.url(path), format=fmt)


def checks(snapshot: HealthSnapshot) -> dict[str, tuple[HealthStatus, str]]:
    return {c.name: (c.status, c.detail) for c in snapshot.checks}


def texts(snapshot: HealthSnapshot) -> list[str]:
    out = [snapshot.output, snapshot.url, snapshot.target, repr(snapshot)]
    out += [text for c in snapshot.checks for text in (c.name, c.detail)]
    if snapshot.error:
        out.append(snapshot.error.reason)
    return out


def unsafe_chars(text: str) -> list[str]:
    return [c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F or c in "\u202e\ufeff"]


# --- source contract ----------------------------------------------------------------------


async def test_attributes_and_successful_probe(http_server):
    http_server.route("/health", json={"status": "pass"}, content_type="application/health+json")
    source = HealthSource(target(http_server.url("/health"), timeout=1.5), interval=7)
    assert (source.key, source.kind, source.interval) == ("health:svc", "health", 7)
    assert 1.5 < source.timeout <= 3
    try:
        first = await source.poll()
        second = await source.poll()  # the client is kept between polls
    finally:
        await source.aclose()
    assert first.ok and first.status == PASS and second.status == PASS
    assert first.source == "health:svc" and first.target == "svc" and first.format == "health+json"
    assert first.http_status == 200 and first.url == http_server.url("/health")
    assert first.latency is not None and 0 < first.latency < 1.5
    assert http_server.hits("/health") == 2


async def test_poll_after_aclose_opens_a_new_client(http_server):
    http_server.route("/health", json={"status": "pass"})
    source = HealthSource(target(http_server.url("/health")), interval=5)
    assert (await source.poll()).status == PASS
    await source.aclose()
    assert (await source.poll()).status == PASS
    await source.aclose()


def test_failed_builds_an_error_snapshot_of_the_target():
    source = HealthSource(target("http://user:hunter2pw@127.0.0.1:9/h"), interval=5)
    from console.model import SourceError

    snapshot = source.failed(SourceError(ErrorKind.TIMEOUT, "no answer within 3.5s"), 100.0, 3.5)
    assert snapshot.error.kind == ErrorKind.TIMEOUT and snapshot.status == UNKNOWN
    assert (snapshot.source, snapshot.taken_at, snapshot.latency) == ("health:svc", 100.0, 3.5)
    assert "hunter2pw" not in repr(snapshot)


# --- application/health+json --------------------------------------------------------------


async def test_health_json_draft_checks_as_arrays(http_server):
    body = {
        "status": "pass",
        "checks": {
            "db:connections": [
                {"componentId": "a1", "status": "pass", "observedValue": 12, "observedUnit": "conn"}
            ],
            "cache:responseTime": [
                {"componentId": "node-1", "status": "pass"},
                {"componentId": "node-2", "status": "fail", "output": "timed out"},
            ],
        },
    }
    snap = await serve(http_server, json=body)
    assert snap.status == PASS
    assert checks(snap) == {
        "db:connections": (PASS, "12 conn"),
        "cache:responseTime/node-1": (PASS, ""),
        "cache:responseTime/node-2": (FAIL, "timed out"),
    }


async def test_health_json_checks_as_objects(http_server):
    body = {
        "status": "warn",
        "checks": {
            "db": {"status": "pass"},
            "disk": {"status": "warn", "output": "91% full"},
            "cache": True,
            "queue": "down",
        },
    }
    snap = await serve(http_server, json=body)
    assert snap.status == WARN
    assert checks(snap) == {
        "db": (PASS, ""),
        "disk": (WARN, "91% full"),
        "cache": (PASS, ""),
        "queue": (FAIL, ""),
    }


async def test_health_json_checks_as_named_list(http_server):
    body = {"status": "UP", "checks": [{"name": "db", "status": "UP"}, {"name": "queue", "status": "DOWN"}]}
    snap = await serve(http_server, json=body)
    assert snap.status == PASS and checks(snap) == {"db": (PASS, ""), "queue": (FAIL, "")}


# --- health bodies as real services send them (issue 18) -----------------------------------


async def test_health_json_components_under_details_older_drafts_and_tyk(http_server):
    """Older health+json drafts and Tyk gateways put their components under "details", not
    "checks": the components and their errors are shown, not lost."""
    tyk = {
        "status": "warn",
        "version": "v5.3.0",
        "description": "Tyk GW",
        "details": {
            "redis": {"status": "pass", "componentType": "datastore", "time": "2026-01-01T00:00:00Z"},
            "dashboard": {
                "status": "fail",
                "componentType": "system",
                "output": "dashboard is down? Heartbeat is failing",
                "time": "2026-01-01T00:00:00Z",
            },
        },
    }
    snap = await serve(http_server, json=tyk)
    assert snap.status == WARN and snap.output == "Tyk GW"
    assert checks(snap) == {
        "redis": (PASS, ""),
        "dashboard": (FAIL, "dashboard is down? Heartbeat is failing"),
    }
    draft = {
        "status": "fail",
        "details": {
            "cassandra:responseTime": [
                {"componentId": "dfd6cf2b", "status": "pass", "observedValue": 250, "observedUnit": "ms"},
                {"componentId": "6fd416e0", "status": "fail", "output": "timeout"},
            ],
        },
    }
    snap = await serve(http_server, json=draft)
    assert checks(snap) == {
        "cassandra:responseTime/dfd6cf2b": (PASS, "250 ms"),
        "cassandra:responseTime/6fd416e0": (FAIL, "timeout"),
    }


async def test_health_json_notes_are_shown(http_server):
    body = {
        "status": "pass",
        "output": "fine",
        "notes": ["migrated to v2 on 2026-01-01", "read-only replica"],
    }
    snap = await serve(http_server, json=body)
    assert snap.output == "fine\nmigrated to v2 on 2026-01-01\nread-only replica"
    assert (await serve(http_server, json={"status": "pass", "notes": "one note"})).output == "one note"


async def test_a_plain_value_under_details_is_shown_as_what_it_is_not_as_fail(http_server):
    """Steeltoe's "item3": false is a detail of the service, not a failing component."""
    steeltoe = {
        "status": "UP",
        "details": {
            "diskSpace": {"status": "UP", "total": 1000, "free": 400, "threshold": 100},
            "item1": "value1",
            "item2": 42,
            "item3": False,
        },
    }
    for fmt in ("spring", "health+json"):
        snap = await serve(http_server, fmt, json=steeltoe)
        assert snap.status == PASS and set(checks(snap)) == {"diskSpace"}, fmt
        assert snap.output.splitlines() == ["item1: value1", "item2: 42", "item3: false"], fmt


async def test_two_components_of_the_same_name_are_told_apart(http_server):
    body = {
        "status": "fail",
        "checks": [
            {"name": "db", "status": "pass"},
            {"name": "db", "status": "fail", "output": "replica down"},
            {"name": "db", "status": "pass"},
        ],
    }
    snap = await serve(http_server, json=body)
    assert checks(snap) == {"db": (PASS, ""), "db #2": (FAIL, "replica down"), "db #3": (PASS, "")}


async def test_body_fail_wins_over_http_200(http_server):
    snap = await serve(http_server, json={"status": "fail", "output": "db unreachable"})
    assert snap.ok and snap.http_status == 200
    assert snap.status == FAIL and snap.output == "db unreachable"


async def test_body_pass_wins_over_http_503(http_server):
    snap = await serve(http_server, status=503, json={"status": "pass"})
    assert snap.ok and snap.status == PASS and snap.http_status == 503


async def test_503_with_fail_body(http_server):
    snap = await serve(http_server, status=503, json={"status": "fail", "description": "orders API"})
    assert snap.ok and snap.status == FAIL and snap.http_status == 503 and snap.output == "orders API"


@pytest.mark.parametrize(
    ("word", "expected"),
    [("ok", PASS), ("up", PASS), ("OK", PASS), ("Up", PASS), ("error", FAIL), ("down", FAIL), ("warn", WARN)],
)
async def test_status_aliases(http_server, word, expected):
    snap = await serve(http_server, json={"status": word})
    assert snap.ok and snap.status == expected


async def test_top_level_pass_with_warn_checks_stays_pass_and_surfaces_them(http_server):
    body = {
        "status": "pass",
        "checks": {"memory": [{"status": "warn", "output": "heap 85%"}], "db": [{"status": "pass"}]},
    }
    snap = await serve(http_server, json=body)
    assert snap.status == PASS
    assert checks(snap)["memory"] == (WARN, "heap 85%") and checks(snap)["db"] == (PASS, "")


async def test_json_without_status_falls_back_to_the_http_code(http_server):
    assert (await serve(http_server, json={"uptime": 5})).status == UNKNOWN
    http_server.route("/bad", status=500, json={"message": "boom"})
    snap = await probe(http_server.url("/bad"))
    assert snap.ok and snap.status == FAIL and "boom" in snap.output


async def test_unrecognised_status_is_unknown_never_pass(http_server):
    snap = await serve(http_server, json={"status": "sideways"})
    assert snap.status == UNKNOWN and "sideways" in snap.output


async def test_plain_ok_text_is_accepted_for_json_formats(http_server):
    snap = await serve(http_server, body="OK\n", content_type="text/plain")
    assert snap.ok and snap.status == PASS
    assert (await serve(http_server, "spring", json="DOWN")).status == FAIL  # a bare JSON string


async def test_html_instead_of_json_is_a_bad_response(http_server):
    html = "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
    snap = await serve(http_server, status=503, body=html, content_type="text/html; charset=utf-8")
    assert snap.error.kind == ErrorKind.BAD_RESPONSE
    assert snap.error.reason == "HTTP 503, body is not JSON (text/html)"
    assert snap.http_status == 503 and snap.status == UNKNOWN


async def test_invalid_json_is_a_bad_response(http_server):
    snap = await serve(http_server, body='{"status": "pass", ', content_type="application/json")
    assert snap.error.kind == ErrorKind.BAD_RESPONSE
    assert snap.error.reason == "HTTP 200, body is not JSON (application/json)"


async def test_empty_and_non_object_json_bodies(http_server):
    assert (await serve(http_server, body=b"")).error.kind == ErrorKind.BAD_RESPONSE
    snap = await serve(http_server, json=[1, 2, 3])
    assert snap.error.kind == ErrorKind.BAD_RESPONSE and "not an object" in snap.error.reason


async def test_deeply_nested_json_is_a_bad_response_not_a_crash(http_server):
    snap = await serve(http_server, body="[" * 200_000, content_type="application/json")
    assert snap.error.kind == ErrorKind.BAD_RESPONSE


# --- Spring actuator ----------------------------------------------------------------------


async def test_spring_components_nested_without_details_and_not_objects(http_server):
    body = {
        "status": "UP",
        "components": {
            "db": {
                "status": "UP",
                "components": {
                    "primary": {"status": "UP", "details": {"database": "PostgreSQL"}},
                    "replica": {"status": "DOWN", "details": {"error": "java.net.ConnectException"}},
                },
            },
            "ping": {"status": "UP"},
            "legacy": "UP",
            "odd": 42,
        },
        "groups": ["liveness", "readiness"],
    }
    snap = await serve(http_server, "spring", "/actuator/health", json=body)
    assert snap.ok and snap.status == PASS
    assert checks(snap) == {
        "db/primary": (PASS, '{"database":"PostgreSQL"}'),
        "db/replica": (FAIL, "java.net.ConnectException"),
        "ping": (PASS, ""),
        "legacy": (PASS, ""),
        "odd": (UNKNOWN, "42"),
    }


@pytest.mark.parametrize(
    ("word", "code", "expected"),
    [
        ("UP", 200, PASS),
        ("DOWN", 503, FAIL),
        ("OUT_OF_SERVICE", 503, FAIL),
        ("OUT_OF_SERVICE", 200, FAIL),  # status mapping configured to 200: the body still decides
        ("DOWN", 200, FAIL),
        ("UNKNOWN", 200, UNKNOWN),
    ],
)
async def test_spring_status_words(http_server, word, code, expected):
    snap = await serve(http_server, "spring", status=code, json={"status": word})
    assert snap.ok and snap.status == expected and snap.http_status == code


async def test_spring_boot_2_0_details_shape(http_server):
    body = {
        "status": "DOWN",
        "details": {"diskSpace": {"status": "UP", "details": {"free": 1}}, "db": {"status": "DOWN"}},
    }
    snap = await serve(http_server, "spring", json=body, status=503)
    assert snap.status == FAIL
    assert checks(snap) == {"diskSpace": (PASS, '{"free":1}'), "db": (FAIL, "")}


async def test_spring_boot_1_shape_components_beside_status(http_server):
    body = {"status": "UP", "db": {"status": "UP", "database": "H2"}, "diskSpace": {"status": "UP"}}
    snap = await serve(http_server, "spring", json=body)
    assert set(checks(snap)) == {"db", "diskSpace"}


async def test_spring_security_401_is_auth_failed(http_server):
    error_body = {"timestamp": "2026-01-01T00:00:00Z", "status": 401, "error": "Unauthorized"}
    snap = await serve(http_server, "spring", status=401, json=error_body)
    assert snap.error.kind == ErrorKind.AUTH_FAILED and snap.error.reason.startswith("HTTP 401")
    assert snap.http_status == 401


async def test_403_html_is_permission_denied(http_server):
    snap = await serve(
        http_server, "health+json", status=403, body="<h1>Forbidden</h1>", content_type="text/html"
    )
    assert snap.error.kind == ErrorKind.PERMISSION_DENIED


async def test_spring_nesting_is_flattened_to_a_bounded_depth(http_server):
    node: dict[str, Any] = {"status": "UP"}
    for _ in range(40):
        node = {"status": "UP", "components": {"n": node}}
    snap = await serve(http_server, "spring", json=node)
    assert snap.ok and len(snap.checks) == 1
    # The node at the depth cap is shown as one check named by its path.
    assert snap.checks[0].name == "/".join(["n"] * (MAX_DEPTH + 1))


# --- Kubernetes -----------------------------------------------------------------------------


async def test_k8s_verbose_ready(http_server):
    text = "[+]ping ok\n[+]etcd ok\n[+]poststarthook/start-informers ok\nreadyz check passed\n"
    snap = await serve(http_server, "k8s", "/readyz", body=text, content_type="text/plain")
    assert snap.ok and snap.status == PASS and snap.output == "readyz check passed"
    assert checks(snap) == {
        "ping": (PASS, ""),
        "etcd": (PASS, ""),
        "poststarthook/start-informers": (PASS, ""),
    }


async def test_k8s_verbose_failing(http_server):
    text = "[+]ping ok\n[-]etcd failed: reason withheld\n[+]log ok\nreadyz check failed\n"
    http_server.route("/readyz", status=500, body=text, content_type="text/plain")
    snap = await probe(http_server.url("/readyz?verbose"), format="k8s")
    assert snap.ok and snap.status == FAIL and snap.http_status == 500
    assert checks(snap)["etcd"] == (FAIL, "reason withheld") and checks(snap)["ping"] == (PASS, "")
    assert http_server.requests[-1].path == "/readyz?verbose"


async def test_k8s_status_code_decides(http_server):
    assert (await serve(http_server, "k8s", "/livez", body="ok")).status == PASS
    snap = await serve(http_server, "k8s", "/livez", status=503, body="ok")
    assert snap.ok and snap.status == FAIL


async def test_k8s_forbidden_status_object(http_server):
    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403}
    snap = await serve(http_server, "k8s", "/readyz", status=403, json=status)
    assert snap.error.kind == ErrorKind.PERMISSION_DENIED


# --- plain status ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"), [(200, PASS), (204, PASS), (500, FAIL), (503, FAIL), (404, FAIL)]
)
async def test_plain_status(http_server, code, expected):
    snap = await serve(http_server, "status", "/ping", status=code, body="<html>whatever</html>")
    assert snap.ok and snap.status == expected and snap.http_status == code


async def test_plain_status_does_not_read_a_huge_body(http_server):
    snap = await serve(http_server, "status", "/ping", body=b"x" * (2 * 1024 * 1024))
    assert snap.ok and snap.status == PASS


async def test_plain_status_401_is_auth_failed(http_server):
    snap = await serve(http_server, "status", "/ping", status=401)
    assert snap.error.kind == ErrorKind.AUTH_FAILED


# --- faults -------------------------------------------------------------------------------


async def test_timeout(http_server):
    http_server.route("/slow", json={"status": "pass"}, delay=1.0)
    snap = await probe(http_server.url("/slow"), timeout=0.3)
    assert snap.error.kind == ErrorKind.TIMEOUT
    assert snap.latency is not None and 0.25 < snap.latency < 0.9


async def test_timeout_covers_the_whole_probe_not_each_redirect_hop(http_server):
    # Every hop answers within the timeout; together they do not.
    http_server.route("/h1", status=302, headers={"Location": "/h2"}, delay=0.15)
    http_server.route("/h2", status=302, headers={"Location": "/h3"}, delay=0.15)
    http_server.route("/h3", status=302, headers={"Location": "/health"}, delay=0.15)
    http_server.route("/health", json={"status": "pass"}, delay=0.15)
    snap = await probe(http_server.url("/h1"), timeout=0.35)
    assert snap.error is not None and snap.error.kind == ErrorKind.TIMEOUT
    assert snap.error.reason == "no answer within 0.35s"


async def test_redirect_loop(http_server):
    http_server.route("/a", status=302, headers={"Location": "/b"})
    http_server.route("/b", status=302, headers={"Location": "/a"})
    snap = await probe(http_server.url("/a"))
    assert snap.error.kind == ErrorKind.BAD_RESPONSE and "too many redirects" in snap.error.reason
    assert http_server.hits("/a") + http_server.hits("/b") == 6  # the first request and 5 redirects


async def test_three_redirects_then_health(http_server):
    http_server.route("/r1", status=301, headers={"Location": "/r2"})
    http_server.route("/r2", status=302, headers={"Location": http_server.url("/r3")})
    http_server.route("/r3", status=307, headers={"Location": "/health"})
    http_server.route("/health", json={"status": "fail"})
    snap = await probe(http_server.url("/r1"))
    assert snap.ok and snap.status == FAIL and snap.http_status == 200
    assert snap.url == http_server.url("/r1")


async def test_body_over_one_mebibyte(http_server):
    big = json.dumps({"status": "pass", "output": "x" * (2 * 1024 * 1024)})
    snap = await serve(http_server, body=big, content_type="application/json")
    assert snap.error.kind == ErrorKind.BAD_RESPONSE
    assert snap.error.reason == "response body larger than 1024 KiB"
    assert snap.http_status == 200


async def test_self_signed_tls_fails_with_verification(https_server):
    https_server.route("/health", json={"status": "pass"})
    snap = await probe(https_server.url("/health"))
    assert snap.error.kind == ErrorKind.TLS


@pytest.mark.filterwarnings("error::DeprecationWarning")  # httpx 0.28 deprecates verify=<path>
async def test_self_signed_tls_passes_with_the_ca_file(https_server):
    https_server.route("/health", json={"status": "pass"})
    snap = await probe(https_server.url("/health"), verify_tls=https_server.ca_file)
    assert snap.ok and snap.status == PASS


async def test_tls_verification_off(https_server):
    https_server.route("/health", json={"status": "pass"})
    assert (await probe(https_server.url("/health"), verify_tls=False)).status == PASS


async def test_missing_ca_file_is_a_config_error(https_server, tmp_path):
    snap = await probe(https_server.url("/health"), verify_tls=str(tmp_path / "nope.pem"))
    assert snap.error.kind == ErrorKind.CONFIG and "nope.pem" in snap.error.reason


async def test_connection_refused():
    snap = await probe(f"http://127.0.0.1:{free_port()}/health")
    assert snap.error.kind == ErrorKind.UNREACHABLE and snap.http_status is None


async def test_connection_reset(http_server):
    http_server.route("/health", reset=True)
    snap = await probe(http_server.url("/health"))
    assert snap.error.kind == ErrorKind.UNREACHABLE


# --- secrets and hostile text ---------------------------------------------------------------


async def test_secret_header_is_sent_and_never_shown(http_server):
    token = "tok-" + secrets.token_hex(12)

    def echo(request):
        seen = {k.lower(): v for k, v in request.headers.items()}.get("authorization", "")
        body = {
            "status": "warn",
            "output": f"you sent {seen}",
            "checks": {seen: {"status": "warn", "output": seen}},
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    http_server.route("/health", handler=echo)
    http_server.route("/denied", status=401, body=f"bad credentials: Bearer {token}")
    headers = {"Authorization": {"value": f"Bearer {token}", "secret": True}, "X-Env": "prod"}
    snap = await probe(http_server.url("/health"), headers=headers)
    sent = {k.lower(): v for k, v in http_server.requests[-1].headers.items()}
    assert sent["authorization"] == f"Bearer {token}" and sent["x-env"] == "prod"
    assert snap.status == WARN and snap.output.startswith("you sent")
    assert all(token not in text for text in texts(snap))

    denied = await probe(http_server.url("/denied"), headers=headers)
    assert denied.error.kind == ErrorKind.AUTH_FAILED and "bad credentials" in denied.error.reason
    assert all(token not in text for text in texts(denied))


HOSTILE = "[/x] [@click=app.quit] \x1b]52;c;ZXZpbA==\x07 \x1b[2J\x1bc \u202eevil\x00 \x9b31m \x7f \ufeff"


async def test_hostile_health_json_is_sanitised(http_server):
    body = {
        "status": "fail",
        "output": HOSTILE + "\nsecond line",
        "checks": {HOSTILE: [{"status": "fail", "output": HOSTILE}], "x": {"status": HOSTILE}},
    }
    snap = await serve(http_server, json=body)
    assert snap.status == FAIL and len(snap.checks) == 2
    assert "[@click=app.quit]" in snap.output and "second line" in snap.output
    for text in texts(snap):
        assert unsafe_chars(text) == [], text


async def test_hostile_spring_and_k8s_bodies_are_sanitised(http_server):
    spring = {"status": "DOWN", "components": {HOSTILE: {"status": "DOWN", "details": {"error": HOSTILE}}}}
    snap = await serve(http_server, "spring", status=503, json=spring)
    assert snap.status == FAIL and len(snap.checks) == 1
    k8s = f"[-]{HOSTILE.replace(' ', '_')} failed: {HOSTILE}\n{HOSTILE}\n".encode() + b"\xff\xfe bad utf-8"
    snap2 = await serve(http_server, "k8s", "/readyz", status=500, body=k8s)
    assert snap2.status == FAIL and snap2.checks[0].status == FAIL
    for text in texts(snap) + texts(snap2):
        assert unsafe_chars(text) == [], text


async def test_hostile_error_reasons_are_sanitised(http_server):
    snap = await serve(http_server, status=401, body=HOSTILE, content_type="text/html\x1b[2J")
    assert snap.error.kind == ErrorKind.AUTH_FAILED
    snap2 = await serve(http_server, status=502, body=HOSTILE, content_type="text/x\x1b]0;title\x07")
    assert snap2.error.kind == ErrorKind.BAD_RESPONSE
    for text in texts(snap) + texts(snap2):
        assert unsafe_chars(text) == [], text
        assert "\n" not in snap.error.reason


async def test_check_count_and_text_length_are_capped(http_server):
    body = {
        "status": "pass",
        "output": "o" * 100_000,
        "checks": {f"c{i}" + "n" * 500: {"status": "pass", "output": "d" * 300} for i in range(1000)},
    }
    snap = await serve(http_server, json=body)
    assert len(snap.checks) == MAX_CHECKS and "200 checks" in snap.output
    assert len(snap.output) < 10_000
    assert all(len(c.name) <= NAME_LIMIT and len(c.detail) < 2_000 for c in snap.checks)


def _tls_context(client: httpx.AsyncClient):
    return client._transport._pool._ssl_context


async def test_a_client_made_again_after_a_timeout_reuses_the_tls_context(https_server, tmp_path):
    """A timed-out probe discards its client (see test_soak); building the new one's SSL context
    loaded the CA bundle again, ~30 ms of CPU on every poll of a slow backend. One context per
    CA setting is shared; a CA file replaced on disk is read again."""
    https_server.route("/slow", json={"status": "pass"}, delay=1.0)
    https_server.route("/health", json={"status": "pass"})
    for verify in (True, https_server.ca_file):
        source = HealthSource(target(https_server.url("/slow"), verify_tls=verify, timeout=0.2), interval=5)
        first = _tls_context(source._ensure_client())
        assert (await source.poll()).error.kind in (ErrorKind.TIMEOUT, ErrorKind.TLS)
        other = HealthSource(target(https_server.url("/health"), verify_tls=verify), interval=5)
        assert _tls_context(source._ensure_client()) is first is _tls_context(other._ensure_client())
        await source.aclose()
        await other.aclose()

    ca = tmp_path / "ca.pem"
    ca.write_bytes(Path(https_server.ca_file).read_bytes())
    source = HealthSource(target(https_server.url("/health"), verify_tls=str(ca)), interval=5)
    assert (await source.poll()).status == PASS
    before = _tls_context(source._client)
    await source.aclose()
    os.utime(ca, ns=(time.time_ns(), time.time_ns() + 10**9))  # the file replaced on disk
    assert (await source.poll()).status == PASS
    assert _tls_context(source._client) is not before
    await source.aclose()


async def test_a_header_whose_variable_is_unset_is_still_sent(http_server):
    """config/console.yaml sends the sync worker ``Authorization: Bearer ${SYNC_WORKER_TOKEN:-}``:
    with the variable unset the value was ``"Bearer "``, which httpx refuses to send (a field
    value has no trailing space), so every poll of the shipped config failed inside the client
    with "Illegal header value". The value is trimmed: the service is asked and answers."""
    http_server.route("/health", status=401, json={"error": "unauthorized"})
    snap = await probe(
        http_server.url("/health"), headers={"Authorization": {"value": "Bearer ", "secret": True}}
    )
    assert http_server.hits("/health") == 1 and http_server.requests[-1].headers["Authorization"] == "Bearer"
    assert snap.http_status == 401 and "Illegal header" not in str(snap.error)
