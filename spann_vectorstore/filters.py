"""The one metadata filter language, compiled to a SQLite ``WHERE`` clause over the JSON metadata column.

Grammar (as LangChain's Chroma/FAISS stores accept, plus dotted paths, ``$contains`` and a few type/text tests)::

    {"field": value}                         equality (shorthand for {"field": {"$eq": value}})
    {"field": {"$eq"|"$ne"|"$gt"|"$gte"|"$lt"|"$lte": value}}
    {"field": {"$in"|"$nin": [v1, v2, ...]}}
    {"field": {"$contains": value}}          list field holds value (or string field contains substring)
    {"field": {"$icontains": "text"}}        the same ignoring case: string field contains the substring, or
                                             list field holds a string equal to it (Unicode lower-casing)
    {"field": {"$exists": true|false}}
    {"field": {"$type": t | [t1, ...]}}      JSON type of the field, t in "string", "number", "boolean",
                                             "null", "array", "object" (a missing field has no type)
    {"field": {"$size": n}}                  list field with exactly n elements
    {"$and": [f1, f2, ...]}, {"$or": [...]}, {"$not": f}
    several keys in one dict are ANDed; "a.b.c" reaches into nested objects.

    {"$document": {"$contains": "text"}}     the document's text contains the substring (case-sensitive)
    {"$document": {"$not_contains": "text"}} ... does not contain it (documents without text included)
    {"$document": {"$icontains": "text"}}    ... contains it ignoring case (as the field operator)
    {"$document": {"$match": "words"}}       full-text match: every word of the query occurs in the text,
                                             as the text index tokenizes (case, diacritics and English
                                             suffixes folded; see :mod:`spann_vectorstore.fulltext`); the
                                             query is data, never FTS5 syntax; no words: matches nothing
    ``$document`` conditions combine with metadata ones under ``$and``/``$or``/``$not`` (Chroma's
    ``where_document``; :func:`document_filter` turns a Chroma-style ``where_document`` into one).

Semantics: ordering operators only compare like with like (numbers with numbers, strings with strings), so
``{"year": {"$gt": 2020}}`` never matches a string "2021". ``$ne`` and ``$nin`` also match documents that
lack the field. Unknown operators, malformed values and non-scalar comparands raise ``ValueError``.
``$icontains`` lower-cases like Python's ``str.lower`` (SQLite's own ``lower()`` only knows ASCII), except that
Greek final sigma is folded to σ on both sides; ``$type``, ``$size`` and ``$icontains`` are false (never SQL
NULL) on a missing field, so they negate cleanly under ``$not``.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from . import fulltext

_CMP = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_FIELD = re.compile(r"^[^$][^\"\\]*$")
OPERATORS = (*_CMP, "$in", "$nin", "$contains", "$icontains", "$exists", "$type", "$size", "$and", "$or", "$not")
DOCUMENT_OPERATORS = ("$contains", "$not_contains", "$icontains", "$match")
_TYPES = {
    "string": ("text",),
    "number": ("integer", "real"),
    "boolean": ("true", "false"),
    "null": ("null",),
    "array": ("array",),
    "object": ("object",),
}


class FilterError(ValueError):
    """An invalid filter (unknown operator, bad operand)."""


def _path(field: str) -> str:
    if not isinstance(field, str) or not field or not _FIELD.match(field):
        raise FilterError(f"invalid filter field name {field!r}")
    parts = field.split(".")
    if any(p == "" for p in parts):
        raise FilterError(f"invalid filter field name {field!r}")
    return "$" + "".join(f'."{p}"' for p in parts)


def _scalar(v: Any, op: str) -> Any:
    if isinstance(v, bool) or v is None or isinstance(v, (int, float, str)):
        if isinstance(v, float) and v != v:
            raise FilterError(f"{op} operand must not be NaN")
        return v
    raise FilterError(f"{op} operand must be a string, number, bool or null, got {type(v).__name__}")


def _typed(path: str, v: Any) -> tuple[str, list[Any]]:
    """A type guard so comparisons only hold between like JSON types."""
    if isinstance(v, bool):
        return "json_type(metadata, ?) IN ('true', 'false')", [path]
    if isinstance(v, (int, float)):
        return "json_type(metadata, ?) IN ('integer', 'real')", [path]
    if isinstance(v, str):
        return "json_type(metadata, ?) = 'text'", [path]
    return "json_type(metadata, ?) = 'null'", [path]


def _value(v: Any) -> Any:
    return int(v) if isinstance(v, bool) else v


@functools.cache
def _lower_sources() -> dict[str, tuple[tuple[str, str], ...]]:
    """Non-ASCII characters whose ``str.lower()`` differs from themselves, keyed by each character of their
    lower-case form. Planes 0 and 1 hold every cased script (planes 2-16: CJK, tags, private use)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for cp in range(0x80, 0x20000):
        ch = chr(cp)
        low = ch.lower()
        if low != ch:
            for c in set(low):
                out.setdefault(c, []).append((ch, low))
    return {c: tuple(v) for c, v in out.items()}


def _fold(expr: str, needle: str) -> tuple[str, list[Any]]:
    """``expr`` lower-cased as far as matters for finding ``needle`` (already folded) in it: SQLite's
    ``lower()`` for ASCII, then ``replace()`` for each non-ASCII character whose lower-case form shares a
    character with the needle (any other character cannot take part in a match, folded or not)."""
    pairs: dict[str, str] = {}
    sources = _lower_sources()
    for c in set(needle):
        for src, low in sources.get(c, ()):
            pairs[src] = low.replace("ς", "σ")
    if "σ" in needle:
        pairs["ς"] = "σ"
    sql, params = f"lower({expr})", []
    for src, low in sorted(pairs.items()):
        sql = f"replace({sql}, ?, ?)"
        params += [src, low]
    return sql, params


def _field_clause(field: str, cond: Any) -> tuple[str, list[Any]]:
    path = _path(field)
    if not isinstance(cond, dict):
        cond = {"$eq": cond}
    if not cond:
        raise FilterError(f"empty condition for field {field!r}")
    parts, params = [], []
    for op, v in cond.items():
        ext = "json_extract(metadata, ?)"
        if op in _CMP:
            v = _scalar(v, op)
            if v is None:
                sql = "json_type(metadata, ?) = 'null'" if op == "$eq" else None
                if op == "$ne":
                    sql = "coalesce(json_type(metadata, ?), 'missing') != 'null'"
                if sql is None:
                    raise FilterError(f"{op} cannot compare with null")
                parts.append(sql)
                params.append(path)
                continue
            guard, gp = _typed(path, v)
            # coalesce(..., 0): a missing field makes the comparison NULL, and NOT NULL is NULL (no match);
            # every clause is two-valued so that $ne, $nin and $not match documents without the field
            if op == "$ne":
                parts.append(f"NOT coalesce(({guard} AND {ext} = ?), 0)")
            else:
                parts.append(f"coalesce(({guard} AND {ext} {_CMP[op]} ?), 0)")
            params += [*gp, path, _value(v)]
        elif op in ("$in", "$nin"):
            if not isinstance(v, (list, tuple, set)):
                raise FilterError(f"{op} needs a list, got {type(v).__name__}")
            vals = [_scalar(x, op) for x in v]
            if not vals:
                parts.append("0" if op == "$in" else "1")
                continue
            ors, op_params = [], []
            for x in vals:
                guard, gp = _typed(path, x)
                ors.append(f"({guard} AND {ext} = ?)" if x is not None else guard)
                op_params += [*gp, path, _value(x)] if x is not None else gp
            clause = "coalesce((" + " OR ".join(ors) + "), 0)"
            parts.append(clause if op == "$in" else f"NOT {clause}")
            params += op_params
        elif op == "$contains":
            v = _scalar(v, op)
            parts.append(
                "(CASE json_type(metadata, ?) WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(metadata, ?) "
                "WHERE json_each.value = ? AND json_each.type != 'object') "
                "WHEN 'text' THEN instr(json_extract(metadata, ?), ?) > 0 ELSE 0 END)"
            )
            params += [path, path, _value(v), path, str(v) if v is not None else "\x00"]
        elif op == "$icontains":
            if not isinstance(v, str):
                raise FilterError(f"$icontains needs a string, got {type(v).__name__}")
            needle = v.lower().replace("ς", "σ")
            text_sql, text_p = _fold("json_extract(metadata, ?)", needle)
            elem_sql, elem_p = _fold("json_each.value", needle)
            parts.append(
                f"(CASE json_type(metadata, ?) WHEN 'text' THEN instr({text_sql}, ?) > 0 "
                f"WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(metadata, ?) "
                f"WHERE json_each.type = 'text' AND {elem_sql} = ?) ELSE 0 END)"
            )
            params += [path, path, *text_p, needle, path, *elem_p, needle]
        elif op == "$type":
            names = [v] if isinstance(v, str) else v
            if (
                not isinstance(names, (list, tuple))
                or not names
                or any(not isinstance(t, str) or t not in _TYPES for t in names)
            ):
                raise FilterError(f"$type needs one or a list of {tuple(_TYPES)}, got {v!r}")
            sql_types = sorted({t for name in names for t in _TYPES[name]})
            parts.append(f"coalesce(json_type(metadata, ?) IN ({', '.join('?' * len(sql_types))}), 0)")
            params += [path, *sql_types]
        elif op == "$size":
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise FilterError(f"$size needs a non-negative integer, got {v!r}")
            parts.append("coalesce(json_type(metadata, ?) = 'array' AND json_array_length(metadata, ?) = ?, 0)")
            params += [path, path, v]
        elif op == "$exists":
            if not isinstance(v, bool):
                raise FilterError("$exists needs true or false")
            parts.append(f"json_type(metadata, ?) IS {'NOT ' if v else ''}NULL")
            params.append(path)
        else:
            raise FilterError(f"unknown filter operator {op!r} for field {field!r}; expected one of {OPERATORS}")
    return "(" + " AND ".join(parts) + ")", params


def _document_clause(cond: Any) -> tuple[str, list[Any]]:
    """A condition on the document text (``docs.text``; the full-text index for ``$match``)."""
    if not isinstance(cond, dict) or not cond:
        raise FilterError(f"$document needs a condition such as {{'$contains': 'text'}}, got {cond!r}")
    parts, params = [], []
    for op, v in cond.items():
        if op not in DOCUMENT_OPERATORS:
            raise FilterError(f"unknown $document operator {op!r}; expected one of {DOCUMENT_OPERATORS}")
        if not isinstance(v, str) or not v:
            raise FilterError(f"$document {op} needs a non-empty string, got {v!r}")
        if op in ("$contains", "$not_contains"):
            sql = "coalesce(instr(docs.text, ?) > 0, 0)"
            parts.append(sql if op == "$contains" else f"NOT {sql}")
            params.append(v)
        elif op == "$icontains":
            needle = v.lower().replace("ς", "σ")
            text_sql, text_p = _fold("docs.text", needle)
            parts.append(f"coalesce(instr({text_sql}, ?) > 0, 0)")
            params += [*text_p, needle]
        else:
            query = fulltext.match_query(v, all_terms=True)
            if query is None:
                parts.append("0")
            else:
                parts.append(f"docs.rowid IN (SELECT rowid FROM {fulltext.TABLE} WHERE {fulltext.TABLE} MATCH ?)")
                params.append(query)
    return "(" + " AND ".join(parts) + ")", params


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
    """Whether a filter needs the full-text index (a ``$document`` ``$match``)."""
    return '"$match"' in filter_key(flt)


def compile_filter(flt: Any) -> tuple[str, list[Any]]:
    """SQL boolean expression and parameters for filter ``flt`` (a dict)."""
    if not isinstance(flt, dict):
        raise FilterError(f"a filter must be a dict, got {type(flt).__name__}")
    if not flt:
        return "1", []
    parts, params = [], []
    for key, val in flt.items():
        if key in ("$and", "$or"):
            if not isinstance(val, (list, tuple)) or not val:
                raise FilterError(f"{key} needs a non-empty list of filters")
            subs = [compile_filter(f) for f in val]
            joiner = " AND " if key == "$and" else " OR "
            parts.append("(" + joiner.join(s for s, _ in subs) + ")")
            for _, p in subs:
                params += p
        elif key == "$not":
            sub, p = compile_filter(val)
            parts.append(f"NOT coalesce({sub}, 0)")
            params += p
        elif key == "$document":
            sub, p = _document_clause(val)
            parts.append(sub)
            params += p
        elif isinstance(key, str) and key.startswith("$"):
            raise FilterError(f"unknown filter operator {key!r}; expected one of {(*OPERATORS, '$document')}")
        else:
            sub, p = _field_clause(key, val)
            parts.append(sub)
            params += p
    return "(" + " AND ".join(parts) + ")", params


def filter_key(flt: Any) -> str:
    """A canonical string for caching compiled filters."""
    return json.dumps(flt, sort_keys=True, default=str)
