"""Rewrite a core filter dict so negations also match documents that lack the field.

The core compiles ``{"f": {"$ne": v}}``, ``$nin`` and ``{"$not": ...}`` to SQL ``NOT (...)``; for a document
without ``f`` the inner comparison is SQL ``NULL`` and ``NOT NULL`` is ``NULL``, so such documents are
dropped although the filter language documents that ``$ne``/``$nin`` match them (and ``$not`` should). Until
the core makes its clauses two-valued, negations are pushed down to single-operator leaves (De Morgan) and
each negated leaf is ORed with ``{"f": {"$exists": false}}``. The result means the same under a fixed core.
Malformed input is passed through unchanged so the core reports it.
"""

from __future__ import annotations

from typing import Any


def _missing(field: str) -> dict[str, Any]:
    return {field: {"$exists": False}}


def _leaf(field: str, op: str, value: Any, negate: bool) -> dict[str, Any]:
    """A single-operator condition on ``field``, negated if asked, with missing fields handled."""
    if op == "$exists" and isinstance(value, bool):
        return {field: {"$exists": value != negate}}
    if negate and op in ("$ne", "$nin"):  # not(ne) is eq: a missing field does not match, no fix needed
        return {field: {"$eq" if op == "$ne" else "$in": value}}
    if negate:
        return {"$or": [_missing(field), {"$not": {field: {op: value}}}]}
    if (op == "$ne" and value is not None) or op == "$nin":
        return {"$or": [_missing(field), {field: {op: value}}]}
    return {field: {op: value}}


def _all(parts: list[dict[str, Any]], negate: bool) -> dict[str, Any]:
    """AND of ``parts`` (or, negated, OR of their negations), already rewritten."""
    if len(parts) == 1:
        return parts[0]
    return {"$or" if negate else "$and": parts}


def normalize_filter(flt: Any, negate: bool = False) -> Any:
    """``flt`` rewritten as described in the module docstring (``negate``: rewrite ``{"$not": flt}``)."""
    if not isinstance(flt, dict) or not flt:
        return {"$not": flt} if negate else flt
    parts = []
    for key, val in flt.items():
        if key in ("$and", "$or"):
            if not isinstance(val, (list, tuple)) or not val or not all(isinstance(f, dict) and f for f in val):
                return {"$not": flt} if negate else flt
            subs = [normalize_filter(f, negate) for f in val]
            parts.append({("$or" if key == "$and" else "$and") if negate else key: subs})
        elif key == "$not":
            if not isinstance(val, dict) or not val:
                return {"$not": flt} if negate else flt
            parts.append(normalize_filter(val, not negate))
        elif isinstance(key, str) and key.startswith("$"):
            return flt  # unknown operator: the core raises
        else:
            cond = val if isinstance(val, dict) else {"$eq": val}
            if not cond:
                return flt
            parts.append(_all([_leaf(key, op, v, negate) for op, v in cond.items()], negate))
    return _all(parts, negate)
