"""The voucher engine's transactions as SQL text, for load that Python cannot drive fast enough.

`demo.traffic.VoucherTraffic` plans engine transactions in Python, one round trip per
statement batch: right for demos, too slow to write a million changes or hold 1,000
transactions/s on two shared cores. Here the same shapes (the statements one engine API call
commits, in Hibernate's flush order) are templates rendered two ways from one definition:

- `pgbench_scripts`: one pgbench script per operation, weighted (`-f file@weight`), for steady
  or saturating load from many connections;
- `plpgsql_workload`: a DO block committing one operation per loop iteration, for a backlog
  written as fast as the server can.

Ids are derived from integers (`md5('c' || n)::uuid` is customer n), so the seed, pgbench and the
DO block agree on them without lookups. Customer n belongs to tenant n % 2; voucher v to tenant
v % 2 and campaign (v % 2) * 4 + (v / 2) % 4; an operation picks a voucher of its customer's tenant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TENANTS = ("acme", "globex")
CAMPAIGN_KINDS = (
    ("Spring coupons", "DISCOUNT_COUPONS", "DISCOUNT_VOUCHER"),
    ("Gift cards", "GIFT_VOUCHERS", "GIFT_VOUCHER"),
    ("Loyalty club", "LOYALTY_PROGRAM", "LOYALTY_CARD"),
    ("Black Friday", "DISCOUNT_COUPONS", "DISCOUNT_VOUCHER"),
)
# The table the original plan had the application write its events to, with the plan's indexes.
ACTIVITY_LOG_DDL = """
CREATE TABLE IF NOT EXISTS activity_log (LIKE customer_event INCLUDING ALL);
CREATE INDEX IF NOT EXISTS activity_log_customer_created ON activity_log (customer_id, created_at);
CREATE INDEX IF NOT EXISTS activity_log_event_type ON activity_log (event_type);
CREATE INDEX IF NOT EXISTS activity_log_campaign ON activity_log (campaign_id);
CREATE INDEX IF NOT EXISTS activity_log_group ON activity_log (group_id);
CREATE INDEX IF NOT EXISTS activity_log_created ON activity_log (created_at);
"""


def _id(kind: str, expression: str) -> str:
    return f"md5('{kind}' || ({expression}))::uuid"


# <<c>> customer number, <<v>> voucher number, <<s>> a number unique to the transaction,
# <<a>> an amount; rendered as pgbench variables or PL/pgSQL variables.
TENANT = _id("t", "<<c>> % 2")
CUSTOMER = _id("c", "<<c>>")
VOUCHER = _id("v", "<<v>>")
CAMPAIGN = _id("k", "(<<v>> % 2) * 4 + (<<v>> / 2) % 4")
NOW = "localtimestamp"
CUSTOMER_SNAPSHOT = ("jsonb_build_object('id', {id}, 'source_id', 'cust-' || <<c>>, 'name', 'Customer ' || <<c>>, "
                     "'email', 'c' || <<c>> || '@example.com', 'object', 'customer')").format(id=CUSTOMER)
CAMPAIGN_SNAPSHOT = f"jsonb_build_object('id', {CAMPAIGN}, 'name', 'Campaign', 'object', 'campaign')"
EVENT_COLUMNS = ("id, created_at, updated_at, event_type, customer_id, campaign_id, category, data, "
                 "group_id, event_source, tenant_id")


def _event(prefix: str, event_type: str, category: str, data: str, campaign: bool,
           table: str = "customer_event", customer: str = CUSTOMER) -> str:
    # The engine leaves customer_event.group_id NULL; the plan's log groups by transaction.
    group = "NULL" if table == "customer_event" else "'tx_' || <<s>>"
    campaign_id = f"{CAMPAIGN}::text" if campaign else "NULL"
    return (f"INSERT INTO {table} ({EVENT_COLUMNS}) VALUES ({_id(prefix, '<<s>>')}, {NOW}, {NOW}, "
            f"'{event_type}', {customer}::text, {campaign_id}, '{category}', {data}, {group}, 'API', {TENANT})")


@dataclass(frozen=True, slots=True)
class Operation:
    """One engine API call: its statements (one transaction), how many row changes of tracked
    tables they make, and the event the original plan would have logged for it."""

    name: str
    weight: int
    statements: tuple[str, ...]
    changes: int
    event_type: str
    category: str
    with_campaign: bool

    def logged(self) -> tuple[str, ...]:
        """The statements plus the plan's in-application event row (impact case (c))."""
        data = (f"jsonb_build_object('customer', {CUSTOMER_SNAPSHOT}, 'campaign', {CAMPAIGN_SNAPSHOT}, "
                f"'amount', <<a>>, 'voucher', jsonb_build_object('id', {VOUCHER}, 'code', 'V-' || <<v>>), "
                "'event_source', jsonb_build_object('channel', 'INTERNAL', 'source', 'API'))")
        return (*self.statements,
                _event("l", self.event_type, self.category, data, self.with_campaign, table="activity_log"))


OPERATIONS = (
    Operation("redemption", 17, (  # POST /v1/redemptions
        f"INSERT INTO redemption (id, created_at, updated_at, tracking_id, metadata, amount, result, status, "
        f"voucher_id, customer_id, tenant_id) VALUES ({_id('r', '<<s>>')}, {NOW}, {NOW}, md5('track' || <<c>>), "
        f"'{{\"store\": \"online\"}}', <<a>>, 'SUCCESS', 'SUCCEEDED', {VOUCHER}, {CUSTOMER}, {TENANT})",
        _event("e", "customer.redemption.succeeded", "ACTION",
               f"jsonb_build_object('redemption_id', {_id('r', '<<s>>')}, 'voucher_code', 'V-' || <<v>>, "
               f"'amount', <<a>>, 'customer', {CUSTOMER_SNAPSHOT}, 'campaign', {CAMPAIGN_SNAPSHOT})", True),
        f"UPDATE voucher SET redemption_json = jsonb_build_object('redeemed_quantity', "
        f"coalesce((redemption_json ->> 'redeemed_quantity')::int, 0) + 1), updated_at = {NOW} WHERE id = {VOUCHER}",
    ), 3, "customer.redemption.succeeded", "ACTION", True),
    Operation("publication", 14, (  # POST /v1/publications {voucher}
        f"INSERT INTO publication (id, created_at, updated_at, voucher_id, customer_id, campaign_id, result, "
        f"channel, tenant_id) VALUES ({_id('p', '<<s>>')}, {NOW}, {NOW}, {VOUCHER}, {CUSTOMER}, {CAMPAIGN}, "
        f"'SUCCESS', 'API', {TENANT})",
        f"UPDATE voucher SET holder_id = {CUSTOMER}, updated_at = {NOW} WHERE id = {VOUCHER}",
    ), 2, "customer.publication.succeeded", "EFFECT", True),
    Operation("order", 20, (  # POST /v1/orders with two items
        f"INSERT INTO orders (id, created_at, updated_at, source_id, status, amount, initial_amount, "
        f"discount_amount, metadata, customer_id, tenant_id) VALUES ({_id('o', '<<s>>')}, {NOW}, {NOW}, "
        f"'ord-' || <<s>>, 'PAID', <<a>>, <<a>>, 0, '{{\"channel\": \"web\"}}', {CUSTOMER}, {TENANT})",
        *(f"INSERT INTO order_item (id, created_at, updated_at, product_id, sku_id, related_object, quantity, "
          f"amount, discount_amount, subtotal_amount, price, order_id, tenant_id) VALUES ({_id(item, '<<s>>')}, "
          f"{NOW}, {NOW}, 'prod_espresso', 'sku_espresso_250g', 'sku', 1, <<a>>, 0, <<a>>, <<a>>, "
          f"{_id('o', '<<s>>')}, {TENANT})" for item in ("i1", "i2")),
    ), 3, "customer.order.paid", "ACTION", False),
    Operation("customer.update", 15, (  # POST /v1/customers, existing source_id
        _event("e", "customer.updated", "EFFECT",
               f"jsonb_build_object('source_id', 'cust-' || <<c>>, 'name', 'Customer ' || <<c>> || ' v' || <<a>>, "
               f"'customer', {CUSTOMER_SNAPSHOT})", False),
        f"UPDATE customer SET name = 'Customer ' || <<c>> || ' v' || <<a>>, updated_at = {NOW} WHERE id = {CUSTOMER}",
    ), 2, "customer.updated", "EFFECT", False),
    Operation("customer.create", 8, (  # POST /v1/customers, new source_id
        f"INSERT INTO customer (id, created_at, updated_at, source_id, name, email, metadata, tenant_id) "
        f"VALUES ({_id('n', '<<s>>')}, {NOW}, {NOW}, 'new-' || <<s>>, 'New ' || <<s>>, "
        f"'n' || <<s>> || '@example.com', '{{\"tier\": \"bronze\"}}', {TENANT})",
        _event("e", "customer.created", "EFFECT",
               "jsonb_build_object('source_id', 'new-' || <<s>>, 'email', 'n' || <<s>> || '@example.com')",
               False, customer=_id("n", "<<s>>")),
    ), 2, "customer.created", "EFFECT", False),
    Operation("balance", 13, (  # POST /v1/vouchers/{code}/balance
        f"INSERT INTO voucher_transaction (id, created_at, updated_at, voucher_id, campaign_id, type, source, "
        f"amount, balance_after, tenant_id) VALUES ({_id('x', '<<s>>')}, {NOW}, {NOW}, {VOUCHER}, {CAMPAIGN}, "
        f"'POINTS_ADDITION', 'API', <<a>>, <<a>>, {TENANT})",
    ), 1, "customer.voucher.loyalty_card.points_added", "EFFECT", True),
)


def changes_per_transaction() -> float:
    total = sum(operation.weight for operation in OPERATIONS)
    return sum(operation.weight * operation.changes for operation in OPERATIONS) / total


def describe_mix() -> str:
    total = sum(operation.weight for operation in OPERATIONS)
    return ", ".join(f"{operation.name} {operation.weight / total:.0%} ({operation.changes} changes)"
                     for operation in OPERATIONS)


def _render(statement: str, prefix: str) -> str:
    for name in ("c", "v", "s", "a"):
        statement = statement.replace(f"<<{name}>>", f"{prefix}bench_{name}")
    return statement


def seed_statements(customers: int, vouchers: int, chunk: int = 20_000) -> list[str]:
    """Tenants, their campaigns, customers and (unheld) vouchers; one transaction per statement."""
    tenants = ", ".join(f"({_id('t', str(number))}, {NOW}, {NOW}, '{name}')" for number, name in enumerate(TENANTS))
    kinds = ", ".join(f"('{name}', '{campaign_type}')" for name, campaign_type, _ in CAMPAIGN_KINDS)
    statements = [
        f"INSERT INTO tenant (id, created_at, updated_at, name) VALUES {tenants}",
        f"INSERT INTO campaign (id, created_at, updated_at, name, type, mode, active, tenant_id) "
        f"SELECT {_id('k', 't * 4 + kind.n - 1')}, {NOW}, {NOW}, kind.name, kind.type, 'AUTO_UPDATE', true, "
        f"{_id('t', 't')} FROM generate_series(0, {len(TENANTS) - 1}) t, "
        f"(SELECT row_number() OVER () AS n, * FROM (VALUES {kinds}) AS k(name, type)) kind",
    ]
    voucher_types = "ARRAY[" + ", ".join(f"'{voucher_type}'" for _, _, voucher_type in CAMPAIGN_KINDS) + "]"
    for start in range(0, customers, chunk):
        statements.append(
            f"INSERT INTO customer (id, created_at, updated_at, source_id, name, email, metadata, tenant_id) "
            f"SELECT {_id('c', 'n')}, {NOW}, {NOW}, 'cust-' || n, 'Customer ' || n, 'c' || n || '@example.com', "
            f"jsonb_build_object('tier', (ARRAY['bronze', 'silver', 'gold'])[n % 3 + 1]), {_id('t', 'n % 2')} "
            f"FROM generate_series({start}, {min(start + chunk, customers) - 1}) n")
    for start in range(0, vouchers, chunk):
        statements.append(
            f"INSERT INTO voucher (id, created_at, updated_at, code, campaign_id, type, active, tenant_id, "
            f"redemption_json) SELECT {_id('v', 'v')}, {NOW}, {NOW}, 'V-' || v, {_id('k', '(v % 2) * 4 + (v / 2) % 4')}, "
            f"({voucher_types})[(v / 2) % 4 + 1], true, {_id('t', 'v % 2')}, '{{\"redeemed_quantity\": 0}}' "
            f"FROM generate_series({start}, {min(start + chunk, vouchers) - 1}) v")
    return statements


def pgbench_scripts(directory: Path, customers: int, vouchers: int, logged: bool = False) -> list[str]:
    """Writes one script per operation; returns pgbench's `-f path@weight` arguments."""
    arguments = []
    for operation in OPERATIONS:
        statements = operation.logged() if logged else operation.statements
        lines = [
            f"\\set bench_c random(0, {customers - 1})",
            f"\\set bench_v random(0, {vouchers // 2 - 1}) * 2 + :bench_c % 2",
            "\\set bench_s random(1, 1000000000000000)",
            "\\set bench_a random(100, 20000)",
            "BEGIN;",
            *(_render(statement, ":") + ";" for statement in statements),
            "COMMIT;",
        ]
        path = directory / f"{operation.name}{'-logged' if logged else ''}.sql"
        path.write_text("\n".join(lines) + "\n")
        arguments += ["-f", f"{path}@{operation.weight}"]
    return arguments


def plpgsql_workload(changes: int, customers: int, vouchers: int, serial_offset: int = 0) -> str:
    """A DO block committing operations until `changes` row changes are written; it ends with
    `RAISE NOTICE 'bench <transactions> <changes>'`."""
    total = sum(operation.weight for operation in OPERATIONS)
    branches, bound = [], 0
    for operation in OPERATIONS:
        bound += operation.weight
        body = "\n".join(f"      {_render(statement, '')};" for statement in operation.statements)
        keyword = "IF" if not branches else "ELSIF"
        branches.append(f"    {keyword} bench_pick < {bound} THEN\n{body}\n"
                        f"      bench_changes := bench_changes + {operation.changes};")
    return f"""
DO $bench$
DECLARE
  bench_c bigint; bench_v bigint; bench_s bigint := {serial_offset}; bench_a bigint; bench_pick int;
  bench_transactions bigint := 0; bench_changes bigint := 0;
BEGIN
  PERFORM setseed(0.25);
  WHILE bench_changes < {changes} LOOP
    bench_c := floor(random() * {customers})::bigint;
    bench_v := floor(random() * {vouchers // 2})::bigint * 2 + bench_c % 2;
    bench_s := bench_s + 1;
    bench_a := 100 + floor(random() * 19900)::bigint;
    bench_pick := floor(random() * {total})::int;
{chr(10).join(branches)}
    END IF;
    bench_transactions := bench_transactions + 1;
    COMMIT;
  END LOOP;
  RAISE NOTICE 'bench % %', bench_transactions, bench_changes;
END $bench$
"""
