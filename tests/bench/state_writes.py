"""Reference state writes: CPU per row put and committed, the pipeline's cache sizes, random
version-4 keys as the engine makes them. `python -m tests.bench state [--rows N] [--per-commit N]`.

Rows are voucher-shaped (the state's most written kind: ids, code, type, campaign, holder,
tenant) or, with `--customers`, whole customer rows. A commit follows every `--per-commit` puts,
about what the pipeline commits in its one-second interval at ~17k changes a second. The file
grows over the run, as a real one does: later commits rewrite pages of a larger index.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

from cdc_reader.pipeline import STATE_CACHE_ROWS, STATE_PACKED_BYTES
from mappers.state import STATE_FILE, ReferenceState

NOW = datetime(2024, 3, 1, 9, 0)


def rows(count: int, customers: bool, seed: int = 1) -> list[tuple[str, uuid.UUID, dict]]:
    generator = random.Random(seed)

    def new_id() -> uuid.UUID:
        return uuid.UUID(int=generator.getrandbits(128), version=4)

    tenant, campaign = new_id(), new_id()
    made = []
    for number in range(count):
        key = new_id()
        if customers:
            made.append(("customer", key, {
                "id": key, "created_at": NOW, "updated_at": NOW, "source_id": f"cust-{number}",
                "name": f"Customer {number}", "description": None, "email": f"c{number}@example.com",
                "phone": None, "birthdate": None, "metadata": {"tier": "gold", "n": number},
                "tenant_id": tenant, "city": None, "state": None, "line_1": None, "line_2": None,
                "country": None, "postal_code": None}))
        else:
            made.append(("voucher", key, {"id": key, "code": f"V-{key.hex[:10].upper()}", "type": "DISCOUNT_VOUCHER",
                                          "campaign_id": campaign, "holder_id": new_id(), "tenant_id": tenant}))
    return made


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench state", description=__doc__)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--per-commit", type=int, default=17_000)
    parser.add_argument("--customers", action="store_true", help="write customer rows, not vouchers")
    args = parser.parse_args(argv)
    work = rows(args.rows, args.customers)
    with tempfile.TemporaryDirectory(prefix="va-bench-state-") as directory:
        state = ReferenceState.open(Path(directory), STATE_CACHE_ROWS, STATE_PACKED_BYTES)
        started, started_cpu = time.perf_counter(), time.process_time()
        for number, (table, key, row) in enumerate(work, 1):
            state.put(table, key, row)
            if number % args.per_commit == 0:
                state.commit(number)
        state.commit(len(work))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - started_cpu
        state.close()
        size = (Path(directory) / STATE_FILE).stat().st_size
    print(f"{len(work)} {'customer' if args.customers else 'voucher'} rows put, a commit every "
          f"{args.per_commit}: CPU {cpu / len(work) * 1e6:.2f} us a row ({len(work) / cpu:,.0f} rows/s), "
          f"wall {elapsed / len(work) * 1e6:.2f} us; file {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
