"""A small, safe metadata filter language: ``label == "Sakura" and split in ["train", "valid"]``.

Expressions are parsed with :mod:`ast` (never evaluated) into a tiny backend-neutral tree of
:class:`Comparison`, :class:`And`, :class:`Or` and :class:`Not` nodes. :meth:`Filter.matches` evaluates the
tree on one item's metadata in Python; :meth:`Filter.to_sql` compiles it to a parameterised SQLite ``WHERE``
clause over the metadata table (:mod:`visrec.stores.metadata`); another backend can walk :attr:`Filter.root`
to build its own syntax.

Semantics (shared by every backend):

- Fields: ``id``, ``path``, ``split``, ``sha256``, ``width``, ``height``, ``group`` and ``label`` (alias
  ``labels``). Any other name is looked up in the item's ``extra`` dict (e.g. ``grouped_split == "test"``).
- ``label`` compares against the item's ``labels`` list by membership: ``label == "X"`` is true when X is one
  of its labels, ``label != "X"`` when X is not among them, ``label in [...]`` when any label is listed,
  ``label not in [...]`` when none is. ``label == None`` selects unlabeled items.
- A missing field (or ``None`` value) makes every comparison false, ``!=`` and ``not in`` included (like SQL
  NULL); ``field == None`` / ``field != None`` test for missing / present.
- Values compare only with values of the same kind (text with text, numbers with numbers; booleans count as
  numbers): ``width == "100"`` is false. ``not`` negates (two-valued logic).
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from visrec.errors import BadInput
from visrec.npyio import parse_expression

OPS = ("==", "!=", "<", "<=", ">", ">=", "in", "not in")
COLUMNS = {"id": "id", "path": "path", "split": "split", "sha256": "sha256", "width": "width",
           "height": "height", "group": "grp"}  # fmt: skip
"""Known fields -> SQLite column of the metadata table. ``label``/``labels`` are handled apart."""
LABEL_FIELDS = ("label", "labels")
MAX_EXPR_CHARS = 20_000

_AST_OPS: dict[type[ast.cmpop], str] = {
    ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
    ast.In: "in", ast.NotIn: "not in",
}  # fmt: skip
_FLIPPED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_ALLOWED = (
    "comparisons (==, !=, <, <=, >, >=, in, not in) between a field name and a constant (string, number, "
    "True/False, None, or a [list] of them), combined with and / or / not and parentheses"
)
_INT64 = 2**63

Scalar = Union[str, int, float, bool]


@dataclass(frozen=True)
class Comparison:
    """``field op value``; ``value`` is a scalar, ``None`` (only with ``==``/``!=``) or a tuple for ``in``."""

    field: str
    op: str
    value: Scalar | tuple[Scalar, ...] | None


@dataclass(frozen=True)
class And:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    part: Node


Node = Union[Comparison, And, Or, Not]


@dataclass(frozen=True)
class Filter:
    """A parsed filter expression; build it with :func:`parse_filter`."""

    expr: str
    root: Node

    def matches(self, meta: Mapping[str, Any]) -> bool:
        """Whether one item's metadata (the ``Metadata`` format of :mod:`visrec.stores.base`) passes."""
        return _eval(self.root, meta)

    def to_sql(self) -> tuple[str, list[Any]]:
        """A parameterised SQLite boolean expression over the metadata table and its parameters."""
        params: list[Any] = []
        return _sql(self.root, params), params

    @property
    def fields(self) -> frozenset[str]:
        """Field names the expression refers to."""
        return frozenset(_fields(self.root))

    def __str__(self) -> str:
        return self.expr


def parse_filter(expr: str) -> Filter:
    """Parse a filter expression; raises ``BadInput`` quoting it and saying what is allowed."""
    if not isinstance(expr, str):
        raise BadInput(f"a filter must be a string expression, got {type(expr).__name__}")
    if len(expr) > MAX_EXPR_CHARS:
        raise BadInput(f"filter expression is {len(expr)} characters long; the limit is {MAX_EXPR_CHARS}")
    try:
        tree = parse_expression(expr.strip())
        root = _convert(tree.body, expr)
    except SyntaxError as e:
        raise BadInput(f"cannot parse filter {expr!r}: {e.msg}. Allowed: {_ALLOWED}") from None
    except UnicodeEncodeError:
        raise BadInput(
            f"filter {expr[:80]!r} holds an undecodable file-name byte; filter values must be valid text: compare "
            "another field (label, split, ...) or rename the file"
        ) from None
    except (RecursionError, MemoryError, ValueError):
        raise BadInput(f"cannot parse filter {expr[:80]!r}: too deeply nested or invalid") from None
    return Filter(expr, root)


# ---- parsing ---------------------------------------------------------------------------------------------


def _bad(expr: str, what: str) -> BadInput:
    return BadInput(f"filter {expr!r}: {what} is not allowed. Allowed: {_ALLOWED}")


def _convert(node: ast.expr, expr: str) -> Node:
    if isinstance(node, ast.BoolOp):
        parts = tuple(_convert(v, expr) for v in node.values)
        return And(parts) if isinstance(node.op, ast.And) else Or(parts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return Not(_convert(node.operand, expr))
    if isinstance(node, ast.Compare):
        lefts = [node.left, *node.comparators[:-1]]
        cmps = [
            _comparison(left, op, right, expr)
            for left, op, right in zip(lefts, node.ops, node.comparators, strict=True)
        ]
        return cmps[0] if len(cmps) == 1 else And(tuple(cmps))
    if isinstance(node, ast.Name):
        raise _bad(expr, f"a bare field name ({node.id!r}) without a comparison")
    raise _bad(expr, f"{_describe(node)}")


def _describe(node: ast.AST) -> str:
    return f"{type(node).__name__} `{ast.unparse(node)}`"


def _comparison(left: ast.expr, op: ast.cmpop, right: ast.expr, expr: str) -> Comparison:
    sym = _AST_OPS.get(type(op))
    if sym is None:
        raise _bad(expr, f"the operator {type(op).__name__}")
    if isinstance(left, ast.Name) and not isinstance(right, ast.Name):
        name, value_node = left.id, right
    elif isinstance(right, ast.Name) and not isinstance(left, ast.Name):
        name, value_node = right.id, left
        if sym in ("in", "not in"):
            # "Sakura" in labels  ==  label == "Sakura"
            if name not in LABEL_FIELDS:
                raise _bad(expr, f"`<constant> {sym} {name}` (membership works on label / labels only)")
            sym = "==" if sym == "in" else "!="
        else:
            sym = _FLIPPED[sym]
    else:
        raise _bad(expr, f"{_describe(left)} {sym} {_describe(right)} (need one field name and one constant)")
    value = _value(value_node, sym, expr)
    return Comparison(name, sym, value)


def _value(node: ast.expr, op: str, expr: str) -> Scalar | tuple[Scalar, ...] | None:
    if op in ("in", "not in"):
        if not isinstance(node, (ast.List, ast.Tuple)):
            raise _bad(expr, f"`{op}` with {_describe(node)} (use a [list] of constants)")
        items = tuple(_scalar(e, expr) for e in node.elts)
        if any(v is None for v in items):
            raise _bad(expr, "None inside a list (use `field == None` to test for a missing field)")
        return items  # type: ignore[return-value]
    value = _scalar(node, expr)
    if value is None and op not in ("==", "!="):
        raise _bad(expr, f"None with `{op}` (None works with == and != only)")
    return value


def _scalar(node: ast.expr, expr: str) -> Scalar | None:
    sign = 1
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        sign = -1 if isinstance(node.op, ast.USub) else 1
        node = node.operand
        if not (isinstance(node, ast.Constant) and type(node.value) in (int, float)):
            raise _bad(expr, f"a sign before {_describe(node)}")
    if not isinstance(node, ast.Constant):
        raise _bad(expr, _describe(node))
    v = node.value
    if v is None or isinstance(v, (str, bool)):
        return v
    if isinstance(v, int):
        if not -_INT64 <= sign * v < _INT64:
            raise _bad(expr, f"the integer {v} (outside the 64-bit range)")
        return sign * v
    if isinstance(v, float):
        if not math.isfinite(v):
            raise _bad(expr, f"the number {v!r} (not finite)")
        return sign * v
    raise _bad(expr, f"the constant {v!r} ({type(v).__name__})")


def _fields(node: Node) -> list[str]:
    if isinstance(node, Comparison):
        return [node.field]
    if isinstance(node, Not):
        return _fields(node.part)
    return [f for p in node.parts for f in _fields(p)]


# ---- Python evaluation -----------------------------------------------------------------------------------


def _kind(v: Any) -> str | None:
    if isinstance(v, str):
        return "text"
    if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
        return "num"
    return None


def _eq(a: Any, b: Any) -> bool:
    ka = _kind(a)
    return ka is not None and ka == _kind(b) and a == b


def _order(a: Any, op: str, b: Any) -> bool:
    ka = _kind(a)
    if ka is None or ka != _kind(b):
        return False
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)


def _cmp_one(a: Any, op: str, value: Any) -> bool:
    """Comparison of a present value ``a``."""
    if op == "==":
        return _eq(a, value)
    if op == "!=":
        return not _eq(a, value)
    if op == "in":
        return any(_eq(a, v) for v in value)
    if op == "not in":
        return not any(_eq(a, v) for v in value)
    return _order(a, op, value)


def _eval_labels(labels: Sequence[Any], c: Comparison) -> bool:
    if c.value is None:
        return (len(labels) == 0) == (c.op == "==")
    if c.op in ("==", "in"):
        return any(_cmp_one(lab, c.op, c.value) for lab in labels)
    if c.op in ("!=", "not in"):
        positive = "==" if c.op == "!=" else "in"
        return not any(_cmp_one(lab, positive, c.value) for lab in labels)
    return any(_order(lab, c.op, c.value) for lab in labels)


def _lookup(meta: Mapping[str, Any], name: str) -> Any:
    if name in COLUMNS:
        return meta.get(name)
    extra = meta.get("extra") or {}
    return extra.get(name)


def _eval(node: Node, meta: Mapping[str, Any]) -> bool:
    if isinstance(node, And):
        return all(_eval(p, meta) for p in node.parts)
    if isinstance(node, Or):
        return any(_eval(p, meta) for p in node.parts)
    if isinstance(node, Not):
        return not _eval(node.part, meta)
    if node.field in LABEL_FIELDS:
        return _eval_labels(meta.get("labels") or (), node)
    value = _lookup(meta, node.field)
    if node.value is None:
        return (value is None) == (node.op == "==")
    if value is None:
        return False
    return _cmp_one(value, node.op, node.value)


# ---- SQLite compilation ----------------------------------------------------------------------------------

_SQL_KIND = {
    "column": {"text": "typeof({x}) = 'text'", "num": "typeof({x}) IN ('integer', 'real')"},
    # json_type() is NULL for a missing key: IFNULL keeps every guard two-valued
    "extra": {"text": "IFNULL(json_type(extra, ?), '') = 'text'",
              "num": "IFNULL(json_type(extra, ?), '') IN ('integer', 'real', 'true', 'false')"},
}  # fmt: skip


def _sql(node: Node, params: list[Any]) -> str:
    if isinstance(node, (And, Or)):
        joiner = " AND " if isinstance(node, And) else " OR "
        return "(" + joiner.join(_sql(p, params) for p in node.parts) + ")"
    if isinstance(node, Not):
        return f"(NOT {_sql(node.part, params)})"
    sql, own = _sql_labels(node) if node.field in LABEL_FIELDS else _sql_field(node)
    params.extend(own)
    return sql


def _split_kinds(values: tuple[Scalar, ...]) -> dict[str, list[Scalar]]:
    out: dict[str, list[Scalar]] = {"text": [], "num": []}
    for v in values:
        k = _kind(v)
        if k is not None:
            out[k].append(v)
    return out


def _sql_field(c: Comparison) -> tuple[str, list[Any]]:
    """A comparison on a column or an ``extra`` entry; never NULL (guards check presence and kind)."""
    if c.field in COLUMNS:
        x, xp, kinds = COLUMNS[c.field], [], _SQL_KIND["column"]
    else:
        path = '$."' + c.field + '"'
        x, xp, kinds = "json_extract(extra, ?)", [path], _SQL_KIND["extra"]
    if c.value is None:
        return f"({x} IS {'' if c.op == '==' else 'NOT '}NULL)", xp
    if c.op in ("in", "not in", "==", "!="):
        values = c.value if isinstance(c.value, tuple) else (c.value,)
        parts, params = [], []
        for kind, vals in _split_kinds(values).items():
            if len(vals) == 1 and c.op in ("==", "!="):
                parts.append(f"({kinds[kind].format(x=x)} AND {x} = ?)")
                params += [*xp, *xp, vals[0]]
            elif vals:
                parts.append(f"({kinds[kind].format(x=x)} AND {x} IN (SELECT value FROM json_each(?)))")
                params += [*xp, *xp, json.dumps(vals)]
        positive = "(" + " OR ".join(parts) + ")" if parts else "0"
        if c.op in ("in", "=="):
            return positive, params
        return f"({x} IS NOT NULL AND NOT {positive})", [*xp, *params]
    vkind = _kind(c.value)
    if vkind is None:
        return "0", []
    return f"({kinds[vkind].format(x=x)} AND {x} {c.op} ?)", [*xp, *xp, c.value]


def _sql_labels(c: Comparison) -> tuple[str, list[Any]]:
    """A comparison on the JSON ``labels`` list (all text) by membership."""
    if c.value is None:
        return f"(json_array_length(labels) {'=' if c.op == '==' else '>'} 0)", []
    if c.op in ("==", "!=", "in", "not in"):
        values = c.value if isinstance(c.value, tuple) else (c.value,)
        texts = _split_kinds(values)["text"]
        if not texts:
            return ("0" if c.op in ("==", "in") else "1"), []
        param: Any = texts[0]
        test = "value = ?"
        if c.op in ("in", "not in"):
            param, test = json.dumps(texts), "value IN (SELECT value FROM json_each(?))"
        exists = f"EXISTS (SELECT 1 FROM json_each(labels) WHERE {test})"
        return (exists if c.op in ("==", "in") else f"(NOT {exists})"), [param]
    if _kind(c.value) != "text":
        return "0", []
    return f"EXISTS (SELECT 1 FROM json_each(labels) WHERE value {c.op} ?)", [c.value]
