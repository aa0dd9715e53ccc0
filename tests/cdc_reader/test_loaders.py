"""Text-format values through a real server: what the decoder and assembler produce must equal
what psycopg's SELECT returns for the same rows; and the values psycopg cannot load."""

import math
import pickle
import secrets
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal

import psycopg
from psycopg.rows import dict_row

from cdc_reader.changes import Change
from cdc_reader.loaders import RowLoader
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


def load(type_oid: int, text: str):
    (value,) = RowLoader([type_oid]).load((text.encode(),))
    return value


def test_values_psycopg_cannot_load():
    assert load(1114, "infinity") == datetime.max and load(1114, "-infinity") == datetime.min
    assert load(1184, "infinity") == datetime.max.replace(tzinfo=timezone.utc)
    assert load(1184, "-infinity") == datetime.min.replace(tzinfo=timezone.utc)
    assert load(1082, "infinity") == date.max and load(1082, "-infinity") == date.min
    assert load(1114, "0044-03-15 12:00:00 BC") == "0044-03-15 12:00:00 BC"
    assert load(1082, "10000-01-01") == "10000-01-01"
    assert load(1700, "Infinity") == Decimal("Infinity")
    assert load(1700, "NaN").is_nan()
    assert math.isnan(load(701, "NaN"))


def test_a_row_with_an_unrepresentable_value_keeps_the_others_typed():
    loader = RowLoader([23, 1114, 1082, 25])
    assert loader.load((b"1", b"infinity", b"0044-03-15 BC", b"t")) == [
        1, datetime.max, "0044-03-15 BC", "t"]
    assert loader.load((b"2", None, b"2024-02-29", None)) == (2, None, date(2024, 2, 29), None)


def test_unknown_types_stay_text():
    assert load(16385, "happy") == "happy"  # an enum
    assert load(1186, "1 day 02:00:00") == "1 day 02:00:00"  # interval: psycopg would give timedelta
    assert load(1007, "{1,2}") == "{1,2}"  # int4[]: psycopg would give a list
    assert load(25, "Zoë 🎉") == "Zoë 🎉"


def test_timestamptz_is_aware_utc():
    assert load(1184, "2025-07-01 11:45:00+05:45") == datetime(2025, 7, 1, 6, 0, tzinfo=timezone.utc)
    assert load(1184, "2025-07-01 11:45:00+00").tzinfo is timezone.utc


def test_json_keeps_integers_beyond_64_bits_exact():
    doc = '{"low": -9223372036854775809, "high": 18446744073709551616}'
    assert load(3802, doc) == {"low": -9223372036854775809, "high": 18446744073709551616}
    assert load(3802, '{"a": [1, 2.5, true, null, "é"]}') == {"a": [1, 2.5, True, None, "é"]}
    assert load(114, '[1e400, -1e400]') == [math.inf, -math.inf]  # as json.loads reads them
    assert load(3802, "null") is None


def test_uuids_are_the_same_values_uuid_builds():
    text = "8f73557f-1172-4317-a607-77ccce45d856"
    parsed = load(2950, text)
    assert type(parsed) is uuid.UUID and parsed == uuid.UUID(text)
    assert hash(parsed) == hash(uuid.UUID(text)) and str(parsed) == text
    assert parsed.is_safe is uuid.SafeUUID.unknown
    assert pickle.loads(pickle.dumps(parsed)) == parsed
    assert load(2950, "00000000-0000-0000-0000-000000000000") == uuid.UUID(int=0)
