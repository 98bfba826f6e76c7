"""docs.sqlite layouts: stores written before the vectors had a table of their own (``docs.vector``) open, are
read as they are by read-only handles, and are moved to the current layout by the first writer, in one
transaction, with every answer unchanged."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from spann_vectorstore import Collection, CorruptStoreError, _schema
from spann_vectorstore.evaluation import clustered

D = 16

# ``docs`` exactly as the code before the vectors table wrote it (collection.py's _SCHEMA until issue 21b)
OLD_DOCS = """
CREATE TABLE docs (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    text TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    vector BLOB NOT NULL,
    seq INTEGER NOT NULL,
    crc INTEGER
);
"""


def to_old_layout(path: Path) -> None:
    """Rewrite the store at ``path`` (closed) in the layout of stores written before: the vector back in
    ``docs``, no ``vectors`` table or trigger; rowids, AUTOINCREMENT position and every other row kept."""
    with sqlite3.connect(path / "docs.sqlite", isolation_level=None) as db:
        db.execute("BEGIN")
        top = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'docs'").fetchone()[0]
        db.execute(OLD_DOCS.replace("TABLE docs", "TABLE docs_old"))
        db.execute(
            "INSERT INTO docs_old (rowid, id, text, metadata, vector, seq, crc) SELECT docs.rowid, id, text, "
            "metadata, vectors.vector, seq, crc FROM docs JOIN vectors ON vectors.row = docs.rowid ORDER BY docs.rowid"
        )
        db.execute("DROP TRIGGER docs_delete_vector")
        db.execute("DROP TABLE docs")
        db.execute("DROP TABLE vectors")
        db.execute("ALTER TABLE docs_old RENAME TO docs")
        db.execute("DELETE FROM sqlite_sequence WHERE name IN ('docs', 'docs_old')")
        db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('docs', ?)", [top])
        db.execute("COMMIT")
    db.close()
    assert layout(path) == "old"


def layout(path: Path) -> str:
    with sqlite3.connect(f"file:{path / 'docs.sqlite'}?mode=ro", uri=True) as db:
        cols = {r[1] for r in db.execute("PRAGMA table_info(docs)")}
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")}
    db.close()
    if "vector" in cols:
        return "old"
    assert {"vectors", "docs_delete_vector"} <= tables, tables
    return "new"


def field_indexes(path: Path) -> set[str]:
    with sqlite3.connect(f"file:{path / 'docs.sqlite'}?mode=ro", uri=True) as db:
        q = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'docs' AND name LIKE 'field_index_%'"
        out = {r[0] for r in db.execute(q)}
    db.close()
    return out


def build(path: Path, n: int = 400) -> tuple[np.ndarray, list[str]]:
    x = clustered(n, D, seed=3)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"d{i}" for i in range(n)]
    metas = [{"i": i, "kind": ["a", "b", "c"][i % 3]} for i in range(n)]
    with Collection(path, index_threshold=200) as col:
        col.add(x, [f"text {i}" for i in range(n)], metas, ids)
        col.create_index("kind", "keyword")
        col.delete(ids[-5:])  # the AUTOINCREMENT position is past the last live rowid
    return x, ids


def answers(col: Collection, x: np.ndarray) -> tuple:
    """Everything a user can read: searches (plain, filtered, by text, with vectors) and every document."""
    hits = [
        [(h.id, h.score, h.text, h.metadata) for h in col.search(q, k=7, n_probe=n)] for q in x[:20] for n in (2, 8)
    ]
    filtered = [[(h.id, h.score) for h in col.search(q, k=5, filter={"kind": "b"})] for q in x[:10]]
    with_vec = [[(h.id, h.vector.tobytes()) for h in col.search(q, k=3, include_vectors=True)] for q in x[:5]]
    texts = [[(h.id, h.score) for h in col.text_search("text 12", k=5)]]
    docs = [(h.id, h.text, json.dumps(h.metadata), h.vector.tobytes()) for h in col.get(include_vectors=True)]
    some = [(h.id, h.vector.tobytes()) for h in col.get(["d7", "d3", "nope"], include_vectors=True)]
    page = [h.id for h in col.get(filter={"kind": "a"}, limit=4, offset=2, include_vectors=True)]
    return hits, filtered, with_vec, texts, docs, some, page, col.count(), col.index_ids()


def test_old_layout_is_read_as_is_then_migrated_by_the_writer(tmp_path):
    p = tmp_path / "c"
    x, _ = build(p)
    with Collection.open(p) as col:
        before = answers(col, x)
    indexes = field_indexes(p)
    assert len(indexes) == 1
    to_old_layout(p)
    with Collection(p, read_only=True) as ro:  # a reader never writes: the old layout stays
        assert answers(ro, x) == before
        rep = ro.verify()
        assert rep.ok and rep.checked["documents"] == 395, rep
    assert layout(p) == "old"
    with Collection.open(p) as col:
        assert layout(p) == "new"
        assert answers(col, x) == before
        rep = col.verify()
        assert rep.ok and rep.checked["rows_without_checksum"] == 0, rep
        assert col.index_ids()["d0"] == 1
        col.add(x[:1], ["fresh"], ids=["fresh"])  # rowids of deleted documents are never reused
        assert col.index_ids()["fresh"] == 401
        col.delete(["d0", "fresh"])  # the trigger deletes their vectors
        assert col._db.execute("SELECT count(*) FROM vectors").fetchone()[0] == col.count() == 394
        col.add(x[:1], ["text 0"], [{"i": 0, "kind": "a"}], ids=["d0"])
        after = answers(col, x)
    with Collection.open(p) as col:  # nothing left to move
        assert answers(col, x) == after
        assert col.verify().ok
    assert field_indexes(p) == indexes  # the field index, dropped with the old table, is made again
    assert sorted(before[4]) == sorted(after[4])  # the same documents (d0 added again as it was)


def test_a_reader_follows_the_writer_migrating_under_it(tmp_path):
    p = tmp_path / "c"
    x, _ = build(p)
    to_old_layout(p)
    with Collection(p, read_only=True) as ro:
        first = [h.id for h in ro.search(x[3], k=5)]
        with Collection.open(p) as col:
            assert layout(p) == "new"
            col.add(-x[3], ["new"], ids=["new"])
            col.delete(["d3"])
        got = ro.search(-x[3], k=2, include_vectors=True)
        assert got[0].id == "new" and np.array_equal(got[0].vector, -x[3])
        now = [h.id for h in ro.search(x[3], k=5)]
        assert first[0] == "d3" and "d3" not in now and now[:4] == first[1:5]
        assert ro.get(["new"], include_vectors=True)[0].vector.tobytes() == (-x[3]).tobytes()
        assert ro.verify().ok


def test_a_failed_migration_leaves_the_old_layout(tmp_path, monkeypatch):
    p = tmp_path / "c"
    x, _ = build(p)
    with Collection.open(p) as col:
        before = answers(col, x)
    to_old_layout(p)
    monkeypatch.setattr(_schema, "_TRIGGER", "CREATE TRIGGER broken")  # fails at the last step
    with pytest.raises(sqlite3.OperationalError):
        Collection.open(p)
    assert layout(p) == "old"
    monkeypatch.undo()
    with Collection.open(p) as col:
        assert layout(p) == "new" and answers(col, x) == before


def test_verify_and_check_see_a_lost_or_stray_vector(tmp_path):
    p = tmp_path / "c"
    build(p)
    with sqlite3.connect(p / "docs.sqlite") as db:
        db.execute("DELETE FROM vectors WHERE row = 9")
        db.execute("INSERT INTO vectors VALUES (9999, x'00')")
    db.close()
    with Collection.open(p) as col:
        rep = col.verify()
        assert any("row 9 " in m and "vector is missing" in m for m in rep.problems), rep
        assert any("1 stored vectors belong to no document" in m for m in rep.problems), rep
        with pytest.raises(CorruptStoreError, match=r"docs\.sqlite"):
            col.get(["d8"], include_vectors=True)
    report = Collection.recover(p)  # the row without a vector is damage: docs.sqlite rebuilt from the snapshot
    assert "rebuilt docs.sqlite" in report["action"] and report["placeholders"] == 1, report
    with Collection.open(p) as col:
        assert col.verify().ok and col.count() == 395 and col.get(["d8"]) == []
        assert col.get(["d9"], include_vectors=True)[0].text == "text 9"


def test_recover_salvages_an_old_layout_file(tmp_path):
    p = tmp_path / "c"
    build(p)
    to_old_layout(p)
    with sqlite3.connect(p / "docs.sqlite") as db:
        db.execute("UPDATE docs SET text = 'tampered' WHERE id = 'd4'")
    db.close()
    report = Collection.recover(p)
    assert "rebuilt docs.sqlite" in report["action"] and report["placeholders"] == 1, report
    assert layout(p) == "new"
    with Collection.open(p) as col:
        assert col.verify().ok and col.count() == 395
        assert [h.text for h in col.get(["d5", "d6"])] == ["text 5", "text 6"]
        assert col.get(["d4"]) == [] and col.count(filter={"recovered": True}) == 1
