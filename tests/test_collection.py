"""Collection: documents, filters, durability under SIGKILL, concurrency, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from spann_vectorstore import Collection, CorruptStoreError, FilterError
from spann_vectorstore.evaluation import clustered, exact_topk, recall_at_k

D = 24


def docs(n, seed=0):
    rng = np.random.default_rng(seed)
    x = clustered(n, D, seed=seed)
    x /= np.linalg.norm(x, axis=1, keepdims=True)  # embeddings are normalised: a vector is its own top hit
    metas = [
        {
            "i": i,
            "year": 2000 + i % 25,
            "kind": ["paper", "blog", "code"][i % 3],
            "tags": ["even" if i % 2 == 0 else "odd", f"m{i % 5}"],
            "author": {"name": f"a{i % 7}", "score": float(rng.random())},
            "draft": bool(i % 4 == 0),
        }
        for i in range(n)
    ]
    return x, [f"text {i}" for i in range(n)], metas, [f"doc-{i}" for i in range(n)]


def snapshot(col):
    got = col.get(filter=None, include_vectors=True)
    return len(got), sorted((h.id, h.text, json.dumps(h.metadata, sort_keys=True), h.vector.tobytes()) for h in got)


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_add_search_get_delete_roundtrip(tmp_path, metric):
    x, texts, metas, ids = docs(600)
    col = Collection(tmp_path / "c", metric=metric, index_threshold=300)
    assert col.search(x[0], k=3) == []
    assert col.add(x, texts, metas, ids) == ids
    assert col.count() == 600 and col.stats()["indexed"]
    hits = col.search(x[7], k=5)
    assert hits[0].id == "doc-7" and hits[0].text == "text 7" and hits[0].metadata == metas[7]
    truth, _ = exact_topk(x, x[:50], 5, metric)
    got = col.search(x[:50], k=5)
    found = np.array([[int(h.id.split("-")[1]) for h in q] for q in got])
    assert recall_at_k(found, truth, 5) >= 0.95
    assert [h.id for h in col.get(["doc-3", "missing", "doc-1"])] == ["doc-3", "doc-1"]
    assert col.delete(ids=["doc-7", "nope"]) == 1
    assert all(h.id != "doc-7" for h in col.search(x[7], k=10))
    col.close()
    col = Collection.open(tmp_path / "c")
    assert col.count() == 599 and col.metric == metric
    assert col.search(x[8], k=1)[0].id == "doc-8"
    col.close()


def test_generated_ids_and_upsert(tmp_path):
    x, texts, _metas, _ = docs(50)
    col = Collection(tmp_path / "c")
    ids = col.add(x, texts)
    assert len(set(ids)) == 50 and all(len(i) == 36 for i in ids)
    col.add(x[:1] + 5.0, ["replaced"], [{"v": 2}], ids=[ids[0]])
    assert col.count() == 50
    (h,) = col.get([ids[0]], include_vectors=True)
    assert h.text == "replaced" and h.metadata == {"v": 2}
    np.testing.assert_allclose(h.vector, x[0] + 5.0)
    col.close()


def test_dim_fixed_by_first_add_and_checked(tmp_path):
    col = Collection(tmp_path / "c")
    assert col.dim is None
    col.add(np.ones((2, 5), np.float32), ids=["a", "b"])
    assert col.dim == 5
    with pytest.raises(ValueError, match="dimension"):
        col.add(np.ones((1, 6), np.float32))
    col.close()
    with pytest.raises(ValueError, match="dim"):
        Collection(tmp_path / "c", dim=7)


def test_index_built_automatically_then_updated_in_place(tmp_path):
    x, _texts, _metas, ids = docs(3000)
    col = Collection(tmp_path / "c", index_threshold=1000)
    col.add(x[:900], ids=ids[:900])
    assert not col.stats()["indexed"]
    col.add(x[900:2000], ids=ids[900:2000])
    assert col.stats()["indexed"]
    heads = col.stats()["index"]["heads"]
    col.add(x[2000:], ids=ids[2000:])
    assert col.stats()["index"]["heads"] >= heads
    assert col.search(x[2500], k=1)[0].id == "doc-2500"
    col.optimize()
    assert col.search(x[2500], k=1)[0].id == "doc-2500"
    col.close()


FILTER_CASES = [
    ({"kind": "blog"}, lambda m: m["kind"] == "blog"),
    ({"kind": {"$eq": "code"}}, lambda m: m["kind"] == "code"),
    ({"kind": {"$ne": "code"}}, lambda m: m["kind"] != "code"),
    ({"year": {"$gt": 2020}}, lambda m: m["year"] > 2020),
    ({"year": {"$gte": 2020}}, lambda m: m["year"] >= 2020),
    ({"year": {"$lt": 2003}}, lambda m: m["year"] < 2003),
    ({"year": {"$lte": 2003}}, lambda m: m["year"] <= 2003),
    ({"i": {"$in": [1, 2, 3, 500]}}, lambda m: m["i"] in (1, 2, 3, 500)),
    ({"kind": {"$nin": ["blog", "code"]}}, lambda m: m["kind"] not in ("blog", "code")),
    ({"tags": {"$contains": "m3"}}, lambda m: "m3" in m["tags"]),
    ({"author.name": "a2"}, lambda m: m["author"]["name"] == "a2"),
    ({"author.score": {"$lt": 0.25}}, lambda m: m["author"]["score"] < 0.25),
    ({"draft": True}, lambda m: m["draft"] is True),
    ({"$and": [{"kind": "paper"}, {"year": {"$gte": 2010}}]}, lambda m: m["kind"] == "paper" and m["year"] >= 2010),
    ({"$or": [{"kind": "paper"}, {"i": {"$lt": 10}}]}, lambda m: m["kind"] == "paper" or m["i"] < 10),
    ({"$not": {"kind": "paper"}}, lambda m: m["kind"] != "paper"),
    ({"kind": "blog", "draft": False}, lambda m: m["kind"] == "blog" and not m["draft"]),
    ({"missing": {"$exists": False}}, lambda m: True),
    ({"year": {"$gt": "2020"}}, lambda m: False),  # strings never compare with numbers
]


@pytest.mark.parametrize("flt, pred", FILTER_CASES, ids=[json.dumps(f) for f, _ in FILTER_CASES])
def test_filters_match_python_semantics(tmp_path, flt, pred):
    x, texts, metas, ids = docs(600)
    col = Collection(None, index_threshold=200)
    col.add(x, texts, metas, ids)
    want = {ids[i] for i in range(600) if pred(metas[i])}
    assert {h.id for h in col.get(filter=flt)} == want
    assert col.count(filter=flt) == len(want)
    hits = col.search(x[0], k=10, filter=flt)
    assert len(hits) == min(10, len(want))
    assert {h.id for h in hits} <= want
    if want:
        sub = [i for i in range(600) if ids[i] in want]
        truth, _ = exact_topk(x[sub], x[:1], min(10, len(sub)), "ip")
        assert next(h.id for h in hits) == ids[sub[truth[0, 0]]]


@pytest.mark.slow
def test_selective_filter_still_returns_k_on_100k():
    n = 100_000
    x = clustered(n, 16, seed=3, n_centers=200)
    col = Collection(None, index_threshold=1000)
    metas = [{"bucket": i % 100} for i in range(n)]
    col.add(x, metadatas=metas, ids=[str(i) for i in range(n)])
    assert col.stats()["indexed"]
    q = clustered(20, 16, seed=4, n_centers=200)
    allowed = np.arange(n)[np.arange(n) % 100 == 7]  # 1%
    truth, _ = exact_topk(x[allowed], q, 10, "ip")
    got = col.search(q, k=10, filter={"bucket": 7})
    assert all(len(h) == 10 for h in got), "a 1% filter must still give k hits"
    found = np.array([[int(h.id) for h in hs] for hs in got])
    assert recall_at_k(found, allowed[truth], 10) >= 0.95
    got30 = col.search(q, k=10, filter={"bucket": {"$lt": 30}})
    assert all(len(h) == 10 and all(int(x.id) % 100 < 30 for x in h) for h in got30)


@pytest.mark.parametrize(
    "flt",
    [{"a": {"$regex": "x"}}, {"$xor": []}, {"a": {"$in": 5}}, {"$and": {}}, {"a": {"$gt": [1]}}, "a=1", {"": 1}],
)
def test_invalid_filters_raise(flt):
    col = Collection(None)
    col.add(np.ones((1, 3), np.float32), metadatas=[{"a": 1}])
    with pytest.raises((FilterError, ValueError)):
        col.search(np.ones(3, np.float32), k=1, filter=flt)


def test_bad_input_leaves_collection_unchanged(tmp_path):
    x, texts, metas, ids = docs(100)
    col = Collection(tmp_path / "c", index_threshold=50)
    col.add(x, texts, metas, ids)
    before = snapshot(col)
    nan = x[:2].copy()
    nan[0, 0] = np.nan
    bad_calls = [
        (lambda: col.add(np.ones((2, D + 1), np.float32), ids=["n1", "n2"]), ValueError),
        (lambda: col.add(nan, ids=["doc-1", "n2"]), ValueError),
        (lambda: col.add(x[:2], texts=["only one"], ids=["doc-1", "n2"]), ValueError),
        (lambda: col.add(x[:2], metadatas=[{}], ids=["doc-1", "n2"]), ValueError),
        (lambda: col.add(x[:2], ids=["doc-1"]), ValueError),
        (lambda: col.add(x[:2], ids=["dup", "dup"]), ValueError),
        (lambda: col.add(x[:2], metadatas=[{"f": object()}, {}], ids=["doc-1", "n2"]), ValueError),
        (lambda: col.add(x[:2], metadatas=[{"f": float("nan")}, {}], ids=["doc-1", "n2"]), ValueError),
        (lambda: col.add(x[:2], texts=[1, 2], ids=["doc-1", "n2"]), TypeError),
        (lambda: col.add(x[:2], ids=[1, 2]), TypeError),
        (lambda: col.add(np.zeros((0, D), np.float32)), ValueError),
        (lambda: col.delete(filter={"a": {"$bogus": 1}}), ValueError),
        (lambda: col.search(x[0], k=0), ValueError),
        (lambda: col.search(x[0][:3], k=2), ValueError),
    ]
    for fn, exc in bad_calls:
        with pytest.raises(exc):
            fn()
    assert snapshot(col) == before
    col.close()
    col = Collection.open(tmp_path / "c")
    assert snapshot(col) == before
    col.close()


def test_second_process_gets_a_clear_lock_error(tmp_path):
    col = Collection(tmp_path / "c")
    col.add(np.ones((1, 4), np.float32), ids=["a"])
    code = textwrap.dedent(
        f"""
        from spann_vectorstore import Collection, CollectionLockedError
        try:
            Collection({str(tmp_path / "c")!r})
        except CollectionLockedError as e:
            print("LOCKED", e)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "LOCKED" in out.stdout and f"another process (pid {os.getpid()})" in out.stdout, out.stderr
    again = Collection(tmp_path / "c")  # the same process shares its open instance (issue 16)
    assert again is col
    again.close()
    assert col.count() == 1  # one reference left
    col.close()
    with pytest.raises(RuntimeError, match="closed"):
        col.count()
    Collection(tmp_path / "c").close()  # free again after close


WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from spann_vectorstore import Collection
    path, start = sys.argv[1], int(sys.argv[2])
    col = Collection(path, index_threshold=300, snapshot_every=700)
    if start:  # from the second round on, the filters of the checks go through a field index
        col.create_index("j")
    rng = np.random.default_rng(start)
    i = start
    while True:
        n = int(rng.integers(1, 40))
        ids = [f"w{j}" for j in range(i, i + n)]
        x = rng.standard_normal((n, 16)).astype(np.float32)
        col.add(x, texts=[f"t{j}" for j in range(i, i + n)], metadatas=[{"j": j} for j in range(i, i + n)], ids=ids)
        if i % 5 == 0:
            col.delete(ids=[ids[0]])
            print("DEL", ids[0], flush=True)
        print("ACK", " ".join(ids), flush=True)
        i += n
    """
)


@pytest.mark.slow
def test_acknowledged_writes_survive_sigkill(tmp_path):
    path = str(tmp_path / "c")
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    acked: set[str] = set()
    deleted: set[str] = set()
    rng = np.random.default_rng(0)
    start = 0
    for _round in range(6):
        proc = subprocess.Popen([sys.executable, str(script), path, str(start)], stdout=subprocess.PIPE, text=True)
        lines = []

        def reader(p=proc, out=lines):
            for line in p.stdout:
                out.append(line)

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        # the kill comes a random time after the first acknowledgement (a loaded machine may take many seconds
        # to start the writer: a deadline from the start could kill it before it wrote anything)
        started = time.time()
        while not lines and proc.poll() is None and time.time() - started < 300:
            time.sleep(0.05)
        deadline = time.time() + float(rng.uniform(1.0, 3.0))
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        t.join(timeout=10)
        for line in lines:
            if not line.endswith("\n"):
                continue  # a half-printed acknowledgement does not count
            kind, *ids = line.split()
            if kind == "ACK":
                acked.update(ids)
            elif kind == "DEL":
                deleted.update(ids)
        start += 100_000
        col = Collection.open(path)
        assert col.list_indexes() == ({"j": "integer"} if _round else {})
        assert sorted(h.id for h in col.get(filter={"j": {"$gte": 0}})) == sorted(h.id for h in col.get())
        live = acked - deleted
        got = {h.id for h in col.get([*live])}
        assert got == live, f"lost {len(live - got)} acknowledged documents in round {_round}"
        assert not ({h.id for h in col.get([*deleted])}), "a deleted document came back"
        # every acknowledged document is searchable: query with its own stored vector
        sample = sorted(live)[:: max(1, len(live) // 25)]
        for h in col.get(sample, include_vectors=True):
            top = col.search(h.vector, k=1, filter={"j": h.metadata["j"]})
            assert top and top[0].id == h.id
            assert h.text == "t" + h.id[1:]
            # the full-text index is written in the same transaction: found by its text, exactly once
            assert [x.id for x in col.text_search(h.text, k=2)] == [h.id]
        for gone in sorted(deleted)[:25]:
            assert not col.text_search("t" + gone[1:], k=1), "a deleted document came back from the text index"
        col.close()
    assert len(acked) > 100, "the writer should have acknowledged many writes"


def test_concurrent_searches_while_writing(tmp_path):
    x, texts, metas, ids = docs(4000, seed=11)
    col = Collection(tmp_path / "c", index_threshold=1000)
    col.add(x[:2000], texts[:2000], metas[:2000], ids[:2000])
    deleted: set[str] = set()  # deletes acknowledged (delete() returned)
    dlock = threading.Lock()
    errors: list[BaseException] = []
    stop = threading.Event()
    searches = [0]

    def writer():
        try:
            t_end = time.time() + 3.0
            for s in range(2000, 4000, 100):
                col.add(x[s : s + 100], texts[s : s + 100], metas[s : s + 100], ids[s : s + 100])
                gone = [ids[j] for j in range(s - 2000, s - 1950)]
                col.delete(ids=gone)
                with dlock:
                    deleted.update(gone)
            while time.time() < t_end:  # keep writing (upserts of live documents) for a few seconds
                j = int(np.random.default_rng().integers(3000, 4000))
                col.add(x[j : j + 1], texts[j : j + 1], metas[j : j + 1], ids[j : j + 1])
        except BaseException as e:  # reported below
            errors.append(e)
        finally:
            stop.set()

    def reader(seed):
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                with dlock:
                    gone_before = set(deleted)
                q = x[rng.integers(0, 4000, 8)]
                flt = {"kind": {"$ne": "code"}} if seed % 2 else None
                for hits in col.search(q, k=10, filter=flt):
                    assert len({h.id for h in hits}) == len(hits), "duplicate hit"
                    for h in hits:
                        assert h.id not in gone_before, f"{h.id} was deleted before this search began"
                        assert h.text == "text " + h.id.split("-")[1]
                        assert flt is None or h.metadata["kind"] != "code"
                searches[0] += 1
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[0]
    assert searches[0] > 50, "readers must have run concurrently with the writer"
    assert col.count() == 4000 - 20 * 50
    final = {h.id for hs in col.search(x[:200], k=10) for h in hs}
    assert not final & deleted
    col.close()


@pytest.mark.slow
def test_default_settings_reach_095_recall_on_shared_data_when_ingested_in_batches(shared_data):
    xb, xq, gt = shared_data
    col = Collection(None)  # defaults only: index built at 4,096 docs, rebuilt on doubling, updated in place
    for s in range(0, len(xb), 10_000):
        col.add(xb[s : s + 10_000], ids=[str(i) for i in range(s, s + 10_000)])
    st = col.stats()["index"]
    assert st["heads"] >= 500, f"grown index has too few heads: {st['heads']}"
    got = col.search(xq, k=10)
    found = np.array([[int(h.id) for h in hs] for hs in got])
    r = recall_at_k(found, gt, 10)
    assert r >= 0.95, f"Collection recall@10 on ../shared/data with default settings {r:.3f} < 0.95"


def test_negations_match_documents_without_the_field():
    """$ne, $nin and $not hold for a document that lacks the field (SQL NULL must not leak through NOT)."""
    col = Collection(dim=4)
    vecs = np.eye(4, dtype=np.float32)[:3] + 0.1
    col.add(vecs, metadatas=[{"d": True, "x": 1}, {}, {"x": 5}], ids=["a", "b", "c"])
    cases = {
        '{"d": {"$ne": true}}': ({"d": {"$ne": True}}, ["b", "c"]),
        '{"x": {"$nin": [1]}}': ({"x": {"$nin": [1]}}, ["b", "c"]),
        '{"$not": {"x": {"$gt": 0}}}': ({"$not": {"x": {"$gt": 0}}}, ["b"]),
        '{"$not": {"d": true}}': ({"$not": {"d": True}}, ["b", "c"]),
        '{"x": {"$in": [1, 5]}}': ({"x": {"$in": [1, 5]}}, ["a", "c"]),
    }
    for name, (flt, want) in cases.items():
        assert sorted(h.id for h in col.get(filter=flt)) == want, name
        assert col.count(filter=flt) == len(want), name
        assert sorted(h.id for h in col.search(vecs[0], k=3, filter=flt)) == want, name


@pytest.fixture
def gated_rebuild(monkeypatch):
    """Background rebuilds wait at the start of their build until ``gate`` is set."""
    from spann_vectorstore import SpannIndex

    gate = threading.Event()
    started = threading.Event()
    build = SpannIndex.build

    def gated(self, *a, **kw):
        if threading.current_thread().name == "spann-rebuild":
            started.set()
            assert gate.wait(60), "test gate never opened"
        return build(self, *a, **kw)

    monkeypatch.setattr(SpannIndex, "build", gated)
    return gate, started


def test_rebuild_runs_in_background_and_loses_no_write(gated_rebuild):
    """A rebuild at doubling does not block searches, writes from other threads go on during it, and the
    rebuilt index is caught up with them: nothing added during the build is missing, nothing deleted
    comes back, and the write that triggered the rebuild returns once the new index is in use."""
    gate, started = gated_rebuild
    x, texts, metas, ids = docs(1400, seed=5)
    col = Collection(None, dim=D, index_threshold=300)
    col.add(x[:400], texts[:400], metas[:400], ids[:400])  # first build, in place
    first = col.index
    assert first.n_heads > 0
    trigger = threading.Thread(target=col.add, args=(x[400:800], texts[400:800], metas[400:800], ids[400:800]))
    trigger.start()
    assert started.wait(30), "adding to twice the built size must start a rebuild"
    # while the rebuild waits: searches answer, other writers proceed
    t0 = time.monotonic()
    hit = col.search(x[10], k=1)[0]
    assert hit.id == ids[10] and time.monotonic() - t0 < 5, "search must not wait for the rebuild"
    col.add(x[800:1400], texts[800:1400], metas[800:1400], ids[800:1400])
    assert col.delete(ids[:50]) == 50
    assert trigger.is_alive(), "the triggering add returns only once the rebuilt index is in use"
    gate.set()
    trigger.join(60)
    assert not trigger.is_alive() and col.wait_for_index(60)
    assert col.index is not first, "the rebuilt index must replace the old one"
    assert len(col) == 1350 and len(col.index) == 1350
    got = col.search(x[50:1400], k=1)
    assert [h[0].id for h in got] == ids[50:1400], "every live document (added during the build too) finds itself"
    deleted = set(ids[:50])
    for hits in col.search(x[:50], k=10):
        assert not deleted & {h.id for h in hits}, "deleted documents never come back"
    col.close()


def test_close_and_optimize_during_rebuild(tmp_path, gated_rebuild):
    """close() waits for a running rebuild and persists everything; optimize() returns with a fresh index
    that covers writes made while it built."""
    gate, started = gated_rebuild
    x, texts, metas, ids = docs(1000, seed=6)
    col = Collection(tmp_path / "c", dim=D, index_threshold=200)
    col.add(x[:250], texts[:250], metas[:250], ids[:250])
    opt = threading.Thread(target=col.optimize)
    opt.start()
    assert started.wait(30)
    col.add(x[250:300], texts[250:300], metas[250:300], ids[250:300])
    before = col.index
    gate.set()
    opt.join(60)
    assert not opt.is_alive() and col.index is not before
    assert [h[0].id for h in col.search(x[:300], k=1)] == ids[:300]
    gate.clear()
    started.clear()
    trigger = threading.Thread(target=col.add, args=(x[300:1000], texts[300:1000], metas[300:1000], ids[300:1000]))
    trigger.start()
    assert started.wait(30)
    closer = threading.Thread(target=col.close)
    closer.start()
    time.sleep(0.2)
    assert closer.is_alive(), "close() waits for the running rebuild"
    gate.set()
    closer.join(60)
    trigger.join(60)
    assert not closer.is_alive() and not trigger.is_alive()
    with Collection.open(tmp_path / "c") as again:
        assert len(again) == 1000
        assert [h[0].id for h in again.search(x, k=1)] == ids


@pytest.mark.parametrize("threshold", [10_000, 256])
def test_ties_broken_by_string_id_whatever_the_insertion_order(tmp_path, threshold):
    """Identical chunks (same vector) tie: they come back in increasing string id, the k-th place goes to the
    smallest tied id, and neither insertion order nor a reopen changes the answer."""
    rng = np.random.default_rng(4)
    x = rng.integers(-3, 4, (1200, 8)).astype(np.float32)  # exact dot products: equal scores are true ties
    x[np.arange(50, 1200, 90)] = x[3]  # 14 copies of row 3
    names = [f"doc-{v:05d}" for v in rng.permutation(len(x))]
    tied = sorted(names[i] for i in range(len(x)) if np.array_equal(x[i], x[3]))
    answers = []
    for run, order in enumerate((np.arange(len(x)), rng.permutation(len(x)))):
        path = tmp_path / f"c{run}"
        col = Collection(path, index_threshold=threshold, n_probe=10_000)
        for part in np.array_split(order, 4):
            col.add(x[part], ids=[names[i] for i in part])
        live = [h.id for h in col.search(x[3], k=5)]
        col.close()
        with Collection.open(path) as col:
            assert [h.id for h in col.search(x[3], k=5)] == live
        answers.append(live)
    assert answers[0] == answers[1] == tied[:5]


# ----------------------------------------------------------------------------------------------------------
# hardening (issue 18): races, damaged files, recovery, verify
# ----------------------------------------------------------------------------------------------------------
def small_store(path, n=300, **kw):
    """A closed persistent store with an index snapshot (built past ``index_threshold``)."""
    x, texts, metas, ids = docs(n)
    with Collection(path, index_threshold=100, **kw) as col:
        col.add(x[: n // 2], texts[: n // 2], metas[: n // 2], ids[: n // 2])
        col.add(x[n // 2 :], texts[n // 2 :], metas[n // 2 :], ids[n // 2 :])
    return x, texts, metas, ids


def test_first_adds_of_two_dimensions_do_not_race(tmp_path, monkeypatch):
    """Validation runs outside the write lock: thread A (8-d, slow validation) must not commit its rows
    after thread B's first add fixed the dimension at 16 (it did: count 4, 2 searchable, and every later
    open failed to broadcast (8,) into (16,)). The dimension is checked again under the lock."""
    import spann_vectorstore.collection as cmod

    b_done = threading.Event()
    a_validated = threading.Event()
    real = cmod.validate_documents

    def slow(vectors, *args, **kwargs):
        out = real(vectors, *args, **kwargs)
        if out[0].shape[1] == 8:  # thread A: validated against "no dimension yet"; wait for B's add
            a_validated.set()
            assert b_done.wait(60), "thread B never finished"
        return out

    monkeypatch.setattr(cmod, "validate_documents", slow)
    col = Collection(tmp_path / "c")
    errors = []

    def add_a():
        try:
            col.add(np.ones((2, 8), np.float32), ids=["a1", "a2"])
        except ValueError as e:
            errors.append(e)

    t = threading.Thread(target=add_a)
    t.start()
    assert a_validated.wait(60)
    col.add(np.ones((2, 16), np.float32), ids=["b1", "b2"])
    b_done.set()
    t.join(60)
    assert len(errors) == 1 and "dimension" in str(errors[0])
    assert col.count() == 2 and {h.id for h in col.get()} == {"b1", "b2"}
    col.close()
    with Collection.open(tmp_path / "c") as col:
        assert col.count() == 2 and col.dim == 16
        assert len(col.search(np.ones(16, np.float32), k=4)) == 2


@pytest.mark.parametrize("damage", ["empty", "missing"])
def test_docs_sqlite_lost_while_snapshot_remains_is_refused_then_recovered(tmp_path, damage):
    """A zero-length (disk full, bad copy) or missing docs.sqlite opened as an empty collection and its first
    add and close replaced the snapshot, the only remaining copy of the vectors. Now: refused, naming the file
    and the way out, with nothing written; recover() rebuilds docs.sqlite from the snapshot (vectors under
    placeholder ids: texts and metadata lived only in docs.sqlite)."""
    p = tmp_path / "c"
    x, *_ = small_store(p)
    manifest = (p / "index" / "MANIFEST.json").read_bytes()
    if damage == "empty":
        (p / "docs.sqlite").write_bytes(b"")
    else:
        (p / "docs.sqlite").unlink()
    for opener in (Collection.open, Collection):
        with pytest.raises(CorruptStoreError, match=r"docs\.sqlite") as err:
            opener(p)
        assert "recover" in str(err.value) and "nothing was written" in str(err.value)
    assert (p / "index" / "MANIFEST.json").read_bytes() == manifest
    assert not (p / "docs.sqlite").exists() or (p / "docs.sqlite").stat().st_size == 0
    report = Collection.recover(p)
    assert report["documents"] == 300 and report["placeholders"] == 300 and report["salvaged"] == 0
    with Collection.open(p) as col:
        assert col.count() == 300 and col.verify().ok
        (hit,) = col.search(x[7], k=1)
        assert hit.id.startswith("recovered-") and hit.metadata == {"recovered": True} and hit.text is None
        assert col.count(filter={"recovered": True}) == 300
    assert Collection.recover(p)["action"] == "none"


def _page_of(path, marker: bytes) -> int:
    raw = path.read_bytes()
    return raw.index(marker) // 4096


def test_damaged_database_pages_name_the_file_and_recover_what_is_readable(tmp_path):
    """A damaged page of docs.sqlite: open (or a read) raises CorruptStoreError naming the file; recover()
    keeps every row that still reads and passes its checksum, and the snapshot's vectors stand in for the
    rows of the damaged page."""
    p = tmp_path / "c"
    x, texts, metas, ids = small_store(p)
    db = p / "docs.sqlite"
    page = _page_of(db, b"text 150")
    raw = bytearray(db.read_bytes())
    raw[page * 4096 : page * 4096 + 8] = b"\xff" * 8  # the b-tree page header: an invalid page type
    db.write_bytes(bytes(raw))
    with pytest.raises(CorruptStoreError, match=r"docs\.sqlite") as err:
        with Collection.open(p) as col:
            col.get()
    assert "damaged" in str(err.value) or "usable" in str(err.value)
    report = Collection.recover(p)
    assert report["documents"] == 300 and 0 < report["placeholders"] < 100, report
    assert Path(report["moved_aside"][0]).exists()
    with Collection.open(p) as col:
        assert col.verify().ok
        kept = {h.id: h for h in col.get()}
        assert len(kept) == 300
        for i in range(300):
            if ids[i] in kept:
                assert kept[ids[i]].text == texts[i] and kept[ids[i]].metadata == metas[i]
        assert sum(i.startswith("recovered-") for i in kept) == report["placeholders"]
        for i, hits in zip(range(300), col.search(x, k=1)):  # every vector is back, under its id if it read
            assert hits[0].id == ids[i] if ids[i] in kept else hits[0].id.startswith("recovered-")


def test_failed_open_releases_the_lock_and_names_the_file(tmp_path):
    """Open failed on a corrupt snapshot file; while the caller still held the exception (a notebook does),
    the next open raised CollectionLockedError. Now nothing is held, and the error names the file and
    recovery; recover() rebuilds the index from docs.sqlite, losing nothing."""
    p = tmp_path / "c"
    x, texts, _metas, ids = small_store(p)
    codes = next((p / "index").glob("snap-*")) / "e_codes.npy"
    raw = bytearray(codes.read_bytes())
    raw[-3] ^= 0x10
    codes.write_bytes(bytes(raw))
    held = []
    for _ in range(2):
        try:
            Collection.open(p)
        except CorruptStoreError as e:
            held.append(e)  # keeps the traceback, and with it the failed object's frame, alive
    assert len(held) == 2 and held[0].__traceback__ is not None
    assert "e_codes.npy" in str(held[1]) and "recover" in str(held[1])
    report = Collection.recover(p)
    assert report["action"].startswith("rebuilt the index") and report["documents"] == 300
    with Collection.open(p) as col:
        assert col.verify().ok
        assert [h[0].id for h in col.search(x, k=1)] == ids
        assert col.get(["doc-5"])[0].text == texts[5]


def test_not_a_database_is_named(tmp_path):
    p = tmp_path / "c"
    small_store(p)
    (p / "docs.sqlite").write_bytes(b"this is not a database, just text " * 200)
    for _ in range(2):  # and the lock is free again after the failure
        with pytest.raises(CorruptStoreError, match=r"docs\.sqlite") as err:
            Collection.open(p)
        assert "not a usable SQLite database" in str(err.value)


def test_delete_with_an_empty_filter_deletes_nothing(tmp_path):
    """``filter={}`` matches everything, and wrappers pass ``filter or {}``: it deleted every document. An
    empty filter now counts as no filter; ``clear()`` deletes everything."""
    x, texts, metas, ids = docs(50)
    col = Collection(tmp_path / "c")
    col.add(x, texts, metas, ids)
    assert col.delete(filter={}) == 0 and col.delete() == 0 and col.count() == 50
    assert col.delete(ids=["doc-1", "doc-2"], filter={}) == 2
    assert col.delete(filter={"kind": "blog"}) == sum(m["kind"] == "blog" for m in metas[3:])
    col.clear()
    assert col.count() == 0
    col.close()


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_verify_reports_damage_that_open_does_not_see(tmp_path, metric):
    """Memory-mapped vectors are checked for size only on open, and SQLite does not checksum row content:
    verify() reads everything (snapshot CRC32s, integrity_check, row CRC32s, index = SQLite rows and
    vectors). A store with damage is never snapshotted over on close."""
    import sqlite3

    p = tmp_path / "c"
    x, *_ = small_store(p, metric=metric)
    with Collection.open(p) as col:
        rep = col.verify()
        assert rep.ok, rep
        assert rep.checked["documents"] == 300 and rep.checked["rows_without_checksum"] == 0
    vec = next((p / "index").glob("snap-*")) / "vectors.npy"
    raw = bytearray(vec.read_bytes())
    raw[-37] ^= 0x55  # the high byte of a float (sign and exponent): a large change
    vec.write_bytes(bytes(raw))
    col = Collection.open(p)
    rep = col.verify()
    assert not rep.ok and any("vectors.npy" in m and "checksum" in m for m in rep.problems), rep
    assert any("differs from" in m for m in rep.problems), rep
    with pytest.raises(CorruptStoreError, match=r"vectors\.npy"):
        col.verify(raise_on_error=True)
    col.add(x[:1] * 2, ["changed"], ids=["new"])  # a write: close() snapshots, and would copy the damage
    with pytest.raises(CorruptStoreError, match=r"vectors\.npy.*recover"):
        col.close()
    assert vec.exists(), "the damaged snapshot was not replaced by a copy of itself with a fresh checksum"
    raw[-37] ^= 0x55
    vec.write_bytes(bytes(raw))
    with sqlite3.connect(p / "docs.sqlite") as db:
        db.execute("UPDATE docs SET text = 'tampered' WHERE id = 'doc-9'")
    db.close()
    with Collection.open(p) as col:
        rep = col.verify()
        assert [m for m in rep.problems if "doc-9" in m and "checksum" in m] and len(rep.problems) == 1, rep


def test_rows_written_before_row_checksums_still_open_and_verify(tmp_path):
    import sqlite3

    p = tmp_path / "c"
    small_store(p)
    with sqlite3.connect(p / "docs.sqlite") as db:
        db.execute("ALTER TABLE docs DROP COLUMN crc")
    db.close()
    with Collection.open(p) as col:
        rep = col.verify()
        assert rep.ok and rep.checked["rows_without_checksum"] == 300
        col.add(np.ones((1, D), np.float32), ids=["fresh"])
        assert col.verify().checked["rows_without_checksum"] == 300


def test_damaged_settings_row_is_refused(tmp_path):
    """The settings row carries a CRC32 of itself: a changed value (here n_probe, which would change search
    results silently) is refused on open, naming docs.sqlite."""
    import sqlite3

    p = tmp_path / "c"
    small_store(p, n_probe=7)
    with sqlite3.connect(p / "docs.sqlite") as db:
        (text,) = db.execute("SELECT value FROM settings").fetchone()
        db.execute("UPDATE settings SET value = ?", [text.replace('"n_probe": 7', '"n_probe": 9')])
    db.close()
    with pytest.raises(CorruptStoreError, match=r"docs\.sqlite': the collection settings are damaged"):
        Collection.open(p)
