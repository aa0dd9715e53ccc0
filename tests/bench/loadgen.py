"""The read load generator, run in its own process so it never shares the server's interpreter:
`python -m tests.bench.loadgen {http|sql} TARGET PLAN OUT --clients N`.

Both modes take the same plan (a JSON list of requests, each with its HTTP path and headers and
the equivalent SQL) and the same shape: N concurrent clients, each on one keep-alive
connection, taking the next request as soon as the previous answered. `http` speaks plain
HTTP/1.1 over asyncio streams (no client library cost in the figures); `sql` uses one psycopg
async connection per client (a pool of N), with prepared statements. The first tenth of the
plan warms up and is not counted. OUT receives the latencies (ms), the seconds the counted part
took, and the number of errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

CONTENT_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0


async def http_client(host: str, port: int, requests: Iterator[dict], tally: Tally) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for request in requests:
            headers = "".join(f"{name}: {value}\r\n" for name, value in request["headers"].items())
            message = f"GET {request['path']} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n".encode()
            started = time.perf_counter()
            writer.write(message)
            head = await reader.readuntil(b"\r\n\r\n")
            length = CONTENT_LENGTH.search(head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            tally.latencies.append((time.perf_counter() - started) * 1000)
            if head[9:12] != b"200":
                tally.errors += 1
    finally:
        writer.close()


async def sql_client(dsn: str, requests: Iterator[dict], tally: Tally) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for request in requests:
            started = time.perf_counter()
            try:
                cursor = await conn.execute(request["sql"], request["params"], prepare=True)
                await cursor.fetchall()
            except psycopg.Error:
                tally.errors += 1
            tally.latencies.append((time.perf_counter() - started) * 1000)


async def drive(mode: str, target: str, plan: list[dict], clients: int) -> tuple[Tally, float]:
    def client(requests: Iterator[dict], tally: Tally):
        if mode == "http":
            host, port = target.rsplit(":", 1)
            return http_client(host, int(port), requests, tally)
        return sql_client(target, requests, tally)

    warmup = len(plan) // 10
    shared = iter(plan[:warmup])  # one iterator: each client takes the next request
    await asyncio.gather(*(client(shared, Tally()) for _ in range(clients)))
    tally = Tally()
    shared = iter(plan[warmup:])
    started = time.perf_counter()
    await asyncio.gather(*(client(shared, tally) for _ in range(clients)))
    return tally, time.perf_counter() - started


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.loadgen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("http", "sql"))
    parser.add_argument("target", help="HOST:PORT for http, a DSN for sql")
    parser.add_argument("plan", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args(argv)
    plan = json.loads(args.plan.read_text())
    tally, seconds = asyncio.run(drive(args.mode, args.target, plan, args.clients))
    args.out.write_text(json.dumps({"latencies_ms": tally.latencies, "seconds": seconds, "errors": tally.errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
