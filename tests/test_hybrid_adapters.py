"""Dense, sparse (BM25) and hybrid retrieval through the LangChain and LlamaIndex adapters.

The corpus is built so that dense search alone misses the documents with the rare error code ``E4021``: a
lookup embedding puts every document on its own axis and the query next to two unrelated documents, so only
the text leg can find them; hybrid search finds them too.
"""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
from langchain_core.documents import Document as LCDocument
from langchain_core.embeddings import Embeddings
from langchain_spann import RetrievalMode
from langchain_spann import SPANNVectorStore as LCStore
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.schema import TextNode
from llama_index.core.vector_stores.types import (
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from llama_index.vector_stores.spann import SPANNVectorStore as LIStore

DIM = 8
CORPUS = {  # id: (text, metadata)
    "pay": ("payment failed with error E4021 at checkout", {"team": "billing", "year": 2024}),
    "inv": ("invoice E4021 reissued to the customer", {"team": "ops", "year": 2023}),
    "sky": ("the sky is blue today", {"team": "ops", "year": 2022}),
    "sea": ("the sea is blue and deep", {"team": "misc", "year": 2021}),
    "grass": ("grass is green", {"team": "misc", "year": 2020}),
    "apple": ("apples are red", {"team": "misc", "year": 2019}),
}
IDS = list(CORPUS)
TEXTS = [t for t, _ in CORPUS.values()]
METAS = [m for _, m in CORPUS.values()]
QUERY = "what does error E4021 mean"
DENSE_ORDER = ["sky", "sea", "apple", "grass", "inv", "pay"]  # score-0 ties in id order
TEXT_ORDER = ["pay", "inv"]  # "pay" matches two query words
ALL_FUSIONS = ("dbsf", "relative", "rrf")


def _vector(text: str) -> list[float]:
    """Each document on its own axis (also inside a longer text, as LlamaIndex embeds metadata with the
    text); any other text (the queries) near "sky" and "sea" only."""
    v = np.zeros(DIM)
    for i, doc in enumerate(TEXTS):
        if doc in text:
            v[i] = 1.0
            return v.tolist()
    v[IDS.index("sky")], v[IDS.index("sea")] = 0.9, math.sqrt(1 - 0.81)
    return v.tolist()


class LookupEmbeddings(Embeddings):
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [_vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return _vector(text)


class LookupMockEmbedding(MockEmbedding):
    """llama-index-core's MockEmbedding with the lookup vectors instead of a constant one."""

    def _get_query_embedding(self, query: str) -> list[float]:
        return _vector(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return _vector(text)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return _vector(query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return _vector(text)


# ----------------------------------------------------------------------------------------------------------
# LangChain
# ----------------------------------------------------------------------------------------------------------
def lc_store(mode: str | RetrievalMode = "dense", **kwargs) -> LCStore:
    return LCStore.from_texts(TEXTS, LookupEmbeddings(), METAS, ids=IDS, retrieval_mode=mode, **kwargs)


def ids(docs) -> list[str]:
    return [d[0].id if isinstance(d, tuple) else d.id for d in docs]


def test_lc_each_mode_on_the_rare_code():
    assert set(ids(lc_store("dense").similarity_search(QUERY, k=2))).isdisjoint(TEXT_ORDER)
    assert ids(lc_store("sparse").similarity_search(QUERY, k=2)) == TEXT_ORDER
    assert ids(lc_store(RetrievalMode.SPARSE).similarity_search(QUERY, k=4)) == TEXT_ORDER  # only word matches
    for fusion in ALL_FUSIONS:
        found = ids(lc_store("HYBRID", fusion=fusion).similarity_search(QUERY, k=3))
        assert "pay" in found and "sky" in found, fusion
    scored = lc_store("sparse").similarity_search_with_score(QUERY, k=2)
    assert scored[0][1] > scored[1][1] > 0  # BM25 scores


def test_lc_alpha_extremes_match_the_single_legs():
    store = lc_store("hybrid", hybrid_alpha=1.0)
    dense = lc_store("dense").similarity_search_with_score(QUERY, k=6)
    assert ids(store.similarity_search(QUERY, k=6)) == ids(dense) == DENSE_ORDER
    assert [s for _, s in store.similarity_search_with_score(QUERY, k=6)] == [s for _, s in dense]
    assert ids(lc_store("hybrid", hybrid_alpha=0.0).similarity_search(QUERY, k=6)) == TEXT_ORDER
    assert ids(store.similarity_search(QUERY, k=6, alpha=0.0)) == TEXT_ORDER  # per-call override


@pytest.mark.parametrize("mode", ["sparse", "hybrid"])
def test_lc_filters_apply_to_text_and_hybrid_legs(mode):
    store = lc_store(mode)
    ops = ids(store.similarity_search(QUERY, k=2, filter={"team": "ops"}))
    assert ops[0] == "inv" and all(CORPUS[i][1]["team"] == "ops" for i in ops)
    # a callable filter post-filters the mode's ranking over the whole collection (fused scores may differ)
    post = ids(store.similarity_search(QUERY, k=2, filter=lambda d: d.metadata["team"] == "ops"))
    assert "inv" in post and all(CORPUS[i][1]["team"] == "ops" for i in post)
    assert ids(store.similarity_search(QUERY, k=3, where_document={"$contains": "invoice"})) == ["inv"]
    both = {"$and": [{"year": {"$gte": 2023}}, {"$document": {"$match": "checkout"}}]}
    assert ids(store.similarity_search(QUERY, k=3, filter=both)) == ["pay"]
    assert ids(store.similarity_search(QUERY, k=3, filter={"team": "nobody"})) == []


@pytest.mark.parametrize(
    ("mode", "fusion"), [("dense", "dbsf"), ("sparse", "dbsf")] + [("hybrid", f) for f in ALL_FUSIONS]
)
def test_lc_relevance_scores_in_unit_interval(mode, fusion):
    store = lc_store(mode, fusion=fusion)
    for query in (QUERY, "grass", "?!"):
        scored = store.similarity_search_with_relevance_scores(query, k=6)
        rel = [r for _, r in scored]
        assert all(0.0 <= r <= 1.0 for r in rel), (query, rel)
        assert rel == sorted(rel, reverse=True)
        raw = [s for _, s in store.similarity_search_with_score(query, k=6)]
        assert ids(scored) == ids(store.similarity_search(query, k=6)) and len(raw) == len(rel)
    if mode == "hybrid":
        top = store.similarity_search_with_relevance_scores(QUERY, k=1)[0][1]
        assert top >= 0.5  # rrf is normalised too: rank 1 in both lists would be 1.0
    retriever = store.as_retriever(search_type="similarity_score_threshold", search_kwargs={"score_threshold": 0.0})
    assert ids(retriever.invoke(QUERY)) == ids(store.similarity_search(QUERY, k=4))


def test_lc_rrf_relevance_is_one_for_rank_one_in_both_lists():
    store = lc_store("hybrid", fusion="rrf")
    (doc, rel), *_ = store.similarity_search_with_relevance_scores("grass is green", k=1)
    assert doc.id == "grass" and rel == pytest.approx(1.0)


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_lc_mmr_and_retrievers_in_each_mode(mode):
    store = lc_store(mode)
    mmr = ids(store.max_marginal_relevance_search(QUERY, k=2, fetch_k=6))
    candidates = ids(store.similarity_search(QUERY, k=6))
    assert len(mmr) == min(2, len(candidates)) and set(mmr) <= set(candidates)
    if mode == "sparse":
        assert sorted(mmr) == sorted(TEXT_ORDER)
    retriever = store.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 6, "filter": {"team": "ops"}})
    assert {CORPUS[i][1]["team"] for i in ids(retriever.invoke(QUERY))} == {"ops"}
    plain = store.as_retriever(search_kwargs={"k": 2})
    assert ids(plain.invoke(QUERY)) == ids(store.similarity_search(QUERY, k=2))
    assert ids(asyncio.run(plain.ainvoke(QUERY))) == ids(store.similarity_search(QUERY, k=2))


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_lc_async_twins(mode):
    store = lc_store(mode)

    async def run():
        return (
            await store.asimilarity_search(QUERY, k=3),
            await store.asimilarity_search_with_score(QUERY, k=3),
            await store.asimilarity_search_with_relevance_scores(QUERY, k=3),
            await store.amax_marginal_relevance_search(QUERY, k=2, fetch_k=6),
        )

    docs, scored, rel, mmr = asyncio.run(run())
    assert ids(docs) == ids(scored) == ids(rel) == ids(store.similarity_search(QUERY, k=3))
    assert [s for _, s in scored] == [s for _, s in store.similarity_search_with_score(QUERY, k=3)]
    assert [r for _, r in rel] == [r for _, r in store.similarity_search_with_relevance_scores(QUERY, k=3)]
    assert ids(mmr) == ids(store.max_marginal_relevance_search(QUERY, k=2, fetch_k=6))


@pytest.mark.parametrize("mode", ["sparse", "hybrid"])
def test_lc_by_vector_is_dense_in_every_mode(mode):
    store, dense = lc_store(mode), lc_store("dense")
    vector = _vector(QUERY)
    assert ids(store.similarity_search_by_vector(vector, k=3)) == DENSE_ORDER[:3]
    assert store.similarity_search_with_score_by_vector(vector, k=3) == dense.similarity_search_with_score_by_vector(
        vector, k=3
    )
    assert ids(store.max_marginal_relevance_search_by_vector(vector, k=2, fetch_k=6)) == ids(
        dense.max_marginal_relevance_search_by_vector(vector, k=2, fetch_k=6)
    )


def test_lc_bad_options():
    with pytest.raises(ValueError, match="'dense', 'sparse', 'hybrid'"):
        lc_store("bm25")
    with pytest.raises(ValueError, match="fusion"):
        lc_store("hybrid", fusion="max")
    with pytest.raises(ValueError, match="alpha"):
        lc_store("hybrid", hybrid_alpha=1.5)
    with pytest.raises(TypeError, match="alpha"):
        lc_store("sparse").similarity_search(QUERY, alpha=0.3)  # hybrid-only option
    with pytest.raises(TypeError, match="n_probe"):
        lc_store("sparse").similarity_search(QUERY, n_probe=3)


def test_lc_persistence_keeps_the_mode(tmp_path):
    store = lc_store("hybrid", hybrid_alpha=0.25, fusion="rrf")
    store.save_local(tmp_path)
    with LCStore.load_local(tmp_path, LookupEmbeddings()) as loaded:
        assert (loaded.retrieval_mode, loaded.hybrid_alpha, loaded.fusion) == (RetrievalMode.HYBRID, 0.25, "rrf")
        assert loaded.similarity_search_with_score(QUERY, k=4) == store.similarity_search_with_score(QUERY, k=4)
    with LCStore.load_local(tmp_path, LookupEmbeddings(), retrieval_mode="sparse") as loaded:
        assert loaded.retrieval_mode == RetrievalMode.SPARSE and ids(loaded.similarity_search(QUERY)) == TEXT_ORDER
    persistent = LCStore.from_texts(
        TEXTS, LookupEmbeddings(), METAS, ids=IDS, persist_directory=tmp_path / "p", retrieval_mode="sparse"
    )
    persistent.add_documents([LCDocument(page_content="E4021 again", id="again")])
    assert ids(persistent.similarity_search("E4021", k=3))[0] == "again"
    persistent.close()


# ----------------------------------------------------------------------------------------------------------
# LlamaIndex
# ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def li_store():
    nodes = [TextNode(id_=i, text=t, metadata=dict(m), embedding=_vector(t)) for i, (t, m) in CORPUS.items()]
    store = LIStore(metric="ip")
    store.add(nodes)
    yield store
    store.close()


def li_query(store: LIStore, mode: str, **kwargs) -> tuple[list[str], list[float]]:
    args = {"query_embedding": _vector(QUERY), "query_str": QUERY, "similarity_top_k": 6, "mode": mode, **kwargs}
    res = store.query(VectorStoreQuery(**args))
    assert [n.node_id for n in res.nodes] == res.ids
    return res.ids, res.similarities


def test_li_each_mode_on_the_rare_code(li_store):
    dense, _ = li_query(li_store, "default", similarity_top_k=2)
    assert set(dense).isdisjoint(TEXT_ORDER)
    for mode in ("text_search", "sparse", VectorStoreQueryMode.SPARSE):
        found, sims = li_query(li_store, mode)
        assert found == TEXT_ORDER and sims[0] > sims[1] > 0
    assert li_query(li_store, "sparse", sparse_top_k=1)[0] == ["pay"]
    for fusion in ALL_FUSIONS:
        res = li_store.query(
            VectorStoreQuery(query_embedding=_vector(QUERY), query_str=QUERY, similarity_top_k=3, mode="hybrid"),
            fusion=fusion,
        )
        assert "pay" in res.ids and "sky" in res.ids and len(res.ids) == 3
        assert res.similarities == sorted(res.similarities, reverse=True)
    assert len(li_query(li_store, "hybrid", hybrid_top_k=2)[0]) == 2


def test_li_alpha_extremes_match_the_single_legs(li_store):
    dense = li_query(li_store, "default")
    assert li_query(li_store, "hybrid", alpha=1.0) == dense and dense[0] == DENSE_ORDER
    assert li_query(li_store, "hybrid", alpha=0.0)[0] == li_query(li_store, "text_search")[0] == TEXT_ORDER
    assert li_query(li_store, "hybrid", query_str="?!")[0] == DENSE_ORDER  # no words: dense


@pytest.mark.parametrize("mode", ["text_search", "hybrid"])
def test_li_filters_doc_ids_node_ids_in_text_modes(li_store, mode):
    ops = MetadataFilters(filters=[MetadataFilter(key="team", value="ops")])
    found, _ = li_query(li_store, mode, filters=ops)
    assert found[0] == "inv" and all(CORPUS[i][1]["team"] == "ops" for i in found)
    recent = MetadataFilters(filters=[MetadataFilter(key="year", operator=FilterOperator.GTE, value=2024)])
    assert li_query(li_store, mode, filters=recent)[0] == ["pay"]
    assert li_query(li_store, mode, node_ids=["inv", "grass"])[0][0] == "inv"
    assert set(li_query(li_store, mode, node_ids=["inv", "grass"])[0]) <= {"inv", "grass"}
    assert li_query(li_store, mode, node_ids=["inv"], similarity_top_k=1, sparse_top_k=1)[0] == ["inv"]
    assert li_query(li_store, mode, doc_ids=["nobody"])[0] == []


def test_li_index_end_to_end(tmp_path):
    docs = [Document(id_=f"doc-{i}", text=t, metadata=dict(m)) for i, (t, m) in CORPUS.items()]
    store = LIStore(tmp_path / "coll")
    embed = LookupMockEmbedding(embed_dim=DIM)
    index = VectorStoreIndex.from_documents(
        docs, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed
    )

    def refs(retriever) -> list[str]:
        return [n.node.ref_doc_id for n in retriever.retrieve(QUERY)]

    assert set(refs(index.as_retriever(similarity_top_k=2))).isdisjoint({"doc-pay", "doc-inv"})
    assert refs(index.as_retriever(similarity_top_k=2, vector_store_query_mode="text_search")) == [
        "doc-pay",
        "doc-inv",
    ]
    hybrid = index.as_retriever(similarity_top_k=3, vector_store_query_mode="hybrid", alpha=0.5)
    got = hybrid.retrieve(QUERY)
    assert "doc-pay" in [n.node.ref_doc_id for n in got] and all(n.score is not None for n in got)
    assert [n.node.ref_doc_id for n in asyncio.run(hybrid.aretrieve(QUERY))] == [n.node.ref_doc_id for n in got]
    dense_only = index.as_retriever(similarity_top_k=6, vector_store_query_mode="hybrid", alpha=1.0)
    assert refs(dense_only) == refs(index.as_retriever(similarity_top_k=6))
    ops = MetadataFilters(filters=[MetadataFilter(key="team", value="ops")])
    filtered = index.as_retriever(similarity_top_k=3, vector_store_query_mode="hybrid", filters=ops)
    assert {n.node.metadata["team"] for n in filtered.retrieve(QUERY)} == {"ops"}

    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=2, vector_store_query_mode="hybrid", alpha=0.3)
    response = engine.query(QUERY)
    assert "doc-pay" in [n.node.ref_doc_id for n in response.source_nodes]
    sparse_engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=1, vector_store_query_mode="sparse")
    response = sparse_engine.query(QUERY)
    assert [n.node.ref_doc_id for n in response.source_nodes] == ["doc-pay"] and "E4021" in str(response)
    store.close()


def test_li_fusion_option_and_persistence(tmp_path):
    with pytest.raises(ValueError, match="fusion"):
        LIStore(fusion="max")
    store = LIStore(fusion="rrf")
    store.add([TextNode(id_=i, text=t, metadata=dict(m), embedding=_vector(t)) for i, (t, m) in CORPUS.items()])
    rrf = li_query(store, "hybrid")
    assert rrf[1][0] < 2 / 61 + 1e-9  # rrf scores
    store.persist(str(tmp_path / "default__vector_store.json"))
    store.close()
    with LIStore.from_persist_dir(tmp_path) as loaded:
        assert loaded.fusion == "rrf" and li_query(loaded, "hybrid") == rrf
