"""A pass over a memory-mapped input keeps a bounded part of it resident (``_storage.MappedPages``): a build
from a ``.npy`` file, its save and the CRC checks drop the map's pages as they go, and nothing else changes
(same index, same snapshot bytes). Only read-only maps are released: a copy-on-write map's private pages
would be lost."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest

from spann_vectorstore import SpannIndex, _storage
from spann_vectorstore._storage import MappedPages

from .conftest import clustered

pytestmark = pytest.mark.skipif(not Path("/proc/self/smaps").exists() or sys.platform != "linux", reason="Linux")

MB = 1 << 20


def mapped_rss(path: Path) -> int:
    """Bytes of ``path``'s mappings resident in this process (/proc/self/smaps)."""
    total, inside = 0, False
    target = str(Path(path).resolve())
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                inside = len(head) >= 6 and head[5] == target
            elif inside and head and head[0] == "Rss:":
                total += int(head[1]) * 1024
    return total


def _touch(x: np.ndarray, pages: MappedPages, step: int, watch: Path) -> int:
    """Read every row of ``x`` in blocks through ``pages``; the largest resident size of ``watch`` seen."""
    peak = 0
    for s in range(0, x.shape[0], step):
        float(np.asarray(x[s : s + step]).sum())  # fault the pages in
        pages.read(x[s : s + step].nbytes)
        peak = max(peak, mapped_rss(watch))
    return peak


def test_a_pass_through_mapped_pages_keeps_a_bounded_part_resident(tmp_path):
    fn = tmp_path / "big.npy"
    np.save(fn, np.ones((16384, 1024), np.float32))  # 64 MB
    x = np.load(fn, mmap_mode="r")
    # the control: without releases the whole file ends up resident, so the measure can see the difference
    assert _touch(x, MappedPages(None), 1024, fn) >= 60 * MB
    MappedPages.of(x).release()
    assert mapped_rss(fn) < 1 * MB
    pages = MappedPages.of(x, budget=8 * MB)
    assert pages.mapped
    assert _touch(x, pages, 1024, fn) <= 8 * MB + 4 * MB + 64 * 1024  # the budget + one block + the header
    assert float(x[-1].sum()) == 1024.0  # released pages read back from the file


def test_only_read_only_maps_are_released(tmp_path):
    fn = tmp_path / "a.npy"
    np.save(fn, np.arange(1 << 20, dtype=np.float32))
    assert MappedPages.of(np.load(fn, mmap_mode="r")).mapped
    assert MappedPages.of(np.asarray(np.load(fn, mmap_mode="r"))[10:20]).mapped  # a view of one
    cow = np.load(fn, mmap_mode="c")
    cow[5] = -1.0
    pages = MappedPages.of(cow)
    assert not pages.mapped
    pages.release()
    assert cow[5] == -1.0  # a copy-on-write page is never dropped (its change would be lost)
    assert not MappedPages.of(np.load(fn, mmap_mode="r+")).mapped
    assert not MappedPages.of(np.zeros(10)).mapped
    MappedPages.of(np.zeros(10)).read(1 << 40)  # no-op


def test_write_npy_equals_np_save_and_array_crc():
    for a in (
        np.arange(10, dtype=np.int64),
        np.ones((5, 3), np.float16),
        np.zeros((0, 4), np.float32),
        np.array(1.5),
        np.arange(12, dtype=">i4").reshape(3, 4),
    ):
        ref, out = io.BytesIO(), io.BytesIO()
        np.save(ref, a, allow_pickle=False)
        crc = _storage._write_npy(out, np.ascontiguousarray(a) if a.ndim else a)
        assert out.getvalue() == ref.getvalue()
        assert crc == _storage.array_crc(a)


def test_build_and_save_from_a_file_keep_little_of_it_resident(tmp_path, monkeypatch):
    monkeypatch.setattr(_storage, "_PAGE_BUDGET", 2 * MB)
    xb = clustered(40_000, 128, seed=5)  # 20 MB
    fn = tmp_path / "base.npy"
    np.save(fn, xb)
    idx = SpannIndex(128, metric="ip", n_probe=8, seed=1).build(fn)
    assert idx.stats()["vectors_mmapped"]
    assert mapped_rss(fn) < 2 * MB  # released at the end of the build
    mem = SpannIndex(128, metric="ip", n_probe=8, seed=1).build(xb)
    xq = clustered(50, 128, seed=6)
    np.testing.assert_array_equal(idx.search(xq, 10).ids, mem.search(xq, 10).ids)
    idx.save(tmp_path / "snap")
    assert mapped_rss(fn) < 2 * MB + 8 * MB  # the save's copy and CRC pass: the budget + a 64 MB step's part
    mem.save(tmp_path / "snap_mem")
    for name in ("vectors.npy", "codes.npy"):
        a = next((tmp_path / "snap").glob(f"snap-*/{name}"), None)
        b = next((tmp_path / "snap_mem").glob(f"snap-*/{name}"), None)
        if a is not None:
            assert a.read_bytes() == b.read_bytes()
    back = SpannIndex.load(tmp_path / "snap", mmap=True)
    np.testing.assert_array_equal(back.search(xq, 10).ids, mem.search(xq, 10).ids)


def test_scattered_gathers_count_the_pages_mapped_around_each_row(tmp_path):
    # a read fault maps cached pages around it (fault-around, large folios: up to ~1 MB per row here), so
    # gathers of scattered rows count that much per row and the resident part stays within the budget plus
    # one gather (the 10M build's encoder, counting the rows' bytes, kept 13.9 GB of its 15 GB input resident)
    fn = tmp_path / "rows.npy"
    np.save(fn, np.ones((65536, 256), np.float32))  # 64 MB of 1 KB rows
    x = np.load(fn, mmap_mode="r")
    MappedPages.of(x).release()
    rng = np.random.default_rng(0)
    pages = MappedPages.of(x, budget=8 * MB)
    peak = 0
    for _ in range(100):
        rows = np.sort(rng.choice(len(x), 4, replace=False))
        assert float(x[rows].sum()) == 4 * 256
        pages.gathered(len(rows), x.shape[1] * 4)
        peak = max(peak, mapped_rss(fn))
    assert peak <= 8 * MB + 4 * MB + MB  # the budget + one gather (up to 1 MB a row) + slack; the file is 64 MB
