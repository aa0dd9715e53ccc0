"""The funnel's stages table on real chDB: kept by its materialized view on every insert (copies
included), equal to grouping the events themselves, and filled from the events a store already
held when a reader first creates it."""

from __future__ import annotations

from pathlib import Path

from query.activity_sql import ActivityQuery
from query.analytics_sql import FUNNEL_STAGES
from query.store import Store, connect
from tests.conftest import unique_name
from tests.query.analytics_dataset import GIFT, LOYALTY, SPRING, seed

# (campaign_id, campaign_type, published, redeemed, rolled_back, redeemed_of_published,
#  rolled_back_of_redeemed) for acme's seeded history (test_analytics_api.py spells out why).
ACME_FUNNEL = [
    (SPRING[0], "DISCOUNT_COUPONS", 2, 2, 1, 1, 1),
    (LOYALTY[0], "LOYALTY_PROGRAM", 1, 1, 0, 1, 0),
    (GIFT[0], "GIFT_VOUCHERS", 0, 2, 1, 0, 1),
]
# Every stage type as a filter selects the same events as no filter, but reads the events table.
FROM_EVENTS = ActivityQuery(types=FUNNEL_STAGES)


def test_the_all_time_funnel_reads_the_stages_table_and_equals_the_events(chdb_path: Path) -> None:
    with Store.open(f"chdb://{chdb_path}?database={unique_name('stages')}") as store:
        seeded = seed(store)  # dave's first ten events are stored twice
        copies = store.rows("SELECT count() - uniqExact(id) FROM customer_events", {})
        assert copies == [(10,)]
        assert store.funnel(seeded.acme.id, ActivityQuery()) == ACME_FUNNEL
        assert store.funnel(seeded.acme.id, FROM_EVENTS) == ACME_FUNNEL
        assert store.funnel(seeded.acme.id, ActivityQuery(campaign_id=GIFT[0])) == [ACME_FUNNEL[2]]
        assert store.funnel(seeded.acme.id, ActivityQuery(limit=1)) == ACME_FUNNEL[:1]
        assert store.funnel(seeded.globex.id, ActivityQuery()) == []


def test_a_store_made_before_the_stages_table_is_filled_from_its_events(chdb_path: Path) -> None:
    url = f"chdb://{chdb_path}?database={unique_name('stages')}"
    with Store.open(url) as store:
        seeded = seed(store)
        admin = connect(store.location)
        for statement in ("DROP VIEW {database}.customer_campaign_stages_writer",
                          "DROP TABLE {database}.customer_campaign_stages"):
            admin.command(statement.format(database=store.location.database))
        admin.close()
    with Store.open(url, create_schema=False) as reader:
        assert reader.funnel(seeded.acme.id, FROM_EVENTS) == ACME_FUNNEL  # `serve` creates nothing
    with Store.open(url) as store:  # a reader creates the table and fills it
        assert store.funnel(seeded.acme.id, ActivityQuery()) == ACME_FUNNEL
        store.ensure_schema()  # again: nothing is added twice
        assert store.funnel(seeded.acme.id, ActivityQuery()) == ACME_FUNNEL
