"""`VoucherTraffic`: writes to a voucher database exactly as the voucher engine's API calls do,
one engine transaction per business operation, for the demo, the crash-safety tests and the
benchmarks. Planning an operation is pure (the modules beside this one); this class owns the
connection, the seeded randomness and the pacing."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from types import MappingProxyType

import psycopg

from demo.traffic import catalog, customers, orders, publications, redemptions
from demo.traffic.engine import Context, Transaction, utc_now
from demo.traffic.mix import OPERATION_WEIGHTS
from demo.traffic.model import TenantState, load_tenants

INITIAL_CUSTOMERS = 10  # per tenant, created by setup() through POST /v1/customers

Planner = Callable[[TenantState, Context], Transaction | None]

PLANNERS: Mapping[str, Planner] = MappingProxyType({
    "customer.create": customers.create_customer,
    "customer.update": customers.update_customer,
    "voucher.create": catalog.add_voucher,
    "publication.voucher": publications.publish_voucher,
    "publication.campaign": publications.publish_from_campaign,
    "publication.failed": publications.publish_failed,
    "redemption.succeeded": redemptions.redeem,
    "redemption.failed": redemptions.redeem_failed,
    "redemption.rollback": redemptions.rollback,
    "order.create": orders.create_order,
    "order.update": orders.update_order,
    "segment.create": customers.create_segment,
    "segment.delete": customers.delete_segment,
    "balance.gift": catalog.adjust_gift_balance,
    "balance.loyalty": catalog.adjust_loyalty_balance,
    "customer.delete": customers.delete_customer,
})

TEMPLATE_TYPES = MappingProxyType({t.name: (t.campaign_type, t.voucher_type) for t in catalog.CAMPAIGN_TEMPLATES})


class VoucherTraffic:
    """Engine-like traffic for `tenants` on the voucher database at `dsn`.

    With the same seed on an empty database the same operations write the same ids and values
    (timestamps are the wall clock). On a database that already holds data, setup() continues
    from its contents. Not thread-safe: one thread drives one instance.
    """

    def __init__(self, dsn: str, *, tenants: tuple[str, ...] = ("acme", "globex"), seed: int = 0) -> None:
        if not tenants:
            raise ValueError("VoucherTraffic needs at least one tenant name")
        self.dsn = dsn
        self.tenants = tuple(tenants)
        self.seed = seed
        self._rng: random.Random | None = None
        self._conn: psycopg.Connection | None = None
        self._states: dict[str, TenantState] | None = None
        self._names = tuple(OPERATION_WEIGHTS)
        self._weights = tuple(OPERATION_WEIGHTS.values())
        self.counts: Counter[str] = Counter()  # operations committed by this instance, by name

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> VoucherTraffic:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, autocommit=True, application_name="voucher-traffic")
        return self._conn

    def _forget(self) -> None:
        """After a failed commit the outcome is unknown (the commit may have happened before the
        connection broke): drop the connection and reload the state from the database."""
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._states = None

    def _commit(self, transaction: Transaction) -> None:
        conn = self._connection()
        try:
            with conn.transaction(), conn.pipeline():
                for sql, params in transaction.statements:
                    conn.execute(sql, params)
        except psycopg.Error:
            self._forget()
            raise
        self.counts[transaction.operation] += 1

    # -- the API ---------------------------------------------------------------------------

    def setup(self) -> None:
        """Tenants, their campaigns, vouchers and first customers, each written by the API call
        that creates it. Idempotent: what exists already is loaded, not written again."""
        conn = self._connection()
        if self._rng is None:
            self._rng = random.Random(self._seed_for(conn))
        states = load_tenants(conn, self.tenants, TEMPLATE_TYPES)
        for name in self.tenants:
            if name not in states:
                state, transaction = catalog.create_tenant(name, self._context())
                self._commit(transaction)
                states[name] = state
            self._top_up(states[name])
        self._states = states

    def _seed_for(self, conn: psycopg.Connection) -> str | int:
        # A database that already holds rows gets a seed of its own, so that continuing on it
        # never replays ids committed by an earlier run with the same seed.
        (existing,) = conn.execute(
            "SELECT (SELECT count(*) FROM customer_event) + (SELECT count(*) FROM voucher) "
            "+ (SELECT count(*) FROM tenant)"
        ).fetchone()
        return self.seed if existing == 0 else f"{self.seed}:{existing}"

    def _top_up(self, state: TenantState) -> None:
        for template in catalog.CAMPAIGN_TEMPLATES:
            if template.name not in state.campaigns:
                self._commit(catalog.create_campaign(state, template, self._context()))
            campaign = state.campaigns[template.name]
            for _ in range(template.initial_vouchers - catalog.campaign_voucher_count(state, campaign.id)):
                self._commit(catalog.create_voucher(state, template, self._context()))
        for _ in range(INITIAL_CUSTOMERS - len(state.customers)):
            self._commit(customers.create_customer(state, self._context()))

    def _context(self) -> Context:
        assert self._rng is not None
        return Context(self._rng, utc_now())

    def step(self) -> str:
        """One random business operation, committed as the engine's API call would commit it;
        returns its name (a key of OPERATION_WEIGHTS)."""
        if self._states is None:
            self.setup()
        assert self._states is not None and self._rng is not None
        state = self._states[self._rng.choice(self.tenants)]
        context = self._context()
        transaction = None
        for _attempt in range(10):  # an operation may have nothing to act on yet
            name = self._rng.choices(self._names, self._weights)[0]
            transaction = PLANNERS[name](state, context)
            if transaction is not None:
                break
        if transaction is None:
            transaction = customers.create_customer(state, context)
        self._commit(transaction)
        return transaction.operation

    def burst(self, n: int) -> dict[str, int]:
        """n operations back to back; returns how many of each were committed."""
        done: Counter[str] = Counter()
        for _ in range(n):
            done[self.step()] += 1
        return dict(done)

    def run(self, rate: float, stop: threading.Event, max_operations: int | None = None) -> int:
        """Operations at `rate` per second until `stop` is set (or max_operations are done).
        A lost connection (e.g. PostgreSQL restarting) is retried with backoff, not raised.
        Returns the number of operations committed."""
        if rate <= 0:
            raise ValueError(f"rate must be positive, not {rate}")
        interval, done, backoff = 1.0 / rate, 0, 0.1
        next_at = time.monotonic()
        while not stop.is_set() and (max_operations is None or done < max_operations):
            try:
                self.step()
            except psycopg.OperationalError:
                if stop.wait(backoff):
                    break
                backoff = min(backoff * 2, 5.0)
                continue
            done, backoff = done + 1, 0.1
            next_at += interval
            delay = next_at - time.monotonic()
            if delay <= 0:
                next_at = time.monotonic()  # behind after a stall: carry on at rate, no catch-up burst
            elif stop.wait(delay):
                break
        return done
