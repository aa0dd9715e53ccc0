"""Reference state and per-transaction scratch: durability only through commit(lsn), a
bounded cache, spilling to SQLite."""

from __future__ import annotations

import sqlite3
import uuid

import pytest

from mappers import state as state_module
from mappers.scratch import Scratch
from mappers.snapshot_matches import SnapshotMatches
from mappers.encoded import ENTRY_OVERHEAD
from mappers.state import ReferenceState


def test_committed_state_survives_reopening(tmp_path):
    state = ReferenceState.open(tmp_path)
    assert state.applied_lsn is None
    state.put("customer", "c1", {"id": "c1", "name": "Ann"})
    state.put("voucher", "v1", {"id": "v1", "holder_id": "c1"})
    state.commit(100)
    state.close()
    reopened = ReferenceState.open(tmp_path)
    assert reopened.applied_lsn == 100
    assert reopened.get("customer", "c1") == {"id": "c1", "name": "Ann"}
    assert reopened.get("voucher", "v1") == {"id": "v1", "holder_id": "c1"}
    assert reopened.get("voucher", "nope") is None


@pytest.mark.parametrize("cache_size", [1, 100])  # 1: every read past the first level
def test_a_row_is_one_row_whether_keyed_by_its_uuid_or_its_text(tmp_path, cache_size):
    import uuid

    state = ReferenceState.open(tmp_path, cache_size=cache_size)
    first, second = uuid.UUID(int=0xA1), uuid.UUID(int=0xB2)
    state.put("customer", first, {"id": first, "name": "Ann"})
    state.put("customer", str(second).upper(), {"id": second, "name": "Bob"})
    state.put("customer", "c3", {"id": "c3"})  # not a UUID: kept as it is
    assert state.get("customer", str(first)) == {"id": first, "name": "Ann"}
    assert state.get("customer", "{" + first.hex + "}") == {"id": first, "name": "Ann"}
    assert state.get("customer", second) == {"id": second, "name": "Bob"}
    state.put("customer", str(first), {"id": first, "name": "Anna"})
    assert state.get("customer", first) == {"id": first, "name": "Anna"}
    state.commit(1)
    stored = state.connection.execute("SELECT key FROM entity WHERE kind = 'customer' ORDER BY rowid").fetchall()
    assert stored == [(first.bytes,), (second.bytes,), ("c3",)]  # a UUID by its bytes, since format 3
    state.close()


def test_uncommitted_state_is_rolled_back(tmp_path):
    state = ReferenceState.open(tmp_path, cache_size=2)
    state.put("customer", "c1", {"id": "c1", "name": "Ann"})
    state.commit(100)
    state.put("customer", "c1", {"id": "c1", "name": "Changed"})
    state.delete("customer", "c1")
    for number in range(10):  # evicts the dirty entries into the open SQLite transaction
        state.put("voucher", f"v{number}", {"id": f"v{number}"})
    assert state.get("customer", "c1") is None
    assert state.get("voucher", "v0") == {"id": "v0"}
    state.close()
    reopened = ReferenceState.open(tmp_path)
    assert reopened.applied_lsn == 100
    assert reopened.get("customer", "c1") == {"id": "c1", "name": "Ann"}
    assert reopened.get("voucher", "v0") is None


def test_rows_written_counts_each_row_once_per_commit(tmp_path):
    state = ReferenceState.open(tmp_path)
    state.put("customer", "c1", {"id": "c1", "name": "Ann"})
    state.put("customer", "c1", {"id": "c1", "name": "Bob"})  # rewritten before the commit
    state.put("customer", "c2", {"id": "c2", "name": "Eve"})
    state.commit(100)
    assert state.rows_written == 2
    state.delete("customer", "c2")
    state.commit(200)
    assert state.rows_written == 3
    state.commit(300)  # nothing changed since
    assert state.rows_written == 3


def test_rollback_forgets_the_cache_too(tmp_path):
    state = ReferenceState.open(tmp_path)
    state.put("tenant", "t", {"name": "acme"})
    state.rollback()
    assert state.get("tenant", "t") is None
    assert state.applied_lsn is None


def test_cache_stays_bounded_and_everything_stays_reachable(tmp_path):
    state = ReferenceState.open(tmp_path, cache_size=50)
    for number in range(5000):
        state.put("customer", str(number), {"id": str(number), "n": number})
        assert len(state._cache) <= 50
    assert all(state.get("customer", str(number)) == {"id": str(number), "n": number}
               for number in range(0, 5000, 7))
    state.commit(7)
    state.close()
    reopened = ReferenceState.open(tmp_path, cache_size=50)
    assert reopened.get("customer", "4999") == {"id": "4999", "n": 4999}
    assert sqlite3.connect(tmp_path / "mapper_state.sqlite3").execute(
        "SELECT count(*) FROM entity").fetchone() == (5000,)


@pytest.mark.parametrize("memory_limit", [100, 1])  # 1: every count goes to SQLite
def test_snapshot_matches_pair_one_to_one(tmp_path, memory_limit):
    import uuid

    c1, c2 = uuid.UUID(int=1), uuid.UUID(int=2)
    matches = SnapshotMatches(ReferenceState.open(tmp_path), memory_limit)
    matches.count(c1, "customer.created")
    matches.count(c1, "customer.segment.entered")
    matches.count(c1, "customer.segment.entered")
    assert matches.take(c1, "customer.created") is True
    assert matches.take(c1, "customer.created") is False
    assert [matches.take(c1, "customer.segment.entered") for _ in range(3)] == [True, True, False]
    assert matches.take(c2, "customer.created") is False
    matches.count(c2, "customer.created")
    matches.clear()
    assert matches.take(c2, "customer.created") is False


def test_snapshot_matches_spilled_counts_add_up_and_come_back_by_prefetch(tmp_path):
    import uuid

    customers = [uuid.UUID(int=number << 100 | number) for number in range(1, 6)]
    matches = SnapshotMatches(ReferenceState.open(tmp_path), memory_limit=3)
    for _round in range(2):  # the same pairs spilled twice: their counts add up on disk
        for customer in customers:
            matches.count(customer, "customer.created")
        matches.count(customers[0], "customer.redemption.succeeded")
    assert matches.spilled is True
    matches.prefetch([(customers[0].int, "customer.created"), (customers[0].int, "customer.redemption.succeeded"),
                      (customers[1].int, "customer.created")])
    assert [matches.take(customers[0], "customer.created") for _ in range(3)] == [True, True, False]
    assert [matches.take(customers[0], "customer.redemption.succeeded") for _ in range(3)] == [True, True, False]
    assert [matches.take(customers[1], "customer.created") for _ in range(3)] == [True, True, False]
    # not prefetched: taken from disk one at a time
    assert [matches.take(customers[4], "customer.created") for _ in range(3)] == [True, True, False]
    assert matches.take(customers[2], "customer.segment.entered") is False


def test_scratch_keeps_order_and_answers_across_a_spill():
    connection = sqlite3.connect(":memory:", isolation_level=None)
    scratch = Scratch(connection, memory_limit=3)
    for number in range(8):
        scratch.add("pending", "", {"n": number})
        scratch.add("emitted", f"k{number % 3}", number)
    assert [value["n"] for value in scratch.values("pending", "")] == list(range(8))
    assert scratch.values("emitted", "k1") == [1, 4, 7]
    assert scratch.has("emitted", "k2") and not scratch.has("emitted", "k3")
    assert len(scratch._memory.get("pending", {}).get("", [])) <= 3
    scratch.clear()
    assert scratch.values("pending", "") == [] and not scratch.has("emitted", "k1")
    assert connection.execute("SELECT count(*) FROM temp.mapper_scratch").fetchone() == (0,)


def test_scratch_values_of_every_kind_come_back_from_disk_as_they_were_added():
    # text and None are stored as themselves, anything else pickled: each comes back equal and
    # of its type, whether read by key or prefetched, and kinds stay apart on disk
    connection = sqlite3.connect(":memory:", isolation_level=None)
    scratch = Scratch(connection, memory_limit=1)
    key = uuid.UUID(int=7)
    values = ["V-1", None, b"raw", ("a", 2), {"n": 1.5}, 12, ""]
    for value in values:
        scratch.add("collect:codes", key, value)
    scratch.add("collect:other", key, "other")
    scratch.add("collect:other", uuid.UUID(int=8), "last")  # spills the one before it
    assert scratch.spilled
    read = scratch.values("collect:codes", key)
    assert read == values and [type(value) for value in read] == [type(value) for value in values]
    assert scratch.values("collect:other", key) == ["other"]
    assert scratch.values("collect:missing", key) == [] and not scratch.has("collect:missing", key)
    scratch.prefetch("collect:codes", [key, uuid.UUID(int=9)])
    connection.execute("DELETE FROM temp.mapper_scratch")  # prefetched: not read again
    assert scratch.values("collect:codes", key) == values
    assert scratch.values("collect:codes", uuid.UUID(int=9)) == []


def test_packed_level_serves_evicted_rows_without_sqlite_and_stays_in_budget(tmp_path):
    state = ReferenceState.open(tmp_path, cache_size=10, packed_bytes=60_000)
    for number in range(1000):
        state.put("customer", str(number), {"id": str(number), "name": "x" * 100})
    state.commit(5)
    # The most recently written stay (evictions first, then the commit's ten), ~230 of them:
    # served from the packed level, they are gone from SQLite and still there.
    state.connection.execute("DELETE FROM entity WHERE key IN ('800', '900', '989', '3')")
    assert state.get("customer", "800") == {"id": "800", "name": "x" * 100}
    assert state.get("customer", "900") == {"id": "900", "name": "x" * 100}
    assert state.get("customer", "989") == {"id": "989", "name": "x" * 100}
    assert state.get("customer", "3") is None  # past the budget: read from SQLite, gone there
    assert state.get("customer", "4") == {"id": "4", "name": "x" * 100}


def test_packed_level_never_serves_a_replaced_or_deleted_row(tmp_path):
    state = ReferenceState.open(tmp_path, cache_size=1, packed_bytes=1_000_000)
    state.put("customer", "c1", {"name": "Ann"})
    state.put("customer", "c2", {"name": "Bob"})
    state.commit(1)
    state.put("customer", "c1", {"name": "Changed"})
    state.delete("customer", "c2")
    state.put("voucher", "v", {})  # evicts c2's deletion into SQLite and the packed level
    state.put("voucher", "w", {})
    assert state.get("customer", "c1") == {"name": "Changed"}
    assert state.get("customer", "c2") is None
    state.rollback()  # the packed level held the uncommitted writes: forgotten too
    assert state.get("customer", "c1") == {"name": "Ann"}
    assert state.get("customer", "c2") == {"name": "Bob"}


def test_added_rows_read_back_like_put_ones_and_a_later_put_wins(tmp_path, monkeypatch):
    monkeypatch.setattr(state_module, "ADD_BATCH", 3)
    state = ReferenceState.open(tmp_path, cache_size=2, packed_bytes=10_000)
    assert state.get("customer", "c9") is None  # known to be absent, then added
    for number in range(10):
        state.add("customer", f"c{number}", {"id": f"c{number}", "name": "added"})
    state.put("customer", "c1", {"id": "c1", "name": "put"})  # c1 is on disk already
    state.add("customer", "c10", {"id": "c10", "name": "added"})
    state.put("customer", "c10", {"id": "c10", "name": "put"})  # c10 is not written yet
    for number in range(3):  # the puts are evicted to disk before the next adds are written
        state.put("voucher", f"v{number}", {"id": f"v{number}"})
    for number in range(11, 14):  # rows no one reads soon: not kept encoded, read back from disk
        state.add("customer", f"c{number}", {"id": f"c{number}", "name": "added"}, keep=False)
    names = ["added", "put", *["added"] * 8, "put", "added", "added", "added"]
    assert [state.get("customer", f"c{number}")["name"] for number in range(14)] == names
    state.commit(7)
    state.add("customer", "c20", {"id": "c20"})
    state.rollback()
    assert state.get("customer", "c20") is None
    state.close()
    reopened = ReferenceState.open(tmp_path, cache_size=2)
    assert [reopened.get("customer", f"c{number}")["name"] for number in range(14)] == names
    assert reopened.get("customer", "c20") is None
    assert reopened.get("voucher", "v2") == {"id": "v2"}
    reopened.close()


def test_peek_answers_as_get_from_every_level(tmp_path, monkeypatch):
    import uuid

    monkeypatch.setattr(state_module, "ADD_BATCH", 3)
    state = ReferenceState.open(tmp_path, cache_size=2, packed_bytes=300)
    keys = [uuid.UUID(int=number) for number in range(1, 9)]
    for key in keys[:4]:  # put, then evicted: some kept encoded, the rest on disk only
        state.put("customer", key, {"id": key, "name": f"put {key.int}"})
    for key in keys[4:7]:  # added: written in one batch of three
        state.add("customer", key, {"id": key, "name": f"added {key.int}"})
    state.commit(5)
    state.add("customer", keys[7], {"id": keys[7], "name": "not written yet"})
    state.delete("customer", keys[0])
    state.put("customer", keys[1], {"id": keys[1], "name": "changed"})
    expected = [None, "changed", "put 3", "put 4", "added 5", "added 6", "added 7", "not written yet"]
    assert [(state.peek("customer", key) or {}).get("name") for key in keys] == expected
    assert [(state.peek("customer", str(key)) or {}).get("name") for key in keys] == expected
    assert [(state.get("customer", key) or {}).get("name") for key in keys] == expected
    assert state.peek("customer", uuid.UUID(int=99)) is None
    state.close()


def test_rows_round_trip_with_uuids(tmp_path):
    import uuid
    from datetime import datetime

    identifier = uuid.UUID("0b6c2d4e-8f10-4a12-b314-5c6d7e8f9a0b")
    row = {"id": identifier, "at": datetime(2024, 3, 1, 9, 30), "metadata": {"n": 1}}
    state = ReferenceState.open(tmp_path, cache_size=1)
    state.put("customer", identifier, row)
    state.commit(1)
    state.close()
    reopened = ReferenceState.open(tmp_path, cache_size=1)
    loaded = reopened.get("customer", identifier)
    assert loaded == row and type(loaded["id"]) is uuid.UUID and hash(loaded["id"]) == hash(identifier)
    assert str(loaded["id"]) == "0b6c2d4e-8f10-4a12-b314-5c6d7e8f9a0b"


_FORMAT_1_ENTITY = """CREATE TABLE entity (
    kind TEXT NOT NULL, key TEXT NOT NULL, row BLOB NOT NULL, PRIMARY KEY (kind, key)
) WITHOUT ROWID"""
_FORMAT_1_SCHEMA = f"""
CREATE TABLE meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID;
{_FORMAT_1_ENTITY};
CREATE TABLE snapshot_match (
    customer_id TEXT NOT NULL, type TEXT NOT NULL, business INTEGER NOT NULL,
    PRIMARY KEY (customer_id, type)
) WITHOUT ROWID;
"""


def _schema(path):
    with sqlite3.connect(path) as connection:
        return connection.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = 'entity' ORDER BY type DESC").fetchall()


@pytest.mark.parametrize(("entity", "format_row", "named"), [
    (_FORMAT_1_ENTITY, None, 1),  # files without a format row
    ("CREATE TABLE entity (kind TEXT NOT NULL, key TEXT NOT NULL, row BLOB NOT NULL, UNIQUE (kind, key))", 2, 2),
])
def test_a_file_of_another_format_is_refused_and_left_as_it_was(tmp_path, entity, format_row, named):
    path = tmp_path / "mapper_state.sqlite3"
    with sqlite3.connect(path) as old:
        old.executescript(_FORMAT_1_SCHEMA.replace(_FORMAT_1_ENTITY, entity))
        old.execute("INSERT INTO entity VALUES ('customer', 'c1', x'80')")
        if format_row is not None:
            old.execute("INSERT INTO meta VALUES ('format', ?)", (format_row,))
    with pytest.raises(state_module.StateFormatError) as refused:
        ReferenceState.open(tmp_path)
    assert str(refused.value) == (
        f"the reference state {path} has format {named}, not 3; rebuild it (README, \"Rebuilding\")")
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT * FROM entity").fetchall() == [("customer", "c1", b"\x80")]


def test_a_new_file_has_the_rowid_layout_and_a_bounded_page_cache(tmp_path):
    state = ReferenceState.open(tmp_path)
    assert _schema(tmp_path / "mapper_state.sqlite3")[0][2] == (
        "CREATE TABLE entity (kind TEXT NOT NULL, key TEXT NOT NULL, row BLOB NOT NULL, UNIQUE (kind, key))")
    assert state.connection.execute("SELECT name, value FROM meta").fetchall() == [("format", 3)]
    assert state.connection.execute("PRAGMA cache_size").fetchone() == (-32768,)  # KiB: 32 MB
    state.close()
    reopened = ReferenceState.open(tmp_path)  # already format 3: nothing to do
    assert reopened.connection.execute("SELECT name, value FROM meta").fetchall() == [("format", 3)]


def test_the_wal_is_copied_into_the_file_off_the_committing_thread(tmp_path, monkeypatch):
    import threading

    monkeypatch.setattr(state_module, "_CHECKPOINT_PAGES", 500)  # 2 MB of 4 kB pages
    state = ReferenceState.open(tmp_path, cache_size=10)
    assert state.connection.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)  # never in a COMMIT
    wal = tmp_path / "mapper_state.sqlite3-wal"
    sizes = []
    for commit in range(30):  # ~1 MB each, committed as fast as they come
        for number in range(250):
            state.put("orders", f"o{commit}-{number}", {"id": f"o{commit}-{number}", "note": "x" * 2000})
        state.commit(commit)
        sizes.append(wal.stat().st_size)
    # Copied while the commits went on, the log restarted from its beginning again and again
    # (cut back first): without the copies it would hold all 30 MB.
    assert max(sizes) < 12 * 2**20
    assert sum(1 for before, after in zip(sizes, sizes[1:]) if after < before) >= 3
    assert [thread.name for thread in threading.enumerate()].count("state-checkpoint") == 1
    state.close()
    assert "state-checkpoint" not in [thread.name for thread in threading.enumerate()]
    with sqlite3.connect(tmp_path / "mapper_state.sqlite3") as connection:
        assert connection.execute("SELECT count(*) FROM entity").fetchone() == (7500,)

def test_without_its_own_connection_the_commits_copy_the_wal(tmp_path, monkeypatch, caplog):
    from mappers import walcheckpoint

    monkeypatch.setattr(state_module, "_CHECKPOINT_PAGES", 500)  # 2 MB of 4 kB pages
    state = ReferenceState.open(tmp_path, cache_size=10)

    def refused(*args, **kwargs):
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(walcheckpoint.sqlite3, "connect", refused)
    wal = tmp_path / "mapper_state.sqlite3-wal"
    sizes = []
    for commit in range(12):  # ~1 MB each
        for number in range(250):
            state.put("orders", f"o{commit}-{number}", {"id": f"o{commit}-{number}", "note": "x" * 2000})
        state.commit(commit)
        state.checkpoints.wait()
        sizes.append(wal.stat().st_size)
    assert max(sizes) < 6 * 2**20 and sum(1 for before, after in zip(sizes, sizes[1:]) if after < before) >= 3
    assert "reference state checkpoints run in its commits: unable to open database file" in caplog.text
    state.close()


def test_a_read_that_misses_the_caches_runs_in_the_open_transaction(tmp_path):
    state = ReferenceState.open(tmp_path, cache_size=2)
    state.put("customer", "c1", {"name": "Ann"})
    state.commit(1)
    assert state.connection.in_transaction is False
    assert state.get("customer", "c2") is None  # a miss of both cache levels: SQLite
    assert state.connection.in_transaction is True
    state.commit(2)
    assert state.connection.in_transaction is False
    assert state.get("customer", "c1") == {"name": "Ann"}  # the first level: no SQLite read
    assert state.connection.in_transaction is False


def test_json_null_read_back_from_disk_is_the_one_json_null(tmp_path):
    from mappers.sqltypes import JSON_NULL

    state = ReferenceState.open(tmp_path, cache_size=1)
    state.put("orders", "o1", {"id": "o1", "metadata": JSON_NULL})
    state.commit(1)
    state.close()
    reopened = ReferenceState.open(tmp_path, cache_size=1)
    assert reopened.get("orders", "o1")["metadata"] is JSON_NULL
    reopened.close()


def test_warm_loads_the_newest_rows_up_to_the_encoded_budget(tmp_path):
    import uuid

    state = ReferenceState.open(tmp_path)
    ids = [uuid.UUID(int=number + 1) for number in range(50)]
    for number, customer_id in enumerate(ids):
        state.put("customer", customer_id, {"id": customer_id, "name": f"C{number}"})
    state.put("customer", "text-key", {"id": "text-key"})  # not a UUID: read on demand
    state.commit(7)
    state.close()
    blob = len(sqlite3.connect(tmp_path / state_module.STATE_FILE).execute(
        "SELECT row FROM entity WHERE kind = 'customer' AND key = ?", (ids[-1].bytes,)).fetchone()[0])
    room_for_ten = 10 * (blob + ENTRY_OVERHEAD) + 5
    cold = ReferenceState.open(tmp_path, cache_size=1, packed_bytes=room_for_ten)
    assert cold.warm() == 10
    assert ReferenceState.open(tmp_path / "empty", packed_bytes=room_for_ten).warm() == 0
    assert ReferenceState.open(tmp_path, cache_size=1, packed_bytes=0).warm() == 0
    for number, customer_id in enumerate(ids):  # warm or not, each row reads back as written
        assert cold.get("customer", customer_id) == {"id": customer_id, "name": f"C{number}"}
    assert cold.get("customer", "text-key") == {"id": "text-key"}
    cold.put("customer", ids[-1], {"id": ids[-1], "name": "Changed"})
    assert cold.get("customer", ids[-1]) == {"id": ids[-1], "name": "Changed"}
    cold.rollback()
    assert cold.get("customer", ids[-1]) == {"id": ids[-1], "name": "C49"}
    cold.close()


def test_written_rows_read_back_exactly_whether_a_layout_fits_them_or_not(tmp_path):
    """Rows a commit or a batch of `add`s writes: typed MessagePack where a known layout fits,
    pickled where none does (a lone surrogate, an integer past 64 bits, a column the schema does
    not know, JSON null), a deleted row deleted; each reads back as written after reopening."""
    import uuid
    from datetime import datetime

    from mappers.sqltypes import JSON_NULL

    def customer(number, **values):
        return {"id": uuid.UUID(int=number), "name": f"c{number}", "metadata": {"n": number},
                "created_at": datetime(2024, 3, 1, 9, number % 60), **values}

    rows = {1: customer(1), 2: customer(2, name="\ud800"), 3: customer(3, metadata={"big": 2**70}),
            4: customer(4, added_later="x"), 5: customer(5, metadata=JSON_NULL),
            6: customer(6, created_at=None, name=None)}
    state = ReferenceState.open(tmp_path, packed_bytes=1 << 20)
    for number, row in rows.items():
        state.put("customer", uuid.UUID(int=number), row)
        state.add("customer", uuid.UUID(int=100 + number), {**row, "id": uuid.UUID(int=100 + number)})
    state.put("customer", uuid.UUID(int=7), customer(7))
    state.commit(1)
    state.delete("customer", uuid.UUID(int=7))
    state.commit(2)
    state.close()
    reopened = ReferenceState.open(tmp_path)
    for number, row in rows.items():
        for key, written in ((number, row), (100 + number, {**row, "id": uuid.UUID(int=100 + number)})):
            read = reopened.get("customer", uuid.UUID(int=key))
            assert read == written and list(read) == list(written)
            assert [type(value) for value in read.values()] == [type(value) for value in written.values()]
    assert reopened.get("customer", uuid.UUID(int=7)) is None
    kinds = [blob[0] == 0x80 for (blob,) in reopened.connection.execute(
        "SELECT row FROM entity WHERE kind = 'customer' ORDER BY key")]
    assert kinds == [False, True, True, True, True, False] * 2  # pickled: 2 to 5
    reopened.close()
