"""The package graph points one way: `voucher_activity` (the composition root) wires the stages
`cdc_reader` (WAL -> change envelopes), `mappers` (envelopes -> events) and `query` (the store),
with the HTTP API `query.api` beside the store; `demo` stands outside them. No stage imports the
root or the demo, the store never imports HTTP types, and there is no circle anywhere."""

from __future__ import annotations

import ast
import graphlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("voucher_activity", "cdc_reader", "mappers", "query", "demo")
STAGES = ("cdc_reader", "mappers", "query", "query.api")
OUTSIDE_THE_STAGES = ("voucher_activity", "demo")


def unit_of(module: str) -> str | None:
    """The layer a dotted module name belongs to (None: not one of ours)."""
    if module == "query.api" or module.startswith("query.api."):
        return "query.api"
    top = module.partition(".")[0]
    return top if top in PACKAGES else None


def imported_modules(path: Path, module: str, known: set[str] = frozenset()) -> set[str]:
    """Every module `path` imports, at any depth (function-level imports too). `from package
    import submodule` depends on the submodule, when `known` lists it, not on the package."""
    if path.suffix in (".pyx", ".pxd"):
        return cython_imports(path.read_text())
    found: set[str] = set()
    package = module.rpartition(".")[0] if path.name != "__init__.py" else module
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            submodules = {f"{base}.{alias.name}" for alias in node.names}
            found |= submodules & known if submodules <= known else {base} | submodules
    return found


# Cython sources are not Python: their `import` and `cimport` statements are read by pattern
# (absolute imports only, which is what the compiled modules use).
_CYTHON_IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+c?import\b|c?import\s+([\w.]+(?:\s*,\s*[\w.]+)*))", re.M)


def cython_imports(source: str) -> set[str]:
    found: set[str] = set()
    for base, names in _CYTHON_IMPORT.findall(source):
        found.update([base] if base else (name.strip() for name in names.split(",")))
    return found


def module_edges() -> dict[str, set[str]]:
    paths = {}
    for package in PACKAGES:
        for path in sorted(p for suffix in ("*.py", "*.pyx") for p in (REPO / package).rglob(suffix)):
            paths[".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")] = path
    known = set(paths)
    return {
        module: {name for name in imported_modules(path, module, known) if unit_of(name)}
        for module, path in paths.items()
    }


def unit_edges(edges: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {
        (unit_of(source), unit_of(target))
        for source, targets in edges.items() for target in targets
        if unit_of(source) != unit_of(target)
    }


def test_the_parser_sees_imports_at_every_depth(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("import mappers.state\nfrom query import store\ndef f():\n    from demo.traffic import x\n")
    assert imported_modules(source, "voucher_activity.probe") >= {"mappers.state", "query.store", "demo.traffic.x"}
    assert unit_edges({"voucher_activity.probe": {"query.api.app"}, "query.writer": {"query.api.metrics"}}) == {
        ("voucher_activity", "query.api"), ("query", "query.api")}


def test_the_parser_reads_cython_sources():
    source = "from cpython.ref cimport Py_INCREF\nfrom cdc_reader.pgoutput cimport (\n    Relation,\n)\n" \
             "import orjson, psycopg\ncdef f():\n    from mappers.state import x\n"
    assert cython_imports(source) == {"cpython.ref", "cdc_reader.pgoutput", "orjson", "psycopg", "mappers.state"}


def test_compiled_modules_are_in_the_graph():
    assert module_edges()["cdc_reader.assembler"] >= {"cdc_reader.pgoutput", "cdc_reader.changes", "cdc_reader.loaders"}


def test_the_root_wires_every_stage():
    assert {target for source, target in unit_edges(module_edges()) if source == "voucher_activity"} >= {
        "cdc_reader", "mappers", "query", "query.api", "demo"}


def test_no_circle_between_layers():
    sorter = graphlib.TopologicalSorter()
    for source, target in unit_edges(module_edges()):
        sorter.add(source, target)
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        pytest.fail(f"import circle between layers: {error.args[1]}")


@pytest.mark.parametrize("stage", STAGES)
def test_no_stage_imports_the_root_or_the_demo(stage):
    offending = sorted(
        f"{source} imports {target}" for source, targets in module_edges().items() if unit_of(source) == stage
        for target in targets if unit_of(target) in OUTSIDE_THE_STAGES
    )
    assert offending == []


def test_the_store_imports_no_http_module():
    offending = sorted(
        f"{source} imports {target}" for source, targets in module_edges().items() if unit_of(source) == "query"
        for target in targets if unit_of(target) == "query.api"
    )
    assert offending == []


def test_no_circle_between_modules():
    sorter = graphlib.TopologicalSorter()
    edges = module_edges()
    for source, targets in edges.items():
        for target in targets:
            if target in edges and target != source:
                sorter.add(source, target)
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        pytest.fail(f"import circle between modules: {error.args[1]}")


MAX_MODULE_LINES = 400


def test_no_product_module_is_over_400_lines():
    sources = [path for package in PACKAGES for pattern in ("*.py", "*.pyx", "*.pxd")
               for path in (REPO / package).rglob(pattern)]
    assert len(sources) > 50
    longer = {str(path.relative_to(REPO)): lines for path in sources
              if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert longer == {}
