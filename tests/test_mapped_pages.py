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


# ----------------------------------------------------------------------------------------------------------
# scattered rows of a mapped file (take_rows): read with pread, nothing of the file mapped
# ----------------------------------------------------------------------------------------------------------
def _rows_file(tmp_path: Path, n: int = 16384, d: int = 256) -> tuple[Path, np.ndarray]:
    fn = tmp_path / "rows.npy"
    xb = np.random.default_rng(5).standard_normal((n, d)).astype(np.float32)
    np.save(fn, xb)
    return fn, xb


def test_take_rows_of_a_noted_map_equals_the_gather_and_maps_nothing(tmp_path):
    fn, xb = _rows_file(tmp_path)
    x = np.load(fn, mmap_mode="r")
    _storage.register_map(x, fn)
    rng = np.random.default_rng(1)
    cases = [
        np.sort(rng.choice(len(xb), 3000, replace=False)),  # scattered
        np.arange(100, 2100),  # one run of consecutive rows: one read
        rng.integers(0, len(xb), 500),  # unsorted, repeated
        np.array([len(xb) - 1, 0, 0]),
        np.zeros(0, np.int64),
    ]
    for idx in cases:
        got = _storage.take_rows(x, idx)
        np.testing.assert_array_equal(got, xb[idx])
        assert got.dtype == np.float32 and got.flags.c_contiguous and not isinstance(got, np.memmap)
    # a view of the map (rows 1000..) and a float column block read the right rows too
    view = np.asarray(x[1000:])
    np.testing.assert_array_equal(_storage.take_rows(view, np.array([0, 5, 9000])), xb[[1000, 1005, 10000]])
    np.testing.assert_array_equal(_storage.take_rows(x[:, :8], np.array([3, 4])), xb[[3, 4], :8])  # not C order
    # fewer rows than min_rows (a search's, a split's) go through the map: no reader to compile for them
    assert mapped_rss(fn) < 1 * MB
    np.testing.assert_array_equal(_storage.take_rows(x, cases[0], min_rows=5000), xb[cases[0]])
    assert mapped_rss(fn) > 4 * MB
    MappedPages.of(x).release()
    # the control: the same gather through the map makes its pages resident
    assert mapped_rss(fn) < 1 * MB
    float(x[np.sort(rng.choice(len(xb), 3000, replace=False))].sum())
    assert mapped_rss(fn) > 4 * MB


def test_take_rows_falls_back_to_the_map_when_the_file_is_not_the_mapped_one(tmp_path):
    fn, xb = _rows_file(tmp_path)
    x = np.load(fn, mmap_mode="r")
    _storage.register_map(x, fn)
    idx = np.array([1, 7, 4000])
    # replaced by another file under the same name (a new inode): the map's own rows, not the new file's
    np.save(tmp_path / "other.npy", np.zeros_like(xb))
    (tmp_path / "other.npy").replace(fn)
    np.testing.assert_array_equal(_storage.take_rows(x, idx), xb[idx])
    # an unnoted map and an in-memory array: plain gathers; out of range: numpy's error
    y = np.load(tmp_path / "rows.npy", mmap_mode="r")
    np.testing.assert_array_equal(_storage.take_rows(y, idx), np.zeros((3, xb.shape[1]), np.float32))
    np.testing.assert_array_equal(_storage.take_rows(xb, idx), xb[idx])
    with pytest.raises(IndexError):
        _storage.take_rows(x, np.array([len(xb)]))


def test_take_rows_of_a_file_truncated_under_its_map_names_it(tmp_path):
    fn, xb = _rows_file(tmp_path)
    x = np.load(fn, mmap_mode="r")
    _storage.register_map(x, fn)
    with open(fn, "r+b") as f:
        f.truncate(fn.stat().st_size // 2)
    with pytest.raises(_storage.CorruptStoreError, match=r"rows\.npy"):
        _storage.take_rows(x, np.array([1, len(xb) - 1]))


def test_a_build_from_a_file_reads_its_scattered_rows_without_mapping_them(tmp_path):
    """The tree, the refinement sample, the posting cap and the encoder gather scattered rows; the build's
    input file stays out of the resident set except for its sequential passes (released per GB)."""
    xb = clustered(30000, 64, seed=4)
    fn = tmp_path / "base.npy"
    np.save(fn, xb)
    seen = []
    real = _storage.take_rows

    def spy(a, idx, pages=None, *, min_rows=1):
        out = real(a, idx, pages, min_rows=min_rows)
        if len(idx) >= min_rows:
            seen.append((len(idx), _storage._file_rows(a, np.asarray(idx)) is not None))
        return out

    _storage.take_rows = spy
    try:
        import spann_vectorstore._rabitq as R
        import spann_vectorstore.clustering as CL

        CL.take_rows = R.take_rows = spy
        idx = SpannIndex(64, metric="ip", n_probe=8, seed=2).build(fn)
    finally:
        _storage.take_rows = CL.take_rows = R.take_rows = real
    assert idx.stats()["vectors_mmapped"]
    assert sum(m for m, through_file in seen if through_file) >= 30000  # the encoder alone reads every row
    assert all(through_file for m, through_file in seen if m), "a scattered gather went through the map"
    ref = SpannIndex(64, metric="ip", n_probe=8, seed=2).build(xb)
    xq = clustered(50, 64, seed=6)
    np.testing.assert_array_equal(idx.search(xq, 10).ids, ref.search(xq, 10).ids)


def test_the_calibration_of_a_mapped_build_equals_the_in_memory_one(tmp_path):
    """The calibration searches a mapped base 32 sample queries at a time, its pages dropped between chunks
    (the reranks read full vectors at scattered rows): the table it measures is the one a single batch gives."""
    xb = clustered(8000, 32, seed=21)
    fn = tmp_path / "base.npy"
    np.save(fn, xb)
    mem = SpannIndex(32, metric="ip", seed=4).build(xb)
    mapped = SpannIndex(32, metric="ip", seed=4).build(fn)
    assert mapped.stats()["vectors_mmapped"]
    releases = []
    real = MappedPages.release

    def counting(self):
        releases.append(self.mapped)
        return real(self)

    MappedPages.release = counting
    budget = _storage._PAGE_BUDGET
    _storage._PAGE_BUDGET = 1 << 16  # chunks only for a file above the page budget: this one is ~1 MB
    try:
        a, b = mem._calibration(), mapped._calibration()
    finally:
        MappedPages.release = real
        _storage._PAGE_BUDGET = budget
    assert sum(releases) >= 300 // 128  # chunks of ~1,024 reranked rows: several per grid step
    for name in ("recall", "cost", "filtered"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.sample == b.sample == 300
