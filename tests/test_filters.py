"""The limits of what metadata can hold (so that filters compare it exactly), enforced at ``Collection.add``."""

from __future__ import annotations

import numpy as np
import pytest

from spann_vectorstore import Collection
from spann_vectorstore.filters import INT64_MAX, INT64_MIN, MAX_METADATA_DEPTH


def test_nul_in_metadata_is_rejected_at_add():
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


def test_out_of_range_integers_are_rejected_at_add():
    col = Collection(None)
    for bad, field in (({"n": 2**63}, "n"), ({"o": {"l": [0, -(2**63) - 1]}}, r"o.l\[1\]")):
        with pytest.raises(ValueError, match=f"field '{field}': integer .* outside int64"):
            col.add(np.ones(2), metadatas=[bad])
    assert len(col) == 0
    extremes = [INT64_MIN, INT64_MIN + 1, INT64_MAX - 1, INT64_MAX]
    col.add(np.ones((4, 2)), metadatas=[{"n": n} for n in extremes], ids=["min", "min+1", "max-1", "max"])
    assert [h.id for h in col.get(filter={"n": INT64_MIN})] == ["min"]  # was also -2**63-1, stored as a double
    assert [h.id for h in col.get(filter={"n": {"$gt": INT64_MAX - 1}})] == ["max"]
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
