"""What every side-by-side benchmark reports: one `Figure` per measured workload (ours, the
reference's, their ratio, the target), rendered as a Markdown table; and the command-line entry
point the benchmarks share (`--scale`, `--json-out`).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.bench.scale import SCALES, Scale


@dataclass(frozen=True, slots=True)
class Figure:
    """One row of the results table.

    `ratio` is "how many times better ours is" for the figure's direction: reference/ours when
    lower is better (latency, bytes), ours/reference when higher is better (throughput), so a
    ratio above 1 always favours us. `target` is the goal as text; `met` is None when the
    figure has no target.
    """

    benchmark: str
    workload: str
    unit: str
    ours: float
    reference: float | None
    reference_name: str
    higher_is_better: bool
    target: str = ""
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        if self.reference is None or not self.ours or not self.reference:
            return None
        return self.ours / self.reference if self.higher_is_better else self.reference / self.ours

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Figure:
        return cls(**data)


def well_formed(figure: Figure) -> bool:
    """Finite, non-negative numbers and named workload/unit: what the smoke test checks."""
    numbers = [figure.ours] + ([] if figure.reference is None else [figure.reference])
    return (bool(figure.benchmark and figure.workload and figure.unit)
            and all(isinstance(n, (int, float)) and math.isfinite(n) and n >= 0 for n in numbers))


def number(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def markdown_table(figures: Sequence[Figure]) -> str:
    lines = [
        "| benchmark | workload | ours | reference | ratio (>1 favours ours) | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for figure in figures:
        reference = ("" if figure.reference is None
                     else f"{number(figure.reference)} {figure.unit} ({figure.reference_name})")
        ratio = "" if figure.ratio is None else f"{figure.ratio:.2f}x"
        met = {None: "", True: "yes", False: "**no**"}[figure.met]
        lines.append(f"| {figure.benchmark} | {figure.workload} | {number(figure.ours)} {figure.unit} "
                     f"| {reference} | {ratio} | {figure.target} | {met} |")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A benchmark's figures, and notes in Markdown (workload details, profiles)."""

    figures: list[Figure]
    notes: str = ""

    def to_json(self) -> dict:
        return {"figures": [figure.to_json() for figure in self.figures], "notes": self.notes}

    @classmethod
    def from_json(cls, data: dict) -> Outcome:
        return cls([Figure.from_json(item) for item in data["figures"]], data["notes"])


Benchmark = Callable[[Scale, Path], Outcome]


def entry_point(name: str, description: str, benchmark: Benchmark) -> Callable[[list[str]], int]:
    """`main(argv)` for one benchmark: runs it at `--scale` in a scratch directory, prints the
    table and its notes, and with `--json-out` also writes the figures for `tests.bench all`."""

    def main(argv: list[str]) -> int:
        parser = argparse.ArgumentParser(prog=f"python -m tests.bench {name}", description=description,
                                         formatter_class=argparse.RawDescriptionHelpFormatter)
        parser.add_argument("--scale", choices=sorted(SCALES), default="small")
        parser.add_argument("--json-out", type=Path, help="also write the figures here as JSON")
        parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
        args = parser.parse_args(argv)
        workdir = Path(tempfile.mkdtemp(prefix=f"va-bench-{name}-"))
        try:
            outcome = benchmark(SCALES[args.scale], workdir)
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
        print(markdown_table(outcome.figures), flush=True)
        if outcome.notes:
            print("\n" + outcome.notes, flush=True)
        if args.json_out:
            args.json_out.write_text(json.dumps(outcome.to_json(), indent=1))
        return 0 if outcome.figures and all(well_formed(figure) for figure in outcome.figures) else 1

    return main


def log(message: str) -> None:
    """Progress on stderr, so stdout stays the table."""
    print(message, file=sys.stderr, flush=True)
