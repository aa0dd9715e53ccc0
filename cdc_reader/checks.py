"""Start-up checks on the source database (SPEC §3).

Each unmet requirement raises its own `SourceNotReadyError` subclass whose message is one
sentence saying what to change. None of this retries: the operator has to act.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg


class SourceNotReadyError(Exception):
    """The source database does not meet a requirement; the message says what to change."""


class WalLevelError(SourceNotReadyError):
    pass


class ReplicationPrivilegeError(SourceNotReadyError):
    pass


class NoFreeReplicationSlotError(SourceNotReadyError):
    pass


class NoFreeWalSenderError(SourceNotReadyError):
    pass


class MissingTableError(SourceNotReadyError):
    pass


class SelectPrivilegeError(SourceNotReadyError):
    pass


class ReplicaIdentityError(SourceNotReadyError):
    pass


class PublicationOwnerError(SourceNotReadyError):
    pass


@dataclass(frozen=True, slots=True)
class TrackedTable:
    """What the catalog says about one tracked table (`display` is how SQL names it)."""

    schema: str
    name: str
    display: str
    exists: bool
    has_replica_identity: bool
    can_select: bool


def split_table_name(table: str) -> tuple[str, str]:
    """'customer' -> ('public', 'customer'); 'billing.customer' -> ('billing', 'customer')."""
    schema, _, name = table.rpartition(".")
    return schema or "public", name


def describe_tables(conn: psycopg.Connection, tables: Sequence[str]) -> list[TrackedTable]:
    """Catalog facts for `tables`, in the given order, with one query."""
    names = [split_table_name(table) for table in tables]
    rows = conn.execute(
        """
        SELECT t.schema, t.name,
               coalesce(c.oid::regclass::text,
                        nullif(quote_ident(t.schema), 'public') || '.' || quote_ident(t.name),
                        quote_ident(t.name)),
               c.oid IS NOT NULL,
               CASE c.relreplident
                   WHEN 'f' THEN true
                   WHEN 'd' THEN EXISTS (SELECT FROM pg_index i
                                         WHERE i.indrelid = c.oid AND i.indisprimary)
                   WHEN 'i' THEN EXISTS (SELECT FROM pg_index i
                                         WHERE i.indrelid = c.oid AND i.indisreplident)
                   ELSE false
               END,
               c.oid IS NOT NULL AND has_table_privilege(c.oid, 'SELECT')
        FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t(schema, name, position)
        LEFT JOIN pg_namespace n ON n.nspname = t.schema
        LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.name
                             AND c.relkind IN ('r', 'p')
        ORDER BY t.position
        """,
        ([schema for schema, _ in names], [name for _, name in names]),
    ).fetchall()
    return [TrackedTable(*row) for row in rows]


def current_role(conn: psycopg.Connection) -> str:
    """The connected role, quoted as SQL needs it."""
    return conn.execute("SELECT quote_ident(current_user)").fetchone()[0]


def check_wal_level(conn: psycopg.Connection) -> None:
    level = conn.execute("SELECT current_setting('wal_level')").fetchone()[0]
    if level != "logical":
        raise WalLevelError(
            f"wal_level is '{level}' but logical replication needs 'logical'; "
            "run ALTER SYSTEM SET wal_level = logical and restart PostgreSQL"
        )


def check_replication_privilege(conn: psycopg.Connection) -> None:
    allowed = conn.execute(
        "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user"
    ).fetchone()[0]
    if not allowed:
        role = current_role(conn)
        raise ReplicationPrivilegeError(
            f"role {role} may not stream changes because it lacks the REPLICATION attribute; "
            f"run ALTER ROLE {role} REPLICATION"
        )


def check_free_slot(conn: psycopg.Connection, slot: str) -> None:
    """A new slot needs a free place; an existing slot of ours does not."""
    used, limit, ours = conn.execute(
        "SELECT count(*), current_setting('max_replication_slots')::int,"
        " count(*) FILTER (WHERE slot_name = %s) FROM pg_replication_slots",
        (slot,),
    ).fetchone()
    if not ours and used >= limit:
        raise no_free_slot(limit)


def no_free_slot(limit: int | None = None) -> NoFreeReplicationSlotError:
    """The error for a full slot table (also raised when the server refuses to create one)."""
    return NoFreeReplicationSlotError(
        f"all {_count(limit)}replication slots (max_replication_slots) are in use; raise "
        "max_replication_slots and restart PostgreSQL, or drop an unused slot with "
        "SELECT pg_drop_replication_slot('<name>')"
    )


def no_free_wal_sender(limit: int | None = None) -> NoFreeWalSenderError:
    """The error for a full walsender table (also raised when the server refuses to connect)."""
    return NoFreeWalSenderError(
        f"all {_count(limit)}WAL senders (max_wal_senders) are in use; raise max_wal_senders "
        "and restart PostgreSQL, or stop a replication client that is no longer needed"
    )


def _count(limit: int | None) -> str:
    return "" if limit is None else f"{limit} "


def check_free_wal_sender(conn: psycopg.Connection) -> None:
    used, limit = conn.execute(
        "SELECT count(*), current_setting('max_wal_senders')::int FROM pg_stat_get_wal_senders()"
    ).fetchone()
    if used >= limit:
        raise no_free_wal_sender(limit)


def check_tracked_tables(conn: psycopg.Connection, tables: Sequence[str]) -> list[TrackedTable]:
    """Every tracked table exists, is readable, and can be published without breaking the
    application's UPDATEs and DELETEs (which fail on a published table without replica identity)."""
    described = describe_tables(conn, tables)
    missing = [table.display for table in described if not table.exists]
    if missing:
        database = conn.execute("SELECT current_database()").fetchone()[0]
        raise MissingTableError(
            f"tracked table(s) {', '.join(missing)} do not exist in database {database}; "
            "point --source at the voucher engine's database or exclude the table(s)"
        )
    unreadable = [table.display for table in described if not table.can_select]
    if unreadable:
        role = current_role(conn)
        raise SelectPrivilegeError(
            f"role {role} cannot read tracked table(s) {', '.join(unreadable)}; "
            f"run GRANT SELECT ON {', '.join(unreadable)} TO {role}"
        )
    for table in described:
        if not table.has_replica_identity:
            raise ReplicaIdentityError(
                f"table {table.display} has no replica identity (no primary key), so publishing "
                "it would make the application's UPDATEs and DELETEs on it fail; run "
                f"ALTER TABLE {table.display} REPLICA IDENTITY FULL, or exclude the table"
            )
    return described


def check_publication_owner(conn: psycopg.Connection, publication: str) -> None:
    """An existing publication must be one this role may alter (or drop at teardown)."""
    row = conn.execute(
        "SELECT quote_ident(pg_get_userbyid(pubowner)), pg_has_role(pubowner, 'USAGE'),"
        " quote_ident(pubname) FROM pg_publication WHERE pubname = %s",
        (publication,),
    ).fetchone()
    if row is not None and not row[1]:
        owner, _, name = row
        role = current_role(conn)
        raise PublicationOwnerError(
            f"publication {name} is owned by role {owner}, not {role}; run "
            f"ALTER PUBLICATION {name} OWNER TO {role}, or choose another --publication"
        )


def run_startup_checks(
    conn: psycopg.Connection,
    slot: str,
    publication: str,
    tables: Sequence[str],
    *,
    need_wal_sender: bool = True,
) -> None:
    """All checks, most fundamental first."""
    check_wal_level(conn)
    check_replication_privilege(conn)
    check_tracked_tables(conn, tables)
    check_publication_owner(conn, publication)
    check_free_slot(conn, slot)
    if need_wal_sender:
        check_free_wal_sender(conn)
