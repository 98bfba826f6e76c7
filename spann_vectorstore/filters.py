"""The one metadata filter language, compiled to a SQLite ``WHERE`` clause over the JSON metadata column.

Grammar (as LangChain's Chroma/FAISS stores accept, plus dotted paths, ``$contains`` and a few type/text tests)::

    {"field": value}                         equality (shorthand for {"field": {"$eq": value}})
    {"field": {"$eq"|"$ne"|"$gt"|"$gte"|"$lt"|"$lte": value}}
    {"field": {"$in"|"$nin": [v1, v2, ...]}}
    {"field": {"$contains": value}}          list field holds an element equal to value (as $eq: type-exact), or,
                                             for a string value, string field contains it as a substring
    {"field": {"$icontains": "text"}}        the same ignoring case: string field contains the substring, or
                                             list field holds a string equal to it (Unicode lower-casing)
    {"field": {"$exists": true|false}}
    {"field": {"$type": t | [t1, ...]}}      JSON type of the field, t in "string", "number", "boolean",
                                             "null", "array", "object" (a missing field has no type)
    {"field": {"$size": n}}                  list field with exactly n elements
    {"$and": [f1, f2, ...]}, {"$or": [...]}, {"$not": f}
    several keys in one dict are ANDed; "a.b.c" reaches into nested objects; {} matches every document.

Semantics. Values are JSON values: string, number (int and float are one type: ``1 == 1.0``), boolean, null,
array, object. Equality (``$eq $ne $in $nin`` and ``$contains`` on a list) is type-exact: ``true`` is not ``1``,
``"1"`` is not ``1``, ``null`` equals only ``null``, and an array or object never equals a scalar (so
``{"tags": "a"}`` does not match ``["a"]``: use ``$contains``). Ordering operators only compare like with like
(numbers with numbers, strings with strings by code point, booleans with booleans, ``false < true``), so
``{"year": {"$gt": 2020}}`` never matches a string "2021"; they do not take null. ``$ne`` and ``$nin`` also
match documents that lack the field. ``$contains`` with a non-string value on a string field is false.
Every clause is true or false, never SQL NULL (a missing field makes a test false), so ``$not`` is exact
negation. Unknown operators, malformed values and non-scalar comparands raise :class:`FilterError` (a
``ValueError``).

Document text (the filter's ``$document`` key)::

    {"$document": {"$contains": "text"}}     the document's text contains the substring (case-sensitive)
    {"$document": {"$not_contains": "text"}} ... does not contain it (documents without text included)
    {"$document": {"$icontains": "text"}}    ... contains it ignoring case (as the field operator)
    {"$document": {"$match": "words"}}       full-text match: every word of the query occurs in the text,
                                             as the text index tokenizes (case, diacritics and English
                                             suffixes folded; see :mod:`spann_vectorstore.fulltext`); the
                                             query is data, never FTS5 syntax; no words: matches nothing
    ``$document`` conditions combine with metadata ones under ``$and``/``$or``/``$not`` (Chroma's
    ``where_document``; :func:`document_filter` turns a Chroma-style ``where_document`` into one).

Document id (the filter's ``$id`` key, the id given at add)::

    {"$id": "x"}                             the document whose id is "x" (shorthand for {"$eq": "x"})
    {"$id": {"$eq"|"$ne": "x"}}
    {"$id": {"$in"|"$nin": ["x", "y", ...]}} id in (not in) the list: one JSON parameter whatever its length
    ``$id`` conditions combine with the others under ``$and``/``$or``/``$not``; ids are strings (anything
    else raises :class:`FilterError`). The search applies them inside the index like any filter.


``$icontains`` lower-cases like Python's ``str.lower`` (SQLite's own ``lower()`` only knows ASCII), except that
Greek final sigma is folded to σ on both sides.

Field indexes (``Collection.create_index``): a field declared with an index type (Qdrant's names: ``keyword``
for strings, ``integer`` or ``float`` for numbers, one JSON number type either way, ``bool`` for booleans) has a
SQLite expression index on ``(json_type, json_extract)`` of its path, partial to values of that type, in the same
database as the documents. Given ``indexes`` (field -> type), the compiler writes ``$eq $in $gt $gte $lt $lte``
conditions on such a field whose operand is of the index's type in the form the index answers (literal path,
the index's type guard); outside ``$not`` only, where a NULL test reads as false whatever its form. Whatever the
indexes, a filter selects the same documents: other conditions are scanned as before.

Limits (what SQLite's JSON functions can hold and compare exactly; :func:`validate_metadata` enforces them on
metadata at add, the compiler on filter operands): strings (values and keys) hold no NUL character (SQLite's
JSON functions cut a string at ``\\u0000``) and no lone surrogate; integers are int64 (``-2**63 .. 2**63-1``;
larger ones would be stored as doubles and compare inexactly); metadata nests dicts and lists at most
``MAX_METADATA_DEPTH`` (32) levels deep, the metadata dict itself being level 1. A field name is a non-empty
dotted path whose parts are non-empty and hold no ``"``, ``\\`` or control character (a metadata key holding
one is stored but cannot be filtered on) and which does not start with ``$``. A filter nests ``$and $or
$not`` at most ``MAX_FILTER_DEPTH`` (16) deep (SQLite's parser stack is shallow) and compiles to at most
``MAX_PARAMS`` (30,000) SQL parameters (an ``$in`` list costs a few, whatever its length); an ``$icontains``
text compiles to a GLOB pattern of at most 50,000 bytes (a few thousand characters).
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Any

from . import fulltext

_CMP = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_FIELD = re.compile(r'[^$"\\\x00-\x1f][^"\\\x00-\x1f]*')  # fullmatch: "$" would pass a final newline
_SURROGATE = re.compile("[\ud800-\udfff]")
OPERATORS = (*_CMP, "$in", "$nin", "$contains", "$icontains", "$exists", "$type", "$size", "$and", "$or", "$not")
DOCUMENT_OPERATORS = ("$contains", "$not_contains", "$icontains", "$match")
ID_OPERATORS = ("$eq", "$ne", "$in", "$nin")
_TYPES = {
    "string": ("text",),
    "number": ("integer", "real"),
    "boolean": ("true", "false"),
    "null": ("null",),
    "array": ("array",),
    "object": ("object",),
}
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_METADATA_DEPTH = 32
MAX_FILTER_DEPTH = 16
MAX_PARAMS = 30_000
_CHAIN = 16  # SQLite nests ``a OR b OR c ...`` one expression level per term (at most 1000): chain in groups
_GLOB_MAX = 50_000  # SQLITE_MAX_LIKE_PATTERN_LENGTH, the default


class FilterError(ValueError):
    """An invalid filter (unknown operator, bad operand)."""


def text_problem(s: str, *, nul: bool = True) -> str | None:
    """Why SQLite cannot hold string ``s`` exactly (NUL, when ``nul``, or a lone surrogate), or None."""
    if nul and "\x00" in s:
        return "holds a NUL character"
    if _SURROGATE.search(s):
        return "holds a lone surrogate (not encodable as UTF-8)"
    return None


def validate_metadata(meta: dict[str, Any], where: str) -> None:
    """Raise ``ValueError`` naming the field if ``meta`` holds a string (value or key) with a NUL or a lone
    surrogate, an integer outside int64, or dicts/lists nested deeper than ``MAX_METADATA_DEPTH``. Iterative,
    so a hostile depth raises this, not ``RecursionError``. Other types are left to ``json.dumps``."""
    stack: list[tuple[Any, str, int]] = [(meta, "", 1)]
    while stack:
        obj, path, depth = stack.pop()
        if depth > MAX_METADATA_DEPTH:
            raise ValueError(f"{where} field {path!r} nests dicts/lists deeper than {MAX_METADATA_DEPTH} levels")
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        for k, v in items:
            if isinstance(obj, dict):
                sub = f"{path}.{k}" if path else str(k)
                if isinstance(k, str) and (problem := text_problem(k)):
                    raise ValueError(f"{where} key {sub!r} {problem}")
            else:
                sub = f"{path}[{k}]"
            if isinstance(v, str) and (problem := text_problem(v)):
                raise ValueError(f"{where} field {sub!r} {problem}")
            elif isinstance(v, int) and not isinstance(v, bool) and not INT64_MIN <= v <= INT64_MAX:
                raise ValueError(f"{where} field {sub!r}: integer {v} is outside int64 (SQLite's JSON limit)")
            elif isinstance(v, (dict, list, tuple)):
                stack.append((v, sub, depth + 1))


def _path(field: str) -> str:
    if not isinstance(field, str) or not _FIELD.fullmatch(field) or "" in field.split(".") or _SURROGATE.search(field):
        msg = 'parts must be non-empty, without ", \\, control characters or a leading $'
        raise FilterError(f"invalid filter field name {field!r} ({msg})")
    return "$" + "".join(f'."{p}"' for p in field.split("."))


#: field index types (Qdrant's names) -> the JSON types (``json_type``) of the values such an index holds
INDEX_TYPES = {
    "keyword": ("text",),
    "integer": ("integer", "real"),
    "float": ("integer", "real"),
    "bool": ("false", "true"),
}


def _index_types(v: Any) -> tuple[str, ...] | None:
    """The JSON types of the index that can answer a comparison with scalar ``v`` (None: null, no index)."""
    if v is None:
        return None
    return INDEX_TYPES["bool" if isinstance(v, bool) else "keyword" if isinstance(v, str) else "float"]


def index_parts(field: str, index_type: str) -> tuple[str, str, str]:
    """SQL of a field index: its type expression, its value expression (both with the path as a literal, as an
    expression index needs) and the guard on the type that makes it partial. The compiler writes the same
    text into conditions the index answers: SQLite matches index expressions and partial-index guards by
    their text. Raises :class:`FilterError` for a bad field name, ``ValueError`` for an unknown type."""
    if index_type not in INDEX_TYPES:
        raise ValueError(f"unknown index type {index_type!r}; expected one of {tuple(INDEX_TYPES)}")
    lit = "'" + _path(field).replace("'", "''") + "'"
    typ = f"json_type(metadata, {lit})"
    types = INDEX_TYPES[index_type]
    guard = f"{typ} IN ({', '.join(repr(t) for t in types)})"
    return typ, f"json_extract(metadata, {lit})", guard


def _indexed_cmp(field: str, index_type: str, v: Any, op: str) -> tuple[str, list[Any]]:
    """``field op v`` (``v`` of the index's type) as the index answers it; NULL, not false, without the field
    (so only outside ``$not``)."""
    typ, val, guard = index_parts(field, index_type)
    if isinstance(v, bool) and op == "=":
        return f"({guard} AND {typ} = '{'true' if v else 'false'}')", []
    return f"({guard} AND {val} {op} ?)", [int(v) if isinstance(v, bool) else v]


def _scalar(v: Any, op: str) -> Any:
    """The operand as a plain bool, int, float, str or None; ``FilterError`` for anything SQLite cannot
    compare exactly with stored metadata."""
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int):
        if not INT64_MIN <= v <= INT64_MAX:
            raise FilterError(f"{op} operand {v} is outside int64 (metadata cannot hold it)")
        return int(v)
    if isinstance(v, float):
        if v != v:
            raise FilterError(f"{op} operand must not be NaN")
        return float(v)
    if isinstance(v, str):
        if problem := text_problem(v):
            raise FilterError(f"{op} operand {v!r} {problem} (metadata cannot hold it)")
        return str.__str__(v)
    raise FilterError(f"{op} operand must be a string, number, bool or null, got {type(v).__name__}")


def _same(v: Any, typ: str, typ_p: list[Any], val: str, val_p: list[Any], op: str = "=") -> tuple[str, list[Any]]:
    """SQL comparing a JSON value (its ``json_type`` expression ``typ``, its SQL value ``val``, each with
    its parameters) with scalar ``v`` under ``op``, only when both are of one type (numbers, strings,
    booleans; null only for ``=``). False or NULL otherwise."""
    if v is None:
        return f"({typ} = 'null')", typ_p
    if isinstance(v, bool) and op == "=":
        return f"({typ} = '{'true' if v else 'false'}')", typ_p
    if isinstance(v, bool):
        guard = "IN ('true', 'false')"
    elif isinstance(v, str):
        guard = "= 'text'"
    else:
        guard = "IN ('integer', 'real')"
    return f"({typ} {guard} AND {val} {op} ?)", [*typ_p, *val_p, int(v) if isinstance(v, bool) else v]


@functools.cache
def _upper_sources() -> dict[str, str]:
    """For each character ``c``, the non-ASCII characters whose ``str.lower()`` is exactly ``c``. Planes 0
    and 1 hold every cased script (planes 2-16: CJK, tags, private use)."""
    out: dict[str, str] = {}
    for cp in range(0x80, 0x20000):
        low = chr(cp).lower()
        if low != chr(cp) and len(low) == 1:
            out[low] = out.get(low, "") + chr(cp)
    out["σ"] += "ς"  # final sigma is folded to σ on both sides
    return out


@functools.cache
def _multi_lower() -> dict[str, str]:
    """Characters whose ``str.lower()`` is several characters (İ -> i + combining dot above)."""
    return {chr(cp): chr(cp).lower() for cp in range(0x80, 0x20000) if len(chr(cp).lower()) > 1}


def _fold_case(s: str) -> str:
    """The case folding of ``$icontains``: ``str.lower`` with final sigma folded to σ."""
    return s.lower().replace("ς", "σ")


def _folded(expr: str, expr_p: list[Any], needle: str) -> tuple[str, str, list[Any]]:
    """SQL matching ``expr`` against folded ``needle``, as ``(sql, glob pattern, params)``: ``sql GLOB
    pattern`` holds when ``_fold_case(expr) == needle``; with ``*`` around the pattern, when ``needle in
    _fold_case(expr)``. SQLite's ``lower()`` folds ASCII; a character class ``[cC…]`` in the pattern stands
    for each needle character and the non-ASCII characters lower-casing to it; ``replace()`` expands the few
    characters whose lower case is several characters, when they share one with the needle (any other
    character cannot take part in a match, folded or not). Flat, so any needle compiles (a ``replace()`` per
    character would nest past SQLite's parser stack)."""
    sql, params = f"lower({expr})", list(expr_p)
    for src, low in _multi_lower().items():
        if set(low) & set(needle):
            sql = f"replace({sql}, ?, ?)"
            params += [src, low]
    sources = _upper_sources()
    glob = "".join(f"[{c}{sources[c]}]" if c in sources else f"[{c}]" if c in "*?[" else c for c in needle)
    return sql, glob, params


def _field_clause(field: str, cond: Any, index_type: str | None = None) -> tuple[str, list[Any]]:
    """SQL for the conditions on one field; ``index_type``: the field's index, to be used (outside ``$not``)."""
    path = _path(field)
    indexed = INDEX_TYPES.get(index_type)
    if not isinstance(cond, dict):
        cond = {"$eq": cond}
    if not cond:
        raise FilterError(f"empty condition for field {field!r}")
    typ, ext = "json_type(metadata, ?)", "json_extract(metadata, ?)"
    parts = []
    for op, v in cond.items():
        if op in _CMP:
            v = _scalar(v, op)
            if v is None and op not in ("$eq", "$ne"):
                raise FilterError(f"{op} cannot compare with null")
            if indexed and op != "$ne" and _index_types(v) == indexed:
                parts.append(_indexed_cmp(field, index_type, v, _CMP[op]))
                continue
            sql, p = _same(v, typ, [path], ext, [path], "=" if op == "$ne" else _CMP[op])
            # coalesce(..., 0): a missing field makes the comparison NULL, and NOT NULL is NULL (no match);
            # every clause is two-valued so that $ne, $nin and $not match documents without the field
            parts.append((f"(NOT coalesce({sql}, 0))" if op == "$ne" else f"coalesce({sql}, 0)", p))
        elif op in ("$in", "$nin"):
            if not isinstance(v, (list, tuple, set, frozenset)):
                raise FilterError(f"{op} needs a list, got {type(v).__name__}")
            vals = [_scalar(x, op) for x in v]
            types = sorted({"null" if x is None else str(x).lower() for x in vals if x is None or isinstance(x, bool)})
            ors, p = [], []
            use_index = indexed if op == "$in" else None
            if use_index == INDEX_TYPES["bool"] and types and "null" not in types:
                itype, _, guard = index_parts(field, index_type)
                ors.append(f"({guard} AND {itype} IN ({', '.join('?' * len(types))}))")
                p += types
            elif types:
                ors.append(f"{typ} IN ({', '.join('?' * len(types))})")
                p += [path, *types]
            # each kind as one JSON array parameter: a flat IN over json_each, whatever the list's length
            strs = [x for x in vals if isinstance(x, str)]
            nums = [x for x in vals if isinstance(x, (int, float)) and not isinstance(x, bool) and not math.isinf(x)]
            for guard, kind, kind_types in (("= 'text'", strs, ("text",)), ("IN ('integer', 'real')", nums, None)):
                if not kind:
                    continue
                if use_index and use_index == (kind_types or INDEX_TYPES["float"]):
                    _, ival, iguard = index_parts(field, index_type)
                    ors.append(f"({iguard} AND {ival} IN (SELECT value FROM json_each(?)))")
                    p.append(json.dumps(kind, ensure_ascii=False))
                else:
                    ors.append(f"({typ} {guard} AND {ext} IN (SELECT value FROM json_each(?)))")
                    p += [path, path, json.dumps(kind, ensure_ascii=False)]
            if not ors:  # an empty list (infinities match nothing: metadata cannot hold them)
                parts.append(("0" if op == "$in" else "1", []))
                continue
            if use_index:  # outside $not: NULL reads as false, and coalesce() would hide the terms from the index
                parts.append((f"({' OR '.join(ors)})", p))
                continue
            clause = f"coalesce({' OR '.join(ors)}, 0)"
            parts.append((clause if op == "$in" else f"(NOT {clause})", p))
        elif op == "$contains":
            v = _scalar(v, op)
            elem, elem_p = _same(v, "json_each.type", [], "json_each.value", [])
            sql = f"CASE {typ} WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(metadata, ?) WHERE {elem})"
            p = [path, path, *elem_p]
            if isinstance(v, str):
                sql += f" WHEN 'text' THEN instr({ext}, ?) > 0"
                p += [path, v]
            parts.append((sql + " ELSE 0 END", p))
        elif op == "$icontains":
            if not isinstance(v, str):
                raise FilterError(f"$icontains needs a string, got {type(v).__name__}")
            needle = _fold_case(_scalar(v, op))
            text_sql, glob, text_p = _folded(ext, [path], needle)
            elem_sql, _, elem_p = _folded("json_each.value", [], needle)
            if len(glob.encode()) + 2 > _GLOB_MAX:
                raise FilterError(f"$icontains text is too long ({len(v)} characters)")
            parts.append(
                (
                    f"CASE {typ} WHEN 'text' THEN {text_sql} GLOB ? "
                    f"WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(metadata, ?) "
                    f"WHERE json_each.type = 'text' AND {elem_sql} GLOB ?) ELSE 0 END",
                    [path, *text_p, f"*{glob}*", path, *elem_p, glob],
                )
            )
        elif op == "$type":
            names = [v] if isinstance(v, str) else v
            if (
                not isinstance(names, (list, tuple))
                or not names
                or any(not isinstance(t, str) or t not in _TYPES for t in names)
            ):
                raise FilterError(f"$type needs one or a list of {tuple(_TYPES)}, got {v!r}")
            sql_types = sorted({t for name in names for t in _TYPES[name]})
            parts.append((f"coalesce({typ} IN ({', '.join('?' * len(sql_types))}), 0)", [path, *sql_types]))
        elif op == "$size":
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= INT64_MAX:
                raise FilterError(f"$size needs a non-negative int64 integer, got {v!r}")
            parts.append((f"coalesce({typ} = 'array' AND json_array_length(metadata, ?) = ?, 0)", [path, path, v]))
        elif op == "$exists":
            if not isinstance(v, bool):
                raise FilterError("$exists needs true or false")
            parts.append((f"({typ} IS {'NOT ' if v else ''}NULL)", [path]))
        else:
            raise FilterError(f"unknown filter operator {op!r} for field {field!r}; expected one of {OPERATORS}")
    return _join(parts, " AND ")


def _document_clause(cond: Any) -> tuple[str, list[Any]]:
    """A condition on the document text (``docs.text``; the full-text index for ``$match``)."""
    if not isinstance(cond, dict) or not cond:
        raise FilterError(f"$document needs a condition such as {{'$contains': 'text'}}, got {cond!r}")
    parts: list[tuple[str, list[Any]]] = []
    for op, v in cond.items():
        if op not in DOCUMENT_OPERATORS:
            raise FilterError(f"unknown $document operator {op!r}; expected one of {DOCUMENT_OPERATORS}")
        if not isinstance(v, str) or not v:
            raise FilterError(f"$document {op} needs a non-empty string, got {v!r}")
        if op != "$match":  # $match keeps only the words of its text; substrings must be exact text
            v = _scalar(v, f"$document {op}")  # no NUL, no lone surrogate
        if op in ("$contains", "$not_contains"):
            sql = "coalesce(instr(docs.text, ?) > 0, 0)"
            parts.append((sql if op == "$contains" else f"(NOT {sql})", [v]))
        elif op == "$icontains":
            text_sql, glob, text_p = _folded("docs.text", [], _fold_case(v))
            if len(glob.encode()) + 2 > _GLOB_MAX:
                raise FilterError(f"$document $icontains text is too long ({len(v)} characters)")
            parts.append((f"coalesce({text_sql} GLOB ?, 0)", [*text_p, f"*{glob}*"]))
        else:
            query = fulltext.match_query(v, all_terms=True)
            t = fulltext.TABLE
            parts.append(
                ("0", []) if query is None else (f"docs.rowid IN (SELECT rowid FROM {t} WHERE {t} MATCH ?)", [query])
            )
    return _join(parts, " AND ")


def _id_clause(cond: Any) -> tuple[str, list[Any]]:
    """A condition on the document id (``docs.id``, never NULL: every clause is two-valued)."""
    if not isinstance(cond, dict):
        cond = {"$eq": cond}
    if not cond:
        raise FilterError("empty condition for $id")
    parts: list[tuple[str, list[Any]]] = []
    for op, v in cond.items():
        if op in ("$eq", "$ne"):
            if not isinstance(v, str):
                raise FilterError(f"$id {op} needs a string id, got {type(v).__name__}")
            parts.append((f"(docs.id {'=' if op == '$eq' else '!='} ?)", [_scalar(v, f"$id {op}")]))
        elif op in ("$in", "$nin"):
            if not isinstance(v, (list, tuple, set, frozenset)):
                raise FilterError(f"$id {op} needs a list, got {type(v).__name__}")
            bad = [x for x in v if not isinstance(x, str)]
            if bad:
                raise FilterError(f"$id {op} needs string ids, got {type(bad[0]).__name__}")
            ids = [str.__str__(x) for x in v]  # plain str (a subclass could dump differently)
            if text_problem("".join(ids)):  # one check for the whole list (long lists are common here)
                for x in ids:
                    _scalar(x, f"$id {op}")
            if not ids:
                parts.append(("0" if op == "$in" else "1", []))
                continue
            # one JSON array parameter: a flat IN over json_each, whatever the list's length
            sql = f"(docs.id {'NOT ' if op == '$nin' else ''}IN (SELECT value FROM json_each(?)))"
            parts.append((sql, [json.dumps(ids, ensure_ascii=False)]))
        else:
            raise FilterError(f"unknown $id operator {op!r}; expected one of {ID_OPERATORS}")
    return _join(parts, " AND ")


def document_filter(where_document: Any) -> dict[str, Any]:
    """A Chroma-style ``where_document`` (``{"$contains": "x"}``, ``$and``/``$or`` of those) as a filter."""
    if isinstance(where_document, dict) and len(where_document) == 1:
        ((key, val),) = where_document.items()
        if key in ("$and", "$or"):
            if not isinstance(val, (list, tuple)) or not val:
                raise FilterError(f"where_document {key} needs a non-empty list")
            return {key: [document_filter(w) for w in val]}
    return {"$document": where_document}


def uses_text_index(flt: Any) -> bool:
    """Whether a filter needs the full-text index (a ``$document`` ``$match``; raises :class:`FilterError`
    for an invalid filter)."""
    return '"$match"' in filter_key(flt) and _has_match(flt)  # the key first: it checks depth and validity


def _has_match(flt: dict[str, Any]) -> bool:
    for key, val in flt.items():
        if key == "$document" and "$match" in val:
            return True
        if key in ("$and", "$or") and any(_has_match(f) for f in val):
            return True
        if key == "$not" and _has_match(val):
            return True
    return False


def _join(parts: list[tuple[str, list[Any]]], op: str) -> tuple[str, list[Any]]:
    """``parts`` joined by ``op`` in parentheses; long chains in nested groups of ``_CHAIN`` (a chain of n
    terms is n levels deep for SQLite, at most 1000 in all)."""
    if len(parts) == 1:
        return parts[0]
    while len(parts) > _CHAIN:
        parts = [_join(parts[i : i + _CHAIN], op) for i in range(0, len(parts), _CHAIN)]
    return "(" + op.join(s for s, _ in parts) + ")", [x for _, p in parts for x in p]


def _compile(flt: Any, depth: int, indexes: dict[str, str] | None) -> tuple[str, list[Any]]:
    """``indexes``: the field indexes to use (None under ``$not``: forms that may be NULL are wrong there)."""
    if not isinstance(flt, dict):
        raise FilterError(f"a filter must be a dict, got {type(flt).__name__}")
    if not flt:
        return "1", []
    parts = []
    for key, val in flt.items():
        if key in ("$and", "$or", "$not") and depth >= MAX_FILTER_DEPTH:
            raise FilterError(f"filter nests $and/$or/$not deeper than {MAX_FILTER_DEPTH} levels")
        if key in ("$and", "$or"):
            if not isinstance(val, (list, tuple)) or not val:
                raise FilterError(f"{key} needs a non-empty list of filters")
            subs = [_compile(f, depth + 1, indexes) for f in val]
            parts.append(_join(subs, " AND " if key == "$and" else " OR "))
        elif key == "$not":
            sub, p = _compile(val, depth + 1, None)
            parts.append((f"(NOT {sub})", p))  # every clause is two-valued: NOT is exact negation
        elif key == "$document":
            parts.append(_document_clause(val))
        elif key == "$id":
            parts.append(_id_clause(val))
        elif isinstance(key, str) and key.startswith("$"):
            raise FilterError(f"unknown filter operator {key!r}; expected one of {(*OPERATORS, '$document', '$id')}")
        else:
            parts.append(_field_clause(key, val, indexes.get(key) if indexes else None))
    return _join(parts, " AND ")


def compile_filter(flt: Any, indexes: dict[str, str] | None = None) -> tuple[str, list[Any]]:
    """SQL boolean expression and parameters for filter ``flt`` (a dict) over a table with a JSON ``metadata``
    column. Raises :class:`FilterError` for an invalid filter. ``indexes`` (field -> index type, see
    :func:`index_parts`): conditions those indexes answer are written so that SQLite uses them; the
    expression is then only for a ``WHERE`` clause (where NULL and false both exclude a row), and selects the
    same rows as without."""
    sql, params = _compile(flt, 0, indexes or None)
    if len(params) > MAX_PARAMS:
        raise FilterError(f"filter is too large: {len(params)} SQL parameters (at most {MAX_PARAMS}); use $in")
    return sql, params


def filter_key(flt: Any) -> str:
    """A canonical string for caching compiled filters (raises :class:`FilterError` for an invalid one)."""
    compile_filter(flt)  # first, so a hostile filter raises FilterError here, not TypeError or RecursionError
    return json.dumps(flt, sort_keys=True, default=str)
