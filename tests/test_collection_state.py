"""Stateful property test: a persistent :class:`Collection` against a plain-Python model.

Hypothesis drives random sequences of add/upsert, delete (by ids, by filter, both), get, count, search
(with and without filters), close and reopen, abandon without close (no final snapshot, as after a crash),
optimize, clear and verify, on small dimensions (4-8) with ``index_threshold=16`` and
``rebuild_growth=1.25`` so that builds, in-place updates and background rebuilds all happen, and
``snapshot_every=7`` so snapshots are written mid-run and reopening replays rows newer than them.

Checks after every step: ``count`` and the stored documents equal the model, ``verify()`` finds no problem.
Searches: while the index is not built (exact search), results equal the exact top-k over the model up to
ties (scores compared with a tolerance, tie order free); once it is built, the recall-free invariants: every
hit is a live model document matching the filter, its score is that document's exact score, no duplicates,
and ``min(k, matching documents)`` hits.

Runs: the default is bounded (about 30-40 s here); ``HYPOTHESIS_PROFILE=nightly`` runs many more and longer
sequences (``HYPOTHESIS_PROFILE=nightly pytest tests/test_collection_state.py``). The SIGKILL variant of a
crash is ``test_collection.py::test_acknowledged_writes_survive_sigkill``.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from spann_vectorstore import Collection

PROFILES = {
    "default": {"max_examples": 30, "stateful_step_count": 40},
    "nightly": {"max_examples": 400, "stateful_step_count": 80},
}
PROFILE = PROFILES.get(os.environ.get("HYPOTHESIS_PROFILE", "default"), PROFILES["default"])

IDS = [f"d{i}" for i in range(64)]
POOL = np.random.default_rng(7).uniform(-1, 1, (48, 8)).astype(np.float32)  # shared rows make exact ties

ids_st = st.lists(st.sampled_from(IDS), min_size=1, max_size=16, unique=True)
meta_st = st.fixed_dictionaries(
    {}, optional={"g": st.integers(0, 3), "t": st.sampled_from(["a", "b"]), "n": st.floats(-2, 2, width=32)}
)
text_st = st.none() | st.text(alphabet="abcdefgh xyz", max_size=12)
filter_st = st.one_of(
    st.integers(0, 3).map(lambda v: {"g": v}),
    st.integers(0, 3).map(lambda v: {"g": {"$gte": v}}),
    st.just({"t": {"$ne": "a"}}),
    st.lists(st.integers(0, 3), min_size=1, max_size=3).map(lambda vs: {"g": {"$in": vs}}),
    st.just({"$or": [{"g": 1}, {"t": "b"}]}),
    st.just({"$and": [{"t": "a"}, {"g": {"$lt": 2}}]}),
)


def matches(meta: dict, flt: dict | None) -> bool:
    """The filter language's semantics for the filters ``filter_st`` makes ($ne matches a missing field)."""
    if flt is None:
        return True
    if "$or" in flt:
        return any(matches(meta, f) for f in flt["$or"])
    if "$and" in flt:
        return all(matches(meta, f) for f in flt["$and"])
    ((key, cond),) = flt.items()
    if not isinstance(cond, dict):
        cond = {"$eq": cond}
    ((op, v),) = cond.items()
    if op == "$ne":
        return meta.get(key) != v
    if key not in meta:
        return False
    x = meta[key]
    if op == "$in":
        return x in v
    return {"$eq": x == v, "$gte": x >= v, "$lt": x < v}[op]


class CollectionMachine(RuleBasedStateMachine):
    @initialize(dim=st.integers(4, 8), metric=st.sampled_from(["ip", "cosine", "l2"]), n0=st.integers(0, 40))
    def setup(self, dim: int, metric: str, n0: int) -> None:
        """A new collection, with ``n0`` documents so that many runs start near or past the first build."""
        self.dir = tempfile.mkdtemp(prefix="spann-state-")
        self.path = os.path.join(self.dir, "c")
        self.dim, self.metric = dim, metric
        self.model: dict[str, tuple[np.ndarray, str | None, dict]] = {}
        self.col = self._open(dim=dim, metric=metric)
        if n0:
            ids, metas = IDS[-n0:], [{"g": i % 4, "t": "ab"[i % 2]} if i % 3 else {} for i in range(n0)]
            x = np.stack([self._vec(i % 48) for i in range(n0)])
            self.col.add(x, [f"t{i}" for i in range(n0)], metas, ids)
            self.model = {ids[i]: (x[i], f"t{i}", metas[i]) for i in range(n0)}

    def _open(self, **kw) -> Collection:
        return Collection(self.path, index_threshold=16, rebuild_growth=1.25, snapshot_every=7, **kw)

    def teardown(self) -> None:
        col = getattr(self, "col", None)
        if col is not None:
            col.close()
        if getattr(self, "dir", None):
            shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------------------------------------------
    def _vec(self, row: int) -> np.ndarray:
        return POOL[row, : self.dim].copy()

    def _score(self, q: np.ndarray, x: np.ndarray) -> float:
        q64, x64 = q.astype(np.float64), x.astype(np.float64)
        if self.metric == "l2":
            return float(((q64 - x64) ** 2).sum())
        if self.metric == "cosine":
            q64, x64 = q64 / np.linalg.norm(q64), x64 / np.linalg.norm(x64)
        return float(q64 @ x64)

    def _close(self, a: float, b: float) -> bool:
        return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-4)

    # ------------------------------------------------------------------------------------------------------
    @rule(ids=ids_st, rows=st.lists(st.integers(0, 47), min_size=16, max_size=16), data=st.data())
    def add(self, ids, rows, data) -> None:
        texts = [data.draw(text_st) for _ in ids]
        metas = [data.draw(meta_st) for _ in ids]
        x = np.stack([self._vec(r) for r in rows[: len(ids)]])
        before = self.col.index
        built = before is not None and before.n_heads > 0
        assert self.col.add(x, texts, metas, ids) == ids
        if built and self.col.index is not before:
            event("add: background rebuild")
        elif not built and self.col.index.n_heads:
            event("add: first build")
        for i, id_ in enumerate(ids):
            self.model[id_] = (x[i], texts[i], metas[i])

    @rule(ids=st.lists(st.sampled_from(IDS), max_size=6, unique=True))
    def delete_ids(self, ids) -> None:
        want = sum(i in self.model for i in ids)
        assert self.col.delete(ids=ids) == want
        for i in ids:
            self.model.pop(i, None)

    @rule(flt=filter_st, ids=st.none() | st.lists(st.sampled_from(IDS), max_size=10, unique=True))
    def delete_filter(self, flt, ids) -> None:
        gone = [i for i, (_, _, m) in self.model.items() if matches(m, flt) and (ids is None or i in ids)]
        assert self.col.delete(ids=ids, filter=flt) == len(gone)
        for i in gone:
            del self.model[i]

    @rule(ids=st.lists(st.sampled_from(IDS), max_size=6, unique=True))
    def get(self, ids) -> None:
        got = self.col.get(ids, include_vectors=True)
        assert [h.id for h in got] == [i for i in ids if i in self.model]
        for h in got:
            x, text, meta = self.model[h.id]
            assert h.text == text and h.metadata == meta
            np.testing.assert_array_equal(h.vector, x)

    @rule(flt=filter_st)
    def count(self, flt) -> None:
        assert self.col.count(filter=flt) == sum(matches(m, flt) for _, _, m in self.model.values())

    @rule(row=st.integers(0, 47), k=st.integers(1, 12), flt=st.none() | filter_st, noise=st.integers(0, 3))
    def search(self, row, k, flt, noise) -> None:
        self._check_search(self._vec(row) + np.float32(0.05 * noise), k, flt)

    def _check_search(self, q: np.ndarray, k: int, flt: dict | None) -> None:
        hits = self.col.search(q, k=k, filter=flt)
        live = {i: self._score(q, x) for i, (x, _, m) in self.model.items() if matches(m, flt)}
        ids = [h.id for h in hits]
        assert len(set(ids)) == len(ids), "duplicate hit"
        assert len(hits) == min(k, len(live)), f"{len(hits)} hits for k={k}, {len(live)} matching documents"
        for h in hits:
            assert h.id in live, f"{h.id} is deleted or does not match {flt}"
            assert self._close(h.score, live[h.id]), (h.id, h.score, live[h.id])
        lower_is_better = self.metric == "l2"
        got = [h.score for h in hits]
        assert all(self._close(a, b) or (a <= b) == lower_is_better for a, b in itertools.pairwise(got)), got
        indexed = self.col.stats()["indexed"]
        event(f"search: {'index' if indexed else 'exact'}{' filtered' if flt else ''}")
        if not indexed:  # exact search: the top k up to ties
            best = sorted(live.values(), reverse=not lower_is_better)[:k]
            assert all(self._close(a, b) for a, b in zip(got, best)), (got, best)

    @rule(data=st.data())
    def text(self, data) -> None:
        """The full-text index against the model: a word of a stored text finds that document, every hit is
        live and has text, scores are best first; ``$contains`` on the text counts exactly."""
        words = sorted({w for _, t, _ in self.model.values() if t for w in t.split()})
        word = data.draw(st.sampled_from(words) if words else st.just("abc"))
        hits = self.col.text_search(word, k=len(IDS))
        assert all(h.id in self.model and self.model[h.id][1] for h in hits)
        assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
        holders = {i for i, (_, t, _) in self.model.items() if t and word in t.split()}
        assert holders <= {h.id for h in hits}, (word, holders)
        want = sum(bool(t) and word in t for _, t, _ in self.model.values())
        assert self.col.count(where_document={"$contains": word}) == want

    @rule()
    def reopen(self) -> None:
        self.col.close()
        self.col = Collection.open(self.path)

    @rule()
    def abandon(self) -> None:
        """Drop the collection without close(): no final snapshot, as when the process dies after a write
        (the files are released here so the same process can reopen them)."""
        self.col._cancel_rebuild(wait=True)
        self.col._release_files()
        self.col = self._open()

    @precondition(lambda self: len(self.model) > 0)
    @rule()
    def optimize(self) -> None:
        self.col.optimize()

    @precondition(lambda self: len(self.model) >= 24)  # rarely, so that the collection grows past its builds
    @rule()
    def clear(self) -> None:
        self.col.clear()
        self.model.clear()

    @invariant()
    def same_documents(self) -> None:
        if not hasattr(self, "col"):
            return
        assert self.col.count() == len(self.model)
        assert {h.id for h in self.col.get()} == set(self.model)

    @invariant()
    def searches(self) -> None:
        """One unfiltered and one filtered search after every step, whatever the rules drawn."""
        if hasattr(self, "col"):
            self.step = getattr(self, "step", 0) + 1
            q = self._vec(self.step % 48)
            self._check_search(q, 5, None)
            self._check_search(q, 3, {"g": {"$in": [1, 2]}})

    @invariant()
    def verifies(self) -> None:
        if hasattr(self, "col"):
            report = self.col.verify()
            assert report.ok, report


CollectionMachine.TestCase.settings = settings(
    **PROFILE, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@pytest.fixture(autouse=True)
def no_fsync(monkeypatch):
    """Snapshot writes fsync every file; on this shared disk that was ~80% of the run's wall time. What is
    tested here survives a process crash without them (power loss is not simulated)."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)


@pytest.mark.slow
class TestCollectionState(CollectionMachine.TestCase):
    pass
