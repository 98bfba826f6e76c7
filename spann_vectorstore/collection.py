"""``Collection``: vectors + ids + texts + metadata, durable on disk, safe under concurrent use.

SQLite (stdlib, WAL) is the source of truth: table ``docs`` holds each document's string id, text,
metadata JSON and the write sequence number, table ``vectors`` its vector (float32 blob) under the same rowid
(see :mod:`spann_vectorstore._schema`); the ``INTEGER PRIMARY KEY AUTOINCREMENT`` rowid (never reused) is the
id inside the :class:`SpannIndex`. The index is derived: its
snapshot (``index/``, written under a new name then switched by an atomic manifest rename) records the
sequence it covers, and on open the rows it lacks are re-applied and the rows it has but SQLite no longer
does are deleted, so an acknowledged write survives ``kill -9`` whatever the snapshot's age.

Locking: searches share a read lock and run concurrently (the kernels release the GIL); writes take the
write lock. A second process opening the same path for writing gets :class:`CollectionLockedError` (``flock``
on ``LOCK``, naming the holder's pid), never a corrupted store; the kernel drops the lock when the holder dies,
even by SIGKILL.

Many processes, one directory: one writer process and any number of read-only handles
(``Collection(path, read_only=True)``), which take no lock and open SQLite with ``mode=ro``. Every write
transaction also stores its sequence number (``settings['seq']``) and the rowids it removed (table
``removed``); rowids only grow (AUTOINCREMENT), so a reader catches up with ``rowid > last seen`` and
``removed.seq > last seen``. Before each search a reader checks ``PRAGMA data_version`` (does not read the
database unless another connection committed) and the snapshot manifest's inode; it catches up under its own
write lock, and loads a new snapshot on a background thread, then swaps it in. So a reader's search reflects
every write acknowledged before the search began. The writer prunes ``removed`` up to the snapshot before the
last one; a reader further behind (or after ``clear()``) compares all rowids once instead.

Within one process, opening a store directory that is already open in the same mode returns the same
instance (reference counted: each open is matched by one :meth:`close`; the last one closes). A read-only open
beside this process's own writer gets its own read-only instance (its own connection and index), and a writer
open beside this process's readers takes the lock as usual; both follow each other as separate processes do.

Named collections: ``Collection(path, name="x")`` is a complete store of its own in ``<path>/collections/x/``
(its docs.sqlite, index/ and LOCK), with its own metric and dimension; ``name=None`` is the directory itself
(the layout of every store made before names existed). The writer lock is per store directory: the root store
and each named collection can be written by different processes at once. See :func:`store_directory`,
:meth:`Collection.list_collections` and :meth:`Collection.drop_collection`.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import inspect
import json
import operator
import os
import re
import shutil
import sqlite3
import threading
import uuid
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from . import _warmup, fulltext
from ._bm25 import BM25Index
from ._integrity import (
    RECOVER_INDEX,
    config_text,
    crc_mismatch,
    damage_error,
    database_problem,
    is_damage,
    lost_database_message,
    move_aside,
    open_database,
    row_crc,
    salvage,
)
from ._schema import SCHEMA as _SCHEMA
from ._schema import migrate_vectors, rows_sql, vectors_apart, vectors_sql
from ._storage import MANIFEST, CorruptStoreError, verify_snapshot
from .filters import (
    INDEX_TYPES,
    compile_filter,
    document_filter,
    filter_key,
    index_parts,
    text_problem,
    uses_text_index,
    validate_metadata,
)
from .index import _FORMAT, IndexExport, SpannIndex
from .interop import decode_json as _json_object
from .validation import (
    METRICS,
    as_matrix,
    check_metric,
    check_target,
    nonnegative_int,
    per_vector,
    positive_int,
    query_texts,
)

if TYPE_CHECKING:
    from .protocol import CollectionLike


class CollectionLockedError(RuntimeError):
    """Another process has this collection open for writing (the message names its pid)."""


class ReadOnlyError(PermissionError):
    """A write (``add``, ``delete``, ``clear``, ``optimize``) through a read-only handle; nothing changed."""


#: open persistent collections by (process id, store directory, read_only): opening one again shares it. The
#: pid keeps a forked child (gunicorn --preload, multiprocessing) from sharing its parent's SQLite connection.
_OPEN: weakref.WeakValueDictionary[tuple[int, str, bool], Collection] = weakref.WeakValueDictionary()
_OPEN_LOCK = threading.Lock()
#: spare capacity per posting in a reader's copy of a snapshot: a snapshot's postings are full, so the first
#: catch-up adds would move nearly every posting to the end of the arena with doubled capacity (measured at 90k
#: documents: +60 MB private per reader after 5.8k adds); 25% room (+5 MB) takes ~25k adds at 100k in place
_READER_SLACK = 1.25
#: bytes of documents (id, text, metadata JSON; ~100 more per row for the entry) kept in memory for search
#: hits: a row never changes under its rowid (writes insert new rows, rowids are never reused), so a hit seen
#: before is served without SQLite (~3 us a row through SQLite in this process, ~0.1 us from the cache;
#: 100k documents of ../shared/data fit in ~35 MB). Oldest entries go first past the budget.
_ROW_CACHE_BYTES = 64 << 20


def _row_bytes(row: tuple) -> int:
    """What a cached (id, text, metadata) row is counted as: its characters and ~100 bytes for the entry."""
    return 100 + len(row[0]) + len(row[1] or "") + len(row[2])


#: options that must match when an open collection is shared (the rest are checked against its settings)
_SHARED_OPTIONS = ("n_probe", "index_threshold", "rebuild_growth", "snapshot_every", "index_options")


#: Where named collections live inside a directory: ``<path>/collections/<name>/``.
COLLECTIONS_DIR = "collections"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def check_collection_name(name: Any) -> str:
    """``name`` if it is a valid collection name (1-63 characters of ``A-Z a-z 0-9 . _ -``, the first a letter
    or digit), else ``ValueError`` naming the problem. Names are case-sensitive (on a case-insensitive file
    system ``"A"`` and ``"a"`` would be one directory: avoid names differing only in case)."""
    if not isinstance(name, str):
        raise ValueError(f"collection name must be a string, got {type(name).__name__}")
    if not 1 <= len(name) <= 63:
        raise ValueError(f"collection name must be 1-63 characters long, got {len(name)}: {name[:80]!r}")
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"invalid collection name {name!r}: use letters, digits, '.', '_' and '-', starting with a letter or digit"
        )
    return name


def store_directory(path: str | os.PathLike | None, name: str | None = None) -> Path | None:
    """The directory holding the store of collection ``name`` under ``path``: ``path`` itself for
    ``name=None``, ``<path>/collections/<name>`` otherwise; ``None`` for an in-memory collection
    (``path=None``: the name is then only a label). The one place a name becomes a directory."""
    if name is not None:
        check_collection_name(name)
    if path is None:
        return None
    return Path(path) if name is None else Path(path) / COLLECTIONS_DIR / name


def _names_damage(method):
    """Raise SQLite's "database disk image is malformed" and "file is not a database" as
    :class:`CorruptStoreError` naming docs.sqlite and what to do."""

    @functools.wraps(method)
    def wrapper(self: Collection, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            raise damage_error(self.path, str(exc)) from exc

    return wrapper


@dataclass
class Hit:
    """One search result or stored document. ``score``: similarity for ip/cosine (higher is better),
    squared L2 distance for l2 (lower is better); ``None`` for :meth:`Collection.get`."""

    id: str
    score: float | None
    text: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    vector: np.ndarray | None = None


@dataclass
class VerifyReport:
    """What :meth:`Collection.verify` checked (``checked``: counts) and the problems it found, one message
    each naming the file; ``ok`` when there are none."""

    problems: list[str] = field(default_factory=list)
    checked: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        head = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in self.checked.items())
        lines = [f"{'ok' if self.ok else f'{len(self.problems)} problem(s)'}: {head}", *self.problems]
        return "\n".join(lines)


class _RWLock:
    """Many readers or one writer; a waiting writer blocks new readers (no writer starvation)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()  # the condition's lock: held only inside these methods, never nested
        self._cond = threading.Condition(self._mutex)
        self._readers = 0
        self._writer = False
        self._waiting = 0
        self._reading = _Reading(self)

    def read(self) -> _Reading:
        """``with lock.read():`` (one context object, reused: a generator-based one cost ~1.5 us a search)."""
        return self._reading

    @contextlib.contextmanager
    def write(self):
        with self._cond:
            self._waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class _Reading:
    """The read side of a :class:`_RWLock` as a context manager (holds no state of its own: reentrant and
    shared by threads)."""

    __slots__ = ("_lock", "_mutex")

    def __init__(self, lock: _RWLock) -> None:
        self._lock = lock
        self._mutex = lock._mutex  # ``with lock._cond`` is ``with lock._mutex``, minus a Python-level call

    def __enter__(self) -> None:
        lock = self._lock
        with self._mutex:
            if not (lock._writer or lock._waiting):
                lock._readers += 1
                return
        with lock._cond:
            while lock._writer or lock._waiting:
                lock._cond.wait()
            lock._readers += 1

    def __exit__(self, *exc: Any) -> None:
        lock = self._lock
        with self._mutex:
            lock._readers -= 1
            # only a writer can wait while readers hold the lock (readers wait only for writers)
            if not lock._readers and lock._waiting:
                lock._cond.notify_all()


class _PendingSnapshot(NamedTuple):
    """An index snapshot taken under the write lock (``SpannIndex.export``) and the write sequence it
    covers, to be written after the lock is released."""

    export: IndexExport
    seq: int
    gen: int  # exports are numbered: an older one is not written after a newer one


class _Rebuild:
    """A background rebuild: the index being built, how many vectors it was started with, and its state."""

    def __init__(self, index: SpannIndex, size: int) -> None:
        self.index = index
        self.size = size
        self.thread: threading.Thread | None = None
        self.done = threading.Event()
        self.cancelled = False
        self.error: BaseException | None = None


@dataclass
class _Allowed:
    """A filter's matching rowids as of write sequence ``seq``, when the largest rowid was ``top``."""

    seq: int
    top: int
    rows: np.ndarray


class _Follower:
    """A read-only handle's position behind the writer: the committed sequence and the largest rowid its index
    reflects, what it last saw of the database (``PRAGMA data_version``, the inode of docs.sqlite) and of the
    snapshot manifest, and the background load of a newer snapshot."""

    def __init__(self) -> None:
        self.seq = 0
        self.max_rowid = 0
        self.data_version: int | None = None
        self.db_ino: int | None = None
        self.manifest: tuple[int, int, int] | None = None
        self.vec_fd: int | None = None  # the memory-mapped vectors file of the current index (size checked)
        self.vec_size = 0
        self.refresh_lock = threading.Lock()
        self.loader_lock = threading.Lock()
        self.fd_lock = threading.Lock()  # vec_fd is replaced by the loader thread while searches check it
        self.loader: threading.Thread | None = None
        self.error: BaseException | None = None  # the last failed snapshot load (the current index stays)
        self.swaps = 0  # snapshots loaded and swapped in since the open


class _SharedOpen(type):
    """Opening a persistent collection that this process already has open in the same mode returns that
    instance (one more reference: :meth:`Collection.close` closes at the last one). Concurrent opens of one
    directory wait for the first to finish instead of racing for its lock."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            arg = inspect.signature(cls.__init__).bind(None, *args, **kwargs).arguments
            key = (
                os.getpid(),
                os.path.realpath(store_directory(arg["path"], arg.get("name"))),
                bool(arg.get("read_only", False)),
            )
        except (TypeError, KeyError, ValueError):  # in memory, or bad arguments: __init__ says what is wrong
            return super().__call__(*args, **kwargs)
        while True:
            with _OPEN_LOCK:
                cur = _OPEN.get(key)
                if cur is not None and cur._share(arg):
                    return cur
                wait = _OPENING.get(key)
                if wait is None:
                    _OPENING[key] = opening = threading.Event()
                    break
            wait.wait()
        try:
            obj = super().__call__(*args, **kwargs)
            obj._key = key
            with _OPEN_LOCK:
                _OPEN[key] = obj
            return obj
        finally:
            with _OPEN_LOCK:
                del _OPENING[key]
            opening.set()


_OPENING: dict[tuple[int, str, bool], threading.Event] = {}


class Collection(metaclass=_SharedOpen):
    """Documents with vectors, searchable by similarity with metadata filters.

    Parameters
    ----------
    path: directory for a persistent collection (created if needed); ``None`` keeps everything in memory.
        Opening a directory this process already has open (in the same mode) returns the same instance, one
        more reference: each open is matched by one :meth:`close`, and the last closes. Its options must agree
        (``ValueError`` otherwise).
    read_only: open an existing persistent collection for reading only, beside at most one writer process:
        no lock is taken and nothing is written (SQLite opened with ``mode=ro``; SQLite itself may create
        the ``docs.sqlite-wal``/``-shm`` coordination files if no writer left them); ``add``, ``delete``,
        ``clear`` and ``optimize`` raise :class:`ReadOnlyError`. Each search first checks (cheaply) whether
        the writer committed since, and catches up: it reflects every write acknowledged before it began. A
        new index snapshot written by the writer is loaded on a background thread and swapped in. Options
        other than ``n_probe`` and ``progress`` come from the stored collection.
    dim: vector dimension; fixed by the first :meth:`add` when ``None``.
    metric: ``"ip"`` (default; normalised embeddings), ``"cosine"`` or ``"l2"``. See :class:`Hit` for scores.
    bits: RaBitQ bits per dimension in the index (1, 2, 4, 8).
    n_probe: a fixed number of postings probed per query; ``None`` (default) uses the index's recall target
        (``target_recall`` 0.98: recall@10 0.981 on ../shared/data; a search's ``target_recall=`` overrides
        it, ``index_options={"target_recall": ...}`` changes it).
    index_threshold: below this many documents search is exact (brute force, fast at that size); when the
        count first reaches it the SPANN index is built, then updated in place by later adds and deletes.
    rebuild_growth: rebuild the index when the collection has grown this many times past the size of its
        last build. In-place growth keeps recall within ~2 points for +50%, but a 4,096-document build grown
        to 100k ends with too few, too long postings (measured: 393 heads, 1.3 replicas); rebuilding at each
        doubling costs about one extra build of the final size in total. ``None`` disables it. A rebuild
        runs on a background thread over a copy of the vectors (memory for a second index meanwhile) and
        the write that triggered it returns once the new index is in use; searches, and writes from other
        threads, go on against the current index meanwhile (the new one is caught up with those writes).
    snapshot_every: write an index snapshot after this many changed rows (also on :meth:`close` and
        :meth:`optimize`), bounding the replay work on the next open.
    index_options: extra keyword options for :class:`SpannIndex` (``head_ratio``, ``replica_count``, ...).
    name: a named collection in ``<path>/collections/<name>/`` (see the module docstring), with its own
        settings and writer lock; ``None`` (default) is the store in ``path`` itself. For an in-memory
        collection the name is a label only (``self.name``).
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        name: str | None = None,
        read_only: bool = False,
        dim: int | None = None,
        metric: str = "ip",
        bits: int = 1,
        n_probe: int | None = None,
        index_threshold: int = 4096,
        rebuild_growth: float = 2.0,
        snapshot_every: int = 50_000,
        index_options: dict[str, Any] | None = None,
        progress: bool | None = None,
    ) -> None:
        path = store_directory(path, name)  # first: everything below works on the store's own directory
        self.name = name
        check_metric(metric)
        if not isinstance(read_only, bool):
            raise TypeError(f"read_only must be True or False, got {read_only!r}")
        if read_only and path is None:
            raise ValueError("read_only=True needs the path of an existing collection")
        self.read_only = read_only
        self._refs = 1  # opens sharing this instance (see _SharedOpen)
        self._follower: _Follower | None = None  # read-only: catch-up state and snapshot following
        self._lock = _RWLock()
        self._db_lock = threading.Lock()
        self._snap_mutex = threading.RLock()  # one snapshot written at a time (see _write_snapshot)
        self._snap_gen = self._snap_written = 0  # snapshots exported / the last one written
        self._closed = False
        self._changed = 0
        self._index: SpannIndex | None = None
        self._lockfile = None
        self.path = Path(path) if path is not None else None
        # checked by a reader before every search: joined once (a Path join costs more than the stat)
        self._files = None if path is None else (str(self.path / "docs.sqlite"), str(self.path / "index" / MANIFEST))
        self.index_threshold = int(index_threshold)
        if rebuild_growth is not None and rebuild_growth <= 1:
            raise ValueError(f"rebuild_growth must be > 1 or None, got {rebuild_growth!r}")
        self.rebuild_growth = rebuild_growth
        self._built_count = 0
        self._snap_seq = 0  # the sequence the last snapshot covers (the removed log is pruned up to it)
        self._publish = False  # the index was (re)built: write a snapshot for the readers
        self._rebuild: _Rebuild | None = None  # a background rebuild in progress
        self.snapshot_every = int(snapshot_every)
        self._progress = progress
        self._filter_cache: OrderedDict[str, _Allowed] = OrderedDict()  # by filter_key (see _allowed)
        self._row_cache: OrderedDict[int, tuple] = OrderedDict()  # rowid -> (id, text, metadata); see _rows_by_rowid
        self._row_cache_bytes = 0
        self._field_indexes: dict[str, str] = {}  # field -> index type (settings 'field_indexes'; create_index)
        self._bm25: BM25Index | None = None  # BM25 ranking over the text index, built on the first text query
        self._bm25_pending: list[tuple[int, str | None]] = []  # texts added since, indexed at the next one
        self._bm25_lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if self.path is not None and not read_only:
            self.path.mkdir(parents=True, exist_ok=True)
            self._acquire_process_lock()
        try:
            self._open_files(dim, metric, bits, n_probe, index_options)
        except BaseException:  # a failed open keeps nothing: the next open in this process must work
            self._cancel_rebuild(wait=True)
            self._release_files()
            raise

    @_names_damage
    def _open_files(
        self, dim: int | None, metric: str, bits: int, n_probe: int | None, index_options: dict[str, Any] | None
    ) -> None:
        """Open (or create) docs.sqlite and the index; part of ``__init__``, with the process lock held."""
        if self.read_only:
            return self._open_read_only(dim, metric, bits, n_probe)
        if self.path is not None:
            self._db = open_database(self.path)
        else:
            self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)
        if "crc" not in {r[1] for r in self._db.execute("PRAGMA table_info(docs)")}:
            self._db.execute("ALTER TABLE docs ADD COLUMN crc INTEGER")  # rows written before have none
        if not vectors_apart(self._db):  # a store written before: the vectors move to their own table
            migrate_vectors(self._db)
        stored = dict(self._db.execute("SELECT key, value FROM settings").fetchall())
        if stored:
            cfg = json.loads(stored["config"])
            for key, given, default in (("metric", metric, "ip"), ("bits", bits, 1)):
                if given != default and cfg[key] != (METRICS[given.lower()] if key == "metric" else given):
                    self.close()
                    raise ValueError(f"collection at {str(self.path)!r} was created with {key}={cfg[key]!r}")
            if dim is not None and cfg["dim"] is not None and int(dim) != cfg["dim"]:
                self.close()
                raise ValueError(f"collection at {str(self.path)!r} has dim {cfg['dim']}, not {dim}")
        else:
            cfg = {
                "dim": int(dim) if dim is not None else None,
                "metric": METRICS[metric.lower()],
                "bits": int(bits),
                "n_probe": n_probe,
                "index_options": index_options or {},
            }
            SpannIndex(8, metric=cfg["metric"], bits=cfg["bits"], **cfg["index_options"])  # validate early
            self._db.execute("INSERT INTO settings VALUES ('config', ?)", [config_text(cfg)])
        self._cfg = cfg
        self._fts = fulltext.available()
        if self._fts:
            self._ensure_text_index()
        self._field_indexes = self._stored_field_indexes()
        for fld, typ in self._field_indexes.items():  # a dropped SQLite index (a restored copy): made again
            self._db.execute(_create_index_sql(fld, typ))
        self._n_probe = n_probe if n_probe is not None else cfg.get("n_probe")
        self._seq = max(
            int(self._db.execute("SELECT coalesce(max(seq), 0) FROM docs").fetchone()[0]), _stored_seq(self._db)
        )
        if cfg["dim"] is not None:
            self._open_index()
            self._await_rebuild()
            if self._publish and self.path is not None:
                self._snapshot()

    # ------------------------------------------------------------------------------------------------------
    # lifecycle
    # ------------------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, *, name: str | None = None, **kwargs: Any) -> Collection:
        """Reopen an existing persistent collection (raises ``FileNotFoundError`` if there is none, and
        :class:`CorruptStoreError` naming the file when a file is damaged: see :meth:`recover`). ``name``: a
        named collection in ``path`` (see :meth:`list_collections`)."""
        store = store_directory(path, name)
        if not (store / "docs.sqlite").exists():
            if (store / "index" / MANIFEST).exists():
                raise CorruptStoreError(lost_database_message(store, "is missing"))
            if name is not None:
                raise FileNotFoundError(f"no collection named {name!r} in {str(path)!r}")
            raise FileNotFoundError(f"no collection at {str(path)!r}")
        return cls(path, name=name, **kwargs)

    @staticmethod
    def list_collections(path: str | os.PathLike) -> list[str]:
        """Names of the named collections in directory ``path``, sorted (``[]`` when there are none or the
        directory does not exist). The store in ``path`` itself (``name=None``) is not listed: whether there
        is one is ``(path / "docs.sqlite").exists()``. A named collection counts once its docs.sqlite exists."""
        root = Path(path) / COLLECTIONS_DIR
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if _NAME.fullmatch(p.name) and (p / "docs.sqlite").exists())

    @staticmethod
    def drop_collection(path: str | os.PathLike, name: str) -> None:
        """Delete the named collection ``name`` in ``path`` and its files. Raises
        :class:`CollectionLockedError` while it is open for writing (in this process or another; close it
        first) and ``FileNotFoundError`` when there is no such collection. The store in ``path`` itself
        (``name=None``) is not dropped this way (``ValueError``): its directory may hold the named ones."""
        if name is None:
            raise ValueError("drop_collection needs a collection name; the directory's own store is not dropped")
        store = store_directory(path, name)
        if not (store / "docs.sqlite").exists() and not (store / "index").exists():
            raise FileNotFoundError(f"no collection named {name!r} in {str(path)!r}")
        lock = _lock_directory(store)  # CollectionLockedError while a writer holds it
        try:  # moved aside first: an open of the same name meanwhile starts a new, empty collection
            gone = store.with_name(f".dropped-{name}-{uuid.uuid4().hex[:8]}")
            os.rename(store, gone)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
            lock.close()
        shutil.rmtree(gone, ignore_errors=True)

    def _ensure_text_index(self) -> None:
        """Create the full-text index, or build it once over the stored texts when it is missing or was made
        by another version (a collection written before it existed, or written by a Python without FTS5)."""
        want = json.dumps({"version": fulltext.VERSION, "tokenizer": fulltext.TOKENIZER})
        row = self._db.execute("SELECT value FROM settings WHERE key = 'fts'").fetchone()
        if row is not None and row[0] == want:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            fulltext.rebuild(self._db, progress=self._progress is not False)
            self._db.execute("INSERT OR REPLACE INTO settings VALUES ('fts', ?)", [want])
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _text_index_write(self, removed: list[int], added: list[tuple[int, str | None]]) -> None:
        """Keep the full-text index exact, inside the caller's transaction: ``removed`` rowids (called before
        their rows are deleted: their texts say what to unindex), ``added`` (rowid, text) pairs (after they
        are inserted). Without FTS5 the index is marked stale instead, so the next open with FTS5 rebuilds it."""
        if not self._fts:
            self._db.execute("DELETE FROM settings WHERE key = 'fts'")
            return
        if removed:
            fulltext.unindex_rows(self._db, self._texts_of(removed))
        fulltext.index_rows(self._db, added)

    @classmethod
    def recover(cls, path: str | os.PathLike, *, name: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """Repair a persistent collection whose docs.sqlite or index snapshot is damaged; returns what was
        done (``action``, counts, where the damaged files were moved). ``kwargs`` go to the constructor.

        * docs.sqlite intact (it opens, holds the settings, passes ``PRAGMA integrity_check``), snapshot
          damaged: the snapshot is moved to ``index.damaged-<n>`` and the index rebuilt from docs.sqlite, the
          source of truth: nothing is lost.
        * docs.sqlite missing, empty, not a database or failing ``integrity_check``, snapshot intact: the file
          is moved to ``docs.sqlite.damaged-<n>`` and a new one is written. Every vector of the snapshot comes
          back under its old row id; its string id, text and metadata come from the damaged file where that
          row still reads and its checksum matches (as do rows added after the snapshot); the others get
          id ``recovered-<rowid>``, no text and metadata ``{"recovered": true}`` (the snapshot holds only
          vectors: re-ingest their sources, then ``delete(filter={"recovered": True})``). Rows deleted after
          the snapshot come back that way too: a damaged file that lacks a row does not prove it was deleted
          (a damaged b-tree page hides rows without an error).
        * both damaged, or docs.sqlite damaged and no snapshot: raises :class:`CorruptStoreError` (restore a
          backup). Nothing damaged: ``action`` is ``"none"``.
        """
        path = store_directory(path, name)  # a named collection's store is recovered as a store of its own
        db_file, snap = path / "docs.sqlite", path / "index"
        lock = _lock_directory(path)
        try:
            db_problem = database_problem(db_file)
            snap_problems = verify_snapshot(snap, _FORMAT) if (snap / MANIFEST).exists() else None
            if db_problem is None and not snap_problems:
                return {"action": "none", "documents": None}
            if db_problem is not None and snap_problems is None:
                msg = f"{str(db_file)!r} is damaged ({db_problem}) and there is no index snapshot to recover from"
                raise CorruptStoreError(f"{msg}: restore docs.sqlite from a backup")
            if db_problem is not None and snap_problems:
                msg = f"{str(db_file)!r} ({db_problem}) and the index snapshot ({snap_problems[0]}) are both damaged"
                raise CorruptStoreError(f"{msg}: restore the directory from a backup")
            if db_problem is None:
                report = {"action": "rebuilt the index from docs.sqlite", "moved_aside": [str(move_aside(snap))]}
            else:
                report = cls._rebuild_database(path, db_problem)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
            lock.close()
        with cls(path, **kwargs) as col:  # re-applies the rows the snapshot lacks and writes a new one
            report["documents"] = col.count()
        return report

    @staticmethod
    def _rebuild_database(path: Path, problem: str) -> dict[str, Any]:
        """Write docs.sqlite anew from the index snapshot and what the damaged file still yields (see
        :meth:`recover`); the damaged file and its WAL are moved aside."""
        db_file, snap = path / "docs.sqlite", path / "index"
        idx = SpannIndex.load(snap, mmap=True, progress=False)
        meta = SpannIndex.read_meta(snap)
        vectors, rowids = idx.live_items()
        found = salvage(db_file, rowids, idx.dim)
        cfg = {"dim": idx.dim, "metric": idx.metric, "bits": idx.bits, "n_probe": None, "index_options": {}}
        if isinstance(found.cfg, dict) and found.cfg.keys() - {"crc32"} == cfg.keys():
            if all(found.cfg[k] == cfg[k] for k in ("dim", "metric", "bits")):
                cfg = found.cfg  # keeps n_probe and index_options
        seq = int(meta.get("seq", 0))
        rows, taken, placeholders = [], set(), 0
        for rid, vec in zip(rowids.tolist(), vectors):
            row = found.rows.get(rid)
            if row is None or row[0] in taken:  # unreadable, or deleted after the snapshot: cannot tell which
                row = (f"recovered-{rid}", None, '{"recovered": true}', vec.tobytes(), None)
                placeholders += 1
            elif row[4] is None:  # written before row checksums: the snapshot's vector is the checked one
                row = (*row[:3], vec.tobytes(), None)
            taken.add(row[0])
            rows.append((rid, *row[:4], seq))
        for rid in sorted(set(found.rows) - set(rowids.tolist())):  # added after the snapshot
            row = found.rows[rid]
            if row[0] not in taken:
                taken.add(row[0])
                rows.append((rid, *row[:4], seq + 1))
        tmp = path / "docs.sqlite.recovering"
        tmp.unlink(missing_ok=True)
        with contextlib.closing(sqlite3.connect(tmp, isolation_level=None)) as db:
            db.executescript(_SCHEMA)
            db.execute("BEGIN")
            db.execute("INSERT INTO settings VALUES ('config', ?)", [config_text(cfg)])
            db.executemany(
                "INSERT INTO docs (rowid, id, text, metadata, seq, crc) VALUES (?, ?, ?, ?, ?, ?)",
                [(*r[:4], r[5], row_crc(*r[1:5])) for r in rows],
            )
            db.executemany("INSERT INTO vectors (row, vector) VALUES (?, ?)", [(r[0], r[4]) for r in rows])
            db.execute("COMMIT")
        moved = [move_aside(db_file)] if db_file.exists() else []
        for suffix in ("-wal", "-shm"):  # never left beside the new file: SQLite would apply the old WAL to it
            extra = path / f"docs.sqlite{suffix}"
            if extra.exists():
                moved.append(extra.rename(moved[0].with_name(moved[0].name + suffix)) if moved else move_aside(extra))
        os.replace(tmp, db_file)
        return {
            "action": f"rebuilt docs.sqlite ({problem}) from the index snapshot",
            "salvaged": len(rows) - placeholders,
            "placeholders": placeholders,
            "unreadable_rows": found.failed,
            "moved_aside": [str(m) for m in moved],
        }

    def _acquire_process_lock(self) -> None:
        self._lockfile = _lock_directory(self.path)

    def _release_files(self) -> None:
        """Close the database and release the process lock (after :meth:`close`, or a failed open)."""
        self._closed = True
        if self._db is not None:
            self._db.close()
        if self._lockfile is not None:
            fcntl.flock(self._lockfile.fileno(), fcntl.LOCK_UN)
            self._lockfile.close()
            self._lockfile = None

    def close(self) -> None:
        """Write a final index snapshot (persistent collections) and release the files. Idempotent. When
        this instance was opened several times in this process, only the last ``close()`` closes it."""
        if self._closed:
            return
        with _OPEN_LOCK:
            if self._refs > 1:
                self._refs -= 1
                return
            self._refs = 0
            if getattr(self, "_key", None) is not None and _OPEN.get(self._key) is self:
                del _OPEN[self._key]
        if self._follower is not None:
            return self._close_read_only()
        self._cancel_rebuild(wait=True)
        with self._lock.write(), self._snap_mutex:  # after a snapshot another thread is writing
            try:
                # changes since the last export, or an export another thread has not written yet
                behind = self._changed or self._snap_gen > self._snap_written
                if self.path is not None and behind and self._index is not None:
                    self._snapshot()
            finally:
                self._release_files()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if not self._closed and self._lockfile is not None:
                fcntl.flock(self._lockfile.fileno(), fcntl.LOCK_UN)
                self._lockfile.close()
        with contextlib.suppress(Exception):
            if self._follower is not None and self._follower.vec_fd is not None:
                os.close(self._follower.vec_fd)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("collection is closed")

    def _check_writable(self, what: str) -> None:
        self._check_open()
        if self.read_only:
            msg = (
                f"collection at {str(self.path)!r} is open read-only: {what}() is not allowed (nothing was changed); "
                "writes go through the one writer, a Collection opened without read_only=True"
            )
            raise ReadOnlyError(msg)

    def _share(self, arg: dict[str, Any]) -> bool:
        """Another open of this instance's directory in this process (called by :class:`_SharedOpen` with
        ``_OPEN_LOCK`` held): check the options agree and count one more reference. False when closed."""
        if self._closed or self._refs <= 0:
            return False
        for key, default in (("metric", "ip"), ("bits", 1)):
            given = arg.get(key, default)
            want = self._cfg[key]
            if given != default and (METRICS.get(str(given).lower(), given) if key == "metric" else given) != want:
                raise ValueError(f"collection at {str(self.path)!r} was created with {key}={want!r}")
        if arg.get("dim") is not None and self.dim is not None and int(arg["dim"]) != self.dim:
            raise ValueError(f"collection at {str(self.path)!r} has dim {self.dim}, not {arg['dim']}")
        have = {
            "n_probe": self._n_probe,
            "index_threshold": self.index_threshold,
            "rebuild_growth": self.rebuild_growth,
            "snapshot_every": self.snapshot_every,
        }
        for key in _SHARED_OPTIONS:
            if key in have and arg.get(key) is not None and arg[key] != have[key]:
                msg = (
                    f"collection at {str(self.path)!r} is already open in this process with {key}={have[key]!r} "
                    f"(not {arg[key]!r}): the open is shared, so pass the same options, or close it first"
                )
                raise ValueError(msg)
        self._refs += 1
        return True

    # ------------------------------------------------------------------------------------------------------
    # read-only handles: open, catch up with the writer, follow its snapshots
    # ------------------------------------------------------------------------------------------------------
    def _open_read_only(self, dim: int | None, metric: str, bits: int, n_probe: int | None) -> None:
        """Open an existing collection without the lock and without writing (see ``read_only``)."""
        fl = self._follower = _Follower()
        db_file = self.path / "docs.sqlite"
        if not db_file.exists() and not (self.path / "index" / MANIFEST).exists():
            raise FileNotFoundError(f"no collection at {str(self.path)!r}")
        self._db = open_database(self.path, read_only=True)
        fl.db_ino = os.stat(db_file).st_ino
        self._cfg = cfg = json.loads(self._db.execute("SELECT value FROM settings WHERE key = 'config'").fetchone()[0])
        for key, given, default in (("metric", metric, "ip"), ("bits", bits, 1)):  # as a writer's open checks
            if given != default and cfg[key] != (METRICS[given.lower()] if key == "metric" else given):
                raise ValueError(f"collection at {str(self.path)!r} was created with {key}={cfg[key]!r}")
        if dim is not None and cfg["dim"] is not None and int(dim) != cfg["dim"]:
            raise ValueError(f"collection at {str(self.path)!r} has dim {cfg['dim']}, not {dim}")
        want = json.dumps({"version": fulltext.VERSION, "tokenizer": fulltext.TOKENIZER})
        row = self._db.execute("SELECT value FROM settings WHERE key = 'fts'").fetchone()
        self._fts = fulltext.available() and row is not None and row[0] == want  # a reader cannot build it
        self._field_indexes = self._stored_field_indexes()
        self._n_probe = n_probe if n_probe is not None else self._cfg.get("n_probe")
        self._seq = 0
        fl.data_version = self._data_version()
        fl.manifest = self._manifest_sig()
        if self._cfg["dim"] is not None:
            idx = self._load_snapshot()
            self._index = idx if idx is not None else self._new_index()
            self._watch_vectors(self._index)
        with self._lock.write():
            self._catch_up(full=True)

    def _data_version(self) -> int:
        with self._db_lock:
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def _manifest_sig(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self._files[1])
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load_snapshot(self) -> SpannIndex | None:
        """The current snapshot, memory-mapped (``None`` when there is none). The writer may switch snapshots
        (and delete the old one) while this reads: then the new one is loaded."""
        snap = self.path / "index"
        for _ in range(20):
            sig = self._manifest_sig()
            if sig is None:
                return None
            try:
                idx = SpannIndex.load(snap, mmap=True, progress=False)
            except (ValueError, TypeError, OSError) as exc:
                if self._manifest_sig() != sig:
                    continue  # switched meanwhile: load the new one
                raise CorruptStoreError(f"{exc}; {RECOVER_INDEX}") from None
            if idx.dim != self._cfg["dim"] or idx.metric != self._cfg["metric"]:
                msg = f"index snapshot at {str(snap)!r} does not match the collection settings; {RECOVER_INDEX}"
                raise CorruptStoreError(msg)
            if idx.n_heads:  # room in every posting for the writer's next adds (see _READER_SLACK)
                idx.reserve(_READER_SLACK)
                _release_freed_memory()
            return idx
        raise CorruptStoreError(f"the index snapshot at {str(snap)!r} kept changing while it was being loaded")

    def _watch_vectors(self, idx: SpannIndex) -> None:
        """Keep the mapped vectors file open to check its size before each search: a file truncated under a
        mapping would kill the process (SIGBUS) on the next read of a lost page."""
        fl = self._follower
        with fl.fd_lock:
            if fl.vec_fd is not None:
                os.close(fl.vec_fd)
                fl.vec_fd = None
            snap_dir = idx.snapshot_dir
            if snap_dir is None or not idx.stats().get("vectors_mmapped"):
                return
            with contextlib.suppress(OSError):  # already replaced by a newer snapshot: nothing left to truncate
                fd = os.open(snap_dir / "vectors.npy", os.O_RDONLY)
                fl.vec_size = os.fstat(fd).st_size
                fl.vec_fd = fd

    def _check_files(self) -> None:
        fl = self._follower
        db_file = self._files[0]
        try:
            ino = os.stat(db_file).st_ino
        except FileNotFoundError:
            ino = None
        if ino != fl.db_ino:
            msg = (
                f"{str(db_file)!r} was {'removed' if ino is None else 'replaced'} while this read-only handle was "
                "open (directory deleted, restored or recovered?): close this handle and open the collection again"
            )
            raise CorruptStoreError(msg)
        with fl.fd_lock:
            changed = fl.vec_fd is not None and os.fstat(fl.vec_fd).st_size != fl.vec_size
        if changed:
            msg = (
                f"the memory-mapped index vectors of {str(self.path)!r} changed size under this reader (truncated "
                f"on disk?); reading them could kill the process, so this handle stops: {RECOVER_INDEX}"
            )
            raise CorruptStoreError(msg)

    def _refresh(self) -> None:
        """Before a read-only handle's search: make it reflect every write committed before now. Costs two
        ``stat`` calls and ``PRAGMA data_version`` when nothing changed."""
        fl = self._follower
        if fl is None:
            return
        self._check_files()
        sig = self._manifest_sig()
        if sig is not None and sig != fl.manifest:
            self._follow(sig)
        if self._data_version() == fl.data_version:
            return
        with fl.refresh_lock:
            dv = self._data_version()  # read before catching up: a commit after it is seen next time
            if dv == fl.data_version:
                return
            with self._lock.write():
                self._check_open()
                self._catch_up()
            fl.data_version = dv

    def _catch_up(self, *, full: bool = False, new_index: SpannIndex | None = None) -> None:
        """Bring the index (and the BM25 ranking) up to the writer's last commit, read in one SQLite read
        transaction: rows with a rowid above the last seen are added (rowids only grow, so upserts are
        there too), rows in ``removed`` since the last seen sequence are deleted. ``full`` (or a position
        older than the pruned log) compares every rowid instead. ``new_index`` (a loaded snapshot) is brought
        to the same state by comparing every rowid, then replaces the index. Called with the write lock."""
        fl = self._follower
        with self._db_lock:
            self._db.execute("BEGIN")
            try:
                seq = _stored_seq(self._db)
                self._field_indexes = self._stored_field_indexes()
                if self._cfg["dim"] is None:
                    row = self._db.execute("SELECT value FROM settings WHERE key = 'config'").fetchone()
                    cfg = json.loads(row[0])
                    if cfg["dim"] is not None:  # the writer's first add fixed the dimension
                        self._cfg = cfg
                        self._index = self._new_index()
                        full = True
                full = full or _stored_int(self._db, "removed_after") > fl.seq
                rowids = None
                if self._index is None:
                    gone, new = np.zeros(0, np.int64), np.zeros(0, np.int64)
                elif full:
                    rowids = np.array([r[0] for r in self._db.execute("SELECT rowid FROM docs")], dtype=np.int64)
                    have = self._index.ids
                    gone = have[~np.isin(have, rowids, assume_unique=True)]
                    new = rowids[~self._index.contains(rowids)] if len(rowids) else rowids
                else:
                    q = "SELECT row FROM removed WHERE seq > ?"
                    gone = np.array([r[0] for r in self._db.execute(q, [fl.seq])], dtype=np.int64)
                    q = "SELECT rowid FROM docs WHERE rowid > ? ORDER BY rowid"
                    new = np.array([r[0] for r in self._db.execute(q, [fl.max_rowid])], dtype=np.int64)
                x = self._fetch_vectors(new) if len(new) else None
                texts = self._texts_of(new.tolist()) if len(new) and self._bm25 is not None and not full else []
                top = int(self._db.execute("SELECT coalesce(max(rowid), 0) FROM docs").fetchone()[0])
                if new_index is not None:
                    if rowids is None:
                        rowids = np.array([r[0] for r in self._db.execute("SELECT rowid FROM docs")], dtype=np.int64)
                    have = new_index.ids
                    n_gone = have[~np.isin(have, rowids, assume_unique=True)]
                    n_new = rowids[~new_index.contains(rowids)] if len(rowids) else rowids
                    n_x = self._fetch_vectors(n_new) if len(n_new) else None
            finally:
                self._db.execute("COMMIT")
        if self._index is not None:
            if len(gone):
                self._index.delete(gone)
            if len(new):
                fresh = ~self._index.contains(new)
                self._index.add(x[fresh], new[fresh])
        if full:
            self._bm25, self._bm25_pending = None, []  # rebuilt from the text index on the next text query
            self._forget_rows(gone.tolist())
        else:
            last = self._bm25.last_rowid if self._bm25 is not None else 0
            self._follow_write(gone.tolist(), [(r, t) for r, t in texts if r > last])
        if new_index is not None:
            if len(n_gone):
                new_index.delete(n_gone)
            if len(n_new):
                new_index.add(n_x, n_new)
            self._index = new_index
            self._watch_vectors(new_index)
            fl.swaps += 1
        fl.seq = self._seq = max(seq, fl.seq)
        fl.max_rowid = max(fl.max_rowid, top)

    def _follow(self, sig: tuple[int, int, int]) -> None:
        """Load the writer's new snapshot on a background thread, then swap it in (searches go on meanwhile)."""
        fl = self._follower
        with fl.loader_lock:
            if fl.loader is not None and fl.loader.is_alive():
                return
            fl.manifest = sig  # a snapshot that fails to load is not retried on every search
            fl.loader = threading.Thread(target=self._run_follow, name="spann-follow", daemon=True)
            fl.loader.start()

    def _run_follow(self) -> None:
        fl = self._follower
        try:
            if self._cfg["dim"] is None or self._closed:
                return
            idx = self._load_snapshot()
            if idx is None or self._closed:
                return
            with self._db_lock:  # most of the catching up, outside the write lock (searches go on)
                rowids = np.array([r[0] for r in self._db.execute("SELECT rowid FROM docs")], dtype=np.int64)
            stale = idx.ids[~np.isin(idx.ids, rowids, assume_unique=True)]
            if len(stale):
                idx.delete(stale)
            missing = rowids[~idx.contains(rowids)] if len(rowids) else rowids
            for s in range(0, len(missing), 20000):
                part = missing[s : s + 20000]
                with self._db_lock:
                    part_x = self._fetch_vectors(part)
                idx.add(part_x, part)
            with self._lock.write():
                if not self._closed:
                    self._catch_up(new_index=idx)  # the rest, and the swap, in one step
            fl.error = None
        except BaseException as exc:  # the current index stays in use (and keeps catching up from SQLite)
            fl.error = exc
            if not self._closed:
                warnings.warn(f"could not load the new index snapshot, the current index stays: {exc}", stacklevel=2)

    def _close_read_only(self) -> None:
        fl = self._follower
        with fl.loader_lock:
            loader = fl.loader
        if loader is not None and loader is not threading.current_thread():
            loader.join()
        with self._lock.write():
            self._closed = True
            if self._db is not None:
                self._db.close()
            with fl.fd_lock:
                if fl.vec_fd is not None:
                    os.close(fl.vec_fd)
                    fl.vec_fd = None

    # ------------------------------------------------------------------------------------------------------
    # index maintenance
    # ------------------------------------------------------------------------------------------------------
    @property
    def dim(self) -> int | None:
        return self._cfg["dim"]

    @property
    def metric(self) -> str:
        return self._cfg["metric"]

    @property
    def index(self) -> SpannIndex | None:
        """The :class:`SpannIndex` derived from the documents (``None`` until the dimension is known), for
        diagnostics and benchmarks: its ids are the documents' SQLite rowids (:meth:`index_ids`). Only read
        it; the Collection updates it under its own lock and replaces it with a new one on a rebuild."""
        return self._index

    def index_ids(
        self, filter: dict[str, Any] | None = None, *, where_document: dict[str, Any] | None = None
    ) -> dict[str, int]:
        """The id each document has in :attr:`index` (its SQLite rowid, never reused), by document id: of
        every document, or of those matching ``filter`` / ``where_document``; in insertion order."""
        self._check_open()
        flt = self._merge_filter(filter, where_document)
        where, params = self._compile(flt) if flt is not None else ("1", [])
        with self._lock.read(), self._db_lock:
            return dict(self._db.execute(f"SELECT id, rowid FROM docs WHERE {where} ORDER BY rowid", params))

    def _new_index(self) -> SpannIndex:
        return SpannIndex(
            self._cfg["dim"],
            metric=self._cfg["metric"],
            bits=self._cfg["bits"],
            progress=self._progress,
            **self._cfg["index_options"],
        )

    def _open_index(self) -> None:
        """Load the snapshot (if any) and bring it up to date with SQLite."""
        idx = None
        snap = self.path / "index" if self.path is not None else None
        if snap is not None and (snap / "MANIFEST.json").exists():
            try:
                idx = SpannIndex.load(snap, mmap=True, progress=self._progress)
                meta = SpannIndex.read_meta(snap)
                self._built_count = int(meta.get("built_count", len(idx)))
                self._snap_seq = int(meta.get("seq", 0))
            except (ValueError, TypeError) as exc:
                raise CorruptStoreError(f"{exc}; {RECOVER_INDEX}") from None
            if idx.dim != self._cfg["dim"] or idx.metric != self._cfg["metric"]:
                msg = f"index snapshot at {str(snap)!r} does not match the collection settings; {RECOVER_INDEX}"
                raise CorruptStoreError(msg)
        if idx is None:
            idx = self._new_index()
        rowids = np.array([r[0] for r in self._db.execute("SELECT rowid FROM docs")], dtype=np.int64)
        stale = idx.ids[~np.isin(idx.ids, rowids)]
        if len(stale):
            idx.delete(stale)
        missing = rowids[~idx.contains(rowids)] if len(rowids) else rowids
        for s in range(0, len(missing), 20000):
            part = missing[s : s + 20000]
            rows = self._fetch_vectors(part)
            idx.add(rows, part)
        self._index = idx
        self._changed = len(stale) + len(missing)
        self._maybe_build()

    def _fetch_vectors(self, rowids: np.ndarray) -> np.ndarray:
        """The stored vectors of documents ``rowids`` (existing), (n, dim) float32, in that order."""
        out = np.empty((len(rowids), self._cfg["dim"]), np.float32)
        pos = {int(r): i for i, r in enumerate(rowids)}
        apart = vectors_apart(self._db)  # a reader's store may be moved to the new layout by its writer
        found = 0
        for chunk in _chunks(rowids.tolist(), 900):
            for rid, blob in self._db.execute(vectors_sql(apart, len(chunk)), chunk):
                try:
                    out[pos[rid]] = np.frombuffer(blob, dtype=np.float32)
                except (TypeError, ValueError):
                    raise damage_error(self.path, f"the vector of row {rid} reads as {blob!r:.80}") from None
                found += 1
        if found != len(rowids):
            raise damage_error(self.path, f"{len(rowids) - found} of {len(rowids)} documents have no vector")
        return out

    def _maybe_build(self) -> None:
        """Build the index when the collection first reaches ``index_threshold`` (in place: that build is
        small), and rebuild it in the background at each ``rebuild_growth``. Called with the write lock."""
        idx = self._index
        if idx is None or len(idx) < self.index_threshold:
            return
        if idx.n_heads == 0:
            idx.build()
            self._built_count = len(idx)
            self._changed += 1
            self._publish = True
            return
        if self.rebuild_growth is not None and len(idx) >= self.rebuild_growth * max(self._built_count, 1):
            self._start_rebuild()

    def _start_rebuild(self) -> _Rebuild:
        """Start building a fresh index over a copy of the live vectors on a background thread (or return
        the one already running). Called with the write lock held."""
        if self._rebuild is not None:
            return self._rebuild
        x, ids = self._index.live_items()
        rb = _Rebuild(self._new_index(), len(ids))
        if self._progress is None:
            rb.index.progress = False  # no progress bars from a background thread unless asked for
        self._rebuild = rb
        rb.thread = threading.Thread(target=self._run_rebuild, args=(rb, x, ids), name="spann-rebuild")
        rb.thread.start()
        return rb

    def _run_rebuild(self, rb: _Rebuild, x: np.ndarray, ids: np.ndarray) -> None:
        try:
            rb.index.build(x, ids, copy=False)  # x is this rebuild's own copy: the new index keeps it
            snap = None
            with self._lock.write():
                if not rb.cancelled and not self._closed:
                    self._swap_in(rb)
                    if self.path is not None:  # readers move to the rebuilt index (written after the lock)
                        snap = self._export_snapshot()
            self._finish_write(snap)
        except BaseException as exc:  # the current index stays; optimize() and wait_for_index() report it
            rb.error = exc
        finally:
            with self._lock.write():
                if self._rebuild is rb:
                    self._rebuild = None
            rb.done.set()

    def _swap_in(self, rb: _Rebuild) -> None:
        """Catch the rebuilt index up with the writes made during its build (the current index holds them:
        it is kept in step with SQLite under the write lock), then make it current."""
        new, cur = rb.index, self._index
        have, want = new.ids, cur.ids
        gone = have[~np.isin(have, want, assume_unique=True)]
        if len(gone):
            new.delete(gone)
        missing = want[~new.contains(want)]
        for s in range(0, len(missing), 20000):
            part = missing[s : s + 20000]
            with self._db_lock:
                rows = self._fetch_vectors(part)
            new.add(rows, part)
        self._index = new
        self._built_count = rb.size
        self._changed += 1

    def _cancel_rebuild(self, *, wait: bool) -> None:
        rb = self._rebuild
        if rb is not None:
            rb.cancelled = True
            if wait and rb.thread is not threading.current_thread():
                rb.done.wait()

    def wait_for_index(self, timeout: float | None = None) -> bool:
        """Wait until a background rebuild (if one is running) has replaced the index; returns False on
        timeout. Searches never need this: they use the current index meanwhile."""
        rb = self._rebuild
        return rb is None or rb.done.wait(timeout)

    def _await_rebuild(self, before: _Rebuild | None = None) -> None:
        """Called by a write after it released the lock: wait for the rebuild it started (not ``before``,
        one that was already running when it began)."""
        rb = self._rebuild
        if rb is None or rb is before:
            return
        rb.done.wait()
        if rb.error is not None:
            warnings.warn(f"index rebuild failed, the previous index stays in use: {rb.error!r}", stacklevel=3)

    def _snapshot(self) -> None:
        """Write a snapshot of the index now (called with the write lock held)."""
        self._write_snapshot(self._export_snapshot())

    def _export_snapshot(self) -> _PendingSnapshot:
        """Take the index's snapshot (its postings copied, tens of bytes per vector; see
        ``SpannIndex.export``) for :meth:`_write_snapshot`. Called with the write lock held; the writing,
        which reads every vector, can then happen after the lock is released: searches and other writes go
        on meanwhile (at 1M vectors a snapshot writes 1.5 GB: 16 s of stalled searches under the lock)."""
        meta = {"seq": self._seq, "built_count": self._built_count}
        self._snap_gen += 1
        out = _PendingSnapshot(self._index.export(meta=meta), self._seq, self._snap_gen)
        self._changed = 0
        self._publish = False
        return out

    def _write_snapshot(self, snap: _PendingSnapshot | None) -> None:
        """Write an exported snapshot (unless a newer one was written meanwhile), then prune the readers'
        log of removed rowids up to the previous snapshot. With or without the write lock; snapshots are
        written one at a time."""
        if snap is None:
            return
        with self._snap_mutex:
            if snap.gen <= self._snap_written or self._closed:  # a later snapshot covers it already
                return
            try:
                snap.export.write(self.path / "index")
            except CorruptStoreError as exc:  # the mapped vectors were damaged on disk since the open
                raise CorruptStoreError(f"{exc}; {RECOVER_INDEX}") from None
            prev, self._snap_seq = self._snap_seq, snap.seq
            self._snap_written = snap.gen
            if prev > 0:  # readers need the log from their position on: keep it back to the previous snapshot
                with self._db_lock, contextlib.suppress(sqlite3.OperationalError):
                    self._db.execute("BEGIN IMMEDIATE")
                    try:
                        self._db.execute("DELETE FROM removed WHERE seq <= ?", [prev])
                        if prev > _stored_int(self._db, "removed_after"):
                            self._db.execute("INSERT OR REPLACE INTO settings VALUES ('removed_after', ?)", [str(prev)])
                        self._db.execute("COMMIT")
                    except BaseException:
                        self._db.execute("ROLLBACK")
                        raise

    def _log_write(self, removed: list[int]) -> None:
        """Inside a write's transaction: its sequence number, and the rowids it removed, for readers."""
        if self.path is None:
            return
        self._db.execute("INSERT OR REPLACE INTO settings VALUES ('seq', ?)", [str(self._seq)])
        if removed:
            self._db.executemany("INSERT INTO removed VALUES (?, ?)", [(self._seq, r) for r in removed])

    def _after_write(self, n: int) -> _PendingSnapshot | None:
        """After a write's index update, with the write lock held: build or rebuild when due, and take a
        snapshot when ``snapshot_every`` changes have accumulated (or the index was rebuilt); the caller
        writes it with :meth:`_finish_write` after releasing the lock."""
        self._changed += n
        self._maybe_build()
        if self.path is not None and (self._changed >= self.snapshot_every or self._publish):
            return self._export_snapshot()
        return None

    def _finish_write(self, snap: _PendingSnapshot | None) -> None:
        """Write a write's snapshot, outside the write lock. A damaged mapped vectors file only warns: the
        write itself is committed (say so rather than fail it)."""
        try:
            self._write_snapshot(snap)
        except CorruptStoreError as exc:
            warnings.warn(str(exc), stacklevel=3)

    @_names_damage
    def optimize(self) -> None:
        """Rebuild the index from scratch over the current documents (fresh heads and postings) and write a
        snapshot; returns when the new index is in use. Searches and writes go on during the build."""
        self._check_writable("optimize")
        with self._lock.write():
            if self._index is None or len(self._index) == 0:
                return
            if self._index.n_heads == 0:
                self._index.build()
                self._built_count = len(self._index)
                rb = None
            else:
                rb = self._start_rebuild()  # or the one running: it catches up with later writes on swap
        if rb is not None:
            rb.done.wait()
            if rb.error is not None:
                raise rb.error
        with self._lock.write():
            self._check_open()
            snap = self._export_snapshot() if self.path is not None else None
        self._write_snapshot(snap)

    # ------------------------------------------------------------------------------------------------------
    # writes
    # ------------------------------------------------------------------------------------------------------
    @_names_damage
    def add(
        self,
        vectors: Any,
        texts: Sequence[str | None] | None = None,
        metadatas: Sequence[dict[str, Any] | None] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Add (or replace, by id) documents; returns their ids. Durable when it returns.

        vectors: (n, dim) or (dim,) floats. texts, metadatas, ids: sequences of length n (or None).
        ids are strings; uuid4 ids are generated when None. An existing id is replaced (upsert).
        Everything is validated before anything changes: a bad call raises and leaves the collection as is.
        """
        self._check_writable("add")
        x, texts_l, meta_json, ids_l = validate_documents(
            vectors, texts, metadatas, ids, dim=self._cfg["dim"], metric=self.metric
        )
        n, dim = x.shape
        with self._lock.write():
            self._check_open()
            running = self._rebuild
            if self._cfg["dim"] is None:
                self._cfg["dim"] = dim
                self._db.execute("UPDATE settings SET value = ? WHERE key = 'config'", [config_text(self._cfg)])
                self._index = self._new_index()
            elif dim != self._cfg["dim"]:  # the first add of another thread fixed it while this one validated
                raise ValueError(f"vectors have dimension {dim}, index dimension is {self._cfg['dim']}")
            with self._db_lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    old = self._rowids_for(ids_l)
                    self._text_index_write(list(old.values()), [])
                    if old:
                        self._db.executemany("DELETE FROM docs WHERE rowid = ?", [(r,) for r in old.values()])
                    self._seq += 1
                    seq = self._seq
                    self._log_write(list(old.values()))
                    rows = [(ids_l[i], texts_l[i], meta_json[i], x[i].tobytes()) for i in range(n)]
                    self._db.executemany(
                        "INSERT INTO docs (id, text, metadata, seq, crc) VALUES (?, ?, ?, ?, ?)",
                        [(*r[:3], seq, row_crc(*r)) for r in rows],
                    )
                    new = self._rowids_for(ids_l)
                    self._db.executemany(
                        "INSERT INTO vectors (row, vector) VALUES (?, ?)", [(new[r[0]], r[3]) for r in rows]
                    )
                    self._text_index_write([], [(new[ids_l[i]], texts_l[i]) for i in range(n)])
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    self._seq -= 1
                    raise
            if old:
                self._index.delete(np.fromiter(old.values(), np.int64))
            self._index.add(x, np.array([new[i] for i in ids_l], dtype=np.int64))
            self._follow_write(list(old.values()), [(new[ids_l[i]], texts_l[i]) for i in range(n)])
            snap = self._after_write(n)
        self._finish_write(snap)
        self._await_rebuild(running)
        return ids_l

    def _texts_of(self, rowids: list[int]) -> list[tuple[int, str | None]]:
        out: list[tuple[int, str | None]] = []
        for chunk in _chunks(rowids, 900):
            q = f"SELECT rowid, text FROM docs WHERE rowid IN ({','.join('?' * len(chunk))})"
            out += self._db.execute(q, chunk).fetchall()
        return out

    def _rowids_for(self, ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for chunk in _chunks(list(ids), 900):
            q = f"SELECT id, rowid FROM docs WHERE id IN ({','.join('?' * len(chunk))})"
            out.update(self._db.execute(q, chunk).fetchall())
        return out

    @_names_damage
    def delete(
        self,
        ids: Iterable[str] | None = None,
        filter: dict[str, Any] | None = None,
        *,
        where_document: dict[str, Any] | None = None,
    ) -> int:
        """Delete documents by id and/or filter (both given: ids that also match); returns how many.

        Unknown ids are ignored. With neither ``ids`` nor ``filter`` nothing is deleted, and an empty filter
        ``{}`` counts as none (wrappers pass ``filter or {}``): deleting every document is :meth:`clear`.
        ``where_document`` (Chroma's): a condition on the text, see :func:`Collection.search`.
        """
        self._check_writable("delete")
        filter = self._merge_filter(filter, where_document)
        if isinstance(filter, dict) and not filter:
            filter = None
        if ids is None and filter is None:
            return 0
        where, params = ("1", [])
        if filter is not None:
            where, params = self._compile(filter)
        id_list = None
        if ids is not None:
            id_list = [ids] if isinstance(ids, str) else list(ids)
            for i in id_list:
                if not isinstance(i, str):
                    raise TypeError(f"ids must be strings, got {i!r}")
        with self._lock.write():
            self._check_open()
            seq_before = self._seq
            with self._db_lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    if id_list is not None:
                        rows = []
                        for chunk in _chunks(id_list, 500):
                            q = f"SELECT rowid FROM docs WHERE id IN ({','.join('?' * len(chunk))}) AND {where}"
                            rows += [r[0] for r in self._db.execute(q, [*chunk, *params])]
                    else:
                        rows = [r[0] for r in self._db.execute(f"SELECT rowid FROM docs WHERE {where}", params)]
                    if rows:
                        self._text_index_write(rows, [])
                    self._db.executemany("DELETE FROM docs WHERE rowid = ?", [(r,) for r in rows])
                    if rows:
                        self._seq += 1
                        self._log_write(rows)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    self._seq = seq_before
                    raise
            self._follow_write(rows, [])
            snap = None
            if rows and self._index is not None:
                self._index.delete(np.array(rows, dtype=np.int64))
                snap = self._after_write(len(rows))
        self._finish_write(snap)
        return len(rows)

    @_names_damage
    def clear(self) -> None:
        """Delete every document (settings and dimension are kept)."""
        self._check_writable("clear")
        with self._lock.write():
            self._cancel_rebuild(wait=False)
            self._rebuild = None
            with self._db_lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute("DELETE FROM docs")
                    if self.path is not None:  # readers compare all rowids once (the log cannot say "all")
                        self._seq += 1
                        self._log_write([])
                        self._db.execute("DELETE FROM removed")
                        self._db.execute(
                            "INSERT OR REPLACE INTO settings VALUES ('removed_after', ?)", [str(self._seq)]
                        )
                    if self._fts:
                        self._db.execute(f"INSERT INTO {fulltext.TABLE} ({fulltext.TABLE}) VALUES ('delete-all')")
                    else:
                        self._db.execute("DELETE FROM settings WHERE key = 'fts'")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            if self._cfg["dim"] is not None:
                self._index = self._new_index()
                if self.path is not None:
                    self._snapshot()
            self._filter_cache.clear()
            self._forget_rows(None)
            self._bm25, self._bm25_pending = None, []

    def _forget_rows(self, gone: Iterable[int] | None) -> None:
        """Drop deleted rows from the row cache (all of them for ``None``): their rowids never come back, so
        this only frees the memory."""
        with self._db_lock:
            cache = self._row_cache
            if gone is None:
                cache.clear()
                self._row_cache_bytes = 0
                return
            for r in gone:
                old = cache.pop(r, None)
                if old is not None:
                    self._row_cache_bytes -= _row_bytes(old)

    def _follow_write(self, gone: list[int], added: list[tuple[int, str | None]]) -> None:
        """Keep the in-memory views of the rows in step with a committed write (under the write lock): deleted
        rows leave the row cache; the BM25 ranking takes deletes at once, added texts at the next text query
        (tokenized then in one batch)."""
        if gone and self._row_cache:
            self._forget_rows(gone)
        if self._bm25 is None:
            return
        if gone:
            self._bm25.delete(gone)
            dropped = set(gone)
            self._bm25_pending = [p for p in self._bm25_pending if p[0] not in dropped]
        self._bm25_pending += [p for p in added if p[1]]
        if len(self._bm25_pending) > 200_000:  # cheaper to rebuild from the text index when next needed
            self._bm25, self._bm25_pending = None, []

    # ------------------------------------------------------------------------------------------------------
    # field indexes
    # ------------------------------------------------------------------------------------------------------
    def _stored_field_indexes(self) -> dict[str, str]:
        """The declared field indexes (settings row ``field_indexes``: field -> type)."""
        row = self._db.execute("SELECT value FROM settings WHERE key = 'field_indexes'").fetchone()
        if row is None:
            return {}
        try:
            out = json.loads(row[0])
            ok = isinstance(out, dict) and all(isinstance(k, str) and v in INDEX_TYPES for k, v in out.items())
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise damage_error(self.path, f"the settings row 'field_indexes' reads as {row[0]!r}")
        return out

    def _write_field_indexes(self, indexes: dict[str, str]) -> None:
        """Inside the caller's transaction: the declared field indexes become ``indexes``."""
        if indexes:
            text = json.dumps(indexes, sort_keys=True, ensure_ascii=False)
            self._db.execute("INSERT OR REPLACE INTO settings VALUES ('field_indexes', ?)", [text])
        else:
            self._db.execute("DELETE FROM settings WHERE key = 'field_indexes'")

    @_names_damage
    def create_index(self, field: str, type: str | None = None) -> str:
        """Index metadata field ``field`` (a dotted path, as filters name it) so that filters on it read the
        matching documents from the index instead of scanning every document's metadata (Qdrant's payload
        index). ``type`` (Qdrant's names): ``"keyword"`` (strings), ``"integer"`` or ``"float"`` (numbers:
        the filter language has one number type, so both index every number), ``"bool"``; ``None`` infers it
        from the values stored (the most frequent of the three kinds; ``"integer"`` when every number is one).
        Returns the type.

        The index holds the field's values of that type; ``$eq``, ``$in``, ``$gt``/``$gte``/``$lt``/``$lte``
        with an operand of that type use it, and ``$and``/``$or`` of such conditions (SQLite combines the
        indexes); anything else (``$ne``, ``$nin``, ``$contains``, ``$not``, other types) is evaluated as
        without the index, and every filter selects the same documents either way. It is a SQLite index in
        docs.sqlite: kept in the same transaction as every write, persistent, built here over the existing
        documents (about 2 s per million, with a progress bar from 100,000 documents; searches and writes
        wait meanwhile). Creating an existing index again is a no-op; a different type raises ``ValueError``
        (drop it first). Bad input (an invalid field name: :class:`~spann_vectorstore.FilterError`; an
        unknown type: ``ValueError``) changes nothing. :meth:`recover` does not keep indexes."""
        self._check_writable("create_index")
        if type is not None and type not in INDEX_TYPES:
            raise ValueError(f"unknown index type {type!r}; expected one of {tuple(INDEX_TYPES)} or None (infer)")
        index_parts(field, type or "keyword")  # a FilterError for a bad field name
        with self._lock.write():
            self._check_open()
            with self._db_lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    typ = type or self._infer_index_type(field)
                    have = self._field_indexes.get(field)
                    if have is not None and INDEX_TYPES[have] != INDEX_TYPES[typ]:
                        raise ValueError(f"field {field!r} has an index of type {have!r}; drop_index() it first")
                    if have is None:
                        self._build_field_index(field, typ)
                        self._write_field_indexes({**self._field_indexes, field: typ})
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._field_indexes = self._stored_field_indexes()
            return self._field_indexes[field]

    def _infer_index_type(self, field: str) -> str:
        """The index type of the kind of value ``field`` holds most often (strings, numbers, booleans)."""
        path = index_parts(field, "keyword")[0]  # a literal path: ``json_type(metadata, '$."f"')``
        counts = dict(self._db.execute(f"SELECT {path} AS t, count(*) FROM docs WHERE t IS NOT NULL GROUP BY t"))
        kinds = {name: sum(counts.get(t, 0) for t in INDEX_TYPES[name]) for name in ("keyword", "float", "bool")}
        best = max(kinds, key=lambda name: kinds[name])
        if kinds[best] == 0:
            raise ValueError(
                f"cannot infer the index type of field {field!r}: no document holds a string, number or boolean "
                f"there; give type= one of {tuple(INDEX_TYPES)}"
            )
        return "integer" if best == "float" and not counts.get("real") else best

    def _build_field_index(self, field: str, typ: str) -> None:
        """CREATE INDEX (inside the caller's transaction), with a progress bar for a large collection: SQLite
        runs ~15 virtual machine steps per row of an index build (measured), counted by a progress handler."""
        bar = None
        if self._progress is not False:
            total = int(self._db.execute("SELECT count(*) FROM docs").fetchone()[0])
            if total >= 100_000:
                from tqdm.auto import tqdm

                bar = tqdm(total=total, desc=f"spann: index on {field!r}", unit="doc", leave=False)
                step, per_row = 15_000, 15

                def tick() -> int:
                    bar.update(min(step // per_row, bar.total - bar.n))
                    return 0  # non-zero would interrupt the statement

                self._db.set_progress_handler(tick, step)
        try:
            self._db.execute(_create_index_sql(field, typ))
        finally:
            if bar is not None:
                self._db.set_progress_handler(None, 0)
                bar.close()

    @_names_damage
    def drop_index(self, field: str) -> None:
        """Remove the index of ``field`` (``ValueError`` if it has none; nothing changes then)."""
        self._check_writable("drop_index")
        with self._lock.write():
            self._check_open()
            if field not in self._field_indexes:
                raise ValueError(f"field {field!r} has no index; indexed fields: {sorted(self._field_indexes)}")
            with self._db_lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute(f"DROP INDEX IF EXISTS {_index_name(field)}")
                    self._write_field_indexes({k: v for k, v in self._field_indexes.items() if k != field})
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._field_indexes = self._stored_field_indexes()

    @_names_damage
    def list_indexes(self) -> dict[str, str]:
        """The indexed fields and their types (see :meth:`create_index`), by field name."""
        self._check_open()
        self._refresh()
        return dict(sorted(self._field_indexes.items()))

    # ------------------------------------------------------------------------------------------------------
    # reads
    # ------------------------------------------------------------------------------------------------------
    @_names_damage
    def count(self, filter: dict[str, Any] | None = None, *, where_document: dict[str, Any] | None = None) -> int:
        """Number of documents (matching ``filter`` / ``where_document`` when given)."""
        self._check_open()
        filter = self._merge_filter(filter, where_document)
        where, params = self._compile(filter) if filter is not None else ("1", [])
        with self._lock.read(), self._db_lock:
            return int(self._db.execute(f"SELECT count(*) FROM docs WHERE {where}", params).fetchone()[0])

    def __len__(self) -> int:
        return self.count()

    @_names_damage
    def get(
        self,
        ids: Iterable[str] | None = None,
        *,
        filter: dict[str, Any] | None = None,
        where_document: dict[str, Any] | None = None,
        limit: int | None = None,
        offset: int = 0,
        include_vectors: bool = False,
    ) -> list[Hit]:
        """Documents by id (in the order given, missing ids skipped) and/or by filter (insertion order); the
        first ``offset`` of them skipped, then at most ``limit``."""
        self._check_open()
        for name, v in (("limit", limit), ("offset", offset)):
            if v is not None:
                nonnegative_int(v, name)
        offset = int(offset or 0)
        filter = self._merge_filter(filter, where_document)
        where, params = self._compile(filter) if filter is not None else ("1", [])
        cols = "id, text, metadata" + (", vector" if include_vectors else "")
        with self._lock.read(), self._db_lock:
            apart = include_vectors and vectors_apart(self._db)
            if ids is not None:
                id_list = [ids] if isinstance(ids, str) else list(ids)
                found: dict[str, tuple] = {}
                for chunk in _chunks(id_list, 500):
                    q = rows_sql(apart, cols, f"id IN ({','.join('?' * len(chunk))}) AND {where}")
                    for row in self._db.execute(q, [*chunk, *params]):
                        found[row[0]] = row
                rows = [found[i] for i in dict.fromkeys(id_list) if i in found][offset:]
                if limit is not None:
                    rows = rows[:limit]
            else:
                lim = f" LIMIT {int(limit) if limit is not None else -1} OFFSET {offset}"
                rows = self._db.execute(rows_sql(apart, cols, f"{where} ORDER BY rowid{lim}"), params).fetchall()
        return [self._hit(r, None, include_vectors) for r in rows]

    def _hit(self, row: tuple, score: float | None, include_vectors: bool) -> Hit:
        try:  # a damaged record can read as NULLs and column defaults, without an error from SQLite
            vec = np.frombuffer(row[3], dtype=np.float32).copy() if include_vectors else None
            meta = _json_object(row[2])
            ok = isinstance(row[0], str) and isinstance(meta, dict) and (vec is None or vec.shape == (self.dim,))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise damage_error(self.path, f"a row reads as {row[:3]!r}")
        return Hit(row[0], score, row[1], meta, vec)  # positional: half the cost of keywords

    @staticmethod
    def _merge_filter(flt: Any, where_document: Any) -> Any:
        """``filter`` AND ``where_document`` (a condition on the text, Chroma's) as one filter."""
        if where_document is None:
            return flt
        doc = document_filter(where_document)
        return doc if not flt else {"$and": [flt, doc]}

    def _compile(self, flt: Any) -> tuple[str, list[Any]]:
        if self._fts is False and uses_text_index(flt):
            raise fulltext.unavailable_error()
        return compile_filter(flt, self._field_indexes)

    def _allowed(self, flt: dict[str, Any]) -> np.ndarray:
        """Rowids matching ``flt``. Cached per filter (32 filters, least recently used out) with the write
        sequence they reflect; a cached entry behind the current sequence is brought forward by the writes
        since (rows above its largest rowid that match, rows in the ``removed`` log since its sequence: rowids
        only grow), so a repeated filter costs the new rows, not a scan, while a writer adds. In memory (no
        log) or behind the pruned log, it is evaluated again."""
        key = filter_key(flt)
        with self._db_lock:  # readers run concurrently: the cache is guarded with the connection
            hit = self._filter_cache.get(key)
            if hit is not None:
                self._filter_cache.move_to_end(key)
                if hit.seq >= self._seq:
                    return hit.rows
        where, params = self._compile(flt)  # only on a miss (a long $in list costs milliseconds)
        with self._db_lock:
            entry = self._allowed_rows(where, params, self._filter_cache.get(key))
            self._filter_cache[key] = entry
            self._filter_cache.move_to_end(key)
            while len(self._filter_cache) > 32:
                self._filter_cache.popitem(last=False)
        return entry.rows

    def _allowed_rows(self, where: str, params: list[Any], old: _Allowed | None) -> _Allowed:
        """The rows matching ``where`` (with the connection lock), from ``old`` when the log reaches it."""
        db = self._db
        own = not db.in_transaction
        if own:
            db.execute("BEGIN")  # one read snapshot for the rows, the sequence and the log
        try:
            seq = _stored_seq(db) if self.path is not None else self._seq
            top = int(db.execute("SELECT coalesce(max(rowid), 0) FROM docs").fetchone()[0])
            if old is not None and self.path is not None and old.seq >= _stored_int(db, "removed_after"):
                q = f"SELECT group_concat(rowid) FROM docs WHERE rowid > ? AND {where}"
                new = _rowid_array(db.execute(q, [old.top, *params]))
                gone = _rowid_array(db.execute("SELECT group_concat(row) FROM removed WHERE seq > ?", [old.seq]))
                rows = old.rows[~np.isin(old.rows, gone)] if len(gone) else old.rows
                rows = np.concatenate([rows, new]) if len(new) else rows
            else:
                rows = _rowid_array(db.execute(f"SELECT group_concat(rowid) FROM docs WHERE {where}", params))
        finally:
            if own:
                db.execute("COMMIT")
        return _Allowed(max(seq, self._seq), top, rows)

    @_names_damage
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
        """Nearest documents, best first. A single vector (dim,) gives ``list[Hit]``; a batch (nq, dim)
        gives one list per query. ``filter`` (see :mod:`spann_vectorstore.filters`) is applied inside the
        search, so ``k`` hits come back whenever ``k`` documents match. ``where_document`` (Chroma's) is a
        condition on the text: ``{"$contains": "x"}``, ``{"$not_contains": "x"}``, ``{"$match": "words"}``
        (full-text), or ``$and``/``$or`` of those. An empty collection gives ``[]``. How deep the index searches:
        ``n_probe`` postings if given (or set on the collection), else the depth that reaches ``target_recall``
        recall@k (default: the index's, 0.98; see ``SpannIndex.calibrate``)."""
        self._check_open()
        positive_int(k, "k")
        depth = self._depth(n_probe, target_recall)
        self._refresh()
        arr = np.asarray(vector_or_vectors)
        single = arr.ndim == 1
        flt = self._merge_filter(filter, where_document)
        with self._lock.read():
            self._check_open()
            allowed = self._allowed_for(flt)
            if self._index is None:
                if arr.ndim not in (1, 2) or arr.size == 0:
                    raise ValueError(f"queries must be (dim,) or (nq, dim), got shape {arr.shape}")
                return [] if single else [[] for _ in range(arr.shape[0])]
            if single:
                return self._search_one(arr, int(k), depth, allowed, include_vectors)
            out = self._materialize(self._ranked(arr, int(k), depth, allowed), int(k), include_vectors)
        return out

    @_names_damage
    def text_search(
        self,
        text_or_texts: str | Sequence[str],
        k: int = 4,
        *,
        filter: dict[str, Any] | None = None,
        where_document: dict[str, Any] | None = None,
        include_vectors: bool = False,
    ) -> list[Hit] | list[list[Hit]]:
        """Full-text search: documents ranked by BM25 (FTS5's tokens, k1 0.9, b 0.4) for the words of ``text``,
        best first; ``Hit.score`` is the BM25 score (higher is better). A string gives ``list[Hit]``, a list of strings
        one list per query. The text is data (quotes, ``AND``/``OR``, ``*``, ``:`` are plain characters);
        any word may match (OR), documents matching more and rarer words rank first; words are matched as the
        tokenizer folds them (case, diacritics, English suffixes; Chinese/Japanese by characters, see
        :mod:`spann_vectorstore.fulltext`). Text without words gives no hits. ``filter`` and
        ``where_document`` as in :meth:`search`: ``k`` hits whenever ``k`` matching documents contain a word.
        Raises :class:`~spann_vectorstore.fulltext.FullTextUnavailableError` when SQLite lacks FTS5."""
        self._check_open()
        positive_int(k, "k")
        self._refresh()
        single, texts = query_texts(text_or_texts)
        flt = self._merge_filter(filter, where_document)
        with self._lock.read():
            self._check_open()
            ranked = [self._text_ranked(t, int(k), flt)[0] for t in texts]
            out = self._materialize(ranked, int(k), include_vectors, higher_better=True)
        return out[0] if single else out

    @_names_damage
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
        """Dense and full-text search fused: the query's text (BM25 leg) and its embedding (dense leg).

        Each leg returns its top ``candidates`` (default ``max(k, 20)``) under the same filter; every document
        of that pool is scored by both legs (the BM25 of the dense leg's documents, the dense score of the text
        leg's others, from their stored vectors), and the two scores are fused over the pool
        (:func:`spann_vectorstore.fulltext.fuse_pool`): ``fusion="dbsf"`` (default: each leg's scores' mean -+
        3 standard deviations over the pool mapped to 0 and 1, distribution-based fusion as Qdrant's),
        ``"relative"`` (min-max over the pool) or ``"rrf"`` (reciprocal rank fusion of the ranks in the pool),
        weighted by ``alpha`` (1 = dense only, 0 = text only, LlamaIndex's meaning). ``Hit.score`` is the fused
        score (higher is better). Text without words, or ``alpha=1``, gives dense search with dense scores (for
        ``l2`` distances, lower is better); text whose words no document has gives the dense order (fused
        scores). ``k`` hits whenever ``k`` documents match the filter. One text with a
        (dim,) vector gives ``list[Hit]``; a list of texts with an (nq, dim) batch gives one list per query."""
        self._check_open()
        single, texts, arr, n_cand = hybrid_arguments(text_or_texts, vector_or_vectors, k, alpha, fusion, candidates)
        depth = self._depth(n_probe, target_recall)
        self._refresh()
        flt = self._merge_filter(filter, where_document)
        with self._lock.read():
            self._check_open()
            allowed = self._allowed_for(flt)
            if self._index is None:
                return [] if single else [[] for _ in texts]
            q2 = arr[None, :] if single else arr
            # the legs one after the other, in this thread: the text leg scores the dense leg's documents too
            # (a worker thread for the text leg cost more in handoffs than it saved on 2 busy cores)
            words = [fulltext.terms(t) if alpha < 1 else [] for t in texts]
            # queries with words: the dense leg's candidates, then the text leg (which also scores them); without
            # words (or alpha 1): dense search, dense scores
            with_words = [i for i, w in enumerate(words) if w]
            without = [i for i, w in enumerate(words) if not w]
            dense: dict[int, list] = {}
            if alpha > 0 and with_words:
                q = q2 if len(with_words) == len(texts) else q2[with_words]
                dense.update(zip(with_words, self._candidates(q, n_cand, depth, allowed)))
            if alpha > 0 and without:
                q = q2 if len(without) == len(texts) else q2[without]
                dense.update(zip(without, self._ranked(q, int(k), depth, allowed)))
            ranked, higher = [], []
            for qi, text in enumerate(texts):
                if not words[qi]:
                    ranked.append(dense.get(qi, []))
                    higher.append(self.metric != "l2")
                    continue
                ranked.append(self._fused(text, words[qi], q2[qi], dense.get(qi, []), n_cand, flt, fusion, alpha))
                higher.append(True)
            out = self._materialize(ranked, int(k), include_vectors, higher_better=higher)
        return out[0] if single else out

    def _depth(self, n_probe: Any, target_recall: Any) -> dict[str, Any]:
        """The index's search depth arguments: a given ``n_probe``, else a given ``target_recall``, else the
        collection's ``n_probe`` if it has one, else the index's default (its recall target)."""
        if n_probe is not None:
            return {"n_probe": positive_int(n_probe, "n_probe")}
        if target_recall is not None:
            return {"target_recall": check_target(target_recall)}
        return {} if self._n_probe is None else {"n_probe": self._n_probe}

    def _candidates(self, arr: np.ndarray, n: int, depth: dict[str, Any], allowed: np.ndarray | None) -> list[list]:
        """The dense leg of a hybrid search: (rowid, score) best first, the top ``n`` per query. Unlike
        :meth:`_ranked` it does not extend the list over ties at the n-th place: the pool only needs its
        members (the index orders equal scores by rowid, so the cut is deterministic)."""
        return _pairs(self._index_search(arr, n, depth, allowed))

    def _fused(
        self,
        text: str,
        words: list[str],
        q: np.ndarray,
        dense: list[tuple[int, float]],
        n: int,
        flt: Any,
        fusion: str,
        alpha: float,
    ) -> list[tuple[int, float]]:
        """One hybrid query's (rowid, fused score), best first: the pool of both legs' top ``n`` (``dense`` is
        the dense leg's), every candidate scored by both (:meth:`_pool`), fused over the pool
        (:func:`fulltext.fuse_pool`)."""
        higher_dense = self.metric != "l2"
        text_hits, text_of_dense, extra, dense_of_extra = self._pool(text, words, q, dense, n, flt, alpha)
        if not text_hits or alpha == 0:  # no document has a word of the text (dense order), or text only
            return fulltext.fuse(dense, text_hits, fusion=fusion, alpha=alpha, higher_better=higher_dense)
        rows = [r for r, _ in dense] + [r for r, _ in extra]
        dense_scores = [s for _, s in dense] + dense_of_extra
        text_scores = text_of_dense + [s for _, s in extra]
        fused = fulltext.fuse_pool(dense_scores, text_scores, fusion=fusion, alpha=alpha, higher_better=higher_dense)
        order = np.argsort(-fused, kind="stable").tolist()  # ties in pool order (dense list, then text), then by id
        fused_l = fused.tolist()
        return [(rows[i], fused_l[i]) for i in order]

    def _pool(
        self, text: str, words: list[str], q: np.ndarray, dense: list[tuple[int, float]], n: int, flt: Any, alpha: float
    ) -> tuple[list[tuple[int, float]], list[float], list[tuple[int, float]], list[float]]:
        """The text leg's top ``n`` for a hybrid query whose dense leg gave ``dense``, and the scores that make
        every candidate scored by both legs: the BM25 of each dense candidate, the text leg's candidates not in
        ``dense`` (rowid, BM25), and their dense scores (from their stored vectors)."""
        d_rows = np.array([r for r, _ in dense], np.int64)
        text_hits, text_of_dense = self._text_ranked(text, n, flt, words, d_rows if alpha > 0 else None)
        seen = set(d_rows.tolist())
        extra = [(r, s) for r, s in text_hits if r not in seen] if alpha > 0 else []
        try:
            dense_of_extra = self._dense_scores(q, [r for r, _ in extra])
        except KeyError:  # not expected (both indexes follow every write under the lock): drop what is missing
            live = self._index.contains([r for r, _ in extra]).tolist()
            extra = [e for e, ok in zip(extra, live) if ok]
            dense_of_extra = self._dense_scores(q, [r for r, _ in extra])
        return text_hits, [] if text_of_dense is None else text_of_dense.tolist(), extra, dense_of_extra

    def _hybrid_legs(
        self,
        texts: list[str] | None,
        queries: np.ndarray | None,
        n: int,
        flt: Any,
        n_probe: Any,
        vectors: bool,
        target_recall: Any = None,
    ) -> tuple[list[list[Hit]] | None, list[list[Hit]] | None, list[dict[str, tuple[float, float]]]]:
        """The unfused legs of hybrid searches, for a shard of a ``ShardedCollection``: the top ``n`` by the
        dense leg (``None`` without queries) and by the text leg (``None`` without texts), with raw scores, and
        per query both scores of each of those documents (id -> (dense, BM25)), so that the driver can fuse the
        global pool as :meth:`hybrid_search` fuses its own."""
        self._check_open()
        nq = len(texts) if texts is not None else len(queries)
        with self._lock.read():
            self._check_open()
            allowed = self._allowed_for(flt)
            if self._index is None:
                return (
                    None if queries is None else [[] for _ in range(nq)],
                    None if texts is None else [[] for _ in range(nq)],
                    [{} for _ in range(nq)],
                )
            depth = self._depth(n_probe, target_recall)
            dense = self._candidates(queries, n, depth, allowed) if queries is not None else [[] for _ in range(nq)]
            text_lists, cross_rows = [], []
            for qi in range(nq):
                words = fulltext.terms(texts[qi]) if texts is not None else []
                if not words:
                    text_lists.append([])
                    cross_rows.append({})
                    continue
                q = queries[qi] if queries is not None else None
                alpha = 0.5 if queries is not None else 0.0
                text_hits, text_of_dense, extra, dense_of_extra = self._pool(
                    texts[qi], words, q, dense[qi], n, flt, alpha
                )
                text_lists.append(text_hits)
                cross = {r: (d, t) for (r, d), t in zip(dense[qi], text_of_dense)}
                cross.update((r, (d, t)) for (r, t), d in zip(extra, dense_of_extra))
                cross_rows.append(cross)
            higher_dense = self.metric != "l2"
            dense_hits = (
                self._materialize(dense, n, vectors, higher_better=higher_dense) if queries is not None else None
            )
            text_hits_out = self._materialize(text_lists, n, vectors, higher_better=True) if texts is not None else None
            wanted = sorted({r for c in cross_rows for r in c})
            ids: dict[int, str] = {}
            with self._db_lock:
                for chunk in _chunks(wanted, 900):
                    q = f"SELECT rowid, id FROM docs WHERE rowid IN ({','.join('?' * len(chunk))})"
                    ids.update(self._db.execute(q, chunk).fetchall())
        cross_ids = [{ids[r]: s for r, s in c.items() if r in ids} for c in cross_rows]
        return dense_hits, text_hits_out, cross_ids

    def _dense_scores(self, q: np.ndarray, rowids: list[int]) -> list[float]:
        """The dense leg's score of ``q`` for documents ``rowids`` (live in the index), from their stored
        vectors: the similarity (inner product, cosine) or the squared l2 distance, exactly as the index's
        search reports it (``SpannIndex.scores``)."""
        if not rowids:
            return []
        return self._index.scores(q, rowids).tolist()

    def _allowed_for(self, flt: Any) -> np.ndarray | None:
        if flt is not None and not isinstance(flt, dict):
            raise ValueError(f"a filter must be a dict, got {type(flt).__name__}")
        return self._allowed(flt) if flt else None

    def _text_ranked(
        self, text: str, n: int, flt: Any, terms: list[str] | None = None, score_rowids: np.ndarray | None = None
    ) -> tuple[list[tuple[int, float]], np.ndarray | None]:
        """(rowid, BM25 score) best first: the top ``n`` for ``text`` (its ``terms`` when already computed)
        among the documents matching ``flt``; and the BM25 scores of ``score_rowids`` when given (0 without a
        match), else None."""
        if not self._fts:
            raise fulltext.unavailable_error()
        if terms is None:
            terms = fulltext.terms(text)
        if not terms:
            return [], None if score_rowids is None else np.zeros(len(score_rowids))
        with self._bm25_lock:
            if self._bm25 is None:
                with self._db_lock:
                    self._bm25 = BM25Index.from_db(self._db)
                self._bm25_pending = [p for p in self._bm25_pending if p[0] > self._bm25.last_rowid]
            if self._bm25_pending:
                self._bm25.add(self._bm25_pending)
                self._bm25_pending = []
            tokens = self._bm25.query_tokens(terms)
            if tokens is not None:  # single-token terms: ranked in memory (a phrase goes to FTS5 below)
                ranked, scores = self._bm25.search(tokens, n, self._allowed(flt) if flt else None, score_rowids)
                return ranked, None if score_rowids is None else scores
        # phrases (runs of a space-less script): FTS5's own bm25() (its k1 1.2, b 0.75), row by row
        where, params = self._compile(flt) if flt else ("1", [])
        query = fulltext.match_query(text)
        t = fulltext.TABLE
        sql = (
            f"SELECT docs.rowid, -bm25({t}) FROM {t} JOIN docs ON docs.rowid = {t}.rowid "
            f"WHERE {t} MATCH ? AND {where} ORDER BY bm25({t}), docs.id LIMIT ?"
        )
        with self._db_lock:
            ranked = [(int(r), float(s)) for r, s in self._db.execute(sql, [query, *params, n])]
            if score_rowids is None:
                return ranked, None
            found: dict[int, float] = {}
            for chunk in _chunks([int(r) for r in score_rowids], 900):
                q = f"SELECT rowid, -bm25({t}) FROM {t} WHERE {t} MATCH ? AND rowid IN ({','.join('?' * len(chunk))})"
                found.update(self._db.execute(q, [query, *chunk]).fetchall())
        return ranked, np.array([found.get(int(r), 0.0) for r in score_rowids], np.float64)

    def _materialize(
        self,
        ranked: list[list[tuple[int, float]]],
        k: int,
        include_vectors: bool,
        *,
        higher_better: bool | list[bool] | None = None,
    ) -> list[list[Hit]]:
        """Hits for ranked ``(rowid, score)`` lists: documents fetched from SQLite, equal scores in increasing
        string id order (so the answer does not depend on insertion or reopen order), at most ``k`` each."""
        # only the first k of each list and those tied with the k-th are fetched
        ranked = [h if len(h) <= k else h[:k] + [rs for rs in h[k:] if rs[1] == h[k - 1][1]] for h in ranked]
        rows = self._rows_by_rowid({r for hits in ranked for r, _ in hits}, include_vectors)
        if higher_better is None:
            higher_better = self.metric != "l2"
        if isinstance(higher_better, bool):
            higher_better = [higher_better] * len(ranked)
        out = []
        for hits, higher in zip(ranked, higher_better):
            found = [(r, s) for r, s in hits if r in rows]
            scores = [s for _, s in found]
            if not all(map(operator.gt if higher else operator.lt, scores, scores[1:])):  # else already in order
                sign = -1.0 if higher else 1.0
                found.sort(key=lambda rs: (sign * rs[1], rows[rs[0]][0]))
            hit = self._hit
            out.append([hit(rows[r], s, include_vectors) for r, s in found[:k]])
        return out

    def _search_one(
        self, q: np.ndarray, k: int, depth: dict[str, Any], allowed: np.ndarray | None, include_vectors: bool
    ) -> list[Hit]:
        """``_materialize(_ranked(q, ...))[0]`` for one query (the common call) without the per-query lists:
        the index's top ``k + 1``; only when the last ties with the ``k``-th does it take the general path."""
        res = self._index_search(q, k + 1, depth, allowed, k)
        ids, scores = res.ids[0].tolist(), res.scores[0].tolist()
        if ids[k] >= 0 and scores[k] == scores[k - 1]:
            return self._materialize(self._ranked(q, k, depth, allowed), k, include_vectors)[0]
        n = k
        while n and ids[n - 1] < 0:
            n -= 1
        del ids[n:], scores[n:]
        if not include_vectors:  # every hit in the row cache and no ties: the hits as they are
            get = self._row_cache.get
            rows = [get(r) for r in ids]
            if None not in rows and all(map(operator.gt if self.metric != "l2" else operator.lt, scores, scores[1:])):
                hit = self._hit
                return [hit(row, s, False) for row, s in zip(rows, scores)]
        return self._materialize([list(zip(ids, scores))], k, include_vectors)[0]

    def _rows_by_rowid(self, wanted: set[int], include_vectors: bool) -> dict[int, tuple]:
        """``rowid -> (id, text, metadata[, vector])`` of the rows in ``wanted`` that exist: from the row cache
        (see ``_ROW_CACHE_BYTES``; without vectors), the rest by one prepared SELECT per 900 rowids (SQLite
        caches the statement per length; a query's hits take one), which fills the cache when no transaction
        is open (rows of an uncommitted one could be rolled back and their rowids given to other rows)."""
        rows = {}
        missing = wanted
        if not include_vectors:
            cache = self._row_cache
            missing = []
            for r in wanted:
                row = cache.get(r)
                if row is None:
                    missing.append(r)
                else:
                    rows[r] = row
            if not missing:
                return rows
        cols = "rowid, id, text, metadata" + (", vector" if include_vectors else "")
        with self._db_lock:
            db = self._db
            apart = include_vectors and vectors_apart(db)
            for chunk in _chunks(sorted(missing), 900) if len(missing) > 900 else [list(missing)]:
                q = rows_sql(apart, cols, f"rowid IN ({','.join('?' * len(chunk))})")
                for row in db.execute(q, chunk):
                    rows[row[0]] = row[1:]
            if not include_vectors and not db.in_transaction:
                self._cache_rows([(r, rows[r]) for r in missing if r in rows])
        return rows

    def _cache_rows(self, rows: list[tuple[int, tuple]]) -> None:
        """Keep ``rows`` (rowid, (id, text, metadata)) in the row cache (with the connection lock): only rows
        that read as a document would (a damaged one raises when it is made a hit, every time)."""
        cache = self._row_cache
        size = self._row_cache_bytes
        for r, row in rows:
            if r in cache or not (isinstance(row[0], str) and isinstance(row[2], str)):
                continue
            cache[r] = row
            size += _row_bytes(row)
        while size > _ROW_CACHE_BYTES and cache:
            _, old = cache.popitem(last=False)
            size -= _row_bytes(old)
        self._row_cache_bytes = size

    def _ranked(self, arr: np.ndarray, k: int, depth: dict[str, Any], allowed: np.ndarray | None) -> list[list]:
        """(rowid, score) best first per query: the top ``k`` from the index, plus every result tied with the
        k-th score (the index breaks ties by rowid; the caller breaks them by string id). Asks the index for
        one extra result and, only for queries where it ties with the k-th, for more until the tie ends."""
        want = k + 1
        ranked = _pairs(self._index_search(arr, want, depth, allowed, k))
        while True:
            tied = [i for i, h in enumerate(ranked) if len(h) == want and h[-1][1] == h[k - 1][1]]
            if not tied or want >= len(self._index):
                break
            want = min(2 * want, len(self._index))
            q = arr[None, :] if arr.ndim == 1 else arr[tied]
            for i, h in zip(tied, _pairs(self._index_search(q, want, depth, allowed, k))):
                ranked[i] = h
        for h in ranked:
            if len(h) > k:
                h[k:] = [rs for rs in h[k:] if rs[1] == h[k - 1][1]]
        return ranked

    def _index_search(
        self, q: np.ndarray, k: int, depth: dict[str, Any], allowed: np.ndarray | None, depth_k: int | None = None
    ) -> Any:
        """The index's top ``k`` at ``depth`` (see :meth:`_depth`, already checked), a calibrated depth chosen
        for recall@``depth_k`` (default ``k``); exact (BLAS) while the search kernels compile on this
        process's first use."""
        idx = self._index
        if _warmup.ready(idx, 1 if q.ndim == 1 else len(q)):
            npr, target = depth.get("n_probe"), depth.get("target_recall")
            return idx._search(q, k, npr, target, None, allowed, None, depth_k=depth_k)
        return idx.search_exact(q, k=k, allowed_ids=allowed)

    @_names_damage
    def stats(self) -> dict[str, Any]:
        """Counts, settings, index statistics and bytes on disk (``read_only``; for a read-only handle also
        ``follower``: the writer's sequence it reflects and how many snapshots it has swapped in)."""
        self._check_open()
        self._refresh()
        with self._lock.read():
            with self._db_lock:
                count = int(self._db.execute("SELECT count(*) FROM docs").fetchone()[0])
            st = {"count": count, "dim": self.dim, "metric": self.metric, "bits": self._cfg["bits"]}
            st["n_probe"], st["index_options"] = self._cfg.get("n_probe"), dict(self._cfg.get("index_options") or {})
            st["index"] = self._index.stats() if self._index is not None else None
            st["indexed"] = bool(self._index is not None and self._index.n_heads > 0)
            st["read_only"] = self.read_only
            if self._follower is not None:
                fl = self._follower
                st["follower"] = {
                    "seq": fl.seq,
                    "snapshots_swapped_in": fl.swaps,
                    "error": repr(fl.error) if fl.error else None,
                }
            if self.path is not None:
                st["bytes_disk"] = sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
        return st

    def copy_to(self, path: str | os.PathLike, *, overwrite: bool = False, **options: Any) -> Path:
        """Write every document (id, vector, text, metadata) into a new persistent Collection at ``path`` with
        this one's settings (metric, dim, bits, n_probe, index_options; also index_threshold, rebuild_growth
        and snapshot_every); ``options`` override them. Returns the path. See :func:`copy_collection`."""
        self._check_open()
        defaults = {
            "index_threshold": self.index_threshold,
            "rebuild_growth": self.rebuild_growth,
            "snapshot_every": self.snapshot_every,
            "progress": self._progress,
        }
        return copy_collection(self, path, overwrite=overwrite, **{**defaults, **options})

    def verify(self, *, raise_on_error: bool = False) -> VerifyReport:
        """Check everything against its checksums and the index against SQLite; returns a
        :class:`VerifyReport` (``raise_on_error``: raise :class:`CorruptStoreError` with its problems instead).

        Checked: ``PRAGMA integrity_check`` of docs.sqlite (page structure, and its id index against the
        rows); each row's CRC32 (id, text, metadata JSON, vector; rows written before row checksums are
        counted as unchecked), that its metadata is a JSON object and its vector has ``dim`` finite floats;
        that the index holds exactly SQLite's rows with the same vectors (normalised for cosine); and the
        CRC32 of every file of the index snapshot, the memory-mapped vectors included (on open only their
        size is checked); the full-text index's structure (FTS5's ``integrity-check``). Reads every row and
        file once; writes wait meanwhile, searches go on.
        """
        self._check_open()
        rep = VerifyReport()
        db_name = repr(str(self.path / "docs.sqlite")) if self.path is not None else "the in-memory database"
        n = unchecked = 0
        with self._lock.read():
            try:
                with self._db_lock:
                    res = [r[0] for r in self._db.execute("PRAGMA integrity_check(10)")]
                if res != ["ok"]:
                    rep.problems.append(f"{db_name}: integrity_check: {'; '.join(res)}")
                if self._fts and not self.read_only:  # the full-text index's structure (FTS5 'integrity-check')
                    try:
                        with self._db_lock:
                            t = fulltext.TABLE
                            self._db.execute(f"INSERT INTO {t} ({t}) VALUES ('integrity-check')")
                    except sqlite3.DatabaseError as exc:
                        rep.problems.append(f"{db_name}: the full-text index is damaged ({exc}); {_RECOVER_TEXT}")
                with self._db_lock:
                    apart = vectors_apart(self._db)
                    q = rows_sql(apart, "rowid, id, text, metadata, vector, crc", "rowid > ? ORDER BY rowid LIMIT 4096")
                    if apart:  # a vector whose document is gone (the trigger deletes it with the document)
                        orphans = "SELECT count(*) FROM vectors WHERE row NOT IN (SELECT rowid FROM docs)"
                        n_orphans = int(self._db.execute(orphans).fetchone()[0])
                        if n_orphans:
                            rep.problems.append(f"{db_name}: {n_orphans} stored vectors belong to no document")
                last = -1
                while True:
                    with self._db_lock:
                        chunk = self._db.execute(q, [last]).fetchall()
                    if not chunk:
                        break
                    last = chunk[-1][0]
                    n += len(chunk)
                    unchecked += sum(r[5] is None for r in chunk)
                    self._verify_rows(chunk, db_name, rep.problems)
            except sqlite3.DatabaseError as exc:
                rep.problems.append(f"{db_name}: cannot read every row ({exc})")
            n_index = len(self._index) if self._index is not None else 0
            if n_index != n:
                rep.problems.append(f"the index holds {n_index} documents, {db_name} {n}")
            rep.checked = {"documents": n, "rows_without_checksum": unchecked, "index_documents": n_index}
            snap = self.path / "index" if self.path is not None else None
            if snap is not None and (snap / MANIFEST).exists():
                files = verify_snapshot(snap, _FORMAT)
                rep.problems += files
                rep.checked["snapshot_files"] = len(list(snap.glob("snap-*/*.npy"))) + 1
        if raise_on_error and rep.problems:
            raise CorruptStoreError("; ".join(rep.problems))
        return rep

    def _verify_rows(self, chunk: list[tuple], db_name: str, problems: list[str]) -> None:
        """Checks of :meth:`verify` for rows ``(rowid, id, text, metadata, vector, crc)``; appends to ``problems``."""
        dim, good, blobs = self._cfg["dim"], [], []
        for rid, id_, text, metadata, vector, crc in chunk:
            what = None
            if vector is None:
                what = "its vector is missing (table vectors)"
            elif crc_mismatch((id_, text, metadata, vector, crc)):
                what = "checksum mismatch (id, text, metadata or vector changed on disk)"
            elif not isinstance(vector, bytes) or len(vector) != 4 * (dim or 0):
                what = f"vector of {len(vector) if isinstance(vector, bytes) else type(vector).__name__} bytes"
            elif not isinstance(metadata, str) or not metadata.startswith("{"):
                what = "metadata is not a JSON object"
            if what is not None:
                problems.append(f"{db_name}: row {rid} (id {id_!r}): {what}")
                continue
            try:
                json.loads(metadata)
            except ValueError:
                problems.append(f"{db_name}: row {rid} (id {id_!r}): metadata is not valid JSON")
            good.append(rid)
            blobs.append(vector)
        if not good or self._index is None:
            return
        rowids = np.array(good, dtype=np.int64)
        have = self._index.contains(rowids)
        for rid in rowids[~have][:5].tolist():
            problems.append(f"row {rid} of {db_name} is missing from the index")
        x = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim)[have]
        if not np.isfinite(x).all():
            problems.append(f"{db_name}: a stored vector is not finite (rows {good[0]}-{good[-1]})")
            return
        stored = self._index.vectors(rowids[have])
        if self.metric == "cosine":
            x = x / np.linalg.norm(x, axis=1, keepdims=True)
            same = np.isclose(stored, x, rtol=1e-6, atol=1e-6).all(axis=1)  # rebuilds normalise again
        else:
            same = (stored == x).all(axis=1)
        for rid in rowids[have][~same][:5].tolist():
            problems.append(f"the index's vector of row {rid} differs from {db_name} (damaged index vectors?)")


def validate_documents(
    vectors: Any,
    texts: Sequence[str | None] | None,
    metadatas: Sequence[dict[str, Any] | None] | None,
    ids: Sequence[str] | None,
    *,
    dim: int | None,
    metric: str,
) -> tuple[np.ndarray, list[str | None], list[str], list[str]]:
    """Check one :meth:`Collection.add` call without touching any store; raises ``ValueError``/``TypeError``
    naming the problem. Returns float32 (n, dim) vectors (as given, not normalised), texts, metadata as JSON
    strings and ids (uuid4 strings when ``ids`` is None). ``dim`` None: any dimension is accepted.
    Shared by the Collection and the Ray ``ShardedCollection`` (which validates before any shard sees a write)."""
    arr = np.asarray(vectors) if not isinstance(vectors, np.ndarray) else vectors
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"vectors must be 2-D (n, dim), got shape {arr.shape}")
    n = arr.shape[0]
    if n == 0:
        raise ValueError("vectors is empty")
    x = as_matrix(arr, "vectors", dim=dim if dim is not None else arr.shape[1], metric=METRICS[metric], allow_1d=False)
    if METRICS[metric] == "cosine":  # the index normalises; keep the caller's vectors in the store
        x = np.ascontiguousarray(arr, dtype=np.float32)
    texts_l = per_vector(texts, n, "texts")
    metas_l = per_vector(metadatas, n, "metadatas")
    for i, t in enumerate(texts_l):
        if t is not None and not isinstance(t, str):
            raise TypeError(f"texts must be strings or None, got {type(t).__name__}")
        if t is not None and (problem := text_problem(t, nul=False)):
            raise ValueError(f"texts[{i}] {problem}")
    meta_json = []
    for i, m in enumerate(metas_l):
        if m is None:
            m = {}
        if not isinstance(m, dict):
            raise TypeError(f"metadatas[{i}] must be a dict, got {type(m).__name__}")
        validate_metadata(m, f"metadatas[{i}]")  # NUL, lone surrogates, int64, depth: before json.dumps recurses
        try:
            meta_json.append(json.dumps(m, allow_nan=False, ensure_ascii=False))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"metadatas[{i}] is not JSON-serialisable: {exc}") from None
    if ids is None:
        ids_l = [str(uuid.uuid4()) for _ in range(n)]
    else:
        ids_l = per_vector(ids, n, "ids")
        for i in ids_l:
            if not isinstance(i, str) or not i:
                raise TypeError(f"ids must be non-empty strings, got {i!r}")
            if problem := text_problem(i, nul=False):
                raise ValueError(f"id {i!r} {problem}")
        if len(set(ids_l)) != n:
            dup = sorted({i for i in ids_l if ids_l.count(i) > 1})[:5]
            raise ValueError(f"duplicate ids in one call: {dup}")
    return x, texts_l, meta_json, ids_l


def copy_collection(
    source: CollectionLike, path: str | os.PathLike, *, overwrite: bool = False, batch_size: int = 1000, **options: Any
) -> Path:
    """Copy every document of ``source`` (any :class:`~spann_vectorstore.CollectionLike`: a Collection, a
    ShardedCollection) into a new plain Collection at ``path``; returns ``Path(path)``.

    The copy gets the source's metric, dim, and from its ``stats()`` bits, n_probe and index_options;
    ``options`` (Collection arguments) override them. It is built in a temporary sibling directory and
    renamed into place when complete, so ``path`` never holds a partial copy. An existing collection at
    ``path`` raises ``FileExistsError`` unless ``overwrite`` (then it is replaced); so does a non-empty
    directory that holds no collection (never replaced). Copying a collection onto its own directory raises
    ``ValueError``. Documents are read ``batch_size`` at a time through the public API; writes to the source
    during the copy may or may not be in it. A source with ``list_indexes()`` (a Collection) has its field
    indexes made on the copy.
    """
    positive_int(batch_size, "batch_size")
    target = Path(path)
    here = source.path
    if here is not None and target.exists() and Path(here).resolve() == target.resolve():
        raise ValueError(f"cannot copy the collection at {str(target)!r} onto itself")
    if target.exists():
        if not target.is_dir():
            raise FileExistsError(f"{str(target)!r} exists and is not a directory; not overwriting it")
        if not (target / "docs.sqlite").exists() and any(target.iterdir()):
            raise FileExistsError(f"{str(target)!r} exists and is not a saved collection; not overwriting it")
        if (target / "docs.sqlite").exists() and not overwrite:
            raise FileExistsError(f"a collection exists at {str(target)!r}; pass overwrite=True to replace it")
    st = source.stats()
    opts: dict[str, Any] = {"metric": source.metric, "dim": source.dim}
    opts.update({key: st[key] for key in ("bits", "n_probe", "index_options") if st.get(key) is not None})
    opts.update(options)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.copy-{uuid.uuid4().hex[:8]}")
    try:
        with Collection(tmp, **opts) as dst:
            ids = [h.id for h in source.get()]
            for s in range(0, len(ids), batch_size):
                hits = source.get(ids[s : s + batch_size], include_vectors=True)
                if hits:
                    vectors = np.stack([h.vector for h in hits])
                    dst.add(vectors, [h.text for h in hits], [h.metadata for h in hits], [h.id for h in hits])
            for fld, typ in (getattr(source, "list_indexes", dict)()).items():  # a Collection's field indexes
                dst.create_index(fld, typ)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# Candidates per leg of a Collection's hybrid search (at least k): every candidate is scored by both legs, so
# the pool only has to hold the documents that can reach the fused top k; MRR@10 on the first half of
# ../shared/data/hybrid was flat from 10 to 100 (0.809-0.812), and 20 costs less than 50 (NOTES.md, session 6).
POOL_CANDIDATES = 20


def hybrid_arguments(
    text_or_texts: Any,
    vector_or_vectors: Any,
    k: Any,
    alpha: Any,
    fusion: Any,
    candidates: Any,
) -> tuple[bool, list[str], np.ndarray, int]:
    """The checked arguments of a hybrid search (``Collection`` and ``ShardedCollection``): whether one query,
    the texts, the vectors as an array, and the candidates per leg (default ``max(k, POOL_CANDIDATES)``)."""
    positive_int(k, "k")
    fulltext.check_fusion(fusion, alpha)
    n_cand = max(int(k), POOL_CANDIDATES) if candidates is None else candidates
    positive_int(n_cand, "candidates")
    single, texts = query_texts(text_or_texts)
    arr = np.asarray(vector_or_vectors)
    if arr.ndim != (1 if single else 2) or (not single and arr.shape[0] != len(texts)):
        raise ValueError(
            f"hybrid_search needs one vector per text: {len(texts)} text(s) and vectors of shape {arr.shape}"
        )
    return single, texts, arr, int(n_cand)


_RECOVER_TEXT = (
    "it is derived from the texts: delete the 'fts' row of the settings table "
    "(sqlite3 docs.sqlite \"DELETE FROM settings WHERE key = 'fts'\") and it is rebuilt on the next open"
)


def _pairs(res: Any) -> list[list[tuple[int, float]]]:
    """(id, score) per hit of each query of a search result, padding dropped."""
    pairs = zip(res.ids.tolist(), res.scores.tolist())
    return [[(r, s) for r, s in zip(ids, scores) if r >= 0] for ids, scores in pairs]


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for s in range(0, len(items), size):
        yield items[s : s + size]


def _release_freed_memory() -> None:
    """Give the heap freed by temporaries back to the OS (glibc keeps it otherwise: measured 28 MB per reader
    after loading a 90k snapshot); a no-op elsewhere."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _rowid_array(cursor: sqlite3.Cursor) -> np.ndarray:
    """The rowids of a ``SELECT group_concat(rowid) ...`` as an int64 array: one string parsed in C (10,000
    rowids: 1.2 ms, against 2.9 ms for a tuple per row)."""
    text = cursor.fetchone()[0]
    if not text:
        return np.zeros(0, np.int64)
    return np.fromstring(text, dtype=np.int64, sep=",")


def _index_name(field: str) -> str:
    """The SQLite name of the index of metadata field ``field``."""
    return "field_index_" + hashlib.sha1(field.encode()).hexdigest()[:24]


def _create_index_sql(field: str, typ: str) -> str:
    typ_sql, val_sql, guard = index_parts(field, typ)
    return f"CREATE INDEX IF NOT EXISTS {_index_name(field)} ON docs ({typ_sql}, {val_sql}) WHERE {guard}"


def _stored_int(db: sqlite3.Connection, key: str) -> int:
    row = db.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
    try:
        return int(row[0]) if row is not None else 0
    except (TypeError, ValueError):
        raise CorruptStoreError(f"the settings row {key!r} of docs.sqlite is damaged ({row[0]!r})") from None


def _stored_seq(db: sqlite3.Connection) -> int:
    """The sequence number of the last committed write (``settings['seq']``, written in each write's
    transaction; 0 for stores written before it)."""
    return _stored_int(db, "seq")


def _lock_directory(path: Path) -> Any:
    """The open ``LOCK`` file of a collection directory, flock-ed exclusively (else CollectionLockedError)."""
    fh = open(path / "LOCK", "a+")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        try:
            pid = int((path / "LOCK").read_text().split()[0])
        except (OSError, ValueError, IndexError):  # the holder has not written its pid yet
            pid = None
        if pid == os.getpid():
            holder = f"this process (pid {pid}), through another open handle"
        else:
            holder = f"another process (pid {pid})" if pid is not None else "another process"
        msg = (
            f"collection at {str(path)!r} is open for writing in {holder}; readers can open it with "
            "read_only=True meanwhile"
        )
        raise CollectionLockedError(msg) from None
    os.ftruncate(fh.fileno(), 0)  # the holder's pid, for the message above (the kernel drops the lock at exit)
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


__all__ = [
    "Collection",
    "CollectionLockedError",
    "CorruptStoreError",
    "Hit",
    "ReadOnlyError",
    "VerifyReport",
    "copy_collection",
    "store_directory",
]
