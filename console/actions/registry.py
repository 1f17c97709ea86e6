"""The kinds of actions and checks the console knows, and the specs they make.

A new kind is a module in ``console/actions/kinds/`` (its spec, its variant of ActionSpec or
CheckSpec, the :class:`~console.actions.kind.Kind` methods) and one line below. The executor
finds a spec's kind with :func:`kind_of` and a plan's with :func:`kind_named`; it has no table of
its own."""

from __future__ import annotations

from collections.abc import Mapping

from console.actions.kind import Kind
from console.actions.kinds.argv import ArgvKind
from console.actions.kinds.health_check import HealthCheckKind
from console.actions.kinds.http_action import HttpActionKind
from console.actions.kinds.http_check import HttpCheckKind
from console.actions.kinds.promql_check import PromQLCheckKind
from console.actions.kinds.signal import SignalKind
from console.actions.kinds.silence import SilenceKind
from console.actions.kinds.sql_check import SqlCheckKind
from console.actions.kinds.sql_statement import SqlStatementKind
from console.actions.specs import ActionSpec, CheckSpec, Spec
from console.oneof import one_of

SIGNAL = SignalKind()  # the executor builds a plan for one session of the sessions table with it

# In the order a runbook file's "exactly one of" lists them.
ACTIONS: Mapping[str, Kind] = {
    kind.key: kind for kind in (SqlStatementKind(), SIGNAL, HttpActionKind(), ArgvKind(), SilenceKind())
}
CHECKS: Mapping[str, Kind] = {
    kind.key: kind for kind in (SqlCheckKind(), PromQLCheckKind(), HttpCheckKind(), HealthCheckKind())
}

ACTION_KINDS = tuple(ACTIONS)  # the keys of an action: sql, signal, http, argv, silence
CHECK_KINDS = tuple(CHECKS)  # the keys of a check: sql, promql, http, health

# The annotations of a field holding one action / one check (a runbook step's action: / check:).
AnyActionSpec = one_of(ActionSpec, {k: kind.spec for k, kind in ACTIONS.items()}, "give exactly one of")
AnyCheckSpec = one_of(CheckSpec, {k: kind.spec for k, kind in CHECKS.items()}, "give exactly one of")

_BY_SPEC: Mapping[type[Spec], Kind] = {kind.spec: kind for kind in (*ACTIONS.values(), *CHECKS.values())}
_BY_NAME: Mapping[str, Kind] = {kind.name: kind for kind in (*ACTIONS.values(), *CHECKS.values())}


def kind_of(spec: ActionSpec | CheckSpec) -> Kind:
    """The kind of a spec (a variant of ActionSpec or CheckSpec)."""
    return _BY_SPEC[type(spec)]


def kind_named(name: str) -> Kind:
    """The kind of a plan (``plan.kind``: sql, signal, ..., sql check, promql check, http check)."""
    return _BY_NAME[name]
