"""Per-transaction bookkeeping that must wait for the commit, bounded in memory.

Events that depend on later changes of their transaction (a publication's vouchers, an order
update that a status change may still suppress, `customer_event` rows) and the facts they are
checked against (events emitted, rows touched) are kept here until the commit. Entries stay in
memory up to `memory_limit`; past it, everything moves to a temporary SQLite table, so a
transaction of millions of rows costs disk, not memory. Once spilled, `prefetch` reads what a
batch of rows will ask `values` for in one query, instead of one query each.

On disk a kind is its number (kinds are long texts, repeated in every row and index entry), and
a value that is text or None is stored as itself; other values are pickled (a BLOB: nothing
else is stored as one). Spilling 80,000 voucher codes and reading them back takes a quarter less
time under callgrind than pickling each value and repeating each kind did.
"""

from __future__ import annotations

import pickle
import sqlite3
from collections.abc import Iterable
from typing import Any

import orjson

from mappers.eventids import spelled
from mappers.entitywrite import blob_parameter

_TABLE = "temp.mapper_scratch"


class Scratch:
    """A multimap (kind, key) -> values in insertion order."""

    def __init__(self, connection: sqlite3.Connection, memory_limit: int = 100_000) -> None:
        self.connection = connection
        self.memory_limit = memory_limit
        self._memory: dict[str, dict[Any, list[Any]]] = {}
        self._size = 0
        self._spilled = False
        # kind -> {key: its spilled values}, read by `prefetch`; dropped whenever the spilled
        # values change (at a spill or a clear)
        self._prefetched: dict[str, dict[Any, list[Any]]] = {}
        self._kinds: dict[str, int] = {}  # kind -> its number on disk
        # A key's values reach the table in the order they were added (each spill writes a key's
        # values in order, later spills after earlier ones): rowid order is that order.
        connection.execute(f"CREATE TABLE IF NOT EXISTS {_TABLE} (kind INTEGER, key TEXT, value)")
        connection.execute(
            "CREATE INDEX IF NOT EXISTS temp.mapper_scratch_key ON mapper_scratch (kind, key)")

    @property
    def spilled(self) -> bool:
        """Whether some values are on disk (until the next `clear`)."""
        return self._spilled

    def add(self, kind: str, key: Any, value: Any = None) -> None:
        """Remember `value` under (kind, key); keys are hashable values compared as text once
        they are on disk."""
        by_key = self._memory.get(kind)
        if by_key is None:
            by_key = self._memory[kind] = {}
        by_key.setdefault(key, []).append(value)  # the key hashed once (a UUID's hash is Python code)
        self._size += 1
        if self._size > self.memory_limit:
            self._spill()

    def has(self, kind: str, key: Any) -> bool:
        by_key = self._memory.get(kind)
        if by_key is not None and key in by_key:
            return True
        if not self._spilled or (number := self._kinds.get(kind)) is None:
            return False
        return self.connection.execute(
            f"SELECT 1 FROM {_TABLE} WHERE kind = ? AND key = ? LIMIT 1", (number, spelled(key))).fetchone() is not None

    def values(self, kind: str, key: Any) -> list[Any]:
        """The values under (kind, key), in the order they were added (while none were spilled,
        the scratch's own list: read it, do not change or keep it)."""
        in_memory = self._memory.get(kind, {}).get(key, [])
        if not self._spilled:
            return in_memory
        spilled = self._prefetched.get(kind, {}).get(key)
        if spilled is not None:
            return spilled + in_memory
        number = self._kinds.get(kind)
        if number is None:
            return in_memory
        rows = self.connection.execute(
            f"SELECT value FROM {_TABLE} WHERE kind = ? AND key = ? ORDER BY rowid", (number, spelled(key)))
        return [_loaded(value) for (value,) in rows] + in_memory

    def prefetch(self, kind: str, keys: Iterable[Any]) -> None:
        """Read the spilled values of (kind, key) for every one of `keys` in one query, so that
        `values` of those keys reads none (until the next spill or clear, or the kind's next
        prefetch). Nothing to do before a spill."""
        self._prefetched.pop(kind, None)
        number = self._kinds.get(kind)
        if not self._spilled or number is None:
            return
        by_text = {spelled(key): key for key in keys if key is not None}
        if not by_text:
            return
        found: dict[Any, list[Any]] = {key: [] for key in by_text.values()}
        rows = self.connection.execute(
            f"SELECT key, value FROM {_TABLE} WHERE kind = ? AND key IN (SELECT value FROM json_each(?)) "
            "ORDER BY rowid", (number, orjson.dumps(list(by_text)).decode()))
        for text, value in rows:
            found[by_text[text]].append(_loaded(value))
        self._prefetched[kind] = found

    def clear(self) -> None:
        self._memory.clear()
        self._size = 0
        self._prefetched.clear()
        if self._spilled:
            self.connection.execute(f"DELETE FROM {_TABLE}")
            self._spilled = False

    def _spill(self) -> None:
        kinds = self._kinds
        rows = ((kinds.setdefault(kind, len(kinds)), spelled(key), _stored(value))
                for kind, by_key in self._memory.items() for key, values in by_key.items()
                for value in values)
        self.connection.executemany(f"INSERT INTO {_TABLE} VALUES (?, ?, ?)", rows)
        self._memory.clear()
        self._size = 0
        self._spilled = True
        self._prefetched.clear()


def _stored(value: Any) -> Any:
    """A value as the table holds it: text and None as themselves, anything else pickled."""
    if value is None or type(value) is str:
        return value
    return blob_parameter(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def _loaded(stored: Any) -> Any:
    return pickle.loads(stored) if type(stored) is bytes else stored
