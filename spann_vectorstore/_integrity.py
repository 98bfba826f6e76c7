"""docs.sqlite as a file that can be damaged: opening it with checks, row and settings checksums, SQLite
damage as :class:`CorruptStoreError`, and salvage for :meth:`Collection.recover`.

SQLite checks the structure of its pages (``PRAGMA integrity_check``) but not their content, so each row of
``docs`` carries a CRC32 of its id, text, metadata JSON and vector (the vector is in table ``vectors``, or in
``docs`` in stores written before: see :mod:`._schema`), and the settings row one of itself.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import urllib.parse
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._schema import rows_sql, vectors_apart
from ._storage import MANIFEST, CorruptStoreError

RECOVER_DB = (
    "Collection.recover(path) or `spann-vectorstore recover DIR` rebuilds docs.sqlite from the index snapshot "
    "(keeping what still reads), or restore it from a backup"
)
RECOVER_INDEX = (
    "the index is derived from docs.sqlite: Collection.recover(path) or `spann-vectorstore recover DIR` moves the "
    "snapshot aside and rebuilds it"
)


def row_crc(id_: str, text: str | None, metadata: str, vector: bytes) -> int:
    """CRC32 of one row of ``docs`` (SQLite checks its pages' structure, not their content): the lengths
    of the three strings (-1: no text), then the strings, then the vector's bytes. ~1.5 us a row."""
    head = f"{len(id_)}:{-1 if text is None else len(text)}:{len(metadata)}:".encode()
    body = (id_ + (text or "") + metadata).encode("utf-8", "surrogatepass")
    return zlib.crc32(vector, zlib.crc32(body, zlib.crc32(head)))


def crc_mismatch(row: tuple) -> bool:
    """Whether a row ``(id, text, metadata, vector, crc)`` read back fails its CRC32 (rows without one do
    not; values of the wrong type, as a damaged record can give, do)."""
    if row[4] is None:
        return False
    try:
        return row[4] != row_crc(*row[:4])
    except (TypeError, AttributeError):
        return True


def config_text(cfg: dict[str, Any]) -> str:
    """The settings row: the config as JSON with a CRC32 of the rest (checked on open)."""
    body = {k: v for k, v in cfg.items() if k != "crc32"}
    return json.dumps({**body, "crc32": zlib.crc32(json.dumps(body, sort_keys=True).encode())})


def valid_config(text: Any) -> bool:
    """Whether the settings row is a config with its CRC32 (rows written before it have none)."""
    try:
        cfg = json.loads(text)
    except (TypeError, ValueError):
        return False
    keys = {"dim": (int, type(None)), "metric": str, "bits": int, "index_options": dict}
    if not isinstance(cfg, dict) or not all(isinstance(cfg.get(k), t) for k, t in keys.items()):
        return False
    return "crc32" not in cfg or config_text(cfg) == text


def is_damage(exc: sqlite3.DatabaseError) -> bool:
    """SQLITE_CORRUPT or SQLITE_NOTADB, or text that is not UTF-8 (only ever written as UTF-8: a damaged
    record can turn a blob into text); not a locked or full database, which are no damage."""
    if "Could not decode to UTF-8" in str(exc):
        return True
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11; the message before
    if code is not None:
        return code & 0xFF in (11, 26)
    return type(exc) is sqlite3.DatabaseError and ("malformed" in str(exc) or "not a database" in str(exc))


def damage_error(path: Path | None, detail: str) -> CorruptStoreError:
    where = repr(str(path / "docs.sqlite")) if path is not None else "the in-memory database"
    return CorruptStoreError(f"{where} is damaged ({detail}): {RECOVER_DB}")


def lost_database_message(path: Path, what: str) -> str:
    return (
        f"{str(path / 'docs.sqlite')!r} {what} but the index snapshot {str(path / 'index')!r} exists: refusing to "
        "open it as an empty collection (nothing was written). Collection.recover(path) or `spann-vectorstore "
        "recover DIR` rebuilds docs.sqlite from the snapshot's vectors (texts, metadata and string ids live only in "
        "docs.sqlite and come back only where the old file is still readable), or restore docs.sqlite from a backup"
    )


def open_database(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """Connect to ``path/docs.sqlite`` (``read_only``: with SQLite's ``mode=ro``, so the connection can never
    write the database; a missing file is ``FileNotFoundError``), refusing before anything is written a file
    that is not a SQLite database, and one without collection settings while an index snapshot exists: a
    zero-length file (a full disk, a bad copy) opened as an empty collection, and its first write and close
    replaced the snapshot, the only remaining copy of the vectors."""
    fn = path / "docs.sqlite"
    snapshot = path / "index" / MANIFEST
    if not fn.exists() and snapshot.exists():
        raise CorruptStoreError(lost_database_message(path, "is missing"))
    if read_only and not fn.exists():
        raise FileNotFoundError(f"no collection at {str(path)!r} (a read-only open never creates one)")
    if read_only:  # URI with the path percent-encoded (a '?' or '#' in a directory name is data)
        uri = f"file:{urllib.parse.quote(str(fn.resolve()))}?mode=ro"
        db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
    else:
        db = sqlite3.connect(fn, check_same_thread=False, isolation_level=None)
    try:
        try:
            row = None
            if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'settings'").fetchone():
                row = db.execute("SELECT value FROM settings WHERE key = 'config'").fetchone()
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            raise CorruptStoreError(f"{str(fn)!r} is not a usable SQLite database ({exc}): {RECOVER_DB}") from None
        if row is None and snapshot.exists():
            raise CorruptStoreError(lost_database_message(path, "holds no collection (empty, truncated, replaced?)"))
        if row is not None and not valid_config(row[0]):
            raise CorruptStoreError(f"{str(fn)!r}: the collection settings are damaged ({row[0]!r}): {RECOVER_DB}")
        if row is None and read_only:
            raise FileNotFoundError(f"no collection at {str(path)!r} yet ({str(fn)!r} holds no settings)")
        if not read_only:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: commits survive process crashes
    except BaseException:
        db.close()
        raise
    return db


def database_problem(fn: Path) -> str | None:
    """Why docs.sqlite cannot serve as the source of truth (``None``: it opens, holds the collection's
    settings, passes ``PRAGMA integrity_check`` and every row reads and passes its checksum)."""
    if not fn.exists() or fn.stat().st_size == 0:
        return "missing" if not fn.exists() else "empty"
    try:
        with contextlib.closing(sqlite3.connect(f"file:{fn}?mode=ro", uri=True)) as db:
            res = [r[0] for r in db.execute("PRAGMA integrity_check(5)")]
            if res != ["ok"]:
                return "integrity_check: " + "; ".join(res)
            row = db.execute("SELECT value FROM settings WHERE key = 'config'").fetchone()
            if row is None or not valid_config(row[0]):
                return "no collection settings" if row is None else "damaged collection settings"
            has_crc = "crc" in {r[1] for r in db.execute("PRAGMA table_info(docs)")}
            bad = 0
            cols = f"id, text, metadata, vector, {'crc' if has_crc else 'NULL'}"
            for r in db.execute(rows_sql(vectors_apart(db), cols, "1")):
                bad += r[3] is None or crc_mismatch(r)
            if bad:
                return f"{bad} rows fail their checksum or have no vector"
    except sqlite3.Error as exc:
        return str(exc)
    return None


@dataclass
class Salvage:
    """What a damaged docs.sqlite still yields (see :meth:`Collection.recover`)."""

    cfg: dict[str, Any] | None = None
    rows: dict[int, tuple] = field(default_factory=dict)  # rowid -> (id, text, metadata, vector, crc), trusted
    failed: int = 0  # rows that raised or failed their checksum


def salvage(db_file: Path, snap_ids: np.ndarray, dim: int) -> Salvage:
    """Read what is still readable from a damaged docs.sqlite: the snapshot's rows one at a time (a damaged
    page loses only its rows) and the rows written after the snapshot (larger row ids), keeping rows whose
    checksum matches (rows from before checksums: those in the snapshot, whose vector it holds)."""
    out = Salvage()
    if not db_file.exists() or db_file.stat().st_size == 0:
        return out
    try:
        db = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)
    except sqlite3.Error:
        return out
    in_snap = set(snap_ids.tolist())
    with contextlib.closing(db):
        try:
            has_crc = "crc" in {r[1] for r in db.execute("PRAGMA table_info(docs)")}
            q = rows_sql(vectors_apart(db), f"id, text, metadata, vector, {'crc' if has_crc else 'NULL'}", "rowid = ?")
            db.execute(q, [0]).fetchall()
        except sqlite3.Error:
            return out
        with contextlib.suppress(sqlite3.Error, ValueError, TypeError):
            out.cfg = json.loads(db.execute("SELECT value FROM settings WHERE key = 'config'").fetchone()[0])
        newer = []
        with contextlib.suppress(sqlite3.Error):
            top = int(snap_ids.max()) if len(snap_ids) else 0
            for (rid,) in db.execute("SELECT rowid FROM docs WHERE rowid > ? ORDER BY rowid", [top]):
                newer.append(rid)
        for rid in [*snap_ids.tolist(), *newer]:
            try:
                row = db.execute(q, [rid]).fetchone()
            except sqlite3.Error:
                out.failed += 1
                continue
            if row is None:
                continue
            ok = isinstance(row[0], str) and isinstance(row[2], str) and isinstance(row[3], bytes)
            ok = ok and (row[1] is None or isinstance(row[1], str)) and len(row[3]) == 4 * dim
            if ok and not crc_mismatch(row) and (row[4] is not None or rid in in_snap):
                out.rows[rid] = row
            else:
                out.failed += 1
    return out


def move_aside(path: Path) -> Path:
    """``path`` renamed to the first free ``<name>.damaged-<n>``; returns the new name."""
    n = 1
    while path.with_name(f"{path.name}.damaged-{n}").exists():
        n += 1
    dest = path.with_name(f"{path.name}.damaged-{n}")
    path.rename(dest)
    return dest
