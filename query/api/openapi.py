"""The OpenAPI 3 document of the HTTP API (served at /openapi.json, rendered at /docs).

Written by hand next to the code it describes and held to it by a schemathesis run in the
tests: every value the document admits must be accepted, every other value rejected with 400.
"""

from __future__ import annotations

from typing import Any

from mappers.events import Category
from query.activity_sql import Order
from query.analytics_sql import FUNNEL_STAGES
from query.api.activity import MAX_LIMIT, MAX_PAGE, MAX_TEXT, MAX_TYPES
from query.api.analytics import FILTER_PARAMS, WEEKDAYS
from query.api.event_types import CAMPAIGN_TYPES, EVENT_TYPES

ACTIVITY_PATH = "/v1/customers/{customerId}/activity"
SESSION_PATH = "/v1/session"
ANALYTICS_PATHS = {
    "events_per_day": "/v1/analytics/events-per-day",
    "heatmap": "/v1/analytics/heatmap",
    "funnel": "/v1/analytics/funnel",
    "top_customers": "/v1/analytics/top-customers",
    "ingest_lag": "/v1/analytics/ingest-lag",
}

# Free text as the parsers accept it: 1..255 characters, none of them a control character.
TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT, "pattern": "^[^\\x00-\\x1f\\x7f]+$"}
# Header values travel as visible ASCII with no surrounding blanks (HTTP strips them).
HEADER_TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT, "pattern": "^[!-~]([ -~]*[!-~])?$"}
UUID = {"type": "string", "format": "uuid", "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"}


def _query(name: str, schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description, **extra}


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ACTIVITY_PARAMETERS = [
    {"name": "customerId", "in": "path", "required": True, "schema": TEXT, "example": "cust_0001",
     "description": "The customer's id, or its source_id within the tenant. A deleted customer "
                    "still resolves by id."},
    _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 10},
           "Events per page."),
    _query("page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1},
           "1-based page number; counted after `starting_after_id` when both are given."),
    _query("order", {"type": "string", "enum": [order.value for order in Order], "default": "-created_at"},
           "`-created_at`: newest first; `created_at`: oldest first. Ties are broken by id."),
    _query("starting_after_id", UUID,
           "Event id cursor (a previous page's `more_starting_after`): continue after it in the "
           "requested order. An id that is not one of this customer's events is 404."),
    _query("start_date", {"type": "string", "format": "date-time"},
           "Events created at or after this ISO 8601 time (a bare date means its midnight UTC). "
           "After `end_date`, it is a 400 naming `start_date`."),
    _query("end_date", {"type": "string", "format": "date-time"},
           "Events created at or before this ISO 8601 time (a bare date means its whole day)."),
    _query("campaign_id", UUID, "Only events of this campaign."),
    _query("campaign_type", {"type": "string", "enum": list(CAMPAIGN_TYPES)},
           "Only events of campaigns of this type."),
    _query("category", {"type": "string", "enum": [category.value for category in Category]},
           "Only ACTION or only EFFECT events."),
    # An empty value (like the blank in `a,,b`) is ignored, hence "" among the values.
    _query("type", {"type": "array", "maxItems": MAX_TYPES, "items": {"type": "string", "enum": [*EVENT_TYPES, ""]}},
           "Event types; repeat the parameter or separate types with commas. Each is a type of the "
           "event catalog or of Voucherify's customer activity object; empty values are ignored.",
           style="form", explode=True),
    {"name": "tenant", "in": "header", "required": False, "schema": HEADER_TEXT,
     "description": "Tenant name, with `Authorization: Bearer` (required for an admin token)."},
]

EVENT = {
    "type": "object",
    "required": ["id", "type", "category", "data", "created_at", "group_id"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "type": {"type": "string", "example": "customer.redemption.succeeded"},
        "category": {"type": "string", "example": "ACTION"},
        "data": {"type": "object", "description": "Voucherify-style objects: customer, campaign, "
                                                  "voucher, redemption, order, ... and event_source."},
        "created_at": {"type": "string", "format": "date-time", "example": "2024-05-01T12:00:00.123456Z"},
        "group_id": {"type": "string", "description": "Shared by the events of one source transaction."},
    },
}

ACTIVITY_LIST = {
    "type": "object",
    "required": ["object", "data_ref", "data", "has_more", "more_starting_after"],
    "properties": {
        "object": {"type": "string", "enum": ["list"]},
        "data_ref": {"type": "string", "enum": ["data"]},
        "data": {"type": "array", "items": {"$ref": "#/components/schemas/CustomerEvent"}},
        "has_more": {"type": "boolean"},
        "more_starting_after": {"type": ["string", "null"], "format": "uuid",
                                "description": "Pass as starting_after_id for the next page."},
    },
}

ERROR = {
    "type": "object",
    "required": ["code", "key", "message", "details", "request_id"],
    "properties": {
        "code": {"type": "integer"},
        "key": {"type": "string", "example": "invalid_param"},
        "message": {"type": "string"},
        "details": {"type": "string"},
        "request_id": {"type": "string"},
        "param": {"type": "string", "description": "The parameter a 400 is about."},
    },
}

# The analytics endpoints take the activity filters (and the tenant header) unchanged.
ANALYTICS_FILTERS = [p for p in ACTIVITY_PARAMETERS if p["name"] in FILTER_PARAMS | {"tenant"}]


def _ranked(what: str) -> list[dict[str, Any]]:
    return [*ANALYTICS_FILTERS,
            _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 10},
                   f"How many {what} to list.")]


COUNT = {"type": "integer", "minimum": 0}
NULLABLE_TEXT = {"type": ["string", "null"]}
NULLABLE_MOMENT = {"type": ["string", "null"], "format": "date-time"}


def _object(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["object", *properties],
            "properties": {"object": {"type": "string", "enum": [name]}, **properties}}


EVENTS_PER_DAY = _object("events_per_day", {
    "time_zone": {"type": "string", "enum": ["UTC"]},
    "types": {"type": "array", "items": {"type": "string"}, "description": "Every type counted, sorted."},
    "days": {"type": "array", "description": "Each day from the first to the last with events, zeros included.",
             "items": {"type": "object", "required": ["date", "total", "counts"], "properties": {
                 "date": {"type": "string", "format": "date"}, "total": COUNT,
                 "counts": {"type": "object", "additionalProperties": COUNT,
                            "description": "Events per type; types without events that day are absent."}}}},
})
HEATMAP = _object("heatmap", {
    "time_zone": {"type": "string", "enum": ["UTC"]},
    "weekdays": {"type": "array", "items": {"type": "string", "enum": list(WEEKDAYS)}},
    "cells": {"type": "array", "minItems": 7, "maxItems": 7, "description": "cells[weekday][hour], Monday first.",
              "items": {"type": "array", "minItems": 24, "maxItems": 24, "items": COUNT}},
    "max": COUNT, "total": COUNT,
})
CUSTOMERS = {"type": "integer", "minimum": 0, "description": "Distinct customers."}
FUNNEL = _object("funnel", {
    "counts": {"type": "string", "enum": ["customers"],
               "description": "Every stage counts distinct customers, not events."},
    "stages": {"type": "array", "items": {"type": "string", "enum": list(FUNNEL_STAGES)}},
    "data": {"type": "array", "items": {
        "type": "object", "required": ["campaign_id", "campaign_name", "campaign_type", "published", "redeemed",
                                       "rolled_back", "redeemed_of_published", "rolled_back_of_redeemed",
                                       "generic_codes"],
        "properties": {
            "campaign_id": {"type": "string", "format": "uuid"}, "campaign_name": NULLABLE_TEXT,
            "campaign_type": NULLABLE_TEXT, "published": CUSTOMERS, "redeemed": CUSTOMERS, "rolled_back": CUSTOMERS,
            "redeemed_of_published": {**CUSTOMERS, "description": "Customers published to who also redeemed: "
                                                                  "the conversion is this over `published`."},
            "rolled_back_of_redeemed": {**CUSTOMERS, "description": "Customers who redeemed and had a "
                                                                    "redemption rolled back."},
            "generic_codes": {"type": "boolean", "description": "Redeemed without any publication (generic "
                                                                "codes): no publication stage to convert from."},
        }}},
})
TOP_CUSTOMERS = _object("top_customers", {
    "data": {"type": "array", "items": {
        "type": "object", "required": ["customer_id", "source_id", "deleted", "events", "last_event_at"],
        "properties": {"customer_id": {"type": "string", "format": "uuid"}, "source_id": NULLABLE_TEXT,
                       "deleted": {"type": "boolean"}, "events": COUNT,
                       "last_event_at": {"type": "string", "format": "date-time"}}}},
})
LAG_SECONDS = {"type": "object", "required": ["p50", "p99", "max"],
               "properties": {name: {"type": "number"} for name in ("p50", "p99", "max")}}
INGEST_LAG = _object("ingest_lag", {
    "events": COUNT, "last_event_at": NULLABLE_MOMENT, "last_ingested_at": NULLABLE_MOMENT,
    "lag_seconds": {"oneOf": [{"type": "null"}, LAG_SECONDS],
                    "description": "ingested_at - created_at of streamed events (p50 and p99 approximate)."},
})

ANALYTICS_OPERATIONS = (
    ("events_per_day", "Events per UTC day and type", "getEventsPerDay", "EventsPerDay", EVENTS_PER_DAY,
     ANALYTICS_FILTERS),
    ("heatmap", "Events per UTC weekday and hour", "getHeatmap", "Heatmap", HEATMAP, ANALYTICS_FILTERS),
    ("funnel", "Customers published to, redeeming and rolled back (succeeded events) per campaign, "
               "most customers published to first",
     "getFunnel", "Funnel", FUNNEL, _ranked("campaigns")),
    ("top_customers", "The customers with most events", "getTopCustomers", "TopCustomers", TOP_CUSTOMERS,
     _ranked("customers")),
    ("ingest_lag", "Time from commit to store for streamed events (snapshot events excluded)",
     "getIngestLag", "IngestLag", INGEST_LAG, ANALYTICS_FILTERS),
)


def _analytics_paths() -> dict[str, Any]:
    return {
        ANALYTICS_PATHS[key]: _get(
            f"{summary}, in the caller's tenant",
            {
                "200": _json(summary, {"$ref": f"#/components/schemas/{schema_name}"}),
                "400": _error("A malformed parameter (`param` names it)"),
                "401": _error("Missing or wrong credentials"),
                "403": _error("The token is for another tenant"),
                "404": _error("Unknown tenant"),
                "503": _error("The store is not answering"),
            },
            operationId=operation_id, parameters=parameters, security=AUTHENTICATED,
        )
        for key, summary, operation_id, schema_name, _schema, parameters in ANALYTICS_OPERATIONS
    }


SESSION = _object("session", {
    "tenant": {"type": "string", "description": "The tenant these credentials read."},
    "admin": {"type": "boolean", "description": "Whether they may also read /v1/status (an admin "
                                                "token, or no tokens configured)."},
})

STATUS_OK = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}

AUTHENTICATED = [{"appId": [], "appToken": []}, {"bearer": []}]


def _get(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"get": {"summary": summary, "responses": responses, **extra}}


def build_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "voucher-activity",
            "version": "1",
            "description": "Customer activity from the voucher engine's WAL, compatible with "
                           "Voucherify's List Customer Activity.",
        },
        "paths": {
            ACTIVITY_PATH: _get(
                "List customer activity",
                {
                    "200": _json("A page of events", {"$ref": "#/components/schemas/ActivityList"}),
                    "400": _error("A malformed parameter (`param` names it)"),
                    "401": _error("Missing or wrong credentials"),
                    "403": _error("The token is for another tenant"),
                    "404": _error("Unknown tenant, customer or cursor event"),
                    "503": _error("The store is not answering"),
                },
                operationId="listCustomerActivity", parameters=ACTIVITY_PARAMETERS,
                security=AUTHENTICATED,
            ),
            **_analytics_paths(),
            SESSION_PATH: _get(
                "Whom the credentials name (the dashboard's sign-in): the tenant, and whether the "
                "token is an admin token",
                {
                    "200": _json("The session", {"$ref": "#/components/schemas/Session"}),
                    "400": _error("A malformed header (`param` names it)"),
                    "401": _error("Missing or wrong credentials"),
                    "403": _error("The token is for another tenant"),
                },
                operationId="getSession", parameters=[p for p in ACTIVITY_PARAMETERS if p["name"] == "tenant"],
                security=AUTHENTICATED,
            ),
            "/v1/status": _get(
                "Reader and store status (what `voucher-activity status --json` prints); "
                "needs an admin token when tokens are configured",
                {
                    "200": _json("Status", {"type": "object"}),
                    "401": _error("Missing or wrong credentials"),
                    "403": _error("Not an admin token"),
                    "503": _error("The store is not answering"),
                },
                operationId="getStatus", security=AUTHENTICATED,
            ),
            "/healthz": _get("The process is up", {"200": _json("Up", STATUS_OK)},
                             operationId="getHealth", security=[]),
            "/readyz": _get(
                "The store answers and the reader is streaming",
                {"200": _json("Ready", STATUS_OK), "503": _error("Not ready; `details` says why")},
                operationId="getReadiness", security=[],
            ),
            "/metrics": _get(
                "Prometheus metrics",
                {"200": {"description": "Prometheus text format",
                         "content": {"text/plain": {"schema": {"type": "string"}}}}},
                operationId="getMetrics", security=[],
            ),
            "/openapi.json": _get("This document", {"200": _json("OpenAPI 3", {"type": "object"})},
                                  operationId="getOpenApi", security=[]),
            "/docs": _get(
                "This document as a page",
                {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}},
                operationId="getDocs", security=[],
            ),
        },
        "components": {
            "schemas": {
                "ActivityList": ACTIVITY_LIST, "CustomerEvent": EVENT, "Error": ERROR, "Session": SESSION,
                **{name: schema for _key, _summary, _id, name, schema, _params in ANALYTICS_OPERATIONS},
            },
            "securitySchemes": {
                "appId": {"type": "apiKey", "in": "header", "name": "X-App-Id",
                          "description": "Tenant name (Voucherify clients)."},
                "appToken": {"type": "apiKey", "in": "header", "name": "X-App-Token",
                             "description": "Token of that tenant, or an admin token."},
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "Token; the tenant comes from the token or the `tenant` header."},
            },
        },
    }
