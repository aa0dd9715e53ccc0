"""Settings (SPEC §2), parsed once at the edge into one typed value and passed down."""

from __future__ import annotations

import enum
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the flag and its variable."""


class SnapshotMode(enum.Enum):
    """`--snapshot` (SPEC §2): INITIAL turns the rows that exist when the slot is created into
    events before streaming; NEVER streams only."""

    INITIAL = "initial"
    NEVER = "never"


class LogFormat(enum.Enum):
    TEXT = "text"
    JSON = "json"


ADMIN_TENANT = "*"


@dataclass(frozen=True, slots=True)
class Settings:
    source_dsn: str | None
    store_url: str
    data_dir: Path
    listen_host: str
    listen_port: int
    slot: str
    publication: str
    snapshot: SnapshotMode
    tokens: Mapping[str, str] = field(default_factory=dict)  # token -> tenant name (or "*")
    log_format: LogFormat = LogFormat.TEXT
    state_cache: int = 0  # bytes for the reference state's working set (parse_size of --state-cache)
    cluster: str | None = None  # the ClickHouse cluster the store's tables live on (--cluster)
    # Where `run`/`demo` serve the embedded store's ClickHouse HTTP endpoint; None: off (--sql-listen)
    sql_listen: tuple[str, int] | None = None

    @property
    def state_levels(self) -> StateLevels:
        """How --state-cache is shared between the reference state's levels (`state_levels`)."""
        return state_levels(self.state_cache)

    def require_source(self) -> str:
        if not self.source_dsn:
            raise ConfigError("no source database: pass --source DSN or set VA_SOURCE_DSN")
        return self.source_dsn


# flag name -> (environment variable, default). The single list the CLI, docs and deploy
# files are checked against.
OPTIONS: dict[str, tuple[str, str | None]] = {
    "source": ("VA_SOURCE_DSN", None),
    "store": ("VA_STORE_URL", None),
    "data-dir": ("VA_DATA_DIR", "./voucher-activity-data"),
    "listen": ("VA_LISTEN", "127.0.0.1:8000"),
    "slot": ("VA_SLOT", "voucher_activity"),
    "publication": ("VA_PUBLICATION", "voucher_activity"),
    "snapshot": ("VA_SNAPSHOT", "initial"),
    "tokens": ("VA_API_TOKENS", None),
    "log-format": ("VA_LOG_FORMAT", None),
    # The full-scale snapshot benchmark's working set (450,000 customers and vouchers, 540,000
    # redemptions: 346 MiB encoded, 19.2 MiB per 25,000 customers measured, and their payload
    # objects) fits the encoded level's five eighths of 1 GiB and the memos' quarter (`state_levels`).
    "state-cache": ("VA_STATE_CACHE", "1GiB"),
    "cluster": ("VA_STORE_CLUSTER", None),
    "sql-listen": ("VA_SQL_LISTEN", "127.0.0.1:8123"),
}

# Smaller than this, the state's working set stops fitting even a small engine's hot rows.
MIN_STATE_CACHE = 16 * 2**20

# The reference state's working set lives within --state-cache (Settings.state_cache): an eighth
# of it holds the most recently used rows as dicts (~2 kB each), a quarter the mapper's memos of
# serialized payload objects (~0.34 kB a customer, each hit saving a lookup, a build and a
# serialization: ~4 us), the rest rows in their encoded form (~0.34 kB a customer with its
# bookkeeping, decoded in ~1 us), which spares a SQLite read (~60 us): byte for byte the most
# valuable level, so it takes the most. The default, 1 GiB, holds the full-scale snapshot's
# working set on every level (`./dev bench snapshot --scale full`: 450,000 customers and as many
# vouchers, 346 MiB encoded and ~300 MB of objects); against 512 MiB (an eighth of it for the memos)
# it takes a quarter off the pipeline thread's CPU in that snapshot (docs/benchmarks.md). See
# README "Memory".
DICT_ROW_BYTES = 2048
DICT_SHARE = 8
MEMO_SHARE = 4


class StateLevels(NamedTuple):
    rows: int  # rows kept as dicts
    packed_bytes: int  # bytes of rows kept encoded
    memo_bytes: int  # bytes of serialized payload objects (EventMapper's memos)


def state_levels(budget: int) -> StateLevels:
    """How a state cache of `budget` bytes is shared between its levels."""
    rows = budget // DICT_SHARE // DICT_ROW_BYTES
    memo_bytes = budget // MEMO_SHARE
    return StateLevels(rows, budget - rows * DICT_ROW_BYTES - memo_bytes, memo_bytes)


_SIZE = re.compile(r"\s*(\d+)\s*(|B|KB|KiB|MB|MiB|GB|GiB)\s*", re.IGNORECASE)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_UNITS = {"": 1, "b": 1, "kb": 1000, "kib": 2**10, "mb": 1000**2, "mib": 2**20, "gb": 1000**3, "gib": 2**30}


def parse_size(text: str, flag: str) -> int:
    """`512MiB`, `1GiB`, `300MB`, `268435456` -> bytes."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ConfigError(f"{flag}: {text!r} is not a size (e.g. 512MiB, 1GiB, 300MB)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def default_for(flag: str, environ: Mapping[str, str] = os.environ) -> str | None:
    variable, default = OPTIONS[flag]
    return environ.get(variable) or default


def parse_tokens(spec: str | None) -> dict[str, str]:
    """`tenant=token[,tenant=token...]` -> {token: tenant}."""
    tokens: dict[str, str] = {}
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        tenant, sep, token = item.partition("=")
        if not sep or not tenant.strip() or not token.strip():
            raise ConfigError(
                f"--tokens/VA_API_TOKENS: {item!r} is not tenant=token (e.g. acme=s3cret,*=admin-token)"
            )
        tokens[token.strip()] = tenant.strip()
    return tokens


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def parse_listen(text: str, flag: str = "listen") -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free port
        raise ConfigError(
            f"--{flag}/{OPTIONS[flag][0]}: {text!r} is not HOST:PORT (e.g. {OPTIONS[flag][1]})"
        )
    return host.strip("[]") or "127.0.0.1", int(port)


def parse_sql_listen(text: str, tokens: Mapping[str, str]) -> tuple[str, int] | None:
    """`HOST:PORT` or `off`. Without tokens anyone who reaches it reads every tenant, so it
    listens on loopback only, like the API."""
    if text.strip().lower() == "off":
        return None
    host, port = parse_listen(text, "sql-listen")
    if not tokens and host not in LOOPBACK_HOSTS:
        raise ConfigError(
            f"--sql-listen {host}:{port} is not loopback but no tokens are configured: "
            "set --tokens/VA_API_TOKENS (tenant=token,...), listen on 127.0.0.1 or pass --sql-listen off"
        )
    return host, port


def build_settings(values: Mapping[str, str | None]) -> Settings:
    """Settings from flag values (already merged with their environment variables)."""
    data_dir = Path(values.get("data-dir") or "./voucher-activity-data")
    try:
        snapshot = SnapshotMode(values.get("snapshot") or "initial")
    except ValueError:
        raise ConfigError("--snapshot/VA_SNAPSHOT must be 'initial' or 'never'") from None
    log_format_text = values.get("log-format") or ("text" if sys.stderr.isatty() else "json")
    try:
        log_format = LogFormat(log_format_text)
    except ValueError:
        raise ConfigError("--log-format/VA_LOG_FORMAT must be 'text' or 'json'") from None
    host, port = parse_listen(values.get("listen") or "127.0.0.1:8000")
    tokens = parse_tokens(values.get("tokens"))
    state_cache = parse_size(values.get("state-cache") or OPTIONS["state-cache"][1], "--state-cache/VA_STATE_CACHE")
    if state_cache < MIN_STATE_CACHE:
        raise ConfigError(f"--state-cache/VA_STATE_CACHE must be at least {MIN_STATE_CACHE // 2**20}MiB")
    if not tokens and host not in LOOPBACK_HOSTS:
        raise ConfigError(
            f"--listen {host}:{port} is not loopback but no API tokens are configured: "
            "set --tokens/VA_API_TOKENS (tenant=token,...) or listen on 127.0.0.1"
        )
    cluster = values.get("cluster") or None
    if cluster is not None and not _IDENTIFIER.fullmatch(cluster):
        raise ConfigError(f"--cluster/VA_STORE_CLUSTER: {cluster!r} is not a plain identifier (letters, digits, underscore)")
    return Settings(
        source_dsn=values.get("source"),
        store_url=values.get("store") or f"chdb://{(data_dir / 'clickhouse').resolve()}",
        data_dir=data_dir,
        listen_host=host,
        listen_port=port,
        slot=values.get("slot") or "voucher_activity",
        publication=values.get("publication") or "voucher_activity",
        snapshot=snapshot,
        tokens=tokens,
        log_format=log_format,
        state_cache=state_cache,
        cluster=cluster,
        sql_listen=parse_sql_listen(values.get("sql-listen") or OPTIONS["sql-listen"][1], tokens),
    )
