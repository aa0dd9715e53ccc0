"""Reference state: what the mappers remember of earlier rows (tenant names, customers,
campaigns, vouchers, segments, redemptions, orders), kept from the change stream itself.

REPLICA IDENTITY DEFAULT sends no old row on UPDATE and only the key on DELETE, so previous
values (an order's status, a voucher's holder, a deleted customer's details) come from here,
each as of the LSN being mapped. It lives in SQLite under the data dir with a bounded LRU cache
in front, so it survives restarts without re-reading the source and stays bounded in memory.

Two cache levels: recently used rows as Python dicts (`cache_size` rows, ~2 kB each), and behind
them rows in their encoded form (`packed_bytes` in total, `mappers/encoded.py`; ~0.34 kB a customer with its
bookkeeping), so a miss of the first level is a decode (~1 us) instead of a SQLite read and a
decode. The encoded form is what a commit or an eviction writes to SQLite, or what a SQLite read
returned. Rows are encoded by `mappers/rowcodec.py`: typed MessagePack, or a pickle for the rare
row no layout fits.

Crash consistency: writes go into one open SQLite transaction that only `commit(lsn)` commits;
the pipeline calls it once the events up to `lsn` are durable in the store, and resumes after
`applied_lsn`. A crash in between rolls the state back to match what was stored. A huge source
transaction spills to SQLite's own pages, not to memory.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import OrderedDict
from concurrent.futures import Future
from pathlib import Path
from typing import Any
from uuid import UUID, SafeUUID

from mappers.encoded import EncodedRows
from mappers.entitywrite import disk_key, entity_parameters
from mappers.entitywrites import EntityWrites
from mappers.rowcodec import RowCodec
from mappers.schema import Schema, voucher_schema
from mappers.walcheckpoint import WalCheckpointer

log = logging.getLogger(__name__)

STATE_FILE = "mapper_state.sqlite3"
_ABSENT = None  # a cached negative lookup: the row is known not to exist
_MISSING = object()  # not in the cache at all
_PACKED_ABSENT = b""  # the packed form of _ABSENT

_SCHEMA = "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID"
# Rows live in a rowid table: new rows are appended and only the unique index on (kind, key)
# takes the random writes of the source's random version-4 UUID keys (~60 bytes an entry, so few
# pages for each commit to rewrite). A UUID key is stored as its 16 bytes (`disk_key`). The
# file's layout is recorded as `format` in `meta`; a file of another format is refused.
_FORMAT = 3
_ENTITY_TABLE = ("CREATE TABLE IF NOT EXISTS entity "
                 "(kind TEXT NOT NULL, key TEXT NOT NULL, row BLOB NOT NULL, UNIQUE (kind, key))")
# SQLite's page cache for the state file, in KiB (default 2 MB). It counts against the process's
# memory bound (README, "Memory"), so it stays modest: 16 to 64 MB measured the same on the
# mapping benchmark, 32 MB holds the unique index of ~500,000 rows.
_PAGE_CACHE_KIB = 32 * 1024
# WAL pages written before they are copied into the file (SQLite's default is 1,000: 4 MB), on a
# thread of their own (mappers/walcheckpoint.py). The keys are random, so each commit rewrites
# pages spread over the whole index; a checkpoint copies each page once however often the WAL
# holds it, so checkpointing every 40 MB instead of every 4 MB takes ~10% less CPU per written
# row (and fewer fsyncs), for up to 40 MB more disk.
_CHECKPOINT_PAGES = 10_000
# Rows `add`ed are encoded and written this many at a time, while their objects are still in the
# CPU's caches (a 1M-change drain's 432,000: 1.59 s of the pipeline thread; 2,000 at a time 2.04).
ADD_BATCH = 250


_new_object = object.__new__
_set_slot = object.__setattr__
_SAFE_UNKNOWN = SafeUUID.unknown


def uuid_from_int(value: int) -> UUID:
    """UUID(int=value) without its argument checks (the caller's value fits 128 bits: it came
    from a UUID, or is an event id's hash). State rows pickled by mappers/rowcodec.py may name
    it: keep its name."""
    made = _new_object(UUID)
    _set_slot(made, "int", value)
    _set_slot(made, "is_safe", _SAFE_UNKNOWN)
    return made


def normal_key(key: Any) -> Any:
    """A row key as the state keeps it: text that spells a UUID (as PostgreSQL's uuid input
    reads it) is that UUID, so a row put under a uuid value is found by its text and the other
    way round; other keys stay as they are. (The schema's keys are uuids: only a reference
    through a text column holding ids meets text here.)"""
    if type(key) is str:
        try:
            return UUID(key)
        except ValueError:
            return key
    return key


def _keyed(table: str, key: Any) -> tuple[Any, tuple[str, Any]]:
    """A key that is not a UUID object: as `normal_key` gives it, and its cache key (a UUID by
    its int: hashing that is C, UUID.__hash__ is Python)."""
    key = normal_key(key)
    return key, (table, key.int if type(key) is UUID else key)


class StateFormatError(RuntimeError):
    """The state file was written in a layout this version does not read."""


def _prepare_entity_table(connection: sqlite3.Connection, path: Path) -> None:
    """Create the `entity` table of a new file and record its format; refuse another format."""
    with connection:  # commits, or rolls back on an error
        connection.execute("BEGIN IMMEDIATE")
        found = connection.execute("SELECT value FROM meta WHERE name = 'format'").fetchone()
        has_rows = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'entity'").fetchone()
        if found is None and has_rows is None:
            connection.execute(_ENTITY_TABLE)
            connection.execute("INSERT INTO meta (name, value) VALUES ('format', ?)", (_FORMAT,))
        elif found is None or int(found[0]) != _FORMAT:
            raise StateFormatError(
                f"the reference state {path} has format {found[0] if found else 1}, not {_FORMAT}; "
                "rebuild it (README, \"Rebuilding\")"
            )


class ReferenceState:
    """Rows by (table, key). `get` sees every `put`/`delete` since the last commit."""

    def __init__(self, path: Path, cache_size: int = 200_000, packed_bytes: int = 0,
                 schema: Schema | None = None) -> None:
        self.path = Path(path)
        self.cache_size = cache_size
        self.packed_bytes = packed_bytes
        connection = self._connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        # Losing the last commit on power loss only means re-mapping from an older LSN, which
        # yields identical events; so the state need not wait for fsync.
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute(f"PRAGMA cache_size=-{_PAGE_CACHE_KIB}")
        self.checkpoints = WalCheckpointer(connection, self.path, _CHECKPOINT_PAGES)
        self._writes = EntityWrites(connection)  # the rows' upserts, on a thread of their own
        connection.executescript(_SCHEMA)
        _prepare_entity_table(connection, self.path)
        # `schema`: the column types rows are written by (mappers/rowcodec.py); the voucher
        # engine's unless told otherwise
        self._codec = RowCodec(connection,
                               {name: table.columns for name, table in (schema or voucher_schema()).tables.items()})
        self._cache: OrderedDict[tuple[str, Any], dict[str, Any] | None] = OrderedDict()
        # second level: committed or written rows, encoded (bytes; _PACKED_ABSENT for none)
        self._packed = EncodedRows(packed_bytes)
        self._dirty: dict[tuple[str, Any], Any] = {}  # cache key -> the key as given
        # `add`: cache key -> (table, key, row, whether its encoding is kept), as `_write` takes them
        self._added: dict[tuple[str, Any], tuple[str, Any, Any, bool]] = {}
        self._memos: dict[str, list[dict[Any, Any]]] = {}  # table -> its row_memo dicts
        self._in_transaction = False
        self.rows_written = 0  # rows written to SQLite since opened (upserts and deletes)
        row = connection.execute("SELECT value FROM meta WHERE name = 'applied_lsn'").fetchone()
        self._applied_lsn: int | None = int(row[0]) if row else None

    @classmethod
    def open(cls, data_dir: Path, cache_size: int = 200_000, packed_bytes: int = 0,
             schema: Schema | None = None) -> ReferenceState:
        """The state file in `data_dir` (created on first use)."""
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        return cls(Path(data_dir) / STATE_FILE, cache_size, packed_bytes, schema)

    @property
    def connection(self) -> sqlite3.Connection:
        """The state file's connection, once the rows written so far are in it (its open
        transaction also holds the mapper's scratch and the snapshot's pairing)."""
        self._writes.wait()
        return self._connection

    @property
    def applied_lsn(self) -> int | None:
        """The LSN up to which the state reflects the source (None: nothing committed yet)."""
        return self._applied_lsn

    # -- rows ----------------------------------------------------------------------------------
    def get(self, table: str, key: Any) -> dict[str, Any] | None:
        """The row of `table` keyed `key` (a uuid.UUID or text; see `normal_key`, `disk_key`)."""
        # A UUID is cached under its int: hashing that is C, UUID.__hash__ is Python.
        if type(key) is UUID:
            cache_key = (table, key.int)
        else:
            key, cache_key = _keyed(table, key)
        cache = self._cache
        row = cache.get(cache_key, _MISSING)
        if row is not _MISSING:
            cache.move_to_end(cache_key)
            return row
        added = self._added.get(cache_key)
        if added is not None:
            return added[2]
        row = self._read(table, key)
        self._remember(cache_key, row)
        return row

    def peek(self, table: str, key: Any) -> dict[str, Any] | None:
        """`get` for a caller that keeps what it derives from the row (the mapper's memos of
        payload objects): a row read from the second level or SQLite is not made one of the
        first level's, where it would only push out rows that rules read again."""
        if type(key) is UUID:
            cache_key = (table, key.int)
        else:
            key, cache_key = _keyed(table, key)
        row = self._cache.get(cache_key, _MISSING)
        if row is not _MISSING:
            return row
        added = self._added.get(cache_key)
        return added[2] if added is not None else self._read(table, key)

    def _read(self, table: str, key: Any) -> dict[str, Any] | None:
        """The row from the second level, else from SQLite (its encoding then kept there)."""
        packed_key = self._packed.key(table, key)
        blob = self._packed.get(packed_key)
        if blob is None:
            # Inside the open transaction: a read outside one opens and ends its own (~3 us more).
            self.begin()
            found = self.connection.execute(
                "SELECT row FROM entity WHERE kind = ? AND key = ?", (table, disk_key(key))).fetchone()
            blob = found[0] if found else _PACKED_ABSENT
            self._packed.store(((packed_key, blob),))
        return self._codec.decode(blob) if blob else _ABSENT

    def warm(self) -> int:
        """Fill the encoded level with the newest rows on disk, up to its budget; returns how
        many. A sequential scan costs ~1 us a row, where the first `get` of each row after a
        restart would be a random SQLite read of ~64 us. Only UUID-keyed rows (the engine's
        keys) are loaded; others are read on demand."""
        if not self.packed_bytes:
            return 0
        packed = self._packed
        rows = self.connection.execute("SELECT kind, key, row FROM entity ORDER BY rowid DESC")
        loaded = packed.store_oldest_rows(rows)
        rows.close()
        return loaded

    def put(self, table: str, key: Any, row: dict[str, Any]) -> None:
        if type(key) is UUID:
            memo_key = key.int
        else:
            key = normal_key(key)
            memo_key = key.int if type(key) is UUID else key
        cache_key = (table, memo_key)
        self._dirty[cache_key] = key
        if self._added:
            self._added.pop(cache_key, None)  # replaced before it was written
        self._forget(table, key, memo_key)
        self._remember(cache_key, row)

    def _forget(self, table: str, key: Any, memo_key: Any) -> None:
        """Drop what derives from a row about to change: memo entries, its stale encoding."""
        memos = self._memos.get(table)
        if memos is not None:
            for memo in memos:
                memo.pop(memo_key, None)
        self._packed.discard_row(table, key)

    def delete(self, table: str, key: Any) -> None:
        self.put(table, key, _ABSENT)  # type: ignore[arg-type]

    def add(self, table: str, key: Any, row: dict[str, Any], keep: bool = True) -> None:
        """`put` of a row that later rows read, if at all, long after (an initial snapshot's):
        it skips the first level, where it would only push out the rows lookups use, and is
        encoded and written with the next ADD_BATCH added rows (or `write_changes`); without
        `keep` (no later row reads it) its encoding is not kept in the second level either."""
        if type(key) is not UUID:
            key = normal_key(key)
        memo_key = key.int if type(key) is UUID else key
        cache_key = (table, memo_key)
        if cache_key in self._cache:  # known already (e.g. as absent): replaced there
            self.put(table, key, row)
            return
        self._forget(table, key, memo_key)
        added = self._added
        added[cache_key] = (table, key, row, keep)
        if len(added) >= ADD_BATCH:
            self._write_added()

    def _write_added(self) -> None:
        self._write(self._added.values())
        self._added.clear()

    def row_memo(self, table: str) -> dict[Any, Any]:
        """A dict for values derived from rows of `table` (e.g. a payload object, serialized),
        keyed as the cache keys rows (a UUID key by its int, other keys as they are). The state
        drops a key's entry when that row is put or deleted, and every entry on rollback, so an
        entry always derives from the row `get` returns now; its owner bounds its size."""
        memo: dict[Any, Any] = {}
        self._memos.setdefault(table, []).append(memo)
        return memo

    def _remember(self, cache_key: tuple[str, Any], row: dict[str, Any] | None) -> None:
        cache = self._cache
        cache[cache_key] = row
        cache.move_to_end(cache_key)
        if len(cache) > self.cache_size:
            self._evict()

    def _evict(self) -> None:
        """Down to 90% of the cache size, the changed rows among the evicted written in one go."""
        cache, dirty = self._cache, self._dirty
        written = []
        popitem, undirty, append = cache.popitem, dirty.pop, written.append
        for _ in range(len(cache) - (self.cache_size - self.cache_size // 10)):
            evicted_key, evicted = popitem(False)
            key = undirty(evicted_key, _MISSING)
            if key is not _MISSING:
                append((evicted_key[0], key, evicted, True))
        if written:
            self._write(written)

    def _write(self, entries: Any) -> None:
        """Writes (table, key, row, keep) entries into the open SQLite transaction (on the
        writes' thread: mappers/entitywrites.py), keeping the encodings of those with `keep` in
        the second level. (The loop runs for every row a commit, an eviction or a batch of
        `add`s writes.)"""
        self.begin()
        (layouts, encode), packed = self._codec.fast_path(), self._packed
        spans, data, upserts, deletes, kept = entity_parameters(
            entries, layouts, encode, self._codec.encode, packed.key, packed.bases, bool(self.packed_bytes), _PACKED_ABSENT)
        if kept:
            packed.store(kept)
        self.rows_written += len(spans) + len(upserts) + len(deletes)
        self._writes.submit(spans, data, upserts, deletes)

    # -- transaction ---------------------------------------------------------------------------
    def begin(self) -> None:
        """Open the SQLite transaction that the next `commit` makes durable (idempotent)."""
        if not self._in_transaction:
            self.connection.execute("BEGIN")
            self._in_transaction = True

    def write_changes(self) -> None:
        """Write the rows changed since the last commit into the open SQLite transaction, where
        the next `commit` makes them durable (a rollback forgets them). The pipeline does this
        while its last batch of events is being inserted, so the two overlap."""
        if self._added:
            self._write_added()
        if self._dirty:
            cache = self._cache
            self._write([(cache_key[0], key, cache[cache_key], True) for cache_key, key in self._dirty.items()])
            self._dirty.clear()

    def commit(self, lsn: int) -> None:
        """Make every change so far durable, as the state at `lsn`."""
        self.write_changes()
        self.begin()
        self._writes.wait()
        self._commit_at(lsn)
        self._in_transaction = False

    def commit_when_stored(self, lsn: int, stored: Future[Any]) -> Future[Any]:
        """`commit(lsn)` without waiting: queued behind the writes of every change so far, it
        commits once `stored` resolves (the events up to `lsn` are in the store; its error
        commits nothing and is raised by the state's next write or commit), and the rows changed
        after it queue behind it. Its future; `applied_lsn` is `lsn` once it is done."""
        self.write_changes()
        self.begin()
        return self._writes.call(self._commit_stored, lsn, stored)

    def _commit_stored(self, lsn: int, stored: Future[Any]) -> None:
        stored.result()
        self._commit_at(lsn)
        self._connection.execute("BEGIN")  # the state stays in a transaction, as before the job

    def _commit_at(self, lsn: int) -> None:
        connection = self._connection
        connection.execute("INSERT INTO meta (name, value) VALUES ('applied_lsn', ?) "
                           "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (lsn,))
        connection.execute("COMMIT")
        self._applied_lsn = lsn
        self.checkpoints.after_commit()

    def rollback(self) -> None:
        """Forget everything since the last commit."""
        try:
            self._writes.wait()
        except Exception as error:  # what it wrote is rolled back with the rest
            log.warning("reference state write failed before a rollback: %s", error)
        self._writes.reset()
        if self._in_transaction:
            if self._connection.in_transaction:
                self._connection.execute("ROLLBACK")
            self._in_transaction = False
            self._codec.reload()  # row layouts added since the last commit are gone
        self._cache.clear()
        self._dirty.clear()
        self._added.clear()
        self._packed.clear()  # it may hold rows written since the last commit
        for memos in self._memos.values():
            for memo in memos:
                memo.clear()

    def close(self) -> None:
        """Close; uncommitted changes are rolled back."""
        self.rollback()
        self._writes.close()
        self.checkpoints.close()
        self._connection.close()
