"""POST /v1/redemptions and POST /v1/redemptions/{id}/rollback as the voucher engine commits them.

A successful redeemSingle is one transaction: ensureCustomer, the redemption INSERT, the
voucher's redemption_json UPDATE and customer.redemption.succeeded. When re-validation fails
inside it, only the customer upsert and customer.redemption.failed are committed. A rollback is a
single-row transaction with no event.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from demo.traffic.catalog import TEMPLATE_BY_NAME
from demo.traffic.customers import CustomerRef, ensure_customer, request_customer
from demo.traffic.engine import (
    Context,
    Transaction,
    Writes,
    customer_event,
    insert,
    update,
)
from demo.traffic.model import Customer, Redemption, TenantState, Voucher

STORES = ("berlin-mitte", "hamburg-hafen", "online", "munich-ost")
ROLLBACK_REASONS = ("Order canceled", "Goods returned", "Duplicate redemption", "Fraud suspected")


def _ref(customer: Customer) -> CustomerRef:
    return CustomerRef(customer.source_id, customer.name, customer.email)


def _redeemable_held(state: TenantState, ctx: Context) -> Voucher | None:
    for _attempt in range(5):
        voucher_id = state.held_vouchers.choice(ctx.rng)
        if voucher_id is None:
            return None
        voucher = state.vouchers[voucher_id]
        if voucher.can_be_redeemed and voucher.holder_id in state.customers:
            return voucher
    return None


def _shared_voucher(state: TenantState) -> Voucher | None:
    for name, campaign in state.campaigns.items():
        if not TEMPLATE_BY_NAME[name].publishable and campaign.voucher_type is not None:
            code = TEMPLATE_BY_NAME[name].code_prefix
            return next((v for v in state.vouchers.values() if v.code == code), None)
    return None


def redeem(state: TenantState, ctx: Context) -> Transaction | None:
    """A voucher redeemed by its holder, or the campaign's shared code by anyone (now and then
    without a customer: then there is no customer_event and customer_id is NULL)."""
    voucher = _redeemable_held(state, ctx) if ctx.rng.random() < 0.75 else None
    if voucher is not None:
        ref: CustomerRef | None = _ref(state.customers[voucher.holder_id])
    else:
        voucher = _shared_voucher(state)
        if voucher is None:
            return None
        ref = request_customer(state, ctx) if ctx.rng.random() < 0.9 else None
    writes = Writes()
    customer = ensure_customer(state, ctx, writes, ref) if ref else None
    amount = ctx.rng.randrange(1000, 20000, 50)
    redemption = Redemption(ctx.new_id(), voucher.id, customer.id if customer else None, amount)
    tracking_id = hashlib.sha256(ref.source_id.encode()).hexdigest() if ref else None
    writes.inserts.append(insert("redemption", {
        "id": redemption.id, "created_at": ctx.now, "updated_at": ctx.now, "tracking_id": tracking_id,
        "metadata": {"store": ctx.rng.choice(STORES)}, "amount": amount, "result": "SUCCESS",
        "status": "SUCCEEDED", "reason": None, "voucher_id": voucher.id, "customer_id": redemption.customer_id,
        "order_id": None, "parent_redemption_id": None, "tenant_id": state.id,
    }))
    redeemed = {**voucher.redemption, "redeemed_quantity": int(voucher.redemption.get("redeemed_quantity") or 0) + 1}
    writes.updates.append(update("voucher", voucher.id, {"redemption_json": redeemed, "updated_at": ctx.now}))
    if customer is not None:
        writes.inserts.append(customer_event(
            state.id, customer, "customer.redemption.succeeded", "ACTION", ctx,
            {"redemption_id": str(redemption.id), "voucher_code": voucher.code, "amount": amount},
            state.campaign(voucher.campaign_id),
        ))
    state.put_voucher(replace(voucher, redemption=redeemed))
    state.put_redemption(redemption)
    return writes.transaction("redemption.succeeded")


def redeem_failed(state: TenantState, ctx: Context) -> Transaction | None:
    """Re-validation inside redeemSingle fails: a used-up voucher, or one held by someone else."""
    voucher_id = state.held_vouchers.choice(ctx.rng)
    if voucher_id is None:
        return None
    voucher = state.vouchers[voucher_id]
    if not voucher.can_be_redeemed and voucher.holder_id in state.customers:
        ref = _ref(state.customers[voucher.holder_id])
        error = {"code": "quantity_exceeded", "message": "Voucher redemption quantity exceeded."}
    else:
        ref = request_customer(state, ctx)
        if state.customer_by_source.get(ref.source_id) == voucher.holder_id:
            return None
        error = {"code": "voucher_not_assigned", "message": "Voucher is assigned to another customer."}
    writes = Writes()
    customer = ensure_customer(state, ctx, writes, ref)
    writes.inserts.append(customer_event(
        state.id, customer, "customer.redemption.failed", "ACTION", ctx,
        {"voucher_code": voucher.code, "error": error}, state.campaign(voucher.campaign_id),
    ))
    return writes.transaction("redemption.failed")


def rollback(state: TenantState, ctx: Context) -> Transaction | None:
    """VoucherService.rollbackRedemption: tracking_id is the request's reason (as upstream does);
    result is always SUCCESS and repeated rollbacks are not checked."""
    redemption_id = state.redemption_pool.choice(ctx.rng)
    if redemption_id is None:
        return None
    redemption = state.redemptions[redemption_id]
    reason = ctx.rng.choice(ROLLBACK_REASONS)
    statement = insert("redemption_rollback", {
        "id": ctx.new_id(), "date": ctx.now, "tracking_id": reason, "metadata": None,
        "amount": redemption.amount if ctx.rng.random() < 0.7 else None, "result": "SUCCESS",
        "reason": reason, "redemption_id": redemption.id, "customer_id": redemption.customer_id,
        "tenant_id": state.id,
    })
    if redemption.customer_id is not None:
        state.pinned.add(redemption.customer_id)
    return Transaction("redemption.rollback", (statement,))
