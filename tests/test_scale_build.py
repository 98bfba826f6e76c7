"""The build at scale: heads found through their groups, builds over a memory-mapped ``.npy`` file (no copy),
the tree's blockwise split of big nodes, and the split limit after a build."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from spann_vectorstore import SpannIndex, _heads, clustering
from spann_vectorstore._heads import HeadTable
from spann_vectorstore._storage import CorruptStoreError
from spann_vectorstore.clustering import closure_assign, hierarchical_heads, nearest_candidates

from .conftest import clustered, exact, recall

D = 32


def _data_and_heads(n: int, n_heads: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and heads over them as a build makes them (balanced k-means leaves)."""
    x = clustered(n, D, n_centers=40, seed=seed)
    return x, hierarchical_heads(x, target_size=max(1, n // n_heads), rng=np.random.default_rng(seed))


@pytest.fixture
def grouped_from_small(monkeypatch):
    """Head groups take part from 256 heads on (the defaults: 2,048 for grouping, 8,192 for builds)."""
    monkeypatch.setattr(clustering, "GROUPED_MIN_HEADS", 256)
    monkeypatch.setattr(_heads, "GROUP_MIN_HEADS", 256)


def _groups(heads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = HeadTable(heads.shape[1], seed=0)
    t.reset(heads)  # the groups a build uses
    assert t.groups is not None and t.n_groups > 1
    return t.groups


def test_grouped_candidates_equal_brute_force_when_every_group_is_near(grouped_from_small):
    x, heads = _data_and_heads(3000, 600, seed=1)
    groups = _groups(heads)
    ((_, _, ci_b, cd_b),) = nearest_candidates(x, heads, 24)
    ((_, _, ci_g, cd_g),) = nearest_candidates(x, heads, 24, groups=groups, n_groups=groups[0].shape[0])
    # the same sorted distances; ids differ only where two heads are equally near (products summed in
    # another order)
    np.testing.assert_allclose(cd_g, cd_b, rtol=1e-4, atol=1e-4)
    assert np.mean(ci_g == ci_b) > 0.995


def test_grouped_assignment_agrees_with_brute_force(grouped_from_small):
    """Through each row's nearest groups the nearest head is nearly always the brute-force one and most
    replica sets are equal; every listed head is a real head, distances ascend and are the true ones."""
    x, heads = _data_and_heads(9000, 900, seed=3)
    groups = _groups(heads)
    kw = dict(replica_count=8, rng_factor=2.0, candidates=32)
    ref = closure_assign(x, heads, **kw)
    out = closure_assign(x, heads, groups=groups, **kw)
    same = np.mean([set(a[a >= 0]) == set(b[b >= 0]) for a, b in zip(ref, out)])
    assert same >= 0.6, same
    assert np.mean(ref[:, 0] == out[:, 0]) >= 0.98
    assert ((out >= -1) & (out < len(heads))).all() and (out[:, 0] >= 0).all()
    ((_, _, ci, cd),) = nearest_candidates(x, heads, 32, groups=groups)
    assert (np.diff(cd, axis=1)[ci[:, 1:] >= 0] >= 0).all()
    hn = ((x[:, None, :] - heads[np.maximum(ci[:, :5], 0)]) ** 2).sum(-1)
    np.testing.assert_allclose(cd[:, :5], hn, rtol=1e-3, atol=1e-3)


def test_nearest_candidates_blocks_cover_every_row(grouped_from_small, monkeypatch):
    x, heads = _data_and_heads(2500, 400, seed=5)
    groups = _groups(heads)
    monkeypatch.setattr(clustering, "_DIRECT_ROWS", 0)  # every block through the products (same arithmetic)
    whole = nearest_candidates(x, heads, 8, groups=groups)
    ((_, _, ref, _),) = list(whole)
    monkeypatch.setattr(clustering, "_ROW_BYTES", 4 * D * 1000)  # reads of 1000 rows (at least _BLOCK)
    monkeypatch.setattr(clustering, "_BLOCK", 1000)
    monkeypatch.setattr(clustering, "_GROUP_BLOCK", 300)  # grouped blocks of 300 rows
    blocks = list(nearest_candidates(x, heads, 8, groups=groups))
    assert blocks[0][:2] == (0, 300) and blocks[-1][1] == 2500
    assert all(a[1] == b[0] for a, b in itertools.pairwise(blocks))
    np.testing.assert_array_equal(np.concatenate([ci for _, _, ci, _ in blocks]), ref)


def test_few_rows_score_their_group_members_in_one_kernel(grouped_from_small, monkeypatch):
    """Blocks below _DIRECT_ROWS (an add) compute their products in ``push_group_members``: the same
    candidates as the per-group BLAS products (distances to float rounding), from a HeadTable's cached
    ``head_groups()`` as from the (centroids, labels) pair."""
    from spann_vectorstore._heads import HeadTable

    x, heads = _data_and_heads(1500, 400, seed=8)
    table = HeadTable(D, 3)
    table.reset(heads, _groups(heads))
    assert table.head_groups() is table.head_groups()  # cached until the table changes
    monkeypatch.setattr(clustering, "_DIRECT_ROWS", 0)
    ((_, _, ref_i, ref_d),) = nearest_candidates(x, heads, 16, groups=table.groups)
    monkeypatch.setattr(clustering, "_DIRECT_ROWS", 10**9)
    ((_, _, ci, cd),) = nearest_candidates(x, heads, 16, groups=table.head_groups())
    np.testing.assert_allclose(cd, ref_d, rtol=1e-4, atol=1e-4)
    same = np.mean([set(a) == set(b) for a, b in zip(ci, ref_i)])
    assert same >= 0.99, same  # only ties at the 16th place may differ
    assert np.mean(ci == ref_i) >= 0.99
    # a split changes the table: the cached groups are made again and hold the new head
    before = table.head_groups()
    new = table.split(0, heads[0], heads[0] + 0.01)
    assert table.head_groups() is not before and new in table.head_groups().ids


def test_big_tree_nodes_split_blockwise_with_the_same_quality(monkeypatch):
    """Nodes above _NODE_BLOCK rows are split from a sample and blockwise products: the leaves still
    cover the data as well (recall of an index built that way matches one built the in-memory way)."""
    xb = clustered(12_000, D, seed=6)
    xq = clustered(200, D, seed=7)
    gt, _ = exact(xb, xq, 10, "l2")
    a = SpannIndex(D, metric="l2", n_probe=12, seed=1).build(xb)
    monkeypatch.setattr(clustering, "_NODE_BLOCK", 1000)
    b = SpannIndex(D, metric="l2", n_probe=12, seed=1).build(xb)
    ra, rb = recall(a.search(xq, 10).ids, gt, 10), recall(b.search(xq, 10).ids, gt, 10)
    assert abs(ra - rb) <= 0.03 and rb >= 0.9, (ra, rb)
    assert abs(a.n_heads - b.n_heads) <= 0.1 * a.n_heads


def test_build_with_grouped_assignment_reaches_the_same_recall(grouped_from_small, monkeypatch):
    xb = clustered(30_000, D, seed=8)
    xq = clustered(300, D, seed=9)
    gt, _ = exact(xb, xq, 10, "l2")
    grouped = SpannIndex(D, metric="l2", n_probe=16, head_ratio=1 / 40, seed=2).build(xb)
    assert grouped.n_heads >= 256 and grouped.stats()["head_groups"] > 1
    monkeypatch.setattr(clustering, "GROUPED_MIN_HEADS", 10**9)  # brute force over every head
    brute = SpannIndex(D, metric="l2", n_probe=16, head_ratio=1 / 40, seed=2).build(xb)
    r_grouped = recall(grouped.search(xq, 10).ids, gt, 10)
    r_brute = recall(brute.search(xq, 10).ids, gt, 10)
    assert r_grouped >= r_brute - 0.02, (r_grouped, r_brute)


# ----------------------------------------------------------------------------------------------------------
# builds over files
# ----------------------------------------------------------------------------------------------------------
def test_build_from_npy_path_maps_the_file_and_equals_the_in_memory_build(tmp_path):
    xb = clustered(6000, D, seed=10)
    xq = clustered(100, D, seed=11)
    np.save(tmp_path / "base.npy", xb)
    mem = SpannIndex(D, metric="ip", n_probe=10, seed=3).build(xb)
    for source in (tmp_path / "base.npy", str(tmp_path / "base.npy"), np.load(tmp_path / "base.npy", mmap_mode="r")):
        idx = SpannIndex(D, metric="ip", n_probe=10, seed=3).build(source)
        assert idx.stats()["vectors_mmapped"] and idx.stats()["bytes_vectors_mmap"] == xb.nbytes
        a, b = mem.search(xq, 10), idx.search(xq, 10)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.scores, b.scores)
    # adds go to the in-memory tail; a save copies the mapped rows into the snapshot, which loads back
    new = idx.add(clustered(50, D, seed=12))
    idx.save(tmp_path / "snap")
    back = SpannIndex.load(tmp_path / "snap")
    np.testing.assert_array_equal(back.search(xq, 10).ids, idx.search(xq, 10).ids)
    np.testing.assert_array_equal(back.vectors(new[:3]), idx.vectors(new[:3]))


def test_build_from_a_file_that_changes_refuses_to_save(tmp_path):
    xb = clustered(3000, D, seed=13)
    np.save(tmp_path / "base.npy", xb)
    idx = SpannIndex(D, metric="l2", seed=3).build(tmp_path / "base.npy")
    mm = np.load(tmp_path / "base.npy", mmap_mode="r+")
    mm[5] += 1.0
    mm.flush()
    del mm
    with pytest.raises(CorruptStoreError, match=r"base\.npy"):
        idx.save(tmp_path / "snap")
    assert not (tmp_path / "snap" / "MANIFEST.json").exists()


def test_build_from_other_dtypes_and_cosine_converts_in_memory(tmp_path):
    xb = clustered(3000, D, seed=14)
    np.save(tmp_path / "half.npy", xb.astype(np.float16))
    np.save(tmp_path / "base.npy", xb)
    half = SpannIndex(D, metric="l2", seed=1).build(tmp_path / "half.npy")
    assert not half.stats()["vectors_mmapped"]
    np.testing.assert_array_equal(half.vectors([7])[0], xb[7].astype(np.float16).astype(np.float32))
    cos = SpannIndex(D, metric="cosine", seed=1).build(tmp_path / "base.npy")
    assert not cos.stats()["vectors_mmapped"]
    np.testing.assert_allclose(np.linalg.norm(cos.vectors([3, 4]), axis=1), 1.0, rtol=1e-5)


def test_build_from_bad_files_names_the_file_and_rows(tmp_path):
    idx = SpannIndex(D, seed=1)
    with pytest.raises(ValueError, match=r"missing\.npy"):
        idx.build(tmp_path / "missing.npy")
    (tmp_path / "junk.npy").write_bytes(b"not an npy file")
    with pytest.raises(ValueError, match=r"junk\.npy"):
        idx.build(tmp_path / "junk.npy")
    bad = clustered(2000, D, seed=15)
    bad[1234, 3] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ValueError, match=r"nan\.npy"):
        idx.build(tmp_path / "nan.npy")
    np.save(tmp_path / "dim.npy", bad[:, :5])
    with pytest.raises(ValueError, match="dimension"):
        idx.build(tmp_path / "dim.npy")
    np.save(tmp_path / "obj.npy", np.array([[1, 2]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"obj\.npy"):
        idx.build(tmp_path / "obj.npy")  # never unpickled
    assert len(idx) == 0 and idx.n_heads == 0  # nothing was built


# ----------------------------------------------------------------------------------------------------------
# the split limit after a build
# ----------------------------------------------------------------------------------------------------------
def test_first_adds_after_a_build_split_nothing(tmp_path):
    """The split limit is at least the longest posting the build made: a skewed build (one dense blob)
    leaves many postings above ``split_factor`` x the mean, and the first add splits none of them (before,
    it split every one), before or after a snapshot round trip."""
    rng = np.random.default_rng(16)
    dense = (rng.standard_normal((6000, D)) * 0.01).astype(np.float32)
    xb = np.vstack([clustered(6000, D, seed=16), dense])
    idx = SpannIndex(D, metric="l2", split_factor=1.5, seed=4).build(xb)
    sizes = idx._arena.size.copy()
    over = int((sizes > 1.5 * sizes.mean()).sum())
    assert over >= 10
    assert idx._split_limit() >= sizes.max()
    idx.save(tmp_path / "s")
    back = SpannIndex.load(tmp_path / "s")
    assert back._split_limit() == idx._split_limit()
    for index in (idx, back):
        heads = index.n_heads
        joined = index.add(clustered(3, D, seed=17))
        assert index.n_heads - heads <= 3 * index.params["replica_count"] < over
        assert len(joined) == 3


# ----------------------------------------------------------------------------------------------------------
# head splits in place
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("grouped", [False, True])
def test_head_splits_in_place_equal_a_fresh_table(grouped, monkeypatch):
    """Splits write two rows in spare room instead of rebuilding the table: after many of them (past the
    buffers' capacity, and one head far beyond the float16 scale) every array equals a table built afresh
    from the same heads and groups, bit for bit (the float16 copy included: its scale is a power of two)."""
    if grouped:
        monkeypatch.setattr(_heads, "GROUP_MIN_HEADS", 64)
    rng = np.random.default_rng(20)
    table = HeadTable(D, seed=1)
    table.reset(clustered(300, D, seed=21))
    assert (table.n_groups > 0) == grouped
    for step in range(120):
        h = int(rng.integers(len(table)))
        first = table.heads[h] + 0.01 * rng.standard_normal(D).astype(np.float32)
        second = table.heads[h] - 0.01 * rng.standard_normal(D).astype(np.float32)
        if step == 77:
            second = second * 5000.0  # beyond 1024 x the scale: everything re-encoded
        assert table.split(h, first, second) == len(table) - 1
    fresh = HeadTable(D, seed=1)
    fresh.reset(table.heads.copy(), table.groups)
    for name in ("heads", "hn2", "heads16", "g_cent", "g_cn2", "g_label", "g_members", "g_start"):
        np.testing.assert_array_equal(getattr(table, name), getattr(fresh, name), err_msg=name)
    assert table.h16_scale == fresh.h16_scale
    view = table.view()
    assert view.heads.shape[0] == view.heads16.shape[0] == view.hn2.shape[0] == len(table) == 420
    if grouped:
        members = np.sort(table.g_members)
        np.testing.assert_array_equal(members, np.arange(len(table)))


def test_build_without_copy_keeps_the_callers_array(tmp_path):
    """copy=False: the index's full-precision vectors are the caller's array (no second copy), with the
    same answers as a copying build; adds and saves work as usual. build() with no vectors (a rebuild over
    the live vectors) keeps its own fresh copy the same way."""
    xb = clustered(5000, D, seed=30)
    xq = clustered(50, D, seed=31)
    ref = SpannIndex(D, metric="l2", n_probe=8, seed=2).build(xb)
    idx = SpannIndex(D, metric="l2", n_probe=8, seed=2).build(xb, copy=False)
    assert np.shares_memory(idx._vectors.base, xb) and not np.shares_memory(ref._vectors.base, xb)
    np.testing.assert_array_equal(idx.search(xq, 10).ids, ref.search(xq, 10).ids)
    np.testing.assert_array_equal(idx.search(xq, 10).scores, ref.search(xq, 10).scores)
    new = idx.add(clustered(20, D, seed=32))
    idx.delete([0, 1])
    idx.build()
    assert not np.shares_memory(idx._vectors.base, xb) and len(idx) == 5018
    np.testing.assert_array_equal(idx.vectors(new), clustered(20, D, seed=32))
    idx.save(tmp_path / "s")
    np.testing.assert_array_equal(SpannIndex.load(tmp_path / "s").search(xq, 10).ids, idx.search(xq, 10).ids)
    half = SpannIndex(D, metric="l2", seed=2).build(xb.astype(np.float64), copy=False)  # converted: a copy
    assert not np.shares_memory(half._vectors.base, xb)


def test_a_build_failing_midway_leaves_the_index_as_it_was(monkeypatch):
    """The previous content is replaced only once the new heads and assignment exist: a failure in the
    assignment (here a MemoryError) leaves the old index answering exactly as before."""
    import spann_vectorstore.index as index_module

    xb = clustered(4000, D, seed=40)
    xq = clustered(30, D, seed=41)
    idx = SpannIndex(D, metric="l2", n_probe=8, seed=1).build(xb)
    before = idx.search(xq, 10)

    def fail(*args, **kwargs):
        raise MemoryError("assignment")

    monkeypatch.setattr(index_module, "closure_assign", fail)
    with pytest.raises(MemoryError):
        idx.build(clustered(5000, D, seed=42))
    after = idx.search(xq, 10)
    assert len(idx) == 4000
    np.testing.assert_array_equal(after.ids, before.ids)
    np.testing.assert_array_equal(after.scores, before.scores)
