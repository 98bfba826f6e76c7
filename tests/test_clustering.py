"""Clustering on its own (``spann_vectorstore.clustering``): balanced k-means, capacity assignment, the
balanced k-means tree of heads, RNG closure assignment, posting caps and head groups; balance, determinism
and edge cases (fewer rows than clusters, identical rows, one cluster)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spann_vectorstore.clustering import (
    assign_balanced,
    assign_nearest,
    cap_postings,
    closure_assign,
    group_heads,
    hierarchical_heads,
    kmeans,
)
from spann_vectorstore.evaluation import clustered

D = 12


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return clustered(6000, D, n_centers=30, seed=1)


def sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a[:, None, :].astype(np.float64) - b[None, :, :]) ** 2).sum(-1)


# ----------------------------------------------------------------------------------------------------------
# k-means and assignment
# ----------------------------------------------------------------------------------------------------------
def test_kmeans_shape_determinism_and_edge_cases(x):
    c = kmeans(x, 16, rng=np.random.default_rng(0))
    assert c.shape == (16, D) and c.dtype == np.float32 and np.isfinite(c).all()
    np.testing.assert_array_equal(c, kmeans(x, 16, rng=np.random.default_rng(0)))  # same seed, same centroids
    assert not np.array_equal(c, kmeans(x, 16, rng=np.random.default_rng(1)))
    small = x[:200]  # at most max_train (256) rows per cluster: k-means sees them all
    np.testing.assert_allclose(kmeans(small, 1, rng=np.random.default_rng(0))[0], small.mean(0), rtol=1e-4, atol=1e-4)
    few = x[:5]
    assert kmeans(few, 50, rng=np.random.default_rng(0)).shape == (5, D)  # k is capped at n


def test_kmeans_finds_well_separated_blobs():
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((8, D)).astype(np.float32) * 20
    pts = (centers[np.repeat(np.arange(8), 200)] + rng.standard_normal((1600, D))).astype(np.float32)
    c = kmeans(pts, 8, rng=np.random.default_rng(0), iters=20)
    d = np.sqrt(sqdist(centers, c))
    assert (d.min(axis=1) < 1.0).all(), "every true centre has a centroid next to it"


def test_kmeans_is_balanced_on_uniform_data():
    u = np.random.default_rng(5).random((8000, 4)).astype(np.float32)
    c = kmeans(u, 20, rng=np.random.default_rng(0), iters=20)
    sizes = np.bincount(assign_nearest(u, c), minlength=20)
    assert sizes.min() > 0 and sizes.max() < 3 * sizes.mean()


def test_kmeans_on_identical_rows_reseeds_empty_clusters():
    same = np.ones((300, D), np.float32)
    c = kmeans(same, 4, rng=np.random.default_rng(0))
    assert c.shape == (4, D) and np.isfinite(c).all()
    np.testing.assert_allclose(c, 1.0, atol=1e-2)


def test_assign_nearest_is_the_argmin(x):
    c = kmeans(x, 25, rng=np.random.default_rng(0))
    d = sqdist(x[:2000], c)
    got = assign_nearest(x[:2000], c)
    best = d[np.arange(2000), got]
    assert np.allclose(best, d.min(axis=1), rtol=1e-4, atol=1e-3)


def test_assign_balanced_respects_the_capacity(x):
    xs = x[:1000]
    c = kmeans(xs, 10, rng=np.random.default_rng(0))
    for cap in (100, 120, 400):
        labels = assign_balanced(xs, c, cap)
        assert labels.min() >= 0 and labels.max() < 10
        assert np.bincount(labels, minlength=10).max() <= cap
    np.testing.assert_array_equal(assign_balanced(xs, c, len(xs)), assign_nearest(xs, c))  # no limit: nearest


# ----------------------------------------------------------------------------------------------------------
# the tree of heads
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", [8, 40])
def test_hierarchical_heads_count_balance_and_determinism(x, target):
    h = hierarchical_heads(x, target_size=target, rng=np.random.default_rng(0))
    assert h.dtype == np.float32 and h.flags.c_contiguous and h.shape[1] == D and np.isfinite(h).all()
    assert len(x) / (2 * target) <= len(h) <= 2 * len(x) / target
    sizes = np.bincount(assign_nearest(x, h), minlength=len(h))
    assert sizes.max() <= 8 * target, f"largest posting {sizes.max()} for target {target}"
    again = hierarchical_heads(x, target_size=target, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(h, again)  # whatever the thread scheduling


def test_hierarchical_heads_edge_cases():
    tiny = clustered(10, D, seed=2)
    h = hierarchical_heads(tiny, target_size=100, rng=np.random.default_rng(0))
    np.testing.assert_allclose(h, tiny.mean(0, keepdims=True), rtol=1e-5, atol=1e-5)  # one leaf: the mean
    same = np.ones((1000, D), np.float32)  # k-means cannot split identical rows; the capacity still does
    h = hierarchical_heads(same, target_size=10, rng=np.random.default_rng(0))
    assert 50 <= len(h) <= 200 and np.allclose(h, 1.0)


# ----------------------------------------------------------------------------------------------------------
# closure assignment, posting caps, head groups
# ----------------------------------------------------------------------------------------------------------
def test_closure_assign_replicas(x):
    heads = hierarchical_heads(x, target_size=40, rng=np.random.default_rng(0))
    xs = x[:1500]
    out = closure_assign(xs, heads, replica_count=4, rng_factor=1.0, candidates=32)
    assert out.shape == (1500, 4) and out.dtype == np.int64
    np.testing.assert_array_equal(out[:, 0], assign_nearest(xs, heads))  # the nearest head comes first
    for row in out:
        kept = row[row >= 0]
        assert len(kept) >= 1 and len(set(kept.tolist())) == len(kept)
        assert (row[len(kept) :] == -1).all(), "padding only at the end"
    one = closure_assign(xs, heads, replica_count=1, rng_factor=1.0, candidates=8)
    np.testing.assert_array_equal(one[:, 0], out[:, 0])
    # the RNG rule prunes: a larger factor keeps at least as many replicas in total
    loose = closure_assign(xs, heads, replica_count=4, rng_factor=2.0, candidates=32)
    assert (loose >= 0).sum() >= (out >= 0).sum()


def test_cap_postings_trims_replicas_of_long_postings():
    rng = np.random.default_rng(0)
    pts = rng.standard_normal((400, 4)).astype(np.float32)
    heads = np.zeros((4, 4), np.float32)
    heads[1:] = 50.0  # every vector's nearest head is 0; the others are far
    assign = np.full((400, 2), -1, np.int64)
    assign[:, 0] = np.arange(400) % 4
    assign[:, 1] = 0  # head 0 also gets everyone as a replica: 500 entries against a mean of 200
    out = cap_postings(pts, heads, assign, factor=1.5)
    np.testing.assert_array_equal(out[:, 0], assign[:, 0])  # a vector's primary posting is always kept
    sizes = np.bincount(out[out >= 0], minlength=4)
    limit = int(1.5 * 800 / 4)
    assert sizes[0] == limit and (sizes[1:] == 100).all()
    kept = out[:, 1] == 0
    dist = ((pts - heads[0]) ** 2).sum(1)
    assert dist[kept].max() <= dist[~kept & (assign[:, 1] == 0)].min() + 1e-6, "the farthest replicas go"
    same = cap_postings(pts, heads, assign, factor=10.0)
    assert same is assign  # nothing over the limit: returned as is


def test_group_heads_balanced_and_consistent(x):
    heads = hierarchical_heads(x, target_size=8, rng=np.random.default_rng(0))
    cent, labels = group_heads(heads, rng=np.random.default_rng(0))
    h, g = len(heads), len(cent)
    assert labels.shape == (h,) and labels.dtype == np.int64 and 0 <= labels.min() and labels.max() == g - 1
    sizes = np.bincount(labels, minlength=g)
    assert sizes.min() >= 1 and sizes.max() <= 2 * math.ceil(h / max(2, round(math.sqrt(h))))
    for j in range(g):  # each centroid is the mean of its members
        np.testing.assert_allclose(cent[j], heads[labels == j].mean(0), rtol=1e-4, atol=1e-4)
    c2, l2 = group_heads(heads, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(labels, l2)
    np.testing.assert_array_equal(cent, c2)


def test_small_products_in_one_thread_equal_blas_and_kmeans_uses_them(monkeypatch):
    """A posting split's 2-means computes its tiny products in a kernel (``small_dots``), not BLAS: the same
    products to float rounding, and the same clusters on separated data either way."""
    from spann_vectorstore import _kernels as K
    from spann_vectorstore import clustering

    rng = np.random.default_rng(3)
    x = rng.standard_normal((700, 48)).astype(np.float32)
    c = rng.standard_normal((2, 48)).astype(np.float32)
    np.testing.assert_allclose(K.small_dots(x, c), x @ c.T, rtol=1e-4, atol=1e-4)
    blobs = np.vstack([rng.standard_normal((300, 48)) + 8, rng.standard_normal((300, 48)) - 8]).astype(np.float32)
    calls = []
    real = K.small_dots
    monkeypatch.setattr(K, "small_dots", lambda a, b: calls.append(a.shape) or real(a, b))
    small = clustering.kmeans(blobs, 2, rng=np.random.default_rng(0), iters=8)
    assert calls  # 600 x 2 x 48 multiply-adds: below _SMALL_PRODUCT
    monkeypatch.setattr(clustering, "_SMALL_PRODUCT", 0)
    big = clustering.kmeans(blobs, 2, rng=np.random.default_rng(0), iters=8)
    np.testing.assert_allclose(np.sort(small[:, 0]), np.sort(big[:, 0]), rtol=1e-4, atol=1e-4)
    assert sorted(np.sign(small[:, 0])) == [-1, 1]
