"""The condition compiler: PostgreSQL semantics checked against PostgreSQL itself (a hypothesis
oracle over generated rows and expressions), plus the subset's edges and its rejections. What is
checked is the code the mapper's generated functions test in place (`Condition.code`)."""

from __future__ import annotations

import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappers.codegen import condition_function
from mappers.conditions import ConditionError, compile_condition
from mappers.sqltypes import JSON_NULL, SqlType, parse_json

COLUMNS = {"t": SqlType.TEXT, "n": SqlType.INTEGER, "b": SqlType.BOOLEAN, "j": SqlType.JSONB}
ORACLE = ("SELECT ({}) FROM (VALUES (%s::text, %s::bigint, %s::boolean, %s::jsonb)) AS new(t, n, b, j), "
          "(VALUES (%s::text, %s::bigint, %s::boolean, %s::jsonb)) AS old(t, n, b, j)")

# -- generated values -----------------------------------------------------------------------------
texts = st.text(alphabet="aAbBzZ é'ßÉ", max_size=4)
json_scalars = st.one_of(st.integers(-3, 3), texts, st.booleans(), st.none())
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from("kxy"), inner, max_size=3)), max_leaves=6)
json_documents = st.dictionaries(st.sampled_from("kxy"), json_values, max_size=3)
rows = st.fixed_dictionaries({
    "t": st.none() | texts, "n": st.none() | st.integers(-3, 3), "b": st.none() | st.booleans(),
    "j": st.none() | json_documents,
})


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# -- generated expressions ------------------------------------------------------------------------
sides = st.sampled_from(["new", "old"])
text_atoms = st.one_of(
    sides.map(lambda side: f"{side}.t"),
    texts.map(quote),
    st.tuples(sides, st.sampled_from("kxy")).map(lambda pair: f"{pair[0]}.j ->> '{pair[1]}'"),
    st.tuples(sides, st.sampled_from("kxy"), st.integers(-2, 2)).map(
        lambda triple: f"({triple[0]}.j -> '{triple[1]}') ->> {triple[2]}"),
    st.integers(-3, 3).map(lambda number: f"'{number}'::int::text"),
)
text_expressions = st.recursive(text_atoms, lambda inner: st.one_of(
    inner.map(lambda value: f"upper({value})"),
    inner.map(lambda value: f"lower({value})"),
    st.tuples(inner, inner).map(lambda pair: f"coalesce({pair[0]}, {pair[1]})"),
), max_leaves=3)
int_expressions = st.one_of(
    sides.map(lambda side: f"{side}.n"), st.integers(-3, 3).map(str),
    st.integers(-3, 3).map(lambda number: f"'{number}'::bigint"),
    st.tuples(sides, st.integers(-3, 3)).map(lambda pair: f"coalesce({pair[0]}.n, {pair[1]})"),
)
json_expressions = st.one_of(
    sides.map(lambda side: f"{side}.j"),
    st.tuples(sides, st.sampled_from("kxy")).map(lambda pair: f"{pair[0]}.j -> '{pair[1]}'"),
    json_documents.map(lambda document: quote(orjson.dumps(document).decode()) + "::jsonb"),
)
operators = st.sampled_from(["=", "<>", "<", "<=", ">", ">="])


def comparisons(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(values, operators, values).map(lambda parts: " ".join(parts)),
        st.tuples(values, st.sampled_from(["IS DISTINCT FROM", "IS NOT DISTINCT FROM"]), values)
        .map(lambda parts: " ".join(parts)),
        st.tuples(values, st.sampled_from(["IN", "NOT IN"]), st.lists(values, min_size=1, max_size=3))
        .map(lambda parts: f"{parts[0]} {parts[1]} ({', '.join(parts[2])})"),
        st.tuples(values, st.sampled_from(["IS NULL", "IS NOT NULL"])).map(lambda parts: " ".join(parts)),
    )


boolean_atoms = st.one_of(
    comparisons(text_expressions), comparisons(int_expressions),
    st.tuples(json_expressions, st.sampled_from(["=", "<>", "IS DISTINCT FROM"]), json_expressions)
    .map(lambda parts: " ".join(parts)),
    sides.map(lambda side: f"{side}.b"), st.sampled_from(["TRUE", "FALSE", "NULL::boolean"]),
)
boolean_expressions = st.recursive(boolean_atoms, lambda inner: st.one_of(
    st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(lambda parts: f"({parts[0]} {parts[1]} {parts[2]})"),
    inner.map(lambda value: f"NOT ({value})"),
), max_leaves=4)


def parameters(row: dict) -> list:
    document = row["j"]
    return [row["t"], row["n"], row["b"], None if document is None else orjson.dumps(document).decode()]


def canonical(row: dict) -> dict:
    # What the mapper hands the compiled condition: jsonb parsed (a JSON null inside stays None,
    # the column's own value is never a bare JSON null here).
    return {**row, "j": None if row["j"] is None else parse_json(orjson.dumps(row["j"]))}


@pytest.fixture(scope="module")
def oracle(pg):
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        yield conn


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expression=boolean_expressions, new=rows, old=rows)
def test_compiled_conditions_agree_with_postgresql(oracle, expression, new, old):
    expected = oracle.execute(ORACLE.format(expression), parameters(new) + parameters(old)).fetchone()[0]
    condition = compile_condition(expression, COLUMNS)
    assert condition_function(condition)(canonical(new), canonical(old)) == expected, expression


# -- the edges the generator does not reach -------------------------------------------------------
@pytest.mark.parametrize("expression, new, old, expected", [
    ("upper(new.status) = 'PAID' AND upper(old.status) IS DISTINCT FROM 'PAID'", {"status": "paid"}, {}, True),
    ("upper(new.status) = 'PAID' AND upper(old.status) IS DISTINCT FROM 'PAID'",
     {"status": "paid"}, {"status": "Paid"}, False),
    # ASCII letters only, as in the C locale: other letters keep their case
    ("upper(new.status) = 'STRAßE é'", {"status": "straße é"}, {}, True),
    ("lower(new.status) = 'Äb'", {"status": "ÄB"}, {}, True),
    ("new.holder_id IS NOT NULL AND new.holder_id IS DISTINCT FROM old.holder_id",
     {"holder_id": "a"}, {}, True),
    ("old.holder_id IS NOT NULL AND old.holder_id IS DISTINCT FROM new.holder_id",
     {}, {"holder_id": "a"}, True),
    ("new.result = 'SUCCESS'", {"result": None}, {}, None),
    ("NOT (new.result = 'SUCCESS')", {"result": None}, {}, None),
    ("new.m ->> 'k' = '1'", {"m": {"k": 1}}, {}, True),
    ("new.m ->> 'k' IS NULL", {"m": {"k": JSON_NULL}}, {}, True),
    ("new.m -> 'k' IS NULL", {"m": {"k": JSON_NULL}}, {}, False),
    ("new.m ->> 'k' = '{\"a\": [1, true]}'", {"m": {"k": {"a": [1, True]}}}, {}, True),
    ("new.unknown = '3'", {"unknown": 3}, {}, True),
    ("new.unknown = 't'", {"unknown": True}, {}, True),
    ("'5'::int::text = '5' AND CAST('2' AS bigint) < 2.5", {}, {}, True),
    ("'yes'::boolean AND 'off'::boolean IS NOT TRUE", {}, {}, None),
])
def test_conditions_at_the_edges(expression, new, old, expected):
    if "IS NOT TRUE" in expression:  # BooleanTest is outside the subset
        with pytest.raises(ConditionError, match="BooleanTest"):
            compile_condition(expression)
        return
    condition = compile_condition(expression, {"m": SqlType.JSONB})
    assert condition_function(condition)(new, old) == expected


@pytest.mark.parametrize("expression, message", [
    ("new.n + 1 = 2", r"unsupported SQL: operator '\+'"),
    ("now() > new.created_at", r"unsupported SQL: function now\(\)"),
    ("new.t = 5", "cannot compare text with integer"),
    ("status = 'PAID'", "columns are written new.<column> or old.<column>, not status"),
    ("new.j < new.j", "ordering comparison '<' of jsonb"),
    ("new.t::int = 1", "TypeCast of a non-literal"),
    ("'x'::varchar(3) = new.t", "cast to varchar with modifiers"),
    ("'abc'::int = 1", "invalid integer literal 'abc'"),
    ("new.t LIKE 'a%'", r"unsupported SQL: operator '~~'"),
    ("(SELECT true)", "unsupported SQL: SubLink"),
    ("new.t", "a condition must be boolean, not text"),
    ("1; SELECT 2", "a single expression"),
    ("new.t = ", "not valid SQL"),
])
def test_unsupported_sql_is_rejected_naming_the_node(expression, message):
    with pytest.raises(ConditionError, match=message):
        compile_condition(expression, COLUMNS)
