"""Concurrent reads answered together: what several threads ask at once goes to the store as one
query (group commit, applied to reads).

A query to the embedded engine costs ~3 ms before it reads a row (parsing, analysis, planning,
opening the parts: docs/store.md, "What a page costs"), whatever it reads; a page's own rows
cost a fraction of that. Under load, the API's threads each ask for a different customer's
page at the same moment, so those pages are read by one query and the fixed cost is paid
once for all of them.

A thread whose read is the oldest waiting one leads a batch as soon as fewer than `concurrency`
batches are running: it takes its read and the reads waiting after it (up to `max_batch`) and
runs them as one; the others wait until a leader has answered theirs, or until theirs is the
oldest and a batch slot is free. A read alone runs alone, with no delay; under load the batches
grow with the load. The same read asked by several threads at once is run once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

Read = TypeVar("Read", bound=Hashable)

_WAITING, _TAKEN, _DONE = range(3)


class _Entry:
    __slots__ = ("error", "read", "result", "state")

    def __init__(self, read: Any) -> None:
        self.read = read
        self.state = _WAITING
        self.result: Any = None
        self.error: BaseException | None = None


class BatchedReads(Generic[Read]):
    """Runs reads through `run(batch) -> results` (one result per read, in order), batching
    the reads of concurrent callers. `group(read)` says which reads may share a batch (reads of
    one group only); `conflict(read)` names what two reads of one batch must not share (those
    wait for the next batch)."""

    def __init__(
        self, run: Callable[[Sequence[Read]], Sequence[Any]], *,
        group: Callable[[Read], Hashable] = lambda _read: None,
        conflict: Callable[[Read], Hashable] | None = None,
        concurrency: int = 2, max_batch: int = 32,
    ) -> None:
        self._run = run
        self._group = group
        self._conflict = conflict
        self._concurrency = concurrency
        self._max_batch = max_batch
        self._changed = threading.Condition(threading.Lock())
        self._waiting: dict[Read, _Entry] = {}  # in arrival order
        self._running = 0
        self.callers = 0  # threads inside `read`
        self.batches = 0  # batches run (a read alone counts as one)
        self.reads = 0  # reads run

    @property
    def waiting(self) -> int:
        """Reads asked and not yet taken into a batch."""
        with self._changed:
            return len(self._waiting)

    def read(self, read: Read) -> Any:
        changed = self._changed
        with changed:
            self.callers += 1
            entry = self._waiting.get(read)
            if entry is None:
                entry = self._waiting[read] = _Entry(read)
            # The oldest waiting read leads the next batch: reads are answered in arrival order.
            while entry.state is _WAITING and (self._running >= self._concurrency
                                               or next(iter(self._waiting.values())) is not entry):
                changed.wait()
            if entry.state is _WAITING:
                batch = self._take(entry)
                self._running += 1
                if self._waiting and self._running < self._concurrency:
                    changed.notify_all()  # the reads left behind (another group) may lead now
            else:
                batch = None
                while entry.state is not _DONE:
                    changed.wait()
        try:
            if batch is not None:
                self._lead(batch)
        finally:
            with changed:
                self.callers -= 1
        if entry.error is not None:
            raise entry.error
        return entry.result

    def _take(self, first: _Entry) -> list[_Entry]:
        """`first` and the waiting reads of its group, up to `max_batch`, none conflicting."""
        group, conflict = self._group(first.read), self._conflict
        batch = [first]
        seen = {conflict(first.read)} if conflict is not None else set()
        for entry in self._waiting.values():
            if len(batch) >= self._max_batch:
                break
            if entry is first or self._group(entry.read) != group:
                continue
            if conflict is not None:
                name = conflict(entry.read)
                if name in seen:
                    continue
                seen.add(name)
            batch.append(entry)
        for entry in batch:
            entry.state = _TAKEN
            del self._waiting[entry.read]
        return batch

    def _lead(self, batch: list[_Entry]) -> None:
        try:
            results = self._run([entry.read for entry in batch])
        except BaseException as error:  # noqa: BLE001 - every reader of the batch gets it, raised in `read`
            for entry in batch:
                entry.error = error
        else:
            for entry, result in zip(batch, results, strict=True):
                entry.result = result
        with self._changed:
            self._running -= 1
            self.batches += 1
            self.reads += len(batch)
            for entry in batch:
                entry.state = _DONE
            self._changed.notify_all()
