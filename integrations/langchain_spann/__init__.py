"""LangChain VectorStore over a spann_vectorstore Collection."""
