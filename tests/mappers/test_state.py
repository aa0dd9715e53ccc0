"""Reference state and per-transaction scratch: durability only through commit(lsn), a
bounded cache, spilling to SQLite."""

from __future__ import annotations

import sqlite3

from mappers.scratch import Scratch
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


def test_snapshot_matches_pair_one_to_one(tmp_path):
    state = ReferenceState.open(tmp_path)
    state.count_snapshot_event("c1", "customer.created")
    state.count_snapshot_event("c1", "customer.segment.entered")
    state.count_snapshot_event("c1", "customer.segment.entered")
    assert state.take_snapshot_match("c1", "customer.created") is True
    assert state.take_snapshot_match("c1", "customer.created") is False
    assert [state.take_snapshot_match("c1", "customer.segment.entered") for _ in range(3)] == [True, True, False]
    assert state.take_snapshot_match("c2", "customer.created") is False


def test_scratch_keeps_order_and_answers_across_a_spill():
    connection = sqlite3.connect(":memory:", isolation_level=None)
    scratch = Scratch(connection, memory_limit=3)
    for number in range(8):
        scratch.add("pending", "", {"n": number})
        scratch.add("emitted", f"k{number % 3}", number)
    assert [value["n"] for _, value in scratch.items("pending")] == list(range(8))
    assert scratch.values("emitted", "k1") == [1, 4, 7]
    assert scratch.has("emitted", "k2") and not scratch.has("emitted", "k3")
    assert len(scratch._memory.get("pending", {}).get("", [])) <= 3
    scratch.clear()
    assert list(scratch.items("pending")) == [] and not scratch.has("emitted", "k1")
    assert connection.execute("SELECT count(*) FROM temp.mapper_scratch").fetchone() == (0,)
