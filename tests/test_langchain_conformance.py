"""LangChain store behaviours users of langchain-chroma / langchain-qdrant expect (issue 17): score_threshold,
by-vector relevance scores, relevance_score_fn, update_document(s), Chroma's get dict, reset/delete_collection,
save_local keeping bits and index options."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_spann import SPANNVectorStore

from spann_vectorstore import Collection

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]


class WordEmbedding(Embeddings):
    """Unit vectors: one axis per known word, so similarities are predictable."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        v = np.array([text.split().count(w) for w in WORDS], dtype=np.float64) + 1e-3
        return (v / np.linalg.norm(v)).tolist()


TEXTS = ["alpha", "alpha bravo", "bravo", "charlie", "delta echo", "golf"]


def make(**kw) -> SPANNVectorStore:
    return SPANNVectorStore.from_texts(
        TEXTS, WordEmbedding(), metadatas=[{"i": i} for i in range(6)], ids=[f"t{i}" for i in range(6)], **kw
    )


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
def test_score_threshold_in_the_metrics_direction(metric):
    with make(metric=metric) as store:
        scored = store.similarity_search_with_score("alpha", k=6)
        cut = scored[1][1]  # keep the best two
        got = store.similarity_search_with_score("alpha", k=6, score_threshold=cut)
        assert [d.id for d, _ in got] == [d.id for d, _ in scored[:2]]
        assert all((s <= cut) if metric == "l2" else (s >= cut) for _, s in got)
        assert [d.id for d in store.similarity_search("alpha", k=6, score_threshold=cut)] == ["t0", "t1"]
        vec = WordEmbedding().embed_query("alpha")
        assert [d.id for d in store.similarity_search_by_vector(vec, k=6, score_threshold=cut)] == ["t0", "t1"]
        by_vec = store.similarity_search_with_score_by_vector(vec, k=6, score_threshold=cut)
        assert [d.id for d, _ in by_vec] == ["t0", "t1"]
        assert asyncio.run(store.asimilarity_search("alpha", k=6, score_threshold=cut))[1].id == "t1"
        with pytest.raises(TypeError, match="score_threshold"):
            store.similarity_search("alpha", score_threshold="high")


def test_score_threshold_sparse_and_hybrid_keep_higher_scores():
    for mode in ("sparse", "hybrid"):
        with make(metric="l2", retrieval_mode=mode) as store:
            scored = store.similarity_search_with_score("alpha bravo", k=6)
            cut = scored[0][1]
            got = store.similarity_search_with_score("alpha bravo", k=6, score_threshold=cut)
            assert got and all(s >= cut for _, s in got)


def test_by_vector_relevance_scores_and_async_twin():
    with make(metric="l2") as store:
        vec = WordEmbedding().embed_query("alpha")
        rel = store.similarity_search_by_vector_with_relevance_scores(vec, k=3)
        want = store.similarity_search_with_relevance_scores("alpha", k=3)
        assert [d.id for d, _ in rel] == [d.id for d, _ in want] and rel[0][0].id == "t0"
        np.testing.assert_allclose([r for _, r in rel], [r for _, r in want], atol=1e-6)
        assert all(0 <= r <= 1 for _, r in rel) and rel[0][1] > 0.99
        assert [d.id for d, _ in asyncio.run(store.asimilarity_search_by_vector_with_relevance_scores(vec, k=3))] == [
            d.id for d, _ in rel
        ]
        cut = store.similarity_search_by_vector_with_relevance_scores(vec, k=6, score_threshold=rel[1][1])
        assert [d.id for d, _ in cut] == [d.id for d, _ in rel[:2]]


def test_relevance_score_fn_is_used_for_dense_scores():
    with make(relevance_score_fn=lambda s: s / 10) as store:
        ((doc, rel),) = store.similarity_search_with_relevance_scores("alpha", k=1)
        ((_, native),) = store.similarity_search_with_score("alpha", k=1)
        assert doc.id == "t0" and rel == pytest.approx(native / 10)
    with pytest.raises(TypeError, match="relevance_score_fn"):
        make(relevance_score_fn=3)


def test_update_document_and_documents_reembed_and_upsert():
    with make() as store:
        store.update_document("t3", Document(page_content="hotel", metadata={"new": True}))
        assert store.similarity_search("hotel", k=1)[0].id == "t3"
        assert store.get_by_ids(["t3"])[0].metadata == {"new": True}
        store.update_documents(["t0", "t9"], [Document(page_content="golf golf"), Document(page_content="echo")])
        assert store.get_by_ids(["t0", "t9"])[1].page_content == "echo"  # an unknown id is added
        assert {d.id for d in store.similarity_search("golf", k=2)} == {"t0", "t5"}
        assert store.collection.count() == 7
        with pytest.raises(ValueError, match="one id per document"):
            store.update_documents(["t1"], [])


def test_get_returns_chromas_dict():
    with make() as store:
        got = store.get()
        assert got == {
            "ids": [f"t{i}" for i in range(6)],
            "embeddings": None,
            "documents": TEXTS,
            "metadatas": [{"i": i} for i in range(6)],
            "included": ["documents", "metadatas"],
        }
        assert store.get(limit=2, offset=3)["ids"] == ["t3", "t4"]
        assert store.get(where={"i": {"$gte": 4}})["documents"] == ["delta echo", "golf"]
        assert store.get(where_document={"$contains": "bravo"})["ids"] == ["t1", "t2"]
        assert store.get(ids=["t5", "t1", "zz"])["ids"] == ["t5", "t1"]
        assert store.get("t2")["documents"] == ["bravo"]
        emb = store.get(ids=["t0"], include=["embeddings"])
        assert emb["documents"] is None and emb["metadatas"] is None and emb["included"] == ["embeddings"]
        np.testing.assert_allclose(emb["embeddings"][0], WordEmbedding().embed_query("alpha"), rtol=1e-5)
        with pytest.raises(ValueError, match="include"):
            store.get(include=["distances"])


def test_reset_and_delete_collection(tmp_path):
    store = make(persist_directory=tmp_path / "kb", metric="l2", bits=2)
    store.reset_collection()
    assert store.get()["ids"] == [] and store.collection.stats()["bits"] == 2
    store.add_texts(["alpha"], ids=["a"])
    assert store.similarity_search("alpha", k=1)[0].id == "a"
    store.delete_collection()
    with pytest.raises(Exception):  # noqa: B017 - closed
        store.similarity_search("alpha")
    assert (tmp_path / "kb").is_dir()  # files kept: an empty collection
    with Collection(tmp_path / "kb") as col:
        assert col.count() == 0 and col.metric == "l2"


def test_save_local_keeps_bits_and_index_options(tmp_path):
    with make(bits=2, index_options={"replica_count": 2}, n_probe=5) as store:
        store.save_local(tmp_path, index_name="kb")
    loaded = SPANNVectorStore.load_local(tmp_path, WordEmbedding(), index_name="kb")
    with loaded:
        st = loaded.collection.stats()
        assert st["bits"] == 2 and st["index_options"] == {"replica_count": 2} and st["n_probe"] == 5
        assert loaded.similarity_search("alpha", k=1)[0].id == "t0"
