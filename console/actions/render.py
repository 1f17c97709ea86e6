"""Rendering: a check or action spec and a Context become what will run (real values) and what
the dialog shows (secrets masked). Pure: nothing is contacted."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from console import redact
from console.actions.plans import (
    _Argv,
    _Http,
    _Prom,
    _quote_param,
    _Rendered,
    _show_header,
    _Signal,
    _Silence,
    _Sql,
    _statement_lines,
)
from console.actions.specs import (
    ActionSpec,
    ArgvAction,
    CheckSpec,
    Expect,
    HttpAction,
    HttpGet,
    PromQuery,
    Scalar,
    SignalAction,
    SilenceAction,
    SqlAction,
    SqlQuery,
)
from console.actions.templates import Context, RenderError, _render_json, render_text
from console.config import PostgresCluster, check_http_url
from console.journal import utc_iso
from console.rules import format_duration
from console.sanitize import one_line

if TYPE_CHECKING:
    from console.actions.executor import Executor


def find_cluster(ex: Executor, template: str, ctx: Context) -> PostgresCluster:
    name, _ = render_text(template, ctx)
    for cluster in ex.config.postgres:
        if cluster.name == name:
            return cluster
    known = ", ".join(c.name for c in ex.config.postgres) or "none configured"
    raise RenderError(f"no postgres cluster '{one_line(name, 60)}' in the config (clusters: {known})")


def bind_params(params: Sequence[Scalar], ctx: Context) -> tuple[tuple[Scalar, ...], list[str]]:
    real: list[Scalar] = []
    shown: list[str] = []
    for i, param in enumerate(params, 1):
        if isinstance(param, str):
            value, display = render_text(param, ctx)
            real.append(value)
            shown.append(f"  ${i} = {_quote_param(value, display)}")
        else:
            real.append(param)
            shown.append(f"  ${i} = {_quote_param(param)}")
    return tuple(real), shown


def render_sql_action(ex: Executor, sql: SqlAction, spec: ActionSpec, ctx: Context) -> _Rendered:
    cluster = find_cluster(ex, sql.cluster, ctx)
    params, shown = bind_params(sql.params, ctx)
    preview = None
    lines = [
        f"postgres cluster {cluster.name} ({redact.dsn(cluster.dsn)})",
        *_statement_lines(sql.statement),
    ]
    lines += ["bound parameters:", *shown] if shown else []
    if sql.preview is not None:
        preview_params, _ = bind_params(sql.preview.params, ctx)
        preview = (sql.preview.statement, preview_params)
    first = one_line(sql.statement, 80)
    return _Rendered(
        "sql",
        f"SQL on {cluster.name}: {first}",
        tuple(lines),
        f"postgres cluster {cluster.name}",
        _Sql(cluster, sql.statement, params, preview, sql.transaction),
        cluster.name,
    )


def render_signal(ex: Executor, sig: SignalAction, spec: ActionSpec, ctx: Context) -> _Rendered:
    cluster = find_cluster(ex, sig.cluster, ctx)
    params, shown = bind_params(sig.params, ctx)
    verb = "terminate" if sig.signal == "terminate" else "cancel the query of"
    lines = [
        f"postgres cluster {cluster.name} ({redact.dsn(cluster.dsn)})",
        f"{verb} each session listed by:",
        *_statement_lines(sig.select),
        *(["bound parameters:", *shown] if shown else []),
        "only sessions whose pid and backend_start still match the preview are signalled",
    ]
    return _Rendered(
        "signal",
        f"{sig.signal} sessions on {cluster.name}",
        tuple(lines),
        f"postgres cluster {cluster.name}",
        _Signal(cluster, sig.signal, sig.select, params),
        cluster.name,
    )


def render_http_action(ex: Executor, http: HttpAction, spec: ActionSpec, ctx: Context) -> _Rendered:
    return http_plan(
        ex, http.method, http.url, http.headers, http.json_, http.verify_tls, http.expect, ctx, False
    )


def http_plan(
    ex: Executor,
    method: str,
    url_template: str,
    header_templates: Mapping[str, str],
    body_template: Any,
    verify: bool,
    expect: Expect | None,
    ctx: Context,
    check: bool,
) -> _Rendered:
    url, url_shown = render_text(url_template, ctx, "url")
    try:
        check_http_url(url)
    except ValueError as exc:
        raise RenderError(str(exc)) from None
    headers: dict[str, str] = {}
    lines = [f"{method} {redact.url(url_shown)}"]
    for name, template in header_templates.items():
        headers[name], shown = render_text(template, ctx)
        lines.append(_show_header(name, shown))
    body = None
    if body_template is not None:
        body, body_shown = _render_json(body_template, ctx)
        lines.append("body: " + redact.scrub(json.dumps(body_shown, ensure_ascii=False)))
    service = ctx.get("service")
    host = urlsplit(url).hostname or "?"
    word = service.text if service and service.trusted else host
    return _Rendered(
        "http check" if check else "http",
        f"{method} {redact.url(url_shown)}",
        tuple(lines),
        f"{service.text if service else host} ({redact.url(url_shown)})",
        _Http(method, url, headers, body, verify, expect, check),
        word,
    )


def render_argv(ex: Executor, argv: ArgvAction, spec: ActionSpec, ctx: Context) -> _Rendered:
    real, shown = [], []
    for template in argv.command:
        value, display = render_text(template, ctx, "argv")
        real.append(value)
        shown.append(display)
    env, env_lines = {}, []
    for name, template in argv.env.items():
        env[name], display = render_text(template, ctx)
        env_lines.append(f"env {name}={display}")
    command = shlex.join(shown)
    return _Rendered(
        "argv",
        f"run {one_line(command, 100)}",
        (f"argv (no shell): {command}", *env_lines),
        f"command {os.path.basename(real[0])}",
        _Argv(tuple(real), env),
        os.path.basename(real[-1]),
    )


def alertmanager_target(ex: Executor) -> tuple[str, dict[str, str], bool | str]:
    prom = ex.config.prometheus
    if prom is None or not prom.alertmanager_url:
        raise RenderError("no prometheus.alertmanager_url in the config: silences cannot be made")
    headers = {k: h.value for k, h in prom.headers.items()}
    return prom.alertmanager_url.rstrip("/"), headers, prom.verify_tls


def render_silence(ex: Executor, sil: SilenceAction, spec: ActionSpec | None, ctx: Context) -> _Rendered:
    base, headers, verify = alertmanager_target(ex)
    if sil.expire is not None:
        silence_id, shown = render_text(sil.expire, ctx)
        url = f"{base}/api/v2/silence/{quote(silence_id, safe='')}"
        return _Rendered(
            "silence",
            f"expire silence {shown}",
            (f"DELETE {redact.url(url)}",),
            f"Alertmanager silence {shown}",
            _Silence(base, headers, verify, {}, 0.0, "", silence_id),
            shown,
        )
    matchers, shown_matchers = {}, []
    for name, template in sil.matchers.items():
        matchers[name], shown = render_text(template, ctx)
        shown_matchers.append(f"{name}={shown}")
    comment = render_text(sil.comment, ctx)[0] if sil.comment else ""
    comment = comment or f"acknowledged in incident-console by {ex.operator}"
    ends = utc_iso(ex.clock() + sil.duration)
    lines = (
        f"POST {redact.url(base)}/api/v2/silences",
        f"matchers: {', '.join(shown_matchers)}",
        f"for {format_duration(sil.duration)} (until about {ends})",
        f"createdBy: {ex.operator}",
        f"comment: {redact.scrub(comment)}",
    )
    alertname = matchers.get("alertname", "silence")
    return _Rendered(
        "silence",
        f"silence {', '.join(shown_matchers)} for {format_duration(sil.duration)}",
        lines,
        f"Alertmanager alerts matching {', '.join(shown_matchers)}",
        _Silence(base, headers, verify, matchers, sil.duration, comment, None),
        alertname,
    )


def render_sql_check(ex: Executor, sql: SqlQuery, spec: CheckSpec, ctx: Context) -> _Rendered:
    cluster = find_cluster(ex, sql.cluster, ctx)
    params, shown = bind_params(sql.params, ctx)
    lines = [f"postgres cluster {cluster.name}, read-only", *_statement_lines(sql.statement)]
    lines += ["bound parameters:", *shown] if shown else []
    return _Rendered(
        "sql check",
        f"SQL on {cluster.name}: {one_line(sql.statement, 80)}",
        tuple(lines),
        f"postgres cluster {cluster.name}",
        _Sql(cluster, sql.statement, params, read_only=True, expect=spec.expect),
        cluster.name,
    )


def render_promql(ex: Executor, prom_query: PromQuery, spec: CheckSpec, ctx: Context) -> _Rendered:
    prom = ex.config.prometheus
    if prom is None:
        raise RenderError("no prometheus in the config: PromQL checks cannot run")
    query, shown = render_text(prom_query.query, ctx, "promql")
    headers = {k: h.value for k, h in prom.headers.items()}
    return _Rendered(
        "promql check",
        f"PromQL: {one_line(shown, 100)}",
        (f"GET {redact.url(prom.url)}/api/v1/query", f"query: {shown}"),
        f"Prometheus {redact.url(prom.url)}",
        _Prom(prom.url.rstrip("/"), headers, prom.verify_tls, query, spec.expect),
        "prometheus",
    )


def render_http_check(ex: Executor, http: HttpGet, spec: CheckSpec, ctx: Context) -> _Rendered:
    return http_plan(ex, "GET", http.url, http.headers, None, http.verify_tls, spec.expect, ctx, True)


_ACTION_RENDERERS: dict[str, Callable[..., _Rendered]] = {
    "sql": render_sql_action,
    "signal": render_signal,
    "http": render_http_action,
    "argv": render_argv,
    "silence": render_silence,
}
_CHECK_RENDERERS: dict[str, Callable[..., _Rendered]] = {
    "sql": render_sql_check,
    "promql": render_promql,
    "http": render_http_check,
}
