"""Readers beside a writer (issue 16): read-only handles, freshness, snapshot following, sharing an open
collection within a process, the lock holder's pid, and damage under a reader.

The multi-process test runs a writer process that is SIGKILLed midway and a second writer that takes over,
with 4 reader processes checking every search against the writes acknowledged before it began
(tests/readers_worker.py). Its checks never depend on timing; ``SPANN_READERS_SECONDS=20`` makes each writer
ingest for at least that long (the nightly variant)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from spann_vectorstore import Collection, CollectionLockedError, CorruptStoreError, ReadOnlyError

from .readers_worker import read_acks

WORKER = Path(__file__).with_name("readers_worker.py")
ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "integrations"), env.get("PYTHONPATH", "")])
    return env


def _wait(cond, what: str, timeout: float = 300.0) -> None:
    """Poll ``cond`` (generous timeout: the machine may be heavily loaded; nothing asserted depends on it)."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _rows(col: Collection) -> set[int]:
    with col._db_lock:
        return {r[0] for r in col._db.execute("SELECT rowid FROM docs")}


def _in_step(reader: Collection) -> None:
    """The reader's index holds exactly the rows SQLite holds (checked after a search caught it up)."""
    assert set(reader._index.ids.tolist()) == _rows(reader)


def _files(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    }


def _data(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# read-only handles
# ----------------------------------------------------------------------------------------------------------
def test_read_only_handle_writes_nothing_and_refuses_writes(tmp_path):
    path = tmp_path / "c"
    x = _data(300)
    with Collection(path, metric="l2", index_threshold=100) as w:
        w.add(
            x,
            texts=[f"doc {i} {'even' if i % 2 == 0 else 'odd'}" for i in range(300)],
            metadatas=[{"i": i} for i in range(300)],
            ids=[f"d{i}" for i in range(300)],
        )
    before = _files(path)
    assert not (path / "docs.sqlite-wal").exists()  # the writer closed cleanly: SQLite removed its WAL
    r = Collection(path, read_only=True)
    assert r.read_only and r.count() == 300
    assert r.search(x[7], k=1)[0].id == "d7"
    assert {h.id for h in r.text_search("odd", k=300)} == {f"d{i}" for i in range(1, 300, 2)}
    assert r.hybrid_search("even", x[8], k=1)[0].id == "d8"
    assert r.get(["d3"])[0].metadata == {"i": 3}
    assert r.verify().ok
    for call in (
        lambda: r.add(x[:1], ids=["new"]),
        lambda: r.add(x[:1], ids=["d1"]),
        lambda: r.delete(["d1"]),
        lambda: r.delete(filter={"i": 1}),
        r.clear,
        r.optimize,
    ):
        with pytest.raises(ReadOnlyError, match="read-only"):
            call()
    assert isinstance(ReadOnlyError("x"), PermissionError)
    assert r.count() == 300
    r.close()
    assert _files(path) == before  # not a byte of the database, the snapshot or LOCK changed
    wal = path / "docs.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size == 0  # SQLite's coordination file, empty
    with pytest.raises(FileNotFoundError):
        Collection(tmp_path / "none", read_only=True)
    assert not (tmp_path / "none").exists()  # a read-only open never creates a directory
    with pytest.raises(ValueError, match="read_only"):
        Collection(None, read_only=True)
    with pytest.raises(TypeError, match="read_only"):
        Collection(path, read_only="yes")


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_reader_reflects_every_acknowledged_write(tmp_path, metric):
    """Adds, upserts, deletes (by id and filter) and clear() by a writer; after each, the reader's next search
    reflects it: its index holds exactly SQLite's rows, and exact lookups agree with the writer's."""
    rng = np.random.default_rng(1)
    path = tmp_path / "c"
    w = Collection(path, metric=metric, index_threshold=64, snapshot_every=40)
    r = Collection(path, read_only=True)  # opened before the first add: no dimension yet
    assert r.dim is None and r.search(np.zeros(8, np.float32), k=3) == []
    alive: dict[str, np.ndarray] = {}
    for step in range(40):
        op = rng.choice(["add", "add", "upsert", "delete", "delete_filter"] + (["clear"] if step == 25 else []))
        if op == "add" or not alive:
            ids = [f"s{step}-{i}" for i in range(int(rng.integers(1, 12)))]
            v = _data(len(ids), seed=step)
            w.add(v, texts=[f"w{step} t{i}" for i in range(len(ids))], metadatas=[{"s": step}] * len(ids), ids=ids)
            alive.update(zip(ids, v))
        elif op == "upsert":
            ids = list(rng.choice(sorted(alive), size=min(3, len(alive)), replace=False))
            v = _data(len(ids), seed=1000 + step)
            w.add(v, texts=["upserted"] * len(ids), ids=ids)
            alive.update(zip(ids, v))
        elif op == "delete":
            gone = list(rng.choice(sorted(alive), size=min(2, len(alive)), replace=False))
            w.delete(gone)
            for g in gone:
                alive.pop(g)
        elif op == "delete_filter":
            s = int(rng.choice([int(k.split("-")[0][1:]) for k in alive]))
            w.delete(filter={"s": s})
            alive = {k: v for k, v in alive.items() if int(k.split("-")[0][1:]) != s or w.get([k])}
        else:
            w.clear()
            alive = {}
        assert r.count() == len(alive)
        q = _data(1, seed=99 + step)[0]
        hits = r.search(q, k=5)  # catches up first
        _in_step(r)
        assert len(hits) == min(5, len(alive))
        for key in list(alive)[:3]:  # a stored vector finds its own document
            got = r.search(alive[key], k=1, filter={"$id": key})
            assert [h.id for h in got] == [key]
        if alive:
            some = next(iter(alive))
            assert r.get([some])[0].id == some
    assert r.text_search("upserted", k=100) == [] or all(h.text == "upserted" for h in r.text_search("upserted", k=100))
    w.close()
    r.close()


def test_reader_text_search_follows_writes(tmp_path):
    path = tmp_path / "c"
    w = Collection(path)
    w.add(_data(3), texts=["alpha beta", "beta gamma", "delta"], ids=["a", "b", "c"])
    r = Collection(path, read_only=True)
    assert [h.id for h in r.text_search("gamma", k=5)] == ["b"]  # builds the reader's BM25 ranking
    w.add(_data(2, seed=5), texts=["gamma gamma", "epsilon"], ids=["d", "e"])
    w.delete(["b"])
    assert [h.id for h in r.text_search("gamma", k=5)] == ["d"]
    w.add(_data(1, seed=6), texts=["gamma again"], ids=["a"])  # upsert changes a's text
    assert {h.id for h in r.text_search("gamma", k=5)} == {"a", "d"}
    assert [h.id for h in r.text_search("alpha", k=5)] == []
    w.close()
    r.close()


def test_reader_follows_new_snapshots(tmp_path):
    path = tmp_path / "c"
    x = _data(600)
    w = Collection(path, metric="l2", index_threshold=100, snapshot_every=100)
    w.add(x[:150], ids=[f"d{i}" for i in range(150)])
    r = Collection(path, read_only=True)
    assert r.stats()["indexed"]
    before = r.stats()["follower"]["snapshots_swapped_in"]
    for s in range(150, 600, 50):
        w.add(x[s : s + 50], ids=[f"d{i}" for i in range(s, s + 50)])
        r.search(x[s], k=1)
    w.optimize()  # a rebuilt index, written as a new snapshot
    _wait(lambda: r.search(x[0], k=1) and r.stats()["follower"]["snapshots_swapped_in"] > before, "a snapshot swap")
    assert r.stats()["follower"]["error"] is None
    r.search(x[0], k=1)
    _in_step(r)
    assert r._index.n_heads == w._index.n_heads  # the writer's rebuilt index, not the reader's grown one
    assert [r.search(x[i], k=1)[0].id for i in range(0, 600, 37)] == [f"d{i}" for i in range(0, 600, 37)]
    w.close()
    r.close()


def test_reader_far_behind_the_pruned_log_compares_all_rows(tmp_path):
    path = tmp_path / "c"
    x = _data(400)
    w = Collection(path, metric="l2", index_threshold=50, snapshot_every=30)
    w.add(x[:100], ids=[f"d{i}" for i in range(100)])
    r = Collection(path, read_only=True)
    r.search(x[0], k=1)
    for s in range(100, 400, 20):  # many snapshots: the removed log is pruned past the reader's position
        w.add(x[s : s + 20], ids=[f"d{i}" for i in range(s, s + 20)])
        w.delete([f"d{s - 100}"])
    with w._db_lock:
        horizon = int(w._db.execute("SELECT value FROM settings WHERE key = 'removed_after'").fetchone()[0])
    assert horizon > r._follower.seq
    r._follower.manifest = r._manifest_sig()  # no snapshot swap: the catch-up alone must get it right
    hits = r.search(x[20], k=3)
    _in_step(r)
    assert "d20" not in {h.id for h in hits} and r.count() == 400 - 15
    assert r.search(x[399], k=1)[0].id == "d399"
    w.close()
    r.close()


def test_reader_opens_after_the_writer_left_and_follows_a_new_writer(tmp_path):
    path = tmp_path / "c"
    x = _data(50)
    with Collection(path, metric="l2") as w:
        w.add(x[:20], ids=[f"d{i}" for i in range(20)])
    r = Collection.open(path, read_only=True)
    assert r.search(x[3], k=1)[0].id == "d3"
    w2 = Collection(path)  # a writer while only readers are open in this process: its own instance
    assert w2 is not r and not w2.read_only
    w2.add(x[20:], ids=[f"d{i}" for i in range(20, 50)])
    assert r.search(x[40], k=1)[0].id == "d40"
    w2.close()
    w3 = Collection(path)
    w3.delete(["d40"])
    assert r.search(x[40], k=1)[0].id != "d40"
    w3.close()
    r.close()


# ----------------------------------------------------------------------------------------------------------
# one process: shared instances
# ----------------------------------------------------------------------------------------------------------
def test_same_process_opens_share_one_instance(tmp_path):
    path = tmp_path / "c"
    a = Collection(path, metric="l2", n_probe=20)
    b = Collection(f"{path}/./", metric="l2")  # the same directory, spelled differently
    assert a is b
    os.symlink(path, tmp_path / "link")
    assert Collection(tmp_path / "link") is a  # keyed on the real path
    with pytest.raises(ValueError, match="created with metric='l2'"):
        Collection(path, metric="cosine")
    with pytest.raises(ValueError, match="already open in this process with n_probe=20"):
        Collection(path, n_probe=30)
    a.add(_data(2), ids=["x", "y"])
    a.close()
    b.close()
    assert b.count() == 2  # one open left (the symlink's)
    r1 = Collection(path, read_only=True)
    r2 = Collection.open(path, read_only=True)
    assert r1 is r2 and r1 is not a
    a.close()  # the last writer reference: closed, the lock released
    with pytest.raises(RuntimeError, match="closed"):
        a.count()
    assert r1.count() == 2
    other = Collection(path)  # a new writer instance
    assert other is not a
    other.close()
    r1.close()
    assert r2.count() == 2
    r2.close()
    with pytest.raises(RuntimeError, match="closed"):
        r2.count()


def test_concurrent_opens_in_threads_get_the_same_instance(tmp_path):
    path = tmp_path / "c"
    Collection(path).close()
    got, errors = [], []

    def opener(ro: bool) -> None:
        try:
            got.append(Collection(path, read_only=ro))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener, args=(i % 2 == 1,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    writers = {id(c) for c in got if not c.read_only}
    readers = {id(c) for c in got if c.read_only}
    assert len(writers) == 1 and len(readers) == 1
    for c in got:
        c.close()
    assert all(c._closed for c in got)


def test_a_failed_open_is_not_shared(tmp_path):
    path = tmp_path / "c"
    with Collection(path, metric="l2") as w:
        w.add(_data(2), ids=["a", "b"])
    (path / "index").mkdir(exist_ok=True)
    (path / "index" / "MANIFEST.json").write_text("{broken")
    with pytest.raises(CorruptStoreError):
        Collection(path)
    with pytest.raises(CorruptStoreError):
        Collection(path)  # the same error again, not a lock error or a half-open instance
    with pytest.raises(CorruptStoreError):
        Collection(path, read_only=True)


# ----------------------------------------------------------------------------------------------------------
# processes: the lock
# ----------------------------------------------------------------------------------------------------------
HOLDER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from spann_vectorstore import Collection
    col = Collection(sys.argv[1], metric="l2")
    col.add(np.eye(4, dtype=np.float32), ids=list("abcd"))
    print("ready", flush=True)
    time.sleep(600)
    """
)


def test_second_writer_process_is_refused_with_the_pid_and_sigkill_leaves_no_stale_lock(tmp_path):
    path = tmp_path / "c"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, env=_env(), text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with pytest.raises(CollectionLockedError, match=f"another process \\(pid {proc.pid}\\)"):
            Collection(path)
        r = Collection(path, read_only=True)  # readers need no lock
        assert r.search(np.eye(4, dtype=np.float32)[2], k=1)[0].id == "c"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert r.count() == 4  # still answering after the writer died
    w = Collection(path)  # the kernel dropped the lock with the process
    w.add(np.ones((1, 4), np.float32), ids=["e"])
    assert r.search(np.ones(4, np.float32), k=1)[0].id == "e"
    w.close()
    r.close()


# ----------------------------------------------------------------------------------------------------------
# damage under a reader (in a child process: a crash would show as its exit status)
# ----------------------------------------------------------------------------------------------------------
DAMAGE = textwrap.dedent(
    """
    import shutil, sys
    from pathlib import Path
    import numpy as np
    from spann_vectorstore import Collection, CorruptStoreError
    path, what = Path(sys.argv[1]), sys.argv[2]
    r = Collection(path, read_only=True)
    q = np.random.default_rng(0).standard_normal(8).astype(np.float32)
    assert len(r.search(q, k=5)) == 5
    if what == "remove":
        shutil.rmtree(path)
    elif what == "truncate":
        vec = next(path.glob("index/snap-*/vectors.npy"))
        with open(vec, "r+b") as f:
            f.truncate(200)
    elif what == "garbage":
        db = path / "docs.sqlite"
        data = bytearray(db.read_bytes())
        data[4096:] = b"\\xa5" * (len(data) - 4096)
        db.write_bytes(bytes(data))
    for _ in range(3):
        try:
            hits = r.search(q, k=5)
            r.get(limit=1000)
            print("ok", len(hits))
        except CorruptStoreError as exc:
            print("CorruptStoreError", exc)
    r.close()
    print("closed")
    """
)


@pytest.mark.parametrize("what", ["remove", "truncate", "garbage"])
def test_directory_removed_or_damaged_under_a_reader(tmp_path, what):
    path = tmp_path / "c"
    with Collection(path, metric="l2", index_threshold=100) as w:
        w.add(_data(400), texts=[f"t{i}" for i in range(400)], ids=[f"d{i}" for i in range(400)])
    out = subprocess.run(
        [sys.executable, "-c", DAMAGE, str(path), what], capture_output=True, text=True, timeout=600, env=_env()
    )
    assert out.returncode == 0, (out.returncode, out.stdout, out.stderr[-3000:])
    lines = out.stdout.splitlines()
    assert lines[-1] == "closed", out.stdout
    if what == "remove":
        assert all(line.startswith("CorruptStoreError") and "was removed" in line for line in lines[:-1]), out.stdout
    elif what == "truncate":
        assert all(line.startswith("CorruptStoreError") and "changed size" in line for line in lines[:-1]), out.stdout
    else:  # SQLite may still serve cached pages; once it reads a damaged one it is a named error
        assert all(line.startswith(("ok 5", "CorruptStoreError")) for line in lines[:-1]), out.stdout
        assert any("docs.sqlite" in line for line in lines[:-1] if line.startswith("Corrupt")) or all(
            line == "ok 5" for line in lines[:-1]
        )


# ----------------------------------------------------------------------------------------------------------
# many processes: a writer killed midway, a new writer, 4 readers searching all the time
# ----------------------------------------------------------------------------------------------------------
def test_four_reader_processes_beside_a_writer_killed_and_replaced(tmp_path):
    seconds = float(os.environ.get("SPANN_READERS_SECONDS", "0"))
    path = tmp_path / "c"
    acks = tmp_path / "acks.jsonl"

    def start(role: str, **args) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, str(WORKER), role, json.dumps({"dir": str(path), **args})],
            env=_env(),
            stderr=subprocess.PIPE,
            text=True,
        )

    def added() -> list[int]:
        return [a["batch"] for a in read_acks(acks) if a["op"] == "add"]

    w1 = start("writer", first=0, batches=10**6, index_threshold=128)
    readers = []
    try:
        _wait(lambda: list(tmp_path.glob("writer-*.ready")) or w1.poll() is not None, "the first writer")
        assert w1.poll() is None, w1.stderr.read()
        readers = [start("reader", seed=i) for i in range(4)]
        first_target = max(12, int(seconds * 10))
        _wait(
            lambda: len(added()) >= first_target or w1.poll() is not None,
            "the first writer's batches",
            timeout=300 + 2 * seconds,
        )
        w1.send_signal(signal.SIGKILL)  # midway through whatever it is doing
        w1.wait()
        last = max(added())
        w2 = start("writer", first=last + 1, batches=12, seconds=seconds, index_threshold=128)
        assert w2.wait(timeout=600 + 2 * seconds) == 0, w2.stderr.read()
        (tmp_path / "stop").write_text("1")
        for p in readers:
            assert p.wait(timeout=600) == 0, p.stderr.read()
    finally:
        for p in [w1, *readers]:
            if p.poll() is None:
                p.kill()
    reports = [json.loads((tmp_path / f"reader-{i}.json").read_text()) for i in range(4)]
    lags = sorted(lag for rep in reports for lag in rep["lags"])
    for i, rep in enumerate(reports):
        assert rep["errors"] == [], (i, rep["errors"])
        assert rep["violations"] == [], (i, rep["violations"][:5])
        assert rep["checks"] > 0
    assert max(added()) >= last + 12
    assert lags, "no acknowledged write was checked"
    p50, p99 = np.percentile(lags, 50), np.percentile(lags, 99)
    print(
        f"\nreaders: {sum(r['checks'] for r in reports)} checks, snapshot swaps {[r['swaps'] for r in reports]}, "
        f"ack-to-checked lag p50 {p50 * 1e3:.1f} ms p99 {p99 * 1e3:.1f} ms ({len(lags)} acknowledgements)"
    )
    with Collection(path, read_only=True) as r:  # everything acknowledged by either writer is there
        batches = set(added())
        assert {h.metadata["batch"] for h in r.get()} >= batches


def _child_search(path: str, parent_id: int, out) -> None:
    from spann_vectorstore import Collection as C

    col = C(path, read_only=True)
    out.put((id(col) != parent_id, col.search(np.eye(4, dtype=np.float32)[1], k=1)[0].id))
    col.close()


def test_a_forked_child_opens_its_own_instance(tmp_path):
    """gunicorn --preload / multiprocessing fork: the child must not share its parent's SQLite connection."""
    import multiprocessing

    path = tmp_path / "c"
    with Collection(path, metric="l2") as w:
        w.add(np.eye(4, dtype=np.float32), ids=list("abcd"))
    r = Collection(path, read_only=True)
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_child_search, args=(str(path), id(r), out))
    child.start()
    own, found = out.get(timeout=300)
    child.join(timeout=300)
    assert child.exitcode == 0 and own and found == "b"
    assert r.search(np.eye(4, dtype=np.float32)[2], k=1)[0].id == "c"  # the parent's handle is unaffected
    r.close()
