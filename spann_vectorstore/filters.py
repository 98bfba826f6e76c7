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

Semantics: ordering operators only compare like with like (numbers with numbers, strings with strings), so
``{"year": {"$gt": 2020}}`` never matches a string "2021". ``$ne`` and ``$nin`` also match documents that
lack the field. Unknown operators, malformed values and non-scalar comparands raise ``ValueError``.
``$icontains`` lower-cases like Python's ``str.lower`` (SQLite's own ``lower()`` only knows ASCII), except that
Greek final sigma is folded to σ on both sides; ``$type``, ``$size`` and ``$icontains`` are false (never SQL
NULL) on a missing field, so they negate cleanly under ``$not``.

Metadata limits (what SQLite's JSON functions can hold and compare exactly; :func:`validate_metadata` enforces
them at add): strings (values and keys) hold no NUL character (SQLite's JSON functions cut a string at
``\\u0000``) and no lone surrogate; integers are int64 (``-2**63 .. 2**63-1``; larger ones would be stored as
doubles and compare inexactly); metadata nests dicts and lists at most ``MAX_METADATA_DEPTH`` (32) levels deep,
the metadata dict itself being level 1.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")
_CMP = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_FIELD = re.compile(r"^[^$][^\"\\]*$")
OPERATORS = (*_CMP, "$in", "$nin", "$contains", "$icontains", "$exists", "$type", "$size", "$and", "$or", "$not")
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
        elif isinstance(key, str) and key.startswith("$"):
            raise FilterError(f"unknown filter operator {key!r}; expected one of {OPERATORS}")
        else:
            sub, p = _field_clause(key, val)
            parts.append(sub)
            params += p
    return "(" + " AND ".join(parts) + ")", params


def filter_key(flt: Any) -> str:
    """A canonical string for caching compiled filters."""
    return json.dumps(flt, sort_keys=True, default=str)
