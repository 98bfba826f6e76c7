"""docs.sqlite's tables, and the move of the vectors out of ``docs`` (the layout of stores written before).

``docs`` holds each document's string id, text, metadata JSON, write sequence number and row checksum; its
``INTEGER PRIMARY KEY AUTOINCREMENT`` rowid (never reused) is the id inside the index. ``vectors`` holds each
document's float32 vector under the same rowid (``row``), written in the same transaction as the document; a
trigger deletes it with its document. The vectors have a table of their own so that ``docs`` rows stay small
(~100 bytes instead of ~1.7 KB at 384-d: 10.5 MB instead of ~210 MB at 100k documents), which a search's hit
fetch reads (a page per hit either way: SQLite's default 2 MB page cache holds a fifth of the small table).

Stores written before (``docs`` with a ``vector`` column) are read as they are by read-only handles, and moved
to this layout by the first writer that opens them, in one transaction (:func:`migrate_vectors`).
"""

from __future__ import annotations

import sqlite3

_DOCS = """
CREATE TABLE IF NOT EXISTS {name} (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    text TEXT,
    metadata TEXT NOT NULL DEFAULT '{{}}',
    seq INTEGER NOT NULL,
    crc INTEGER
);
"""
_VECTORS = "CREATE TABLE IF NOT EXISTS vectors (row INTEGER PRIMARY KEY, vector BLOB NOT NULL);"
_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS docs_delete_vector AFTER DELETE ON docs BEGIN
    DELETE FROM vectors WHERE row = old.rowid;
END;
"""
SCHEMA = (
    _DOCS.format(name="docs")
    + _VECTORS
    + _TRIGGER
    + """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS removed (seq INTEGER NOT NULL, row INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS removed_seq ON removed (seq);
"""
)


def vectors_apart(db: sqlite3.Connection) -> bool:
    """Whether the vectors are in table ``vectors`` (False: in ``docs.vector``, a store written before)."""
    return "vector" not in {r[1] for r in db.execute("PRAGMA table_info(docs)")}


def rows_sql(apart: bool, columns: str, where: str) -> str:
    """``SELECT columns FROM docs WHERE where`` in either layout: ``vector`` among the columns is the document's
    vector (``NULL`` when its row in ``vectors`` is missing: damage); ``rowid`` is the document's."""
    if apart and "vector" in columns:
        return f"SELECT {columns} FROM docs LEFT JOIN vectors ON vectors.row = docs.rowid WHERE {where}"
    return f"SELECT {columns} FROM docs WHERE {where}"


def vectors_sql(apart: bool, n: int) -> str:
    """``(rowid, vector)`` of ``n`` rowids given as parameters."""
    marks = ",".join("?" * n)
    if apart:
        return f"SELECT row, vector FROM vectors WHERE row IN ({marks})"
    return f"SELECT rowid, vector FROM docs WHERE rowid IN ({marks})"


def migrate_vectors(db: sqlite3.Connection) -> bool:
    """Move the vectors of a store written before out of ``docs`` into ``vectors``, in one transaction (a crash
    leaves the old layout, moved again at the next open); every rowid, the AUTOINCREMENT position (rowids of
    deleted documents stay unused) and every other column are kept. The caller creates its indexes on ``docs``
    again (the old table is dropped with them). Returns whether anything was moved. Then ``VACUUM`` gives the
    old table's pages back (skipped when it fails, e.g. no disk room for its copy: later writes reuse them)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if vectors_apart(db):  # another open moved them meanwhile
            db.execute("COMMIT")
            return False
        has_crc = "crc" in {r[1] for r in db.execute("PRAGMA table_info(docs)")}
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'docs'").fetchone()
        top = int(row[0]) if row is not None else 0
        db.execute("DROP TABLE IF EXISTS docs_moving")
        db.execute(_DOCS.format(name="docs_moving"))
        db.execute(_VECTORS)
        db.execute("DELETE FROM vectors")
        db.execute("INSERT INTO vectors (row, vector) SELECT rowid, vector FROM docs ORDER BY rowid")
        crc = "crc" if has_crc else "NULL"
        db.execute(
            "INSERT INTO docs_moving (rowid, id, text, metadata, seq, crc) "
            f"SELECT rowid, id, text, metadata, seq, {crc} FROM docs ORDER BY rowid"
        )
        db.execute("DROP TRIGGER IF EXISTS docs_delete_vector")  # made by SCHEMA on the old table: not fired
        db.execute("DROP TABLE docs")
        db.execute("ALTER TABLE docs_moving RENAME TO docs")
        top = max(top, int(db.execute("SELECT coalesce(max(rowid), 0) FROM docs").fetchone()[0]))
        db.execute("DELETE FROM sqlite_sequence WHERE name IN ('docs', 'docs_moving')")
        db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('docs', ?)", [top])
        db.execute(_TRIGGER)  # dropped with the old table
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    try:  # the old table's pages (most of the file) back to the file system: ~2 s at 100k documents
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.OperationalError:  # no room for the copy VACUUM makes (or busy): the free pages are reused
        pass
    return True
