"""Folder ingestion: walk files, split into overlapping chunks, embed, add to a :class:`Collection`.

``ingest(paths, collection, embedder)`` streams: files are read one at a time (files larger than
``segment_bytes`` in segments), chunks are grouped into batches of ``batch_size``, a background thread embeds
batch ``i+1`` while batch ``i`` is added (:meth:`Embedder.embed_batches`), and nothing else accumulates, so
memory stays bounded by a few batches and one segment whatever the size of the corpus.

What is ingested: every file under the given folders except hidden ones (``.git``, ``.venv``, ...),
``__pycache__``/``node_modules`` and the collection's own directory. Binary files (a known binary suffix, a
NUL byte in the first 8 KiB, or bytes that are not UTF-8) are skipped and counted. HTML is reduced to its
text (scripts and styles dropped). Chunking is LangChain's ``RecursiveCharacterTextSplitter`` with the
separators of the file's language where it has them (Markdown, Python and other code), in
characters (``chunk_size``/``chunk_overlap``). The defaults (600/60) keep chunks under all-MiniLM-L6-v2's
256-token window for prose and most code; longer chunks are truncated by the model.

Each chunk gets metadata ``source`` (absolute path, or the :class:`Document`'s source), ``chunk`` (position
in the file), ``title`` (Markdown ``#`` heading, reStructuredText title or HTML ``<title>``, when found) and
``file_hash`` (hash of the file's bytes *and* the chunking settings), and the id
``sha256(source, chunk position, sha256(chunk text))[:32]``: re-ingesting the same content gives the same
ids, so re-running is idempotent (an upsert).

Change detection: a manifest (``ingest.sqlite`` in the collection's directory; in memory for an in-memory
collection) records per source its ``file_hash``, chunk count and chunk ids. A file whose hash is unchanged,
whose first and last chunk are still in the collection and that has no chunks of another version left is
skipped without embedding. A changed file is re-chunked and re-embedded, then its old chunks are deleted.
Ordering, so that a crash at any point loses nothing and leaves nothing behind: (1) the new chunk ids are
logged in the manifest, then the chunks are added (durable when ``Collection.add`` returns); (2) only after
the file's last chunk is in, the chunks logged for the source under another hash are deleted (an earlier
version's, or those an interrupted run stored of a version that has changed since, also when that run was
the file's first); (3) the file's manifest row is written last. A crash before (3) leaves the old row (or
none), so the next run re-ingests the file (same ids: upserts) and deletes the other versions' chunks then;
between (1) and (2) searches may see both versions of that file, never neither. When the manifest is
missing but the collection holds documents (ingested elsewhere), old chunks are found by a metadata filter
instead (slower: one scan per file).

The model and chunk settings are recorded in ``embedder.json`` beside the collection; ingesting into it with
another model raises :class:`EmbedderMismatchError` (mixing embedding spaces silently breaks search).
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import hashlib
import html.parser
import json
import os
import re
import sqlite3
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._integrity import is_damage
from ._storage import CorruptStoreError
from .collection import Collection
from .embed import Embedder
from .validation import positive_int

INFO_FILE = "embedder.json"
MANIFEST_FILE = "ingest.sqlite"
_INFO_VERSION = 1

# Suffixes skipped without reading (counted as binary).
BINARY_SUFFIXES = frozenset(
    ".png .jpg .jpeg .gif .bmp .ico .webp .tif .tiff .psd .pdf .doc .docx .xls .xlsx .ppt .pptx .odt .zip .gz "
    ".tgz .bz2 .xz .zst .7z .rar .tar .jar .whl .egg .so .dylib .dll .exe .bin .o .a .lib .pyc .pyo .class .npy "
    ".npz .pkl .pickle .parquet .feather .arrow .sqlite .sqlite3 .db .mp3 .mp4 .m4a .wav .flac .ogg .avi .mov "
    ".mkv .webm .woff .woff2 .ttf .otf .eot .safetensors .pt .pth .onnx .h5 .ckpt".split()
)
SKIP_DIRS = frozenset({"__pycache__", "node_modules"})

# LangChain splitter language per suffix (others: paragraphs, lines, words).
LANGUAGES = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".py": "python",
    ".pyi": "python",
    ".js": "js",
    ".mjs": "js",
    ".jsx": "js",
    ".ts": "ts",
    ".tsx": "ts",
    ".go": "go",
    ".java": "java",
    ".kt": "kotlin",
    ".rs": "rust",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".hpp": "cpp",
    ".cs": "csharp",
    ".rb": "ruby",
    ".php": "php",
    ".scala": "scala",
    ".swift": "swift",
    ".lua": "lua",
    ".pl": "perl",
    ".hs": "haskell",
    ".ex": "elixir",
    ".exs": "elixir",
    ".tex": "latex",
    ".proto": "proto",
    ".sol": "sol",
}
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})


class EmbedderMismatchError(ValueError):
    """The collection was filled by another model (or one of another dimension)."""


@dataclass
class Document:
    """One input document. ``text=None`` reads ``path`` (streamed, binary-checked); ``kind`` picks the splitter
    (``"markdown"``, ``"python"``, ``"html"``, ... ; default from the path's suffix); ``metadata`` is copied
    into every chunk (``source``/``chunk``/``title``/``file_hash`` are set by ingestion)."""

    source: str
    text: str | None = None
    title: str | None = None
    path: Path | None = None
    kind: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Chunk:
    id: str
    text: str
    metadata: dict[str, Any]


@dataclass
class IngestSummary:
    """What one :func:`ingest` call did. ``files_*`` count documents (files or :class:`Document` objects)."""

    files_seen: int = 0
    files_ingested: int = 0
    files_updated: int = 0  # of files_ingested: an earlier version's chunks were replaced
    files_unchanged: int = 0
    files_skipped_binary: int = 0
    files_skipped_error: int = 0  # unreadable (permissions, vanished)
    files_empty: int = 0
    chunks_added: int = 0
    chunks_deleted: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    seconds_embedding: float = 0.0  # inside the model (background thread)
    seconds_reading: float = 0.0  # reading, hashing, chunking (background thread)
    seconds_indexing: float = 0.0  # Collection.add / delete and the manifest (caller's thread)
    seconds_waiting: float = 0.0  # the caller's thread waiting for embeddings
    errors: list[str] = field(default_factory=list)  # the first few unreadable paths with the reason

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        rate = self.chunks_added / self.seconds if self.seconds else 0.0
        parts = [
            f"{self.files_seen} files seen: {self.files_ingested} ingested ({self.files_updated} updated), "
            f"{self.files_unchanged} unchanged, {self.files_skipped_binary} binary skipped",
        ]
        if self.files_skipped_error:
            parts.append(f", {self.files_skipped_error} unreadable")
        if self.files_empty:
            parts.append(f", {self.files_empty} empty")
        parts.append(
            f"; {self.chunks_added} chunks added, {self.chunks_deleted} deleted in {self.seconds:.1f} s "
            f"({rate:.1f} chunks/s; embedding {self.seconds_embedding:.1f} s, indexing {self.seconds_indexing:.1f} s)"
        )
        return "".join(parts)


# ----------------------------------------------------------------------------------------------------------
# index info (embedder.json)
# ----------------------------------------------------------------------------------------------------------
def read_index_info(path: str | os.PathLike) -> dict[str, Any] | None:
    """The model and chunking recorded in a collection directory by :func:`ingest` (``None`` if absent)."""
    p = Path(path) / INFO_FILE
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"unreadable {p}: {exc}") from None


def count_sources(path: str | os.PathLike) -> int | None:
    """Number of source files with at least one chunk recorded by :func:`ingest` in the collection directory
    ``path`` (its manifest ``ingest.sqlite``, opened read-only); ``None`` when nothing was ingested there.
    A damaged manifest raises :class:`CorruptStoreError` naming it."""
    p = Path(path) / MANIFEST_FILE
    if not p.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT count(*) FROM files WHERE chunks > 0").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise CorruptStoreError(f"{p} is damaged or not an ingest manifest ({exc})") from None


def write_index_info(path: str | os.PathLike, info: dict[str, Any]) -> None:
    """Write ``embedder.json`` atomically (temp name, then rename)."""
    p = Path(path) / INFO_FILE
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, p)


def check_embedder(collection: Collection, embedder: Embedder) -> dict[str, Any] | None:
    """Raise :class:`EmbedderMismatchError` if ``embedder`` cannot serve ``collection``; returns its record."""
    info = read_index_info(collection.path) if collection.path is not None else None
    if info is not None and info.get("model") != embedder.name:
        msg = (
            f"the index at {str(collection.path)!r} was built with model {info.get('model')!r} "
            f"({info.get('dim')}-d), not {embedder.name!r}: use that model or a new index directory"
        )
        raise EmbedderMismatchError(msg)
    if collection.dim is not None and collection.dim != embedder.dim:
        msg = (
            f"the index{f' at {str(collection.path)!r}' if collection.path else ''} holds {collection.dim}-d "
            f"vectors but model {embedder.name!r} makes {embedder.dim}-d ones: use the model that built it "
            "or a new index directory"
        )
        raise EmbedderMismatchError(msg)
    return info


# ----------------------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------------------
def iter_documents(
    paths: str | os.PathLike | Document | Iterable[str | os.PathLike | Document],
    *,
    exclude: Iterable[str | os.PathLike] = (),
) -> Iterator[Document]:
    """Documents for files and folders (walked lazily, sorted, hidden entries skipped) and :class:`Document`
    objects (passed through). Missing paths raise ``FileNotFoundError`` before anything is yielded when
    ``paths`` is a list; a lazy iterable is checked as it is consumed."""
    if isinstance(paths, (str, os.PathLike, Document)):
        paths = [paths]
    if isinstance(paths, (list, tuple)):
        for p in paths:
            if not isinstance(p, Document) and not Path(p).exists():
                raise FileNotFoundError(f"no such file or directory: {os.fspath(p)!r}")
    skip = {Path(e).resolve() for e in exclude}
    for p in paths:
        if isinstance(p, Document):
            yield p
            continue
        root = Path(p)
        if not root.exists():
            raise FileNotFoundError(f"no such file or directory: {os.fspath(p)!r}")
        if root.is_dir():
            yield from _walk(root.resolve(), skip)
        else:
            yield _file_document(root.resolve())


def _walk(root: Path, skip: set[Path]) -> Iterator[Document]:
    if root in skip:
        return
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return
    for e in entries:
        if e.name.startswith(".") or e.name in SKIP_DIRS:
            continue
        try:
            if e.is_dir(follow_symlinks=False):
                yield from _walk(Path(e.path), skip)
            elif e.is_file():
                yield _file_document(Path(e.path))
        except OSError:
            continue


def _file_document(path: Path) -> Document:
    suffix = path.suffix.lower()
    kind = "html" if suffix in HTML_SUFFIXES else LANGUAGES.get(suffix)
    return Document(source=path.as_posix(), path=path, kind=kind)


class _Binary(Exception):
    pass


class _Empty(Exception):
    pass


class _HTMLText(html.parser.HTMLParser):
    """Visible text of an HTML document, fed incrementally; block elements become line breaks."""

    _BLOCK = frozenset("p div br li ul ol tr table h1 h2 h3 h4 h5 h6 pre section article header footer".split())

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: str | None = None
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style", "noscript", "template"):
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag in self._BLOCK:
            self.parts.append("\n\n" if tag in ("p", "div", "section", "article", "pre") or tag[0] == "h" else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "noscript", "template"):
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title = ((self.title or "") + data).strip() or None
        elif not self._skip:
            self.parts.append(data)

    def take(self) -> str:
        text = "".join(self.parts)
        self.parts = []
        return re.sub(r"\n{3,}", "\n\n", re.sub(r"[ \t\r\f\v]+", " ", text))


_MD_TITLE = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.M)
_RST_ADORN = re.compile(r"^([=\-~^\"'`#*+:.])\1{2,}\s*$")


def _guess_title(kind: str | None, suffix: str, text: str) -> str | None:
    if kind == "markdown":
        m = _MD_TITLE.search(text[:20000])
        return m.group(1).strip() if m else None
    if suffix == ".rst":
        lines = text[:20000].splitlines()
        for i in range(len(lines) - 1):
            line = lines[i].strip()
            if (
                line
                and not _RST_ADORN.match(line)
                and _RST_ADORN.match(lines[i + 1])
                and len(lines[i + 1]) >= len(line)
            ):
                return line
    return None


# ----------------------------------------------------------------------------------------------------------
# chunking
# ----------------------------------------------------------------------------------------------------------
class _Splitters:
    """One LangChain splitter per language, built on first use (the import costs about a second)."""

    def __init__(self, chunk_size: int, chunk_overlap: int) -> None:
        self.chunk_size, self.chunk_overlap = chunk_size, chunk_overlap
        self._by_kind: dict[str | None, Any] = {}

    def get(self, kind: str | None) -> Any:
        sp = self._by_kind.get(kind)
        if sp is None:
            try:
                from langchain_text_splitters import Language, RecursiveCharacterTextSplitter
            except ImportError:
                msg = 'langchain-text-splitters is not installed: pip install "spann-vectorstore[embeddings]"'
                raise ImportError(msg) from None
            opts = {"chunk_size": self.chunk_size, "chunk_overlap": self.chunk_overlap}
            lang = None
            if kind not in (None, "html", "text"):
                with contextlib.suppress(ValueError):
                    lang = Language(kind)
            if lang is not None:
                sp = RecursiveCharacterTextSplitter.from_language(lang, **opts)
            else:
                sp = RecursiveCharacterTextSplitter(**opts)
            self._by_kind[kind] = sp
        return sp


def chunk_id(source: str, position: int, text: str) -> str:
    """Deterministic chunk id from source, position in the file and the chunk's content."""
    content = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return hashlib.sha256(f"{source}\0{position}\0{content}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


class _Reader:
    """Reads a document: binary check, hash (bytes + chunking settings), then segments of text."""

    NUL_BLOCK = 8192

    def __init__(self, settings: str, segment_bytes: int) -> None:
        self.settings = settings.encode()
        self.segment_bytes = segment_bytes

    def open(self, doc: Document) -> tuple[str, int, Iterator[str], str | None]:
        """(file_hash, bytes, segments, title); raises _Binary, _Empty or OSError."""
        h = hashlib.sha256(self.settings + b"\0" + (doc.kind or "").encode() + b"\0")
        if doc.text is not None:
            data = doc.text.encode("utf-8", "surrogatepass")
            h.update(data)
            if doc.title:
                h.update(b"\0title\0" + doc.title.encode("utf-8", "surrogatepass"))
            if not doc.text.strip():
                raise _Empty
            segments = self._text_segments(doc.text)
            return h.hexdigest()[:32], len(data), segments, doc.title
        path = doc.path if doc.path is not None else Path(doc.source)
        if path.suffix.lower() in BINARY_SUFFIXES:
            raise _Binary
        with open(path, "rb") as f:
            head = f.read(self.segment_bytes)
            if b"\0" in head[: self.NUL_BLOCK]:
                raise _Binary
            h.update(head)
            dec = codecs.getincrementaldecoder("utf-8-sig")()
            nbytes = len(head)
            try:
                first = dec.decode(head, final=len(head) < self.segment_bytes)
                if len(head) == self.segment_bytes:  # large file: hash and check the rest, then stream it
                    while block := f.read(self.segment_bytes):
                        h.update(block)
                        dec.decode(block)
                        nbytes += len(block)
                    dec.decode(b"", final=True)
            except UnicodeDecodeError:
                raise _Binary from None
        if nbytes == 0:
            raise _Empty
        if len(head) < self.segment_bytes:
            segments: Iterator[str] = iter([first])
        else:
            segments = self._file_segments(path)
        if doc.kind == "html":
            segments, title = self._html(segments)
        else:
            title = doc.title or _guess_title(doc.kind, path.suffix.lower(), first)
        return h.hexdigest()[:32], nbytes, segments, title

    def _text_segments(self, text: str) -> Iterator[str]:
        step = self.segment_bytes
        if len(text) <= step:
            yield text
            return
        rest = ""
        for s in range(0, len(text), step):
            seg, rest = _cut(rest + text[s : s + step])
            yield seg
        if rest:
            yield rest

    def _file_segments(self, path: Path) -> Iterator[str]:
        """Text of a large file in segments cut at paragraph (else line) breaks, decoded incrementally."""
        dec = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        rest = ""
        with open(path, "rb") as f:
            while block := f.read(self.segment_bytes):
                seg, rest = _cut(rest + dec.decode(block))
                if seg:
                    yield seg
        rest += dec.decode(b"", final=True)
        if rest:
            yield rest

    @staticmethod
    def _html(segments: Iterator[str]) -> tuple[Iterator[str], str | None]:
        parser = _HTMLText()
        first = next(segments, "")
        parser.feed(first)
        title = parser.title

        def gen() -> Iterator[str]:
            yield parser.take()
            for seg in segments:
                parser.feed(seg)
                yield parser.take()
            parser.close()
            yield parser.take()

        return gen(), title


def _cut(text: str) -> tuple[str, str]:
    """Split ``text`` at its last paragraph break (else line break) in the final quarter: (head, carry)."""
    lo = len(text) * 3 // 4
    for sep in ("\n\n", "\n"):
        i = text.rfind(sep, lo)
        if i >= 0:
            return text[: i + len(sep)], text[i + len(sep) :]
    return text, ""


# ----------------------------------------------------------------------------------------------------------
# manifest: per source its file hash, chunk count and chunk ids (change detection without metadata scans)
# ----------------------------------------------------------------------------------------------------------
_MANIFEST_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    source TEXT PRIMARY KEY, file_hash TEXT NOT NULL, chunks INTEGER NOT NULL,
    first_id TEXT, last_id TEXT, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (id TEXT PRIMARY KEY, source TEXT NOT NULL, file_hash TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks (source);
"""

_MEMORY_MANIFESTS: weakref.WeakKeyDictionary[Collection, sqlite3.Connection] = weakref.WeakKeyDictionary()


class _Manifest:
    def __init__(self, collection: Collection) -> None:
        self._lock = threading.Lock()
        if collection.path is not None:
            self.db = sqlite3.connect(collection.path / MANIFEST_FILE, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._owned = True
        else:
            db = _MEMORY_MANIFESTS.get(collection)
            if db is None:
                db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
                _MEMORY_MANIFESTS[collection] = db
            self.db = db
            self._owned = False
        self.db.executescript(_MANIFEST_SCHEMA)
        has_rows = self.db.execute("SELECT 1 FROM files LIMIT 1").fetchone() is not None
        # Documents but no manifest rows: they were added some other way; find old chunks by filter.
        self.trusted = has_rows or collection.count() == 0

    def lookup(self, source: str) -> tuple[str, int, str | None, str | None] | None:
        with self._lock:
            return self.db.execute(
                "SELECT file_hash, chunks, first_id, last_id FROM files WHERE source = ?", [source]
            ).fetchone()

    def add_chunks(self, rows: list[tuple[str, str, str]]) -> None:
        with self._lock:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO chunks (id, source, file_hash) VALUES (?, ?, ?)", rows)
            self.db.execute("COMMIT")

    def has_stale(self, source: str, file_hash: str) -> bool:
        """Chunks logged for ``source`` under another hash (an interrupted replacement)."""
        with self._lock:
            q = "SELECT 1 FROM chunks WHERE source = ? AND file_hash != ? LIMIT 1"
            return self.db.execute(q, [source, file_hash]).fetchone() is not None

    def stale_ids(self, source: str, file_hash: str) -> list[str]:
        with self._lock:
            q = "SELECT id FROM chunks WHERE source = ? AND file_hash != ?"
            return [r[0] for r in self.db.execute(q, [source, file_hash])]

    def finish(self, source: str, file_hash: str, n: int, first: str | None, last: str | None) -> None:
        with self._lock:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM chunks WHERE source = ? AND file_hash != ?", [source, file_hash])
            self.db.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)",
                [source, file_hash, n, first, last, time.time()],
            )
            self.db.execute("COMMIT")

    def close(self) -> None:
        if self._owned:
            self.db.close()


# ----------------------------------------------------------------------------------------------------------
# the pipeline
# ----------------------------------------------------------------------------------------------------------
@dataclass
class _Done:
    """A document whose last chunk is in the batch it is attached to (or that has no chunks)."""

    source: str
    file_hash: str
    n: int
    first: str | None
    last: str | None
    replaces: bool


class _Batch(list):
    """Chunks to embed and add together, plus the documents they complete."""

    def __init__(self) -> None:
        super().__init__()
        self.done: list[_Done] = []


def _names_manifest_damage(fn):
    """Raise SQLite damage of ``ingest.sqlite`` as :class:`CorruptStoreError` naming it (the collection
    raises its own damage as that already, so a raw SQLite error here comes from the manifest)."""

    @functools.wraps(fn)
    def wrapper(paths: Any, collection: Collection, *args: Any, **kwargs: Any) -> IngestSummary:
        try:
            return fn(paths, collection, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            where = str(Path(collection.path or ".") / MANIFEST_FILE)
            msg = (
                f"{where!r} is damaged ({exc}): delete it and ingest again (that run finds earlier chunks by "
                "their metadata and embeds every file once more)"
            )
            raise CorruptStoreError(msg) from exc

    return wrapper


@_names_manifest_damage
def ingest(
    paths: str | os.PathLike | Document | Iterable[str | os.PathLike | Document],
    collection: Collection,
    embedder: Embedder,
    *,
    chunk_size: int = 600,
    chunk_overlap: int = 60,
    batch_size: int = 128,
    prefetch: bool | int = True,
    progress: bool | None = None,
    segment_bytes: int = 4 << 20,
) -> IngestSummary:
    """Ingest files, folders and :class:`Document` objects into ``collection``; see the module docstring.

    paths: a path, a :class:`Document`, or an iterable of them (a generator is consumed lazily).
    chunk_size, chunk_overlap: in characters. batch_size: chunks embedded and added per step.
    prefetch: embed the next batch in a background thread while this one is added (``False`` to run serially).
    progress: a tqdm bar of chunks (``None``: when stderr is a terminal).
    segment_bytes: files larger than this are read, decoded and chunked in segments of this size.

    Raises :class:`EmbedderMismatchError` before any work when the collection was built by another model
    (or holds vectors of another dimension), ``FileNotFoundError`` for a missing path in a list.
    """
    if chunk_size <= 0 or chunk_overlap < 0 or chunk_overlap >= chunk_size:
        raise ValueError(f"need 0 <= chunk_overlap < chunk_size, got chunk_size={chunk_size}, overlap={chunk_overlap}")
    positive_int(batch_size, "batch_size")
    t_start = time.perf_counter()
    check_embedder(collection, embedder)
    exclude = [collection.path] if collection.path is not None else []
    docs = iter_documents(paths, exclude=exclude)
    summary = IngestSummary()
    settings = f"spann-ingest-v1 size={chunk_size} overlap={chunk_overlap}"
    reader = _Reader(settings, segment_bytes)
    splitters = _Splitters(chunk_size, chunk_overlap)
    manifest = _Manifest(collection)
    if collection.path is not None:
        record = {
            "version": _INFO_VERSION,
            **embedder.info(),
            "metric": collection.metric,
            "chunk_size": chunk_size,
            "chunk_overlap": chunk_overlap,
        }
        write_index_info(collection.path, record)

    def is_unchanged(source: str, file_hash: str) -> tuple[bool, bool]:
        """(unchanged, an earlier version exists)."""
        row = manifest.lookup(source)
        if row is None:  # new, or its first ingest was interrupted (chunks logged, no row yet)
            return False, not manifest.trusted or manifest.has_stale(source, file_hash)
        if row[0] != file_hash or manifest.has_stale(source, file_hash):
            return False, True
        if row[1] == 0:
            return True, True
        present = {h.id for h in collection.get([row[2], row[3]])}
        return row[2] in present and row[3] in present, True

    def batches() -> Iterator[_Batch]:
        batch = _Batch()
        for doc in docs:
            t0 = time.perf_counter()
            summary.files_seen += 1
            try:
                file_hash, nbytes, segments, title = reader.open(doc)
            except _Binary:
                summary.files_skipped_binary += 1
                continue
            except _Empty:
                summary.files_empty += 1
                # an emptied file has no chunks left: remove what an earlier version left behind
                batch.done.append(_Done(doc.source, "empty", 0, None, None, True))
                continue
            except OSError as exc:
                summary.files_skipped_error += 1
                if len(summary.errors) < 20:
                    summary.errors.append(f"{doc.source}: {exc.strerror or exc}")
                continue
            summary.bytes_read += nbytes
            unchanged, replaces = is_unchanged(doc.source, file_hash)
            if unchanged:
                summary.files_unchanged += 1
                summary.seconds_reading += time.perf_counter() - t0
                continue
            splitter = splitters.get(doc.kind)
            tail = {"title": title, "file_hash": file_hash} if title else {"file_hash": file_hash}
            n, first, last = 0, None, None
            for seg in segments:
                for piece in splitter.split_text(seg):
                    cid = chunk_id(doc.source, n, piece)
                    batch.append(Chunk(cid, piece, {**doc.metadata, "source": doc.source, "chunk": n, **tail}))
                    first = first or cid
                    last = cid
                    n += 1
                    if len(batch) >= batch_size:
                        summary.seconds_reading += time.perf_counter() - t0
                        yield batch
                        t0 = time.perf_counter()
                        batch = _Batch()
            summary.seconds_reading += time.perf_counter() - t0
            if n == 0:
                summary.files_empty += 1
            else:
                summary.files_ingested += 1
                summary.files_updated += int(replaces)
            batch.done.append(_Done(doc.source, file_hash, n, first, last, replaces))
        if batch or batch.done:
            yield batch

    from tqdm.auto import tqdm

    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(unit=" chunks", desc="ingesting", disable=not show, mininterval=0.5, dynamic_ncols=True)
    embed_s0 = embedder.seconds_total
    stream = embedder.embed_batches(batches(), prefetch=prefetch, text=_chunk_text)
    try:
        t_wait = time.perf_counter()
        for batch, vectors in stream:
            t0 = time.perf_counter()
            summary.seconds_waiting += t0 - t_wait
            if batch:
                # log the ids first: if we die after the add, the next run still knows these chunks exist
                manifest.add_chunks([(c.id, c.metadata["source"], c.metadata["file_hash"]) for c in batch])
                collection.add(vectors, [c.text for c in batch], [c.metadata for c in batch], [c.id for c in batch])
                summary.chunks_added += len(batch)
            for d in batch.done:
                stale = []
                if manifest.trusted:  # every chunk logged under another hash, before finish() forgets it
                    stale = manifest.stale_ids(d.source, d.file_hash)
                    if stale:
                        summary.chunks_deleted += collection.delete(ids=stale)
                elif d.replaces:
                    flt = {"source": d.source, "file_hash": {"$ne": d.file_hash}}
                    summary.chunks_deleted += collection.delete(filter=flt)
                if d.n or d.replaces or stale:
                    manifest.finish(d.source, d.file_hash, d.n, d.first, d.last)
            bar.update(len(batch))
            bar.set_postfix(files=summary.files_seen, refresh=False)
            t_wait = time.perf_counter()
            summary.seconds_indexing += t_wait - t0
    finally:
        stream.close()  # stops the background thread now, even when an exception keeps this frame alive
        bar.close()
        manifest.close()
        summary.seconds_embedding = embedder.seconds_total - embed_s0
        summary.seconds = time.perf_counter() - t_start
    return summary


def _chunk_text(c: Chunk) -> str:
    return c.text


__all__ = [
    "Chunk",
    "Document",
    "EmbedderMismatchError",
    "IngestSummary",
    "check_embedder",
    "chunk_id",
    "ingest",
    "iter_documents",
    "read_index_info",
    "write_index_info",
]
