"""Where a store lives, parsed from its URL once at the edge (no client libraries imported, so
the command line can check a URL before anything heavy loads)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlparse

from query.schema import check_identifier

DEFAULT_DATABASE = "voucher_activity"


class StoreUrlError(ValueError):
    """The store URL cannot be used; the message shows the accepted forms."""


@dataclass(frozen=True, slots=True)
class StoreLocation:
    """Where the store lives: `path` for embedded chDB, else an HTTP(S) server."""

    database: str
    path: str | None = None
    host: str | None = None
    port: int | None = None
    secure: bool = False
    username: str | None = None
    password: str = ""

    @property
    def embedded(self) -> bool:
        return self.path is not None


def redacted(url: str) -> str:
    """The URL with its password (if any) replaced by `***`, for messages and logs."""
    try:
        parsed = urlparse(url)
        if parsed.password is None:
            return url
    except ValueError:
        return url.split("@", 1)[-1] if "@" in url else url
    user = parsed.username or ""
    host = parsed.netloc.rpartition("@")[2]
    return parsed._replace(netloc=f"{user}:***@{host}").geturl()


def parse_store_url(url: str) -> StoreLocation:
    """`chdb:///path[?database=name]` or `http(s)://user:pass@host:8123/database`."""
    shown = redacted(url)
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    try:
        if parsed.scheme == "chdb":
            path = unquote(parsed.netloc + parsed.path)
            if not path:
                raise StoreUrlError(f"store URL {shown!r} has no path (e.g. chdb:///var/lib/va/clickhouse)")
            database = query.get("database", [DEFAULT_DATABASE])[0]
            return StoreLocation(database=check_identifier(database, "store database"), path=path)
        if parsed.scheme in ("http", "https"):
            if not parsed.hostname:
                raise StoreUrlError(f"store URL {shown!r} has no host (e.g. http://user:pass@host:8123/db)")
            database = unquote(parsed.path.strip("/")) or DEFAULT_DATABASE
            return StoreLocation(
                database=check_identifier(database, "store database"),
                host=parsed.hostname,
                port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
                secure=parsed.scheme == "https",
                username=unquote(parsed.username) if parsed.username else None,
                password=unquote(parsed.password) if parsed.password else "",
            )
    except ValueError as error:  # bad port, bad identifier
        raise StoreUrlError(f"store URL {shown!r}: {error}") from None
    raise StoreUrlError(
        f"store URL {shown!r} must start with chdb:// (embedded) or http(s):// (a ClickHouse server)"
    )
