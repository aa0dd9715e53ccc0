"""`voucher_activity.priorities`: the background threads, ours by name and chDB's by the names
ClickHouse gives them, are lowered to nice 10 and nothing else is (the store's inserts keep
theirs); in a fresh process, so that
the test session's own threads keep their priority."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

from query.store import Store
from query.writer import EventWriter
from voucher_activity.priorities import BACKGROUND_NICE, catching_up

PROBE = """
import json, os, tempfile, threading
from chdb import session
from voucher_activity.priorities import lower_background_threads

store = session.Session(tempfile.mkdtemp())
store.query("CREATE TABLE t (a UInt64) ENGINE = MergeTree ORDER BY a")
for part in range(5):
    store.query(f"INSERT INTO t SELECT number FROM numbers({part * 1000}, 1000)")
release = threading.Event()
threads = [threading.Thread(target=release.wait, name=name) for name in ("state-writes_0", "store-writer_0", "http")]
for thread in threads:
    thread.start()
def names():
    return {int(task): open(f"/proc/self/task/{task}/comm").read().strip() for task in os.listdir("/proc/self/task")}

# The engine's pool threads that exist now: one that a lowered merge thread starts later takes
# its creator's nice (as any new Linux thread does), which is not what the lowering did.
pool = [task for task, name in names().items() if name == "ThreadPool"]
first, again = lower_background_threads(), lower_background_threads()
nice, engine = {}, 0
for task, name in names().items():
    if name != "ThreadPool":
        nice.setdefault(name, set()).add(os.getpriority(os.PRIO_PROCESS, task))
    engine += name in ("MergeMutate", "BgSchPool")
for task in pool:
    try:
        nice.setdefault("ThreadPool", set()).add(os.getpriority(os.PRIO_PROCESS, task))
    except ProcessLookupError:  # ended meanwhile
        pass
nice.update({thread.name: {os.getpriority(os.PRIO_PROCESS, thread.native_id)} for thread in threads})
release.set()
print(json.dumps({"first": first, "again": again, "engine": engine, "main": os.getpriority(os.PRIO_PROCESS, 0),
                  "nice": {name: sorted(values) for name, values in nice.items()}}))
"""


def _at_nice_zero() -> None:
    """The probe starts at nice 0: a new process takes the nice of the thread that starts it, and
    in a full test session the main thread has been found lowered to 10 by then (seen in `.ci/run`,
    cause not found yet), which would make every thread of the probe start lowered."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    except PermissionError:  # raising a priority needs the privilege: the probe runs as it is
        pass


def test_background_threads_are_lowered_and_no_other():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=False,
                            preexec_fn=_at_nice_zero)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    nice = seen["nice"]
    assert nice["MergeMutate"] == [10] and nice["BgSchPool"] == [10]
    assert nice["state-writes_0"] == [10]
    assert nice["store-writer_0"] == [0] and nice["http"] == [0] and nice["ThreadPool"] == [0] and seen["main"] == 0
    # each lowered once: chDB's merge and schedule threads and the state's writes
    assert seen["engine"] >= 2 and seen["first"] == seen["engine"] + 1 and seen["again"] == 0


def _nice_on_a_thread(function) -> int:
    seen = []

    def run() -> None:
        function()
        seen.append(os.getpriority(os.PRIO_PROCESS, 0))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return seen[0]


def test_catching_up_the_inserts_thread_is_lowered_and_streaming_live_it_is_not(store: Store):
    writer = EventWriter(store)
    assert catching_up(True, writer) is True
    assert _nice_on_a_thread(writer.behind_started) == BACKGROUND_NICE
    assert catching_up(False, writer) is False
    assert writer.behind_started is None
