"""langchain-tests' standard ``VectorStoreIntegrationTests`` (sync and async) against SPANNVectorStore.

Run for each metric: ``cosine`` and ``l2`` rank an exact match first for any embedding; ``ip`` only does so
for normalised embeddings, which the suite's fake 6-d embeddings are not. The ``indexed`` variants build the
quantized SPANN index from the first document on (``index_threshold=1``) instead of searching exactly.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from langchain_spann import SPANNVectorStore
from langchain_tests.integration_tests import VectorStoreIntegrationTests

CONFIGS = {
    "cosine": {"metric": "cosine"},
    "l2": {"metric": "l2"},
    "cosine-indexed-4bit": {"metric": "cosine", "bits": 4, "index_threshold": 1},
    "l2-indexed-1bit": {"metric": "l2", "bits": 1, "index_threshold": 1},
}


class TestSPANNVectorStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture(params=list(CONFIGS))
    def vectorstore(self, request: pytest.FixtureRequest) -> Iterator[SPANNVectorStore]:  # type: ignore[override]
        store = SPANNVectorStore(self.get_embeddings(), **CONFIGS[request.param])
        try:
            yield store
        finally:
            store.close()


class TestSPANNVectorStorePersistentStandard(VectorStoreIntegrationTests):
    """The same suite on a persistent collection (SQLite + index snapshots in ``tmp_path``)."""

    @pytest.fixture()
    def vectorstore(self, tmp_path) -> Iterator[SPANNVectorStore]:  # type: ignore[override]
        store = SPANNVectorStore(self.get_embeddings(), persist_directory=tmp_path / "idx", metric="cosine")
        try:
            yield store
        finally:
            store.close()
