"""Capture real pgoutput messages from a throwaway PostgreSQL 18 and write tests/cdc_reader/captured.py.

Run `.venv/bin/python -m tests.cdc_reader.capture_messages` from the repository root. It needs no
replication connection: `pg_logical_slot_get_binary_changes` returns each pgoutput message as
bytea. Each scenario runs its SQL, then reads (and consumes) the slot, so every scenario starts a
fresh decoding context and re-sends its Relation messages. Alongside the bytes it records facts
obtained independently of pgoutput (xids from pg_current_xact_id(), commit times from
track_commit_timestamp, OIDs from regclass/regtype, the LSN column of each row), so the tests can
check the decoder against the server rather than against itself.
"""

from __future__ import annotations

import shutil
import tempfile
import textwrap
from pathlib import Path

import psycopg

from demo.embedded_pg import LocalPostgres, wheel_installation

OUTPUT = Path(__file__).with_name("captured.py")

SETUP = """
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE TABLE item (id int PRIMARY KEY, name text, price numeric(10, 2), mood mood, body text,
                   data jsonb);
CREATE TABLE item_full (id int PRIMARY KEY, note varchar(20));
ALTER TABLE item_full REPLICA IDENTITY FULL;
CREATE TABLE big (id int PRIMARY KEY, payload text);
CREATE PUBLICATION pub FOR TABLE item, item_full, big;
"""

# 80 md5 digests: 2560 bytes pglz cannot shrink, so the value is stored out of line (TOASTed).
INCOMPRESSIBLE = "(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 80) i)"
BIG_INSERT = "INSERT INTO big SELECT g, repeat('x', 1000) FROM generate_series({0}, {1}) g"

# (name, slot, extra options, statements run as one transaction each unless listed as a block)
SCENARIOS: list[tuple[str, str, dict[str, str], list[str]]] = [
    ("insert", "plain", {}, [
        f"INSERT INTO item VALUES (1, 'Zoë 🎉', 12.50, 'happy', {INCOMPRESSIBLE}, "
        "'{\"a\": [1, true, null]}')",
    ]),
    ("insert_binary", "plain", {"binary": "true"}, [
        "INSERT INTO item VALUES (7, 'b', -3.25, 'sad', NULL, '{}')",
    ]),
    ("update_toast_unchanged", "plain", {}, ["UPDATE item SET name = 'renamed' WHERE id = 1"]),
    ("update_key", "plain", {}, ["UPDATE item SET id = 2 WHERE id = 1"]),
    ("full_identity", "plain", {}, [
        "INSERT INTO item_full VALUES (1, 'first')",
        "UPDATE item_full SET note = 'second' WHERE id = 1",
        "DELETE FROM item_full WHERE id = 1",
        "DELETE FROM item WHERE id = 2",
    ]),
    ("messages", "plain", {}, [
        "SELECT pg_logical_emit_message(false, 'voucher', '\\x00ff'::bytea)",
        "BEGIN",
        "SELECT pg_logical_emit_message(true, 'voucher', 'in a transaction')",
        "INSERT INTO item_full VALUES (2, 'with message')",
        "COMMIT",
    ]),
    ("alter_table", "plain", {}, [
        "ALTER TABLE item_full ADD COLUMN score bigint",
        "INSERT INTO item_full VALUES (3, 'altered', -9223372036854775808)",
    ]),
    ("truncate", "plain", {}, ["TRUNCATE item, item_full RESTART IDENTITY CASCADE"]),
    ("origin", "plain", {}, [
        "SELECT pg_replication_origin_create('upstream')",
        "SELECT pg_replication_origin_session_setup('upstream')",
        "BEGIN",
        "SELECT pg_replication_origin_xact_setup('0/ABCDEF0', '2024-01-02 03:04:05+00')",
        "INSERT INTO item_full VALUES (4, 'replayed', 4)",
        "COMMIT",
        "SELECT pg_replication_origin_session_reset()",
    ]),
    ("stream_commit", "plain", {"streaming": "on"}, [BIG_INSERT.format(1, 150)]),
    ("stream_subtransaction_abort", "plain", {"streaming": "on"}, [
        "BEGIN",
        BIG_INSERT.format(1001, 1150),
        "SAVEPOINT inner_work",
        BIG_INSERT.format(2001, 2150),
        "ROLLBACK TO SAVEPOINT inner_work",
        "COMMIT",
    ]),
    # PostgreSQL 18 discards a top-level transaction that is already aborted when decoding
    # reaches it, so only a subtransaction abort can be captured through the SQL interface.
    ("stream_abort_parallel", "plain", {"streaming": "parallel"}, [
        "BEGIN",
        BIG_INSERT.format(3001, 3150),
        "SAVEPOINT inner_work",
        BIG_INSERT.format(3501, 3650),
        "ROLLBACK TO SAVEPOINT inner_work",
        "COMMIT",
    ]),
    ("prepare_commit", "twophase", {"two_phase": "on"}, [
        "BEGIN",
        "INSERT INTO item_full VALUES (10, 'prepared', 10)",
        "PREPARE TRANSACTION 'gid-commit'",
        "COMMIT PREPARED 'gid-commit'",
    ]),
    ("prepare_rollback", "twophase", {"two_phase": "on"}, [
        "BEGIN",
        "INSERT INTO item_full VALUES (11, 'rolled back', 11)",
        "PREPARE TRANSACTION 'gid-rollback'",
        "ROLLBACK PREPARED 'gid-rollback'",
    ]),
    ("stream_prepare", "twophase", {"two_phase": "on", "streaming": "on"}, [
        "BEGIN",
        BIG_INSERT.format(4001, 4150),
        "PREPARE TRANSACTION 'gid-stream'",
        "COMMIT PREPARED 'gid-stream'",
    ]),
]


def capture() -> str:
    root = Path(tempfile.mkdtemp(prefix="va-capture-"))
    cluster = LocalPostgres(
        wheel_installation(), root / "pg",
        settings={"max_prepared_transactions": "10", "track_commit_timestamp": "on"},
    )
    cluster.init()
    cluster.start()
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute(SETUP)
            conn.execute("SELECT pg_create_logical_replication_slot('plain', 'pgoutput')")
            conn.execute("SET logical_decoding_work_mem = '64kB'")
            facts = {
                "server_version": conn.info.server_version,
                "item_oid": _one(conn, "SELECT 'item'::regclass::oid"),
                "item_full_oid": _one(conn, "SELECT 'item_full'::regclass::oid"),
                "big_oid": _one(conn, "SELECT 'big'::regclass::oid"),
                "mood_oid": _one(conn, "SELECT 'mood'::regtype::oid"),
            }
            sections = [_render_scenario(conn, *scenario) for scenario in SCENARIOS]
        return _render_module(facts, sections)
    finally:
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)


def _render_scenario(conn: psycopg.Connection, name: str, slot: str, options: dict[str, str],
                     statements: list[str]) -> str:
    if slot == "twophase" and not _one(conn, "SELECT count(*) FROM pg_replication_slots "
                                             "WHERE slot_name = 'twophase'"):
        # created late so that it sees only the two-phase scenarios
        conn.execute("SELECT pg_create_logical_replication_slot('twophase', 'pgoutput', false, true)")
    for statement in statements:
        conn.execute(statement)
    option_args = ["proto_version", "4", "publication_names", "pub", "messages", "true"]
    for key, value in options.items():
        option_args += [key, value]
    rows = conn.execute(
        "SELECT lsn::text, xid::text, data FROM pg_logical_slot_get_binary_changes("
        f"%s, NULL, NULL, {', '.join(['%s'] * len(option_args))})",
        [slot, *option_args],
    ).fetchall()
    rows = _keep_representative(rows)
    commit_times = {
        xid: str(_one(conn, "SELECT pg_xact_commit_timestamp(%s::xid)", (xid,)))
        for xid in sorted({row[1] for row in rows} - {None, "0"})
    }
    lines = [f"# {statement}" for statement in statements]
    lines.append(f"# options {options}")
    lines.append(f"# commit timestamps (track_commit_timestamp): {commit_times}")
    lines.append(f"{name.upper()} = [")
    for lsn, xid, data in rows:
        lines.append(f"    # row lsn {lsn}, xid {xid}, type {chr(data[0])!r}")
        chunks = textwrap.wrap(bytes(data).hex(), 88)
        lines.append("    " + "\n    ".join(f'"{chunk}"' for chunk in chunks) + ",")
    lines.append("]")
    return "\n".join(lines)


def _keep_representative(rows: list) -> list:
    """Streamed transactions send hundreds of identical inserts: keep only the first Insert of
    each stream segment, so the file stays small; everything outside streams is kept."""
    kept, in_stream, insert_kept = [], False, False
    for row in rows:
        kind = chr(row[2][0])
        if kind == "I" and in_stream and insert_kept:
            continue
        in_stream = kind in "SRIUDTMY" and (in_stream or kind == "S")
        insert_kept = in_stream and (insert_kept or kind == "I")
        kept.append(row)
    return kept


def _render_module(facts: dict, sections: list[str]) -> str:
    header = f'''"""pgoutput messages captured from a real PostgreSQL server, as hex (proto_version 4).

Written by tests/cdc_reader/capture_messages.py (run `.venv/bin/python -m
tests.cdc_reader.capture_messages`); do not edit by hand. Each list holds the messages one
scenario produced, in order, as returned by pg_logical_slot_get_binary_changes; streamed
transactions keep only the first Insert of each stream segment. The comments record
facts queried independently of pgoutput.
"""

FACTS = {facts!r}
'''
    return header + "\n\n" + "\n\n".join(sections) + "\n"


def _one(conn: psycopg.Connection, sql: str, params: tuple = ()):
    return conn.execute(sql, params).fetchone()[0]


if __name__ == "__main__":
    OUTPUT.write_text(capture())
    print(f"wrote {OUTPUT}")
