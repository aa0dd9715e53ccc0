"""The side-by-side benchmarks run end to end at a tiny scale and produce well-formed figures.

Only the shape is checked (every benchmark reported, finite non-negative numbers, a reference
where one exists): timings on shared machines are no test. The figures themselves come from
`python -m tests.bench all --scale full` (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.all import SUITE
from tests.bench.report import Outcome, well_formed

REPO = Path(__file__).resolve().parents[1]
EXPECTED = {
    "ingest": {"1. ingest"},
    "freshness": {"2. freshness"},
    "warehouse": {"3. API", "4. analytics", "5. storage"},
    "impact": {"6. impact"},
    "memory": {"7. memory"},
    "snapshot": {"8. snapshot"},
}


@pytest.mark.timeout(240)
def test_every_benchmark_reports_well_formed_figures(tmp_path: Path) -> None:
    report, figures_json = tmp_path / "bench.md", tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "tests.bench", "all", "--scale", "tiny", "--out", str(report),
         "--json-out", str(figures_json)],
        cwd=REPO, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcomes = {name: Outcome.from_json(data) for name, data in json.loads(figures_json.read_text()).items()}
    assert set(outcomes) == set(SUITE)
    for name, outcome in outcomes.items():
        assert {figure.benchmark for figure in outcome.figures} == EXPECTED[name]
        for figure in outcome.figures:
            assert well_formed(figure), figure
            if figure.reference is not None:
                assert figure.ratio is not None and figure.ratio > 0, figure
    text = report.read_text()
    assert "| CPU |" in text and "| PostgreSQL |" in text and "| chDB |" in text
    assert text.count("| 1. ingest |") == 1


def test_the_mapping_benchmark_makes_the_same_records_with_the_state_unpersisted() -> None:
    # `--no-persistence` bounds what persisting the reference state costs; it is only a bound if
    # the mapper makes exactly the same records without it (the digest covers every field)
    def run(*flags: str) -> list[str]:
        result = subprocess.run(
            [sys.executable, "-m", "tests.bench.mapping", "--transactions", "700", "--customers", "300",
             "--digest", *flags], cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout.splitlines()

    persisted, unpersisted = run("--floor"), run("--no-persistence")
    assert persisted[0].startswith("mapped 700 transactions, 3400 changes -> 1800 events in ")
    assert unpersisted[0].startswith("mapped 700 transactions, 3400 changes -> 1800 events in ")
    assert persisted[1] == unpersisted[1] == (
        "digest ddd97e43ae6276ca5baa143500156f03e9484431598f761e9c9b4b47d28d439b")
    assert persisted[2].startswith("floor: the bare operations for 3400 changes, 800 state rows and 1800 events ")


def test_the_snapshot_mapping_benchmark_maps_the_seeded_history_to_the_same_records() -> None:
    # the digest covers every field of every snapshot record: an optimization of the snapshot's
    # mapping must leave it as it is
    result = subprocess.run(
        [sys.executable, "-m", "tests.bench", "snapshot-mapping", "--customers", "200", "--rounds", "1", "--digest"],
        cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    mapped, records = result.stdout.splitlines()
    assert mapped.startswith("mapped 2,294 snapshot rows on one thread: ")
    assert records == "1,786 records, digest fd1edf5f4378e3aad282ca093fd91bcacddfe18b6ea41db33090c0532459f32e"


def test_the_page_benchmark_builds_its_history_once_and_times_every_store_call(tmp_path: Path) -> None:
    def run() -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "tests.bench", "page", "--scale", "tiny", "--store", str(tmp_path), "--pages", "20"],
            cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.startswith("5,000 events, 200 customers, 20 pages. API, one client in process")
        for call in ("resolve_tenant", "resolve_customer", "activity"):
            assert f"`Store.{call}` " in result.stdout
        return result

    assert "events stored and compacted" in run().stderr
    assert "history:" not in run().stderr  # the second run reads the same store
