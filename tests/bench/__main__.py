"""Runs one benchmark: `python -m tests.bench <name> [options]` (`--help` after the name).

Each benchmark is a module with `main(argv: list[str]) -> int`; add new ones to BENCHMARKS.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "reader": "tests.bench.reader",  # replication session vs pg_recvlogical
    "mapping": "tests.bench.mapping",  # envelopes -> events with the reference state
    "store": "tests.bench.store_engine",  # store batch sizes and dedup reads
    "decode": "tests.bench.decode",  # pgoutput payloads -> change envelopes, in process
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHMARKS:
        names = ", ".join(BENCHMARKS)
        print(f"usage: python -m tests.bench {{{names}}} [options]", file=sys.stderr)
        return 2
    return importlib.import_module(BENCHMARKS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
