"""The pgoutput decoder against real messages captured from PostgreSQL 18 (see captured.py), and
against malformed input. Expected LSNs, xids, commit times and OIDs match the facts the capture
script queried independently (row LSN column, track_commit_timestamp, regclass)."""

import hashlib
import struct

import pytest

from cdc_reader.pgoutput import (
    Begin,
    BeginPrepare,
    Commit,
    CommitPrepared,
    Decoder,
    Delete,
    Insert,
    Message,
    Origin,
    PgoutputDecodeError,
    Prepare,
    Relation,
    RelationColumn,
    RollbackPrepared,
    StreamAbort,
    StreamCommit,
    StreamPrepare,
    StreamStart,
    StreamStop,
    Truncate,
    TupleData,
    Type,
    Update,
)
from tests.cdc_reader import captured
from tests.conftest import utc

ITEM, ITEM_FULL, BIG, MOOD = 16389, 16397, 16403, 16385
BODY = "".join(hashlib.md5(str(i).encode()).hexdigest() for i in range(1, 81))
PAYLOAD = "x" * 1000


def decode_all(hexes: list[str], protocol_version: int = 4) -> list:
    decoder = Decoder(protocol_version)
    return [decoder.decode(bytes.fromhex(message)) for message in hexes]


def column(name: str, type_oid: int, is_key: bool = False, type_modifier: int = -1) -> RelationColumn:
    return RelationColumn(is_key, name, type_oid, type_modifier)


ITEM_RELATION = Relation(None, ITEM, "public", "item", "d", (
    column("id", 23, is_key=True), column("name", 25), column("price", 1700, type_modifier=655366),
    column("mood", MOOD), column("body", 25), column("data", 3802),
))
MOOD_TYPE = Type(None, MOOD, "public", "mood")
ITEM_FULL_COLUMNS = (column("id", 23, is_key=True), column("note", 1043, True, 24))
ITEM_FULL_ALTERED = Relation(
    None, ITEM_FULL, "public", "item_full", "f", (*ITEM_FULL_COLUMNS, column("score", 20, True))
)
BIG_COLUMNS = (column("id", 23, is_key=True), column("payload", 25))


def test_insert_with_a_user_defined_type():
    assert decode_all(captured.INSERT) == [
        Begin(0x16FE3F8, utc("2026-11-24T05:50:17.331101"), 753),
        MOOD_TYPE,
        ITEM_RELATION,
        Insert(None, ITEM, TupleData(
            b"tttttt", ("1", "Zoë 🎉", "12.50", "happy", BODY, '{"a": [1, true, null]}')
        )),
        Commit(0, 0x16FE3F8, 0x16FE428, utc("2026-11-24T05:50:17.331101")),
    ]


def test_binary_columns_stay_bytes():
    messages = decode_all(captured.INSERT_BINARY)
    assert messages[3] == Insert(None, ITEM, TupleData(b"bbbbnb", (
        b"\x00\x00\x00\x07", b"b", b"\x00\x02\x00\x00\x40\x00\x00\x02\x00\x03\x09\xc4", b"sad",
        None, b"\x01{}",
    )))
    assert messages[0] == Begin(0x16FE4B8, utc("2026-11-24T05:50:17.333625"), 754)
    assert messages[4] == Commit(0, 0x16FE4B8, 0x16FE4E8, utc("2026-11-24T05:50:17.333625"))


def test_update_leaving_a_toasted_value_unchanged():
    messages = decode_all(captured.UPDATE_TOAST_UNCHANGED)
    assert messages[0] == Begin(0x16FE5B8, utc("2026-11-24T05:50:17.335603"), 755)
    assert messages[1:3] == [MOOD_TYPE, ITEM_RELATION]
    assert messages[3] == Update(None, ITEM, None, None, TupleData(
        b"ttttut", ("1", "renamed", "12.50", "happy", None, '{"a": [1, true, null]}')
    ))
    assert messages[4] == Commit(0, 0x16FE5B8, 0x16FE5E8, utc("2026-11-24T05:50:17.335603"))


def test_update_of_the_key_sends_the_old_key():
    messages = decode_all(captured.UPDATE_KEY)
    assert messages[3] == Update(
        None, ITEM, "K", TupleData(b"tnnnnn", ("1", None, None, None, None, None)),
        TupleData(b"ttttut", ("2", "renamed", "12.50", "happy", None, '{"a": [1, true, null]}')),
    )
    assert messages[4] == Commit(0, 0x16FE700, 0x16FE730, utc("2026-11-24T05:50:17.336900"))


def test_full_replica_identity_sends_old_rows():
    item_full = Relation(None, ITEM_FULL, "public", "item_full", "f", ITEM_FULL_COLUMNS)
    assert decode_all(captured.FULL_IDENTITY) == [
        Begin(0x16FE818, utc("2026-11-24T05:50:17.338059"), 757),
        item_full,
        Insert(None, ITEM_FULL, TupleData(b"tt", ("1", "first"))),
        Commit(0, 0x16FE818, 0x16FE848, utc("2026-11-24T05:50:17.338059")),
        Begin(0x16FE8A8, utc("2026-11-24T05:50:17.338361"), 758),
        Update(None, ITEM_FULL, "O", TupleData(b"tt", ("1", "first")),
               TupleData(b"tt", ("1", "second"))),
        Commit(0, 0x16FE8A8, 0x16FE8D8, utc("2026-11-24T05:50:17.338361")),
        Begin(0x16FE920, utc("2026-11-24T05:50:17.338492"), 759),
        Delete(None, ITEM_FULL, "O", TupleData(b"tt", ("1", "second"))),
        Commit(0, 0x16FE920, 0x16FE950, utc("2026-11-24T05:50:17.338492")),
        Begin(0x16FEA00, utc("2026-11-24T05:50:17.338684"), 760),
        MOOD_TYPE,
        ITEM_RELATION,
        Delete(None, ITEM, "K", TupleData(b"tnnnnn", ("2", None, None, None, None, None))),
        Commit(0, 0x16FEA00, 0x16FEA30, utc("2026-11-24T05:50:17.338684")),
    ]


def test_logical_messages():
    messages = decode_all(captured.MESSAGES)
    assert messages[0] == Message(None, False, 0x16FEA70, "voucher", b"\x00\xff")
    assert messages[1] == Begin(0x16FEB48, utc("2026-11-24T05:50:17.340509"), 761)
    assert messages[2] == Message(None, True, 0x16FEAC0, "voucher", b"in a transaction")
    assert messages[4] == Insert(None, ITEM_FULL, TupleData(b"tt", ("2", "with message")))
    assert messages[5] == Commit(0, 0x16FEB48, 0x16FEB78, utc("2026-11-24T05:50:17.340509"))


def test_relation_after_alter_table_has_the_new_column():
    assert decode_all(captured.ALTER_TABLE) == [
        Begin(0x16FEF70, utc("2026-11-24T05:50:17.341868"), 763),
        ITEM_FULL_ALTERED,
        Insert(None, ITEM_FULL, TupleData(b"ttt", ("3", "altered", "-9223372036854775808"))),
        Commit(0, 0x16FEF70, 0x16FEFA0, utc("2026-11-24T05:50:17.341868")),
    ]


def test_truncate_with_options():
    messages = decode_all(captured.TRUNCATE)
    assert messages == [
        Begin(0x17000E8, utc("2026-11-24T05:50:17.348523"), 764),
        MOOD_TYPE,
        ITEM_RELATION,
        ITEM_FULL_ALTERED,
        Truncate(None, 3, (ITEM, ITEM_FULL)),
        Commit(0, 0x17000E8, 0x17002F0, utc("2026-11-24T05:50:17.348523")),
    ]
    assert (messages[4].cascade, messages[4].restart_identity) == (True, True)


def test_origin_of_a_replayed_transaction():
    messages = decode_all(captured.ORIGIN)
    # pg_replication_origin_xact_setup('0/ABCDEF0', '2024-01-02 03:04:05+00') sets both
    assert messages[:2] == [Begin(0x1700650, utc("2024-01-02T03:04:05"), 766),
                            Origin(0xABCDEF0, "upstream")]
    assert messages[4] == Commit(0, 0x1700650, 0x1700698, utc("2024-01-02T03:04:05"))


def test_streamed_transaction_messages_carry_the_xid():
    commit = StreamCommit(767, 0, 0x1729DF8, 0x1729E28, utc("2026-11-24T05:50:17.355571"))
    assert decode_all(captured.STREAM_COMMIT) == [
        StreamStart(767, True),
        Relation(767, BIG, "public", "big", "d", BIG_COLUMNS),
        Insert(767, BIG, TupleData(b"tt", ("1", PAYLOAD))),
        StreamStop(),
        StreamStart(767, False),
        Insert(767, BIG, TupleData(b"tt", ("59", PAYLOAD))),
        StreamStop(),
        StreamStart(767, False),
        Insert(767, BIG, TupleData(b"tt", ("117", PAYLOAD))),
        StreamStop(),
        commit,
    ]


def test_stream_abort_of_a_subtransaction():
    messages = decode_all(captured.STREAM_SUBTRANSACTION_ABORT)
    assert messages[11] == Insert(769, BIG, TupleData(b"tt", ("2025", PAYLOAD)))
    assert messages[-2:] == [
        StreamAbort(768, 769),
        StreamCommit(768, 0, 0x177CF58, 0x177CF88, utc("2026-11-24T05:50:17.360438")),
    ]


def test_parallel_stream_abort_carries_lsn_and_time():
    messages = decode_all(captured.STREAM_ABORT_PARALLEL)
    assert messages[-2:] == [
        StreamAbort(770, 771, 0x17CFD70, utc("2026-11-24T05:50:17.370131")),
        StreamCommit(770, 0, 0x17CFD70, 0x17CFDA0, utc("2026-11-24T05:50:17.370181")),
    ]


def test_two_phase_commit():
    prepared_at = utc("2026-11-24T05:50:17.382146")
    assert decode_all(captured.PREPARE_COMMIT) == [
        BeginPrepare(0x17CFE68, 0x17CFF68, prepared_at, 772, "gid-commit"),
        ITEM_FULL_ALTERED,
        Insert(None, ITEM_FULL, TupleData(b"ttt", ("10", "prepared", "10"))),
        Prepare(0, 0x17CFE68, 0x17CFF68, prepared_at, 772, "gid-commit"),
        CommitPrepared(0, 0x17CFF68, 0x17CFFA8, utc("2026-11-24T05:50:17.382249"), 772,
                       "gid-commit"),
    ]


def test_two_phase_rollback():
    prepared_at = utc("2026-11-24T05:50:17.384242")
    assert decode_all(captured.PREPARE_ROLLBACK) == [
        BeginPrepare(0x17D0050, 0x17D0150, prepared_at, 773, "gid-rollback"),
        Prepare(0, 0x17D0050, 0x17D0150, prepared_at, 773, "gid-rollback"),
        RollbackPrepared(0, 0x17D0150, 0x17D0190, prepared_at,
                         utc("2026-11-24T05:50:17.384324"), 773, "gid-rollback"),
    ]


def test_stream_prepare():
    messages = decode_all(captured.STREAM_PREPARE)
    assert messages[:3] == [
        StreamStart(774, True),
        Relation(774, BIG, "public", "big", "d", BIG_COLUMNS),
        Insert(774, BIG, TupleData(b"tt", ("4001", PAYLOAD))),
    ]
    assert messages[-2:] == [
        StreamPrepare(0, 0x17F9B58, 0x17F9C58, utc("2026-11-24T05:50:17.386660"), 774,
                      "gid-stream"),
        CommitPrepared(0, 0x17F9C58, 0x17F9C98, utc("2026-11-24T05:50:17.386749"), 774,
                       "gid-stream"),
    ]


def test_memoryview_and_older_protocol_versions_decode_plain_messages():
    payload = bytes.fromhex(captured.FULL_IDENTITY[2])
    expected = Insert(None, ITEM_FULL, TupleData(b"tt", ("1", "first")))
    assert Decoder(1).decode(memoryview(payload)) == expected
    assert Decoder(3).decode(bytearray(payload)) == expected


def captured_messages() -> list[tuple[bytes, bool]]:
    """Every captured message, with whether it was decoded inside a stream."""
    found = []
    for name, scenario in vars(captured).items():
        if name.isupper() and name != "FACTS":
            decoder = Decoder(4)
            for message in map(bytes.fromhex, scenario):
                found.append((message, decoder.in_stream))
                decoder.decode(message)
    return found


def test_every_truncated_captured_message_raises_a_decode_error():
    messages = captured_messages()
    assert len(messages) == 123
    for message, in_stream in messages:
        for length in range(len(message)):
            if message[0] == ord("A") and length == 9:
                continue  # a protocol 4 abort without the parallel-mode tail is valid
            decoder = Decoder(4)
            decoder.in_stream = in_stream
            with pytest.raises(PgoutputDecodeError) as raised:
                decoder.decode(message[:length])
            assert 0 <= raised.value.offset <= length


def test_malformed_messages_report_where():
    insert = bytes.fromhex(captured.FULL_IDENTITY[2])  # I, oid, N, 2 columns: t "1", t "first"
    cases = [
        (b"", 0, "empty message"),
        (b"Z", 0, "unknown message type 'Z' for protocol version 4"),
        (insert + b"\x00", len(insert), "1 unexpected trailing bytes"),
        (insert[:8] + b"X" + insert[9:], 8, "unknown column kind 88"),
        (insert[:5] + b"X" + insert[6:], 5, "expected 'N', got 'X'"),
        (insert[:6] + b"\x00\x03" + insert[8:], 24, "truncated or invalid field"),
        (insert[:6] + b"\x00\x01" + insert[8:], 14, "10 unexpected trailing bytes"),
        (insert[:15] + b"\xff" + insert[16:], 14, "column runs past the message end"),
    ]
    for payload, offset, reason in cases:
        with pytest.raises(PgoutputDecodeError) as raised:
            Decoder(4).decode(payload)
        assert (raised.value.offset, raised.value.reason[:len(reason)]) == (offset, reason)
    assert str(raised.value).startswith("malformed pgoutput message at byte 14: column runs")


def test_protocol_version_limits_the_message_set():
    stream_start = b"S" + struct.pack(">IB", 9, 1)
    begin_prepare = bytes.fromhex(captured.PREPARE_COMMIT[0])
    with pytest.raises(PgoutputDecodeError, match="unknown message type 'S' for protocol version 1"):
        Decoder(1).decode(stream_start)
    with pytest.raises(PgoutputDecodeError, match="unknown message type 'b' for protocol version 2"):
        Decoder(2).decode(begin_prepare)
    assert Decoder(3).decode(begin_prepare).gid == "gid-commit"
    abort_with_tail = b"A" + struct.pack(">IIQq", 5, 6, 7, 0)
    with pytest.raises(PgoutputDecodeError, match="16 unexpected trailing bytes"):
        Decoder(3).decode(abort_with_tail)
    assert Decoder(4).decode(abort_with_tail) == StreamAbort(5, 6, 7, utc("2000-01-01T00:00:00"))
    with pytest.raises(ValueError, match="must be 1 to 4, not 5"):
        Decoder(5)


def test_stream_state_is_checked():
    decoder = Decoder(2)
    with pytest.raises(PgoutputDecodeError, match="Stream Stop outside a stream"):
        decoder.decode(b"E")
    assert decoder.decode(b"S" + struct.pack(">IB", 9, 1)) == StreamStart(9, True)
    with pytest.raises(PgoutputDecodeError, match="Stream Start inside a stream"):
        decoder.decode(b"S" + struct.pack(">IB", 9, 0))
    assert decoder.decode(b"E") == StreamStop()
    assert decoder.in_stream is False
