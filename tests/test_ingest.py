"""Folder ingestion: chunks and metadata, binaries, change detection, crash ordering, streaming."""

from __future__ import annotations

import pytest

from spann_vectorstore import Collection
from spann_vectorstore.embed import Embedder
from spann_vectorstore.ingest import (
    Document,
    EmbedderMismatchError,
    chunk_id,
    ingest,
    read_index_info,
)

pytest.importorskip("langchain_text_splitters")

PARA = "Paragraph {i} of {name}: " + "some words about the topic at hand, " * 4


@pytest.fixture
def fake() -> Embedder:
    """A deterministic, instant embedder (hashes texts): ingestion logic without model cost."""
    from langchain_core.embeddings import DeterministicFakeEmbedding

    return Embedder(DeterministicFakeEmbedding(size=32))


def write_corpus(root):
    (root / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "a.md").write_text("# Alpha notes\n\n" + "\n\n".join(PARA.format(i=i, name="alpha") for i in range(6)))
    (root / "b.txt").write_text("\n\n".join(PARA.format(i=i, name="beta") for i in range(3)))
    (root / "sub" / "c.py").write_text('"""Gamma module."""\n\n\ndef gamma():\n    return 42\n')
    (root / "d.html").write_text(
        "<html><head><title>Delta page</title><style>p {color: red}</style></head>"
        "<body><h1>Delta</h1><p>Delta body text.</p><script>var secret = 1;</script></body></html>"
    )
    (root / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    (root / "blob.dat").write_bytes(b"abc\x00def" * 100)
    (root / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (root / "empty.txt").write_text("")
    (root / ".git" / "config").write_text("[core]\n")


def by_source(col):
    out = {}
    for h in col.get():
        out.setdefault(h.metadata["source"], []).append(h)
    return {s: sorted(hs, key=lambda h: h.metadata["chunk"]) for s, hs in out.items()}


def test_folder_ingest_chunks_metadata_and_binaries(tmp_path, fake):
    root = tmp_path / "docs"
    write_corpus(root)
    with Collection(tmp_path / "idx") as col:
        s = ingest(root, col, fake, chunk_size=200, chunk_overlap=20, progress=False)
        assert (s.files_seen, s.files_ingested, s.files_skipped_binary, s.files_empty) == (8, 4, 3, 1), s
        assert s.chunks_added == col.count() > 4 and s.chunks_deleted == 0
        docs = by_source(col)
    assert set(docs) == {(root / n).resolve().as_posix() for n in ("a.md", "b.txt", "sub/c.py", "d.html")}
    for source, hits in docs.items():
        assert [h.metadata["chunk"] for h in hits] == list(range(len(hits)))
        assert {h.metadata["file_hash"] for h in hits} == {hits[0].metadata["file_hash"]}
        for h in hits:
            assert h.id == chunk_id(source, h.metadata["chunk"], h.text) and len(h.text) <= 200
    a = docs[(root / "a.md").resolve().as_posix()]
    assert a[0].metadata["title"] == "Alpha notes" and len(a) > 3
    assert all(f"Paragraph {i} of alpha" in " ".join(h.text for h in a) for i in range(6))
    d = docs[(root / "d.html").resolve().as_posix()]
    html_text = " ".join(h.text for h in d)
    assert d[0].metadata["title"] == "Delta page" and "Delta body text." in html_text
    assert "secret" not in html_text and "color" not in html_text
    assert "title" not in docs[(root / "b.txt").resolve().as_posix()][0].metadata
    info = read_index_info(tmp_path / "idx")
    assert info["model"] == fake.name and info["dim"] == 32 and info["chunk_size"] == 200


def test_reingest_skips_unchanged_and_replaces_changed(tmp_path, fake):
    root = tmp_path / "docs"
    write_corpus(root)
    a = root / "a.md"
    with Collection(tmp_path / "idx") as col:
        ingest(root, col, fake, chunk_size=200, chunk_overlap=20, progress=False)
        before = by_source(col)
        embedded = fake.texts_total
        s = ingest(root, col, fake, chunk_size=200, chunk_overlap=20, progress=False)
        assert (s.files_unchanged, s.files_ingested, s.chunks_added, s.chunks_deleted) == (4, 0, 0, 0), s
        assert fake.texts_total == embedded, "unchanged files must not be embedded again"

        a.write_text("# Alpha, revised\n\n" + "\n\n".join(PARA.format(i=i, name="alpha2") for i in range(2)))
        s = ingest(root, col, fake, chunk_size=200, chunk_overlap=20, progress=False)
        assert (s.files_ingested, s.files_updated, s.files_unchanged) == (1, 1, 3), s
        assert s.chunks_deleted >= len(before[a.resolve().as_posix()]) - s.chunks_added > 0
        after = by_source(col)
        new_a = after[a.resolve().as_posix()]
        assert "alpha2" in " ".join(h.text for h in new_a) and "of alpha:" not in " ".join(h.text for h in new_a)
        assert new_a[0].metadata["title"] == "Alpha, revised"
        assert [h.metadata["chunk"] for h in new_a] == list(range(len(new_a)))
        for src in set(before) - {a.resolve().as_posix()}:
            assert [h.id for h in after[src]] == [h.id for h in before[src]], "other files are untouched"
        assert col.count(filter={"source": a.resolve().as_posix()}) == len(new_a)

        # the same content under new chunk settings is a change: re-chunked, old chunks gone
        s = ingest(root / "b.txt", col, fake, chunk_size=120, chunk_overlap=10, progress=False)
        assert s.files_ingested == 1 and s.chunks_deleted > 0
        b = by_source(col)[(root / "b.txt").resolve().as_posix()]
        assert all(len(h.text) <= 120 for h in b) and [h.metadata["chunk"] for h in b] == list(range(len(b)))

        a.write_text("   \n")  # emptied: its chunks go
        s = ingest(a, col, fake, progress=False)
        assert s.files_empty == 1 and col.count(filter={"source": a.resolve().as_posix()}) == 0


def test_unchanged_file_whose_chunks_were_deleted_is_ingested_again(tmp_path, fake):
    root = tmp_path / "docs"
    write_corpus(root)
    with Collection(tmp_path / "idx") as col:
        ingest(root, col, fake, chunk_size=200, chunk_overlap=20, progress=False)
        n = col.count()
        col.delete(filter={"source": (root / "a.md").resolve().as_posix()})
        s = ingest(root, col, fake, chunk_size=200, chunk_overlap=20, progress=False)
        assert (s.files_ingested, s.files_unchanged) == (1, 3) and col.count() == n


@pytest.mark.parametrize("revert", [False, True])
def test_crash_between_add_and_delete_loses_nothing(tmp_path, fake, monkeypatch, revert):
    """Ordering: new chunk ids are logged, the chunks added, then old ones deleted, then the manifest row is
    written. A crash in between leaves both versions searchable, and the next run finishes the replacement,
    also when the file was reverted to its old content meanwhile (no orphans of the interrupted version)."""
    root = tmp_path / "docs"
    write_corpus(root)
    a = root / "a.md"
    src = a.resolve().as_posix()
    v1 = a.read_text()
    with Collection(tmp_path / "idx") as col:
        ingest(root, col, fake, chunk_size=200, chunk_overlap=20, progress=False)
        old_ids = {h.id for h in col.get(filter={"source": src})}
    a.write_text("# Alpha v2\n\n" + "\n\n".join(PARA.format(i=i, name="v2") for i in range(3)))

    def crash(self, *args, **kwargs):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(Collection, "delete", crash)
    with Collection(tmp_path / "idx") as col, pytest.raises(KeyboardInterrupt):
        ingest(root, col, fake, chunk_size=200, chunk_overlap=20, progress=False)
    monkeypatch.undo()
    if revert:
        a.write_text(v1)
    with Collection.open(tmp_path / "idx") as col:  # "restart"
        mid = {h.id: h for h in col.get(filter={"source": src})}
        assert old_ids <= set(mid), "the old version is still there"
        assert any("v2" in h.text for h in mid.values()), "and the new one too"
        s = ingest(root, col, fake, chunk_size=200, chunk_overlap=20, progress=False)
        final = {h.id for h in col.get(filter={"source": src})}
        assert s.files_ingested == 1 and s.files_unchanged == 3 and s.chunks_deleted == len(set(mid) - final) > 0
    with Collection(tmp_path / "fresh") as fresh:
        ingest(a, fresh, fake, chunk_size=200, chunk_overlap=20, progress=False)
        assert final == {h.id for h in fresh.get()}, "the result equals a clean ingest of the file as it is now"
    assert (final == old_ids) == revert


def test_streaming_consumes_documents_lazily(fake):
    """A generator-backed corpus is pulled only a few batches ahead of what has been added (bounded memory)."""
    pulled = 0

    def corpus():
        nonlocal pulled
        for i in range(3000):
            pulled += 1
            yield Document(source=f"gen://{i}", text=PARA.format(i=i, name="stream"))  # one chunk each

    col = Collection()
    leads = []
    real_add = col.add

    def add(vectors, texts, metadatas, ids):
        leads.append(pulled - (col.count() + len(ids)))
        return real_add(vectors, texts, metadatas, ids)

    col.add = add
    s = ingest(corpus(), col, fake, batch_size=50, prefetch=2, progress=False)
    assert s.chunks_added == col.count() == 3000 and len(leads) == 60
    assert max(leads) <= 4 * 50 + 1, f"pulled up to {max(leads)} documents ahead of the index (batch 50, prefetch 2)"
    s = ingest(corpus(), col, fake, batch_size=50, progress=False)  # in-memory collections skip unchanged too
    assert s.files_unchanged == 3000 and s.chunks_added == 0


def test_large_file_is_read_in_segments(tmp_path, fake):
    path = tmp_path / "big.txt"
    paras = [PARA.format(i=i, name="big") for i in range(2000)]  # ~330 KB
    path.write_text("\n\n".join(paras))
    col = Collection()
    s = ingest(path, col, fake, chunk_size=400, chunk_overlap=40, segment_bytes=32 << 10, progress=False)
    hits = sorted(col.get(), key=lambda h: h.metadata["chunk"])
    assert s.files_ingested == 1 and [h.metadata["chunk"] for h in hits] == list(range(len(hits)))
    text = "\n".join(h.text for h in hits)
    assert all(f"Paragraph {i} of big" in text for i in range(0, 2000, 37))
    s = ingest(path, col, fake, chunk_size=400, chunk_overlap=40, segment_bytes=32 << 10, progress=False)
    assert s.files_unchanged == 1 and s.chunks_added == 0


def test_another_model_is_refused(tmp_path, fake):
    from langchain_core.embeddings import DeterministicFakeEmbedding

    (tmp_path / "a.txt").write_text("hello world")
    with Collection(tmp_path / "idx") as col:
        ingest(tmp_path / "a.txt", col, fake, progress=False)
        with pytest.raises(EmbedderMismatchError, match="was built with model"):
            ingest(tmp_path / "a.txt", col, Embedder(fake, name="another-model"), progress=False)
        with pytest.raises(EmbedderMismatchError, match="32-d"):
            ingest(tmp_path / "a.txt", col, Embedder(DeterministicFakeEmbedding(size=16)), progress=False)
        with pytest.raises(FileNotFoundError):
            ingest([tmp_path / "missing"], col, fake, progress=False)
        with pytest.raises(ValueError, match="chunk_overlap"):
            ingest(tmp_path / "a.txt", col, fake, chunk_size=100, chunk_overlap=100)


def test_minilm_end_to_end_retrieval(tmp_path):
    pytest.importorskip("sentence_transformers")
    emb = Embedder()  # the process-wide cached MiniLM
    root = tmp_path / "kb"
    root.mkdir()
    (root / "cooking.md").write_text("# Bread\n\nKnead the dough, let it rise for two hours, then bake at 220 C.")
    (root / "astronomy.md").write_text("# Stars\n\nA neutron star is the collapsed core of a massive star.")
    (root / "finance.txt").write_text("Bond prices fall when interest rates rise.")
    with Collection(tmp_path / "idx") as col:
        s = ingest(root, col, emb, progress=False)
        assert s.files_ingested == 3
        hits = col.search(emb.embed_query("how long should dough proof before baking?"), k=3)
        assert hits[0].metadata["source"].endswith("cooking.md") and hits[0].metadata["title"] == "Bread"
        hits = col.search(emb.embed_query("what remains after a supernova"), k=1, filter={"title": "Stars"})
        assert hits[0].metadata["source"].endswith("astronomy.md")


def crashing_embedder(fail_on_call: int) -> Embedder:
    """The ``fake`` embedder, raising KeyboardInterrupt (a Ctrl-C) on its ``fail_on_call``-th batch."""
    from langchain_core.embeddings import DeterministicFakeEmbedding

    class Crashing(DeterministicFakeEmbedding):
        calls: int = 0

        def embed_documents(self, texts):
            self.calls += 1
            if self.calls == fail_on_call:
                raise KeyboardInterrupt("Ctrl-C")
            return super().embed_documents(texts)

    return Embedder(Crashing(size=32), name=Embedder(DeterministicFakeEmbedding(size=32)).name)


def test_interrupted_first_ingest_of_a_file_leaves_no_orphans(tmp_path, fake):
    """A new file's first ingest is interrupted after 8 of its 12 chunks are stored; the file is edited; the
    next run must remove those 8 (the manifest's finish step dropped their log rows, so they stayed
    searchable forever)."""
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.md").write_text("# A\n\n" + "\n\n".join(PARA.format(i=i, name="a") for i in range(2)))
    b = root / "b.md"
    b.write_text("\n\n".join(PARA.format(i=i, name="b-first") for i in range(12)))
    opts = {"chunk_size": 200, "chunk_overlap": 20, "batch_size": 4, "prefetch": False, "progress": False}
    with Collection(tmp_path / "idx") as col:
        ingest(root / "a.md", col, fake, **opts)
        with pytest.raises(KeyboardInterrupt):
            ingest(b, col, crashing_embedder(3), **opts)
        assert col.count(filter={"source": b.resolve().as_posix()}) == 8
    b.write_text("\n\n".join(PARA.format(i=i, name="b-second") for i in range(5)))
    with Collection.open(tmp_path / "idx") as col:
        s = ingest(root, col, fake, **opts)
        assert s.chunks_deleted == 8 and s.files_updated == 1, s
        got = {h.id for h in col.get()}
        assert not [h for h in col.get() if "b-first" in h.text], "chunks of the interrupted version remain"
    with Collection(tmp_path / "fresh") as fresh:
        ingest(root, fresh, fake, **opts)
        assert got == {h.id for h in fresh.get()}, "the result equals a clean ingest"


@pytest.mark.parametrize("damage", ["garbage", "empty", "page"])
def test_damaged_ingest_manifest_is_named_or_rebuilt(tmp_path, fake, damage):
    """ingest.sqlite is derived: a damaged one raises CorruptStoreError naming it (delete it and run again),
    an empty one is rebuilt (earlier chunks found by metadata); either way the result equals a clean ingest."""
    from spann_vectorstore import CorruptStoreError

    root = tmp_path / "docs"
    write_corpus(root)
    opts = {"chunk_size": 200, "chunk_overlap": 20, "progress": False}
    man = tmp_path / "idx" / "ingest.sqlite"
    with Collection(tmp_path / "idx") as col:
        ingest(root, col, fake, **opts)
    raw = man.read_bytes()
    if damage == "garbage":
        man.write_bytes(b"not a database " * 100)
    elif damage == "empty":
        man.write_bytes(b"")
    else:
        man.write_bytes(raw[:4096] + b"\xff" * (len(raw) - 4096))
    (root / "a.md").write_text("# Alpha, changed\n\n" + PARA.format(i=0, name="changed"))
    with Collection.open(tmp_path / "idx") as col:
        if damage != "empty":
            with pytest.raises(CorruptStoreError, match=r"ingest\.sqlite.*delete it"):
                ingest(root, col, fake, **opts)
            man.unlink()
        ingest(root, col, fake, **opts)
        got = {h.id for h in col.get()}
    with Collection(tmp_path / "fresh") as fresh:
        ingest(root, fresh, fake, **opts)
        assert got == {h.id for h in fresh.get()}
