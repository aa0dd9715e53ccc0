"""The HTTP API (SPEC §6): one explicit route list, one request-context middleware (request id,
metrics), and error handlers that turn every failure into the JSON error shape.

Store calls are blocking (clickhouse-connect), so they run in the thread pool and never stall
the event loop.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from query.activity_cache import Tag, customer_tag, source_tag
from query.activity_sql import ActivityQuery
from query.api.activity import check_text, list_body, parse_activity_query
from query.api.analytics_api import AnalyticsApi
from query.api.auth import Authenticator
from query.api.dashboard import Dashboard
from query.api.docs_page import render_docs
from query.api.errors import (
    ApiError,
    MethodNotAllowed,
    NotFound,
    NotReady,
    StoreUnavailable,
)
from query.api.openapi import (
    ACTIVITY_PATH,
    ANALYTICS_PATHS,
    SESSION_PATH,
    build_document,
)
from query.metrics import Metrics
from query.store import Store, StoreError, key_as_id

UNMATCHED_ROUTE = "unmatched"
# Methods come from the client; anything else is one label so it cannot grow the series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class RequestContext:
    """Gives each request an id (echoed as X-Request-Id and in error bodies) and records its
    status and latency per route template, so metric labels stay bounded."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"v-{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            template = getattr(route, "path_format", UNMATCHED_ROUTE)
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "OTHER"
            self.metrics.observe_request(template, method, status, time.perf_counter() - started)


def _request_id(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id", "")


def _error_response(request: Request, error: ApiError, headers: Mapping[str, str] | None = None) -> Response:
    return OrjsonResponse(error.body(_request_id(request)), status_code=error.status, headers=headers)


async def _api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return _error_response(request, error)


async def _store_error(request: Request, error: Exception) -> Response:
    return _error_response(request, StoreUnavailable(str(error)))


async def _internal_error(request: Request, _error: Exception) -> Response:
    # Starlette logs the traceback; the client gets the error shape and the id to report.
    return OrjsonResponse(ApiError("unexpected error; report the request_id").body(_request_id(request)),
                          status_code=500)


async def _http_error(request: Request, error: Exception) -> Response:
    """Starlette's own 404 (no route) and 405 (wrong method), in our error shape."""
    assert isinstance(error, HTTPException)
    if error.status_code == 405:
        api_error: ApiError = MethodNotAllowed(f"{request.method} is not supported here")
    else:
        api_error = NotFound(f"no endpoint at {request.url.path}")
    return _error_response(request, api_error, headers=error.headers)


class ActivityApi:
    """The endpoints; each is a method so the route list below reads as the whole API."""

    def __init__(
        self, store: Store, authenticator: Authenticator, metrics: Metrics,
        status: Callable[[], dict] | None, readiness: Callable[[], str | None] | None,
    ) -> None:
        self.store = store
        self.authenticator = authenticator
        self.metrics = metrics
        self.status_source = status or (lambda: {"store": store.status().to_dict()})
        self.readiness = readiness or (lambda: None)
        self.document = build_document()
        self.docs_html = render_docs(self.document)

    async def activity(self, request: Request) -> Response:
        # Credentials first: an unauthenticated caller learns nothing about its parameters.
        tenant = self.authenticator.tenant(request.headers)
        customer_key = check_text("customerId", request.path_params["customerId"])
        # A cached page was answered for exactly this query string, so it passed validation
        # then; it is served without a thread hop (query/activity_cache.py says when it is dropped).
        cache = self.store.activity_cache
        key = (tenant, customer_key, request.scope["query_string"])
        if cache is not None and (cached := cache.get(key)) is not None:
            return Response(cached, media_type=OrjsonResponse.media_type)
        query = parse_activity_query(request.query_params.multi_items())
        ticket = cache.ticket() if cache is not None else 0
        page, tags = await run_in_threadpool(self._activity_page, tenant, customer_key, query)
        body = orjson.dumps(page)
        if cache is not None:
            cache.put(key, body, tags, ticket)
        return Response(body, media_type=OrjsonResponse.media_type)

    def _activity_page(
        self, tenant: str, customer_key: str, query: ActivityQuery,
    ) -> tuple[dict[str, Any], tuple[Tag, ...]]:
        """The list body, and the tags of the rows it depends on: the customers the key named
        (by id, then by source_id) and the key as a source_id."""
        tenant_id = self.store.resolve_tenant(tenant)
        if tenant_id is None:
            raise NotFound(f"no tenant named {tenant!r}")
        tags: tuple[Tag, ...] = (source_tag(tenant_id, customer_key),)
        # A key that is an id goes straight to the page: rows prove the customer exists, and so
        # does the starting_after_id event when it is theirs (the dashboard's poll, mostly
        # empty), so the common page is one store query. Only an empty page without a cursor (or
        # a missing cursor) asks the directory, which also tells an unknown customer from an
        # empty history and resolves a source_id that happens to look like a UUID.
        as_id = key_as_id(customer_key)
        events = None
        if as_id is not None:
            tags += (customer_tag(tenant_id, as_id),)
            events = self._page(tenant_id, as_id, query)
            if events or (events is not None and query.starting_after_id is not None):
                return list_body(events, query.limit), tags
        customer_id = self.store.resolve_customer(tenant_id, customer_key)
        if customer_id is None:
            raise NotFound(f"no customer with id or source_id {customer_key!r}")
        if customer_id != as_id:
            tags += (customer_tag(tenant_id, customer_id),)
            events = self._page(tenant_id, customer_id, query)
        if events is None:
            raise NotFound(f"starting_after_id: no event {query.starting_after_id} for this customer")
        return list_body(events, query.limit), tags

    def _page(self, tenant_id: uuid.UUID, customer_id: uuid.UUID, query: ActivityQuery) -> list | None:
        """The customer's page; None when the starting_after_id event is not theirs."""
        after = None
        if query.starting_after_id is not None:
            after = self.store.event_position(tenant_id, customer_id, query.starting_after_id)
            if after is None:
                return None
        return self.store.activity(tenant_id, customer_id, query, after)

    async def session(self, request: Request) -> Response:
        """Whom the credentials name, checked like every read: the dashboard shows the tenant
        and asks /v1/status only when the token may read it."""
        tenant = self.authenticator.tenant(request.headers)
        admin = self.authenticator.is_admin(request.headers)
        return OrjsonResponse({"object": "session", "tenant": tenant, "admin": admin})

    async def status(self, request: Request) -> Response:
        self.authenticator.require_admin(request.headers)
        return OrjsonResponse(await run_in_threadpool(self.status_source))

    async def healthz(self, _request: Request) -> Response:
        return OrjsonResponse({"status": "ok"})

    async def readyz(self, _request: Request) -> Response:
        try:
            await run_in_threadpool(self.store.ping)
        except StoreError as error:
            raise NotReady(f"store: {error}") from None
        reason = self.readiness()
        if reason is not None:
            raise NotReady(reason)
        return OrjsonResponse({"status": "ready"})

    async def metrics_text(self, _request: Request) -> Response:
        return Response(self.metrics.render(), media_type=Metrics.content_type)

    async def openapi(self, _request: Request) -> Response:
        return OrjsonResponse(self.document)

    async def docs(self, _request: Request) -> Response:
        return HTMLResponse(self.docs_html)


def create_app(
    store: Store,
    *,
    tokens: Mapping[str, str],
    status: Callable[[], dict] | None = None,
    readiness: Callable[[], str | None] | None = None,
    metrics: Metrics | None = None,
    activity: bool = True,
) -> Starlette:
    """`tokens`: token -> tenant name or "*" (admin); empty = tenant from the headers (the CLI
    then listens on loopback only). `status` feeds /v1/status, `readiness` /readyz (None =
    ready, else the reason), `metrics` is shared with the pipeline when given. `activity=False`
    leaves the activity, analytics and dashboard routes out (`voucher-activity reader` serves
    only the probes)."""
    metrics = metrics or Metrics()
    api = ActivityApi(store, Authenticator(tokens), metrics, status, readiness)
    # customerId may be a source_id holding "/", hence the path converter.
    analytics = AnalyticsApi(api.store, api.authenticator, OrjsonResponse)
    dashboard = Dashboard()
    activity_routes = [
        Route(ACTIVITY_PATH.replace("{customerId}", "{customerId:path}"), api.activity, methods=["GET"]),
        Route(ANALYTICS_PATHS["events_per_day"], analytics.events_per_day, methods=["GET"]),
        Route(ANALYTICS_PATHS["heatmap"], analytics.heatmap, methods=["GET"]),
        Route(ANALYTICS_PATHS["funnel"], analytics.funnel, methods=["GET"]),
        Route(ANALYTICS_PATHS["top_customers"], analytics.top_customers, methods=["GET"]),
        Route(ANALYTICS_PATHS["ingest_lag"], analytics.ingest_lag, methods=["GET"]),
        Route(SESSION_PATH, api.session, methods=["GET"]),
        Route("/dashboard", dashboard.timeline, methods=["GET"]),
        Route("/dashboard/overview", dashboard.overview, methods=["GET"]),
        Mount("/dashboard/static", app=dashboard.assets, name="dashboard_static"),
    ]
    routes = [
        *(activity_routes if activity else []),
        Route("/v1/status", api.status, methods=["GET"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/readyz", api.readyz, methods=["GET"]),
        Route("/metrics", api.metrics_text, methods=["GET"]),
        Route("/openapi.json", api.openapi, methods=["GET"]),
        Route("/docs", api.docs, methods=["GET"]),
        Route("/favicon.ico", dashboard.favicon, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            ApiError: _api_error, StoreError: _store_error, HTTPException: _http_error,
            Exception: _internal_error,
        },
    )
    app.add_middleware(RequestContext, metrics=metrics)
    return app
