"""The reference state's row writes, run on a thread of their own.

Every row the state puts is written to SQLite once per commit interval (an eviction or the
commit writes it): ~560,000 upserts for a 1M-change drain, ~5 us each inside SQLite, a sixth of
the pipeline thread's time when it ran them itself. `executemany` cannot hand them to another
thread: it takes the interpreter's lock back after every row's step, and a thread asking for the
lock waits for the pipeline thread's switch interval (1 ms) each time. So a batch's UUID-keyed
upserts (all the engine's rows) go to SQLite as one statement: the rows' keys and encodings in
one blob, their tables and offsets in a JSON array that `json_each` walks. SQLite runs the whole
batch in one step, with the lock released, on the writes' thread, while the pipeline maps on.
The rare rows keyed by text, and deletes, follow in the same job with `executemany`.

The writes share the state's connection and its open transaction. A job runs after the one
before it, and the state waits for the last before anything that must see the rows (a SELECT of
a row no cache level holds), before COMMIT and before ROLLBACK. Statements of other tables on
that connection (the scratch's spills, the row codec's layouts) may run meanwhile: SQLite
serializes a connection's statements (`sqlite3.threadsafety` 3), and their order within the
transaction does not matter. A job's error is raised by the next `submit` or `wait`, so by the
commit at the latest, before it commits anything. Where SQLite cannot share a connection between
threads, the jobs run inline.
"""

from __future__ import annotations

import sqlite3
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import orjson

UPSERT_BATCH = (
    "INSERT INTO entity (kind, key, row) "
    "SELECT json_extract(span.value, '$[0]'), substr(?2, json_extract(span.value, '$[1]'), 16), "
    "substr(?2, json_extract(span.value, '$[1]') + 16, json_extract(span.value, '$[2]')) "
    "FROM json_each(?1) AS span "
    "WHERE true "  # an INSERT ... SELECT needs a WHERE before its ON CONFLICT (SQLite's parser)
    "ON CONFLICT (kind, key) DO UPDATE SET row = excluded.row"
)
UPSERT = ("INSERT INTO entity (kind, key, row) VALUES (?, ?, ?) "
          "ON CONFLICT (kind, key) DO UPDATE SET row = excluded.row")
DELETE = "DELETE FROM entity WHERE kind = ? AND key = ?"


class EntityWrites:
    """Jobs of row writes into `connection`'s `entity` table, in order, on a thread of their own
    (inline without `background`)."""

    def __init__(self, connection: sqlite3.Connection, background: bool = sqlite3.threadsafety == 3) -> None:
        self._connection = connection
        self._background = background
        self._executor: ThreadPoolExecutor | None = None  # started with the first job
        self._pending: Future[None] | None = None

    def submit(self, spans: list[tuple[str, int, int]], data: bytearray,
               upserts: list[tuple[str, str, Any]], deletes: list[tuple[str, Any]]) -> None:
        """Write `entity_parameters`' rows (mappers/entitywrite.pyx), after the jobs before; a
        failed job before this one raises its error here."""
        self.wait()
        if not self._background:
            self._run(spans, data, upserts, deletes)
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="state-writes")
        self._pending = self._executor.submit(self._run, spans, data, upserts, deletes)

    def wait(self) -> None:
        """Until every job submitted is written; raises the error of one that failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Wait for the jobs and stop the thread."""
        try:
            self.wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown()
                self._executor = None

    def _run(self, spans: list[tuple[str, int, int]], data: bytearray,
             upserts: list[tuple[str, str, Any]], deletes: list[tuple[str, Any]]) -> None:
        connection = self._connection
        if spans:
            connection.execute(UPSERT_BATCH, (orjson.dumps(spans), data))
        if upserts:
            connection.executemany(UPSERT, upserts)
        if deletes:
            connection.executemany(DELETE, deletes)
