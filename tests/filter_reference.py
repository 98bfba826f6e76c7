"""A reference evaluator of the filter language in plain Python, written from the documented semantics (the
docstring of :mod:`spann_vectorstore.filters`), not from the compiler: the differential tests compare the SQL
the compiler emits against it.

It takes valid filters only (the compiler's errors are tested separately) and metadata as stored (JSON
values: no tuples, string keys).
"""

from __future__ import annotations

import operator
from typing import Any

MISSING = object()
_ORDER = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}
_TYPES = {"string", "number", "boolean", "null", "array", "object"}


def json_type(v: Any) -> str:
    """The JSON type name of a metadata value, as ``$type`` spells it."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    return "array" if isinstance(v, list) else "object"


def equal(x: Any, v: Any) -> bool:
    """Type-exact equality of a stored value with a scalar operand: true is not 1, arrays and objects equal
    no scalar, numbers compare by value (1 == 1.0)."""
    return x is not MISSING and json_type(x) == json_type(v) and json_type(v) not in ("array", "object") and x == v


def fold(s: str) -> str:
    """``$icontains`` case folding: ``str.lower`` with final sigma folded to σ."""
    return s.lower().replace("ς", "σ")


def resolve(meta: dict[str, Any], field: str) -> Any:
    """The value at dotted path ``field`` (each part a key of a nested object), or ``MISSING``."""
    cur: Any = meta
    for part in field.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return MISSING
        cur = cur[part]
    return cur


def _op(x: Any, op: str, v: Any) -> bool:
    if op == "$eq":
        return equal(x, v)
    if op == "$ne":
        return not equal(x, v)
    if op in _ORDER:  # like with like: numbers, strings, booleans (false < true)
        kind = json_type(v)
        return (
            x is not MISSING and json_type(x) == kind and kind in ("number", "string", "boolean") and _ORDER[op](x, v)
        )
    if op == "$in":
        return any(equal(x, y) for y in v)
    if op == "$nin":
        return not any(equal(x, y) for y in v)
    if op == "$contains":
        if isinstance(x, list):
            return any(equal(e, v) for e in x)
        return isinstance(x, str) and isinstance(v, str) and v in x
    if op == "$icontains":
        if isinstance(x, list):
            return any(isinstance(e, str) and fold(e) == fold(v) for e in x)
        return isinstance(x, str) and fold(v) in fold(x)
    if op == "$exists":
        return (x is not MISSING) == v
    if op == "$type":
        names = [v] if isinstance(v, str) else v
        assert set(names) <= _TYPES
        return x is not MISSING and json_type(x) in names
    if op == "$size":
        return isinstance(x, list) and len(x) == v
    raise AssertionError(f"not an operator: {op}")


def matches(meta: dict[str, Any], flt: dict[str, Any]) -> bool:
    """Whether stored metadata ``meta`` satisfies filter ``flt``."""
    for key, val in flt.items():
        if key == "$and":
            ok = all(matches(meta, f) for f in val)
        elif key == "$or":
            ok = any(matches(meta, f) for f in val)
        elif key == "$not":
            ok = not matches(meta, val)
        else:
            x = resolve(meta, key)
            cond = val if isinstance(val, dict) else {"$eq": val}
            ok = all(_op(x, op, v) for op, v in cond.items())
        if not ok:
            return False
    return True
