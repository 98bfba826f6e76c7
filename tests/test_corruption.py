"""Damage every file of a closed store (truncate, zero a range, flip bytes) and check what follows.

For each damaged copy: opening either raises :class:`CorruptStoreError` naming the damaged file (and then
``Collection.recover`` either repairs it, with every document back whose data survived somewhere, or raises
``CorruptStoreError``), or it opens; then reading (``get``, ``count``, searches with and without a filter)
either raises ``CorruptStoreError`` naming the file or answers, and whenever an answer differs from the
undamaged store's, ``verify()`` reports a problem. Never another exception, never an interpreter crash, never
a silently wrong answer that ``verify()`` passes. What ``verify()`` cannot see (the WAL, whose damaged
frames SQLite drops as uncommitted) is not damaged here; see the README's "Integrity and recovery".

Default: seven damages per file of a 4-bit store (about 20 s); ``HYPOTHESIS_PROFILE=nightly``: 83 per file,
for 1-, 2- and 4-bit stores.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from spann_vectorstore import Collection, CorruptStoreError
from spann_vectorstore.evaluation import clustered

NIGHTLY = os.environ.get("HYPOTHESIS_PROFILE") == "nightly"
FLIPS = 40 if NIGHTLY else 2  # random flips and zeroed ranges per file, beside three truncations
BITS = [1, 2, 4] if NIGHTLY else [4]  # bits > 1 has every file of bits 1 plus the sign plane's
D = 8


def build(path: Path, bits: int) -> None:
    x = clustered(300, D, seed=3, n_centers=12)
    metas = [{"g": i % 5, "name": f"n{i}"} for i in range(300)]
    with Collection(path, index_threshold=100, bits=bits) as col:
        col.add(x[:200], [f"text {i}" for i in range(200)], metas[:200], [f"id{i}" for i in range(200)])
        col.add(x[200:], [f"text {i}" for i in range(200, 300)], metas[200:], [f"id{i}" for i in range(200, 300)])
        col.delete(ids=[f"id{i}" for i in range(0, 300, 17)])


QUERIES = clustered(6, D, seed=4, n_centers=12)


def observe(col: Collection) -> tuple:
    """Everything a user could read: documents with vectors, counts, searches with and without a filter."""
    docs = sorted(
        (h.id, h.text, json.dumps(h.metadata, sort_keys=True), h.vector.tobytes())
        for h in col.get(include_vectors=True)
    )
    hits = [
        [(h.id, round(h.score, 4)) for h in hs]
        for flt in (None, {"g": 2})
        for hs in col.search(QUERIES, k=5, filter=flt)
    ]
    return docs, col.count(), col.count(filter={"g": {"$lt": 2}}), hits


def damages(size: int, rng: np.random.Generator) -> list[tuple[str, object]]:
    out = [("truncate to 0", 0), ("truncate to half", size // 2), ("truncate by 1", size - 1)]
    for _ in range(FLIPS):
        out.append(("flip a byte", int(rng.integers(0, size))))
        out.append(("zero 64 bytes", int(rng.integers(0, max(1, size - 64)))))
    return out


def apply(path: Path, kind: str, at: int) -> None:
    raw = bytearray(path.read_bytes())
    if kind.startswith("truncate"):
        raw = raw[:at]
    elif kind == "flip a byte":
        raw[at] ^= 1 << (at % 8)
    else:
        raw[at : at + 64] = bytes(len(raw[at : at + 64]))
    path.write_bytes(bytes(raw))


def names(exc: BaseException, path: Path, store: Path) -> bool:
    """The message names the damaged file, or the file that the damage makes inconsistent with it (a
    damaged manifest shows as a bad array file; a bad array file as the snapshot's manifest)."""
    msg = str(exc)
    return path.name in msg or (path.parent.name.startswith("snap-") and str(store / "index") in msg)


@pytest.fixture(autouse=True)
def no_fsync(monkeypatch):
    """Recovery writes snapshots, which fsync every file: slow on a shared disk, and power loss is not what
    is simulated here."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)


@pytest.fixture(scope="module", params=BITS, ids=[f"bits{b}" for b in BITS])
def pristine(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"pristine{request.param}")
    build(root / "c", request.param)
    with Collection.open(root / "c") as col:
        seen = observe(col)
    files = sorted(p for p in (root / "c").rglob("*") if p.is_file() and p.stat().st_size and p.name != "LOCK")
    return root / "c", seen, files


def test_every_damage_is_refused_recovered_or_reported(pristine, tmp_path):
    store, seen, files = pristine
    rng = np.random.default_rng(0)
    outcomes: dict[str, int] = {}
    for f in files:
        rel = f.relative_to(store)
        for kind, at in damages(f.stat().st_size, rng):
            copy = tmp_path / "copy"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(store, copy)
            apply(copy / rel, kind, at)
            what = f"{rel}: {kind} at {at}"
            outcome = check_one(copy, copy / rel, seen, what)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert outcomes.get("refused", 0) and outcomes.get("reported", 0), outcomes


def check_one(store: Path, damaged: Path, seen: tuple, what: str) -> str:
    try:
        col = Collection.open(store)
    except CorruptStoreError as exc:
        assert names(exc, damaged, store), f"{what}: the error does not name the file: {exc}"
        outcome = "refused"
    else:
        outcome = check_open(col, store, damaged, seen, what)
    if outcome != "harmless":  # what a user told of the damage does next
        check_recovery(store, seen, what)
    return outcome


def check_open(col: Collection, store: Path, damaged: Path, seen: tuple, what: str) -> str:
    try:
        try:
            got = observe(col)
        except CorruptStoreError as exc:
            assert names(exc, damaged, store), f"{what}: the error does not name the file: {exc}"
            return "refused on read"
        report = col.verify()
        if got != seen:
            assert not report.ok, f"{what}: answers changed and verify() found nothing"
        if not report.ok:
            return "reported"
        return "harmless"
    finally:
        try:
            col.close()
        except CorruptStoreError as exc:  # a snapshot that would copy damaged vectors is refused
            assert names(exc, damaged, store), f"{what}: {exc}"


def check_recovery(store: Path, seen: tuple, what: str) -> None:
    """recover() repairs or refuses; a repaired store verifies, and has every vector back with the texts
    and metadata of every row that kept its string id."""
    try:
        report = Collection.recover(store)
    except CorruptStoreError:
        return
    assert report["action"] != "none", f"{what}: damage was reported, and recover() found nothing to do"
    with Collection.open(store) as col:
        assert col.verify().ok, f"{what}: recovered store does not verify: {col.verify()}"
        docs, *_ = observe(col)
    before = {d[0]: d for d in seen[0]}
    assert sorted(d[3] for d in docs) == sorted(d[3] for d in seen[0]), f"{what}: vectors lost ({report})"
    for d in docs:
        assert d == before[d[0]] if not d[0].startswith("recovered-") else d[1] is None, f"{what}: {d[:3]}"
