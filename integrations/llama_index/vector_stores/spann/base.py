"""``SPANNVectorStore``: a LlamaIndex vector store over a :class:`spann_vectorstore.Collection`.

Each node is one Collection document: its ``node_id`` is the document id, its content (``MetadataMode.NONE``)
the text, its embedding the vector, and ``node_to_metadata_dict(node, remove_text=True)`` the metadata. The user
metadata therefore stays top-level and filterable, next to ``_node_content`` (the node without its text, for an
exact round trip), ``_node_type`` and ``ref_doc_id``/``doc_id``/``document_id``.

A directory is shared with LangChain (:mod:`spann_vectorstore.interop`): a row written without LlamaIndex (no
``_node_content``) is read as a ``TextNode`` with the row's metadata, whose ``node_id`` and ``ref_doc_id`` are
both the row id, so ``delete``/``delete_ref_doc`` and ``doc_ids`` reach it; LangChain hides the five keys above.

The wrapped object only needs the Collection's public methods (``add``, ``search``, ``get``, ``delete``,
``count``, ``clear``, ``close``, ``dim``, ``metric``), so a sharded collection with the same protocol works too.

Query semantics:

- ``filters``: every ``FilterOperator`` and ``FilterCondition`` (nested ``MetadataFilters`` too) is compiled
  to the core filter language and applied inside the search, so ``similarity_top_k`` results come back whenever
  that many nodes match. Semantics follow llama-index-core's ``SimpleVectorStore``
  (``build_metadata_filter_fn``), except where it raises ``TypeError`` on mismatched types (say ``GT`` 3 on a
  string): such a node simply does not match. Values compare like with like (``True`` is not ``1``), and a
  dotted key ``"a.b"`` reaches into nested metadata.
- ``doc_ids`` restrict to nodes of these reference documents (their ``ref_doc_id``), ``node_ids`` to these nodes
  (the core filter ``{"$id": {"$in": node_ids}}``): both are filters applied inside the index, in every mode.
  ``doc_ids=[]`` matches nothing (an empty id list restricts to no node, as ``node_ids=[]`` does in
  llama-index-core's ``SimpleVectorStore``, which ignores ``doc_ids``); ``node_ids=[]`` means no restriction,
  because ``VectorStoreIndex.as_retriever`` passes ``node_ids=[]`` for stores that keep the text.
- a DEFAULT-mode query without ``query_embedding`` returns up to ``similarity_top_k`` nodes matching its
  ``filters``/``doc_ids``/``node_ids`` in insertion order, with ``similarities=None`` (as the Chroma store does).
- ``similarities``: the Collection's scores for ``ip``/``cosine``; for ``l2``, ``1 / (1 + squared distance)``
  so that higher is always better.
- ``VectorStoreQueryMode.MMR``: llama-index-core's ``get_top_k_mmr_embeddings`` over the best
  ``mmr_prefetch_k`` (default ``mmr_prefetch_factor`` 4 × ``similarity_top_k``) candidates (giving both raises
  ``ValueError``, as the Chroma and Postgres stores do); ``mmr_threshold`` from the query or the query kwargs.
  Its similarities are the MMR scores, as in ``SimpleVectorStore``.
- ``VectorStoreQueryMode.TEXT_SEARCH`` and ``SPARSE`` (the same here): the Collection's full-text index, BM25
  over the words of ``query_str`` (no embedding needed; core retrievers skip it for these modes), the best
  ``sparse_top_k`` (else ``similarity_top_k``) nodes containing a query word; similarities are BM25 scores.
- ``VectorStoreQueryMode.HYBRID``: ``query_str`` and ``query_embedding`` through the Collection's
  ``hybrid_search``: ``alpha`` (``None``: 0.5; 1 = dense only, 0 = text only), ``hybrid_top_k`` (else
  ``similarity_top_k``) results, each leg's candidates ``sparse_top_k`` (else the core's ``max(k, 20)``),
  fused with the store's ``fusion`` (``"dbsf"`` default, ``"relative"``, ``"rrf"``; a ``fusion`` query
  kwarg overrides it). Similarities are the fused scores; ``alpha=1`` or a query without words give the dense
  similarities. No flag is needed to enable it (the text index is always there):
  ``index.as_retriever(vector_store_query_mode="hybrid", alpha=0.5)`` works as is.
- ``get_nodes`` returns the nodes with their embeddings (as the Qdrant store does).
"""

from __future__ import annotations

import asyncio
import json
import math
import operator
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.indices.query.embedding_utils import get_top_k_mmr_embeddings
from llama_index.core.schema import BaseNode, MetadataMode, NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    DEFAULT_PERSIST_DIR,
    DEFAULT_PERSIST_FNAME,
    BasePydanticVectorStore,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from spann_vectorstore import Collection, CollectionLike, CollectionLockedError, ReadOnlyError, fulltext
from spann_vectorstore.collection import store_directory
from spann_vectorstore.interop import decode_json, float_list, is_node_row, prebuilt, ref_doc_filter
from spann_vectorstore.protocol import check_collection
from spann_vectorstore.validation import positive_int

MANIFEST_FORMAT = "spann-vectorstore/llama-index"
MANIFEST_VERSION = 1
DEFAULT_NAMESPACE = "default"
NAMESPACE_SEP = "__"
REF_DOC_KEY = "ref_doc_id"
_DEFAULT_FNAME = f"{DEFAULT_NAMESPACE}{NAMESPACE_SEP}{DEFAULT_PERSIST_FNAME}"

_TEXT_MODES = (VectorStoreQueryMode.TEXT_SEARCH, VectorStoreQueryMode.SPARSE)
_MODES = (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR, *_TEXT_MODES, VectorStoreQueryMode.HYBRID)

_MATCH_ALL: dict[str, Any] = {}  # compiles to TRUE
_MATCH_NONE: dict[str, Any] = {"$not": {}}  # compiles to NOT TRUE


# ----------------------------------------------------------------------------------------------------------
# MetadataFilters -> core filter dict
# ----------------------------------------------------------------------------------------------------------
def _check_scalar(f: MetadataFilter, *, allow_none: bool = False) -> Any:
    v = f.value
    if v is None and allow_none:
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ValueError(f"filter {f.key!r} {f.operator.value}: the value must be a string or a number, got {v!r}")
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"filter {f.key!r} {f.operator.value}: the value must be finite, got {v!r}")
    return v


def _check_list(f: MetadataFilter) -> list[Any]:
    if not isinstance(f.value, list):
        raise ValueError(f"filter {f.key!r} {f.operator.value}: the value must be a list, got {f.value!r}")
    for x in f.value:
        if isinstance(x, bool) or not isinstance(x, (int, float, str)):
            raise ValueError(f"filter {f.key!r} {f.operator.value}: list items must be strings or numbers, got {x!r}")
    return list(f.value)


def _check_text(f: MetadataFilter) -> str:
    if not isinstance(f.value, str):
        raise ValueError(f"filter {f.key!r} {f.operator.value}: the value must be a string, got {f.value!r}")
    return f.value


def _leaf_to_dict(f: MetadataFilter) -> dict[str, Any]:
    """One ``MetadataFilter`` as a core filter that is never SQL NULL (so ``$not`` over it is exact).

    Reference semantics (``build_metadata_filter_fn``): a missing or null field matches only NE, NIN and
    IS_EMPTY; otherwise ``EQ: m == v``, ``IN: m in v``, ``CONTAINS: v in m``, ``ANY``/``ALL``: any/all
    ``x in m``, ``TEXT_MATCH``: ``v in m`` for strings, ``TEXT_MATCH_INSENSITIVE``: ``v.lower() in m.lower()``,
    ``IS_EMPTY``: missing, null, ``""`` or ``[]``.
    """
    k, op = f.key, FilterOperator(f.operator)
    if not isinstance(k, str) or not k:
        raise ValueError(f"filter key must be a non-empty string, got {k!r}")
    if op == FilterOperator.EQ:
        v = _check_scalar(f, allow_none=True)
        return _MATCH_NONE if v is None else {k: {"$eq": v}}
    if op == FilterOperator.NE:
        v = _check_scalar(f, allow_none=True)
        return _MATCH_ALL if v is None else {k: {"$ne": v}}  # core $ne matches a missing field
    if op in (FilterOperator.GT, FilterOperator.GTE, FilterOperator.LT, FilterOperator.LTE):
        core = {FilterOperator.GT: "$gt", FilterOperator.GTE: "$gte", FilterOperator.LT: "$lt"}.get(op, "$lte")
        return {k: {core: _check_scalar(f)}}
    if op == FilterOperator.IN:
        return {k: {"$in": _check_list(f)}}
    if op == FilterOperator.NIN:
        return {k: {"$nin": _check_list(f)}}  # core $nin matches a missing field
    if op == FilterOperator.CONTAINS:
        return {k: {"$contains": _check_scalar(f)}}
    if op == FilterOperator.ANY:
        vals = _check_list(f)
        return {"$or": [{k: {"$contains": x}} for x in vals]} if vals else _MATCH_NONE
    if op == FilterOperator.ALL:
        vals = _check_list(f)
        return {"$and": [{k: {"$contains": x}} for x in vals]} if vals else {k: {"$exists": True, "$ne": None}}
    if op == FilterOperator.TEXT_MATCH:
        return {k: {"$type": "string", "$contains": _check_text(f)}}
    if op == FilterOperator.TEXT_MATCH_INSENSITIVE:
        return {k: {"$type": "string", "$icontains": _check_text(f)}}
    if op == FilterOperator.IS_EMPTY:
        empty = [{k: {"$type": "null"}}, {k: {"$type": "string", "$eq": ""}}, {k: {"$size": 0}}]
        return {"$or": [{k: {"$exists": False}}, *empty]}
    raise ValueError(f"unsupported filter operator {op!r}")  # pragma: no cover - every operator is handled


def metadata_filters_to_dict(filters: MetadataFilters | None) -> dict[str, Any] | None:
    """Translate LlamaIndex ``MetadataFilters`` (nested, AND/OR/NOT) to the core filter language.

    ``None`` when there is no constraint. ``NOT`` means "none of the filters match", as in llama-index-core.
    Raises ``ValueError`` for unsupported values (a list for ``EQ``, a scalar for ``IN``, ...).
    """
    if filters is None:
        return None
    if not isinstance(filters, MetadataFilters):
        raise ValueError(f"filters must be MetadataFilters, got {type(filters).__name__}")
    out = _group_to_dict(filters)
    return None if out == _MATCH_ALL else out


def _group_to_dict(filters: MetadataFilters) -> dict[str, Any]:
    subs = []
    for f in filters.filters:
        if isinstance(f, MetadataFilters):
            subs.append(_group_to_dict(f))
        elif isinstance(f, MetadataFilter):
            subs.append(_leaf_to_dict(f))
        else:
            raise ValueError(f"filters must hold MetadataFilter or MetadataFilters, got {type(f).__name__}")
    if not subs:  # an empty group constrains nothing, whatever its condition (as in llama-index-core)
        return _MATCH_ALL
    cond = FilterCondition(filters.condition or FilterCondition.AND)
    if cond == FilterCondition.AND:
        return subs[0] if len(subs) == 1 else {"$and": subs}
    either = subs[0] if len(subs) == 1 else {"$or": subs}
    return either if cond == FilterCondition.OR else {"$not": either}


def _and(*parts: dict[str, Any] | None) -> dict[str, Any] | None:
    kept = [p for p in parts if p is not None]
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else {"$and": kept}


# ----------------------------------------------------------------------------------------------------------
# the store
# ----------------------------------------------------------------------------------------------------------
def _depth(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The search depth a query's kwargs ask for (a retriever's ``vector_store_kwargs``): ``n_probe`` and/or
    ``target_recall``, passed on to the Collection (which checks them)."""
    return {key: kwargs[key] for key in ("n_probe", "target_recall") if kwargs.get(key) is not None}


class SPANNVectorStore(BasePydanticVectorStore):
    """LlamaIndex vector store backed by a SPANN + RaBitQ :class:`~spann_vectorstore.Collection`.

    Parameters
    ----------
    persist_dir: directory of a durable Collection (created or reopened); ``None`` keeps it in memory.
        Every ``add``/``delete`` is on disk when it returns; :meth:`persist` is only needed to write a copy
        elsewhere (``StorageContext.persist``).
    collection_name: a named collection in ``persist_dir`` (as the Qdrant and Chroma stores'
        ``collection_name``): several, each with its own metric and dimension, share one directory
        (``<persist_dir>/collections/<name>/``; ``Collection.list_collections(persist_dir)`` lists them,
        ``Collection.drop_collection(persist_dir, name)`` drops one). ``None`` (default) is the store in
        ``persist_dir`` itself. In memory it is only a label.
    metric: ``"ip"`` (normalised embeddings, the default), ``"cosine"`` or ``"l2"``.
    bits: RaBitQ bits per dimension of the index codes (1, 2, 4, 8).
    collection: an existing Collection (or an object with the same public methods) instead of creating one;
        it stays the caller's to close.
    fusion: how HYBRID queries fuse the two legs: ``"dbsf"`` (default), ``"relative"`` or ``"rrf"``; kept by
        :meth:`persist`.
    collection_kwargs: more :class:`~spann_vectorstore.Collection` options (``n_probe``, ``index_threshold``, ...).

    read_only: open ``persist_dir`` read-only, beside the one process that writes it (a web worker while an
        ingest runs): no lock, nothing written, each query sees every write acknowledged before it began;
        ``add``/``delete``/``delete_nodes``/``clear`` raise :class:`~spann_vectorstore.ReadOnlyError`.

    ``SPANNVectorStore.from_persist_dir(dir)`` reopens a store after ``StorageContext.persist(dir)`` or a store
    created with ``persist_dir=dir``, also while another process writes it (then read-only, see
    :meth:`from_persist_path`). Within one process, stores over the same directory share one open Collection
    (so re-running a notebook cell works); each store's :meth:`close` releases its reference.
    """

    stores_text: bool = True
    is_embedding_query: bool = True
    flat_metadata: bool = False

    persist_dir: str | None = None
    collection_name: str | None = None
    metric: str = "ip"
    bits: int = 1
    fusion: str = "dbsf"
    read_only: bool = False

    _collection: CollectionLike = PrivateAttr()
    _owns_collection: bool = PrivateAttr(default=True)

    def __init__(
        self,
        persist_dir: str | os.PathLike | None = None,
        *,
        collection_name: str | None = None,
        metric: str = "ip",
        bits: int = 1,
        collection: CollectionLike | None = None,
        fusion: str = "dbsf",
        read_only: bool = False,
        **collection_kwargs: Any,
    ) -> None:
        fulltext.check_fusion(fusion, 0.5)
        if collection is not None and (
            persist_dir is not None or collection_name is not None or collection_kwargs or read_only
        ):
            raise ValueError("pass either collection= or persist_dir/collection_name/collection options, not both")
        if collection is None:
            if read_only:
                collection_kwargs["read_only"] = True
            collection = Collection(persist_dir, name=collection_name, metric=metric, bits=bits, **collection_kwargs)
            owns = True
            path = collection.path
        else:
            collection = check_collection(collection)
            owns = False
            path = collection.path
        super().__init__(
            persist_dir=str(path) if path is not None else None,  # the store's own directory
            collection_name=getattr(collection, "name", None),
            metric=str(collection.metric),
            bits=int(collection.stats().get("bits", bits)),
            fusion=fusion,
            read_only=bool(getattr(collection, "read_only", False)),
        )
        self._collection = collection
        self._owns_collection = owns
        self._collection_kwargs = {k: v for k, v in collection_kwargs.items() if k != "read_only"}

    @classmethod
    def class_name(cls) -> str:
        return "SPANNVectorStore"

    @property
    def client(self) -> CollectionLike:
        """The wrapped Collection."""
        return self._collection

    @property
    def collection(self) -> CollectionLike:
        """The wrapped Collection."""
        return self._collection

    def _coll(self) -> CollectionLike:
        """The wrapped Collection on the query path: ``self._collection`` goes through pydantic's
        ``__getattr__`` for private attributes (~1.6 us a read); this reads where pydantic keeps it (~0.05 us)."""
        return self.__pydantic_private__["_collection"]

    def close(self) -> None:
        """Close the Collection this store opened (a ``collection=`` passed in stays open). Idempotent."""
        if self._owns_collection:
            self._collection.close()

    def __enter__(self) -> SPANNVectorStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def count(self, filters: MetadataFilters | None = None) -> int:
        """Number of stored nodes (matching ``filters`` when given)."""
        return self._collection.count(filter=metadata_filters_to_dict(filters))

    # ------------------------------------------------------------------------------------------------------
    # writes
    # ------------------------------------------------------------------------------------------------------
    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Add (or replace, by node id) nodes with embeddings; returns their ids. Durable when it returns."""
        nodes = list(nodes)
        if not nodes:
            return []
        last = {n.node_id: n for n in nodes}  # a node id given twice: the last one wins (upsert)
        batch = list(last.values())
        vectors = []
        for node in batch:
            emb = node.embedding
            if emb is None:
                raise ValueError(f"node {node.node_id!r} has no embedding; embed it before adding")
            vectors.append(emb)
        dims = {len(v) for v in vectors}
        dim = self._collection.dim
        if len(dims) > 1:
            raise ValueError(f"nodes have embeddings of different dimensions {sorted(dims)}")
        (got,) = dims
        if dim is not None and got != dim:
            raise ValueError(f"embeddings have dimension {got}, but this store holds {dim}-dimensional vectors")
        texts = [node.get_content(metadata_mode=MetadataMode.NONE) for node in batch]
        metadatas = [node_to_metadata_dict(n, remove_text=True, flat_metadata=self.flat_metadata) for n in batch]
        self._collection.add(
            np.asarray(vectors, dtype=np.float32), texts=texts, metadatas=metadatas, ids=[n.node_id for n in batch]
        )
        return [n.node_id for n in nodes]

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the reference document ``ref_doc_id`` (a document written without LlamaIndex
        is its own reference document)."""
        if not isinstance(ref_doc_id, str):
            raise ValueError(f"ref_doc_id must be a string, got {ref_doc_id!r}")
        self._collection.delete(filter=ref_doc_filter([ref_doc_id]))

    def delete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        """Delete nodes by id and/or filters (both: the listed nodes that match). ``node_ids=[]`` deletes
        nothing; with neither argument this raises (use :meth:`clear` to delete everything)."""
        ids = _id_list(node_ids)
        flt = metadata_filters_to_dict(filters)
        if ids is None and filters is None:
            raise ValueError("delete_nodes needs node_ids and/or filters; use clear() to delete every node")
        if ids is not None and not ids:
            return
        if ids is None and flt is None:  # filters that constrain nothing: every node matches (as in llama-index)
            self.clear()
            return
        self._collection.delete(ids=ids, filter=flt)

    def clear(self, **kwargs: Any) -> None:
        """Delete every node (the dimension and settings are kept). Extra keyword arguments (such as the
        ``index_id`` llama-index passes to some stores) are accepted and ignored, as by the Chroma store."""
        self._collection.clear()

    # ------------------------------------------------------------------------------------------------------
    # reads
    # ------------------------------------------------------------------------------------------------------
    def get_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **kwargs: Any,
    ) -> list[BaseNode]:
        """Nodes by id (in the order given, unknown ids skipped) and/or by filters; all nodes with neither.
        Extra keyword arguments (``index_id``, ...) are accepted and ignored, as by the Chroma store."""
        ids = _id_list(node_ids)
        if ids is not None and not ids:
            return []
        hits = self._collection.get(ids=ids, filter=metadata_filters_to_dict(filters), include_vectors=True)
        return [_hit_to_node(h, embedding=True) for h in hits]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Nodes for ``query`` in its mode: DEFAULT and MMR (``query_embedding``), TEXT_SEARCH and SPARSE
        (BM25 over ``query_str``), HYBRID (both, fused); see the module docstring."""
        mode = query.mode
        try:
            mode = VectorStoreQueryMode(mode)
        except ValueError:
            pass
        if mode not in _MODES:
            names = ", ".join(repr(m.value) for m in _MODES)
            raise ValueError(f"SPANNVectorStore supports query modes {names}, not {getattr(mode, 'value', mode)!r}")
        k = positive_int(query.similarity_top_k, "similarity_top_k")
        doc_ids, node_ids = _id_list(query.doc_ids, "doc_ids"), _id_list(query.node_ids)
        flt = _and(
            metadata_filters_to_dict(query.filters),
            ref_doc_filter(doc_ids) if doc_ids is not None else None,
            {"$id": {"$in": node_ids}} if node_ids else None,  # retrievers pass node_ids=[] for "all"
        )
        if mode in _TEXT_MODES or mode == VectorStoreQueryMode.HYBRID:
            return self._text_query(mode, query, k, flt, kwargs)
        if query.query_embedding is None and mode == VectorStoreQueryMode.DEFAULT:
            hits = self._collection.get(filter=flt, limit=k)  # Chroma's store: the first matches, no scores
            return VectorStoreQueryResult(
                nodes=[_hit_to_node(h) for h in hits], similarities=None, ids=[h.id for h in hits]
            )
        q = self._query_vector(query.query_embedding)
        if q is None:  # nothing stored yet
            return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])

        if mode == VectorStoreQueryMode.MMR:
            prefetch_k = kwargs.get("mmr_prefetch_k")
            if prefetch_k is not None and kwargs.get("mmr_prefetch_factor") is not None:
                raise ValueError("'mmr_prefetch_factor' and 'mmr_prefetch_k' cannot coexist")
            if prefetch_k is None:
                factor = kwargs.get("mmr_prefetch_factor", 4.0)
                if not isinstance(factor, (int, float)) or factor < 1:
                    raise ValueError(f"mmr_prefetch_factor must be a number >= 1, got {factor!r}")
                prefetch_k = math.ceil(k * factor)
            if isinstance(prefetch_k, bool) or not isinstance(prefetch_k, int) or prefetch_k < k:
                raise ValueError(f"mmr_prefetch_k must be an integer >= similarity_top_k, got {prefetch_k!r}")
            threshold = kwargs.get("mmr_threshold", query.mmr_threshold)
            if threshold is not None and (
                isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1
            ):
                raise ValueError(f"mmr_threshold must be a number in [0, 1], got {threshold!r}")
            hits, _ = self._candidates(q, prefetch_k, flt, vectors=True, depth=_depth(kwargs))
            if not hits:
                return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
            sims, ids = get_top_k_mmr_embeddings(
                q.tolist(),
                [h.vector.tolist() for h in hits],
                similarity_top_k=k,
                embedding_ids=[h.id for h in hits],
                mmr_threshold=threshold,
            )
            by_id = {h.id: h for h in hits}
            hits = [by_id[i] for i in ids]
            sims = [float(s) for s in sims]
        else:
            hits, sims = self._candidates(q, k, flt, vectors=False, depth=_depth(kwargs))
        return VectorStoreQueryResult(
            nodes=[_hit_to_node(h) for h in hits], similarities=list(sims), ids=[h.id for h in hits]
        )

    def _text_query(
        self,
        mode: VectorStoreQueryMode,
        query: VectorStoreQuery,
        k: int,
        flt: dict[str, Any] | None,
        kwargs: dict[str, Any],
    ) -> VectorStoreQueryResult:
        """TEXT_SEARCH/SPARSE (BM25 scores) and HYBRID (fused scores) over ``query.query_str``."""
        text = query.query_str
        if not isinstance(text, str):
            raise ValueError(f"query mode {mode.value!r} needs query.query_str (the query text), got {text!r}")
        sparse_k = None if query.sparse_top_k is None else positive_int(query.sparse_top_k, "sparse_top_k")
        if mode in _TEXT_MODES:
            top = sparse_k or k
            hits = self._collection.text_search(text, top, filter=flt)
            sims = [float(h.score) for h in hits]
        else:
            top = k if query.hybrid_top_k is None else positive_int(query.hybrid_top_k, "hybrid_top_k")
            alpha = 0.5 if query.alpha is None else query.alpha
            fusion = kwargs.get("fusion", self.fusion)
            q = self._query_vector(query.query_embedding)
            if q is None:  # nothing stored yet
                return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
            opts = {"alpha": alpha, "fusion": fusion, "candidates": sparse_k, **_depth(kwargs)}
            hits = self._collection.hybrid_search(text, q, top, filter=flt, **opts)
            dense_scores = alpha == 1 or not fulltext.terms(text)  # the core falls back to dense search
            sims = [self._similarity(h.score) if dense_scores else float(h.score) for h in hits]
        return VectorStoreQueryResult(
            nodes=[_hit_to_node(h) for h in hits], similarities=sims, ids=[h.id for h in hits]
        )

    def _query_vector(self, embedding: Any) -> np.ndarray | None:
        if embedding is None:
            raise ValueError("SPANNVectorStore needs query.query_embedding (an embedding query)")
        q = float_list(embedding)
        if q is None:
            try:
                q = np.asarray(embedding, dtype=np.float32)
            except (TypeError, ValueError):
                raise ValueError("query_embedding must be a list of floats") from None
        if q.ndim != 1 or q.size == 0:
            raise ValueError(f"query_embedding must be a non-empty list of floats, got shape {q.shape}")
        if not math.isfinite(float(np.dot(q, q))) and not np.isfinite(q).all():  # (a finite dot: all finite)
            raise ValueError("query_embedding holds NaN or infinite values")
        dim = self._coll().dim
        if dim is None:
            return None
        if q.shape[0] != dim:
            raise ValueError(f"query_embedding has dimension {q.shape[0]}, but this store holds {dim}-d vectors")
        return q

    def _candidates(
        self, q: np.ndarray, k: int, flt: dict[str, Any] | None, *, vectors: bool, depth: dict[str, Any]
    ) -> tuple[list[Any], list[float]]:
        """Best ``k`` hits from the index and their similarities (higher is better)."""
        hits = self._coll().search(q, k=int(k), filter=flt, include_vectors=vectors, **depth)
        if self.metric == "l2":
            return hits, [self._similarity(h.score) for h in hits]
        return hits, [float(h.score) for h in hits]

    def _similarity(self, score: float) -> float:
        return 1.0 / (1.0 + max(float(score), 0.0)) if self.metric == "l2" else float(score)

    # ------------------------------------------------------------------------------------------------------
    # async: the Collection calls run in a worker thread (searches run concurrently, writes serialise)
    # ------------------------------------------------------------------------------------------------------
    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        return await asyncio.to_thread(self.add, nodes, **kwargs)

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete, ref_doc_id, **delete_kwargs)

    async def adelete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        await asyncio.to_thread(self.delete_nodes, node_ids, filters, **delete_kwargs)

    async def aget_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **kwargs: Any,
    ) -> list[BaseNode]:
        return await asyncio.to_thread(self.get_nodes, node_ids, filters)

    async def aclear(self, **kwargs: Any) -> None:
        await asyncio.to_thread(self.clear)

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await asyncio.to_thread(self.query, query, **kwargs)

    # ------------------------------------------------------------------------------------------------------
    # persistence
    # ------------------------------------------------------------------------------------------------------
    def persist(
        self,
        persist_path: str = os.path.join(
            DEFAULT_PERSIST_DIR, f"{DEFAULT_NAMESPACE}{NAMESPACE_SEP}{DEFAULT_PERSIST_FNAME}"
        ),
        fs: Any = None,
    ) -> None:
        """Make the store reloadable from ``persist_path`` (``StorageContext.persist(dir)`` passes
        ``dir/default__vector_store.json``): writes a small JSON manifest there, naming the Collection
        directory. A Collection already in that directory (``persist_dir=dir``, or a previous copy) is used as
        is, since it is durable; otherwise (in memory, elsewhere on disk, or another kind of collection such
        as a sharded one) a full copy is written next to the manifest (``dir/default__vector_store.spann/``, a
        plain Collection), replacing an older copy. Local filesystem only."""
        _check_local_fs(fs)
        manifest = Path(persist_path)
        manifest.parent.mkdir(parents=True, exist_ok=True)
        here = self._collection.path if isinstance(self._collection, Collection) else None  # others: a copy
        here = Path(here).resolve() if here is not None else None
        copy_dir = manifest.with_name(manifest.name.removesuffix(".json") + ".spann")
        name = self.collection_name if here is not None else None
        own = store_directory(manifest.parent, name).resolve()
        if self.read_only and here is not None and here in (own, copy_dir.resolve()):
            if manifest.is_file():  # the writer's manifest already names this collection: nothing to write
                return
            msg = f"this store is read-only: persist() would write {str(manifest)!r} into its collection's directory"
            raise ReadOnlyError(msg)
        if here is not None and here == own:
            rel = "."  # the collection (named or not) of this directory: durable as it is
        elif here is not None and here == copy_dir.resolve():
            rel, name = copy_dir.name, None
        else:
            self._collection.copy_to(copy_dir, overwrite=True)
            rel, name = copy_dir.name, None
        doc = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "class_name": self.class_name(),
            "collection": rel,
            "collection_name": name,
            "metric": self.metric,
            "bits": self.bits,
            "fusion": self.fusion,
            "dim": self._collection.dim,
            "count": self._collection.count(),
        }
        tmp = manifest.with_name(f".{manifest.name}.{uuid.uuid4().hex[:8]}.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, manifest)

    @classmethod
    def from_persist_path(cls, persist_path: str | os.PathLike, fs: Any = None, **kwargs: Any) -> SPANNVectorStore:
        """Reopen a store from a manifest written by :meth:`persist` (or from a Collection directory).
        ``kwargs``: Collection options such as ``n_probe``. ``read_only``: ``None`` (default) opens for writing
        when no other process writes the collection and read-only when one does (users rarely close stores:
        the process that wrote and persisted it may still hold it); ``True`` always read-only; ``False``
        raises :class:`~spann_vectorstore.CollectionLockedError` when another process writes it."""
        _check_local_fs(fs)
        path = Path(persist_path)
        if path.is_dir():
            if not (store_directory(path, kwargs.get("collection_name")) / "docs.sqlite").exists():
                named = kwargs.get("collection_name")
                raise FileNotFoundError(
                    f"no SPANNVectorStore collection{f' named {named!r}' if named else ''} in {str(path)!r}"
                )
            return cls._open_fallback(path, kwargs)
        if not path.is_file():
            raise FileNotFoundError(f"no SPANNVectorStore at {str(path)!r}")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            doc = None
        if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"{str(path)!r} is not a SPANNVectorStore manifest (written by SPANNVectorStore.persist)")
        if doc.get("version") != MANIFEST_VERSION:
            raise ValueError(f"unsupported SPANNVectorStore manifest version {doc.get('version')!r}")
        where = (path.parent / doc["collection"]).resolve()
        saved = {"fusion": doc["fusion"]} if "fusion" in doc else {}
        if doc.get("collection_name") is not None:
            saved["collection_name"] = doc["collection_name"]
        if not (store_directory(where, saved.get("collection_name")) / "docs.sqlite").exists():
            raise FileNotFoundError(f"the manifest {str(path)!r} names {str(where)!r}, which holds no collection")
        return cls._open_fallback(where, {"metric": doc["metric"], "bits": int(doc["bits"]), **saved, **kwargs})

    @classmethod
    def _open_fallback(cls, path: Path, options: dict[str, Any]) -> SPANNVectorStore:
        """Open for writing, or read-only when another process writes the collection (``read_only=None``)."""
        options = dict(options)
        read_only = options.pop("read_only", None)
        if read_only is not None:
            return cls(path, read_only=read_only, **options)
        try:
            return cls(path, **options)
        except CollectionLockedError:
            return cls(path, read_only=True, **options)

    @classmethod
    def from_persist_dir(
        cls,
        persist_dir: str | os.PathLike = DEFAULT_PERSIST_DIR,
        namespace: str = DEFAULT_NAMESPACE,
        fs: Any = None,
        **kwargs: Any,
    ) -> SPANNVectorStore:
        """Reopen a store after ``StorageContext.persist(persist_dir)`` (reads
        ``persist_dir/{namespace}__vector_store.json``) or one created with ``persist_dir=persist_dir``."""
        _check_local_fs(fs)
        manifest = Path(persist_dir) / f"{namespace}{NAMESPACE_SEP}{DEFAULT_PERSIST_FNAME}"
        if manifest.is_file():
            return cls.from_persist_path(manifest, **kwargs)
        if (store_directory(persist_dir, kwargs.get("collection_name")) / "docs.sqlite").exists():
            return cls.from_persist_path(persist_dir, **kwargs)
        raise FileNotFoundError(f"no SPANNVectorStore in {str(persist_dir)!r} (looked for {manifest.name})")

    @classmethod
    def from_namespaced_persist_dir(
        cls, persist_dir: str | os.PathLike = DEFAULT_PERSIST_DIR, fs: Any = None, **kwargs: Any
    ) -> dict[str, SPANNVectorStore]:
        """Every store persisted in ``persist_dir`` by namespace (``{namespace}__vector_store.json``
        manifests written by :meth:`persist`), as ``SimpleVectorStore.from_namespaced_persist_dir``. Each
        opens its collection: close them when done."""
        _check_local_fs(fs)
        out: dict[str, SPANNVectorStore] = {}
        suffix = f"{NAMESPACE_SEP}{DEFAULT_PERSIST_FNAME}"
        for manifest in sorted(Path(persist_dir).glob(f"*{suffix}")):
            try:
                doc = json.loads(manifest.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(doc, dict) and doc.get("format") == MANIFEST_FORMAT:
                out[manifest.name.removesuffix(suffix)] = cls.from_persist_path(manifest, **kwargs)
        if not out:
            raise FileNotFoundError(f"no SPANNVectorStore manifests in {str(persist_dir)!r}")
        return out


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------
def _id_list(ids: Any, name: str = "node_ids") -> list[str] | None:
    if ids is None:
        return None
    if isinstance(ids, str) or not isinstance(ids, (list, tuple, set)):
        raise ValueError(f"{name} must be a list of strings, got {type(ids).__name__}")
    out = list(ids)
    for i in out:
        if not isinstance(i, str):
            raise ValueError(f"{name} must be strings, got {i!r}")
    return out


#: ``TextNode(id_=..., text=..., metadata=..., relationships=...)`` and ``RelatedNodeInfo(node_id=...)``
#: without validating each one (equal to the validated ones: see :func:`spann_vectorstore.interop.prebuilt`;
#: ~1 us a node against ~5 us)
_text_node = prebuilt(TextNode, id_="", text="", metadata={}, relationships={})
_related = prebuilt(RelatedNodeInfo, node_id="")
_SOURCE = NodeRelationship.SOURCE


#: a node row's ``TextNode`` and its relations built around the dicts decoded from its JSON, without validation
#: (see :func:`_stored_text_node`); None when this llama-index's models have other fields
_adopt_node = getattr(
    prebuilt(
        TextNode,
        id_="",
        embedding=None,
        metadata={},
        excluded_embed_metadata_keys=[],
        excluded_llm_metadata_keys=[],
        relationships={},
        metadata_template="{key}: {value}",
        metadata_separator="\n",
        text="",
        mimetype="text/plain",
        start_char_idx=None,
        end_char_idx=None,
        text_template="{metadata_str}\n\n{content}",
    ),
    "adopt",
    None,
)
_adopt_related = getattr(prebuilt(RelatedNodeInfo, node_id="", node_type=None, metadata={}, hash=None), "adopt", None)
_RELATIONS = {r.value: r for r in NodeRelationship}
_str_fields = operator.itemgetter("id_", "metadata_template", "metadata_separator", "text", "mimetype", "text_template")
_other_fields = operator.itemgetter(
    "embedding", "metadata", "excluded_embed_metadata_keys", "excluded_llm_metadata_keys", "relationships"
)
_idx_fields = operator.itemgetter("start_char_idx", "end_char_idx")
_ONLY_STR = {str}
_INT_OR_NONE = ({int}, {type(None)}, {int, type(None)})


def _stored_text_node(metadata: dict[str, Any], text: str | None) -> BaseNode | None:
    """``metadata_dict_to_node(metadata, text=text)`` for the common row, ~1.5x faster (``TextNode.from_json``
    validates every field and relation: ~15 us a node with three relations, ~10 here): a ``TextNode`` whose
    JSON holds exactly this llama-index's fields in its order, each of the type validation gives it
    (strings, lists of strings, dicts, ints or None, no embedding in the JSON, one node per relation), is built
    around the decoded dicts as validation would build it. None for anything else, which the caller gives to
    llama-index itself (other node classes or versions, lists of relations, other types)."""
    if metadata.get("_node_type") != "TextNode" or _adopt_node is None or _adopt_related is None:
        return None
    try:
        data = decode_json(metadata["_node_content"])
    except (TypeError, ValueError):
        return None
    if type(data) is not dict or data.pop("class_name", None) != "TextNode":
        return None
    try:
        embedding, meta, embed_keys, llm_keys, rels = _other_fields(data)
        if set(map(type, _str_fields(data))) != _ONLY_STR or set(map(type, _idx_fields(data))) not in _INT_OR_NONE:
            return None
    except KeyError:
        return None
    if embedding is not None or type(meta) is not dict or type(rels) is not dict:
        return None
    for keys in (embed_keys, llm_keys):
        if type(keys) is not list or (keys and set(map(type, keys)) != _ONLY_STR):
            return None
    relations = {}
    for key, rel in rels.items():
        kind = _RELATIONS.get(key)
        if kind is None or type(rel) is not dict or rel.pop("class_name", None) != "RelatedNodeInfo":
            return None
        node_type, rel_meta, digest = rel.get("node_type"), rel.get("metadata"), rel.get("hash")
        if type(rel.get("node_id")) is not str or type(rel_meta) is not dict:
            return None
        if not (node_type is None or type(node_type) is str) or not (digest is None or type(digest) is str):
            return None
        info = _adopt_related(rel)
        if info is None:
            return None
        relations[kind] = info
    data["relationships"] = relations
    if text is not None:
        data["text"] = text
    return _adopt_node(data)


def _hit_to_node(hit: Any, *, embedding: bool = False) -> BaseNode:
    """The stored node (with its embedding when ``embedding``); a document added without LlamaIndex (no
    ``_node_content``) becomes a ``TextNode`` that is its own reference document (``ref_doc_id`` = its id)."""
    if is_node_row(hit.metadata):
        node = _stored_text_node(hit.metadata, hit.text)
        if node is None:
            node = metadata_dict_to_node(hit.metadata, text=hit.text)
    else:
        source = {_SOURCE: _related(node_id=hit.id)}
        node = _text_node(id_=hit.id, text=hit.text or "", metadata=dict(hit.metadata), relationships=source)
    if embedding and hit.vector is not None:
        node.embedding = [float(x) for x in hit.vector]
    return node


def _check_local_fs(fs: Any) -> None:
    if fs is None:
        return
    protocol = getattr(fs, "protocol", None)
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol or ())
    if not {"file", "local"} & set(protocols):
        raise ValueError("SPANNVectorStore persists to the local filesystem only (fs must be None or local)")


__all__ = ["SPANNVectorStore", "metadata_filters_to_dict"]
