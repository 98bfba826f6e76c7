"""spann-vectorstore: a quantized SPANN vector index with a durable document store for RAG."""

from .index import SearchResult, SpannIndex

__all__ = ["SearchResult", "SpannIndex"]
__version__ = "0.1.0"
