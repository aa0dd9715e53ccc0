"""The analytics endpoints' aggregations as parameterized SELECTs (pure: SQL text and
parameters, no I/O).

Event counts run over `customer_events_dedup` (the events table FINAL): copies share the whole
sort key, so FINAL collapses them in a streaming merge of the tenant's key range, where counting
distinct ids would hold every id of the range in memory. The funnel counts distinct customers,
which copies cannot inflate, so it reads the table itself. Measured on 10M events in
docs/dashboard.md. Every query starts with `tenant_id =`, the sort key's prefix, and date
bounds prune monthly partitions.
"""

from __future__ import annotations

import uuid
from typing import Any

from query.activity_sql import ActivityQuery, filter_conditions
from query.schema import (
    CUSTOMERS_TABLE,
    DEDUP_VIEW,
    EVENTS_TABLE,
    FUNNEL_STAGES,
    PUBLISHED,
    REDEEMED,
    ROLLED_BACK,
    STAGES_TABLE,
)

_TENANT = "tenant_id = {tenant_id:UUID}"
# Snapshot events carry the row's own time, not a commit time: no ingest lag to speak of.
_STREAMED = "source != 'snapshot'"


def _where(tenant_id: uuid.UUID, query: ActivityQuery) -> tuple[str, dict[str, Any]]:
    filters, parameters = filter_conditions(query)
    return " AND ".join([_TENANT, *filters]), parameters | {"tenant_id": tenant_id}


def events_per_day_sql(tenant_id: uuid.UUID, query: ActivityQuery) -> tuple[str, dict[str, Any]]:
    where, parameters = _where(tenant_id, query)
    sql = (
        f"SELECT toDate(created_at) AS day, type, count() FROM {DEDUP_VIEW} WHERE {where} "
        "GROUP BY day, type ORDER BY day, type"
    )
    return sql, parameters


def heatmap_sql(tenant_id: uuid.UUID, query: ActivityQuery) -> tuple[str, dict[str, Any]]:
    where, parameters = _where(tenant_id, query)
    sql = (
        f"SELECT toDayOfWeek(created_at) AS weekday, toHour(created_at) AS hour, count() "
        f"FROM {DEDUP_VIEW} WHERE {where} GROUP BY weekday, hour"
    )
    return sql, parameters


_FUNNEL_ORDER = "ORDER BY published DESC, redeemed DESC, campaign LIMIT {limit:UInt32}"


def funnel_sql(tenant_id: uuid.UUID, query: ActivityQuery) -> tuple[str, dict[str, Any]]:
    """Per campaign, the distinct customers at each stage, and those who went on from one stage
    to the next (published and redeemed; redeemed and rolled back), so a conversion never
    exceeds 100%: (campaign_id, campaign_type, published, redeemed, rolled_back,
    redeemed_of_published, rolled_back_of_redeemed). The `limit` campaigns reaching most
    customers by publication (then by redemption) first, ties by id so pages are stable.

    Customers, not events: a customer who redeems a code twice is one redeemer, and a campaign
    of generic codes (redeemed without any publication) reads as redemptions alone.

    Over all time (no filter but a campaign) it reads the stages table, whose FINAL is one row
    per (campaign, customer) merged in key order, so no hash table of customers is built; a
    range of dates, a category, a type or a campaign type select events, so those group the
    events table itself (distinct customers are immune to re-delivered copies: no FINAL)."""
    parameters: dict[str, Any] = {"tenant_id": tenant_id, "limit": query.limit}
    if (query.start_date, query.end_date, query.campaign_type, query.category, query.types) == (
            None, None, None, None, ()):
        campaign = ""
        if query.campaign_id is not None:
            campaign, parameters["campaign_id"] = " AND campaign_id = {campaign_id:UUID}", query.campaign_id
        published, redeemed, rolled_back = (
            f"{column} IS NOT NULL" for column in ("first_published_at", "last_redeemed_at", "last_rolled_back_at"))
        sql = (
            f"SELECT campaign_id AS campaign, max(campaign_type), countIf({published}) AS published, "
            f"countIf({redeemed}) AS redeemed, countIf({rolled_back}), countIf({published} AND {redeemed}), "
            f"countIf({redeemed} AND {rolled_back}) FROM {STAGES_TABLE} FINAL WHERE {_TENANT}{campaign} "
            f"GROUP BY campaign {_FUNNEL_ORDER}"
        )
        return sql, parameters
    where, filters = _where(tenant_id, query)
    parameters |= filters | {"stages": list(FUNNEL_STAGES), "published": PUBLISHED, "redeemed": REDEEMED,
                             "rolled_back": ROLLED_BACK}
    sql = (
        "SELECT campaign, max(kind), sum(was_published) AS published, "
        "sum(was_redeemed) AS redeemed, sum(was_rolled_back) AS rolled_back, "
        "sum(was_published AND was_redeemed), sum(was_redeemed AND was_rolled_back) "
        "FROM (SELECT assumeNotNull(campaign_id) AS campaign, customer_id, max(campaign_type) AS kind, "
        "max(type = {published:String}) AS was_published, max(type = {redeemed:String}) AS was_redeemed, "
        "max(type = {rolled_back:String}) AS was_rolled_back "
        f"FROM {EVENTS_TABLE} WHERE {where} AND campaign_id IS NOT NULL AND type IN {{stages:Array(String)}} "
        f"GROUP BY campaign, customer_id) GROUP BY campaign {_FUNNEL_ORDER}"
    )
    return sql, parameters


def campaign_names_sql(tenant_id: uuid.UUID, campaign_ids: list[uuid.UUID]) -> tuple[str, dict[str, Any]]:
    """A name per campaign from any one of its events (every copy holds the same payload);
    the outer LIMIT stops the read once each campaign has been seen."""
    sql = (
        f"SELECT assumeNotNull(campaign_id) AS campaign, JSONExtractString(data, 'campaign', 'name') "
        f"FROM {EVENTS_TABLE} WHERE {_TENANT} AND campaign_id IN {{campaigns:Array(UUID)}} "
        "AND JSONHas(data, 'campaign', 'name') LIMIT 1 BY campaign LIMIT {count:UInt32}"
    )
    return sql, {"tenant_id": tenant_id, "campaigns": campaign_ids, "count": len(campaign_ids)}


def top_customers_sql(tenant_id: uuid.UUID, query: ActivityQuery) -> tuple[str, dict[str, Any]]:
    where, parameters = _where(tenant_id, query)
    parameters["limit"] = query.limit
    sql = (
        f"SELECT customer_id, count() AS events, max(created_at) FROM {DEDUP_VIEW} WHERE {where} "
        "GROUP BY customer_id ORDER BY events DESC, customer_id LIMIT {limit:UInt32}"
    )
    return sql, parameters


def customer_directory_sql(tenant_id: uuid.UUID, customer_ids: list[uuid.UUID]) -> tuple[str, dict[str, Any]]:
    sql = (
        f"SELECT id, source_id, deleted FROM {CUSTOMERS_TABLE} FINAL "
        f"WHERE {_TENANT} AND id IN {{customers:Array(UUID)}}"
    )
    return sql, {"tenant_id": tenant_id, "customers": customer_ids}


def ingest_lag_sql(tenant_id: uuid.UUID, query: ActivityQuery) -> tuple[str, dict[str, Any]]:
    where, parameters = _where(tenant_id, query)
    lag = "dateDiff('microsecond', created_at, ingested_at) / 1e6"
    sql = (
        f"SELECT count(), max(created_at), max(ingested_at), quantiles(0.5, 0.99)({lag}), max({lag}) "
        f"FROM {DEDUP_VIEW} WHERE {where} AND {_STREAMED}"
    )
    return sql, parameters
