"""Mapping throughput: change envelopes -> customer events (payloads serialized as stored), on
one core, with the reference state on disk. `python -m tests.bench.mapping [--transactions N]`.

The envelopes are built in memory with the value types the reader produces (uuid.UUID, naive
datetimes, parsed jsonb), in the engine's transaction shapes: redemptions, voucher
publications, customer upserts, orders with items, item-only order updates, static segments and
balance top-ups. Building them is not timed; mapping and the state commits (at the pipeline's
interval) are. CPU time is printed beside wall time: on a shared machine it is the steadier
figure. `--digest` also prints a SHA-256 of
every record made (ids, times, payload bytes, every field), to show an optimization changed none.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import random
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cdc_reader.changes import Change, Envelope, Op, TransactionBegin, TransactionCommit
from mappers import EventMapper, ReferenceState, SourceIdentity, load_default_catalog
from mappers.events import CustomerEvent
from mappers.schema import voucher_schema
from mappers.sqltypes import SqlType
from mappers.state import normal_key
from voucher_activity.config import build_settings
from voucher_activity.memory import tune_collector
from voucher_activity.pipeline import STATE_COMMIT_INTERVAL

# The reference state's levels as the pipeline sizes them by default (--state-cache).
STATE_CACHE_ROWS, STATE_PACKED_BYTES, STATE_MEMO_BYTES = build_settings({}).state_levels

# What a Relation message says of each column, as the reader passes it on (Change.column_types):
# the type OID of a column of that type.
_TYPE_OIDS = {SqlType.TEXT: 25, SqlType.INTEGER: 20, SqlType.NUMERIC: 1700, SqlType.BOOLEAN: 16,
              SqlType.JSONB: 3802, SqlType.UUID: 2950, SqlType.TIMESTAMP: 1114, SqlType.DATE: 1082}
COLUMN_TYPES = {name: tuple((column, _TYPE_OIDS[sql_type]) for column, sql_type in table.columns.items())
                for name, table in voucher_schema().tables.items()}

TENANT = uuid.UUID(int=1)
CAMPAIGN = uuid.UUID(int=2)
NOW = datetime(2024, 3, 1, 9, 0)


class Traffic:
    """Builds engine-shaped transactions. Ids are random version-4 UUIDs, as the engine's
    `@UuidGenerator` makes them (keys in sequence would make every state write an append), from
    a seeded generator so that every run maps the same rows."""

    def __init__(self, customers: int, seed: int = 7) -> None:
        self.random = random.Random(seed)
        self.lsn = itertools.count(1 << 24, 4096)
        self.customers = [self.new_id() for _ in range(customers)]
        self.vouchers: list[uuid.UUID] = []  # those inserted, in order
        self.voucher_rows: dict[uuid.UUID, dict] = {}  # their rows as last written

    def new_id(self) -> uuid.UUID:
        return uuid.UUID(int=self.random.getrandbits(128), version=4)

    def transaction(self, rows: list[tuple[Op, str, dict]]) -> list[Envelope]:
        lsn = next(self.lsn)
        moment = datetime(2024, 3, 1, tzinfo=UTC) + timedelta(microseconds=lsn)
        changes = [Change(op, "public", table, row if op is Op.DELETE else None,
                          None if op is Op.DELETE else row, 7, lsn, moment, position, frozenset(),
                          COLUMN_TYPES[table])
                   for position, (op, table, row) in enumerate(rows)]
        return [TransactionBegin(7, lsn, moment), *changes,
                TransactionCommit(7, lsn, lsn + 40, moment, len(changes))]

    def customer_row(self, customer: uuid.UUID, number: int) -> dict:
        return {"id": customer, "created_at": NOW, "updated_at": NOW, "source_id": f"cust-{number}",
                "name": f"Customer {number}", "description": None, "email": f"c{number}@example.com",
                "phone": None, "birthdate": None, "metadata": {"tier": "gold", "n": number},
                "tenant_id": TENANT, "city": None, "state": None, "line_1": None, "line_2": None,
                "country": None, "postal_code": None}

    def setup(self) -> Iterator[list[Envelope]]:
        yield self.transaction([
            (Op.INSERT, "tenant", {"id": TENANT, "created_at": NOW, "updated_at": NOW, "name": "acme"}),
            (Op.INSERT, "campaign", {"id": CAMPAIGN, "created_at": NOW, "updated_at": NOW, "name": "Spring",
                                     "type": "DISCOUNT_COUPONS", "tenant_id": TENANT}),
        ])
        for start in range(0, len(self.customers), 500):
            yield self.transaction([(Op.INSERT, "customer", self.customer_row(customer, start + offset))
                                    for offset, customer in enumerate(self.customers[start:start + 500])])

    def customer_event(self, customer: uuid.UUID, event_type: str) -> tuple[Op, str, dict]:
        return (Op.INSERT, "customer_event", {
            "id": self.new_id(), "created_at": NOW, "updated_at": None, "event_type": event_type,
            "customer_id": str(customer), "campaign_id": str(CAMPAIGN), "category": "ACTION",
            "data": {"voucher_code": "X"}, "group_id": None, "event_source": "API", "tenant_id": TENANT})

    def voucher(self, holder: uuid.UUID | None) -> dict:
        """A new voucher's row; it counts as inserted (the caller inserts it)."""
        voucher = self.new_id()
        self.vouchers.append(voucher)
        row = self.voucher_rows[voucher] = {"id": voucher, "created_at": NOW, "updated_at": NOW, "code": f"V-{voucher.hex[:10].upper()}",
                "campaign_id": CAMPAIGN, "type": "DISCOUNT_VOUCHER", "holder_id": holder,
                "tenant_id": TENANT, "active": True, "redemption_json": {"redeemed_quantity": 0}}
        return row

    def voucher_update(self, voucher: uuid.UUID, **changes: object) -> tuple[Op, str, dict]:
        row = self.voucher_rows[voucher] = {**self.voucher_rows[voucher], **changes}
        return (Op.UPDATE, "voucher", row)

    def mix(self, number: int) -> list[Envelope]:
        customer = self.customers[number % len(self.customers)]
        kind = number % 7
        if kind == 0:  # POST /v1/vouchers {customer}
            return self.transaction([(Op.INSERT, "voucher", self.voucher(customer))])
        if kind == 1 and self.vouchers:  # POST /v1/redemptions
            voucher = self.vouchers[number % len(self.vouchers)]
            return self.transaction([
                (Op.INSERT, "redemption", {"id": self.new_id(), "created_at": NOW, "updated_at": NOW,
                                           "tracking_id": "abc", "metadata": {"store": 1}, "amount": 2500,
                                           "result": "SUCCESS", "status": "SUCCEEDED", "reason": None,
                                           "voucher_id": voucher, "customer_id": customer, "order_id": None,
                                           "parent_redemption_id": None, "tenant_id": TENANT}),
                self.customer_event(customer, "customer.redemption.succeeded"),
                # only the voucher's redemption counter changes (Hibernate flushes updates last)
                self.voucher_update(voucher, redemption_json={
                    "redeemed_quantity": self.voucher_rows[voucher]["redemption_json"]["redeemed_quantity"] + 1}),
            ])
        if kind == 2:  # POST /v1/publications (voucher mode)
            voucher = self.voucher(None)
            return self.transaction([
                (Op.INSERT, "voucher", voucher),
                (Op.INSERT, "publication", {"id": self.new_id(), "created_at": NOW, "updated_at": NOW,
                                            "voucher_id": voucher["id"], "customer_id": customer,
                                            "campaign_id": CAMPAIGN, "result": "SUCCESS",
                                            "failure_code": None, "failure_message": None,
                                            "source_id": None, "channel": "API", "metadata": None,
                                            "tenant_id": TENANT}),
                self.voucher_update(voucher["id"], holder_id=customer),
            ])
        if kind == 3:  # PUT /v1/customers/{id}
            row = self.customer_row(customer, number)
            return self.transaction([self.customer_event(customer, "customer.updated"),
                                     (Op.UPDATE, "customer", row)])
        if kind == 4:  # POST /v1/orders {status: PAID, items: 2}
            order = self.new_id()
            item = {"created_at": NOW, "updated_at": NOW, "order_id": order, "tenant_id": TENANT,
                    "quantity": 1, "amount": 100}
            return self.transaction([
                (Op.INSERT, "orders", {"id": order, "created_at": NOW, "updated_at": NOW, "source_id": f"o{number}",
                                       "status": "PAID", "amount": 200, "initial_amount": 200,
                                       "discount_amount": 0, "metadata": {}, "customer_id": customer,
                                       "tenant_id": TENANT}),
                (Op.INSERT, "order_item", {**item, "id": self.new_id()}),
                (Op.INSERT, "order_item", {**item, "id": self.new_id()}),
            ])
        if kind == 5:  # POST /v1/segments {static, 10 customers}
            segment = self.new_id()
            members = [self.customers[(number + offset) % len(self.customers)] for offset in range(10)]
            return self.transaction([
                (Op.INSERT, "segment", {"id": segment, "created_at": NOW, "updated_at": NOW, "name": "S",
                                        "type": "STATIC", "filter": None, "tenant_id": TENANT}),
                *[(Op.INSERT, "segment_customer", {"segment_id": segment, "customer_id": member})
                  for member in members],
                *[self.customer_event(member, "customer.segment.entered") for member in members],
            ])
        # POST /v1/vouchers/{code}/balance on a held voucher
        voucher = self.vouchers[number % len(self.vouchers)]  # number 0 inserted one
        return self.transaction([(Op.INSERT, "voucher_transaction", {
            "id": self.new_id(), "created_at": NOW, "updated_at": NOW, "source_id": "s",
            "voucher_id": voucher, "campaign_id": CAMPAIGN, "type": "POINTS_ADDITION", "source": "API",
            "reason": None, "amount": 10, "balance_after": 10, "redemption_id": None,
            "rollback_id": None, "related_transaction_id": None, "details": None, "tenant_id": TENANT})])


def map_all(mapper: EventMapper, transactions: list[list[Envelope]], flush_every: int,
            records: list | None = None) -> int:
    """Maps the transactions and returns the number of events; the records made are appended to
    `records` when given. Like the pipeline, records are buffered and flushed per batch, and the
    reference state is committed after a flush once STATE_COMMIT_INTERVAL has passed since its
    last commit (and after the last transaction)."""
    events = 0
    batch: list = []
    add = batch.extend
    committed_at = time.monotonic()
    for number, transaction in enumerate(transactions, 1):
        mapper.begin(transaction[0])
        for change in transaction[1:-1]:
            add(mapper.change(change))
        commit = transaction[-1]
        add(mapper.commit(commit))
        last = number == len(transactions)
        if number % flush_every == 0 or last:
            events += list(map(type, batch)).count(CustomerEvent)  # (counted in C: not the mapper's time)
            if records is not None:
                records.extend(batch)
            batch.clear()
            if last or time.monotonic() - committed_at >= STATE_COMMIT_INTERVAL:
                mapper.state.commit(commit.end_lsn)
                committed_at = time.monotonic()
    return events


def floor(changes: int, events: int, stored: int) -> float:
    """CPU seconds of the operations the benchmark's workload cannot do without, and nothing
    else: per change a merged copy of the row and a cache insert (bounded as the pipeline's);
    per row the reference state keeps (`stored`: what the run wrote to disk) its encoding
    (mappers/rowcodec.py), the least any persistence needs, but no SQLite write; per event the customer and tenant lookups
    every event makes (cache hits), a payload dict of shared fragments serialized with orjson, a
    uuid5-style id and the event record. No canonical-type check, condition, other lookup, disk
    write or bookkeeping: a lower bound for any CPython mapper doing this work, to put the
    measured figure in proportion."""
    from collections import OrderedDict

    import orjson

    from mappers.rowcodec import RowCodec
    from mappers.state import uuid_from_int

    row = {"id": uuid.UUID(int=7), "created_at": NOW, "updated_at": NOW, "code": "V-1",
           "campaign_id": CAMPAIGN, "type": "DISCOUNT_VOUCHER", "holder_id": uuid.UUID(int=8),
           "tenant_id": TENANT, "active": True, "redemption_json": {"redeemed_quantity": 0}}
    tenant_key = ("tenant", TENANT.int)
    references: OrderedDict = OrderedDict((("customer", number), row) for number in range(1000))
    references[tenant_key] = {"id": TENANT, "name": "acme"}
    cache: OrderedDict = OrderedDict()
    fragment = orjson.Fragment(orjson.dumps({"id": str(row["holder_id"]), "name": "n", "object": "customer"}))
    prefix = hashlib.sha1(b"7400000000000000001/bench/")
    encode = RowCodec(sqlite3.connect(":memory:", isolation_level=None),
                      {"voucher": voucher_schema().table("voucher").columns}).encode
    started = time.process_time()
    for number in range(changes):  # the pipeline's cache is bounded: so is this one
        cache[("voucher", number)] = {**row}
        cache.move_to_end(("voucher", number))
        if len(cache) > STATE_CACHE_ROWS:
            cache.popitem(last=False)
    for _ in range(stored):
        encode("voucher", row)
    for number in range(events):
        customer_key = ("customer", number % 1000)
        references.get(customer_key)
        references.move_to_end(customer_key)
        tenant = references.get(tenant_key)
        references.move_to_end(tenant_key)
        data = {"customer": fragment, "campaign": fragment, "event_source": fragment,
                "voucher": {"code": "V-1", "id": row["id"], "object": "voucher", "type": "DISCOUNT_VOUCHER"}}
        payload = orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
        hasher = prefix.copy()
        hasher.update(b"%d/customer.redemption.succeeded" % number)
        CustomerEvent(uuid_from_int(int.from_bytes(hasher.digest()[:16])), TENANT, tenant["name"],
                      row["holder_id"], NOW, "customer.redemption.succeeded", "ACTION", CAMPAIGN,
                      "DISCOUNT_COUPONS", "tx_1", "wal", payload, "redemption", number)
    return time.process_time() - started


class UnpersistedState(ReferenceState):
    """`--no-persistence`: the reference state as one unbounded dict, nothing encoded, nothing
    written to SQLite, nothing evicted: not a configuration (a restart would lose it, and its
    memory grows with the source), only the bound that shows what persisting the state costs.
    Rows are keyed and memos kept valid as ReferenceState does."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._rows: dict = {}

    def get(self, table: str, key: object) -> dict | None:
        key = normal_key(key)
        return self._rows.get((table, key.int if type(key) is uuid.UUID else key))

    peek = get

    def put(self, table: str, key: object, row: dict) -> None:
        key = normal_key(key)
        memo_key = key.int if type(key) is uuid.UUID else key
        for memo in self._memos.get(table, ()):
            memo.pop(memo_key, None)
        self._rows[(table, memo_key)] = row

    def add(self, table: str, key: object, row: dict, keep: bool = True) -> None:
        self.put(table, key, row)

    def commit(self, lsn: int) -> None:
        self._applied_lsn = lsn


def digest(records: list) -> str:
    """SHA-256 over every field of every record, in order."""
    hasher = hashlib.sha256()
    for record in records:
        hasher.update(repr(record).encode())
    return hasher.hexdigest()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.mapping", description=__doc__)
    parser.add_argument("--transactions", type=int, default=50_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--cache-size", type=int, default=STATE_CACHE_ROWS,
                        help="state rows cached as dicts (default: the pipeline's)")
    parser.add_argument("--packed-bytes", type=int, default=STATE_PACKED_BYTES,
                        help="bytes of state rows cached encoded (default: the pipeline's)")
    parser.add_argument("--flush-every", type=int, default=1000,
                        help="records flushed every N transactions (the state commits as the pipeline's)")
    parser.add_argument("--digest", action="store_true", help="print a SHA-256 of every record made")
    parser.add_argument("--no-persistence", action="store_true",
                        help="keep the reference state in one unbounded dict, nothing written: the "
                             "bound that shows what persisting it costs (not a configuration)")
    parser.add_argument("--floor", action="store_true",
                        help="also time the bare operations the same changes, state rows and events need")
    args = parser.parse_args(argv)

    traffic = Traffic(args.customers)
    setup = list(traffic.setup())
    transactions = [traffic.mix(number) for number in range(args.transactions)]
    changes = sum(len(transaction) - 2 for transaction in transactions)
    # The collector as the pipeline sets it; this also freezes the prebuilt envelopes, which are
    # the benchmark's, not the mapper's (the pipeline holds one transaction at a time).
    tune_collector()
    with tempfile.TemporaryDirectory(prefix="va-bench-mapping-") as directory:
        state = (UnpersistedState if args.no_persistence else ReferenceState).open(
            Path(directory), args.cache_size, args.packed_bytes)
        mapper = EventMapper(load_default_catalog(), state, SourceIdentity("7400000000000000001", "bench"),
                             "voucher_activity", memo_bytes=STATE_MEMO_BYTES)
        map_all(mapper, setup, args.flush_every)
        written_before = state.rows_written
        records: list | None = [] if args.digest else None
        started, started_cpu = time.perf_counter(), time.process_time()
        events = map_all(mapper, transactions, args.flush_every, records)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - started_cpu
        stored = state.rows_written - written_before
        state.close()
    print(f"mapped {args.transactions} transactions, {changes} changes -> {events} events "
          f"in {elapsed:.2f} s: {events / elapsed:,.0f} events/s, {changes / elapsed:,.0f} changes/s "
          f"(CPU {cpu:.2f} s: {events / cpu:,.0f} events/s, {changes / cpu:,.0f} changes/s)")
    if records is not None:
        print(f"digest {digest(records)}")
    if args.floor:
        bare = floor(changes, events, stored)
        print(f"floor: the bare operations for {changes} changes, {stored} state rows and {events} events "
              f"take CPU {bare:.2f} s "
              f"({events / bare:,.0f} events/s); the mapper takes {cpu / bare:.1f}x that")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
