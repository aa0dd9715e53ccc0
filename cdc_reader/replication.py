"""The replication session: the only code that talks to the replication connection.

It checks the source, sets up the publication and the slot, runs START_REPLICATION with pgoutput,
and then loops over COPY_BOTH: XLogData goes through the pgoutput decoder and the change assembler
(one compiled call per message), keepalives through the walstream parser, and status updates go
back as the feedback policy decides.
"""

from __future__ import annotations

import contextlib
import selectors
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType

import psycopg
from psycopg import pq, sql
from psycopg.conninfo import conninfo_to_dict

from cdc_reader.assembler import ChangeAssembler
from cdc_reader.changes import Envelope, format_lsn
from cdc_reader.checks import no_free_slot, no_free_wal_sender, run_startup_checks
from cdc_reader.pgoutput import Decoder
from cdc_reader.slot import (
    check_slot_usable,
    create_slot,
    create_slot_exporting_snapshot,
    drop_slot,
    ensure_publication,
    slot_info,
)
from cdc_reader.walstream import (
    XLOG_DATA_HEADER_SIZE,
    Feedback,
    parse_copy_data,
)

# What PostgreSQL's own subscriber sets on its replication connection, so that pgoutput's text
# values parse the same everywhere (loaders.pyx expects ISO dates; timestamptz comes out in UTC).
SESSION_OPTIONS = "-c datestyle=ISO -c intervalstyle=postgres -c extra_float_digits=3 -c timezone=UTC"

# Upper bound on envelopes returned by one read(), so a huge transaction arrives in pieces.
MAX_ENVELOPES_PER_READ = 5000


class ReplicationConnectionError(psycopg.OperationalError):
    """The replication connection failed or ended; retry with backoff, then resume from the
    confirmed LSN (a subclass of psycopg.OperationalError, so generic retry policies see it)."""


@dataclass(frozen=True, slots=True)
class SlotState:
    """What prepare() found or made: the mappers need system_id and database for event ids."""

    system_id: str
    timeline: int
    database: str
    created: bool
    snapshot_name: str | None  # only when created with an exported snapshot
    consistent_point: int | None  # only when created
    confirmed_flush: int


@contextlib.contextmanager
def _translated_errors() -> Iterator[None]:
    """Connection trouble becomes ReplicationConnectionError (retryable); a full slot table
    becomes the start-up error that says what to change."""
    try:
        yield
    except ReplicationConnectionError:
        raise
    except psycopg.errors.ConfigurationLimitExceeded as error:
        raise no_free_slot() from error
    except (psycopg.OperationalError, OSError) as error:
        raise ReplicationConnectionError(str(error)) from error


def _with_session_options(dsn: str) -> str:
    """The DSN's own `options` (if any) followed by ours, which take precedence."""
    given = conninfo_to_dict(dsn).get("options")
    return f"{given} {SESSION_OPTIONS}" if given else SESSION_OPTIONS


def protocol_version(server_version: int) -> int:
    """The newest pgoutput protocol the server speaks (PG14: 2, PG15: 3, PG16+: 4)."""
    if server_version >= 160000:
        return 4
    if server_version >= 150000:
        return 3
    if server_version >= 140000:
        return 2
    return 1


def start_replication_command(
    slot: str, publication: str, start_lsn: int, server_version: int
) -> sql.Composed:
    """START_REPLICATION for whole transactions in commit order: no streaming, no two_phase."""
    options = [
        sql.SQL("proto_version {}").format(sql.Literal(str(protocol_version(server_version)))),
        sql.SQL("publication_names {}").format(sql.Literal(sql.Identifier(publication).as_string())),
    ]
    if server_version >= 140000:
        options.append(sql.SQL("messages 'true'"))
    return sql.SQL("START_REPLICATION SLOT {} LOGICAL {} ({})").format(
        sql.Identifier(slot), sql.SQL(format_lsn(start_lsn)), sql.SQL(", ").join(options)
    )


class ReplicationSession:
    """One replication connection: prepare(), start(), then read() and confirm() in a loop."""

    def __init__(
        self,
        dsn: str,
        slot: str,
        publication: str,
        tables: Sequence[str],
        *,
        status_interval: float = 10.0,
        columns: Mapping[str, frozenset[str] | None] | None = None,
    ) -> None:
        """`columns`: per table, the only columns its changes carry (ChangeAssembler's)."""
        self.dsn = dsn
        self.slot = slot
        self.publication = publication
        self.tables = tuple(tables)
        self.columns = dict(columns or {})
        self.status_interval = status_interval
        self._conn: psycopg.Connection | None = None
        self._state: SlotState | None = None
        self._feedback = Feedback(0, status_interval, time.monotonic())
        self._decoder: Decoder | None = None
        self._assembler = ChangeAssembler(self.columns)
        self._selector: selectors.DefaultSelector | None = None

    # -- set-up ---------------------------------------------------------------------------------
    def prepare(self, export_snapshot: bool) -> SlotState:
        """Check the source, ensure publication and slot; with `export_snapshot`, a new slot
        exports its snapshot, which stays usable on other connections until start()."""
        with _translated_errors(), psycopg.connect(self.dsn, autocommit=True) as conn:
            # Our own open connection already holds a WAL sender.
            run_startup_checks(conn, self.slot, self.publication, self.tables,
                               need_wal_sender=self._conn is None or self._conn.closed)
            ensure_publication(conn, self.publication, self.tables)
            info = slot_info(conn, self.slot)
            replication = self._replication_connection()
            system_id, timeline, _, database = replication.execute("IDENTIFY_SYSTEM").fetchone()
            if info is not None:
                check_slot_usable(info, database)
                state = SlotState(system_id, timeline, database, False, None, None,
                                  info.confirmed_flush_lsn)
            elif export_snapshot:
                created = create_slot_exporting_snapshot(replication, self.slot)
                state = SlotState(system_id, timeline, database, True, created.snapshot_name,
                                  created.consistent_point, created.consistent_point)
            else:
                point = create_slot(conn, self.slot)
                state = SlotState(system_id, timeline, database, True, None, point, point)
        self._state = state
        self._feedback = Feedback(state.confirmed_flush, self.status_interval, time.monotonic())
        return state

    def slot_exists(self) -> bool:
        """Whether our slot exists on the source (without creating it); an existing slot that
        cannot be used (invalidated, another plugin or database) is refused here already."""
        with _translated_errors(), psycopg.connect(self.dsn, autocommit=True) as conn:
            info = slot_info(conn, self.slot)
            if info is not None:
                check_slot_usable(info, conn.info.dbname)
            return info is not None

    def drop_slot(self) -> bool:
        """Drop our slot (not while streaming from it)."""
        with _translated_errors(), psycopg.connect(self.dsn, autocommit=True) as conn:
            return drop_slot(conn, self.slot)

    def _replication_connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(
                    self.dsn, replication="database", autocommit=True, client_encoding="UTF8",
                    options=_with_session_options(self.dsn),
                )
            except psycopg.OperationalError as error:
                if "max_wal_senders" in str(error):
                    raise no_free_wal_sender() from error
                raise
        return self._conn

    # -- streaming ------------------------------------------------------------------------------
    def start(self, start_lsn: int | None = None) -> None:
        """Stream from `start_lsn` (the server never goes back before the slot's confirmed
        position; None means exactly from there)."""
        if self._state is None:
            raise RuntimeError("call prepare() before start()")
        position = max(start_lsn or 0, self._state.confirmed_flush)
        with _translated_errors():
            conn = self._replication_connection()
            version = conn.info.server_version
            command = start_replication_command(self.slot, self.publication, position, version)
            pgconn = conn.pgconn
            pgconn.send_query(command.as_bytes(conn))
            self._selector = selectors.DefaultSelector()
            self._selector.register(pgconn.socket, selectors.EVENT_READ)
            self._flush_output()
            result = self._wait_result()
        if result.status != pq.ExecStatus.COPY_BOTH:
            error = psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
            if error.sqlstate == "55006":  # object_in_use: another reader holds the slot
                raise ReplicationConnectionError(
                    f"replication slot {self.slot} is in use by another process "
                    f"({error.diag.message_primary}); stop the other reader, or wait for the "
                    "server to notice it is gone (wal_sender_timeout)"
                ) from error
            raise error
        self._decoder = Decoder(protocol_version(version))
        self._assembler = ChangeAssembler(self.columns)
        self._feedback = Feedback(position, self.status_interval, time.monotonic())

    def read(self, timeout: float) -> list[Envelope]:
        """Envelopes received within `timeout` seconds (returns as soon as some arrived);
        answers keepalives and sends status updates meanwhile."""
        if self._decoder is None or self._selector is None:
            raise RuntimeError("call start() before read()")
        pgconn = self._conn.pgconn
        get_copy_data, feed_copy_data = pgconn.get_copy_data, self._assembler.feed_copy_data
        decoder, feedback = self._decoder, self._feedback
        envelopes: list[Envelope] = []
        deadline = time.monotonic() + timeout
        took_in = False  # the socket's input was taken in after the deadline
        with _translated_errors():
            while True:
                # The hot path: one compiled loop takes every XLogData message ready and decodes
                # and assembles each. pgoutput sets XLogData's wal_end only on a Commit, whose end
                # LSN the message itself carries, so the header is skipped unread.
                size, data = feed_copy_data(decoder, get_copy_data, XLOG_DATA_HEADER_SIZE, envelopes,
                                            MAX_ENVELOPES_PER_READ, feedback)
                if size > 0:  # a message of another kind: a keepalive
                    feedback.on_keepalive(parse_copy_data(data))
                    if len(envelopes) < MAX_ENVELOPES_PER_READ:
                        continue
                elif size == -1:
                    result = pgconn.get_result()
                    detail = result.error_message.decode(errors="replace").strip() if result else ""
                    raise ReplicationConnectionError(
                        f"the server ended replication{': ' + detail if detail else ''}; "
                        "reconnect and resume from the confirmed LSN"
                    )
                now = time.monotonic()
                if feedback.seconds_until_due(now) == 0:
                    self._send(feedback.status_update(now, time.time()))
                if envelopes:
                    return envelopes
                if now >= deadline:
                    if took_in:
                        return envelopes
                    # Even a zero timeout takes in what the socket already holds, and returns
                    # it: an empty answer tells the caller that it has caught up.
                    pgconn.consume_input()
                    took_in = True
                    continue
                self._selector.select(min(deadline - now, feedback.seconds_until_due(now)))
                pgconn.consume_input()

    def confirm(self, lsn: int) -> None:
        """The consumer has durably stored everything up to `lsn` (a TransactionCommit.end_lsn);
        reported to the server with the next status update (within 0.1 s of the next read)."""
        self._feedback.confirm(lsn)

    def report_confirmed(self) -> None:
        """Report a newly confirmed position now, not with the next read."""
        if self._feedback.flushed > self._feedback.last_sent_flush:
            self.send_feedback()

    def send_feedback(self) -> None:
        """Report the confirmed position now (e.g. before closing)."""
        if self._decoder is not None and self._conn is not None and not self._conn.closed:
            with _translated_errors():
                self._send(self._feedback.status_update(time.monotonic(), time.time()))

    @property
    def server_wal_end(self) -> int:
        """How far the server has sent (XLogData and keepalives)."""
        return self._feedback.received

    @property
    def confirmed_lsn(self) -> int:
        return self._feedback.flushed

    # -- socket work --------------------------------------------------------------------------
    def _send(self, message: bytes) -> None:
        self._conn.pgconn.put_copy_data(message)
        self._flush_output()

    def _flush_output(self) -> None:
        pgconn = self._conn.pgconn
        while pgconn.flush():  # non-blocking connection: 1 means not everything was sent yet
            with selectors.DefaultSelector() as writable:
                writable.register(pgconn.socket, selectors.EVENT_WRITE)
                writable.select()

    def _wait_result(self) -> pq.PGresult:
        pgconn = self._conn.pgconn
        while pgconn.is_busy():
            self._selector.select(None)
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            raise ReplicationConnectionError("the server sent no reply to START_REPLICATION")
        return result

    # -- life cycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Send the confirmed position one last time and close the connection."""
        if self._conn is None or self._conn.closed:
            return
        try:
            self.send_feedback()
        except ReplicationConnectionError:
            pass  # the position is re-sent by the next session; nothing is lost
        finally:
            if self._selector is not None:
                self._selector.close()
                self._selector = None
            self._conn.close()
            self._decoder = None

    def __enter__(self) -> ReplicationSession:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
