"""Where events sit in their customers' histories, remembered for the cursors clients continue
from (`more_starting_after`, the dashboard's newest event). An event's created_at never changes,
so an entry needs no invalidation."""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from datetime import datetime

# ~500 bytes an entry (tracemalloc), so at most ~10 MB.
POSITIONS = 20_000

Key = tuple[uuid.UUID, uuid.UUID, uuid.UUID]  # (tenant, customer, event)


class PositionMemory:
    """Thread-safe; the least recently used entries go first once `capacity` is reached."""

    def __init__(self, capacity: int = POSITIONS) -> None:
        self.capacity = capacity
        self._created_at: OrderedDict[Key, datetime] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Key) -> datetime | None:
        with self._lock:
            return self._created_at.get(key)

    def remember(self, entries: list[tuple[Key, datetime]]) -> None:
        with self._lock:
            for key, created_at in entries:
                self._created_at[key] = created_at
                self._created_at.move_to_end(key)
            while len(self._created_at) > self.capacity:
                self._created_at.popitem(last=False)
