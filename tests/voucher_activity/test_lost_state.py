"""A reader that starts without its local state (a new pod, a lost volume) never drops a slot it
has streamed from and never re-snapshots on top of a stored history (SPEC §7): it refuses to
start, says what happened and what to run, and leaves the slot as it was."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

import psycopg
import pytest

from demo.embedded_pg import free_port
from query.status import ReaderPhase, ReaderProgress
from query.store import Store
from tests.conftest import unique_name
from tests.pipeline_helpers import (
    PipelineThread,
    prepare_source,
    settings_for,
    wait_caught_up,
    wait_streaming,
)
from tests.replication_helpers import confirmed_lsn
from voucher_activity.config import SnapshotMode
from voucher_activity.resume import ReaderStateMissingError, StartAction, start_action

SNAPSHOT = ReaderProgress(ReaderPhase.SNAPSHOT, 0x100)
STREAMING = ReaderProgress(ReaderPhase.STREAMING, 0x200)
NAMES = {"slot": "va", "data_dir": "/data", "database": "voucher_activity"}


@pytest.mark.parametrize(
    ("applied_lsn", "recorded", "slot_exists", "mode", "expected"),
    [
        (0x300, STREAMING, True, SnapshotMode.INITIAL, StartAction.RESUME),
        (0x300, None, True, SnapshotMode.INITIAL, StartAction.RESUME),  # a store from before the record
        (0x300, SNAPSHOT, True, SnapshotMode.INITIAL, StartAction.RESUME),  # crashed before recording streaming
        (None, None, False, SnapshotMode.INITIAL, StartAction.FRESH),
        (None, None, False, SnapshotMode.NEVER, StartAction.FRESH),
        (None, SNAPSHOT, True, SnapshotMode.INITIAL, StartAction.REDO_SNAPSHOT),
        (None, SNAPSHOT, False, SnapshotMode.INITIAL, StartAction.REDO_SNAPSHOT),
        (None, None, True, SnapshotMode.NEVER, StartAction.ADOPT),
    ],
)
def test_start_action(applied_lsn, recorded, slot_exists, mode, expected):
    assert start_action(applied_lsn, recorded, slot_exists, mode, **NAMES) is expected


@pytest.mark.parametrize("slot_exists", [True, False])
@pytest.mark.parametrize("mode", list(SnapshotMode))
def test_a_stored_history_without_local_state_is_refused(slot_exists, mode):
    with pytest.raises(ReaderStateMissingError) as refused:
        start_action(None, STREAMING, slot_exists, mode, **NAMES)
    assert str(refused.value) == (
        "the reference state in /data is missing, but the store already holds the history streamed "
        "from replication slot 'va'; resuming without it would get previous values wrong and a new "
        "snapshot would duplicate that history, so the slot is left untouched: restore the data "
        "directory (keep it on a persistent volume), or rebuild the history from scratch: run "
        "`voucher-activity teardown`, drop the store's database voucher_activity, remove /data and "
        "start again"
    )


def test_an_unrecorded_slot_is_not_dropped_for_a_snapshot():
    with pytest.raises(ReaderStateMissingError, match="replication slot 'va' already exists, but neither"):
        start_action(None, None, True, SnapshotMode.INITIAL, **NAMES)


def _slot(dsn: str, slot: str) -> tuple | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT confirmed_flush_lsn::text, restart_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        ).fetchone()


def _customer(dsn: str, source_id: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO customer (id, source_id, name, tenant_id) "
            "SELECT gen_random_uuid(), %s, 'Ann', id FROM tenant WHERE name = 'acme'", (source_id,))


def _stream_one_customer(dsn: str, command: list[str], port: int, source_id: str, **popen) -> None:
    """Start `run`, write one customer once it streams, stop it gracefully once it is stored."""
    sidecar = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
    try:
        wait_streaming(port)
        _customer(dsn, source_id)
        wait_caught_up(dsn, "voucher_activity")
    finally:
        sidecar.terminate()
        assert sidecar.wait(timeout=60) == 0


def test_run_without_its_data_dir_exits_with_the_sentence_and_leaves_the_slot(voucher_db, tmp_path):
    """Stream, stop, delete the data directory (the store lives elsewhere), write more, start
    again: `run` exits 1 with the sentence, the slot keeps its position and the changes since."""
    prepare_source(voucher_db.dsn)
    voucher_db.execute("INSERT INTO tenant (id, name) VALUES (gen_random_uuid(), 'acme')")
    _customer(voucher_db.dsn, "before")
    port = free_port()
    data_dir = tmp_path / "data"
    command = [sys.executable, "-m", "voucher_activity.cli", "run", "--source", voucher_db.dsn,
               "--store", f"chdb://{tmp_path / 'clickhouse'}", "--data-dir", str(data_dir),
               "--listen", f"127.0.0.1:{port}", "--tokens", "*=admin", "--log-format", "json",
               "--sql-listen", "off"]
    _stream_one_customer(voucher_db.dsn, command, port, "streamed")
    shutil.rmtree(data_dir)
    _customer(voucher_db.dsn, "while stopped")
    before = _slot(voucher_db.dsn, "voucher_activity")

    restarted = subprocess.run(command, capture_output=True, text=True, timeout=120)

    assert restarted.returncode == 1
    assert restarted.stderr.strip().splitlines()[-1] == (
        f"voucher-activity: the reference state in {data_dir} is missing, but the store already "
        "holds the history streamed from replication slot 'voucher_activity'; resuming without it "
        "would get previous values wrong and a new snapshot would duplicate that history, so the "
        "slot is left untouched: restore the data directory (keep it on a persistent volume), or "
        "rebuild the history from scratch: run `voucher-activity teardown`, drop the store's "
        f"database voucher_activity, remove {data_dir} and start again"
    )
    assert _slot(voucher_db.dsn, "voucher_activity") == before
    with psycopg.connect(voucher_db.dsn, autocommit=True) as conn:  # the change is still held
        held = conn.execute(
            "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('voucher_activity', NULL, NULL, "
            "'proto_version', '1', 'publication_names', 'voucher_activity')"
        ).fetchone()[0]
    assert held > 0


def test_a_lost_store_and_state_with_an_existing_slot_is_refused(voucher_db, store_url, tmp_path):
    """The embedded store lives in the data dir: losing the dir loses both. With --snapshot
    initial the slot is neither dropped nor snapshotted over; with --snapshot never the reader
    streams from the slot as it is."""
    prepare_source(voucher_db.dsn)
    voucher_db.execute("INSERT INTO tenant (id, name) VALUES (gen_random_uuid(), 'acme')")
    slot = unique_name("lost")
    with Store.open(store_url) as store, PipelineThread(
        settings_for(voucher_db.dsn, store_url, tmp_path / "first", slot), store
    ) as running:
        running.wait_streaming()
        _customer(voucher_db.dsn, "streamed")
        wait_caught_up(voucher_db.dsn, slot, running=running)
    position = confirmed_lsn(voucher_db.dsn, slot)

    other_store = f"{store_url}_lost"
    with Store.open(other_store) as store:
        running = PipelineThread(settings_for(voucher_db.dsn, other_store, tmp_path / "second", slot), store)
        with pytest.raises(ReaderStateMissingError, match=f"replication slot '{slot}' already exists"):
            with running:
                running.thread.join(timeout=60)
        assert confirmed_lsn(voucher_db.dsn, slot) == position

        with PipelineThread(
            settings_for(voucher_db.dsn, other_store, tmp_path / "third", slot, snapshot="never"), store
        ) as adopted:
            adopted.wait_streaming()
            _customer(voucher_db.dsn, "after")
            wait_caught_up(voucher_db.dsn, slot, running=adopted)
            sources = store.rows(
                "SELECT JSONExtractString(data, 'customer', 'source_id'), source FROM customer_events_dedup "
                "WHERE type = 'customer.created' ORDER BY 1", {})
    assert sources == [("after", "wal")]


def test_everything_run_writes_is_private_to_its_user(voucher_db, tmp_path):
    """SPEC §7: files 0600, directories 0700, whatever the caller's umask."""
    prepare_source(voucher_db.dsn)
    port = free_port()
    data_dir = tmp_path / "data"
    command = [sys.executable, "-m", "voucher_activity.cli", "run", "--source", voucher_db.dsn,
               "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}", "--log-format", "json",
               "--sql-listen", "off"]
    _stream_one_customer(voucher_db.dsn, command, port, "private", preexec_fn=lambda: os.umask(0o022))
    modes = {path.relative_to(data_dir).as_posix(): stat.S_IMODE(path.lstat().st_mode)
             for path in data_dir.rglob("*") if not path.is_symlink()}
    assert "mapper_state.sqlite3" in modes and any(name.startswith("clickhouse/") for name in modes)
    exposed = {name: oct(mode) for name, mode in modes.items() if mode & 0o077}
    assert exposed == {}
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
