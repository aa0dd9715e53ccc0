"""The reference state's second cache level: rows in their encoded form (`mappers/rowcodec.py`),
within a budget of bytes, the least recently stored or read dropped first.

A UUID-keyed row (every row of the voucher engine's tables) is held under one int, its table's
number above the key's 128 bits, in a plain dict: 110-140 bytes an entry besides the encoding,
where a (table, key) tuple in an OrderedDict cost 200-240. The level holds the snapshot's and the
stream's working sets (hundreds of thousands of customers, vouchers and redemptions at a time),
so what an entry costs decides how many rows a `--state-cache` keeps off SQLite. Other keys
(text) are held under (table, key).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from mappers.entitywrite import newest_that_fit

# Bytes an entry costs besides its encoding's content: the bytes object's header (33), the key
# int (44) and the dict's share of its slots, 30-60 as the table fills (measured with
# tracemalloc; tests/mappers/test_encoded.py checks that the budget bounds it).
ENTRY_OVERHEAD = 140
# Past the budget, the oldest entries are dropped until this share of the budget is free again:
# dropping in chunks keeps a dict, whose deleted slots at the front an iteration walks past until
# the next resize, from being walked once per entry dropped.
_DROP_SHARE = 16


class EncodedRows:
    def __init__(self, budget: int) -> None:
        self.budget = budget  # bytes; 0 keeps nothing
        self.size = 0  # bytes counted for the entries held
        self._rows: dict[Any, bytes] = {}
        self.bases: dict[str, int] = {}  # table -> its number, shifted above a key's 128 bits

    def __len__(self) -> int:
        return len(self._rows)

    def key(self, table: str, key: Any) -> Any:
        """Where the row of `table` keyed `key` (a UUID, or text) is held."""
        if type(key) is UUID:
            base = self.bases.get(table)  # `uuid_key` in place: this runs for every row read
            return base | key.int if base is not None else self.uuid_key(table, key.int)
        return (table, key)

    def uuid_key(self, table: str, number: int) -> int:
        """`key` of a UUID given by its int."""
        base = self.bases.get(table)
        if base is None:
            base = self.bases[table] = (len(self.bases) + 1) << 128
        return base | number

    def get(self, key: Any) -> bytes | None:
        """The encoding held under `key` (None: not held); it becomes the most recently used."""
        rows = self._rows
        blob = rows.pop(key, None)
        if blob is not None:
            rows[key] = blob
        return blob

    def store(self, entries: Iterable[tuple[Any, bytes]]) -> None:
        """Hold each (key, encoding), replacing what a key held; the oldest go past the budget."""
        if not self.budget:
            return
        rows, size = self._rows, self.size
        pop = rows.pop
        for key, blob in entries:
            previous = pop(key, None)
            if previous is not None:
                size -= len(previous) + ENTRY_OVERHEAD
            rows[key] = blob
            size += len(blob) + ENTRY_OVERHEAD
        self.size = size
        if size > self.budget:
            self._drop_oldest()

    def store_oldest_rows(self, rows: Iterable[tuple[str, Any, bytes]]) -> int:
        """Hold the `entity` table's (table, key, encoding) rows, from the newest to the oldest,
        for keys not held yet, while they fit the budget, as older than everything held; those
        not keyed by a UUID are passed over; returns how many (the loop is compiled: a restart
        warms hundreds of thousands of rows, mappers/entitywrite.pyx)."""
        kept, room = newest_that_fit(rows, self.uuid_key, self._rows, self.budget - self.size, ENTRY_OVERHEAD)
        held = dict(reversed(kept))
        held.update(self._rows)
        self._rows = held
        self.size = self.budget - room
        return len(kept)

    def discard_row(self, table: str, key: Any) -> None:
        """Drops the encoding of the row of `table` keyed `key`, if held (for every row put or added)."""
        if type(key) is UUID:  # `key` in place; a table without a base holds no UUID-keyed row
            base = self.bases.get(table)
            if base is None:
                return
            held = base | key.int
        else:
            held = (table, key)
        blob = self._rows.pop(held, None)
        if blob is not None:
            self.size -= len(blob) + ENTRY_OVERHEAD

    def clear(self) -> None:
        self._rows.clear()
        self.size = 0

    def _drop_oldest(self) -> None:
        rows, goal, size = self._rows, self.budget - self.budget // _DROP_SHARE, self.size
        dropped = []
        for key, blob in rows.items():
            if size <= goal:
                break
            size -= len(blob) + ENTRY_OVERHEAD
            dropped.append(key)
        for key in dropped:
            del rows[key]
        self.size = size

