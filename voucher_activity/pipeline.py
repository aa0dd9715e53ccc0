"""The one place that wires the reader to the mappers and the store writer.

Read it top to bottom: `Pipeline.run` retries `_run_once` with backoff; `_run_once` opens the
reference state and the replication session, takes the initial snapshot when the slot is new,
then streams. Durability protocol (SPEC §7), at transaction boundaries only:

    writer.flush()  -> events up to LSN L are in the store
    state.commit(L) -> reference state as of L is on disk, and L is where a restart resumes
    session.confirm(L) -> PostgreSQL may recycle WAL up to L

A crash between any two steps replays transactions whose events are already stored; their ids
are deterministic, so the replay rewrites identical rows that the store collapses. A large
transaction's events are flushed in several batches, but nothing is committed or confirmed
before its commit.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from concurrent.futures import Future

import psycopg
from tenacity import Retrying, retry_if_exception, stop_when_event_set, wait_exponential_jitter

from cdc_reader.changes import Change, TransactionBegin, TransactionCommit, format_lsn
from cdc_reader.replication import ReplicationSession
from cdc_reader.slot import slot_info
from cdc_reader.snapshot import distinct_values, read_snapshot_batches
from mappers import Catalog, open_state, tracked_columns, tracked_tables
from mappers.state import ReferenceState
from mappers.transaction import EventMapper, SourceIdentity, load_default_catalog
from query.status import ReaderPhase, ReaderProgress
from query.store import Store, StoreError
from query.writer import EventWriter
from voucher_activity.config import Settings, SnapshotMode
from voucher_activity.logs import fields, progress_fields
from voucher_activity.memory import collector_paused
from voucher_activity.priorities import background_threads_lowered, catching_up
from voucher_activity.resume import SlotLostError, StartAction, start_action
from voucher_activity.status import PipelineProgress

log = logging.getLogger("voucher_activity.pipeline")

IDLE_READ_TIMEOUT = 0.5
# Flush timing under steady load (commit -> visible in the API; docs/benchmarks.md, freshness).
# A batch is written once the stream has nothing more to give and its oldest event has waited
# CAUGHT_UP_BATCH_AGE (an insert costs ~10 ms of CPU whatever its size, so a few milliseconds
# of gathering halve the inserts per second at 1,000 transactions/s), and at the latest at
# MAX_BATCH_AGE when the stream never pauses.
CAUGHT_UP_BATCH_AGE = 0.02
MAX_BATCH_AGE = 0.08
# Seconds between reference-state commits (each followed by the LSN confirm) while a live stream
# is busy. Flushing makes events visible; committing the state lets the server drop WAL. A commit
# writes every state row changed since the last one (random keys: ~a page a row), so a busy stream
# commits at most this often: a crash replays at most this much, which rewrites identical events
# (deterministic ids; SPEC §7). Once the stream has nothing more to give, it commits at once.
STATE_COMMIT_INTERVAL = 1.0
LIVE_BATCH_ROWS = 10_000  # a live burst's insert stays within ~50-100 ms
# Catching up (the transaction read committed over CATCH_UP_LAG seconds ago: a backlog after a
# restart or a burst), nobody waits for a particular event: batches grow to CATCH_UP_BATCH_AGE or
# CATCH_UP_BATCH_ROWS (fewer, larger parts for the engine to merge), and the state is committed
# every CATCH_UP_COMMIT_INTERVAL without waiting (`_commit_behind`: its COMMIT waits for the
# batch's insert on the state's writes thread). Batches are written behind as they fill, so their
# age and size alone would not bring a commit about. docs/store.md, "Batch size", has figures.
CATCH_UP_LAG = 1.0
CATCH_UP_BATCH_AGE = 2.0
CATCH_UP_BATCH_ROWS = 40_000
CATCH_UP_COMMIT_INTERVAL = 10.0
RATE_LOG_INTERVAL = 60.0
RETAINED_WAL_INTERVAL = 15.0
# How long a thread may hold the interpreter's lock while another waits. The write-behind insert
# runs in the engine with the lock released but takes it back a few times a batch: at the 5 ms
# default a drain spent a quarter of its time waiting for inserts, at 1 ms none (docs/benchmarks.md).
GIL_SWITCH_INTERVAL = 0.001

# Per-transaction bookkeeping kept in memory before it spills to SQLite (bounded memory for a
# transaction of any size; measured: 1M-row transaction, see tests/voucher_activity/test_big_transaction.py).
SCRATCH_ROWS = 5_000


def _retryable(error: BaseException) -> bool:
    return isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError, StoreError, OSError))


class Pipeline:
    def __init__(self, settings: Settings, store: Store, stop: threading.Event, metrics=None) -> None:
        self.settings = settings
        self.store = store
        self.stop = stop
        self.metrics = metrics
        self.progress = PipelineProgress()
        self._committed_at = 0.0  # monotonic time of the last state commit
        self._catching_up = False  # commits every CATCH_UP_COMMIT_INTERVAL, without waiting
        self._behind: tuple[Future, int] | None = None  # a commit made behind (`_commit_behind`)
        self._rows_counted = 0

    # -- supervision --------------------------------------------------------------------------
    def run(self) -> None:
        """Run until `stop` is set; transient failures of PostgreSQL or the store are retried
        with exponential backoff, each attempt logged. Configuration errors propagate."""
        retrying = Retrying(
            retry=retry_if_exception(_retryable),
            wait=wait_exponential_jitter(multiplier=0.5, max=30, jitter=0.5),
            stop=stop_when_event_set(self.stop),
            sleep=self.stop.wait,
            before_sleep=self._log_retry,
            reraise=True,
        )
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL))
        with background_threads_lowered():  # they yield the CPU to this one (and PostgreSQL)
            for attempt in retrying:
                with attempt:
                    self._run_once()

    def _log_retry(self, retry_state) -> None:
        error = retry_state.outcome.exception()
        self.progress.streaming = False
        self.progress.last_error = f"{type(error).__name__}: {error}"
        log.warning(
            "pipeline interrupted; retrying",
            extra=fields(attempt=retry_state.attempt_number, error=self.progress.last_error,
                         retry_in_seconds=round(retry_state.next_action.sleep, 2)),
        )

    def readiness(self) -> str | None:
        """None when streaming, else why not (for /readyz)."""
        if self.progress.streaming:
            return None
        if self.progress.snapshot_running:
            return "initial snapshot in progress"
        return self.progress.last_error or "reader is starting"

    # -- one attempt ----------------------------------------------------------------------------
    def _run_once(self) -> None:
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        levels = settings.state_levels
        state = open_state(settings.data_dir, cache_size=levels.rows, packed_bytes=levels.packed_bytes)
        try:
            started = time.monotonic()
            warmed = state.warm()
            if warmed:
                log.info("reference state loaded", extra=fields(
                    rows=warmed, seconds=round(time.monotonic() - started, 2)))
            # One catalog: the tables and columns the session reads are those its rules map.
            catalog = load_default_catalog()
            with ReplicationSession(
                settings.require_source(), settings.slot, settings.publication, tracked_tables(catalog),
                columns=tracked_columns(catalog),
            ) as session:
                self._stream(session, state, catalog)
        finally:
            state.close()  # rolls back anything not committed at a checkpoint
            self.progress.streaming = False

    def _stream(self, session: ReplicationSession, state: ReferenceState, catalog: Catalog) -> None:
        settings = self.settings
        recorded = self.store.reader_progress(settings.slot)
        action = start_action(
            state.applied_lsn, recorded, session.slot_exists(), settings.snapshot,
            slot=settings.slot, data_dir=settings.data_dir, database=self.store.location.database,
        )
        if action is StartAction.REDO_SNAPSHOT:
            # Its exported snapshot is gone with the connection that made it: start over with a
            # new slot (the snapshot rows already written are rewritten identically).
            log.warning("previous initial snapshot did not complete; recreating the slot",
                        extra=fields(slot=settings.slot))
            session.drop_slot()
        want_snapshot = action is not StartAction.RESUME and settings.snapshot is SnapshotMode.INITIAL
        slot = session.prepare(export_snapshot=want_snapshot)
        if slot.created and state.applied_lsn is not None:
            raise SlotLostError(
                f"replication slot {settings.slot!r} was missing and had to be recreated, so the "
                "changes since the last confirmed LSN are lost; run `voucher-activity teardown`, "
                "remove the data directory and the store's tables, and start again to rebuild"
            )
        def new_mapper() -> EventMapper:
            return EventMapper(catalog, state, SourceIdentity(slot.system_id, slot.database),
                               settings.slot, scratch_memory_limit=SCRATCH_ROWS,
                               memo_bytes=settings.state_levels.memo_bytes)

        mapper = None
        writer = EventWriter(self.store, max_rows=CATCH_UP_BATCH_ROWS, max_age=CAUGHT_UP_BATCH_AGE,
                             metrics=self.metrics)
        self._rows_counted = 0  # the writer's rows_written already in progress.events_written
        try:
            if slot.created:
                mapper = new_mapper()
                if want_snapshot:
                    self.store.record_reader_progress(
                        settings.slot, ReaderProgress(ReaderPhase.SNAPSHOT, slot.consistent_point))
                    self._snapshot(slot, mapper, writer)
                writer.mark(slot.consistent_point)
                self._checkpoint(writer, state, session, commit=True)
            elif action is StartAction.ADOPT:
                state.commit(slot.confirmed_flush)  # an empty state, as of where the slot stands
            # The state is committed before the store records streaming: a crash in between leaves
            # a state to resume from, never a recorded history without one.
            if recorded is None or recorded.phase is not ReaderPhase.STREAMING:
                self.store.record_reader_progress(
                    settings.slot, ReaderProgress(ReaderPhase.STREAMING, state.applied_lsn))
            session.start(state.applied_lsn)
            if mapper is None:
                # Compiled (~50 ms) while the server starts decoding the WAL it is about to send.
                mapper = new_mapper()
            self.progress.streaming = True
            self.progress.last_error = None
            log.info("streaming", extra=fields(slot=settings.slot, from_lsn=format_lsn(state.applied_lsn or 0)))
            self._consume(session, state, mapper, writer)
        finally:
            writer.close()  # a batch still written behind after a failure

    def _snapshot(self, slot, mapper: EventMapper, writer: EventWriter) -> None:
        self.progress.snapshot_running = True
        started, rows = time.monotonic(), 0
        catching_up(True, writer)  # a backlog too: its inserts have slack
        # Only the event types the snapshot's pass-through rows hold are counted for pairing.
        pairing = mapper.snapshot_pairing_column()
        prepare = (lambda conn: mapper.snapshot_pairing_types(distinct_values(conn, *pairing))) if pairing else None
        # Written behind by size only: nothing is confirmed before the snapshot ends, and an
        # insert has a fixed cost (~15 ms), so the writer's age limit would only make inserts smaller.
        with collector_paused(), writer.merges_paused():
            for table, column_types, batch in read_snapshot_batches(
                self.settings.require_source(), slot.snapshot_name, tracked_tables(mapper.catalog),
                on_progress=lambda progress: log.info("snapshot progress", extra=progress_fields(progress)),
                prepare=prepare, columns=tracked_columns(mapper.catalog),
            ):
                writer.add(mapper.snapshot_rows(table, batch, column_types))
                rows += len(batch)
                if writer.full:
                    writer.write_behind()
        writer.add(mapper.snapshot_finish())
        self.progress.snapshot_running = False
        log.info("initial snapshot done",
                 extra=fields(rows=rows, seconds=round(time.monotonic() - started, 1)))

    def _consume(self, session, state, mapper, writer) -> None:
        applied = state.applied_lsn
        in_transaction = skipping = False
        rate_started, rate_transactions = time.monotonic(), 0
        retained_checked = 0.0
        self._behind, self._catching_up = None, catching_up(False, writer)  # until a commit tells
        while not self.stop.is_set():
            self._confirm_behind(session)
            # Batching: once the batch is due (max_age), keep taking whatever the stream already
            # holds (a zero-timeout read) and checkpoint when a read comes back empty, so a
            # backlog is written in large inserts; MAX_BATCH_AGE caps the wait under steady load.
            # Mid-transaction there is nothing to checkpoint, so wait for the stream itself.
            if in_transaction:
                wait = IDLE_READ_TIMEOUT
            elif not writer.pending:
                # Everything read is written: a short read tells a pause (make it durable and
                # commit the state now) from a steady stream (every STATE_COMMIT_INTERVAL).
                unsettled = writer.marked_lsn is not None or self._commit_waiting(writer, state)
                wait = writer.max_age if unsettled else IDLE_READ_TIMEOUT
            else:
                wait = writer.seconds_until_due()
            if not in_transaction and self._commit_waiting(writer, state):
                wait = min(wait, self._seconds_until_commit())
            envelopes = session.read(wait)
            for envelope in envelopes:
                if isinstance(envelope, Change):
                    if not skipping:
                        writer.add(mapper.change(envelope))
                        if writer.full:
                            writer.write_behind()  # bounded memory; not a checkpoint (mid-transaction)
                elif isinstance(envelope, TransactionBegin):
                    in_transaction = True
                    # Already applied before a restart (the server re-sends from its own,
                    # possibly older, confirmed position).
                    skipping = applied is not None and envelope.commit_lsn < applied
                    if self.progress.pending_since is None:
                        self.progress.pending_since = time.time()
                    if not skipping:
                        mapper.begin(envelope)
                elif isinstance(envelope, TransactionCommit):
                    in_transaction = False
                    if not skipping:
                        writer.add(mapper.commit(envelope))
                        rate_transactions += 1
                    writer.mark(envelope.end_lsn)
                    committed = self.progress.last_commit_time = envelope.commit_time.timestamp()
                    behind = time.time() - committed > CATCH_UP_LAG
                    writer.max_rows = CATCH_UP_BATCH_ROWS if behind else LIVE_BATCH_ROWS
                    if behind is not self._catching_up:
                        self._catching_up = catching_up(behind, writer)
                    if (writer.full or writer.age >= (CATCH_UP_BATCH_AGE if behind else MAX_BATCH_AGE)
                            or (behind and self._seconds_until_commit() == 0 and not writer.sending)):
                        self._checkpoint(writer, state, session)
            if not in_transaction:
                if not envelopes and writer.pending:
                    # Caught up: nothing is waiting to be read, so store now (written behind);
                    # the state is committed when due, or once a read after this one comes
                    # back empty too.
                    self._checkpoint(writer, state, session)
                elif not envelopes and (writer.marked_lsn is not None or self._commit_waiting(writer, state)):
                    # The stream paused: commit and confirm now (and tell the server at once)
                    # rather than after STATE_COMMIT_INTERVAL.
                    self._checkpoint(writer, state, session, commit=True)
                    session.report_confirmed()
                elif self._commit_waiting(writer, state) and self._seconds_until_commit() == 0:
                    self._checkpoint(writer, state, session)  # the commit is due
            if self.metrics is not None:
                lag_bytes = max(session.server_wal_end - session.confirmed_lsn, 0)
                self.metrics.set_reader_lag(lag_bytes, self.progress.lag_seconds())
                if time.monotonic() - retained_checked >= RETAINED_WAL_INTERVAL:
                    retained_checked = time.monotonic()
                    self._refresh_retained_wal()
            if time.monotonic() - rate_started >= RATE_LOG_INTERVAL:
                self._log_rates(rate_transactions, time.monotonic() - rate_started, session)
                rate_started, rate_transactions = time.monotonic(), 0
        if not in_transaction:
            self._checkpoint(writer, state, session, commit=True)  # graceful stop: flush, commit, confirm
        session.send_feedback()

    def _checkpoint(self, writer: EventWriter, state: ReferenceState, session, commit: bool = False) -> None:
        """Flush the batch (its events become visible); then, if `commit` or the commit interval
        has passed, commit the state as of the durable LSN and confirm it. Only between
        transactions, and the commit only right after a flush: the state must hold exactly the
        transactions up to the LSN it is committed at. (The batch is written behind: while the
        next changes are mapped, or, at a commit, while the state writes its changed rows.)"""
        stored = writer.write_behind()
        if not commit and self._seconds_until_commit() > 0:
            return
        if not commit and self._catching_up:
            self._commit_behind(writer, state, stored)
            return
        state.write_changes()
        durable = writer.flush()
        written, self._rows_counted = writer.rows_written - self._rows_counted, writer.rows_written
        self.progress.events_written += written
        if writer.marked_lsn is None:  # everything received so far is in the store
            self.progress.pending_since = None
        if written:
            log.debug("flushed", extra=fields(lsn=format_lsn(durable or 0), rows=written))
        self._confirm_behind(session, wait=True)
        if not self._commit_waiting(writer, state):
            return
        state.commit(durable)
        self._committed_at = time.monotonic()
        self._confirm(session, durable)

    def _commit_behind(self, writer: EventWriter, state: ReferenceState, stored: Future) -> None:
        """Catching up, a commit does not wait for the batch's insert: queued behind the state's
        writes, it commits once the batch is stored (`ReferenceState.commit_when_stored`), and
        the loop confirms it when it is done (`_confirm_behind`)."""
        lsn = writer.marked_lsn if writer.marked_lsn is not None else writer.durable_lsn
        if self._behind is None and lsn is not None and (state.applied_lsn or 0) < lsn:
            self._behind = (state.commit_when_stored(lsn, stored), lsn)
        self._committed_at = time.monotonic()

    def _confirm_behind(self, session, wait: bool = False) -> None:
        """Confirm a commit made behind once it is done (or, with `wait`, when it is)."""
        if self._behind is None or not (wait or self._behind[0].done()):
            return
        committed, lsn = self._behind
        self._behind = None
        committed.result()  # its insert or a state write failed: nothing was committed
        self._confirm(session, lsn)

    def _confirm(self, session, lsn: int) -> None:
        session.confirm(lsn)
        self.progress.confirmed_lsn = lsn
        log.debug("checkpoint", extra=fields(lsn=format_lsn(lsn)))

    def _seconds_until_commit(self) -> float:
        """How long until the commit interval has passed since the last state commit."""
        interval = CATCH_UP_COMMIT_INTERVAL if self._catching_up else STATE_COMMIT_INTERVAL
        return max(self._committed_at + interval - time.monotonic(), 0.0)

    @staticmethod
    def _commit_waiting(writer: EventWriter, state: ReferenceState) -> bool:
        """Events are durable past the LSN the state was last committed at."""
        durable = writer.durable_lsn
        return durable is not None and (state.applied_lsn is None or durable > state.applied_lsn)

    def _refresh_retained_wal(self) -> None:
        """WAL the server keeps for our slot (a gauge operators alert on)."""
        try:
            with psycopg.connect(self.settings.require_source(), connect_timeout=5, autocommit=True) as conn:
                info = slot_info(conn, self.settings.slot)
        except psycopg.Error as error:
            log.debug("retained WAL not measured", extra=fields(error=str(error)))
            return
        if info is not None and info.retained_wal_bytes is not None:
            self.metrics.set_retained_wal(info.retained_wal_bytes)

    def _log_rates(self, transactions: int, seconds: float, session) -> None:
        log.info(
            "pipeline rates",
            extra=fields(
                transactions_per_second=round(transactions / seconds, 1),
                events_written=self.progress.events_written,
                confirmed_lsn=format_lsn(self.progress.confirmed_lsn or 0),
                lag_seconds=round(self.progress.lag_seconds(), 3),
            ),
        )
