"""``Collection.get(offset=...)`` (Chroma's paging) and the settings ``stats()`` reports."""

from __future__ import annotations

import numpy as np
import pytest

from spann_vectorstore import Collection


@pytest.fixture()
def col():
    c = Collection(dim=4, bits=2, index_options={"replica_count": 2})
    c.add(
        np.eye(4, dtype=np.float32).repeat(3, axis=0),
        ids=[f"d{i:02d}" for i in range(12)],
        metadatas=[{"odd": i % 2 == 1} for i in range(12)],
    )
    yield c
    c.close()


def ids(hits):
    return [h.id for h in hits]


def test_offset_pages_in_insertion_order(col):
    assert ids(col.get(offset=10)) == ["d10", "d11"]
    assert ids(col.get(limit=3, offset=4)) == ["d04", "d05", "d06"]
    assert ids(col.get(filter={"odd": True}, limit=2, offset=1)) == ["d03", "d05"]
    assert ids(col.get(offset=50)) == []
    assert ids(col.get(limit=0)) == []
    pages = [ids(col.get(limit=5, offset=o)) for o in range(0, 12, 5)]
    assert [i for page in pages for i in page] == [f"d{i:02d}" for i in range(12)]


def test_offset_with_ids_skips_in_the_order_given(col):
    assert ids(col.get(["d07", "d01", "nope", "d03"], offset=1)) == ["d01", "d03"]
    assert ids(col.get(["d07", "d01", "d03"], offset=1, limit=1)) == ["d01"]


@pytest.mark.parametrize("kw", [{"offset": -1}, {"limit": -2}, {"offset": 1.5}, {"limit": True}])
def test_bad_limit_or_offset_raise(col, kw):
    with pytest.raises(ValueError, match="non-negative integer"):
        col.get(**kw)


def test_stats_report_index_settings(col):
    st = col.stats()
    assert st["bits"] == 2 and st["index_options"] == {"replica_count": 2} and st["n_probe"] is None
