"""Search-time posting limit: postings ordered by distance to their head, at most ``posting_limit`` entries
read per posting, the calibration measured with it, snapshots."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spann_vectorstore import SpannIndex
from spann_vectorstore._storage import _manifest_crc

from .conftest import clustered

D = 24


def _head_dist(idx: SpannIndex) -> list[np.ndarray]:
    """Per posting, the exact squared distances of its entries to its head, in arena order."""
    a, heads = idx._arena, idx._heads.heads
    out = []
    for h in range(idx.n_heads):
        v = a.members(h)
        out.append(((idx._vectors.rows(v) - heads[h]) ** 2).sum(1))
    return out


def _assert_ordered(idx: SpannIndex, only_longer_than: int = 0) -> None:
    for h, d in enumerate(_head_dist(idx)):
        if len(d) > only_longer_than:
            assert (np.diff(d) >= -1e-4 * max(float(d.max()), 1e-6)).all(), f"posting {h} is not ordered"
    if not only_longer_than:
        assert idx._arena.ordered()


@pytest.fixture(scope="module")
def data():
    allx = clustered(9_000, D, seed=3)
    return allx[:8_000], allx[8_000:8_200]


@pytest.mark.parametrize("bits", [1, 2])
def test_postings_are_ordered_after_build(data, bits):
    xb, _ = data
    idx = SpannIndex(D, bits=bits, head_ratio=1 / 50, n_probe=8, progress=False).build(xb[:4000])
    _assert_ordered(idx)
    # the key the arena orders by (recovered from the codec's factors) is the exact distance
    h = int(np.argmax(idx._arena.size))
    s = int(idx._arena.start[h])
    pos = np.arange(s, s + int(idx._arena.size[h]))
    np.testing.assert_allclose(idx._codec.residual_sq(idx._arena.entries, pos), _head_dist(idx)[h], rtol=1e-3)


def test_order_after_add_split_and_compaction(data):
    xb, _ = data
    idx = SpannIndex(D, head_ratio=1 / 50, n_probe=8, split_factor=3.0, posting_limit=60, progress=False)
    idx.build(xb[:3000])
    heads0 = idx.n_heads
    # adds into one region: postings grow past the limit (kept ordered) and split (halves ordered)
    near = np.argsort(((xb[3000:] - xb[0]) ** 2).sum(1))[:2500] + 3000
    for s in range(0, len(near), 250):
        idx.add(xb[near[s : s + 250]], near[s : s + 250])
        _assert_ordered(idx, only_longer_than=idx.posting_limit)
    assert idx.n_heads > heads0, "the adds should have split postings"
    # deletes, then a compaction: every posting ordered, tombstones gone
    idx.delete(near[::3])
    idx.reserve(1.5)
    _assert_ordered(idx)


def test_limit_bounds_the_entries_read(data):
    xb, xq = data
    idx = SpannIndex(D, head_ratio=1 / 40, n_probe=8, posting_limit=40, progress=False).build(xb)
    assert idx.posting_limit == 40 and idx._arena.size.max() > 40
    res = idx.search(xq, 10)
    assert (res.stats["entries"] <= 40 * res.stats["postings"]).all()
    # one posting at a time: exactly its first min(size, limit) entries
    heads, _ = idx.probe(xq[:20], 1)
    for limit in (12, 40):
        for i in range(20):
            h = int(heads[i, 0])
            r = idx.search(xq[i], 5, n_probe=1, posting_limit=limit)
            assert r.stats["entries"][0] == min(int(idx._arena.size[h]), limit)
    # a per-call limit overrides the index's; unlimited reads more on long postings
    full = idx.search(xq, 10, posting_limit=10**9)
    assert full.stats["entries"].sum() > res.stats["entries"].sum()


def test_limit_above_every_posting_changes_nothing(data):
    xb, xq = data
    free = SpannIndex(D, head_ratio=1 / 40, n_probe=12, posting_limit=None, progress=False).build(xb)
    top = int(free._arena.size.max())
    capped = SpannIndex(D, head_ratio=1 / 40, n_probe=12, posting_limit=top, progress=False).build(xb)
    a, b = free.search(xq, 10), capped.search(xq, 10)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.stats["entries"], b.stats["entries"])
    c = free.search(xq, 10, posting_limit=top)
    np.testing.assert_array_equal(a.ids, c.ids)


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_single_equals_batch_with_a_limit(data, metric):
    xb, xq = data
    idx = SpannIndex(D, metric=metric, bits=2, head_ratio=1 / 40, n_probe=10, posting_limit=25, progress=False)
    idx.build(xb)
    batch = idx.search(xq[:60], 10)
    for i in range(60):
        one = idx.search(xq[i], 10)
        np.testing.assert_array_equal(one.ids[0], batch.ids[i])
        np.testing.assert_array_equal(one.scores[0], batch.scores[i])
        for key in one.stats:
            assert one.stats[key][0] == batch.stats[key][i]
    # and probe + search_preassigned (the index's limit) equals search
    heads, _ = idx.probe(xq[:60], 10)
    pre = idx.search_preassigned(xq[:60], heads, 10, max_dist_ratio=1.5)
    np.testing.assert_array_equal(pre.ids, batch.ids)


def test_short_results_are_completed_without_the_limit(data):
    xb, xq = data
    idx = SpannIndex(D, head_ratio=1 / 40, n_probe=2, posting_limit=1, progress=False).build(xb)
    ids, _ = idx.search(xq[:5], 50)
    assert (ids >= 0).all()  # 2 postings x 1 entry < 50: answered again over every entry


def test_snapshot_round_trip(tmp_path, data):
    xb, xq = data
    idx = SpannIndex(D, head_ratio=1 / 40, n_probe=8, posting_limit=30, progress=False).build(xb[:6000])
    idx.add(xb[6000:], np.arange(6000, len(xb)))
    before = idx.search(xq, 10)
    idx.save(tmp_path / "i")
    again = SpannIndex.load(tmp_path / "i")
    assert again.params["posting_limit"] == 30 and again.posting_limit == 30
    _assert_ordered(again)
    after = again.search(xq, 10)
    np.testing.assert_array_equal(before.ids, after.ids)
    # "auto" is kept as "auto" and resolves against the stored build mean
    auto = SpannIndex(D, head_ratio=1 / 40, n_probe=8, posting_limit="auto", progress=False).build(xb[:3000])
    assert auto.posting_limit == max(32, int(np.ceil(3.0 * auto._build_mean)))
    auto.save(tmp_path / "a")
    back = SpannIndex.load(tmp_path / "a")
    assert back.params["posting_limit"] == "auto" and back.posting_limit == auto.posting_limit


def test_default_is_no_limit():
    idx = SpannIndex(D, n_probe=4, progress=False)
    assert idx.params["posting_limit"] is None and idx.posting_limit is None


def test_snapshot_without_a_limit_loads_unlimited(tmp_path, data):
    """A snapshot written before the posting limit (no params key): calibrated without a limit, none applies."""
    xb, xq = data
    idx = SpannIndex(D, head_ratio=1 / 40, n_probe=8, posting_limit=50, progress=False).build(xb[:4000])
    idx.save(tmp_path / "i")
    man = tmp_path / "i" / "MANIFEST.json"
    doc = json.loads(man.read_text())
    del doc["meta"]["params"]["posting_limit"]
    doc["crc32"] = _manifest_crc(doc)
    man.write_text(json.dumps(doc))
    old = SpannIndex.load(tmp_path / "i")
    assert old.params["posting_limit"] is None and old.posting_limit is None
    np.testing.assert_array_equal(old.search(xq, 10).ids, idx.search(xq, 10, posting_limit=10**9).ids)


def test_calibration_is_measured_with_the_limit(data):
    xb, xq = data
    idx = SpannIndex(D, head_ratio=1 / 40, posting_limit=10, progress=False).build(xb)
    cal = idx._calibration()
    assert cal is not None
    # the calibration's searches ran with the limit: their cost (entries) is bounded by it (k = 1: deeper k
    # may be short of hits under so small a limit, replicas repeating, and be answered again without it)
    assert (cal.cost[cal.ks == 1] <= 10 * cal.n_probe + 1e-9).all()
    assert idx.search(xq, 10).stats["entries"].max() <= 10 * idx.search(xq, 10).stats["postings"].max()


def test_posting_limit_validation():
    with pytest.raises(ValueError):
        SpannIndex(D, posting_limit=0)
    with pytest.raises((ValueError, TypeError)):
        SpannIndex(D, posting_limit="half")
    idx = SpannIndex(D, n_probe=4, progress=False).build(clustered(500, D, seed=1))
    with pytest.raises(ValueError):
        idx.search(np.zeros(D, np.float32) + 0.1, 5, posting_limit=0)
    with pytest.raises((ValueError, TypeError)):
        idx.search(np.zeros(D, np.float32) + 0.1, 5, posting_limit="auto")
