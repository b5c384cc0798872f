"""Alert rules over HTTP: ``/api/v1/rules`` (list, get, create, replace, delete).

A rule's JSON body has the keys of a ``[[rules]]`` table (docs/alerts.md). Rules come from
the config files (``source: "config"``, read-only here: 409) or from this API
(``source: "api"``), kept in the database when there is one and applied to the running
engine at the next tick, without a restart. Writes need a bearer token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from aiohttp import web

from alerts.rules import RuleInvalidError, RuleSpec, rule_from_json
from monitor.alerting import RuleConflictError, metric_problem
from monitor.api.alerting import DB_ERRORS, alert_sink, json_response
from monitor.api.params import ApiError, Query, bad, offset_page
from monitor.api.spec import P_CURSOR, Param, Route, p_limit

if TYPE_CHECKING:
    from monitor.alerting import AlertEngineSink

API = "/api/v1"
SOURCES = ("config", "api", "all")


class RuleOut(msgspec.Struct):
    """A rule as its ``[[rules]]`` table says it, with where it comes from and its alerts."""

    name: str
    source: str  # "config" (read-only through the API) or "api"
    metric: str
    condition: str
    threshold: float
    severity: str
    scope: dict[str, str]
    clear: float | None
    for_s: float
    keep_firing_for_s: float
    baseline_window_s: float
    baseline_min_s: float
    category: str
    labels: dict[str, str]
    summary: str
    enabled: bool
    firing: int  # its alerts firing now
    pending: int


class RuleList(msgspec.Struct):
    rules: list[RuleOut]
    next_cursor: str | None


class RuleDeleted(msgspec.Struct):
    deleted: str
    firing_resolved: int  # its firing alerts, resolved at the next tick (rule_removed)


def _out(sink: AlertEngineSink, rule: RuleSpec, source: str) -> dict[str, Any]:
    body = msgspec.structs.asdict(rule)
    body["scope"] = msgspec.structs.asdict(rule.scope)
    body["condition"] = rule.condition.value
    firing = pending = 0
    for (name, _), alert in sink.engine.active.items():
        if name == rule.name:
            firing += alert.state.value == "firing"
            pending += alert.state.value == "pending"
    return {"source": source, **body, "firing": firing, "pending": pending}


def _name(request: web.Request) -> str:
    name = request.match_info["name"]
    if "\x00" in name or len(name) > 100:
        raise bad("name", "not a rule name")
    return name


async def _rule_body(request: web.Request) -> RuleSpec:
    try:
        rule = rule_from_json(await request.read())
    except RuleInvalidError as exc:
        raise ApiError(400, f"invalid rule: {exc}", exc.field) from None
    problem = metric_problem(rule.metric)
    if problem:
        raise ApiError(400, f"invalid rule: metric: {problem}", "metric")
    return rule


def _conflict(exc: RuleConflictError) -> ApiError:
    return ApiError(409, str(exc), "name")


def _db(exc: BaseException) -> ApiError:
    return ApiError(503, f"database unavailable: {str(exc)[:200]}")


async def list_rules(request: web.Request) -> web.Response:
    query = Query(request, {"source", "limit", "cursor"})
    source = query.choice("source", SOURCES, "all")
    sink = alert_sink(request)
    rows = [_out(sink, r, src) for r, src in sink.rules() if source in ("all", src)]
    page, following, _ = offset_page(rows, query, 500, 10_000)
    return json_response({"rules": page, "next_cursor": following})


async def get_rule(request: web.Request) -> web.Response:
    Query(request, set())
    name = _name(request)
    sink = alert_sink(request)
    found = sink.find_rule(name)
    if found is None:
        raise ApiError(404, f"no rule {name!r}", "name")
    return json_response(_out(sink, *found))


T = TypeVar("T")


async def _stored(change: Awaitable[T]) -> T:
    """A rule change stored and applied by the alert sink; a name clash or a config rule is
    409, the database away 503."""
    try:
        return await change
    except RuleConflictError as exc:
        raise _conflict(exc) from None
    except DB_ERRORS as exc:
        raise _db(exc) from None


async def create_rule(request: web.Request) -> web.Response:
    """A new rule, evaluated from the next tick."""
    Query(request, set())
    sink = alert_sink(request)
    rule = await _rule_body(request)
    await _stored(sink.create_rule(rule))
    return json_response(_out(sink, rule, "api"), 201)


async def replace_rule(request: web.Request) -> web.Response:
    """Replace an API rule; its alerts carry over or end at the next tick (docs/alerts.md)."""
    Query(request, set())
    name = _name(request)
    sink = alert_sink(request)
    rule = await _rule_body(request)
    if rule.name != name:
        raise bad("name", f"the body's name {rule.name!r} is not the path's {name!r} "
                  "(to rename a rule: create the new one, delete the old)")  # fmt: skip
    replaced = await _stored(sink.replace_rule(rule))
    if not replaced:
        raise ApiError(404, f"no rule {name!r} (POST /api/v1/rules creates one)", "name")
    return json_response(_out(sink, rule, "api"))


async def delete_rule(request: web.Request) -> web.Response:
    """Remove an API rule; its firing alerts resolve at the next tick (reason rule_removed)."""
    Query(request, set())
    name = _name(request)
    sink = alert_sink(request)
    firing = sum(
        1 for (n, _), a in sink.engine.active.items() if n == name and a.state.value == "firing"
    )
    deleted = await _stored(sink.delete_rule(name))
    if not deleted:
        raise ApiError(404, f"no rule {name!r}", "name")
    return json_response({"deleted": name, "firing_resolved": firing})


def rule_routes(max_limit: int) -> Sequence[Route]:
    name = Param("name", {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]*$",
                          "maxLength": 100}, "rule name", where="path")  # fmt: skip
    source = Param("source", {"type": "string", "enum": [*SOURCES], "default": "all"},
                   "config (the rules files, read-only here), api, or all")  # fmt: skip
    return [
        Route("GET", f"{API}/rules", list_rules, "Alert rules: from the config and the API",
              RuleList, (source, p_limit(500, max_limit), P_CURSOR), tag="rules",
              errors=(400, 401, 503)),
        Route("GET", f"{API}/rules/{{name}}", get_rule, "One alert rule", RuleOut, (name,),
              tag="rules", errors=(400, 401, 404, 503)),
        Route("POST", f"{API}/rules", create_rule,
              "Add a rule (evaluated from the next tick; kept in the database)", RuleOut,
              tag="rules", write=True, errors=(400, 401, 409, 503), request=RuleSpec,
              status=201),
        Route("PUT", f"{API}/rules/{{name}}", replace_rule,
              "Replace an API rule (its alerts carry over or end: docs/alerts.md)", RuleOut,
              (name,), tag="rules", write=True, errors=(400, 401, 404, 409, 503),
              request=RuleSpec),
        Route("DELETE", f"{API}/rules/{{name}}", delete_rule,
              "Remove an API rule (its firing alerts resolve, reason rule_removed)",
              RuleDeleted, (name,), tag="rules", write=True, errors=(400, 401, 404, 409, 503)),
    ]  # fmt: skip
