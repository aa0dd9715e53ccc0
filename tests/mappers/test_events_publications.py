"""Publication events: the voucher mode, the campaign mode whose vouchers follow the
publication row in the same transaction, and failures."""

from __future__ import annotations

from tests.mappers.harness import at, insert, uid, update
from tests.mappers.world import (
    CAMPAIGN,
    CUSTOMER,
    TENANT,
    VOUCHER,
    assert_event,
    campaign_object,
    customer_object,
    voucher_object,
    wal_source,
    write_world,
)

PUBLICATION = uid(400)
SECOND_VOUCHER = uid(23)
THIRD_VOUCHER = uid(24)
NOW = at("2024-03-02 15:00:00")


def publication_object(result="SUCCESS", vouchers=(), failure_code=None, failure_message=None):
    return {"id": PUBLICATION, "result": result, "channel": "API", "source_id": "pub-1",
            "failure_code": failure_code, "failure_message": failure_message,
            "vouchers": list(vouchers), "object": "publication"}


def test_publication_succeeded_voucher_mode(engine):
    def publish(conn):
        # POST /v1/publications {voucher} -> PublicationService.createPublication: INSERT
        # publication, then (Hibernate flushes updates after inserts) UPDATE voucher.holder_id
        insert(conn, "publication", id=PUBLICATION, tenant_id=TENANT, voucher_id=VOUCHER,
               customer_id=CUSTOMER, campaign_id=CAMPAIGN, result="SUCCESS", source_id="pub-1",
               channel="API", created_at=NOW, updated_at=NOW)
        update(conn, "voucher", VOUCHER, holder_id=CUSTOMER, updated_at=NOW)

    engine.transaction(write_world)
    engine.transaction(publish)
    _, tx = engine.stream()
    assigned, published = tx.records
    assert_event(assigned, tx, table="voucher", type="customer.holder.assignment.created",
                 category="EFFECT", campaign=CAMPAIGN, data={
                     "customer": customer_object(), "campaign": campaign_object(),
                     "voucher": voucher_object(holder=CUSTOMER), "event_source": wal_source()})
    assert_event(published, tx, table="publication", type="customer.publication.succeeded",
                 category="EFFECT", campaign=CAMPAIGN, data={
                     "customer": customer_object(), "campaign": campaign_object(),
                     "voucher": voucher_object(holder=CUSTOMER),
                     "publication": publication_object(), "event_source": wal_source()})


def test_publication_succeeded_campaign_mode_lists_its_vouchers(engine):
    def more_vouchers(conn):
        # POST /v1/campaigns/{id}/vouchers (x2)
        for voucher, code in ((SECOND_VOUCHER, "SPRING-2"), (THIRD_VOUCHER, "SPRING-3")):
            insert(conn, "voucher", id=voucher, tenant_id=TENANT, code=code, campaign_id=CAMPAIGN,
                   type="DISCOUNT_VOUCHER", active=True, created_at=NOW, updated_at=NOW)

    def publish(conn):
        # POST /v1/publications {campaign: {name, count: 2}}: INSERT publication (voucher_id
        # NULL), UPDATE each picked voucher's holder, INSERT the publication_vouchers rows
        insert(conn, "publication", id=PUBLICATION, tenant_id=TENANT, voucher_id=None,
               customer_id=CUSTOMER, campaign_id=CAMPAIGN, result="SUCCESS", source_id="pub-1",
               channel="API", created_at=NOW, updated_at=NOW)
        for voucher in (THIRD_VOUCHER, SECOND_VOUCHER):
            update(conn, "voucher", voucher, holder_id=CUSTOMER, updated_at=NOW)
        for voucher in (THIRD_VOUCHER, SECOND_VOUCHER):
            insert(conn, "publication_vouchers", publication_id=PUBLICATION, voucher_id=voucher)

    engine.transaction(write_world)
    engine.transaction(more_vouchers)
    engine.transaction(publish)
    *_, tx = engine.stream()
    *assignments, published = tx.records
    assert [event.type for event in assignments] == ["customer.holder.assignment.created"] * 2
    assert_event(published, tx, table="publication", type="customer.publication.succeeded",
                 category="EFFECT", campaign=CAMPAIGN, data={
                     "customer": customer_object(), "campaign": campaign_object(),
                     "publication": publication_object(vouchers=["SPRING-2", "SPRING-3"]),
                     "event_source": wal_source()})


def test_publication_failed(engine):
    def fail(conn):
        # POST /v1/publications {voucher} for a voucher someone holds: one FAILURE row
        insert(conn, "publication", id=PUBLICATION, tenant_id=TENANT, voucher_id=None,
               customer_id=CUSTOMER, campaign_id=CAMPAIGN, result="FAILURE", source_id="pub-1",
               failure_code="voucher_already_published", failure_message="Voucher already published",
               channel="API", created_at=NOW, updated_at=NOW)

    engine.transaction(write_world)
    engine.transaction(fail)
    _, tx = engine.stream()
    (event,) = tx.records
    assert_event(event, tx, table="publication", type="customer.publication.failed",
                 category="EFFECT", campaign=CAMPAIGN, data={
                     "customer": customer_object(), "campaign": campaign_object(),
                     "publication": publication_object(
                         "FAILURE", failure_code="voucher_already_published",
                         failure_message="Voucher already published"),
                     "event_source": wal_source()})
