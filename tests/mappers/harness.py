"""Test harness for the mappers: write rows the way the voucher engine does, stream them through
real PostgreSQL logical replication, and map the envelopes with a fresh `EventMapper`.

Rows are written with `insert`/`update`/`delete`, one call per statement the engine's
Hibernate session would send, inside `transaction(...)` blocks that mirror its transactions.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from cdc_reader.changes import Change, Envelope, TransactionBegin, TransactionCommit
from mappers import (
    EventMapper,
    ReferenceState,
    SourceIdentity,
    load_default_catalog,
    tracked_columns,
    tracked_tables,
)
from tests.conftest import VoucherDatabase
from tests.replication_helpers import stream_transactions

SOURCE = SourceIdentity(system_id="7400000000000000001", database="voucher_test")
SLOT = "voucher_activity"


def uid(number: int) -> str:
    """A readable fixed UUID: uid(7) == '00000000-0000-0000-0000-000000000007'."""
    return str(uuid.UUID(int=number))


def at(text: str) -> datetime:
    """A naive UTC timestamp as Hibernate writes it."""
    return datetime.fromisoformat(text)


def _adapt(value: Any) -> Any:
    return Jsonb(value) if isinstance(value, (dict, list)) else value


def insert(conn: psycopg.Connection, table: str, **values: Any) -> None:
    conn.execute(
        sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, values)),
            sql.SQL(", ").join(sql.Placeholder() * len(values))),
        [_adapt(value) for value in values.values()])


def update(conn: psycopg.Connection, table: str, row_id: str, **values: Any) -> None:
    conn.execute(
        sql.SQL("UPDATE {} SET {} WHERE id = %s").format(
            sql.Identifier(table),
            sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(column)) for column in values)),
        [*(_adapt(value) for value in values.values()), row_id])


def delete(conn: psycopg.Connection, table: str, **where: Any) -> None:
    conn.execute(
        sql.SQL("DELETE FROM {} WHERE {}").format(
            sql.Identifier(table),
            sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(column)) for column in where)),
        list(where.values()))


@dataclass(frozen=True, slots=True)
class MappedTransaction:
    begin: TransactionBegin
    changes: list[Change]
    commit: TransactionCommit
    records: list[Any]

    @property
    def events(self) -> list[Any]:
        return [record for record in self.records if type(record).__name__ == "CustomerEvent"]

    @property
    def group_id(self) -> str:
        return f"tx_{self.commit.commit_lsn:016X}"

    def position(self, table: str, nth: int = 0) -> int:
        """The position of the nth change of `table` in this transaction."""
        return [change.position for change in self.changes if change.table == table][nth]


@dataclass
class Engine:
    """Writes engine-like transactions to a voucher database; `stream()` maps what was written."""

    database: VoucherDatabase
    state_dir: Path
    writes: list[Callable[[psycopg.Connection], None]] = field(default_factory=list)

    def transaction(self, write: Callable[[psycopg.Connection], None]) -> None:
        """Queue one source transaction (the body gets an open connection inside BEGIN)."""
        self.writes.append(write)

    def _write_all(self) -> None:
        with self.database.connect() as conn:
            for write in self.writes:
                with conn.transaction():
                    write(conn)

    def envelopes(self) -> list[list[Envelope]]:
        """Run the queued transactions and return what replication streams, per transaction."""
        # the columns the pipeline's reader carries (mappers.tracked_columns): the events show
        # that the mapping reads no other
        grouped = stream_transactions(self.database.dsn, self._write_all, tracked_tables(),
                                      transactions=len(self.writes), columns=tracked_columns())
        self.writes = []
        return grouped

    def stream(self, mapper: EventMapper | None = None) -> list[MappedTransaction]:
        """Run the queued transactions, stream them, map them in order."""
        grouped = self.envelopes()
        owned = mapper is None
        mapper = mapper or new_mapper(self.state_dir)
        try:
            return [map_transaction(mapper, envelopes) for envelopes in grouped]
        finally:
            if owned:
                mapper.state.close()


def new_mapper(state_dir: Path, cache_size: int = 1000, scratch_memory_limit: int = 100_000,
               match_memory_limit: int = 100_000) -> EventMapper:
    state = ReferenceState.open(state_dir, cache_size)
    return EventMapper(load_default_catalog(), state, source=SOURCE, slot=SLOT,
                       scratch_memory_limit=scratch_memory_limit, match_memory_limit=match_memory_limit)


def map_transaction(mapper: EventMapper, envelopes: list[Envelope]) -> MappedTransaction:
    begin, *changes, commit = envelopes
    records = []
    mapper.begin(begin)
    for change in changes:
        records.extend(mapper.change(change))
    records.extend(mapper.commit(commit))
    return MappedTransaction(begin, changes, commit, records)


@contextlib.contextmanager
def engine_for(database: VoucherDatabase, state_dir: Path) -> Iterator[Engine]:
    # The sidecar refuses to publish a table without replica identity (SPEC §3).
    database.execute("ALTER TABLE segment_customer REPLICA IDENTITY FULL")
    yield Engine(database, state_dir)
