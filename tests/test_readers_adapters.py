"""Read-only stores in the adapters and the CLI (issue 16): ``read_only=True``, ``load_local`` /
``from_persist_dir`` while another process writes the directory, ``close()`` of a collection the store did
not open, and ``spann-vectorstore query``/``info`` during a write."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from spann_vectorstore import Collection, CollectionLockedError, ReadOnlyError

from .test_readers import _env

# A writer process: holds the collection open and adds the documents given on stdin (one JSON object per line:
# ids, texts, vectors, metadatas), answering "ok" once each add is acknowledged.
WRITER = textwrap.dedent(
    """
    import json, sys
    from spann_vectorstore import Collection
    col = Collection(sys.argv[1])
    print("ready", flush=True)
    for line in sys.stdin:
        doc = json.loads(line)
        col.add(doc["vectors"], texts=doc["texts"], metadatas=doc.get("metadatas"), ids=doc["ids"])
        print("ok", flush=True)
    """
)


class _Writer:
    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        assert self.proc.stdout.readline().strip() == "ready"

    def add(self, ids, texts, vectors, metadatas=None) -> None:
        doc = {"ids": ids, "texts": texts, "vectors": np.asarray(vectors, np.float32).tolist(), "metadatas": metadatas}
        self.proc.stdin.write(json.dumps(doc) + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def stop(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout=300) == 0


# ----------------------------------------------------------------------------------------------------------
# LangChain
# ----------------------------------------------------------------------------------------------------------
def test_langchain_load_local_while_another_process_writes(tmp_path):
    pytest.importorskip("langchain_core")
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from langchain_spann import SPANNVectorStore

    class Counting(DeterministicFakeEmbedding):
        calls: int = 0

        def embed_documents(self, texts):
            self.calls += 1
            return super().embed_documents(texts)

    emb = Counting(size=16)
    texts = ["apples are red", "the sky is blue", "grass is green"]
    with SPANNVectorStore.from_texts(texts, emb, metric="cosine", ids=["a", "s", "g"]) as store:
        store.save_local(tmp_path)
    writer = _Writer(tmp_path / "index")
    try:
        with pytest.raises(CollectionLockedError, match=f"pid {writer.proc.pid}"):
            SPANNVectorStore.load_local(tmp_path, emb, read_only=False)
        loaded = SPANNVectorStore.load_local(tmp_path, emb)  # falls back to read-only: another process writes
        assert loaded.read_only
        assert [d.id for d in loaded.similarity_search("the sky is blue", k=1)] == ["s"]
        calls = emb.calls
        with pytest.raises(ReadOnlyError, match=f"opened read-only by load_local.*pid {writer.proc.pid}"):
            loaded.add_texts(["more"], ids=["m"])
        assert emb.calls == calls  # refused before embedding anything
        for call in (lambda: loaded.delete(["a"]), loaded.reset_collection, loaded.delete_collection):
            with pytest.raises(ReadOnlyError):
                call()
        writer.add(["f"], ["a fresh document"], emb.embed_documents(["a fresh document"]))
        assert [d.id for d in loaded.similarity_search("a fresh document", k=1)] == ["f"]  # the next search sees it
        explicit = SPANNVectorStore(emb, persist_directory=tmp_path / "index", read_only=True)
        assert explicit.collection is loaded.collection  # read-only opens in one process share one instance
        explicit.close()
        assert loaded.collection.count() == 4
        loaded.close()
    finally:
        writer.stop()
    with SPANNVectorStore.load_local(tmp_path, emb) as back:  # free again: writable
        assert not back.read_only and back.collection.count() == 4


def test_langchain_close_leaves_a_passed_collection_open(tmp_path):
    pytest.importorskip("langchain_core")
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from langchain_spann import SPANNVectorStore

    col = Collection(tmp_path / "c", metric="cosine")
    store = SPANNVectorStore(DeterministicFakeEmbedding(size=8), collection=col)
    store.add_texts(["x", "y"], ids=["x", "y"])
    store.close()
    assert col.count() == 2  # still open: the caller's
    store.delete_collection()  # empties it, still not closed
    assert col.count() == 0
    with pytest.raises(ValueError, match="read_only"):
        SPANNVectorStore(DeterministicFakeEmbedding(size=8), collection=col, read_only=True)
    col.close()
    with SPANNVectorStore(DeterministicFakeEmbedding(size=8), persist_directory=tmp_path / "c") as owned:
        owned.add_texts(["z"], ids=["z"])
    with pytest.raises(RuntimeError, match="closed"):
        owned.collection.count()  # the store opened it, so its close() closed it


# ----------------------------------------------------------------------------------------------------------
# LlamaIndex
# ----------------------------------------------------------------------------------------------------------
def test_llama_index_from_persist_dir_while_the_writer_holds_it(tmp_path):
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.types import VectorStoreQuery
    from llama_index.vector_stores.spann import SPANNVectorStore

    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((6, 8)).astype(np.float32)
    idx = tmp_path / "idx"
    with SPANNVectorStore(persist_dir=idx, metric="l2") as store:
        store.add([TextNode(id_=f"n{i}", text=f"node {i}", embedding=vecs[i].tolist()) for i in range(5)])
        store.persist(str(idx / "default__vector_store.json"))
    writer = _Writer(idx)  # the process that wrote it is still alive and holds it
    try:
        back = SPANNVectorStore.from_persist_dir(idx)
        assert back.read_only and back.count() == 5
        res = back.query(VectorStoreQuery(query_embedding=vecs[3].tolist(), similarity_top_k=1))
        assert res.ids == ["n3"]
        with pytest.raises(ReadOnlyError):
            back.add([TextNode(id_="x", text="x", embedding=vecs[0].tolist())])
        with pytest.raises(ReadOnlyError):
            back.delete_nodes(["n1"])
        with pytest.raises(ReadOnlyError):
            back.clear()
        assert back.count() == 5
        back.persist(str(idx / "default__vector_store.json"))  # the manifest is already there: nothing written
        back.persist(str(tmp_path / "copy" / "default__vector_store.json"))  # a copy elsewhere reads only
        writer.add(["n5"], ["node 5"], vecs[5:6])
        res = back.query(VectorStoreQuery(query_embedding=vecs[5].tolist(), similarity_top_k=1))
        assert res.ids == ["n5"]  # the next query after the acknowledgement sees it
        with pytest.raises(CollectionLockedError):
            SPANNVectorStore.from_persist_dir(idx, read_only=False)
        back.close()
    finally:
        writer.stop()
    with SPANNVectorStore.from_persist_dir(tmp_path / "copy") as copy:
        assert copy.count() == 5 and not copy.read_only


# ----------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------
def test_cli_query_and_info_work_while_another_process_writes(tmp_path):
    path = tmp_path / "idx"
    with Collection(path) as col:
        col.add(np.eye(4, dtype=np.float32), texts=["alpha", "beta", "gamma", "delta"], ids=list("abcd"))
    writer = _Writer(path)
    try:
        writer.add(["e"], ["epsilon gamma"], np.ones((1, 4)))
        cli = [sys.executable, "-m", "spann_vectorstore.cli"]
        out = subprocess.run(
            [*cli, "query", str(path), "gamma", "--mode", "text", "-k", "5"],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        assert "epsilon gamma" in out.stdout and "alpha" not in out.stdout
        out = subprocess.run([*cli, "info", str(path)], capture_output=True, text=True, env=_env(), timeout=300)
        assert out.returncode == 0, out.stderr
        assert "5" in out.stdout
    finally:
        writer.stop()
