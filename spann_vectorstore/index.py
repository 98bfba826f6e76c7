"""``SpannIndex``: a quantized SPANN index (balanced heads, closure replication, RaBitQ codes, exact rerank).

``SpannIndex`` orchestrates the owners of its state (see ARCHITECTURE.md), each a small module:

* ``_rabitq.RaBitQCodec``: the random rotation and the RaBitQ encoding of residuals (FastScan blocks);
* ``_heads.HeadTable``: heads ``(H, d)``, their float16 copy and the coarse head groups; ``probe()``;
* ``_arena.PostingArena``: every posting's entries (internal vector index, codes, factors) in one arena;
* ``_idmap.IdMap``: external ids, tombstones, the id lookup; ``_idmap.VectorTable``: full-precision
  vectors (memory-mapped after ``load(mmap=True)``) for the exact rerank.

Each owner hands the kernels a typed view (``_kernels.contract``) and drops it in its own mutators.

Search: distances to all heads (one matrix product), the nearest ``n_probe`` heads pruned by
``max_dist_ratio``, a LUT scan of their codes with replica de-duplication, then exact rerank of only the
candidates whose RaBitQ upper bound can still reach the top k. See ``_kernels`` for the math.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numba
import numpy as np

from . import _calibration as C
from . import _kernels as K
from . import _storage
from ._arena import PostingArena, order_rows
from ._heads import HeadTable
from ._idmap import MAX_VECTORS, IdMap, VectorTable
from ._rabitq import RaBitQCodec
from .clustering import _sqnorms, cap_postings, closure_assign, hierarchical_heads, kmeans
from .validation import METRICS, as_matrix, check_metric, check_target, positive_int  # noqa: F401  (METRICS: re-exported)

BITS = (1, 2, 4, 8)
_FORMAT = "spann-index"
_POSTING_LIMIT = 4.0  # a build keeps postings within 4x the mean length (replicas beyond are dropped)
_HEAD_RATIO_MAX = 1 / 40
_HEAD_RATIO_MIN = 1 / 80
_AUTO_MAX_HEADS = 12_500
DEFAULT_TARGET_RECALL = 0.98  # the default search setting: Chroma's default recall on ../shared/data is 0.976
_FALLBACK_N_PROBE = 40  # an index that cannot be calibrated (too small) with no n_probe given
# an exact distance to an allowed vector costs about as much as reading this many codes in a filtered probe
# (1M x 384: ~0.45 us against ~0.02 us, a ratio of ~22; 16 leans towards the probing, which can stop early)
_EXACT_COST = 16
_FEW_ALLOWED = 65536  # allowed sets up to this size are also kept as sorted positions (np.unique)
_PARALLEL_EXACT = 8192  # exact distances per call from which _exact_subset splits them over the cores
_RERANK_ROWS = 1024  # a calibration over a mapped base drops its pages after about this many reranked rows
_CALIBRATE_AT_BUILD = 20_000  # builds of this many vectors calibrate at once (smaller ones on first use)
POSTING_LIMIT_AUTO = 3.0  # posting_limit="auto": entries read per posting, in build mean posting lengths


def auto_head_ratio(n: int) -> float:
    """Default heads per vector for a build over ``n`` vectors.

    1/40 while that makes at most 12,500 heads: on ../shared/data it scans 40% fewer codes than 1/80 at
    recall 0.95 (3,989 vs 6,682 per query), and from 2,048 heads on the head groups keep the extra heads
    cheap to score. Then 12,500 heads until 1/80 asks for more. The plateau is no longer the build's: from
    8,192 heads on a build finds each vector's candidate heads through the head groups (cost ~n sqrt(H),
    not n H), so any ``head_ratio`` builds in near-linear time. It is the search's: at 1M synthetic vectors
    26.2k heads (1/40) gave recall@10 0.962 at p50 0.58 ms and 12.7k heads 0.973 at 0.69 ms at the same
    target (more heads: more to score per query, smaller postings to scan), and built in 398 s against 250 s
    (``benchmarks/results/scale-384-*.json``, a loaded machine).
    """
    return max(_HEAD_RATIO_MIN, min(_HEAD_RATIO_MAX, _AUTO_MAX_HEADS / max(n, 1)))


_NO_MASK = np.zeros(0, np.uint8)  # the kernels' "every vector allowed"


class _Pair(NamedTuple):
    ids: np.ndarray
    scores: np.ndarray


class SearchResult(_Pair):
    """Search output: ``ids`` (nq, k) int64 padded with -1, ``scores`` (nq, k) float32 padded with nan; best
    first, equal scores in increasing id order. A tuple: ``ids, scores = res`` and ``res[0]`` both work.

    ``stats`` (when the index searched) holds this call's work per query, each an (nq,) int64 array:
    ``postings`` scanned, ``entries`` estimated from their codes, stage-1 ``survivors``, rerank
    ``candidates`` and ``exact`` distances computed (an exact search reports the vectors it compared as
    candidates and exact distances).
    """

    @property
    def stats(self) -> dict[str, np.ndarray] | None:
        raw = self.__dict__.get("_stats")
        return None if raw is None else {name: raw[:, i] for i, name in enumerate(K.STATS)}


def _result(ids: np.ndarray, scores: np.ndarray, stats: np.ndarray | None) -> SearchResult:
    res = SearchResult(ids, scores)
    res._stats = stats
    return res


def _members(members: np.ndarray | None, mask: np.ndarray) -> np.ndarray:
    """Sorted internal indices of the allowed vectors: ``members`` when the search kept them, else from the
    mask."""
    return members if members is not None else np.flatnonzero(mask)


def _progress(total: int, desc: str, enabled: bool, unit: str = "vec"):
    """A tqdm bar (rate and ETA) for a build phase, or a context yielding None when not shown."""
    if not enabled:
        return contextlib.nullcontext()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False)


class IndexExport:
    """A snapshot of a :class:`SpannIndex` taken by :meth:`SpannIndex.export`, written by :meth:`write`."""

    def __init__(self, index: SpannIndex, info: dict[str, Any], arrays: dict[str, Any], sizes: np.ndarray) -> None:
        self._index = index
        self._vectors = index._vectors  # the table the vectors are read from (a build may replace the index's)
        self._codec = index._codec
        self._sizes = sizes
        self.info = info
        self._arrays = arrays

    def write(self, path: str | os.PathLike) -> Path:
        """Write the snapshot under ``path`` (see :meth:`SpannIndex.save`); returns its directory. A
        memory-mapped vectors file is checked against its CRC32 first."""
        self._vectors.check_mapped()
        arrays = dict(self._arrays)  # the postings ordered nearest to their head first, as a compaction does
        ordered = order_rows(self._codec, self._sizes, {k[2:]: v for k, v in arrays.items() if k.startswith("e_")})
        arrays |= {"e_" + k: v for k, v in ordered.items()}
        snap = _storage.write_snapshot(path, _FORMAT, self.info, arrays)
        self._index._snap_dir = snap
        return snap


class SpannIndex:
    """Quantized SPANN index over float vectors with int64 ids.

    Parameters (keyword-only except ``dim``)
    ----------------------------------------
    dim: vector dimension.
    metric: ``"ip"`` (inner product), ``"cosine"`` (vectors and queries normalised at the boundary) or
        ``"l2"``. Scores returned by :meth:`search` are similarities for ``"ip"``/``"cosine"`` (higher is
        better) and **squared** L2 distances for ``"l2"`` (lower is better); results are always best first.
    bits: RaBitQ bits per dimension of the posting codes: 1, 2, 4 or 8. Codes are stored once per replica,
        so code memory is about ``replicas * bits * dim / 8`` bytes per vector.
    head_ratio: heads (posting lists) per vector; ``1/head_ratio`` is the average posting size before
        replication (SPTAG uses 0.1-0.2 with tiny postings; a quantized in-memory scan prefers larger ones).
        Default None: :func:`auto_head_ratio` of the build's vector count (1/40 up to 500k vectors, then
        12,500 heads, then 1/80 from 1M on). Any ratio builds in near-linear time (candidate heads are
        found through the head groups from 8,192 heads on).
    replica_count: maximum postings per vector (SPTAG: 8), chosen by the RNG rule among ``candidates``
        nearest heads (SPTAG: 64) with ``rng_factor`` on squared L2. SPTAG's 1.0 is applied to its cosine
        distance for normalised data; on squared L2 between mean-heads 1.0 keeps ~1 replica, and 2.0 gives
        ~3 replicas and the best recall per scanned vector on ../shared/data.
    target_recall: the default search aims at this recall@k (0.98): the depth and pruning that reached it on
        the index's calibration sample (see :meth:`calibrate`).
    n_probe, max_dist_ratio: a fixed default depth instead of the target (``n_probe``, default None), and
        the distance pruning: of the postings probed (beyond the nearest 8) only heads within
        ``max_dist_ratio`` times the nearest head's squared L2 distance (SPTAG's query-aware pruning; its
        8.0 is for its own distance scale). On ../shared/data 40 / 1.5 gives recall@10 0.961 scanning 7,500
        codes per query, where 32 / no pruning gives 0.957 for 9,100.
    eps0: confidence multiplier of the RaBitQ error bound (1.9 in the paper); larger reranks more.
    posting_limit: entries a search reads per posting at most (SPTAG's ``SearchPostingPageLimit``), the ones
        nearest to the posting's head (postings are kept ordered by that distance): bounds the cost of a
        long posting (one that adds grew towards ``split_factor``), the tail latency. None (default): no
        limit; ``"auto"``: ``POSTING_LIMIT_AUTO`` (3) times the build's mean posting length; an int: that many
        entries. Off by default because the far entries it drops are the replicas of boundary vectors:
        measured, a skewed index grown 2x by adds saw p99 -18-24% at the same recall (3x; the calibration
        probing deeper), but a clustered one grown 1.5x lost 12 points of recall@10 at n_probe 16 (0.94 ->
        0.83; fewer postings without a limit, at the same entries, gave 0.89), and with ``ip`` a vector of
        large norm (far from every head) can drop out of every posting it is in. The calibration behind
        ``target_recall`` is measured with the limit in force.
    split_factor: a posting that grows by :meth:`add` beyond ``split_factor`` times the last build's mean
        posting length is split in two by 2-means (SPFresh). Splits cost recall (the halves' vectors keep
        only the replicas they had): on the incremental test (+50% vectors, 3 seeds) 2.0 lost 6-9 points
        against a fresh build, 3.0 1-5, 5.0 at most 1.6; longer postings cost scan time instead, and a
        Collection rebuilds at each doubling anyway.
    seed: seeds clustering and the random rotation, so builds are reproducible.
    progress: show tqdm progress bars (``None``: only for builds of 20,000 vectors or more).

    Before :meth:`build`, :meth:`add` keeps vectors flat and :meth:`search` is exact (brute force); call
    ``build()`` (no arguments) to index what was added. After a build, :meth:`add` updates in place.

    Thread safety: concurrent :meth:`search` calls are safe (the kernels release the GIL);
    :meth:`add`, :meth:`delete` and :meth:`build`
    must not run concurrently with anything else (the ``Collection`` provides that locking).
    """

    def __init__(
        self,
        dim: int,
        *,
        metric: str = "ip",
        bits: int = 1,
        head_ratio: float | None = None,
        replica_count: int = 8,
        rng_factor: float = 2.0,
        candidates: int = 64,
        n_probe: int | None = None,
        target_recall: float = DEFAULT_TARGET_RECALL,
        max_dist_ratio: float = 1.5,
        eps0: float = 1.9,
        split_factor: float = 5.0,
        posting_limit: int | str | None = None,
        seed: int = 0,
        progress: bool | None = None,
    ) -> None:
        positive_int(dim, "dim")
        metric = check_metric(metric)
        if bits not in BITS or isinstance(bits, bool):
            raise ValueError(f"unsupported bits {bits!r}; expected one of {BITS}")
        if head_ratio is not None and not 0 < head_ratio <= 1:
            raise ValueError(f"head_ratio must be in (0, 1], got {head_ratio!r}")
        if int(replica_count) < 1 or int(candidates) < 1:
            raise ValueError("replica_count and candidates must be >= 1")
        if rng_factor <= 0 or max_dist_ratio <= 0 or eps0 < 0 or split_factor <= 1:
            raise ValueError("rng_factor and max_dist_ratio must be > 0, eps0 >= 0, split_factor > 1")
        K.start_threads()  # Numba's pool with sleeping (not spinning) OpenMP threads: see _kernels.threads
        self.dim = int(dim)
        self.metric = metric
        self.bits = int(bits)
        self.params: dict[str, Any] = {
            "head_ratio": None if head_ratio is None else float(head_ratio),
            "replica_count": int(replica_count),
            "rng_factor": float(rng_factor),
            "candidates": int(candidates),
            "n_probe": None if n_probe is None else self._check_n_probe(n_probe),
            "target_recall": check_target(target_recall),
            "max_dist_ratio": float(max_dist_ratio),
            "eps0": float(eps0),
            "split_factor": float(split_factor),
            "posting_limit": self._check_posting_limit(posting_limit, allow_auto=True),
            "seed": int(seed),
        }
        self.progress = progress
        self._codec = RaBitQCodec(self.dim, self.bits, self.params["seed"])
        self._local = threading.local()
        self._plans: dict[tuple, tuple] = {}  # per search setting, see _scan
        self._snap_dir: Path | None = None  # the snapshot last saved or loaded (for stats' bytes_disk)
        self._calib: C.Calibration | None = None  # see calibrate()
        self._calib_queries: np.ndarray | None = None  # queries a user calibrated with (kept for recalibration)
        self._calib_lock = threading.Lock()
        self._recent: np.ndarray | None = None  # opt-in ring buffer of recent single queries (record_queries)
        self._recent_n = 0
        self._reset()

    # ------------------------------------------------------------------------------------------------------
    # state
    # ------------------------------------------------------------------------------------------------------
    def _reset(self) -> None:
        """Empty state: no heads, postings or vectors (the codec's rotation is kept)."""
        self._heads = HeadTable(self.dim, self.params["seed"])
        self._arena = PostingArena(self._codec)
        self._idmap = IdMap()
        self._vectors = VectorTable(self.dim)
        self._build_mean = 1.0 / (self.params["head_ratio"] or _HEAD_RATIO_MAX)
        self._build_max = 0  # the longest posting the last build made
        self._n_built = 0  # internal indices below this were clustered by the last build (see _sample_search)

    def __len__(self) -> int:
        return self._idmap.n_live

    @property
    def n_heads(self) -> int:
        return len(self._heads)

    def __repr__(self) -> str:
        return (
            f"SpannIndex(dim={self.dim}, metric={self.metric!r}, bits={self.bits}, n={len(self)}, heads={self.n_heads})"
        )

    # ------------------------------------------------------------------------------------------------------
    # input checks (the public boundary: kernels trust what passes here)
    # ------------------------------------------------------------------------------------------------------
    @staticmethod
    def _check_n_probe(n_probe: Any) -> int:
        return positive_int(n_probe, "n_probe")

    @staticmethod
    def _check_posting_limit(limit: Any, *, allow_auto: bool) -> int | str | None:
        if limit is None or (allow_auto and limit == "auto"):
            return limit
        return positive_int(limit, "posting_limit")

    @property
    def posting_limit(self) -> int | None:
        """Entries a search reads per posting at most (None: every entry); see the ``posting_limit``
        parameter. ``"auto"`` resolves against the last build's mean posting length."""
        lim = self.params["posting_limit"]
        if lim == "auto":
            return max(32, math.ceil(POSTING_LIMIT_AUTO * self._build_mean))
        return lim

    def _cap(self, override: Any = None) -> int:
        """The kernels' ``posting_limit`` of a search: ``override`` if given, else the index's."""
        lim = self.posting_limit if override is None else self._check_posting_limit(override, allow_auto=False)
        return K.contract.NO_LIMIT if lim is None else int(lim)

    def _as_matrix(self, x: Any, what: str, *, allow_1d: bool) -> np.ndarray:
        return as_matrix(x, what, dim=self.dim, metric=self.metric, allow_1d=allow_1d)

    def _check_ids(self, ids: Any, n: int, *, new: bool) -> np.ndarray:
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise ValueError(f"ids must be 1-D, got shape {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"ids must be integers, got dtype {arr.dtype}")
        if arr.shape[0] != n:
            raise ValueError(f"got {arr.shape[0]} ids for {n} vectors")
        arr = arr.astype(np.int64)
        uniq, counts = np.unique(arr, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"duplicate ids in input: {uniq[counts > 1][:5].tolist()}")
        if new and len(self):
            present = self._idmap.lookup(arr) >= 0
            if present.any():
                raise ValueError(f"ids already in the index: {arr[present][:5].tolist()}")
        return arr

    def contains(self, ids: Any) -> np.ndarray:
        """Bool array: which of ``ids`` are live in the index."""
        return self._idmap.lookup(np.asarray(ids, dtype=np.int64).reshape(-1)) >= 0

    @property
    def ids(self) -> np.ndarray:
        """Live external ids, sorted (a copy)."""
        return self._idmap.sorted_ids.copy()

    def vectors(self, ids: Any) -> np.ndarray:
        """The stored vectors (n, dim) float32 of live ``ids`` (normalised for cosine); ``KeyError`` for an
        id that is not live."""
        return self._vectors.rows(self._live_positions(ids))

    def _live_positions(self, ids: Any) -> np.ndarray:
        """Internal index of each of ``ids``; ``KeyError`` for an id that is not live."""
        arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        pos = self._idmap.lookup(arr)
        if (pos < 0).any():
            raise KeyError(f"ids not in the index: {arr[pos < 0][:5].tolist()}")
        return pos

    def scores(self, query: Any, ids: Any) -> np.ndarray:
        """The score :meth:`search` reports for ``query`` ((dim,)) and each of the live ``ids`` (float32, in
        order; ``KeyError`` for an id that is not live): similarity for ip/cosine, squared L2 distance for l2,
        by the search kernels' own code, so a vector scores exactly as when a search returns it."""
        q = as_matrix(query, "query", dim=self.dim, metric=self.metric, allow_1d=True)
        if q.shape[0] != 1:
            raise ValueError(f"scores takes one query, got shape {np.shape(query)}")
        pos = self._live_positions(ids)
        sim = np.empty((1, len(pos)), np.float32)
        l2 = self.metric == "l2"
        K.exact_scores(q, pos, self._vectors.view(), 1.0 if l2 else 0.0, sim)
        return np.maximum(_sqnorms(q)[:, None] - 2.0 * sim, 0.0).astype(np.float32)[0] if l2 else sim[0]

    def live_items(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the live vectors (n, dim) float32 and their ids (n,), in insertion order."""
        live = self._idmap.live()
        return self._vectors.rows(live), self._idmap.ids[live].copy()

    # ------------------------------------------------------------------------------------------------------
    # build
    # ------------------------------------------------------------------------------------------------------
    def build(self, vectors: Any = None, ids: Any = None, *, copy: bool = True) -> SpannIndex:
        """Build from scratch over ``vectors`` (n, dim); ``ids`` int64 (n,), default ``0..n-1``.

        ``vectors`` may be an array, an ``np.memmap`` or the path of a ``.npy`` file. A float32 file (or
        map) under the ``"ip"``/``"l2"`` metrics is not copied: the index maps it read only, as
        :meth:`load` with ``mmap=True`` maps a snapshot (the file must not change while the index uses it;
        its CRC32 is taken at build and checked before :meth:`save` copies it). Every phase reads such an
        input in blocks, so a build over millions of vectors needs memory for the index (codes, heads) and
        a working set of ~1-2 GB, not for the vectors. Other dtypes, and cosine (rows are normalised), are
        converted into memory block by block.

        ``copy=False``: an in-memory float32 C-contiguous ``vectors`` becomes the index's full-precision
        vectors itself instead of being copied (half the memory of a build over a large array); the caller
        must not change it afterwards. (Ignored for files, which are mapped anyway.)

        Replaces any previous content. ``build()`` without vectors rebuilds over the current live vectors
        and ids (what ``Collection.optimize`` uses; that copy is kept, not copied again). Returns ``self``.
        """
        if vectors is None:
            if len(self) == 0:
                raise ValueError("nothing to build: the index is empty and no vectors were given")
            vectors, ids = self.live_items()
            copy = False
        x, mapped, xn2 = self._build_input(vectors)
        n = x.shape[0]
        if n > MAX_VECTORS:
            raise ValueError(f"at most {MAX_VECTORS} vectors per index")
        ids_arr = np.arange(n, dtype=np.int64) if ids is None else self._check_ids(ids, n, new=False)
        show = self.progress if self.progress is not None else n >= 20000
        rng = np.random.default_rng(self.params["seed"])
        target = max(1, round(1 / (self.params["head_ratio"] or auto_head_ratio(n))))
        with _progress(n, "spann: heads", show) as bar:
            heads = hierarchical_heads(x, target_size=target, rng=rng, progress=bar)
        table = HeadTable(self.dim, self.params["seed"])
        table.reset(heads)  # grouped first: the assignment finds heads through the groups a search uses
        with _progress(n, "spann: assign", show) as bar:
            assign = closure_assign(
                x,
                heads,
                replica_count=self.params["replica_count"],
                rng_factor=self.params["rng_factor"],
                candidates=self.params["candidates"],
                groups=table.head_groups(),
                progress=bar,
            )
        assign = cap_postings(x, heads, assign, _POSTING_LIMIT)
        self._reset()  # the previous content stays until here
        self._heads = table
        self._arena.add_heads(heads.shape[0])
        if xn2 is None and copy:
            vidx = self._append(x, ids_arr)
        else:  # the map, the file's converted rows or the caller's array is the vectors' base segment
            vidx = self._idmap.append(ids_arr)
            self._vectors = VectorTable.of_arrays(x, _sqnorms(x) if xn2 is None else xn2, mapped=mapped)
        self._insert(assign, vidx, x, show=show)
        self._build_mean = float(self._arena.size.mean())
        self._build_max = int(self._arena.size.max())
        self._calib = None
        if n >= _CALIBRATE_AT_BUILD and self.params["n_probe"] is None:  # a fixed n_probe: on first need
            self._calibration()
        _storage.MappedPages.of(x).release()  # searches map back the few pages they rerank from
        return self

    def _build_input(self, vectors: Any) -> tuple[np.ndarray, tuple[Path, int] | None, np.ndarray | None]:
        """The build's input as (n, dim) float32; for a file, also (file, CRC32) when it is kept by reference
        (else None) and the rows' squared norms, all from one pass over the file (the array is then the
        build's own: the map, or a converted copy, neither copied again). In-memory input: (x, None, None)."""
        path = None
        if isinstance(vectors, (str, os.PathLike)):
            path = Path(vectors)
            try:
                vectors = np.load(path, mmap_mode="r", allow_pickle=False)
                _storage.register_map(vectors, path)
            except (OSError, ValueError) as exc:
                raise ValueError(f"cannot read vectors from {str(path)!r}: {exc}") from None
        elif isinstance(vectors, np.memmap) and isinstance(vectors.filename, (str, os.PathLike)):
            path = Path(vectors.filename)
            _storage.register_map(vectors, path)
        if path is None:
            return self._as_matrix(vectors, "vectors", allow_1d=False), None, None
        arr = vectors
        if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] != self.dim:
            # the in-memory check names the problem (shape, dimension, empty)
            self._as_matrix(arr[:1] if arr.ndim == 2 and arr.shape[0] else arr, "vectors", allow_1d=False)
        keep = arr.dtype == np.float32 and arr.flags.c_contiguous and self.metric != "cosine"
        out = np.asarray(arr) if keep else np.empty(arr.shape, np.float32)
        xn2 = np.empty(arr.shape[0], np.float32)
        crc = 0
        pages = _storage.MappedPages.of(arr)  # one pass over a 15 GB map keeps ~1 GB of it resident
        step = max(1, (1 << 27) // (4 * self.dim))
        for s in range(0, arr.shape[0], step):
            try:
                block = self._as_matrix(np.asarray(arr[s : s + step]), "vectors", allow_1d=False)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{exc} (rows {s}..{s + step - 1} of {str(path)!r})") from None
            xn2[s : s + len(block)] = _sqnorms(block)
            if keep:  # the CRC32 of the whole array, as _storage.array_crc computes it, block by block
                crc = zlib.crc32(block.view(np.uint8).reshape(-1), crc)
            else:
                out[s : s + len(block)] = block
            pages.read(block.nbytes)
        return out, ((path, crc) if keep else None), xn2

    def _append(self, x: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """New vectors (rows ``x``, external ``ids``); returns their internal indices."""
        vidx = self._idmap.append(ids)
        self._vectors.append(x)
        return vidx

    def _insert(self, assign: np.ndarray, vidx: np.ndarray, x: np.ndarray, *, show: bool = False) -> None:
        """Entries for rows ``x`` (internal indices ``vidx``) in the postings listed by ``assign`` (m, r),
        -1 padded, RaBitQ-encoded against their heads."""
        rows, heads, dest = self._arena.append(assign, vidx)
        with _progress(len(dest), "spann: encode", show, "entry") as bar:
            self._codec.encode(x, self._heads.heads, rows, heads, self._arena.entries, dest, bar)
        # postings nearest to their head first, for the posting limit: a build orders them all; an add only
        # the touched postings longer than the limit (the ones a capped scan cuts; ordering every touched
        # posting cost 30-47% of a batch add), the others are ordered by the next compaction or split
        if len(dest) >= self._arena.n_entries:  # a build
            self._arena.order()
            self._n_built = self._idmap.n
        elif self.posting_limit is not None:
            touched = np.unique(heads)
            self._arena.order(touched[self._arena.size[touched] > self.posting_limit])

    def _rewrite(self, h: int, vidx: np.ndarray, x: np.ndarray) -> None:
        """Replace posting ``h`` by entries for ``vidx`` (rows ``x``), re-encoded against head ``h``."""
        dest = self._arena.rewrite(h, vidx)
        m = len(vidx)
        self._codec.encode(x, self._heads.heads, np.arange(m), np.full(m, h, np.int64), self._arena.entries, dest)
        self._arena.order(np.array([h]))

    # ------------------------------------------------------------------------------------------------------
    # updates (SPFresh)
    # ------------------------------------------------------------------------------------------------------
    def add(self, vectors: Any, ids: Any = None) -> np.ndarray:
        """Add vectors without a rebuild; returns their ids.

        Each vector joins up to ``replica_count`` postings by the same RNG rule as the build. A posting that
        grows past ``split_factor`` times the build's mean posting length is split by 2-means (tombstones
        dropped; boundary vectors that pass the RNG rule between the halves stay in both).
        ``ids`` default to ``max(id) + 1 ...``.
        Duplicate ids (within the call or already present) raise ``ValueError`` and change nothing.
        """
        x = self._as_matrix(vectors, "vectors", allow_1d=True)
        m = x.shape[0]
        ids_arr = self._idmap.next_ids(m) if ids is None else self._check_ids(ids, m, new=True)
        if self.n_heads == 0:
            # not built yet: keep the vectors flat (searched exactly) until build() is called
            self._append(x, ids_arr)
            return ids_arr
        assign = closure_assign(
            x,
            self._heads.heads,
            replica_count=self.params["replica_count"],
            rng_factor=self.params["rng_factor"],
            candidates=self.params["candidates"],
            groups=self._heads.head_groups(),
        )
        vidx = self._append(x, ids_arr)
        self._insert(assign, vidx, x)
        self._split_oversized()
        self._arena.maybe_compact(self._idmap.deleted)
        self._keep_calibrated()
        return ids_arr

    def delete(self, ids: Any) -> int:
        """Tombstone ``ids``; returns how many were present. Missing ids are ignored.

        Deleted vectors are skipped by the scan at once and dropped from postings on split, compaction or
        save. Deleting and re-adding an id is allowed.
        """
        arr = np.asarray(ids)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"ids must be integers, got dtype {arr.dtype}")
        gone = self._idmap.delete(np.unique(arr.astype(np.int64)))
        if gone:
            self._keep_calibrated()
        return gone

    def _split_limit(self) -> int:
        """Entries a posting may hold before it splits: ``split_factor`` times the mean posting length
        of the last build (replicas included), and at least the build's longest posting, so a fresh build
        never splits on its first add (a 1M synthetic build left 870 postings above 5x the mean, and the
        first adds after it split all of them)."""
        return max(8, int(self.params["split_factor"] * self._build_mean), self._build_max)

    def _split_oversized(self) -> None:
        limit = self._split_limit()
        for _ in range(64):  # each round halves the oversized postings; 64 rounds is far beyond need
            big = np.flatnonzero(self._arena.size > limit)
            if len(big) == 0:
                return
            for h in big:
                self._split(int(h), limit)

    def _split(self, h: int, limit: int) -> None:
        vidx = np.sort(self._arena.members(h))  # insertion order (the posting's is by distance to its head)
        vidx = vidx[self._idmap.deleted[vidx] == 0]
        x = self._vectors.rows(vidx)
        if len(vidx) <= limit:
            # tombstones were the excess: rewrite the posting without them
            self._rewrite(h, vidx, x)
            return
        rng = np.random.default_rng(self.params["seed"] + h + self.n_heads)
        c = kmeans(x, 2, rng=rng, iters=8, max_train=max(1, len(x)))
        d = ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)
        near = d.argmin(1)
        if (near == near[0]).all():
            near = np.arange(len(vidx)) % 2
        new_h = self._heads.split(h, c[0], c[1])
        self._arena.add_heads(1)
        # closure between the two halves: a boundary vector stays in both if the RNG rule accepts it
        other = 1 - near
        cc = float(((c[0] - c[1]) ** 2).sum())
        both = self.params["rng_factor"] * cc >= d[np.arange(len(vidx)), other]
        in0 = (near == 0) | both
        in1 = (near == 1) | both
        if in0.sum() > limit or in1.sum() > limit:
            in0, in1 = near == 0, near == 1
        self._rewrite(h, vidx[in0], x[in0])
        self._rewrite(new_h, vidx[in1], x[in1])
        # SPFresh also moves vectors of neighbouring postings whose nearest head is now a new half. Without
        # removing their old replicas (not tracked per vector here) that only adds entries: measured on the
        # incremental test data it lowered recall@10 at n_probe 16 from 0.961 to 0.936, so it is left out.

    # ------------------------------------------------------------------------------------------------------
    # search
    # ------------------------------------------------------------------------------------------------------
    def search(
        self,
        queries: Any,
        k: int = 10,
        *,
        n_probe: int | None = None,
        target_recall: float | None = None,
        max_dist_ratio: float | None = None,
        allowed_ids: Any = None,
        posting_limit: int | None = None,
    ) -> SearchResult:
        """Top-``k`` ids and scores for ``queries`` ((dim,) or (nq, dim)), best first.

        Returns ``SearchResult(ids, scores)`` (unpacks as a tuple), each (nq, k): ids int64 padded with -1,
        scores float32 padded with nan when fewer than ``k`` vectors qualify. Scores are similarities for
        ``ip``/``cosine`` (descending) and squared L2 distances for ``l2`` (ascending); ``.stats`` holds
        the call's work per query. One query gives the same result alone as in a batch.

        How deep to search: ``n_probe`` postings if given (or set on the index), else the depth that reached
        ``target_recall`` (default: the index's, 0.98) recall@k on the index's calibration sample, with the
        distance pruning calibrated alongside (see :meth:`calibrate`); ``max_dist_ratio`` overrides that.
        ``posting_limit`` (entries read per posting) overrides the index's for this call (the calibration
        was measured with the index's; on an index without a limit, entries added since the last compaction
        or split sit after the ordered ones of their posting).

        ``allowed_ids`` restricts results to those ids (a filter). The scan skips other vectors, probes
        proportionally more postings for selective filters, and falls back to exact search over the allowed
        vectors for queries that would otherwise return fewer than ``k`` hits while more exist. When exact
        search over the allowed vectors costs less than that probing would (a selective filter whose
        calibrated depth is most of the index), the search is exact.
        An empty index returns padded results, it does not raise.
        """
        return self._search(queries, k, n_probe, target_recall, max_dist_ratio, allowed_ids, posting_limit)

    def _search(
        self,
        queries: Any,
        k: int,
        n_probe: Any,
        target_recall: Any,
        max_dist_ratio: Any,
        allowed_ids: Any,
        posting_limit: Any,
        *,
        exact_ok: bool = True,
        depth_k: int | None = None,
    ) -> SearchResult:
        """:meth:`search`; ``exact_ok=False`` keeps a filtered search on the index's probing whatever it costs
        (the calibration measures that probing). ``depth_k``: the k whose recall target sets the depth when
        it is calibrated (default ``k``): the Collection asks for one result more than the caller's ``k`` to
        see ties at the k-th place, and that extra result must not deepen the search (the calibration's next
        k row is 100: 2.8x the postings at the 0.95 target on ../shared/data)."""
        k = positive_int(k, "k")
        dk = k if depth_k is None else depth_k
        q = as_matrix(queries, "queries", dim=self.dim, metric=self.metric, allow_1d=True)
        if allowed_ids is None and q.shape[0] == 1 and self.n_heads:
            npr, mdr = self._resolve(dk, n_probe, target_recall, max_dist_ratio, 1.0)
            if self._recent is not None:
                self._record(q)
            return self._search_single(q, k, npr, mdr, self._cap(posting_limit))
        out_idx, out_sim, stats = self._outputs(q.shape[0], k)
        allowed = _NO_MASK
        n_allowed = len(self)
        min_allowed = 0
        members = None  # the allowed vectors' internal indices, sorted, when few (for the exact paths)
        if allowed_ids is not None:
            pos = self._idmap.lookup(np.asarray(allowed_ids, dtype=np.int64).reshape(-1))
            pos = pos[pos >= 0]
            allowed = np.zeros(self._idmap.n, np.uint8)
            allowed[pos] = 1  # a mask, not np.unique: 15x faster for large allowed sets
            if len(pos) <= _FEW_ALLOWED:  # ... but a flatnonzero of the mask costs ~2 ms at 1M vectors
                members = pos if bool((pos[1:] > pos[:-1]).all()) else np.unique(pos)  # often ascending
                n_allowed = len(members)
            else:
                n_allowed = int(np.count_nonzero(allowed))
        sel = n_allowed / max(len(self), 1)
        npr, mdr = self._resolve(dk, n_probe, target_recall, max_dist_ratio, min(sel, 1.0))
        if allowed_ids is not None:
            if n_allowed and n_allowed <= max(4 * k, 2048):
                self._exact_subset(q, _members(members, allowed), k, out_idx, out_sim, stats)
                return self._finish(q, out_idx, out_sim, stats)
            # a filter: probe postings nearest first until sqrt(selectivity) times the entries of an
            # unfiltered search were allowed ones (measured on ../shared/data with random filters of 1-30%:
            # recall@10 0.98-0.99, where scaling n_probe by 1/selectivity under max_dist_ratio lost recall,
            # 0.90 at 3%), up to n_probe / selectivity postings; distance pruning is off since the allowed
            # neighbours can lie far out
            per_posting = self._arena.n_entries / max(self.n_heads, 1)
            min_allowed = math.ceil(math.sqrt(sel) * npr * per_posting)
            npr = min(self.n_heads, math.ceil(npr / max(sel, 1e-9)))
            mdr = math.inf
            # entries the probing reads (up to npr postings, or until min_allowed allowed ones were seen): an
            # exact distance to an allowed vector costs about as much as reading _EXACT_COST codes, so a
            # filter whose depth is most of the index is answered exactly (1M x 384, a 1% filter at the 0.98
            # target: every posting, 2M entries, 41 ms; exact over its 10k vectors 4.5 ms; NOTES, session 10)
            scanned = min(npr * per_posting, min_allowed / max(sel, 1e-9))
            if exact_ok and n_allowed and n_allowed * _EXACT_COST <= scanned and self.n_heads:
                self._exact_subset(q, _members(members, allowed), k, out_idx, out_sim, stats)
                return self._finish(q, out_idx, out_sim, stats)
        if n_allowed == 0:
            return self._finish(q, out_idx, out_sim, stats)
        if self.n_heads == 0:
            # unbuilt (flat) index: exact search over the live vectors
            pos = self._idmap.live()
            if allowed.shape[0]:
                pos = pos[allowed[pos] != 0]
            self._exact_subset(q, pos, k, out_idx, out_sim, stats)
            return self._finish(q, out_idx, out_sim, stats)
        cap = self._cap(posting_limit)
        counts = self._scan(q, None, k, npr, mdr, allowed, min_allowed, cap, out_idx, out_sim, stats)
        self._complete(q, k, counts, n_allowed, allowed if allowed_ids is not None else None, out_idx, out_sim, stats)
        return self._finish(q, out_idx, out_sim, stats)

    def _resolve(
        self, k: int, n_probe: Any, target_recall: Any, max_dist_ratio: Any, selectivity: float
    ) -> tuple[int, float]:
        """(n_probe, max_dist_ratio) of a search: explicit ``n_probe`` first, then the index's fixed one, then
        the calibrated setting for the recall target (see :meth:`calibrate`)."""
        auto = None
        if n_probe is not None:
            npr = positive_int(n_probe, "n_probe")
        elif target_recall is None and self.params["n_probe"] is not None:
            npr = self.params["n_probe"]
        else:
            target = self.params["target_recall"] if target_recall is None else check_target(target_recall)
            cal = self._calib if self._calib is not None else self._calibration()
            if cal is None:
                npr = _FALLBACK_N_PROBE
            else:
                npr, auto = cal.setting(target, k, selectivity)
        if max_dist_ratio is None and auto is not None:
            return npr, auto
        return npr, self._check_mdr(max_dist_ratio)

    def _search_single(self, q: np.ndarray, k: int, npr: int, mdr: float, cap: int) -> SearchResult:
        """One unfiltered query on a built index: the common path, kept to the kernel call and its outputs."""
        views, _, plain_args, blank = self._plan(k, npr, mdr, 0, cap)
        out_idx, out_sim, stats = blank[0].copy(), blank[1].copy(), blank[2].copy()
        stamp, val, lut = self._workspace()
        found = K.search_single(q, *plain_args, _NO_MASK, stamp, val, lut, out_idx, out_sim, stats)
        if found < k or self.metric == "l2":
            if found < k:
                self._complete(q, k, [found], len(self), None, out_idx, out_sim, stats)
            return self._finish(q, out_idx, out_sim, stats)
        return _result(views[2].ids[out_idx], out_sim, stats)

    def probe(self, queries: Any, n_probe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The postings :meth:`search` would scan for ``queries`` ((dim,) or (nq, dim)) with ``n_probe``
        (before ``max_dist_ratio`` pruning): head ids (nq, n_probe) int64, -1 padded, and squared L2
        distances of the queries to those heads, nearest first. With :meth:`search_preassigned` a caller
        chooses postings and scans them in two steps (as faiss's ``search_preassigned``)."""
        npr = self._check_n_probe(self.params["n_probe"] if n_probe is None else n_probe)
        q = self._as_matrix(queries, "queries", allow_1d=True)
        return self._heads.probe(q, npr)

    def search_preassigned(
        self, queries: Any, heads: Any, k: int = 10, *, max_dist_ratio: float | None = None
    ) -> SearchResult:
        """Top-``k`` for ``queries`` (nq, dim) scanning only the postings of ``heads`` (nq, m) head ids per
        query (-1 entries skipped; any order: they are scanned nearest first). With the heads of
        :meth:`probe` this returns what :meth:`search` returns. Unlike :meth:`search`, a query whose
        postings hold fewer than ``k`` live vectors gets fewer hits (padded)."""
        k = self._check_k(k)
        mdr = self._check_mdr(max_dist_ratio)
        q = self._as_matrix(queries, "queries", allow_1d=True)
        h = np.asarray(heads)
        if h.ndim == 1 and q.shape[0] == 1:
            h = h[None, :]
        if h.ndim != 2 or h.shape[0] != q.shape[0] or (h.size and not np.issubdtype(h.dtype, np.integer)):
            raise ValueError(f"heads must be integer head ids of shape ({q.shape[0]}, m), got {h.dtype} {h.shape}")
        h = np.ascontiguousarray(h, dtype=np.int64)
        if h.size and (h.max() >= self.n_heads or h.min() < -1):
            raise ValueError(f"heads must be head ids in [0, {self.n_heads}) or -1 for none")
        out_idx, out_sim, stats = self._outputs(q.shape[0], k)
        if self.n_heads and len(self):
            self._scan(q, h, k, max(h.shape[1], 1), mdr, _NO_MASK, 0, self._cap(), out_idx, out_sim, stats)
        return self._finish(q, out_idx, out_sim, stats)

    @staticmethod
    def _check_k(k: Any) -> int:
        return positive_int(k, "k")

    def _check_mdr(self, max_dist_ratio: Any) -> float:
        mdr = float(self.params["max_dist_ratio"] if max_dist_ratio is None else max_dist_ratio)
        if not mdr > 0:
            raise ValueError(f"max_dist_ratio must be > 0, got {max_dist_ratio!r}")
        return mdr

    @staticmethod
    def _outputs(nq: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out_idx = np.empty((nq, k), np.int64)
        out_idx.fill(-1)
        out_sim = np.empty((nq, k), np.float32)
        out_sim.fill(np.nan)
        return out_idx, out_sim, np.zeros((nq, len(K.STATS)), np.int64)

    def _complete(
        self,
        q: np.ndarray,
        k: int,
        counts: np.ndarray,
        n_allowed: int,
        allowed: np.ndarray | None,
        out_idx: np.ndarray,
        out_sim: np.ndarray,
        stats: np.ndarray,
    ) -> None:
        """Queries with fewer than k hits although k vectors qualify (a selective filter, or postings
        emptied by deletes) are answered again: exactly over the allowed vectors, or scanning every posting."""
        want = min(k, n_allowed)
        if len(counts) == 1:  # a single query: no array work on the common path
            if counts[0] >= want:
                return
            short = np.zeros(1, np.int64)
        else:
            short = np.flatnonzero(counts < want)
            if len(short) == 0:
                return
        sub_idx, sub_sim, sub_stats = self._outputs(len(short), k)
        if allowed is not None:
            self._exact_subset(q[short], np.flatnonzero(allowed), k, sub_idx, sub_sim, sub_stats)
        else:
            # every entry of every posting: the answer of last resort ignores the posting limit
            no_cap = K.contract.NO_LIMIT
            self._scan(q[short], None, k, self.n_heads, np.inf, _NO_MASK, 0, no_cap, sub_idx, sub_sim, sub_stats)
        out_idx[short], out_sim[short] = sub_idx, sub_sim
        stats[short] += sub_stats

    def _plan(
        self, k: int, npr: int, mdr: float, min_allowed: int, cap: int
    ) -> tuple[tuple, K.SearchParams, tuple, tuple]:
        """For one search setting: the owners' views, the kernel parameters, the single-query kernel arguments
        and blank single-query outputs."""
        # each owner hands out its own view (rebuilt only after that owner changed)
        views = (self._heads.view(), self._arena.view(), self._idmap.view(), self._vectors.view(), self._codec.view())
        key = (k, npr, mdr, min_allowed, cap)
        plan = self._plans.get(key)
        pv = None if plan is None else plan[0]
        if (
            pv is None
            or pv[0] is not views[0]
            or pv[1] is not views[1]
            or pv[2] is not views[2]
            or pv[3] is not views[3]
            or pv[4] is not views[4]
        ):
            # a handful of settings in use: their parameters and the single-query arguments (plain tuples,
            # which Numba's dispatcher types in C) are cached, as building them costs microseconds per query;
            # a plan is valid while every owner hands out the same view
            if plan is not None:
                self._plans.clear()  # an owner changed: drop plans holding its old arrays
            alpha = 1.0 if self.metric == "l2" else 0.0
            eps0 = self.params["eps0"]
            sp = K.SearchParams(k, npr, self._heads.group_probe(npr), mdr, min_allowed, eps0, alpha, cap)
            if len(self._plans) > 64:
                self._plans.clear()
            plain = K.contract.plain
            blank = self._outputs(1, k)  # copied per single query: cheaper than allocating and filling
            plan = self._plans[key] = (views, sp, (*(plain(v) for v in views), plain(sp)), blank)
        return plan

    def _scan(
        self,
        q: np.ndarray,
        heads: np.ndarray | None,
        k: int,
        npr: int,
        mdr: float,
        allowed: np.ndarray,
        min_allowed: int,
        cap: int,
        out_idx: np.ndarray,
        out_sim: np.ndarray,
        stats: np.ndarray,
    ) -> np.ndarray | list[int]:
        """Run a search kernel: probe + scan (single query or batch), or scan of ``heads`` given per query.
        Fills internal indices, similarities and stats; returns the number of hits per query."""
        nq = q.shape[0]
        views, sp, plain_args, _ = self._plan(k, npr, mdr, min_allowed, cap)
        if nq == 1 and heads is None:
            stamp, val, lut = self._workspace()
            return [K.search_single(q, *plain_args, allowed, stamp, val, lut, out_idx, out_sim, stats)]
        counts = np.zeros(nq, np.int64)
        chunks = min(4 * numba.get_num_threads(), nq)
        if heads is None:
            K.search_batch(q, *views, sp, allowed, chunks, out_idx, out_sim, counts, stats)
        else:
            K.search_preassigned(q, heads, *views, sp, allowed, chunks, out_idx, out_sim, counts, stats)
        return counts

    def _exact_subset(
        self, q: np.ndarray, pos: np.ndarray, k: int, out_idx: np.ndarray, out_sim: np.ndarray, stats: np.ndarray
    ) -> None:
        """Exact top-k over internal indices ``pos`` (live); fills the first columns of the outputs."""
        pos = pos[self._idmap.deleted[pos] == 0]
        stats[:, 3:] += len(pos)
        if len(pos) == 0:
            return
        sim = np.empty((q.shape[0], len(pos)), np.float32)
        # thousands of vectors (a selective filter at scale) over the cores: the same scores either way
        scores = K.exact_scores_parallel if len(pos) * q.shape[0] >= _PARALLEL_EXACT else K.exact_scores
        scores(q, pos, self._vectors.view(), 1.0 if self.metric == "l2" else 0.0, sim)
        kk = min(k, len(pos))
        ids = self._idmap.ids[pos]
        if kk < len(pos):
            part = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
            # ties at the k-th similarity: the smallest ids among them take the last places
            kth = np.take_along_axis(sim, part, 1).min(axis=1)
            for r in np.flatnonzero((sim >= kth[:, None]).sum(axis=1) > kk):
                tied = np.flatnonzero(sim[r] >= kth[r])
                part[r] = tied[np.lexsort((ids[tied], -sim[r, tied]))[:kk]]
        else:
            part = np.tile(np.arange(len(pos)), (len(q), 1))
        ps = np.take_along_axis(sim, part, 1)
        order = np.lexsort((ids[part], -ps), axis=1)  # best first, ties by id
        out_idx[:, :kk] = pos[np.take_along_axis(part, order, 1)]
        out_sim[:, :kk] = np.take_along_axis(ps, order, 1)

    def _finish(self, q: np.ndarray, out_idx: np.ndarray, out_sim: np.ndarray, stats: np.ndarray) -> SearchResult:
        ext = self._idmap.ids
        if self.metric != "l2" and out_idx.shape[0] == 1 and out_idx[0, -1] >= 0:
            return _result(ext[out_idx], out_sim, stats)  # one query with k hits: the common case
        valid = out_idx >= 0
        if ext.shape[0]:
            ids = ext[np.maximum(out_idx, 0)]
            ids[~valid] = -1
        else:
            ids = np.full(out_idx.shape, -1, np.int64)
        if self.metric == "l2":
            out_sim = np.maximum(_sqnorms(q)[:, None] - 2.0 * out_sim, 0.0).astype(np.float32)
            out_sim[~valid] = np.nan
        return _result(ids, out_sim, stats)

    def _workspace(self) -> tuple[np.ndarray, np.int32, np.ndarray]:
        """Per-thread dedup stamps and LUT buffer for single-query search (no O(n) work per query)."""
        loc = self._local
        stamp = getattr(loc, "stamp", None)
        n, nbytes = self._idmap.n, self._codec.nbytes
        if stamp is None or stamp.shape[0] < n or getattr(loc, "nbytes", None) != nbytes:
            loc.stamp = np.zeros(max(n, 1) + 1024, np.int32)
            loc.val = 0
            loc.lut = np.empty(nbytes * 8, np.float32)
            loc.nbytes = nbytes
        loc.val += 1
        if loc.val >= 2**31 - 1:
            loc.stamp[:] = 0
            loc.val = 1
        return loc.stamp, np.int32(loc.val), loc.lut

    # ------------------------------------------------------------------------------------------------------
    # recall: calibration, estimates
    # ------------------------------------------------------------------------------------------------------
    def calibrate(
        self, queries: Any = None, *, sample: int = C.DEFAULT_SAMPLE, seed: int | None = None
    ) -> dict[str, Any]:
        """Measure which search settings reach which recall, so ``target_recall`` picks its own depth.

        Sample queries (``queries`` (m, dim) if given, kept for later recalibrations; else ``sample`` vectors
        of the index, each with its own id left out) get their exact neighbours; then recall@k (k = 1, 10,
        100) is measured over a geometric grid of ``n_probe`` with and without distance pruning, and recall@10
        under random filters allowing 10% and 1% of the vectors. Runs on its own after a build of
        20,000 vectors or more, on the first search that needs it otherwise, and again after ``add``/``delete``
        changed the live count by 30% or the heads by 15%. Stored with the snapshot. Returns
        ``stats()["calibration"]``. Costs ``sample`` exact searches plus 100-150 batch searches of the sample
        (filtered rows on half of it): 4.3 s at 100k vectors (384-d) on 2 quiet cores, where the build takes 9 s.
        A build with a fixed ``n_probe`` leaves it to the first search that asks for a target.
        """
        if queries is not None:
            qs = as_matrix(queries, "queries", dim=self.dim, metric=self.metric, allow_1d=False)
            if qs.shape[0] < 10:
                raise ValueError(f"calibrate needs at least 10 queries, got {qs.shape[0]}")
        else:
            qs = None
        sample = positive_int(sample, "sample")
        if self.n_heads == 0 or len(self) < 2:
            raise ValueError("nothing to calibrate: build the index over at least 2 vectors first")
        with self._calib_lock:
            self._calib = self._measure_calibration(qs, sample, seed)
            if qs is not None:
                self._calib_queries = qs
        return self._calibration_stats()

    def _calibration(self) -> C.Calibration | None:
        """The calibration, measured now if missing (None for an unbuilt or tiny index)."""
        if self.n_heads == 0 or len(self) < 2:
            return None
        with self._calib_lock:
            if self._calib is None:
                self._calib = self._measure_calibration(self._calib_queries, C.DEFAULT_SAMPLE, None)
            return self._calib

    def _keep_calibrated(self) -> None:
        """After an update: measure again when the index changed enough (see :meth:`calibrate`)."""
        cal = self._calib
        if cal is not None and cal.stale(len(self), self.n_heads):
            self._calib = None
            if len(self) >= _CALIBRATE_AT_BUILD:
                self._calibration()

    def _sample_queries(self, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``m`` live vectors of the index as queries, and their ids (to leave out of the answers)."""
        live = self._idmap.live()
        pos = np.sort(rng.choice(live, min(m, len(live)), replace=False))
        return self._vectors.rows(pos), self._idmap.ids[pos]

    def _sample_search(self, qs: np.ndarray, k: int, npr: int, mdr: float, own: np.ndarray | None) -> SearchResult:
        """``search(qs, k, n_probe=npr, max_dist_ratio=mdr)`` as it would go for queries from outside the index,
        when ``qs`` are vectors of the index (``own``: their ids).

        The distance pruning compares each posting's head distance to the nearest head's, ``d0``, and a
        vector of the last build pulled its own head towards itself: a head is the mean of the ``n`` vectors
        clustered into it, so the vector's squared distance to it is ``(n - 1) / n`` of what it would be to the
        mean of the others, and an outside query's is ``(n + 1) / n`` of it: ``d0`` of such a sample is
        ``((n - 1) / (n + 1))`` of a real query's, about 5% small on ../shared/data (median 0.547 against
        0.578 for its 1,000 real queries; leave-one-out corrected 0.575) and the pruning kept 25 postings
        within 1.5 d0 against 43 for real queries: calibrated recall under pruning plateaued at 0.977 where
        real queries reached 0.989, so the default target 0.98 went unpruned at 1.6x the entries. Here the
        pruning is applied with ``d0 * (n / (n - 1))^2`` for build vectors (``n``: the nearest posting's
        length over the replicas per vector), then the postings kept are scanned (``search_preassigned``:
        the same scan). Vectors added since the build (they moved no head) are searched as they are."""
        if own is None or math.isinf(mdr) or self._n_built == 0:
            return self.search(qs, k, n_probe=npr, max_dist_ratio=mdr)
        heads, dist = self._heads.probe(qs, min(npr, self.n_heads))
        pos = self._idmap.lookup(own)
        n_h = self._arena.size[np.maximum(heads[:, 0], 0)] * (len(self) / max(self._arena.n_entries, 1))
        lam = np.where((pos >= 0) & (pos < self._n_built) & (n_h >= 2), (n_h / np.maximum(n_h - 1, 1)) ** 2, 1.0)
        keep = dist <= mdr * (dist[:, :1] * lam[:, None])
        keep[:, : K.search._MIN_PROBE] = True  # the kernel's: the nearest 8 always
        heads = np.where(keep & (heads >= 0), heads, -1)
        return self.search_preassigned(qs, heads, k, max_dist_ratio=math.inf)

    def _truth(self, qs: np.ndarray, k: int, exclude: np.ndarray | None, allowed_ids: Any = None) -> np.ndarray:
        """Exact top-``k`` ids of ``qs`` (:meth:`search_exact`, restricted to ``allowed_ids``), without each
        query's ``exclude`` id."""
        found = self.search_exact(qs, k + (0 if exclude is None else 1), allowed_ids=allowed_ids).ids
        return found if exclude is None else C.drop_own(found, exclude)

    def _measure_calibration(self, qs: np.ndarray | None, sample: int, seed: int | None) -> C.Calibration:
        rng = np.random.default_rng(self.params["seed"] if seed is None else seed)
        exclude = None
        source = "queries"
        if qs is None:
            qs, exclude = self._sample_queries(sample, rng)
            source = "index vectors"
        extra = 0 if exclude is None else 1
        n = len(self)
        ks = np.array([k for k in C.K_GRID if k + extra <= n] or [1], np.int64)
        grid = C.probe_grid(self.n_heads)
        mdrs = np.array(sorted({self.params["max_dist_ratio"], math.inf}), np.float64)
        recall = np.zeros((len(ks), len(mdrs), len(grid)))
        cost = np.zeros_like(recall)
        big = len(qs) if len(qs) <= 100 else max(100, len(qs) // 3)  # queries for k = 100: its searches cost most
        small = [int(k) for k in ks if k < 100] or [int(ks[-1])]
        truth = {k: self._truth(qs, k, exclude) for k in {max(small)}}
        if ks[-1] >= 100:
            truth[int(ks[-1])] = self._truth(qs[:big], int(ks[-1]), None if exclude is None else exclude[:big])
        show = self.progress if self.progress is not None else n >= _CALIBRATE_AT_BUILD
        # the reranks read full vectors at scattered rows: through a file map each read maps up to ~1 MB around
        # it (NOTES, sessions 9-10), so a mapped base is searched in chunks of about _RERANK_ROWS reranked rows
        # (sized from the previous chunk's), its pages dropped after each: deep settings rerank thousands of rows
        # per query, and 32 queries at a time still mapped 7 GB of a 15 GB input at 10M
        base = self._vectors.base  # a file within the page budget may stay mapped whole: no chunks
        pages = _storage.MappedPages.of(base) if base.nbytes > _storage._PAGE_BUDGET else _storage.MappedPages(None)
        per_query = [_RERANK_ROWS / 8]  # exact distances per query in the last chunk (first chunk: 8 queries)

        def chunk(nq: int) -> int:
            return nq if not pages.mapped else int(min(nq, max(1, _RERANK_ROWS // max(per_query[0], 1.0))))

        def row(k: int, mdr: float, allowed: Any, tk: np.ndarray, r_out: np.ndarray, c_out: np.ndarray | None) -> None:
            nq = len(tk)  # the first nq sample queries
            # deeper until the recall stops rising (< 0.002 over two grid steps, x2 postings) or reaches the
            # cap; a filter of selectivity s probes n_probe / s postings: none deeper than all of them
            widen = 1.0 if allowed is None else len(self) / max(len(allowed), 1)
            own = None if exclude is None else exclude[:nq]
            for g, npr in enumerate(grid):
                ids = np.empty((nq, k + extra), np.int64)
                entries = np.empty(nq, np.float64)
                s = 0
                while s < nq:  # a mapped base: its pages go after each chunk of queries
                    e = min(nq, s + chunk(nq))
                    if allowed is None:
                        res = self._sample_search(qs[s:e], k + extra, int(npr), mdr, None if own is None else own[s:e])
                    else:
                        res = self._search(qs[s:e], k + extra, int(npr), None, mdr, allowed, None, exact_ok=False)
                    ids[s:e] = res.ids
                    entries[s:e] = res.stats["entries"]
                    per_query[0] = float(res.stats["exact"].mean())
                    pages.release()
                    s = e
                r_out[g] = C.per_query_recall(ids, tk, None if exclude is None else exclude[:nq]).mean()
                if c_out is not None:
                    c_out[g] = entries.mean()
                flat = g >= 2 and r_out[g] - r_out[g - 2] < C.PLATEAU
                if r_out[g] >= C.RECALL_CAP or flat or npr * widen >= self.n_heads:
                    r_out[g + 1 :] = r_out[g]
                    if c_out is not None:
                        c_out[g + 1 :] = c_out[g]
                    return

        with _progress(len(ks) * len(mdrs) + len(C.SEL_GRID), "spann: calibrate", show, "row") as bar:
            for i, k in enumerate(ks):
                for m, mdr in enumerate(mdrs):
                    tk = truth[int(k)] if k in truth else truth[max(small)][:, :k]
                    row(int(k), float(mdr), None, tk, recall[i, m], cost[i, m])
                    if bar is not None:
                        bar.update(1)
            sel = np.array(C.SEL_GRID, np.float64)
            filtered = np.full((len(sel), len(grid)), np.nan)
            live = self._idmap.live()
            k10 = min(10, int(ks[-1]))
            for j, frac in enumerate(sel):
                m_allowed = round(frac * len(live))
                if m_allowed > C.EXACT_FILTER:  # smaller filters are answered exactly
                    allowed = self._idmap.ids[rng.choice(live, m_allowed, replace=False)]
                    # on half the sample (at least 100): filtered searches cost the most per query
                    half = len(qs) if len(qs) <= 200 else len(qs) // 2
                    tk = self._truth(qs[:half], k10, None if exclude is None else exclude[:half], allowed)
                    row(k10, math.inf, allowed, tk, filtered[j], None)
                if bar is not None:
                    bar.update(1)
        return C.Calibration(grid, mdrs, ks, recall, cost, sel, filtered, n, self.n_heads, len(qs), source)

    def _calibration_stats(self) -> dict[str, Any] | None:
        cal = self._calib
        if cal is None:
            return None
        target = self.params["target_recall"]
        npr, mdr = cal.setting(target, 10, 1.0)
        return {
            "source": cal.source,
            "sample": cal.sample,
            "count": cal.count,
            "heads": cal.heads,
            "stale": cal.stale(len(self), self.n_heads),
            "target_recall": target,
            "n_probe_at_target": npr,
            "max_dist_ratio_at_target": None if math.isinf(mdr) else mdr,
            "recall_reachable": float(cal.recall[cal._k_row(10)].max()),
        }

    def estimate_recall(
        self,
        k: int = 10,
        sample: int = 200,
        *,
        n_probe: int | None = None,
        target_recall: float | None = None,
        max_dist_ratio: float | None = None,
        queries: Any = None,
        recent: bool = False,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Recall@k of search at the given (default: the index's) setting, measured now against exact search.

        The sample: ``queries`` if given; the recent queries recorded by :meth:`record_queries` with
        ``recent=True``; else ``sample`` vectors of the index drawn at random (each with its own id left
        out). Returns ``recall`` (the mean over the sample), ``low``/``high`` (a 95% confidence interval),
        ``k``, ``sample`` (queries used), ``source``, and the ``n_probe``/``max_dist_ratio`` searched.
        """
        k = positive_int(k, "k")
        sample = positive_int(sample, "sample")
        exclude = None
        if queries is not None:
            qs, source = as_matrix(queries, "queries", dim=self.dim, metric=self.metric, allow_1d=True), "queries"
        elif recent:
            if self._recent is None or self._recent_n == 0:
                raise ValueError("no recent queries recorded: call record_queries(n) first, then search")
            qs, source = self._recent[: min(self._recent_n, len(self._recent))].copy(), "recent queries"
        else:
            if len(self) < 2:
                raise ValueError("estimate_recall needs an index of at least 2 vectors")
            rng = np.random.default_rng(seed)
            qs, exclude = self._sample_queries(sample, rng)
            source = "index vectors"
        extra = 0 if exclude is None else 1
        kk = min(k, len(self) - extra) if len(self) > extra else 1
        npr, mdr = self._resolve(kk, n_probe, target_recall, max_dist_ratio, 1.0)
        truth = self._truth(qs, kk, exclude)
        res = self._sample_search(qs, kk + extra, npr, mdr, exclude)
        mean, low, high = C.interval(C.per_query_recall(res.ids, truth, exclude))
        return {
            "recall": mean,
            "low": low,
            "high": high,
            "k": kk,
            "sample": len(qs),
            "source": source,
            "n_probe": npr,
            "max_dist_ratio": None if math.isinf(mdr) else mdr,
        }

    def record_queries(self, n: int | None) -> None:
        """Keep the last ``n`` single-query vectors in memory (a ring buffer; ``None`` or 0 stops and clears),
        for :meth:`estimate_recall` with ``recent=True``. Opt-in; never saved with the index."""
        if not n:
            self._recent, self._recent_n = None, 0
            return
        self._recent = np.zeros((positive_int(n, "n"), self.dim), np.float32)
        self._recent_n = 0

    def _record(self, q: np.ndarray) -> None:
        buf = self._recent
        if buf is not None:
            buf[self._recent_n % len(buf)] = q[0]
            self._recent_n += 1

    # ------------------------------------------------------------------------------------------------------
    # persistence
    # ------------------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, meta: dict[str, Any] | None = None) -> None:
        """Write a crash-safe snapshot: ``.npy`` arrays + ``MANIFEST.json`` (see ``_storage``).

        Tombstoned vectors are dropped and internal indices renumbered, so the snapshot is compact.
        ``meta`` (JSON-serialisable) is stored alongside, e.g. the sequence number a Collection covers.
        Memory-mapped vectors are checked against the CRC32 they were loaded with first (one pass over data
        the save reads anyway): a file damaged on disk raises ``CorruptStoreError`` instead of being copied
        into a new snapshot under a fresh, valid checksum. ``save(p)`` is ``export().write(p)``.
        """
        self.export(meta=meta).write(path)

    def export(self, *, meta: dict[str, Any] | None = None) -> IndexExport:
        """What :meth:`save` writes, detached from the index: the postings, heads and ids are copied (tens of
        bytes per vector), the full vectors are read when written, block by block, from rows no later change
        touches (adds append, deletes tombstone). So a caller can export under its lock and write the
        snapshot (the slow part: every vector) after releasing it while the index goes on changing, e.g.
        the Collection's searches and writes during a snapshot of millions of vectors."""
        live = self._idmap.live()
        renum = np.full(self._idmap.n, -1, np.int64)
        renum[live] = np.arange(len(live))
        entries, sizes = self._arena.export(self._idmap.deleted, renum)  # new arrays (ordered when written)
        arrays: dict[str, Any] = {"rotation": self._codec.rotation.copy(), "heads": self._heads.heads.copy()}
        arrays |= {"p_size": sizes}
        arrays |= {"g_cent": self._heads.g_cent.copy(), "g_label": self._heads.g_label.copy()}
        arrays |= {"e_" + key: arr for key, arr in entries.items()}
        arrays |= {"ids": self._idmap.ids[live], "xn2": self._vectors.xn2[live]}
        arrays["vectors"] = self._vectors.rows_chunked(live)  # block by block when written: never all at once
        info = {
            "dim": self.dim,
            "metric": self.metric,
            "bits": self.bits,
            "params": dict(self.params),
            "count": len(live),
            "build_mean": self._build_mean,
            "build_max": self._build_max,
            "built_count": int(np.count_nonzero(self._idmap.deleted[: self._n_built] == 0)),
            "calibration": None if self._calib is None else self._calib.to_json(),
            "user": meta or {},
        }
        if self._calib_queries is not None:
            arrays["calib_queries"] = self._calib_queries.copy()
        return IndexExport(self, info, arrays, sizes)

    @classmethod
    def load(cls, path: str | os.PathLike, *, mmap: bool = True, progress: bool | None = None) -> SpannIndex:
        """Load a snapshot written by :meth:`save`. Never executes code (no pickle).

        With ``mmap=True`` the full-precision vectors stay on disk (memory-mapped, read only for rerank), so
        RAM holds heads and codes. Raises ``FileNotFoundError`` when absent and
        :class:`~spann_vectorstore.CorruptStoreError` (a ``ValueError``) naming the file when the directory
        is corrupt or truncated.
        """
        man = _storage.read_manifest(path, _FORMAT)
        snap_dir = Path(path) / man["snapshot"]
        meta = man["meta"]

        def corrupt(key: str, what: str) -> _storage.CorruptStoreError:
            return _storage.CorruptStoreError(f"corrupt index: {str(snap_dir / f'{key}.npy')!r}: {what}")

        try:
            params = dict(meta["params"])
            if "target_recall" not in params and params.get("n_probe") == _FALLBACK_N_PROBE:
                params["n_probe"] = None  # written when 40 was the default: now the default is a recall target
            # written before the posting limit: no limit (their postings are ordered by the next compaction)
            params.setdefault("posting_limit", None)
            idx = cls(int(meta["dim"]), metric=meta["metric"], bits=int(meta["bits"]), progress=progress, **params)
            n = int(meta["count"])
            build_mean = float(meta.get("build_mean", idx._build_mean))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            msg = f"corrupt index manifest {str(Path(path) / _storage.MANIFEST)!r}: {type(exc).__name__}: {exc}"
            raise _storage.CorruptStoreError(msg) from None
        codec = idx._codec
        entry_keys = ["e_vidx", *["e_" + name for name in codec.planes]]
        for key in ("rotation", "heads", "p_size", "ids", "xn2", "vectors", *entry_keys):
            if key not in man["arrays"]:
                raise corrupt(key, "the array is missing from the manifest")
        a = _storage.load_arrays(path, man, mmap=frozenset({"vectors"}) if mmap else frozenset())
        h, d = a["heads"].shape[0], idx.dim
        expect = {"rotation": (d, d), "heads": (h, d), "p_size": (h,), "ids": (n,), "xn2": (n,), "vectors": (n, d)}
        for key, shape in expect.items():
            if a[key].shape != shape:
                raise corrupt(key, f"shape {a[key].shape}, expected {shape}")
        m = int(a["p_size"].sum())
        for key in entry_keys:
            if a[key].shape[0] != m:
                raise corrupt(key, f"{a[key].shape[0]} entries, postings need {m}")
        if a["e_codes"].shape[1:] != (codec.nbytes,) or ("e_sign" in a and a["e_sign"].shape[1:] != (codec.nsign,)):
            raise corrupt("e_codes", "code width does not match dim and bits")
        if m and (a["e_vidx"].min() < 0 or a["e_vidx"].max() >= n):
            raise corrupt("e_vidx", "posting entry out of range")
        if len(np.unique(a["ids"])) != n:
            raise corrupt("ids", "duplicate ids")
        groups = None
        if "g_cent" in a and "g_label" in a:
            g_cent, g_label = a["g_cent"], a["g_label"]
            if g_cent.ndim != 2 or g_cent.shape[1] != d or g_label.shape != ((h,) if g_cent.shape[0] else (0,)):
                raise corrupt("g_label", f"head groups {g_cent.shape}/{g_label.shape} do not match {h} heads")
            if g_label.size and (g_label.min() < 0 or g_label.max() >= g_cent.shape[0]):
                raise corrupt("g_label", "head group label out of range")
            groups = (g_cent, g_label)  # else written before head groups existed: grouped anew
        codec.set_rotation(a["rotation"])
        idx._heads.reset(a["heads"], groups)
        idx._arena = PostingArena.from_rows(codec, a["p_size"], {key[2:]: a[key] for key in entry_keys})
        mapped = (snap_dir / "vectors.npy", man["arrays"]["vectors"]["crc32"]) if mmap else None
        idx._vectors = VectorTable.of_arrays(a["vectors"], a["xn2"], mapped=mapped)
        idx._idmap = IdMap.of_ids(a["ids"])
        idx._build_mean = build_mean
        # written before build_max was kept: the longest posting now (adds keep them within the limit)
        idx._build_max = int(meta.get("build_max", a["p_size"].max() if h else 0))
        # vectors of the last build (renumbered first); a snapshot without the count: none (no correction)
        built = meta.get("built_count", 0)
        idx._n_built = min(int(built), n) if isinstance(built, int) and built > 0 else 0
        idx._snap_dir = snap_dir
        if meta.get("calibration") is not None:
            try:
                idx._calib = C.Calibration.from_json(meta["calibration"])
            except ValueError as exc:
                raise _storage.CorruptStoreError(
                    f"corrupt index manifest {str(Path(path) / _storage.MANIFEST)!r}: {exc}"
                ) from None
        if "calib_queries" in a:
            if a["calib_queries"].ndim != 2 or a["calib_queries"].shape[1] != d:
                raise corrupt("calib_queries", f"shape {a['calib_queries'].shape}, expected (m, {d})")
            idx._calib_queries = np.ascontiguousarray(a["calib_queries"], np.float32)
        return idx

    @staticmethod
    def read_meta(path: str | os.PathLike) -> dict[str, Any]:
        """The ``meta`` passed to :meth:`save` of the snapshot at ``path`` (without loading arrays)."""
        user = _storage.read_manifest(path, _FORMAT)["meta"].get("user", {})
        if not isinstance(user, dict):
            raise _storage.CorruptStoreError(f"corrupt manifest {str(Path(path) / _storage.MANIFEST)!r}: bad meta")
        return user

    # ------------------------------------------------------------------------------------------------------
    # introspection
    # ------------------------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Counts and memory: ``bytes_ram`` counts what stays resident (heads, rotation, codes, per-vector
        arrays, and the full vectors unless they are memory-mapped); ``bytes_vectors_mmap`` the mapped file;
        ``bytes_disk`` the files of the snapshot last saved or loaded (0 if none)."""
        sizes = self._arena.size
        entries = int(sizes.sum())
        vec = self._vectors
        ram = self._heads.nbytes + self._codec.rotation.nbytes + self._arena.nbytes + self._idmap.nbytes
        return {
            "count": len(self),
            "deleted": int(self._idmap.n - len(self)),
            "dim": self.dim,
            "metric": self.metric,
            "bits": self.bits,
            "heads": self.n_heads,
            "head_groups": self._heads.n_groups,
            "entries": entries,
            "replicas_avg": entries / max(self._idmap.n, 1),
            "posting_size_avg": float(sizes.mean()) if len(sizes) else 0.0,
            "posting_size_max": int(sizes.max()) if len(sizes) else 0,
            "posting_limit": self.posting_limit,
            "bytes_ram": int(ram + vec.nbytes_resident),
            "bytes_codes": self._arena.code_bytes,
            "bytes_vectors_mmap": int(vec.base.nbytes) if vec.mmapped else 0,
            "bytes_disk": self._bytes_disk(),
            "vectors_mmapped": vec.mmapped,
            "params": dict(self.params),
            "calibration": self._calibration_stats(),
        }

    def reserve(self, slack: float) -> None:
        """Rewrite the postings with room for ``slack`` times their entries (tombstones dropped), so the next
        adds append in place: a loaded snapshot's postings are full, and the first adds would otherwise move
        nearly every posting to the end of the arena with doubled capacity."""
        if slack < 1:
            raise ValueError(f"slack must be >= 1, got {slack!r}")
        self._arena.compact(self._idmap.deleted, slack=slack)

    @property
    def snapshot_dir(self) -> Path | None:
        """The snapshot directory last saved or loaded (``None`` if none)."""
        return self._snap_dir

    def _bytes_disk(self) -> int:
        snap = self._snap_dir
        if snap is None or not snap.is_dir():
            return 0
        files = [*snap.iterdir(), snap.parent / _storage.MANIFEST]
        return int(sum(f.stat().st_size for f in files if f.is_file()))

    # ------------------------------------------------------------------------------------------------------
    # exact search without the kernels (first use, see _warmup)
    # ------------------------------------------------------------------------------------------------------
    @property
    def vectors_mmapped(self) -> bool:
        """Whether the full vectors are memory-mapped from a snapshot (``stats()["vectors_mmapped"]``, cheaply)."""
        return self._vectors.mmapped

    def search_exact(self, queries: Any, k: int = 10, *, allowed_ids: Any = None) -> SearchResult:
        """Exact top-``k`` by BLAS over the stored vectors, with no Numba kernel (nothing to compile): the
        format and tie order of :meth:`search` with every vector compared (recall 1), ``allowed_ids`` as
        there. A ``Collection`` answers with it while the kernels compile on first use (see ``_warmup``)."""
        from ._warmup import exact_topk

        k = self._check_k(k)
        q = self._as_matrix(queries, "queries", allow_1d=True)
        allowed = None
        if allowed_ids is not None:
            pos = self._idmap.lookup(np.asarray(allowed_ids, dtype=np.int64).reshape(-1))
            allowed = pos[pos >= 0]
        vec, idm = self._vectors, self._idmap
        alpha = 1.0 if self.metric == "l2" else 0.0
        out_idx, out_sim, stats = exact_topk(q, k, [vec.base, vec.tail], vec.xn2, idm.ids, idm.deleted, allowed, alpha)
        return self._finish(q, out_idx, out_sim, stats)
