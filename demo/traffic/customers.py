"""Customer and segment API calls of the voucher engine, planned as transactions: POST
/v1/customers (upsert), the implicit `ensureCustomer` of other calls, DELETE /v1/customers/{id},
POST and DELETE /v1/segments."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from demo.traffic.engine import (
    Context,
    Transaction,
    Writes,
    customer_event,
    delete,
    event_row,
    insert,
    update,
)
from demo.traffic.model import Customer, Segment, TenantState, unused_source_id

FIRST_NAMES = ("Ada", "Alan", "Barbara", "Claude", "Donald", "Edsger", "Frances", "Grace", "Hedy",
               "John", "Katherine", "Leslie", "Margaret", "Niklaus", "Radia", "Tim")
LAST_NAMES = ("Lovelace", "Turing", "Liskov", "Shannon", "Knuth", "Dijkstra", "Allen", "Hopper",
              "Lamarr", "Backus", "Johnson", "Lamport", "Hamilton", "Wirth", "Perlman", "Berners-Lee")
TIERS = ("bronze", "silver", "gold")
SEGMENT_NAMES = ("VIP customers", "Newsletter", "Churn risk", "Black Friday", "New in town", "Loyal")


@dataclass(frozen=True, slots=True)
class CustomerRef:
    """The `customer` object of a request: ensureCustomer keys on source_id and overwrites only
    the non-null fields (never metadata)."""

    source_id: str
    name: str | None = None
    email: str | None = None
    phone: str | None = None


def new_person(state: TenantState, ctx: Context) -> CustomerRef:
    source_id = unused_source_id(state.customer_by_source, f"{state.name}-cust", 5)
    first, last = ctx.rng.choice(FIRST_NAMES), ctx.rng.choice(LAST_NAMES)
    email = f"{first}.{last}.{source_id.rsplit('-', 1)[1]}@{state.name}.example".lower()
    phone = f"+4915{ctx.rng.randrange(10**8):08d}" if ctx.rng.random() < 0.5 else None
    return CustomerRef(source_id, f"{first} {last}", email, phone)


def request_customer(state: TenantState, ctx: Context) -> CustomerRef:
    """The customer a request names: mostly a known one as stored, sometimes with a new name
    (the implicit upsert then UPDATEs it), sometimes someone new (implicitly created)."""
    customer_id = state.customer_pool.choice(ctx.rng)
    roll = ctx.rng.random()
    if customer_id is None or roll < 0.15:
        return new_person(state, ctx)
    customer = state.customers[customer_id]
    if roll < 0.22:
        return CustomerRef(customer.source_id, f"{ctx.rng.choice(FIRST_NAMES)} {ctx.rng.choice(LAST_NAMES)}",
                           customer.email)
    return CustomerRef(customer.source_id, customer.name, customer.email)


def ensure_customer(state: TenantState, ctx: Context, writes: Writes, ref: CustomerRef,
                    metadata: dict[str, Any] | None = None) -> Customer:
    """CustomerService.ensureCustomer (metadata only through the explicit upsert): INSERT when the
    source_id is unknown, UPDATE only when a non-null request field differs (Hibernate's dirty check)."""
    known = state.customer_by_source.get(ref.source_id)
    if known is None:
        customer = Customer(ctx.new_id(), ref.source_id, ref.name, ref.email, ref.phone, metadata)
        writes.inserts.append(insert("customer", {
            "id": customer.id, "created_at": ctx.now, "updated_at": ctx.now, "source_id": customer.source_id,
            "name": customer.name, "email": customer.email, "phone": customer.phone,
            "metadata": customer.metadata, "tenant_id": state.id,
        }))
        state.put_customer(customer)
        return customer
    current = state.customers[known]
    wanted = replace(current, name=ref.name or current.name, email=ref.email or current.email,
                     phone=ref.phone or current.phone,
                     metadata=metadata if metadata is not None else current.metadata)
    if wanted != current:
        writes.updates.append(update("customer", current.id, {
            "updated_at": ctx.now, "name": wanted.name, "email": wanted.email, "phone": wanted.phone,
            "metadata": wanted.metadata,
        }))
        state.put_customer(wanted)
    return wanted


def _upsert(state: TenantState, ctx: Context, ref: CustomerRef, metadata: dict[str, Any] | None,
            operation: str) -> Transaction:
    """CustomerService.upsert: the customer write plus customer.created/updated, one transaction;
    customer.updated is logged even when nothing changed (then there is no customer UPDATE)."""
    created = ref.source_id not in state.customer_by_source
    writes = Writes()
    customer = ensure_customer(state, ctx, writes, ref, metadata)
    writes.inserts.append(customer_event(
        state.id, customer, "customer.created" if created else "customer.updated", "EFFECT", ctx,
        {"source_id": customer.source_id, "email": customer.email, "name": customer.name},
    ))
    return writes.transaction(operation)


def create_customer(state: TenantState, ctx: Context) -> Transaction:
    metadata = {"tier": ctx.rng.choice(TIERS), "newsletter": ctx.rng.random() < 0.5}
    return _upsert(state, ctx, new_person(state, ctx), metadata, "customer.create")


def update_customer(state: TenantState, ctx: Context) -> Transaction | None:
    customer_id = state.customer_pool.choice(ctx.rng)
    if customer_id is None:
        return None
    customer = state.customers[customer_id]
    roll = ctx.rng.random()
    if roll < 0.3:  # the same values again
        ref, metadata = CustomerRef(customer.source_id, customer.name, customer.email, customer.phone), None
    elif roll < 0.6:
        ref = CustomerRef(customer.source_id, phone=f"+4917{ctx.rng.randrange(10**8):08d}")
        metadata = None
    else:
        ref = CustomerRef(customer.source_id, f"{ctx.rng.choice(FIRST_NAMES)} {ctx.rng.choice(LAST_NAMES)}")
        metadata = {**(customer.metadata or {}), "tier": ctx.rng.choice(TIERS)}
    return _upsert(state, ctx, ref, metadata, "customer.update")


def delete_customer(state: TenantState, ctx: Context) -> Transaction | None:
    """CustomerService.delete for a customer without orders, redemptions or rollbacks (with them
    the engine's transaction fails on a foreign key and nothing is committed)."""
    for _attempt in range(20):
        customer_id = state.customer_pool.choice(ctx.rng)
        if customer_id is None:
            return None
        if customer_id not in state.pinned:
            break
    else:
        return None
    customer = state.drop_customer(customer_id)
    writes = Writes()
    writes.inserts.append(customer_event(
        state.id, customer, "customer.deleted", "EFFECT", ctx,
        {"source_id": customer.source_id, "email": customer.email},
    ))
    for voucher in [v for v in state.vouchers.values() if v.holder_id == customer_id]:
        writes.updates.append(update("voucher", voucher.id, {"holder_id": None, "updated_at": ctx.now}))
        state.put_voucher(replace(voucher, holder_id=None))
    writes.deletes.append(delete(
        "publication_vouchers", "publication_id IN (SELECT id FROM publication WHERE customer_id = %s)", customer_id))
    writes.deletes.append(delete("publication", "customer_id = %s", customer_id))
    writes.deletes.append(delete("customer", "id = %s", customer_id))
    return writes.transaction("customer.delete")


def create_segment(state: TenantState, ctx: Context) -> Transaction | None:
    """SegmentService.create: the segment, and for a STATIC one its members, each with a
    customer.segment.entered event; AUTO_UPDATE filters are stored, never evaluated."""
    if not state.customers:
        return None
    name = f"{ctx.rng.choice(SEGMENT_NAMES)} {len(state.segments) + 1}"
    static = ctx.rng.random() < 0.8
    segment = Segment(ctx.new_id(), name, "STATIC" if static else "AUTO_UPDATE",
                      tuple(state.customer_pool.sample(ctx.rng, ctx.rng.randint(2, 6))) if static else ())
    writes = Writes()
    writes.inserts.append(insert("segment", {
        "id": segment.id, "created_at": ctx.now, "updated_at": ctx.now, "name": segment.name,
        "type": segment.type, "filter": None if static else {"metadata.tier": {"$is": ["gold"]}},
        "tenant_id": state.id,
    }))
    for member in segment.members:
        writes.inserts.append(insert("segment_customer", {"segment_id": segment.id, "customer_id": member}))
        writes.inserts.append(event_row(state.id, member, "customer.segment.entered", "EFFECT", ctx,
                                        {"segment": {"id": str(segment.id), "name": segment.name}}))
    state.put_segment(segment)
    return writes.transaction("segment.create")


def delete_segment(state: TenantState, ctx: Context) -> Transaction | None:
    """SegmentService.delete: customer.segment.left per member, then the members and the segment.
    Members are not checked against existing customers (segment_customer has no FK to customer)."""
    segment_id = state.segment_pool.choice(ctx.rng)
    if segment_id is None:
        return None
    segment = state.drop_segment(segment_id)
    writes = Writes()
    for member in segment.members:
        writes.inserts.append(event_row(state.id, member, "customer.segment.left", "EFFECT", ctx,
                                        {"segment": {"id": str(segment.id), "name": segment.name}}))
    writes.deletes.append(delete("segment_customer", "segment_id = %s", segment.id))
    writes.deletes.append(delete("segment", "id = %s", segment.id))
    return writes.transaction("segment.delete")
