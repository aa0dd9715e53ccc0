"""The reference state's row writes on a thread of their own (mappers/entitywrites.py): what they
write is what the rows are, in order, seen by every read, and a failure is never committed; a
commit made behind (`commit_when_stored`) commits what came before it once its events are
stored, nothing after it, and nothing at all when they are not."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from concurrent.futures import Future

import pytest

from mappers.entitywrites import EntityWrites
from mappers.state import ReferenceState


def _entity(connection: sqlite3.Connection) -> list[tuple]:
    return connection.execute("SELECT kind, key, row FROM entity ORDER BY kind, key").fetchall()


@pytest.mark.parametrize("background", [True, False])
def test_jobs_write_their_rows_in_order_text_keys_and_deletes_included(tmp_path, background):
    connection = sqlite3.connect(tmp_path / "state.sqlite3", isolation_level=None, check_same_thread=False)
    connection.execute("CREATE TABLE entity (kind TEXT NOT NULL, key TEXT NOT NULL, row BLOB NOT NULL, "
                       "UNIQUE (kind, key))")
    writes = EntityWrites(connection, background)
    first, second = uuid.UUID(int=1).bytes, uuid.UUID(int=2**128 - 1).bytes

    def spans(*rows):  # (table, key bytes, row bytes) as entity_parameters lays them out
        data, listed = bytearray(), []
        for table, key, row in rows:
            listed.append((table, len(data) + 1, len(row)))
            data += key + row
        return listed, data

    connection.execute("BEGIN")
    writes.submit(*spans(("customer", first, b"\x01ann"), ("voucher", first, b""), ("customer", second, b"bob")),
                  [("segment", "s-1", bytearray(b"seg"))], [])
    # the next job replaces a row of the one before, deletes another and leaves the third
    writes.submit(*spans(("customer", first, b"\x02anna")), [], [("voucher", first), ("segment", "s-1")])
    writes.wait()
    connection.execute("COMMIT")
    assert _entity(connection) == [("customer", first, b"\x02anna"), ("customer", second, b"bob")]
    writes.close()
    connection.close()


def test_rows_an_eviction_writes_are_read_back_at_once(tmp_path):
    # no encoded level: a read past the first level is a SELECT, which must see the rows an
    # eviction has just handed to the writes' thread
    state = ReferenceState.open(tmp_path, cache_size=1_000)
    keys = [uuid.UUID(int=number) for number in range(1, 5_001)]
    read_back = []
    for number, key in enumerate(keys):
        state.put("customer", key, {"id": key, "number": number})
        if number % 1_000 == 0 and number:  # an eviction of the oldest tenth has just been handed over
            read_back.append(state.get("customer", keys[number - 1_000]))
    assert [row["number"] for row in read_back] == [0, 1_000, 2_000, 3_000]
    state.commit(7)
    state.close()
    reopened = ReferenceState.open(tmp_path, cache_size=10)
    assert [reopened.get("customer", key)["number"] for key in keys] == list(range(5_000))
    assert reopened.applied_lsn == 7
    reopened.close()


def test_a_failed_write_is_raised_by_the_commit_which_commits_nothing(tmp_path):
    state = ReferenceState.open(tmp_path, cache_size=10)
    state.put("customer", uuid.UUID(int=1), {"id": uuid.UUID(int=1)})
    state.commit(1)
    refused = uuid.UUID(int=99)
    state.connection.execute(  # a failure SQLite raises inside the batch's statement
        f"CREATE TRIGGER refuse BEFORE INSERT ON entity WHEN NEW.key = x'{refused.hex}' "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    for number in range(2, 30):  # evictions hand these to the writes' thread
        state.put("customer", uuid.UUID(int=number), {"id": uuid.UUID(int=number)})
    state.put("customer", refused, {"id": refused})
    with pytest.raises(sqlite3.IntegrityError, match="refused"):
        state.commit(2)
    state.rollback()
    assert state.applied_lsn == 1
    state.close()
    reopened = ReferenceState.open(tmp_path)
    assert reopened.applied_lsn == 1
    assert reopened.connection.execute("SELECT count(*) FROM entity").fetchone() == (1,)
    reopened.close()


def _customers(state: ReferenceState, numbers: range) -> None:
    for number in numbers:
        state.put("customer", uuid.UUID(int=number), {"id": uuid.UUID(int=number), "number": number})


def _stored_numbers(path) -> tuple[int | None, list[int]]:
    state = ReferenceState.open(path, cache_size=10)
    numbers = sorted(row["number"] for key in range(1, 200)
                     if (row := state.get("customer", uuid.UUID(int=key))) is not None)
    applied = state.applied_lsn
    state.close()
    return applied, numbers


def test_a_commit_made_behind_commits_what_came_before_it_once_its_events_are_stored(tmp_path):
    state = ReferenceState.open(tmp_path, cache_size=10)
    _customers(state, range(1, 50))
    stored: Future = Future()
    committed = state.commit_when_stored(5, stored)
    # the state goes on while the commit waits for the store: these rows queue behind it
    going_on = threading.Thread(target=lambda: (_customers(state, range(50, 100)), state.write_changes()))
    going_on.start()
    going_on.join(timeout=30)
    assert not going_on.is_alive() and not committed.done()
    stored.set_result(5)
    committed.result(timeout=30)
    assert state.applied_lsn == 5
    state.close()  # a crash before the next commit: the rows after it are rolled back
    assert _stored_numbers(tmp_path) == (5, list(range(1, 50)))


def test_a_commit_made_behind_whose_events_were_not_stored_commits_nothing(tmp_path):
    state = ReferenceState.open(tmp_path, cache_size=10)
    _customers(state, range(1, 10))
    state.commit(1)
    _customers(state, range(10, 50))
    stored: Future = Future()
    committed = state.commit_when_stored(2, stored)
    stored.set_exception(OSError("the store is gone"))
    with pytest.raises(OSError, match="the store is gone"):
        committed.result(timeout=30)
    with pytest.raises(OSError, match="the store is gone"):  # the state's next write raises it
        _customers(state, range(50, 60))
    with pytest.raises(OSError, match="the store is gone"):  # and no later commit goes through
        state.commit(3)
    state.rollback()
    assert state.applied_lsn == 1
    state.close()
    assert _stored_numbers(tmp_path) == (1, list(range(1, 10)))
