"""Snapshot mapping on one thread: an initial snapshot's rows -> events, the pipeline thread's
share of `bench snapshot` without the reader threads, the inserts or PostgreSQL running beside it.
`python -m tests.bench snapshot-mapping [--customers N] [--rounds R] [--digest]`.

The history is `bench snapshot`'s seed (tests/bench/snapshot.py) in a throwaway PostgreSQL. Its
tracked tables are read once by the snapshot reader into memory, and the server is stopped. Each
round then maps every batch in the reader's order with a fresh reference state, sized as the
pipeline sizes it for the default `--state-cache`, and encodes the events as the store's
RowBinary blocks, as the pipeline thread does. The figure is the thread's CPU time per snapshot
row, the best round's: with one thread and nothing else running it is steadier than the end-to-end
benchmark. Under `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='builtin_sum*'`
it counts the instructions of the rounds alone (they run inside `sum`). `--digest` prints a
SHA-256 of every record made, to show that an optimization changed none.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import psycopg
from query.rowbinary import encode_rows

from cdc_reader.snapshot import distinct_values, read_snapshot_batches
from mappers import EventMapper, SourceIdentity, load_default_catalog, tracked_columns, tracked_tables
from mappers.state import ReferenceState
from query.writer import _TABLES as STORE_TABLES
from tests.bench import source
from tests.bench.mapping import digest
from tests.bench.snapshot import seed
from voucher_activity.config import OPTIONS, parse_size, state_levels
from voucher_activity.memory import collector_paused, tune_collector
from voucher_activity.pipeline import SCRATCH_ROWS

SOURCE = SourceIdentity("7400000000000000001", "voucher")
SLOT = "voucher_activity"
BLOCK_ROWS = 50_000  # events encoded to a block at a time, as the writer's batches


def read_history(customers: int, workdir: Path) -> tuple[set, list]:
    """The seeded history's snapshot batches, and the event types its pass-through rows hold."""
    cluster = source.start_cluster(workdir / "pg")
    try:
        dsn = source.create_voucher_database(cluster, "voucher")
        seed(dsn, customers)
        with psycopg.connect(dsn) as exporter:
            exporter.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            snapshot = exporter.execute("SELECT pg_export_snapshot()").fetchone()[0]
            probe = ReferenceState.open(workdir / "probe")
            pairing = EventMapper(load_default_catalog(), probe, SOURCE, SLOT).snapshot_pairing_column()
            probe.close()
            types = distinct_values(exporter, *pairing) if pairing else set()
            return types, list(read_snapshot_batches(dsn, snapshot, tracked_tables(), columns=tracked_columns()))
    finally:
        cluster.destroy()


def map_rounds(types: set, batches: list, rounds: int, workdir: Path, records: list | None) -> list[float]:
    """Each round's thread CPU seconds; `records` receives the last round's records."""
    levels = state_levels(parse_size(OPTIONS["state-cache"][1], "state-cache"))  # the default
    seconds: list[float] = []

    def one_round(number: int) -> int:
        state = ReferenceState.open(workdir / f"state{number}", cache_size=levels.rows,
                                    packed_bytes=levels.packed_bytes)
        mapper = EventMapper(load_default_catalog(), state, SOURCE, SLOT, scratch_memory_limit=SCRATCH_ROWS,
                             memo_bytes=levels.memo_bytes)
        mapper.snapshot_pairing_types(types)
        made: list = []
        started = time.thread_time()

        def encode() -> None:
            by_kind: dict[type, list] = {}
            for record in made:
                by_kind.setdefault(type(record), []).append(record)
            for kind, of_kind in by_kind.items():
                _table, columns, column_kinds = STORE_TABLES[kind]
                encode_rows(of_kind, columns, column_kinds)
            if records is not None and number == rounds - 1:
                records.extend(made)
            made.clear()

        for table, column_types, batch in batches:
            made.extend(mapper.snapshot_rows(table, batch, column_types))
            if len(made) >= BLOCK_ROWS:
                encode()
        made.extend(mapper.snapshot_finish())
        encode()
        state.commit(1)
        seconds.append(time.thread_time() - started)
        state.close()
        return 0

    sum(map(one_round, range(rounds)))  # the rounds run inside `sum`: see the module's text
    return seconds


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench snapshot-mapping", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=25_000, help="as `bench snapshot --scale small`")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--digest", action="store_true", help="print a SHA-256 of every record made")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="va-snapshot-mapping-") as scratch:
        workdir = Path(scratch)
        types, batches = read_history(args.customers, workdir)
        rows = sum(len(batch) for _table, _types, batch in batches)
        tune_collector()  # as `voucher-activity run` does once started
        records: list | None = [] if args.digest else None
        with collector_paused():  # as the pipeline's snapshot
            seconds = map_rounds(types, batches, args.rounds, workdir, records)
    best = min(seconds)
    print(f"mapped {rows:,} snapshot rows on one thread: {best / rows * 1e6:.2f} us a row "
          f"({rows / best:,.0f} rows/s), best of {', '.join(f'{s:.2f}' for s in seconds)} s of thread CPU")
    if records is not None:
        print(f"{len(records):,} records, digest {digest(records)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(__import__("sys").argv[1:]))
