"""Text-format values through a real server: what the decoder and assembler produce must equal
what psycopg's SELECT returns for the same rows."""

import math
import pickle
import secrets
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal

import psycopg
from psycopg.rows import dict_row

from cdc_reader.changes import Change
from cdc_reader.values import StreamConverters, converter_for
from tests.cdc_reader.test_assembler import create_slot, peek_envelopes

EDGE_TABLE = """
CREATE TABLE edge (
    id int PRIMARY KEY, u uuid, t text, v varchar(255), small int2, medium int4, large int8,
    flag bool, ts timestamp, tstz timestamptz, day date, doc json, docb jsonb, amount numeric,
    ratio float8, raw bytea
)
"""

ROWS = [
    "(1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    "(2, '00000000-0000-0000-0000-000000000000', '', '', 0, 0, 0, false, '2024-02-29 23:59:59.999999',"
    " '1999-12-31 23:59:59.000001+05:30', '0001-01-01', '\"\"', '{}', 0, 0, '')",
    "(3, 'ffffffff-ffff-ffff-ffff-ffffffffffff', 'Zoë 🎉 日本語 \"quoted\" \\back', 'ünïcødé 👩‍👩‍👧',"
    " -32768, -2147483648, -9223372036854775808, true, '1900-01-01 00:00:00.000001',"
    " '1900-01-01 00:00:00+00', '9999-12-31', '[1, 2.5, \"x\", null]',"
    " '{\"big\": 123456789012345678901234567890, \"f\": 1.5e300, \"g\": 0.1, \"e\": \"🎉\"}',"
    " '-12345678901234567890.123456789012345678901234567890', -1.5e-300, '\\x00ff10')",
    "(4, gen_random_uuid(), repeat('long ', 2000), 'v', 32767, 2147483647, 9223372036854775807,"
    " true, '2025-03-01 12:34:56', '2025-06-30 23:00:00.5-07', '2000-02-29',"
    " '{\"nested\": {\"a\": [[]]}}', %s, '1e-20', 1e308, NULL)",
]


def test_decoded_values_equal_what_psycopg_selects(voucher_db):
    voucher_db.execute(EDGE_TABLE)
    slot = create_slot(voucher_db, "edge")
    megabyte_json = psycopg.types.json.Jsonb({"blob": secrets.token_hex(512 * 1024), "n": -1})
    with voucher_db.connect() as conn:
        conn.execute("INSERT INTO edge VALUES " + ", ".join(ROWS), (megabyte_json,))
        conn.commit()
        selected = conn.cursor(row_factory=dict_row).execute(
            "SELECT * FROM edge ORDER BY id").fetchall()

    # an unusual session time zone: offsets with minutes and, in 1900, local mean time seconds
    for time_zone in ("Asia/Kathmandu", "Europe/Amsterdam"):
        changes = [e for e in peek_envelopes(voucher_db, slot, time_zone) if isinstance(e, Change)]
        assert [change.after for change in changes] == selected
    assert len(selected[3]["docb"]["blob"]) == 1024 * 1024
    assert selected[2]["docb"]["big"] == 123456789012345678901234567890
    assert selected[2]["ts"] == datetime(1900, 1, 1, 0, 0, 0, 1)


def test_values_psycopg_cannot_load():
    timestamp, timestamptz, day = converter_for(1114), converter_for(1184), converter_for(1082)
    assert timestamp("infinity") == datetime.max and timestamp("-infinity") == datetime.min
    assert timestamptz("infinity") == datetime.max.replace(tzinfo=timezone.utc)
    assert day("-infinity") == date.min
    assert timestamp("0044-03-15 12:00:00 BC") == "0044-03-15 12:00:00 BC"
    assert day("10000-01-01") == "10000-01-01"
    assert converter_for(1700)("Infinity") == Decimal("Infinity")
    assert converter_for(1700)("NaN").is_nan()
    assert math.isnan(converter_for(701)("NaN"))


def test_unknown_types_stay_text():
    assert converter_for(16385)("happy") == "happy"  # an enum
    assert converter_for(1186)("1 day 02:00:00") == "1 day 02:00:00"  # interval
    assert converter_for(25)("text") == "text"


def test_json_keeps_integers_beyond_64_bits_exact():
    parse = converter_for(3802)
    assert parse('{"low": -9223372036854775809, "high": 18446744073709551616}') == {
        "low": -9223372036854775809, "high": 18446744073709551616}
    assert parse('{"a": [1, 2.5, true, null, "é"]}') == {"a": [1, 2.5, True, None, "é"]}


def test_uuids_are_the_same_values_uuid_builds():
    text = "8f73557f-1172-4317-a607-77ccce45d856"
    for parse in (converter_for(2950), StreamConverters().for_type(2950)):
        parsed = parse(text)
        assert type(parsed) is uuid.UUID and parsed == uuid.UUID(text)
        assert hash(parsed) == hash(uuid.UUID(text)) and str(parsed) == text
        assert parsed.is_safe is uuid.SafeUUID.unknown
        assert pickle.loads(pickle.dumps(parsed)) == parsed
    assert converter_for(2950)("00000000-0000-0000-0000-000000000000") == uuid.UUID(int=0)


def test_stream_converters_remember_recent_ids_only():
    converters = StreamConverters(remembered_ids=2)
    parse = converters.for_type(2950)
    first = parse("00000000-0000-0000-0000-000000000001")
    assert parse("00000000-0000-0000-0000-000000000001") is first
    parse("00000000-0000-0000-0000-000000000002")
    parse("00000000-0000-0000-0000-000000000003")  # past the capacity: memory starts over
    again = parse("00000000-0000-0000-0000-000000000001")
    assert again == first and again is not first
    assert converters.for_type(1082) is converter_for(1082)
