"""A failure as the console reports it: an :class:`~console.model.ErrorKind` and one line of
reason, sanitised and with every registered secret masked. Shared by the sources, the
Postgres layer (:mod:`console.pg`) and the actions, so that none of them depends on another
for it."""

from __future__ import annotations

from console import redact
from console.model import ErrorKind, SourceError
from console.sanitize import one_line

__all__ = ["REASON_LIMIT", "reason", "source_error"]

REASON_LIMIT = 200


def reason(text: object, limit: int = REASON_LIMIT) -> str:
    """A one-line, sanitised, secret-free reason for an error."""
    return one_line(redact.scrub(str(text)), limit=limit)


def source_error(kind: ErrorKind, text: object) -> SourceError:
    return SourceError(kind, reason(text) or str(kind))
