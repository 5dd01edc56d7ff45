"""`--filter`: a small, safe expression language over a decoded change event.

    after.kind == "hplc" and after.status == "completed"
    op in ("c", "u") and not source.snapshot
    source.table == "runs" or (key.id >= 100 and before.status != null)

Grammar: `and`, `or`, `not`, parentheses, comparisons `== != < <= > >=` (chains
like `1 < after.priority <= 5` too), `in` / `not in` against a tuple or list,
literals (strings, numbers, `true`/`false`/`null` and Python's spellings),
and dotted paths. A path that does not exist is `null`; an ordering comparison
between values of different types (or with `null`) is false, never an error.

How it stays safe: the text is parsed with Python's `ast` in `eval` mode, every
node is checked against an allow-list (no calls, subscripts, lambdas,
comprehensions, names or attributes starting with `_`), and the tree is compiled
into closures by our own walker. Nothing is ever passed to `eval`/`exec`.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from replay.exceptions import FilterSyntaxError

MAX_LENGTH = 4000
EXPECTED = 'a comparison like `after.status == "completed"`, joined by and/or/not'

Evaluator = Callable[[Mapping[str, Any]], Any]

_LITERAL_NAMES: dict[str, Any] = {
    "true": True,
    "false": False,
    "null": None,
    "none": None,
    "True": True,
    "False": False,
    "None": None,
}

_REJECTED_KIND = {
    ast.Call: "function calls",
    ast.Lambda: "lambdas",
    ast.Subscript: "subscripts ([...])",
    ast.Starred: "starred expressions",
    ast.NamedExpr: "assignments (:=)",
    ast.IfExp: "conditional expressions (x if y else z)",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.JoinedStr: "f-strings",
    ast.Dict: "dict literals",
    ast.Set: "set literals",
    ast.BinOp: "arithmetic",
}


def _ordered(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    """Ordering that is false (not an error) across types, `null` and bools."""

    def safe(left: Any, right: Any) -> bool:
        if left is None or right is None or isinstance(left, bool) or isinstance(right, bool):
            return False
        numeric = isinstance(left, int | float) and isinstance(right, int | float)
        if not numeric and type(left) is not type(right):
            return False
        try:
            return bool(compare(left, right))
        except TypeError:
            return False

    return safe


def _equal(left: Any, right: Any) -> bool:
    # `true == 1` is false here: a boolean column compared with a number is a mistake.
    if isinstance(left, bool) != isinstance(right, bool):
        return False
    return bool(left == right)


def _contains(item: Any, container: Any) -> bool:
    if isinstance(container, tuple | list):
        return any(_equal(item, element) for element in container)
    if isinstance(container, str) and isinstance(item, str):
        return item in container
    return False


_COMPARATORS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: _equal,
    ast.NotEq: lambda left, right: not _equal(left, right),
    ast.Lt: _ordered(operator.lt),
    ast.LtE: _ordered(operator.le),
    ast.Gt: _ordered(operator.gt),
    ast.GtE: _ordered(operator.ge),
    ast.In: _contains,
    ast.NotIn: lambda item, container: not _contains(item, container),
}


def resolve_path(data: Mapping[str, Any], parts: tuple[str, ...]) -> Any:
    """`data[a][b][c]`, or None as soon as a step is missing or not a mapping."""
    current: Any = data
    for part in parts:
        if type(current) is not dict and not isinstance(current, Mapping):
            return None
        current = current.get(part)
    return current


@dataclass(frozen=True)
class Filter:
    """A compiled filter: call `matches(envelope)`; `text` is what the user typed."""

    text: str
    _evaluate: Evaluator
    # the top-level names the filter reads (`after` of `after.status`): a scan decodes
    # only these fields of a value to test the filter (`replay.fastscan`)
    names: frozenset[str] = frozenset()

    def matches(self, envelope: Mapping[str, Any]) -> bool:
        return bool(self._evaluate(envelope))

    @property
    def evaluator(self) -> Evaluator:
        """The compiled function: `matches` is `bool(evaluator(envelope))` (one call less
        per record, for the scan's pre-filter)."""
        return self._evaluate

    def __call__(self, envelope: Mapping[str, Any]) -> bool:
        return self.matches(envelope)


def compile_filter(text: str, *, option: str = "--filter", specialize: bool = True) -> Filter:
    """Parse and check `text`; `FilterSyntaxError` says where and what was expected."""
    if len(text) > MAX_LENGTH:
        raise FilterSyntaxError(
            f"{option} is {len(text)} characters long (limit {MAX_LENGTH})",
            hint="select with --key/--op/--from first and keep the filter short",
        )
    if not text.strip():
        raise FilterSyntaxError(f"{option} is empty", hint=f"write {EXPECTED}")
    tree = _parse(text, option)
    compiler = _Compiler(text, option, specialize=specialize)
    evaluate = compiler.compile(tree.body)
    return Filter(text, evaluate, frozenset(compiler.names))


def _parse(text: str, option: str) -> ast.Expression:
    source = text.strip().replace("\n", " ")
    try:
        return ast.parse(source, mode="eval")
    except SyntaxError as exc:
        column = exc.offset or 1
        reason = (exc.msg or "invalid syntax").rstrip(".")
        dangling = _dangling_operator(source)
        if dangling:
            column, reason = len(source) + 1, f"a value is missing after {dangling!r}"
        raise FilterSyntaxError(
            f"{option} does not parse at position {column} ({_excerpt(source, column)}): "
            f"{reason}; expected {EXPECTED}",
            hint='quote strings ("hplc"), use == for equality, and/or/not, parentheses',
        ) from None
    except (RecursionError, MemoryError, ValueError):
        raise FilterSyntaxError(
            f"{option} is nested too deeply or contains a NUL byte", hint="simplify the filter"
        ) from None


_TRAILING_OPERATORS = ("==", "!=", "<=", ">=", "<", ">", " and", " or", " not", " in", "(", ",")


def _dangling_operator(source: str) -> str | None:
    """The operator a truncated filter ends with (Python reports those at column 1)."""
    stripped = source.rstrip()
    for operator_text in _TRAILING_OPERATORS:
        if stripped.endswith(operator_text):
            return operator_text.strip()
    return None


def _excerpt(text: str, column: int) -> str:
    start = max(column - 1, 0)
    near = text[start : start + 20]
    return f"near {near!r}" if near else "at the end"


class _Compiler:
    def __init__(self, text: str, option: str, *, specialize: bool = True) -> None:
        self.text = text
        self.option = option
        self.names: set[str] = set()
        # `path == "text"`, `path in ("a", "b")` and one- or two-part paths as closures of
        # their own (same results, fewer calls per record); False: the general closures
        # only (tests compare both)
        self.specialize = specialize

    def reject(self, node: ast.AST, what: str) -> FilterSyntaxError:
        column = getattr(node, "col_offset", 0) + 1
        return FilterSyntaxError(
            f"{self.option}: {what} not allowed at position {column} "
            f"({_excerpt(self.text.strip(), column)}); expected {EXPECTED}",
            hint="the filter language only compares fields of the event with literals",
        )

    def compile(self, node: ast.AST) -> Evaluator:
        handler = {
            ast.BoolOp: self._bool_op,
            ast.UnaryOp: self._unary,
            ast.Compare: self._compare,
            ast.Constant: self._constant,
            ast.Name: self._path,
            ast.Attribute: self._path,
            ast.Tuple: self._sequence,
            ast.List: self._sequence,
        }.get(type(node))
        if handler is None:
            kind = _REJECTED_KIND.get(type(node), f"{type(node).__name__} expressions")
            raise self.reject(node, kind)
        return handler(node)

    def _bool_op(self, node: ast.AST) -> Evaluator:
        assert isinstance(node, ast.BoolOp)
        operands = [self.compile(value) for value in node.values]
        # loops, not all()/any() over a generator: this runs per record of a scan
        if isinstance(node.op, ast.And):
            def every(data: Mapping[str, Any]) -> bool:
                for operand in operands:  # noqa: SIM110 (see above)
                    if not operand(data):
                        return False
                return True

            return every

        def some(data: Mapping[str, Any]) -> bool:
            for operand in operands:  # noqa: SIM110 (see above)
                if operand(data):
                    return True
            return False

        return some

    def _unary(self, node: ast.AST) -> Evaluator:
        assert isinstance(node, ast.UnaryOp)
        if isinstance(node.op, ast.Not):
            operand = self.compile(node.operand)
            return lambda data: not operand(data)
        if isinstance(node.op, ast.USub | ast.UAdd) and _is_number(node.operand):
            number = node.operand.value  # type: ignore[attr-defined]
            value = -number if isinstance(node.op, ast.USub) else number
            return lambda data: value
        raise self.reject(node, "this operator")

    def _compare(self, node: ast.AST) -> Evaluator:
        assert isinstance(node, ast.Compare)
        operands = [self.compile(node.left)] + [self.compile(item) for item in node.comparators]
        comparators = []
        for op in node.ops:
            comparator = _COMPARATORS.get(type(op))
            if comparator is None:
                raise self.reject(node, f"the comparison {type(op).__name__}")
            comparators.append(comparator)

        if len(comparators) == 1:  # `a == b`, the usual case: no loop per record
            left_operand, right_operand = operands
            compare = comparators[0]
            special = self._special_compare(node) if self.specialize else None
            if special is not None:
                return special
            return lambda data: compare(left_operand(data), right_operand(data))

        def evaluate(data: Mapping[str, Any]) -> bool:
            left = operands[0](data)
            for comparator, right_operand in zip(comparators, operands[1:], strict=True):
                right = right_operand(data)
                if not comparator(left, right):
                    return False
                left = right
            return True

        return evaluate

    def _special_compare(self, node: ast.Compare) -> Evaluator | None:
        """`path == / != text-or-null` and `path in / not in (texts...)` without the generic
        comparators: for a text or null constant `_equal(value, constant)` is
        `value == constant` (a bool or a number never equals text or null), and
        membership in texts is a set lookup for a text value."""
        left, op, right = node.left, node.ops[0], node.comparators[0]
        if not isinstance(left, ast.Name | ast.Attribute) or _literal_name(left):
            return None
        get = self.compile(left)
        if isinstance(op, ast.Eq | ast.NotEq) and _text_or_null(right):
            constant = self.compile(right)({})
            if isinstance(op, ast.Eq):
                return lambda data: get(data) == constant
            return lambda data: get(data) != constant
        if (isinstance(op, ast.In | ast.NotIn) and isinstance(right, ast.Tuple | ast.List)
                and right.elts and all(_text(element) for element in right.elts)):
            texts = tuple(element.value for element in right.elts)  # type: ignore[attr-defined]
            members = frozenset(texts)

            def contained(data: Mapping[str, Any]) -> bool:
                value = get(data)
                return value in members if type(value) is str else _contains(value, texts)

            if isinstance(op, ast.In):
                return contained
            return lambda data: not contained(data)
        return None

    def _constant(self, node: ast.AST) -> Evaluator:
        assert isinstance(node, ast.Constant)
        value = node.value
        if value is not None and not isinstance(value, str | int | float | bool):
            raise self.reject(node, f"{type(value).__name__} literals")
        return lambda data: value

    def _path(self, node: ast.AST) -> Evaluator:
        parts: list[str] = []
        current = node
        while isinstance(current, ast.Attribute):
            parts.append(current.attr)
            current = current.value
        if not isinstance(current, ast.Name):
            raise self.reject(node, "attribute access on an expression")
        parts.append(current.id)
        parts.reverse()
        if len(parts) == 1 and parts[0] in _LITERAL_NAMES:
            literal = _LITERAL_NAMES[parts[0]]
            return lambda data: literal
        hidden = [part for part in parts if part.startswith("_")]
        if hidden:
            raise self.reject(node, f"names starting with '_' ({hidden[0]!r})")
        path = tuple(parts)
        self.names.add(path[0])
        if self.specialize and len(path) == 1:
            (name,) = path
            return lambda data: data.get(name) if type(data) is dict else resolve_path(data, path)
        if self.specialize and len(path) == 2:
            outer, inner = path

            def two_parts(data: Mapping[str, Any]) -> Any:  # `after.status`: most filters
                if type(data) is dict:
                    found = data.get(outer)
                    if type(found) is dict:
                        return found.get(inner)
                return resolve_path(data, path)

            return two_parts
        return lambda data: resolve_path(data, path)

    def _sequence(self, node: ast.AST) -> Evaluator:
        assert isinstance(node, ast.Tuple | ast.List)
        items = [self.compile(element) for element in node.elts]
        if all(isinstance(element, ast.Constant) for element in node.elts):
            constant = tuple(item({}) for item in items)  # `op in ("c", "u")`: built once
            return lambda data: constant
        return lambda data: tuple(item(data) for item in items)


def _literal_name(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id in _LITERAL_NAMES


def _text(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is str


def _text_or_null(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return node.value is None or type(node.value) is str
    return isinstance(node, ast.Name) and node.id in _LITERAL_NAMES and \
        _LITERAL_NAMES[node.id] is None


def _is_number(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    )
