"""Crash-safe snapshot directories of ``.npy`` arrays plus a JSON manifest (never pickle).

Layout of a snapshot root ``path/``::

    path/MANIFEST.json        {"format": ..., "snapshot": "snap-<n>", "meta": {...}, "arrays": {...}}
    path/snap-<n>/<name>.npy  one file per array

Writing goes to a fresh ``snap-<n+1>`` directory, every file is fsynced, then ``MANIFEST.json`` is replaced
atomically (write temp, fsync, rename) and only then is the previous snapshot removed. A crash at any point
leaves a manifest that names a complete snapshot. Loading checks every file's shape, dtype and byte size
against the manifest and a CRC32 of its contents (skipped for arrays opened memory-mapped, which are
checked for size only), so a truncated or corrupt directory raises ``ValueError`` instead of loading.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "MANIFEST.json"


def _crc(a: np.ndarray) -> int:
    view = np.ascontiguousarray(a).view(np.uint8).reshape(-1)
    crc = 0
    step = 1 << 26
    for s in range(0, len(view), step):
        crc = zlib.crc32(view[s : s + step], crc)
    return crc


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
        arr = np.ascontiguousarray(arr)
        if arr.dtype == object:
            raise TypeError(f"array {key!r} has dtype object; refusing to write (no pickle)")
        fn = snap / f"{key}.npy"
        with open(fn, "wb") as f:
            np.save(f, arr, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        entries[key] = {
            "shape": list(arr.shape),
            "dtype": arr.dtype.str,
            "bytes": int(fn.stat().st_size),
            "crc32": _crc(arr),
        }
    _fsync_dir(snap)
    manifest = {"format": kind, "version": 1, "seq": seq, "snapshot": name, "meta": meta, "arrays": entries}
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


def read_manifest(root: str | os.PathLike, kind: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
    root = Path(root)
    fn = root / MANIFEST
    if not fn.exists():
        if missing_ok:
            return None
        raise FileNotFoundError(f"no {kind} snapshot at {str(root)!r} (missing {MANIFEST})")
    try:
        manifest = json.loads(fn.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"corrupt manifest {str(fn)!r}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != kind:
        raise ValueError(f"{str(fn)!r} is not a {kind} manifest")
    for key in ("seq", "snapshot", "meta", "arrays"):
        if key not in manifest:
            raise ValueError(f"corrupt manifest {str(fn)!r}: missing {key!r}")
    return manifest


def load_arrays(
    root: str | os.PathLike, manifest: dict[str, Any], *, mmap: frozenset[str] = frozenset()
) -> dict[str, np.ndarray]:
    """Load and verify every array of ``manifest``; names in ``mmap`` are opened read-only memory-mapped."""
    snap = Path(root) / manifest["snapshot"]
    out = {}
    for key, ent in manifest["arrays"].items():
        fn = snap / f"{key}.npy"
        if not fn.exists():
            raise ValueError(f"corrupt index: missing array file {str(fn)!r}")
        if fn.stat().st_size != ent["bytes"]:
            raise ValueError(
                f"corrupt index: {str(fn)!r} has {fn.stat().st_size} bytes, manifest says {ent['bytes']} (truncated?)"
            )
        try:
            arr = np.load(fn, mmap_mode="r" if key in mmap else None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(f"corrupt index: cannot read {str(fn)!r}: {exc}") from None
        if list(arr.shape) != ent["shape"] or arr.dtype.str != ent["dtype"]:
            raise ValueError(
                f"corrupt index: {str(fn)!r} is {arr.dtype.str}{list(arr.shape)}, manifest says "
                f"{ent['dtype']}{ent['shape']}"
            )
        if key not in mmap and _crc(arr) != ent["crc32"]:
            raise ValueError(f"corrupt index: checksum mismatch in {str(fn)!r}")
        out[key] = arr
    return out
