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

import re
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
_END = np.int64(2**62)  # after every document index

# ASCII words -> their FTS5 tokens, for the words of the documents (``BM25Index.learn_words``): a query term made
# of ASCII letters and digits is one token for the tokenizer (unicode61 splits ASCII only at other characters and
# folds its case; porter stems a token on its own), so its token is a function of the lower-cased word.
_ASCII_WORD = re.compile(r"[A-Za-z0-9]+")
WORDS_MAX = 500_000  # distinct words kept (~80 MB at most); words past it are tokenized by SQLite as before


@njit(cache=True)
def _kth_largest(score, n, k, heap):
    """The k-th largest of ``score[:n]`` (n >= k; a min-heap of size k)."""
    size = 0
    for i in range(n):
        s = score[i]
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
def _keep(doc, score, flag, n, rest, theta):
    """Keep the candidates that can still reach ``theta`` with ``rest`` more, and the flagged (wanted) ones,
    in order; returns their number."""
    nc = 0
    for i in range(n):
        if flag[i] != 0 or score[i] + rest >= theta:
            doc[nc] = doc[i]
            score[nc] = score[i]
            flag[nc] = flag[i]
            nc += 1
    return nc


@njit(cache=True, inline="always")
def _weight(s_tok, s_w, t):
    """The weight of token ``t`` in the query (``s_tok`` sorted, ``s_w`` their weights), 0 if absent."""
    lo, hi = 0, s_tok.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if s_tok[mid] < t:
            lo = mid + 1
        else:
            hi = mid
    return s_w[lo] if lo < s_tok.shape[0] and s_tok[lo] == t else 0.0


@njit(cache=True, nogil=True)
def _query(
    q_ids, df, max_tf, min_dl, live, total_len, k1, b, tok_ptr, post_doc, post_tf, post_dl, t_tok, t_doc, t_tf, t_dl,
    skip, rowids, k, want_rows, out_row, out_score, want_score
):  # fmt: skip
    """One query, from its token ids (``q_ids``, repeats counting as FTS5 counts them) to the rowids and scores
    of its top ``k`` (returns their number) and the scores of ``want_rows`` (rowids; 0 if not indexed, skipped
    or without a query token). The weights are idf (floored at 1e-6, as FTS5) times the occurrences; the
    bound of a token is its impact at its largest tf in its shortest document (no shorter than that tf)."""
    want_score[:] = 0.0
    m0 = q_ids.shape[0]
    q_tok = np.empty(m0, np.int64)
    cnt = np.zeros(m0, np.float64)
    m = 0
    for i in range(m0):
        t = q_ids[i]
        if df[t] <= 0:
            continue
        at = -1
        for jj in range(m):
            if q_tok[jj] == t:
                at = jj
                break
        if at >= 0:
            cnt[at] += 1.0
        else:
            q_tok[m] = t
            cnt[m] = 1.0
            m += 1
    if m == 0 or live == 0:
        return 0
    avgdl = max(total_len / live, 1e-9)
    q_w = np.empty(m, np.float64)
    q_ub = np.empty(m, np.float64)
    for i in range(m):
        t = q_tok[i]
        n = np.float64(df[t])
        idf = np.log((live - n + 0.5) / (n + 0.5))
        w = (1e-6 if idf <= 0 else idf) * cnt[i]
        q_w[i] = w
        # a document is at least as long as any of its term frequencies: tf/(tf + K(dl)) is largest at the
        # largest tf with dl = max(its shortest document, that tf)
        tf = max_tf[t]
        q_ub[i] = w * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * max(min_dl[t], tf) / avgdl))
    order = np.argsort(-q_ub, kind="mergesort")  # stable: equal bounds in query order
    q_tok, q_w, q_ub = q_tok[:m][order], q_w[order], q_ub[order]
    by_tok = np.argsort(q_tok)
    s_tok, s_w = q_tok[by_tok], q_w[by_tok]
    # the wanted rowids' document indices (sorted, distinct, indexed and not skipped)
    nw = want_rows.shape[0]
    pos = np.full(nw, -1, np.int64)
    nr = rowids.shape[0]
    for i in range(nw):
        p = np.searchsorted(rowids, want_rows[i])
        if p < nr and rowids[p] == want_rows[i] and not (skip.shape[0] > 0 and skip[p] != 0):
            pos[i] = p
    want = np.unique(pos[pos >= 0])
    ws = np.zeros(want.shape[0], np.float64)
    out_doc = np.empty(k, np.int64)
    n = _score(
        q_tok, q_w, q_ub, tok_ptr, post_doc, post_tf, post_dl, t_tok, t_doc, t_tf, t_dl, s_tok, s_w, skip, k1, b,
        avgdl, k, want, out_doc, out_score, ws,
    )  # fmt: skip
    for i in range(n):
        out_row[i] = rowids[out_doc[i]]
    for i in range(nw):
        if pos[i] >= 0:
            want_score[i] = ws[np.searchsorted(want, pos[i])]
    return n


@njit(cache=True, nogil=True)
def _score(
    q_tok, q_w, q_ub, tok_ptr, post_doc, post_tf, post_dl, t_tok, t_doc, t_tf, t_dl, s_tok, s_w, skip, k1, b, avgdl,
    k, want, out_doc, out_score, want_score
):  # fmt: skip
    """BM25 of the documents holding query tokens (except those with ``skip[d]``: deleted, or outside a
    filter; ``skip`` is empty when there are none), top ``k`` into out_doc/out_score (best first, equal scores
    by smaller document index = older rowid); returns the number of results. ``want``: documents (sorted,
    distinct, not skipped) whose scores are wanted too, into ``want_score`` (0 without a query token).

    ``q_tok``/``q_w``: the distinct query tokens, by decreasing ``q_ub`` (their most per document), weight =
    idf times occurrences in the query, as FTS5 scores each occurrence. ``tok_ptr``/``post_*``: the merged
    postings (CSR by token, documents increasing, each with its term frequency and document length); ``t_*``:
    postings added since (COO sorted by document, all after the merged ones), weighted through ``s_tok``/``s_w``
    (the query tokens sorted, their weights).

    The candidates are a list sorted by document (document, score so far, wanted flag) into which each token's
    postings are merged: sequential passes, no per-document array to reach at random (a query touches
    thousands of scattered documents, each a cache miss). MaxScore pruning: tokens are merged by decreasing
    bound (rarest first); once the k-th best score so far exceeds what the remaining tokens could add at most,
    no unseen document can enter the top k, so the remaining (common) tokens only complete the scores of the
    candidates that still can (galloping through their postings), and after each of them the k-th score and
    the smaller bound drop more candidates. Every score is summed in the same order (tail, then the tokens in
    query order), so equal documents score exactly equal, and stays exact (a differential test against FTS5).
    """
    use_skip = skip.shape[0] > 0
    c1 = k1 * (1.0 - b)
    c2 = k1 * b / avgdl
    m = q_tok.shape[0]
    n_tok = tok_ptr.shape[0] - 1
    cap = want.shape[0] + t_doc.shape[0] + 1  # + the merge's sentinel
    for j in range(m):
        if q_tok[j] < n_tok:
            cap += tok_ptr[q_tok[j] + 1] - tok_ptr[q_tok[j]]
    doc = np.empty(cap, np.int64)
    score = np.empty(cap, np.float64)
    flag = np.empty(cap, np.uint8)
    doc2 = np.empty(cap, np.int64)
    score2 = np.empty(cap, np.float64)
    flag2 = np.empty(cap, np.uint8)
    heap = np.empty(k, np.float64)
    # the tail's documents (all after the merged ones), merged with the wanted documents
    n = 0
    iw = 0
    p = 0
    nt = t_doc.shape[0]
    while p < nt or iw < want.shape[0]:
        d = t_doc[p] if p < nt else _END
        if iw < want.shape[0] and want[iw] <= d:
            dw = want[iw]
            iw += 1
            doc[n] = dw
            score[n] = 0.0
            flag[n] = 1
            n += 1
            if dw < d:
                continue
        s = 0.0
        while p < nt and t_doc[p] == d:
            w = _weight(s_tok, s_w, t_tok[p])
            if w != 0.0:
                tf = np.float64(t_tf[p])
                s += w * (k1 + 1.0) * tf / (tf + c1 + c2 * t_dl[p])
            p += 1
        if n > 0 and doc[n - 1] == d:  # a wanted one
            score[n - 1] = s
        elif s > 0.0 and not (use_skip and skip[d] != 0):
            doc[n] = d
            score[n] = s
            flag[n] = 0
            n += 1
    best = 0.0
    for i in range(n):
        best = max(best, score[i])
    rest = 0.0
    for j in range(m):
        rest += q_ub[j]
    theta = -np.inf
    j = 0
    while j < m:
        # the k-th score is at most the best one: computed (O(candidates)) only when it could stop the scan
        if j > 0 and n >= k and rest < best:
            theta = _kth_largest(score, n, k, heap)
            if rest < theta:
                break
        t = q_tok[j]
        wk = q_w[j] * (k1 + 1.0)
        rest -= q_ub[j]
        j += 1
        if t >= n_tok:
            continue  # a token first seen after the last merge: its postings are all in the tail
        # merge the token's postings into the candidates
        p, hi = tok_ptr[t], tok_ptr[t + 1]
        i = 0
        n2 = 0
        doc[n] = _END  # a sentinel after the candidates: the inner loop needs no bounds test (~7% faster)
        while p < hi:
            d = np.int64(post_doc[p])
            while doc[i] < d:
                doc2[n2] = doc[i]
                score2[n2] = score[i]
                flag2[n2] = flag[i]
                i += 1
                n2 += 1
            tf = np.float64(post_tf[p])
            s = wk * tf / (tf + c1 + c2 * post_dl[p])
            p += 1
            if doc[i] == d:
                s += score[i]
                doc2[n2] = d
                score2[n2] = s
                flag2[n2] = flag[i]
                i += 1
            elif use_skip and skip[d] != 0:
                continue
            else:
                doc2[n2] = d
                score2[n2] = s
                flag2[n2] = 0
            n2 += 1
            best = max(best, s)
        while i < n:
            doc2[n2] = doc[i]
            score2[n2] = score[i]
            flag2[n2] = flag[i]
            i += 1
            n2 += 1
        doc, doc2 = doc2, doc
        score, score2 = score2, score
        flag, flag2 = flag2, flag
        n = n2
    if j < m:
        # only the candidates that can still reach the k-th score (and the wanted ones) take the rest
        n = _keep(doc, score, flag, n, rest, theta)
        for jj in range(j, m):
            t = q_tok[jj]
            rest -= q_ub[jj]
            if t < n_tok:
                wk = q_w[jj] * (k1 + 1.0)
                lo, hi = tok_ptr[t], tok_ptr[t + 1]
                gallop = n * 8 < hi - lo
                for i in range(n):
                    d = doc[i]
                    if gallop:
                        lo = _gallop(post_doc, lo, hi, d)
                    else:
                        while lo < hi and post_doc[lo] < d:
                            lo += 1
                    if lo >= hi:
                        break
                    if post_doc[lo] == d:
                        tf = np.float64(post_tf[lo])
                        score[i] += wk * tf / (tf + c1 + c2 * post_dl[lo])
                        lo += 1
            if jj + 1 < m and n > k:
                theta = _kth_largest(score, n, k, heap)
                n = _keep(doc, score, flag, n, rest, theta)
    # wanted scores (flagged, in document order as ``want``); top k of the matches: a heap with the worst
    # (lowest score, then larger index) at the root
    iw = 0
    size = 0
    for i in range(n):
        d = doc[i]
        s = score[i]
        if flag[i] != 0:
            want_score[iw] = s
            iw += 1
        if not s > 0.0:
            continue
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
    """FTS5's tokenization of arbitrary texts, through a scratch in-memory FTS5 table with the same tokenizer.

    A batch of more than :data:`SMALL_BATCH` characters goes through a scratch table of its own, dropped after:
    FTS5's table of pending terms grows to the most distinct terms one transaction held and never shrinks, and
    every later transaction walks all of it (after one batch of 10,000 words each query's tokenization took
    ~330 us instead of ~27)."""

    SMALL_BATCH = 4096

    def __init__(self) -> None:
        self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self._db.execute(f"CREATE VIRTUAL TABLE s USING fts5(body, tokenize='{fulltext.TOKENIZER}')")
        self._db.execute("CREATE VIRTUAL TABLE sv USING fts5vocab(s, 'instance')")
        self._lock = threading.Lock()

    def tokens(self, bodies: Sequence[str]) -> list[list[str]]:
        """Each text's tokens in order (texts already transformed by ``fulltext.body``)."""
        if sum(map(len, bodies)) > self.SMALL_BATCH:
            once = _Tokenizer()
            try:
                return once._tokens(bodies)
            finally:
                once._db.close()
        return self._tokens(bodies)

    def _tokens(self, bodies: Sequence[str]) -> list[list[str]]:
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
        self.tokenizer = _Tokenizer()
        self._term_tokens: dict[str, list[str]] = {}  # query term -> its FTS5 tokens (a cache)
        self._words: dict[str, str] = {}  # lower-case ASCII word of a document -> its FTS5 token

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
            for first in range(0, len(rowids), 20_000):
                if len(self._words) >= WORDS_MAX:
                    break
                rows = db.execute(
                    "SELECT text FROM docs WHERE rowid >= ? AND rowid <= ? AND text IS NOT NULL",
                    [int(rowids[first]), int(rowids[min(first + 20_000, len(rowids)) - 1])],
                )
                self.learn_words([r[0] for r in rows])
        return self

    def learn_words(self, texts: Sequence[str]) -> None:
        """Tokenize the ASCII words of ``texts`` not seen before (one SQLite call), so that query terms that
        are words of the documents need no tokenization (:meth:`query_tokens`). A word's token is the one
        FTS5 makes of that word alone, whatever text it came from, so the map is exact by construction."""
        room = WORDS_MAX - len(self._words)
        if room <= 0:
            return
        words = self._words
        new = [w for w in set(_ASCII_WORD.findall("\n".join(texts).lower())) if w not in words][:room]
        if new:
            words.update((w, ts[0]) for w, ts in zip(new, self.tokenizer.tokens(new)) if len(ts) == 1)

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
        self.learn_words([t for _, t in rows])

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
        cache, words = self._term_tokens, self._words
        # an ASCII term is one word: a word of the documents has its token known without asking SQLite
        missing = [t for t in dict.fromkeys(terms) if t not in cache and not (t.isascii() and t.lower() in words)]
        if missing:
            if len(cache) > 100_000:
                cache.clear()
            cache.update(zip(missing, self.tokenizer.tokens([fulltext.body(t) for t in missing])))
        out = []
        for t in terms:
            ts = cache.get(t)
            if ts is None:
                out.append(words[t.lower()])
            elif len(ts) > 1:
                return None
            else:
                out += ts
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
        vocab = self._vocab
        ids = [vocab[t] for t in tokens if t in vocab]
        want_score = np.zeros(len(want_rows), np.float64)
        if not ids or not self._live:
            return [], want_score
        skip = self._dead if self._stale else _NO_SKIP
        if allowed_rowids is not None:
            allowed = np.zeros(self._n, np.uint8)
            pos = self._positions(np.asarray(allowed_rowids, np.int64))
            allowed[pos[pos >= 0]] = 1
            skip = allowed ^ 1 if not self._stale else (allowed ^ 1) | self._dead
        out_row = np.empty(k, np.int64)
        out_score = np.empty(k, np.float64)
        n = _query(
            np.array(ids, np.int64), self._df, self._max_tf, self._min_dl, self._live, self._total_len, self.k1,
            self.b, self._tok_ptr, self._post_doc, self._post_tf, self._post_dl, *self._tail, skip, self._rowids, k,
            want_rows, out_row, out_score, want_score,
        )  # fmt: skip
        return list(zip(out_row[:n].tolist(), out_score[:n].tolist())), want_score

    def _positions(self, rowids: np.ndarray) -> np.ndarray:
        """Document index of each rowid (-1 where not indexed)."""
        pos = np.searchsorted(self._rowids, rowids)
        ok = pos < self._n
        ok[ok] = self._rowids[pos[ok]] == rowids[ok]
        return np.where(ok, pos, -1)


_NO_SKIP = np.zeros(0, np.uint8)


def _empty_tail() -> tuple[np.ndarray, ...]:
    return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, np.float32)


__all__ = ["BM25Index"]
