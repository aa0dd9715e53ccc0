"""Where the pipeline's time goes: a cProfile of the pipeline thread summarized by module and by
stage (receive, decode, map, serialize, write). Built-in and standard-library functions have no
stage of their own; their time is charged to the modules that called them, in proportion to
the calls' measured time (e.g. `orjson.dumps` counts as serialize when mappers/payload.py calls it).
The compiled modules (cdc_reader/*.pyx, query/rowbinary.pyx) are invisible to cProfile: their
time is their Python caller's, so the replication session's `read` holds the receive loop, the
decoding and the assembling (`ChangeAssembler.feed_copy_data`), and the writer's batching holds
the RowBinary encoding.
"""

from __future__ import annotations

import pstats
from collections import defaultdict
from collections.abc import Mapping

# module path fragment -> stage; the first match wins
STAGES: tuple[tuple[str, str], ...] = (
    ("cdc_reader/pgoutput", "decode"),
    ("cdc_reader/assembler", "decode"),
    ("cdc_reader/loaders", "decode"),
    ("cdc_reader/changes.py", "decode"),
    ("cdc_reader/snapshot.py", "snapshot read (waiting for the reader threads)"),
    ("cdc_reader/replication.py", "receive, decode, assemble (compiled loop)"),
    ("cdc_reader/walstream.py", "receive"),
    ("psycopg/", "receive"),
    ("mappers/payload.py", "serialize"),
    ("mappers/sqltypes.py", "serialize"),
    ("mappers/state.py", "map: reference state (SQLite)"),
    ("mappers/references.py", "map: reference state (SQLite)"),
    ("mappers/", "map"),
    ("query/writer.py", "write: batching and RowBinary encoding"),
    ("clickhouse_connect/", "write: insert (clickhouse-connect + chDB)"),
    ("chdb/", "write: insert (clickhouse-connect + chDB)"),
    ("voucher_activity/pipeline.py", "pipeline loop"),
)
OWN_CODE = ("cdc_reader/", "mappers/", "query/", "psycopg/", "clickhouse_connect/", "chdb/", "tenacity/")


WAITING = "(waiting for WAL in select)"


def module_of(filename: str, name: str = "") -> str | None:
    """A short module name for our code and the libraries we attribute, else None."""
    if "epoll" in name or "select.poll" in name or filename.endswith("selectors.py"):
        return WAITING  # idle time, not work: the server had nothing more to send yet
    if "cdc_reader.pgoutput." in name:
        return "cdc_reader/pgoutput (compiled)"  # the Cython decoder's methods have no file
    for marker in OWN_CODE:
        index = filename.find(marker)
        if index >= 0:
            name = filename[index:]
            # Libraries are summarized as a whole; our own modules one by one.
            return marker.rstrip("/") if marker in ("psycopg/", "clickhouse_connect/", "chdb/", "tenacity/") else name
    return None


def stage_of(module: str) -> str:
    if module == WAITING:
        return "idle (waiting for WAL)"
    for fragment, stage in STAGES:
        if module.startswith(fragment) or module == fragment.rstrip("/"):
            return stage
    return "other"


def time_by_module(stats: pstats.Stats) -> dict[str, float]:
    """Own time per module, with unattributed functions' time charged to their callers."""
    raw: Mapping = stats.stats  # type: ignore[attr-defined]
    shares_cache: dict[tuple, dict[str, float]] = {}

    def shares(function: tuple, depth: int = 0) -> dict[str, float]:
        """How `function`'s own time splits over attributable modules (fractions summing to 1)."""
        if function in shares_cache:
            return shares_cache[function]
        module = module_of(function[0], function[2])
        if module is not None:
            result = {module: 1.0}
        else:
            callers = raw[function][4] if function in raw else {}
            weights = {caller: entry[2] + entry[3] for caller, entry in callers.items()}
            total = sum(weights.values())
            if depth > 20 or total <= 0:
                result = {"(unattributed)": 1.0}
            else:
                result = defaultdict(float)
                shares_cache[function] = {"(unattributed)": 1.0}  # breaks call cycles
                for caller, weight in weights.items():
                    for name, share in shares(caller, depth + 1).items():
                        result[name] += share * weight / total
                result = dict(result)
        shares_cache[function] = result
        return result

    totals: dict[str, float] = defaultdict(float)
    for function, (_, _, own_time, _, _) in raw.items():
        for module, share in shares(function).items():
            totals[module] += own_time * share
    return dict(totals)


def summarize(stats: pstats.Stats, top_modules: int = 12) -> str:
    """Markdown: time by stage, then the modules taking the most time."""
    modules = time_by_module(stats)
    total = sum(modules.values()) or 1.0
    by_stage: dict[str, float] = defaultdict(float)
    for module, seconds in modules.items():
        by_stage[stage_of(module)] += seconds
    lines = ["| stage | seconds | share |", "|---|---|---|"]
    for stage, seconds in sorted(by_stage.items(), key=lambda item: -item[1]):
        lines.append(f"| {stage} | {seconds:.2f} | {seconds / total:.0%} |")
    lines += ["", "| module | seconds | share |", "|---|---|---|"]
    for module, seconds in sorted(modules.items(), key=lambda item: -item[1])[:top_modules]:
        lines.append(f"| {module} | {seconds:.2f} | {seconds / total:.0%} |")
    lines += ["", "| function (own time) | seconds | calls |", "|---|---|---|"]
    raw = stats.stats  # type: ignore[attr-defined]
    for function, (_, calls, own_time, _, _) in sorted(raw.items(), key=lambda item: -item[1][2])[:12]:
        filename, line, name = function
        where = module_of(filename, name) or filename.rsplit("/", 1)[-1]
        lines.append(f"| `{where}:{line} {name}` | {own_time:.2f} | {calls:,} |")
    return "\n".join(lines)
