"""The reference state's WAL checkpoints, copied on a thread of their own.

SQLite appends each commit's pages to the state file's write-ahead log and copies them into the
file at a checkpoint. Left to SQLite (`wal_autocheckpoint`), that copy runs inside the COMMIT
that crosses the threshold, on the pipeline's thread: 40 MB of pages and an fsync every few
seconds of a drain (a state commit of a full-scale ingest drain took ~180 ms with it, ~80 ms
without), and a snapshot's whole state at its end (1.7 s at full scale). Here a thread with a
connection of its own copies them (SQLite's C code, the interpreter's lock released) while the
pipeline maps on.

The log restarts from its beginning only at a write transaction that begins once everything in
it has been copied, and each commit adds to it while the thread copies. So after the thread
caught up, the next commit past the threshold copies the rest itself: what was committed since,
a commit's worth. `journal_size_limit` cuts the file back at each restart, so its size tells how
much it holds. Checkpoints are SQLite's own, safe at any moment: a crash mid-copy loses nothing.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class WalCheckpointer:
    """Checkpoints for `connection` (the state's, in WAL mode, on the file `path`), once its log
    holds `pages` pages: call `after_commit` after each commit."""

    def __init__(self, connection: sqlite3.Connection, path: Path, pages: int) -> None:
        self._connection = connection
        self._path = Path(path)
        self._wal = Path(f"{path}-wal")
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        self._threshold = pages * page_size  # bytes of log
        connection.execute("PRAGMA wal_autocheckpoint=0")  # never inside a COMMIT
        connection.execute(f"PRAGMA journal_size_limit={self._threshold // 8}")
        self._copy = threading.Event()  # set: the thread is to copy
        self._idle = threading.Event()  # set: the thread is not copying
        self._idle.set()
        self._caught_up = False  # the thread copied what the log held when last asked
        self._inline = False  # the thread could not open its connection: commits copy
        self._closing = False
        self._thread: threading.Thread | None = None  # started when first needed

    def after_commit(self) -> None:
        if not self._idle.is_set():
            return  # still copying: asked again after a later commit
        try:
            size = os.stat(self._wal).st_size
        except FileNotFoundError:
            return
        if size < self._threshold:
            self._caught_up = False  # the log restarted since
            return
        if self._caught_up or self._inline:
            self._caught_up = False
            self._checkpoint(self._connection)
            return
        self._idle.clear()
        self._copy.set()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="state-checkpoint", daemon=True)
            self._thread.start()

    def wait(self) -> None:
        """Until a copy under way is done."""
        self._idle.wait()

    def close(self) -> None:
        """Stop the thread (a copy under way finishes first)."""
        if self._thread is not None:
            self._closing = True
            self._copy.set()
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        try:
            connection = sqlite3.connect(self._path, isolation_level=None)
        except sqlite3.Error as error:
            log.warning("reference state checkpoints run in its commits: %s", error)
            self._inline = True
            self._idle.set()
            return
        try:
            while True:
                self._copy.wait()
                self._copy.clear()
                if self._closing:
                    return
                try:
                    self._caught_up = self._checkpoint(connection)
                finally:
                    self._idle.set()
        finally:
            connection.close()

    @staticmethod
    def _checkpoint(connection: sqlite3.Connection) -> bool:
        """A PASSIVE checkpoint; False when it failed (the log keeps everything: tried again
        after a later commit)."""
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as error:
            log.warning("reference state checkpoint failed: %s", error)
            return False
        return True
