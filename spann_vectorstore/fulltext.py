"""Full-text search (SQLite FTS5, BM25) beside the dense index, and the fusion of the two result lists.

The text index is an FTS5 table ``docs_fts`` in the collection's own SQLite database, written in the same
transaction as the documents (so it is exactly as durable and as current as they are). It is contentless
(``content=''``): the texts live once, in ``docs``; deleting a row re-derives the indexed body from the text
being deleted (FTS5's ``'delete'`` command), and a change of :data:`VERSION` (the body transform or the
tokenizer) rebuilds the table on the next open.

Tokenizer: ``porter unicode61 remove_diacritics 2`` (Unicode word boundaries, case and diacritics folded,
English stemming). Scripts written without spaces between words (Han, Hiragana, Katakana, Hangul, Thai,
Lao, Khmer, Myanmar) would otherwise give one token per sentence, so :func:`body` puts each of their
characters in a token of its own and :func:`match_query` turns a run of them in a query into a phrase: a
Chinese or Japanese word is found wherever its characters appear consecutively (substring semantics).

Query text is data: :func:`match_query` keeps only word characters of the user's text and quotes every term,
so quotes, ``AND``/``OR``/``NOT``/``NEAR``, ``*``, ``^``, ``column:``, parentheses and emoji never reach FTS5's
query syntax. The terms are OR-ed for ranking (BM25 rewards documents matching more and rarer terms) and
AND-ed for the ``$match`` filter.
"""

from __future__ import annotations

import functools
import math
import re
import sqlite3
from collections.abc import Sequence

import numpy as np
from numba import njit

VERSION = 1
TOKENIZER = "porter unicode61 remove_diacritics 2"
TABLE = "docs_fts"
MAX_TERMS = 64  # terms kept from one query (a pasted page of text would otherwise OR hundreds of terms)
FUSIONS = ("dbsf", "relative", "rrf")
RRF_C = 60

# scripts without spaces between words: one token per character
_NOSPACE = (
    "\u0e00-\u0eff"  # Thai, Lao
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs (+ extension A, compatibility)
    "\uac00-\ud7af"  # Hangul syllables
    "\uff66-\uff9f"  # half-width Katakana
    "\U00020000-\U0003134f"  # CJK extensions B-G
)
_NOSPACE_CHAR = re.compile(f"([{_NOSPACE}])")
_TERM = re.compile(r"[^\W_]+")  # runs of letters and digits (unicode61's token characters, near enough)


class FullTextUnavailableError(RuntimeError):
    """Text search was asked for but this Python's SQLite has no FTS5 (dense search still works)."""


@functools.cache
def available() -> bool:
    """Whether this Python's SQLite has FTS5."""
    db = sqlite3.connect(":memory:")
    try:
        db.execute(f"CREATE VIRTUAL TABLE t USING fts5(body, content='', tokenize='{TOKENIZER}')")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()


def unavailable_error() -> FullTextUnavailableError:
    return FullTextUnavailableError(
        f"text search needs SQLite's FTS5 extension, which this Python's sqlite3 (SQLite {sqlite3.sqlite_version})"
        " lacks; dense search works. Use a Python whose SQLite has FTS5 (the python.org and most Linux builds do);"
        " the text index is built on the next open there."
    )


def body(text: str) -> str:
    """What is indexed for ``text``: the text itself, with characters of space-less scripts set apart."""
    return _NOSPACE_CHAR.sub(r" \1 ", text)


def terms(text: str) -> list[str]:
    """The query terms of ``text``: runs of letters and digits (a run in a space-less script becomes the
    phrase of its characters), de-duplicated in order, at most :data:`MAX_TERMS`."""
    if not isinstance(text, str):
        raise TypeError(f"query text must be a string, got {type(text).__name__}")
    found = _TERM.findall(text)
    if _NOSPACE_CHAR.search(text) is None:  # the common case: no term needs splitting into characters
        return list(dict.fromkeys(found))[:MAX_TERMS]
    out = dict.fromkeys(" ".join(body(t).split()) for t in found)
    return list(out)[:MAX_TERMS]


def match_query(text: str, *, all_terms: bool = False) -> str | None:
    """An FTS5 MATCH expression for user text, every term quoted (never an operator, never a syntax error);
    ``None`` when the text has no terms (empty or punctuation only). Terms are OR-ed, or AND-ed with
    ``all_terms``."""
    found = terms(text)
    if not found:
        return None
    return (" AND " if all_terms else " OR ").join('"' + t.replace('"', '""') + '"' for t in found)


def create(db: sqlite3.Connection) -> None:
    db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {TABLE} USING fts5(body, content='', tokenize='{TOKENIZER}')")


def index_rows(db: sqlite3.Connection, rows: Sequence[tuple[int, str | None]]) -> None:
    """Index ``(rowid, text)`` pairs (texts that are None are not indexed)."""
    db.executemany(f"INSERT INTO {TABLE} (rowid, body) VALUES (?, ?)", [(r, body(t)) for r, t in rows if t])


def unindex_rows(db: sqlite3.Connection, rows: Sequence[tuple[int, str | None]]) -> None:
    """Remove ``(rowid, text)`` pairs from the index; ``text`` must be what was indexed for that row."""
    db.executemany(
        f"INSERT INTO {TABLE} ({TABLE}, rowid, body) VALUES ('delete', ?, ?)", [(r, body(t)) for r, t in rows if t]
    )


def rebuild(db: sqlite3.Connection, *, progress: bool = False, batch: int = 5000) -> None:
    """(Re)build the text index from every row of ``docs``; the caller holds a write transaction."""
    db.execute(f"DROP TABLE IF EXISTS {TABLE}")
    create(db)
    total = int(db.execute("SELECT count(*) FROM docs WHERE text IS NOT NULL").fetchone()[0])
    bar = None
    if progress and total:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="spann: text index", unit="doc", leave=False)
    last = 0
    while True:
        rows = db.execute(
            "SELECT rowid, text FROM docs WHERE rowid > ? AND text IS NOT NULL ORDER BY rowid LIMIT ?", [last, batch]
        ).fetchall()
        if not rows:
            break
        index_rows(db, rows)
        last = rows[-1][0]
        if bar is not None:
            bar.update(len(rows))
    if bar is not None:
        bar.close()


# ----------------------------------------------------------------------------------------------------------
# fusion
# ----------------------------------------------------------------------------------------------------------
def _dbsf(scores: np.ndarray) -> np.ndarray:
    """Distribution-based score fusion (as Qdrant's): the list's mean - 3 and + 3 standard deviations mapped
    to 0 and 1. Not clipped: a clear outlier at the top keeps its lead (clipping it to 1 cost 0.02 MRR@10 on
    ../shared/data/hybrid), so a fused score can exceed 1 slightly."""
    m, s = float(scores.mean()), float(scores.std())
    if not s > 0:
        return np.ones_like(scores)
    return (scores - (m - 3 * s)) / (6 * s)


def _relative(scores: np.ndarray) -> np.ndarray:
    """Relative score fusion (LlamaIndex's, Weaviate's): min-max of the list to [0, 1]."""
    lo, hi = float(scores.min()), float(scores.max())
    if not hi > lo:
        return np.ones_like(scores)
    return (scores - lo) / (hi - lo)


def fuse(
    dense: Sequence[tuple[int, float]],
    text: Sequence[tuple[int, float]],
    *,
    fusion: str = "dbsf",
    alpha: float = 0.5,
    higher_better: bool = True,
) -> list[tuple[int, float]]:
    """Fuse two ranked lists of ``(id, score)`` (best first) into one, best first, with the fused score.

    ``alpha`` weighs the dense list (1 = dense only, 0 = text only; LlamaIndex's meaning). ``"dbsf"`` and
    ``"relative"`` normalise each list's scores (``higher_better=False``: the dense scores are distances)
    and add them weighted (an id missing from a list gets 0 from it); ``"rrf"`` adds
    ``weight / (60 + rank)`` (reciprocal rank fusion, ranks from 1, weights 2 alpha and 2 (1 - alpha) so
    that 0.5 is plain RRF). Ties in the fused score keep the dense list's order, then the text list's.
    """
    check_fusion(fusion, alpha)
    acc: dict[int, float] = {}
    for weight, hits, sign in ((alpha, dense, 1.0 if higher_better else -1.0), (1.0 - alpha, text, 1.0)):
        if not hits or weight == 0:
            for i, _ in hits:
                acc.setdefault(i, 0.0)
            continue
        if fusion == "rrf":
            contrib = 2 * weight / (RRF_C + np.arange(1, len(hits) + 1))
        else:
            norm = _dbsf if fusion == "dbsf" else _relative
            contrib = weight * norm(sign * np.array([s for _, s in hits], np.float64))
        for (i, _), c in zip(hits, contrib):
            acc[i] = acc.get(i, 0.0) + float(c)
    order = {i: n for n, i in enumerate(dict.fromkeys([i for i, _ in dense] + [i for i, _ in text]))}
    return sorted(acc.items(), key=lambda kv: (-kv[1], order[kv[0]]))


def fuse_pool(
    dense: np.ndarray, text: np.ndarray, *, fusion: str = "dbsf", alpha: float = 0.5, higher_better: bool = True
) -> np.ndarray:
    """Fused scores of a candidate pool scored by both legs: ``dense[i]`` and ``text[i]`` are candidate i's
    dense score (a distance when not ``higher_better``) and BM25 score (0 without a matching word).

    Each leg is normalised over the whole pool (``"dbsf"``: its mean -+ 3 standard deviations to 0 and 1;
    ``"relative"``: min-max; ``"rrf"``: ``2 weight / (60 + rank)`` with ranks in the pool by that leg, ties
    in pool order, the text leg ranking only the documents with a matching word) and the two are added with
    weights ``alpha`` and ``1 - alpha``. Unlike :func:`fuse`, no
    candidate gets a made-up 0 from a leg whose top list it missed: it gets that leg's actual score, and
    the statistics of both legs are taken over the same documents (measured on ../shared/data/hybrid:
    MRR@10 +0.01 over :func:`fuse` of the two top-50 lists, NOTES.md session 6)."""
    check_fusion(fusion, alpha)
    sign = 1.0 if higher_better else -1.0
    return _pool(np.asarray(dense, np.float64), np.asarray(text, np.float64), FUSIONS.index(fusion), alpha, sign)


@njit(cache=True)
def _pool(dense, text, fusion, alpha, sign):
    """:func:`fuse_pool` (``fusion`` an index into :data:`FUSIONS`): a few microseconds for ~50 candidates."""
    n = dense.shape[0]
    out = np.zeros(n, np.float64)
    for leg in range(2):
        weight = alpha if leg == 0 else 1.0 - alpha
        if weight == 0 or n == 0:
            continue
        x = dense * sign if leg == 0 else text
        if fusion == 2:  # rrf: ranks in the pool, ties in pool order; BM25 ranks only the documents it matches
            order = np.argsort(-x, kind="mergesort")
            for r in range(n):
                if leg == 0 or x[order[r]] > 0:
                    out[order[r]] += 2 * weight / (RRF_C + r + 1)
        elif fusion == 0:  # dbsf: mean -+ 3 sd to 0 and 1 (a leg without spread: 1, as _dbsf)
            m = x.mean()
            sd = np.sqrt(((x - m) ** 2).mean())
            for i in range(n):
                out[i] += weight * ((x[i] - (m - 3 * sd)) / (6 * sd) if sd > 0 else 1.0)
        else:  # relative: min-max
            lo, hi = x.min(), x.max()
            for i in range(n):
                out[i] += weight * ((x[i] - lo) / (hi - lo) if hi > lo else 1.0)
    return out


def check_fusion(fusion: str, alpha: float) -> None:
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; expected one of {FUSIONS}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0 or math.isnan(alpha):
        raise ValueError(f"alpha must be a number in [0, 1] (1 = dense only, 0 = text only), got {alpha!r}")
