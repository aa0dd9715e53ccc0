"""Runs one benchmark: `python -m tests.bench <name> [options]` (`--help` after the name).

Each benchmark is a module with `main(argv: list[str]) -> int`; add new ones to BENCHMARKS.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "reader": "tests.bench.reader",  # replication session vs pg_recvlogical
    "mapping": "tests.bench.mapping",  # envelopes -> events with the reference state
    "state": "tests.bench.state_writes",  # reference state rows put and committed
    "store": "tests.bench.store_engine",  # store batch sizes and dedup reads
    "page": "tests.bench.page",  # one activity page's store calls, in process
    "decode": "tests.bench.decode",  # pgoutput payloads -> change envelopes, in process
    # side by side with the references (docs/benchmarks.md); `all` runs them together
    "all": "tests.bench.all",
    "ingest": "tests.bench.ingest",  # 1. pipeline end to end vs pg_recvlogical
    "freshness": "tests.bench.freshness",  # 2. commit -> visible through the API
    "api": "tests.bench.warehouse",  # 3. activity pages vs the PostgreSQL table
    "analytics": "tests.bench.warehouse",  # 4. aggregate queries vs the PostgreSQL table
    "storage": "tests.bench.warehouse",  # 5. bytes per event vs the PostgreSQL table
    "warehouse": "tests.bench.warehouse",  # 3-5 on one stored history
    "impact": "tests.bench.impact",  # 6. engine transactions/s with and without the sidecar
    "memory": "tests.bench.memory",  # 7. sidecar RSS
    "snapshot": "tests.bench.snapshot",  # 8. initial snapshot vs binary COPY
    "snapshot-mapping": "tests.bench.snapshot_mapping",  # 8's pipeline thread alone: rows -> events
    "sql-endpoint": "tests.bench.sql_endpoint",  # API and insert latency under analysts' queries
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHMARKS:
        names = ", ".join(BENCHMARKS)
        print(f"usage: python -m tests.bench {{{names}}} [options]", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHMARKS[argv[0]])
    if module.__name__ == "tests.bench.warehouse":  # one module, a part per name
        return module.main(argv[1:], part=argv[0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
