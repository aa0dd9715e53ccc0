"""Prometheus metrics of one process: the API updates the request series, the pipeline and
the writer the reader and batch series. Each `Metrics` owns its registry (no global state), so
several apps in one process, as in the tests, never share counters."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 10, 100, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "va_http_requests", "HTTP requests by route template, method and status.",
            ["route", "method", "status"], registry=self.registry,
        )
        self.request_seconds = Histogram(
            "va_http_request_duration_seconds", "HTTP request latency by route template.",
            ["route"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.reader_lag_bytes = Gauge(
            "va_reader_lag_bytes", "Bytes of WAL between the server's end and the confirmed LSN.",
            registry=self.registry,
        )
        self.reader_lag_seconds = Gauge(
            "va_reader_lag_seconds", "Age of the oldest change not yet confirmed.", registry=self.registry,
        )
        self.retained_wal_bytes = Gauge(
            "va_retained_wal_bytes", "WAL the replication slot keeps on the source server.",
            registry=self.registry,
        )
        self.events_written = Counter(
            "va_events_written", "Customer events written to the store.", registry=self.registry,
        )
        self.batch_rows = Histogram(
            "va_store_batch_rows", "Rows (events and lookup rows) per store write.",
            buckets=BATCH_BUCKETS, registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "va_store_batch_duration_seconds", "Time to write one batch to the store.",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.request_seconds.labels(route).observe(seconds)

    def set_reader_lag(self, lag_bytes: int, lag_seconds: float) -> None:
        self.reader_lag_bytes.set(lag_bytes)
        self.reader_lag_seconds.set(lag_seconds)

    def set_retained_wal(self, retained_bytes: int) -> None:
        self.retained_wal_bytes.set(retained_bytes)

    def record_batch(self, rows: int, events: int, seconds: float) -> None:
        self.batch_rows.observe(rows)
        self.events_written.inc(events)
        self.batch_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
