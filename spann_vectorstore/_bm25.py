"""In-memory BM25 ranking over the tokens of the FTS5 text index (``fulltext``), scored by a Numba kernel.

FTS5 ranks an OR query by calling ``bm25()`` for every matching row: a query with one common word ("for",
"the") matches half of a 100k-document collection and took ~0.5 s. This module keeps the same postings in
memory (term -> documents with term frequencies, document -> terms) and scores only the query's postings in
a kernel, with FTS5's formula (k1 = 1.2, b = 0.75, idf = ln((N - n + 0.5) / (n + 0.5)) floored at 1e-6), so
the ranking equals FTS5's (a differential test checks it) at a fraction of the cost.

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

K1 = 1.2
B = 0.75


@njit(cache=True, inline="always")
def _impact(w, tf, dl, avgdl):
    return w * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * dl / avgdl))


@njit(cache=True, inline="always")
def _add(d, s, acc, stamp, stamp_val, touched, nt):
    """Add ``s`` to document ``d``'s score, starting it (and listing it as touched) on its first token;
    returns the new number of touched documents."""
    if stamp[d] != stamp_val:
        stamp[d] = stamp_val
        acc[d] = 0.0
        touched[nt] = d
        nt += 1
    acc[d] += s
    return nt


@njit(cache=True)
def _max_score(acc, touched, nt):
    best = -np.inf
    for i in range(nt):
        best = max(best, acc[touched[i]])
    return best


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


@njit(cache=True, nogil=True)
def _score(
    q_tok, q_w, q_ub, tok_ptr, post_doc, post_tf, t_tok, t_doc, t_tf, w_of_tok, doclen, avgdl, dead, allowed, k,
    acc, stamp, stamp_val, touched, out_doc, out_score
):  # fmt: skip
    """BM25 of the live (and allowed) documents holding query tokens, top ``k`` into out_doc/out_score (best
    first, equal scores by smaller document index = older rowid); returns the number of results.

    ``q_tok``/``q_w``: the distinct query tokens, by decreasing weight (idf times occurrences in the query, as
    FTS5 scores each occurrence). ``tok_ptr``/``post_*``: the merged postings (CSR by token, documents
    increasing); ``t_*``: postings added since (COO; a document's postings are all in one of the two), weighted
    through ``w_of_tok`` (token -> weight, 0 if not in the query). ``acc`` float64, ``stamp`` int32 and
    ``touched`` (n,) scratch.

    MaxScore pruning: tokens are scanned rarest first; once the k-th best score so far exceeds what the
    remaining tokens could add at most (weight x (k1 + 1) each), no unseen document can enter the top k,
    and the remaining (common) tokens only complete the scores of the documents that still can, by binary
    search in their postings. Scores stay exact (a differential test compares them with FTS5's bm25()).
    """
    use_mask = allowed.shape[0] > 0
    nt = 0
    for p in range(t_tok.shape[0]):
        w = w_of_tok[t_tok[p]]
        d = t_doc[p]
        if w == 0.0 or dead[d] != 0 or (use_mask and allowed[d] == 0):
            continue
        nt = _add(d, _impact(w, t_tf[p], doclen[d], avgdl), acc, stamp, stamp_val, touched, nt)
    m = q_tok.shape[0]
    rest = 0.0
    for j in range(m):
        rest += q_ub[j]
    heap = np.empty(k, np.float64)
    theta = -np.inf
    j = 0
    while j < m:
        # the k-th score is at most the best one: compute it (O(touched)) only when it could stop the scan
        if j > 0 and nt >= k and rest < _max_score(acc, touched, nt):
            theta = _kth_largest(acc, touched, nt, k, heap)
            if rest < theta:
                break
        t = q_tok[j]
        w = q_w[j]
        rest -= q_ub[j]
        j += 1
        if t + 1 >= tok_ptr.shape[0]:
            continue  # a token first seen after the last merge: its postings are all in the tail
        for p in range(tok_ptr[t], tok_ptr[t + 1]):
            d = post_doc[p]
            if dead[d] != 0 or (use_mask and allowed[d] == 0):
                continue
            nt = _add(d, _impact(w, post_tf[p], doclen[d], avgdl), acc, stamp, stamp_val, touched, nt)
    if j < m:
        # the documents that can still reach the k-th score; the others are dropped (unstamped)
        nc = 0
        for i in range(nt):
            d = touched[i]
            if acc[d] + rest >= theta:
                touched[nc] = d
                nc += 1
            else:
                stamp[d] = 0
        nt = nc
        for jj in range(j, m):
            t = q_tok[jj]
            w = q_w[jj]
            if t + 1 >= tok_ptr.shape[0]:
                continue
            lo0, hi0 = tok_ptr[t], tok_ptr[t + 1]
            if nt * 16 < hi0 - lo0:  # few candidates: binary search each in the token's postings
                for i in range(nt):
                    d = touched[i]
                    lo, hi = lo0, hi0
                    while lo < hi:
                        mid = (lo + hi) // 2
                        if post_doc[mid] < d:
                            lo = mid + 1
                        else:
                            hi = mid
                    if lo < hi0 and post_doc[lo] == d:
                        acc[d] += _impact(w, post_tf[lo], doclen[d], avgdl)
            else:  # many: one pass over the postings, adding to the candidates only
                for p in range(lo0, hi0):
                    d = post_doc[p]
                    if stamp[d] == stamp_val:
                        acc[d] += _impact(w, post_tf[p], doclen[d], avgdl)
    # top k: a heap with the worst (lowest score, then larger index) at the root
    size = 0
    for i in range(nt):
        d = touched[i]
        s = acc[d]
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

    def __init__(self) -> None:
        self._vocab: dict[str, int] = {}
        self._df = np.zeros(0, np.int64)  # live documents per token
        self._max_tf = np.zeros(0, np.float64)
        self._min_dl = np.zeros(0, np.float64)
        self._rowids = np.zeros(0, np.int64)  # document index -> rowid (increasing)
        self._doclen = np.zeros(0, np.float64)
        self._dead = np.zeros(0, np.uint8)
        self._live = 0
        self._total_len = 0.0  # tokens of the live documents
        # merged postings (CSR by token), postings added since (COO), forward index (chunks: first document,
        # offsets per document, tokens)
        self._tok_ptr = np.zeros(1, np.int64)
        self._post_doc = np.zeros(0, np.int32)
        self._post_tf = np.zeros(0, np.float32)
        self._added: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._tail = (np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32))
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
    def from_db(cls, db: sqlite3.Connection) -> BM25Index:
        """Build from the collection's FTS5 table (its own tokens, read through an fts5vocab instance table)."""
        self = cls()
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
        self._added.append((ptok, (pdoc + base).astype(np.int32), tf))
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
        self._tok_ptr = np.concatenate([[0], np.cumsum(np.bincount(tok, minlength=len(self._vocab)))]).astype(np.int64)
        self._added = []
        self._tail = (np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32))

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

    def search(self, tokens: Sequence[str], k: int, allowed_rowids: np.ndarray | None) -> list[tuple[int, float]]:
        """(rowid, BM25 score) best first for the OR of ``tokens``, among ``allowed_rowids`` when given."""
        counts: dict[int, int] = {}
        for t in tokens:
            i = self._vocab.get(t)
            if i is not None and self._df[i] > 0:
                counts[i] = counts.get(i, 0) + 1
        if not counts or not self._live:
            return []
        q_tok = np.fromiter(counts, np.int64, len(counts))
        df = self._df[q_tok].astype(np.float64)
        idf = np.log((self._live - df + 0.5) / (df + 0.5))
        q_w = np.where(idf <= 0, 1e-6, idf) * np.fromiter(counts.values(), np.float64, len(counts))
        # the most a token can add to one document's score (its largest tf in its shortest document), and the
        # tokens by decreasing bound for the kernel's pruning
        avgdl = max(self._total_len / self._live, 1e-9)
        mtf = self._max_tf[q_tok]
        q_ub = q_w * mtf * (K1 + 1.0) / (mtf + K1 * (1.0 - B + B * self._min_dl[q_tok] / avgdl))
        order = np.argsort(-q_ub, kind="stable")
        q_tok, q_w, q_ub = q_tok[order], q_w[order], q_ub[order]
        w_of_tok = np.zeros(len(self._vocab) if len(self._tail[0]) else 0, np.float64)
        if len(w_of_tok):
            w_of_tok[q_tok] = q_w
        allowed = np.zeros(0, np.uint8)
        if allowed_rowids is not None:
            allowed = np.zeros(self._n, np.uint8)
            pos = np.searchsorted(self._rowids, allowed_rowids)
            ok = pos < self._n
            allowed[pos[ok][self._rowids[pos[ok]] == allowed_rowids[ok]]] = 1
        acc, stamp, touched, val = self._buffers()
        out_doc = np.empty(k, np.int64)
        out_score = np.empty(k, np.float64)
        n = _score(
            q_tok, q_w, q_ub, self._tok_ptr, self._post_doc, self._post_tf, *self._tail, w_of_tok, self._doclen, avgdl,
            self._dead, allowed, k, acc, stamp, val, touched, out_doc, out_score,
        )  # fmt: skip
        return [(int(self._rowids[d]), float(s)) for d, s in zip(out_doc[:n], out_score[:n])]

    def _buffers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.int32]:
        """Per-thread scratch arrays sized for the documents (stamped, so never cleared per query)."""
        sc = self._scratch
        if getattr(sc, "size", -1) < self._n:
            sc.size = max(self._n, 1024) * 2
            sc.acc = np.zeros(sc.size, np.float64)
            sc.stamp = np.zeros(sc.size, np.int32)
            sc.touched = np.zeros(sc.size, np.int64)
            sc.val = 0
        sc.val += 1
        if sc.val >= 2**31 - 1:
            sc.stamp[:] = 0
            sc.val = 1
        return sc.acc, sc.stamp, sc.touched, np.int32(sc.val)


__all__ = ["BM25Index"]
