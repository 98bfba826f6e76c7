"""LangChain VectorStore over a spann_vectorstore Collection: ``from langchain_spann import SPANNVectorStore``."""

from langchain_spann.vectorstores import RetrievalMode, SPANNVectorStore

__all__ = ["RetrievalMode", "SPANNVectorStore"]
