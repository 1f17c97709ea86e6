"""The :class:`Pack` value: the runbooks that loaded, their files, the lint and the seed index.

Its own module, importing nothing of the pack's machinery, so that a config without runbooks
loads (and the console starts) without importing the schema, the action kinds or the linter
(docs/SCALE.md: start-up imports only what the first screen needs). ``pack`` reads and checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from console.config import Config
    from console.rules import Breach
    from console.runbooks.lint import IndexFile
    from console.runbooks.rank import Match
    from console.runbooks.schema import Runbook
    from console.yamlfile import Problem


@dataclass(frozen=True)
class Pack:
    runbooks: tuple[Runbook, ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)  # runbook id -> file name
    #: What the safety rules (console/runbooks/lint.py) say of the runbooks that loaded (and of
    #: the seed index): problems for check-config only under ``runbooks: {strict: true}``.
    lint: tuple[Problem, ...] = ()
    index: IndexFile | None = None  # the seed scenarios, when the config's index file exists

    def get(self, runbook_id: str) -> Runbook | None:
        return next((r for r in self.runbooks if r.id == runbook_id), None)

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(r.id for r in self.runbooks)

    def rank(
        self, breach: Breach, config: Config | None = None, firing: Sequence[Breach] = ()
    ) -> list[Match]:
        """Runbooks for a breach, best first; ``firing``: the other breaches on screen, whose
        cause may be this one's (see :func:`console.runbooks.rank.rank`)."""
        if not self.runbooks:
            return []
        from console.runbooks.rank import rank

        return rank(self.runbooks, breach, config, firing)
