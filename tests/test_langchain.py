"""SPANNVectorStore (langchain_spann): ids and upserts, batching, filters, MMR, relevance scores per metric,
async, persistence across processes, save_local/load_local, retriever in an LCEL chain, indexing API, bad input.

The standard langchain-tests suite is wired in ``test_langchain_standard.py``.
"""

from __future__ import annotations

import doctest
import hashlib
import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.indexing import InMemoryRecordManager, aindex, index
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_spann import SPANNVectorStore
from langchain_spann import vectorstores as lc_module

from spann_vectorstore import Collection, FilterError
from spann_vectorstore.protocol import COLLECTION_MEMBERS

ROOT = Path(__file__).resolve().parents[1]


class WordEmbeddings(Embeddings):
    """Bag of words: each word a seeded random vector, a text the normalised sum (texts sharing words are
    close). Records every call so tests can check batching and that async paths await the async methods."""

    def __init__(self, dim: int = 32) -> None:
        self.dim = dim
        self.batches: list[int] = []
        self.abatches: list[int] = []
        self.queries = 0
        self.aqueries = 0

    def vec(self, text: str) -> list[float]:
        v = np.zeros(self.dim)
        for word in text.lower().split():
            seed = int(hashlib.sha256(word.encode()).hexdigest()[:12], 16)
            v += np.random.default_rng(seed).standard_normal(self.dim)
        return (v / (np.linalg.norm(v) or 1.0)).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.batches.append(len(texts))
        return [self.vec(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        self.queries += 1
        return self.vec(text)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        self.abatches.append(len(texts))
        return [self.vec(t) for t in texts]

    async def aembed_query(self, text: str) -> list[float]:
        self.aqueries += 1
        return self.vec(text)


class TableEmbeddings(Embeddings):
    """Fixed vectors by text (for exact scores)."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [list(self.table[t]) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return list(self.table[text])


class PublicOnly:
    """Forwards exactly the public Collection protocol (what a sharded collection also offers), nothing else:
    the adapter must not reach for private attributes."""

    __slots__ = ("_c",)

    def __init__(self, c: Collection) -> None:
        self._c = c

    def __getattr__(self, name: str):
        if name not in COLLECTION_MEMBERS:
            raise AttributeError(name)
        return getattr(self._c, name)


def ids_of(docs) -> list[str]:
    return [d.id for d in docs]


# ----------------------------------------------------------------------------------------------------------
# docs, ids, upserts, batching
# ----------------------------------------------------------------------------------------------------------
def test_class_docstring_examples_run():
    finder = doctest.DocTestFinder()
    tests = [t for t in finder.find(lc_module.SPANNVectorStore, "SPANNVectorStore") if t.examples]
    assert tests, "the class docstring should carry runnable examples"
    runner = doctest.DocTestRunner()
    for t in tests:
        runner.run(t)
    assert runner.failures == 0 and runner.tries >= 10


def test_ids_precedence_upsert_and_documents_untouched():
    store = SPANNVectorStore(WordEmbeddings())
    docs = [
        Document(page_content="red apple", metadata={"n": 1}, id="doc-a"),
        Document(page_content="blue sky", metadata={"n": 2}, id="doc-b"),
        Document(page_content="green grass", metadata={"n": 3}),
    ]
    before = [d.model_copy(deep=True) for d in docs]
    ids = store.add_documents(docs, ids=["x", None, None])
    assert ids[:2] == ["x", "doc-b"] and len(ids[2]) == 36  # ids= first, then Document.id, else a uuid4
    assert docs == before
    assert [d.page_content for d in store.get_by_ids(["doc-b", "nope", "x"])] == ["blue sky", "red apple"]
    # upsert: same id replaces text, metadata and vector
    store.add_texts(["yellow banana"], metadatas=[{"n": 9}], ids=["x"])
    assert store.collection.count() == 3
    assert store.get_by_ids(["x"]) == [Document(id="x", page_content="yellow banana", metadata={"n": 9})]
    assert ids_of(store.similarity_search("yellow banana", k=1)) == ["x"]


def test_from_documents_and_from_texts(tmp_path):
    emb = WordEmbeddings()
    docs = [Document(page_content="alpha", id="a"), Document(page_content="beta")]
    store = SPANNVectorStore.from_documents(docs, emb, metric="cosine")
    assert store.metric == "cosine" and store.embeddings is emb
    assert ids_of(store.get_by_ids(["a"])) == ["a"] and store.collection.count() == 2
    with SPANNVectorStore.from_texts(["one", "two"], emb, ids=["1", "2"], persist_directory=tmp_path / "p") as p:
        assert ids_of(p.similarity_search("two", k=1)) == ["2"]
    with SPANNVectorStore(emb, persist_directory=tmp_path / "p") as p:  # reopened: still there
        assert p.collection.count() == 2


def test_batch_size_embeds_and_writes_in_batches():
    emb = WordEmbeddings()
    store = SPANNVectorStore(emb)
    texts = [f"text number {i}" for i in range(10)]
    store.add_texts(texts, batch_size=3)
    assert emb.batches == [3, 3, 3, 1]
    assert store.collection.count() == 10
    store.add_documents([Document(page_content=t) for t in texts[:5]], batch_size=2)
    assert emb.batches[4:] == [2, 2, 1]


async def test_async_paths_await_the_async_embedder():
    emb = WordEmbeddings()
    store = await SPANNVectorStore.afrom_texts(
        [f"doc {i}" for i in range(5)], emb, ids=[str(i) for i in range(5)], batch_size=2
    )
    assert emb.abatches == [2, 2, 1] and emb.batches == []
    ids = await store.aadd_documents([Document(page_content="hello world", id="h")])
    assert ids == ["h"]
    assert ids_of(await store.asimilarity_search("hello world", k=1)) == ["h"]
    (doc, score), *_ = await store.asimilarity_search_with_score("hello world", k=2)
    assert doc.id == "h" and score == pytest.approx(1.0, abs=1e-5)
    rel = await store.asimilarity_search_with_relevance_scores("hello world", k=1)
    assert rel[0][1] == pytest.approx(1.0, abs=1e-5)
    assert ids_of(await store.asimilarity_search_by_vector(emb.vec("doc 3"), k=1)) == ["3"]
    assert ids_of(await store.amax_marginal_relevance_search("doc 3", k=1)) == ["3"]
    assert await store.adelete(["h", "missing"]) is True
    assert await store.aget_by_ids(["h", "3"]) == [Document(id="3", page_content="doc 3")]
    assert emb.queries == 0 and emb.aqueries == 4 and emb.batches == []


def test_delete_by_ids_and_filter():
    store = SPANNVectorStore(WordEmbeddings())
    store.add_texts(["a", "b", "c", "d"], metadatas=[{"g": 1}, {"g": 1}, {"g": 2}, {}], ids=["a", "b", "c", "d"])
    assert store.delete(["a", "not-there"]) is True
    assert store.delete(["never"]) is True  # missing ids are not an error
    assert store.delete(filter={"g": 1}) is True
    assert sorted(ids_of(store.get_by_ids(["a", "b", "c", "d"]))) == ["c", "d"]
    assert ids_of(store.get_by_ids("c")) == ["c"]  # a single id string is one id, not characters
    with pytest.raises(ValueError, match="clear"):
        store.delete()
    assert store.collection.count() == 2


# ----------------------------------------------------------------------------------------------------------
# filters
# ----------------------------------------------------------------------------------------------------------
FILTER_DOCS = {
    "a": {"source": "a.md", "year": 2020, "tags": ["x", "y"], "author": {"name": "ann"}, "draft": True},
    "b": {"source": "b.md", "year": 2021, "tags": ["y"], "author": {"name": "bob"}},
    "c": {"source": "a.md", "year": 2023, "tags": [], "title": "spann index notes"},
    "d": {"source": "c.md", "year": "2022"},
    "e": {"source": "b.md", "year": 2022.5, "draft": False},
}
FILTER_CASES = [
    ({"source": "a.md"}, "ac"),
    ({"source": {"$eq": "b.md"}}, "be"),
    ({"source": {"$ne": "a.md"}}, "bde"),
    ({"draft": {"$ne": True}}, "bcde"),  # $ne also matches documents without the field
    ({"draft": False}, "e"),
    ({"year": {"$gt": 2021}}, "ce"),  # the string "2022" is not compared with numbers
    ({"year": {"$gte": 2021}}, "bce"),
    ({"year": {"$lt": 2021}}, "a"),
    ({"year": {"$lte": 2021}}, "ab"),
    ({"year": {"$gt": "2021"}}, "d"),
    ({"year": {"$gte": 2021, "$lt": 2023}}, "be"),
    ({"source": {"$in": ["b.md", "c.md"]}}, "bde"),
    ({"source": {"$nin": ["a.md", "b.md"]}}, "d"),
    ({"tags": {"$contains": "y"}}, "ab"),
    ({"title": {"$contains": "index"}}, "c"),
    ({"draft": {"$exists": True}}, "ae"),
    ({"draft": {"$exists": False}}, "bcd"),
    ({"$and": [{"source": "a.md"}, {"year": {"$gt": 2020}}]}, "c"),
    ({"$or": [{"source": "c.md"}, {"year": 2020}]}, "ad"),
    ({"$not": {"source": "a.md"}}, "bde"),
    ({"author.name": "bob"}, "b"),
    ({"source": "a.md", "draft": True}, "a"),
    ({"source": "z.md"}, ""),
    # negations match documents that lack the field
    ({"author.name": {"$nin": ["ann"]}}, "bcde"),
    ({"author.name": {"$ne": "ann"}}, "bcde"),
    ({"$not": {"draft": True}}, "bcde"),
    ({"$not": {"year": {"$lt": 2021}}}, "bcde"),
    ({"$not": {"title": {"$contains": "index"}}}, "abde"),
    ({"$not": {"draft": {"$ne": True}}}, "a"),
    ({"$not": {"author.name": {"$nin": ["bob"]}}}, "b"),
    ({"$not": {"draft": {"$exists": True}}}, "bcd"),
    ({"$not": {"source": {"$in": ["a.md", "b.md"]}}}, "d"),
    ({"$not": {"$and": [{"source": "a.md"}, {"draft": True}]}}, "bcde"),
    ({"$not": {"$or": [{"draft": True}, {"year": {"$gt": 2022}}]}}, "bd"),
    ({"$not": {"$not": {"draft": True}}}, "a"),
    ({"$and": [{"$not": {"draft": True}}, {"source": "b.md"}]}, "be"),
    ({"draft": {"$ne": None}}, "abcde"),  # the core: $ne matches a missing field, also for null
    ({"$not": {"draft": None}}, "abcde"),
]


@pytest.fixture(scope="module")
def filter_store():
    store = SPANNVectorStore(WordEmbeddings(), metric="cosine")
    store.add_texts([f"document {i}" for i in FILTER_DOCS], list(FILTER_DOCS.values()), ids=list(FILTER_DOCS))
    return store


@pytest.mark.parametrize(("flt", "expected"), FILTER_CASES, ids=[json.dumps(f) for f, _ in FILTER_CASES])
def test_filter_operators(filter_store, flt, expected):
    found = filter_store.similarity_search("document", k=10, filter=flt)
    assert sorted(ids_of(found)) == list(expected)
    # MMR and relevance-score search honour the same filter
    mmr = filter_store.max_marginal_relevance_search("document", k=10, fetch_k=10, filter=flt)
    assert sorted(ids_of(mmr)) == list(expected)
    rel = filter_store.similarity_search_with_relevance_scores("document", k=10, filter=flt)
    assert sorted(d.id for d, _ in rel) == list(expected)


CALLABLE_CASES = [
    ({"source": "a.md"}, lambda m: m["source"] == "a.md"),
    ({"draft": {"$ne": True}}, lambda m: m.get("draft") is not True),
    ({"year": {"$gt": 2021}}, lambda m: not isinstance(m["year"], str) and m["year"] > 2021),
    (
        {"$or": [{"source": "c.md"}, {"tags": {"$contains": "x"}}]},
        lambda m: m["source"] == "c.md" or "x" in m.get("tags", []),
    ),
]


@pytest.mark.parametrize(("flt", "pred"), CALLABLE_CASES, ids=[json.dumps(f) for f, _ in CALLABLE_CASES])
def test_callable_filter_agrees_with_dict_filter(filter_store, flt, pred):
    by_callable = filter_store.similarity_search_with_score("document c", k=10, filter=lambda d: pred(d.metadata))
    by_dict = filter_store.similarity_search_with_score("document c", k=10, filter=flt)
    assert [d for d, _ in by_callable] == [d for d, _ in by_dict] and by_dict
    np.testing.assert_allclose([s for _, s in by_callable], [s for _, s in by_dict], rtol=1e-5)


def far_matches_store(**kwargs) -> SPANNVectorStore:
    """300 documents; the 6 with ``i % 50 == 0`` are the farthest from the query ``q`` (= e0)."""
    rng = np.random.default_rng(7)
    table = {"q": [1.0] + [0.0] * 7}
    for i in range(300):
        v = 0.3 * rng.standard_normal(8)
        v[0] += -3.0 if i % 50 == 0 else 3.0
        table[f"t{i}"] = (v / np.linalg.norm(v)).tolist()
    store = SPANNVectorStore(TableEmbeddings(table), **kwargs)
    store.add_texts([f"t{i}" for i in range(300)], [{"i": i} for i in range(300)], ids=[str(i) for i in range(300)])
    return store


@pytest.mark.parametrize("kwargs", [{}, {"index_threshold": 64, "bits": 4}], ids=["exact", "indexed"])
async def test_callable_filter_returns_k_whenever_k_match(kwargs):
    store = far_matches_store(**kwargs)
    seen: list[Document] = []

    def rare(doc: Document) -> bool:
        seen.append(doc)
        return doc.metadata["i"] % 50 == 0

    matching = {"0", "50", "100", "150", "200", "250"}
    assert set(ids_of(store.similarity_search("q", k=6, filter=rare))) == matching
    assert set(ids_of(store.similarity_search("q", k=10, filter=rare))) == matching  # exhausted: all 6
    assert isinstance(seen[0], Document) and seen[0].id is not None and "i" in seen[0].metadata
    top3 = store.similarity_search_with_score("q", k=3, filter=rare)
    assert len(top3) == 3 and {d.id for d, _ in top3} <= matching
    dict_top3 = store.similarity_search_with_score("q", k=3, filter={"i": {"$in": [0, 50, 100, 150, 200, 250]}})
    assert [d.id for d, _ in top3] == [d.id for d, _ in dict_top3]
    assert [s for _, s in top3] == sorted((s for _, s in top3), reverse=True)
    assert set(ids_of(await store.asimilarity_search("q", k=6, filter=rare))) == matching
    assert set(ids_of(store.max_marginal_relevance_search("q", k=6, fetch_k=6, filter=rare))) == matching
    assert store.similarity_search("q", k=4, filter=lambda d: False) == []


# query q = e0; three copies of one vector close to q, one a bit farther from q but unlike the copies, one far
MMR_TABLE = {
    "q": [1.0, 0.0, 0.0],
    "dup": [0.9, 0.43589, 0.0],
    "near": [0.8, -0.6, 0.0],
    "far": [0.0, 0.0, 1.0],
}


def mmr_store() -> SPANNVectorStore:
    store = SPANNVectorStore(TableEmbeddings(MMR_TABLE))
    texts = ["dup", "dup", "dup", "near", "far", "dup"]
    metas = [{"source": "a.md"}] * 5 + [{"source": "b.md"}]
    store.add_texts(texts, metas, ids=["dup0", "dup1", "dup2", "near", "far", "b"])
    return store


async def test_mmr_prefers_diverse_results():
    store = mmr_store()
    plain = ids_of(store.similarity_search("q", k=2))
    assert set(plain) <= {"dup0", "dup1", "dup2", "b"}  # plain similarity: two copies of the same vector
    # lambda 0.5: a copy scores 0.5*0.9 - 0.5*1 = -0.05, "near" 0.5*0.8 - 0.5*0.46 = 0.17, "far" 0
    diverse = ids_of(store.max_marginal_relevance_search("q", k=2, fetch_k=6))
    assert diverse[0] in {"dup0", "dup1", "dup2", "b"} and diverse[1] == "near"
    assert ids_of(await store.amax_marginal_relevance_search("q", k=2, fetch_k=6)) == diverse
    # lambda 0.1 weighs diversity more: "far" (0.1*0 - 0.9*0) beats "near" (0.08 - 0.9*0.46)
    assert ids_of(store.max_marginal_relevance_search("q", k=2, fetch_k=6, lambda_mult=0.1))[1] == "far"
    same = store.max_marginal_relevance_search("q", k=4, fetch_k=6, lambda_mult=1.0)
    assert set(ids_of(same)) == {"dup0", "dup1", "dup2", "b"}
    assert len(store.max_marginal_relevance_search("q", k=6, fetch_k=2)) == 6  # fetch_k below k is raised to k
    # candidates come from fetch_k nearest: with fetch_k=4 only copies are candidates
    assert set(ids_of(store.max_marginal_relevance_search("q", k=2, fetch_k=4))) <= {"dup0", "dup1", "dup2", "b"}


def test_retriever_mmr_with_filter():
    store = mmr_store()
    retriever = store.as_retriever(search_type="mmr", search_kwargs={"k": 2, "filter": {"source": "b.md"}})
    assert ids_of(retriever.invoke("q")) == ["b"]
    retriever = store.as_retriever(
        search_type="mmr", search_kwargs={"k": 2, "fetch_k": 6, "filter": {"source": "a.md"}}
    )
    found = ids_of(retriever.invoke("q"))
    assert found[0] in {"dup0", "dup1", "dup2"} and found[1] == "near"
    found = ids_of(store.max_marginal_relevance_search("q", k=2, filter=lambda d: d.id != "near"))
    assert found[0] in {"dup0", "dup1", "dup2", "b"} and found[1] == "far"


UNIT = {"x": [1.0, 0.0, 0.0], "-x": [-1.0, 0.0, 0.0], "y": [0.0, 1.0, 0.0], "xy": [0.6, 0.8, 0.0]}


@pytest.mark.parametrize(
    ("metric", "native"),
    [("ip", [1.0, 0.6, 0.0, -1.0]), ("cosine", [1.0, 0.6, 0.0, -1.0]), ("l2", [0.0, 0.8, 2.0, 4.0])],
)
def test_relevance_scores_per_metric(metric, native):
    store = SPANNVectorStore(TableEmbeddings(UNIT), metric=metric)
    store.add_texts(list(UNIT), ids=list(UNIT))
    scored = store.similarity_search_with_score("x", k=4)
    assert [d.id for d, _ in scored] == ["x", "xy", "y", "-x"]
    np.testing.assert_allclose([s for _, s in scored], native, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the base class warns about scores outside [0, 1]
        rel = store.similarity_search_with_relevance_scores("x", k=4)
    np.testing.assert_allclose([s for _, s in rel], [1.0, 0.8, 0.5, 0.0], atol=1e-5)
    kept = store.similarity_search_with_relevance_scores("x", k=4, score_threshold=0.6)
    assert [d.id for d, _ in kept] == ["x", "xy"]
    retriever = store.as_retriever(search_type="similarity_score_threshold", search_kwargs={"score_threshold": 0.7})
    assert ids_of(retriever.invoke("x")) == ["x", "xy"]


def test_relevance_clipped_and_cosine_ignores_scale():
    table = {"q": [1.0, 0.0], "2q": [2.0, 0.0], "far": [-3.0, 0.0]}
    for metric in ("cosine", "l2"):
        store = SPANNVectorStore(TableEmbeddings(table), metric=metric)
        store.add_texts(["2q", "far"], ids=["2q", "far"])
        rel = dict((d.id, s) for d, s in store.similarity_search_with_relevance_scores("q", k=2))
        assert all(0.0 <= s <= 1.0 for s in rel.values()) and rel["far"] == 0.0
        assert rel["2q"] == (pytest.approx(1.0) if metric == "cosine" else pytest.approx(0.75))
    store = SPANNVectorStore(TableEmbeddings(table), metric="ip")
    with pytest.warns(UserWarning, match="normalised"):
        store.add_texts(["2q"])


# ----------------------------------------------------------------------------------------------------------
# persistence
# ----------------------------------------------------------------------------------------------------------
CHILD = textwrap.dedent(
    """
    import json, sys
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from langchain_spann import SPANNVectorStore

    emb = DeterministicFakeEmbedding(size=8)
    out = {}
    with SPANNVectorStore(emb, persist_directory=sys.argv[1], metric="cosine") as store:
        out["count"] = store.collection.count()
        out["top"] = [d.id for d in store.similarity_search("beta", k=1)]
        out["filtered"] = [d.id for d in store.similarity_search("beta", k=5, filter={"n": {"$gte": 2}})]
        store.add_texts(["delta"], metadatas=[{"n": 4}], ids=["d"])
        store.delete(["a"])
    loaded = SPANNVectorStore.load_local(sys.argv[2], emb, index_name="kb")
    out["loaded_metric"] = loaded.metric
    out["loaded"] = [(d.id, d.page_content, d.metadata) for d in loaded.similarity_search("gamma", k=1)]
    loaded.close()
    print(json.dumps(out))
    """
)


def test_persistence_and_save_local_across_processes(tmp_path):
    emb = DeterministicFakeEmbedding(size=8)
    texts, metas, ids = ["alpha", "beta", "gamma"], [{"n": 1}, {"n": 2}, {"n": 3}], ["a", "b", "c"]
    with SPANNVectorStore(emb, persist_directory=tmp_path / "db", metric="cosine") as store:
        store.add_texts(texts, metas, ids=ids)
    memory = SPANNVectorStore.from_texts(texts, emb, metas, ids=ids, metric="l2")
    memory.save_local(tmp_path / "saved", index_name="kb")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "db"), str(tmp_path / "saved")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {
        "count": 3,
        "top": ["b"],
        "filtered": ["b", "c"],
        "loaded_metric": "l2",
        "loaded": [["c", "gamma", {"n": 3}]],
    }
    with SPANNVectorStore(emb, persist_directory=tmp_path / "db") as store:  # the child's writes are durable
        assert store.metric == "cosine"
        assert ids_of(store.get_by_ids(["a", "b", "d"])) == ["b", "d"]
    config = json.loads((tmp_path / "saved" / "kb.json").read_text())
    assert config["format"] == "langchain_spann.SPANNVectorStore" and config["dim"] == 8
    files = [p for p in (tmp_path / "saved").rglob("*") if p.is_file()]
    assert files and not [p for p in files if p.suffix in {".pkl", ".pickle"} or p.read_bytes()[:1] == b"\x80"]


def test_save_local_overwrites_and_reuses_own_directory(tmp_path):
    emb = WordEmbeddings()
    store = SPANNVectorStore(emb, metric="cosine", bits=2)
    store.add_texts(["one", "two", "three"], ids=["1", "2", "3"])
    store.save_local(tmp_path)
    store.delete(["1", "2"])
    store.save_local(tmp_path)  # replaces the earlier save
    loaded = SPANNVectorStore.load_local(tmp_path, emb)
    assert loaded.collection.count() == 1 and loaded.metric == "cosine"
    loaded.add_texts(["four"], ids=["4"])  # a loaded store persists to the saved collection
    loaded.save_local(tmp_path)  # its own directory: only the JSON is rewritten
    loaded.close()
    again = SPANNVectorStore.load_local(tmp_path, emb)
    assert sorted(ids_of(again.get_by_ids(["1", "3", "4"]))) == ["3", "4"]
    again.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index", "index.json"]
    # a wrapped collection (public protocol only) can be saved too
    wrapped = SPANNVectorStore(emb, collection=PublicOnly(Collection(metric="l2")))
    wrapped.add_texts(["solo"], ids=["s"])
    wrapped.save_local(tmp_path / "w")
    with SPANNVectorStore.load_local(tmp_path / "w", emb) as w:
        assert w.metric == "l2" and ids_of(w.similarity_search("solo", k=1)) == ["s"]


def test_load_local_errors(tmp_path):
    emb = WordEmbeddings()
    with pytest.raises(FileNotFoundError):
        SPANNVectorStore.load_local(tmp_path, emb)
    (tmp_path / "index.json").write_text(json.dumps({"format": "faiss"}))
    with pytest.raises(ValueError, match="save_local"):
        SPANNVectorStore.load_local(tmp_path, emb)
    (tmp_path / "index.json").write_text("not json")
    with pytest.raises(ValueError, match="JSON"):
        SPANNVectorStore.load_local(tmp_path, emb)
    with pytest.raises(TypeError, match="never unpickles"):
        SPANNVectorStore.load_local(tmp_path, emb, allow_dangerous_deserialization=True)
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError):
        SPANNVectorStore(emb).save_local(tmp_path)
    assert (tmp_path / "index" / "mine.txt").read_text() == "user data"


# ----------------------------------------------------------------------------------------------------------
# LCEL chain, indexing API, the public collection protocol
# ----------------------------------------------------------------------------------------------------------
async def test_retriever_in_lcel_chain():
    store = SPANNVectorStore(WordEmbeddings())
    store.add_texts(
        ["the spann index probes postings", "bananas are yellow", "postings hold quantized codes"],
        metadatas=[{"topic": "ann"}, {"topic": "fruit"}, {"topic": "ann"}],
    )
    retriever = store.as_retriever(search_kwargs={"k": 1, "filter": {"topic": "ann"}})
    prompt = ChatPromptTemplate.from_template("Context: {context}\nQuestion: {question}")
    chain = (
        {
            "context": retriever | RunnableLambda(lambda docs: " | ".join(d.page_content for d in docs)),
            "question": RunnablePassthrough(),
        }
        | prompt
        | RunnableLambda(lambda p: p.to_string())
    )
    out = chain.invoke("how does the spann index search")
    assert "Context: the spann index probes postings\n" in out and "bananas" not in out
    outs = await chain.abatch(["quantized codes", "yellow bananas"])
    assert "postings hold quantized codes" in outs[0]
    assert "bananas" not in outs[1].split("Question:")[0]  # the filter keeps fruit out even for a fruit question


async def test_indexing_api_incremental_and_full():
    store = SPANNVectorStore(WordEmbeddings())
    manager = InMemoryRecordManager(namespace="test")
    manager.create_schema()
    docs = [
        Document(page_content="first chunk", metadata={"source": "a.md"}),
        Document(page_content="second chunk", metadata={"source": "a.md"}),
        Document(page_content="other file", metadata={"source": "b.md"}),
    ]
    kw = {"cleanup": "incremental", "source_id_key": "source", "key_encoder": "sha256"}
    r1 = index(docs, manager, store, **kw)
    assert (r1["num_added"], r1["num_skipped"], r1["num_deleted"]) == (3, 0, 0)
    assert index(docs, manager, store, **kw)["num_skipped"] == 3
    changed = [Document(page_content="first chunk, edited", metadata={"source": "a.md"}), docs[1]]
    r3 = index(changed, manager, store, **kw)
    assert (r3["num_added"], r3["num_skipped"], r3["num_deleted"]) == (1, 1, 1)
    assert store.collection.count() == 3
    assert ids_of(store.similarity_search("first chunk edited", k=1)) == ids_of(
        store.similarity_search("first chunk, edited", k=1)
    )
    r4 = await aindex(changed[:1], manager, store, cleanup="full", key_encoder="sha256")
    assert (r4["num_skipped"], r4["num_deleted"]) == (1, 2)
    assert [d.page_content for d in store.similarity_search("anything", k=10)] == ["first chunk, edited"]


def test_public_collection_protocol_only():
    store = SPANNVectorStore(WordEmbeddings(), collection=PublicOnly(Collection(metric="cosine")))
    store.add_texts(["red apple", "green apple", "blue sky"], [{"c": "r"}, {"c": "g"}, {"c": "b"}], ids=list("rgb"))
    assert ids_of(store.similarity_search("apple", k=1, filter={"c": "g"})) == ["g"]
    assert ids_of(store.similarity_search("apple", k=1, filter=lambda d: d.metadata["c"] == "b")) == ["b"]
    assert len(store.max_marginal_relevance_search("apple", k=2)) == 2
    store.delete(["r"])
    assert ids_of(store.get_by_ids(["r", "g"])) == ["g"]
    store.close()  # the collection was passed in: it stays open, the caller's to close (issue 16)
    assert ids_of(store.similarity_search("apple", k=1, filter={"c": "g"})) == ["g"]
    store.collection.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.similarity_search("apple")


# ----------------------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------------------
def test_wrong_dimension_raises_and_leaves_store_unchanged():
    store = SPANNVectorStore(WordEmbeddings(dim=16))
    store.add_texts(["kept one", "kept two"], ids=["k1", "k2"])
    other = SPANNVectorStore(WordEmbeddings(dim=24), collection=store.collection)
    with pytest.raises(ValueError, match=r"dimension 24.*16-dimensional"):
        other.add_texts(["intruder"], ids=["k1"])
    with pytest.raises(ValueError, match="dimension 24"):
        other.similarity_search("kept one")
    with pytest.raises(ValueError, match="dimension"):
        store.similarity_search_by_vector([0.1] * 5)
    assert store.collection.count() == 2
    assert [d.page_content for d in store.get_by_ids(["k1", "k2"])] == ["kept one", "kept two"]


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda s: s.add_texts(["a", "b"], metadatas=[{}]), ValueError, "1 metadatas for 2 texts"),
        (lambda s: s.add_texts(["a"], ids=["1", "2"]), ValueError, "2 ids for 1 texts"),
        (lambda s: s.add_texts(["a", "b"], ids=["1", "1"]), ValueError, "duplicate"),
        (lambda s: s.add_texts("abc"), TypeError, "single string"),
        (lambda s: s.add_texts([1]), TypeError, "strings"),
        (lambda s: s.add_texts(["a"], ids=[5]), TypeError, "ids must be strings"),
        (lambda s: s.add_texts(["a"], metadatas=["x"]), TypeError, "dict"),
        (lambda s: s.add_texts(["a"], metadatas=[{"f": object()}]), ValueError, "JSON"),
        (lambda s: s.add_texts(["a"], batch_size=0), ValueError, "batch_size"),
        (lambda s: s.add_texts(["a"], colour="red"), TypeError, "colour"),
        (lambda s: s.add_documents([Document(page_content="a")], ids=["1", "2"]), ValueError, "2 ids"),
        (lambda s: s.similarity_search("q", k=0), ValueError, "k must be"),
        (lambda s: s.similarity_search("q", filter={"f": {"$regex": "x"}}), FilterError, "unknown filter"),
        (lambda s: s.similarity_search("q", filter=["f"]), TypeError, "filter must be"),
        (lambda s: s.similarity_search("q", filter={"$not": "f"}), FilterError, "must be a dict"),
        (lambda s: s.similarity_search("q", filter={"$and": []}), FilterError, "non-empty list"),
        (lambda s: s.similarity_search("q", filter={"f": {"$in": 3}}), FilterError, "needs a list"),
        (lambda s: s.delete(filter={"$nope": 1}), FilterError, "unknown filter operator"),
        (lambda s: s.similarity_search("q", fetch_k=3), TypeError, "fetch_k"),
        (lambda s: s.max_marginal_relevance_search("q", lambda_mult=2), ValueError, "lambda_mult"),
        (lambda s: s.delete(filter=lambda d: True), TypeError, "filter dict"),
    ],
)
def test_bad_input_raises_and_changes_nothing(call, exc, match):
    store = SPANNVectorStore(WordEmbeddings())
    store.add_texts(["existing"], ids=["e"])
    with pytest.raises(exc, match=match):
        call(store)
    assert store.collection.count() == 1 and ids_of(store.similarity_search("existing", k=5)) == ["e"]


def test_bad_embedder_output_and_constructor_arguments(tmp_path):
    class Broken(WordEmbeddings):
        def embed_documents(self, texts):
            return [self.vec(t) for t in texts][:-1]

    class NaNs(WordEmbeddings):
        def embed_documents(self, texts):
            return [[float("nan")] * self.dim for _ in texts]

    with pytest.raises(ValueError, match="shape"):
        SPANNVectorStore(Broken()).add_texts(["a", "b"])
    store = SPANNVectorStore(NaNs())
    with pytest.raises(ValueError, match="NaN"):
        store.add_texts(["a"])
    assert store.collection.count() == 0
    with pytest.raises(TypeError, match="Embeddings"):
        SPANNVectorStore(lambda text: [0.0])
    with pytest.raises(ValueError, match="metric"):
        SPANNVectorStore(WordEmbeddings(), metric="hamming")
    with pytest.raises(ValueError, match="not both"):
        SPANNVectorStore(WordEmbeddings(), collection=Collection(), persist_directory=tmp_path)
    with pytest.raises(ValueError, match="uses 'ip'"):
        SPANNVectorStore(WordEmbeddings(), collection=Collection(), metric="l2")
    with SPANNVectorStore(WordEmbeddings(), persist_directory=tmp_path / "l2", metric="l2"):
        pass
    with pytest.raises(ValueError, match="metric"):  # the core refuses to reopen with another metric
        SPANNVectorStore(WordEmbeddings(), persist_directory=tmp_path / "l2", metric="cosine")
    assert SPANNVectorStore(WordEmbeddings()).add_texts([]) == []
