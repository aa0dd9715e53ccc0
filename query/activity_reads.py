"""The activity page's reads (`Store.activity`): which window reads a page makes, and how the
window reads of concurrent pages share queries.

A page is one window read mostly (activity_sql.window_sql: the customer's key range in order,
stopped after the rows wanted), two when the recent months hold too few rows, a skip on the key
columns first for a far page. A window read goes through `BatchedReads`: under load, the reads
that wait for a query of their own shape go as one (`activity_sql.batch_window_sql`), which
pays a query's fixed cost (parsing, analysis, planning, ~3 ms on the embedded engine) and its
part openings once for all of them (docs/store.md, "Concurrent pages").
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from query import activity_sql
from query.activity_sql import ActivityQuery, HistoryShape, Position, WindowRead
from query.batched_reads import BatchedReads
from query.positions import PositionMemory

# Reads of one customer's key range touch a few granules: a second thread costs more than it
# saves, and under concurrency the other requests' queries use the cores.
POINT_READ = {"max_threads": 1}
# Pages up to this many rows deep are read in one query, `data` of the skipped rows included;
# deeper ones skip on the key columns first (ActivityReads.activity).
ONE_QUERY_ROWS = 200
# Batches of window reads running at once: one a core (a query runs on one thread, POINT_READ).
WINDOW_BATCHES = max(os.cpu_count() or 1, 2)
# Reads in one batch at most: past ~32 a batch's rows cost more than the query's fixed cost.
WINDOW_BATCH_READS = 32

Rows = Callable[[str, dict[str, Any], Mapping[str, Any] | None], list[tuple]]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One activity row as the API returns it (`data` still JSON text)."""

    id: uuid.UUID
    type: str
    category: str
    data: str
    created_at: datetime
    group_id: str


class ActivityReads:
    """Thread-safe. `rows(sql, parameters, settings)` runs a read on the calling thread's
    client; `history_shape()` is the store's (activity_sql.recent_months_start)."""

    def __init__(self, rows: Rows, history_shape: Callable[[], HistoryShape | None]) -> None:
        self._rows = rows
        self._history_shape = history_shape
        # The first and last events of pages served: where clients continue from.
        self._positions = PositionMemory()
        self._windows: BatchedReads[WindowRead] = BatchedReads(
            self._read_windows, group=lambda read: (read.columns, read.query.order, read.since is not None),
            conflict=lambda read: (read.tenant_id, read.customer_id),
            concurrency=WINDOW_BATCHES, max_batch=WINDOW_BATCH_READS)
        # Cursors not in `_positions` (another replica served their page, or it was forgotten).
        self._lookups: BatchedReads[tuple[uuid.UUID, uuid.UUID, uuid.UUID]] = BatchedReads(
            self._read_positions, concurrency=WINDOW_BATCHES, max_batch=WINDOW_BATCH_READS)

    def batching(self) -> tuple[int, int]:
        """(reads, queries that ran them) so far: window reads and cursor positions."""
        return self._windows.reads + self._lookups.reads, self._windows.batches + self._lookups.batches

    def event_position(
        self, tenant_id: uuid.UUID, customer_id: uuid.UUID, event_id: uuid.UUID
    ) -> Position | None:
        created_at = self._positions.get((tenant_id, customer_id, event_id))
        if created_at is None:
            created_at = self._lookups.read((tenant_id, customer_id, event_id))
        return Position(created_at, event_id) if created_at is not None else None

    def activity(
        self, tenant_id: uuid.UUID, customer_id: uuid.UUID, query: ActivityQuery, after: Position | None,
    ) -> list[StoredEvent]:
        events = self._activity(tenant_id, customer_id, query, after)
        if events:
            page = events[:query.limit]
            self._positions.remember([((tenant_id, customer_id, e.id), e.created_at) for e in (page[0], page[-1])])
        return events

    def _activity(
        self, tenant_id: uuid.UUID, customer_id: uuid.UUID, query: ActivityQuery, after: Position | None,
    ) -> list[StoredEvent]:
        if query.offset and query.offset + query.limit <= ONE_QUERY_ROWS:
            # A near page in one read: the skipped rows' `data` costs less than a second query.
            rows = self._distinct_rows(tenant_id, customer_id, query, after,
                                       query.offset + query.limit + 1, activity_sql.PAGE_COLUMNS)
            return [StoredEvent(*row) for row in rows[query.offset:]]
        if query.offset:
            # Far pages are skipped on the key columns only, then continue like a cursor.
            keys = self._distinct_rows(tenant_id, customer_id, query, after, query.offset,
                                       activity_sql.KEY_COLUMNS)
            if len(keys) < query.offset:
                return []
            after = Position(keys[-1][1], keys[-1][0])
        rows = self._distinct_rows(tenant_id, customer_id, query, after, query.limit + 1,
                                   activity_sql.PAGE_COLUMNS)
        return [StoredEvent(*row) for row in rows]

    def _distinct_rows(
        self, tenant_id: uuid.UUID, customer_id: uuid.UUID, query: ActivityQuery,
        after: Position | None, wanted: int, columns: str,
    ) -> list[tuple]:
        """The first `wanted` rows with distinct ids (id is the first column): from the recent
        months first when `activity_sql.recent_months_start` says so, then from before them if
        those hold fewer. Copies share created_at, so they fall on the same side of the split."""
        since = activity_sql.recent_months_start(self._history_shape(), query, after, wanted)
        read = (tenant_id, customer_id, query, after, columns)
        rows = self._window_rows(*read, wanted, since=since)
        if since is None or len(rows) >= wanted:
            return rows
        return rows + self._window_rows(*read, wanted - len(rows), until=since)

    def _window_rows(
        self, tenant_id: uuid.UUID, customer_id: uuid.UUID, query: ActivityQuery, after: Position | None,
        columns: str, wanted: int, since: datetime | None = None, until: datetime | None = None,
    ) -> list[tuple]:
        """The first `wanted` distinct rows in [`since`, `until`). Copies are adjacent in key order
        and exist only between a crash's re-delivery and the next merge, so the first read asks for
        exactly `wanted` rows (each row past the page costs lazily read columns, docs/store.md); when
        copies leave it short while more rows exist, the window doubles, past twice `wanted`."""
        window = wanted
        while True:
            rows = self._windows.read(WindowRead(tenant_id, customer_id, query, after, window, columns, since, until))
            seen: set[uuid.UUID] = set()
            distinct = []
            for row in rows:
                if row[0] not in seen:
                    seen.add(row[0])
                    distinct.append(row)
            if len(distinct) >= wanted or len(rows) < window:
                return distinct[:wanted]
            window = max(2 * window, 2 * wanted + 16)

    def _read_positions(self, events: Sequence[tuple[uuid.UUID, uuid.UUID, uuid.UUID]]) -> list[datetime | None]:
        """Each (tenant, customer, event)'s created_at, None where the customer has no such event."""
        if len(events) == 1:
            rows = self._rows(*activity_sql.position_sql(*events[0]), POINT_READ)
            return [rows[0][0] if rows else None]
        rows = self._rows(*activity_sql.positions_sql(events), POINT_READ)
        found = {(tenant_id, customer_id, event_id): created_at for tenant_id, customer_id, event_id, created_at in rows}
        return [found.get(event) for event in events]

    def _read_windows(self, reads: Sequence[WindowRead]) -> list[list[tuple]]:
        """Each read's rows: a read alone as itself, several in one query."""
        if len(reads) == 1:
            return [self._rows(*reads[0].sql(), POINT_READ)]
        answers: list[list[tuple]] = [[] for _ in reads]
        for row in self._rows(*activity_sql.batch_window_sql(reads), POINT_READ):
            answers[row[0]].append(row[1:])
        return [answer[:read.window] for answer, read in zip(answers, reads, strict=True)]
