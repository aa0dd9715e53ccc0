"""Batches the mappers' records and writes them as RowBinary blocks; tracks which source LSN
is durable in the store, so the reader confirms to PostgreSQL only what is safely written.

Sizes come from tests/bench/store_engine.py (docs/store.md): about 10k rows or 50 ms per batch
keeps commit-to-queryable latency well under a second while inserts stay cheap per row.

A block is the records encoded by the compiled encoder in one call (query/rowbinary.pyx: a
Struct's fields are the table's columns, by name, written by the table's column types), which
the engine reads in C++ with the interpreter's lock released. An event's `data` goes as its
bytes, where JSONEachRow had to escape and the engine unescape every quote in it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mappers.events import CustomerEvent, CustomerRecord, TenantRecord
from query.activity_cache import customer_tag, source_tag
from query.clients import StoreError
from query.rowbinary import column_kind, encode_rows
from query.schema import CUSTOMERS, EVENTS, TENANTS

if TYPE_CHECKING:
    from query.metrics import Metrics
    from query.store import Store

log = logging.getLogger(__name__)

Record = CustomerEvent | TenantRecord | CustomerRecord

# While merges are paused for a bulk load (`EventWriter.merges_paused`), the events table's parts
# wait for them as long as no partition holds this many: the engine delays inserts at 1,000 parts
# in a partition (`parts_to_delay_insert`) and refuses them at 3,000. A snapshot block adds at
# most one part to each month it spans, so 300 covers 12M events in 40,000-row blocks; past it,
# merges resume for the rest of the load.
PAUSED_PARTS_LIMIT = 300

# Each record type's table, its columns and how each is encoded; the Struct's field names are
# the columns (checked here).
_TABLES: dict[type, tuple[str, tuple[str, ...], tuple[int, ...]]] = {
    kind: (spec.name, spec.written_columns, tuple(map(column_kind, spec.types_of(spec.written_columns))))
    for kind, spec in ((TenantRecord, TENANTS), (CustomerRecord, CUSTOMERS), (CustomerEvent, EVENTS))
}
for _kind, (_table, _columns, _) in _TABLES.items():
    assert set(_kind.__struct_fields__) == set(_columns), (_kind, _table)
_EVERYTHING: frozenset = frozenset(["everything"])


def dedup_token(table: str, rows: int, block: bytes) -> str:
    """Names a block by its content: the same rows sent again carry the same token."""
    return f"{table}-{rows}-{hashlib.blake2b(block, digest_size=16).hexdigest()}"


@dataclass(slots=True)
class _Block:
    table: str
    columns: tuple[str, ...]
    data: bytes  # RowBinary rows
    rows: int
    events: int  # rows of the events table
    # the API's cached pages this block can change (query/activity_cache.py): None when the
    # store keeps no pages, EVERYTHING for tenant rows (a rename changes what a name means)
    tags: frozenset | None = None
    # named when first sent (by the write-behind thread: hashlib releases the GIL), kept for a retry
    token: str | None = None


class EventWriter:
    """Not thread-safe: one pipeline thread owns it (`write_behind` runs the inserts on a
    thread of its own, one batch at a time, while the owner goes on)."""

    def __init__(
        self, store: Store, max_rows: int = 10_000, max_age: float = 0.05,
        metrics: Metrics | None = None, clock: Callable[[], float] = time.monotonic,
        paused_parts_limit: int = PAUSED_PARTS_LIMIT,
    ) -> None:
        self.store = store
        self.paused_parts_limit = paused_parts_limit  # see PAUSED_PARTS_LIMIT
        self.max_rows = max_rows
        self.max_age = max_age
        self.metrics = metrics
        self._clock = clock
        # pending records by type; lookup rows (tenants, customers) are written before events,
        # so once an event is visible its customer resolves
        self._pending: dict[type, list[Record]] = {kind: [] for kind in _TABLES}
        self._count = 0
        self._oldest: float | None = None  # when the oldest unflushed record or mark arrived
        self._marked: int | None = None
        self._durable: int | None = None
        # Encoded blocks the store has not acknowledged yet, in order; while a write-behind
        # thread runs, only that thread touches them.
        self._unsent: list[_Block] = []
        self._sending: threading.Thread | None = None
        self._failure: BaseException | None = None  # what the last write-behind raised
        # called first on each thread that writes a batch behind (the pipeline lowers the
        # thread's priority while it catches up, voucher_activity/priorities.py)
        self.behind_started: Callable[[], None] | None = None
        self.rows_written = 0  # rows the store has acknowledged, in all
        self._merges_paused = False

    @property
    def pending(self) -> int:
        """Rows added and not yet written (those a write-behind is writing count until it is done)."""
        return self._count + sum(block.rows for block in self._unsent)

    @property
    def age(self) -> float:
        """Seconds since the oldest unflushed record or mark arrived (0 when none)."""
        return 0.0 if self._oldest is None else self._clock() - self._oldest

    @property
    def full(self) -> bool:
        """max_rows reached: flush now, whatever the age."""
        return self._count >= self.max_rows

    @contextmanager
    def merges_paused(self) -> Iterator[None]:
        """A bulk load (the initial snapshot): with the embedded engine, the events table's
        background merges wait until it ends (`Store.pause_merges`), so its blocks' parts are
        merged once, many at a time, instead of level by level while the load runs on the same
        cores; up to `paused_parts_limit` parts in a partition. docs/store.md, "Bulk loads"."""
        self._merges_paused = self.store.pause_merges()
        try:
            yield
        finally:
            self._resume_merges()

    def _resume_merges(self) -> None:
        if self._merges_paused:
            self._merges_paused = False
            try:
                self.store.resume_merges()
            except StoreError as error:  # not kept across a restart: the engine holds it in memory
                log.warning("could not resume the store's merges: %s", error)

    @property
    def sending(self) -> bool:
        """A batch written behind is still being stored (a `write_behind` now would wait for it)."""
        return self._sending is not None and self._sending.is_alive()

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
        pending = self._pending
        added = 0
        for record in records:
            batch = pending.get(type(record))
            if batch is None:
                raise TypeError(f"EventWriter cannot store {type(record).__name__}")
            batch.append(record)
            added += 1
        if added:
            self._count += added
            if self._oldest is None:
                self._oldest = self._clock()

    def mark(self, lsn: int) -> None:
        """Everything added so far derives from changes up to `lsn`."""
        if self._marked is None or lsn > self._marked:
            self._marked = lsn
            if self._oldest is None:
                self._oldest = self._clock()

    def seconds_until_due(self) -> float:
        if self._count >= self.max_rows:
            return 0.0
        if self._oldest is None:
            return self.max_age
        return max(self.max_age - (self._clock() - self._oldest), 0.0)

    def due(self) -> bool:
        """Enough rows, or the oldest unflushed record or mark has waited max_age."""
        if self._count >= self.max_rows:
            return True
        return self._oldest is not None and self._clock() - self._oldest >= self.max_age

    def flush(self) -> int | None:
        """Write everything pending and wait for it; return the highest marked LSN, now durable.

        Raises StoreError and keeps the rows on failure, so a later flush writes them again;
        a block that did reach the store is then dropped by its dedup token, and any copy that
        slips through (e.g. re-sent in a differently cut batch) is collapsed on read.
        """
        marked = self._marked
        self._await_sending()
        self._encode()
        self._send()
        self._durable = marked
        return marked

    def write_behind(self) -> Future[int | None]:
        """Start writing everything pending on a thread of its own and return: the engine parses
        and stores a block with the interpreter's lock released, so the owner maps the next
        changes meanwhile. Not a durability point: only `flush` advances `durable_lsn`. One
        batch at a time (this waits for the previous one); its failure is raised by the next
        `write_behind` or `flush`, with its rows kept for that flush to write again. Returns
        the batch's future: the highest LSN marked so far, once everything added so far is
        stored; the insert's error if it failed."""
        self._await_sending()
        marked = self._marked
        self._encode()
        stored: Future[int | None] = Future()
        if self._unsent:
            self._sending = threading.Thread(target=self._send_behind, args=(stored, marked, self.behind_started),
                                             name="store-writer", daemon=True)
            self._sending.start()
        else:
            stored.set_result(marked)  # every batch before is stored (or this raised)
        if self._merges_paused and self.store.most_parts_in_a_partition() >= self.paused_parts_limit:
            log.info("store merges resumed during the bulk load: a partition holds %d parts",
                     self.paused_parts_limit)
            self._resume_merges()
        return stored

    def close(self) -> None:
        """Wait for a write-behind still running (its failure is dropped: the owner is done)."""
        if self._sending is not None:
            self._sending.join()
            self._sending = None

    def _await_sending(self) -> None:
        if self._sending is not None:
            self._sending.join()
            self._sending = None
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def _encode(self) -> None:
        """The pending records as blocks at the end of `_unsent`: lookup rows before events."""
        if not self._count:
            return
        events = len(self._pending[CustomerEvent])
        for kind, records in self._pending.items():
            if records:
                table, columns, column_kinds = _TABLES[kind]
                data = encode_rows(records, columns, column_kinds)
                self._unsent.append(_Block(table, columns, data, len(records),
                                           events if kind is CustomerEvent else 0,
                                           self._page_tags(kind, records)))
        self._pending = {kind: [] for kind in _TABLES}
        self._count = 0
        self._oldest = None

    def _send(self) -> None:
        """Insert the unsent blocks in order, each dropped once acknowledged."""
        unsent = self._unsent
        if not unsent:
            return
        started = time.perf_counter()
        rows = events = 0
        while unsent:
            block = unsent[0]
            if block.token is None:
                block.token = dedup_token(block.table, block.rows, block.data)
            try:
                self.store.insert_rows(block.table, block.columns, block.data, block.token)
            finally:
                # Also after a failure: the insert may have reached the store all the same.
                self._invalidate_pages(block.tags)
            rows += block.rows
            events += block.events
            del unsent[0]
            self.rows_written += block.rows
        if self.metrics is not None:
            self.metrics.record_batch(rows, events, time.perf_counter() - started)

    def _page_tags(self, kind: type, records: list[Record]) -> frozenset | None:
        if self.store.activity_cache is None:
            return None
        if kind is TenantRecord:
            return _EVERYTHING
        if kind is CustomerEvent:
            return frozenset([customer_tag(event.tenant_id, event.customer_id) for event in records])
        tags = {customer_tag(record.tenant_id, record.id) for record in records}
        tags.update(source_tag(record.tenant_id, record.source_id)
                    for record in records if record.source_id is not None)
        return frozenset(tags)

    def _invalidate_pages(self, tags: frozenset | None) -> None:
        """The API's cached pages of every customer and source_id just written are stale now."""
        cache = self.store.activity_cache
        if cache is None or not tags:
            return
        if tags is _EVERYTHING:
            cache.clear()
        else:
            cache.invalidate(tags)

    def _send_behind(self, stored: Future[int | None], marked: int | None,
                     started: Callable[[], None] | None) -> None:
        try:
            if started is not None:
                started()
            self._send()
        except BaseException as error:  # raised in the owner's thread by its next call
            self._failure = error
            stored.set_exception(error)
        else:
            stored.set_result(marked)
