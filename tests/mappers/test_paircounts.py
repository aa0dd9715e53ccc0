"""The snapshot pairing's in-memory counts (mappers/paircounts.pyx) against a dict."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from mappers.paircounts import PairCounts

TYPES = ("customer.created", "customer.redemption.succeeded", "customer.segment.entered")
# ids that differ only in one half, at either end of the range, or not at all
CUSTOMERS = st.sampled_from([0, 1, 2**64, 2**64 + 1, 2**128 - 1, 2**127, 0xFFFF_FFFF_FFFF_FFFF]) | st.integers(0, 2**128 - 1)
OPERATIONS = st.lists(st.tuples(st.booleans(), CUSTOMERS, st.sampled_from(TYPES)), max_size=300)


@settings(max_examples=200, deadline=None)
@given(OPERATIONS)
def test_counts_and_takes_as_a_dict_does(operations):
    counts, model = PairCounts(), Counter()
    for adding, customer, event_type in operations:
        if adding:
            counts.add(customer, event_type)
            model[customer, event_type] += 1
        else:
            left = model[customer, event_type]
            assert counts.take(customer, event_type) is (left > 0)
            model[customer, event_type] = max(left - 1, 0)
    ids, values = counts.drain()
    drained = Counter({(int.from_bytes(ids[16 * at:16 * at + 16]), event_type): count
                       for at, (event_type, count) in enumerate(values)})
    assert len(ids) == 16 * len(values)
    assert drained == +model
    assert len(counts) == 0 and counts.drain() == (b"", [])


def test_a_million_pairs_grow_the_table_and_all_come_back():
    counts = PairCounts()
    for customer in range(0, 2**100 * 1_000_000, 2**100):  # ids that differ only in their high half
        counts.add(customer, "customer.created")
    counts.add(5 * 2**100, "customer.created", 2)
    assert len(counts) == 1_000_000
    assert [counts.take(5 * 2**100, "customer.created") for _ in range(4)] == [True, True, True, False]
    assert counts.take(5 * 2**100, "customer.updated") is False
    ids, values = counts.drain()
    assert len(values) == 999_999  # the taken pair is left out
    assert sorted(int.from_bytes(ids[at:at + 16]) for at in range(0, len(ids), 16)) == [
        customer for customer in range(0, 2**100 * 1_000_000, 2**100) if customer != 5 * 2**100]
    assert {event_type for event_type, _count in values} == {"customer.created"}
    assert {count for _event_type, count in values} == {1}
