"""The metadata filter language: parsing, Python semantics, and agreement with the SQLite compilation."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from visrec.errors import BadInput, IndexCorrupt
from visrec.stores.filters import And, Comparison, Not, parse_filter
from visrec.stores.metadata import MetadataTable, normalize_metadata


def meta(**kw: Any) -> dict[str, Any]:
    return normalize_metadata(kw)


SAKURA = meta(path="a.jpg", labels=["Sakura"], split="train", width=120, height=80,
              extra={"grouped_split": "test", "score": 0.5})  # fmt: skip
DUO = meta(path="b.jpg", labels=["Sakura", "Naruto"], split="valid", width=64)
GARA = meta(path="c.jpg", labels=["Gara"], split="test", width=300)
UNLABELED = meta(path="d.jpg")


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('label == "Sakura"', [True, True, False, False]),
        ('label != "Sakura"', [False, False, True, True]),
        ('split in ["train", "valid"] and not label == "Gara"', [True, True, False, False]),
        ("width >= 100", [True, False, True, False]),
        ('grouped_split == "test"', [True, False, False, False]),
        ('label in ["Naruto", "Gara"]', [False, True, True, False]),
        ('label not in ["Naruto", "Gara"]', [True, False, False, True]),
        ("label == None", [False, False, False, True]),
        ('"Naruto" in labels', [False, True, False, False]),
        ("100 <= width < 200", [True, False, False, False]),
        ('split != "test" or width > 1000', [True, True, False, False]),
        ("width > -1 and not (width == 64)", [True, False, True, True]),
    ],
)
def test_examples(expr: str, expected: list[bool]) -> None:
    flt = parse_filter(expr)
    assert [flt.matches(m) for m in (SAKURA, DUO, GARA, UNLABELED)] == expected


def test_missing_field_makes_every_comparison_false() -> None:
    for expr in ('split == "x"', 'split != "x"', 'split not in ["x"]', 'split < "z"', "score >= 0"):
        assert not parse_filter(expr).matches(UNLABELED), expr
    assert parse_filter("split == None").matches(UNLABELED)
    assert parse_filter("score != None").matches(SAKURA)
    # `not` negates the (false) comparison
    assert parse_filter('not split == "x"').matches(UNLABELED)


def test_values_compare_only_with_the_same_kind() -> None:
    assert not parse_filter('width == "120"').matches(SAKURA)
    assert parse_filter('width != "120"').matches(SAKURA)
    assert not parse_filter("path > 5").matches(SAKURA)
    assert parse_filter("score == 0.5 and score < 1").matches(SAKURA)


def test_tree_is_small_and_backend_neutral() -> None:
    flt = parse_filter('split in ["train", "valid"] and not label == "Gara"')
    split = Comparison("split", "in", ("train", "valid"))
    assert flt.root == And((split, Not(Comparison("label", "==", "Gara"))))
    assert flt.fields == {"split", "label"}
    assert str(flt) == 'split in ["train", "valid"] and not label == "Gara"'


@pytest.mark.parametrize(
    "expr",
    [
        '__import__("os").system("ls")',
        "width",
        "width + 1 > 2",
        "a.b == 1",
        "x == y",
        'x in "abc"',
        "x < None",
        "x in [None]",
        "f(x) == 1",
        "x == [1][0]",
        "lambda: 1",
        "x ==",
        "x == 1e999",
        "x == 99999999999999999999999",
        "",
        "not " * 5000 + "x == 1",
    ],
)
def test_disallowed_expressions_are_refused_with_the_expression_quoted(expr: str) -> None:
    with pytest.raises(BadInput) as e:
        parse_filter(expr)
    msg = str(e.value)
    assert expr.strip()[:40] in msg or "too deeply" in msg or len(expr) > 1000


def test_refusal_says_what_is_allowed() -> None:
    with pytest.raises(BadInput, match=r"Allowed: comparisons \(==, !=, <"):
        parse_filter("open('x') == 1")


# ---- SQLite compilation agrees with Python evaluation -----------------------------------------------------

VOCAB = ["Sakura", "Naruto", "Gara", "Hinata"]
SPLITS = ["train", "valid", "test", None]


def random_meta(rng: random.Random) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if rng.random() < 0.7:
        extra["grouped_split"] = rng.choice(["train", "test", "x"])
    if rng.random() < 0.5:
        extra["score"] = rng.choice([0, 1, 2.5, -1, True, "2", "high"])
    return meta(
        path=rng.choice(["a.jpg", "b/c.png", "z.jpg"]),
        labels=rng.sample(VOCAB, rng.choice([0, 1, 1, 1, 2])),
        split=rng.choice(SPLITS),
        width=rng.choice([0, 32, 100, 640]),
        height=rng.choice([0, 48, 480]),
        group=rng.choice([None, "g1", "g2"]),
        extra=extra,
    )


def random_expr(rng: random.Random, depth: int = 0) -> str:
    if depth < 3 and rng.random() < 0.45:
        op = rng.choice(["and", "or"])
        return f"({random_expr(rng, depth + 1)} {op} {random_expr(rng, depth + 1)})"
    if depth < 3 and rng.random() < 0.15:
        return f"not ({random_expr(rng, depth + 1)})"
    fields = ["label", "labels", "split", "width", "height", "group", "path", "grouped_split", "score", "zz"]
    field = rng.choice(fields)
    values: list[Any] = [*VOCAB, "train", "test", "g1", "a.jpg", "2", 0, 1, 32, 100, 2.5, -1, True, False]
    op = rng.choice(["==", "!=", "<", "<=", ">", ">=", "in", "not in", "==None", "!=None"])
    if op in ("==None", "!=None"):
        return f"{field} {op[:2]} None"
    if op in ("in", "not in"):
        return f"{field} {op} {rng.sample(values, rng.randint(0, 3))!r}"
    return f"{field} {op} {rng.choice(values)!r}"


def test_matches_and_to_sql_agree_on_random_items_and_expressions() -> None:
    rng = random.Random(1234)
    items = [random_meta(rng) for _ in range(150)]
    table = MetadataTable()
    table.insert([f"id{i}" for i in range(len(items))], list(range(len(items))), items)
    checked = 0
    for _ in range(400):
        flt = parse_filter(random_expr(rng))
        want = [i for i, m in enumerate(items) if flt.matches(m)]
        got = table.rows(flt).tolist()
        assert got == want, (flt.expr, flt.to_sql())
        assert table.count(flt) == len(want)
        checked += bool(want) and len(want) < len(items)
    assert checked > 100  # most expressions split the items, so the comparison means something


def test_to_sql_is_parameterised() -> None:
    sql, params = parse_filter('label == "x\'; DROP TABLE meta; --" or grouped_split == "t"').to_sql()
    assert "DROP" not in sql and "x'" not in sql
    assert "x'; DROP TABLE meta; --" in params


# ---- the metadata table ---------------------------------------------------------------------------------


def test_metadata_table_delete_renumbers_rows_in_order() -> None:
    table = MetadataTable()
    ids = [f"i{i}" for i in range(10)]
    table.insert(ids, range(10), [meta(path=i) for i in ids])
    table.delete_rows(np.array([0, 4, 5, 9]))
    assert table.ids_by_row() == ["i1", "i2", "i3", "i6", "i7", "i8"]
    assert table.rows_of(["i6", "i0"]) == [3, None]
    assert [m["path"] for m in table.get_rows([5, 0])] == ["i8", "i1"]


def test_metadata_table_read_only_copy_never_changes_the_file(tmp_path: Any) -> None:
    table = MetadataTable()
    table.insert(["a", "b"], [0, 1], [meta(labels=["x"]), meta(labels=["y"])])
    table.save(tmp_path / "m.sqlite")
    before = (tmp_path / "m.sqlite").read_bytes()
    ro = MetadataTable(tmp_path / "m.sqlite", readonly=True)
    assert ro.count('label == "x"') == 1
    ro.delete_rows(np.array([0]))
    assert ro.ids_by_row() == ["b"]
    assert (tmp_path / "m.sqlite").read_bytes() == before


def test_metadata_table_refuses_a_file_that_is_not_sqlite(tmp_path: Any) -> None:
    (tmp_path / "m.sqlite").write_text("not a database" * 100)
    with pytest.raises(IndexCorrupt, match="re-index"):
        MetadataTable(tmp_path / "m.sqlite", readonly=True)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"label": "x"}, "unknown key"),
        ({"labels": "Sakura"}, "list of strings"),
        ({"width": "10"}, "'width' must be an integer"),
        ({"extra": {"a": [1]}}, "JSON scalars"),
        ({"extra": {"a": float("nan")}}, "JSON scalars"),
        ({"split": 3}, "'split' must be a string"),
    ],
)
def test_normalize_metadata_refuses_bad_entries(bad: dict[str, Any], match: str) -> None:
    with pytest.raises(BadInput, match=match):
        normalize_metadata(bad, "img1")
