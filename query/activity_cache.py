"""Activity pages kept in memory and dropped the moment the writer stores anything that could
change them, so a page served from here is the page the store would give now.

Each page carries tags: the customer it lists, and the `source_id` it was asked by. The writer
(query/writer.py) invalidates, right after each flush, the tags of every event, customer and
tenant it stored; a tenant row clears everything (a rename changes what a name means). A page
read from the store while a flush invalidated one of its tags is not kept, because the read may
have run before the insert: `ticket()` before the read, `put(..., ticket)` after it.

Only a process whose own writer feeds the store may use one (`voucher-activity run`); an API
beside a writer in another process (`serve`) has nobody to tell it, and keeps no pages.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import Hashable, Iterable

# Memory for the pages of `run`'s API (bodies plus the bookkeeping charged per page below).
DEFAULT_BYTES = 32 * 2**20
# What a page costs beyond its body: dictionary and set entries ~620 bytes (tracemalloc, 5,000
# pages), plus the key's and the tags' own objects.
PAGE_OVERHEAD = 1024
# Invalidations remembered to judge a read still in flight; a read that outlives this many
# flushes is simply not kept.
RECENT_INVALIDATIONS = 256
# Tags remembered per invalidation; a larger flush (a big transaction's 10,000-row batches) is
# remembered as touching everything, so the memory for in-flight reads stays ~256 x 64 tags.
RECENT_TAGS = 64

Tag = Hashable
_EVERYTHING: Tag = ("everything",)


def customer_tag(tenant_id: uuid.UUID, customer_id: uuid.UUID) -> Tag:
    return ("customer", tenant_id, customer_id)


def source_tag(tenant_id: uuid.UUID, source_id: str) -> Tag:
    return ("source", tenant_id, source_id)


class ActivityCache:
    """Thread-safe; least recently used pages go first once `max_bytes` is reached."""

    def __init__(self, max_bytes: int = DEFAULT_BYTES) -> None:
        self.max_bytes = max_bytes
        self._pages: OrderedDict[Hashable, tuple[bytes, tuple[Tag, ...]]] = OrderedDict()
        self._by_tag: dict[Tag, set[Hashable]] = {}
        self._bytes = 0
        self._sequence = 0  # invalidations so far
        self._recent: deque[tuple[int, frozenset[Tag]]] = deque(maxlen=RECENT_INVALIDATIONS)
        self._lock = threading.Lock()

    @property
    def bytes(self) -> int:
        """What the pages held now count against `max_bytes`."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._pages)

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            page = self._pages.get(key)
            if page is None:
                return None
            self._pages.move_to_end(key)
            return page[0]

    def ticket(self) -> int:
        """Taken before reading a page from the store; `put` checks it."""
        return self._sequence

    def put(self, key: Hashable, body: bytes, tags: Iterable[Tag], ticket: int) -> None:
        """Keep `body` unless a flush since `ticket` touched one of `tags` (or cannot be
        judged any more), or it alone would exceed the budget."""
        tags = tuple(tags)
        cost = len(body) + PAGE_OVERHEAD
        with self._lock:
            if cost > self.max_bytes or self._changed_since(ticket, tags):
                return
            self._drop(key)
            self._pages[key] = (body, tags)
            for tag in tags:
                self._by_tag.setdefault(tag, set()).add(key)
            self._bytes += cost
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._pages)))

    def invalidate(self, tags: Iterable[Tag]) -> None:
        """Drop every page carrying one of `tags`: their customers' rows just changed."""
        tags = frozenset(tags)
        with self._lock:
            self._sequence += 1
            self._recent.append((self._sequence, tags if len(tags) <= RECENT_TAGS else frozenset((_EVERYTHING,))))
            for tag in tags:
                for key in tuple(self._by_tag.get(tag, ())):
                    self._drop(key)

    def clear(self) -> None:
        """Drop every page (a tenant changed: names may mean another tenant now)."""
        with self._lock:
            self._sequence += 1
            self._recent.append((self._sequence, frozenset((_EVERYTHING,))))
            for key in tuple(self._pages):
                self._drop(key)

    def _changed_since(self, ticket: int, tags: tuple[Tag, ...]) -> bool:
        if ticket == self._sequence:
            return False
        if not self._recent or self._recent[0][0] > ticket + 1:
            return True  # older invalidations are forgotten: assume the worst
        for sequence, changed in reversed(self._recent):
            if sequence <= ticket:
                break
            if _EVERYTHING in changed or not changed.isdisjoint(tags):
                return True
        return False

    def _drop(self, key: Hashable) -> None:
        page = self._pages.pop(key, None)
        if page is None:
            return
        body, tags = page
        self._bytes -= len(body) + PAGE_OVERHEAD
        for tag in tags:
            keys = self._by_tag.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_tag[tag]
