"""Several named collections in one directory (issue 17): ``Collection(path, name=...)``, listing, dropping,
per-collection settings and writer locks, and ``collection_name=`` in both adapters."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

from spann_vectorstore import Collection, CollectionLockedError
from spann_vectorstore.collection import store_directory


def _vecs(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_named_collections_are_separate_stores_with_their_own_settings(tmp_path):
    root = Collection(tmp_path, dim=4)
    a = Collection(tmp_path, name="alpha", metric="l2", bits=2)
    b = Collection(tmp_path, name="beta.v2", metric="cosine")
    root.add(_vecs(2, 4), ["r0", "r1"], ids=["r0", "r1"])
    a.add(_vecs(3, 8, 1), ["a0", "a1", "a2"], ids=["x", "y", "z"])
    b.add(_vecs(5, 16, 2), [f"b{i}" for i in range(5)], ids=[f"x{i}" for i in range(5)])
    assert a.path == tmp_path / "collections" / "alpha" and a.name == "alpha"
    assert (root.dim, a.dim, b.dim) == (4, 8, 16)
    assert (root.metric, a.metric, b.metric) == ("ip", "l2", "cosine")
    assert a.stats()["bits"] == 2
    assert (len(root), len(a), len(b)) == (2, 3, 5)
    assert Collection.list_collections(tmp_path) == ["alpha", "beta.v2"]  # the root store is not listed
    for c in (root, a, b):
        c.close()
    with Collection.open(tmp_path, name="alpha") as again:  # settings come back from its own store
        assert (again.metric, again.dim, again.stats()["bits"], len(again)) == ("l2", 8, 2, 3)
        assert [h.id for h in again.search(_vecs(3, 8, 1)[0], 1)] == ["x"]
    with Collection.open(tmp_path) as r:
        assert len(r) == 2
    with pytest.raises(ValueError, match="created with metric"):
        Collection(tmp_path, name="alpha", metric="cosine")
    with pytest.raises(FileNotFoundError, match="no collection named 'gamma'"):
        Collection.open(tmp_path, name="gamma")


def test_drop_collection_refuses_while_open_and_removes_files(tmp_path):
    a = Collection(tmp_path, name="a")
    a.add(_vecs(2, 4), ["x", "y"])
    Collection(tmp_path, name="b").close()
    with pytest.raises(CollectionLockedError):
        Collection.drop_collection(tmp_path, "a")
    a.close()
    Collection.drop_collection(tmp_path, "a")
    assert Collection.list_collections(tmp_path) == ["b"]
    assert not (tmp_path / "collections" / "a").exists()
    assert not [p for p in (tmp_path / "collections").iterdir() if p.name.startswith(".dropped")]
    with pytest.raises(FileNotFoundError):
        Collection.drop_collection(tmp_path, "a")
    with pytest.raises(ValueError, match="needs a collection name"):
        Collection.drop_collection(tmp_path, None)
    with Collection(tmp_path, name="a") as fresh:  # the name can be used again, empty
        assert len(fresh) == 0 and fresh.dim is None
    assert Collection.list_collections(tmp_path / "nowhere") == []


@pytest.mark.parametrize(
    "bad, match",
    [
        ("", "1-63"),
        ("x" * 64, "1-63"),
        (".hidden", "invalid"),
        ("a/b", "invalid"),
        ("..", "invalid"),
        ("-x", "invalid"),
        ("a b", "invalid"),
        ("é", "invalid"),
        (3, "must be a string"),
    ],
)
def test_invalid_names_raise_naming_the_problem(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        Collection(tmp_path, name=bad)
    with pytest.raises(ValueError, match=match):
        Collection(None, name=bad)
    assert not (tmp_path / "collections").exists()


def test_in_memory_name_is_a_label():
    c = Collection(name="notes")
    assert c.name == "notes" and c.path is None
    assert store_directory(None, "notes") is None
    c.close()


def _write_named(path: str, name: str, q) -> None:
    try:
        with Collection(path, name=name) as c:
            c.add(_vecs(3, 4, 7), ["p", "q", "r"])
        q.put("ok")
    except Exception as exc:  # pragma: no cover - reported to the parent
        q.put(f"{type(exc).__name__}: {exc}")


def test_lock_is_per_collection_store(tmp_path):
    """A process holds the writer lock of one named collection; another process writes a different one in the
    same directory, and cannot open the held one."""
    held = Collection(tmp_path, name="held")
    ctx = mp.get_context("spawn")
    for name, expect in (("other", "ok"), ("held", "CollectionLockedError")):
        q = ctx.Queue()
        p = ctx.Process(target=_write_named, args=(str(tmp_path), name, q))
        p.start()
        p.join(120)
        assert q.get(timeout=5).startswith(expect)
    held.close()
    with Collection.open(tmp_path, name="other") as c:
        assert len(c) == 3


def test_recover_a_named_collection(tmp_path):
    with Collection(tmp_path, name="n") as c:
        c.add(_vecs(3, 4), ["a", "b", "c"])
    assert Collection.recover(tmp_path, name="n")["action"] == "none"


# ------------------------------------------------------------------------------------------------------------
# adapters
# ------------------------------------------------------------------------------------------------------------
def test_langchain_collection_name(tmp_path):
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from langchain_spann import SPANNVectorStore

    one = SPANNVectorStore(
        DeterministicFakeEmbedding(size=8), persist_directory=tmp_path, collection_name="one", metric="cosine"
    )
    two = SPANNVectorStore(
        DeterministicFakeEmbedding(size=16), persist_directory=tmp_path, collection_name="two", metric="l2"
    )
    one.add_texts(["apple", "pear"], ids=["a", "p"])
    two.add_texts(["sky"], ids=["s"])
    assert one.collection_name == "one" and one.collection.path == tmp_path / "collections" / "one"
    assert [d.id for d in one.similarity_search("apple", k=5)] == ["a", "p"]
    assert [d.id for d in two.similarity_search("sky", k=5)] == ["s"]
    assert Collection.list_collections(tmp_path) == ["one", "two"]
    one.close()
    reopened = SPANNVectorStore(
        DeterministicFakeEmbedding(size=8),
        persist_directory=tmp_path,
        collection_name="one",
        create_collection_if_not_exists=False,
    )
    assert reopened.metric == "cosine" and len(reopened.get()["ids"]) == 2
    with pytest.raises(ValueError, match="does not exist"):
        SPANNVectorStore(
            DeterministicFakeEmbedding(size=8),
            persist_directory=tmp_path,
            collection_name="three",
            create_collection_if_not_exists=False,
        )
    assert not (tmp_path / "collections" / "three").exists()
    reopened.delete_collection()  # a named collection is dropped with its files (Chroma's delete_collection)
    assert Collection.list_collections(tmp_path) == ["two"]
    with pytest.raises(ValueError, match="either collection= or options"):
        SPANNVectorStore(DeterministicFakeEmbedding(size=8), collection=two.collection, collection_name="x")
    two.close()


def test_langchain_from_texts_with_collection_name(tmp_path):
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from langchain_spann import SPANNVectorStore

    with SPANNVectorStore.from_texts(
        ["x", "y"], DeterministicFakeEmbedding(size=8), collection_name="c", persist_directory=tmp_path, metric="cosine"
    ) as store:
        assert store.collection.count() == 2
    assert Collection.list_collections(tmp_path) == ["c"]


def test_llama_index_collection_name(tmp_path):
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.types import VectorStoreQuery
    from llama_index.vector_stores.spann import SPANNVectorStore

    a = SPANNVectorStore(tmp_path, collection_name="docs", metric="l2")
    b = SPANNVectorStore(tmp_path, collection_name="faq")
    a.add([TextNode(id_="n1", text="one", embedding=[1.0, 0.0, 0.0])])
    b.add([TextNode(id_="m1", text="uno", embedding=[0.6, 0.8])])
    assert a.collection_name == "docs" and a.persist_dir == str(tmp_path / "collections" / "docs")
    assert a.query(VectorStoreQuery(query_embedding=[1.0, 0.0, 0.0], similarity_top_k=3)).ids == ["n1"]
    assert b.query(VectorStoreQuery(query_embedding=[0.6, 0.8], similarity_top_k=3)).ids == ["m1"]
    assert Collection.list_collections(tmp_path) == ["docs", "faq"]
    # persist next to its directory: the manifest names the collection, reloading opens it in place
    a.persist(str(tmp_path / "default__vector_store.json"))
    a.close()
    again = SPANNVectorStore.from_persist_dir(str(tmp_path))
    assert again.collection_name == "docs" and again.metric == "l2"
    assert again.query(VectorStoreQuery(query_embedding=[1.0, 0.0, 0.0], similarity_top_k=3)).ids == ["n1"]
    again.close()
    b.close()
    faq = SPANNVectorStore.from_persist_path(str(tmp_path), collection_name="faq")
    assert faq.collection.count() == 1
    faq.close()
    with pytest.raises(FileNotFoundError, match="named 'nope'"):
        SPANNVectorStore.from_persist_path(str(tmp_path), collection_name="nope")
