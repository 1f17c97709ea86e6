"""Shared test set-up. Fixtures live in tests/fixtures/, one module per backend."""

pytest_plugins = [
    "tests.fixtures.http_servers",
    "tests.fixtures.prometheus",
    "tests.fixtures.postgres",
    "tests.fixtures.demo",
]
