"""Recall you ask for: ``target_recall`` (calibrated probe depth), ``calibrate``, ``estimate_recall``."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from spann_vectorstore import CorruptStoreError, SpannIndex
from spann_vectorstore._calibration import Calibration, per_query_recall, probe_grid

from .conftest import clustered, exact, recall

D = 32


@pytest.fixture(scope="module")
def data():
    # base and held-out queries from the same mixture (queries never calibrate anything)
    allx = clustered(16_000, D, seed=5)
    return allx[:15_000], allx[15_000:15_400]


@pytest.fixture(scope="module")
def built(data):
    xb, _ = data
    return SpannIndex(D, bits=2, head_ratio=1 / 40, progress=False).build(xb)


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 0.99])
def test_target_recall_is_reached_on_held_out_queries(data, built, target):
    xb, xq = data
    truth, _ = exact(xb, xq, 10, "ip")
    res = built.search(xq, 10, target_recall=target)
    got = recall(res.ids, truth, 10)
    assert got >= target - 0.02, f"target {target}: recall@10 {got:.3f}"
    if target <= 0.9:  # and not by probing everything: a low target probes less than a high one
        deep = built.search(xq, 10, target_recall=0.99).stats["postings"].mean()
        assert res.stats["postings"].mean() < deep


def test_default_search_uses_the_default_target(data, built):
    _, xq = data
    st = built.stats()["calibration"]
    npr, mdr = st["n_probe_at_target"], st["max_dist_ratio_at_target"] or math.inf
    assert built.params["n_probe"] is None and built.params["target_recall"] == 0.98
    a = built.search(xq[:50], 10)
    b = built.search(xq[:50], 10, n_probe=npr, max_dist_ratio=mdr)
    np.testing.assert_array_equal(a.ids, b.ids)


def test_explicit_n_probe_wins(data, built):
    _, xq = data
    a = built.search(xq[:30], 10, n_probe=3, target_recall=0.99)
    b = built.search(xq[:30], 10, n_probe=3)
    np.testing.assert_array_equal(a.ids, b.ids)
    assert (a.stats["postings"] <= 3).all()
    fixed = SpannIndex(D, head_ratio=1 / 40, n_probe=3, progress=False).build(data[0][:3000])
    assert (fixed.search(xq[:30], 10).stats["postings"] <= 3).all()
    # a target given to the call still applies over a fixed index default
    assert fixed.search(xq[:30], 10, target_recall=0.99).stats["postings"].mean() > 3


def test_target_recall_under_filters(data, built):
    xb, xq = data
    for frac in (0.3, 0.05):
        allowed = np.flatnonzero(np.random.default_rng(1).random(len(xb)) < frac)
        truth, _ = exact(xb, xq[:200], 10, "ip", allowed=allowed)
        res = built.search(xq[:200], 10, target_recall=0.95, allowed_ids=allowed)
        assert np.isin(res.ids, allowed).all()
        assert recall(res.ids, truth, 10) >= 0.93


def test_single_query_uses_the_same_setting_as_batch(data, built):
    _, xq = data
    batch = built.search(xq[:20], 5, target_recall=0.9).ids
    single = np.stack([built.search(x, 5, target_recall=0.9).ids[0] for x in xq[:20]])
    np.testing.assert_array_equal(single, batch)


def test_calibration_survives_save_and_load(tmp_path, data, built):
    _, xq = data
    built.save(tmp_path / "i")
    again = SpannIndex.load(tmp_path / "i")
    assert again.stats()["calibration"] == built.stats()["calibration"]
    np.testing.assert_array_equal(again.search(xq[:40], 10).ids, built.search(xq[:40], 10).ids)


def test_calibrate_with_user_queries_is_kept_and_saved(tmp_path, data):
    xb, xq = data
    idx = SpannIndex(D, head_ratio=1 / 40, progress=False).build(xb[:4000])
    st = idx.calibrate(xq[:100])
    assert st["source"] == "queries" and st["sample"] == 100
    idx.save(tmp_path / "i")
    again = SpannIndex.load(tmp_path / "i")
    assert again.stats()["calibration"]["source"] == "queries"
    # growth past the staleness bound measures again with the same queries
    again.add(xb[4000:6000], np.arange(4000, 6000))
    again.search(xq[0], 10)  # a small index measures on first use
    st = again.stats()["calibration"]
    assert st["source"] == "queries" and st["count"] == 6000


def test_growth_in_place_recalibrates_and_keeps_the_target(data):
    xb, xq = data
    idx = SpannIndex(D, bits=2, head_ratio=1 / 40, progress=False).build(xb[:6000])
    idx.search(xq[0], 10)  # calibrates (small index: on first use)
    assert idx.stats()["calibration"]["count"] == 6000
    idx.add(xb[6000:12_000], np.arange(6000, 12_000))  # 2x in place
    res = idx.search(xq, 10, target_recall=0.95)
    st = idx.stats()["calibration"]
    assert st["count"] == 12_000 and not st["stale"]
    truth, _ = exact(xb[:12_000], xq, 10, "ip")
    assert recall(res.ids, truth, 10) >= 0.93


def test_estimate_recall_matches_true_recall(data, built):
    xb, xq = data
    truth, _ = exact(xb, xq, 10, "ip")
    for npr in (2, 6):
        true = recall(built.search(xq, 10, n_probe=npr).ids, truth, 10)
        est = built.estimate_recall(10, 300, n_probe=npr, seed=3)
        assert est["low"] <= est["recall"] <= est["high"] and est["sample"] == 300
        assert abs(est["recall"] - true) <= 0.04, (npr, est, true)
        given = built.estimate_recall(10, queries=xq, n_probe=npr)
        assert given["recall"] == pytest.approx(true, abs=1e-9), "with the queries themselves: exact"


def test_recent_queries_ring_buffer(data, built):
    _, xq = data
    with pytest.raises(ValueError, match="record_queries"):
        built.estimate_recall(recent=True)
    built.record_queries(50)
    try:
        for x in xq[:80]:
            built.search(x, 10, n_probe=4)
        est = built.estimate_recall(10, recent=True, n_probe=4)
        assert est["source"] == "recent queries" and est["sample"] == 50
        direct = built.estimate_recall(10, queries=xq[30:80], n_probe=4)
        assert est["recall"] == pytest.approx(direct["recall"])
    finally:
        built.record_queries(None)
    with pytest.raises(ValueError, match="record_queries"):  # stopped and cleared
        built.estimate_recall(recent=True)


@pytest.mark.parametrize("bad", [0, -0.1, 1.01, "0.9", True, math.nan])
def test_bad_target_recall_is_rejected(built, bad):
    with pytest.raises(ValueError, match="target_recall"):
        built.search(np.ones(D, np.float32), 10, target_recall=bad)
    with pytest.raises(ValueError, match="target_recall"):
        SpannIndex(D, target_recall=bad)


def test_calibrate_bad_input(data):
    xb, xq = data
    with pytest.raises(ValueError, match="nothing to calibrate"):
        SpannIndex(D).calibrate()
    idx = SpannIndex(D, head_ratio=1 / 40, progress=False).build(xb[:2000])
    with pytest.raises(ValueError, match="at least 10"):
        idx.calibrate(xq[:5])
    with pytest.raises(ValueError, match="dimension"):
        idx.calibrate(np.ones((20, D + 1), np.float32))
    with pytest.raises(ValueError, match="sample"):
        idx.calibrate(sample=0)


def test_unbuilt_and_tiny_indexes_search_without_calibration():
    idx = SpannIndex(D, metric="l2", progress=False)
    x = clustered(50, D, seed=1)
    idx.add(x)
    ids, _ = idx.search(x[:3], 5)  # flat: exact (each vector nearest to itself)
    assert (ids[:, 0] == np.arange(3)).all()
    assert idx.stats()["calibration"] is None


def test_damaged_calibration_names_the_manifest(tmp_path, data, built):
    built.save(tmp_path / "i")
    man = tmp_path / "i" / "MANIFEST.json"
    doc = json.loads(man.read_text())
    doc["meta"]["calibration"]["recall"] = doc["meta"]["calibration"]["recall"][:-1]
    man.write_text(json.dumps(doc))
    with pytest.raises(CorruptStoreError, match=r"MANIFEST\.json"):
        SpannIndex.load(tmp_path / "i")


def test_calibration_setting_choice():
    grid = probe_grid(100)
    assert grid[0] == 1 and grid[-1] == 100 and (np.diff(grid) > 0).all()
    g = len(grid)
    prune = np.minimum(0.5 + 0.05 * np.arange(g), 0.9)  # cheap, plateaus at 0.9
    full = np.minimum(0.5 + 0.04 * np.arange(g), 0.99)
    recall_ = np.stack([prune, full])[None]  # one k
    cost = np.stack([grid * 10.0, grid * 20.0])[None]
    cal = Calibration(
        grid,
        np.array([1.5, np.inf]),
        np.array([10]),
        recall_,
        cost,
        np.array([0.1]),
        np.full((1, g), np.nan),
        1000,
        100,
        300,
        "index vectors",
    )
    npr, mdr = cal.setting(0.85, 10)
    assert mdr == 1.5, "the pruned row reaches 0.85 more cheaply"
    npr2, mdr2 = cal.setting(0.95, 10)
    assert mdr2 == math.inf and npr2 >= npr
    assert cal.setting(0.999, 10) == (int(grid[np.argmax(full)]), math.inf), "unreachable: the best measured"
    # depths grow with the target
    depths = [cal.setting(t, 10)[0] for t in np.linspace(0.5, 0.99, 20)]
    assert all(a <= b for a, b in itertools.pairwise(depths))
    # JSON round trip (no NaN/inf in the text) and validation
    doc = json.loads(json.dumps(cal.to_json(), allow_nan=False))
    back = Calibration.from_json(doc)
    assert back.setting(0.95, 10) == cal.setting(0.95, 10)
    with pytest.raises(ValueError, match="recall"):
        Calibration.from_json({**doc, "recall": [2.0] * len(doc["recall"])})
    with pytest.raises(ValueError, match="malformed"):
        Calibration.from_json({k: v for k, v in doc.items() if k != "ks"})


def test_per_query_recall_leaves_out_the_query_itself():
    found = np.array([[7, 1, 2], [3, 4, 5]])
    truth = np.array([[1, 2], [4, 9]])
    r = per_query_recall(found, truth, np.array([7, 8]))  # row 0: 7 dropped; row 1: no 8, last dropped
    np.testing.assert_allclose(r, [1.0, 0.5])


def test_collection_and_adapters_pass_the_target(tmp_path, data):
    from spann_vectorstore import Collection

    xb, xq = data
    col = Collection(tmp_path / "c", dim=D, index_threshold=1000, index_options={"head_ratio": 1 / 40})
    try:
        col.add(xb[:5000], ids=[str(i) for i in range(5000)])
        col.optimize()
        truth, _ = exact(xb[:5000], xq[:100], 10, "ip")
        for target in (0.8, 0.97):
            hits = col.search(xq[:100], 10, target_recall=target)
            got = recall([[int(h.id) for h in row] for row in hits], truth, 10)
            assert got >= target - 0.03, (target, got)
        fixed = col.search(xq[:5], 10, n_probe=2, target_recall=0.99)  # n_probe wins
        assert [[h.id for h in r] for r in fixed] == [[h.id for h in r] for r in col.search(xq[:5], 10, n_probe=2)]
        with pytest.raises(ValueError, match="target_recall"):
            col.search(xq[0], 10, target_recall=2)
        with pytest.raises(ValueError, match="target_recall"):
            col.hybrid_search("x", xq[0], 10, target_recall=0)
        assert col.stats()["index"]["calibration"]["count"] == 5000
    finally:
        col.close()


def test_cli_query_recall_and_info_recall(tmp_path, data, capsys):
    from spann_vectorstore import Collection
    from spann_vectorstore.cli import main

    xb, _ = data
    with Collection(tmp_path / "c", dim=D, index_threshold=1000) as col:
        col.add(xb[:3000], texts=[f"doc {i}" for i in range(3000)], ids=[str(i) for i in range(3000)])
        col.optimize()
    assert main(["info", str(tmp_path / "c"), "--recall", "--sample", "50"]) == 0
    out = capsys.readouterr().out
    assert "recall@10:" in out and "95% interval" in out and "recall:     target 0.98" in out
    assert main(["query", str(tmp_path / "c"), "doc", "--mode", "text", "--recall", "1.5"]) == 2
    assert "must be in (0, 1]" in capsys.readouterr().err


def test_index_vector_samples_are_pruned_as_outside_queries(tmp_path, data, built):
    """A build vector pulled its own head towards itself, so its nearest-head distance is small and the distance
    pruning would cut more postings for it than for an outside query: the calibration's sample search
    corrects the nearest distance (leave-one-out), and changes nothing without pruning."""
    xb, _ = data
    own = np.arange(0, 3000, 10)
    qs = xb[own]
    plain = built.search(qs, 11, n_probe=40, max_dist_ratio=1.5)
    corrected = built._sample_search(qs, 11, 40, 1.5, own)
    assert corrected.stats["postings"].mean() > plain.stats["postings"].mean()
    assert (corrected.stats["postings"] >= plain.stats["postings"]).all()
    same = built._sample_search(qs, 11, 40, math.inf, own)
    np.testing.assert_array_equal(same.ids, built.search(qs, 11, n_probe=40, max_dist_ratio=math.inf).ids)
    # vectors added after the build moved no head: searched as they are
    grown = SpannIndex(D, bits=2, head_ratio=1 / 40, n_probe=8, progress=False).build(xb[:10_000])
    late = np.arange(10_000, 10_300)
    grown.add(xb[late], late)
    a = grown._sample_search(xb[late], 11, 40, 1.5, late)
    np.testing.assert_array_equal(a.ids, grown.search(xb[late], 11, n_probe=40, max_dist_ratio=1.5).ids)
    # the count of build vectors survives a snapshot (deleted ones left out)
    grown.delete(np.arange(0, 100))
    grown.save(tmp_path / "g")
    assert SpannIndex.load(tmp_path / "g")._n_built == 9_900


def test_a_filter_whose_probing_costs_more_than_exact_is_answered_exactly(data, built, monkeypatch):
    """The filtered probe reads up to n_probe / selectivity postings: when exact search over the allowed
    vectors costs less (``_EXACT_COST`` codes per vector), the search is exact; the calibration keeps
    measuring the probing itself (its filtered rows are the same whatever the rule decides)."""
    import spann_vectorstore.index as I

    xb, xq = data
    allowed = np.flatnonzero(np.random.default_rng(2).random(len(xb)) < 0.2)  # 3,000: above the small-set rule
    truth, _ = exact(xb, xq[:50], 10, "ip", allowed=allowed)
    monkeypatch.setattr(I, "_EXACT_COST", 10**9)  # exact never cheaper: the probing
    probed = built.search(xq[:50], 10, allowed_ids=allowed)
    assert probed.stats["entries"].min() > 0
    monkeypatch.setattr(I, "_EXACT_COST", 0)  # exact always cheaper
    res = built.search(xq[:50], 10, allowed_ids=allowed)
    assert (res.stats["entries"] == 0).all() and (res.stats["exact"] == len(allowed)).all()
    assert recall(res.ids, truth, 10) == 1.0
    for i in range(3):  # a single query takes the same path
        one = built.search(xq[i], 10, allowed_ids=allowed[::-1])  # any order of ids
        np.testing.assert_array_equal(one.ids[0], res.ids[i])
        np.testing.assert_array_equal(one.scores[0], res.scores[i])
    # the calibration's filtered rows (10% of 24k: above the small-set rule) measure the probing either way
    big = clustered(24_000, 16, seed=9)
    cal_exact = SpannIndex(16, bits=1, head_ratio=1 / 40, progress=False, seed=1).build(big)._calibration()
    monkeypatch.setattr(I, "_EXACT_COST", 10**9)
    again = SpannIndex(16, bits=1, head_ratio=1 / 40, progress=False, seed=1).build(big)._calibration()
    np.testing.assert_array_equal(cal_exact.filtered, again.filtered)
    assert np.nanmin(cal_exact.filtered) < 1.0  # the probing's recall was measured, not exact search's
