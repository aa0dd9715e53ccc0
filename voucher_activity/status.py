"""What `voucher-activity status` prints and `GET /v1/status` returns: the slot, the publication,
confirmed LSN, lag in bytes and seconds, WAL retained by the slot, and what the store holds; and
what a running pipeline reports of itself (`PipelineProgress`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from cdc_reader.changes import format_lsn, parse_lsn
from cdc_reader.slot import publication_tables, slot_info
from query.store import Store
from voucher_activity.config import Settings


@dataclass
class PipelineProgress:
    """What the pipeline reports to /v1/status, /readyz and the metrics (updated in place by
    the pipeline thread only; readers take a consistent-enough copy of scalars)."""

    streaming: bool = False
    snapshot_running: bool = False
    last_error: str | None = None
    confirmed_lsn: int | None = None
    last_commit_time: float | None = None  # unix time of the last stored transaction's commit
    pending_since: float | None = None  # when the oldest change not yet in the store was received
    events_written: int = 0
    transactions: int = 0
    started: float = field(default_factory=time.time)

    def lag_seconds(self) -> float:
        return 0.0 if self.pending_since is None else max(time.time() - self.pending_since, 0.0)


def collect_status(settings: Settings, store: Store | None, live_lag_seconds: float | None = None) -> dict[str, Any]:
    """Status as a JSON-ready dict. Either side may be unreachable: its part then says why
    instead of failing the whole report. `live_lag_seconds` comes from an in-process pipeline."""
    status: dict[str, Any] = {
        "slot": settings.slot,
        "publication": settings.publication,
        "source": _source_status(settings, live_lag_seconds) if settings.source_dsn else {"error": "no --source configured"},
    }
    status["store"] = _store_status(store) if store is not None else {"error": "no store"}
    return status


def _source_status(settings: Settings, live_lag_seconds: float | None) -> dict[str, Any]:
    try:
        with psycopg.connect(settings.source_dsn, connect_timeout=5, autocommit=True) as conn:
            info = slot_info(conn, settings.slot)
            current = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
            published = sorted(f"{schema}.{table}" for schema, table in publication_tables(conn, settings.publication))
            publication_exists = conn.execute(
                "SELECT count(*) FROM pg_publication WHERE pubname = %s", (settings.publication,)
            ).fetchone()[0] == 1
            flush_lag = None
            if info is not None and info.active_pid is not None:
                row = conn.execute(
                    "SELECT extract(epoch FROM flush_lag)::float8 FROM pg_stat_replication WHERE pid = %s",
                    (info.active_pid,),
                ).fetchone()
                flush_lag = row[0] if row else None
    except psycopg.Error as error:
        return {"error": f"{type(error).__name__}: {error}".strip()}
    current_lsn = parse_lsn(current)
    result: dict[str, Any] = {
        "server_wal_lsn": current,
        "publication_exists": publication_exists,
        "published_tables": published,
        "slot_exists": info is not None,
    }
    if info is None:
        return result
    confirmed = info.confirmed_flush_lsn
    lag_bytes = max(current_lsn - confirmed, 0) if confirmed is not None else None
    if lag_bytes == 0:
        lag_seconds: float | None = 0.0
    elif live_lag_seconds is not None:
        lag_seconds = live_lag_seconds
    else:
        lag_seconds = flush_lag
    result.update(
        slot_active=info.active,
        confirmed_lsn=format_lsn(confirmed) if confirmed is not None else None,
        restart_lsn=format_lsn(info.restart_lsn) if info.restart_lsn is not None else None,
        lag_bytes=lag_bytes,
        lag_seconds=None if lag_seconds is None else round(lag_seconds, 3),
        retained_wal_bytes=info.retained_wal_bytes,
    )
    return result


def _store_status(store: Store) -> dict[str, Any]:
    try:
        return store.status().to_dict()
    except Exception as error:  # the report must not fail because the store is down
        return {"error": f"{type(error).__name__}: {error}"}


def render_table(status: dict[str, Any]) -> str:
    """The human form: one `key  value` line per fact."""
    lines = [("slot", status["slot"]), ("publication", status["publication"])]
    for section in ("source", "store"):
        for key, value in status[section].items():
            if key == "tenants":
                for tenant in value:
                    lines.append((f"{section}.tenant[{tenant['name']}]",
                                  f"{tenant['events_stored']} events, last {tenant['last_event_at']}"))
                continue
            if isinstance(value, list):
                value = ", ".join(value) or "-"
            lines.append((f"{section}.{key}", "-" if value is None else value))
    width = max(len(key) for key, _ in lines)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in lines)
