"""Decode throughput: pgoutput payloads -> messages -> change envelopes, in one process, on the
payloads a real server writes for the reader benchmark's workload (customer/redemption inserts
and updates, NULL columns, uuid, timestamp, jsonb, bigint), so no socket time is counted.

Captures the payloads once from a throwaway cluster, then times `Decoder.decode` alone and
`Decoder.decode` + `ChangeAssembler.feed` over all of them; the least CPU time of several rounds
counts (the machine may be shared). With `--baseline REV` the same payloads are also run through the
`cdc_reader` of git revision REV, in a subprocess, and both figures are printed.

Run: python -m tests.bench decode [--changes N] [--rounds R] [--baseline REV]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from cdc_reader.assembler import ChangeAssembler
from cdc_reader.changes import Change
from cdc_reader.pgoutput import Decoder
from cdc_reader.replication import protocol_version
from tests.bench.reader import CHANGES_PER_TRANSACTION, PUBLICATION, prepare_cluster

REPOSITORY = Path(__file__).resolve().parents[2]


def capture_payloads(root: Path, transactions: int) -> tuple[int, list[bytes]]:
    """The pgoutput protocol version and every payload the bench slot holds, in stream order."""
    cluster, dsn, _ = prepare_cluster(root, transactions, rounds=1)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            version = protocol_version(conn.info.server_version)
            rows = conn.execute(
                "SELECT data FROM pg_logical_slot_peek_binary_changes('session_0', NULL, NULL, "
                "'proto_version', %s, 'publication_names', %s, 'messages', 'true')",
                (str(version), PUBLICATION),
            ).fetchall()
        return version, [data for (data,) in rows]
    finally:
        cluster.destroy()


def best_seconds(rounds: int, run: Callable[[], None]) -> float:
    """The least CPU time (not wall time: on a shared machine, waiting for a core would count)
    that one of `rounds` runs took."""
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def measure(version: int, payloads: list[bytes], rounds: int) -> dict[str, float]:
    """Changes per second for decoding alone and for decoding + assembling."""

    def decode_only() -> None:
        decode = Decoder(version).decode
        for payload in payloads:
            decode(payload)

    changes = 0

    def decode_and_assemble() -> None:
        nonlocal changes
        decode, feed = Decoder(version).decode, ChangeAssembler().feed
        changes = sum(type(envelope) is Change
                      for payload in payloads for envelope in feed(decode(payload)))

    decode_seconds = best_seconds(rounds, decode_only)
    total_seconds = best_seconds(rounds, decode_and_assemble)
    return {"changes": changes, "decode": changes / decode_seconds,
            "decode + assemble": changes / total_seconds}


def measure_revision(revision: str, payload_file: Path, rounds: int) -> dict[str, float]:
    """`measure` with the cdc_reader package of a git revision (run in a subprocess)."""
    checkout = Path(tempfile.mkdtemp(prefix="va-bench-decode-baseline-"))
    archive = subprocess.run(["git", "-C", str(REPOSITORY), "archive", revision, "cdc_reader"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(checkout)], input=archive, check=True)
    # The working directory comes first on sys.path, so `cdc_reader` is the revision's, while
    # `tests` (this script) is found through PYTHONPATH.
    output = subprocess.run(
        [sys.executable, "-m", "tests.bench", "decode", "--payloads", str(payload_file),
         "--rounds", str(rounds), "--json"],
        cwd=checkout, env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
        check=True, capture_output=True, text=True,
    ).stdout
    shutil.rmtree(checkout, ignore_errors=True)
    return json.loads(output.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench decode", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=100_000, help="row changes to capture")
    parser.add_argument("--rounds", type=int, default=5, help="timed passes; the best counts")
    parser.add_argument("--baseline", metavar="REV", help="also time cdc_reader at this revision")
    parser.add_argument("--payloads", type=Path, metavar="FILE",
                        help="reuse the payloads saved in FILE, or capture and save them there")
    parser.add_argument("--json", action="store_true", help="print only the figures, as JSON")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="va-bench-decode-"))
    try:
        payload_file = args.payloads or root / "payloads.pickle"
        if payload_file.exists():
            version, payloads = pickle.loads(payload_file.read_bytes())
        else:
            started = time.perf_counter()
            transactions = max(args.changes // CHANGES_PER_TRANSACTION, 1)
            version, payloads = capture_payloads(root, transactions)
            payload_file.write_bytes(pickle.dumps((version, payloads)))
            if not args.json:
                print(f"captured {len(payloads)} pgoutput messages (protocol {version}) "
                      f"in {time.perf_counter() - started:.1f} s")
        figures = measure(version, payloads, args.rounds)
        if args.json:
            print(json.dumps(figures))
            return 0
        rows = {"this tree": figures}
        if args.baseline:
            rows = {args.baseline: measure_revision(args.baseline, payload_file, args.rounds),
                    **rows}
        print(f"{figures['changes']} changes, best of {args.rounds} passes, changes/s:")
        print(f"{'':<16}{'decode':>12}{'decode + assemble':>20}")
        for label, row in rows.items():
            print(f"{label:<16}{row['decode']:>12,.0f}{row['decode + assemble']:>20,.0f}")
        if args.baseline:
            before, after = rows[args.baseline], figures
            print(f"{'speed-up':<16}{after['decode'] / before['decode']:>11.2f}x"
                  f"{after['decode + assemble'] / before['decode + assemble']:>19.2f}x")
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)
