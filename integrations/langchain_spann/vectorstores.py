"""``SPANNVectorStore``: a LangChain ``VectorStore`` over a spann_vectorstore ``Collection``."""

from __future__ import annotations

import json
import os
import shutil
import uuid
import warnings
from collections.abc import Callable, Iterable, Sequence
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

from spann_vectorstore import Collection, Hit
from spann_vectorstore.index import METRICS

#: A metadata filter: the core filter dict (see :mod:`spann_vectorstore.filters`) or a predicate on documents.
Filter = dict[str, Any] | Callable[[Document], bool] | None

_CONFIG_FORMAT = "langchain_spann.SPANNVectorStore"
_CONFIG_VERSION = 1
_SEARCH_OPTIONS = frozenset({"n_probe"})
_NORM_TOLERANCE = 1e-2


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


def _to_doc(hit: Hit) -> Document:
    return Document(id=hit.id, page_content=hit.text or "", metadata=hit.metadata)


class SPANNVectorStore(VectorStore):
    """LangChain vector store backed by a spann_vectorstore ``Collection``: a quantized SPANN index with exact
    rerank over a durable SQLite document store.

    Parameters
    ----------
    embedding: the LangChain ``Embeddings`` model used for documents and queries.
    persist_directory: directory of a persistent collection (created, or reopened if it exists); ``None``
        keeps everything in memory. Writes are durable when a call returns.
    metric: ``"ip"`` (default; for normalised embeddings, as most models produce), ``"cosine"`` or ``"l2"``.
        A reopened collection keeps the metric it was created with.
    bits: RaBitQ bits per dimension in the index (1, 2, 4 or 8); ``None`` uses the Collection default.
    collection: an existing ``Collection`` (or an object with the same public methods, such as a sharded
        collection) to wrap instead of creating one; then no other collection option may be given.
    **collection_kwargs: further ``Collection`` options (``n_probe``, ``index_threshold``, ...).

    Scores: ``similarity_search_with_score`` returns the metric's native score (similarity for ip/cosine,
    higher is better; squared L2 distance for l2, lower is better). ``similarity_search_with_relevance_scores``
    maps them into [0, 1]: ``(1 + s) / 2`` for similarities and ``1 - d / 4`` for squared distances (equal
    for unit vectors), clipped.

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
        metric: str = "ip",
        bits: int | None = None,
        collection: Any = None,
        **collection_kwargs: Any,
    ) -> None:
        if not (hasattr(embedding, "embed_documents") and hasattr(embedding, "embed_query")):
            msg = f"embedding must be a LangChain Embeddings object, got {type(embedding).__name__}"
            raise TypeError(msg)
        if not isinstance(metric, str) or metric.lower() not in METRICS:
            msg = f"unknown metric {metric!r}; expected one of 'ip', 'cosine', 'l2'"
            raise ValueError(msg)
        if collection is not None:
            given = [name for name, v in (("persist_directory", persist_directory), ("bits", bits)) if v is not None]
            given += list(collection_kwargs)
            if given:
                msg = f"pass either collection= or options to create one, not both (got {given})"
                raise ValueError(msg)
            if metric != "ip" and METRICS[metric.lower()] != collection.metric:
                msg = f"metric={metric!r} but the given collection uses {collection.metric!r}"
                raise ValueError(msg)
            self._collection = collection
        else:
            opts = dict(collection_kwargs, metric=metric)
            if bits is not None:
                opts["bits"] = bits
            self._collection = Collection(persist_directory, **opts)
        self.embedding = embedding
        self._persist_directory = Path(persist_directory) if persist_directory is not None else None
        self._warned_norm = False

    # ------------------------------------------------------------------------------------------------------
    # properties and lifecycle
    # ------------------------------------------------------------------------------------------------------
    @property
    def embeddings(self) -> Embeddings:
        return self.embedding

    @property
    def collection(self) -> Any:
        """The wrapped ``Collection`` (for ``count()``, ``clear()``, ``stats()``, ...)."""
        return self._collection

    @property
    def metric(self) -> str:
        return self._collection.metric

    def close(self) -> None:
        """Close the collection (writes a final index snapshot when persistent). Idempotent."""
        self._collection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return _l2_relevance if self.metric == "l2" else _similarity_relevance

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
        if self.metric == "ip" and not self._warned_norm and np.isfinite(arr).all():
            norms = np.linalg.norm(arr, axis=1)
            if np.abs(norms - 1.0).max() > _NORM_TOLERANCE:
                self._warned_norm = True
                warnings.warn(
                    "metric='ip' expects normalised embeddings, but these have norms "
                    f"{norms.min():.3g}..{norms.max():.3g}; rankings and relevance scores will be off. "
                    "Use metric='cosine' (or normalise the embeddings).",
                    stacklevel=3,
                )
        return arr

    def _query(self, vector: Any) -> np.ndarray:
        arr = self._matrix([vector], 1)
        return arr[0]

    @staticmethod
    def _batch_size(batch_size: Any) -> int:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            msg = f"batch_size must be a positive integer, got {batch_size!r}"
            raise ValueError(msg)
        return batch_size

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
        batch_size = self._batch_size(batch_size)
        texts_l, metas, ids_l = self._prepare(texts, metadatas, ids)
        for s in range(0, len(texts_l), batch_size):
            part = slice(s, s + batch_size)
            vectors = self._matrix(self.embedding.embed_documents(texts_l[part]), len(texts_l[part]))
            self._collection.add(vectors, texts_l[part], metas[part], ids_l[part])
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
        batch_size = self._batch_size(batch_size)
        texts_l, metas, ids_l = self._prepare(texts, metadatas, ids)
        for s in range(0, len(texts_l), batch_size):
            part = slice(s, s + batch_size)
            vectors = self._matrix(await self.embedding.aembed_documents(texts_l[part]), len(texts_l[part]))
            await run_in_executor(None, self._collection.add, vectors, texts_l[part], metas[part], ids_l[part])
        return ids_l

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
        """Delete documents by id and/or core filter dict (both: ids that also match). Unknown ids are not an
        error. To delete everything use ``store.collection.clear()``."""
        _no_extra(kwargs, "delete")
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

    # ------------------------------------------------------------------------------------------------------
    # reads
    # ------------------------------------------------------------------------------------------------------
    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Documents for ``ids`` in the order given; missing ids are skipped."""
        return [_to_doc(h) for h in self._collection.get(_id_list(ids))]

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return await run_in_executor(None, self.get_by_ids, ids)

    def _hits(self, vector: np.ndarray, k: int, filter: Filter, *, include_vectors: bool = False, **opts: Any) -> list:
        """Top-``k`` hits for one query vector; a callable filter grows the candidate set until ``k`` pass."""
        _no_extra(opts, "search", _SEARCH_OPTIONS)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
            msg = f"k must be a positive integer, got {k!r}"
            raise ValueError(msg)
        opts = {key: v for key, v in opts.items() if v is not None}
        if filter is None or isinstance(filter, dict):
            return self._collection.search(vector, k, filter=filter or None, include_vectors=include_vectors, **opts)
        if not callable(filter):
            msg = f"filter must be a dict or a callable Document -> bool, got {type(filter).__name__}"
            raise TypeError(msg)
        fetch = 4 * k
        while True:
            total = self._collection.count()
            if total == 0:
                return []
            fetch = min(fetch, total)
            hits = self._collection.search(vector, fetch, include_vectors=include_vectors, **opts)
            kept = [h for h in hits if filter(_to_doc(h))]
            if len(kept) >= k or fetch >= total:
                return kept[:k]
            fetch *= 4

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Documents nearest ``embedding`` with the metric's native score (see the class docstring)."""
        return [(_to_doc(h), h.score) for h in self._hits(self._query(embedding), k, filter, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        return self.similarity_search_with_score_by_vector(self.embedding.embed_query(query), k, filter, **kwargs)

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, filter, **kwargs)]

    def similarity_search(self, query: str, k: int = 4, filter: Filter = None, **kwargs: Any) -> list[Document]:
        return self.similarity_search_by_vector(self.embedding.embed_query(query), k, filter, **kwargs)

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        vector = await self.embedding.aembed_query(query)
        return await run_in_executor(None, self.similarity_search_with_score_by_vector, vector, k, filter, **kwargs)

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[Document]:
        return await run_in_executor(None, self.similarity_search_by_vector, embedding, k, filter, **kwargs)

    async def asimilarity_search(self, query: str, k: int = 4, filter: Filter = None, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in await self.asimilarity_search_with_score(query, k, filter, **kwargs)]

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Diverse results: ``fetch_k`` nearest candidates (after the filter), then ``k`` of them chosen by
        maximal marginal relevance (``lambda_mult`` 1: pure similarity, 0: maximum diversity)."""
        if not 0.0 <= lambda_mult <= 1.0:
            msg = f"lambda_mult must be in [0, 1], got {lambda_mult!r}"
            raise ValueError(msg)
        query = self._query(embedding)
        hits = self._hits(query, max(int(fetch_k), k), filter, include_vectors=True, **kwargs)
        if not hits:
            return []
        chosen = maximal_marginal_relevance(query, [h.vector for h in hits], lambda_mult=lambda_mult, k=k)
        return [_to_doc(hits[i]) for i in chosen]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter = None,
        **kwargs: Any,
    ) -> list[Document]:
        vector = self.embedding.embed_query(query)
        return self.max_marginal_relevance_search_by_vector(vector, k, fetch_k, lambda_mult, filter, **kwargs)

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
        return await self.amax_marginal_relevance_search_by_vector(vector, k, fetch_k, lambda_mult, filter, **kwargs)

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
        same = self._persist_directory is not None and target.exists() and self._persist_directory.samefile(target)
        if not same:
            if target.exists() and not (target / "docs.sqlite").exists():
                msg = f"{str(target)!r} exists and is not a saved collection; not overwriting it"
                raise FileExistsError(msg)
            tmp = folder / f".{index_name}.tmp-{uuid.uuid4().hex}"
            try:
                with Collection(tmp, metric=self.metric, dim=self._collection.dim) as copy:
                    ids = [h.id for h in self._collection.get()]
                    for s in range(0, len(ids), 1000):
                        hits = self._collection.get(ids[s : s + 1000], include_vectors=True)
                        if hits:
                            vectors = np.stack([h.vector for h in hits])
                            copy.add(vectors, [h.text for h in hits], [h.metadata for h in hits], [h.id for h in hits])
                old = folder / f".{index_name}.old-{uuid.uuid4().hex}"
                if target.exists():
                    target.rename(old)
                tmp.rename(target)
                shutil.rmtree(old, ignore_errors=True)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        config = {
            "format": _CONFIG_FORMAT,
            "version": _CONFIG_VERSION,
            "collection": index_name,
            "metric": self.metric,
            "dim": self._collection.dim,
            "embedding": type(self.embedding).__name__,
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
        saved collection: later adds and deletes are durable there. ``**kwargs``: constructor options."""
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
        return cls(embeddings, persist_directory=path, metric=config["metric"], **kwargs)


__all__ = ["SPANNVectorStore"]
