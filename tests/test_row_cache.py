"""The Collection's row cache (hits served without SQLite once read) and the depth of its searches.

Each test compares what a search returns with the cache warm against what it returns read from SQLite (the
cache emptied), or against the documents as ``get`` reads them, across the writes that could make a cached row
stale: delete, upsert, clear, a writer seen by a read-only handle. Rowids are never reused, so a row never
changes under its rowid; what the cache must not do is serve rows the index still holds after they were
deleted, or hand out shared mutable metadata.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spann_vectorstore import Collection
from spann_vectorstore import collection as collection_mod


def _data(n: int, d: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _fill(col: Collection, n: int = 3000, seed: int = 0, prefix: str = "d") -> np.ndarray:
    x = _data(n, seed=seed)
    metas = [{"bucket": i % 10, "tags": [i % 3]} for i in range(n)]
    col.add(x, texts=[f"{prefix} text {i}" for i in range(n)], metadatas=metas, ids=[f"{prefix}{i}" for i in range(n)])
    return x


def _view(hits) -> list[tuple]:
    return [(h.id, h.score, h.text, h.metadata) for h in hits]


def _truth(col: Collection, hits) -> list[tuple]:
    """The hits as ``get`` reads the same ids from SQLite (text and metadata), with the hits' scores."""
    docs = {h.id: h for h in col.get([h.id for h in hits])}
    return [(h.id, h.score, docs[h.id].text, docs[h.id].metadata) for h in hits]


@pytest.fixture
def col(tmp_path: Path):
    c = Collection(tmp_path / "c", index_threshold=500)
    yield c
    c.close()


def test_cached_hits_equal_hits_read_from_sqlite(col):
    _fill(col)
    qs = _data(40, seed=5)
    cold = []
    for q in qs:
        col._forget_rows(None)
        cold.append(_view(col.search(q, k=10)))
    assert col._row_cache  # the searches filled it
    for q, want in zip(qs, cold):
        got = col.search(q, k=10)
        assert _view(got) == want
        assert _view(got) == _truth(col, got)
    # a batch, a filter, vectors asked for (those are read from SQLite: the cache holds no vectors)
    batch = col.search(qs[:5], k=7, filter={"bucket": {"$in": [1, 2]}})
    for q, hits in zip(qs[:5], batch):
        col._forget_rows(None)
        assert _view(col.search(q, k=7, filter={"bucket": {"$in": [1, 2]}})) == _view(hits)
    with_vec = col.search(qs[0], k=5, include_vectors=True)
    assert all(h.vector is not None and h.vector.shape == (16,) for h in with_vec)
    assert _view(with_vec) == _view(col.search(qs[0], k=5))


def test_deleted_and_replaced_rows_leave_the_cache(col):
    x = _fill(col)
    q = x[7]
    first = col.search(q, k=5)
    assert first[0].id == "d7"
    cached = set(col._row_cache)
    col.delete(["d7"])
    assert len(col._row_cache) < len(cached)
    hits = col.search(q, k=5)
    assert "d7" not in [h.id for h in hits]
    assert _view(hits) == _truth(col, hits)
    # upsert: same id, new text and metadata (a new row): the search shows the new document
    col.add(x[8:9], texts=["replaced"], metadatas=[{"bucket": 99}], ids=["d8"])
    hits = col.search(x[8], k=3)
    assert hits[0].id == "d8" and hits[0].text == "replaced" and hits[0].metadata == {"bucket": 99}
    assert _view(hits) == _truth(col, hits)
    col.clear()
    assert not col._row_cache and col._row_cache_bytes == 0
    _fill(col, n=600, seed=3, prefix="e")
    hits = col.search(q, k=5)
    assert all(h.id.startswith("e") for h in hits)
    assert _view(hits) == _truth(col, hits)


def test_metadata_of_a_hit_is_the_callers_own(col):
    x = _fill(col, n=800)
    hit = col.search(x[3], k=1)[0]
    hit.metadata["bucket"] = "changed"
    hit.metadata["tags"].append(42)
    again = col.search(x[3], k=1)[0]
    assert again.id == hit.id and again.metadata == {"bucket": 3, "tags": [0]}


def test_the_cache_stays_within_its_budget(col, monkeypatch):
    monkeypatch.setattr(collection_mod, "_ROW_CACHE_BYTES", 4000)
    x = _fill(col)
    for q in _data(60, seed=11):
        hits = col.search(q, k=10)
        assert _view(hits) == _truth(col, hits)
        assert col._row_cache_bytes <= 4000
        assert col._row_cache_bytes == sum(collection_mod._row_bytes(r) for r in col._row_cache.values())
    assert 0 < len(col._row_cache) < 60
    assert col.search(x[0], k=1)[0].id == "d0"


def test_a_reader_drops_rows_the_writer_deleted(tmp_path):
    w = Collection(tmp_path / "c", index_threshold=500)
    try:
        x = _fill(w)
        r = Collection(tmp_path / "c", read_only=True)
        try:
            assert r.search(x[11], k=3)[0].id == "d11"
            assert any(row[0] == "d11" for row in r._row_cache.values())
            w.delete(["d11"])
            w.add(x[12:13], texts=["new twelve"], metadatas=[{"bucket": -1}], ids=["d12"])
            hits = r.search(x[11], k=3)
            assert "d11" not in [h.id for h in hits]
            assert not any(row[0] == "d11" for row in r._row_cache.values())
            top = r.search(x[12], k=1)[0]
            assert (top.id, top.text, top.metadata) == ("d12", "new twelve", {"bucket": -1})
            assert _view(hits) == _truth(r, hits)
        finally:
            r.close()
    finally:
        w.close()


def test_in_memory_collection_caches_too():
    c = Collection(None, index_threshold=500)
    x = _fill(c, n=1200)
    want = _view(c.search(x[5], k=4))
    assert c._row_cache
    assert _view(c.search(x[5], k=4)) == want
    c.delete(["d5"])
    assert "d5" not in [h.id for h in c.search(x[5], k=4)]


def test_collection_default_depth_is_the_one_calibrated_for_k(col):
    """The Collection asks the index for k + 1 results (to see ties at the k-th place) at the depth calibrated
    for recall@k: the next calibrated k is 100, a much deeper search."""
    _fill(col, n=4000)
    idx = col.index
    for q in _data(20, seed=21):
        npr, mdr = idx._resolve(10, None, None, None, 1.0)
        want = idx.search(q, k=11, n_probe=npr, max_dist_ratio=mdr)
        got = idx._search(q, 11, None, None, None, None, None, depth_k=10)
        assert want.ids.tolist() == got.ids.tolist()
        assert got.stats["postings"][0] == want.stats["postings"][0]
        deeper = idx.search(q, k=11)
        assert deeper.stats["postings"][0] >= got.stats["postings"][0]
