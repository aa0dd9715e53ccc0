"""The writer's RowBinary blocks (query/rowbinary.pyx) read back from chDB exactly as the records
that were encoded, at the edges of every column type; bad values are refused, not mangled."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappers.events import CustomerEvent
from query.rowbinary import column_kind, encode_rows
from query.schema import EVENTS
from query.store import Store
from tests.query import factories as f
from tests.query.conftest import write

ACME = f.tenant("acme")
DAVE = f.customer(ACME, "dave", "dave-src")
EVENT_COLUMNS = ", ".join(EVENTS.written_columns)


def stored_event(store: Store, event_id: uuid.UUID) -> tuple:
    [row] = store.rows(f"SELECT {EVENT_COLUMNS} FROM customer_events WHERE id = {{id:UUID}}", {"id": event_id})
    return row


def fields(event: CustomerEvent) -> tuple:
    return tuple(getattr(event, name) for name in event.__struct_fields__)


def with_values(number: int, **changes) -> CustomerEvent:
    return msgspec.structs.replace(f.event(ACME, DAVE.id, 0, number), **changes)


EDGES = [
    # lengths on both sides of each LEB128 length byte: 127, 128, 16383, 16384
    with_values(1, data="x" * 127, group_id=""),
    with_values(2, data="y" * 128, campaign_id=uuid.UUID(int=0)),
    with_values(3, data="z" * 16383, campaign_id=uuid.UUID(int=2**128 - 1)),
    with_values(4, data="w" * 16384, source_lsn=2**64 - 1),
    # text that JSON would escape, multi-byte UTF-8, a NUL
    with_values(5, data='{"quote": "\\"", "tab": "\t", "newline": "\n", "nul": "\u0000"}',
                tenant="ąćę 😀", group_id="tx_\u2028"),
    # times: before the epoch, its first microsecond, the far future, another zone
    with_values(6, created_at=datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    with_values(7, created_at=datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC)),
    with_values(8, created_at=datetime(2299, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    with_values(9, created_at=datetime(2024, 2, 29, 1, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))),
    with_values(10, source_lsn=0, campaign_id=None),
]


def test_edge_values_read_back_exactly(store: Store) -> None:
    write(store, [ACME, DAVE, *EDGES])
    for event in EDGES:
        expected = fields(event)
        created_at = event.created_at.astimezone(UTC)
        assert stored_event(store, event.id) == (*expected[:4], created_at, *expected[5:])


def test_lookup_rows_read_back_exactly(store: Store) -> None:
    deleted = f.customer(ACME, "erin", None, deleted=True, version=2**64 - 1)
    write(store, [ACME, DAVE, deleted])
    rows = store.rows("SELECT id, tenant_id, source_id, deleted, version FROM customers ORDER BY source_id", {})
    assert rows == [(DAVE.id, ACME.id, "dave-src", False, 1), (deleted.id, ACME.id, None, True, 2**64 - 1)]
    assert store.rows("SELECT id, name, version FROM tenants", {}) == [(ACME.id, "acme", 1)]


def test_an_aware_time_is_written_as_utc_and_a_naive_one_taken_as_utc() -> None:
    columns, kinds = ("created_at",), (column_kind("DateTime64(6, 'UTC')"),)
    at = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    micros = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    expected = micros.to_bytes(8, "little", signed=True)
    assert encode_rows([_Row(at)], columns, kinds) == expected
    assert encode_rows([_Row(at.astimezone(timezone(timedelta(hours=-7))))], columns, kinds) == expected
    assert encode_rows([_Row(at.replace(tzinfo=None))], columns, kinds) == expected


def test_a_uuid_is_two_little_endian_halves_high_first() -> None:
    value = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
    encoded = encode_rows([_Row(value)], ("created_at",), (column_kind("UUID"),))
    assert encoded == bytes.fromhex("7766554433221100" "ffeeddccbbaa9988")


@pytest.mark.parametrize("number", [0, 1, 2**30 - 1, 2**30, 2**60, 2**64 - 1, 2**64, 2**120, 2**127, 2**128 - 1])
def test_a_uuid_of_any_size_of_int_is_its_128_bits(number: int) -> None:
    # the int's internal digits (30 bits each) cross a 64-bit half at these values
    encoded = encode_rows([_Row(uuid.UUID(int=number))], ("created_at",), (column_kind("UUID"),))
    assert encoded == (number >> 64).to_bytes(8, "little") + (number & (2**64 - 1)).to_bytes(8, "little")


def test_values_of_the_wrong_type_are_refused() -> None:
    with pytest.raises(TypeError, match="expected a UUID, got str"):
        encode_rows([_Row("00112233-4455-6677-8899-aabbccddeeff")], ("created_at",), (column_kind("UUID"),))
    with pytest.raises(TypeError, match="expected a str, got NoneType"):
        encode_rows([_Row(None)], ("created_at",), (column_kind("String"),))
    with pytest.raises(OverflowError):
        encode_rows([_Row(2**64)], ("created_at",), (column_kind("UInt64"),))
    with pytest.raises(OverflowError):
        encode_rows([_Row(-1)], ("created_at",), (column_kind("UInt64"),))


def test_column_kinds_name_what_they_cannot_write() -> None:
    assert column_kind("Nullable(String)") == column_kind("String") | 8
    assert column_kind("LowCardinality(String)") == column_kind("String")
    with pytest.raises(ValueError, match="no encoding for ClickHouse type Float64"):
        column_kind("Float64")


@settings(max_examples=200, deadline=None)
@given(st.text(), st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2299, 12, 31),
                               timezones=st.just(UTC)),
       st.integers(min_value=0, max_value=2**64 - 1), st.uuids() | st.none())
def test_any_event_encodes_as_its_fields_in_order(data, created_at, lsn, campaign_id) -> None:
    event = with_values(1, data=data, created_at=created_at, source_lsn=lsn, campaign_id=campaign_id)
    encoded = encode_rows([event], ("data", "created_at", "source_lsn", "campaign_id"),
                          tuple(map(column_kind, ("String", "DateTime64(6, 'UTC')", "UInt64", "Nullable(UUID)"))))
    text = data.encode()
    length = _leb128(len(text))
    micros = (created_at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    uuid_part = b"\x01" if campaign_id is None else b"\x00" + campaign_id.bytes[7::-1] + campaign_id.bytes[:7:-1]
    assert encoded == length + text + micros.to_bytes(8, "little", signed=True) + lsn.to_bytes(8, "little") + uuid_part


class _Row(msgspec.Struct):
    created_at: object


class _PlainRow:
    """A record that is not a Struct: its values are found by attribute name."""

    def __init__(self, number: int) -> None:
        self.number = number

    @property
    def text(self) -> str:
        return f"row {self.number}"


class _Numbered(msgspec.Struct):
    number: int
    text: str


def test_a_block_reads_each_record_as_its_own_type_holds_its_fields() -> None:
    kinds = (column_kind("UInt64"), column_kind("String"))
    one_row = [encode_rows([record], ("number", "text"), kinds)
               for record in (_Numbered(1, "row 1"), _PlainRow(2), _Numbered(3, "row 3"))]
    assert one_row == [(1).to_bytes(8, "little") + b"\x05row 1", (2).to_bytes(8, "little") + b"\x05row 2",
                       (3).to_bytes(8, "little") + b"\x05row 3"]
    mixed = [_Numbered(1, "row 1"), _PlainRow(2), _Numbered(3, "row 3")]
    assert encode_rows(mixed, ("number", "text"), kinds) == b"".join(one_row)
    assert encode_rows([_PlainRow(2), _Numbered(1, "row 1")], ("number", "text"), kinds) == one_row[1] + one_row[0]


def test_a_block_past_its_first_guess_of_size_is_its_rows_in_order() -> None:
    # the block starts at 256 bytes a row and grows as rows of 2 kB each are written
    kinds = (column_kind("UInt64"), column_kind("String"))
    records = [_Numbered(number, f"{number:04d}" * 512) for number in range(1_000)]
    one_by_one = [encode_rows([record], ("number", "text"), kinds) for record in records]
    assert encode_rows(records, ("number", "text"), kinds) == b"".join(one_by_one)
    assert len(one_by_one[7]) == 8 + 2 + 2048
    assert encode_rows([], ("number", "text"), kinds) == b""


def _leb128(number: int) -> bytes:
    out = bytearray()
    while number >= 0x80:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)

