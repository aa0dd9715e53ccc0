"""The pgoutput decoder against real messages captured from PostgreSQL 18 (see captured.py), and
against malformed input. Expected LSNs, xids, commit times and OIDs match the facts the capture
script queried independently (row LSN column, track_commit_timestamp, regclass)."""

import hashlib
from datetime import datetime, timezone

import pytest

from cdc_reader.pgoutput import (
    Begin,
    Commit,
    Decoder,
    Delete,
    Insert,
    Message,
    Origin,
    PgoutputDecodeError,
    Relation,
    RelationColumn,
    Truncate,
    TupleData,
    Type,
    UnsupportedMessageError,
    Update,
)
from tests.cdc_reader import captured

ITEM, ITEM_FULL, BIG, MOOD = 16389, 16397, 16403, 16385
BODY = "".join(hashlib.md5(str(i).encode()).hexdigest() for i in range(1, 81))
PAYLOAD = "x" * 1000


def at(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=timezone.utc)


def decode_all(hexes: list[str], protocol_version: int = 4) -> list:
    decoder = Decoder(protocol_version)
    return [decoder.decode(bytes.fromhex(message)) for message in hexes]


def texts(kinds: bytes, values: tuple[str | None, ...]) -> TupleData:
    """A row image of text values, as the decoder returns it: each value's UTF-8 bytes."""
    return TupleData(kinds, tuple(None if value is None else value.encode() for value in values))


def column(name: str, type_oid: int, is_key: bool = False, type_modifier: int = -1) -> RelationColumn:
    return RelationColumn(is_key, name, type_oid, type_modifier)


ITEM_RELATION = Relation(ITEM, "public", "item", "d", (
    column("id", 23, is_key=True), column("name", 25), column("price", 1700, type_modifier=655366),
    column("mood", MOOD), column("body", 25), column("data", 3802),
))
MOOD_TYPE = Type(MOOD, "public", "mood")
ITEM_FULL_COLUMNS = (column("id", 23, is_key=True), column("note", 1043, True, 24))
ITEM_FULL_ALTERED = Relation(
    ITEM_FULL, "public", "item_full", "f", (*ITEM_FULL_COLUMNS, column("score", 20, True))
)
BIG_COLUMNS = (column("id", 23, is_key=True), column("payload", 25))


def test_insert_with_a_user_defined_type():
    assert decode_all(captured.INSERT) == [
        Begin(0x16FE3F8, at(2026, 11, 24, 5, 50, 17, 331101), 753),
        MOOD_TYPE,
        ITEM_RELATION,
        Insert(ITEM, texts(
            b"tttttt", ("1", "Zoë 🎉", "12.50", "happy", BODY, '{"a": [1, true, null]}')
        )),
        Commit(0, 0x16FE3F8, 0x16FE428, at(2026, 11, 24, 5, 50, 17, 331101)),
    ]


def test_binary_columns_stay_bytes():
    messages = decode_all(captured.INSERT_BINARY)
    assert messages[3] == Insert(ITEM, TupleData(b"bbbbnb", (
        b"\x00\x00\x00\x07", b"b", b"\x00\x02\x00\x00\x40\x00\x00\x02\x00\x03\x09\xc4", b"sad",
        None, b"\x01{}",
    )))
    assert messages[0] == Begin(0x16FE4B8, at(2026, 11, 24, 5, 50, 17, 333625), 754)
    assert messages[4] == Commit(0, 0x16FE4B8, 0x16FE4E8, at(2026, 11, 24, 5, 50, 17, 333625))


def test_update_leaving_a_toasted_value_unchanged():
    messages = decode_all(captured.UPDATE_TOAST_UNCHANGED)
    assert messages[0] == Begin(0x16FE5B8, at(2026, 11, 24, 5, 50, 17, 335603), 755)
    assert messages[1:3] == [MOOD_TYPE, ITEM_RELATION]
    assert messages[3] == Update(ITEM, None, None, texts(
        b"ttttut", ("1", "renamed", "12.50", "happy", None, '{"a": [1, true, null]}')
    ))
    assert messages[4] == Commit(0, 0x16FE5B8, 0x16FE5E8, at(2026, 11, 24, 5, 50, 17, 335603))


def test_update_of_the_key_sends_the_old_key():
    messages = decode_all(captured.UPDATE_KEY)
    assert messages[3] == Update(
        ITEM, "K", texts(b"tnnnnn", ("1", None, None, None, None, None)),
        texts(b"ttttut", ("2", "renamed", "12.50", "happy", None, '{"a": [1, true, null]}')),
    )
    assert messages[4] == Commit(0, 0x16FE700, 0x16FE730, at(2026, 11, 24, 5, 50, 17, 336900))


def test_full_replica_identity_sends_old_rows():
    item_full = Relation(ITEM_FULL, "public", "item_full", "f", ITEM_FULL_COLUMNS)
    assert decode_all(captured.FULL_IDENTITY) == [
        Begin(0x16FE818, at(2026, 11, 24, 5, 50, 17, 338059), 757),
        item_full,
        Insert(ITEM_FULL, texts(b"tt", ("1", "first"))),
        Commit(0, 0x16FE818, 0x16FE848, at(2026, 11, 24, 5, 50, 17, 338059)),
        Begin(0x16FE8A8, at(2026, 11, 24, 5, 50, 17, 338361), 758),
        Update(ITEM_FULL, "O", texts(b"tt", ("1", "first")),
               texts(b"tt", ("1", "second"))),
        Commit(0, 0x16FE8A8, 0x16FE8D8, at(2026, 11, 24, 5, 50, 17, 338361)),
        Begin(0x16FE920, at(2026, 11, 24, 5, 50, 17, 338492), 759),
        Delete(ITEM_FULL, "O", texts(b"tt", ("1", "second"))),
        Commit(0, 0x16FE920, 0x16FE950, at(2026, 11, 24, 5, 50, 17, 338492)),
        Begin(0x16FEA00, at(2026, 11, 24, 5, 50, 17, 338684), 760),
        MOOD_TYPE,
        ITEM_RELATION,
        Delete(ITEM, "K", texts(b"tnnnnn", ("2", None, None, None, None, None))),
        Commit(0, 0x16FEA00, 0x16FEA30, at(2026, 11, 24, 5, 50, 17, 338684)),
    ]


def test_logical_messages():
    messages = decode_all(captured.MESSAGES)
    assert messages[0] == Message(False, 0x16FEA70, "voucher", b"\x00\xff")
    assert messages[1] == Begin(0x16FEB48, at(2026, 11, 24, 5, 50, 17, 340509), 761)
    assert messages[2] == Message(True, 0x16FEAC0, "voucher", b"in a transaction")
    assert messages[4] == Insert(ITEM_FULL, texts(b"tt", ("2", "with message")))
    assert messages[5] == Commit(0, 0x16FEB48, 0x16FEB78, at(2026, 11, 24, 5, 50, 17, 340509))


def test_relation_after_alter_table_has_the_new_column():
    assert decode_all(captured.ALTER_TABLE) == [
        Begin(0x16FEF70, at(2026, 11, 24, 5, 50, 17, 341868), 763),
        ITEM_FULL_ALTERED,
        Insert(ITEM_FULL, texts(b"ttt", ("3", "altered", "-9223372036854775808"))),
        Commit(0, 0x16FEF70, 0x16FEFA0, at(2026, 11, 24, 5, 50, 17, 341868)),
    ]


def test_truncate_with_options():
    messages = decode_all(captured.TRUNCATE)
    assert messages == [
        Begin(0x17000E8, at(2026, 11, 24, 5, 50, 17, 348523), 764),
        MOOD_TYPE,
        ITEM_RELATION,
        ITEM_FULL_ALTERED,
        Truncate(3, (ITEM, ITEM_FULL)),
        Commit(0, 0x17000E8, 0x17002F0, at(2026, 11, 24, 5, 50, 17, 348523)),
    ]
    assert (messages[4].cascade, messages[4].restart_identity) == (True, True)


def test_origin_of_a_replayed_transaction():
    messages = decode_all(captured.ORIGIN)
    # pg_replication_origin_xact_setup('0/ABCDEF0', '2024-01-02 03:04:05+00') sets both
    assert messages[:2] == [Begin(0x1700650, at(2024, 1, 2, 3, 4, 5), 766),
                            Origin(0xABCDEF0, "upstream")]
    assert messages[4] == Commit(0, 0x1700650, 0x1700698, at(2024, 1, 2, 3, 4, 5))


def test_memoryview_and_older_protocol_versions_decode_plain_messages():
    payload = bytes.fromhex(captured.FULL_IDENTITY[2])
    expected = Insert(ITEM_FULL, texts(b"tt", ("1", "first")))
    assert Decoder(1).decode(memoryview(payload)) == expected
    assert Decoder(3).decode(bytearray(payload)) == expected




STREAMED_AND_TWO_PHASE = ("STREAM_COMMIT", "STREAM_SUBTRANSACTION_ABORT", "STREAM_ABORT_PARALLEL",
                          "PREPARE_COMMIT", "PREPARE_ROLLBACK", "STREAM_PREPARE")


def whole_transaction_messages() -> list[bytes]:
    """Every captured message of the scenarios without streaming or two-phase commit."""
    return [bytes.fromhex(message) for name, scenario in vars(captured).items()
            if name.isupper() and name != "FACTS" and name not in STREAMED_AND_TWO_PHASE
            for message in scenario]


def test_every_truncated_captured_message_raises_a_decode_error():
    messages = whole_transaction_messages()
    assert len(messages) == 56
    for message in messages:
        for length in range(len(message)):
            with pytest.raises(PgoutputDecodeError) as raised:
                Decoder(4).decode(message[:length])
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
        (insert[:6] + b"\xff\xff" + insert[8:], 6, "negative column count -1"),
        (insert[:15] + b"\xff" + insert[16:], 14, "column runs past the message end"),
        (b"Y" + bytes(4) + b"public\x00mood", 12, "truncated or invalid field (no string"),
        (b"Y" + bytes(4) + b"\xff\x00mood\x00", 5, "truncated or invalid field ('utf-8'"),
    ]
    for payload, offset, reason in cases:
        with pytest.raises(PgoutputDecodeError) as raised:
            Decoder(4).decode(payload)
        assert (raised.value.offset, raised.value.reason[:len(reason)]) == (offset, reason)
    with pytest.raises(PgoutputDecodeError) as raised:
        Decoder(4).decode(insert[:15] + b"\xff" + insert[16:])
    assert str(raised.value).startswith("malformed pgoutput message at byte 14: column runs")


@pytest.mark.parametrize("scenario", STREAMED_AND_TWO_PHASE)
def test_streamed_and_two_phase_messages_are_refused(scenario):
    decoder = Decoder(4)
    with pytest.raises(UnsupportedMessageError,
                       match="start replication without the 'streaming' and 'two_phase'"):
        for message in getattr(captured, scenario):
            decoder.decode(bytes.fromhex(message))


def test_every_message_kind_of_streaming_and_two_phase_is_refused():
    for kind, name in zip("SEcApbPKr", ("Stream Start", "Stream Stop", "Stream Commit",
                                        "Stream Abort", "Stream Prepare", "Begin Prepare",
                                        "Prepare", "Commit Prepared", "Rollback Prepared")):
        with pytest.raises(UnsupportedMessageError, match=f"received a {name} message") as raised:
            Decoder(4).decode(kind.encode() + bytes(20))
        assert isinstance(raised.value, PgoutputDecodeError)


def test_protocol_version_is_checked():
    assert Decoder(1).protocol_version == 1
    with pytest.raises(ValueError, match="must be 1 to 4, not 5"):
        Decoder(5)
    with pytest.raises(ValueError, match="must be 1 to 4, not 0"):
        Decoder(0)


def test_messages_are_frozen_values():
    message = Decoder(4).decode(bytes.fromhex(captured.FULL_IDENTITY[2]))
    with pytest.raises(AttributeError):
        message.relation_oid = 1
    assert message == Insert(ITEM_FULL, texts(b"tt", ("1", "first")))
    assert hash(message) == hash(Insert(ITEM_FULL, texts(b"tt", ("1", "first"))))
    assert repr(message) == (
        "Insert(relation_oid=16397, new=TupleData(kinds=b'tt', values=(b'1', b'first')))")
