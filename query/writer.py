"""Batches the mappers' records and writes them column-oriented; tracks which source LSN is
durable in the store, so the reader confirms to PostgreSQL only what is safely written.

Sizes come from tests/bench/store_engine.py (docs/store.md): about 10k rows or 50 ms per batch
keeps commit-to-queryable latency well under a second while inserts stay cheap per row.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING

from mappers.events import CustomerEvent, CustomerRecord, TenantRecord
from query.activity_cache import customer_tag, source_tag
from query.schema import (
    CUSTOMER_COLUMNS,
    CUSTOMERS_TABLE,
    EVENT_COLUMNS,
    EVENTS_TABLE,
    TENANT_COLUMNS,
    TENANTS_TABLE,
)

if TYPE_CHECKING:
    from query.metrics import Metrics
    from query.store import Store

Record = CustomerEvent | TenantRecord | CustomerRecord

# Sent with every insert so the client never asks the server for the table's structure.
EVENT_TYPES = (
    "UUID", "UUID", "LowCardinality(String)", "UUID", "DateTime64(6, 'UTC')",
    "LowCardinality(String)", "LowCardinality(String)", "Nullable(UUID)", "LowCardinality(String)",
    "String", "LowCardinality(String)", "String", "LowCardinality(String)", "UInt64",
)
TENANT_TYPES = ("UUID", "String", "UInt64")
CUSTOMER_TYPES = ("UUID", "UUID", "Nullable(String)", "Bool", "UInt64")

_event_row = attrgetter(*EVENT_COLUMNS)
_tenant_row = attrgetter(*TENANT_COLUMNS)
_customer_row = attrgetter(*CUSTOMER_COLUMNS)


def _columns(rows: Sequence[tuple], width: int) -> list[tuple]:
    return list(zip(*rows)) if rows else [() for _ in range(width)]


def dedup_token(table: str, keys: Iterable[bytes]) -> str:
    """Names a block by its content: the same rows sent again carry the same token."""
    digest = hashlib.blake2b(digest_size=16)
    count = 0
    for key in keys:
        digest.update(key)
        count += 1
    return f"{table}-{count}-{digest.hexdigest()}"


class EventWriter:
    """Not thread-safe: one pipeline thread owns it."""

    def __init__(
        self, store: Store, max_rows: int = 10_000, max_age: float = 0.05,
        metrics: Metrics | None = None, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.max_rows = max_rows
        self.max_age = max_age
        self.metrics = metrics
        self._clock = clock
        self._events: list[CustomerEvent] = []
        self._tenants: list[TenantRecord] = []
        self._customers: list[CustomerRecord] = []
        self._oldest: float | None = None  # when the oldest unflushed record or mark arrived
        self._marked: int | None = None
        self._durable: int | None = None

    @property
    def pending(self) -> int:
        """Rows added and not yet written."""
        return len(self._events) + len(self._tenants) + len(self._customers)

    @property
    def age(self) -> float:
        """Seconds since the oldest unflushed record or mark arrived (0 when none)."""
        return 0.0 if self._oldest is None else self._clock() - self._oldest

    @property
    def full(self) -> bool:
        """max_rows reached: flush now, whatever the age."""
        return self.pending >= self.max_rows

    @property
    def marked_lsn(self) -> int | None:
        """The highest marked LSN that is not durable yet (None when all marks are)."""
        if self._marked is None or self._marked == self._durable:
            return None
        return self._marked

    @property
    def durable_lsn(self) -> int | None:
        """Every record derived from changes up to this LSN is in the store."""
        return self._durable

    def add(self, records: Iterable[Record]) -> None:
        for record in records:
            if isinstance(record, CustomerEvent):
                self._events.append(record)
            elif isinstance(record, CustomerRecord):
                self._customers.append(record)
            elif isinstance(record, TenantRecord):
                self._tenants.append(record)
            else:
                raise TypeError(f"EventWriter cannot store {type(record).__name__}")
            if self._oldest is None:
                self._oldest = self._clock()

    def mark(self, lsn: int) -> None:
        """Everything added so far derives from changes up to `lsn`."""
        if self._marked is None or lsn > self._marked:
            self._marked = lsn
            if self._oldest is None:
                self._oldest = self._clock()

    def seconds_until_due(self) -> float:
        if self.pending >= self.max_rows:
            return 0.0
        if self._oldest is None:
            return self.max_age
        return max(self.max_age - (self._clock() - self._oldest), 0.0)

    def due(self) -> bool:
        """Enough rows, or the oldest unflushed record or mark has waited max_age."""
        if self.pending >= self.max_rows:
            return True
        return self._oldest is not None and self._clock() - self._oldest >= self.max_age

    def flush(self) -> int | None:
        """Write everything pending; return the highest marked LSN now durable.

        Raises StoreError and keeps the rows on failure, so a later flush writes them again;
        a block that did reach the store is then dropped by its dedup token, and any copy that
        slips through (e.g. re-sent in a differently cut batch) is collapsed on read.
        """
        marked = self._marked
        started = time.perf_counter()
        try:
            # Lookup rows first: once an event is visible its customer resolves.
            if self._tenants:
                self._insert(TENANTS_TABLE, TENANT_COLUMNS, TENANT_TYPES, self._tenants, _tenant_row,
                             lambda record: record.id.bytes + record.version.to_bytes(8, "big"))
            if self._customers:
                self._insert(CUSTOMERS_TABLE, CUSTOMER_COLUMNS, CUSTOMER_TYPES, self._customers,
                             _customer_row, lambda record: record.id.bytes + record.version.to_bytes(8, "big"))
            if self._events:
                self._insert(EVENTS_TABLE, EVENT_COLUMNS, EVENT_TYPES, self._events, _event_row,
                             lambda record: record.id.bytes)
        finally:
            # Also after a failure: an insert may have reached the store before another failed.
            self._invalidate_pages()
        if self.metrics is not None and self.pending:
            self.metrics.record_batch(self.pending, len(self._events), time.perf_counter() - started)
        self._events, self._tenants, self._customers = [], [], []
        self._oldest = None
        self._durable = marked
        return marked

    def _invalidate_pages(self) -> None:
        """The API's cached pages of every customer and source_id just written are stale now."""
        cache = self.store.activity_cache
        if cache is None:
            return
        if self._tenants:
            cache.clear()
            return
        tags = {customer_tag(event.tenant_id, event.customer_id) for event in self._events}
        for record in self._customers:
            tags.add(customer_tag(record.tenant_id, record.id))
            if record.source_id is not None:
                tags.add(source_tag(record.tenant_id, record.source_id))
        if tags:
            cache.invalidate(tags)

    def _insert(
        self, table: str, columns: Sequence[str], types: Sequence[str], records: Sequence[Record],
        row: Callable[[Record], tuple], key: Callable[[Record], bytes],
    ) -> None:
        rows = [row(record) for record in records]
        token = dedup_token(table, (key(record) for record in records))
        self.store.insert_columns(table, columns, types, _columns(rows, len(columns)), token)
