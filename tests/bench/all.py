"""Every side-by-side benchmark in one command: `python -m tests.bench all --scale small|full`.

Each benchmark runs in its own process (embedded chDB allows one store path per process, and a
fresh process keeps one benchmark's memory and threads out of the next one's figures). The
results table, the machine facts and each benchmark's notes go to stdout and to
tests/artifacts/bench-<scale>.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import psutil

from demo.embedded_pg import wheel_installation
from tests.bench.report import Outcome, markdown_table, well_formed
from tests.bench.scale import SCALES

REPO = Path(__file__).resolve().parents[2]
# name for `python -m tests.bench`, in the order of the issue (3-5 share one stored history)
SUITE = ("ingest", "freshness", "warehouse", "impact", "memory", "snapshot")


def machine_facts() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    postgres = subprocess.run([wheel_installation().tool("postgres"), "--version"], capture_output=True,
                              text=True).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "cdc_reader", "mappers", "query"],
                           capture_output=True, text=True, cwd=REPO).stdout.strip()
    if dirty:
        commit += " (plus uncommitted changes to the product code)"
    return {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "PostgreSQL": postgres,
        "chDB": f"chdb {version('chdb')} (engine chdb-core {version('chdb-core')}), clickhouse-connect {version('clickhouse-connect')}",
        "commit": commit or "unknown",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def run_one(name: str, scale: str, directory: Path) -> tuple[Outcome | None, float, str]:
    out = directory / f"{name}.json"
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "tests.bench", name, "--scale", scale, "--json-out", str(out)],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    seconds = time.monotonic() - started
    if result.returncode != 0 or not out.exists():
        return None, seconds, f"`{name}` failed (exit {result.returncode}); run it alone to see why."
    return Outcome.from_json(json.loads(out.read_text())), seconds, ""


def render(scale: str, facts: dict[str, str], outcomes: dict[str, Outcome], failures: list[str],
           seconds: dict[str, float]) -> str:
    figures = [figure for outcome in outcomes.values() for figure in outcome.figures]
    lines = [
        f"# voucher-activity benchmarks, scale `{scale}`",
        "",
        f"Command: `python -m tests.bench all --scale {scale}`",
        "",
        "| machine | |", "|---|---|",
        *(f"| {key} | {value} |" for key, value in facts.items()),
        "",
        markdown_table(figures),
        "",
        "Run times: " + ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items()) + ".",
        *(["", *failures] if failures else []),
    ]
    for outcome in outcomes.values():
        if outcome.notes:
            lines += ["", outcome.notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench all", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    parser.add_argument("--out", type=Path, help="Markdown report (default tests/artifacts/bench-<scale>.md)")
    parser.add_argument("--json-out", type=Path, help="also write every benchmark's figures as JSON")
    parser.add_argument("--only", nargs="+", choices=SUITE, default=list(SUITE))
    args = parser.parse_args(argv)
    out = args.out or REPO / "tests" / "artifacts" / f"bench-{args.scale}.md"
    outcomes: dict[str, Outcome] = {}
    failures, seconds = [], {}
    with tempfile.TemporaryDirectory(prefix="va-bench-all-") as directory:
        for name in args.only:
            print(f"== {name} ({args.scale})", file=sys.stderr, flush=True)
            outcome, seconds[name], failure = run_one(name, args.scale, Path(directory))
            if outcome is None:
                failures.append(failure)
            else:
                outcomes[name] = outcome
    report = render(args.scale, machine_facts(), outcomes, failures, seconds)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(report)
    if args.json_out:
        args.json_out.write_text(json.dumps({name: outcome.to_json() for name, outcome in outcomes.items()}))
    ok = not failures and all(well_formed(f) for outcome in outcomes.values() for f in outcome.figures)
    return 0 if ok else 1
