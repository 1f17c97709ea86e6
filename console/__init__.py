"""incident-console engine: configuration, sources, thresholds, runbooks, actions, journal.

Nothing in this package imports Textual, ``panels`` or textual-serve, not even inside a function,
but ``console.app``: the one door to the UI in panels/ (the Textual app, the ``serve`` web
server). The engine reaches ``console.app`` only inside a function (``console.cli`` for ``run``,
``console.demo.cli`` for ``demo``, ``console.serve`` for ``serve``); tests/test_layering.py checks
both. The soak, a test harness, lives in bench/ (``python -m bench.soak``).
"""

__version__ = "0.1.0"
