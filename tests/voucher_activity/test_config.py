"""Settings parsed once at the edge (SPEC §2): the reference state's cache size, the SQL endpoint's address."""

from __future__ import annotations

import pytest

from voucher_activity.config import ConfigError, build_settings, parse_size, state_levels


@pytest.mark.parametrize(
    ("text", "size"),
    [("512MiB", 512 * 2**20), ("1GiB", 2**30), ("300MB", 300_000_000), ("64 mib", 64 * 2**20),
     ("268435456", 268_435_456), ("2048KiB", 2 * 2**20), ("5GB", 5_000_000_000)],
)
def test_sizes(text, size):
    assert parse_size(text, "--state-cache/VA_STATE_CACHE") == size


@pytest.mark.parametrize("text", ["", "MiB", "1.5GiB", "-1MiB", "12 parsecs", "1TiB"])
def test_what_is_not_a_size_is_refused_naming_the_flag(text):
    with pytest.raises(ConfigError) as refused:
        build_settings({"state-cache": text or " "})
    assert str(refused.value) == (
        f"--state-cache/VA_STATE_CACHE: {text or ' '!r} is not a size (e.g. 512MiB, 1GiB, 300MB)")


def test_the_default_and_the_floor():
    assert build_settings({}).state_cache == 2**30
    assert build_settings({"state-cache": "16MiB"}).state_cache == 16 * 2**20
    with pytest.raises(ConfigError, match=r"^--state-cache/VA_STATE_CACHE must be at least 16MiB$"):
        build_settings({"state-cache": "15MiB"})


def test_the_budget_is_split_between_rows_their_encodings_and_serialized_objects():
    levels = state_levels(2**30)
    assert levels == (65_536, 640 * 2**20, 256 * 2**20)
    assert (levels.rows, levels.packed_bytes, levels.memo_bytes) == (65_536, 640 * 2**20, 256 * 2**20)
    assert levels.rows * 2048 + levels.packed_bytes + levels.memo_bytes == 2**30


@pytest.mark.parametrize(
    ("text", "tokens", "expected"),
    [(None, None, ("127.0.0.1", 8123)), ("off", None, None), ("OFF", "*=admin", None),
     ("localhost:9000", None, ("localhost", 9000)), ("[::1]:8123", None, ("::1", 8123)),
     ("0.0.0.0:8123", "*=admin", ("0.0.0.0", 8123))],
)
def test_the_sql_endpoint_address(text, tokens, expected):
    assert build_settings({"sql-listen": text, "tokens": tokens}).sql_listen == expected


def test_the_sql_endpoint_needs_tokens_off_loopback():
    with pytest.raises(ConfigError, match=r"^--sql-listen 0\.0\.0\.0:8123 is not loopback but no tokens are configured"):
        build_settings({"sql-listen": "0.0.0.0:8123"})


def test_a_malformed_sql_endpoint_address_names_the_flag():
    with pytest.raises(ConfigError, match=r"^--sql-listen/VA_SQL_LISTEN: '8123' is not HOST:PORT \(e\.g\. 127\.0\.0\.1:8123\)$"):
        build_settings({"sql-listen": "8123"})
