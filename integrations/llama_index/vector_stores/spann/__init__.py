"""LlamaIndex vector store over a spann_vectorstore Collection: ``from llama_index.vector_stores.spann import
SPANNVectorStore``."""

from llama_index.vector_stores.spann.base import SPANNVectorStore, metadata_filters_to_dict

__all__ = ["SPANNVectorStore", "metadata_filters_to_dict"]
