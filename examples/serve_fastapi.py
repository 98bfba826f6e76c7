"""A retrieval endpoint served by several worker processes over one index while an ingest writes to it.

Every worker opens the index read-only (``Collection(path, read_only=True)``): no lock, nothing written, and
each search sees every document the writer acknowledged before the request began. The one writer is any
process that opens the directory for writing, here ``spann-vectorstore ingest``::

    pip install "spann-vectorstore[embeddings,serve]"
    spann-vectorstore ingest examples/docs --index ./idx              # creates the index (records its model)
    SPANN_INDEX=./idx uvicorn examples.serve_fastapi:app --workers 2 --host 127.0.0.1 --port 8000 &
    spann-vectorstore ingest ~/notes --index ./idx                    # meanwhile: new documents appear
    curl 'http://127.0.0.1:8000/search?q=how+long+does+shipping+take&k=3'
    curl 'http://127.0.0.1:8000/search?q=refund&mode=text&filter={"source":{"$icontains":"returns"}}'

``GET /search`` takes ``q`` (the query), ``k`` (1-100, default 5), ``filter`` (a JSON metadata filter, the
core filter language), ``mode`` (``dense`` default, ``text`` = BM25, ``hybrid``) and returns
``{"query", "mode", "hits": [{"id", "score", "text", "metadata"}], "ms", "worker"}``; bad input is a 400
with the reason. ``GET /health`` returns the document count and the writer's sequence this worker reflects.
The query embedding model is the one the index records (``embedder.json``, written by ``ingest``), loaded
once per worker on its first dense or hybrid query (``SPANN_MODEL`` overrides it, same dimension).
"""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query

from spann_vectorstore import Collection, CorruptStoreError, FilterError
from spann_vectorstore.fulltext import FullTextUnavailableError

INDEX = Path(os.environ.get("SPANN_INDEX", "./idx"))
MODES = ("dense", "text", "hybrid")

_state: dict[str, Any] = {"collection": None, "embedder": None}
_lock = threading.Lock()


def collection() -> Collection:
    """This worker's read-only handle, opened on first use (the index may not exist when the server starts)."""
    with _lock:
        if _state["collection"] is None:
            try:
                _state["collection"] = Collection(INDEX, read_only=True)
            except FileNotFoundError:
                raise HTTPException(503, f"no index at {str(INDEX)!r} yet (run spann-vectorstore ingest)") from None
        return _state["collection"]


def embedder() -> Any:
    with _lock:
        if _state["embedder"] is None:
            from spann_vectorstore.embed import Embedder
            from spann_vectorstore.ingest import read_index_info

            info = read_index_info(INDEX) or {}
            model = os.environ.get("SPANN_MODEL") or info.get("model")
            _state["embedder"] = Embedder(model, progress=False)
            _state["embed_lock"] = threading.Lock()
        return _state["embedder"]


def embed(text: str) -> Any:
    emb = embedder()
    with _state["embed_lock"]:  # one model per worker; requests run on the threadpool
        return emb.embed_query(text)


@asynccontextmanager
async def lifespan(app: FastAPI):
    yield
    if _state["collection"] is not None:
        _state["collection"].close()


app = FastAPI(title="spann-vectorstore retrieval", lifespan=lifespan)


@app.get("/search")
def search(
    q: str = Query(..., min_length=1, max_length=10_000),
    k: int = Query(5, ge=1, le=100),
    filter: str | None = Query(None, description="JSON metadata filter"),
    mode: str = Query("dense"),
) -> dict[str, Any]:
    if mode not in MODES:
        raise HTTPException(400, f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    flt = None
    if filter:
        try:
            flt = json.loads(filter)
        except ValueError as exc:
            raise HTTPException(400, f"filter is not JSON: {exc}") from None
        if not isinstance(flt, dict):
            raise HTTPException(400, "filter must be a JSON object")
    col = collection()
    t0 = time.perf_counter()
    try:
        if mode == "text":
            hits = col.text_search(q, k=k, filter=flt)
        elif mode == "hybrid":
            hits = col.hybrid_search(q, embed(q), k=k, filter=flt)
        else:
            hits = col.search(embed(q), k=k, filter=flt)
    except (FilterError, FullTextUnavailableError) as exc:
        raise HTTPException(400, str(exc)) from None
    except CorruptStoreError as exc:
        raise HTTPException(503, str(exc)) from None
    return {
        "query": q,
        "mode": mode,
        "hits": [{"id": h.id, "score": h.score, "text": h.text, "metadata": h.metadata} for h in hits],
        "ms": round((time.perf_counter() - t0) * 1000, 2),
        "worker": os.getpid(),
    }


@app.get("/health")
def health() -> dict[str, Any]:
    col = collection()
    st = col.stats()
    return {"documents": st["count"], "seq": st["follower"]["seq"], "worker": os.getpid()}
