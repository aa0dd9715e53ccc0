"""What the traffic generator knows about the voucher database: immutable records of the rows it
chooses from, indexed per tenant, and how to load them from an existing database."""

from __future__ import annotations

import random
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from uuid import UUID

import psycopg

Key = TypeVar("Key")


class Pool(Generic[Key]):
    """A set with O(1) add, remove and uniformly random choice, iterated in a stable order so
    that a seeded generator makes the same choices on the same data."""

    __slots__ = ("_items", "_index")

    def __init__(self) -> None:
        self._items: list[Key] = []
        self._index: dict[Key, int] = {}

    def add(self, item: Key) -> None:
        if item not in self._index:
            self._index[item] = len(self._items)
            self._items.append(item)

    def discard(self, item: Key) -> None:
        position = self._index.pop(item, None)
        if position is None:
            return
        last = self._items.pop()
        if position < len(self._items):
            self._items[position] = last
            self._index[last] = position

    def choice(self, rng: random.Random) -> Key | None:
        return rng.choice(self._items) if self._items else None

    def sample(self, rng: random.Random, count: int) -> list[Key]:
        return rng.sample(self._items, min(count, len(self._items)))

    def __contains__(self, item: object) -> bool:
        return item in self._index

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Key]:
        return iter(list(self._items))


@dataclass(frozen=True, slots=True)
class Customer:
    id: UUID
    source_id: str
    name: str | None
    email: str | None
    phone: str | None
    metadata: Mapping[str, Any] | None

    def snapshot(self) -> dict[str, Any]:
        """The customer object the engine's CustomerEventService puts into event data."""
        return {"id": str(self.id), "email": self.email, "source_id": self.source_id, "name": self.name}


@dataclass(frozen=True, slots=True)
class Campaign:
    id: UUID
    name: str
    type: str  # CampaignType
    voucher_type: str | None  # VoucherType of its vouchers; None: a campaign without vouchers

    def snapshot(self) -> dict[str, Any]:
        return {"id": str(self.id), "name": self.name, "type": self.type}


@dataclass(frozen=True, slots=True)
class Voucher:
    id: UUID
    code: str
    campaign_id: UUID
    type: str  # VoucherType
    holder_id: UUID | None
    redemption: Mapping[str, Any]  # redemption_json {quantity, redeemed_quantity, per_customer}
    gift: Mapping[str, Any] | None
    loyalty_card: Mapping[str, Any] | None

    @property
    def can_be_redeemed(self) -> bool:
        quantity = self.redemption.get("quantity")
        return quantity is None or self.redemption.get("redeemed_quantity", 0) < quantity

    @property
    def balance(self) -> int:
        card = self.gift if self.gift is not None else self.loyalty_card
        return int((card or {}).get("balance") or 0)


@dataclass(frozen=True, slots=True)
class Order:
    id: UUID
    source_id: str
    status: str | None
    amount: int | None
    customer_id: UUID | None


@dataclass(frozen=True, slots=True)
class Redemption:
    id: UUID
    voucher_id: UUID
    customer_id: UUID | None
    amount: int | None


@dataclass(frozen=True, slots=True)
class Segment:
    id: UUID
    name: str
    type: str
    members: tuple[UUID, ...]


@dataclass(slots=True)
class TenantState:
    """Everything the generator chooses from within one tenant. Owned by one generator."""

    id: UUID
    name: str
    campaigns: dict[str, Campaign] = field(default_factory=dict)  # by name
    customers: dict[UUID, Customer] = field(default_factory=dict)
    customer_by_source: dict[str, UUID] = field(default_factory=dict)
    customer_pool: Pool[UUID] = field(default_factory=Pool)
    # customers the engine cannot delete (FK from orders, redemption, redemption_rollback)
    pinned: set[UUID] = field(default_factory=set)
    vouchers: dict[UUID, Voucher] = field(default_factory=dict)
    codes: set[str] = field(default_factory=set)
    free_vouchers: dict[UUID, Pool[UUID]] = field(default_factory=dict)  # by campaign id
    held_vouchers: Pool[UUID] = field(default_factory=Pool)
    orders: dict[UUID, Order] = field(default_factory=dict)
    open_orders: Pool[UUID] = field(default_factory=Pool)
    order_sources: set[str] = field(default_factory=set)
    redemptions: dict[UUID, Redemption] = field(default_factory=dict)
    redemption_pool: Pool[UUID] = field(default_factory=Pool)
    segments: dict[UUID, Segment] = field(default_factory=dict)
    segment_pool: Pool[UUID] = field(default_factory=Pool)

    def campaign(self, campaign_id: UUID) -> Campaign:
        return next(c for c in self.campaigns.values() if c.id == campaign_id)

    def put_customer(self, customer: Customer) -> None:
        self.customers[customer.id] = customer
        self.customer_by_source[customer.source_id] = customer.id
        self.customer_pool.add(customer.id)

    def drop_customer(self, customer_id: UUID) -> Customer:
        customer = self.customers.pop(customer_id)
        if self.customer_by_source.get(customer.source_id) == customer_id:
            del self.customer_by_source[customer.source_id]
        self.customer_pool.discard(customer_id)
        return customer

    def put_voucher(self, voucher: Voucher) -> None:
        self.vouchers[voucher.id] = voucher
        self.codes.add(voucher.code)
        free = self.free_vouchers.setdefault(voucher.campaign_id, Pool())
        if voucher.holder_id is None:
            free.add(voucher.id)
            self.held_vouchers.discard(voucher.id)
        else:
            free.discard(voucher.id)
            self.held_vouchers.add(voucher.id)

    def put_order(self, order: Order) -> None:
        self.orders[order.id] = order
        self.order_sources.add(order.source_id)
        if order.status in TERMINAL_ORDER_STATUSES:
            self.open_orders.discard(order.id)
        else:
            self.open_orders.add(order.id)
        if order.customer_id is not None:
            self.pinned.add(order.customer_id)

    def put_redemption(self, redemption: Redemption) -> None:
        self.redemptions[redemption.id] = redemption
        self.redemption_pool.add(redemption.id)
        if redemption.customer_id is not None:
            self.pinned.add(redemption.customer_id)

    def put_segment(self, segment: Segment) -> None:
        self.segments[segment.id] = segment
        self.segment_pool.add(segment.id)

    def drop_segment(self, segment_id: UUID) -> Segment:
        self.segment_pool.discard(segment_id)
        return self.segments.pop(segment_id)


TERMINAL_ORDER_STATUSES = frozenset({"FULFILLED", "CANCELED"})


def unused_source_id(taken: Collection[str], prefix: str, width: int) -> str:
    """The first `<prefix>-<number>` (the number zero-padded to `width` digits) not in `taken`,
    counting from one past how many are taken."""
    number = len(taken) + 1
    while f"{prefix}-{number:0{width}d}" in taken:
        number += 1
    return f"{prefix}-{number:0{width}d}"


def load_tenants(conn: psycopg.Connection, names: tuple[str, ...],
                 campaign_templates: Mapping[str, tuple[str, str | None]]) -> dict[str, TenantState]:
    """The state of the named tenants that exist in the database (missing ones are left out).

    Rows are read in a fixed order, so a seeded generator continues deterministically.
    `campaign_templates` (name -> (campaign type, voucher type)) selects the campaigns to track.
    """
    states: dict[str, TenantState] = {}
    for tenant_id, name in conn.execute(
        "SELECT id, name FROM tenant WHERE name = ANY(%s) ORDER BY name", (list(names),)
    ):
        states[name] = TenantState(tenant_id, name)
    for state in states.values():
        _load_tenant(conn, state, campaign_templates)
    return states


def _load_tenant(conn: psycopg.Connection, state: TenantState,
                 campaign_templates: Mapping[str, tuple[str, str | None]]) -> None:
    tenant = (state.id,)
    for campaign_id, name, campaign_type in conn.execute(
        "SELECT id, name, type FROM campaign WHERE tenant_id = %s ORDER BY created_at, id", tenant
    ):
        if name in campaign_templates and name not in state.campaigns:
            state.campaigns[name] = Campaign(campaign_id, name, campaign_type, campaign_templates[name][1])
    for row in conn.execute(
        "SELECT id, source_id, name, email, phone, metadata FROM customer WHERE tenant_id = %s "
        "ORDER BY created_at, id", tenant
    ):
        state.put_customer(Customer(*row))
    tracked = {campaign.id for campaign in state.campaigns.values()}
    for row in conn.execute(
        "SELECT id, code, campaign_id, type, holder_id, redemption_json, gift_json, loyalty_card_json "
        "FROM voucher WHERE tenant_id = %s ORDER BY created_at, id", tenant
    ):
        voucher = Voucher(*row[:5], row[5] or {}, row[6], row[7])
        state.codes.add(voucher.code)
        if voucher.campaign_id in tracked:
            state.put_voucher(voucher)
    for row in conn.execute(
        "SELECT id, source_id, status, amount, customer_id FROM orders WHERE tenant_id = %s "
        "ORDER BY created_at, id", tenant
    ):
        state.put_order(Order(*row))
    for row in conn.execute(
        "SELECT id, voucher_id, customer_id, amount FROM redemption WHERE tenant_id = %s "
        "ORDER BY created_at, id", tenant
    ):
        state.put_redemption(Redemption(*row))
    state.pinned.update(customer_id for (customer_id,) in conn.execute(
        "SELECT DISTINCT customer_id FROM redemption_rollback WHERE tenant_id = %s "
        "AND customer_id IS NOT NULL", tenant
    ))
    members: dict[UUID, list[UUID]] = {}
    for segment_id, customer_id in conn.execute(
        "SELECT sc.segment_id, sc.customer_id FROM segment_customer sc JOIN segment s ON s.id = sc.segment_id "
        "WHERE s.tenant_id = %s AND sc.customer_id IS NOT NULL ORDER BY sc.segment_id, sc.customer_id", tenant
    ):
        members.setdefault(segment_id, []).append(customer_id)
    for segment_id, name, segment_type in conn.execute(
        "SELECT id, name, type FROM segment WHERE tenant_id = %s ORDER BY created_at, id", tenant
    ):
        state.put_segment(Segment(segment_id, name, segment_type, tuple(members.get(segment_id, ()))))
