"""spann-vectorstore: a quantized SPANN vector index with a durable document store for RAG."""

from ._storage import CorruptStoreError
from .collection import Collection, CollectionLockedError, Hit, ReadOnlyError
from .filters import FilterError
from .fulltext import FullTextUnavailableError
from .index import SearchResult, SpannIndex
from .protocol import CollectionLike

__all__ = [
    "Collection",
    "CollectionLike",
    "CollectionLockedError",
    "CorruptStoreError",
    "FilterError",
    "FullTextUnavailableError",
    "Hit",
    "ReadOnlyError",
    "SearchResult",
    "SpannIndex",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    """``spann_vectorstore.Embedder`` without importing the embedding module (or torch) up front."""
    if name == "Embedder":
        from .embed import Embedder

        return Embedder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
