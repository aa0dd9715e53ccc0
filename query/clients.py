"""Clients of the ClickHouse store, embedded (chDB) or a server, both through clickhouse-connect,
and the readers of concurrent API requests: one client per thread that reads."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import Error as ClickHouseError

from query.location import StoreLocation

# On a cluster an insert counts as durable (and its LSN may be confirmed) only once every shard
# holds it on a majority of its replicas: the Distributed table forwards it synchronously instead
# of queueing it on the node that received it, and each shard's Replicated table waits for its
# quorum. The dedup token lives in the replicated log, so a retry through another node is
# dropped as a copy.
CLUSTER_INSERT_SETTINGS = {
    "distributed_foreground_insert": 1, "insert_quorum": "auto", "insert_quorum_timeout": 60_000,
}


def insert_settings(dedup_token: str, cluster: str | None) -> dict[str, Any]:
    """What an insert sends: its dedup token, and on a cluster the durability settings."""
    settings: dict[str, Any] = {"insert_deduplication_token": dedup_token}
    if cluster is not None:
        settings |= CLUSTER_INSERT_SETTINGS
    return settings


class StoreError(Exception):
    """The store did not answer or refused a statement; retrying later may succeed."""


def connect(location: StoreLocation, settings: dict[str, Any] | None = None) -> Client:
    """A client with no default database (it may not exist yet); callers set `.database`."""
    # Every insert asks clickhouse-connect's `options.pd` whether its data is a DataFrame, which
    # imports pandas when installed (chDB depends on it): ~40 MB of RSS, and ~1 s on the first
    # insert, for a check that is always false here. Resolved to None, pandas is never imported.
    from clickhouse_connect.driver import options

    options.pd = None
    try:
        if location.embedded:
            return clickhouse_connect.get_client(
                interface="chdb", path=location.path, settings=settings, tz_mode="aware"
            )
        return clickhouse_connect.get_client(
            host=location.host, port=location.port, secure=location.secure,
            username=location.username, password=location.password, settings=settings,
            tz_mode="aware",
            # A shared session would make concurrent API queries fail with "session is locked".
            autogenerate_session_id=False,
        )
    except (ClickHouseError, OSError) as error:
        message = str(error).replace(location.password, "***") if location.password else str(error)
        raise StoreError(f"cannot open the store: {message}") from error


def read_only_level(client: Client) -> int:
    """The `readonly` level the server holds this client's user at (0: none)."""
    setting = client.server_settings.get("readonly")
    return int(setting.value) if setting is not None and setting.value.isdigit() else 0


def read_only(client: Client) -> Client:
    """Reads cannot write even if a bug let them try: readonly=2, under which a query may still
    carry settings. A user the server already holds at readonly=1 (a read-only account, or the
    embedded store's SQL endpoint) keeps that stricter mode, and its queries carry no settings
    (Store.rows), which it would refuse."""
    if read_only_level(client) == 0:
        client.set_client_setting("readonly", 2)
    return client


def reader(location: StoreLocation) -> Client:
    """A read-only client (`read_only`) on the store's database."""
    client = read_only(connect(location))
    client.database = location.database
    return client


class ThreadReaders:
    """One reader client per thread, made on the thread's first read. A client serializes its
    queries (chDB: a lock per handle; a server: its connections), while chDB runs queries on
    separate handles in parallel with the interpreter's lock released, so no request waits for
    another's client (docs/store.md, "Readers"). A client lives as long as its thread (a chDB
    handle is ~1 MB of RSS); `close()` closes those still open."""

    def __init__(self, make: Callable[[], Client]) -> None:
        self._make = make
        self._local = threading.local()
        self._open: weakref.WeakSet[Client] = weakref.WeakSet()
        self._lock = threading.Lock()

    def client(self) -> Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._make()
            with self._lock:
                self._open.add(client)
        return client

    def close(self) -> None:
        with self._lock:
            clients = list(self._open)
        for client in clients:
            client.close()
