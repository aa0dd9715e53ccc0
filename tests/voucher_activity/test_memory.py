"""`voucher_activity.memory.release_library_pages` in a fresh process with chDB loaded: the library's
read-only pages leave the process's RSS, the pages it wrote (relocations) stay, and chDB keeps
answering correctly. The collector's settings for catching up and for streaming live."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

from voucher_activity.memory import collector_catching_up

RELEASE = """
import json, os, chdb
from voucher_activity.memory import release_library_pages

library = os.path.realpath(chdb._chdb.__file__)

def resident():
    # (clean read-only mappings' RSS, the library's other mappings' RSS), in bytes
    total = {"clean": 0, "other": 0}
    current = None
    for line in open("/proc/self/smaps"):
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5 and ":" not in fields[0]:
            current = fields[1] if fields[-1] == library else None
            rss = 0
        elif current is not None and fields[0] == "Rss:":
            rss = int(fields[1]) * 1024
        elif current is not None and fields[0] == "Anonymous:":
            clean = current in ("r-xp", "r--p") and int(fields[1]) == 0
            total["clean" if clean else "other"] += rss
    return total

chdb.query("SELECT 1")
before = resident()
released = release_library_pages()
after = resident()
answer = chdb.query("SELECT count(), uniqExact(number % 1000), sum(number) FROM numbers(1000000)", "CSV")
print(json.dumps({"before": before, "released": released, "after": after,
                  "answer": answer.bytes().decode().strip()}))
"""


def test_the_stores_library_pages_leave_the_resident_set_and_come_back_when_used():
    result = subprocess.run([sys.executable, "-c", RELEASE], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)
    before, after = measured["before"], measured["after"]
    assert before["clean"] > 50 * 2**20  # chDB's start-up maps well over 50 MB of its code
    # everything resident was released; chDB's own threads keep running and touch some pages
    # right back (up to ~5 MB seen on a loaded machine), a small share of what was released
    slack = 16 * 2**20
    assert before["clean"] - slack <= measured["released"] <= before["clean"] + slack
    assert after["clean"] < min(slack, before["clean"] // 4)
    assert after["other"] == before["other"]  # the relocated pages the process wrote stay
    assert measured["answer"] == "1000000,1000,499999500000"


def test_without_the_store_loaded_nothing_is_released():
    probe = "from voucher_activity.memory import release_library_pages; print(release_library_pages())"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["0"], result.stderr


def test_catching_up_raises_the_young_generations_threshold_and_streaming_live_lowers_it():
    previous = gc.get_threshold()
    try:
        assert collector_catching_up(True) is True
        assert gc.get_threshold() == (1_000_000, previous[1], previous[2])
        assert collector_catching_up(False) is False
        assert gc.get_threshold() == (100_000, previous[1], previous[2])
    finally:
        gc.set_threshold(*previous)
