"""Tenants, campaigns and vouchers as the voucher engine creates them, and voucher balance
changes (POST /v1/vouchers/{code}/balance)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any
from uuid import UUID

from demo.traffic.customers import ensure_customer, request_customer
from demo.traffic.engine import Context, Transaction, Writes, insert, update
from demo.traffic.model import Campaign, TenantState, Voucher

CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: codes are typed by people


@dataclass(frozen=True, slots=True)
class CampaignTemplate:
    name: str
    campaign_type: str
    mode: str
    code_prefix: str
    voucher_type: str | None  # None: a campaign without vouchers (a PROMOTION)
    initial_vouchers: int
    quantity: int | None  # redemption_json.quantity of its vouchers (None: unlimited)
    publishable: bool  # its vouchers are handed out by publications (else one shared code)
    discount: Mapping[str, Any] | None = None
    gift_amount: int | None = None


CAMPAIGN_TEMPLATES: tuple[CampaignTemplate, ...] = (
    CampaignTemplate("Welcome 10%", "DISCOUNT_COUPONS", "AUTO_UPDATE", "WELCOME", "DISCOUNT_VOUCHER", 20, 1, True,
                     discount={"type": "PERCENT", "percent_off": 10, "effect": "APPLY_TO_ORDER"}),
    CampaignTemplate("Summer Sale", "DISCOUNT_COUPONS", "STANDALONE", "SUMMER", "DISCOUNT_VOUCHER", 1, None, False,
                     discount={"type": "AMOUNT", "amount_off": 500, "effect": "APPLY_TO_ORDER"}),
    CampaignTemplate("Gift Cards", "GIFT_VOUCHERS", "AUTO_UPDATE", "GIFT", "GIFT_VOUCHER", 15, None, True,
                     gift_amount=5000),
    CampaignTemplate("Loyalty Club", "LOYALTY_PROGRAM", "AUTO_UPDATE", "LOYAL", "LOYALTY_CARD", 15, None, True),
    CampaignTemplate("Refer a Friend", "REFERRAL_PROGRAM", "AUTO_UPDATE", "REF", "DISCOUNT_VOUCHER", 10, 1, True,
                     discount={"type": "AMOUNT", "amount_off": 1000, "effect": "APPLY_TO_ORDER"}),
    CampaignTemplate("Spring Promotion", "PROMOTION", "STATIC", "PROMO", None, 0, None, False),
)
TEMPLATE_BY_NAME = MappingProxyType({template.name: template for template in CAMPAIGN_TEMPLATES})


def publishable_campaigns(state: TenantState) -> list[Campaign]:
    return [campaign for name, campaign in state.campaigns.items() if TEMPLATE_BY_NAME[name].publishable]


def create_tenant(name: str, ctx: Context) -> tuple[TenantState, Transaction]:
    """TenantService.ensureTenantExists: the first request with a new `tenant` header."""
    state = TenantState(ctx.new_id(), name)
    row = {"id": state.id, "created_at": ctx.now, "updated_at": ctx.now, "name": name}
    return state, Transaction("tenant.create", (insert("tenant", row),))


def create_campaign(state: TenantState, template: CampaignTemplate, ctx: Context) -> Transaction:
    """POST /v1/campaigns (active defaults to true)."""
    campaign = Campaign(ctx.new_id(), template.name, template.campaign_type, template.voucher_type)
    state.campaigns[template.name] = campaign
    return Transaction("campaign.create", (insert("campaign", {
        "id": campaign.id, "created_at": ctx.now, "updated_at": ctx.now, "name": campaign.name,
        "description": f"{template.name} ({state.name})", "type": campaign.type, "mode": template.mode,
        "code_pattern": f"{template.code_prefix}-######", "start_date": None, "expiration_date": None,
        "metadata": {"owner": "marketing"}, "active": True, "tenant_id": state.id,
    }),))


def _new_code(state: TenantState, template: CampaignTemplate, ctx: Context) -> str:
    if not template.publishable and template.code_prefix not in state.codes:
        return template.code_prefix  # the campaign's one shared code
    while True:
        code = f"{template.code_prefix}-{''.join(ctx.rng.choices(CODE_ALPHABET, k=6))}"
        if code not in state.codes:
            return code


def _card_json(template: CampaignTemplate) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    if template.voucher_type == "GIFT_VOUCHER":
        amount = template.gift_amount or 0
        return {"amount": amount, "subtracted_amount": 0, "balance": amount, "effect": "APPLY_TO_ORDER"}, None
    if template.voucher_type == "LOYALTY_CARD":
        return None, {"points": 0, "balance": 0, "next_expiration_date": None, "next_expiration_points": None,
                      "pending_points": 0, "expired_points": 0, "subtracted_points": 0}
    return None, None


def create_voucher(state: TenantState, template: CampaignTemplate, ctx: Context,
                   with_holder: bool = False) -> Transaction:
    """VoucherService.createVoucher (POST /v1/campaigns/{id}/vouchers): ensureCustomer for the
    request's customer (the holder) and the voucher INSERT, one transaction."""
    writes = Writes()
    holder = ensure_customer(state, ctx, writes, request_customer(state, ctx)) if with_holder else None
    campaign = state.campaigns[template.name]
    code = _new_code(state, template, ctx)
    gift, loyalty_card = _card_json(template)
    voucher = Voucher(ctx.new_id(), code, campaign.id, template.voucher_type or "DISCOUNT_VOUCHER",
                      holder.id if holder else None,
                      {"quantity": template.quantity, "redeemed_quantity": 0, "per_customer": None},
                      gift, loyalty_card)
    writes.inserts.append(insert("voucher", {
        "id": voucher.id, "created_at": ctx.now, "updated_at": ctx.now, "code": code,
        "campaign_id": campaign.id, "type": voucher.type, "discount_json": dict(template.discount) if template.discount else None,
        "gift_json": gift, "loyalty_card_json": loyalty_card, "start_date": None, "expiration_date": None,
        "active": True, "additional_info": None, "metadata": {"batch": ctx.now.strftime("%Y-%m")},
        "holder_id": voucher.holder_id, "tenant_id": state.id, "redemption_json": dict(voucher.redemption),
        "qr_id": f"qr_{code}", "qr_url": f"/v1/vouchers/{code}/qr",
        "barcode_id": f"bc_{code}", "barcode_url": f"/v1/vouchers/{code}/barcode",
    }))
    state.put_voucher(voucher)
    return writes.transaction("voucher.create")


def add_voucher(state: TenantState, ctx: Context) -> Transaction | None:
    """A new voucher for the publishable campaign with the fewest free vouchers, so that
    publications keep finding some; now and then created for a customer directly."""
    campaigns = publishable_campaigns(state)
    if not campaigns:
        return None
    campaign = min(campaigns, key=lambda c: len(state.free_vouchers.get(c.id, ())))
    return create_voucher(state, TEMPLATE_BY_NAME[campaign.name], ctx, with_holder=ctx.rng.random() < 0.15)


def _adjust_balance(state: TenantState, ctx: Context, voucher_type: str, operation: str) -> Transaction | None:
    """VoucherService.adjustVoucherBalance: voucher_transaction INSERT + the voucher's balance
    json UPDATE in one transaction; a change that would go negative is refused (nothing written)."""
    candidates = [v for v in (state.vouchers[i] for i in state.held_vouchers) if v.type == voucher_type]
    if not candidates or ctx.rng.random() < 0.1:  # balances of unassigned cards change too
        candidates = [v for v in state.vouchers.values() if v.type == voucher_type]
    if not candidates:
        return None
    voucher = ctx.rng.choice(candidates)
    balance = voucher.balance
    if balance > 0 and ctx.rng.random() < 0.3:
        amount = -ctx.rng.randint(1, balance)
    else:
        amount = ctx.rng.choice((500, 1000, 2500)) if voucher_type == "GIFT_VOUCHER" else ctx.rng.randint(10, 300)
    gift = voucher_type == "GIFT_VOUCHER"
    card = dict(voucher.gift if gift else voucher.loyalty_card or {})
    card["balance"] = balance + amount
    if amount > 0:
        card["amount" if gift else "points"] = int(card.get("amount" if gift else "points") or 0) + amount
    else:
        key = "subtracted_amount" if gift else "subtracted_points"
        card[key] = int(card.get(key) or 0) - amount
    kind = ("CREDITS" if gift else "POINTS") + ("_ADDITION" if amount > 0 else "_REMOVAL")
    changed = replace(voucher, gift=card) if gift else replace(voucher, loyalty_card=card)
    writes = Writes()
    writes.inserts.append(insert("voucher_transaction", {
        "id": ctx.new_id(), "created_at": ctx.now, "updated_at": ctx.now,
        "source_id": f"txn-{ctx.rng.getrandbits(32):08x}" if ctx.rng.random() < 0.5 else None,
        "voucher_id": voucher.id, "campaign_id": voucher.campaign_id, "type": kind, "source": "API",
        "reason": ctx.rng.choice(("purchase", "goodwill", "correction", None)), "amount": amount,
        "balance_after": card["balance"], "redemption_id": None, "rollback_id": None,
        "related_transaction_id": None, "details": None, "tenant_id": state.id,
    }))
    writes.updates.append(update("voucher", voucher.id, {
        "gift_json" if gift else "loyalty_card_json": card, "updated_at": ctx.now}))
    state.put_voucher(changed)
    return writes.transaction(operation)


def adjust_gift_balance(state: TenantState, ctx: Context) -> Transaction | None:
    return _adjust_balance(state, ctx, "GIFT_VOUCHER", "balance.gift")


def adjust_loyalty_balance(state: TenantState, ctx: Context) -> Transaction | None:
    return _adjust_balance(state, ctx, "LOYALTY_CARD", "balance.loyalty")


def campaign_voucher_count(state: TenantState, campaign_id: UUID) -> int:
    return sum(1 for voucher in state.vouchers.values() if voucher.campaign_id == campaign_id)
