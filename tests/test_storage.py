"""Snapshot storage on its own (``spann_vectorstore._storage``): round trip, replacement of the previous
snapshot, and every damage to the manifest or an array file raising ``CorruptStoreError`` naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spann_vectorstore._storage import (
    MANIFEST,
    CorruptStoreError,
    load_arrays,
    read_manifest,
    verify_snapshot,
    write_snapshot,
)

KIND = "test-kind"


def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "vectors": rng.standard_normal((50, 8)).astype(np.float32),
        "ids": np.arange(50, dtype=np.int64),
        "codes": rng.integers(0, 255, (50, 3), dtype=np.uint8),
        "empty": np.zeros((0, 4), np.float16),
        "scalar": np.array(3.5),
    }


def load(root: Path, mmap: frozenset[str] = frozenset()) -> tuple[dict, dict[str, np.ndarray]]:
    man = read_manifest(root, KIND)
    return man, load_arrays(root, man, mmap=mmap)


def edit_manifest(root: Path, change) -> None:
    """Change the manifest as a damage would, dropping its checksum (manifests without one are accepted):
    the structural checks must then catch the change."""
    man = json.loads((root / MANIFEST).read_text())
    man.pop("crc32")
    change(man)
    (root / MANIFEST).write_text(json.dumps(man))


def test_round_trip_with_meta_and_mmap(tmp_path):
    want = arrays()
    snap = write_snapshot(tmp_path, KIND, {"dim": 8, "note": "é"}, want)
    assert snap == tmp_path / "snap-00000001" and (tmp_path / MANIFEST).exists()
    man, got = load(tmp_path)
    assert man["meta"] == {"dim": 8, "note": "é"} and man["seq"] == 1
    for k, a in want.items():
        assert got[k].dtype == a.dtype and got[k].shape == a.shape
        np.testing.assert_array_equal(got[k], a)
    _, got = load(tmp_path, mmap=frozenset({"vectors"}))
    assert isinstance(got["vectors"], np.memmap) and not got["vectors"].flags.writeable
    np.testing.assert_array_equal(got["vectors"], want["vectors"])
    assert verify_snapshot(tmp_path, KIND) == []


def test_a_new_snapshot_replaces_the_previous_one(tmp_path):
    write_snapshot(tmp_path, KIND, {"v": 1}, {"a": np.arange(3)})
    (tmp_path / "snap-00000002").mkdir()  # a crashed earlier attempt left a half-written next snapshot
    (tmp_path / "snap-00000002" / "junk.npy").write_bytes(b"xx")
    _, got = load(tmp_path)  # the manifest still names the complete snapshot
    np.testing.assert_array_equal(got["a"], np.arange(3))
    write_snapshot(tmp_path, KIND, {"v": 2}, {"b": np.ones(2)})
    man, got = load(tmp_path)
    assert (man["seq"], man["meta"], list(got)) == (2, {"v": 2}, ["b"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST, "snap-00000002"]
    assert not (tmp_path / "snap-00000002" / "junk.npy").exists()


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(TypeError, match="no pickle"):
        write_snapshot(tmp_path, KIND, {}, {"bad": np.array([{"a": 1}], dtype=object)})


def test_missing_manifest(tmp_path):
    assert read_manifest(tmp_path, KIND, missing_ok=True) is None
    with pytest.raises(FileNotFoundError, match=f"no {KIND} snapshot.*missing {MANIFEST}"):
        read_manifest(tmp_path, KIND)


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda p: p.write_bytes(b"{not json"), "corrupt manifest"),
        (lambda p: p.write_bytes(b"\xff\xfe"), "corrupt manifest"),
        (lambda p: p.write_text("[]"), "is not a test-kind manifest"),
        (lambda p: p.write_text(p.read_text().replace('"seq": 1', '"seq": 2')), "checksum mismatch"),
    ],
)
def test_damaged_manifest_names_the_file(tmp_path, damage, match):
    write_snapshot(tmp_path, KIND, {}, arrays())
    damage(tmp_path / MANIFEST)
    with pytest.raises(CorruptStoreError, match=match) as info:
        read_manifest(tmp_path, KIND)
    assert str(tmp_path / MANIFEST) in str(info.value)
    assert verify_snapshot(tmp_path, KIND) == [str(info.value)]


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda m: m.update(format="other"), "is not a test-kind manifest"),
        (lambda m: m.pop("arrays"), "'arrays' is missing"),
        (lambda m: m.update(seq="1"), "'seq' is missing or not a int"),
        (lambda m: m.update(snapshot="../../etc"), "bad snapshot name"),
        (lambda m: m["arrays"]["ids"].update(shape=[-1]), "bad entry for array 'ids'"),
        (lambda m: m["arrays"]["ids"].pop("crc32"), "bad entry for array 'ids'"),
        (lambda m: m["arrays"].update({"../x": m["arrays"]["ids"]}), "bad entry for array '../x'"),
    ],
)
def test_inconsistent_manifest_names_the_file(tmp_path, change, match):
    write_snapshot(tmp_path, KIND, {}, arrays())
    edit_manifest(tmp_path, change)
    with pytest.raises(CorruptStoreError, match=match) as info:
        read_manifest(tmp_path, KIND)
    assert str(tmp_path / MANIFEST) in str(info.value)


def test_a_manifest_without_checksum_is_accepted(tmp_path):
    write_snapshot(tmp_path, KIND, {"x": 1}, arrays())
    edit_manifest(tmp_path, lambda m: None)
    man, got = load(tmp_path)
    assert man["meta"] == {"x": 1} and len(got) == len(arrays())


def _flip_last_byte(p: Path) -> None:
    raw = bytearray(p.read_bytes())
    raw[-1] ^= 0xFF
    p.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda p: p.unlink(), "missing array file"),
        (lambda p: p.write_bytes(p.read_bytes()[:-8]), "truncated"),
        (lambda p: p.write_bytes(p.read_bytes() + b"\0" * 4), "manifest says"),
        (lambda p: p.write_bytes(b"\0" * p.stat().st_size), "cannot read the header"),
        (_flip_last_byte, "checksum mismatch"),
    ],
)
def test_damaged_array_file_names_it(tmp_path, damage, match):
    snap = write_snapshot(tmp_path, KIND, {}, arrays())
    fn = snap / "vectors.npy"
    damage(fn)
    with pytest.raises(CorruptStoreError, match=match) as info:
        load(tmp_path)
    assert str(fn) in str(info.value)
    problems = verify_snapshot(tmp_path, KIND)
    assert len(problems) == 1 and str(fn) in problems[0]


def test_a_header_that_disagrees_with_the_manifest(tmp_path):
    snap = write_snapshot(tmp_path, KIND, {}, {"a": np.zeros((4, 2), np.float32), "b": np.zeros((2, 4), np.float32)})
    (snap / "b.npy").replace(snap / "a.npy")  # same size, other shape: caught before any data is read
    with pytest.raises(CorruptStoreError, match=r"a\.npy.*manifest says <f4\[4, 2\]"):
        load(tmp_path)


def test_mmap_skips_the_checksum_but_verify_reads_it(tmp_path):
    snap = write_snapshot(tmp_path, KIND, {}, arrays())
    _flip_last_byte(snap / "vectors.npy")
    load(tmp_path, mmap=frozenset({"vectors"}))  # sizes and header only: opening stays fast
    problems = verify_snapshot(tmp_path, KIND)
    assert len(problems) == 1 and "checksum mismatch" in problems[0] and "vectors.npy" in problems[0]
