"""The one executor: every check and every action of the console runs through :class:`Executor`.

Specs (what a runbook step, the sessions table or an alert ack asks for) are rendered with a
:class:`Context` into a :class:`Plan`: exactly what will run, secrets masked, what to type to
confirm. ``preview`` shows what an action would touch, ``dry_run`` validates it without effect,
``execute`` runs it. The rules live here, not in the UI:

- read-only (config, ``--read-only``, wall and web modes) refuses every action on every path;
- confirmation: none for checks, yes/no (default No) for actions, the typed word for dangerous
  ones and for every action in a production environment; a wrong word refuses;
- single flight: a second action while one runs is answered "busy" and does nothing;
- a timeout on everything (SQL also gets a server-side statement_timeout);
- the journal line ``action.confirmed`` is fsynced before anything runs (or nothing runs), and
  the result is fsynced before success is reported;
- SQL values are bound parameters, never formatted into SQL text (which may not hold
  ``{{variables}}``); argv runs without a shell; backends are signalled only when pid and
  backend_start still match what the operator saw, in the same statement that signals them.

Templates: ``{{name}}`` or ``{{name|fallback}}`` (fallback: another name, a number, or a
'quoted literal'). Values from config variables and runbook text are trusted; values from
backends (alert labels, health checks, sessions) are not: they are percent-encoded in URLs,
refused in argv when they start with '-', escaped in PromQL, and bound in SQL.

Each kind of action or check lives in one module of ``kinds/``: its spec, how it renders,
previews, validates and runs, behind the :class:`~console.actions.kind.Kind` protocol and with
no more of the console than a :class:`~console.actions.kind.KindContext`. The executor keeps the
rules above and dispatches to the kind through ``registry``; it has no per-kind code.

The package, in import order: ``templates`` (references and values), ``specs`` (what every
spec shares), ``plans`` (plans, confirmations, outcomes, results), ``expect`` (judging what a
check saw), ``kind`` (the protocol and the context), ``sql`` and ``httpcall`` (Postgres and HTTP
for the kinds that use them), ``kinds/*`` (one module per kind), ``registry`` (the kinds, and the
ActionSpec / CheckSpec unions), ``executor`` (the rules). Import from ``console.actions``.
"""

from __future__ import annotations

from console.lazy import exports

_WHERE: dict[str, tuple[str, ...]] = {
    "executor": ("Executor",),
    "kind": (
        "Kind",
        "KindContext",
    ),
    "kinds.argv": (
        "ArgvAction",
        "ArgvActionSpec",
    ),
    "kinds.http_action": (
        "HttpAction",
        "HttpActionSpec",
    ),
    "kinds.http_check": (
        "HttpCheckSpec",
        "HttpGet",
    ),
    "kinds.promql_check": (
        "PromQLCheckSpec",
        "PromQuery",
    ),
    "kinds.signal": (
        "SignalAction",
        "SignalActionSpec",
    ),
    "kinds.silence": (
        "SilenceAction",
        "SilenceActionSpec",
    ),
    "kinds.sql_check": (
        "SqlCheckSpec",
        "SqlQuery",
    ),
    "kinds.sql_statement": (
        "SqlAction",
        "SqlActionSpec",
        "SqlPreview",
    ),
    "plans": (
        "BODY_LIMIT",
        "OUTPUT_LIMIT",
        "PREVIEW_ROWS",
        "SENSITIVE_HEADERS",
        "SHOW_LINES",
        "Confirmation",
        "ConfirmMode",
        "ConfirmSpec",
        "Plan",
        "Preview",
        "Result",
        "Status",
        "Target",
    ),
    "registry": (
        "ACTION_KINDS",
        "CHECK_KINDS",
        "AnyActionSpec",
        "AnyCheckSpec",
    ),
    "specs": (
        "TYPED_IMPACTS",
        "ActionSpec",
        "CheckSpec",
        "Expect",
        "Impact",
        "Scalar",
        "Spec",
        "SqlText",
        "ThresholdRef",
    ),
    "templates": (
        "MASK",
        "Context",
        "Ref",
        "RenderError",
        "TemplateError",
        "Value",
        "render_text",
        "template_names",
        "template_refs",
    ),
}
__getattr__, __all__ = exports(__name__, _WHERE)
