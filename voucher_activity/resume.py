"""How a reader starts (SPEC §7): from its local reference state, what the store records for its
slot, and whether the slot exists. Pure: the pipeline asks, then acts."""

from __future__ import annotations

import enum

from query.status import ReaderPhase, ReaderProgress
from voucher_activity.config import SnapshotMode


class SlotLostError(RuntimeError):
    """The slot had to be created although we had already streamed from one: WAL is missing."""


class ReaderStateMissingError(RuntimeError):
    """The reader has no local state to continue from, and neither resuming nor a new snapshot
    would be correct: the slot is left untouched and the operator decides."""


class StartAction(enum.Enum):
    RESUME = "resume"  # the local state knows where it stands: stream from there
    FRESH = "fresh"  # nothing exists yet: create the slot (and take the snapshot, if asked)
    REDO_SNAPSHOT = "redo_snapshot"  # a recorded snapshot never finished: drop its slot, start fresh
    ADOPT = "adopt"  # --snapshot never: stream from an existing slot that nobody recorded


def start_action(
    applied_lsn: int | None, recorded: ReaderProgress | None, slot_exists: bool,
    snapshot: SnapshotMode, *, slot: str, data_dir: object, database: str,
) -> StartAction:
    """How a reader starts, from the local state's LSN, what the store records for the slot,
    and whether the slot exists. A slot is dropped only when the store records that its
    snapshot never finished (nothing was streamed from it); a history in the store is never
    overlaid with a new snapshot. Raises ReaderStateMissingError when no start is safe."""
    if applied_lsn is not None:
        return StartAction.RESUME  # a missing slot is then SlotLostError, found when preparing it
    if recorded is not None and recorded.phase is ReaderPhase.SNAPSHOT:
        return StartAction.REDO_SNAPSHOT
    if recorded is not None:
        raise ReaderStateMissingError(
            f"the reference state in {data_dir} is missing, but the store already holds the "
            f"history streamed from replication slot {slot!r}; resuming without it would get "
            "previous values wrong and a new snapshot would duplicate that history, so the slot is "
            "left untouched: restore the data directory (keep it on a persistent volume), or "
            "rebuild the history from scratch: run `voucher-activity teardown`, drop the store's "
            f"database {database}, remove {data_dir} and start again"
        )
    if not slot_exists:
        return StartAction.FRESH
    if snapshot is SnapshotMode.NEVER:
        return StartAction.ADOPT
    raise ReaderStateMissingError(
        f"replication slot {slot!r} already exists, but neither the data directory ({data_dir}) "
        "nor the store records that this reader created it, so it is left untouched: if another "
        "reader uses it, give this one its own --slot; if its history is gone, run "
        "`voucher-activity teardown` and start again (or start with --snapshot never to stream "
        "from the slot as it is, without a snapshot)"
    )
