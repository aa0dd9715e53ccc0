"""BatchedReads: concurrent reads run as batches; each caller gets its own read's result."""

from __future__ import annotations

import threading
import time

import pytest

from query.batched_reads import BatchedReads


class Recorder:
    """A batch runner that records its batches; the first batch blocks until released."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.release = threading.Event()
        self.started = threading.Event()
        self.fail_on = fail_on

    def __call__(self, batch):
        self.batches.append(list(batch))
        if len(self.batches) == 1:
            self.started.set()
            assert self.release.wait(10)
        if self.fail_on in batch:
            raise RuntimeError(f"cannot read {self.fail_on}")
        return [read.upper() for read in batch]


def ask(reads: BatchedReads, names: list[str]) -> tuple[list[threading.Thread], dict[str, object]]:
    """Each name read on a thread of its own, in order, each started once the previous waits."""
    results: dict[str, object] = {}

    def one(name: str) -> None:
        try:
            results[name] = reads.read(name)
        except RuntimeError as error:
            results[name] = error

    threads = []
    for name in names:
        callers = reads.callers
        thread = threading.Thread(target=one, args=(name,))
        thread.start()
        threads.append(thread)
        wait_until(lambda callers=callers, name=name: reads.callers > callers or name in results)
    return threads, results


def wait_until(condition) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_a_read_alone_runs_alone() -> None:
    runner = Recorder()
    runner.release.set()
    reads = BatchedReads(runner)
    assert reads.read("a") == "A"
    assert reads.read("b") == "B"
    assert runner.batches == [["a"], ["b"]]
    assert (reads.batches, reads.reads) == (2, 2)


def test_reads_waiting_for_a_slot_run_as_one_batch() -> None:
    runner = Recorder()
    reads = BatchedReads(runner, concurrency=1)
    first, results = ask(reads, ["a"])
    assert runner.started.wait(10)
    others, more = ask(reads, ["b", "c", "d", "c"])  # "c" twice: run once
    assert reads.waiting == 3
    runner.release.set()
    for thread in first + others:
        thread.join(10)
    assert results == {"a": "A"}
    assert more == {"b": "B", "c": "C", "d": "D"}
    assert runner.batches == [["a"], ["b", "c", "d"]]
    assert (reads.batches, reads.reads, reads.waiting) == (2, 4, 0)


def test_batches_hold_one_group_at_most_max_batch_and_no_conflicts() -> None:
    runner = Recorder()
    reads = BatchedReads(runner, concurrency=1, max_batch=3, group=lambda read: read[0],
                         conflict=lambda read: read[:2])
    first, _ = ask(reads, ["x0"])
    assert runner.started.wait(10)
    # groups by first letter; "a1-" and "a1+" conflict (same first two characters)
    others, results = ask(reads, ["a1-", "b1", "a1+", "a2", "a3", "a4", "b2"])
    runner.release.set()
    for thread in first + others:
        thread.join(10)
    assert results == {"a1-": "A1-", "b1": "B1", "a1+": "A1+", "a2": "A2", "a3": "A3", "a4": "A4", "b2": "B2"}
    assert runner.batches == [["x0"], ["a1-", "a2", "a3"], ["b1", "b2"], ["a1+", "a4"]]


def test_two_batches_run_at_once() -> None:
    both_running = threading.Barrier(2, timeout=10)

    def run(batch):
        both_running.wait()  # fails unless a second batch starts while the first runs
        return [read.upper() for read in batch]

    reads = BatchedReads(run, concurrency=2)
    threads, results = ask(reads, ["a", "b"])
    for thread in threads:
        thread.join(10)
    assert results == {"a": "A", "b": "B"}
    assert reads.batches == 2


def test_a_failed_batch_fails_its_readers_only() -> None:
    runner = Recorder(fail_on="c")
    reads = BatchedReads(runner, concurrency=1, max_batch=2)
    first, results = ask(reads, ["a"])
    assert runner.started.wait(10)
    others, more = ask(reads, ["b", "c", "d"])
    runner.release.set()
    for thread in first + others:
        thread.join(10)
    assert results == {"a": "A"}
    assert runner.batches == [["a"], ["b", "c"], ["d"]]
    assert more["d"] == "D"
    for name in ("b", "c"):
        assert isinstance(more[name], RuntimeError)
        assert str(more[name]) == "cannot read c"
    with pytest.raises(RuntimeError, match="cannot read c"):
        reads.read("c")


def test_reads_run_in_the_free_slot_while_a_slow_batch_holds_the_other() -> None:
    release = threading.Event()
    started = []

    def run(batch):
        started.append(list(batch))
        if batch == ["x"]:
            assert release.wait(10)  # holds one of the two slots
        return [read.upper() for read in batch]

    reads = BatchedReads(run, concurrency=2, group=lambda read: read[0])
    blocker, _ = ask(reads, ["x"])
    wait_until(lambda: started == [["x"]])
    # while "x" holds a slot, "a1" and "b1" run one after the other in the free one
    others, results = ask(reads, ["a1", "b1"])
    for thread in others:
        thread.join(10)
    assert results == {"a1": "A1", "b1": "B1"}
    release.set()
    blocker[0].join(10)
    assert started == [["x"], ["a1"], ["b1"]]
