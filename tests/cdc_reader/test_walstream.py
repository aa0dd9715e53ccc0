"""The replication protocol's CopyData framing and the feedback policy: bytes in, values out."""

import struct
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdc_reader.pgtime import POSTGRES_EPOCH, pg_timestamp
from cdc_reader.walstream import (
    ConfirmBeyondReceivedError,
    Feedback,
    PrimaryKeepalive,
    StreamProtocolError,
    XLogData,
    from_unix_time,
    parse_copy_data,
    standby_status_update,
)


def xlog_data(wal_start: int, wal_end: int, send_time: int, payload: bytes) -> memoryview:
    return memoryview(b"w" + struct.pack(">QQq", wal_start, wal_end, send_time) + payload)


def keepalive(wal_end: int, reply: bool = False, send_time: int = 7) -> PrimaryKeepalive:
    message = parse_copy_data(memoryview(b"k" + struct.pack(">Qq?", wal_end, send_time, reply)))
    assert isinstance(message, PrimaryKeepalive)
    return message


def test_xlog_data_is_parsed_without_copying_the_payload():
    raw = xlog_data(0x1_0000_0010, 0x1_0000_0020, 123456, b"B\x00\x01")
    message = parse_copy_data(raw)
    assert message == XLogData(0x1_0000_0010, 0x1_0000_0020, 123456, memoryview(b"B\x00\x01"))
    assert isinstance(message.payload, memoryview)
    assert message.payload.obj is raw.obj


def test_keepalive_is_parsed():
    assert keepalive(0x16B3748, reply=True, send_time=99) == PrimaryKeepalive(0x16B3748, 99, True)
    assert keepalive(5) == PrimaryKeepalive(5, 7, False)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty CopyData message from the server"),
        (b"w\x00\x00", "truncated XLogData message (3 bytes)"),
        (b"k\x00", "malformed primary keepalive message (2 bytes)"),
        (b"x123", "unknown CopyData message type 'x' from the server"),
    ],
)
def test_malformed_copy_data_is_refused(raw, message):
    with pytest.raises(StreamProtocolError) as caught:
        parse_copy_data(memoryview(raw))
    assert str(caught.value) == message


def test_standby_status_update_layout():
    assert standby_status_update(0x30, 0x20, 0x10, 5, True) == (
        b"r" + struct.pack(">QQQq?", 0x30, 0x20, 0x10, 5, True)
    )
    assert len(standby_status_update(1, 1, 1, 1)) == 34


def test_time_conversion_uses_the_postgres_epoch():
    unix = datetime(2024, 2, 29, 12, 0, 0, 250000, tzinfo=UTC).timestamp()
    micros = from_unix_time(unix)
    assert micros == 762_523_200_250_000
    assert pg_timestamp(micros) == datetime(2024, 2, 29, 12, 0, 0, 250000, tzinfo=UTC)


MIN_MICROS = (datetime(1, 1, 1, tzinfo=UTC) - POSTGRES_EPOCH) // timedelta(microseconds=1)
MAX_MICROS = (datetime.max.replace(tzinfo=UTC) - POSTGRES_EPOCH) // timedelta(microseconds=1)


@given(st.integers(MIN_MICROS, MAX_MICROS) | st.sampled_from([MIN_MICROS, MAX_MICROS, -1, 0, 1, -86_400_000_000]))
def test_a_timestamp_is_the_postgres_epoch_plus_its_microseconds(micros):
    assert pg_timestamp(micros) == POSTGRES_EPOCH + timedelta(microseconds=micros)
    assert pg_timestamp(micros).tzinfo is UTC


def test_a_timestamp_past_the_datetime_range_is_an_overflow_error():
    with pytest.raises(OverflowError):
        pg_timestamp(2**63 - 1)  # PostgreSQL's 'infinity'


def unpack_status(message: bytes) -> tuple[int, int, int]:
    _, write, flush, apply, _, _ = struct.unpack(">cQQQq?", message)
    return write, flush, apply


def test_flush_only_advances_through_confirm():
    feedback = Feedback(start_lsn=100, interval=10.0, now=0.0)
    feedback.transaction_began()
    feedback.transaction_given(180)
    assert unpack_status(feedback.status_update(now=1.0, unix_time=0.0)) == (180, 100, 100)
    feedback.confirm(150)
    assert feedback.flushed == 150
    feedback.confirm(120)  # older confirmations never move it back
    assert feedback.flushed == 150
    feedback.confirm(180)
    assert unpack_status(feedback.status_update(now=2.0, unix_time=0.0)) == (180, 180, 180)


def test_keepalive_advances_flush_only_when_everything_given_is_confirmed():
    feedback = Feedback(start_lsn=100, interval=10.0, now=0.0)
    feedback.transaction_began()
    feedback.on_keepalive(keepalive(150))
    assert (feedback.received, feedback.flushed) == (150, 100)  # a transaction is open
    feedback.transaction_given(200)
    feedback.on_keepalive(keepalive(250))
    assert (feedback.received, feedback.flushed) == (250, 100)  # 200 not confirmed yet
    feedback.confirm(200)
    feedback.on_keepalive(keepalive(250))
    assert feedback.flushed == 250  # idle: nothing unconfirmed before the server's WAL end
    feedback.on_keepalive(keepalive(240))
    assert feedback.flushed == 250


def test_keepalive_seen_before_the_last_confirm_is_applied_by_that_confirm():
    # The server's keepalive overtook the consumer's checkpoint: once the consumer confirms the
    # last transaction it was given, the WAL end that keepalive reported is flushed too, with
    # no need to wait for another keepalive (which an idle server may never send).
    feedback = Feedback(start_lsn=100, interval=10.0, now=0.0)
    feedback.transaction_began()
    feedback.transaction_given(200)
    feedback.on_keepalive(keepalive(280))
    assert feedback.flushed == 100
    feedback.confirm(200)
    assert feedback.flushed == 280
    feedback.transaction_began()  # a new transaction arrives: flush stays put until confirmed
    feedback.transaction_given(300)
    feedback.on_keepalive(keepalive(320))
    feedback.confirm(290)
    assert feedback.flushed == 290


def test_confirming_what_was_never_given_is_refused():
    feedback = Feedback(start_lsn=100, interval=10.0, now=0.0)
    feedback.transaction_given(200)
    with pytest.raises(ConfirmBeyondReceivedError) as caught:
        feedback.confirm(201)
    assert str(caught.value) == (
        "confirmed LSN 0xc9 is past the last transaction handed out (0xc8); "
        "confirm a TransactionCommit.end_lsn that was received"
    )


def test_status_update_is_due_on_interval_reply_request_or_new_flush():
    feedback = Feedback(start_lsn=100, interval=10.0, now=0.0)
    assert feedback.seconds_until_due(4.0) == 6.0
    assert feedback.seconds_until_due(10.5) == 0.0
    feedback.status_update(now=10.5, unix_time=0.0)
    feedback.on_keepalive(keepalive(100, reply=True))
    assert feedback.seconds_until_due(10.6) == 0.0
    feedback.status_update(now=10.6, unix_time=0.0)
    assert feedback.seconds_until_due(10.6) == 10.0
    feedback.on_keepalive(keepalive(300))  # idle advance: report within 0.1 s, not ten
    assert feedback.seconds_until_due(10.65) == pytest.approx(0.05)
    assert feedback.seconds_until_due(10.75) == 0.0
    feedback.status_update(now=10.75, unix_time=0.0)
    assert feedback.seconds_until_due(10.75) == 10.0
    feedback.transaction_given(400)
    feedback.confirm(400)  # a confirm is reported as soon, too
    assert feedback.seconds_until_due(10.8) == pytest.approx(0.05)
