"""GET /v1/analytics/...: a tenant's activity in aggregate, for the dashboard's overview and for
any client. Same authentication, tenant resolution and errors as the activity endpoint; the
route list in `app.py` points at these methods."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from query.activity_sql import ActivityQuery
from query.api import analytics
from query.api.auth import Authenticator
from query.api.errors import NotFound
from query.store import Store

Report = Callable[[uuid.UUID, ActivityQuery], dict[str, Any]]


class AnalyticsApi:
    def __init__(self, store: Store, authenticator: Authenticator,
                 respond: Callable[[dict[str, Any]], JSONResponse]) -> None:
        self.store = store
        self.authenticator = authenticator
        self.respond = respond

    async def events_per_day(self, request: Request) -> Response:
        return await self._serve(request, self._events_per_day, ranked=False)

    async def heatmap(self, request: Request) -> Response:
        return await self._serve(request, self._heatmap, ranked=False)

    async def funnel(self, request: Request) -> Response:
        return await self._serve(request, self._funnel, ranked=True)

    async def top_customers(self, request: Request) -> Response:
        return await self._serve(request, self._top_customers, ranked=True)

    async def ingest_lag(self, request: Request) -> Response:
        return await self._serve(request, self._ingest_lag, ranked=False)

    async def _serve(self, request: Request, report: Report, *, ranked: bool) -> Response:
        # Credentials first: an unauthenticated caller learns nothing about its parameters.
        tenant = self.authenticator.tenant(request.headers)
        query = analytics.parse_analytics_query(request.query_params.multi_items(), ranked=ranked)
        return self.respond(await run_in_threadpool(self._run, tenant, report, query))

    def _run(self, tenant: str, report: Report, query: ActivityQuery) -> dict[str, Any]:
        tenant_id = self.store.resolve_tenant(tenant)
        if tenant_id is None:
            raise NotFound(f"no tenant named {tenant!r}")
        return report(tenant_id, query)

    def _events_per_day(self, tenant_id: uuid.UUID, query: ActivityQuery) -> dict[str, Any]:
        return analytics.events_per_day_body(self.store.events_per_day(tenant_id, query))

    def _heatmap(self, tenant_id: uuid.UUID, query: ActivityQuery) -> dict[str, Any]:
        return analytics.heatmap_body(self.store.heatmap(tenant_id, query))

    def _funnel(self, tenant_id: uuid.UUID, query: ActivityQuery) -> dict[str, Any]:
        rows = self.store.funnel(tenant_id, query)
        names = self.store.campaign_names(tenant_id, [row[0] for row in rows])
        return analytics.funnel_body(rows, names)

    def _top_customers(self, tenant_id: uuid.UUID, query: ActivityQuery) -> dict[str, Any]:
        rows = self.store.top_customers(tenant_id, query)
        directory = self.store.customer_directory(tenant_id, [row[0] for row in rows])
        return analytics.top_customers_body(rows, directory)

    def _ingest_lag(self, tenant_id: uuid.UUID, query: ActivityQuery) -> dict[str, Any]:
        return analytics.ingest_lag_body(self.store.ingest_lag(tenant_id, query))
