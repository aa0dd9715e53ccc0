"""The `voucher-activity` console script (SPEC §2): parses flags and environment once, then
hands a `Settings` value to the command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from query.location import StoreUrlError
from voucher_activity.config import (
    OPTIONS,
    ConfigError,
    Settings,
    build_settings,
    default_for,
)

COMMANDS: dict[str, str] = {
    "demo": "embedded PostgreSQL + live voucher traffic + reader + API + dashboard, in one command",
    "run": "reader and API in one process (the way to run with the embedded chDB store)",
    "reader": "reader only (needs a ClickHouse server store)",
    "serve": "API only (needs a ClickHouse server store); many can run side by side",
    "status": "slot, publication, confirmed LSN, lag, retained WAL, events stored",
    "sql": "read-only SQL against the store, printed as a table",
    "teardown": "drop the slot and publication this sidecar created",
}

HELP = {
    "source": "source database DSN (libpq URI or key=value)",
    "store": "chdb://<path> (embedded, default <data-dir>/clickhouse) or http(s)://user:pass@host:8123/db",
    "data-dir": "local state directory",
    "listen": "HOST:PORT for the HTTP API",
    "slot": "replication slot name",
    "publication": "publication name",
    "snapshot": "initial: read existing rows when the slot is first created; never: stream only",
    "tokens": "API tokens: tenant=token[,tenant=token...]; tenant * is an admin token",
    "log-format": "text (default on a terminal) or json",
    "cluster": "ClickHouse cluster name: reader/run create Replicated and Distributed tables ON CLUSTER",
    "sql-listen": "HOST:PORT where run/demo serve the embedded store's ClickHouse HTTP interface (read-only), or off",
    "state-cache": "memory for the reference state's working set (e.g. 512MiB); bounds the RSS with the store's",
}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    for flag, (variable, _default) in OPTIONS.items():
        common.add_argument(
            f"--{flag}", default=argparse.SUPPRESS, metavar=flag.upper().replace("-", "_"),
            help=f"{HELP[flag]} [env {variable}; default {default_for(flag) or 'none'}]",
        )
    parser = argparse.ArgumentParser(
        prog="voucher-activity",
        description="Change-data-capture sidecar: voucher engine WAL -> customer events in ClickHouse -> activity API.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary in COMMANDS.items():
        sub = commands.add_parser(name, parents=[common], help=summary, description=summary)
        if name == "status":
            sub.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "sql":
            sub.add_argument("query", help="a read-only SQL statement")
            sub.add_argument("--format", choices=["table", "csv", "json"], default="table")
        if name == "demo":
            sub.add_argument("--rate", type=float, default=3.0, help="business operations per second")
            sub.add_argument("--fresh", action="store_true", help="start from empty data")
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    values = {flag: getattr(args, flag.replace("-", "_"), None) or default_for(flag) for flag in OPTIONS}
    return build_settings(values)


def handlers() -> dict[str, Callable[[argparse.Namespace, Settings], int]]:
    # Imported on use so that `--help` stays instant.
    from voucher_activity.commands import HANDLERS

    return HANDLERS


# Files the process writes (reference state, the embedded store, the demo's tokens and
# database) hold customer data and credentials: readable by its own user only (SPEC §7).
PRIVATE_FILES = 0o077


def main(argv: Sequence[str] | None = None) -> int:
    os.umask(PRIVATE_FILES)
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
        return handlers()[args.command](args, settings)
    except (ConfigError, StoreUrlError) as error:
        print(f"voucher-activity: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
