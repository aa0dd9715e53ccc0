"""Change envelopes -> customer events: the declarative event catalog (`catalog.toml`), the
condition compiler, the reference state and the per-transaction mapper."""

from __future__ import annotations

from pathlib import Path

from mappers.catalog import Catalog, CatalogError, load_catalog
from mappers.payload import SourceIdentity
from mappers.plans import columns_read
from mappers.state import ReferenceState
from mappers.transaction import (
    EventMapper,
    Record,
    SnapshotOrderError,
    load_default_catalog,
)

__all__ = [
    "Catalog", "CatalogError", "EventMapper", "Record", "ReferenceState", "SnapshotOrderError",
    "SourceIdentity", "load_catalog", "load_default_catalog", "open_state", "tracked_columns", "tracked_tables",
]


def tracked_tables(catalog: Catalog | None = None) -> list[str]:
    """Every table the publication must include: the rule tables and the reference-state
    tables, in the order the initial snapshot must read them (references first)."""
    return list((catalog or load_default_catalog()).tables)


def tracked_columns(catalog: Catalog | None = None) -> dict[str, frozenset[str] | None]:
    """Per tracked table, the only columns the mapping reads (None: all of them): what the
    reader needs to load of its changes and snapshot rows (`mappers.plans.columns_read`)."""
    return columns_read(catalog or load_default_catalog())


def open_state(data_dir: Path, cache_size: int = 200_000, packed_bytes: int = 0) -> ReferenceState:
    """The reference state kept under the data dir."""
    return ReferenceState.open(data_dir, cache_size, packed_bytes)
