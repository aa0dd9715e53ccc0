"""List Customer Activity (SPEC §6) without I/O: query-string items in, a validated
`ActivityQuery` out; stored rows in, the Voucherify list body out."""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from mappers.events import Category
from query.activity_sql import ActivityQuery, Order, iso_utc
from query.api.errors import InvalidParam
from query.api.event_types import CAMPAIGN_TYPES, EVENT_TYPES

if TYPE_CHECKING:
    from query.activity_reads import StoredEvent

MAX_LIMIT = 100
# Deeper than this, clients continue with starting_after_id: skipping costs a read per row.
MAX_PAGE = 1_000
MAX_TYPES = 100
MAX_TEXT = 255
# DateTime64(6) holds 1900-01-01 .. 2299-12-31; a bound outside that range selects the same rows
# as the range's edge, so it is clamped instead of sent to ClickHouse as an invalid value.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2299, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
# Canonical form only: the document promises `format: uuid`, and Python's parser would also
# take braces, URNs and undashed hex.
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Voucherify's parameters; `type` alone may be repeated.
KNOWN_TYPES = frozenset(EVENT_TYPES)
SINGLE_PARAMS = (
    "limit", "page", "order", "starting_after_id", "start_date", "end_date", "campaign_id",
    "campaign_type", "category",
)


def parse_activity_query(items: Iterable[tuple[str, str]]) -> ActivityQuery:
    """Validate the query string; unknown parameters are ignored, as Voucherify does."""
    single: dict[str, str] = {}
    types: list[str] = []
    type_values = 0
    for name, value in items:
        if name == "type":
            type_values += 1
            types.extend(_type_list(value))
        elif name in SINGLE_PARAMS:
            if name in single:
                raise InvalidParam(name, "given more than once")
            single[name] = value
    if type_values > MAX_TYPES:
        raise InvalidParam("type", f"at most {MAX_TYPES} values")
    for event_type in types:
        if event_type not in KNOWN_TYPES:
            raise InvalidParam("type", f"{event_type!r} is not an event type (the list: /openapi.json)")
    values: dict[str, Any] = {"types": tuple(dict.fromkeys(types))}
    parsers = {
        "limit": lambda text: _integer("limit", text, 1, MAX_LIMIT),
        "page": lambda text: _integer("page", text, 1, MAX_PAGE),
        "order": lambda text: _choice("order", text, Order),
        "starting_after_id": lambda text: _uuid("starting_after_id", text),
        "start_date": lambda text: _moment("start_date", text, end_of_day=False),
        "end_date": lambda text: _moment("end_date", text, end_of_day=True),
        "campaign_id": lambda text: _uuid("campaign_id", text),
        "campaign_type": lambda text: _one_of("campaign_type", text, CAMPAIGN_TYPES),
        "category": lambda text: _choice("category", text, Category),
    }
    for name, text in single.items():
        values[name] = parsers[name](text)
    start, end = values.get("start_date"), values.get("end_date")
    if start is not None and end is not None and start > end:
        raise InvalidParam("start_date", f"{iso_utc(start)} is after end_date {iso_utc(end)}")
    return ActivityQuery(**values)


def check_text(param: str, text: str) -> str:
    """Free text bound as a parameter: non-empty, bounded, no control characters."""
    if not text:
        raise InvalidParam(param, "must not be empty")
    if len(text) > MAX_TEXT:
        raise InvalidParam(param, f"longer than {MAX_TEXT} characters")
    if _has_control_characters(text):
        raise InvalidParam(param, "contains control characters")
    return text


def _has_control_characters(text: str) -> bool:
    return any(ord(character) < 32 or ord(character) == 127 for character in text)



def _type_list(value: str) -> list[str]:
    """One `type` value, possibly comma-separated; blanks between commas are ignored."""
    if len(value) > MAX_TEXT:
        raise InvalidParam("type", f"longer than {MAX_TEXT} characters")
    if _has_control_characters(value):
        raise InvalidParam("type", "contains control characters")
    return [item.strip() for item in value.split(",") if item.strip()]


def _integer(param: str, text: str, low: int, high: int) -> int:
    # isdecimal() also admits non-ASCII digits that int() would accept; be strict.
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise InvalidParam(param, f"must be an integer from {low} to {high}")
    number = int(text)
    if not low <= number <= high:
        raise InvalidParam(param, f"must be an integer from {low} to {high}")
    return number


def _choice(param: str, text: str, choices: type[enum.Enum]) -> Any:
    try:
        return choices(text)
    except ValueError:
        allowed = " or ".join(repr(choice.value) for choice in choices)
        raise InvalidParam(param, f"must be {allowed}") from None


def _one_of(param: str, text: str, allowed: Sequence[str]) -> str:
    if text not in allowed:
        raise InvalidParam(param, f"must be one of {', '.join(allowed)}")
    return text


def _uuid(param: str, text: str) -> uuid.UUID:
    if not _UUID.fullmatch(text):
        raise InvalidParam(param, "must be a UUID (8-4-4-4-12 hex digits)")
    return uuid.UUID(text)


def _moment(param: str, text: str, *, end_of_day: bool) -> datetime:
    """ISO 8601 date or date-time; naive values are UTC. A bare date as `end_date` means the
    whole day, so that both bounds stay inclusive."""
    try:
        rfc3339 = _RFC3339.fullmatch(text)
        if rfc3339 is not None:
            moment = _rfc3339_moment(rfc3339)
        elif (day := _date_or_none(text)) is not None:
            moment = datetime.combine(day, time.max if end_of_day else time.min, UTC)
        else:
            moment = _in_utc(datetime.fromisoformat(text))
    except ValueError:
        raise InvalidParam(param, "must be an ISO 8601 date or date-time, e.g. 2024-05-01T12:00:00Z") from None
    return min(max(moment, EARLIEST), LATEST)


def _in_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # an offset pushed a year-1 or year-9999 moment off the calendar
        return EARLIEST if moment.year == 1 else LATEST


def _date_or_none(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _rfc3339_moment(match: re.Match[str]) -> datetime:
    """RFC 3339 allows what Python's parser refuses (year 0, leap second 60, lower-case t/z,
    any number of fraction digits); none of them should turn a valid bound into an error."""
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction, offset = match[7] or "", match[8].upper()
    microsecond = int(fraction[:6].ljust(6, "0"))
    if second == 60:
        second, microsecond = 59, 999_999
    # Year 0 is a leap year like 2000, so the calendar check is the same; it is before any event.
    local = datetime(year or 2000, month, day, hour, minute, second, microsecond, tzinfo=UTC)
    if year == 0:
        return EARLIEST
    minutes = 0
    if offset != "Z":
        offset_hours, offset_minutes = int(offset[1:3]), int(offset[4:6])
        if offset_hours > 23 or offset_minutes > 59:
            raise ValueError("offset out of range")
        minutes = (offset_hours * 60 + offset_minutes) * (1 if offset[0] == "+" else -1)
    try:
        return local - timedelta(minutes=minutes)
    except OverflowError:
        return EARLIEST if minutes > 0 else LATEST


def list_body(events: Sequence[StoredEvent], limit: int) -> dict[str, Any]:
    """The Voucherify list; `events` holds up to limit + 1 rows, the extra one meaning more."""
    page = events[:limit]
    has_more = len(events) > limit
    return {
        "object": "list",
        "data_ref": "data",
        "data": [
            {
                "id": str(event.id),
                "type": event.type,
                "category": event.category,
                "data": orjson.loads(event.data),
                "created_at": iso_utc(event.created_at),
                "group_id": event.group_id,
            }
            for event in page
        ],
        "has_more": has_more,
        "more_starting_after": str(page[-1].id) if has_more else None,
    }
