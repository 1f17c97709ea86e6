"""Shared test set-up. Fixtures live in tests/fixtures/, one module per backend."""

pytest_plugins = [
    "tests.fixtures.http_servers",
    "tests.fixtures.prometheus",
    "tests.fixtures.postgres",
    "tests.fixtures.demo",
    "tests.fixtures.faults",
    "tests.fixtures.chromium",
    "tests.fixtures.journal",
]


import os  # noqa: E402
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

_CHECKOUT_BEFORE = pytest.StashKey[set[str] | None]()


@pytest.fixture(autouse=True)
def _private_state_home(tmp_path_factory, monkeypatch):
    """The console's default journal lives under XDG_STATE_HOME: never the real one in tests."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


# --- a test run leaves the checkout as it found it ------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def _checkout_changes() -> set[str] | None:
    """``git status --porcelain`` lines (tracked changes and untracked files), or None outside git."""
    try:
        done = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return set(done.stdout.splitlines()) if done.returncode == 0 else None


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the controller only, not each xdist worker
        session.config.stash[_CHECKOUT_BEFORE] = _checkout_changes()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(_CHECKOUT_BEFORE, None)
    after = _checkout_changes() if before is not None else None
    if before is None or after is None or not (changed := sorted(after - before)):
        return
    strict = bool(os.environ.get("CI"))
    message = "the test run changed the checkout (tests write to temporary paths only): " + ", ".join(changed)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(("ERROR: " if strict else "warning: ") + message, red=strict, yellow=not strict)
    if strict:  # elsewhere a developer may be editing files while the suite runs
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
