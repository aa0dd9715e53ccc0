"""One activity page in process: the median time of each store call a page makes
(`warehouse.store_call_breakdown`: one client, no HTTP, random customers, newest 10), on the
warehouse benchmark's history in chDB alone (no PostgreSQL reference, no load generator).

`--store DIR` builds the history there once (compacted, like the warehouse run's) and reuses it
on later runs, so two versions of the code can be timed against the same store, alternating:
`PYTHONPATH=<checkout> python -m tests.bench page --scale full --store DIR`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from query.store import Store
from tests.bench import history
from tests.bench.report import log
from tests.bench.scale import SCALES
from tests.bench.warehouse import store_call_breakdown

BUILT = "history-built"  # written once the history is stored and compacted


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench page", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--store", type=Path, help="build the history here once and reuse it")
    parser.add_argument("--pages", type=int, default=300, help="random customers timed")
    args = parser.parse_args(argv)
    scale = SCALES[args.scale]
    directory = args.store or Path(tempfile.mkdtemp(prefix="va-bench-page-"))
    stamp = directory / f"{BUILT}-{scale.name}"
    population = history.make_population(scale.event_customers, scale.tenants)
    try:
        with Store.open(f"chdb://{directory / 'clickhouse'}", create_schema=not stamp.exists()) as store:
            if not stamp.exists():
                started = time.monotonic()
                history.write_store(population, scale.events, store)
                history.compact(store)
                stamp.touch()
                log(f"history: {scale.events:,} events stored and compacted in {time.monotonic() - started:.0f} s")
            print(f"{scale.events:,} events, {scale.event_customers:,} customers, {args.pages} pages. "
                  + store_call_breakdown(population, store, args.pages), flush=True)
    finally:
        if args.store is None:
            shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
