"""The untrusted-text boundary and secret masking (docs/ARCHITECTURE.md, rules of the house)."""

from __future__ import annotations

import re

from console import redact
from console.sanitize import NEWLINE_MARK, clean, first_line, one_line, query_line

CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

HOSTILE = (
    "[/foo] [@click=app.quit] [$accent]x[/]"
    "\x1b[2J\x1bc\x1b]0;pwned\x07\x1b]52;c;ZXZpbA==\x07\x1b]8;;javascript:alert(1)\x1b\\link\x1b]8;;\x1b\\"
    "\x1bP+q\x1b\\\x00\x07\x08\x7f\x9b31m\u202eevil\u2066\ud800\tend"
)


def test_clean_removes_every_terminal_control_but_keeps_the_text():
    out = clean(HOSTILE)
    assert not CONTROL.search(out)
    assert "[/foo] [@click=app.quit] [$accent]x[/]" in out  # markup stays literal text
    assert "␛[2J" in out and "␛]52;c;ZXZpbA==␇" in out  # escapes made visible, not dropped
    assert "\u202e" not in out and "evil" in out
    assert out.endswith("    end")


def test_clean_decodes_invalid_utf8_and_caps_length():
    assert clean(b"caf\xe9 \xff") == "caf\ufffd \ufffd"
    long = clean("x" * 100_000, limit=1000)
    assert long.startswith("x" * 1000) and long.endswith("[99000 more characters]")


def test_newlines_kept_in_clean_folded_in_one_line():
    assert clean("a\r\nb\rc\nd") == "a\nb\nc\nd"
    assert one_line("SELECT 1\nFROM t") == f"SELECT 1 {NEWLINE_MARK} FROM t"
    # a query that goes on says so (issue 18): in the table, the lock tree and `snapshot`
    assert first_line("\n\n  SELECT  *\n FROM t") == f"SELECT * {NEWLINE_MARK}"
    assert first_line("SELECT 1\n\n") == "SELECT 1"
    assert first_line("SELECT " + "x" * 200 + "\nFROM t", limit=40).endswith(f"… {NEWLINE_MARK}")
    assert len(first_line("SELECT " + "x" * 200 + "\nFROM t", limit=40)) == 40
    # a query in a cell: every line, joined by the mark (a cut still shows the query goes on)
    assert (
        query_line("UPDATE t\n   SET a = 1\n\n WHERE  id = 7")
        == f"UPDATE t {NEWLINE_MARK} SET a = 1 {NEWLINE_MARK} WHERE id = 7"
    )
    assert query_line("SELECT 1") == "SELECT 1" and len(query_line("x\n" * 200, limit=40)) == 40
    assert len(one_line("y" * 500, limit=40)) == 40
    assert not CONTROL.search(one_line(HOSTILE))


def test_unicode_line_and_paragraph_separators_are_line_breaks():
    """U+2028/U+2029 break lines like \\n everywhere (issue 18): kept as \\n in full text,
    folded into the mark in a cell, ending the first line of a query."""
    text = "SELECT 1\u2028FROM t\u2029WHERE x"
    assert clean(text) == "SELECT 1\nFROM t\nWHERE x"
    assert one_line(text) == f"SELECT 1 {NEWLINE_MARK} FROM t {NEWLINE_MARK} WHERE x"
    assert first_line(text) == f"SELECT 1 {NEWLINE_MARK}"
    assert "\u2028" not in one_line(text) and "\u2029" not in clean(text)


def test_redact_urls_and_dsns():
    assert redact.url("https://u:pa55word@h/p?token=abc123&x=1") == "https://u:***@h/p?token=***&x=1"
    assert redact.dsn("postgresql://app:hunter22@db:5432/shop") == "postgresql://app:***@db:5432/shop"
    assert redact.secrets_in_dsn("postgresql://app:hunter22@db/shop?sslpassword=k3y99") == [
        "hunter22",
        "k3y99",
    ]
    assert redact.secrets_in_dsn("host=db password='it\\'s ok' user=x") == ["it's ok"]
    assert redact.scrub("FATAL: password=hunter22 failed") == "FATAL: password=*** failed"
    # a DSN inside text that is no URL as a whole (an unclosed ${VAR:-...} in a config error)
    assert redact.dsn("${PG_DSN:-postgresql://ic:SECRET@host/db") == "${PG_DSN:-postgresql://ic:***@host/db"
    assert redact.scrub("see https://x.io/a@b") == "see https://x.io/a@b"  # no userinfo, nothing masked


def test_registered_secrets_are_scrubbed_anywhere():
    redact.register("canary-9f8e7d", "ab")  # too short to be a secret worth masking
    assert redact.scrub("auth failed for canary-9f8e7d at ab") == "auth failed for *** at ab"


def test_secret_headers_register_the_credentials_not_the_scheme():
    assert redact.secrets_in_header("Bearer tok-123456") == ["Bearer tok-123456", "tok-123456"]
    assert redact.secrets_in_header("Bearer ") == []
    assert redact.secrets_in_header("Bearer") == []
    assert redact.secrets_in_header("raw-api-key-99") == ["raw-api-key-99"]
