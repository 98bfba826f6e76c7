"""The index's state owners on their own (codec, posting arena, head table, id map, vector table), the
kernels' typed contract, and the one probe path: single, batch and two-step search agree exactly."""

from __future__ import annotations

import numpy as np
import pytest

from spann_vectorstore import SpannIndex, _heads
from spann_vectorstore._arena import PostingArena, grow, order_rows
from spann_vectorstore._heads import HeadTable
from spann_vectorstore._idmap import IdMap, VectorTable
from spann_vectorstore._kernels import contract
from spann_vectorstore._kernels.codes import fs_block, fs_block_scalar, fs_lut
from spann_vectorstore._rabitq import BlockedCodes, RaBitQCodec, random_rotation
from spann_vectorstore._storage import CorruptStoreError

from .conftest import clustered, exact, recall

D = 48


# ----------------------------------------------------------------------------------------------------------
# RaBitQ codec
# ----------------------------------------------------------------------------------------------------------
def test_rotation_is_orthogonal_and_reproducible():
    r = random_rotation(40, seed=3)
    np.testing.assert_allclose(r @ r.T, np.eye(40), atol=1e-5)
    np.testing.assert_array_equal(r, random_rotation(40, seed=3))
    assert not np.allclose(r, random_rotation(40, seed=4))
    codec = RaBitQCodec(40, 1, seed=3)
    np.testing.assert_array_equal(codec.rotation, r)
    with pytest.raises(ValueError, match="shape"):
        codec.set_rotation(np.eye(39, dtype=np.float32))


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_codec_estimates_inner_products_within_its_bound(bits):
    """Encoded residuals estimate <x, q> = <c, q> + fac * <u, Rq> with the error bound the scan relies on."""
    rng = np.random.default_rng(bits)
    d, n = 64, 300
    codec = RaBitQCodec(d, bits, seed=0)
    heads = rng.standard_normal((3, d)).astype(np.float32)
    x = rng.standard_normal((n, d)).astype(np.float32)
    head_of = rng.integers(0, 3, n)
    store = codec.empty_planes(n)
    codec.encode(x, heads, np.arange(n), head_of, store, np.arange(n))
    assert set(store) == set(codec.planes)
    q = rng.standard_normal(d).astype(np.float32)
    qr = codec.rotation @ q
    # the 1-bit plane: sign codes in FastScan blocks, levels -1/2, +1/2
    sign = store["codes"] if bits == 1 else store["sign"]
    fac1, err1 = (store["fac"], store["err"]) if bits == 1 else (store["fac1"], store["err1"])
    rows = sign[np.arange(n)]
    nb1 = rows.shape[1]
    bitv = np.unpackbits(rows, axis=1, bitorder="little").reshape(n, nb1, 8)
    dims = np.arange(8)[None, :] * nb1 + np.arange(nb1)[:, None]
    u = np.zeros((n, d))
    ok = dims < d
    u[:, dims[ok]] = bitv[:, ok] - 0.5
    est = heads[head_of] @ q + fac1 * (u @ qr)
    true = x @ q
    bound = err1 * np.linalg.norm(qr)
    # eps0 is a confidence multiplier: 1.9 covers ~95% of the errors (a normal tail), 4 nearly all
    assert (np.abs(est - true) <= 1.9 * bound + 1e-4).mean() >= 0.9, "the 1-bit estimate must stay within its bound"
    assert (np.abs(est - true) <= 4.0 * bound + 1e-4).mean() >= 0.995
    if bits > 1:
        assert store["codes"].shape == (n, codec.nbytes) and (store["err"] < err1).mean() > 0.9, (
            "more bits must tighten the error bound"
        )


@pytest.mark.parametrize("d", [100, 384, 1536])
def test_fastscan_lookups_match_exact_sums(d):
    """Stage 1's byte-LUT sums (AVX2 when the host has it, and the portable path) equal the exact sums of
    the rotated query over each code's set bits within the reported rounding bound, for dimensions that pad
    the codes (100) and that need several u16 accumulation chunks (1536)."""
    rng = np.random.default_rng(d)
    nb1 = 8 * ((d + 63) // 64)
    rows = rng.integers(0, 256, size=(64, nb1), dtype=np.uint8)
    dims = np.arange(8)[None, :] * nb1 + np.arange(nb1)[:, None]  # [j, t]: dimension of bit t of byte j
    bits = np.unpackbits(rows, axis=1, bitorder="little").reshape(64, nb1, 8)
    padded = np.tile(dims >= d, (64, 1, 1))
    bits[padded] = 0  # the encoder never sets bits of padding dimensions
    rows = np.packbits(bits.reshape(64, -1), axis=1, bitorder="little")
    blocked = BlockedCodes.of_rows(rows)
    qr = rng.standard_normal(d).astype(np.float32)
    q_of_bit = np.where(dims < d, qr[np.minimum(dims, d - 1)], 0.0)
    exact_sums = np.einsum("ejt,jt->e", bits.astype(np.float64), q_of_bit)
    lut8, scale, qneg, qerr = fs_lut(qr, nb1)
    acc16 = np.empty(32, np.uint16)
    for blk in range(2):
        fast = np.empty(32, np.int32)
        fs_block(blocked.blocked, blk, lut8, acc16, fast)
        portable = np.zeros(32, np.int32)
        fs_block_scalar(blocked.blocked[blk], lut8, portable)
        np.testing.assert_array_equal(fast, portable)
        got = scale * fast + qneg
        want = exact_sums[32 * blk : 32 * blk + 32]
        assert np.abs(got - want).max() <= qerr, f"LUT sums off by {np.abs(got - want).max()} > bound {qerr}"


def test_blocked_codes_round_trip_rows():
    """The FastScan block layout stores and returns arbitrary code rows at arbitrary arena entries."""
    rng = np.random.default_rng(3)
    rows = rng.integers(0, 256, size=(200, 48), dtype=np.uint8)
    b = BlockedCodes.of_rows(rows)
    np.testing.assert_array_equal(b[:200], rows)
    dst = rng.permutation(200)[:77]
    new = rng.integers(0, 256, size=(77, 48), dtype=np.uint8)
    b[dst] = new
    expect = rows.copy()
    expect[dst] = new
    np.testing.assert_array_equal(b[np.arange(200)], expect)
    g = grow(b, 1000)
    assert g.shape[0] >= 1000 and g.nbytes >= 1000 * 48
    np.testing.assert_array_equal(g[:200], expect)


# ----------------------------------------------------------------------------------------------------------
# posting arena
# ----------------------------------------------------------------------------------------------------------
def _arena_contents(arena: PostingArena) -> dict[int, list[int]]:
    return {h: arena.members(h).tolist() for h in range(arena.n_heads)}


def test_arena_append_rewrite_compact_keep_postings():
    codec = RaBitQCodec(16, 1, seed=0)
    arena = PostingArena(codec, 3)
    model: dict[int, list[int]] = {0: [], 1: [], 2: []}
    rng = np.random.default_rng(0)
    nxt = 0
    for _ in range(30):
        m = int(rng.integers(1, 20))
        assign = rng.integers(-1, 3, size=(m, 2))
        assign[:, 0] = np.abs(assign[:, 0])
        assign[assign[:, 1] == assign[:, 0], 1] = -1
        vidx = np.arange(nxt, nxt + m)
        rows, heads, dest = arena.append(assign, vidx)
        assert len(rows) == len(heads) == len(dest) == int((assign >= 0).sum())
        for r in range(m):
            for h in assign[r]:
                if h >= 0:
                    model[int(h)].append(nxt + r)
        nxt += m
        # every entry slot is distinct and inside its posting's room
        assert len(np.unique(dest)) == len(dest)
        for h in range(3):
            assert arena.size[h] <= arena.cap[h]
        assert {h: sorted(v) for h, v in _arena_contents(arena).items()} == {h: sorted(v) for h, v in model.items()}
    view = arena.view()
    assert arena.view() is view, "the view is cached until the arena changes"
    arena.add_heads(1)
    assert arena.view() is not view and arena.n_heads == 4
    model[3] = []
    dest = arena.rewrite(3, np.array(model[0][:5]))
    assert len(dest) == 5 and arena.members(3).tolist() == model[0][:5]
    model[3] = model[0][:5]
    deleted = np.zeros(nxt, np.uint8)
    deleted[::3] = 1
    arena.compact(deleted, slack=1.0)
    assert arena.used == arena.n_entries, "a tight compaction leaves no spare room"
    for h in range(4):
        assert arena.members(h).tolist() == [v for v in model[h] if v % 3], "compaction keeps order, drops tombstones"


def test_arena_export_and_from_rows_round_trip():
    rng = np.random.default_rng(1)
    codec = RaBitQCodec(24, 2, seed=0)
    arena = PostingArena(codec, 4)
    x = rng.standard_normal((50, 24)).astype(np.float32)
    heads = rng.standard_normal((4, 24)).astype(np.float32)
    rows, hs, dest = arena.append(rng.integers(0, 4, size=(50, 1)), np.arange(50))
    codec.encode(x, heads, rows, hs, arena.entries, dest)
    deleted = np.zeros(50, np.uint8)
    deleted[:10] = 1
    renum = np.full(50, -1)
    renum[10:] = np.arange(40)
    before = {name: np.array(arena.entries[name][: arena.used]) for name in codec.planes}
    out, sizes = arena.export(deleted, renum)
    out = order_rows(codec, sizes, out)  # the order a snapshot stores
    # the export leaves the arena as it was (tombstoned entries included)
    for name in codec.planes:
        np.testing.assert_array_equal(arena.entries[name][: arena.used], before[name])
    assert out["vidx"].min() >= 0 and len(out["vidx"]) == int((deleted[rows] == 0).sum()) == sizes.sum()
    back = PostingArena.from_rows(codec, sizes, out)
    arena.compact(deleted)  # what a compaction keeps is what the export wrote
    for h in range(4):
        np.testing.assert_array_equal(back.members(h), renum[arena.members(h)])
    for name in codec.planes:
        np.testing.assert_array_equal(back.entries[name][: back.used], arena.entries[name][: arena.used])
    with pytest.raises(ValueError, match="code width"):
        PostingArena.from_rows(codec, sizes, {**out, "codes": out["codes"][:, :-1]})


# ----------------------------------------------------------------------------------------------------------
# head table
# ----------------------------------------------------------------------------------------------------------
def test_head_table_groups_and_float16_copy(monkeypatch):
    monkeypatch.setattr(_heads, "GROUP_MIN_HEADS", 64)
    heads = clustered(400, D, seed=2)
    table = HeadTable(D, seed=0)
    table.reset(heads)
    g = table.n_groups
    assert g >= 8
    sizes = np.diff(table.g_start)
    assert sizes.sum() == 400 and sorted(table.g_members.tolist()) == list(range(400)), "each head in one group"
    assert sizes.max() <= 2 * -(-400 // g), "groups must be balanced"
    f16 = table.heads16.view(np.float16)[:, :D].astype(np.float32) * table.h16_scale
    np.testing.assert_allclose(f16, heads, rtol=2e-3, atol=2e-3 * np.abs(heads).max())
    assert table.group_probe(4) == min(g, 10)
    # a split appends a head that joins the group of the nearest centroid
    first, second = heads[0] + 0.01, heads[0] - 0.01
    new = table.split(0, first, second)
    assert new == 400 and len(table) == 401
    assert sorted(table.g_members.tolist()) == list(range(401))
    near = np.argmin(((table.g_cent - second) ** 2).sum(1))
    assert table.g_label[new] == near
    np.testing.assert_array_equal(table.heads[0], first.astype(np.float32))


def test_head_table_probe_finds_nearest_heads():
    rng = np.random.default_rng(5)
    heads = rng.standard_normal((300, D)).astype(np.float32)
    table = HeadTable(D, seed=0)
    table.reset(heads)
    q = rng.standard_normal((20, D)).astype(np.float32)
    ids, dist = table.probe(q, 10)
    true_d = ((q[:, None, :] - heads[None]) ** 2).sum(-1)
    want = np.argsort(true_d, axis=1)[:, :10]
    hit = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, want)])
    assert hit >= 0.98, f"float16 ranking found {hit:.3f} of the 10 nearest heads"
    assert (np.diff(dist, axis=1) >= 0).all(), "nearest first"
    np.testing.assert_allclose(dist, np.take_along_axis(true_d, ids, 1), rtol=1e-3, atol=1e-3)
    empty_ids, _ = HeadTable(D, seed=0).probe(q, 5)
    assert (empty_ids == -1).all()


# ----------------------------------------------------------------------------------------------------------
# id map and vector table
# ----------------------------------------------------------------------------------------------------------
def test_id_map_lookup_delete_and_dense_table():
    ids = np.array([50, 3, 7, 10_000_000], np.int64)
    m = IdMap.of_ids(ids)
    assert m.n == m.n_live == 4
    np.testing.assert_array_equal(m.lookup(np.array([7, 50, 8, 10_000_000])), [2, 0, -1, 3])
    assert m.delete(np.array([7, 8])) == 1 and m.n_live == 3 and m.deleted.tolist() == [0, 0, 1, 0]
    np.testing.assert_array_equal(m.lookup(np.array([7, 3])), [-1, 1])
    np.testing.assert_array_equal(m.sorted_ids, [3, 50, 10_000_000])
    np.testing.assert_array_equal(m.next_ids(2), [10_000_001, 10_000_002])
    # many dense ids: the gather table answers the same as the binary search
    dense = IdMap.of_ids(np.random.default_rng(0).permutation(20_000))
    dense.delete(np.arange(0, 20_000, 7))
    probe = np.arange(-5, 20_010)
    slow = np.array([dense.lookup(probe[i : i + 100]) for i in range(0, len(probe), 100)], dtype=object)
    np.testing.assert_array_equal(dense.lookup(probe), np.concatenate(list(slow)))
    view = dense.view()
    dense.delete(np.array([1]))
    assert dense.view() is view and view.deleted[dense.lookup(np.array([2]))[0]] == 0, "deletes are in place"


def test_vector_table_segments_and_checked_map(tmp_path):
    rng = np.random.default_rng(2)
    base = rng.standard_normal((10, 8)).astype(np.float32)
    fn = tmp_path / "v.npy"
    np.save(fn, base)
    from spann_vectorstore._storage import array_crc

    mapped = np.load(fn, mmap_mode="r")
    t = VectorTable.of_arrays(mapped, (base**2).sum(1), mapped=(fn, array_crc(base)))
    more = rng.standard_normal((5, 8)).astype(np.float32)
    t.append(more)
    assert t.n == 15 and t.tail.shape == (5, 8) and t.view().base.shape == (10, 8)
    np.testing.assert_array_equal(t.rows(np.array([9, 10, 0, 14])), np.vstack([base[9], more[0], base[0], more[4]]))
    np.testing.assert_allclose(t.xn2[10:], (more**2).sum(1), rtol=1e-6)
    t.check_mapped()
    del mapped, t
    damaged = base.copy()
    damaged[3, 2] += 1
    np.save(fn, damaged)
    t2 = VectorTable.of_arrays(np.load(fn, mmap_mode="r"), (base**2).sum(1), mapped=(fn, array_crc(base)))
    with pytest.raises(CorruptStoreError, match=r"v\.npy"):
        t2.check_mapped()


# ----------------------------------------------------------------------------------------------------------
# the kernel contract
# ----------------------------------------------------------------------------------------------------------
def test_views_reject_wrong_arrays_by_name():
    table = HeadTable(D, seed=0)
    table.reset(np.random.default_rng(0).standard_normal((20, D)).astype(np.float32))
    good = table.view()
    with pytest.raises(TypeError, match=r"HeadsView\.hn2"):
        contract.check_view(good._replace(hn2=good.hn2.astype(np.float64)))
    with pytest.raises(TypeError, match=r"HeadsView\.heads"):
        contract.check_view(good._replace(heads=np.asfortranarray(good.heads)))
    with pytest.raises(ValueError, match="HeadsView"):
        contract.check_view(good._replace(hn2=good.hn2[:-1]))
    ids = IdMap.of_ids(np.arange(5)).view()
    with pytest.raises(TypeError, match=r"IdsView\.deleted"):
        contract.check_view(ids._replace(deleted=ids.deleted.astype(bool)))


# ----------------------------------------------------------------------------------------------------------
# one probe path: single, batch and two-step search agree
# ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data():
    return clustered(6000, D, seed=11), clustered(120, D, seed=12)


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("metric,bits", [("ip", 1), ("l2", 2), ("cosine", 4)])
def test_single_batch_and_preassigned_search_agree(data, monkeypatch, grouped, metric, bits):
    xb, xq = data
    if grouped:
        monkeypatch.setattr(_heads, "GROUP_MIN_HEADS", 64)
    idx = SpannIndex(D, metric=metric, bits=bits, head_ratio=1 / 30, progress=False).build(xb)
    assert (idx.stats()["head_groups"] > 0) == grouped
    idx.add(clustered(500, D, seed=13), np.arange(10_000, 10_500))
    idx.delete(np.arange(0, 6000, 5))
    for kw in ({"n_probe": 6}, {"n_probe": 16, "max_dist_ratio": 3.0}, {"allowed_ids": np.arange(0, 10_500, 4)}):
        batch = idx.search(xq, 10, **kw)
        for i in range(len(xq)):
            one = idx.search(xq[i], 10, **kw)
            np.testing.assert_array_equal(one.ids[0], batch.ids[i], err_msg=f"query {i} {kw}")
            np.testing.assert_array_equal(one.scores[0], batch.scores[i])
            for name, col in one.stats.items():
                assert col[0] == batch.stats[name][i], (name, i, kw)
    heads, _dist = idx.probe(xq, 12)
    assert heads.shape == (len(xq), 12) and (heads >= 0).all()
    two_step = idx.search_preassigned(xq, heads, 10)
    np.testing.assert_array_equal(two_step.ids, idx.search(xq, 10, n_probe=12).ids)
    # a caller's own choice of postings: only their vectors come back
    own = idx.search_preassigned(xq[:3], heads[:3, :1], 5)
    for i in range(3):
        members = set(idx.search_preassigned(xq[i : i + 1], heads[i : i + 1, :1], 10_000).ids[0].tolist()) - {-1}
        assert set(own.ids[i].tolist()) - {-1} <= members
    with pytest.raises(ValueError, match="head ids"):
        idx.search_preassigned(xq[:2], np.full((2, 3), idx.n_heads), 5)
    with pytest.raises(ValueError, match="shape"):
        idx.search_preassigned(xq[:2], heads[:3], 5)


def test_search_stats_report_the_work(data):
    xb, xq = data
    idx = SpannIndex(D, bits=1, head_ratio=1 / 30, progress=False).build(xb)
    res = idx.search(xq, 10, n_probe=8)
    st = res.stats
    assert set(st) == {"postings", "entries", "survivors", "candidates", "exact"}
    assert (st["postings"] >= 1).all() and (st["postings"] <= 8).all()
    assert (st["entries"] >= st["survivors"]).all() and (st["survivors"] >= st["candidates"]).all()
    assert (st["candidates"] >= st["exact"]).all() and (st["exact"] >= 10).all()
    wide = idx.search(xq, 10, n_probe=32, max_dist_ratio=100.0).stats
    assert wide["entries"].sum() > st["entries"].sum(), "probing more postings estimates more entries"
    truth, _ = exact(xb, xq, 10, "ip")
    assert recall(res.ids, truth, 10) > 0.5
    flat = SpannIndex(D, progress=False)
    flat.add(xb[:100])
    assert (flat.search(xq[:2], 5).stats["exact"] == 100).all(), "an exact search compares every vector"
