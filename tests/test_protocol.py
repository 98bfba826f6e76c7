"""``CollectionLike`` (Collection and ShardedCollection satisfy it, signatures included) and
``Collection.copy_to`` (settings kept, atomic replacement, refusals), also through both adapters."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from spann_vectorstore import Collection, CollectionLike
from spann_vectorstore.collection import copy_collection
from spann_vectorstore.evaluation import clustered
from spann_vectorstore.protocol import COLLECTION_MEMBERS, check_collection

D = 16


def _protocol_methods() -> list[str]:
    return [n for n in COLLECTION_MEMBERS if inspect.isfunction(getattr(CollectionLike, n))]


def _check_signatures(cls: type) -> None:
    """Every protocol method exists on ``cls`` and takes the protocol's parameters (same name, kind and
    default); ``cls`` may take more, all optional."""
    for name in _protocol_methods():
        assert callable(getattr(cls, name, None)), f"{cls.__name__} lacks {name}()"
        want = inspect.signature(getattr(CollectionLike, name)).parameters
        got = inspect.signature(getattr(cls, name)).parameters
        for p in want.values():
            assert p.name in got, f"{cls.__name__}.{name} lacks parameter {p.name}"
            q = got[p.name]
            assert q.kind == p.kind, f"{cls.__name__}.{name}({p.name}): {q.kind} != {p.kind}"
            assert q.default == p.default, f"{cls.__name__}.{name}({p.name}) default {q.default!r} != {p.default!r}"
        extra = [q for n, q in got.items() if n not in want and q.kind not in (q.VAR_KEYWORD, q.VAR_POSITIONAL)]
        assert all(q.default is not q.empty for q in extra), f"{cls.__name__}.{name}: required extras {extra}"


def test_protocol_members():
    assert set(COLLECTION_MEMBERS) >= {"add", "search", "get", "delete", "count", "clear", "close", "dim", "metric"}
    assert {"text_search", "hybrid_search", "stats", "copy_to", "path", "optimize"} <= set(COLLECTION_MEMBERS)


def test_collection_satisfies_the_protocol():
    _check_signatures(Collection)
    with Collection() as col:
        assert isinstance(col, CollectionLike)
        assert check_collection(col) is col


def test_sharded_collection_satisfies_the_protocol():
    pytest.importorskip("ray")
    from spann_vectorstore.distributed import ShardedCollection

    _check_signatures(ShardedCollection)  # isinstance of a live one (Ray actors): see test_distributed


def test_check_collection_names_what_is_missing():
    class Half:
        dim = 3
        metric = "ip"

        def search(self, *a, **kw):
            return []

    with pytest.raises(ValueError, match=r"Collection API.*Half lacks add, clear, close, copy_to"):
        check_collection(Half())
    assert not isinstance(object(), CollectionLike)


# ----------------------------------------------------------------------------------------------------------
# copy_to
# ----------------------------------------------------------------------------------------------------------
def _fill(col: Collection, n: int = 300, seed: int = 0) -> np.ndarray:
    x = clustered(n, D, seed=seed)
    metas = [{"i": i, "even": i % 2 == 0} for i in range(n)]
    col.add(x, [f"text {i}" for i in range(n)], metas, [f"d{i}" for i in range(n)])
    return x


def _same_documents(a: CollectionLike, b: CollectionLike) -> None:
    ha = {h.id: h for h in a.get(include_vectors=True)}
    hb = {h.id: h for h in b.get(include_vectors=True)}
    assert ha.keys() == hb.keys()
    for i, h in ha.items():
        assert (h.text, h.metadata) == (hb[i].text, hb[i].metadata)
        np.testing.assert_array_equal(h.vector, hb[i].vector)


def test_copy_to_keeps_documents_and_settings(tmp_path):
    opts = {"head_ratio": 1 / 50, "replica_count": 4}
    with Collection(metric="cosine", bits=2, n_probe=7, index_threshold=100, index_options=opts) as src:
        x = _fill(src)
        assert src.copy_to(tmp_path / "copy") == tmp_path / "copy"
        with Collection.open(tmp_path / "copy") as dst:
            st = dst.stats()
            assert (st["metric"], st["bits"], st["n_probe"], st["dim"]) == ("cosine", 2, 7, D)
            assert st["index_options"] == opts
            assert st["indexed"]  # index_threshold 100 came along: the copy built its index
            _same_documents(src, dst)
            for got, want in zip(dst.search(x[:20], 5), src.search(x[:20], 5)):
                assert [h.id for h in got][:1] == [h.id for h in want][:1]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary directory left"


def test_copy_to_options_override_and_empty_source(tmp_path):
    with Collection(bits=4) as src:  # no documents, no dimension yet
        src.copy_to(tmp_path / "a", bits=1, n_probe=3)
    with Collection.open(tmp_path / "a") as dst:
        st = dst.stats()
        assert (st["bits"], st["n_probe"], st["count"], st["dim"]) == (1, 3, 0, None)


def test_copy_to_refuses_to_clobber(tmp_path):
    with Collection() as src:
        _fill(src, 20)
        src.copy_to(tmp_path / "c")
        with pytest.raises(FileExistsError, match="overwrite=True"):
            src.copy_to(tmp_path / "c")
        src.delete(["d0", "d1"])
        src.copy_to(tmp_path / "c", overwrite=True)  # replaces the earlier copy
        with Collection.open(tmp_path / "c") as dst:
            assert dst.count() == 18 and not dst.get(["d0"])
        other = tmp_path / "notes"
        other.mkdir()
        (other / "keep.txt").write_text("mine")
        with pytest.raises(FileExistsError, match="not a saved collection"):
            src.copy_to(other, overwrite=True)
        assert (other / "keep.txt").read_text() == "mine"
        (tmp_path / "empty").mkdir()
        src.copy_to(tmp_path / "empty")  # an empty directory is fine
        with pytest.raises(FileExistsError, match="not a directory"):
            src.copy_to(other / "keep.txt")
    with Collection(tmp_path / "own") as col:
        _fill(col, 5)
        with pytest.raises(ValueError, match="onto itself"):
            col.copy_to(tmp_path / "own", overwrite=True)
        assert col.count() == 5


def test_copy_collection_takes_any_collection_like(tmp_path):
    class Wrapper:  # public members only, forwarded
        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name):
            if name not in COLLECTION_MEMBERS:
                raise AttributeError(name)
            return getattr(self._inner, name)

    with Collection(metric="l2", bits=2) as src:
        _fill(src, 50)
        copy_collection(Wrapper(src), tmp_path / "w", batch_size=7)
        with Collection.open(tmp_path / "w") as dst:
            assert (dst.metric, dst.stats()["bits"]) == ("l2", 2)
            _same_documents(src, dst)
        with pytest.raises(ValueError, match="batch_size"):
            copy_collection(src, tmp_path / "x", batch_size=0)


# ----------------------------------------------------------------------------------------------------------
# the adapters copy through copy_to
# ----------------------------------------------------------------------------------------------------------
def test_langchain_save_local_keeps_bits_and_index_options(tmp_path):
    pytest.importorskip("langchain_core")
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from langchain_spann import SPANNVectorStore

    emb = DeterministicFakeEmbedding(size=D)
    opts = {"head_ratio": 1 / 50}
    store = SPANNVectorStore(emb, metric="l2", bits=2, n_probe=9, index_options=opts)
    store.add_texts([f"text {i}" for i in range(30)], ids=[f"t{i}" for i in range(30)])
    store.save_local(tmp_path)
    with SPANNVectorStore.load_local(tmp_path, emb) as back:
        st = back.collection.stats()
        assert (st["metric"], st["bits"], st["n_probe"], st["index_options"]) == ("l2", 2, 9, opts)
        assert back.collection.count() == 30
    store.close()


def test_llama_index_persist_keeps_bits_and_index_options(tmp_path):
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import TextNode
    from llama_index.vector_stores.spann import SPANNVectorStore

    opts = {"head_ratio": 1 / 50}
    x = clustered(30, D, seed=3)
    store = SPANNVectorStore(metric="cosine", bits=4, n_probe=5, index_options=opts)
    store.add([TextNode(id_=f"n{i}", text=f"node {i}", embedding=x[i].tolist()) for i in range(30)])
    store.persist(str(tmp_path / "default__vector_store.json"))
    with SPANNVectorStore.from_persist_dir(tmp_path) as back:
        st = back.collection.stats()
        assert (st["metric"], st["bits"], st["n_probe"], st["index_options"]) == ("cosine", 4, 5, opts)
        assert back.bits == 4 and back.count() == 30
    store.close()
