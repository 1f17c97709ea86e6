"""The values a runbook's templates may use: config variables, what the breach says, the
operator's inputs and the runbook's input defaults."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from console.actions import (
    ActionSpec,
    CheckSpec,
    Context,
    RenderError,
    TemplateError,
    Value,
    render_text,
    template_names,
    template_refs,
)
from console.config import Config
from console.measure import subject_queryid
from console.model import SourceKind
from console.rules import Breach
from console.runbooks.rank import breach_provider
from console.runbooks.schema import ActionStep, CheckStep, Runbook, Step, WaitStep
from console.sanitize import one_line

#: Names a runbook may use besides config variables and its own inputs: filled from the breach
#: the runbook was opened for (or set by the operator).
CONTEXT_NAMES: dict[str, str] = {
    "cluster": "Postgres cluster of the breach (postgres.<cluster>.*)",
    "pid": "the session the breach points at",
    "backend_start": "backend start of that session",
    "service": "health target (also the one a blackbox probe's instance URL is), or the alert's job label",
    "service_url": "the config variable <service>_url (storefront_url, sync_worker_url)",
    "service_app": "the config variable <service>_app",
    "provider": "the alert's provider label, or the first failing health check",
    "alertname": "the alert's name",
    "job": "the alert's job label",
    "instance": "the alert's instance label",
    "threshold": "the breached threshold id",
    "threshold_level": "the first level of the breached threshold, in its unit",
    "subject": "what the breach is about, as the breach says",
    "breach": "the breach id",
    "operator": "who runs the console",
}

# --- context ------------------------------------------------------------------------------------------


def _service_key(service: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", service)


def breach_values(breach: Breach, config: Config | None = None) -> dict[str, Value]:
    """What a breach tells the runbook. Values from backends (labels, subjects) are untrusted."""
    values: dict[str, Value] = {"breach": Value(breach.id, False), "subject": Value(breach.subject, False)}
    source = breach.source
    if source.kind is SourceKind.POSTGRES and source.name:
        values["cluster"] = Value(source.name)
    if source.kind is SourceKind.HEALTH and source.name:
        values["service"] = Value(source.name)
    if breach.kind == "threshold":
        values["threshold"] = Value(breach.id)
        bound = config.threshold(breach.id) if config is not None else None
        if bound is not None:
            values["threshold_level"] = Value(f"{bound.threshold.first_level:g}")
    if breach.pid is not None:
        values["pid"] = Value(str(breach.pid))
    if (queryid := subject_queryid(breach.subject)) is not None:
        values["queryid"] = Value(queryid, False)  # a slow statement's pg_stat_statements entry
    labels = dict(breach.labels)
    for key in ("alertname", "job", "instance"):
        if labels.get(key):
            values[key] = Value(labels[key], False)
    if "service" not in values and (probed := _probed_target(labels.get("instance", ""), config)):
        values["service"] = Value(probed)  # a blackbox probe of a health target's URL
    if "service" not in values and labels.get("job"):
        values["service"] = Value(labels["job"], False)
    provider = breach_provider(breach)
    if provider:
        values["provider"] = Value(provider, False)
    return values


def _probed_target(instance: str, config: Config | None) -> str:
    """The health target whose URL an alert's ``instance`` is (a blackbox probe's ``job`` is
    "blackbox", its instance the URL it probes), or ""."""
    if not instance.startswith(("http://", "https://")) or config is None:
        return ""
    url = instance.rstrip("/")
    return next((t.name for t in config.health if str(t.url).rstrip("/") == url), "")


def build_context(
    config: Config,
    runbook: Runbook | None = None,
    breach: Breach | None = None,
    inputs: Mapping[str, str] | None = None,
    operator: str = "",
) -> Context:
    """Values for a runbook's templates. Precedence: what the operator set, the breach, config
    variables, then the runbook's input defaults; ``service_url``/``service_app`` follow
    ``service`` to the variables ``<service>_url``/``<service>_app``."""
    values: dict[str, Value] = {n: Value(v.value, True, v.secret) for n, v in config.variables.items()}
    if breach is not None:
        values.update(breach_values(breach, config))
    values.update({k: Value(str(v), False) for k, v in (inputs or {}).items()})
    if operator:
        values["operator"] = Value(operator)
    ctx = Context(dict(values))
    for name, spec in (runbook.inputs if runbook else {}).items():
        if name in values or spec.default is None:
            continue
        default = str(spec.default)
        try:
            text, _ = render_text(default, ctx)
            refs = [ctx.lookup(r) for r in template_refs(default)]
        except (RenderError, TemplateError):
            continue
        values[name] = Value(text, all(v.trusted for v in refs), any(v.secret for v in refs))
        ctx = Context(dict(values))
    service = values.get("service")
    if service is not None:
        for suffix in ("url", "app"):
            variable = config.variables.get(f"{_service_key(service.text)}_{suffix}")
            if variable is not None and f"service_{suffix}" not in values:
                values[f"service_{suffix}"] = Value(variable.value, True, variable.secret)
    return Context(values)


def filled(text: str, ctx: Context) -> str:
    """``text`` with its values filled in as shown (secrets masked); a value not set yet shows
    as ``<name>`` ("Roll storefront back to <previous_image>"); as written when malformed."""
    try:
        refs = template_refs(text)
    except TemplateError:
        return text
    missing: dict[str, Value] = {}
    for ref in refs:
        try:
            ctx.lookup(ref)
        except RenderError:
            missing[ref.name] = Value(f"<{ref.name}>")
    try:
        return render_text(text, Context({**ctx.values, **missing}) if missing else ctx)[1]
    except (RenderError, TemplateError):
        return text


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def spec_names(spec: ActionSpec | CheckSpec) -> set[str]:
    """Every name the templates of a check or an action refer to."""
    names: set[str] = set()
    for text in _strings(spec.model_dump()):
        try:
            names |= template_names(text)
        except ValueError:
            continue
    return names


def step_names(runbook: Runbook, step: Step) -> set[str]:
    """The names a step's title and what it runs refer to (a wait step: its check's too)."""
    try:
        names = template_names(step.title)
    except TemplateError:
        names = set()
    match step:
        case CheckStep():
            names |= spec_names(step.check)
        case ActionStep():
            names |= spec_names(step.action)
        case WaitStep():
            names |= spec_names(runbook.waited_check(step).check)
    return names


@dataclass(frozen=True, slots=True)
class InputView:
    """A runbook input as the operator sets it: its value now (None: not set, and no default)
    and whether the selected step uses it."""

    name: str
    about: str
    value: str | None
    used_here: bool
    choices: tuple[str, ...] = ()


def input_views(runbook: Runbook, step: Step | None, ctx: Context) -> list[InputView]:
    """The runbook's inputs, those the step uses and has no value for first."""
    used = step_names(runbook, step) if step is not None else set()
    views = []
    for name, spec in runbook.inputs.items():
        value = ctx.get(name)
        views.append(
            InputView(
                name, spec.description, value.text if value else None, name in used, tuple(spec.choices)
            )
        )
    return sorted(views, key=lambda v: (not (v.used_here and v.value is None), not v.used_here))


def runbook_title(config: Config, runbook: Runbook, breach: Breach | None = None) -> str:
    """The runbook's title for this breach, one line ("High error rate on storefront ...", not
    "... on {{service}} ...")."""
    return one_line(filled(runbook.title, build_context(config, runbook, breach)), 200)
