"""ClickHouse's own HTTP interface over the embedded store (SPEC §5, "SQL access to the embedded
store"). Only one process may open a chDB store, so the process that holds it (`run`, `demo`)
answers ClickHouse clients itself: clickhouse-connect, JDBC, Grafana, curl.

Every request gets an engine session of its own: a chDB connection handle on the engine the store
opened (chDB shares one engine per path between any number of handles; opening one takes ~0.3 ms),
given the per-query limits, then `readonly = 1`. From then on the engine itself refuses writes,
DDL, table functions and every change of a setting, whether sent as `SET`, as a `SETTINGS`
clause or as a URL parameter; the session is closed after the query, so nothing a client does
outlives its request. Three things the embedded engine allows under `readonly = 1` are refused
here, after the engine's own parser (`formatQuery`) has read the statement: more than one
statement, `INTO OUTFILE` (the local engine would write the file) and `KILL` (a read-only user
may stop its own queries, and here every query, the sidecar's inserts too, runs as one user).

Tenant tokens are refused: a tenant may read only its own rows, which needs the engine's row
policies, and the embedded engine has no writable access storage to hold one (`CREATE ROW
POLICY` is refused with ACCESS_DENIED; tests/query/test_sql_endpoint.py shows it).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import os
import re
import socket
import uuid
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import chdb
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from query.location import StoreLocation

ADMIN = "*"  # the tenant of an admin token (--tokens)


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """What one analyst's query may take, so that it cannot stall ingest or the API (README,
    "SQL endpoint"): the engine stops a query past these."""

    max_execution_time: int = 60  # seconds
    max_memory_usage: int = 2**30  # bytes of engine memory for the query
    max_result_bytes: int = 2**30  # the answer is held in memory before it is sent
    max_threads: int = 1  # of the machine's cores; the rest stay with ingest and the API
    concurrent_queries: int = 2  # more wait for one of these to finish

    def settings(self) -> dict[str, int]:
        return {
            "max_execution_time": self.max_execution_time, "max_memory_usage": self.max_memory_usage,
            "max_result_bytes": self.max_result_bytes, "max_threads": self.max_threads,
        }


# URL parameters the HTTP layer consumes itself, as a ClickHouse server does; every other one,
# but `param_*` (query parameters), is a setting for the engine to accept or refuse.
TRANSPORT_PARAMETERS = frozenset({
    "query", "database", "default_format", "query_id", "user", "password", "quota_key", "role",
    "session_id", "session_timeout", "session_check", "compress", "decompress", "buffer_size",
    "wait_end_of_query", "enable_http_compression", "http_zlib_compression_level",
    "send_progress_in_http_headers", "http_headers_progress_interval_ms", "client_protocol_version",
    "cancel_http_readonly_queries_on_client_close", "stacktrace", "add_http_cors_header",
})
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ERROR_CODE = re.compile(r"Code: (\d+)\.")

# ClickHouse's HTTP status for an exception code (its HTTPHandler); any other code is a 500.
_STATUS_OF_CODE = {
    194: 401, 516: 401,  # REQUIRED_PASSWORD, AUTHENTICATION_FAILED
    164: 403, 358: 403, 392: 403, 497: 403,  # READONLY, INTO_OUTFILE_NOT_ALLOWED, QUERY_IS_PROHIBITED, ACCESS_DENIED
    6: 400, 27: 400, 36: 400, 38: 400, 43: 400, 53: 400, 62: 400, 89: 400, 271: 400, 456: 400, 457: 400,
    16: 404, 46: 404, 47: 404, 50: 404, 60: 404, 73: 404, 81: 404, 115: 404,  # NO_SUCH_COLUMN, UNKNOWN_*
    48: 501,  # NOT_IMPLEMENTED
}


class ClickHouseException(Exception):
    """An error as ClickHouse answers it: `Code: N. DB::Exception: message. (NAME)`."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text[text.find("Code: "):].strip() if "Code: " in text else text.strip()
        match = _ERROR_CODE.match(self.text)
        self.code = int(match.group(1)) if match else 1000  # 1000: POCO_EXCEPTION, an unnamed one

    @classmethod
    def of(cls, code: int, name: str, message: str) -> ClickHouseException:
        return cls(f"Code: {code}. DB::Exception: {message}. ({name})")

    @property
    def status(self) -> int:
        return _STATUS_OF_CODE.get(self.code, 500)


# -- the request, parsed ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Credentials:
    user: str
    password: str


@dataclass(frozen=True, slots=True)
class SqlRequest:
    sql: str
    database: str
    default_format: str
    parameters: dict[str, str] = field(default_factory=dict)  # `{name:Type}` values, as sent
    settings: dict[str, str] = field(default_factory=dict)


def credentials_of(headers: Mapping[str, str], params: Mapping[str, str]) -> Credentials:
    """Basic auth, else `X-ClickHouse-User`/`X-ClickHouse-Key`, else `user`/`password`
    parameters, else ClickHouse's `default` user with no password."""
    authorization = headers.get("authorization", "")
    if authorization[:6].lower() == "basic ":
        try:
            user, _, password = base64.b64decode(authorization[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ClickHouseException.of(
                516, "AUTHENTICATION_FAILED", "Authentication failed: malformed Basic authorization header") from None
        return Credentials(user or "default", password)
    if "x-clickhouse-user" in headers or "x-clickhouse-key" in headers:
        return Credentials(headers.get("x-clickhouse-user") or "default", headers.get("x-clickhouse-key", ""))
    return Credentials(params.get("user") or "default", params.get("password", ""))


def authorize(credentials: Credentials, tokens: Mapping[str, str]) -> None:
    """`tokens` maps an API token to its tenant (`--tokens`). The admin token reads everything,
    whatever the user name; with no tokens configured the endpoint listens on loopback only
    and everyone who reaches it reads everything, like `voucher-activity sql` on the store."""
    if not tokens:
        return
    tenant = tokens.get(credentials.password)
    if tenant == ADMIN:
        return
    if tenant is not None and tenant == credentials.user:
        raise ClickHouseException.of(
            497, "ACCESS_DENIED",
            f"{credentials.user}: a tenant's token cannot read through this endpoint: the embedded engine "
            "cannot enforce the row policy that would keep it to its own tenant's rows; connect with "
            "the admin token (tenant *), or query a ClickHouse server store",
        )
    raise ClickHouseException.of(
        516, "AUTHENTICATION_FAILED",
        f"{credentials.user}: Authentication failed: password is incorrect, or there is no user with such name",
    )


def sql_request(params: Mapping[str, str], body: bytes, database: str) -> SqlRequest:
    """The query is the `query` parameter, the body, or both (the body follows on a new line)."""
    parts = [params["query"]] if "query" in params else []
    if body:
        try:
            parts.append(body.decode())
        except UnicodeDecodeError:
            raise ClickHouseException.of(36, "BAD_ARGUMENTS", "The query is not valid UTF-8") from None
    settings = {}
    for name, value in params.items():
        if name in TRANSPORT_PARAMETERS or name.startswith("param_"):
            continue
        if not _SETTING_NAME.fullmatch(name):
            raise ClickHouseException.of(115, "UNKNOWN_SETTING", f"Unknown setting '{name}'")
        settings[name] = value
    for flag in ("compress", "decompress"):
        if params.get(flag, "0") not in ("0", "false"):
            raise ClickHouseException.of(
                48, "NOT_IMPLEMENTED",
                f"{flag}=1 (ClickHouse's framed LZ4) is not supported by this endpoint; "
                "use HTTP compression (enable_http_compression=1 with Accept-Encoding: gzip) or compress=0",
            )
    return SqlRequest(
        sql="\n".join(parts),
        database=params.get("database") or database,
        default_format=params.get("default_format") or "TabSeparated",
        parameters={name.removeprefix("param_"): value for name, value in params.items() if name.startswith("param_")},
        settings=settings,
    )


# -- the engine ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Answer:
    body: bytes
    format: str
    summary: dict[str, str]


class SqlEngine:
    """Runs one request in a read-only session of its own on the embedded store's engine."""

    def __init__(self, location: StoreLocation, limits: QueryLimits = QueryLimits()) -> None:
        if location.path is None:
            raise ValueError("the SQL endpoint serves an embedded (chdb://) store only")
        # The spelling the store's clients use (clickhouse-connect resolves it): one engine per path.
        self.connection = os.path.realpath(location.path)
        self.database = location.database
        self.limits = limits
        with self.session() as session:
            self.timezone = session.query("SELECT timezone()", "TabSeparatedRaw").bytes().decode().strip()

    @contextmanager
    def session(self) -> Iterator[Any]:
        handle = chdb.connect(self.connection)
        try:
            for name, value in self.limits.settings().items():
                handle.query(f"SET {name} = {value}")
            handle.query("SET readonly = 1")  # last: from here on no setting can change
            yield handle
        finally:
            handle.close()

    def execute(self, request: SqlRequest) -> Answer:
        with self.session() as session:
            try:
                session.query("USE {database:Identifier}", params={"database": request.database})
                for name, value in request.settings.items():
                    session.query(f"SET {name} = {_string_literal(value)}")
                output_format = _checked_format(session, request.sql) or request.default_format
                result = session.query(request.sql, request.default_format, params=request.parameters)
            except RuntimeError as error:  # the engine's refusal or failure, in ClickHouse's words
                raise ClickHouseException(str(error)) from None
            return Answer(result.bytes(), output_format, {
                "read_rows": str(result.storage_rows_read()), "read_bytes": str(result.storage_bytes_read()),
                "written_rows": "0", "written_bytes": "0",
                "result_rows": str(result.rows_read()), "result_bytes": str(result.bytes_read()),
                "elapsed_ns": str(int(result.elapsed() * 1e9)),
            })


def _checked_format(session: Any, sql: str) -> str | None:
    """The statement's own FORMAT, if any, from the engine's canonical text of it (one clause a
    line, literals escaped), after refusing what the module docstring lists."""
    canonical = session.query(
        "SELECT formatQuery({sql:String})", "TabSeparatedRaw", params={"sql": _escaped(sql)}
    ).bytes().decode().splitlines()
    if canonical and canonical[0].startswith("KILL "):
        raise ClickHouseException.of(
            164, "READONLY", "KILL is not allowed through the SQL endpoint: its queries share one user "
            "with the sidecar's own")
    if any(line.startswith("INTO OUTFILE ") for line in canonical):
        raise ClickHouseException.of(358, "INTO_OUTFILE_NOT_ALLOWED", "INTO OUTFILE is not allowed")
    formats = [line.removeprefix("FORMAT ") for line in canonical if line.startswith("FORMAT ")]
    return formats[-1] if formats else None


def _escaped(text: str) -> str:
    """A query parameter's value in ClickHouse's escaped text form."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def _string_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# -- HTTP -----------------------------------------------------------------------------------------
def content_type(output_format: str) -> str:
    name = output_format.lower()
    if name.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if name.startswith("csv"):
        return "text/csv; charset=UTF-8; header=" + ("present" if "withnames" in name else "absent")
    if name.startswith("json") and "eachrow" not in name and "lines" not in name:
        return "application/json; charset=UTF-8"
    if name.startswith(("json", "ndjson")):
        return "application/x-ndjson; charset=UTF-8"
    if name.startswith(("pretty", "vertical", "markdown", "values", "template", "raw", "linea")):
        return "text/plain; charset=UTF-8"
    if name == "xml":
        return "application/xml; charset=UTF-8"
    return "application/octet-stream"


def compressed(body: bytes, params: Mapping[str, str], accept_encoding: str) -> tuple[bytes, str | None]:
    """gzip or deflate when the client asks both ways ClickHouse wants: `enable_http_compression=1`
    and Accept-Encoding."""
    if params.get("enable_http_compression", "0") not in ("1", "true"):
        return body, None
    accepted = {item.split(";")[0].strip() for item in accept_encoding.lower().split(",")}
    level = params.get("http_zlib_compression_level", "3")
    level = min(9, max(1, int(level))) if level.isdigit() else 3
    if "gzip" in accepted:
        return gzip.compress(body, level, mtime=0), "gzip"
    if "deflate" in accepted:
        return zlib.compress(body, level), "deflate"
    return body, None


def decoded_body(body: bytes, content_encoding: str) -> bytes:
    encoding = content_encoding.strip().lower()
    try:
        if encoding == "gzip":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
    except (OSError, zlib.error) as error:
        raise ClickHouseException.of(271, "CANNOT_DECOMPRESS", f"Cannot decompress the request body: {error}") from None
    if encoding not in ("", "identity"):
        raise ClickHouseException.of(89, "UNKNOWN_COMPRESSION_METHOD", f"Unknown Content-Encoding {encoding!r}")
    return body


def create_sql_app(engine: SqlEngine, tokens: Mapping[str, str]) -> Starlette:
    """The ASGI app; `tokens` maps an API token to its tenant, as `--tokens` gives them."""
    limiter = anyio.CapacityLimiter(engine.limits.concurrent_queries)
    display_name = socket.gethostname()

    def headers(query_id: str) -> dict[str, str]:
        return {"X-ClickHouse-Query-Id": query_id, "X-ClickHouse-Server-Display-Name": display_name,
                "X-ClickHouse-Timezone": engine.timezone}

    async def query(request: Request) -> Response:
        params = dict(request.query_params)
        query_id = params.get("query_id", "")
        if not (query_id.isascii() and query_id.isprintable()) or not query_id:  # it goes back in a header
            query_id = str(uuid.uuid4())
        try:
            body = decoded_body(await request.body(), request.headers.get("content-encoding", ""))
            if request.method == "GET" and "query" not in params and not body:
                return PlainTextResponse("Ok.\n", headers=headers(query_id))  # the health answer
            authorize(credentials_of(request.headers, params), tokens)
            statement = sql_request(params, body, engine.database)
            answer = await anyio.to_thread.run_sync(engine.execute, statement, limiter=limiter)
        except ClickHouseException as error:
            return PlainTextResponse(error.text + "\n", status_code=error.status, headers={
                **headers(query_id), "X-ClickHouse-Exception-Code": str(error.code)})
        content, encoding = compressed(answer.body, params, request.headers.get("accept-encoding", ""))
        response_headers = {**headers(query_id), "X-ClickHouse-Format": answer.format,
                            "X-ClickHouse-Summary": json.dumps(answer.summary)}
        if encoding:
            response_headers["Content-Encoding"] = encoding
        return Response(content, headers=response_headers, media_type=content_type(answer.format))

    async def ping(_request: Request) -> Response:
        return PlainTextResponse("Ok.\n")

    return Starlette(routes=[
        Route("/", query, methods=["GET", "POST"]),
        Route("/ping", ping, methods=["GET"]),
        Route("/replicas_status", ping, methods=["GET"]),  # no replicas: always in sync
    ])
