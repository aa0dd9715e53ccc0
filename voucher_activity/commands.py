"""The commands of SPEC §2, each taking the parsed arguments and the one `Settings` value.

`run` hosts the pipeline (in a thread) and the API (uvicorn, main thread) in one process, which
is how the embedded chDB store is used; `reader` and `serve` split them for a ClickHouse server.
SIGINT/SIGTERM: stop reading, flush, commit, confirm, exit 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import orjson
import psycopg
import uvicorn
from starlette.middleware.trustedhost import TrustedHostMiddleware

from cdc_reader.checks import SourceNotReadyError
from cdc_reader.slot import drop_publication, drop_slot
from mappers.state import STATE_FILE, StateFormatError
from query.activity_cache import ActivityCache
from query.api.app import create_app
from query.location import redacted
from query.metrics import Metrics
from query.sql_endpoint import SqlEngine, create_sql_app
from query.store import Store, StoreError
from voucher_activity import logs
from voucher_activity.config import (
    ADMIN_TENANT,
    OPTIONS,
    ConfigError,
    Settings,
    default_for,
)
from voucher_activity.logs import fields
from voucher_activity.memory import release_library_pages_periodically, tune_collector
from voucher_activity.pipeline import Pipeline
from voucher_activity.resume import ReaderStateMissingError, SlotLostError
from voucher_activity.sql_command import StoreNotFoundError, locate_store, run_sql
from voucher_activity.status import collect_status, render_table

log = logging.getLogger("voucher_activity")

# Refusals an operator must fix: reported in one sentence, exit status 1, no retry loop.
OPERATOR_ERRORS = (SourceNotReadyError, SlotLostError, ReaderStateMissingError, StateFormatError, ConfigError)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ours stops the pipeline first."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextmanager
def _stop_on_signals(stop: threading.Event, server: uvicorn.Server | None = None) -> Iterator[None]:
    def handle(signum, _frame) -> None:
        log.info("stopping", extra=fields(signal=signal.Signals(signum).name))
        stop.set()
        if server is not None:
            server.should_exit = True

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# Without tokens the API trusts the caller's tenant header and listens on loopback only; it also
# answers only requests addressed to a loopback name, so a web page the browser on this machine
# opens (DNS rebinding: its own host name resolving to 127.0.0.1) cannot read it.
LOOPBACK_NAMES = ["127.0.0.1", "localhost"]


def _server(app, settings: Settings) -> _Server:
    if not settings.tokens:
        app = TrustedHostMiddleware(app, allowed_hosts=LOOPBACK_NAMES)
    config = uvicorn.Config(
        app, host=settings.listen_host, port=settings.listen_port, log_config=None,
        access_log=False, lifespan="off",
    )
    return _Server(config)


def _sql_endpoint(store: Store, settings: Settings) -> tuple[_Server, socket.socket] | None:
    """ClickHouse's HTTP interface over the embedded store this process holds (SPEC §5), bound
    now so that a port already taken stops the start-up; None when off or the store is a server."""
    if settings.sql_listen is None or not store.location.embedded:
        return None
    host, port = settings.sql_listen
    listening = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
    except OSError as error:
        listening.close()
        raise ConfigError(
            f"--sql-listen/VA_SQL_LISTEN {host}:{port}: cannot listen there ({error.strerror}); "
            "choose another HOST:PORT, or pass --sql-listen off"
        ) from None
    app = create_sql_app(SqlEngine(store.location), settings.tokens)
    if not settings.tokens:
        app = TrustedHostMiddleware(app, allowed_hosts=LOOPBACK_NAMES)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
    return _Server(config), listening


def _pipeline_thread(pipeline: Pipeline, failure: list[BaseException]) -> threading.Thread:
    def target() -> None:
        try:
            pipeline.run()
        except BaseException as error:  # reported by the main thread
            failure.append(error)
            pipeline.stop.set()

    return threading.Thread(target=target, name="pipeline", daemon=True)


def _report(error: BaseException) -> int:
    if isinstance(error, OPERATOR_ERRORS):
        print(f"voucher-activity: {error}", file=sys.stderr)
        return 1
    raise error


def run(args: argparse.Namespace, settings: Settings, *, serve_api: bool = True) -> int:
    """Pipeline + API in one process (`run`); with serve_api=False the HTTP server still
    answers /healthz, /readyz, /metrics and /v1/status for probes (`reader`)."""
    logs.configure(settings.log_format)
    settings.require_source()
    stop = threading.Event()
    metrics = Metrics()
    # The API keeps pages that this process's writer invalidates; `serve` has no writer, no cache.
    cache = ActivityCache() if serve_api else None
    with Store.open(settings.store_url, cluster=settings.cluster, activity_cache=cache) as store:
        pipeline = Pipeline(settings, store, stop, metrics)
        app = create_app(
            store, tokens=settings.tokens, metrics=metrics, readiness=pipeline.readiness,
            status=lambda: collect_status(settings, store, pipeline.progress.lag_seconds()),
            activity=serve_api,
        )
        server = _server(app, settings)
        servers = [(server, threading.Thread(target=server.run, name="http", daemon=True))]
        sql_endpoint = _sql_endpoint(store, settings)
        if sql_endpoint is not None:
            sql_server, listening = sql_endpoint
            servers.append((sql_server, threading.Thread(
                target=sql_server.run, kwargs={"sockets": [listening]}, name="sql-http", daemon=True)))
        failure: list[BaseException] = []
        thread = _pipeline_thread(pipeline, failure)
        tune_collector()
        with _stop_on_signals(stop, server):
            thread.start()
            for _server_of, server_thread in servers:
                server_thread.start()
            log.info("listening", extra=fields(url=f"http://{settings.listen_host}:{settings.listen_port}"))
            if sql_endpoint is not None:
                host, port = listening.getsockname()[:2]
                log.info("sql endpoint listening", extra=fields(url=f"http://{host}:{port}"))
            release_library_pages_periodically(stop)
            while not stop.wait(0.2):
                if not all(server_thread.is_alive() for _server_of, server_thread in servers):
                    stop.set()
            for stopping, _thread in servers:
                stopping.should_exit = True
            thread.join()
            for _server_of, server_thread in servers:
                server_thread.join(timeout=10)
    if failure:
        return _report(failure[0])
    return 0


def reader(args: argparse.Namespace, settings: Settings) -> int:
    return run(args, settings, serve_api=False)


def serve(args: argparse.Namespace, settings: Settings) -> int:
    logs.configure(settings.log_format)
    with Store.open(settings.store_url, create_schema=False, cluster=settings.cluster) as store:
        status = (lambda: collect_status(settings, store)) if settings.source_dsn else None
        app = create_app(store, tokens=settings.tokens, metrics=Metrics(), status=status)
        server = _server(app, settings)
        stop = threading.Event()
        with _stop_on_signals(stop, server):
            release_library_pages_periodically(stop)
            server.run()
    return 0


def status(args: argparse.Namespace, settings: Settings) -> int:
    try:
        store = Store.open(settings.store_url, create_schema=False, cluster=settings.cluster)
    except StoreError as error:
        store = None
        store_error = str(error)
    else:
        store_error = None
    try:
        report = collect_status(settings, store)
    finally:
        if store is not None:
            store.close()
    if store_error:
        report["store"] = {"error": store_error}
    print(json.dumps(report, indent=2) if args.json else render_table(report))
    return 0 if "error" not in report["source"] else 1


def sql(args: argparse.Namespace, settings: Settings) -> int:
    store_url = settings.store_url
    if not (getattr(args, "store", None) or default_for("store")):
        try:
            store_url = locate_store(settings.data_dir)
        except StoreNotFoundError as error:
            print(f"voucher-activity sql: {error}", file=sys.stderr)
            return 1
    return run_sql(store_url, args.query, args.format, endpoint=_running_endpoint(settings, store_url))


def _running_endpoint(settings: Settings, store_url: str) -> str | None:
    """Where the process holding the embedded store at `store_url` answers SQL (SPEC §5): this
    configuration's --sql-listen, with its admin token, or the demo's when the store is the
    demo's."""
    if settings.sql_listen is None or not store_url.startswith("chdb://"):
        return None
    admin = next((token for token, tenant in settings.tokens.items() if tenant == ADMIN_TENANT), None)
    demo_tokens_file = Path(store_url.removeprefix("chdb://")).parent / "tokens.json"
    if admin is None and demo_tokens_file.is_file():
        admin = orjson.loads(demo_tokens_file.read_bytes()).get(ADMIN_TENANT)
    host, port = settings.sql_listen
    credentials = f"voucher-activity:{quote(admin, safe='')}@" if admin else ""
    return f"http://{credentials}{host}:{port}"


def teardown(args: argparse.Namespace, settings: Settings) -> int:
    """Drop the slot and (if we created it) the publication, then the local reference state,
    which described a stream that no longer exists."""
    with psycopg.connect(settings.require_source(), autocommit=True) as conn:
        slot_dropped = drop_slot(conn, settings.slot)
        publication_dropped = drop_publication(conn, settings.publication)
    path = settings.data_dir / STATE_FILE
    for leftover in (path, path.with_name(path.name + "-journal"), path.with_name(path.name + "-wal")):
        leftover.unlink(missing_ok=True)
    print(f"slot {settings.slot}: {'dropped' if slot_dropped else 'absent'}")
    print(f"publication {settings.publication}: {'dropped' if publication_dropped else 'absent or not created by voucher-activity, kept'}")
    return 0


def demo(args: argparse.Namespace, settings: Settings) -> int:
    """The sidecar (`run`) against the demo's embedded PostgreSQL and its traffic; the banner is
    printed once the API serves a customer with a history (see demo.environment)."""
    from demo.environment import (
        DEMO_TENANTS,
        banner,
        demo_root,
        demo_source,
        demo_tokens,
        richest_customer,
        sql_command,
    )

    logs.configure(settings.log_format)
    root = demo_root(settings.data_dir)
    if args.fresh and root.exists():
        shutil.rmtree(root)
    with demo_source(root, args.rate) as dsn:
        tokens = settings.tokens or {token: tenant for tenant, token in demo_tokens(root).items()}
        listen = None if settings.sql_listen is None else f"{settings.sql_listen[0]}:{settings.sql_listen[1]}"
        sql = sql_command(_program(), settings.data_dir, Path(default_for("data-dir")), redacted(settings.store_url),
                          None if listen in (None, OPTIONS["sql-listen"][1]) else listen)
        endpoint = None if listen is None else f"http://{listen}"
        settings = dataclasses.replace(
            settings,
            source_dsn=dsn,
            store_url=f"chdb://{root / 'clickhouse'}" if settings.store_url.startswith("chdb://") else settings.store_url,
            data_dir=root,
            tokens=tokens,
        )
        by_tenant = {tenant: token for token, tenant in tokens.items()}
        base = f"http://{settings.listen_host}:{settings.listen_port}"
        stop = threading.Event()

        def announce() -> None:
            tenant = DEMO_TENANTS[0]
            customer = richest_customer(base, tenant, by_tenant[tenant], stop) if tenant in by_tenant else None
            if not stop.is_set():
                print(banner(base, by_tenant, customer, sql, endpoint), file=sys.stderr, flush=True)

        threading.Thread(target=announce, name="banner", daemon=True).start()
        try:
            code = run(args, settings)
        finally:
            stop.set()
    log.info("demo stopped", extra=fields(data_dir=str(root)))
    return code


def _program() -> str:
    """How the user started this command (`.venv/bin/voucher-activity` under ./dev), for the
    command lines the demo prints."""
    launched = Path(sys.argv[0])
    if launched.name != "voucher-activity":
        return "voucher-activity"
    try:
        return str(launched.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(launched)


HANDLERS = {
    "demo": demo, "run": run, "reader": reader, "serve": serve, "status": status, "sql": sql,
    "teardown": teardown,
}
