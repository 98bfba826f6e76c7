"""LlamaIndex vector store over a spann_vectorstore Collection."""
