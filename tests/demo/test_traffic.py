"""The traffic generator writes what the voucher engine writes: setup + a few hundred operations
on a real PostgreSQL, then the invariants the engine guarantees are checked in the database."""

from __future__ import annotations

import hashlib
import threading
import time

import psycopg
import pytest

from demo.traffic import (
    OPERATION_WEIGHTS,
    VoucherTraffic,
    describe_operation_mix,
    operation_mix,
)
from demo.traffic.catalog import CAMPAIGN_TEMPLATES
from demo.traffic.generator import INITIAL_CUSTOMERS, PLANNERS

STEPS = 600


@pytest.fixture
def traffic_db(voucher_db):
    """A voucher database after setup() and STEPS operations with seed 7, plus what step() returned."""
    with VoucherTraffic(voucher_db.dsn, seed=7) as traffic:
        traffic.setup()
        operations = [traffic.step() for _ in range(STEPS)]
    return voucher_db, operations


def rows(db, sql, params=None):
    with db.connect() as conn:
        return conn.execute(sql, params).fetchall()


def scalar(db, sql, params=None):
    return rows(db, sql, params)[0][0]


def test_operation_mix_is_a_distribution_over_the_planned_operations():
    mix = operation_mix()
    assert set(mix) == set(PLANNERS) == set(OPERATION_WEIGHTS)
    assert sum(mix.values()) == pytest.approx(1.0)
    assert mix["redemption.succeeded"] == 0.14
    assert describe_operation_mix().splitlines()[0] == " 14.0%  redemption.succeeded"
    assert len(describe_operation_mix().splitlines()) == len(OPERATION_WEIGHTS)


def test_setup_writes_tenants_campaigns_vouchers_and_customers(voucher_db):
    with VoucherTraffic(voucher_db.dsn, tenants=("acme", "globex", "initech"), seed=1) as traffic:
        traffic.setup()
    assert rows(voucher_db, "SELECT name FROM tenant ORDER BY name") == [("acme",), ("globex",), ("initech",)]
    campaign_types = rows(voucher_db, "SELECT DISTINCT type FROM campaign ORDER BY type")
    assert campaign_types == [("DISCOUNT_COUPONS",), ("GIFT_VOUCHERS",), ("LOYALTY_PROGRAM",), ("PROMOTION",),
                              ("REFERRAL_PROGRAM",)]
    per_tenant = sum(t.initial_vouchers for t in CAMPAIGN_TEMPLATES)
    assert scalar(voucher_db, "SELECT count(*) FROM voucher") == 3 * per_tenant
    assert scalar(voucher_db, "SELECT count(*) FROM customer") == 3 * INITIAL_CUSTOMERS
    # POST /v1/customers: one customer.created per customer, in the customer's transaction
    assert scalar(voucher_db, """
        SELECT count(*) FROM customer c JOIN customer_event e ON e.customer_id = c.id::text
        WHERE e.event_type = 'customer.created' AND e.xmin = c.xmin AND e.category = 'EFFECT'
          AND e.event_source = 'API' AND e.group_id IS NULL AND e.tenant_id = c.tenant_id
          AND e.data->>'source_id' = c.source_id AND e.data->'customer'->>'id' = c.id::text""") == 3 * INITIAL_CUSTOMERS
    # createVoucher's assets and redemption counters
    assert scalar(voucher_db, """
        SELECT count(*) FROM voucher WHERE qr_id = 'qr_' || code AND qr_url = '/v1/vouchers/' || code || '/qr'
          AND barcode_id = 'bc_' || code AND barcode_url = '/v1/vouchers/' || code || '/barcode'
          AND active AND (redemption_json->>'redeemed_quantity')::int = 0 AND holder_id IS NULL""") == 3 * per_tenant
    assert rows(voucher_db, """
        SELECT v.type, count(*) FILTER (WHERE gift_json IS NOT NULL), count(*) FILTER (WHERE loyalty_card_json IS NOT NULL)
        FROM voucher v GROUP BY v.type ORDER BY v.type""") == [
        ("DISCOUNT_VOUCHER", 0, 0), ("GIFT_VOUCHER", 45, 0), ("LOYALTY_CARD", 0, 45)]


def test_setup_again_continues_from_the_database(voucher_db):
    with VoucherTraffic(voucher_db.dsn, seed=3) as first:
        first.setup()
        first.burst(50)
    before = rows(voucher_db, "SELECT (SELECT count(*) FROM tenant), (SELECT count(*) FROM campaign), "
                              "(SELECT count(*) FROM customer_event), (SELECT max(xmin::text::bigint) FROM voucher)")
    with VoucherTraffic(voucher_db.dsn, seed=3) as second:
        second.setup()
        assert rows(voucher_db, "SELECT (SELECT count(*) FROM tenant), (SELECT count(*) FROM campaign), "
                                "(SELECT count(*) FROM customer_event), "
                                "(SELECT max(xmin::text::bigint) FROM voucher)") == before
        second.burst(100)  # same seed, existing data: no primary key or code collides
    assert scalar(voucher_db, "SELECT count(*) FROM tenant") == 2


def test_every_operation_kind_occurs(traffic_db):
    _db, operations = traffic_db
    assert set(operations) == set(OPERATION_WEIGHTS)


def test_successful_redemptions_commit_with_their_event_and_counter(traffic_db):
    db, _ = traffic_db
    assert rows(db, "SELECT DISTINCT result, status, order_id, parent_redemption_id, reason FROM redemption") == [
        ("SUCCESS", "SUCCEEDED", None, None, None)]
    with_customer = scalar(db, "SELECT count(*) FROM redemption WHERE customer_id IS NOT NULL")
    assert with_customer > 20
    assert scalar(db, """
        SELECT count(*) FROM redemption r
        JOIN customer_event e ON e.data->>'redemption_id' = r.id::text AND e.xmin = r.xmin
        JOIN voucher v ON v.id = r.voucher_id
        WHERE e.event_type = 'customer.redemption.succeeded' AND e.customer_id = r.customer_id::text
          AND e.category = 'ACTION' AND e.campaign_id = v.campaign_id::text""") == with_customer
    assert scalar(db, "SELECT count(*) FROM customer_event WHERE event_type = 'customer.redemption.succeeded'") \
        == with_customer
    # without a customer there is no tracking id to hash and no event
    for tracking_id, source_id in rows(db, """
            SELECT r.tracking_id, c.source_id FROM redemption r LEFT JOIN customer c ON c.id = r.customer_id"""):
        assert tracking_id == (hashlib.sha256(source_id.encode()).hexdigest() if source_id else None)
    assert rows(db, """
        SELECT v.code FROM voucher v
        WHERE (v.redemption_json->>'redeemed_quantity')::int
              <> (SELECT count(*) FROM redemption r WHERE r.voucher_id = v.id)""") == []
    assert rows(db, """
        SELECT v.code FROM voucher v WHERE (v.redemption_json->>'quantity')::int
              < (v.redemption_json->>'redeemed_quantity')::int""") == []


def test_failed_redemptions_write_only_the_event(traffic_db):
    db, _ = traffic_db
    assert scalar(db, "SELECT count(*) FROM customer_event WHERE event_type = 'customer.redemption.failed'") > 0
    assert scalar(db, """
        SELECT count(*) FROM customer_event e WHERE e.event_type = 'customer.redemption.failed'
          AND (e.category <> 'ACTION' OR e.campaign_id IS NULL
               OR EXISTS (SELECT 1 FROM redemption r WHERE r.xmin = e.xmin))""") == 0


def test_rollbacks_reference_redemptions(traffic_db):
    db, _ = traffic_db
    assert scalar(db, "SELECT count(*) FROM redemption_rollback") > 0
    assert rows(db, """
        SELECT b.id FROM redemption_rollback b LEFT JOIN redemption r ON r.id = b.redemption_id
        WHERE r.id IS NULL OR b.customer_id IS DISTINCT FROM r.customer_id OR b.result <> 'SUCCESS'
           OR b.tracking_id <> b.reason OR b.date IS NULL""") == []
    # a single-row transaction: nothing else carries its xmin
    assert scalar(db, """
        SELECT count(*) FROM redemption_rollback b WHERE EXISTS (SELECT 1 FROM customer_event e WHERE e.xmin = b.xmin)
           OR EXISTS (SELECT 1 FROM redemption r WHERE r.xmin = b.xmin)""") == 0


def test_publications(traffic_db):
    db, _ = traffic_db
    # voucher mode and campaign mode with count 1: the voucher is on the row and held by the customer
    assert rows(db, """
        SELECT p.id FROM publication p JOIN voucher v ON v.id = p.voucher_id
        WHERE v.holder_id IS DISTINCT FROM p.customer_id OR p.campaign_id IS DISTINCT FROM v.campaign_id""") == []
    # campaign mode with count > 1: no voucher_id, one publication_vouchers row per voucher, all held
    multi = rows(db, """
        SELECT p.id, count(*), bool_and(v.holder_id = p.customer_id) FROM publication p
        JOIN publication_vouchers pv ON pv.publication_id = p.id JOIN voucher v ON v.id = pv.voucher_id
        GROUP BY p.id, p.voucher_id, p.result HAVING p.voucher_id IS NULL AND p.result = 'SUCCESS'""")
    assert multi and all(count >= 2 and held for _id, count, held in multi)
    assert scalar(db, """
        SELECT count(*) FROM publication_vouchers pv JOIN publication p ON p.id = pv.publication_id
        WHERE p.voucher_id IS NOT NULL OR p.result <> 'SUCCESS'""") == 0
    assert scalar(db, """
        SELECT count(*) FROM publication WHERE result = 'SUCCESS' AND voucher_id IS NULL
          AND NOT EXISTS (SELECT 1 FROM publication_vouchers pv WHERE pv.publication_id = publication.id)""") == 0
    failures = rows(db, "SELECT DISTINCT failure_code FROM publication WHERE result = 'FAILURE' "
                        "AND voucher_id IS NULL AND customer_id IS NOT NULL ORDER BY 1")
    assert failures and set(failures) <= {("campaign_not_found",), ("voucher_already_published",),
                                          ("voucher_not_found",)}
    assert scalar(db, "SELECT count(*) FROM publication WHERE customer_id IS NULL OR channel IS NULL") == 0
    # publications write no customer_event
    assert scalar(db, "SELECT count(*) FROM publication p JOIN customer_event e ON e.xmin = p.xmin") == 0


def test_customer_deletes_only_customers_without_history(traffic_db):
    db, _ = traffic_db
    deleted = rows(db, "SELECT customer_id, data->>'source_id' FROM customer_event "
                       "WHERE event_type = 'customer.deleted'")
    assert deleted
    ids = [customer_id for customer_id, _ in deleted]
    assert scalar(db, "SELECT count(*) FROM customer WHERE id::text = ANY(%s)", (ids,)) == 0
    for table in ("orders", "redemption", "redemption_rollback", "publication"):
        assert scalar(db, f"SELECT count(*) FROM {table} WHERE customer_id::text = ANY(%s)", (ids,)) == 0
    assert scalar(db, "SELECT count(*) FROM voucher WHERE holder_id::text = ANY(%s)", (ids,)) == 0


def test_customer_events(traffic_db):
    db, _ = traffic_db
    categories = dict(rows(db, "SELECT event_type, string_agg(DISTINCT category, ',') FROM customer_event "
                               "GROUP BY event_type"))
    assert categories == {
        "customer.created": "EFFECT", "customer.updated": "EFFECT", "customer.deleted": "EFFECT",
        "customer.redemption.succeeded": "ACTION", "customer.redemption.failed": "ACTION",
        "customer.segment.entered": "EFFECT", "customer.segment.left": "EFFECT",
    }
    assert rows(db, "SELECT DISTINCT group_id, event_source FROM customer_event") == [(None, "API")]
    # customer.updated is logged for every POST /v1/customers of a known customer, changed or not
    assert scalar(db, """
        SELECT count(*) FROM customer_event e WHERE e.event_type = 'customer.updated'
          AND NOT (e.data ? 'source_id' AND e.data ? 'email' AND e.data ? 'name' AND e.data ? 'customer')""") == 0
    # UTC wall clock, naive
    lag = scalar(db, "SELECT extract(epoch FROM (now() AT TIME ZONE 'UTC') - max(created_at)) FROM customer_event")
    assert 0 <= lag < 60


def test_segments(traffic_db):
    db, _ = traffic_db
    live = rows(db, """
        SELECT s.id, s.type, (SELECT count(*) FROM segment_customer sc WHERE sc.segment_id = s.id),
               (SELECT count(*) FROM customer_event e WHERE e.event_type = 'customer.segment.entered'
                  AND e.data->'segment'->>'id' = s.id::text AND e.xmin = s.xmin)
        FROM segment s""")
    assert live
    for _id, segment_type, members, entered in live:
        assert members == entered
        assert (members >= 2) if segment_type == "STATIC" else (segment_type == "AUTO_UPDATE" and members == 0)
    left = rows(db, "SELECT DISTINCT data->'segment'->>'id' FROM customer_event "
                    "WHERE event_type = 'customer.segment.left'")
    assert left
    assert scalar(db, "SELECT count(*) FROM segment WHERE id::text = ANY(%s)", ([s for (s,) in left],)) == 0


def test_orders(traffic_db):
    db, _ = traffic_db
    assert {status for (status,) in rows(db, "SELECT DISTINCT status FROM orders")} == {
        "CREATED", "PAID", "FULFILLED", "CANCELED"}
    assert scalar(db, "SELECT count(*) FROM orders o WHERE NOT EXISTS "
                      "(SELECT 1 FROM order_item i WHERE i.order_id = o.id)") == 0
    assert scalar(db, "SELECT count(*) FROM orders o JOIN customer_event e ON e.xmin = o.xmin") == 0
    assert scalar(db, "SELECT count(*) FROM orders WHERE customer_id IS NULL") < scalar(
        db, "SELECT count(*) FROM orders WHERE customer_id IS NOT NULL")


def test_balance_changes(traffic_db):
    db, _ = traffic_db
    assert rows(db, """
        SELECT DISTINCT v.type, t.type FROM voucher_transaction t JOIN voucher v ON v.id = t.voucher_id
        ORDER BY 1, 2""") == [("GIFT_VOUCHER", "CREDITS_ADDITION"), ("GIFT_VOUCHER", "CREDITS_REMOVAL"),
                              ("LOYALTY_CARD", "POINTS_ADDITION"), ("LOYALTY_CARD", "POINTS_REMOVAL")]
    assert rows(db, """
        SELECT t.id FROM voucher_transaction t JOIN voucher v ON v.id = t.voucher_id
        WHERE t.source <> 'API' OR t.campaign_id <> v.campaign_id OR (t.type LIKE '%%ADDITION') <> (t.amount > 0)
           OR t.balance_after < 0 OR t.redemption_id IS NOT NULL OR t.details IS NOT NULL""") == []
    # balances are the initial value plus every transaction; the last one states the balance after it
    assert rows(db, """
        SELECT v.code FROM voucher v
        WHERE v.type IN ('GIFT_VOUCHER', 'LOYALTY_CARD')
          AND coalesce(v.gift_json, v.loyalty_card_json)->>'balance'
              <> ((CASE v.type WHEN 'GIFT_VOUCHER' THEN 5000 ELSE 0 END)
                  + coalesce((SELECT sum(amount) FROM voucher_transaction t WHERE t.voucher_id = v.id), 0))::text
    """) == []
    assert rows(db, """
        SELECT t.id FROM voucher_transaction t JOIN voucher v ON v.id = t.voucher_id
        WHERE t.balance_after <> (CASE v.type WHEN 'GIFT_VOUCHER' THEN 5000 ELSE 0 END)
              + (SELECT sum(u.amount) FROM voucher_transaction u
                 WHERE u.voucher_id = t.voucher_id AND u.xmin::text::bigint <= t.xmin::text::bigint)""") == []


def test_same_seed_same_database(pg, make_voucher_db):
    def fingerprint(seed):
        db = make_voucher_db(pg)
        with VoucherTraffic(db.dsn, seed=seed) as traffic:
            traffic.setup()
            operations = [traffic.step() for _ in range(150)]
        content = rows(db, """
            SELECT (SELECT array_agg(id::text || code ORDER BY id) FROM voucher),
                   (SELECT array_agg(id::text || coalesce(name, '') ORDER BY id) FROM customer),
                   (SELECT array_agg(id::text || event_type || data::text ORDER BY id) FROM customer_event),
                   (SELECT array_agg(id::text || amount ORDER BY id) FROM redemption)""")
        return operations, content

    first = fingerprint(11)
    assert fingerprint(11) == first
    assert fingerprint(12) != first


def test_run_paces_and_stops(voucher_db):
    with VoucherTraffic(voucher_db.dsn, seed=5) as traffic:
        traffic.setup()
        after_setup = sum(traffic.counts.values())
        started = time.monotonic()
        assert traffic.run(100.0, threading.Event(), max_operations=20) == 20
        assert time.monotonic() - started >= 0.18
        stop = threading.Event()
        threading.Timer(0.3, stop.set).start()
        started = time.monotonic()
        done = traffic.run(50.0, stop)
        assert 0.25 < time.monotonic() - started < 2.0
        assert 5 <= done <= 20
        assert sum(traffic.counts.values()) == after_setup + 20 + done
        with pytest.raises(ValueError, match="rate must be positive"):
            traffic.run(0, stop)


def test_run_survives_a_lost_connection(voucher_db):
    stop = threading.Event()
    with VoucherTraffic(voucher_db.dsn, seed=9) as traffic:
        traffic.setup()
        done: list[int] = []
        runner = threading.Thread(target=lambda: done.append(traffic.run(200.0, stop, max_operations=150)))
        runner.start()
        time.sleep(0.2)
        with psycopg.connect(voucher_db.dsn, autocommit=True) as admin:
            killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                   "WHERE application_name = 'voucher-traffic'").fetchone()[0]
        runner.join(30)
        assert not runner.is_alive()
    assert killed == 1
    assert done == [150]
    # the state was reloaded from the database: the operations after the reconnect still hold
    assert rows(voucher_db, """
        SELECT v.code FROM voucher v WHERE (v.redemption_json->>'redeemed_quantity')::int
              <> (SELECT count(*) FROM redemption r WHERE r.voucher_id = v.id)""") == []
