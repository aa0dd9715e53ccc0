"""PublicationService.createPublication (POST /v1/publications) as the voucher engine commits it:
ensureCustomer, the vouchers' holder UPDATEs and the publication row (plus publication_vouchers
for campaign publications of more than one voucher), in one transaction. No customer_event."""

from __future__ import annotations

from dataclasses import replace
from uuid import UUID

from demo.traffic.catalog import publishable_campaigns
from demo.traffic.customers import ensure_customer, request_customer
from demo.traffic.engine import Context, Transaction, Writes, insert, update
from demo.traffic.model import Campaign, Customer, TenantState

CHANNELS = ("API", "API", "API", "Email", "SMS")  # request.channel ?: "API"


def _publication(state: TenantState, ctx: Context, writes: Writes, customer: Customer, *,
                 voucher_id: UUID | None, campaign: Campaign | None, failure: tuple[str, str] | None = None) -> UUID:
    publication_id = ctx.new_id()
    writes.inserts.append(insert("publication", {
        "id": publication_id, "created_at": ctx.now, "updated_at": ctx.now, "voucher_id": voucher_id,
        "customer_id": customer.id, "campaign_id": campaign.id if campaign else None,
        "result": "FAILURE" if failure else "SUCCESS",
        "failure_code": failure[0] if failure else None, "failure_message": failure[1] if failure else None,
        "source_id": f"pub-{ctx.rng.getrandbits(40):010x}" if ctx.rng.random() < 0.3 else None,
        "channel": ctx.rng.choice(CHANNELS), "metadata": None, "tenant_id": state.id,
    }))
    return publication_id


def _assign(state: TenantState, ctx: Context, writes: Writes, voucher_id: UUID, customer: Customer) -> None:
    writes.updates.append(update("voucher", voucher_id, {"holder_id": customer.id, "updated_at": ctx.now}))
    state.put_voucher(replace(state.vouchers[voucher_id], holder_id=customer.id))


def publish_voucher(state: TenantState, ctx: Context) -> Transaction | None:
    """Voucher mode: a free voucher goes to the customer; the row carries the voucher and its campaign."""
    campaigns = [c for c in publishable_campaigns(state) if len(state.free_vouchers.get(c.id, ()))]
    if not campaigns:
        return None
    campaign = ctx.rng.choice(campaigns)
    voucher_id = state.free_vouchers[campaign.id].choice(ctx.rng)
    writes = Writes()
    customer = ensure_customer(state, ctx, writes, request_customer(state, ctx))
    _assign(state, ctx, writes, voucher_id, customer)
    _publication(state, ctx, writes, customer, voucher_id=voucher_id, campaign=campaign)
    return writes.transaction("publication.voucher")


def publish_from_campaign(state: TenantState, ctx: Context) -> Transaction | None:
    """Campaign mode: `count` free vouchers of the campaign; with count > 1 the row has no
    voucher_id and publication_vouchers lists them."""
    campaigns = [c for c in publishable_campaigns(state) if len(state.free_vouchers.get(c.id, ()))]
    if not campaigns:
        return None
    campaign = ctx.rng.choice(campaigns)
    wanted = 1 if ctx.rng.random() < 0.4 else ctx.rng.randint(2, 3)
    vouchers = state.free_vouchers[campaign.id].sample(ctx.rng, wanted)
    writes = Writes()
    customer = ensure_customer(state, ctx, writes, request_customer(state, ctx))
    for voucher_id in vouchers:
        _assign(state, ctx, writes, voucher_id, customer)
    single = vouchers[0] if len(vouchers) == 1 else None
    publication_id = _publication(state, ctx, writes, customer, voucher_id=single, campaign=campaign)
    if single is None:
        for voucher_id in vouchers:
            writes.inserts.append(insert("publication_vouchers",
                                         {"publication_id": publication_id, "voucher_id": voucher_id}))
    return writes.transaction("publication.campaign")


def publish_failed(state: TenantState, ctx: Context) -> Transaction | None:
    """A publication the engine records as FAILURE (voucher_id NULL): an unknown code or campaign,
    a voucher someone already holds, or a campaign without free vouchers."""
    writes = Writes()
    roll = ctx.rng.random()
    held = state.held_vouchers.choice(ctx.rng)
    empty = [c for c in state.campaigns.values() if not len(state.free_vouchers.get(c.id, ()))]
    if roll < 0.4 and held is not None:
        campaign = state.campaign(state.vouchers[held].campaign_id)
        failure = ("voucher_already_published", "Voucher is already published to a customer.")
    elif roll < 0.7 and empty:
        campaign = ctx.rng.choice(empty)
        failure = ("voucher_not_found", "No available vouchers for campaign")
    elif roll < 0.85:
        campaign, failure = None, ("campaign_not_found", "Campaign not found.")
    else:
        campaign, failure = None, ("voucher_not_found", "Voucher not found.")
    customer = ensure_customer(state, ctx, writes, request_customer(state, ctx))
    _publication(state, ctx, writes, customer, voucher_id=None, campaign=campaign, failure=failure)
    return writes.transaction("publication.failed")
