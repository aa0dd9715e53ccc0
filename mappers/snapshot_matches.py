"""The initial snapshot's pairing of `customer_event` rows with business events: a row whose
(customer, type) a business row of the snapshot already made an event for is that event's
copy, and is left out (SPEC §4: the event appears once). Counts are kept in memory
(mappers/paircounts.pyx: 24 bytes a slot, at most two thirds full) up to `memory_limit` (customer,
type) pairs, then added to the state's SQLite table in one statement: counting each event there
took one statement per event, ~12% of the snapshot's time (tests/bench/snapshot.py). The full-scale
benchmark's ~1M pairs fit. A customer is kept by its id's 128-bit int in memory and its 16 bytes
in SQLite: no UUID is made or spelled as text. The SQLite side lives in the state file's open
transaction, so a crash mid-snapshot rolls it back with the rest. Once counts are spilled,
`prefetch` moves the counts a batch of `customer_event` rows will take back into memory in one
statement, instead of one statement per row."""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

import orjson

from mappers.entitywrite import blob_parameter
from mappers.paircounts import PairCounts
from mappers.state import ReferenceState

MEMORY_LIMIT = 2**21 * 2 // 3  # a table of 2^21 slots, 48 MiB

_TABLE = """
CREATE TABLE IF NOT EXISTS snapshot_match (
    customer_id BLOB NOT NULL, type TEXT NOT NULL, business INTEGER NOT NULL,
    PRIMARY KEY (customer_id, type)
) WITHOUT ROWID
"""

_WANTED = "CREATE TEMP TABLE IF NOT EXISTS snapshot_match_wanted (customer_id BLOB NOT NULL, type TEXT NOT NULL)"

# A spill, and the pairs a prefetch wants, go to SQLite as one statement each: the customers'
# 16-byte ids in one blob, the rest in a JSON array that `json_each` walks (its key is the
# index). `executemany` took a step per pair and the interpreter's lock back after each, waiting
# for the reader threads whenever they held it. (As the state's row writes: mappers/entitywrites.py.)
_SPILL = (
    "INSERT INTO snapshot_match (customer_id, type, business) "
    "SELECT substr(?2, pair.key * 16 + 1, 16), json_extract(pair.value, '$[0]'), json_extract(pair.value, '$[1]') "
    "FROM json_each(?1) AS pair WHERE true "  # (a WHERE before ON CONFLICT: SQLite's parser)
    "ON CONFLICT (customer_id, type) DO UPDATE SET business = business + excluded.business"
)
_WANT = ("INSERT INTO temp.snapshot_match_wanted "
         "SELECT substr(?2, pair.key * 16 + 1, 16), pair.value FROM json_each(?1) AS pair")


class SnapshotMatches:
    def __init__(self, state: ReferenceState, memory_limit: int = MEMORY_LIMIT) -> None:
        self.state = state
        self.memory_limit = memory_limit
        # Its own tables on the state's connection, in the state's transaction: they need not
        # wait for the state's row writes (mappers/entitywrites.py), which run meanwhile.
        self.connection = connection = state.connection
        connection.execute(_TABLE)
        connection.execute(_WANTED)
        self._counts = PairCounts()  # (customer id's int, type) -> events
        self._spilled = False  # the state's table holds counts too
        # pairs whose spilled counts `prefetch` moved into memory: the table holds none of them
        self._prefetched: set[tuple[int, str]] = set()
        self._types: frozenset[str] | None = None  # `count_only`'s; None: every type

    @property
    def spilled(self) -> bool:
        """Whether some counts are on disk (until the next `clear`)."""
        return self._spilled

    def count_only(self, types: Iterable[str]) -> None:
        """Until `clear`, count only events of these types: those the snapshot's pass-through rows
        hold (an event of another type has no row to pair with)."""
        self._types = frozenset(types)

    def count(self, customer: UUID, event_type: str) -> None:
        """A business-derived snapshot event of this (customer, type) exists."""
        if self._types is not None and event_type not in self._types:
            return
        counts = self._counts
        counts.add(customer.int, event_type)
        if len(counts) >= self.memory_limit:
            self._spill()

    def take(self, customer: UUID, event_type: str) -> bool:
        """Pair one customer_event row with an unpaired business event of the same (customer,
        type); False when none is left (the row is the only record of its event)."""
        number = customer.int
        if self._counts.take(number, event_type):
            return True
        if not self._spilled or (number, event_type) in self._prefetched:
            return False
        self.state.begin()
        # (RETURNING, not the cursor's rowcount: that counts the connection's last change, which
        # may be the row writes' on their own thread)
        return self.connection.execute(
            "UPDATE snapshot_match SET business = business - 1 WHERE customer_id = ? AND type = ? "
            "AND business > 0 RETURNING 1", (blob_parameter(number.to_bytes(16)), event_type)).fetchone() is not None

    def prefetch(self, pairs: Iterable[tuple[int, str]]) -> None:
        """The (customer id's int, type) pairs the next rows will `take`: their spilled counts
        move into memory in one statement. Memory stays bounded: counts past `memory_limit`
        spill first."""
        if not self._spilled:
            return
        if len(self._counts) >= self.memory_limit:
            self._spill()
        wanted = set(pairs)
        self._prefetched = wanted
        if not wanted:
            return
        connection = self.connection
        self.state.begin()
        connection.execute(_WANT, (orjson.dumps([event_type for _customer, event_type in wanted]),
                                   _ids(customer for customer, _event_type in wanted)))
        moved = connection.execute(
            "DELETE FROM snapshot_match WHERE (customer_id, type) IN "
            "(SELECT customer_id, type FROM temp.snapshot_match_wanted) RETURNING customer_id, type, business"
        ).fetchall()
        connection.execute("DELETE FROM temp.snapshot_match_wanted")
        add = self._counts.add
        for customer, event_type, business in moved:
            add(int.from_bytes(customer), event_type, business)

    def clear(self) -> None:
        """The snapshot is over: forget every count."""
        self._counts.drain()
        self._spilled = False
        self._prefetched = set()
        self._types = None
        self.state.begin()
        self.connection.execute("DELETE FROM snapshot_match")

    def _spill(self) -> None:
        self.state.begin()
        ids, values = self._counts.drain()
        if values:
            self.connection.execute(_SPILL, (orjson.dumps(values), blob_parameter(ids)))
        self._spilled = True
        self._prefetched = set()


def _ids(customers: Iterable[int]) -> bytearray:
    """The customers' ids, 16 bytes each, in one blob."""
    return blob_parameter(b"".join(customer.to_bytes(16) for customer in customers))
