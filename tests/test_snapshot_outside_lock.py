"""A Collection writes its index snapshots after releasing the write lock: the index is exported under the
lock (postings copied; ``SpannIndex.export``) and the slow part, every vector to disk, happens while searches
and other writes go on. Exports are written in order (an older one never replaces a newer one), close()
waits for a snapshot being written and writes one that was exported but not yet written, and an export is
the index of its moment even when the index changes before it is written."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from spann_vectorstore import Collection, SpannIndex
from spann_vectorstore._storage import read_manifest
from spann_vectorstore.index import _FORMAT, IndexExport

from .conftest import clustered

DIM = 16


def _col(path, **kw) -> Collection:
    return Collection(path, dim=DIM, metric="l2", index_threshold=200, snapshot_every=500, **kw)


def _snapshot_seq(path) -> int:
    return int(read_manifest(path / "index", _FORMAT)["meta"]["user"]["seq"])


def test_searches_and_writes_go_on_while_a_snapshot_is_written(tmp_path, monkeypatch):
    x = clustered(2000, DIM, seed=1)
    col = _col(tmp_path / "c")
    col.add(x[:400], ids=[f"a{i}" for i in range(400)])  # index built at 200
    col.wait_for_index()
    entered, release = threading.Event(), threading.Event()
    real_write = IndexExport.write

    def slow_write(self, path):
        entered.set()
        assert release.wait(60), "the test never released the snapshot"
        return real_write(self, path)

    monkeypatch.setattr(IndexExport, "write", slow_write)
    # the add that reaches snapshot_every exports under the lock and writes after it: it blocks in the write
    writer = threading.Thread(target=col.add, args=(x[400:900],), kwargs={"ids": [f"b{i}" for i in range(500)]})
    writer.start()
    assert entered.wait(60)
    try:
        # meanwhile, with the snapshot still being written: a search sees the write, another add commits
        hits = col.search(x[450], k=1)
        assert hits[0].id == "b50"
        done = threading.Event()
        other = threading.Thread(target=lambda: (col.add(x[900:910], ids=[f"c{i}" for i in range(10)]), done.set()))
        other.start()
        assert done.wait(60), "a second writer waited for the snapshot being written"
        assert col.search(x[905], k=1)[0].id == "c5"
        assert writer.is_alive()  # the first add is still writing its snapshot
    finally:
        release.set()
        writer.join(60)
        other.join(60)
    assert not writer.is_alive()
    col.close()
    back = _col(tmp_path / "c")
    assert len(back) == 910
    assert back.search(x[905], k=1)[0].id == "c5"
    back.close()


def test_an_older_export_never_replaces_a_newer_snapshot(tmp_path):
    x = clustered(1200, DIM, seed=2)
    col = _col(tmp_path / "c")
    col.add(x[:300], ids=[f"a{i}" for i in range(300)])
    with col._lock.write():
        first = col._export_snapshot()
    col.add(x[300:320], ids=[f"b{i}" for i in range(20)])
    with col._lock.write():
        second = col._export_snapshot()
    assert second.seq > first.seq
    col._write_snapshot(second)
    col._write_snapshot(first)  # late: skipped
    assert _snapshot_seq(tmp_path / "c") == second.seq
    col.close()


def test_close_writes_an_export_another_thread_has_not_written(tmp_path):
    x = clustered(800, DIM, seed=3)
    col = _col(tmp_path / "c")
    col.add(x[:300], ids=[f"a{i}" for i in range(300)])
    col.add(x[300:310], ids=[f"b{i}" for i in range(10)])
    with col._lock.write():
        pending = col._export_snapshot()  # taken, never written by its thread (changes counted as saved)
    col.close()
    assert _snapshot_seq(tmp_path / "c") == pending.seq  # close wrote the index of that moment
    col._write_snapshot(pending)  # after close: nothing happens, nothing raises


def test_an_export_is_the_index_of_its_moment(tmp_path):
    x = clustered(3000, DIM, seed=4)
    idx = SpannIndex(DIM, metric="l2", n_probe=8, seed=0).build(x[:2000])
    idx.delete(np.arange(0, 100))
    exp = idx.export(meta={"k": 1})
    ref_path = tmp_path / "ref"
    idx.save(ref_path)
    # changes after the export: adds (some splitting postings), deletes, a rebuild of the same object
    idx.add(x[2000:2600])
    idx.delete(np.arange(100, 400))
    idx.add(x[2600:3000])
    exp.write(tmp_path / "late")
    a, b = SpannIndex.load(ref_path, mmap=False), SpannIndex.load(tmp_path / "late", mmap=False)
    assert len(a) == len(b) == 1900
    q = clustered(50, DIM, seed=5)
    np.testing.assert_array_equal(a.search(q, 10).ids, b.search(q, 10).ids)
    np.testing.assert_array_equal(a.vectors(np.arange(100, 2000)), b.vectors(np.arange(100, 2000)))
    for name in ("vectors", "codes", "heads", "ids"):
        fa = next((ref_path).glob(f"snap-*/{name}.npy"), None)
        fb = next((tmp_path / "late").glob(f"snap-*/{name}.npy"), None)
        if fa is not None:
            assert fa.read_bytes() == fb.read_bytes(), name
    idx.build()  # the index object rebuilt in place: the export still writes the old content
    exp.write(tmp_path / "late2")
    c = SpannIndex.load(tmp_path / "late2", mmap=False)
    np.testing.assert_array_equal(a.search(q, 10).ids, c.search(q, 10).ids)


@pytest.mark.parametrize("mmap", [True, False])
def test_export_of_a_loaded_index_with_a_tail(tmp_path, mmap):
    x = clustered(2500, DIM, seed=6)
    SpannIndex(DIM, metric="l2", n_probe=8, seed=0).build(x[:2000]).save(tmp_path / "s")
    idx = SpannIndex.load(tmp_path / "s", mmap=mmap)
    idx.add(x[2000:2300], ids=np.arange(2000, 2300))
    exp = idx.export()
    idx.add(x[2300:2500], ids=np.arange(2300, 2500))  # the tail grows (maybe moves) after the export
    exp.write(tmp_path / "t")
    back = SpannIndex.load(tmp_path / "t", mmap=False)
    assert len(back) == 2300
    np.testing.assert_array_equal(back.vectors(np.arange(2300)), x[:2300])
