"""Payload objects: shared serialized objects equal to serializing the object in place, and a
changed row never served from the old row's bytes. (Event ids: test_mapper_behaviour.py.)"""

from __future__ import annotations

import hashlib
import pickle
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mappers.eventids import key_text, sha1, spelled

from mappers import load_default_catalog
from mappers.payload import (
    EPOCH,
    EVENT_NAMESPACE,
    SourceIdentity,
    build_object,
    event_time,
    object_resolver,
    serialize,
    snapshot_event_ids,
)
from mappers.state import ReferenceState

SOURCE = SourceIdentity("7400000000000000001", "voucher")


def test_shared_objects_serialize_like_objects_built_in_place(tmp_path):
    spec = load_default_catalog().objects["customer"]
    state = ReferenceState.open(tmp_path, cache_size=1)
    customer = uuid.UUID(int=7)
    state.put("customer", customer, {
        "id": customer, "source_id": "c-7", "name": "Ann", "email": None,
        "metadata": {"b": [1, Decimal("2.5")], "a": datetime(2024, 3, 1, 9, 30)}})
    memo = state.row_memo("customer")
    shared, fresh = object_resolver(spec, state.get, memo), object_resolver(spec, state.get)

    def payload(resolve, target):
        made = resolve(target)
        return serialize({"z": 1, "customer": made, "a": None})

    expected = ('{"a":null,"customer":{"email":null,"id":"00000000-0000-0000-0000-000000000007",'
                '"metadata":{"a":"2024-03-01T09:30:00Z","b":[1,2.5]},"name":"Ann","object":"customer",'
                '"source_id":"c-7"},"z":1}')
    assert payload(fresh, customer) == expected
    assert payload(shared, customer) == expected
    assert shared(customer) is shared(customer)  # serialized once for this row
    assert list(memo) == [customer.int]
    assert shared(str(customer).upper()) is shared(customer)  # text spelling the id: the same row
    unknown = uuid.UUID(int=8)
    assert payload(shared, unknown) == payload(fresh, unknown)
    assert orjson.loads(payload(shared, unknown))["customer"] == {
        **build_object(spec, None, unknown), "id": str(unknown)}

    # a put drops the row's entry, even when the row left the state's cache meanwhile
    state.put("customer", uuid.UUID(int=9), {"id": uuid.UUID(int=9)})
    state.put("customer", customer, {**state.get("customer", customer), "name": "Anna"})
    assert customer.int not in memo
    assert orjson.loads(payload(shared, customer))["customer"]["name"] == "Anna"
    assert payload(shared, customer) == payload(fresh, customer)
    state.put("customer", unknown, {"id": unknown, "name": "Bo"})
    assert orjson.loads(payload(shared, unknown))["customer"]["name"] == "Bo"
    state.delete("customer", unknown)
    assert orjson.loads(payload(shared, unknown))["customer"]["name"] is None
    # a rollback forgets the puts since the last commit: the memo forgets what it derived
    state.commit(1)
    state.put("customer", customer, {**state.get("customer", customer), "name": "Anne"})
    assert orjson.loads(payload(shared, customer))["customer"]["name"] == "Anne"
    state.rollback()
    assert memo == {}
    assert orjson.loads(payload(shared, customer))["customer"]["name"] == "Anna"
    state.close()


def test_a_full_memo_drops_its_oldest_entries(tmp_path):
    from mappers.payload import MEMO_ENTRY_OVERHEAD, MemoBudget

    spec = load_default_catalog().objects["segment"]
    state = ReferenceState.open(tmp_path)
    memo = state.row_memo("segment")
    # objects of unknown segments: the same size for every id
    cost = len(orjson.dumps(build_object(spec, None, uuid.UUID(int=1)))) + MEMO_ENTRY_OVERHEAD
    resolve = object_resolver(spec, state.get, memo, MemoBudget(4 * cost))
    made = [resolve(uuid.UUID(int=number)) for number in range(1, 6)]
    assert list(memo) == [uuid.UUID(int=number).int for number in (2, 3, 4, 5)]  # an eighth, at least one
    assert resolve(uuid.UUID(int=5)) is made[4]
    assert resolve(uuid.UUID(int=1)) is not made[0]
    assert orjson.dumps(resolve(uuid.UUID(int=1))) == orjson.dumps(made[0])
    assert list(memo) == [uuid.UUID(int=3).int, uuid.UUID(int=4).int, uuid.UUID(int=5).int, uuid.UUID(int=1).int]
    # the entries the state dropped are the oldest, dropped first (still counted until then)
    state.put("segment", uuid.UUID(int=3), {"id": uuid.UUID(int=3), "name": "A", "type": "STATIC"})
    state.put("segment", uuid.UUID(int=4), {"id": uuid.UUID(int=4), "name": "B", "type": "STATIC"})
    resolve(uuid.UUID(int=6))
    resolve(uuid.UUID(int=7))
    assert list(memo) == [uuid.UUID(int=number).int for number in (5, 1, 6, 7)]
    # a row bigger than the whole memo is served, not kept
    big = uuid.UUID(int=8)
    state.put("segment", big, {"id": big, "name": "x" * (5 * cost), "type": "STATIC"})
    assert orjson.loads(orjson.dumps(resolve(big)))["name"] == "x" * (5 * cost)
    assert big.int not in memo and len(memo) == 4
    state.close()


def test_the_memos_of_all_kinds_share_one_budget(tmp_path):
    from mappers.payload import MEMO_ENTRY_OVERHEAD, MemoBudget

    catalog = load_default_catalog()
    state = ReferenceState.open(tmp_path)
    segments, campaigns = state.row_memo("segment"), state.row_memo("campaign")
    segment_cost = len(orjson.dumps(build_object(catalog.objects["segment"], None, uuid.UUID(int=1)))) + MEMO_ENTRY_OVERHEAD
    campaign_cost = len(orjson.dumps(build_object(catalog.objects["campaign"], None, uuid.UUID(int=1)))) + MEMO_ENTRY_OVERHEAD
    budget = MemoBudget(3 * segment_cost + campaign_cost)
    segment = object_resolver(catalog.objects["segment"], state.get, segments, budget)
    campaign = object_resolver(catalog.objects["campaign"], state.get, campaigns, budget)
    for number in (1, 2, 3):
        segment(uuid.UUID(int=number))
    campaign(uuid.UUID(int=9))
    assert (list(segments), list(campaigns)) == ([1, 2, 3], [9])
    assert budget.held == 3 * segment_cost + campaign_cost
    # one more of either kind drops the oldest entries of both kinds, until it fits
    campaign(uuid.UUID(int=10))
    assert (list(segments), list(campaigns)) == ([3], [9, 10])
    assert budget.held == segment_cost + 2 * campaign_cost
    state.close()


def test_events_are_immutable_values_with_a_dataclass_repr():
    import pytest

    from mappers.events import CustomerEvent

    values = (uuid.UUID(int=1), uuid.UUID(int=2), "acme", uuid.UUID(int=3), datetime(2024, 3, 1, 9, 0),
              "customer.created", "EFFECT", None, "", "tx_0000000001000000", "wal", '{"a":1}',
              "customer", 16777216)
    made = CustomerEvent(*values)
    assert tuple(getattr(made, name) for name in CustomerEvent.__struct_fields__) == values
    assert CustomerEvent.__struct_fields__ == (
        "id", "tenant_id", "tenant", "customer_id", "created_at", "type", "category", "campaign_id",
        "campaign_type", "group_id", "source", "data", "source_table", "source_lsn")
    assert made == CustomerEvent(*values) and hash(made) == hash(CustomerEvent(*values))
    assert made != CustomerEvent(*values[:-1], 16777217)
    assert pickle.loads(pickle.dumps(made)) == made
    # the benchmark's digest is over repr(): the same text the frozen dataclass printed
    assert repr(made) == (
        "CustomerEvent(id=UUID('00000000-0000-0000-0000-000000000001'), "
        "tenant_id=UUID('00000000-0000-0000-0000-000000000002'), tenant='acme', "
        "customer_id=UUID('00000000-0000-0000-0000-000000000003'), "
        "created_at=datetime.datetime(2024, 3, 1, 9, 0), type='customer.created', category='EFFECT', "
        "campaign_id=None, campaign_type='', group_id='tx_0000000001000000', source='wal', "
        "data='{\"a\":1}', source_table='customer', source_lsn=16777216)")
    with pytest.raises(AttributeError):
        made.type = "customer.deleted"


def test_memoized_objects_cost_their_size_not_orjsons_buffer(tmp_path):
    import tracemalloc

    spec = load_default_catalog().objects["customer"]
    state = ReferenceState.open(tmp_path)
    customers = [uuid.UUID(int=number) for number in range(1, 2001)]
    for number, customer in enumerate(customers):
        state.put("customer", customer, {"id": customer, "source_id": f"c-{number}", "name": "Ann",
                                         "email": "ann@example.com", "metadata": {"n": number}})
    resolve = object_resolver(spec, state.get, state.row_memo("customer"))
    tracemalloc.start()
    try:
        made = [resolve(customer) for customer in customers]
        per_entry = tracemalloc.get_traced_memory()[0] / len(customers)
    finally:
        tracemalloc.stop()
    assert len(made) == 2000
    # ~130 bytes of JSON each; orjson's own output would pin a 4 kB buffer per object
    assert per_entry < 500
    state.close()


@given(st.datetimes(), st.datetimes(timezones=st.just(UTC)), st.one_of(st.none(), st.datetimes()))
def test_event_time_is_the_first_datetime_made_aware_as_utc(naive, aware, fallback):
    assert event_time(naive) == naive.replace(tzinfo=UTC)
    assert event_time(naive).utcoffset() == timedelta(0)
    assert event_time(aware) is aware
    assert event_time(None, "2024-01-01", fallback) == (
        EPOCH if fallback is None else fallback.replace(tzinfo=UTC))


@given(system_id=st.text(), database=st.text(), table=st.text(), event_type=st.text(),
       key=st.one_of(st.uuids(), st.text(), st.integers(), st.tuples(st.integers(), st.text())))
def test_snapshot_event_ids_are_uuid5_of_their_name(system_id, database, table, event_type, key):
    source = SourceIdentity(system_id, database)
    name = f"{system_id}/{database}/snapshot/{table}/{key}/{event_type}"
    try:
        expected = uuid.uuid5(EVENT_NAMESPACE, name)
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 name, no id either way
        return
    made = snapshot_event_ids(source)(table, key, event_type)
    assert (type(made), made, made.version, str(made)) == (uuid.UUID, expected, 5, str(expected))
    assert made.is_safe is uuid.SafeUUID.unknown


@given(st.binary(max_size=300))
def test_the_ids_sha1_is_hashlibs(data):
    assert sha1(data) == hashlib.sha1(data).digest()


@pytest.mark.parametrize("size", [0, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 129, 1000])
def test_the_ids_sha1_pads_every_length_of_the_last_block(size):
    data = bytes(range(256)) * 4
    assert sha1(data[:size]) == hashlib.sha1(data[:size]).digest()


def test_a_snapshot_event_id_spells_a_uuid_key_in_lower_case_with_dashes():
    key = uuid.UUID("0123abcd-4567-89ef-fedc-ba9876543210")
    made = snapshot_event_ids(SourceIdentity("7", "voucher"))("redemption", key, "customer.redemption.succeeded")
    assert made == uuid.UUID("6cf7c19a-31ba-52fe-9af0-78a497ba2166") == uuid.uuid5(
        EVENT_NAMESPACE, "7/voucher/snapshot/redemption/0123abcd-4567-89ef-fedc-ba9876543210/customer.redemption.succeeded")


@given(st.lists(st.one_of(st.uuids(), st.text(), st.integers(), st.datetimes()), min_size=1, max_size=3))
def test_composite_keys_are_spelled_as_str_spells_their_values(values):
    assert [spelled(value) for value in values] == [str(value) for value in values]
    assert key_text(values) == "/".join(str(value) for value in values)
