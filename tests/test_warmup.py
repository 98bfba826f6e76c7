"""First use: exact answers (``SpannIndex.search_exact``) while the kernels compile in the background
(``spann_vectorstore._warmup``), and the Collection's document fetch.

conftest.py sets ``SPANN_COLD_START=compile`` for the suite; these tests switch the mode themselves."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from spann_vectorstore import Collection, SpannIndex, _warmup
from spann_vectorstore import collection as collection_mod
from spann_vectorstore.evaluation import exact_topk

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cold(monkeypatch):
    """The kernels count as not compiled yet, and no warm-up thread starts: every Collection search takes
    the exact path."""
    monkeypatch.setattr(_warmup, "MODE", "exact")
    monkeypatch.setattr(_warmup, "ready", lambda index, nq: False)


def _data(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# SpannIndex.search_exact
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_search_exact_is_the_exact_top_k_with_deletes_filters_and_a_mapped_base(tmp_path, metric):
    x = _data(3000, 16)
    ids = np.random.default_rng(1).permutation(50_000)[:3000].astype(np.int64)  # not in insertion order
    idx = SpannIndex(16, metric=metric).build(x[:2500], ids[:2500])
    idx.save(tmp_path / "s")
    idx = SpannIndex.load(tmp_path / "s", mmap=True)  # base mapped (read-only), the rest in the tail
    idx.add(x[2500:], ids[2500:])
    idx.delete(ids[::7])
    live = np.ones(3000, bool)
    live[::7] = False
    q = _data(9, 16, seed=2)
    for allowed_rows in (None, np.flatnonzero(live)[:40], np.flatnonzero(live)[::2]):
        keep = live if allowed_rows is None else np.isin(np.arange(3000), allowed_rows) & live
        want_rows, want_scores = exact_topk(x, q, 10, metric, allowed=keep)
        res = idx.search_exact(q, k=10, allowed_ids=None if allowed_rows is None else ids[allowed_rows])
        assert (res.ids == ids[want_rows]).all()
        np.testing.assert_allclose(res.scores, want_scores, rtol=1e-5, atol=1e-4)
        assert (res.stats["exact"] == keep.sum()).all()
        one = idx.search_exact(q[3], k=10, allowed_ids=None if allowed_rows is None else ids[allowed_rows])
        assert (one.ids[0] == res.ids[3]).all()


def test_search_exact_breaks_ties_by_id_and_pads():
    x = np.ones((60, 4), np.float32)
    x[::3] *= 2  # two score levels, 20 and 40 vectors
    idx = SpannIndex(4)
    idx.add(x, np.arange(1000, 940, -1))  # ids descending in insertion order
    res = idx.search_exact(np.ones(4, np.float32), k=25)
    top = np.arange(1000, 940, -1)[::3]
    rest = np.setdiff1d(np.arange(941, 1001), top)
    assert res.ids[0].tolist() == sorted(top.tolist()) + sorted(rest.tolist())[:5]
    assert res.ids.tolist() == idx.search(np.ones(4, np.float32), k=25).ids.tolist()  # as the kernels order them
    res = idx.search_exact(np.ones(4, np.float32), k=70, allowed_ids=[1000, 999, 5])
    assert res.ids[0, :2].tolist() == [1000, 999] and (res.ids[0, 2:] == -1).all()
    assert np.isnan(res.scores[0, 2:]).all()
    assert (SpannIndex(4).search_exact(np.ones(4, np.float32), k=3).ids == -1).all()
    with pytest.raises(ValueError, match="dimension"):
        idx.search_exact(np.ones(5, np.float32))


def test_search_exact_batch_blocks_agree_with_single(monkeypatch):
    monkeypatch.setattr(_warmup, "_BLOCK_CELLS", 64 * 100)  # blocks of 4096 rows / nq: many blocks
    x = _data(9000, 8)
    idx = SpannIndex(8).build(x)
    q = _data(64, 8, seed=3)
    batch = idx.search_exact(q, k=7)
    for i in (0, 17, 63):
        assert batch.ids[i].tolist() == idx.search_exact(q[i], k=7).ids[0].tolist()
    assert (batch.ids == exact_topk(x, q, 7)[0]).all()


# ----------------------------------------------------------------------------------------------------------
# the Collection before its kernels are ready
# ----------------------------------------------------------------------------------------------------------
def _collection(path: Path | None, n: int = 6000, metric: str = "ip") -> tuple[Collection, np.ndarray]:
    x = _data(n, 24)
    if metric != "l2":
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    col = Collection(path, metric=metric, index_threshold=1000)
    metas = [{"bucket": i % 100, "even": i % 2 == 0} for i in range(n)]
    col.add(x, texts=[f"text {i}" for i in range(n)], metadatas=metas, ids=[f"d{i}" for i in range(n)])
    return col, x


def _no_kernels(*args, **kwargs):
    raise AssertionError("SpannIndex.search (the kernels) was called while cold")


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_collection_answers_exactly_with_filters_while_cold(tmp_path, cold, metric, monkeypatch):
    col, x = _collection(tmp_path / "c", metric=metric)
    monkeypatch.setattr(SpannIndex, "search", _no_kernels)  # every search below takes the exact path
    try:
        assert col.index.n_heads > 0
        q = _data(5, 24, seed=4)
        bucket = np.arange(len(x)) % 100
        for flt, mask in ((None, None), ({"bucket": 7}, bucket == 7), ({"bucket": {"$lt": 30}}, bucket < 30)):
            want_rows, want_scores = exact_topk(x, q, 10, metric, allowed=mask)
            got = col.search(q, k=10, filter=flt)
            for i in range(len(q)):
                assert [h.id for h in got[i]] == [f"d{r}" for r in want_rows[i]]
                np.testing.assert_allclose([h.score for h in got[i]], want_scores[i], rtol=1e-5, atol=1e-4)
                assert all(h.text == f"text {h.id[1:]}" for h in got[i])
                if mask is not None:
                    assert all(h.metadata["bucket"] in np.unique(bucket[mask]) for h in got[i])
            single = col.search(q[0], k=10, filter=flt, include_vectors=True)
            assert [h.id for h in single] == [h.id for h in got[0]]
            np.testing.assert_array_equal(single[0].vector, x[int(single[0].id[1:])])
        hyb = col.hybrid_search("text 12", q[0], k=5, filter={"even": True})
        assert hyb and all(h.metadata["even"] for h in hyb)
        assert col.hybrid_search(["text 12", "text 13"], q[:2], k=5)[1]
        with pytest.raises(ValueError, match="n_probe"):
            col.search(q[0], k=3, n_probe=0)
    finally:
        col.close()


def test_collection_in_memory_and_unbuilt_while_cold(cold):
    col, x = _collection(None, n=500)  # below index_threshold: not built
    assert col.index.n_heads == 0
    q = _data(1, 24, seed=5)[0]
    want = exact_topk(x, q, 4)[0][0]
    assert [h.id for h in col.search(q, k=4)] == [f"d{r}" for r in want]
    col.close()


def test_warm_up_thread_compiles_then_the_index_answers(tmp_path, monkeypatch):
    """ready() starts the warm-up, which ends with the kernels usable; then the Collection answers with the index
    (its approximate results, equal to the index's own)."""
    monkeypatch.setattr(_warmup, "MODE", "exact")
    monkeypatch.setattr(_warmup, "_STATE", {})
    col, _ = _collection(tmp_path / "c")
    col.close()
    col = Collection.open(tmp_path / "c")
    try:
        idx = col.index
        assert _warmup._kind(idx) == (True, True)  # built, vectors memory-mapped
        q = _data(1, 24, seed=6)[0]
        first = col.search(q, k=10)  # starts the warm-up (or finds it finished already)
        assert len(first) == 10
        assert _warmup.wait(timeout=600)
        st = _warmup._STATE[(True, True)]
        assert st.error is None and st.single.is_set() and st.batch.is_set()
        assert _warmup.ready(idx, 1) and _warmup.ready(idx, 5)
        want = idx.search(q, k=11).ids[0][:10]
        assert [h.id for h in col.search(q, k=10)] == [f"d{r - 1}" for r in want]  # rowids start at 1
    finally:
        col.close()


def test_warm_up_twin_without_a_snapshot_and_failures(tmp_path, monkeypatch):
    monkeypatch.setattr(_warmup, "MODE", "exact")
    monkeypatch.setattr(_warmup, "_STATE", {})
    idx = SpannIndex(8).build(_data(2000, 8))
    assert _warmup._kind(idx) == (True, False)
    _warmup.ready(idx, 1)  # starts the warm-up of this kind
    assert _warmup.wait(timeout=600)
    assert _warmup._STATE[(True, False)].error is None
    # a mapped index whose snapshot is gone: the twin is a tiny saved and reloaded index
    twin, tmp = _warmup._twin((8, "l2", 2, (True, True), tmp_path / "missing" / "snap-1"))
    assert twin.stats()["vectors_mmapped"] and tmp is not None and twin.n_heads > 0
    # a warm-up that fails lets searches compile in the foreground (ready, error kept)
    st = _warmup._Warm()
    _warmup._run(st, (8, "nonsense-metric", 1, (True, False), None))
    assert st.single.is_set() and st.batch.is_set() and isinstance(st.error, ValueError)


def test_compile_mode_never_starts_a_warm_up(monkeypatch):
    monkeypatch.setattr(_warmup, "MODE", "compile")
    monkeypatch.setattr(_warmup, "_STATE", {})
    idx = SpannIndex(8).build(_data(500, 8))
    assert _warmup.ready(idx, 1) and _warmup._STATE == {}


def _child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "integrations"), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def test_a_process_exiting_during_the_warm_up_exits_cleanly(tmp_path):
    """Exiting right after the first search (the warm-up still loading kernels) used to abort the process in
    LLVM's teardown ("terminate called without an active exception", exit status 134)."""
    col, _ = _collection(tmp_path / "c", n=5000)
    col.close()
    child = (
        "import sys, numpy as np\n"
        "from spann_vectorstore import Collection\n"
        "col = Collection.open(sys.argv[1])\n"
        "print(len(col.search(np.ones(24, np.float32), k=3)))\n"
    )
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", child, str(tmp_path / "c")],
            capture_output=True,
            text=True,
            env=_child_env(SPANN_COLD_START="exact"),
            timeout=900,
        )
        assert out.returncode == 0 and out.stdout.strip() == "3", (out.returncode, out.stderr[-2000:])


def test_a_forked_child_drops_an_unfinished_warm_up(monkeypatch):
    done, half = _warmup._Warm(), _warmup._Warm()
    done.single.set()
    done.batch.set()
    half.single.set()
    monkeypatch.setattr(_warmup, "_STATE", {(True, True): done, (True, False): half})
    monkeypatch.setattr(_warmup, "_LOCK", _warmup._LOCK)  # restored after the test
    _warmup._after_fork()
    assert _warmup._STATE == {(True, True): done}


@pytest.mark.slow
def test_fresh_process_with_an_empty_numba_cache_answers_at_once(tmp_path):
    """A fresh process with an empty compile cache: the first search returns the exact top k within seconds
    (the kernels alone take 20-30 s to compile), later ones use the compiled kernels."""
    col, x = _collection(tmp_path / "c", n=5000)
    col.close()
    child = r"""
import json, sys, time
import numpy as np
t0 = time.perf_counter()
from spann_vectorstore import Collection, _warmup
col = Collection.open(sys.argv[1])
t1 = time.perf_counter()
q = np.random.default_rng(7).standard_normal(24).astype(np.float32)
t2 = time.perf_counter()
first = [h.id for h in col.search(q, k=5, filter={"bucket": {"$lt": 50}})]
t3 = time.perf_counter()
ok = _warmup.wait(timeout=900)
from numba.core import event
compiled = []
class Listener(event.Listener):
    def on_start(self, e): compiled.append(e.data["dispatcher"].py_func.__name__)
    def on_end(self, e): pass
event.register("numba:compile", Listener())
later = [h.id for h in col.search(q, k=5, filter={"bucket": {"$lt": 50}})]
col.search(np.stack([q, q]), k=5)
col.close()
print(json.dumps({"open": t1 - t0, "first": t3 - t2, "ids": first, "later": later, "ok": ok, "compiled": compiled}))
"""
    with tempfile.TemporaryDirectory() as cache:
        env = _child_env(SPANN_COLD_START="exact", NUMBA_CACHE_DIR=cache)
        out = subprocess.run(
            [sys.executable, "-c", child, str(tmp_path / "c")], capture_output=True, text=True, env=env, timeout=1200
        )
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    q = np.random.default_rng(7).standard_normal(24).astype(np.float32)
    want = exact_topk(x, q, 5, allowed=np.arange(len(x)) % 100 < 50)[0][0]
    assert res["ids"] == [f"d{r}" for r in want], res  # exact, filter applied
    assert res["first"] < 3.0, res  # generous: ~0.05 s measured
    assert res["ok"] and res["compiled"] == [], res  # after the warm-up nothing compiles on the search path
    assert len(set(res["later"]) & set(res["ids"])) >= 4


# ----------------------------------------------------------------------------------------------------------
# the document fetch of a search
# ----------------------------------------------------------------------------------------------------------
def test_search_hits_equal_a_reference_built_from_the_index_and_get(tmp_path):
    col, _ = _collection(tmp_path / "c", n=3000)
    try:
        q = _data(30, 24, seed=8)
        rowid = col.index_ids()
        by_rowid = {v: k for k, v in rowid.items()}
        # the depth the index calibrated for k=10 (the Collection asks for 11 to see ties, at the depth of 10)
        npr, mdr = col.index._resolve(10, None, None, None, 1.0)
        assert (npr, mdr) != col.index._resolve(11, None, None, None, 1.0)  # the k=100 row of the calibration
        for i in range(len(q)):
            res = col.index.search(q[i], k=11, n_probe=npr, max_dist_ratio=mdr)
            pairs = [(by_rowid[int(r)], float(s)) for r, s in zip(res.ids[0], res.scores[0]) if r >= 0]
            pairs.sort(key=lambda p: (-p[1], p[0]))  # ties by string id
            docs = {h.id: h for h in col.get([p[0] for p in pairs])}
            got = col.search(q[i], k=10)
            assert [(h.id, h.score) for h in got] == pairs[:10]
            assert all(h.text == docs[h.id].text and h.metadata == docs[h.id].metadata for h in got)
    finally:
        col.close()


def test_search_orders_ties_by_string_id_across_the_fetch():
    col = Collection(None, metric="ip", index_threshold=10_000)
    x = np.zeros((30, 4), np.float32)
    x[:, 0] = 1.0
    ids = [f"z{i:02d}" if i % 2 else f"a{i:02d}" for i in range(30)]
    col.add(x, ids=ids, metadatas=[{"i": i} for i in range(30)])
    got = col.search(np.array([1, 0, 0, 0], np.float32), k=12)
    assert [h.id for h in got] == sorted(ids)[:12]
    col.close()


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "b": [1, 2]}',
        '{"a":1}',
        ' {"a": 1}',
        '{"a": 1} ',
        "{}",
        '{"a": "é\\u00e9"}',
        '{"a": 1}x',
        "",
        None,
        b'{"a": 2}',
    ],
)
def test_metadata_decode_matches_json_loads(text):
    try:
        want = json.loads(text)
    except (TypeError, ValueError) as exc:
        with pytest.raises(type(exc)):
            collection_mod._json_object(text)
    else:
        assert collection_mod._json_object(text) == want


def test_damaged_metadata_is_still_a_named_error(tmp_path):
    col, _ = _collection(tmp_path / "c", n=200)
    q = _data(1, 24, seed=9)[0]
    top = col.search(q, k=1)[0].id
    col.close()  # a row read before is served from this process's row cache: the damage is met by a new open
    db = sqlite3.connect(tmp_path / "c" / "docs.sqlite", isolation_level=None)
    db.execute("UPDATE docs SET metadata = '{\"bucket\": 1' WHERE id = ?", [top])
    db.close()
    from spann_vectorstore import CorruptStoreError

    col = Collection(tmp_path / "c")
    for _ in range(2):  # not cached after the first error either
        with pytest.raises(CorruptStoreError):
            col.search(q, k=3)
    col.close()


def test_first_search_latency_is_measured_in_milliseconds_while_cold(tmp_path, cold):
    col, _ = _collection(tmp_path / "c", n=5000)
    try:
        q = _data(1, 24, seed=10)[0]
        t = time.perf_counter()
        col.search(q, k=10)
        assert time.perf_counter() - t < 2.0
    finally:
        col.close()
