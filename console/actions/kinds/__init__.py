"""The kinds of actions and checks, one module each: its spec model and the variant of
ActionSpec or CheckSpec that holds it, how it renders, previews, validates and runs (the
:class:`console.actions.kind.Kind` protocol). :mod:`console.actions.registry` lists them.

Actions: ``sql_statement``, ``signal`` (cancel or terminate sessions), ``http_action``, ``argv``,
``silence`` (Alertmanager). Checks: ``sql_check`` (a read-only query), ``promql_check``,
``http_check`` (a GET)."""
