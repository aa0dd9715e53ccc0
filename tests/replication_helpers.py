"""Helpers for tests that need real replication: stream what a write produces, make roles.

`stream_transactions` is the one-call way for mapper tests to turn engine-like writes into the
envelopes the reader would hand them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import psycopg

from cdc_reader.changes import Envelope, TransactionCommit
from cdc_reader.replication import ReplicationSession
from cdc_reader.slot import slot_info
from tests.conftest import VoucherDatabase, unique_name


class StreamTimeoutError(AssertionError):
    """Fewer transactions arrived than expected within the timeout."""


def stream_transactions(
    dsn: str,
    write: Callable[[], object],
    tables: Sequence[str],
    *,
    transactions: int,
    timeout: float = 10.0,
    columns: Mapping[str, frozenset[str] | None] | None = None,
) -> list[list[Envelope]]:
    """Create a slot and publication for `tables`, run `write()`, and return the envelopes of
    the first `transactions` transactions, one list per transaction (Begin ... Commit);
    `columns` as ReplicationSession takes them.

    The slot and publication get unique names and are dropped afterwards.
    """
    name = unique_name("test_slot")
    with ReplicationSession(dsn, name, name, tables, status_interval=0.5, columns=columns) as session:
        session.prepare(export_snapshot=False)
        try:
            session.start()
            write()
            grouped = collect_transactions(session, transactions, timeout)
        finally:
            session.close()
            drop_slot_and_publication(dsn, name, name)
    return grouped


def collect_transactions(
    session: ReplicationSession, transactions: int, timeout: float
) -> list[list[Envelope]]:
    """Read until `transactions` whole transactions arrived, confirming each one."""
    grouped: list[list[Envelope]] = []
    current: list[Envelope] = []
    deadline = time.monotonic() + timeout
    while len(grouped) < transactions:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise StreamTimeoutError(
                f"got {len(grouped)} of {transactions} transactions within {timeout} s"
            )
        for envelope in session.read(remaining):
            current.append(envelope)
            if isinstance(envelope, TransactionCommit):
                grouped.append(current)
                current = []
                session.confirm(envelope.end_lsn)
    return grouped


def confirmed_lsn(dsn: str, slot: str) -> int | None:
    """The slot's confirmed_flush_lsn as the server reports it; None without the slot or a
    confirmed position."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        info = slot_info(conn, slot)
    return None if info is None else info.confirmed_flush_lsn


def drop_slot_and_publication(dsn: str, slot: str, publication: str, timeout: float = 5.0) -> None:
    """Drop both, waiting for the walsender of a just-closed session to release the slot."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while conn.execute(
            "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone() == (True,):
            if time.monotonic() > deadline:
                raise AssertionError(f"replication slot {slot} still in use after {timeout} s")
            time.sleep(0.02)
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        )
        conn.execute(f'DROP PUBLICATION IF EXISTS "{publication}"')


@contextlib.contextmanager
def temporary_role(database: VoucherDatabase, attributes: str) -> Iterator[str]:
    """A role with `attributes` (e.g. "LOGIN REPLICATION"), dropped with its grants afterwards."""
    role = unique_name("role")
    database.execute(f"CREATE ROLE {role} {attributes}")
    try:
        yield role
    finally:
        with database.connect(autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,)
            )
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")
