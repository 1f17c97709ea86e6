"""incident-console engine: configuration, sources, thresholds, runbooks, actions, journal.

Nothing in this package except ``console.app`` and ``console.cli`` imports Textual or ``panels``.
"""

__version__ = "0.1.0"
