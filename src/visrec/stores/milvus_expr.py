"""Compile a parsed filter (:mod:`visrec.stores.filters`) into a Milvus boolean expression.

The Milvus collection (see :mod:`visrec.stores.milvus_store`) has the scalar fields ``id``, ``path``,
``sha256`` (VARCHAR), ``split``, ``grp`` (nullable VARCHAR), ``width``, ``height`` (INT64), ``labels``
(ARRAY of VARCHAR) and ``extra`` (JSON). Milvus evaluates a missing or NULL operand with SQL's three-valued
logic (``not (split == "x")`` drops rows whose split is NULL), while visrec filters are two-valued (a missing
field makes every comparison false, and ``not`` flips it). Every comparison is therefore guarded (``split is
not null and ...``, ``exists extra["k"] and ...``) so that it is never NULL and ``not`` stays exact. The one
comparison Milvus leaves NULL whatever the guard, an ordering of a JSON value of the other kind
(``extra["k"] < 5`` on a text value), never stands under a ``not``: negations are pushed down to the
comparisons (De Morgan), and a negated ordering is spelled positively (missing, or of the other kind, or
the opposite order).

Values of the wrong kind (text against a number column) compile to ``false`` up front, so Milvus never sees a
type error. Strings are written as double-quoted literals with JSON escapes (Milvus Lite has no parameter
binding), which keeps user text out of the expression syntax.

Differences from the SQLite backend, raised as ``BadInput``: ordering comparisons on ``label`` (``label <
"M"``) are not supported.
"""

from __future__ import annotations

import json
from typing import Any

from visrec.errors import BadInput
from visrec.stores.filters import LABEL_FIELDS, And, Comparison, Filter, Node, Not, Or, parse_filter

TEXT_COLUMNS = {"id": "id", "path": "path", "sha256": "sha256", "split": "split", "group": "grp"}
NUM_COLUMNS = {"width": "width", "height": "height"}
NULLABLE = {"split", "grp"}
TRUE, FALSE = "true", "false"


def to_milvus(where: str | Filter | None) -> str:
    """The Milvus filter expression for ``where`` (``""`` for no filter); ``BadInput`` when unsupported."""
    if where is None:
        return ""
    flt = parse_filter(where) if isinstance(where, str) else where
    return _node(flt.root, False)


def literal(value: Any) -> str:
    """A Milvus literal: a double-quoted, JSON-escaped string, or a number (booleans become 1 / 0)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(value)
    raise BadInput(f"cannot use {value!r} ({type(value).__name__}) in a Milvus filter")


def _node(node: Node, neg: bool) -> str:
    """``node`` (negated when ``neg``), with ``not`` only ever applied to a two-valued comparison."""
    if isinstance(node, (And, Or)):
        joiner = " and " if isinstance(node, And) != neg else " or "
        return "(" + joiner.join(_node(p, neg) for p in node.parts) + ")"
    if isinstance(node, Not):
        return _node(node.part, not neg)
    if neg and node.op in ("<", "<=", ">", ">=") and _is_extra(node.field) and _kind(node.value):
        return _extra_not_ordered(node)
    test = _comparison(node)
    return f"(not {test})" if neg else test


def _is_extra(name: str) -> bool:
    return name not in LABEL_FIELDS and name not in TEXT_COLUMNS and name not in NUM_COLUMNS


def _comparison(node: Comparison) -> str:
    if node.field in LABEL_FIELDS:
        return _labels(node)
    if node.field in TEXT_COLUMNS:
        return _column(node, TEXT_COLUMNS[node.field], "text")
    if node.field in NUM_COLUMNS:
        return _column(node, NUM_COLUMNS[node.field], "num")
    return _extra(node)


def _kind(v: Any) -> str | None:
    if isinstance(v, str):
        return "text"
    if isinstance(v, (int, float)):
        return "num"
    return None


def _values(c: Comparison, kind: str | None) -> list[Any]:
    """The comparison's values (one, or the list of ``in``) of the given kind (all kinds when None)."""
    values = c.value if isinstance(c.value, tuple) else (c.value,)
    return [v for v in values if v is not None and (kind is None or _kind(v) == kind)]


def _guarded(guard: str, test: str) -> str:
    return test if not guard else f"({guard} and {test})"


def _column(c: Comparison, col: str, kind: str) -> str:
    guard = f"{col} is not null" if col in NULLABLE else ""
    if c.value is None:
        present = guard or TRUE
        return present if c.op == "!=" else (f"({col} is null)" if guard else FALSE)
    if c.op in ("==", "!=", "in", "not in"):
        vals = _values(c, kind)
        positive = f"{col} in [{', '.join(literal(v) for v in vals)}]" if vals else FALSE
        if c.op in ("==", "in"):
            return _guarded(guard, positive) if vals else FALSE
        return _guarded(guard, f"(not {positive})") if vals else (guard or TRUE)
    if _kind(c.value) != kind:
        return FALSE
    return _guarded(guard, f"{col} {c.op} {literal(c.value)}")


def _extra(c: Comparison) -> str:
    x = f"extra[{literal(c.field)}]"
    guard = f"exists {x}"  # false for a missing key and for a JSON null
    if c.value is None:
        return guard if c.op == "!=" else f"(not {guard})"
    if c.op in ("==", "!=", "in", "not in"):
        # JSON paths cannot stand left of `in` in Milvus: one equality per value (a wrong kind is false)
        vals = _values(c, None)
        positive = "(" + " or ".join(f"{x} == {literal(v)}" for v in vals) + ")" if vals else FALSE
        if c.op in ("==", "in"):
            return _guarded(guard, positive) if vals else FALSE
        return _guarded(guard, f"(not {positive})") if vals else guard
    if _kind(c.value) is None:
        return FALSE
    return _guarded(guard, f"{x} {c.op} {literal(c.value)}")


_OPPOSITE = {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}


def _extra_not_ordered(c: Comparison) -> str:
    """``not (extra[k] op v)``: k missing, or its value of the other kind, or in the opposite order."""
    x = f"extra[{literal(c.field)}]"
    other_kind = f'{x} >= ""' if _kind(c.value) == "num" else f"({x} >= 0 or {x} < 0)"
    return f"((not exists {x}) or {other_kind} or {x} {_OPPOSITE[c.op]} {literal(c.value)})"


def _labels(c: Comparison) -> str:
    if c.value is None:
        return f"(array_length(labels) {'==' if c.op == '==' else '>'} 0)"
    if c.op not in ("==", "!=", "in", "not in"):
        raise BadInput(
            f"the milvus store cannot compare labels with {c.op!r}; use ==, !=, in or not in on label "
            "(or search an exact / faiss store)"
        )
    texts = _values(c, "text")
    if not texts:
        return FALSE if c.op in ("==", "in") else TRUE
    test = f"array_contains_any(labels, [{', '.join(literal(t) for t in texts)}])"
    return test if c.op in ("==", "in") else f"(not {test})"
