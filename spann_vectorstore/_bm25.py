"""In-memory BM25 ranking over the tokens of the FTS5 text index (``fulltext``), scored by a Numba kernel.

FTS5 ranks an OR query by calling ``bm25()`` for every matching row: a query with one common word ("for",
"the") matches half of a 100k-document collection and took ~0.5 s. This module keeps the same postings in
memory (term -> documents with term frequencies and lengths, document -> terms) and scores only the query's
postings in a kernel, with FTS5's formula (idf = ln((N - n + 0.5) / (n + 0.5)) floored at 1e-6, the same
statistics and tokens); with FTS5's k1 = 1.2, b = 0.75 the scores equal its bm25()'s (a differential test
checks it, relative 1e-9), at a fraction of the cost. The default parameters are k1 = 0.9, b = 0.4 (see
:data:`K1`), which rank these collections' short texts better.

The tokens are FTS5's own: the index is built from the FTS5 table's ``fts5vocab`` instance table, and new
texts (and query words) are tokenized by a scratch in-memory FTS5 table with the same tokenizer, so the two
can never disagree about what a word is. Nothing here is persisted: SQLite holds the truth; the structure is
built on a collection's first text query (about 2 s per 100k short documents on 2 cores) and kept in step with
writes (added texts are tokenized in one batch at the next text query; deletes are applied at once).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence

import numpy as np
from numba import njit

from . import fulltext

# BM25's parameters. FTS5's bm25() fixes k1 = 1.2, b = 0.75 (Robertson's values for long news articles); the
# ranking here defaults to Anserini's (Lucene-based) k1 = 0.9, b = 0.4, its default for short passages: less
# weight on repeats of a word and on document length. Picked among published defaults on the first half of
# ../shared/data/hybrid (NOTES.md, session 6): BM25 MRR@10 0.754 -> 0.762, hybrid +0.006. The differential test
# against FTS5 sets FTS5's values (``BM25Index(k1=FTS5_K1, b=FTS5_B)``).
K1 = 0.9
B = 0.4
FTS5_K1 = 1.2
FTS5_B = 0.75


@njit(cache=True)
def _kth_largest(acc, touched, nt, k, heap):
    """The k-th largest accumulated score among the touched documents (a min-heap of size k)."""
    size = 0
    for i in range(nt):
        s = acc[touched[i]]
        if size < k:
            pos = size
            size += 1
            while pos > 0 and heap[(pos - 1) // 2] > s:
                heap[pos] = heap[(pos - 1) // 2]
                pos = (pos - 1) // 2
            heap[pos] = s
        elif s > heap[0]:
            pos = 0
            while True:
                c = 2 * pos + 1
                if c >= size:
                    break
                if c + 1 < size and heap[c + 1] < heap[c]:
                    c += 1
                if heap[c] < s:
                    heap[pos] = heap[c]
                    pos = c
                else:
                    break
            heap[pos] = s
    return heap[0]


@njit(cache=True, inline="always")
def _find_first(a, lo, hi, d):
    """The first position in the sorted ``a[lo:hi]`` holding a value >= ``d`` (``hi`` if none)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if a[mid] < d:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, inline="always")
def _find(post_doc, lo, hi, d):
    """Position of document ``d`` in the sorted ``post_doc[lo:hi]``, or -1."""
    p = _find_first(post_doc, lo, hi, d)
    return p if p < hi and post_doc[p] == d else -1


@njit(cache=True)
def _keep(acc, touched, nt, rest, theta):
    """Keep the touched documents that can still reach ``theta`` with ``rest`` more (order kept); the others
    go back to zero. Returns their number."""
    nc = 0
    for i in range(nt):
        d = touched[i]
        if acc[d] + rest >= theta:
            touched[nc] = d
            nc += 1
        else:
            acc[d] = 0.0
    return nc


@njit(cache=True, inline="always")
def _gallop(post_doc, lo, hi, d):
    """The first position in ``post_doc[lo:hi]`` (sorted) holding a document >= ``d`` (``hi`` if none):
    doubling steps from ``lo``, then a binary search, so a pass over sorted targets costs O(targets x log gap)."""
    if lo >= hi or post_doc[lo] >= d:
        return lo
    step = 1
    while lo + step < hi and post_doc[lo + step] < d:
        lo += step
        step *= 2
    # post_doc[lo] < d; the answer is in (lo, min(lo + step, hi)]
    a, b = lo + 1, min(lo + step, hi)
    while a < b:
        mid = (a + b) // 2
        if post_doc[mid] < d:
            a = mid + 1
        else:
            b = mid
    return a


@njit(cache=True)
def _doc_score(d, q_tok, q_w, tok_ptr, post_doc, post_tf, post_dl, t_tok, t_doc, t_tf, t_dl, w_of_tok, skip, k1, c1, c2):
    """BM25 of one document, summed in the order :func:`_score` sums it (so equal to its score there)."""
    if d < 0 or (skip.shape[0] > 0 and skip[d] != 0):
        return 0.0
    s = 0.0
    p = _find_first(t_doc, 0, t_doc.shape[0], d)
    if p < t_doc.shape[0] and t_doc[p] == d:  # a document added since the last merge: its postings in the tail
        while p < t_doc.shape[0] and t_doc[p] == d:
            w = w_of_tok[t_tok[p]]
            if w != 0.0:
                tf = np.float64(t_tf[p])
                s += w * (k1 + 1.0) * tf / (tf + c1 + c2 * t_dl[p])
            p += 1
        return s
    n_tok = tok_ptr.shape[0] - 1
    for j in range(q_tok.shape[0]):
        t = q_tok[j]
        if t >= n_tok:
            continue
        p = _find(post_doc, tok_ptr[t], tok_ptr[t + 1], d)
        if p >= 0:
            tf = np.float64(post_tf[p])
            s += q_w[j] * (k1 + 1.0) * tf / (tf + c1 + c2 * post_dl[p])
    return s


@njit(cache=True, nogil=True)
def _score(
    q_tok, q_w, q_ub, tok_ptr, post_doc, post_tf, post_dl, t_tok, t_doc, t_tf, t_dl, w_of_tok, skip, k1, b, avgdl,
    k, want, acc, touched, out_doc, out_score, want_score
):  # fmt: skip
    """BM25 of the documents holding query tokens (except those with ``skip[d]``: deleted, or outside a
    filter; ``skip`` is empty when there are none), top ``k`` into out_doc/out_score (best first, equal scores
    by smaller document index = older rowid); returns the number of results. ``want``: documents whose scores
    are wanted too (0 without a query token), into ``want_score``.

    ``q_tok``/``q_w``: the distinct query tokens, by decreasing ``q_ub`` (their most per document), weight =
    idf times occurrences in the query, as FTS5 scores each occurrence. ``tok_ptr``/``post_*``: the merged
    postings (CSR by token, documents increasing, each with its term frequency and document length); ``t_*``:
    postings added since (COO; a document's postings are all in one of the two), weighted through
    ``w_of_tok`` (token -> weight, 0 if not in the query). ``acc`` float64 (n,) all zero (so left: zero marks a
    document not yet scored, as every score is > 0), ``touched`` (n,) scratch.

    MaxScore pruning: tokens are scanned by decreasing bound (rarest first); once the k-th best score so far
    exceeds what the remaining tokens could add at most, no unseen document can enter the top k, and the
    remaining (common) tokens only complete the scores of the documents that still can, by binary search in
    their postings. Scores stay exact (a differential test compares them with FTS5's bm25()).
    """
    use_skip = skip.shape[0] > 0
    c1 = k1 * (1.0 - b)
    c2 = k1 * b / avgdl
    nt = 0
    best = 0.0
    for p in range(t_tok.shape[0]):
        w = w_of_tok[t_tok[p]]
        d = t_doc[p]
        if w == 0.0 or (use_skip and skip[d] != 0):
            continue
        tf = np.float64(t_tf[p])
        a = acc[d]
        if a == 0.0:
            touched[nt] = d
            nt += 1
        a += w * (k1 + 1.0) * tf / (tf + c1 + c2 * t_dl[p])
        acc[d] = a
        best = max(best, a)
    m = q_tok.shape[0]
    rest = 0.0
    for j in range(m):
        rest += q_ub[j]
    heap = np.empty(k, np.float64)
    theta = -np.inf
    n_tok = tok_ptr.shape[0] - 1
    j = 0
    while j < m:
        # the k-th score is at most the best one: computed (O(touched)) only when it could stop the scan
        if j > 0 and nt >= k and rest < best:
            theta = _kth_largest(acc, touched, nt, k, heap)
            if rest < theta:
                break
        t = q_tok[j]
        wk = q_w[j] * (k1 + 1.0)
        rest -= q_ub[j]
        j += 1
        if t >= n_tok:
            continue  # a token first seen after the last merge: its postings are all in the tail
        for p in range(tok_ptr[t], tok_ptr[t + 1]):
            d = post_doc[p]
            if use_skip and skip[d] != 0:
                continue
            tf = np.float64(post_tf[p])
            a = acc[d]
            if a == 0.0:
                touched[nt] = d
                nt += 1
            a += wk * tf / (tf + c1 + c2 * post_dl[p])
            acc[d] = a
            best = max(best, a)
    if j < m:
        # the documents that can still reach the k-th score (the others are dropped, back to zero), in document
        # order; each remaining token adds to them by a galloping search in its postings, then the k-th score
        # and the bound of the tokens left drop more of them
        nt = _keep(acc, touched, nt, rest, theta)
        touched[:nt].sort()
        for jj in range(j, m):
            t = q_tok[jj]
            rest -= q_ub[jj]
            if t < n_tok:
                wk = q_w[jj] * (k1 + 1.0)
                lo, hi = tok_ptr[t], tok_ptr[t + 1]
                for i in range(nt):
                    d = touched[i]
                    lo = _gallop(post_doc, lo, hi, d)
                    if lo >= hi:
                        break
                    if post_doc[lo] == d:
                        tf = np.float64(post_tf[lo])
                        acc[d] += wk * tf / (tf + c1 + c2 * post_dl[lo])
                        lo += 1
            if jj + 1 < m and nt > k:
                theta = _kth_largest(acc, touched, nt, k, heap)
                nt = _keep(acc, touched, nt, rest, theta)
    for i in range(want.shape[0]):
        d = want[i]
        want_score[i] = _doc_score(
            d, q_tok, q_w, tok_ptr, post_doc, post_tf, post_dl, t_tok, t_doc, t_tf, t_dl, w_of_tok, skip, k1, c1, c2
        )
    # top k: a heap with the worst (lowest score, then larger index) at the root
    size = 0
    for i in range(nt):
        d = touched[i]
        s = acc[d]
        acc[d] = 0.0  # scratch left all zero for the next query
        if size < k:
            pos = size
            size += 1
            while pos > 0:
                par = (pos - 1) // 2
                if out_score[par] > s or (out_score[par] == s and out_doc[par] < d):
                    out_score[pos] = out_score[par]
                    out_doc[pos] = out_doc[par]
                    pos = par
                else:
                    break
            out_score[pos] = s
            out_doc[pos] = d
        elif s > out_score[0] or (s == out_score[0] and d < out_doc[0]):
            _sift(out_doc, out_score, size, d, s)
    # heap -> best first
    end = size
    while end > 1:
        end -= 1
        d, s = out_doc[end], out_score[end]
        out_doc[end], out_score[end] = out_doc[0], out_score[0]
        _sift(out_doc, out_score, end, d, s)
    return size


@njit(cache=True, inline="always")
def _sift(out_doc, out_score, size, d, s):
    """Put (d, s) at the root of the heap of ``size`` and sift it down (worst at the root)."""
    pos = 0
    while True:
        c = 2 * pos + 1
        if c >= size:
            break
        if c + 1 < size and (
            out_score[c + 1] < out_score[c] or (out_score[c + 1] == out_score[c] and out_doc[c + 1] > out_doc[c])
        ):
            c += 1
        if out_score[c] < s or (out_score[c] == s and out_doc[c] > d):
            out_score[pos] = out_score[c]
            out_doc[pos] = out_doc[c]
            pos = c
        else:
            break
    out_score[pos] = s
    out_doc[pos] = d


class _Tokenizer:
    """FTS5's tokenization of arbitrary texts, through a scratch in-memory FTS5 table with the same tokenizer."""

    def __init__(self) -> None:
        self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self._db.execute(f"CREATE VIRTUAL TABLE s USING fts5(body, tokenize='{fulltext.TOKENIZER}')")
        self._db.execute("CREATE VIRTUAL TABLE sv USING fts5vocab(s, 'instance')")
        self._lock = threading.Lock()

    def tokens(self, bodies: Sequence[str]) -> list[list[str]]:
        """Each text's tokens in order (texts already transformed by ``fulltext.body``)."""
        out: list[list[str]] = [[] for _ in bodies]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT INTO s (rowid, body) VALUES (?, ?)", enumerate(bodies))
            for term, doc, _off in self._db.execute("SELECT term, doc, offset FROM sv ORDER BY doc, offset"):
                out[doc].append(term)
            self._db.execute("ROLLBACK")
        return out


class BM25Index:
    """Postings of the documents' FTS5 tokens, for BM25 ranking (see the module docstring)."""

    def __init__(self, *, k1: float | None = None, b: float | None = None) -> None:
        self.k1 = float(K1 if k1 is None else k1)
        self.b = float(B if b is None else b)
        self._vocab: dict[str, int] = {}
        self._df = np.zeros(0, np.int64)  # live documents per token
        self._max_tf = np.zeros(0, np.float64)
        self._min_dl = np.zeros(0, np.float64)
        self._rowids = np.zeros(0, np.int64)  # document index -> rowid (increasing)
        self._doclen = np.zeros(0, np.float64)
        self._dead = np.zeros(0, np.uint8)
        self._live = 0
        self._stale = 0  # deleted documents whose postings are still in the arrays (dropped by the next merge)
        self._total_len = 0.0  # tokens of the live documents
        # merged postings (CSR by token; each with its term frequency and its document's length, so the kernel
        # reads them in sequence), postings added since (COO: token, document, tf, length), forward index
        # (chunks: first document, offsets per document, tokens)
        self._tok_ptr = np.zeros(1, np.int64)
        self._post_doc = np.zeros(0, np.int32)
        self._post_tf = np.zeros(0, np.float32)
        self._post_dl = np.zeros(0, np.float32)
        self._added: list[tuple[np.ndarray, ...]] = []
        self._tail: tuple[np.ndarray, ...] = _empty_tail()
        self._fwd: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._scratch = threading.local()
        self.tokenizer = _Tokenizer()
        self._term_tokens: dict[str, list[str]] = {}  # query term -> its FTS5 tokens (a cache)

    def __len__(self) -> int:
        return self._live

    @property
    def last_rowid(self) -> int:
        return int(self._rowids[-1]) if len(self._rowids) else 0

    @property
    def _n(self) -> int:
        return len(self._rowids)

    @classmethod
    def from_db(cls, db: sqlite3.Connection, **params: float | None) -> BM25Index:
        """Build from the collection's FTS5 table (its own tokens, read through an fts5vocab instance table);
        ``params``: ``k1``, ``b`` (default :data:`K1`, :data:`B`)."""
        self = cls(**params)
        t = fulltext.TABLE
        db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.spann_fts_i USING fts5vocab(main, {t}, instance)")
        db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.spann_fts_r USING fts5vocab(main, {t}, row)")
        try:
            # both vocabularies list terms in the index's order: the instances' tokens follow from the counts
            terms = db.execute("SELECT term, cnt FROM temp.spann_fts_r").fetchall()
            joined = db.execute("SELECT group_concat(doc) FROM temp.spann_fts_i").fetchone()[0]
        finally:
            db.execute("DROP TABLE IF EXISTS temp.spann_fts_i")
            db.execute("DROP TABLE IF EXISTS temp.spann_fts_r")
        docs = np.array(joined.split(","), np.int64) if joined else np.zeros(0, np.int64)
        cnt = np.array([c for _, c in terms], np.int64)
        if int(cnt.sum()) != len(docs):
            raise RuntimeError(f"the text index's vocabularies disagree ({int(cnt.sum())} vs {len(docs)} tokens)")
        self._vocab = {term: i for i, (term, _) in enumerate(terms)}
        tok = np.repeat(np.arange(len(terms), dtype=np.int64), cnt)
        # every indexed row counts in BM25's statistics, also texts without a token ("!!!")
        rowids = np.array(
            [r[0] for r in db.execute("SELECT rowid FROM docs WHERE text IS NOT NULL AND text != '' ORDER BY rowid")],
            np.int64,
        )
        if len(rowids):
            self._append_docs(rowids, np.searchsorted(rowids, docs), tok, merge=False)
            self._merge()
        return self

    def _append_docs(self, rowids: np.ndarray, doc: np.ndarray, tok: np.ndarray, *, merge: bool = True) -> None:
        """Add documents ``rowids`` (increasing, after every present one) given their token occurrences:
        ``doc`` (index into ``rowids``) and ``tok`` (token id) per occurrence."""
        m, base, v = len(rowids), self._n, len(self._vocab) + 1
        if base and m and rowids[0] <= self._rowids[-1]:
            raise ValueError("BM25Index: documents must be added in increasing rowid order")
        pairs, counts = np.unique(doc * v + tok, return_counts=True)  # sorted by document, then token
        pdoc, ptok = np.divmod(pairs, v)
        tf = counts.astype(np.float32)
        lens = np.bincount(doc, minlength=m).astype(np.float64)
        self._rowids = np.concatenate([self._rowids, rowids.astype(np.int64)])
        self._doclen = np.concatenate([self._doclen, lens])
        self._dead = np.concatenate([self._dead, np.zeros(m, np.uint8)])
        self._live += m
        self._total_len += float(lens.sum())
        if len(self._df) < len(self._vocab):
            grow = len(self._vocab) - len(self._df)
            self._df = np.concatenate([self._df, np.zeros(grow, np.int64)])
            self._max_tf = np.concatenate([self._max_tf, np.zeros(grow, np.float64)])
            self._min_dl = np.concatenate([self._min_dl, np.full(grow, np.inf)])
        np.add.at(self._df, ptok, 1)
        # per token: the largest term frequency and the shortest document (deletes leave them: still bounds)
        np.maximum.at(self._max_tf, ptok, tf)
        np.minimum.at(self._min_dl, ptok, lens[pdoc])
        self._fwd.append((base, np.concatenate([[0], np.cumsum(np.bincount(pdoc, minlength=m))]), ptok))
        self._added.append((ptok, (pdoc + base).astype(np.int32), tf, lens[pdoc].astype(np.float32)))
        self._tail = tuple(np.concatenate(parts) for parts in zip(*self._added))
        if merge and len(self._tail[0]) > max(50_000, len(self._post_doc) // 8):
            self._merge()

    def _merge(self) -> None:
        """Fold the added postings into the CSR arrays, dropping deleted documents' postings."""
        old_tok = np.repeat(np.arange(len(self._tok_ptr) - 1), np.diff(self._tok_ptr))
        tok = np.concatenate([old_tok, self._tail[0]])
        doc = np.concatenate([self._post_doc, self._tail[1]])
        tf = np.concatenate([self._post_tf, self._tail[2]])
        keep = self._dead[doc] == 0
        tok, doc, tf = tok[keep], doc[keep], tf[keep]
        order = np.lexsort((doc, tok))
        self._post_doc = np.ascontiguousarray(doc[order], dtype=np.int32)
        self._post_tf = np.ascontiguousarray(tf[order], dtype=np.float32)
        self._post_dl = self._doclen[self._post_doc].astype(np.float32)  # token counts: exact in float32
        self._tok_ptr = np.concatenate([[0], np.cumsum(np.bincount(tok, minlength=len(self._vocab)))]).astype(np.int64)
        self._added = []
        self._tail = _empty_tail()
        self._stale = 0

    def add(self, rows: Sequence[tuple[int, str | None]]) -> None:
        """Index ``(rowid, text)`` rows (rowids larger than any present; texts that are None are skipped)."""
        rows = sorted((r, t) for r, t in rows if t)
        if not rows:
            return
        doc, tok = [], []
        for i, ts in enumerate(self.tokenizer.tokens([fulltext.body(t) for _, t in rows])):
            for t in ts:
                doc.append(i)
                tok.append(self._vocab.setdefault(t, len(self._vocab)))
        self._append_docs(np.array([r for r, _ in rows], np.int64), np.array(doc, np.int64), np.array(tok, np.int64))

    def delete(self, rowids: Sequence[int]) -> None:
        r = np.asarray(rowids, np.int64).reshape(-1)
        pos = np.searchsorted(self._rowids, r)
        ok = pos < self._n
        pos = pos[ok][self._rowids[pos[ok]] == r[ok]]
        pos = np.unique(pos[self._dead[pos] == 0])
        if not len(pos):
            return
        self._dead[pos] = 1
        self._stale += len(pos)
        self._live -= len(pos)
        self._total_len -= float(self._doclen[pos].sum())
        # each forward-index chunk: the token slices of its deleted documents, gathered in one go
        for base, starts, ptok in self._fwd:
            local = pos[(pos >= base) & (pos < base + len(starts) - 1)] - base
            if not len(local):
                continue
            lens = starts[local + 1] - starts[local]
            first = np.repeat(starts[local] - np.cumsum(lens) + lens, lens)
            np.subtract.at(self._df, ptok[first + np.arange(int(lens.sum()))], 1)

    def query_tokens(self, terms: Sequence[str]) -> list[str] | None:
        """The FTS5 token of each query term (terms without one dropped), or None when a term is several
        tokens (a phrase: the caller ranks through FTS5 itself)."""
        cache = self._term_tokens
        missing = [t for t in dict.fromkeys(terms) if t not in cache]
        if missing:
            if len(cache) > 100_000:
                cache.clear()
            cache.update(zip(missing, self.tokenizer.tokens([fulltext.body(t) for t in missing])))
        out = []
        for t in terms:
            ts = cache[t]
            if len(ts) > 1:
                return None
            out.extend(ts)
        return out

    def search(
        self,
        tokens: Sequence[str],
        k: int,
        allowed_rowids: np.ndarray | None,
        score_rowids: np.ndarray | None = None,
    ) -> tuple[list[tuple[int, float]], np.ndarray]:
        """(rowid, BM25 score) best first for the OR of ``tokens``, among ``allowed_rowids`` when given; and
        the scores of ``score_rowids`` (0 for a document without a query token, deleted or not indexed)."""
        want_rows = np.zeros(0, np.int64) if score_rowids is None else np.asarray(score_rowids, np.int64)
        counts: dict[int, int] = {}
        for t in tokens:
            i = self._vocab.get(t)
            if i is not None and self._df[i] > 0:
                counts[i] = counts.get(i, 0) + 1
        if not counts or not self._live:
            return [], np.zeros(len(want_rows), np.float64)
        q_tok = np.fromiter(counts, np.int64, len(counts))
        df = self._df[q_tok].astype(np.float64)
        idf = np.log((self._live - df + 0.5) / (df + 0.5))
        q_w = np.where(idf <= 0, 1e-6, idf) * np.fromiter(counts.values(), np.float64, len(counts))
        # the most a token can add to one document's score (its largest tf in its shortest document), and the
        # tokens by decreasing bound for the kernel's pruning
        k1, b = self.k1, self.b
        avgdl = max(self._total_len / self._live, 1e-9)
        mtf = self._max_tf[q_tok]
        q_ub = q_w * mtf * (k1 + 1.0) / (mtf + k1 * (1.0 - b + b * self._min_dl[q_tok] / avgdl))
        order = np.argsort(-q_ub, kind="stable")
        q_tok, q_w, q_ub = q_tok[order], q_w[order], q_ub[order]
        w_of_tok = np.zeros(len(self._vocab) if len(self._tail[0]) else 0, np.float64)
        if len(w_of_tok):
            w_of_tok[q_tok] = q_w
        skip = self._dead if self._stale else np.zeros(0, np.uint8)
        if allowed_rowids is not None:
            allowed = np.zeros(self._n, np.uint8)
            pos = self._positions(np.asarray(allowed_rowids, np.int64))
            allowed[pos[pos >= 0]] = 1
            skip = allowed ^ 1 if not self._stale else (allowed ^ 1) | self._dead
        want = self._positions(want_rows)
        found = np.flatnonzero(want >= 0) if len(want) else want
        acc, touched = self._buffers()
        out_doc = np.empty(k, np.int64)
        out_score = np.empty(k, np.float64)
        want_score = np.zeros(len(found), np.float64)
        n = _score(
            q_tok, q_w, q_ub, self._tok_ptr, self._post_doc, self._post_tf, self._post_dl, *self._tail, w_of_tok,
            skip, k1, b, avgdl, k, want[found], acc, touched, out_doc, out_score, want_score,
        )  # fmt: skip
        scores = np.zeros(len(want_rows), np.float64)
        scores[found] = want_score
        return list(zip(self._rowids[out_doc[:n]].tolist(), out_score[:n].tolist())), scores

    def _positions(self, rowids: np.ndarray) -> np.ndarray:
        """Document index of each rowid (-1 where not indexed)."""
        pos = np.searchsorted(self._rowids, rowids)
        ok = pos < self._n
        ok[ok] = self._rowids[pos[ok]] == rowids[ok]
        return np.where(ok, pos, -1)

    def _buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-thread scratch arrays sized for the documents (the kernel leaves the accumulators at zero)."""
        sc = self._scratch
        if getattr(sc, "size", -1) < self._n:
            sc.size = max(self._n, 1024) * 2
            sc.acc = np.zeros(sc.size, np.float64)
            sc.touched = np.zeros(sc.size, np.int32)
        return sc.acc, sc.touched


def _empty_tail() -> tuple[np.ndarray, ...]:
    return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, np.float32)


__all__ = ["BM25Index"]
