"""Clients of the ClickHouse store, embedded (chDB) or a server, both through clickhouse-connect,
and the pool that lends the readers to concurrent API requests."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import Error as ClickHouseError

from query.location import StoreLocation

# Concurrent API requests each take a reader; one client would serialize them on its lock
# (chDB) or its connection (a server). Measured in docs/store.md, "Readers".
READERS = 4


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


class ReaderPool:
    """Lends clients first come, first served: a returned client goes straight to the longest
    waiting thread. (A lock or queue lets the thread that just returned a client take it
    back at once; measured, that starved some API requests for seconds.)"""

    def __init__(self, clients: Sequence[Client]) -> None:
        self.clients = tuple(clients)
        self._idle = list(self.clients)
        self._waiting: deque[_Waiter] = deque()
        self._lock = threading.Lock()

    @property
    def waiting(self) -> int:
        """How many threads wait for a reader now."""
        return len(self._waiting)

    @contextmanager
    def reader(self) -> Iterator[Client]:
        with self._lock:
            if self._idle:
                client = self._idle.pop()
            else:
                waiter = _Waiter()
                self._waiting.append(waiter)
                client = None
        if client is None:
            waiter.handed.wait()
            client = waiter.client
        try:
            yield client
        finally:
            self._give_back(client)

    def _give_back(self, client: Client) -> None:
        with self._lock:
            if not self._waiting:
                self._idle.append(client)
                return
            waiter = self._waiting.popleft()
        waiter.client = client
        waiter.handed.set()


class _Waiter:
    __slots__ = ("client", "handed")

    def __init__(self) -> None:
        self.client: Client | None = None
        self.handed = threading.Event()
