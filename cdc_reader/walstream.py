"""The streaming replication protocol's CopyData messages, without I/O.

Parses what the server sends inside COPY_BOTH (XLogData, primary keepalive), builds what we send
back (standby status update), and decides, as a pure policy, which position to report as flushed
and when a report is due. The replication loop (`replication.py`) does the socket work.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Seconds between the Unix epoch and PostgreSQL's (2000-01-01 UTC).
POSTGRES_EPOCH_UNIX = 946_684_800

XLOG_DATA = ord("w")
PRIMARY_KEEPALIVE = ord("k")
STANDBY_STATUS_UPDATE = b"r"

_XLOG_DATA_HEADER = struct.Struct(">QQq")  # wal_start, wal_end, send_time
XLOG_DATA_HEADER_SIZE = 1 + _XLOG_DATA_HEADER.size  # where the payload starts
_KEEPALIVE = struct.Struct(">Qq?")  # wal_end, send_time, reply_requested
_STATUS_UPDATE = struct.Struct(">cQQQq?")  # 'r', write, flush, apply, client_time, reply


class StreamProtocolError(Exception):
    """The server sent CopyData we do not understand; the connection cannot be trusted further."""


@dataclass(frozen=True, slots=True)
class XLogData:
    """A chunk of WAL-derived data: for logical replication, one output plugin message.

    Times are microseconds since 2000-01-01 UTC (the server's clock; `pgtime.pg_timestamp`
    turns them into datetimes).
    """

    wal_start: int
    wal_end: int
    send_time: int
    payload: memoryview


@dataclass(frozen=True, slots=True)
class PrimaryKeepalive:
    """The server's heartbeat: how far it has sent, and whether it wants a status update now."""

    wal_end: int
    send_time: int
    reply_requested: bool


def parse_copy_data(data: memoryview) -> XLogData | PrimaryKeepalive:
    """One CopyData message from the server, as a typed value (the payload is not copied)."""
    if not data:
        raise StreamProtocolError("empty CopyData message from the server")
    kind = data[0]
    if kind == XLOG_DATA:
        if len(data) < XLOG_DATA_HEADER_SIZE:
            raise StreamProtocolError(f"truncated XLogData message ({len(data)} bytes)")
        wal_start, wal_end, send_time = _XLOG_DATA_HEADER.unpack_from(data, 1)
        return XLogData(wal_start, wal_end, send_time, data[XLOG_DATA_HEADER_SIZE:])
    if kind == PRIMARY_KEEPALIVE:
        if len(data) != 1 + _KEEPALIVE.size:
            raise StreamProtocolError(f"malformed primary keepalive message ({len(data)} bytes)")
        return PrimaryKeepalive(*_KEEPALIVE.unpack_from(data, 1))
    raise StreamProtocolError(f"unknown CopyData message type {chr(kind)!r} from the server")


def standby_status_update(
    write: int, flush: int, apply: int, client_time: int, reply_requested: bool = False
) -> bytes:
    """The 'r' message: positions written, flushed and applied, and our clock (PostgreSQL
    microseconds, see `from_unix_time`)."""
    return _STATUS_UPDATE.pack(STANDBY_STATUS_UPDATE, write, flush, apply, client_time, reply_requested)


def from_unix_time(unix_seconds: float) -> int:
    """Unix time -> microseconds since PostgreSQL's epoch, the protocol's time unit."""
    return round((unix_seconds - POSTGRES_EPOCH_UNIX) * 1_000_000)


FLUSH_REPORT_DELAY = 0.1  # seconds


class ConfirmBeyondReceivedError(ValueError):
    """The consumer confirmed a position it was never given; confirming it would lose data."""


class Feedback:
    """What to report to the server, and when (pure: the caller passes the clock).

    flush only advances through `confirm`, with one exception: when the consumer has confirmed
    every transaction it was given and none is open, a keepalive's wal_end may be reported as
    flushed, because everything before it was either delivered (and confirmed) or not published.
    That is what lets an idle slot, or one seeing only untracked writes, release its WAL.
    """

    __slots__ = (
        "interval",
        "flush_report_delay",
        "received",
        "flushed",
        "given",
        "in_transaction",
        "reply_requested",
        "last_sent_at",
        "last_sent_flush",
    )

    def __init__(self, start_lsn: int, interval: float, now: float) -> None:
        self.interval = interval
        # A newly confirmed position is reported this soon, not only every `interval`: the
        # server frees WAL, and anyone watching confirmed_flush_lsn sees the progress. (The
        # pipeline confirms at most once a second, so this adds few messages.)
        self.flush_report_delay = min(interval, FLUSH_REPORT_DELAY)
        self.received = start_lsn
        self.flushed = start_lsn
        self.given = start_lsn  # end LSN of the last transaction handed to the consumer
        self.in_transaction = False
        self.reply_requested = False
        self.last_sent_at = now
        self.last_sent_flush = start_lsn

    # -- what the stream tells us -----------------------------------------------------------
    def on_keepalive(self, message: PrimaryKeepalive) -> None:
        if message.wal_end > self.received:
            self.received = message.wal_end
        if message.reply_requested:
            self.reply_requested = True
        if (
            not self.in_transaction
            and self.flushed >= self.given
            and message.wal_end > self.flushed
        ):
            self.flushed = message.wal_end

    def transaction_began(self) -> None:
        self.in_transaction = True

    def transaction_given(self, end_lsn: int) -> None:
        """The consumer now holds a whole transaction ending at `end_lsn`."""
        self.in_transaction = False
        if end_lsn > self.given:
            self.given = end_lsn
        if end_lsn > self.received:
            self.received = end_lsn

    # -- what the consumer tells us -----------------------------------------------------------
    def confirm(self, lsn: int) -> None:
        """Everything up to `lsn` is durably stored by the consumer."""
        if lsn > max(self.given, self.flushed):
            raise ConfirmBeyondReceivedError(
                f"confirmed LSN {lsn:#x} is past the last transaction handed out ({self.given:#x}); "
                "confirm a TransactionCommit.end_lsn that was received"
            )
        if lsn > self.flushed:
            self.flushed = lsn
        # A keepalive that arrived while this transaction was still unconfirmed already told us
        # that nothing published lies between it and the server's WAL end.
        if not self.in_transaction and self.flushed >= self.given and self.received > self.flushed:
            self.flushed = self.received

    # -- what we tell the server ----------------------------------------------------------------
    def seconds_until_due(self, now: float) -> float:
        """0 when a status update is due now, else how long until it will be."""
        if self.reply_requested:
            return 0.0
        elapsed = now - self.last_sent_at
        wait = self.interval - elapsed
        if self.flushed > self.last_sent_flush:
            wait = min(wait, self.flush_report_delay - elapsed)
        return max(wait, 0.0)

    def status_update(self, now: float, unix_time: float) -> bytes:
        """The message to send now; records it as sent."""
        self.reply_requested = False
        self.last_sent_at = now
        self.last_sent_flush = self.flushed
        return standby_status_update(
            max(self.received, self.flushed), self.flushed, self.flushed, from_unix_time(unix_time)
        )
