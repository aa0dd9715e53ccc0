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

The writes share the state's connection and its open transaction. Jobs run in the order
submitted, queued without the pipeline waiting for them, and the state waits for them all
before anything that must see the rows (a SELECT of a row no cache level holds), before its own
COMMIT and before ROLLBACK. While catching up, the commit itself is a job: it waits there for the
insert of the events it covers, and the rows written after it queue behind it
(`ReferenceState.commit_when_stored`). Statements of other tables on that connection (the
scratch's spills, the row codec's layouts) may run meanwhile: SQLite serializes a connection's
statements (`sqlite3.threadsafety` 3), the scratch is a temporary table, and a layout written
early is harmless. Once a job has failed, no later one runs, so no commit follows a lost write;
the error is raised by the next `submit` or `wait`. Where SQLite cannot share a connection
between threads, the jobs run inline.
"""

from __future__ import annotations

import sqlite3
from collections import deque
from collections.abc import Callable
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
    """Jobs on `connection`, run in order on a thread of their own (inline without
    `background`): the rows' writes, and the commits the pipeline makes while catching up
    (`ReferenceState.commit_when_stored`). Jobs queue without waiting for the ones before; once
    a job has failed, none after it runs (a commit must not follow a lost write), and its error
    is raised by the next `submit`, `call` or `wait` until `reset`."""

    def __init__(self, connection: sqlite3.Connection, background: bool = sqlite3.threadsafety == 3) -> None:
        self._connection = connection
        self._background = background
        self._executor: ThreadPoolExecutor | None = None  # started with the first job
        self._pending: deque[Future[Any]] = deque()
        self._failure: BaseException | None = None  # the first job that failed (set on the writes' thread)

    def submit(self, spans: list[tuple[str, int, int]], data: bytearray,
               upserts: list[tuple[str, str, Any]], deletes: list[tuple[str, Any]]) -> None:
        """Write `entity_parameters`' rows (mappers/entitywrite.pyx), after the jobs before."""
        self.call(self._run, spans, data, upserts, deletes)

    def call(self, function: Callable[..., Any], *args: Any) -> Future[Any]:
        """`function(*args)` after the jobs before it; its future."""
        pending = self._pending
        while pending and pending[0].done():
            pending.popleft().result()  # raises a failed job's error
        if not self._background:
            done: Future[Any] = Future()
            done.set_result(self._guarded(function, args))
            return done
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="state-writes")
        job = self._executor.submit(self._guarded, function, args)
        pending.append(job)
        return job

    def wait(self) -> None:
        """Until every job submitted has run; raises the error of one that failed."""
        pending = self._pending
        while pending:
            pending[0].exception()  # waits
            pending.popleft()
        if self._failure is not None:
            raise self._failure

    def reset(self) -> None:
        """After `wait` (and a rollback of what the jobs wrote): forget a failure."""
        self._failure = None

    def close(self) -> None:
        """Wait for the jobs and stop the thread."""
        try:
            self.wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown()
                self._executor = None

    def _guarded(self, function: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        if self._failure is not None:
            raise self._failure
        try:
            return function(*args)
        except BaseException as error:
            self._failure = error
            raise

    def _run(self, spans: list[tuple[str, int, int]], data: bytearray,
             upserts: list[tuple[str, str, Any]], deletes: list[tuple[str, Any]]) -> None:
        connection = self._connection
        if spans:
            connection.execute(UPSERT_BATCH, (orjson.dumps(spans), data))
        if upserts:
            connection.executemany(UPSERT, upserts)
        if deletes:
            connection.executemany(DELETE, deletes)
