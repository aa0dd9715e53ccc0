"""Reference state writes: CPU per row put and committed, the pipeline's cache sizes, random
version-4 keys as the engine makes them. `python -m tests.bench state [--rows N] [--per-commit N]`.

Rows are voucher-shaped (the state's most written kind: ids, code, type, campaign, holder,
tenant) or, with `--customers`, whole customer rows. A commit follows every `--per-commit` puts,
about what the pipeline commits in its one-second interval at ~17k changes a second. The file
grows over the run, as a real one does: later commits rewrite pages of a larger index.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from mappers import load_default_catalog
from mappers.state import STATE_FILE, ReferenceState
from tests.bench.mapping import Traffic
from voucher_activity.config import build_settings

# The reference state's levels as the pipeline sizes them by default (--state-cache).
STATE_CACHE_ROWS, STATE_PACKED_BYTES, _ = build_settings({}).state_levels


def rows(count: int, customers: bool) -> list[tuple[str, uuid.UUID, dict]]:
    """The rows the mapper would put: the mapping benchmark's customers, or its vouchers cut to
    the columns the state keeps of them."""
    traffic = Traffic(0, seed=1)
    kept = load_default_catalog().state["voucher"].columns
    made = []
    for number in range(count):
        if customers:
            key = traffic.new_id()
            made.append(("customer", key, traffic.customer_row(key, number)))
        else:
            voucher = traffic.voucher(traffic.new_id())
            made.append(("voucher", voucher["id"], {column: voucher[column] for column in kept}))
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
