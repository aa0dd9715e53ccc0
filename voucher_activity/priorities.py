"""The sidecar's background threads yield the CPU to its pipeline and to PostgreSQL.

The pipeline thread is the sidecar's critical path: it holds the interpreter's lock and maps
every change in order. Some of the work the process runs behind it has slack: the reference
state's writes and WAL checkpoints (`mappers/entitywrites.py`, `mappers/walcheckpoint.py`; a
commit waits for them, every second or ten) and, with the embedded store, ClickHouse's merges
and background schedule (chDB's MergeMutate and BgSchPool threads), and, while it catches up
on a backlog or takes the initial snapshot, the store's inserts (`query/writer.py`: the
pipeline waits for a batch's insert only when the next batch is full). Streaming live, the inserts keep their priority: each one
stands between a commit and the moment its events can be read.

On a machine whose cores the sidecar shares with the database, those threads competed with the
pipeline thread and with the walsender for a core: in a 1M-change drain on two cores
(`./dev bench ingest --scale full`'s backlog, drains alternated, six each), the pipeline thread
waited 2.9-4.2 s for a core with them at the default priority and 1.9-2.5 s with them at nice
10 (`/proc/thread-self/schedstat`). Lowered, they still run whenever a core is free, and at
least at a tenth of a contended core's share, so they keep up: a commit waits for the state's
writes.

ClickHouse's server does the same for its own merges (`os_threads_nice_value_merge_mutate`);
embedded, chDB's threads are threads of this process, found by the names ClickHouse gives them.

Linux only: there `setpriority(PRIO_PROCESS, tid)` sets one thread. Raising a thread's nice
value needs no privilege; nothing here ever decreases one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from voucher_activity.logs import fields
from voucher_activity.memory import collector_catching_up

if TYPE_CHECKING:
    from query.writer import EventWriter

log = logging.getLogger(__name__)

BACKGROUND_NICE = 10
# Python threads by the name prefix they are given, chDB's by the name ClickHouse gives its
# threads (/proc/self/task/<tid>/comm).
PYTHON_THREADS = ("state-writes", "state-checkpoint")
ENGINE_THREADS = ("MergeMutate", "BgSchPool")
# Pools start threads when work first comes, most of them in the pipeline's first second (and
# ClickHouse's retire idle ones): looked for at these intervals, then every RESCAN_SECONDS.
FIRST_SCANS = (0.25, 0.25, 0.5, 1.0)
RESCAN_SECONDS = 2.0


def background_threads() -> set[int]:
    """The native ids of this process's background threads now running."""
    found = {thread.native_id for thread in threading.enumerate()
             if thread.name.startswith(PYTHON_THREADS) and thread.native_id is not None}
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return found
    for task in tasks:
        try:
            name = Path(f"/proc/self/task/{task}/comm").read_text().strip()
        except OSError:  # the thread ended meanwhile
            continue
        if name.startswith(ENGINE_THREADS):
            found.add(int(task))
    return found


def lower_this_thread() -> None:
    """Sets the calling thread to nice BACKGROUND_NICE (Linux only)."""
    if sys.platform.startswith("linux"):
        _lower(0)


def catching_up(behind: bool, writer: EventWriter) -> bool:
    """The process set for catching up on a backlog or the snapshot (`behind`) or for streaming live: the
    collector's young generation (`memory.collector_catching_up`), and whether the writer's
    inserts run lowered. Returns `behind`."""
    writer.behind_started = lower_this_thread if behind else None
    return collector_catching_up(behind)


def lower_background_threads() -> int:
    """Sets every background thread to nice BACKGROUND_NICE (those already there or lower stay);
    returns how many were lowered now."""
    if not sys.platform.startswith("linux"):
        return 0  # elsewhere PRIO_PROCESS is the whole process
    return sum(_lower(thread_id) for thread_id in background_threads())


def _lower(thread_id: int) -> bool:
    """Sets the thread (0: the calling one) to nice BACKGROUND_NICE unless its nice value is
    that or higher already; whether it did."""
    try:
        if os.getpriority(os.PRIO_PROCESS, thread_id) >= BACKGROUND_NICE:
            return False
        os.setpriority(os.PRIO_PROCESS, thread_id, BACKGROUND_NICE)
    except OSError:  # the thread ended meanwhile
        return False
    return True


@contextlib.contextmanager
def background_threads_lowered() -> Iterator[None]:
    """Inside, a daemon thread calls `lower_background_threads` at once, after each of
    FIRST_SCANS and then every RESCAN_SECONDS."""
    stop = threading.Event()

    def loop() -> None:
        waits = iter(FIRST_SCANS)
        while True:
            lowered = lower_background_threads()
            if lowered:
                log.debug("background threads lowered", extra=fields(threads=lowered, nice=BACKGROUND_NICE))
            if stop.wait(next(waits, RESCAN_SECONDS)):
                return

    threading.Thread(target=loop, name="background-priority", daemon=True).start()
    try:
        yield
    finally:
        stop.set()
