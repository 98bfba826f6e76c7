"""Scale out on Ray: a sharded :class:`~spann_vectorstore.Collection` and distributed embedding.

:class:`ShardedCollection` keeps ``num_shards`` full, persistent Collections, each owned by one Ray actor
(``path/shard-<i>``, on the disk of the node the actor runs on). Every document id goes to one shard by a
stable hash (:func:`shard_for`: 64-bit BLAKE2b of the UTF-8 id, modulo the shard count; never Python's
``hash()``, which changes per process), so an upsert by id always lands where the old version is. The layout is
recorded in ``path/sharding.json``; reopening with another shard count raises (no resharding).

Search fans out to all shards at once (one call per shard, a whole query batch in that call) and merges the
per-shard top-k into the global top-k: the global best k are among the union of every shard's best k, so the
merge is exact whenever the shards' answers are (collections below ``index_threshold`` search exactly).
Ties are ordered by id, so the order is deterministic.

Full-text and hybrid search fan out the same way. ``text_search``: every shard ranks its own documents by BM25
(SQLite FTS5) and returns its top k; the driver merges by score. BM25's statistics (IDF, average document
length) are each shard's own: with ids routed by hash every shard is a random sample of the collection, so
its statistics are close to the global ones, but documents of near-equal score on different shards may swap
places relative to one Collection. No statistics round (global document frequencies collected first, then
sent with the query) is done: FTS5's ``bm25()`` takes no external statistics, so it would mean scoring in
Python. ``hybrid_search``: every shard returns its top ``candidates`` of each leg with raw scores (its
``search`` and ``text_search``, one call), the driver merges each leg into the global top ``candidates`` and
fuses once (:func:`spann_vectorstore.fulltext.fuse`). The dense leg is thus exactly one Collection's, and the
fused top-k equals one Collection's whenever the text leg does.

Durability: a write is acknowledged when every shard actor that received part of it returned from
``Collection.add`` (committed to SQLite in WAL mode, which survives a process crash). A shard actor that dies
is restarted by Ray (``max_restarts=-1``) and its ``__init__`` reopens the same directory, recovering every
acknowledged write; calls in flight are retried (``max_task_retries``), which is safe because ``add`` is an
upsert by id and deleting a missing id is a no-op (a retried delete may count 0 for rows it already removed).

:func:`ingest_dataset` embeds a corpus with Ray Data ``map_batches`` on a pool of actors that each hold the
embedding model, and writes every embedded batch straight from the embedding actor into its shards (vectors
never travel back to the driver). Ray Data needs ``ray[data]`` (pandas, pyarrow); without it the same embedding
actors are fed batches directly.

Cost: every search is one Ray call per shard. On one busy 2-core machine (``benchmarks/bench_distributed.py``,
100k x 384) that is ~3 ms per query over a direct Collection and grows with the shard count; sharding pays when
the shards run on separate nodes (more RAM, disk and cores), not on one machine.

Connect to a cluster with ``ray.init(address="auto")`` (or ``"ray://head:10001"``) before creating the
collection; without ``ray.init`` Ray starts a local instance on first use. On a multi-node cluster the shard
directories must either live on a filesystem mounted at the same path on every node, or each shard must be
pinned to the node holding its files with ``node_ids`` (recorded in ``sharding.json`` and reused on reopen).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
import uuid
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:
    import ray
    from ray.exceptions import RayTaskError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    msg = "spann_vectorstore.distributed needs Ray: pip install 'spann-vectorstore[distributed]'"
    raise ImportError(msg) from exc

from . import fulltext
from .collection import (
    Collection,
    CollectionLockedError,
    Hit,
    ReadOnlyError,
    copy_collection,
    hybrid_arguments,
    validate_documents,
)
from .filters import compile_filter
from .protocol import CollectionLike
from .validation import check_metric, check_target, per_vector, positive_int, query_texts

LAYOUT_FILE = "sharding.json"
ROUTING = "blake2b-64-le-mod"  # recorded in the layout: a future scheme must not silently reuse old files

#: Ray options for each shard actor; ``actor_options`` entries override them. A shard mostly waits for calls,
#: so it reserves a quarter CPU (8 shards fit a 2-CPU node); its search kernels use the node's cores anyway.
#: Threaded (``max_concurrency``): the Collection is thread-safe and searches run concurrently.
DEFAULT_ACTOR_OPTIONS: dict[str, Any] = {
    "num_cpus": 0.25,
    "max_concurrency": 4,
    "max_restarts": -1,
    "max_task_retries": 3,
    "scheduling_strategy": "SPREAD",
}
_PUT_BYTES = 64 * 1024  # query batches above this go to the object store once, not once per shard
_LOCK_WAIT_S = 30.0  # a restarted shard waits this long for the dead process's file lock to be released


def shard_for(doc_id: str, num_shards: int) -> int:
    """Shard index of ``doc_id``: 64-bit BLAKE2b of its UTF-8 bytes (little-endian) modulo ``num_shards``."""
    h = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(h, "little") % num_shards


# ----------------------------------------------------------------------------------------------------------
# the shard actor
# ----------------------------------------------------------------------------------------------------------
class _Shard:
    """One shard: a persistent Collection inside a Ray actor. An error while opening is kept and raised by
    every call, so the driver sees the Collection's own exception (``ValueError``, ``CollectionLockedError``)
    rather than Ray's ``ActorDiedError``."""

    def __init__(self, path: str, options: dict[str, Any]) -> None:
        self._error: BaseException | None = None
        self._collection: Collection | None = None
        # after a crash Ray restarts the actor at once; the dead process's flock may not be released yet
        deadline = time.monotonic() + (_LOCK_WAIT_S if _restarted() else 0.0)
        while True:
            try:
                self._collection = Collection(path, **options)
                break
            except CollectionLockedError as exc:
                if time.monotonic() >= deadline:
                    self._error = exc
                    break
                time.sleep(0.1)
            except Exception as exc:
                self._error = exc
                break

    @property
    def _c(self) -> Collection:
        if self._error is not None:
            raise self._error
        return self._collection

    def info(self) -> dict[str, Any]:
        c = self._c
        return {
            "dim": c.dim,
            "metric": c.metric,
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
        }

    def ping(self) -> None:
        """No-op round trip (measures the fan-out overhead)."""

    def add(self, vectors: np.ndarray, texts: list, metadatas: list, ids: list[str]) -> int:
        return len(self._c.add(vectors, texts, metadatas, ids))

    def search(
        self, queries: np.ndarray, k: int, filter: Any, n_probe: int | None, include_vectors: bool, target_recall: Any
    ) -> list:
        return self._c.search(
            queries, k, filter=filter, n_probe=n_probe, include_vectors=include_vectors, target_recall=target_recall
        )

    def text_search(self, texts: list[str], k: int, filter: Any, include_vectors: bool) -> list[list[Hit]]:
        return self._c.text_search(texts, k, filter=filter, include_vectors=include_vectors)

    def hybrid_legs(
        self,
        texts: list[str] | None,
        queries: np.ndarray | None,
        n: int,
        filter: Any,
        n_probe: Any,
        vectors: bool,
        target_recall: Any = None,
    ) -> tuple[list | None, list | None, list[dict[str, float]]]:
        """The two legs of a hybrid search, unfused, with raw scores: this shard's top ``n`` by the dense leg
        (``None`` without queries) and by the text leg (``None`` without texts), and per query both scores of
        each of those documents (``Collection._hybrid_legs``)."""
        return self._c._hybrid_legs(texts, queries, n, filter, n_probe, vectors, target_recall)

    def get(self, ids: list[str] | None, filter: Any, limit: int | None, include_vectors: bool) -> list[Hit]:
        return self._c.get(ids, filter=filter, limit=limit, include_vectors=include_vectors)

    def delete(self, ids: list[str] | None, filter: Any) -> int:
        return self._c.delete(ids, filter)

    def count(self, filter: Any) -> int:
        return self._c.count(filter)

    def clear(self) -> None:
        self._c.clear()

    def optimize(self) -> None:
        self._c.optimize()

    def stats(self) -> dict[str, Any]:
        return {**self._c.stats(), "pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id()}

    def close(self) -> None:
        if self._collection is not None:
            self._collection.close()


_ShardActor = ray.remote(_Shard)


def _restarted() -> bool:
    """Whether this actor is a restart (unknown counts as one: waiting for a lock only costs time)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the property uses a deprecated accessor internally (Ray 2.60)
            return bool(ray.get_runtime_context().was_current_actor_reconstructed)
    except Exception:
        return True


@contextlib.contextmanager
def _remote_errors():
    """Raise a remote exception as itself (``ValueError``, ``FilterError``...), as the Collection would have;
    Ray's own failures (a dead actor) pass through unchanged."""
    try:
        yield
    except RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            raise cause from exc
        raise


def _get(refs: Any) -> Any:
    with _remote_errors():
        return ray.get(refs)


def _local_path(path_or_uri: str | os.PathLike) -> Path:
    """Absolute directory (shard actors do not share the driver's working directory)."""
    text = os.fspath(path_or_uri)
    if isinstance(text, str) and "://" in text:
        if not text.startswith("file://"):
            msg = f"unsupported URI {text!r}: shards need a filesystem path (local, NFS, ...) or a file:// URI"
            raise ValueError(msg)
        text = text[len("file://") :]
    return Path(text).expanduser().absolute()


# ----------------------------------------------------------------------------------------------------------
# writes shared by ShardedCollection.add and the ingest actors
# ----------------------------------------------------------------------------------------------------------
def _prepare(
    vectors: Any, texts: Any, metadatas: Any, ids: Any, dim: int | None, metric: str
) -> tuple[np.ndarray, list, list, list[str]]:
    """Validate a write as ``Collection.add`` does, before any shard sees it: a bad call raises and changes
    nothing on any shard. Returns float32 (n, dim) vectors (the caller's, not normalised) and the columns."""
    x, texts_l, _, ids_l = validate_documents(vectors, texts, metadatas, ids, dim=dim, metric=metric)
    return x, texts_l, per_vector(metadatas, x.shape[0], "metadatas"), ids_l


def _group(ids: Sequence[str], num_shards: int) -> dict[int, list[int]]:
    """Positions of ``ids`` per shard, in input order."""
    groups: dict[int, list[int]] = {}
    for pos, doc_id in enumerate(ids):
        groups.setdefault(shard_for(doc_id, num_shards), []).append(pos)
    return groups


def _write(actors: Sequence[Any], x: np.ndarray, texts: list, metas: list, ids: list[str]) -> None:
    """Send each shard its rows (all shards at once) and wait for every acknowledgement."""
    refs = []
    for s, pos in _group(ids, len(actors)).items():
        rows = x if len(pos) == len(ids) else x[pos]
        refs.append(actors[s].add.remote(rows, [texts[p] for p in pos], [metas[p] for p in pos], [ids[p] for p in pos]))
    _get(refs)


def _own_vectors(hits: list[Hit]) -> list[Hit]:
    """Ray hands numpy arrays back as read-only views of its buffers; a Collection returns writable copies."""
    for h in hits:
        if h.vector is not None and not h.vector.flags.writeable:
            h.vector = h.vector.copy()
    return hits


def _filter(flt: Any, where_document: Any) -> Any:
    """``filter`` AND ``where_document`` as one filter (as the Collection merges them), checked once here so
    that a bad one raises before any shard is called."""
    flt = Collection._merge_filter(flt, where_document)
    if flt is not None and not isinstance(flt, dict):
        raise ValueError(f"a filter must be a dict, got {type(flt).__name__}")
    if flt:
        compile_filter(flt)
    return flt


def _merge(per_shard: Iterable[list[Hit]], k: int, metric: str) -> list[Hit]:
    """Global top-k of per-shard top-k lists: similarity descending (l2: distance ascending), ties by id."""
    hits = [h for hs in per_shard for h in hs]
    if metric == "l2":
        hits.sort(key=lambda h: (h.score, h.id))
    else:
        hits.sort(key=lambda h: (-h.score, h.id))
    return hits[:k]


# ----------------------------------------------------------------------------------------------------------
# the sharded collection
# ----------------------------------------------------------------------------------------------------------
class ShardedCollection:
    """A :class:`~spann_vectorstore.Collection` split over Ray actors, with the same public protocol.

    Parameters
    ----------
    path: root directory (or ``file://`` URI); shard ``i`` lives in ``path/shard-<i>``, the layout in
        ``path/sharding.json``. On a multi-node cluster: a shared filesystem path, or pin with ``node_ids``.
    num_shards: number of shards for a new collection; ``None`` reuses the stored count. A count different
        from the stored one raises ``ValueError`` (ids would be routed to the wrong shards).
    dim, metric, bits, n_probe, index_threshold, rebuild_growth, snapshot_every, index_options: as for
        :class:`~spann_vectorstore.Collection`, applied to every shard (``index_threshold`` is per shard).
    node_ids: Ray node ids; shard ``i`` is pinned (hard affinity) to ``node_ids[i % len(node_ids)]`` so that it,
        and any restart of it, runs where its files are. Stored in ``sharding.json`` and reused on reopen.
    actor_options: Ray actor options overriding :data:`DEFAULT_ACTOR_OPTIONS` (``num_cpus``, ``memory``,
        ``resources``, ``max_task_retries``, ``scheduling_strategy``, ...).
    read_only: open an existing sharded collection for queries only (a query-only driver beside the one
        that writes): every shard is a read-only :class:`~spann_vectorstore.Collection` (no lock, nothing
        written, ``sharding.json`` included), following the writer's commits before each search; ``add``,
        ``delete``, ``clear`` and ``optimize`` raise :class:`~spann_vectorstore.ReadOnlyError`. Its actors
        reserve CPU like the writer's (0.25 each by default): beside a writer on a small node, pass
        ``actor_options={"num_cpus": ...}`` so that both fit (Ray leaves actors that do not fit pending).

    Writes are acknowledged when every shard holding part of them has committed; reads and searches see
    every acknowledged write. ``get`` without ids returns shard by shard (each in insertion order): there is
    no global insertion order across shards.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        num_shards: int | None = None,
        *,
        dim: int | None = None,
        metric: str = "ip",
        bits: int = 1,
        n_probe: int | None = None,
        index_threshold: int = 4096,
        rebuild_growth: float = 2.0,
        snapshot_every: int = 50_000,
        index_options: dict[str, Any] | None = None,
        node_ids: Sequence[str] | None = None,
        actor_options: dict[str, Any] | None = None,
        read_only: bool = False,
    ) -> None:
        check_metric(metric)
        if not isinstance(read_only, bool):
            raise TypeError(f"read_only must be True or False, got {read_only!r}")
        self._closed = True
        self.read_only = read_only
        self.path = _local_path(path)
        if read_only and not (self.path / LAYOUT_FILE).exists():
            raise FileNotFoundError(f"no sharded collection at {str(self.path)!r} (a read-only open never creates one)")
        layout = self._layout(num_shards, node_ids)
        self.num_shards: int = layout["num_shards"]
        self.node_ids: list[str] | None = layout["node_ids"]
        options = {
            "dim": dim,
            "metric": metric,
            "bits": bits,
            "n_probe": n_probe,
            "index_threshold": index_threshold,
            "rebuild_growth": rebuild_growth,
            "snapshot_every": snapshot_every,
            "index_options": index_options,
            "progress": False,
        }
        if read_only:
            options["read_only"] = True
        self._actors: list[Any] = []
        try:
            for i in range(self.num_shards):
                opts = {**DEFAULT_ACTOR_OPTIONS, **(actor_options or {})}
                if self.node_ids:
                    opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
                        self.node_ids[i % len(self.node_ids)], soft=False
                    )
                self._actors.append(_ShardActor.options(**opts).remote(str(self.path / f"shard-{i}"), options))
            infos = _get([a.info.remote() for a in self._actors])
        except BaseException:
            for a in self._actors:
                with contextlib.suppress(Exception):
                    ray.kill(a, no_restart=True)
            raise
        dims = {i["dim"] for i in infos if i["dim"] is not None}
        if len(dims) > 1:  # cannot happen through this class; guards hand-edited directories
            self._kill()
            raise ValueError(f"shards of {str(self.path)!r} disagree on the dimension: {sorted(dims)}")
        self._dim: int | None = dims.pop() if dims else None
        self._metric: str = infos[0]["metric"]
        self._closed = False

    def _layout(self, num_shards: int | None, node_ids: Sequence[str] | None) -> dict[str, Any]:
        """Read ``sharding.json`` (checking ``num_shards``) or write it for a new collection."""
        file = self.path / LAYOUT_FILE
        if file.exists():
            layout = json.loads(file.read_text())
            if layout.get("routing") != ROUTING:
                raise ValueError(f"{file} uses routing {layout.get('routing')!r}; this version knows {ROUTING!r}")
            if num_shards is not None and num_shards != layout["num_shards"]:
                msg = (
                    f"{str(self.path)!r} has {layout['num_shards']} shards (see {LAYOUT_FILE}), not {num_shards}: "
                    "ids would be routed to the wrong shards (resharding is not supported)"
                )
                raise ValueError(msg)
            if node_ids is not None and list(node_ids) != layout.get("node_ids"):
                layout["node_ids"] = list(node_ids)  # the shards' files were moved to other nodes
                if not self.read_only:
                    _write_json(file, layout)
            return layout
        if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1:
            msg = f"num_shards must be a positive integer for a new sharded collection, got {num_shards!r}"
            raise ValueError(msg)
        if (self.path / "docs.sqlite").exists():
            raise ValueError(f"{str(self.path)!r} holds a plain Collection, not a sharded one")
        layout = {
            "format": 1,
            "num_shards": num_shards,
            "routing": ROUTING,
            "shards": [f"shard-{i}" for i in range(num_shards)],
            "node_ids": list(node_ids) if node_ids else None,
        }
        self.path.mkdir(parents=True, exist_ok=True)
        _write_json(file, layout)
        return layout

    # ------------------------------------------------------------------------------------------------------
    # lifecycle
    # ------------------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, **kwargs: Any) -> ShardedCollection:
        """Reopen an existing sharded collection (new shard actors over its directories); raises
        ``FileNotFoundError`` if there is none. The shard count comes from ``sharding.json``."""
        if not (_local_path(path) / LAYOUT_FILE).exists():
            raise FileNotFoundError(f"no sharded collection at {str(path)!r}")
        return cls(path, **kwargs)

    def close(self) -> None:
        """Close every shard (final index snapshots) and stop the actors. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            _get([a.close.remote() for a in self._actors])
        finally:
            self._kill()

    def _kill(self) -> None:
        for a in self._actors:
            with contextlib.suppress(Exception):
                ray.kill(a, no_restart=True)

    def __enter__(self) -> ShardedCollection:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ShardedCollection({str(self.path)!r}, num_shards={self.num_shards}, metric={self._metric!r})"

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("collection is closed")

    def _check_writable(self, what: str) -> None:
        self._check_open()
        if self.read_only:
            msg = (
                f"sharded collection at {str(self.path)!r} is open read-only: {what}() is not allowed (nothing changed)"
            )
            raise ReadOnlyError(msg)

    @property
    def actors(self) -> list[Any]:
        """The shard actor handles (shard ``i`` holds the ids with ``shard_for(id, num_shards) == i``)."""
        return list(self._actors)

    @property
    def dim(self) -> int | None:
        return self._dim

    @property
    def metric(self) -> str:
        return self._metric

    def shard_of(self, doc_id: str) -> int:
        """Index of the shard that holds (or would hold) ``doc_id``."""
        return shard_for(doc_id, self.num_shards)

    # ------------------------------------------------------------------------------------------------------
    # writes
    # ------------------------------------------------------------------------------------------------------
    def add(
        self,
        vectors: Any,
        texts: Sequence[str | None] | None = None,
        metadatas: Sequence[dict[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Add (or replace, by id) documents; returns their ids. Durable on every shard when it returns.

        As :meth:`Collection.add`; the whole call is validated before any shard is written. A shard lost
        beyond Ray's retries can leave part of a batch written: repeating the call is safe (upsert by id).
        """
        self._check_writable("add")
        x, texts_l, metas_l, ids_l = _prepare(vectors, texts, metadatas, ids, self._dim, self._metric)
        _write(self._actors, x, texts_l, metas_l, ids_l)
        if self._dim is None:
            self._dim = x.shape[1]
        return ids_l

    def delete(
        self,
        ids: Iterable[str] | None = None,
        filter: dict[str, Any] | None = None,
        *,
        where_document: dict[str, Any] | None = None,
    ) -> int:
        """Delete by id and/or filter / ``where_document`` (both: ids that also match); returns how many. Ids
        go only to their shards, a filter to all. Neither given: nothing is deleted (use :meth:`clear`)."""
        self._check_writable("delete")
        filter = _filter(filter, where_document)
        if ids is None and filter is None:
            return 0
        if ids is None:
            return sum(_get([a.delete.remote(None, filter) for a in self._actors]))
        id_list = [ids] if isinstance(ids, str) else list(ids)
        for i in id_list:
            if not isinstance(i, str):
                raise TypeError(f"ids must be strings, got {i!r}")
        groups = _group(id_list, self.num_shards)
        refs = [self._actors[s].delete.remote([id_list[p] for p in pos], filter) for s, pos in groups.items()]
        return sum(_get(refs))

    def clear(self) -> None:
        """Delete every document on every shard (settings and dimension are kept)."""
        self._check_writable("clear")
        _get([a.clear.remote() for a in self._actors])

    def optimize(self) -> None:
        """Rebuild every shard's index from scratch (in parallel)."""
        self._check_writable("optimize")
        _get([a.optimize.remote() for a in self._actors])

    # ------------------------------------------------------------------------------------------------------
    # reads
    # ------------------------------------------------------------------------------------------------------
    def count(self, filter: dict[str, Any] | None = None, *, where_document: dict[str, Any] | None = None) -> int:
        """Number of documents (matching ``filter`` / ``where_document`` when given), summed over the shards."""
        self._check_open()
        filter = _filter(filter, where_document)
        return sum(_get([a.count.remote(filter) for a in self._actors]))

    def __len__(self) -> int:
        return self.count()

    def get(
        self,
        ids: Iterable[str] | None = None,
        *,
        filter: dict[str, Any] | None = None,
        where_document: dict[str, Any] | None = None,
        limit: int | None = None,
        include_vectors: bool = False,
    ) -> list[Hit]:
        """Documents by id (in the order given, missing ids skipped; each id asked of its shard only) and/or by
        filter / ``where_document`` (all shards; shard by shard, each in insertion order). ``limit`` applies to
        the result."""
        self._check_open()
        filter = _filter(filter, where_document)
        if ids is None:
            parts = _get([a.get.remote(None, filter, limit, include_vectors) for a in self._actors])
            out = [h for part in parts for h in part]
            out = out[:limit] if limit is not None else out
            return _own_vectors(out) if include_vectors else out
        id_list = list(dict.fromkeys([ids] if isinstance(ids, str) else ids))
        groups = _group(id_list, self.num_shards)
        parts = _get(
            [
                self._actors[s].get.remote([id_list[p] for p in pos], filter, None, include_vectors)
                for s, pos in groups.items()
            ]
        )
        found = {h.id: h for part in parts for h in part}
        out = [found[i] for i in id_list if i in found]
        out = out[:limit] if limit is not None else out
        return _own_vectors(out) if include_vectors else out

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
    ) -> list[Hit] | list[list[Hit]]:
        """Nearest documents over all shards, best first: (dim,) gives ``list[Hit]``, (nq, dim) one list per
        query. Every shard gets the whole batch in one call, all shards at once; the per-shard top-k lists
        are merged into the exact global top-k of what the shards returned (``n_probe``, ``filter`` and
        ``where_document`` apply per shard, as in :meth:`Collection.search`)."""
        self._check_open()
        positive_int(k, "k")
        flt = _filter(filter, where_document)
        arr = np.asarray(vector_or_vectors)
        if arr.ndim not in (1, 2) or arr.size == 0:
            raise ValueError(f"queries must be (dim,) or (nq, dim), got shape {arr.shape}")
        single = arr.ndim == 1
        q_arg = self._queries(arr)
        if target_recall is not None:
            check_target(target_recall)
        per_shard = _get(
            [a.search.remote(q_arg, int(k), flt, n_probe, include_vectors, target_recall) for a in self._actors]
        )
        nq = 1 if single else arr.shape[0]
        out = [_merge((res[qi] for res in per_shard), int(k), self._metric) for qi in range(nq)]
        if include_vectors:
            out = [_own_vectors(hits) for hits in out]
        return out[0] if single else out

    def _queries(self, arr: np.ndarray) -> Any:
        """A query batch as sent to every shard: (nq, dim) float32, through the object store when large."""
        q = arr[None, :] if arr.ndim == 1 else arr
        if q.dtype != np.float32 and np.issubdtype(q.dtype, np.number):
            q = q.astype(np.float32)  # a quarter of float64's bytes on the wire; shards validate the values
        return ray.put(q) if q.nbytes > _PUT_BYTES and len(self._actors) > 1 else q

    def text_search(
        self,
        text_or_texts: str | Sequence[str],
        k: int = 4,
        *,
        filter: dict[str, Any] | None = None,
        where_document: dict[str, Any] | None = None,
        include_vectors: bool = False,
    ) -> list[Hit] | list[list[Hit]]:
        """Full-text (BM25) search over all shards, best first, as :meth:`Collection.text_search`: every shard
        ranks its own documents and returns its top ``k``; the lists are merged by score (ties by id).

        BM25's statistics (IDF, average document length) are each shard's own, not the whole collection's
        (no statistics round between shards): with ids routed by hash the shards are random samples of the
        collection and their statistics agree closely, so the merge is close to one Collection's ranking
        and equal to it whenever the scores being compared do not depend on them (e.g. a term occurring in
        one document only). ``Hit.score`` is the BM25 score of the document's shard."""
        self._check_open()
        positive_int(k, "k")
        single, texts = query_texts(text_or_texts)
        flt = _filter(filter, where_document)
        if not texts:
            return []
        per_shard = _get([a.text_search.remote(texts, int(k), flt, include_vectors) for a in self._actors])
        out = [_merge((res[qi] for res in per_shard), int(k), "ip") for qi in range(len(texts))]  # higher better
        if include_vectors:
            out = [_own_vectors(hits) for hits in out]
        return out[0] if single else out

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
    ) -> list[Hit] | list[list[Hit]]:
        """Dense and full-text search fused over all shards, as :meth:`Collection.hybrid_search`.

        Every shard returns, in one call, its top ``candidates`` (default ``max(k, 20)``) of each leg with
        raw scores, and both scores of each of those documents (not its own fusion); the driver
        merges each leg across the shards into the global top ``candidates``, whose union is the pool, every
        member scored by both legs, and fuses it once (:func:`spann_vectorstore.fulltext.fuse_pool`, same
        ``fusion`` and ``alpha``), as :meth:`Collection.hybrid_search` does. The dense leg is therefore the one
        a single Collection would have; the text leg differs from it only through the per-shard BM25
        statistics (see :meth:`text_search`). Fusing per shard instead would normalise each shard's scores
        on its own and could rank a shard's weak best hit above another's strong second."""
        self._check_open()
        single, texts, arr, n_cand = hybrid_arguments(text_or_texts, vector_or_vectors, k, alpha, fusion, candidates)
        flt = _filter(filter, where_document)
        if not texts:
            return []
        use_dense = alpha > 0
        use_text = alpha < 1 and any(fulltext.terms(t) for t in texts)
        q_arg = self._queries(arr) if use_dense else None
        t_arg = texts if use_text else None
        per_shard = _get(
            [
                a.hybrid_legs.remote(t_arg, q_arg, int(n_cand), flt, n_probe, include_vectors, target_recall)
                for a in self._actors
            ]
        )
        out = []
        for qi, text in enumerate(texts):
            dense = _merge((d[qi] for d, _, _ in per_shard), int(n_cand), self._metric) if use_dense else []
            if not (use_text and fulltext.terms(text)):  # no words in the text (or alpha 1): dense search
                out.append(dense[: int(k)])
                continue
            hits = _merge((t[qi] for _, t, _ in per_shard), int(n_cand), "ip")  # BM25: higher is better
            if not hits or not use_dense:  # no document has a word of the text (dense order), or text only
                fused = fulltext.fuse(
                    [(h.id, h.score) for h in dense],
                    [(h.id, h.score) for h in hits],
                    fusion=fusion,
                    alpha=alpha,
                    higher_better=self._metric != "l2",
                )
            else:  # the pool of both global lists, each member scored by both legs (by its own shard)
                cross = {i: s for _, _, c in per_shard for i, s in c[qi].items()}
                seen = {h.id for h in dense}
                extra = [h for h in hits if h.id not in seen and h.id in cross]
                scores = fulltext.fuse_pool(
                    [h.score for h in dense] + [cross[h.id][0] for h in extra],
                    [cross[h.id][1] if h.id in cross else 0.0 for h in dense] + [h.score for h in extra],
                    fusion=fusion,
                    alpha=alpha,
                    higher_better=self._metric != "l2",
                )
                fused = list(zip([h.id for h in dense] + [h.id for h in extra], scores.tolist()))
            by_id = {h.id: h for h in (*hits, *dense)}
            fused.sort(key=lambda item: (-item[1], item[0]))  # equal fused scores by id, as the Collection does
            out.append([dataclasses.replace(by_id[i], score=s) for i, s in fused[: int(k)]])
        if include_vectors:
            out = [_own_vectors(hits) for hits in out]
        return out[0] if single else out

    def copy_to(self, path: str | os.PathLike, *, overwrite: bool = False, **options: Any) -> Path:
        """Write every document into a new plain :class:`~spann_vectorstore.Collection` at ``path`` (on this
        machine) with the shards' settings; see :func:`~spann_vectorstore.collection.copy_collection`."""
        self._check_open()
        return copy_collection(self, path, overwrite=overwrite, **options)

    def stats(self) -> dict[str, Any]:
        """Totals (``count``, ``bytes_disk``), settings, and each shard's :meth:`Collection.stats` under
        ``shards`` (with ``pid`` and ``node_id`` of its actor)."""
        self._check_open()
        shards = _get([a.stats.remote() for a in self._actors])
        return {
            "count": sum(s["count"] for s in shards),
            "dim": self._dim,
            "metric": self._metric,
            "bits": shards[0]["bits"],
            "n_probe": shards[0].get("n_probe"),
            "index_options": shards[0].get("index_options"),
            "num_shards": self.num_shards,
            "indexed": all(s["indexed"] for s in shards),
            "bytes_disk": sum(s.get("bytes_disk", 0) for s in shards),
            "shards": shards,
        }


def _write_json(file: Path, obj: Any) -> None:
    tmp = file.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, file)


# ----------------------------------------------------------------------------------------------------------
# distributed ingestion
# ----------------------------------------------------------------------------------------------------------
_MODEL_METHODS = ("encode", "embed_documents", "get_text_embedding_batch")


def _load_embedder(model: Any, options: dict[str, Any]) -> Any:
    """The :class:`~spann_vectorstore.embed.Embedder` of an embedding actor. ``model`` is anything ``Embedder``
    takes (``None``: the bundled all-MiniLM-L6-v2, no download; a sentence-transformers name or path; a
    SentenceTransformer, LangChain ``Embeddings`` or LlamaIndex embedding object, shipped to the actor), or a
    zero-argument factory returning one, called inside the actor (for models that should not be pickled)."""
    from .embed import Embedder

    if (
        callable(model)
        and not isinstance(model, (str, os.PathLike))
        and not any(hasattr(model, m) for m in _MODEL_METHODS)
    ):
        model = model()
    return Embedder(model, **options)


class _EmbedWriter:
    """Embeds a batch of texts and writes it to the shards; a Ray Data callable class (one per actor in the
    pool) or a plain Ray actor. Batches are dicts of columns: ``text``, optional ``id`` and ``metadata`` (dicts
    or JSON strings). Returns ``{"id": ...}`` for the rows written; without shards (``shards`` None: the
    driver writes into a collection that is not sharded) it writes nothing and returns the checked rows,
    ``id``, ``vector``, ``text`` and ``metadata`` (JSON strings)."""

    def __init__(
        self, model: Any, options: dict[str, Any], shards: list[Any] | None, dim: int | None, metric: str
    ) -> None:
        self.embedder = _load_embedder(model, options)
        self.shards, self.dim, self.metric = shards, dim, metric

    def __call__(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in _column(batch["text"])]
        ids = [str(i) for i in _column(batch["id"])] if "id" in batch else None
        metas = None
        if "metadata" in batch:
            metas = [json.loads(m) if isinstance(m, str) else m for m in _column(batch["metadata"])]
        vecs = self.embedder.embed(texts, progress=False)
        x, texts_l, metas_l, ids_l = _prepare(vecs, texts, metas, ids, self.dim, self.metric)
        if self.shards is None:
            metas_json = [json.dumps(m if m is not None else {}) for m in metas_l]
            return {
                "id": np.array(ids_l, dtype=object),
                "vector": x,
                "text": np.array(texts_l, dtype=object),
                "metadata": np.array(metas_json, dtype=object),
            }
        _write(self.shards, x, texts_l, metas_l, ids_l)
        return {"id": np.array(ids_l, dtype=object)}

    write = __call__  # the method name for plain-actor calls (``actor.write.remote(batch)``)


def _column(values: Any) -> list:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def has_ray_data() -> bool:
    """Whether Ray Data is importable (it needs pandas and pyarrow: ``pip install 'ray[data]'``)."""
    try:
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


def ingest_dataset(
    data: Any,
    collection: CollectionLike,
    *,
    ids: Sequence[str] | None = None,
    metadatas: Sequence[dict[str, Any] | None] | None = None,
    embed_model: Any = None,
    batch_size: int = 256,
    concurrency: int = 2,
    num_cpus: float = 0.5,
    normalize: bool = True,
    embed_options: dict[str, Any] | None = None,
    engine: str = "auto",
    actor_options: dict[str, Any] | None = None,
) -> list[str]:
    """Embed texts across the cluster and write them into ``collection``; returns the ids written.

    collection: a :class:`ShardedCollection` (every embedding actor writes its batches straight into the
        shards: vectors never travel back to the driver), or any other collection (a plain
        :class:`~spann_vectorstore.Collection`: the actors embed, the driver adds each batch as it arrives).

    data: a ``ray.data.Dataset`` with a ``text`` column (optional ``id`` and ``metadata`` columns; give
        heterogeneous metadata as JSON strings, since Arrow unifies dict columns' keys), or a sequence of
        texts (with ``ids`` / ``metadatas`` alongside; ids are generated when ``None``).
    embed_model: what :class:`~spann_vectorstore.embed.Embedder` takes (``None``: the bundled all-MiniLM-L6-v2;
        a sentence-transformers name or path; a LangChain or LlamaIndex embedding object), or a zero-argument
        factory returning one. It is loaded once per embedding actor, on the node where the actor runs.
    normalize, embed_options: ``Embedder(normalize=..., **embed_options)`` (``device="cuda"``,
        ``batch_size``, ``num_threads``...).
    batch_size: texts per ``map_batches`` batch (one embedding call and one ``add`` per shard per batch).
    concurrency: embedding actors (each holds a model copy); ``num_cpus``: CPUs reserved per actor (fractional
        on small machines: the shard actors need some too); ``actor_options``: more Ray options for them
        (``num_gpus``, ``memory``, ``resources``...).
    engine: ``"data"``: Ray Data ``map_batches`` over an actor pool; ``"actors"``: the same embedding actors
        fed one batch at a time by this function (no Ray Data needed: sequences only); ``"auto"``: Ray Data
        when it is installed.

    The ids returned are in input order for a sequence, in output order for a Dataset. Every row is
    acknowledged by its shard before this returns; rerunning an interrupted ingest with the same ids is safe.
    """
    if engine not in ("auto", "data", "actors"):
        raise ValueError(f"engine must be 'auto', 'data' or 'actors', got {engine!r}")
    batch_size = positive_int(batch_size, "batch_size")
    sharded = collection if isinstance(collection, ShardedCollection) else None
    if sharded is not None:
        sharded._check_open()
    is_dataset = type(data).__module__.startswith("ray.data")
    if engine == "auto":
        engine = "data" if is_dataset or has_ray_data() else "actors"
    ctor = {
        "model": embed_model,
        "options": {**(embed_options or {}), "normalize": normalize},
        "shards": sharded.actors if sharded is not None else None,
        "dim": collection.dim,
        "metric": collection.metric,
    }
    remote_args = {"num_cpus": num_cpus, **(actor_options or {})}
    if is_dataset:
        if ids is not None or metadatas is not None:
            raise ValueError("with a Dataset, give ids and metadata as its 'id' and 'metadata' columns")
        if engine != "data":
            raise ValueError("a ray.data.Dataset needs engine='data'")
        out = _map_dataset(data, ctor, batch_size, concurrency, remote_args)
        written = [i for b in out.iter_batches(batch_format="numpy") for i in _written(b, collection, sharded)]
    else:
        texts = [data] if isinstance(data, str) else list(data)
        if not texts:
            return []
        given = per_vector(ids, len(texts), "ids")
        ids_l = [str(uuid.uuid4()) for _ in texts] if ids is None else [str(i) for i in given]
        if len(set(ids_l)) != len(ids_l):
            raise ValueError("duplicate ids in one ingest")
        metas_l = [json.dumps(m if m is not None else {}) for m in per_vector(metadatas, len(texts), "metadatas")]
        if engine == "data":
            import ray.data

            items = [{"text": t, "id": i, "metadata": m} for t, i, m in zip(texts, ids_l, metas_l)]
            out = _map_dataset(ray.data.from_items(items), ctor, batch_size, concurrency, remote_args)
            written = [i for b in out.iter_batches(batch_format="numpy") for i in _written(b, collection, sharded)]
        else:
            batches = [
                {
                    "text": texts[s : s + batch_size],
                    "id": ids_l[s : s + batch_size],
                    "metadata": metas_l[s : s + batch_size],
                }
                for s in range(0, len(texts), batch_size)
            ]
            parts = _map_actors(batches, ctor, concurrency, remote_args)
            written = [i for b in parts for i in _written(b, collection, sharded)]
        if sorted(written) != sorted(ids_l):  # every row came back from an acknowledged write
            raise RuntimeError(f"ingest wrote {len(written)} of {len(ids_l)} rows")
        written = ids_l
    if sharded is not None and sharded._dim is None and written:
        sharded._dim = _get(sharded.actors[sharded.shard_of(written[0])].info.remote())["dim"]
    return written


def _written(batch: dict[str, Any], collection: CollectionLike, sharded: ShardedCollection | None) -> list[str]:
    """The ids of an embedded batch, after adding it to ``collection`` when the actors did not (no shards)."""
    ids = [str(i) for i in _column(batch["id"])]
    if sharded is None and ids:
        metas = [json.loads(m) for m in _column(batch["metadata"])]
        collection.add(np.asarray(batch["vector"], dtype=np.float32), _column(batch["text"]), metas, ids)
    return ids


def _map_dataset(ds: Any, ctor: dict[str, Any], batch_size: int, concurrency: int, remote_args: dict) -> Any:
    """Ray Data: ``map_batches`` with the embedding class on a pool of ``concurrency`` actors."""
    return ds.map_batches(
        _EmbedWriter,
        fn_constructor_kwargs=ctor,
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=concurrency,
        **remote_args,
    )


def _map_actors(
    batches: list[dict[str, Any]], ctor: dict[str, Any], concurrency: int, remote_args: dict
) -> list[dict[str, Any]]:
    """Without Ray Data: the same embedding class as plain actors, each batch sent to whichever actor is free.
    Work only goes to actors that are up, so a pool larger than the cluster can place still finishes (an
    actor waiting for resources never gets a batch), where a fixed ``ActorPool`` would wait forever."""
    cls = ray.remote(_EmbedWriter).options(**remote_args)
    actors = [cls.remote(**ctor) for _ in range(max(1, min(concurrency, len(batches))))]
    starting = {a.__ray_ready__.remote(): a for a in actors}  # done when the actor has loaded its model
    running: dict[Any, tuple[Any, int]] = {}
    idle: list[Any] = []
    todo = list(range(len(batches) - 1, -1, -1))
    out: list[dict[str, Any]] = [{"id": []} for _ in batches]
    try:
        with _remote_errors():
            while todo or running:
                while idle and todo:
                    actor, i = idle.pop(), todo.pop()
                    running[actor.write.remote(batches[i])] = (actor, i)
                (ref,), _ = ray.wait([*running, *starting], num_returns=1)
                if ref in starting:
                    ray.get(ref)  # a failed constructor (unknown model, ...) raises here
                    idle.append(starting.pop(ref))
                else:
                    actor, i = running.pop(ref)
                    out[i] = ray.get(ref)
                    idle.append(actor)
    finally:
        for a in actors:
            with contextlib.suppress(Exception):
                ray.kill(a, no_restart=True)
    return out  # the actors' answers in batch order


__all__ = ["DEFAULT_ACTOR_OPTIONS", "ShardedCollection", "has_ray_data", "ingest_dataset", "shard_for"]
