"""Field indexes (``Collection.create_index``): create/list/drop, persistence and reopen, read-only handles,
type inference, bad input (clear exceptions, store unchanged), the index kept exact through adds, upserts,
deletes and clear, SQLite actually using it, and a damaged declaration named. That indexed filters select
what the reference evaluator selects is fuzzed in ``test_filters_fuzz.py`` (every property runs with drawn
indexes)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spann_vectorstore import Collection, CorruptStoreError, FilterError, ReadOnlyError
from spann_vectorstore.filters import compile_filter

from .filter_reference import matches

META = [
    {"city": ["paris", "lyon", "nice"][i % 3], "year": 2000 + i % 25, "price": i / 4, "ok": i % 2 == 0}
    | ({"mixed": [1, "1", True, None, 1.5][i % 5]} if i % 7 else {})
    for i in range(300)
]


def make(path=None, n=300, **kw):
    col = Collection(path, dim=8, index_threshold=100, **kw)
    x = np.random.default_rng(0).standard_normal((n, 8)).astype(np.float32)
    col.add(x, [f"t{i}" for i in range(n)], META[:n], [f"d{i}" for i in range(n)])
    return col


def plan(col: Collection, flt: dict) -> str:
    where, params = compile_filter(flt, col.list_indexes())
    rows = col._db.execute(f"EXPLAIN QUERY PLAN SELECT rowid FROM docs WHERE {where}", params).fetchall()
    return " | ".join(r[3] for r in rows)


def ids_where(col: Collection, flt: dict) -> list[str]:
    return sorted(h.id for h in col.get(filter=flt))


def reference(col: Collection, flt: dict) -> list[str]:
    return sorted(h.id for h in col.get() if matches(h.metadata, flt))


def schema(path) -> list[tuple]:
    with sqlite3.connect(path / "docs.sqlite") as db:
        out = db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        out += db.execute("SELECT key, value FROM settings WHERE key = 'field_indexes'").fetchall()
    db.close()
    return out


FILTERS = [
    {"city": "lyon"},
    {"city": {"$in": ["lyon", "nice"]}},
    {"year": {"$gte": 2010, "$lt": 2013}},
    {"year": 2004},
    {"year": {"$in": [2001, 2002.0]}},
    {"price": {"$gt": 10.25}},
    {"ok": True},
    {"ok": {"$in": [False]}},
    {"$or": [{"city": "nice"}, {"year": {"$lt": 2003}}]},
    {"$and": [{"city": "nice"}, {"year": {"$lt": 2003}}, {"ok": False}]},
    {"city": {"$ne": "lyon"}},
    {"$not": {"city": "lyon"}},
    {"year": {"$nin": [2001]}},
    {"mixed": 1},
    {"mixed": "1"},
    {"mixed": {"$gte": 1}},
    {"mixed": {"$in": [True, "1", None]}},
    {"mixed": {"$exists": False}},
    {"city": {"$contains": "yo"}},
]


def test_create_list_drop_and_indexed_filters_select_what_the_reference_selects(tmp_path):
    col = make(tmp_path / "c")
    before = {repr(f): ids_where(col, f) for f in FILTERS}
    assert col.list_indexes() == {}
    assert col.create_index("city") == "keyword"  # inferred
    assert col.create_index("year") == "integer"
    assert col.create_index("price") == "float"
    assert col.create_index("ok") == "bool"
    assert col.create_index("mixed", "integer") == "integer"
    assert col.list_indexes() == {
        "city": "keyword",
        "mixed": "integer",
        "ok": "bool",
        "price": "float",
        "year": "integer",
    }
    for f in FILTERS:
        assert ids_where(col, f) == before[repr(f)] == reference(col, f), f
        q = np.ones(8, np.float32)
        assert {h.id for h in col.search(q, k=300, filter=f)} == set(before[repr(f)]), f
        assert col.count(filter=f) == len(before[repr(f)])
    assert col.create_index("city", "keyword") == "keyword"  # again: a no-op
    assert col.create_index("year", "float") == "integer"  # integer and float are one index
    col.drop_index("price")
    assert "price" not in col.list_indexes()
    assert ids_where(col, {"price": {"$gt": 10.25}}) == before[repr({"price": {"$gt": 10.25}})]
    col.close()
    with Collection.open(tmp_path / "c") as col:  # persisted
        assert col.list_indexes() == {"city": "keyword", "mixed": "integer", "ok": "bool", "year": "integer"}
        assert "USING INDEX" in plan(col, {"city": "lyon"})


@pytest.mark.parametrize(
    "flt",
    [
        {"city": "lyon"},
        {"city": {"$in": ["lyon", "nice"]}},
        {"year": {"$gte": 2010, "$lt": 2013}},
        {"ok": True},
        {"$or": [{"city": "nice"}, {"year": {"$lt": 2003}}]},
        {"$and": [{"city": "nice"}, {"price": {"$gt": 3}}]},
    ],
)
def test_sqlite_answers_indexed_conditions_from_the_index(flt):
    col = make()
    assert "SCAN docs" in plan(col, flt)
    for field, typ in (("city", "keyword"), ("year", "integer"), ("ok", "bool")):
        col.create_index(field, typ)
    p = plan(col, flt)
    assert "USING INDEX field_index_" in p and "SCAN docs" not in p, p
    assert "SCAN docs" in plan(col, {"$not": flt}) or "$or" in flt  # negations scan
    col.close()


def test_writes_keep_the_index_exact(tmp_path):
    col = make(tmp_path / "c")
    col.create_index("city")
    col.create_index("year")
    x = np.random.default_rng(1).standard_normal((50, 8)).astype(np.float32)
    col.add(x, None, [{"city": "lyon", "year": 1999}] * 50, [f"d{i}" for i in range(50)])  # upserts
    col.add(x[:5], None, [{"city": "rome"}] * 5, [f"n{i}" for i in range(5)])
    col.delete(filter={"city": "nice", "year": {"$lt": 2010}})
    col.delete(ids=["d60", "d61"])
    for f in [*FILTERS[:10], {"city": "rome"}, {"year": 1999}]:
        assert ids_where(col, f) == reference(col, f), f
    assert col.count(filter={"year": 1999}) == 50
    col.clear()
    assert col.count(filter={"city": "lyon"}) == 0 and col.list_indexes() == {"city": "keyword", "year": "integer"}
    col.add(x[:3], None, [{"city": "lyon"}] * 3, ["a", "b", "c"])
    assert ids_where(col, {"city": "lyon"}) == ["a", "b", "c"]
    assert col._db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    col.close()


def test_read_only_handle_uses_and_follows_the_indexes(tmp_path):
    col = make(tmp_path / "c")
    reader = Collection(tmp_path / "c", read_only=True)
    assert reader.list_indexes() == {}
    col.create_index("city")
    assert reader.list_indexes() == {"city": "keyword"}
    assert "USING INDEX" in plan(reader, {"city": "lyon"})
    assert ids_where(reader, {"city": "lyon"}) == ids_where(col, {"city": "lyon"})
    with pytest.raises(ReadOnlyError):
        reader.create_index("year")
    with pytest.raises(ReadOnlyError):
        reader.drop_index("city")
    col.drop_index("city")
    assert reader.list_indexes() == {}
    reader.close()
    col.close()


@pytest.mark.parametrize(
    "args, error, match",
    [
        (("city", "text"), ValueError, "unknown index type 'text'"),
        (("city", "KEYWORD"), ValueError, "unknown index type"),
        (("", None), FilterError, "invalid filter field name"),
        (("$city", None), FilterError, "invalid filter field name"),
        (('ci"ty', "keyword"), FilterError, "invalid filter field name"),
        (("a..b", "keyword"), FilterError, "invalid filter field name"),
        ((7, "keyword"), FilterError, "invalid filter field name"),
        (("nothing", None), ValueError, "cannot infer the index type of field 'nothing'"),
        (("year", "keyword"), ValueError, "has an index of type 'integer'; drop_index"),
    ],
)
def test_bad_input_raises_and_leaves_the_store_unchanged(tmp_path, args, error, match):
    col = make(tmp_path / "c")
    col.create_index("year")
    before = schema(tmp_path / "c")
    with pytest.raises(error, match=match):
        col.create_index(*args)
    with pytest.raises(ValueError, match="field 'city' has no index; indexed fields: \\['year'\\]"):
        col.drop_index("city")
    assert schema(tmp_path / "c") == before
    assert col.list_indexes() == {"year": "integer"} and col.count() == 300
    col.close()


def test_failed_build_rolls_back(tmp_path, monkeypatch):
    col = make(tmp_path / "c")
    before = schema(tmp_path / "c")

    def boom(self, field, typ):
        self._db.execute("CREATE INDEX half_done ON docs (id)")
        raise KeyboardInterrupt

    monkeypatch.setattr(Collection, "_build_field_index", boom)
    with pytest.raises(KeyboardInterrupt):
        col.create_index("city")
    assert schema(tmp_path / "c") == before and col.list_indexes() == {}
    col.close()


def test_progress_bar_for_large_collections(tmp_path, capsys):
    col = Collection(None, dim=2, index_threshold=10**9, progress=True)
    n = 100_000
    col.add(np.ones((n, 2), np.float32), None, [{"k": i % 10} for i in range(n)], [str(i) for i in range(n)])
    col.create_index("k")
    assert "index on 'k'" in capsys.readouterr().err
    assert col.count(filter={"k": 3}) == 10_000
    col.close()


def test_damaged_index_declaration_names_the_file(tmp_path):
    col = make(tmp_path / "c")
    col.create_index("city")
    col.close()
    with sqlite3.connect(tmp_path / "c" / "docs.sqlite") as db:
        db.execute("UPDATE settings SET value = '{\"city\": \"nonsense\"}' WHERE key = 'field_indexes'")
    db.close()
    with pytest.raises(CorruptStoreError, match=r"docs\.sqlite' is damaged \(the settings row 'field_indexes'"):
        Collection.open(tmp_path / "c")


def test_a_lost_sqlite_index_is_made_again_on_open(tmp_path):
    col = make(tmp_path / "c")
    col.create_index("city")
    name = col._db.execute("SELECT name FROM sqlite_master WHERE name LIKE 'field_index_%'").fetchone()[0]
    col.close()
    with sqlite3.connect(tmp_path / "c" / "docs.sqlite") as db:
        db.execute(f"DROP INDEX {name}")
    db.close()
    with Collection.open(tmp_path / "c") as col:
        assert "USING INDEX" in plan(col, {"city": "lyon"})


def test_copy_keeps_the_indexes(tmp_path):
    col = make(tmp_path / "c")
    col.create_index("city")
    col.create_index("price", "float")
    col.copy_to(tmp_path / "copy")
    with Collection.open(tmp_path / "copy") as dst:
        assert dst.list_indexes() == {"city": "keyword", "price": "float"}
    col.close()


# ----------------------------------------------------------------------------------------------------------
# the allowed-ids cache brought forward by the writes since (Collection._allowed)
# ----------------------------------------------------------------------------------------------------------
CACHED_FILTERS = [
    {"g": 1},
    {"g": {"$in": [0, 2]}},
    {"$or": [{"g": 1}, {"h": "x"}]},
    {"$not": {"g": 1}},
    {"h": {"$ne": "x"}},
    {"$document": {"$contains": "7"}},
]
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(st.integers(0, 40), min_size=1, max_size=6, unique=True)),
        st.tuples(st.just("delete"), st.lists(st.integers(0, 40), min_size=1, max_size=4, unique=True)),
        st.tuples(st.just("delete_filter"), st.integers(0, 2)),
        st.tuples(st.just("clear"), st.just(0)),
        st.tuples(st.just("index"), st.sampled_from(["g", "h"])),
        st.tuples(st.just("search"), st.just(0)),
    ),
    min_size=1,
    max_size=12,
)


def _apply(col: Collection, op: str, arg, rng: np.random.Generator) -> None:
    if op == "add":  # new ids and upserts of old ones, with drawn metadata
        metas = [{"g": int(rng.integers(0, 3)), **({"h": "x"} if rng.random() < 0.5 else {})} for _ in arg]
        col.add(rng.standard_normal((len(arg), 4)), [f"text {i}" for i in arg], metas, [f"d{i}" for i in arg])
    elif op == "delete":
        col.delete(ids=[f"d{i}" for i in arg])
    elif op == "delete_filter":
        col.delete(filter={"g": arg})
    elif op == "clear":
        col.clear()
    elif op == "index" and arg not in col.list_indexes():
        col.create_index(arg, "integer" if arg == "g" else "keyword")


def _check_searches(handles: list[Collection]) -> None:
    for col in handles:
        n = max(col.count(), 1)
        for flt in CACHED_FILTERS:
            want = {h.id for h in col.get(filter=flt)}
            got = {h.id for h in col.search(np.ones(4), k=n, filter=flt)}
            assert got == want, (flt, col.read_only)
            # the cached rowids themselves (a deleted rowid left in would not show in search results)
            assert sorted(col._allowed(flt).tolist()) == sorted(col.index_ids(flt).values()), flt


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, seed=st.integers(0, 2**16))
def test_cached_allowed_ids_follow_every_write(tmp_path_factory, ops, seed):
    """Filtered searches between random writes (upserts, deletes by id and filter, clear, index creation)
    select what ``get(filter)`` selects, in a persistent writer (cache brought forward through the removed
    log, pruned by frequent snapshots), a read-only handle beside it, and an in-memory collection."""
    rng = np.random.default_rng(seed)
    path = tmp_path_factory.mktemp("cache") / "c"
    writer = Collection(path, dim=4, snapshot_every=3, index_threshold=10_000)
    memory = Collection(None, dim=4, index_threshold=10_000)
    _apply(writer, "add", [0], np.random.default_rng(0))  # the reader needs a store to open
    _apply(memory, "add", [0], np.random.default_rng(0))
    reader = Collection(path, read_only=True)
    try:
        _check_searches([writer, reader, memory])
        for op, arg in ops:
            state = rng.bit_generator.state
            _apply(writer, op, arg, rng)
            rng.bit_generator.state = state
            _apply(memory, op, arg, rng)
            _check_searches([writer, reader, memory])
    finally:
        reader.close()
        writer.close()
        memory.close()
