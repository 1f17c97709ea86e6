"""Shared test set-up. Fixtures live in tests/fixtures/, one module per backend."""

pytest_plugins = [
    "tests.fixtures.http_servers",
    "tests.fixtures.prometheus",
    "tests.fixtures.postgres",
    "tests.fixtures.demo",
    "tests.fixtures.faults",
    "tests.fixtures.chromium",
]


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _private_state_home(tmp_path_factory, monkeypatch):
    """The console's default journal lives under XDG_STATE_HOME: never the real one in tests."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
