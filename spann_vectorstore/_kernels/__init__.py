"""Numba kernels: the only place with per-vector loops.

Every kernel is a module-level ``@njit`` over contiguous arrays, or over the named state groups of
``contract`` (no classes, no closures), so each compiles once per signature and is cached on disk
(``cache=True``); no kernel is compiled per index. Callers (``clustering``, the index's owners) validate
and convert inputs; kernels trust them. Split by concern:

* ``build``: balanced k-means assignment, nearest heads, the RNG rule (``clustering`` calls them);
* ``codes``: RaBitQ encoding, the FastScan block layout and lookups, multi-bit code products;
* ``search``: probe, scan, rerank (``search_single``, ``search_batch``, ``probe_batch``,
  ``search_preassigned``), over ``contract``'s ``HeadsView``, ``PostingsView``, ``IdsView``,
  ``VectorsView``, ``CodecView`` and ``SearchParams``;
* ``common``: dot products, bounded heaps, host SIMD detection.

Conventions
-----------
* ``d``: dimension, ``nb``: bytes per code (``d * bits / 8``), ``H``: number of heads (posting lists).
* Internal similarity ``sim = <q, x> - alpha * |x|^2 / 2``: ``alpha = 0`` for inner product and cosine,
  ``alpha = 1`` for L2 (maximising it minimises ``|q - x|^2``). The index converts back to distances.
* Codes are RaBitQ codes of the rotated, normalised residual ``o = R (x - c) / |x - c|``: ``bits`` bits per
  dimension; level ``v`` stands for ``v - (2^bits - 1) / 2``. Packing is strided: with ``per = 8 // bits``
  levels per byte, dimension ``i`` sits in byte ``i % nb`` at slot ``i // nb``, so the scan reads each slot
  as a contiguous run of bytes against a contiguous slice of the query and LLVM vectorises it (a byte LUT
  cannot vectorise: its gathers were 20-60% slower here).
  ``<x, q> ~= <c, q> + fac * <u(code), R q>`` with ``fac = |x - c| / <u, o>``, and the RaBitQ error bound
  ``|err| <= errfac * |q| * eps0`` with ``errfac = |x - c| * tan(angle(u, o)) / sqrt(d - 1)``.
"""

from .build import (
    assign_capacity,
    assign_penalised,
    centroid_sums,
    heaps_sorted,
    nearest_heads,
    push_group_members,
    push_nearest,
    rng_select,
    small_dots,
)
from .codes import encode_residuals, fs_gather, fs_scatter
from .contract import STATS, CodecView, HeadsView, IdsView, PostingsView, SearchParams, VectorsView, check_view
from .search import (
    exact_scores,
    exact_scores_parallel,
    probe_batch,
    search_batch,
    search_preassigned,
    search_single,
)
from .threads import fork_safe, start_threads

# the parallel kernels called from Python run serially in a forked child (see threads.fork_safe)
heaps_sorted = fork_safe(heaps_sorted)
nearest_heads = fork_safe(nearest_heads)
push_group_members = fork_safe(push_group_members)
push_nearest = fork_safe(push_nearest)
rng_select = fork_safe(rng_select)
exact_scores_parallel = fork_safe(exact_scores_parallel)
probe_batch = fork_safe(probe_batch)
search_batch = fork_safe(search_batch)
search_preassigned = fork_safe(search_preassigned)

__all__ = [
    "STATS",
    "CodecView",
    "HeadsView",
    "IdsView",
    "PostingsView",
    "SearchParams",
    "VectorsView",
    "assign_capacity",
    "assign_penalised",
    "centroid_sums",
    "check_view",
    "encode_residuals",
    "exact_scores",
    "exact_scores_parallel",
    "fs_gather",
    "fs_scatter",
    "heaps_sorted",
    "nearest_heads",
    "probe_batch",
    "push_group_members",
    "push_nearest",
    "rng_select",
    "search_batch",
    "search_preassigned",
    "search_single",
    "small_dots",
    "start_threads",
]
