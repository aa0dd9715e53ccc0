"""The domains of the activity filters `type` and `campaign_type` (SPEC §6): a value outside
them is a 400 naming the parameter, never an empty page.

`type` takes every type the event catalog can produce (so a rule added to `catalog.toml`
is filterable at once) and every type of Voucherify's customer activity object, which
`customer_event` rows may carry through (SPEC §4) and Voucherify clients already send. The
list is Voucherify's `CustomerActivity.type` enum as its API reference documents it
(voucherifyio/voucherify-openapi, `CUSTOMERS-Customer-Activity-Object.md`), with the two
consent types its earlier List Customer Activities reference also named.
"""

from __future__ import annotations

from mappers.catalog import load_catalog

VOUCHERIFY_ACTIVITY_TYPES = (
    "customer.confirmed", "customer.created", "customer.updated", "customer.deleted",
    "customer.referred", "customer.custom_event", "customer.segment.entered", "customer.segment.left",
    "customer.sms.sent", "customer.sms.recovered", "customer.sms.failed",
    "customer.email.sent", "customer.email.recovered", "customer.email.failed",
    "customer.activecampaign.sent", "customer.activecampaign.recovered", "customer.activecampaign.failed",
    "customer.braze.sent", "customer.braze.recovered", "customer.braze.failed",
    "customer.mailchimp.sent", "customer.mailchimp.recovered", "customer.mailchimp.failed",
    "customer.intercom.sent", "customer.intercom.recovered", "customer.intercom.failed",
    "customer.shopify.sent", "customer.shopify.recovered", "customer.shopify.failed",
    "customer.klaviyo.sent", "customer.klaviyo.recovered", "customer.klaviyo.failed",
    "customer.batch.sent", "customer.batch.recovered", "customer.batch.failed",
    "customer.rewarded", "customer.rewarded.loyalty_points", "customer.voucher.gift.balance_added",
    "customer.voucher.loyalty_card.pending_points.activated",
    "customer.voucher.loyalty_card.pending_points.added",
    "customer.voucher.loyalty_card.pending_points.canceled",
    "customer.voucher.loyalty_card.pending_points.updated",
    "customer.voucher.loyalty_card.points_activated", "customer.voucher.loyalty_card.points_added",
    "customer.voucher.loyalty_card.points_transferred", "customer.voucher.loyalty_card.points_expired",
    "customer.voucher.deleted", "customer.publication.succeeded", "customer.publication.failed",
    "customer.validation.succeeded", "customer.validation.failed",
    "customer.redemption.failed", "customer.redemption.succeeded",
    "customer.redemption.rollback.failed", "customer.redemption.rollback.succeeded",
    "customer.order.canceled", "customer.order.created", "customer.order.fulfilled", "customer.order.paid",
    "customer.order.processing", "customer.order.updated",
    "customer.reward_redemptions.created", "customer.reward_redemptions.pending",
    "customer.reward_redemptions.completed", "customer.reward_redemptions.rolledback",
    "customer.loyalty.updated", "customer.loyalty.tier.upgraded", "customer.loyalty.tier.downgraded",
    "customer.loyalty.tier.prolonged", "customer.loyalty.tier.expiration.changed",
    "customer.loyalty.tier.joined", "customer.loyalty.tier.left",
    "customer.holder.assignment.created", "customer.holder.assignment.deleted",
    "customer.consents.given", "customer.consents.revoked",
)

# Sorted, so /openapi.json lists them in a stable order.
EVENT_TYPES = tuple(sorted(set(VOUCHERIFY_ACTIVITY_TYPES) | {rule.type for rule in load_catalog().rules}))

# The campaign row's `type` (SPEC §4's `campaign_type`), as Voucherify names campaign kinds.
CAMPAIGN_TYPES = (
    "PROMOTION", "GIFT_VOUCHERS", "REFERRAL_PROGRAM", "DISCOUNT_COUPONS", "LOYALTY_PROGRAM", "LUCKY_DRAW",
)
