"""Crash-safe snapshot directories of ``.npy`` arrays plus a JSON manifest (never pickle).

Layout of a snapshot root ``path/``::

    path/MANIFEST.json        {"format": ..., "snapshot": "snap-<n>", "meta": {...}, "arrays": {...}}
    path/snap-<n>/<name>.npy  one file per array

Writing goes to a fresh ``snap-<n+1>`` directory, every file is fsynced, then ``MANIFEST.json`` is replaced
atomically (write temp, fsync, rename) and only then is the previous snapshot removed. A crash at any point
leaves a manifest that names a complete snapshot. Loading checks every file's shape, dtype and byte size
against the manifest and a CRC32 of its contents (skipped for arrays opened memory-mapped, which are
checked for size only: :func:`verify_snapshot` reads them all), so a truncated or corrupt directory raises
:class:`CorruptStoreError` (a ``ValueError``) naming the file instead of loading. The manifest carries a
CRC32 of its own content too (manifests written before it existed are accepted without).
"""

from __future__ import annotations

import json
import mmap
import os
import re
import shutil
import sys
import threading
import weakref
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

MANIFEST = "MANIFEST.json"
_SNAP_NAME = re.compile(r"snap-\d{8}")
_ENTRY_TYPES = {"shape": list, "dtype": str, "bytes": int, "crc32": int}
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class CorruptStoreError(ValueError):
    """A file of a store is damaged, truncated or inconsistent; the message names the file."""


def array_crc(a: np.ndarray) -> int:
    """CRC32 of the bytes of ``a`` in C order (what the manifest records per array)."""
    view = np.ascontiguousarray(a).view(np.uint8).reshape(-1)
    pages = MappedPages.of(a)  # a pass over a large map keeps ~1 GB of it resident
    crc = 0
    step = 1 << 26
    for s in range(0, len(view), step):
        crc = zlib.crc32(view[s : s + step], crc)
        pages.read(step)
    return crc


_crc = array_crc  # the name used inside this module


class Chunked(NamedTuple):
    """An array written to a snapshot block by block, never whole in memory: its ``shape`` and ``dtype``,
    and ``blocks()`` yielding C-contiguous arrays whose rows, in order, are its rows (a save of 10M mapped
    vectors, for instance, without a 15 GB copy)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    blocks: Callable[[], Iterator[np.ndarray]]


_PAGE_BUDGET = 1 << 30  # bytes read through a map between two releases of its pages
# bytes a read fault may map around the faulting page: 64 KB of fault-around, more with large page-cache
# folios (Linux 6.18 here: ~0.2-0.8 MB per scattered 1 KB row read; NOTES, session 9)
_FAULT_AROUND = 1 << 20


class MappedPages:
    """The read-only file mapping under an array (``np.load(mmap_mode="r")``, a read-only ``np.memmap`` or a
    view of one), to keep a pass over it from filling this process's resident set.

    ``read(nbytes)`` counts the bytes a caller read through the array; past ``budget`` the mapping's pages are
    dropped from the process (``madvise(MADV_DONTNEED)``: the page cache keeps them, and the next read of
    one is a minor fault, not a disk read). A build over a 15 GB map then holds ~1 GB of it resident, not
    all of it. For an array that is not such a map (in memory, or a writable or copy-on-write map, whose
    private pages must not be dropped) every call is a no-op."""

    def __init__(self, mm: mmap.mmap | None, budget: int | None = None) -> None:
        self._mm = mm
        self._budget = _PAGE_BUDGET if budget is None else budget
        self._n = 0

    @classmethod
    def of(cls, a: Any, budget: int | None = None) -> MappedPages:
        b, mode = a, None
        while b is not None and not isinstance(b, mmap.mmap):
            if isinstance(b, np.memmap):
                mode = b.mode
            b = getattr(b, "base", None)
        ok = b is not None and mode == "r" and hasattr(mmap, "MADV_DONTNEED")
        return cls(b if ok else None, budget)

    @property
    def mapped(self) -> bool:
        return self._mm is not None

    def gathered(self, rows: int, row_bytes: int) -> None:
        """Count a gather of ``rows`` scattered rows: a read fault on a file map also maps the cached pages
        around it (fault-around, large folios), so each row may bring up to ~1 MB into the resident set, not
        its own bytes (the 10M build's encoder, counting bytes, held 13.9 GB of the input resident). A
        gather of many scattered rows can map most of the file by itself: releases then come after each."""
        self.read(rows * max(row_bytes, _FAULT_AROUND))

    def read(self, nbytes: int) -> None:
        if self._mm is None:
            return
        self._n += int(nbytes)
        if self._n >= self._budget:
            self.release()

    def release(self) -> None:
        """Drop every page of the mapping from this process's resident set now."""
        self._n = 0
        if self._mm is not None:
            try:
                self._mm.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError):  # closed, or the platform refuses: only memory is at stake
                self._mm = None


# ----------------------------------------------------------------------------------------------------------
# scattered rows of a mapped file, read without mapping them
# ----------------------------------------------------------------------------------------------------------
# the files under read-only maps this package made (or was given) for vectors: mmap -> (path, st_dev, st_ino)
_MAPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_PREAD: list = []  # [the compiled reader] or [None] where there is none (no libc pread, or Numba refused)
_PREAD_LOCK = threading.Lock()


def _map_of(a: Any) -> tuple[mmap.mmap | None, np.memmap | None]:
    """The mmap under ``a`` and the outermost ``np.memmap`` on the way to it (None, None if there is none)."""
    b, m = a, None
    while b is not None and not isinstance(b, mmap.mmap):
        if isinstance(b, np.memmap) and m is None:
            m = b
        b = getattr(b, "base", None)
    return (b, m) if b is not None else (None, None)


def register_map(a: Any, path: str | os.PathLike) -> None:
    """Note that the read-only map under ``a`` was just made from the file ``path`` (identified by device and
    inode now), so :func:`take_rows` may read its rows through the file. A no-op for anything else."""
    mm, m = _map_of(a)
    if mm is None or m is None or m.mode != "r":
        return
    try:
        st = os.stat(path)
    except OSError:
        return
    _MAPS[mm] = (os.fspath(path), st.st_dev, st.st_ino)


def _reader() -> Any:
    """The Numba pread loop (compiled on first use: it calls libc through ctypes, which Numba cannot cache),
    or None where it is not available."""
    with _PREAD_LOCK:
        if not _PREAD:
            _PREAD.append(_compile_reader())
        return _PREAD[0]


def _compile_reader() -> Any:
    if sys.platform == "win32":
        return None
    try:
        import ctypes

        import numba

        pread = ctypes.CDLL(None, use_errno=True).pread
        pread.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int64]
        pread.restype = ctypes.c_ssize_t

        @numba.njit(nogil=True)
        def read_rows(fd, rows, out, offset, row_bytes):  # pragma: no cover (compiled)
            """Rows ``rows`` of the file (row i at ``offset + i * row_bytes``) into ``out``, consecutive rows
            in one call; returns the number of rows read before a failed or short read (len(rows) if none)."""
            base = out.ctypes.data
            n = rows.shape[0]
            j = 0
            while j < n:
                e = j + 1
                while e < n and rows[e] == rows[e - 1] + 1:
                    e += 1
                want = (e - j) * row_bytes
                done = 0
                while done < want:
                    r = pread(fd, base + j * row_bytes + done, want - done, offset + rows[j] * row_bytes + done)
                    if r <= 0:
                        return j
                    done += r
                j = e
            return n

        out = np.zeros((1, 1), np.float32)
        read_rows(-1, np.zeros(1, np.int64), out, 0, 4)  # compile now (a bad descriptor: reads nothing)
        return read_rows
    except Exception:  # no libc pread, or Numba cannot call it here: gathers through the map instead
        return None


def take_rows(a: np.ndarray, idx: Any, pages: MappedPages | None = None, *, min_rows: int = 1) -> np.ndarray:
    """``a[idx]`` for a 2-D array and an int index array (a copy).

    When ``a`` is a read-only map of a file this package noted (:func:`register_map`: a build's ``.npy``
    input, a snapshot loaded with ``mmap=True``), its rows are read with ``pread`` into a new array instead:
    a read fault through a map maps the cached pages around the row as well (0.2-0.8 MB for a 1 KB row with
    this kernel's large page-cache folios: NOTES, session 9), so gathering a few thousand scattered rows
    put most of a 15 GB file into the resident set. ``pread`` copies the rows and maps nothing (measured
    1.25 us a scattered 1.5 KB row, against 3.4 us through the map). Otherwise (or if the file is not the
    one mapped any more, or ``idx`` has fewer than ``min_rows`` rows: the reader is compiled once per
    process, ~0.5 s, which a search or a small split should not wait for) it gathers through the array and
    counts the rows on ``pages``."""
    idx = np.asarray(idx)
    src = _file_rows(a, idx) if len(idx) >= min_rows else None
    read = _reader() if src is not None else None
    fd = -1
    if read is not None:
        try:
            fd = os.open(src[0], os.O_RDONLY)
        except OSError:
            fd = -1
    if fd >= 0:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != src[1:3]:  # replaced under the map: read through the map
            os.close(fd)
            fd = -1
    if fd < 0:
        out = a[idx]
        if pages is not None:
            pages.gathered(len(out), out[:1].nbytes)
        return out
    path, _, _, offset = src
    try:
        rows = np.ascontiguousarray(idx, np.int64)
        out = np.empty((len(rows), a.shape[1]), a.dtype)
        rb = a.shape[1] * a.dtype.itemsize
        done = int(read(fd, rows, out, offset, rb))
        for j in range(done, len(rows)):  # a signal (EINTR) or a short read: the rest through os.preadv
            mv = memoryview(out[j : j + 1]).cast("B")
            if os.preadv(fd, [mv], offset + int(rows[j]) * rb) != rb:
                raise CorruptStoreError(f"{path!r} is shorter than its mapped rows (truncated while in use?)")
        return out
    finally:
        os.close(fd)


def _file_rows(a: Any, idx: np.ndarray) -> tuple[str, int, int, int] | None:
    """(path, device, inode, file offset of row 0) when ``a`` is a C-contiguous 2-D view of a noted map and
    ``idx`` plain in-range integer indices; else None."""
    if not isinstance(a, np.ndarray) or a.ndim != 2 or not a.flags.c_contiguous or a.shape[1] == 0:
        return None
    if idx.ndim != 1 or idx.dtype.kind not in "iu" or len(idx) == 0:
        return None
    mm, m = _map_of(a)
    if mm is None or mm not in _MAPS or m is None or m.mode != "r":
        return None
    if int(idx.min()) < 0 or int(idx.max()) >= a.shape[0]:
        return None  # numpy's own error (or negative indices) through the map
    path, dev, ino = _MAPS[mm]
    start = m.offset - m.offset % mmap.ALLOCATIONGRANULARITY  # where np.memmap's mapping starts in the file
    try:
        addr = np.frombuffer(mm, np.uint8, count=1).ctypes.data
    except (TypeError, ValueError):  # closed
        return None
    return path, dev, ino, start + (a.ctypes.data - addr)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_snapshot(root: str | os.PathLike, kind: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` and ``meta`` as a new snapshot under ``root``; returns the snapshot directory."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    old = read_manifest(root, kind, missing_ok=True)
    seq = (old["seq"] + 1) if old else 1
    name = f"snap-{seq:08d}"
    snap = root / name
    if snap.exists():
        shutil.rmtree(snap)
    snap.mkdir()
    entries = {}
    for key, arr in arrays.items():
        if not isinstance(arr, Chunked):
            arr = np.asarray(arr)
            if not arr.flags.c_contiguous:  # (np.ascontiguousarray would also turn a 0-d array into shape (1,))
                arr = np.ascontiguousarray(arr)
        if np.dtype(arr.dtype).hasobject:
            raise TypeError(f"array {key!r} has dtype object; refusing to write (no pickle)")
        fn = snap / f"{key}.npy"
        with open(fn, "wb") as f:
            crc = _write_npy_blocks(f, arr) if isinstance(arr, Chunked) else _write_npy(f, arr)
            f.flush()
            os.fsync(f.fileno())
        size = int(fn.stat().st_size)
        entries[key] = {"shape": list(arr.shape), "dtype": np.dtype(arr.dtype).str, "bytes": size, "crc32": crc}
    _fsync_dir(snap)
    manifest = {"format": kind, "version": 1, "seq": seq, "snapshot": name, "meta": meta, "arrays": entries}
    manifest["crc32"] = _manifest_crc(manifest)
    tmp = root / (MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root / MANIFEST)
    _fsync_dir(root)
    for p in root.glob("snap-*"):
        if p.name != name and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
    return snap


def _write_npy(f: Any, arr: np.ndarray) -> int:
    """``arr`` (C-contiguous) as a ``.npy`` file into ``f``, ~64 MB of rows at a time; returns the CRC32 of
    its data (:func:`array_crc`), computed in the same pass. A memory-mapped array's pages are released as
    they are written (:class:`MappedPages`), so saving a 15 GB map does not make it all resident."""
    if arr.ndim == 0:
        np.save(f, arr, allow_pickle=False)
        return array_crc(arr)
    step = max(1, (1 << 26) // max(1, arr[:1].nbytes))

    def blocks():
        pages = MappedPages.of(arr)
        for s in range(0, arr.shape[0], step):
            block = arr[s : s + step]
            pages.read(block.nbytes)
            yield block

    return _write_npy_blocks(f, Chunked(arr.shape, arr.dtype, blocks))


def _write_npy_blocks(f: Any, arr: Chunked) -> int:
    """A :class:`Chunked` array as a ``.npy`` file into ``f`` (the bytes ``np.save`` writes); returns the
    CRC32 of its data."""
    dtype = np.dtype(arr.dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(arr.shape)}
    try:
        np.lib.format.write_array_header_1_0(f, header)  # the format np.save picks for such a header
    except ValueError:  # a header longer than 64 KiB
        np.lib.format.write_array_header_2_0(f, header)
    crc, rows = 0, 0
    for block in arr.blocks():
        block = np.ascontiguousarray(block, dtype=dtype)
        if block.shape[1:] != tuple(arr.shape[1:]):
            raise ValueError(f"a block of shape {block.shape} in an array of shape {tuple(arr.shape)}")
        view = block.view(np.uint8).reshape(-1)
        f.write(view.data)
        crc = zlib.crc32(view, crc)
        rows += block.shape[0]
    if rows != arr.shape[0]:
        raise ValueError(f"blocks gave {rows} rows for an array of shape {tuple(arr.shape)}")
    return crc


def _manifest_crc(manifest: dict[str, Any]) -> int:
    body = {k: v for k, v in manifest.items() if k != "crc32"}
    return zlib.crc32(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())


def read_manifest(root: str | os.PathLike, kind: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
    """The manifest of the snapshot at ``root``, checked for structure and its own CRC32 (``None`` when it is
    absent and ``missing_ok``). Raises :class:`CorruptStoreError` naming the file."""
    root = Path(root)
    fn = root / MANIFEST
    if not fn.exists():
        if missing_ok:
            return None
        raise FileNotFoundError(f"no {kind} snapshot at {str(root)!r} (missing {MANIFEST})")
    try:
        manifest = json.loads(fn.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptStoreError(f"corrupt manifest {str(fn)!r}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != kind:
        raise CorruptStoreError(f"{str(fn)!r} is not a {kind} manifest (corrupt?)")
    if "crc32" in manifest and manifest["crc32"] != _manifest_crc(manifest):
        raise CorruptStoreError(f"corrupt manifest {str(fn)!r}: checksum mismatch")
    for key, typ in (("seq", int), ("snapshot", str), ("meta", dict), ("arrays", dict)):
        if not isinstance(manifest.get(key), typ):
            raise CorruptStoreError(f"corrupt manifest {str(fn)!r}: {key!r} is missing or not a {typ.__name__}")
    if not _SNAP_NAME.fullmatch(manifest["snapshot"]):
        raise CorruptStoreError(f"corrupt manifest {str(fn)!r}: bad snapshot name {manifest['snapshot']!r}")
    for name, ent in manifest["arrays"].items():
        bad = not isinstance(ent, dict) or not all(isinstance(ent.get(k), t) for k, t in _ENTRY_TYPES.items())
        if bad or not re.fullmatch(r"\w+", name) or not all(isinstance(v, int) and v >= 0 for v in ent["shape"]):
            raise CorruptStoreError(f"corrupt manifest {str(fn)!r}: bad entry for array {name!r}: {ent!r}")
    return manifest


def load_arrays(
    root: str | os.PathLike, manifest: dict[str, Any], *, mmap: frozenset[str] = frozenset()
) -> dict[str, np.ndarray]:
    """Load and verify every array of ``manifest``; names in ``mmap`` are opened read-only memory-mapped
    (checked for size, shape and dtype, not read: see :func:`verify_snapshot`)."""
    snap = Path(root) / manifest["snapshot"]
    out = {}
    for key, ent in manifest["arrays"].items():
        out[key] = _open_array(snap / f"{key}.npy", ent, mmap=key in mmap, check_crc=key not in mmap)
    return out


def verify_snapshot(root: str | os.PathLike, kind: str) -> list[str]:
    """Every check of loading, plus the CRC32 of the arrays a load memory-maps: the problems found, one
    message per damaged file (empty when the snapshot is intact). Reads every file once."""
    try:
        manifest = read_manifest(root, kind)
    except CorruptStoreError as exc:
        return [str(exc)]
    problems = []
    for key, ent in manifest["arrays"].items():
        try:
            _open_array(Path(root) / manifest["snapshot"] / f"{key}.npy", ent, mmap=True, check_crc=True)
        except CorruptStoreError as exc:
            problems.append(str(exc))
    return problems


def _open_array(fn: Path, ent: dict[str, Any], *, mmap: bool, check_crc: bool) -> np.ndarray:
    if not fn.exists():
        raise CorruptStoreError(f"corrupt index: missing array file {str(fn)!r}")
    size = fn.stat().st_size
    if size != ent["bytes"]:
        raise CorruptStoreError(
            f"corrupt index: {str(fn)!r} has {size} bytes, manifest says {ent['bytes']} (truncated?)"
        )
    try:  # the header first: a damaged shape must not make np.load allocate terabytes
        with open(fn, "rb") as f:
            header = _HEADER_READERS[np.lib.format.read_magic(f)](f)
    except Exception as exc:
        raise CorruptStoreError(f"corrupt index: cannot read the header of {str(fn)!r}: {exc!r}") from None
    shape, fortran, dtype = header
    if list(shape) != ent["shape"] or dtype.str != ent["dtype"] or fortran:
        raise CorruptStoreError(
            f"corrupt index: {str(fn)!r} is {dtype.str}{list(shape)}, manifest says {ent['dtype']}{ent['shape']}"
        )
    try:
        arr = np.load(fn, mmap_mode="r" if mmap else None, allow_pickle=False)
        if mmap:
            register_map(arr, fn)
    except (ValueError, OSError, EOFError) as exc:
        raise CorruptStoreError(f"corrupt index: cannot read {str(fn)!r}: {exc}") from None
    if check_crc and array_crc(arr) != ent["crc32"]:
        raise CorruptStoreError(f"corrupt index: checksum mismatch in {str(fn)!r}")
    return arr
