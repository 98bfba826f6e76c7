"""``CollectionLike``: the public protocol of a document collection.

:class:`~spann_vectorstore.Collection` and the Ray :class:`~spann_vectorstore.distributed.ShardedCollection`
both satisfy it; the LangChain and LlamaIndex adapters, the command line and the Ray helpers are written
against it (and nothing else: no private attribute), so either class, or a user's own wrapper with these
members, can be passed where a collection is expected. ``isinstance(obj, CollectionLike)`` checks that the
members exist (not their signatures); :data:`COLLECTION_MEMBERS` lists them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .collection import Hit


@runtime_checkable
class CollectionLike(Protocol):
    """Documents (id, vector, text, metadata) searchable by vector, by text (BM25) or both.

    Semantics are those of :class:`~spann_vectorstore.Collection`'s methods of the same names.
    """

    @property
    def path(self) -> Path | None:
        """The directory of a persistent collection, ``None`` in memory."""
        ...

    @property
    def dim(self) -> int | None:
        """The vector dimension, ``None`` until the first add (when not given at creation)."""
        ...

    @property
    def metric(self) -> str:
        """``"ip"``, ``"cosine"`` or ``"l2"``."""
        ...

    def add(
        self,
        vectors: Any,
        texts: Sequence[str | None] | None = None,
        metadatas: Sequence[dict[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]: ...

    def delete(
        self,
        ids: Iterable[str] | None = None,
        filter: dict[str, Any] | None = None,
        *,
        where_document: dict[str, Any] | None = None,
    ) -> int: ...

    def clear(self) -> None: ...

    def get(
        self,
        ids: Iterable[str] | None = None,
        *,
        filter: dict[str, Any] | None = None,
        where_document: dict[str, Any] | None = None,
        limit: int | None = None,
        include_vectors: bool = False,
    ) -> list[Hit]: ...

    def count(self, filter: dict[str, Any] | None = None, *, where_document: dict[str, Any] | None = None) -> int: ...

    def search(
        self,
        vector_or_vectors: Any,
        k: int = 4,
        *,
        filter: dict[str, Any] | None = None,
        where_document: dict[str, Any] | None = None,
        n_probe: int | None = None,
        include_vectors: bool = False,
        target_recall: float | None = None,
    ) -> list[Hit] | list[list[Hit]]: ...

    def text_search(
        self,
        text_or_texts: str | Sequence[str],
        k: int = 4,
        *,
        filter: dict[str, Any] | None = None,
        where_document: dict[str, Any] | None = None,
        include_vectors: bool = False,
    ) -> list[Hit] | list[list[Hit]]: ...

    def hybrid_search(
        self,
        text_or_texts: str | Sequence[str],
        vector_or_vectors: Any,
        k: int = 4,
        *,
        alpha: float = 0.5,
        fusion: str = "dbsf",
        candidates: int | None = None,
        filter: dict[str, Any] | None = None,
        where_document: dict[str, Any] | None = None,
        n_probe: int | None = None,
        include_vectors: bool = False,
        target_recall: float | None = None,
    ) -> list[Hit] | list[list[Hit]]: ...

    def stats(self) -> dict[str, Any]:
        """At least ``count``, ``dim``, ``metric`` and ``bits``; ``n_probe`` and ``index_options`` when set."""
        ...

    def optimize(self) -> None: ...

    def copy_to(self, path: str | os.PathLike, *, overwrite: bool = False, **options: Any) -> Path:
        """Write every document into a new plain Collection at ``path`` with the same settings."""
        ...

    def close(self) -> None: ...


#: The names a collection must provide (``CollectionLike``'s members), sorted.
COLLECTION_MEMBERS: tuple[str, ...] = tuple(sorted(n for n in vars(CollectionLike) if not n.startswith("_")))


def check_collection(obj: Any) -> CollectionLike:
    """``obj`` if it has every member of :class:`CollectionLike`, else ``ValueError`` naming the missing ones."""
    if not isinstance(obj, CollectionLike):
        missing = [n for n in COLLECTION_MEMBERS if not hasattr(obj, n)]
        raise ValueError(
            f"collection must provide the Collection API (spann_vectorstore.CollectionLike); "
            f"{type(obj).__name__} lacks {', '.join(missing)}"
        )
    return obj


__all__ = ["COLLECTION_MEMBERS", "CollectionLike", "check_collection"]
