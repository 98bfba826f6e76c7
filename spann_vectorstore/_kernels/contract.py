"""The search kernels' contract: index state in named, typed groups, each handed out by its owner.

A kernel reads ``heads.hn2`` or ``postings.fac1``, never the 20th positional argument: two arrays of the
same type can no longer be swapped by position. Each group is built by the one object that owns the state
(``HeadTable.view()``, ``PostingArena.view()``, ``IdMap.view()``, ``VectorTable.view()``,
``RaBitQCodec.view()``), cached there and dropped by that owner's own mutators. ``check_view`` validates a
freshly built group once (dtypes, dimensions, C order, consistent lengths), so a wrong array fails with a
named field in Python instead of compiling into wrong scores.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import types
from numba.extending import typeof_impl


class _HeadsView(NamedTuple):
    """Posting centroids and the coarse head groups (see ``HeadTable``)."""

    heads: np.ndarray  # (H, d) f32
    hn2: np.ndarray  # (H,) f32 squared norms
    heads16: np.ndarray  # (H, 8 * ceil(d / 8)) u16: float16 bits of heads / h16_scale, zero padded
    h16_scale: float
    g_cent: np.ndarray  # (G, d) f32 group centroids; G = 0: no groups, every head is a candidate
    g_cn2: np.ndarray  # (G,) f32
    g_start: np.ndarray  # (G + 1,) i64 CSR offsets into g_members
    g_members: np.ndarray  # (H,) i64 head ids by group


class _PostingsView(NamedTuple):
    """The posting arena (see ``PostingArena``): posting ``h`` is entries ``start[h] : start[h] + size[h]``."""

    start: np.ndarray  # (H,) i64
    size: np.ndarray  # (H,) i64
    vidx: np.ndarray  # (E,) i32 internal vector index per entry
    codes: np.ndarray  # (E, nb) u8 multi-bit codes; (0, 8) for bits 1 (the sign plane is the code)
    fac: np.ndarray  # (E,) f32 estimator scale of ``codes``
    err: np.ndarray  # (E,) f32 error-bound factor of ``codes``
    sign: np.ndarray  # (ceil(E / 32), 32 * nb1) u8: 1-bit codes in FastScan blocks
    fac1: np.ndarray  # (E,) f32 estimator scale of the 1-bit codes
    err1: np.ndarray  # (E,) f32 error-bound factor of the 1-bit codes


class _IdsView(NamedTuple):
    """Per internal vector: external id (ties are broken by it) and tombstone (see ``IdMap``)."""

    ids: np.ndarray  # (n,) i64
    deleted: np.ndarray  # (n,) u8


class _VectorsView(NamedTuple):
    """Full-precision vectors for the exact rerank (see ``VectorTable``): rows ``< len(base)`` in ``base``
    (memory-mapped after a load), later ones in ``tail``; ``xn2`` their squared norms."""

    base: np.ndarray  # (nb, d) f32
    tail: np.ndarray  # (n - nb, d) f32
    xn2: np.ndarray  # (n,) f32


class _CodecView(NamedTuple):
    """The RaBitQ codec (see ``RaBitQCodec``)."""

    rotation: np.ndarray  # (d, d) f32 orthogonal
    bits: int


class _SearchParams(NamedTuple):
    """One search call's settings (built per call by ``SpannIndex``)."""

    k: int
    n_probe: int  # postings probed at most
    g_probe: int  # head groups whose members are candidates
    max_dist_ratio: float  # beyond the nearest 8, skip heads farther than this times the nearest's distance
    min_allowed: int  # with a filter: probe until this many allowed entries were seen
    eps0: float  # confidence multiplier of the RaBitQ error bound
    alpha: float  # 0 for ip/cosine, 1 for l2 (similarity <q, x> - alpha |x|^2 / 2)
    posting_limit: int  # entries read per posting at most (its nearest to the head: postings are ordered)


class HeadsView(_HeadsView):
    __doc__ = _HeadsView.__doc__


class PostingsView(_PostingsView):
    __doc__ = _PostingsView.__doc__


class IdsView(_IdsView):
    __doc__ = _IdsView.__doc__


class VectorsView(_VectorsView):
    __doc__ = _VectorsView.__doc__


class CodecView(_CodecView):
    __doc__ = _CodecView.__doc__


NO_LIMIT = 2**62  # SearchParams.posting_limit: every entry of every posting


class SearchParams(_SearchParams):
    __doc__ = _SearchParams.__doc__

    def __new__(cls, k, n_probe, g_probe, max_dist_ratio, min_allowed, eps0, alpha, posting_limit=NO_LIMIT):
        # exact Python types: the Numba type of every instance is the one declared below
        return super().__new__(
            cls, int(k), int(n_probe), int(g_probe), float(max_dist_ratio), int(min_allowed), float(eps0),
            float(alpha), int(posting_limit),
        )  # fmt: skip


# Numba types the arguments of every kernel call. Exact tuples of arrays have a fast path in its C
# dispatcher; named tuples do not (typing one field by field in Python cost 10-70 us per array on a busy
# machine, more than a search), so each view caches its Numba type when first passed (views are rebuilt
# only after a mutation), and SearchParams, all scalars, has one fixed type.
_SEARCH_PARAMS_TYPE = types.NamedTuple(
    [types.int64, types.int64, types.int64, types.float64, types.int64, types.float64, types.float64, types.int64],
    SearchParams,
)


@typeof_impl.register(SearchParams)
def _typeof_search_params(val, c):
    return _SEARCH_PARAMS_TYPE


def _typeof_view(val, c):
    ty = val.__dict__.get("_numba_type")
    if ty is None:
        ty = val.__dict__["_numba_type"] = types.BaseTuple.from_types([typeof_impl(v, c) for v in val], type(val))
    return ty


for _cls in (HeadsView, PostingsView, IdsView, VectorsView, CodecView):
    typeof_impl.register(_cls)(_typeof_view)


def plain(view: tuple) -> tuple:
    """``view`` as an exact tuple (cached in the view): what ``search_single`` takes, since Numba's dispatcher
    types exact tuples of arrays in C."""
    out = view.__dict__.get("_plain")
    if out is None:
        out = view.__dict__["_plain"] = tuple(view)
    return out


# per query statistics written by the search kernels (``SearchResult.stats`` names them)
STATS = ("postings", "entries", "survivors", "candidates", "exact")

_SPEC: dict[type, dict[str, tuple[type, int]]] = {
    HeadsView: {
        "heads": (np.float32, 2),
        "hn2": (np.float32, 1),
        "heads16": (np.uint16, 2),
        "g_cent": (np.float32, 2),
        "g_cn2": (np.float32, 1),
        "g_start": (np.int64, 1),
        "g_members": (np.int64, 1),
    },
    PostingsView: {
        "start": (np.int64, 1),
        "size": (np.int64, 1),
        "vidx": (np.int32, 1),
        "codes": (np.uint8, 2),
        "fac": (np.float32, 1),
        "err": (np.float32, 1),
        "sign": (np.uint8, 2),
        "fac1": (np.float32, 1),
        "err1": (np.float32, 1),
    },
    IdsView: {"ids": (np.int64, 1), "deleted": (np.uint8, 1)},
    VectorsView: {"base": (np.float32, 2), "tail": (np.float32, 2), "xn2": (np.float32, 1)},
    CodecView: {"rotation": (np.float32, 2)},
}


def check_view(view: tuple) -> tuple:
    """Validate a state group against its declared dtypes and dimensions (C-contiguous arrays only); returns
    it. Called when an owner builds its view (after a mutation), not per search."""
    for name, (dtype, ndim) in _SPEC[type(view)].items():
        arr = getattr(view, name)
        if type(arr) is not np.ndarray or arr.dtype != dtype or arr.ndim != ndim or not arr.flags.c_contiguous:
            got = f"{type(arr).__name__} {getattr(arr, 'dtype', '?')} {getattr(arr, 'ndim', '?')}-D"
            raise TypeError(
                f"{type(view).__name__}.{name} must be a C-contiguous {ndim}-D {np.dtype(dtype)} array, got {got}"
            )
    if isinstance(view, HeadsView):
        h = view.heads.shape[0]
        if view.hn2.shape[0] != h or view.heads16.shape[0] != h or view.g_start.shape[0] != view.g_cent.shape[0] + 1:
            raise ValueError("HeadsView: heads, hn2, heads16 and the group index disagree in length")
    elif isinstance(view, PostingsView):
        if view.start.shape != view.size.shape or not (view.vidx.shape[0] == view.fac1.shape[0] == view.err1.shape[0]):
            raise ValueError("PostingsView: posting offsets or entry arrays disagree in length")
    elif isinstance(view, IdsView):
        if view.ids.shape != view.deleted.shape:
            raise ValueError("IdsView: ids and deleted disagree in length")
    return view
