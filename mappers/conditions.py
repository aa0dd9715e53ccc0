"""Rule conditions: SQL boolean expressions over `new.<col>` / `old.<col>`, compiled once.

The text is parsed by pglast and the AST walked by a visitor (one `visit_<Node>` method per
node class) that writes each node as a Python expression over `new` and `old`
(`Condition.code`), which mappers/codegen.py puts in place in the generated mapping code. The
expression has PostgreSQL's semantics: NULL is `None` and propagates, AND/OR/NOT use
three-valued logic, and a condition holds only when its value is True. Untyped literals take
the type of what they meet, as in SQL (at run time when the column's type is unknown).
Collation and case mapping follow the C locale (code point order, ASCII `upper`/`lower`), which
is what the sidecar's clusters use and all the engine's enum values need.

Anything outside the supported subset raises `ConditionError` naming the node, at load time.
tests/mappers/test_conditions.py checks the generated expressions against PostgreSQL.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pglast import ast, parse_sql
from pglast.parser import ParseError

from mappers.condition_values import Untyped, compare_typed_at_run_time, json_field
from mappers.sqltypes import TYPE_NAMES, SqlType, json_equal, jsonb_text, parse_literal


class Writer(Protocol):
    """Where a condition's code goes (mappers/codegen.py's Source): names for the values it
    refers to, and fresh local names for its intermediate values."""

    def bind(self, prefix: str, value: Any) -> str: ...

    def temporary(self) -> str: ...


Code = Callable[[Writer], str]  # a node's Python expression over `new` and `old`

_NUMBERS = {SqlType.INTEGER, SqlType.NUMERIC}
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "<>": operator.ne, "!=": operator.ne, "<": operator.lt,
    "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_PYTHON_OPERATORS = {"=": "==", "<>": "!=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_LITERAL_TYPES = (str, int, bool, type(None))  # written with repr(); other constants are bound


class ConditionError(ValueError):
    """A condition uses SQL outside the supported subset, or is not valid SQL."""


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled condition: it holds when its expression's value is True (not NULL)."""

    text: str
    _code: Code
    columns: frozenset[str] = frozenset()  # the columns it reads, of either side

    def code(self, out: Writer) -> str:
        """A Python expression over `new` and `old`: the condition's SQL value (True, False or
        None for NULL)."""
        return self._code(out)


@dataclass(frozen=True, slots=True)
class _Node:
    """A compiled sub-expression: its Python expression, its SQL type, and for literals the raw
    value (kept so an untyped literal can still be typed by its context)."""

    code: Code
    sql_type: SqlType
    literal: Any = None
    constant: bool = False  # a literal or a cast of one: its value is `literal`

    @property
    def untyped(self) -> bool:
        return self.constant and self.sql_type is SqlType.UNKNOWN


def compile_condition(text: str, column_types: Mapping[str, SqlType] | None = None) -> Condition:
    """Compile `text`; `column_types` types the columns (others are checked at run time)."""
    try:
        statements = parse_sql(f"SELECT {text}")
    except ParseError as error:
        raise ConditionError(f"not valid SQL: {error}") from None
    statement = statements[0].stmt if len(statements) == 1 else None
    if (not isinstance(statement, ast.SelectStmt) or statement.fromClause or statement.whereClause
            or len(statement.targetList or ()) != 1):
        raise ConditionError("a condition is a single expression, not a query")
    compiler = _Compiler(column_types or {})
    node = compiler.visit(statement.targetList[0].val)
    node = compiler.coerce(node, SqlType.BOOLEAN)
    if node.sql_type not in (SqlType.BOOLEAN, SqlType.ANY):
        raise ConditionError(f"a condition must be boolean, not {node.sql_type.value}")
    return Condition(text, node.code, frozenset(compiler.columns))


def _constant(value: Any, sql_type: SqlType) -> _Node:
    def code(out: Writer) -> str:
        return repr(value) if type(value) in _LITERAL_TYPES else out.bind("constant", value)

    return _Node(code, sql_type, value, constant=True)


def _junction_code(args: list[_Node], decisive: bool) -> Code:
    """`_and` (decisive False) or `_or` (decisive True) written out: the decisive value when one
    argument has it, else NULL when one is NULL, else the other truth value."""
    def code(out: Writer) -> str:
        names = [out.temporary() for _ in args]
        tests = " or ".join(f"({name} := {arg.code(out)}) is {decisive}" for name, arg in zip(names, args))
        nulls = " or ".join(f"{name} is None" for name in names)
        return f"({decisive} if {tests} else (None if {nulls} else {not decisive}))"

    return code


class _Compiler:
    def __init__(self, column_types: Mapping[str, SqlType]) -> None:
        self.column_types = column_types
        self.columns: set[str] = set()

    def visit(self, node: Any) -> _Node:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            raise ConditionError(f"unsupported SQL: {type(node).__name__}")
        return method(node)

    # -- leaves ------------------------------------------------------------------------------
    def visit_A_Const(self, node: ast.A_Const) -> _Node:
        if node.isnull:
            return _constant(None, SqlType.UNKNOWN)
        value = node.val
        if isinstance(value, ast.String):
            return _constant(value.sval, SqlType.UNKNOWN)
        if isinstance(value, ast.Integer):
            return _constant(value.ival, SqlType.INTEGER)
        if isinstance(value, ast.Float):
            return _constant(parse_literal(SqlType.NUMERIC, value.fval), SqlType.NUMERIC)
        if isinstance(value, ast.Boolean):
            return _constant(bool(value.boolval), SqlType.BOOLEAN)
        raise ConditionError(f"unsupported SQL: constant {type(value).__name__}")

    def visit_ColumnRef(self, node: ast.ColumnRef) -> _Node:
        names = [field.sval if isinstance(field, ast.String) else "*" for field in node.fields]
        if len(names) != 2 or names[0] not in ("new", "old") or names[1] == "*":
            raise ConditionError(f"columns are written new.<column> or old.<column>, not {'.'.join(names)}")
        side, column = names
        self.columns.add(column)
        sql_type = self.column_types.get(column, SqlType.ANY)
        code = f"{side}.get({column!r})"
        return _Node(lambda out: code, sql_type)

    def visit_TypeCast(self, node: ast.TypeCast) -> _Node:
        target = _type_of(node.typeName)
        inner = self.visit(node.arg)
        if not inner.constant:
            raise ConditionError("unsupported SQL: TypeCast of a non-literal (only literals are cast)")
        return _constant(_cast(inner.literal, inner.sql_type, target), target)

    # -- operators ---------------------------------------------------------------------------
    def visit_A_Expr(self, node: ast.A_Expr) -> _Node:
        kind = node.kind.name
        name = node.name[-1].sval if node.name else ""
        if node.lexpr is None:
            raise ConditionError(f"unsupported SQL: prefix operator {name}")
        if kind == "AEXPR_OP" and name in ("->", "->>"):
            return self._json_field(self.visit(node.lexpr), self.visit(node.rexpr), name == "->>")
        if kind == "AEXPR_OP" and name in _COMPARISONS:
            return self._compare(name, self.visit(node.lexpr), self.visit(node.rexpr))
        if kind == "AEXPR_IN":
            return self._in_list(name, self.visit(node.lexpr), [self.visit(item) for item in node.rexpr])
        if kind in ("AEXPR_DISTINCT", "AEXPR_NOT_DISTINCT"):
            return self._distinct(self.visit(node.lexpr), self.visit(node.rexpr), kind == "AEXPR_DISTINCT")
        raise ConditionError(f"unsupported SQL: operator {name!r} ({kind})")

    def visit_BoolExpr(self, node: ast.BoolExpr) -> _Node:
        args = [self.coerce(self.visit(arg), SqlType.BOOLEAN) for arg in node.args]
        for arg in args:
            if arg.sql_type not in (SqlType.BOOLEAN, SqlType.ANY):
                raise ConditionError(f"AND/OR/NOT need boolean operands, not {arg.sql_type.value}")
        kind = node.boolop.name
        if kind == "NOT_EXPR":
            (argument,) = args

            def not_code(out: Writer) -> str:
                value = out.temporary()
                return f"(None if ({value} := {argument.code(out)}) is None else not {value})"

            return _Node(not_code, SqlType.BOOLEAN)
        return _Node(_junction_code(args, kind == "OR_EXPR"), SqlType.BOOLEAN)

    def visit_NullTest(self, node: ast.NullTest) -> _Node:
        argument = self.visit(node.arg)
        is_null = node.nulltesttype.name == "IS_NULL"
        test = "is" if is_null else "is not"

        def code(out: Writer) -> str:
            if argument.constant:  # known now (and `'x' is None` is a SyntaxWarning)
                return repr((argument.literal is None) is is_null)
            return f"({argument.code(out)} {test} None)"

        return _Node(code, SqlType.BOOLEAN)

    def visit_CoalesceExpr(self, node: ast.CoalesceExpr) -> _Node:
        args = [self.visit(arg) for arg in node.args]
        known = [arg.sql_type for arg in args if arg.sql_type not in (SqlType.UNKNOWN, SqlType.ANY)]
        result_type = known[0] if known else (SqlType.ANY if any(
            arg.sql_type is SqlType.ANY for arg in args) else SqlType.TEXT)
        args = [self.coerce(arg, result_type) for arg in args]
        for arg in args:
            if not _same_category(arg.sql_type, result_type):
                raise ConditionError(
                    f"COALESCE types {result_type.value} and {arg.sql_type.value} cannot be matched")
        def code(out: Writer) -> str:
            written = "None"
            for arg in reversed(args):
                value = out.temporary()
                written = f"({value} if ({value} := {arg.code(out)}) is not None else {written})"
            return written

        return _Node(code, result_type)

    def visit_FuncCall(self, node: ast.FuncCall) -> _Node:
        names = [name.sval for name in node.funcname]
        name = names[-1]
        if (len(names) > 2 or (len(names) == 2 and names[0] != "pg_catalog")
                or name not in ("upper", "lower") or node.agg_star or node.over is not None):
            raise ConditionError(f"unsupported SQL: function {'.'.join(names)}()")
        if len(node.args or ()) != 1:
            raise ConditionError(f"{name}() takes one argument")
        argument = self.coerce(self.visit(node.args[0]), SqlType.TEXT)
        if argument.sql_type not in (SqlType.TEXT, SqlType.ANY):
            raise ConditionError(f"{name}() needs text, not {argument.sql_type.value}")
        table = _ASCII_UPPER if name == "upper" else _ASCII_LOWER

        def code(out: Writer) -> str:
            # ASCII letters only, as PostgreSQL's C locale; on ASCII text that is what str.upper
            # and str.lower do, ~20 times faster than a translation table (which maps per
            # character through a dict), so the table is left to other text
            value, bound = out.temporary(), out.bind(name + "_table", table)
            return (f"(({value}.{name}() if {value}.isascii() else {value}.translate({bound})) "
                    f"if isinstance(({value} := {argument.code(out)}), str) else {value})")

        return _Node(code, SqlType.TEXT)

    # -- helpers -----------------------------------------------------------------------------
    def coerce(self, node: _Node, target: SqlType) -> _Node:
        """An untyped literal typed as `target` (SQL's unknown-literal resolution)."""
        if not node.untyped or target in (SqlType.UNKNOWN, SqlType.ANY):
            return node
        return _constant(_cast(node.literal, SqlType.UNKNOWN, target), target)

    def _operands(self, left: _Node, right: _Node) -> tuple[_Node, _Node, SqlType]:
        if left.sql_type is SqlType.UNKNOWN and right.sql_type is SqlType.UNKNOWN:
            left, right = self.coerce(left, SqlType.TEXT), self.coerce(right, SqlType.TEXT)
        left, right = self.coerce(left, right.sql_type), self.coerce(right, left.sql_type)
        if SqlType.ANY in (left.sql_type, right.sql_type):
            return _runtime_typed(left), _runtime_typed(right), SqlType.ANY
        if not _same_category(left.sql_type, right.sql_type):
            raise ConditionError(
                f"cannot compare {left.sql_type.value} with {right.sql_type.value}")
        return left, right, left.sql_type

    def _compare(self, name: str, left: _Node, right: _Node) -> _Node:
        left, right, sql_type = self._operands(left, right)
        if sql_type is SqlType.JSONB and name not in ("=", "<>", "!="):
            raise ConditionError(f"unsupported SQL: ordering comparison {name!r} of jsonb")

        def code(out: Writer) -> str:
            a = out.temporary()
            if right.constant:
                if right.literal is None:
                    return "None"
                b = right.code(out)
                return f"(None if ({a} := {left.code(out)}) is None else {_python_compare(out, name, sql_type, a, b)})"
            b = out.temporary()
            return (f"(None if ({a} := {left.code(out)}) is None or ({b} := {right.code(out)}) is None "
                    f"else {_python_compare(out, name, sql_type, a, b)})")

        return _Node(code, SqlType.BOOLEAN)

    def _in_list(self, name: str, left: _Node, items: list[_Node]) -> _Node:
        nodes = [self._compare(name, left, item) for item in items]
        return _Node(_junction_code(nodes, name == "="), SqlType.BOOLEAN)

    def _distinct(self, left: _Node, right: _Node, distinct: bool) -> _Node:
        typed_left, typed_right, sql_type = self._operands(left, right)

        def code(out: Writer) -> str:
            a, b = out.temporary(), out.temporary()
            written = (f"((({a} is None) is not ({b} is None)) "
                       f"if (({a} := {typed_left.code(out)}) is None) | (({b} := {typed_right.code(out)}) is None) "
                       f"else not {_python_compare(out, '=', sql_type, a, b)})")
            return written if distinct else f"(not {written})"

        return _Node(code, SqlType.BOOLEAN)

    def _json_field(self, document: _Node, key: _Node, as_text: bool) -> _Node:
        if document.sql_type not in (SqlType.JSONB, SqlType.ANY):
            raise ConditionError(f"-> and ->> need jsonb on the left, not {document.sql_type.value}")
        key = self.coerce(key, SqlType.TEXT)
        if key.sql_type not in (SqlType.TEXT, SqlType.INTEGER):
            raise ConditionError(f"a jsonb key is text or an integer, not {key.sql_type.value}")

        def code(out: Writer) -> str:
            return f"{out.bind('json_field', json_field)}({document.code(out)}, {key.code(out)}, {as_text})"

        return _Node(code, SqlType.TEXT if as_text else SqlType.JSONB)


def _python_compare(out: Writer, name: str, sql_type: SqlType, a: str, b: str) -> str:
    """`_compare`'s comparison of two non-NULL values named `a` and `b`, written out."""
    if sql_type is SqlType.JSONB:
        equal = f"{out.bind('json_equal', json_equal)}({a}, {b})"
        return equal if name == "=" else f"not {equal}"
    if sql_type is SqlType.ANY:
        return (f"{out.bind('compare_typed_at_run_time', compare_typed_at_run_time)}"
                f"({out.bind('operator', _COMPARISONS[name])}, {a}, {b})")
    return f"{a} {_PYTHON_OPERATORS[name]} {b}"


def _runtime_typed(node: _Node) -> _Node:
    if node.untyped and node.literal is not None:
        untyped = Untyped(node.literal)
        return _Node(lambda out: out.bind("untyped", untyped), SqlType.ANY)
    return node


def _same_category(left: SqlType, right: SqlType) -> bool:
    if left is right or SqlType.ANY in (left, right):
        return True
    return left in _NUMBERS and right in _NUMBERS


def _type_of(type_name: ast.TypeName) -> SqlType:
    name = type_name.names[-1].sval
    if type_name.typmods or type_name.arrayBounds:
        raise ConditionError(f"unsupported SQL: cast to {name} with modifiers")
    sql_type = TYPE_NAMES.get(name)
    if sql_type is None:
        raise ConditionError(f"unsupported SQL: cast to {name}")
    return sql_type


def _cast(value: Any, source: SqlType, target: SqlType) -> Any:
    """A literal's value converted like PostgreSQL's cast; invalid input fails at load time."""
    if value is None or source is target:
        return value
    try:
        if source in (SqlType.UNKNOWN, SqlType.TEXT):
            return parse_literal(target, value)
        if target is SqlType.TEXT:
            if source is SqlType.BOOLEAN:
                return "true" if value else "false"
            return jsonb_text(value) if source is SqlType.JSONB else str(value)
        if source in _NUMBERS and target is SqlType.NUMERIC:
            return parse_literal(SqlType.NUMERIC, str(value))
        if source is SqlType.NUMERIC and target is SqlType.INTEGER:
            return int(value.to_integral_value(rounding="ROUND_HALF_UP"))
    except (ValueError, ArithmeticError) as error:
        raise ConditionError(f"invalid {target.value} literal {value!r}: {error}") from None
    raise ConditionError(f"unsupported SQL: cast from {source.value} to {target.value}")
