"""Keeping the process's resident memory to what it uses (docs/store.md, "Memory").

Two things make an idle embedded-store sidecar look bigger than it is, and a large transaction
grow it further: the allocators keeping freed memory, which environment variables set where the
process starts tune (deploy/Dockerfile and `dev`: glibc's MALLOC_ARENA_MAX,
MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ and chDB's JE_MALLOC_CONF), and the pages of
chDB's 550 MB shared library mapped at start-up, which `release_library_pages` gives back.

No setting does what `release_library_pages` does, and the 1M-row transaction needs it: with the
library fully in the page cache (`cat` of chDB's `_chdb` library to /dev/null, then
`./dev test tests/voucher_activity/test_big_transaction.py` with the peak printed), the peak RSS
is 371 MiB with it (127 MiB of it file-backed) and 503 MiB without it (242 MiB file-backed),
over the 500 MB bound; the allocator variables instead of mallopt calls gave the same 371 MiB.

`tune_collector` sets the cyclic garbage collector for a long-running pipeline,
`collector_catching_up` for a backlog, and `collector_paused` stops it for the initial snapshot.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from voucher_activity.logs import fields

log = logging.getLogger(__name__)


# The cyclic garbage collector: CPython collects its youngest generation every 700 new container
# objects and, every 100 of those, all objects. The pipeline makes a dozen dicts per change, most
# freed by reference counting, so that default rescans the whole heap (the state caches, the
# store client, the import graph) every few hundred transactions: ~10% of mapping CPU
# (tests/bench/mapping.py). Only cyclic garbage waits for a collection, and the pipeline makes
# little; 100,000 young objects between collections costs nothing it keeps.
COLLECTOR_YOUNG_OBJECTS = 100_000
# Catching up on a backlog, the young objects are mostly what the pipeline keeps a while: the
# batch being filled (up to 40,000 events and their UUIDs) and the state's first level as it
# fills. Every 100,000 of them a young collection traversed them all to free next to nothing: in a
# 1M-change drain (`./dev bench ingest --scale full`'s backlog), 9-10 collections took 0.74-1.05 s
# of the pipeline thread's 23-26 s of CPU and freed 154 objects (timed with gc.callbacks).
CATCH_UP_YOUNG_OBJECTS = 1_000_000


def tune_collector() -> None:
    """Set the collector for a long-running pipeline process, once everything startup made is
    in place: freeze that (imports, clients, caches built so far are never rescanned) and raise
    the young generation's threshold (see COLLECTOR_YOUNG_OBJECTS)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(COLLECTOR_YOUNG_OBJECTS, middle, old)


def collector_catching_up(catching_up: bool) -> bool:
    """The young generation's threshold for catching up (CATCH_UP_YOUNG_OBJECTS) or for
    streaming live (COLLECTOR_YOUNG_OBJECTS); returns `catching_up`."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(CATCH_UP_YOUNG_OBJECTS if catching_up else COLLECTOR_YOUNG_OBJECTS, middle, old)
    return catching_up


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic collection inside (the collector's state is restored after).

    For the initial snapshot: it keeps most of what it makes (reference rows, payload memos,
    pairing counts), so every young collection traverses ~100,000 new survivors to free almost
    nothing: the five collections of a 283,030-row snapshot (`./dev bench snapshot`) took 6% of
    the mapping thread's CPU and freed 136 objects; at 100,000 customers, ten took 0.92 s.
    Mapping snapshot rows makes no reference cycles (tests/mappers/test_snapshot.py), so nothing
    waits for the collector but the odd cycle of a library call, which the first collection
    after the snapshot frees."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


MADV_DONTNEED = 4  # from the kernel's mman-common.h
# When the long-running commands release the library's pages: as they start serving, again
# once the pipeline's first queries ran, then now and then (code that a rare query touched need
# not stay mapped).
RELEASE_AFTER = (0.0, 5.0)
RELEASE_EVERY = 600.0

_MAPPING = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \d+\s*(.*)$")


def release_library_pages() -> int:
    """Unmaps the read-only pages of chDB's library (when loaded) from this process; returns
    how many bytes were resident. They stay in the kernel's page cache, so the next use of one
    maps it again without reading the disk.

    Why: the library is 550 MB, and which of its pages a process has mapped depends less on what
    it runs than on what the page cache holds: the kernel maps the cached neighbours of each
    page touched (fault-around), so the same start-up maps 170 MB or 270 MB of it, and ClickHouse's
    start-up touches code all over the library (every function and format registers itself).
    Released, the mapped part is what the sidecar uses: ~130 MB.

    Only mappings the process never wrote are released (no private copies: `Anonymous: 0` in
    smaps), so what comes back is byte for byte what was there: the code and read-only data
    of the file, which nothing can write."""
    libc = _libc()
    if libc is None:
        return 0
    library = getattr(sys.modules.get("chdb._chdb"), "__file__", None)
    if library is None:
        return 0
    released = 0
    for start, end, resident in _clean_mappings(os.path.realpath(library)):
        if libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), MADV_DONTNEED) == 0:
            released += resident
        else:
            log.debug("madvise failed", extra=fields(errno=ctypes.get_errno()))
    return released


def release_library_pages_periodically(stop: threading.Event) -> threading.Thread:
    """A daemon thread that calls `release_library_pages` now, 5 s later and then every 10
    minutes until `stop` is set."""

    def loop() -> None:
        waits = iter(RELEASE_AFTER)
        while not stop.wait(next(waits, RELEASE_EVERY)):
            released = release_library_pages()
            log.debug("library pages released", extra=fields(bytes=released))

    thread = threading.Thread(target=loop, name="release-library-pages", daemon=True)
    thread.start()
    return thread


def _clean_mappings(path: str) -> Iterator[tuple[int, int, int]]:
    """(start, end, resident bytes) of the read-only mappings of `path` without private pages."""
    try:
        lines = Path("/proc/self/smaps").read_text().splitlines()
    except OSError:
        return
    current: list[int] | None = None  # start, end, resident
    for line in lines:
        mapping = _MAPPING.match(line)
        if mapping is not None:
            start, end, permissions, name = mapping.groups()
            current = ([int(start, 16), int(end, 16), 0]
                       if name == path and permissions in ("r-xp", "r--p") else None)
        elif current is not None:
            field, _, value = line.partition(":")
            if field == "Rss":
                current[2] = int(value.split()[0]) * 1024
            elif field == "Anonymous":
                if int(value.split()[0]) == 0:
                    yield current[0], current[1], current[2]
                current = None


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.madvise  # noqa: B018 (not glibc, e.g. musl: nothing to release)
    except (OSError, AttributeError):
        return None
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc
