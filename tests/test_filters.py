"""The filter compiler on its own (every operator over an in-memory SQLite table, errors naming the problem),
and the limits of what metadata can hold, enforced at ``Collection.add``. The differential fuzzing against a
reference evaluator is in ``test_filters_fuzz.py``."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

from spann_vectorstore import Collection, FilterError
from spann_vectorstore.filters import (
    INT64_MAX,
    INT64_MIN,
    MAX_FILTER_DEPTH,
    MAX_METADATA_DEPTH,
    MAX_PARAMS,
    compile_filter,
    filter_key,
)

DOCS = [
    {"v": 1, "tags": ["a", 1, True, None, [1, 2]], "o": {"x": "deep"}},
    {"v": 1.0, "tags": [], "s": "Hello World"},
    {"v": True, "tags": ["A", 0, False], "s": ""},
    {"v": "1", "tags": "a, b", "s": "ÉCOLE"},
    {"v": None, "tags": [[1, 2]], "o": {"x": 2}},
    {"v": [1], "o": {}},
    {},
    {"v": {"x": 1}, "big": INT64_MAX},
    {"big": INT64_MIN, "s": "' OR 1=1 --"},
    {"big": INT64_MAX - 1, "v": 2.5},
]
ALL = set(range(len(DOCS)))


@pytest.fixture(scope="module")
def db():
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE docs (rowid INTEGER PRIMARY KEY, metadata TEXT NOT NULL)")
    con.executemany(
        "INSERT INTO docs VALUES (?, ?)", [(i, json.dumps(m, ensure_ascii=False)) for i, m in enumerate(DOCS)]
    )
    yield con
    con.close()


def ids(db: sqlite3.Connection, flt: dict) -> set[int]:
    sql, params = compile_filter(flt)
    return {r for (r,) in db.execute(f"SELECT rowid FROM docs WHERE {sql}", params)}


CASES = [
    # equality is type-exact: 1 == 1.0, but not true, "1", [1] or {"x": 1}
    ({"v": 1}, {0, 1}),
    ({"v": {"$eq": 1.0}}, {0, 1}),
    ({"v": True}, {2}),
    ({"v": "1"}, {3}),
    ({"v": None}, {4}),
    ({"v": {"$ne": 1}}, ALL - {0, 1}),
    ({"v": {"$ne": None}}, ALL - {4}),
    # ordering: like with like
    ({"v": {"$gt": 1}}, {9}),
    ({"v": {"$gte": 1}}, {0, 1, 9}),
    ({"v": {"$lt": 2}}, {0, 1}),
    ({"v": {"$lte": 1.0}}, {0, 1}),
    ({"v": {"$gt": False}}, {2}),
    ({"v": {"$gt": "0"}}, {3}),
    ({"v": {"$lt": float("inf")}}, {0, 1, 9}),
    # int64 extremes compare exactly (with ints and with the doubles next to them)
    ({"big": INT64_MAX}, {7}),
    ({"big": {"$gt": INT64_MAX - 1}}, {7}),
    ({"big": INT64_MIN}, {8}),
    ({"big": {"$lt": INT64_MIN + 1}}, {8}),
    ({"big": {"$lt": float(2**63)}}, {7, 8, 9}),
    ({"big": float(2**63)}, set()),
    ({"big": {"$gte": float(INT64_MAX)}}, set()),  # float(2**63 - 1) is 2**63
    ({"big": float(INT64_MIN)}, {8}),  # -2**63 is a double exactly
    # $in / $nin
    ({"v": {"$in": [1, None]}}, {0, 1, 4}),
    ({"v": {"$in": [True, "1", 2.5]}}, {2, 3, 9}),
    ({"v": {"$in": []}}, set()),
    ({"v": {"$in": [float("inf")]}}, set()),
    ({"v": {"$nin": [1, "1"]}}, ALL - {0, 1, 3}),
    ({"v": {"$nin": []}}, ALL),
    # $contains: list element equal (type-exact) or substring of a string field (string operand only)
    ({"tags": {"$contains": "a"}}, {0, 3}),
    ({"tags": {"$contains": 1}}, {0}),
    ({"tags": {"$contains": True}}, {0}),
    ({"tags": {"$contains": False}}, {2}),
    ({"tags": {"$contains": 0}}, {2}),
    ({"tags": {"$contains": None}}, {0}),
    ({"tags": {"$contains": "[1,2]"}}, set()),
    ({"tags": {"$contains": ", "}}, {3}),
    ({"v": {"$contains": 1}}, {5}),  # [1], not the string "1"
    ({"s": {"$contains": ""}}, {1, 2, 3, 8}),
    ({"s": {"$contains": "' OR"}}, {8}),
    # $icontains: case-insensitive substring, or a list element equal ignoring case
    ({"s": {"$icontains": "école"}}, {3}),
    ({"s": {"$icontains": "WORLD"}}, {1}),
    ({"tags": {"$icontains": "a"}}, {0, 2, 3}),
    ({"s": {"$icontains": ""}}, {1, 2, 3, 8}),
    ({"s": {"$icontains": "o*w"}}, set()),  # glob characters are literal
    ({"s": {"$icontains": "?"}}, set()),
    # dotted paths, $exists, $type, $size
    ({"o.x": "deep"}, {0}),
    ({"o.x": {"$exists": True}}, {0, 4}),
    ({"v": {"$exists": False}}, {6, 8}),
    ({"v": {"$type": "number"}}, {0, 1, 9}),
    ({"v": {"$type": "boolean"}}, {2}),
    ({"v": {"$type": ["array", "object"]}}, {5, 7}),
    ({"v": {"$type": "null"}}, {4}),
    ({"tags": {"$size": 0}}, {1}),
    ({"tags": {"$size": 1}}, {4}),
    # combinations
    ({}, ALL),
    ({"$not": {}}, set()),
    ({"v": 1, "tags": {"$size": 0}}, {1}),
    ({"v": {"$gte": 1, "$lt": 2}}, {0, 1}),
    ({"$and": [{"v": {"$type": "number"}}, {"tags": {"$exists": True}}]}, {0, 1}),
    ({"$or": [{"v": True}, {"o.x": 2}]}, {2, 4}),
    ({"$not": {"v": 1}}, ALL - {0, 1}),
    ({"$not": {"v": {"$gt": 0}}}, ALL - {0, 1, 9}),  # a missing field negates cleanly
    ({"$not": {"$not": {"v": None}}}, {4}),
]


@pytest.mark.parametrize("flt, want", CASES, ids=[json.dumps(f, default=str) for f, _ in CASES])
def test_operators(db, flt, want):
    assert ids(db, flt) == want


@pytest.mark.parametrize(
    "flt, match",
    [
        ("a=1", "must be a dict"),
        ({"a": {"$regex": "x"}}, "unknown filter operator '\\$regex'"),
        ({"$xor": []}, "unknown filter operator '\\$xor'"),
        ({"$and": []}, "non-empty list"),
        ({"$or": {"a": 1}}, "non-empty list"),
        ({"a": {}}, "empty condition"),
        ({"a": {"$in": 5}}, "\\$in needs a list"),
        ({"a": {"$gt": [1]}}, "\\$gt operand must be a string, number, bool or null, got list"),
        ({"a": {"$gt": None}}, "cannot compare with null"),
        ({"a": {"$eq": float("nan")}}, "NaN"),
        ({"a": {"$icontains": 3}}, "\\$icontains needs a string"),
        ({"a": {"$type": "str"}}, "\\$type needs"),
        ({"a": {"$size": -1}}, "\\$size needs"),
        ({"a": {"$size": 2**63}}, "\\$size needs"),
        ({"a": {"$exists": 1}}, "\\$exists needs"),
        # field names: what SQLite's JSON paths cannot name exactly
        ({"": 1}, "invalid filter field name ''"),
        ({"$a": 1}, "unknown filter operator"),
        ({"a.b": {"$eq": 1}, "$b.c": 1}, "unknown filter operator"),
        ({"a\n": 1}, "invalid filter field name"),
        ({'"a': 1}, "invalid filter field name"),
        ({'a"': 1}, "invalid filter field name"),
        ({"a\\b": 1}, "invalid filter field name"),
        ({"a\nb": 1}, "invalid filter field name"),
        ({"a\x00": 1}, "invalid filter field name"),
        ({"\ud800": 1}, "invalid filter field name"),
        ({"a..b": 1}, "invalid filter field name"),
        ({"a.": 1}, "invalid filter field name"),
        ({1: 1}, "invalid filter field name"),
        # operands metadata cannot hold: NUL, lone surrogates, integers beyond int64
        ({"a": "x\x00y"}, "NUL"),
        ({"a": {"$ne": "\x00"}}, "NUL"),
        ({"a": {"$in": ["ok", "x\x00"]}}, "NUL"),
        ({"a": {"$contains": "\x00"}}, "NUL"),
        ({"a": {"$icontains": "x\x00"}}, "NUL"),
        ({"a": {"$lt": "\udc00"}}, "surrogate"),
        ({"a": 2**63}, "outside int64"),
        ({"a": {"$gt": INT64_MIN - 1}}, "outside int64"),
        ({"a": {"$nin": [1, 2**64]}}, "outside int64"),
        ({"a": {"$contains": -(2**70)}}, "outside int64"),
    ],
)
def test_invalid_filters_name_the_problem(flt, match):
    with pytest.raises(FilterError, match=match):
        compile_filter(flt)
    with pytest.raises(FilterError, match=match):
        filter_key(flt)


def test_nul_in_stored_or_filtered_strings_is_rejected_not_truncated():
    """SQLite's JSON functions cut strings at NUL: {"s": "a"} matched "a\\x00b" and {"s": "a\\x00b"} nothing."""
    col = Collection(None)
    with pytest.raises(ValueError, match=r"metadatas\[1\] field 's' holds a NUL character"):
        col.add(np.ones((2, 2)), metadatas=[{"s": "a"}, {"s": "a\x00b"}])
    with pytest.raises(ValueError, match=r"metadatas\[0\] key 'a\\x00' holds a NUL"):
        col.add(np.ones(2), metadatas=[{"a\x00": 1}])
    with pytest.raises(ValueError, match=r"field 'o.l\[1\]' holds a NUL"):
        col.add(np.ones(2), metadatas=[{"o": {"l": ["x", "\x00"]}}])
    assert len(col) == 0 and col.dim is None  # nothing written, the dimension not fixed
    col.add(np.ones((2, 2)), texts=["a\x00b", None], metadatas=[{"s": "a"}, {"s": "ab"}], ids=["0", "1"])
    assert col.get("0")[0].text == "a\x00b"  # texts are not JSON: NUL is kept there
    assert [h.id for h in col.get(filter={"s": "a"})] == ["0"]
    with pytest.raises(FilterError, match="NUL"):
        col.get(filter={"s": {"$contains": "\x00"}})


def test_contains_is_type_exact():
    col = Collection(None)
    metas = [{"l": [1]}, {"l": [False]}, {"l": [None]}, {"l": [[1, 2]]}, {"l": [1.0]}, {"l": ["1"]}, {"l": "x1"}]
    col.add(np.ones((len(metas), 2)), metadatas=metas, ids=[str(i) for i in range(len(metas))])

    def got(v):
        return [h.id for h in col.get(filter={"l": {"$contains": v}})]

    assert got(True) == [] and got(False) == ["1"]
    assert got(0) == [] and got(1) == ["0", "4"] and got(1.0) == ["0", "4"]
    assert got(None) == ["2"]
    assert got("[1,2]") == [] and got("1") == ["5", "6"]
    col.close()


def test_out_of_range_integers_are_rejected_and_int64_extremes_compare_exactly():
    col = Collection(None)
    for bad, field in (({"n": 2**63}, "n"), ({"o": {"l": [0, -(2**63) - 1]}}, r"o.l\[1\]")):
        with pytest.raises(ValueError, match=f"field '{field}': integer .* outside int64"):
            col.add(np.ones(2), metadatas=[bad])
    assert len(col) == 0
    extremes = [INT64_MIN, INT64_MIN + 1, INT64_MAX - 1, INT64_MAX]
    col.add(np.ones((4, 2)), metadatas=[{"n": n} for n in extremes], ids=["min", "min+1", "max-1", "max"])
    assert [h.id for h in col.get(filter={"n": INT64_MIN})] == ["min"]  # was also -2**63-1, stored as a double
    assert [h.id for h in col.get(filter={"n": {"$gt": INT64_MAX - 1}})] == ["max"]
    assert [h.id for h in col.get(filter={"n": {"$in": [INT64_MIN + 1, INT64_MAX]}})] == ["min+1", "max"]
    assert col.count(filter={"n": {"$lt": float(INT64_MAX)}}) == 4  # float(2**63 - 1) == 2**63
    with pytest.raises(FilterError, match="outside int64"):
        col.count(filter={"n": {"$gt": 2**63}})  # was OverflowError
    col.close()


def test_deep_metadata_and_lone_surrogates_raise_before_anything_is_written():
    col = Collection(None)
    deep: dict = {}
    for _ in range(5000):  # json.dumps raised RecursionError
        deep = {"x": deep}
    with pytest.raises(ValueError, match=f"nests dicts/lists deeper than {MAX_METADATA_DEPTH} levels"):
        col.add(np.ones(2), metadatas=[deep])
    ok: dict = {"leaf": 1}
    for _ in range(MAX_METADATA_DEPTH - 1):
        ok = {"x": ok}
    for kwargs, match in (
        ({"texts": ["fine", "\ud800"]}, r"texts\[1\] holds a lone surrogate"),
        ({"metadatas": [{}, {"s": "a\udfffb"}]}, r"metadatas\[1\] field 's' holds a lone surrogate"),
        ({"metadatas": [{"\ud83d": 1}, {}]}, r"metadatas\[0\] key '\\ud83d' holds a lone surrogate"),
        ({"ids": ["ok", "\ud800"]}, "holds a lone surrogate"),
    ):
        with pytest.raises(ValueError, match=match):
            col.add(np.ones((2, 2)), **kwargs)  # was UnicodeEncodeError after the dimension was fixed
    assert len(col) == 0 and col.dim is None
    col.add(np.ones(3), metadatas=[ok], ids=["deepest"])  # exactly MAX_METADATA_DEPTH levels is fine
    assert col.get(filter={".".join(["x"] * (MAX_METADATA_DEPTH - 1) + ["leaf"]): 1})[0].id == "deepest"
    col.close()


def nested(depth: int, leaf: dict) -> dict:
    flt = leaf
    for i in range(depth):
        flt = [{"$not": flt}, {"$and": [flt, {}]}, {"$or": [flt, {"$not": {}}]}][i % 3]
    return flt


def test_nesting_is_bounded_by_filter_depth(db):
    leaf = {"s": {"$icontains": "École"}}
    negations = len(range(0, MAX_FILTER_DEPTH, 3))
    assert ids(db, leaf) == {3}
    assert ids(db, nested(MAX_FILTER_DEPTH, leaf)) == ({3} if negations % 2 == 0 else ALL - {3})
    with pytest.raises(FilterError, match=f"deeper than {MAX_FILTER_DEPTH}"):
        compile_filter(nested(MAX_FILTER_DEPTH + 1, leaf))
    hostile = leaf
    for _ in range(10_000):  # raised RecursionError (and SQLite's parser stack overflowed at ~20)
        hostile = {"$not": hostile}
    with pytest.raises(FilterError):
        filter_key(hostile)


def test_wide_filters_compile_to_sql_sqlite_accepts(db):
    """An $in of any length, an $or of thousands of clauses (SQLite's expression depth limit is 1000: a flat
    chain of 1000 terms overflowed it), and a long non-ASCII $icontains needle (a replace() per character
    overflowed the parser stack at ~20 distinct letters)."""
    many = [f"v{i}" for i in range(50_000)]
    assert ids(db, {"s": {"$in": [*many, "ÉCOLE"]}}) == {3}
    assert ids(db, {"s": {"$nin": [*many, "ÉCOLE"]}}) == ALL - {3}
    assert ids(db, {"$or": [{"big": i} for i in range(5_000)] + [{"big": INT64_MAX}]}) == {7}
    assert ids(db, {"$and": [{"big": {"$ne": i}} for i in range(3_000)]}) == ALL
    with pytest.raises(FilterError, match="too large"):
        compile_filter({"$or": [{"big": i} for i in range(MAX_PARAMS)]})
    db.execute(
        "INSERT INTO docs VALUES (100, ?)",
        [json.dumps({"g": "ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩ абвгдеёжзийклмнопрстуфхцчшщъыьэюя"})],
    )
    try:
        assert ids(db, {"g": {"$icontains": "αβγδεζηθικλμνξοπρστυφχψω"}}) == {100}
        assert ids(db, {"g": {"$icontains": "АБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ"}}) == {100}
        assert ids(db, {"g": {"$icontains": "ω а"}}) == {100}
        assert ids(db, {"g": {"$icontains": "ψω б"}}) == set()
        assert ids(db, {"g": {"$icontains": "ж" * 5_000}}) == set()
    finally:
        db.execute("DELETE FROM docs WHERE rowid = 100")
    with pytest.raises(FilterError, match="too long"):
        compile_filter({"g": {"$icontains": "k" * 20_000}})


def test_filter_key_is_canonical():
    assert filter_key({"a": 1, "b": {"$in": [1, 2]}}) == filter_key({"b": {"$in": [1, 2]}, "a": 1})
    assert filter_key({"a": 1}) != filter_key({"a": True}) != filter_key({"a": 1.0})


# ------------------------------------------------------------------------------------------------------------
# $id: conditions on the document id
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def idcol():
    col = Collection(dim=4, index_threshold=8)
    rng = np.random.default_rng(0)
    col.add(
        rng.normal(size=(40, 4)).astype(np.float32),
        ids=[f"d{i}" for i in range(40)],
        metadatas=[{"n": i, "even": i % 2 == 0} for i in range(40)],
    )
    yield col
    col.close()


def got(col: Collection, flt: dict) -> set[str]:
    return {h.id for h in col.get(filter=flt)}


@pytest.mark.parametrize(
    "flt, want",
    [
        ({"$id": "d3"}, {"d3"}),
        ({"$id": {"$eq": "d3"}}, {"d3"}),
        ({"$id": {"$ne": "d3"}}, {f"d{i}" for i in range(40)} - {"d3"}),
        ({"$id": {"$in": ["d1", "d2", "nope"]}}, {"d1", "d2"}),
        ({"$id": {"$in": []}}, set()),
        ({"$id": {"$nin": []}}, {f"d{i}" for i in range(40)}),
        ({"$id": {"$nin": [f"d{i}" for i in range(1, 40)]}}, {"d0"}),
        ({"$and": [{"$id": {"$in": ["d1", "d2", "d4"]}}, {"even": True}]}, {"d2", "d4"}),
        ({"$or": [{"$id": "d1"}, {"n": 5}]}, {"d1", "d5"}),
        ({"$not": {"$id": {"$in": [f"d{i}" for i in range(2, 40)]}}}, {"d0", "d1"}),
        ({"$id": {"$in": ["d1", "d2"], "$ne": "d1"}}, {"d2"}),
    ],
)
def test_id_conditions(idcol, flt, want):
    assert got(idcol, flt) == want
    assert idcol.count(flt) == len(want)


def test_id_filter_inside_search_and_text_search(idcol):
    q = np.ones(4, dtype=np.float32)
    hits = idcol.search(q, k=5, filter={"$id": {"$in": ["d7", "d9"]}})
    assert {h.id for h in hits} == {"d7", "d9"}
    hits = idcol.search(q, k=40, filter={"$id": {"$nin": ["d7", "d9"]}})
    assert len(hits) == 38 and not {"d7", "d9"} & {h.id for h in hits}


def test_id_in_takes_a_long_list_as_one_parameter(idcol):
    many = [f"x{i}" for i in range(100_000)] + ["d5"]
    _, params = compile_filter({"$id": {"$in": many}})
    assert len(params) == 1
    assert got(idcol, {"$id": {"$in": many}}) == {"d5"}
    assert idcol.count({"$id": {"$nin": many}}) == 39


@pytest.mark.parametrize(
    "flt, match",
    [
        ({"$id": 3}, "string id"),
        ({"$id": {"$in": "d1"}}, "needs a list"),
        ({"$id": {"$in": ["d1", 2]}}, "string ids"),
        ({"$id": {"$gt": "d1"}}, "unknown \\$id operator"),
        ({"$id": {}}, "empty condition"),
        ({"$id": "a\x00b"}, "NUL"),
        ({"$id": {"$nin": ["ok", "a\ud800"]}}, "surrogate"),
        ({"$id": {"$in": ["ok"] * 1000 + ["a\x00"]}}, "NUL"),
    ],
)
def test_invalid_id_conditions(flt, match):
    with pytest.raises(FilterError, match=match):
        compile_filter(flt)


# ----------------------------------------------------------------------------------------------------------
# $icontains case folding (the cases the LlamaIndex adapter's TEXT_MATCH_INSENSITIVE relies on, here on the
# compiler alone): Unicode lower-casing as Python's str.lower, final sigma folded, several-character lower cases
# ----------------------------------------------------------------------------------------------------------
FOLD_DOCS = ["Москва и Петербург", "KELVIN K", "İstanbul", "ΣΟΦΙΑ", "σοφίας οδός", "straße", "plain ascii", ""]


@pytest.fixture(scope="module")
def fold_db():
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE docs (rowid INTEGER PRIMARY KEY, metadata TEXT NOT NULL)")
    metas = [{"s": s, "l": [s, "x"]} for s in FOLD_DOCS]
    rows = [(i, json.dumps(m, ensure_ascii=False)) for i, m in enumerate(metas)]
    con.executemany("INSERT INTO docs VALUES (?, ?)", rows)
    yield con
    con.close()


@pytest.mark.parametrize(
    "needle",
    ["москва", "МОСКВА", "kelvin k", "\u212a", "i̇stanbul", "İSTANBUL", "σοφια", "ΣΟΦΊΑΣ", "οδος", "ΟΔΌΣ", "STRASSE",
     "STRAßE", "PLAIN", "a", "", "*", "[a]"],
)  # fmt: skip
def test_icontains_folds_case_as_python(fold_db, needle):
    folded = needle.lower().replace("ς", "σ")
    want_sub = {i for i, s in enumerate(FOLD_DOCS) if folded in s.lower().replace("ς", "σ")}
    assert ids(fold_db, {"s": {"$icontains": needle}}) == want_sub
    want_elem = {i for i, s in enumerate(FOLD_DOCS) if folded == s.lower().replace("ς", "σ")} | (
        set(range(len(FOLD_DOCS))) if folded == "x" else set()
    )
    assert ids(fold_db, {"l": {"$icontains": needle}}) == want_elem  # a list element equal ignoring case


# ----------------------------------------------------------------------------------------------------------
# $document and $id conditions on the compiler alone (docs.text, docs.id and the full-text table)
# ----------------------------------------------------------------------------------------------------------
TEXTS = ["The quick brown fox", "jumped over the lazy dog", None, "Foxes are QUICK", "ÉCOLE normale", ""]


@pytest.fixture(scope="module")
def text_db():
    from spann_vectorstore import fulltext

    if not fulltext.available():
        pytest.skip("this Python's SQLite has no FTS5")
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE docs (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL, text TEXT, metadata TEXT NOT NULL)")
    con.executemany(
        "INSERT INTO docs VALUES (?, ?, ?, ?)", [(i, f"d{i}", t, json.dumps({"n": i})) for i, t in enumerate(TEXTS)]
    )
    fulltext.create(con)
    fulltext.index_rows(con, list(enumerate(TEXTS)))
    yield con
    con.close()


@pytest.mark.parametrize(
    "flt, want",
    [
        ({"$document": {"$contains": "quick"}}, {0}),  # case-sensitive substring
        ({"$document": {"$contains": "Fox"}}, {3}),
        ({"$document": {"$not_contains": "quick"}}, {1, 2, 3, 4, 5}),  # no text: does not contain it
        ({"$document": {"$icontains": "QUICK"}}, {0, 3}),
        ({"$document": {"$icontains": "école"}}, {4}),
        ({"$document": {"$match": "fox"}}, {0, 3}),  # porter stemming: foxes -> fox
        ({"$document": {"$match": "quick fox"}}, {0, 3}),  # every word
        ({"$document": {"$match": "quick dog"}}, set()),
        ({"$document": {"$match": "ecole"}}, {4}),  # diacritics folded
        ({"$document": {"$match": "AND OR NOT *"}}, set()),  # data, not FTS5 syntax; no words: nothing
        ({"$document": {"$contains": "quick", "$icontains": "brown"}}, {0}),
        ({"$or": [{"$document": {"$contains": "lazy"}}, {"n": {"$gte": 4}}]}, {1, 4, 5}),
        ({"$not": {"$document": {"$match": "fox"}}}, {1, 2, 4, 5}),
        ({"$id": "d2"}, {2}),
        ({"$id": {"$ne": "d2"}}, {0, 1, 3, 4, 5}),
        ({"$id": {"$in": ["d1", "d3", "nope"]}}, {1, 3}),
        ({"$id": {"$nin": ["d1", "d3"]}}, {0, 2, 4, 5}),
        ({"$id": {"$in": []}}, set()),
        ({"$id": {"$nin": []}}, set(range(6))),
        ({"$id": {"$in": ["d0", "d1"]}, "$document": {"$contains": "dog"}}, {1}),
    ],
)
def test_document_and_id_conditions(text_db, flt, want):
    sql, params = compile_filter(flt)
    assert {r for (r,) in text_db.execute(f"SELECT rowid FROM docs WHERE {sql}", params)} == want


@pytest.mark.parametrize(
    "flt, match",
    [
        ({"$document": "fox"}, "\\$document needs a condition"),
        ({"$document": {}}, "\\$document needs a condition"),
        ({"$document": {"$regex": "f.x"}}, "unknown \\$document operator '\\$regex'"),
        ({"$document": {"$contains": ""}}, "non-empty string"),
        ({"$document": {"$match": 3}}, "non-empty string"),
        ({"$document": {"$contains": "a\x00"}}, "NUL"),
        ({"$id": {}}, "empty condition for \\$id"),
        ({"$id": 3}, "\\$id \\$eq needs a string id, got int"),
        ({"$id": {"$in": "d1"}}, "\\$id \\$in needs a list"),
        ({"$id": {"$in": ["d1", 2]}}, "\\$id \\$in needs string ids, got int"),
        ({"$id": {"$gt": "d1"}}, "unknown \\$id operator"),
        ({"$and": [{"$document": {"$contains": "x"}}, {"a": {"$bogus": 1}}]}, "unknown filter operator '\\$bogus'"),
    ],
)
def test_invalid_document_and_id_conditions(flt, match):
    with pytest.raises(FilterError, match=match):
        compile_filter(flt)


def test_document_filter_and_uses_text_index():
    from spann_vectorstore.filters import document_filter, uses_text_index

    assert document_filter({"$contains": "x"}) == {"$document": {"$contains": "x"}}
    both = document_filter({"$and": [{"$contains": "x"}, {"$or": [{"$match": "y"}, {"$contains": "z"}]}]})
    inner = {"$or": [{"$document": {"$match": "y"}}, {"$document": {"$contains": "z"}}]}
    assert both == {"$and": [{"$document": {"$contains": "x"}}, inner]}
    with pytest.raises(FilterError, match="non-empty list"):
        document_filter({"$or": []})
    assert uses_text_index(both) and uses_text_index({"$not": {"$document": {"$match": "a"}}})
    assert not uses_text_index({"$document": {"$contains": "match"}}) and not uses_text_index({"a": "$match"})


def test_long_or_chains_compile_flat_enough(db):
    """Many terms under one $or are grouped (SQLite nests each OR term one level; its limit is 1000)."""
    flt = {"$or": [{"v": i} for i in range(3000)]}
    assert ids(db, flt) == {0, 1}  # v == 1 (and 1.0); True and "1" are other types
    assert ids(db, {"$and": [{"v": {"$ne": i}} for i in range(2, 3000)]}) == ALL


def test_validate_metadata_and_text_problem_alone():
    from spann_vectorstore.filters import text_problem, validate_metadata

    assert text_problem("fine") is None and text_problem("a\x00b") == "holds a NUL character"
    assert text_problem("a\x00b", nul=False) is None and "surrogate" in text_problem("\udc00")
    validate_metadata({"a": [1, {"b": "ok"}], "n": INT64_MAX, "f": 1e300, "none": None}, "m")
    with pytest.raises(ValueError, match=r"m field 'a\[1\]\.b' holds a NUL"):
        validate_metadata({"a": [1, {"b": "x\x00"}]}, "m")
    with pytest.raises(ValueError, match="m key 'k\\\\udc00' holds a lone surrogate"):
        validate_metadata({"k\udc00": 1}, "m")
    with pytest.raises(ValueError, match="outside int64"):
        validate_metadata({"a": {"b": [INT64_MIN - 1]}}, "m")
    deep: dict = {}
    cur = deep
    for _ in range(MAX_METADATA_DEPTH):
        cur["d"] = {}
        cur = cur["d"]
    with pytest.raises(ValueError, match=f"deeper than {MAX_METADATA_DEPTH}"):
        validate_metadata(deep, "m")
