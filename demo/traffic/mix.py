"""The business operation mix of the traffic generator: which voucher engine API calls it makes,
and how often, so that demos and benchmarks can state the workload they ran."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# operation name -> relative weight. The names are what `VoucherTraffic.step()` returns; each
# stands for one voucher engine API call (see the docstrings in `operations.py`).
OPERATION_WEIGHTS: Mapping[str, int] = MappingProxyType({
    "customer.create": 8,  # POST /v1/customers, new source_id
    "customer.update": 7,  # POST /v1/customers, existing source_id
    "voucher.create": 10,  # POST /v1/campaigns/{id}/vouchers, sometimes with a holder
    "publication.voucher": 8,  # POST /v1/publications {voucher}
    "publication.campaign": 6,  # POST /v1/publications {campaign: {name, count}}
    "publication.failed": 3,  # POST /v1/publications that is recorded as FAILURE
    "redemption.succeeded": 14,  # POST /v1/redemptions
    "redemption.failed": 3,  # POST /v1/redemptions failing re-validation in redeemSingle
    "redemption.rollback": 3,  # POST /v1/redemptions/{id}/rollback
    "order.create": 10,  # POST /v1/orders, new source_id
    "order.update": 10,  # POST /v1/orders, existing source_id: status and/or items
    "segment.create": 2,  # POST /v1/segments
    "segment.delete": 1,  # DELETE /v1/segments/{id}
    "balance.gift": 6,  # POST /v1/vouchers/{code}/balance on a gift card
    "balance.loyalty": 7,  # POST /v1/vouchers/{code}/balance on a loyalty card
    "customer.delete": 2,  # DELETE /v1/customers/{id}
})


def operation_mix(weights: Mapping[str, int] = OPERATION_WEIGHTS) -> dict[str, float]:
    """Each operation's share of all operations (the shares sum to 1)."""
    total = sum(weights.values())
    return {name: weight / total for name, weight in weights.items()}


def describe_operation_mix(weights: Mapping[str, int] = OPERATION_WEIGHTS) -> str:
    """One line per operation, largest share first, e.g. for a benchmark report."""
    shares = sorted(operation_mix(weights).items(), key=lambda item: (-item[1], item[0]))
    return "\n".join(f"{share:6.1%}  {name}" for name, share in shares)
