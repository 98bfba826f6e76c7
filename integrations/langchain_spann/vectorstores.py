"""``SPANNVectorStore``: a LangChain ``VectorStore`` over a spann_vectorstore ``Collection``."""

from __future__ import annotations

import json
import math
import os
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance
from typing_extensions import Self

from spann_vectorstore import Collection, CollectionLike, CollectionLockedError, Hit, ReadOnlyError, fulltext
from spann_vectorstore.collection import store_directory
from spann_vectorstore.interop import carry_over, clean_metadata, float_list, is_node_row, prebuilt
from spann_vectorstore.protocol import check_collection
from spann_vectorstore.validation import check_metric, positive_int

#: A metadata filter: the core filter dict (see :mod:`spann_vectorstore.filters`) or a predicate on documents.
Filter = dict[str, Any] | Callable[[Document], bool] | None

_CONFIG_FORMAT = "langchain_spann.SPANNVectorStore"
_CONFIG_VERSION = 1
_NORM_TOLERANCE = 1e-2


class RetrievalMode(str, Enum):
    """What a text query searches (langchain-qdrant's names): ``DENSE`` the embedding index, ``SPARSE`` the
    full-text (BM25) index, ``HYBRID`` both, fused."""

    DENSE = "dense"
    SPARSE = "sparse"
    HYBRID = "hybrid"


# per-call search options each mode accepts (besides ``filter``)
_SEARCH_OPTIONS = {
    RetrievalMode.DENSE: frozenset({"n_probe", "target_recall", "where_document"}),
    RetrievalMode.SPARSE: frozenset({"where_document"}),
    RetrievalMode.HYBRID: frozenset({"n_probe", "target_recall", "where_document", "alpha", "fusion", "candidates"}),
}


def _retrieval_mode(mode: Any) -> RetrievalMode:
    try:
        return RetrievalMode(mode.lower() if isinstance(mode, str) else mode)
    except ValueError:
        valid = ", ".join(repr(m.value) for m in RetrievalMode)
        msg = f"unknown retrieval_mode {mode!r}; expected one of {valid} (or a RetrievalMode)"
        raise ValueError(msg) from None


def _bm25_relevance(score: float) -> float:
    """A BM25 score (> 0, unbounded) to a relevance in [0, 1): ``s / (1 + s)``, monotone."""
    return max(0.0, score) / (1.0 + max(0.0, score))


def _fused_relevance(score: float) -> float:
    """A dbsf/relative fused score to [0, 1]: relative is in [0, 1]; dbsf (unclipped) can pass 1 slightly for
    a clear outlier at the top of a list, which is clipped here."""
    return min(1.0, max(0.0, score))


def _rrf_relevance(score: float) -> float:
    """An rrf fused score, at most ``2 / (60 + 1)`` (rank 1 in both lists), scaled to [0, 1]."""
    return min(1.0, max(0.0, score * (fulltext.RRF_C + 1) / 2.0))


def _similarity_relevance(score: float) -> float:
    """ip/cosine similarity of unit vectors, in [-1, 1], to a relevance in [0, 1]: ``(1 + s) / 2``."""
    return min(1.0, max(0.0, (1.0 + score) / 2.0))


def _l2_relevance(distance: float) -> float:
    """Squared L2 distance to a relevance in [0, 1]: ``1 - d / 4``, clipped.

    For unit vectors ``d = 2 - 2 cos``, so this equals ``(1 + cos) / 2``: the same embeddings get the same
    relevance whichever metric the store uses. Unnormalised embeddings farther apart than ``d = 4`` clip to 0.
    """
    return min(1.0, max(0.0, 1.0 - distance / 4.0))


def _no_extra(kwargs: dict[str, Any], where: str, allowed: Iterable[str] = ()) -> None:
    extra = sorted(set(kwargs) - set(allowed))
    if extra:
        msg = f"{where}() got unexpected keyword arguments {extra}"
        raise TypeError(msg)


def _id_list(ids: str | Iterable[str]) -> list[str]:
    return [ids] if isinstance(ids, str) else list(ids)


#: ``Document(id=..., page_content=..., metadata=...)`` without validating each one (equal to the validated
#: one: see :func:`spann_vectorstore.interop.prebuilt`; ~0.5 us against ~3 us)
_document = prebuilt(Document, id="", page_content="", metadata={})


def _to_doc(hit: Hit) -> Document:
    """The LangChain view of a row: its id, text and the user's metadata (a row written through LlamaIndex
    without LlamaIndex's internal keys: see :mod:`spann_vectorstore.interop`)."""
    return _document(id=hit.id, page_content=hit.text or "", metadata=clean_metadata(hit.metadata))


class SPANNVectorStore(VectorStore):
    """LangChain vector store backed by a spann_vectorstore ``Collection``: a quantized SPANN index with exact
    rerank over a durable SQLite document store.

    Parameters
    ----------
    embedding: the LangChain ``Embeddings`` model used for documents and queries.
    persist_directory: directory of a persistent collection (created, or reopened if it exists); ``None``
        keeps everything in memory. Writes are durable when a call returns.
    collection_name: a named collection in ``persist_directory`` (as langchain-chroma's and
        langchain-qdrant's ``collection_name``): several, each with its own metric and dimension, share one
        directory (``<persist_directory>/collections/<name>/``; list them with
        ``Collection.list_collections(persist_directory)``). ``None`` (default) is the store in
        ``persist_directory`` itself. In memory it is only a label.
    create_collection_if_not_exists: ``False`` raises ``ValueError`` unless the collection exists on disk
        (langchain-chroma's flag); default ``True`` creates it.
    metric: ``"ip"`` (default; for normalised embeddings, as most models produce), ``"cosine"`` or ``"l2"``.
        A reopened collection keeps the metric it was created with.
    bits: RaBitQ bits per dimension in the index (1, 2, 4 or 8); ``None`` uses the Collection default.
    collection: an existing ``Collection`` (or an object with the same public methods, such as a sharded
        collection) to wrap instead of creating one; then no other collection option may be given. It stays
        the caller's: :meth:`close` and :meth:`delete_collection` never close it.
    read_only: open ``persist_directory`` read-only, beside the one process that writes it (a web worker
        while an ingest runs): no lock taken, nothing written, each search sees every write acknowledged
        before it; ``add_*``, ``delete``, ``update_*`` and ``reset_collection`` raise
        :class:`~spann_vectorstore.ReadOnlyError` before embedding anything.
    retrieval_mode: what a text query searches, as langchain-qdrant names it (a :class:`RetrievalMode` or its
        string): ``"dense"`` (default) the embedding index; ``"sparse"`` the full-text index (BM25 over the
        documents' words, no query embedding needed); ``"hybrid"`` both, fused by the Collection's
        ``hybrid_search``.
    hybrid_alpha: hybrid weight, 1 = dense only, 0 = text only (default 0.5).
    fusion: hybrid fusion, ``"dbsf"`` (default), ``"relative"`` or ``"rrf"``.
    **collection_kwargs: further ``Collection`` options (``n_probe``, ``index_threshold``, ...).

    The mode applies to every search that has the query text: ``similarity_search`` (with score, with
    relevance scores, async), retrievers (``similarity``, ``similarity_score_threshold``, ``mmr``) and
    ``max_marginal_relevance_search`` (its ``fetch_k`` candidates come from the mode, MMR then runs over their
    stored vectors). The ``*_by_vector`` methods have no text, so they are dense searches in every mode (as in
    langchain-qdrant). Per call, ``where_document=`` (Chroma's: ``{"$contains": "x"}``, ``{"$match": "words"}``,
    ...) works in every mode, ``n_probe=``/``target_recall=`` in dense and hybrid,
    ``alpha=``/``fusion=``/``candidates=`` in hybrid.

    Scores: ``similarity_search_with_score`` returns the mode's native score: in dense mode the metric's
    (similarity for ip/cosine, higher is better; squared L2 distance for l2, lower is better), in sparse mode
    the BM25 score (> 0, higher is better), in hybrid mode the fused score (higher is better; a query without
    words, or ``alpha=1``, gives dense scores). ``similarity_search_with_relevance_scores`` maps them into
    [0, 1]: ``(1 + s) / 2`` for similarities and ``1 - d / 4`` for squared distances (equal for unit vectors),
    clipped; ``s / (1 + s)`` for BM25; dbsf and relative fused scores clipped to [0, 1]; rrf
    fused scores times ``61 / 2``, so that rank 1 in both lists is 1.

    ``score_threshold=`` (as langchain-qdrant accepts) on ``similarity_search``, ``similarity_search_with_score``
    and the ``*_by_vector`` variants keeps the hits whose native score passes it in the score's direction: at
    least the threshold for similarities, BM25 and fused scores, at most it for squared L2 distances (fewer
    than ``k`` hits may come back). ``relevance_score_fn=`` (as Chroma's) replaces the dense-score map.

    Chroma-style methods: ``get(ids, where, limit, offset, where_document, include)`` returns Chroma's dict,
    ``update_document(s)`` re-embed and upsert, ``reset_collection()`` deletes every document and keeps the
    settings, ``delete_collection()`` deletes every document and closes the store (files stay, see there).

    Filters: ``filter=`` takes the core filter dict (``$eq $ne $gt $gte $lt $lte $in $nin $contains $exists
    $and $or $not``, dotted paths; ``$ne``, ``$nin`` and ``$not`` also match documents that lack the field),
    applied inside the index scan; or a callable ``Document -> bool`` (as
    ``InMemoryVectorStore`` accepts), applied to a candidate set that grows until ``k`` documents pass or the
    collection is exhausted. Either way ``k`` results come back whenever ``k`` documents match.

    Examples
    --------
    Create, add and search (any ``Embeddings`` works; a fake one keeps this runnable offline):

    >>> from langchain_core.documents import Document
    >>> from langchain_core.embeddings import DeterministicFakeEmbedding
    >>> from langchain_spann import SPANNVectorStore
    >>> store = SPANNVectorStore(DeterministicFakeEmbedding(size=16), metric="cosine")
    >>> store.add_texts(
    ...     ["apples are red", "the sky is blue", "grass is green"],
    ...     metadatas=[{"source": "a.md", "year": 2021}, {"source": "b.md", "year": 2023}, {"source": "a.md"}],
    ...     ids=["apple", "sky", "grass"],
    ... )
    ['apple', 'sky', 'grass']
    >>> store.add_documents([Document(page_content="the sea is blue", metadata={"source": "c.md"}, id="sea")])
    ['sea']
    >>> [doc.id for doc in store.similarity_search("the sky is blue", k=1)]
    ['sky']
    >>> [doc.id for doc in store.similarity_search("apples are red", k=4, filter={"year": {"$gte": 2022}})]
    ['sky']
    >>> doc, relevance = store.similarity_search_with_relevance_scores("grass is green", k=1)[0]
    >>> doc.id, round(relevance, 3)
    ('grass', 1.0)

    Retriever (MMR, filtered), usable in any LCEL chain:

    >>> retriever = store.as_retriever(search_type="mmr", search_kwargs={"k": 2, "filter": {"source": "a.md"}})
    >>> sorted(doc.id for doc in retriever.invoke("red apples"))
    ['apple', 'grass']

    Full-text and hybrid retrieval find the exact words (codes, names) an embedding may miss:

    >>> texts = ["error E4021: card declined", "the sky is blue", "grass is green"]
    >>> sparse = SPANNVectorStore.from_texts(texts, DeterministicFakeEmbedding(size=16), metric="cosine",
    ...                                       retrieval_mode="sparse")
    >>> [doc.page_content for doc in sparse.similarity_search("what is E4021?", k=1)]
    ['error E4021: card declined']
    >>> hybrid = SPANNVectorStore.from_texts(
    ...     texts, DeterministicFakeEmbedding(size=16), metric="cosine", retrieval_mode="hybrid", hybrid_alpha=0.3)
    >>> "error E4021: card declined" in [doc.page_content for doc in hybrid.similarity_search("E4021", k=2)]
    True

    Persistent, and ``save_local`` / ``load_local`` (no pickle) for users coming from FAISS:

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> store.save_local(folder)
    >>> loaded = SPANNVectorStore.load_local(folder, DeterministicFakeEmbedding(size=16))
    >>> [doc.id for doc in loaded.get_by_ids(["sea", "missing"])]
    ['sea']
    >>> loaded.close()
    >>> with SPANNVectorStore.from_texts(["hello"], DeterministicFakeEmbedding(size=16),
    ...                                  persist_directory=folder + "/idx", metric="l2", bits=4) as persistent:
    ...     persistent.similarity_search("hello", k=1)[0].page_content
    'hello'
    """

    def __init__(
        self,
        embedding: Embeddings,
        *,
        persist_directory: str | os.PathLike | None = None,
        collection_name: str | None = None,
        metric: str = "ip",
        bits: int | None = None,
        collection: CollectionLike | None = None,
        retrieval_mode: RetrievalMode | str = RetrievalMode.DENSE,
        hybrid_alpha: float = 0.5,
        fusion: str = "dbsf",
        relevance_score_fn: Callable[[float], float] | None = None,
        create_collection_if_not_exists: bool = True,
        read_only: bool = False,
        **collection_kwargs: Any,
    ) -> None:
        if relevance_score_fn is not None and not callable(relevance_score_fn):
            msg = f"relevance_score_fn must be a callable float -> float, got {type(relevance_score_fn).__name__}"
            raise TypeError(msg)
        self.override_relevance_score_fn = relevance_score_fn
        self.retrieval_mode = _retrieval_mode(retrieval_mode)
        fulltext.check_fusion(fusion, hybrid_alpha)
        self.hybrid_alpha = float(hybrid_alpha)
        self.fusion = fusion
        if not (hasattr(embedding, "embed_documents") and hasattr(embedding, "embed_query")):
            msg = f"embedding must be a LangChain Embeddings object, got {type(embedding).__name__}"
            raise TypeError(msg)
        check_metric(metric)
        if collection is not None:
            collection = check_collection(collection)
            named = (("persist_directory", persist_directory), ("collection_name", collection_name), ("bits", bits))
            given = [name for name, v in named if v is not None]
            given += list(collection_kwargs) + (["read_only"] if read_only else [])
            if given:
                msg = f"pass either collection= or options to create one, not both (got {given})"
                raise ValueError(msg)
            if metric != "ip" and check_metric(metric) != collection.metric:
                msg = f"metric={metric!r} but the given collection uses {collection.metric!r}"
                raise ValueError(msg)
            self._collection: CollectionLike = collection
        else:
            if not create_collection_if_not_exists:  # langchain-chroma's flag: open an existing one only
                store = store_directory(persist_directory, collection_name)
                if store is None or not (store / "docs.sqlite").exists():
                    what = f"collection {collection_name!r}" if collection_name is not None else "a collection"
                    msg = f"{what} does not exist in {str(persist_directory)!r} (create_collection_if_not_exists=False)"
                    raise ValueError(msg)
            opts = dict(collection_kwargs, metric=metric)
            if bits is not None:
                opts["bits"] = bits
            if read_only:
                opts["read_only"] = True
            self._collection = Collection(persist_directory, name=collection_name, **opts)
        self._owns_collection = collection is None
        self._read_only_reason = ""
        self.embedding = embedding
        self.collection_name = collection_name if collection is None else getattr(collection, "name", None)
        store = self._collection.path if collection is None else None  # named: <dir>/collections/<name>
        self._persist_directory = Path(store) if store is not None else None
        self._warned_norm = False

    # ------------------------------------------------------------------------------------------------------
    # properties and lifecycle
    # ------------------------------------------------------------------------------------------------------
    @property
    def embeddings(self) -> Embeddings:
        return self.embedding

    @property
    def collection(self) -> CollectionLike:
        """The wrapped ``Collection`` (for ``count()``, ``clear()``, ``stats()``, ...)."""
        return self._collection

    @property
    def metric(self) -> str:
        return self._collection.metric

    @property
    def read_only(self) -> bool:
        """Whether the wrapped collection is open read-only (see ``read_only``, :meth:`load_local`)."""
        return bool(getattr(self._collection, "read_only", False))

    def _check_writable(self, what: str) -> None:
        if self.read_only:
            msg = (
                f"this SPANNVectorStore is read-only{self._read_only_reason}: {what}() is not allowed (nothing changed)"
            )
            raise ReadOnlyError(msg)

    def close(self) -> None:
        """Close the collection this store opened (writes a final index snapshot when persistent); a
        ``collection=`` passed in stays open (the caller's to close). Idempotent."""
        if self._owns_collection:
            self._collection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """The map from dense scores to relevance: ``relevance_score_fn=`` when given (as Chroma's), else the
        metric's (see the class docstring)."""
        if self.override_relevance_score_fn is not None:
            return self.override_relevance_score_fn
        return _l2_relevance if self.metric == "l2" else _similarity_relevance

    def reset_collection(self) -> None:
        """Delete every document, keeping the collection's settings (metric, bits, dimension) and files: the
        store stays usable (Chroma's ``reset_collection``)."""
        self._check_writable("reset_collection")
        self._collection.clear()

    def delete_collection(self) -> None:
        """Delete every document and close the store (Chroma's ``delete_collection``): later calls raise. A
        named persistent collection (``collection_name=``) is dropped with its files
        (``Collection.drop_collection``). The store in ``persist_directory`` itself is left in place, holding
        an empty collection (no directory is removed: the store may not have created it, and it may hold
        named collections); remove it yourself if you no longer need it. A ``collection=`` passed in is
        emptied but stays open (the caller's to close)."""
        self._check_writable("delete_collection")
        self._collection.clear()
        name, store = getattr(self._collection, "name", None), getattr(self._collection, "path", None)
        owned = self._owns_collection and isinstance(self._collection, Collection)
        self.close()
        if owned and name is not None and store is not None:
            Collection.drop_collection(Path(store).parent.parent, name)

    # ------------------------------------------------------------------------------------------------------
    # writes
    # ------------------------------------------------------------------------------------------------------
    def _prepare(
        self, texts: Iterable[str], metadatas: Sequence[dict | None] | None, ids: Sequence[str | None] | None
    ) -> tuple[list[str], list[dict], list[str]]:
        """Validate a whole call up front; generate uuid4 ids where none is given."""
        if isinstance(texts, str):
            msg = "texts must be a list of strings, not a single string"
            raise TypeError(msg)
        texts_l = list(texts)
        n = len(texts_l)
        for t in texts_l:
            if not isinstance(t, str):
                msg = f"texts must be strings, got {type(t).__name__}"
                raise TypeError(msg)
        metas = list(metadatas) if metadatas else [None] * n
        ids_l = list(ids) if ids else [None] * n
        for name, seq in (("metadatas", metas), ("ids", ids_l)):
            if len(seq) != n:
                msg = f"got {len(seq)} {name} for {n} texts"
                raise ValueError(msg)
        for i, m in enumerate(metas):
            if m is not None and not isinstance(m, dict):
                msg = f"metadatas[{i}] must be a dict, got {type(m).__name__}"
                raise TypeError(msg)
        out_ids = []
        for i in ids_l:
            if i is not None and not isinstance(i, str):
                msg = f"ids must be strings, got {i!r}"
                raise TypeError(msg)
            out_ids.append(i or str(uuid.uuid4()))
        if len(set(out_ids)) != n:
            dup = sorted({i for i in out_ids if out_ids.count(i) > 1})[:5]
            msg = f"duplicate ids in one call: {dup}"
            raise ValueError(msg)
        return texts_l, [dict(m) if m else {} for m in metas], out_ids

    def _matrix(self, vectors: Any, n: int) -> np.ndarray:
        """Embeddings as (n, dim) float32, checked against the collection's dimension."""
        try:
            arr = np.asarray(vectors, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            msg = f"the embedding model returned something that is not an (n, dim) array of numbers: {exc}"
            raise ValueError(msg) from None
        if arr.ndim != 2 or arr.shape[0] != n:
            msg = f"the embedding model returned shape {arr.shape} for {n} texts"
            raise ValueError(msg)
        dim = self._collection.dim
        if dim is not None and arr.shape[1] != dim:
            msg = (
                f"embeddings have dimension {arr.shape[1]} but this store holds {dim}-dimensional vectors "
                "(was it built with another embedding model?)"
            )
            raise ValueError(msg)
        if self.metric == "ip" and not self._warned_norm:
            n2 = np.einsum("ij,ij->i", arr, arr)  # one pass (a query's check was ~8 us with isfinite + norm)
            norms = np.sqrt(n2)
            if np.isfinite(n2).all() and np.abs(norms - 1.0).max() > _NORM_TOLERANCE:
                self._warned_norm = True
                warnings.warn(
                    "metric='ip' expects normalised embeddings, but these have norms "
                    f"{norms.min():.3g}..{norms.max():.3g}; rankings and relevance scores will be off. "
                    "Use metric='cosine' (or normalise the embeddings).",
                    stacklevel=3,
                )
        return arr

    def _query(self, vector: Any) -> np.ndarray:
        """One embedding as a (dim,) float32 array, checked as :meth:`_matrix` checks a batch of one (which
        answers anything but a plain list of ``dim`` numbers, so errors and warnings are its own)."""
        q = float_list(vector)
        if q is None:
            try:
                q = np.asarray(vector, dtype=np.float32)
            except (TypeError, ValueError):
                q = None
        dim = self._collection.dim
        if q is None or q.ndim != 1 or (dim is not None and q.shape[0] != dim):
            return self._matrix([vector], 1)[0]
        if self.metric == "ip" and not self._warned_norm:
            n2 = float(np.dot(q, q))
            if math.isfinite(n2) and abs(math.sqrt(n2) - 1.0) > _NORM_TOLERANCE:
                return self._matrix([vector], 1)[0]  # warns
        return q

    @staticmethod
    def _batch_size(batch_size: Any) -> int:
        return positive_int(batch_size, "batch_size")

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        batch_size: int = 1000,
        **kwargs: Any,
    ) -> list[str]:
        """Embed and add (or replace, by id) texts; returns their ids.

        Embeddings are computed ``batch_size`` texts at a time and each batch is written as soon as it is
        embedded (memory stays bounded). A batch is validated before it is written: a wrong dimension raises
        ``ValueError`` and leaves the store as it was before that batch (adds are upserts, so re-running the
        same call with the same ids is safe).
        """
        _no_extra(kwargs, "add_texts")
        self._check_writable("add_texts")
        batch_size = self._batch_size(batch_size)
        texts_l, metas, ids_l = self._prepare(texts, metadatas, ids)
        for s in range(0, len(texts_l), batch_size):
            part = slice(s, s + batch_size)
            vectors = self._matrix(self.embedding.embed_documents(texts_l[part]), len(texts_l[part]))
            self._collection.add(vectors, texts_l[part], self._keep_nodes(ids_l[part], metas[part]), ids_l[part])
        return ids_l

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        batch_size: int = 1000,
        **kwargs: Any,
    ) -> list[str]:
        _no_extra(kwargs, "aadd_texts")
        self._check_writable("aadd_texts")
        batch_size = self._batch_size(batch_size)
        texts_l, metas, ids_l = self._prepare(texts, metadatas, ids)
        for s in range(0, len(texts_l), batch_size):
            part = slice(s, s + batch_size)
            vectors = self._matrix(await self.embedding.aembed_documents(texts_l[part]), len(texts_l[part]))
            metas_part = await run_in_executor(None, self._keep_nodes, ids_l[part], metas[part])
            await run_in_executor(None, self._collection.add, vectors, texts_l[part], metas_part, ids_l[part])
        return ids_l

    def _keep_nodes(self, ids: list[str], metas: list[dict]) -> list[dict]:
        """``metas`` for replacing the rows ``ids``: a row written through LlamaIndex keeps its node identity
        (reference document, node type, relationships) when LangChain replaces it (see
        :mod:`spann_vectorstore.interop`)."""
        old = {h.id: h.metadata for h in self._collection.get(ids) if is_node_row(h.metadata)}
        if not old:
            return metas
        return [carry_over(old[i], m) if i in old else m for i, m in zip(ids, metas)]

    @staticmethod
    def _doc_ids(documents: list[Document], ids: Sequence[str | None] | None) -> list[str | None]:
        """``ids=`` first, then ``Document.id`` (per document); ``None`` gets a generated id."""
        if not ids:
            return [d.id for d in documents]
        if len(ids) != len(documents):
            msg = f"got {len(ids)} ids for {len(documents)} documents"
            raise ValueError(msg)
        return [i or d.id for i, d in zip(ids, documents)]

    def add_documents(self, documents: list[Document], ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        """Add (or replace, by id) documents; ids from ``ids=`` first, then ``Document.id``, else generated.
        The documents are not modified. Accepts ``batch_size`` (see :meth:`add_texts`)."""
        ids_ = self._doc_ids(documents, ids)
        return self.add_texts([d.page_content for d in documents], [d.metadata for d in documents], ids=ids_, **kwargs)

    async def aadd_documents(self, documents: list[Document], ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        ids_ = self._doc_ids(documents, ids)
        texts = [d.page_content for d in documents]
        return await self.aadd_texts(texts, [d.metadata for d in documents], ids=ids_, **kwargs)

    def delete(self, ids: list[str] | None = None, *, filter: dict[str, Any] | None = None, **kwargs: Any) -> bool:
        """Delete documents by id and/or core filter dict (both: ids that also match; ``where=`` is accepted
        for ``filter=``, as langchain-chroma passes it on). Unknown ids are not an error. To delete everything
        use :meth:`reset_collection`."""
        if "where" in kwargs:
            if filter is not None:
                msg = "delete() takes filter= or where=, not both"
                raise TypeError(msg)
            filter = kwargs.pop("where")
        _no_extra(kwargs, "delete")
        self._check_writable("delete")
        if ids is None and filter is None:
            msg = "delete() needs ids or filter; use store.collection.clear() to delete everything"
            raise ValueError(msg)
        if filter is not None and not isinstance(filter, dict):
            msg = f"delete() takes a filter dict, got {type(filter).__name__}"
            raise TypeError(msg)
        self._collection.delete(ids=_id_list(ids) if ids is not None else None, filter=filter)
        return True

    async def adelete(
        self, ids: list[str] | None = None, *, filter: dict[str, Any] | None = None, **kwargs: Any
    ) -> bool:
        return await run_in_executor(None, partial(self.delete, ids, filter=filter, **kwargs))

    def update_document(self, document_id: str, document: Document) -> None:
        """Re-embed ``document`` and store it under ``document_id`` (an upsert, as Chroma's)."""
        self.update_documents([document_id], [document])

    def update_documents(self, ids: list[str], documents: list[Document]) -> None:
        """Re-embed ``documents`` and store each under the id at the same position in ``ids`` (upserts: an
        unknown id is added), as Chroma's ``update_documents``."""
        if isinstance(ids, str) or len(ids) != len(documents):
            msg = f"update_documents needs one id per document, got {ids!r} for {len(documents)} documents"
            raise ValueError(msg)
        if any(not isinstance(i, str) or not i for i in ids):
            msg = "update_documents ids must be non-empty strings"
            raise ValueError(msg)
        self.add_texts([d.page_content for d in documents], [d.metadata for d in documents], ids=list(ids))

    # ------------------------------------------------------------------------------------------------------
    # reads
    # ------------------------------------------------------------------------------------------------------
    def get(
        self,
        ids: str | list[str] | None = None,
        where: dict[str, Any] | None = None,
        limit: int | None = None,
        offset: int | None = None,
        where_document: dict[str, Any] | None = None,
        include: list[str] | None = None,
    ) -> dict[str, Any]:
        """Documents as Chroma's ``get`` returns them: ``{"ids": [...], "embeddings": None, "documents": [...],
        "metadatas": [...], "included": [...]}``; ``include`` picks among ``"documents"``, ``"metadatas"`` and
        ``"embeddings"`` (lists of floats), default the first two; a part not included is ``None``, ``ids``
        always come back.
        By ``ids`` (in the order given, unknown ones skipped) and/or ``where`` (a core filter dict) and
        ``where_document``; in insertion order otherwise; ``offset`` skips, ``limit`` caps."""
        include = ["documents", "metadatas"] if include is None else list(include)
        unknown = sorted(set(include) - {"documents", "metadatas", "embeddings"})
        if unknown:
            msg = f"include takes 'documents', 'metadatas' and 'embeddings', got {unknown}"
            raise ValueError(msg)
        opts = {"filter": where or None, "where_document": where_document, "limit": limit, "offset": offset or None}
        opts = {key: v for key, v in opts.items() if v is not None}  # a sharded collection takes fewer options
        hits = self._collection.get(
            _id_list(ids) if ids is not None else None, include_vectors="embeddings" in include, **opts
        )
        return {
            "ids": [h.id for h in hits],
            "embeddings": [h.vector.tolist() for h in hits] if "embeddings" in include else None,
            "documents": [h.text for h in hits] if "documents" in include else None,
            "metadatas": [clean_metadata(h.metadata) for h in hits] if "metadatas" in include else None,
            "included": include,
        }

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Documents for ``ids`` in the order given; missing ids are skipped."""
        return [_to_doc(h) for h in self._collection.get(_id_list(ids))]

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return await run_in_executor(None, self.get_by_ids, ids)

    def _searcher(
        self, mode: RetrievalMode, query: str | None, vector: np.ndarray | None, include_vectors: bool, opts: dict
    ) -> Callable[[int, dict | None], list[Hit]]:
        """``(n, filter dict) -> hits`` for ``mode``: the Collection call with the per-call options."""
        _no_extra(opts, "search", _SEARCH_OPTIONS[mode])
        opts = {key: v for key, v in opts.items() if v is not None}
        coll = self._collection
        if mode == RetrievalMode.DENSE:
            return lambda n, flt: coll.search(vector, n, filter=flt, include_vectors=include_vectors, **opts)
        if mode == RetrievalMode.SPARSE:
            return lambda n, flt: coll.text_search(query, n, filter=flt, include_vectors=include_vectors, **opts)
        opts = {"alpha": self.hybrid_alpha, "fusion": self.fusion, **opts}
        return lambda n, flt: coll.hybrid_search(query, vector, n, filter=flt, include_vectors=include_vectors, **opts)

    def _hits(self, search: Callable[[int, dict | None], list[Hit]], k: int, filter: Filter) -> list[Hit]:
        """Top-``k`` hits of ``search``; a callable filter grows the candidate set until ``k`` pass."""
        positive_int(k, "k")
        if filter is None or isinstance(filter, dict):
            return search(k, filter or None)
        if not callable(filter):
            msg = f"filter must be a dict or a callable Document -> bool, got {type(filter).__name__}"
            raise TypeError(msg)
        fetch = 4 * k
        while True:
            total = self._collection.count()
            if total == 0:
                return []
            fetch = min(fetch, total)
            kept = [h for h in search(fetch, None) if filter(_to_doc(h))]
            if len(kept) >= k or fetch >= total:
                return kept[:k]
            fetch *= 4

    def _needs_vector(self) -> bool:
        return self.retrieval_mode != RetrievalMode.SPARSE

    def _lower_is_better(self, mode: RetrievalMode, query: str | None, kwargs: dict[str, Any]) -> bool:
        """Whether ``mode``'s native scores for ``query`` are distances (l2 dense scores, hybrid falling back)."""
        if self.metric != "l2" or mode == RetrievalMode.SPARSE:
            return False
        alpha = kwargs.get("alpha")
        alpha = self.hybrid_alpha if alpha is None else alpha
        return mode == RetrievalMode.DENSE or alpha == 1 or not fulltext.terms(query or "")

    def _threshold(
        self, hits: list[Hit], threshold: Any, mode: RetrievalMode, query: str | None, kwargs: dict[str, Any]
    ) -> list[Hit]:
        """The hits whose native score passes ``score_threshold`` as langchain-qdrant's: at least it for
        similarities and BM25/fused scores, at most it for squared L2 distances."""
        if threshold is None:
            return hits
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer)):
            msg = f"score_threshold must be a number, got {threshold!r}"
            raise TypeError(msg)
        if self._lower_is_better(mode, query, kwargs):
            return [h for h in hits if h.score <= threshold]
        return [h for h in hits if h.score >= threshold]

    def _mode_search(
        self, query: str, vector: Any, k: int, filter: Filter, *, include_vectors: bool = False, **kwargs: Any
    ) -> list[Hit]:
        """Hits for the text ``query`` (and its embedding ``vector``, unused in sparse mode) in the retrieval mode."""
        threshold = kwargs.pop("score_threshold", None)
        q = self._query(vector) if vector is not None else None
        search = self._searcher(self.retrieval_mode, query, q, include_vectors, kwargs)
        return self._threshold(self._hits(search, k, filter), threshold, self.retrieval_mode, query, kwargs)

    def _relevance_fn(self, query: str, alpha: float | None = None, fusion: str | None = None) -> Callable:
        """The map from this mode's scores for ``query`` to [0, 1] (see the class docstring)."""
        if self.retrieval_mode == RetrievalMode.SPARSE:
            return _bm25_relevance
        alpha = self.hybrid_alpha if alpha is None else alpha
        if self.retrieval_mode == RetrievalMode.DENSE or alpha == 1 or not fulltext.terms(query):
            return self._select_relevance_score_fn()  # dense scores (hybrid falls back to them)
        return _rrf_relevance if (fusion or self.fusion) == "rrf" else _fused_relevance

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Documents nearest ``embedding`` with the metric's native score (see the class docstring). Always a
        dense search, whatever the retrieval mode: a vector has no text for the BM25 leg (as langchain-qdrant).
        ``score_threshold=`` keeps the hits whose score passes it (see the class docstring)."""
        threshold = kwargs.pop("score_threshold", None)
        search = self._searcher(RetrievalMode.DENSE, None, self._query(embedding), False, kwargs)
        hits = self._threshold(self._hits(search, k, filter), threshold, RetrievalMode.DENSE, None, kwargs)
        return [(_to_doc(h), h.score) for h in hits]

    def similarity_search_by_vector_with_relevance_scores(
        self, embedding: list[float], k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Documents nearest ``embedding`` (a dense search) with relevance scores in [0, 1], higher is better,
        mapped as :meth:`similarity_search_with_relevance_scores` maps dense scores. (Chroma's method of this
        name returns its raw distances, lower is better.) ``score_threshold=`` applies to the relevance."""
        threshold = kwargs.pop("score_threshold", None)
        relevance = self._select_relevance_score_fn()
        out = [
            (d, relevance(s)) for d, s in self.similarity_search_with_score_by_vector(embedding, k, filter, **kwargs)
        ]
        return out if threshold is None else [(d, r) for d, r in out if r >= threshold]

    async def asimilarity_search_by_vector_with_relevance_scores(
        self, embedding: list[float], k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        search = partial(self.similarity_search_by_vector_with_relevance_scores, embedding, k, filter, **kwargs)
        return await run_in_executor(None, search)

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Documents for ``query`` in the retrieval mode, with its native score (see the class docstring)."""
        vector = self.embedding.embed_query(query) if self._needs_vector() else None
        return [(_to_doc(h), h.score) for h in self._mode_search(query, vector, k, filter, **kwargs)]

    def similarity_search_with_vectors(
        self, query: str, k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[tuple[Document, np.ndarray]]:
        """Documents for ``query`` in the retrieval mode with their stored vectors (float32 arrays), as Chroma's
        method of this name."""
        vector = self.embedding.embed_query(query) if self._needs_vector() else None
        hits = self._mode_search(query, vector, k, filter, include_vectors=True, **kwargs)
        return [(_to_doc(h), h.vector) for h in hits]

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, filter, **kwargs)]

    def similarity_search(self, query: str, k: int = 4, filter: Filter = None, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def _similarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        relevance = self._relevance_fn(query, kwargs.get("alpha"), kwargs.get("fusion"))
        return [(doc, relevance(s)) for doc, s in self.similarity_search_with_score(query, k, **kwargs)]

    async def _asimilarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        relevance = self._relevance_fn(query, kwargs.get("alpha"), kwargs.get("fusion"))
        return [(doc, relevance(s)) for doc, s in await self.asimilarity_search_with_score(query, k, **kwargs)]

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        vector = await self.embedding.aembed_query(query) if self._needs_vector() else None
        hits = await run_in_executor(None, partial(self._mode_search, query, vector, k, filter, **kwargs))
        return [(_to_doc(h), h.score) for h in hits]

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[Document]:
        return await run_in_executor(None, self.similarity_search_by_vector, embedding, k, filter, **kwargs)

    async def asimilarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        search = partial(self.similarity_search_with_score_by_vector, embedding, k, filter, **kwargs)
        return await run_in_executor(None, search)

    async def asimilarity_search(self, query: str, k: int = 4, filter: Filter = None, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in await self.asimilarity_search_with_score(query, k, filter, **kwargs)]

    def _mmr(
        self,
        query: str | None,
        embedding: list[float],
        k: int,
        fetch_k: int,
        lambda_mult: float,
        filter: Filter,
        kwargs: dict[str, Any],
    ) -> list[Document]:
        """``fetch_k`` candidates (after the filter; for a text ``query`` in the retrieval mode, else dense),
        then ``k`` of them chosen by maximal marginal relevance to ``embedding``."""
        return [doc for doc, _ in self._mmr_scored(query, embedding, k, fetch_k, lambda_mult, filter, kwargs)]

    def _mmr_scored(
        self,
        query: str | None,
        embedding: list[float],
        k: int,
        fetch_k: int,
        lambda_mult: float,
        filter: Filter,
        kwargs: dict[str, Any],
    ) -> list[tuple[Document, float]]:
        """:meth:`_mmr` with each chosen document's native score from the candidate search."""
        if not 0.0 <= lambda_mult <= 1.0:
            msg = f"lambda_mult must be in [0, 1], got {lambda_mult!r}"
            raise ValueError(msg)
        vector = self._query(embedding)
        mode = RetrievalMode.DENSE if query is None else self.retrieval_mode
        search = self._searcher(mode, query, vector, True, kwargs)
        hits = self._hits(search, max(int(fetch_k), k), filter)
        if not hits:
            return []
        chosen = maximal_marginal_relevance(vector, [h.vector for h in hits], lambda_mult=lambda_mult, k=k)
        return [(_to_doc(hits[i]), float(hits[i].score)) for i in chosen]

    def max_marginal_relevance_search_with_score_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter = None,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        """:meth:`max_marginal_relevance_search_by_vector` with each document's native score (as
        langchain-qdrant's method of this name)."""
        return self._mmr_scored(None, embedding, k, fetch_k, lambda_mult, filter, kwargs)

    async def amax_marginal_relevance_search_with_score_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter = None,
        **kwargs: Any,
    ) -> list[tuple[Document, float]]:
        search = partial(self._mmr_scored, None, embedding, k, fetch_k, lambda_mult, filter, kwargs)
        return await run_in_executor(None, search)

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Diverse results: ``fetch_k`` nearest candidates (after the filter; a dense search whatever the
        retrieval mode), then ``k`` of them chosen by maximal marginal relevance (``lambda_mult`` 1: pure
        similarity, 0: maximum diversity)."""
        return self._mmr(None, embedding, k, fetch_k, lambda_mult, filter, kwargs)

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Diverse results: ``fetch_k`` candidates from the retrieval mode (dense, BM25 or hybrid, after the
        filter), then ``k`` of them chosen by maximal marginal relevance to the query's embedding."""
        vector = self.embedding.embed_query(query)
        return self._mmr(query, vector, k, fetch_k, lambda_mult, filter, kwargs)

    async def amax_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter = None,
        **kwargs: Any,
    ) -> list[Document]:
        search = partial(self.max_marginal_relevance_search_by_vector, embedding, k, fetch_k, lambda_mult, filter)
        return await run_in_executor(None, search, **kwargs)

    async def amax_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter = None,
        **kwargs: Any,
    ) -> list[Document]:
        vector = await self.embedding.aembed_query(query)
        return await run_in_executor(None, self._mmr, query, vector, k, fetch_k, lambda_mult, filter, kwargs)

    # ------------------------------------------------------------------------------------------------------
    # construction and persistence
    # ------------------------------------------------------------------------------------------------------
    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        batch_size: int = 1000,
        **kwargs: Any,
    ) -> Self:
        """A store created with ``**kwargs`` (see the constructor) holding ``texts``."""
        store = cls(embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids, batch_size=batch_size)
        return store

    @classmethod
    async def afrom_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        batch_size: int = 1000,
        **kwargs: Any,
    ) -> Self:
        store = await run_in_executor(None, partial(cls, embedding, **kwargs))
        await store.aadd_texts(texts, metadatas, ids=ids, batch_size=batch_size)
        return store

    def save_local(self, folder_path: str | os.PathLike, index_name: str = "index") -> None:
        """Save to ``folder_path``: a persistent collection in ``<index_name>/`` plus ``<index_name>.json``.

        Nothing is pickled. If this store already persists to that directory only the JSON is written;
        otherwise every document (with its vector) is copied into a fresh collection that replaces any
        earlier save of the same name.
        """
        folder = Path(folder_path)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / index_name
        here = self._collection.path
        same = here is not None and target.exists() and Path(here).samefile(target)
        if not same:
            self._collection.copy_to(target, overwrite=True)
        config = {
            "format": _CONFIG_FORMAT,
            "version": _CONFIG_VERSION,
            "collection": index_name,
            "metric": self.metric,
            "bits": self._collection.stats().get("bits"),
            "dim": self._collection.dim,
            "embedding": type(self.embedding).__name__,
            "retrieval_mode": self.retrieval_mode.value,
            "hybrid_alpha": self.hybrid_alpha,
            "fusion": self.fusion,
        }
        tmp_json = folder / f".{index_name}.json.tmp"
        tmp_json.write_text(json.dumps(config, indent=2))
        tmp_json.replace(folder / f"{index_name}.json")

    @classmethod
    def load_local(
        cls, folder_path: str | os.PathLike, embeddings: Embeddings, index_name: str = "index", **kwargs: Any
    ) -> Self:
        """Open a store written by :meth:`save_local`. Only JSON and the collection's SQLite/``.npy`` files are
        read (no pickle, so no ``allow_dangerous_deserialization`` switch). The loaded store persists to the
        saved collection: later adds and deletes are durable there. The saved ``retrieval_mode``,
        ``hybrid_alpha`` and ``fusion`` are restored unless ``**kwargs`` (constructor options) give others.

        ``read_only``: ``None`` (default) opens for writing when no other process writes the collection, and
        read-only when one does (a web worker beside an ingest; writes then raise
        :class:`~spann_vectorstore.ReadOnlyError` naming that process); ``True`` always read-only; ``False``
        raises :class:`~spann_vectorstore.CollectionLockedError` when another process writes it."""
        if "allow_dangerous_deserialization" in kwargs:
            msg = "allow_dangerous_deserialization is not needed: load_local never unpickles anything"
            raise TypeError(msg)
        folder = Path(folder_path)
        config_path = folder / f"{index_name}.json"
        if not config_path.exists():
            msg = f"no saved SPANNVectorStore at {str(config_path)!r}"
            raise FileNotFoundError(msg)
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError as exc:
            msg = f"{str(config_path)!r} is not valid JSON: {exc}"
            raise ValueError(msg) from None
        if not isinstance(config, dict) or config.get("format") != _CONFIG_FORMAT:
            msg = f"{str(config_path)!r} was not written by SPANNVectorStore.save_local"
            raise ValueError(msg)
        if config.get("version") != _CONFIG_VERSION:
            msg = f"{str(config_path)!r} has format version {config.get('version')!r}; expected {_CONFIG_VERSION}"
            raise ValueError(msg)
        path = folder / str(config["collection"])
        if not (path / "docs.sqlite").exists():
            msg = f"the collection {str(path)!r} named in {str(config_path)!r} is missing"
            raise FileNotFoundError(msg)
        saved = {key: config[key] for key in ("retrieval_mode", "hybrid_alpha", "fusion") if key in config}
        options = {**saved, **kwargs}
        read_only = options.pop("read_only", None)
        if read_only is not None:
            return cls(embeddings, persist_directory=path, metric=config["metric"], read_only=read_only, **options)
        try:
            return cls(embeddings, persist_directory=path, metric=config["metric"], **options)
        except CollectionLockedError as exc:
            store = cls(embeddings, persist_directory=path, metric=config["metric"], read_only=True, **options)
            store._read_only_reason = f" (opened read-only by load_local: {exc})"
            return store


__all__ = ["RetrievalMode", "SPANNVectorStore"]
