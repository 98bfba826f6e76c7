"""SpannIndex: recall against brute force, persistence, updates and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spann_vectorstore import CorruptStoreError, SpannIndex

from .conftest import clustered, exact, recall

D = 48


@pytest.fixture(scope="module")
def data():
    xb = clustered(6000, D, seed=1)
    xq = clustered(200, D, seed=2)
    return xb, xq


def small_index(metric="ip", bits=4, **kw) -> SpannIndex:
    kw.setdefault("head_ratio", 1 / 40)
    return SpannIndex(D, metric=metric, bits=bits, progress=False, **kw)


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_recall_against_brute_force(data, metric, bits):
    xb, xq = data
    idx = small_index(metric, bits).build(xb)
    ids, scores = idx.search(xq, k=10, n_probe=24)
    truth, _tscores = exact(xb, xq, 10, metric)
    r = recall(ids, truth, 10)
    assert r >= 0.95, f"recall@10 {r:.3f} < 0.95 for metric={metric} bits={bits}"
    # scores are exact (reranked): the returned score of each hit equals its true score
    q = xq / np.linalg.norm(xq, axis=1, keepdims=True) if metric == "cosine" else xq
    b = xb / np.linalg.norm(xb, axis=1, keepdims=True) if metric == "cosine" else xb
    if metric == "l2":
        true = ((q[:, None, :] - b[ids]) ** 2).sum(-1)
        assert np.all(np.diff(scores, axis=1) >= -1e-4), "l2 distances must ascend"
    else:
        true = np.einsum("qd,qkd->qk", q, b[ids])
        assert np.all(np.diff(scores, axis=1) <= 1e-4), "similarities must descend"
    np.testing.assert_allclose(scores, true, rtol=1e-3, atol=1e-3)


def test_single_query_equals_batch(data):
    xb, xq = data
    idx = small_index().build(xb)
    ids, sc = idx.search(xq[:20], k=5)
    for i in range(20):
        one_ids, one_sc = idx.search(xq[i], k=5)
        assert one_ids.shape == (1, 5)
        np.testing.assert_array_equal(one_ids[0], ids[i])
        np.testing.assert_allclose(one_sc[0], sc[i], rtol=1e-5)


def test_custom_ids_and_padding():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, D)).astype(np.float32)
    ids = np.array([100, 5, 42, 7, 9_000_000_000, -3, 11], np.int64)
    idx = small_index("l2").build(x, ids)
    got, sc = idx.search(x[2], k=10)
    assert got[0, 0] == 42 and sc[0, 0] == pytest.approx(0.0, abs=1e-4)
    assert set(got[0, :7]) == set(ids.tolist())
    assert (got[0, 7:] == -1).all() and np.isnan(sc[0, 7:]).all()


def test_empty_index_returns_padded_results():
    idx = small_index()
    ids, sc = idx.search(np.ones(D, np.float32), k=3)
    assert ids.shape == (1, 3) and (ids == -1).all() and np.isnan(sc).all()
    assert len(idx) == 0


def test_save_load_roundtrip_identical(tmp_path, data):
    xb, xq = data
    idx = small_index(bits=2).build(xb)
    before = idx.search(xq, k=10)
    idx.save(tmp_path / "idx")
    for mmap in (True, False):
        loaded = SpannIndex.load(tmp_path / "idx", mmap=mmap)
        after = loaded.search(xq, k=10)
        np.testing.assert_array_equal(before.ids, after.ids)
        np.testing.assert_allclose(before.scores, after.scores, rtol=1e-6)
        st = loaded.stats()
        assert st["vectors_mmapped"] is mmap
        assert st["count"] == len(xb) and st["heads"] == idx.n_heads
    mm = SpannIndex.load(tmp_path / "idx", mmap=True).stats()
    full = SpannIndex.load(tmp_path / "idx", mmap=False).stats()
    assert mm["bytes_ram"] + xb.nbytes == full["bytes_ram"], "mmap must keep the float vectors out of RAM"


def test_save_is_replaced_atomically(tmp_path, data):
    xb, _ = data
    p = tmp_path / "idx"
    small_index().build(xb[:500]).save(p)
    small_index().build(xb[:800]).save(p)
    assert len(SpannIndex.load(p)) == 800
    assert len(list(p.glob("snap-*"))) == 1, "old snapshot must be removed after the manifest switch"


def test_add_keeps_recall_close_to_fresh_build():
    xb = clustered(9000, D, seed=5)
    xq = clustered(200, D, seed=6)
    truth, _ = exact(xb, xq, 10, "ip")
    fresh = small_index(bits=4).build(xb)
    r_fresh = recall(fresh.search(xq, k=10, n_probe=16).ids, truth, 10)
    inc = small_index(bits=4).build(xb[:6000])
    build_mean = inc.stats()["posting_size_avg"]
    for s in range(6000, 9000, 500):
        inc.add(xb[s : s + 500], np.arange(s, s + 500))
    assert len(inc) == 9000
    r_inc = recall(inc.search(xq, k=10, n_probe=16).ids, truth, 10)
    assert r_inc >= r_fresh - 0.02, f"incremental recall {r_inc:.3f} vs fresh {r_fresh:.3f}"
    limit = max(8, int(inc.params["split_factor"] * build_mean))  # split_factor x the build's mean posting
    assert inc.stats()["posting_size_max"] <= limit, "oversized postings must have been split"


def test_delete_never_returns_deleted(tmp_path, data):
    xb, xq = data
    idx = small_index().build(xb)
    first = idx.search(xq, k=10).ids
    gone = np.unique(first[:, :3])
    assert idx.delete(gone) == len(gone)
    assert idx.delete(gone) == 0, "deleting twice is a no-op"
    assert len(idx) == len(xb) - len(gone)
    after = idx.search(xq, k=10).ids
    assert not np.isin(after, gone).any()
    assert (after >= 0).all(), "still k results after deletes"
    idx.save(tmp_path / "i")
    again = SpannIndex.load(tmp_path / "i").search(xq, k=10).ids
    assert not np.isin(again, gone).any()
    # re-adding a deleted id works and finds the new vector
    idx.add(xb[gone[0]][None, :] * 1.0, [gone[0]])
    assert idx.contains([gone[0]])[0]


def test_single_query_sees_each_mutation_at_once(data):
    """Single-query searches cache their kernel arguments per setting; every add, delete and split must
    still show in the very next single query, as in a batch query."""
    xb, xq = data
    idx = small_index(head_ratio=1 / 20).build(xb[:2000])
    q = xq[0]  # every posting probed: a vector added far out (3 q) must be found
    for _ in range(2):  # the second call uses the cached arguments
        first = idx.search(q, k=5, n_probe=10**4).ids[0]
    assert idx.delete(first[:2]) == 2
    after = idx.search(q, k=5, n_probe=10**4).ids[0]
    assert not np.isin(after, first[:2]).any() and (after >= 0).all()
    idx.add((q * 3.0)[None, :], [10**6])  # the best match for ip by far
    assert idx.search(q, k=5, n_probe=10**4).ids[0, 0] == 10**6
    idx.add(xb[2000:], np.arange(2000, len(xb)))  # grows the arena and splits postings
    single = np.stack([idx.search(x, k=10).ids[0] for x in xq[:20]])
    np.testing.assert_array_equal(single, idx.search(xq[:20], k=10).ids)
    assert idx.search(q, k=5, n_probe=10**4).ids[0, 0] == 10**6


def test_add_then_delete_then_split_drops_tombstones():
    xb = clustered(3000, D, seed=9)
    idx = small_index(head_ratio=1 / 20).build(xb[:1000])
    idx.delete(np.arange(0, 1000, 2))
    idx.add(xb[1000:], np.arange(1000, 3000))
    ids = idx.search(xb[:50], k=20).ids
    assert not np.isin(ids, np.arange(0, 1000, 2)).any()
    assert len(idx) == 2500


def test_allowed_ids_filter_returns_k_when_they_exist(data):
    xb, xq = data
    idx = small_index().build(xb)
    allowed = np.arange(0, len(xb), 97)  # ~1%
    ids, _ = idx.search(xq[:10], k=10, allowed_ids=allowed)
    assert np.isin(ids, allowed).all()
    truth, _ = exact(xb[allowed], xq[:10], 10, "ip")
    assert recall(ids, allowed[truth], 10) == 1.0
    allowed = np.arange(0, len(xb), 3)  # ~33%: scanned with a mask
    ids, _ = idx.search(xq[:10], k=10, allowed_ids=allowed)
    assert np.isin(ids, allowed).all() and (ids >= 0).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"metric": "hamming"}, "unknown metric"),
        ({"bits": 3}, "unsupported bits"),
        ({"bits": True}, "unsupported bits"),
        ({"head_ratio": 0}, "head_ratio"),
        ({"n_probe": 0}, "n_probe"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SpannIndex(D, **kwargs)


def test_bad_input_leaves_index_unchanged(data):
    xb, xq = data
    idx = small_index().build(xb[:2000])
    before = idx.search(xq[:5], k=5)
    n = len(idx)
    nan = xb[:3].copy()
    nan[1, 4] = np.nan
    inf = xb[:3].copy()
    inf[0, 0] = np.inf
    cases = [
        (lambda: idx.add(np.zeros((2, D + 1), np.float32), [1, 2]), ValueError, "dimension"),
        (lambda: idx.add(nan, [90001, 90002, 90003]), ValueError, "NaN"),
        (lambda: idx.add(inf, [90001, 90002, 90003]), ValueError, "NaN or inf"),
        (lambda: idx.add(np.zeros((0, D), np.float32), []), ValueError, "empty"),
        (lambda: idx.add(xb[:2], [7, 7]), ValueError, "duplicate"),
        (lambda: idx.add(xb[:2], [1, 90000]), ValueError, "already in the index"),
        (lambda: idx.add(xb[:2], [1]), ValueError, "2 vectors"),
        (lambda: idx.add(xb[:2], ["a", "b"]), TypeError, "integers"),
        (lambda: idx.add([["x"] * D], [5]), TypeError, "numeric"),
        (lambda: idx.search(xq[0], k=0), ValueError, "k must be"),
        (lambda: idx.search(xq[0][:-1], k=3), ValueError, "dimension"),
        (lambda: idx.search(np.full(D, np.nan), k=3), ValueError, "NaN"),
        (lambda: idx.search(xq[0], k=3, n_probe=-1), ValueError, "n_probe"),
    ]
    for fn, exc, match in cases:
        with pytest.raises(exc, match=match):
            fn()
    assert len(idx) == n
    after = idx.search(xq[:5], k=5)
    np.testing.assert_array_equal(before.ids, after.ids)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the check's own float32 norm
@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_vectors_whose_norm_overflows_float32_are_rejected(metric):
    """Entries near 1e19 give squared norms beyond float32 (8 x 1e38 > 3.4e38): a built index then never
    ranked the true best match first (exact search did), so build, add and search refuse them, on the fast
    path (float32, contiguous) and the converting one (float64 input) alike; 1e17 entries still work."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 8)).astype(np.float32)
    idx = SpannIndex(8, metric=metric, progress=False).build(x)
    big = x[:3] * np.float32(1e19)
    for fn in (
        lambda: idx.add(big, [1001, 1002, 1003]),
        lambda: idx.add(big.astype(np.float64), [1001, 1002, 1003]),
        lambda: idx.search(big[0], k=3),
        lambda: idx.search(big, k=3),
        lambda: SpannIndex(8, metric=metric).build(big),
    ):
        with pytest.raises(ValueError, match="squared norm"):
            fn()
    assert len(idx) == 400
    ok = x * np.float32(1e17)
    hits = SpannIndex(8, metric=metric, progress=False).build(ok).search(ok[:20], k=1, n_probe=64).ids[:, 0]
    truth, _ = exact(ok.astype(np.float64), ok[:20].astype(np.float64), 1, metric)
    assert (hits == truth[:, 0]).mean() >= 0.9


def test_cosine_rejects_zero_vector():
    idx = small_index("cosine")
    with pytest.raises(ValueError, match="zero vector"):
        idx.build(np.zeros((3, D), np.float32))


def test_corrupt_or_truncated_directory_raises(tmp_path, data):
    xb, _ = data
    p = tmp_path / "idx"
    small_index().build(xb[:1000]).save(p)
    snap = next(p.glob("snap-*"))
    # truncated array
    codes = snap / "e_codes.npy"
    raw = codes.read_bytes()
    codes.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"truncated|corrupt"):
        SpannIndex.load(p)
    # same size, flipped bytes -> checksum
    flipped = bytearray(raw)
    flipped[-5] ^= 0xFF
    codes.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="checksum"):
        SpannIndex.load(p, mmap=False)
    codes.write_bytes(raw)
    assert len(SpannIndex.load(p)) == 1000
    # missing file
    (snap / "heads.npy").rename(snap / "heads.bak")
    with pytest.raises(ValueError, match="missing"):
        SpannIndex.load(p)
    (snap / "heads.bak").rename(snap / "heads.npy")
    # manifest garbage
    man = p / "MANIFEST.json"
    good = man.read_text()
    man.write_text(good[:40])
    with pytest.raises(ValueError, match="manifest"):
        SpannIndex.load(p)
    bad = json.loads(good)
    bad["meta"]["count"] = 5
    man.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="corrupt"):
        SpannIndex.load(p)
    with pytest.raises(FileNotFoundError):
        SpannIndex.load(tmp_path / "nope")


def _edit_manifest(p, edit, *, keep_crc=False):
    man = json.loads((p / "MANIFEST.json").read_text())
    edit(man)
    if not keep_crc:
        man.pop("crc32", None)  # as a manifest written before it had a checksum: only the structure checks remain
    (p / "MANIFEST.json").write_text(json.dumps(man))


MANIFEST_DAMAGE = {
    "no crc32 of an array": lambda m: m["arrays"]["e_codes"].pop("crc32"),
    "no bytes of an array": lambda m: m["arrays"]["heads"].pop("bytes"),
    "arrays not a dict": lambda m: m.update(arrays=[]),
    "meta not a dict": lambda m: m.update(meta="x"),
    "n_probe 0": lambda m: m["meta"]["params"].update(n_probe=0),
    "unknown parameter": lambda m: m["meta"]["params"].update(colour=1),
    "dim not a number": lambda m: m["meta"].update(dim="x"),
    "snapshot outside": lambda m: m.update(snapshot="../../etc"),
    "shape not a list": lambda m: m["arrays"]["heads"].update(shape="abc"),
    "array left out": lambda m: m["arrays"].pop("xn2"),
    "count": lambda m: m["meta"].update(count=5),
    "shape": lambda m: m["arrays"]["ids"].update(shape=[10**15]),
}


@pytest.mark.parametrize("case", MANIFEST_DAMAGE)
def test_manifest_damage_raises_corrupt_store_error_naming_the_file(tmp_path, data, case):
    """A damaged manifest gave KeyError, AttributeError or "n_probe must be a positive integer" without the
    file's name: every load error is a CorruptStoreError (a ValueError) naming the file. The manifest's own
    CRC32 catches any edit first; without it (older manifests) the structure checks do."""
    xb, _ = data
    p = tmp_path / "idx"
    small_index().build(xb[:300]).save(p)
    good = (p / "MANIFEST.json").read_text()
    _edit_manifest(p, MANIFEST_DAMAGE[case], keep_crc=True)
    with pytest.raises(CorruptStoreError, match="checksum mismatch") as err:
        SpannIndex.load(p)
    assert str(p / "MANIFEST.json") in str(err.value)
    (p / "MANIFEST.json").write_text(good)
    _edit_manifest(p, MANIFEST_DAMAGE[case])
    with pytest.raises(CorruptStoreError) as err:
        SpannIndex.load(p)
    assert str(p) in str(err.value) and isinstance(err.value, ValueError)


def test_user_meta_damage_names_the_manifest(tmp_path, data):
    xb, _ = data
    p = tmp_path / "idx"
    small_index().build(xb[:300]).save(p, meta={"seq": 3})
    assert SpannIndex.read_meta(p) == {"seq": 3}
    _edit_manifest(p, lambda m: m["meta"].update(user=[1]))
    with pytest.raises(CorruptStoreError, match=r"MANIFEST\.json"):
        SpannIndex.read_meta(p)


def test_damaged_npy_header_is_refused_before_reading(tmp_path, data):
    """A header that claims a huge shape is refused from the header (np.load would try to allocate it)."""
    xb, _ = data
    p = tmp_path / "idx"
    small_index().build(xb[:300]).save(p)
    fn = next(p.glob("snap-*")) / "e_codes.npy"
    raw = fn.read_bytes()
    fn.write_bytes(raw.replace(b"'shape': (", b"'shape': (9999999999", 1))
    _edit_manifest(p, lambda m: m["arrays"]["e_codes"].update(bytes=fn.stat().st_size))
    with pytest.raises(CorruptStoreError, match=r"e_codes\.npy"):
        SpannIndex.load(p, mmap=False)
    fn.write_bytes(b"\x93NUMPY\x09\x00" + raw[8:])  # unknown format version
    _edit_manifest(p, lambda m: m["arrays"]["e_codes"].update(bytes=fn.stat().st_size))
    with pytest.raises(CorruptStoreError, match=r"header of .*e_codes\.npy"):
        SpannIndex.load(p)


def test_save_refuses_to_copy_damaged_memory_mapped_vectors(tmp_path, data):
    """Mapped vectors are checked for size only on load; saving re-checks their CRC32, so damage on disk is
    not laundered into a new snapshot with a fresh checksum."""
    xb, _ = data
    p = tmp_path / "idx"
    small_index().build(xb[:300]).save(p)
    idx = SpannIndex.load(p, mmap=True)
    vec = next(p.glob("snap-*")) / "vectors.npy"
    raw = bytearray(vec.read_bytes())
    raw[-7] ^= 0x40
    vec.write_bytes(bytes(raw))
    manifest = (p / "MANIFEST.json").read_text()
    with pytest.raises(CorruptStoreError, match=r"vectors\.npy"):
        idx.save(p)
    assert (p / "MANIFEST.json").read_text() == manifest
    from spann_vectorstore._storage import verify_snapshot

    (problem,) = verify_snapshot(p, "spann-index")
    assert "checksum mismatch" in problem and "vectors.npy" in problem


def test_npy_with_pickle_is_refused(tmp_path, data):
    xb, _ = data
    p = tmp_path / "idx"
    small_index().build(xb[:500]).save(p)
    snap = next(p.glob("snap-*"))
    obj = np.array([{"evil": 1}], dtype=object)
    np.save(snap / "ids.npy", obj, allow_pickle=True)
    man = json.loads((p / "MANIFEST.json").read_text())
    man["arrays"]["ids"]["bytes"] = (snap / "ids.npy").stat().st_size
    (p / "MANIFEST.json").write_text(json.dumps(man))
    with pytest.raises(ValueError):
        SpannIndex.load(p)


def test_shared_data_recall(shared_data):
    xb, xq, gt = shared_data
    idx = SpannIndex(384, metric="ip", bits=2, progress=False).build(xb)
    ids = idx.search(xq, k=10).ids
    r = recall(ids, gt, 10)
    assert r >= 0.95, f"recall@10 on ../shared/data at default settings {r:.3f} < 0.95"
    st = idx.stats()
    assert 2.0 <= st["replicas_avg"] <= 8.0


def test_k_hits_even_when_nearby_postings_are_emptied_by_deletes(data):
    xb, xq = data
    idx = small_index().build(xb)
    rng = np.random.default_rng(3)
    keep = np.sort(rng.choice(len(xb), 40, replace=False))
    idx.delete(np.setdiff1d(np.arange(len(xb)), keep))
    ids, _ = idx.search(xq[:20], k=10, n_probe=2)
    assert (ids >= 0).all(), "k hits must come back while k live vectors exist"
    assert np.isin(ids, keep).all(), "only live vectors may come back"
    truth, _ = exact(xb[keep], xq[:20], 10, "ip")
    full = idx.search(xq[:20], k=10, n_probe=idx.n_heads).ids
    assert recall(full, keep[truth], 10) >= 0.95
    one, _ = idx.search(xq[0], k=10, n_probe=1)
    assert (one >= 0).all()


@pytest.fixture
def grouped(monkeypatch):
    """Head groups from 64 heads on, so a small index uses the coarse level that large ones use."""
    from spann_vectorstore import _heads

    monkeypatch.setattr(_heads, "GROUP_MIN_HEADS", 64)
    return monkeypatch


def _ungrouped(monkeypatch, make):
    """``make()`` with head groups off: the same heads and postings (groups only choose which heads are
    scored), every head scored."""
    from spann_vectorstore import _heads

    with monkeypatch.context() as m:
        m.setattr(_heads, "GROUP_MIN_HEADS", 10**9)
        return make()


def test_head_groups_keep_recall_of_scoring_every_head(data, grouped, tmp_path):
    xb, xq = data
    idx = small_index(head_ratio=1 / 10).build(xb)
    h, g = idx.n_heads, idx.stats()["head_groups"]
    assert g >= 12, f"{h} heads should form head groups, got {g}"
    flat = _ungrouped(grouped, lambda: small_index(head_ratio=1 / 10).build(xb))
    assert flat.stats()["head_groups"] == 0 and flat.n_heads == h
    truth, _ = exact(xb, xq, 10, "ip")
    for n_probe in (4, 8):
        assert 8 + n_probe // 2 < g, "the test must exercise the grouped path (groups probed < groups)"
        r_g = recall(idx.search(xq, k=10, n_probe=n_probe).ids, truth, 10)
        r_f = recall(flat.search(xq, k=10, n_probe=n_probe).ids, truth, 10)
        assert r_g >= r_f - 0.02, f"n_probe {n_probe}: grouped recall {r_g:.3f} vs every head {r_f:.3f}"
    # probing every group is the full scan: same results as the ungrouped index
    wide = 2 * g
    np.testing.assert_array_equal(idx.search(xq, k=10, n_probe=wide).ids, flat.search(xq, k=10, n_probe=wide).ids)
    # groups persist: identical results after a round trip, single query and batch alike
    idx.save(tmp_path / "g")
    back = SpannIndex.load(tmp_path / "g")
    assert back.stats()["head_groups"] == g
    np.testing.assert_array_equal(back.search(xq, k=10, n_probe=4).ids, idx.search(xq, k=10, n_probe=4).ids)
    for i in range(5):
        np.testing.assert_array_equal(
            back.search(xq[i], k=10, n_probe=4).ids[0], idx.search(xq, k=10, n_probe=4).ids[i]
        )


def test_heads_from_splits_join_groups(grouped):
    xb = clustered(9000, D, seed=5)
    xq = clustered(100, D, seed=6)

    def grown() -> SpannIndex:
        idx = small_index(head_ratio=1 / 10).build(xb[:4000])
        for s in range(4000, 9000, 1000):
            idx.add(xb[s : s + 1000], np.arange(s, s + 1000))
        return idx

    idx = grown()
    assert idx.n_heads > small_index(head_ratio=1 / 10).build(xb[:4000]).n_heads, "the adds must have split postings"
    assert idx.stats()["head_groups"] > 0
    truth, _ = exact(xb, xq, 10, "ip")
    r = recall(idx.search(xq, k=10, n_probe=16).ids, truth, 10)
    # the same adds scoring every head
    flat = _ungrouped(grouped, grown)
    assert flat.n_heads == idx.n_heads
    r_all = recall(flat.search(xq, k=10, n_probe=16).ids, truth, 10)
    assert r >= r_all - 0.02, f"recall@10 {r:.3f} with head groups after splits vs {r_all:.3f} scoring every head"
    # every head, old and new, is reachable through its group: probing all groups equals scoring every head
    wide = 4 * idx.stats()["head_groups"]
    np.testing.assert_array_equal(idx.search(xq, k=10, n_probe=wide).ids, flat.search(xq, k=10, n_probe=wide).ids)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_large_magnitude_vectors_keep_recall(data, metric):
    """Heads are ranked from a float16 copy: vectors far beyond float16's range (1e6) must not overflow it
    (the copy is scaled), so recall matches that of the same data at unit scale, single query and batch."""
    xb, xq = data
    xb, xq = xb * np.float32(1e6), xq * np.float32(1e6)
    idx = small_index(metric, 1).build(xb)
    truth, _ = exact(xb.astype(np.float64), xq.astype(np.float64), 10, metric)
    batch = idx.search(xq, k=10, n_probe=24).ids
    single = np.stack([idx.search(q, k=10, n_probe=24).ids[0] for q in xq])
    np.testing.assert_array_equal(single, batch)
    r = recall(batch, truth, 10)
    assert r >= 0.95, f"recall@10 {r:.3f} < 0.95 for vectors scaled by 1e6 ({metric})"


@pytest.mark.parametrize("kind", ["random 8%", "correlated 10%", "random 40%"])
def test_filtered_search_recall_against_brute_force(kind):
    """A filter scanned with a mask (more than 2,048 allowed) costs no recall: recall@10 against exact
    search over the allowed vectors is at least that of the unfiltered search at the same n_probe (less
    2 points) or 0.95, also when the filter keeps a region of space away from most queries."""
    xb = clustered(40000, D, seed=7)
    xq = clustered(100, D, seed=8)
    rng = np.random.default_rng(9)
    if kind == "correlated 10%":
        allowed = np.flatnonzero(xb[:, 0] < np.quantile(xb[:, 0], 0.10))  # a slab along one axis
    else:
        frac = 0.08 if kind == "random 8%" else 0.40
        allowed = np.sort(rng.choice(len(xb), int(frac * len(xb)), replace=False))
    assert len(allowed) > 2048, "the test must exercise the masked scan, not the exact fallback"
    idx = small_index("ip", 1).build(xb)
    unfiltered = recall(idx.search(xq, k=10, n_probe=80).ids, exact(xb, xq, 10, "ip")[0], 10)
    ids = idx.search(xq, k=10, n_probe=80, allowed_ids=allowed).ids
    assert np.isin(ids, allowed).all()
    truth, _ = exact(xb[allowed], xq, 10, "ip")
    r = recall(ids, allowed[truth], 10)
    want = min(0.95, unfiltered - 0.02)
    assert r >= want, f"filtered recall@10 {r:.3f} < {want:.3f} ({kind}; unfiltered {unfiltered:.3f})"
    single = np.stack([idx.search(q, k=10, n_probe=80, allowed_ids=allowed).ids[0] for q in xq[:20]])
    np.testing.assert_array_equal(single, ids[:20])


def test_stats_report_bytes_on_disk(tmp_path, data):
    """stats() reports the snapshot's bytes on disk (0 before any save), the same after load, and the new
    snapshot's size after a second save (old snapshot directories are removed)."""
    xb, _ = data
    idx = small_index().build(xb)
    assert idx.stats()["bytes_disk"] == 0
    idx.save(tmp_path / "i")
    on_disk = sum(p.stat().st_size for p in (tmp_path / "i").rglob("*") if p.is_file())
    st = idx.stats()
    assert st["bytes_disk"] == on_disk and on_disk > xb.nbytes, "the snapshot holds the float32 vectors"
    loaded = SpannIndex.load(tmp_path / "i", mmap=True)
    assert loaded.stats()["bytes_disk"] == on_disk
    assert loaded.stats()["bytes_ram"] < on_disk - xb.nbytes // 2, "mmap keeps the vectors out of RAM"
    loaded.add(xb[:100] + 0.01, ids=np.arange(10**6, 10**6 + 100))
    loaded.save(tmp_path / "i")
    again = sum(p.stat().st_size for p in (tmp_path / "i").rglob("*") if p.is_file())
    assert loaded.stats()["bytes_disk"] == again > on_disk


@pytest.mark.parametrize("bits", [1, 2])
def test_openai_sized_embeddings_recall(bits):
    """1,536-d normalised embeddings (several accumulation chunks in the stage-1 scan): recall@10 against
    brute force, single query equal to batch."""
    d = 1536
    xb = clustered(3000, d, seed=1)
    xq = clustered(50, d, seed=2)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    xq /= np.linalg.norm(xq, axis=1, keepdims=True)
    idx = SpannIndex(d, metric="ip", bits=bits, progress=False, head_ratio=1 / 40).build(xb)
    ids = idx.search(xq, k=10, n_probe=24).ids
    r = recall(ids, exact(xb, xq, 10, "ip")[0], 10)
    assert r >= 0.95, f"recall@10 {r:.3f} < 0.95 at d={d}, bits={bits}"
    single = np.stack([idx.search(q, k=10, n_probe=24).ids[0] for q in xq])
    np.testing.assert_array_equal(single, ids)


def _int_vectors(n, d, seed):
    """Small-integer vectors: their dot products are exact in float32, so equal scores are true ties."""
    return np.random.default_rng(seed).integers(-3, 4, (n, d)).astype(np.float32)


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("built", [False, True])
def test_ties_are_broken_by_id(tmp_path, metric, built):
    """Equal scores come back in increasing id order, and the k-th place goes to the smallest tied id, the
    same whatever the insertion order, after a reopen, and in single and batch search."""
    d, k = 16, 6
    x = _int_vectors(2500, d, 5)
    x[np.arange(100, 2500, 97)] = x[7]  # 25 exact copies of row 7 scattered through the data
    ids = np.random.default_rng(6).permutation(len(x)).astype(np.int64) * 3 + 11
    q = np.vstack([x[7], _int_vectors(20, d, 8)])
    s = q @ x.T if metric == "ip" else -((x**2).sum(1)[None, :] - 2 * q @ x.T)
    want = np.array([ids[np.lexsort((ids, -row))[:k]] for row in s])
    got = []
    for order in (np.arange(len(x)), np.random.default_rng(9).permutation(len(x))):
        idx = SpannIndex(d, metric=metric, bits=1, progress=False, head_ratio=1 / 40)
        idx.build(x[order], ids[order]) if built else idx.add(x[order], ids[order])
        opts = {"n_probe": max(idx.n_heads, 1), "max_dist_ratio": 1e9}
        batch = idx.search(q, k, **opts)
        single = np.vstack([idx.search(qi, k, **opts).ids for qi in q])
        np.testing.assert_array_equal(batch.ids, single)
        idx.save(tmp_path / "t")
        again = SpannIndex.load(tmp_path / "t").search(q, k, **opts)
        np.testing.assert_array_equal(again[0], batch[0])  # SearchResult is a tuple: res[0] is the ids
        sc = batch.scores if metric == "ip" else -batch.scores
        for row_ids, row_sc in zip(batch.ids, sc):  # best first, equal scores by increasing id
            assert all((a > b) or (a == b and i < j) for a, b, i, j in zip(row_sc, row_sc[1:], row_ids, row_ids[1:]))
        got.append(batch.ids)
    # exact search (unbuilt) must match brute force everywhere; the built index is approximate, so there the
    # query with 26 identical best matches is the one compared in full
    rows = slice(None) if not built else slice(0, 1)
    np.testing.assert_array_equal(got[0][rows], want[rows])
    np.testing.assert_array_equal(got[1][rows], want[rows])


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_scores_equal_what_search_reports(data, metric):
    """``scores`` gives each id the score a search returns for it, to the bit (the same kernel code), also
    for vectors added after the build (the tail) and for ids no search returned; bad input raises."""
    xb, xq = data
    idx = small_index(metric).build(xb[:5000])
    idx.add(xb[5000:5100], ids=np.arange(5000, 5100))
    for q in xq[:20]:
        res = idx.search(q, 30, n_probe=64)
        ids = res.ids[0][res.ids[0] >= 0]
        got = idx.scores(q, ids)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, res.scores[0][: len(ids)])
        others = np.array([3, 4999, 5050, 5099])
        if metric == "l2":
            want = ((xb[others] - q) ** 2).sum(1)
        else:
            x = xb[others] / (np.linalg.norm(xb[others], axis=1, keepdims=True) if metric == "cosine" else 1.0)
            want = x @ (q / np.linalg.norm(q) if metric == "cosine" else q)
        np.testing.assert_allclose(idx.scores(q, others), want, rtol=1e-4, atol=1e-4)
    idx.delete([7])
    with pytest.raises(KeyError):
        idx.scores(xq[0], [1, 7])
    with pytest.raises(ValueError):
        idx.scores(xq[:2], [1])
    with pytest.raises(ValueError):
        idx.scores(xq[0][:5], [1])
