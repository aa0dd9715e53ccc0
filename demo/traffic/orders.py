"""POST /v1/orders as the voucher engine's OrderService commits it: ensureCustomer, the orders
INSERT or UPDATE, and when items are given all order_item rows deleted and inserted again, in
one transaction. Status is a free-form string; this generator walks CREATED -> PAID -> FULFILLED,
with CANCELED from either of the first two."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType
from typing import Any

from demo.traffic.customers import CustomerRef, ensure_customer, request_customer
from demo.traffic.engine import Context, Transaction, Writes, delete, insert, update
from demo.traffic.model import Order, TenantState, unused_source_id

PRODUCTS = (("prod_espresso", "sku_espresso_250g", 1290), ("prod_mug", "sku_mug_white", 990),
            ("prod_grinder", "sku_grinder_manual", 4990), ("prod_filter", "sku_filter_100", 450),
            ("prod_kettle", "sku_kettle_steel", 3490))
NEXT_STATUS = MappingProxyType({
    "CREATED": (("PAID", 0.75), ("CANCELED", 0.25)),
    "PAID": (("FULFILLED", 0.8), ("CANCELED", 0.2)),
})


def _items(state: TenantState, ctx: Context, writes: Writes, order_id: Any) -> int:
    """INSERTs 1-3 order_item rows and returns their total amount."""
    total = 0
    for product_id, sku_id, price in ctx.rng.sample(PRODUCTS, ctx.rng.randint(1, 3)):
        quantity = ctx.rng.randint(1, 4)
        amount = price * quantity
        total += amount
        writes.inserts.append(insert("order_item", {
            "id": ctx.new_id(), "created_at": ctx.now, "updated_at": ctx.now, "product_id": product_id,
            "sku_id": sku_id, "source_id": None, "related_object": "sku", "quantity": quantity,
            "amount": amount, "discount_amount": 0, "subtotal_amount": amount, "price": price,
            "product_snapshot": None, "sku_snapshot": None, "metadata": None, "order_id": order_id,
            "tenant_id": state.id,
        }))
    return total


def create_order(state: TenantState, ctx: Context) -> Transaction:
    """A new source_id: the orders INSERT with its items; a few orders are from guests (no customer)."""
    writes = Writes()
    ref = request_customer(state, ctx) if ctx.rng.random() < 0.95 else None
    customer = ensure_customer(state, ctx, writes, ref) if ref else None
    order = Order(ctx.new_id(), unused_source_id(state.order_sources, f"{state.name}-ord", 6), "CREATED" if ctx.rng.random() < 0.7 else "PAID",
                  None, customer.id if customer else None)
    row_position = len(writes.inserts)
    amount = _items(state, ctx, writes, order.id)
    discount = ctx.rng.choice((0, 0, 0, 500))
    order = replace(order, amount=amount - discount)
    writes.inserts.insert(row_position, insert("orders", {
        "id": order.id, "created_at": ctx.now, "updated_at": ctx.now, "source_id": order.source_id,
        "status": order.status, "amount": order.amount, "initial_amount": amount, "discount_amount": discount,
        "metadata": {"channel": ctx.rng.choice(("web", "app", "store"))}, "customer_id": order.customer_id,
        "tenant_id": state.id,
    }))
    state.put_order(order)
    return writes.transaction("order.create")


def update_order(state: TenantState, ctx: Context) -> Transaction | None:
    """An existing source_id: a status step (sometimes with new items), or new items only, which
    leaves the orders row without an UPDATE. customer_id is set from the request again."""
    order_id = state.open_orders.choice(ctx.rng)
    if order_id is None:
        return None
    order = state.orders[order_id]
    writes = Writes()
    if order.customer_id is not None:
        customer = state.customers[order.customer_id]
        ensure_customer(state, ctx, writes, CustomerRef(customer.source_id, customer.name, customer.email))
    roll = ctx.rng.random()
    changes: dict[str, Any] = {}
    if roll < 0.8:
        statuses, weights = zip(*NEXT_STATUS[order.status or "CREATED"])
        changes["status"] = ctx.rng.choices(statuses, weights)[0]
    if roll < 0.25 or roll >= 0.8:  # items given: orphan removal, then the new rows
        writes.orphans.append(delete("order_item", "order_id = %s", order.id))
        amount = _items(state, ctx, writes, order.id)
        if roll < 0.25:
            changes.update(amount=amount, initial_amount=amount, discount_amount=0)
    if changes:
        writes.updates.append(update("orders", order.id, {**changes, "updated_at": ctx.now}))
        order = replace(order, status=changes.get("status", order.status), amount=changes.get("amount", order.amount))
    state.put_order(order)
    return writes.transaction("order.update")
