"""Differential fuzzing of the filter language: hypothesis draws hostile metadata documents (unicode, SQL-looking
strings, quotes, glob characters, integers near the int64 limits, floats, booleans, null, mixed and nested lists
and objects, dotted paths, missing fields) and filters over every operator, and the documents each filter
selects (the compiled SQL over an in-memory SQLite table, and a Collection's ``get``/``count``/``search``) must
be exactly the ones the plain-Python reference evaluator (``filter_reference.py``, written from the documented
semantics) selects. A third property feeds arbitrary junk to the compiler: it may only raise ``FilterError``.

The default run is bounded (a few seconds). A longer run::

    HYPOTHESIS_PROFILE=nightly python -m pytest -q tests/test_filters_fuzz.py   # 20x the examples

(``HYPOTHESIS_PROFILE`` names any registered hypothesis profile; ``nightly`` is registered here.)

Field indexes: every property also runs each filter with drawn field indexes (``Collection.create_index``: a
SQLite expression index per field, of a drawn type, that the compiler writes conditions for), and the rows it
selects must be the reference's too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sqlite3

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spann_vectorstore import Collection, FilterError
from spann_vectorstore.filters import (
    INDEX_TYPES,
    INT64_MAX,
    INT64_MIN,
    OPERATORS,
    compile_filter,
    filter_key,
    index_parts,
    validate_metadata,
)

from .filter_reference import MISSING, json_type, matches
from .filter_reference import resolve as resolve_path

settings.register_profile("nightly", max_examples=2000, deadline=None)
_PROFILE = os.environ.get("HYPOTHESIS_PROFILE")
_BASE = settings.get_profile(_PROFILE) if _PROFILE else settings(max_examples=100)
# hypothesis warns once that the reprs of these strategies (which hold the value pools) are long
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")


def fuzz(scale: float = 1.0) -> settings:
    """Settings for one property: the base example count times ``scale``, no deadline (shared 2-core CI)."""
    return settings(
        _BASE,
        max_examples=max(10, int(_BASE.max_examples * scale)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ----------------------------------------------------------------------------------------------------------
# strategies
# ----------------------------------------------------------------------------------------------------------
KEYS = ["a", "b", "n", "tags", "é", "ключ", "' OR 1=1 --", "x y", "a.b", "$d", 'q"k', "back\\slash", "", "\n"]
FIELD_PARTS = ["a", "b", "n", "tags", "é", "ключ", "' OR 1=1 --", "x y", "$d", "missing"]
SPECIAL = [
    "",
    " ",
    "a",
    "A",
    "b",
    "ab",
    "' OR 1=1 --",
    '"; DROP TABLE docs; --',
    "'",
    '"',
    "\\",
    "%",
    "_",
    "*",
    "?",
    "[a]",
    "[",
    "]",
    "a*b",
    "[^a]",
    "null",
    "true",
    "1",
    "[1,2]",
    "{}",
    "\n",
    "\x01",
    "\x7f",
    "\u2028",
    "😀",
    "İstanbul",
    "istanbul",
    "ISTANBUL",
    "i\u0307",
    "ΣΟΦΙΑ",
    "σοφια",
    "ΟΔΟΣ",
    "οδος",
    "ς",
    "Straße",
    "STRASSE",
    "ẞ",
    "\u212aelvin",
    "kelvin",
    "K",
    "Москва",
    "МОСКВА",
    "ǅ",
    "ＡＢＣ",
    "ａｂｃ",
    "ÉCOLE",
    "école",
]
TEXT = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")  # what metadata can hold
STRINGS = st.one_of(st.sampled_from(SPECIAL), st.text(TEXT, max_size=6))
INTS = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([2**31, 2**53, 2**53 + 1, INT64_MAX, INT64_MAX - 1, INT64_MIN, INT64_MIN + 1, -(2**53) - 1]),
    st.integers(INT64_MIN, INT64_MAX),
)
FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, 0.5, 1.0, -1.0, 2.0**53, 2.0**63, -(2.0**63), 1e308, -1e308, 5e-324, 0.1]),
    st.floats(allow_nan=False, allow_infinity=False),
)
# half the draws from a small pool, so that documents and operands meet (1 vs 1.0 vs true vs "1" vs [1], ...)
COMMON_VALUES = [None, True, False, 0, 1, -1, 2, 0.0, 1.0, -0.0, 0.5, "", "a", "A", "1", "[1,2]", "true"]
COMMON_VALUES += [INT64_MAX, INT64_MIN]
COMMON = st.sampled_from(COMMON_VALUES)


def often(common: st.SearchStrategy, other: st.SearchStrategy, times: int = 3) -> st.SearchStrategy:
    """``common`` ``times`` as often as ``other``."""
    return st.one_of(*[common] * times, other)


SCALARS = st.one_of(COMMON, st.none(), st.booleans(), INTS, FLOATS, STRINGS)
DOC_KEYS = often(st.sampled_from(["a", "b", "tags"]), st.sampled_from(KEYS))
NESTED = st.recursive(
    SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(DOC_KEYS, c, max_size=3), max_leaves=8
)
# a loose schema (most documents have some of a, b, n, tags), plus stray keys
DOCS = st.builds(
    lambda fields, stray: {**stray, **fields},
    st.fixed_dictionaries(
        {},
        optional={
            "a": often(SCALARS, NESTED, 2),
            "b": often(st.dictionaries(DOC_KEYS, often(SCALARS, NESTED), max_size=3), SCALARS, 2),
            "n": st.one_of(COMMON, INTS, FLOATS),
            "tags": often(st.lists(often(SCALARS, NESTED, 4), max_size=4), SCALARS),
        },
    ),
    st.dictionaries(st.sampled_from(KEYS), NESTED, max_size=2),
)

ORDERED = st.one_of(  # operands of $gt/$gte/$lt/$lte: anything but null
    st.sampled_from([x for x in COMMON_VALUES if x is not None]),
    st.booleans(),
    INTS,
    FLOATS,
    STRINGS,
    st.sampled_from([math.inf, -math.inf]),
)
OPERANDS = st.one_of(st.none(), ORDERED)
TYPE_NAMES = st.sampled_from(["string", "number", "boolean", "null", "array", "object"])
FIELD = st.one_of(
    st.sampled_from(["a", "b", "tags", "a.b"]),
    st.sampled_from(FIELD_PARTS).filter(lambda p: p != "$d"),
    st.lists(st.sampled_from(FIELD_PARTS), min_size=2, max_size=3).map(".".join).filter(lambda f: f[0] != "$"),
)


def twins(x):
    """Operands that meet stored scalar ``x``: itself, its look-alikes of other types (true/1/1.0/"1"), its
    neighbours (int64 and float boundaries) and, for strings, other cases and substrings."""
    if x is None:
        return [None, 0, False, "null"]
    if isinstance(x, bool):
        return [x, int(x), float(x), str(x).lower()]
    if isinstance(x, int):
        near = [y for y in (x - 1, x + 1) if INT64_MIN <= y <= INT64_MAX]
        return [x, float(x), str(x), *near, *([bool(x)] if x in (0, 1) else [])]
    if isinstance(x, float):
        whole = [int(x)] if x.is_integer() and INT64_MIN <= x <= INT64_MAX else []
        return [x, str(x), math.nextafter(x, math.inf), math.nextafter(x, -math.inf), *whole]
    return [x, x.upper(), x.lower(), x.swapcase(), x[1:], x[:-1], x[1:-1], x + "a"]


def scalars_and_paths(docs: list[dict]) -> tuple[list, list[str]]:
    """Every scalar in ``docs`` (inside lists and objects too) and every dotted path a filter can name."""
    scalars, paths = [], set()
    stack = [(d, "") for d in docs]
    while stack:
        obj, path = stack.pop()
        if isinstance(obj, dict):
            for k, v in obj.items():
                sub = f"{path}.{k}" if path else k
                try:
                    compile_filter({sub: {"$exists": True}})
                    paths.add(sub)
                except FilterError:
                    continue
                stack.append((v, sub))
        elif isinstance(obj, list):
            stack += [(v, path) for v in obj]
        else:
            scalars.append(obj)
    return scalars, sorted(paths)


@dataclasses.dataclass(frozen=True)
class Pick:
    """A placeholder in a drawn filter for an entry of one of the documents' pools (``pools``): a path, a
    value near a stored one, one of those that is not null, or a string. The strategies are built once (a
    strategy per example costs hypothesis more than the test); :func:`resolve` fills the filter in."""

    pool: str
    index: int


def pools(docs: list[dict]) -> dict[str, list]:
    scalars, paths = scalars_and_paths(docs)
    near = [t for x in scalars for t in twins(x) if not isinstance(t, float) or not math.isnan(t)]
    return {
        "path": paths or ["missing"],
        "near": near or [None],
        "ordered": [t for t in near if t is not None] or [0],
        "needle": [t for t in near if isinstance(t, str)] or [""],
    }


def resolve(template: object, pool: dict[str, list]) -> object:
    """``template`` with each :class:`Pick` replaced by its pool entry."""
    if isinstance(template, Pick):
        entries = pool[template.pool]
        return entries[template.index % len(entries)]
    if isinstance(template, dict):
        return {resolve(k, pool): resolve(v, pool) for k, v in template.items()}
    if isinstance(template, list):
        return [resolve(v, pool) for v in template]
    return template


def pick(name: str) -> st.SearchStrategy:
    return st.builds(Pick, st.just(name), st.integers(0, 1023))


def single(key: object, value: object) -> dict:
    return {key: value}


def merge(dicts: list[dict]) -> dict:
    return {k: v for d in dicts for k, v in d.items()}


# each drawn half the time from the documents' own paths and values
PATH = often(pick("path"), FIELD, 1)
OPERAND = often(pick("near"), OPERANDS, 1)
OPERAND_FOR = {
    "$eq": OPERAND,
    "$ne": OPERAND,
    **dict.fromkeys(("$gt", "$gte", "$lt", "$lte"), often(pick("ordered"), ORDERED, 1)),
    "$in": st.lists(OPERAND, max_size=4),
    "$nin": st.lists(OPERAND, max_size=4),
    "$contains": OPERAND,
    "$icontains": often(pick("needle"), STRINGS, 1),
    "$exists": st.booleans(),
    "$type": TYPE_NAMES | st.lists(TYPE_NAMES, min_size=1, max_size=3),
    "$size": st.integers(0, 4),
}
ONE_OP = st.one_of([st.builds(single, st.just(op), operand) for op, operand in OPERAND_FOR.items()])
CONDITION = often(st.lists(ONE_OP, min_size=1, max_size=2).map(merge), OPERAND)
FILTERS = st.recursive(
    often(st.builds(single, PATH, CONDITION), st.just({}), 9),
    lambda c: st.one_of(
        st.builds(single, st.just("$and"), st.lists(c, min_size=1, max_size=3)),
        st.builds(single, st.just("$or"), st.lists(c, min_size=1, max_size=3)),
        st.builds(single, st.just("$not"), c),
        st.lists(c, min_size=2, max_size=2).map(merge),
    ),
    max_leaves=5,
)


# ----------------------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def db():
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE docs (rowid INTEGER PRIMARY KEY, metadata TEXT NOT NULL)")
    yield con
    con.close()


def store(db: sqlite3.Connection, docs: list[dict]) -> list[dict]:
    """Replace the table's rows with ``docs`` as the Collection stores them; returns them as read back."""
    db.execute("DELETE FROM docs")
    for i, m in enumerate(docs):
        validate_metadata(m, f"docs[{i}]")  # the strategies only draw what metadata can hold
    rows = [(i, json.dumps(m, allow_nan=False, ensure_ascii=False)) for i, m in enumerate(docs)]
    db.executemany("INSERT INTO docs VALUES (?, ?)", rows)
    return [json.loads(js) for _, js in rows]


def selected(db: sqlite3.Connection, flt: dict, indexes: dict[str, str] | None = None) -> set[int]:
    sql, params = compile_filter(flt, indexes)
    return {r for (r,) in db.execute(f"SELECT rowid FROM docs WHERE {sql}", params)}


def set_indexes(db: sqlite3.Connection, indexes: dict[str, str]) -> dict[str, str]:
    """Make ``indexes`` (field -> type) the table's field indexes, as ``Collection.create_index`` makes them."""
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'fx%'").fetchall():
        db.execute(f"DROP INDEX {name}")
    for i, (field, typ) in enumerate(indexes.items()):
        typ_sql, val_sql, guard = index_parts(field, typ)
        db.execute(f"CREATE INDEX fx{i} ON docs ({typ_sql}, {val_sql}) WHERE {guard}")
    return indexes


def drawn_indexes(db: sqlite3.Connection, stored: list[dict], paths: list[str], types: list[str]) -> dict[str, str]:
    """Indexes of the drawn ``types`` on the documents' paths and on the fields filters draw most; ``"stored"``:
    the type of a scalar the documents hold there (so that operands near the stored values use the index)."""
    fields = list(dict.fromkeys([*paths, "a", "b", "n", "tags", "a.b"]))
    out = {}
    for field, typ in zip(fields, types):
        if typ == "stored":
            kinds = [json_type(v) for m in stored if (v := resolve_path(m, field)) is not MISSING]
            kinds = [k for k in kinds if k in ("string", "number", "boolean")]
            if not kinds:
                continue
            typ = {"string": "keyword", "number": "float", "boolean": "bool"}[kinds[0]]
        out[field] = typ
    return set_indexes(db, out)


def check(db: sqlite3.Connection, stored: list[dict], flt: dict, indexes: dict[str, str] | None = None) -> None:
    """The filter and its ``$not`` (the exact complement: no clause may be SQL NULL) select what the reference
    selects, without field indexes and with ``indexes`` (created on ``db``)."""
    got = selected(db, flt)
    want = {i for i, m in enumerate(stored) if matches(m, flt)}
    assert got == want, f"filter {flt!r}: SQL {sorted(got)} != reference {sorted(want)}; docs {stored}"
    assert selected(db, {"$not": flt}) == set(range(len(stored))) - got, f"$not of {flt!r}; docs {stored}"
    if indexes:
        got = selected(db, flt, indexes)
        assert got == want, f"filter {flt!r}, indexes {indexes}: SQL {sorted(got)} != reference {sorted(want)}"
        assert selected(db, {"$not": flt}, indexes) == set(range(len(stored))) - want, f"$not of {flt!r}, {indexes}"


INDEX_TYPE_LISTS = st.lists(often(st.just("stored"), st.sampled_from(sorted(INDEX_TYPES))), min_size=12, max_size=12)


@fuzz()
@given(docs=st.lists(DOCS, min_size=2, max_size=8), types=INDEX_TYPE_LISTS, data=st.data())
def test_every_operator_agrees_with_the_reference(db, docs, types, data):
    """Each operator once per example, on a path of the documents (or any), operands near their values;
    without and with field indexes of drawn types."""
    stored = store(db, docs)
    pool = pools(stored)
    indexes = drawn_indexes(db, stored, pool["path"], types)
    for op, operand in OPERAND_FOR.items():
        flt = resolve({data.draw(PATH, label=op): {op: data.draw(operand, label=f"{op} operand")}}, pool)
        check(db, stored, flt, indexes)


@fuzz()
@given(
    docs=st.lists(DOCS, min_size=2, max_size=8),
    templates=st.lists(FILTERS, min_size=1, max_size=10),
    types=INDEX_TYPE_LISTS,
)
def test_filter_trees_agree_with_the_reference(db, docs, templates, types):
    """Random trees of $and, $or, $not, several keys and several operators per field; without and with
    field indexes of drawn types."""
    stored = store(db, docs)
    pool = pools(stored)
    indexes = drawn_indexes(db, stored, pool["path"], types)
    for template in templates:
        check(db, stored, resolve(template, pool), indexes)


HOSTILE_DOCS: list[dict] = [
    {"a": "' OR 1=1 --", "n": INT64_MAX, "tags": ["a", 1, True, None, [1, 2], {"a": 1}]},
    {"a": "A", "n": INT64_MIN, "tags": ["A", 1.0, False, "[1,2]"]},
    {"a": 1, "n": INT64_MIN + 1, "tags": [0, "", "*"], "b": {"a": {"b": "deep"}}},
    {"a": True, "n": -(2**53) - 1, "tags": "a, b", "b": {"a": 2.5}},
    {"a": None, "n": 2**53 + 1, "tags": [], "é": "ÉCOLE", "ключ": "МОСКВА"},
    {"a": [1, 2], "n": 2.0**53, "tags": [None], "x y": "İstanbul", "' OR 1=1 --": 1},
    {"a": {"b": 1}, "n": -0.0, "tags": ["ΣΟΦΙΑ", "\u212aelvin"], "$d": 1, "a.b": 2},
    {"a": "", "n": 1e308, "tags": [[]], 'q"k': "quote", "back\\slash": "\\"},
    {"a": "a\nb\x01\x7f", "n": 0, "tags": ["😀", "ǅ"], "b": "[^a]*?"},
    {},
]


HOSTILE_INDEXES = {
    "a": "keyword",
    "n": "float",
    "tags": "keyword",
    "b.a": "float",
    "x y": "keyword",
    "' OR 1=1 --": "integer",
    "é": "keyword",
    "a.b": "bool",
    "b": "bool",
}


@pytest.fixture(scope="module", params=["unindexed", "indexed"])
def hostile_collection(request):
    """The hostile documents in a Collection, without and with field indexes (``create_index``)."""
    col = Collection(None, dim=2, index_threshold=10_000)
    ids = [str(i) for i in range(len(HOSTILE_DOCS))]
    col.add(np.random.default_rng(0).standard_normal((len(HOSTILE_DOCS), 2)), metadatas=HOSTILE_DOCS, ids=ids)
    if request.param == "indexed":
        for field, typ in HOSTILE_INDEXES.items():
            col.create_index(field, typ)
        assert col.list_indexes() == dict(sorted(HOSTILE_INDEXES.items()))
    yield col
    col.close()


@fuzz(0.5)
@given(templates=st.lists(FILTERS, min_size=1, max_size=5))
def test_collection_reads_agree_with_the_reference(hostile_collection, templates):
    """``get``, ``count`` and a filtered ``search`` (the allowed-id path) select what the reference selects."""
    col = hostile_collection
    stored = [h.metadata for h in col.get()]
    pool = pools(stored)
    for flt in (resolve(t, pool) for t in templates):
        want = {str(i) for i, m in enumerate(stored) if matches(m, flt)}
        assert {h.id for h in col.get(filter=flt)} == want, flt
        assert col.count(filter=flt) == len(want), flt
        assert {h.id for h in col.search(np.ones(2), k=len(stored), filter=flt)} == want, flt


JUNK = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(st.characters(), max_size=4),
        st.sampled_from(["a", "a.b", "$d", ".a", "a..b", 'q"k', "\x00", "\ud800", *OPERATORS, "$bogus"]),
    ),
    lambda c: (
        st.lists(c, max_size=3)
        | st.dictionaries(
            st.one_of(st.sampled_from([*OPERATORS, "a", "a.b"]), st.text(st.characters(), max_size=3), st.integers()), c
        )
    ),
    max_leaves=8,
)


@fuzz()
@given(flt=JUNK)
def test_junk_filters_raise_filter_error_or_run(hostile_collection, flt):
    """Any value at all: the compiler raises ``FilterError`` (a ``ValueError``) or emits SQL that runs."""
    try:
        key = filter_key(flt)
    except FilterError:
        with pytest.raises(FilterError):
            compile_filter(flt)
        return
    assert isinstance(key, str)
    hostile_collection.count(filter=flt)
