"""Secrets never reach the screen, a log, the journal or a report (docs/ARCHITECTURE.md, rules of the house).

The config loader registers every secret it reads (DSN passwords, headers marked secret,
credentials in URLs). :func:`scrub` replaces any registered secret in a piece of text, and
:func:`url` / :func:`dsn` produce display forms with credentials masked. The registry is
process-wide on purpose: an error message from any library may echo a secret back.
"""

from __future__ import annotations

import base64
import re
import threading
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"
_SECRET_PARAM = re.compile(
    r"(pass(word)?|pwd|secret|token|api[-_]?key|access[-_]?key|auth|signature|sig|credential)",
    re.IGNORECASE,
)
_AUTH_SCHEME = re.compile(r"(?i)bearer|basic|token|digest|apikey|negotiate")
_KV_PASSWORD = re.compile(r"(?i)\b(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")
#: ``scheme://user:password@`` anywhere in a text, also where the whole is no valid URL (an
#: unclosed ``${VAR:-postgresql://u:p@h/db`` in a config error).
_USERINFO_PASSWORD = re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^\s:/@]*:)([^\s@/]+)(?=@)")

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
_generation = 0


def register(*values: str | None) -> None:
    """Remember secret values so that :func:`scrub` masks them wherever they appear."""
    global _pattern, _generation
    with _lock:
        before = len(_secrets)
        for value in values:
            # One- and two-character "secrets" would mask half the screen; they are not secret.
            if value and len(value) >= 3:
                _secrets.add(value)
        if len(_secrets) == before:
            return
        ordered = sorted(_secrets, key=len, reverse=True)
        _pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        _generation += 1


def generation() -> int:
    """Changes whenever a new secret is registered: a cache of scrubbed text keys on it."""
    return _generation


def registered() -> frozenset[str]:
    return frozenset(_secrets)


def scrub(text: str) -> str:
    """Mask every registered secret in ``text``, any ``password=...`` pair and the password of
    any ``scheme://user:password@``."""
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    if "://" in text:
        text = _USERINFO_PASSWORD.sub(lambda m: m.group(1) + MASK, text)
    return _KV_PASSWORD.sub(lambda m: m.group(1) + MASK, text)


def secrets_in_url(value: str) -> list[str]:
    """The password and secret-looking query values of a URL. A password also counts in its
    decoded form and inside the Basic-auth header an HTTP client builds from it: a server that
    echoes the header it got would otherwise show it (base64 is no mask)."""
    return _url_secrets(value, basic=True)


def _url_secrets(value: str, basic: bool) -> list[str]:
    try:
        parts = urlsplit(value)
        found = []
        if parts.password:
            user, password = unquote(parts.username or ""), unquote(parts.password)
            found += [parts.password, password]
            if basic:
                found.append(base64.b64encode(f"{user}:{password}".encode()).decode())
        found += [v for k, v in parse_qsl(parts.query, keep_blank_values=False) if _SECRET_PARAM.search(k)]
    except ValueError:
        return []
    return list(dict.fromkeys(v for v in found if v))


def secrets_in_header(value: str) -> list[str]:
    """A secret header value and, for ``Scheme credentials`` forms (Bearer, Basic, Token...),
    the credentials alone: a server may echo just the token back. A bare scheme is no secret."""
    value = value.strip()
    _, _, credentials = value.partition(" ")
    if not credentials.strip():
        return [value] if value and " " not in value and not _AUTH_SCHEME.fullmatch(value) else []
    return [value, credentials.strip()]


def secrets_in_dsn(value: str) -> list[str]:
    """Passwords in a libpq DSN, URL form (postgresql://u:p@h/db) or key=value form."""
    if "://" in value:
        return _url_secrets(value, basic=False)  # libpq sends no Authorization header
    found = []
    for match in _KV_PASSWORD.finditer(value):
        raw = match.group(2)
        if raw.startswith("'"):
            raw = raw[1:-1].replace("\\'", "'").replace("\\\\", "\\")
        found.append(raw)
    return found


def url(value: str) -> str:
    """A URL fit for display: password and secret-looking query parameters masked."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return scrub(value)
    netloc = parts.netloc
    if parts.password is not None:
        host = netloc.rpartition("@")[2]
        netloc = f"{parts.username or ''}:{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*")
    return scrub(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))


def dsn(value: str) -> str:
    """A libpq DSN fit for display."""
    if "://" in value:
        return url(value)
    return scrub(value)
