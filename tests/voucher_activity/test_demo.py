"""`voucher-activity demo` as a newcomer runs it: every line of its banner works when pasted (a
curl that returns a full page of a customer's history at once, a status curl with the admin
token, a dashboard link that signs in, the SQL command once stopped), Ctrl-C leaves no process
behind, and a second run continues with the same data."""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from demo.embedded_pg import free_port

CURL = re.compile(r"Try\s+(curl .+)$", re.MULTILINE)
STATUS = re.compile(r"Status\s+(curl .+)$", re.MULTILINE)
DASHBOARD = re.compile(r"Dashboard\s+(\S+)$", re.MULTILINE)
HISTORY = re.compile(r"\((\S+) has (\d+) events so far")
SQL = re.compile(r"SQL\s+(.+)$", re.MULTILINE)


def start_demo(data_dir: Path, port: int, log: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "voucher_activity.cli", "demo", "--data-dir", str(data_dir),
         "--listen", f"127.0.0.1:{port}", "--rate", "30", "--log-format", "json",
         "--sql-listen", f"127.0.0.1:{free_port()}", *extra],
        stdout=subprocess.DEVNULL, stderr=log.open("wb"), stdin=subprocess.DEVNULL,
    )


def printed_banner(log: Path, timeout: float = 90) -> str:
    """The banner, once the demo has printed it whole (its last line is the SQL hint)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "once the demo is stopped" in text or "while the demo runs" in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"the demo printed no banner:\n{log.read_text()[-2000:]}")


def curl_request(line: str) -> tuple[str, dict[str, str]]:
    """The URL and headers of a printed curl command line."""
    words = shlex.split(line)
    headers = dict(words[i + 1].split(": ", 1) for i, word in enumerate(words) if word == "-H")
    return words[-1], headers


def printed_curl(log: Path, timeout: float = 90) -> tuple[str, dict[str, str]]:
    """The URL and headers of the curl line the demo printed."""
    match = CURL.search(printed_banner(log, timeout))
    assert match, log.read_text()[-2000:]
    return curl_request(match.group(1))


def events_via_curl(url: str, headers: dict[str, str], timeout: float = 90) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, headers=headers, timeout=5)
            if response.status_code == 200 and response.json()["data"]:
                return response.json()["data"]
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} returned no events within {timeout}s")


def all_event_ids(url: str, headers: dict[str, str]) -> set[str]:
    ids: set[str] = set()
    params: dict[str, str | int] = {"limit": 100}
    while True:
        page = httpx.get(url, params=params, headers=headers, timeout=5).json()
        ids |= {event["id"] for event in page["data"]}
        if not page["has_more"]:
            return ids
        params["starting_after_id"] = page["more_starting_after"]


def processes_using(path: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(str(path) in part for part in process.info["cmdline"] or ()):
            found.append(process)
    return found


def stop_with_ctrl_c(demo: subprocess.Popen) -> int:
    demo.send_signal(signal.SIGINT)
    return demo.wait(timeout=60)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="va-demo-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_demo_serves_activity_stops_cleanly_and_resumes(tmp_path, data_dir):
    port = free_port()
    first_log = tmp_path / "first.log"
    demo = start_demo(data_dir, port, first_log)
    try:
        text = printed_banner(first_log)
        url, headers = printed_curl(first_log)
        assert url.startswith(f"http://127.0.0.1:{port}/v1/customers/")
        assert url.endswith("/activity?limit=5")
        assert headers["X-App-Id"] == "acme"
        # Pasted at once, the curl shows a full page of a customer with a history.
        customer, events = HISTORY.search(text).groups()
        assert int(events) >= 8 and url.rsplit("/", 2)[-2] == customer
        page = httpx.get(url, headers=headers, timeout=5).json()
        assert len(page["data"]) == 5 and page["has_more"] is True
        assert {"id", "type", "category", "data", "created_at", "group_id"} <= set(page["data"][0])
        events = page["data"]

        status_url, status_headers = curl_request(STATUS.search(text).group(1))
        status = httpx.get(status_url, headers=status_headers, timeout=10)
        assert status.status_code == 200, status.text
        assert status.json()["source"]["slot_exists"] is True
        assert [tenant["name"] for tenant in status.json()["store"]["tenants"]] == ["acme", "globex"]

        # The dashboard link carries the admin token in its fragment, never in the query string.
        link = DASHBOARD.search(text).group(1)
        path, _, fragment = link.partition("#")
        admin_token = status_headers["Authorization"].removeprefix("Bearer ")
        assert path == f"http://127.0.0.1:{port}/dashboard" and fragment == f"token={admin_token}&tenant=acme"
        assert httpx.get(path, timeout=5).status_code == 200
        assert oct((data_dir / "demo" / "tokens.json").stat().st_mode & 0o777) == "0o600"
        # While it runs, the printed SQL command reads the demo's store through its endpoint.
        running_sql = shlex.split(SQL.search(text).group(1))
        during = subprocess.run([sys.executable, "-m", "voucher_activity.cli", *running_sql[1:]],
                                capture_output=True, text=True, timeout=120)
        assert during.returncode == 0, during.stderr
        assert "customer.redemption.succeeded" in during.stdout
    finally:
        code = stop_with_ctrl_c(demo)
    assert code == 0, first_log.read_text()[-3000:]
    time.sleep(0.5)
    # Neither the sidecar nor its PostgreSQL is left (a root-run cluster's files are where its
    # data directory links to).
    assert processes_using(data_dir) == []
    assert processes_using((data_dir / "demo" / "postgres").resolve()) == []
    first_events = {event["id"] for event in events}

    # Once stopped, the printed SQL command reads the demo's store.
    sql = shlex.split(SQL.search(text).group(1))
    assert sql[:2] == ["voucher-activity", "sql"] and sql[2:4] == ["--data-dir", str(data_dir)]
    assert sql[4] == "--sql-listen"  # the test's demo listens on a port of its own
    done = subprocess.run([sys.executable, "-m", "voucher_activity.cli", *sql[1:]], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "customer.redemption.succeeded" in done.stdout

    second_log = tmp_path / "second.log"
    demo = start_demo(data_dir, port, second_log)
    try:
        again_url, again_headers = printed_curl(second_log)
        assert again_headers == headers  # the same tenant token as the first run
        events = events_via_curl(url, headers)
        customer = url.rsplit("/", 2)[-2]
        stored = all_event_ids(f"http://127.0.0.1:{port}/v1/customers/{customer}/activity", headers)
        assert first_events <= stored  # the first run's events are still there
    finally:
        code = stop_with_ctrl_c(demo)
    assert code == 0, second_log.read_text()[-3000:]
    time.sleep(0.5)
    assert processes_using(data_dir) == []
