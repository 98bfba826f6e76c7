"""Benchmark readers beside a writer (issue 16): search QPS of 1, 2 and 4 read-only reader processes while a
writer process ingests, against one process doing both; resident memory per reader; freshness lag.

Run from the repository root::

    python benchmarks/bench_readers.py            # 100k documents of ../shared/data, 15 s per phase
    python benchmarks/bench_readers.py --quick    # 20k documents, 6 s per phase

Setup: a persistent Collection of the first ``n - stream`` base vectors (``../shared/data``: 384-d MiniLM
embeddings, inner product) with their texts, closed (so a snapshot exists). The last ``stream`` vectors are the
ingest stream: the writer adds them in batches of ``--batch`` at ``--rate`` documents per second (paced, so
every phase gets the same write load), cycling through them as upserts once exhausted.

Phases, each ``--seconds`` long after every process is ready (imports done, collection open, 200 warm-up
queries run):

* ``both``: one process holds the writer and runs the ingest on a thread while its main thread searches
  (what one process doing both gets);
* ``readers-R`` for R in ``--readers`` (1, 2, 4): a writer process ingests while R processes, each a
  ``Collection(path, read_only=True)``, search.

Searches: single queries from ``queries.npy``, k=10, one after another, numba and OpenBLAS at 1 thread in every
process. Reported per phase: total and per-process QPS, p50/p99 latency (each search includes the reader's
freshness check and catch-up with the writer's commits), and the writes acknowledged.

Freshness lag: the writer logs the monotonic time of every acknowledged add (CLOCK_MONOTONIC is one clock
for all processes); each reader records the start and end of every search. Every search reflects every write
acknowledged before it began (the guarantee, tested in tests/test_readers.py), so a write is visible to a
reader at the end of the reader's first search that began after its acknowledgement: lag = that end - the
acknowledgement, per (write, reader), p50/p99. As a spot check, every 50th search of a reader looks up the
newest acknowledged document by id (``filter={"$id": ...}``) and counts a miss if it is absent (expected 0).

Memory (Linux ``/proc/<pid>/smaps_rollup``): per reader, resident (RSS), proportional (PSS) and private
(USS: Private_Clean + Private_Dirty) memory before the collection is opened (interpreter, numpy, numba,
kernels loaded), after opening it and running the warm-up queries, and at the end of the phase. The index
memory of a reader is its growth from before the open to after the warm-up; the issue's target is that each
reader after the first adds at most 0.1x the first one's index memory (i.e. that most of it is shared page
cache: the memory-mapped snapshot files).

Output: a table on stdout and ``benchmarks/results/readers-<YYYYmmdd-HHMMSS>.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("SPANN_COLD_START", "compile")  # steady-state search: no exact answers during compiles

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT.parent / "shared" / "data"
K = 10


def memory() -> dict[str, int]:
    """This process's memory in bytes (from /proc/self/smaps_rollup): rss, pss, uss (private: pages mapped by
    this process only, file-backed ones included), shared, anon (anonymous memory: never shared with other
    readers) and file (rss - anon: pages of mapped files, shared through the page cache)."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[-1] == "kB":
                    out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    except OSError:
        return {}
    return {
        "rss": out.get("Rss", 0),
        "pss": out.get("Pss", 0),
        "uss": out.get("Private_Clean", 0) + out.get("Private_Dirty", 0),
        "shared": out.get("Shared_Clean", 0) + out.get("Shared_Dirty", 0),
        "anon": out.get("Anonymous", 0),
        "file": out.get("Rss", 0) - out.get("Anonymous", 0),
    }


def load_data(n: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    xb = np.load(DATA_DIR / "base.npy", mmap_mode="r")[:n]
    xq = np.load(DATA_DIR / "queries.npy")
    texts = (DATA_DIR / "texts.txt").read_text().splitlines()[:n]
    return np.ascontiguousarray(xb, dtype=np.float32), texts, np.ascontiguousarray(xq, dtype=np.float32)


# ----------------------------------------------------------------------------------------------------------
# worker roles (run as subprocesses of this script)
# ----------------------------------------------------------------------------------------------------------
def _single_thread() -> None:
    import numba
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(1)
    threadpool_limits(1)


def _warm_kernels() -> None:
    """Load the compiled kernels (numba cache) before measuring memory, so they count as interpreter."""
    from spann_vectorstore import Collection

    rng = np.random.default_rng(0)
    with Collection(metric="ip", index_threshold=256) as c:
        c.add(rng.standard_normal((300, 384)).astype(np.float32), texts=["warm up"] * 300)
        c.search(rng.standard_normal(384).astype(np.float32), k=K)


def _ingest(col: Any, args: dict, stop: Path, acks: list) -> None:
    xb, texts, _ = load_data(args["n"])
    stream = np.arange(args["n"] - args["stream"], args["n"])
    batch, rate = args["batch"], args["rate"]
    t0, j = time.monotonic(), 0
    while not stop.exists():
        rows = stream[np.arange(j, j + batch) % len(stream)]
        col.add(xb[rows], texts=[texts[r] for r in rows], ids=[f"s{r}" for r in rows])
        acks.append((time.monotonic(), f"s{rows[-1]}"))
        j += batch
        wait = t0 + j / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)


def _search_loop(col: Any, xq: np.ndarray, stop: Path, acks_file: Path | None, acks: list | None) -> dict:
    starts, ends, misses, probes = [], [], 0, 0
    i = 0
    while not stop.exists():
        if i % 50 == 49:  # spot check: the newest acknowledged document is there
            newest = (acks[-1] if acks else None) if acks is not None else _newest_ack(acks_file)
            if newest is not None:
                probes += 1
                if not col.search(xq[0], k=1, filter={"$id": newest[1]}):
                    misses += 1
        t = time.monotonic()
        col.search(xq[i % len(xq)], k=K)
        starts.append(t)
        ends.append(time.monotonic())
        i += 1
    return {"starts": starts, "ends": ends, "probe_misses": misses, "probes": probes}


def _newest_ack(path: Path) -> tuple[float, str] | None:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 200))
            lines = f.read().decode().splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        parts = line.split()
        if len(parts) == 2:
            try:
                return float(parts[0]), parts[1]
            except ValueError:
                continue
    return None


def role_writer(args: dict) -> None:
    from spann_vectorstore import Collection

    work = Path(args["work"])
    stop = work / "stop"
    col = Collection(args["path"])
    (work / "writer.ready").write_text("1")
    while not (work / "go").exists():
        time.sleep(0.01)
    acks: list = []
    log = open(work / "acks.txt", "a")

    class Logged(list):
        def append(self, item):
            super().append(item)
            log.write(f"{item[0]!r} {item[1]}\n")
            log.flush()

    acks = Logged()
    _ingest(col, args, stop, acks)
    log.close()
    col.close()
    (work / "writer.json").write_text(json.dumps({"acks": len(acks)}))


def role_reader(args: dict) -> None:
    _single_thread()
    _warm_kernels()
    from spann_vectorstore import Collection

    work, name = Path(args["work"]), args["name"]
    _, _, xq = load_data(1)
    before = memory()
    col = Collection(args["path"], read_only=True)
    for q in xq[:200]:
        col.search(q, k=K)
    after_open = memory()
    (work / f"{name}.ready").write_text("1")
    while not (work / "go").exists():
        time.sleep(0.01)
    res = _search_loop(col, xq, work / "stop", work / "acks.txt", None)
    res["memory"] = {"before_open": before, "after_open": after_open, "end": memory()}
    res["swaps"] = col.stats()["follower"]["snapshots_swapped_in"]
    col.close()
    (work / f"{name}.json").write_text(json.dumps(res))


def role_both(args: dict) -> None:
    _single_thread()
    _warm_kernels()
    from spann_vectorstore import Collection

    work = Path(args["work"])
    _, _, xq = load_data(1)
    before = memory()
    col = Collection(args["path"])
    for q in xq[:200]:
        col.search(q, k=K)
    after_open = memory()
    (work / "both.ready").write_text("1")
    while not (work / "go").exists():
        time.sleep(0.01)
    acks: list = []
    stop = work / "stop"
    writer = threading.Thread(target=_ingest, args=(col, args, stop, acks))
    writer.start()
    res = _search_loop(col, xq, stop, None, acks)
    writer.join()
    res["memory"] = {"before_open": before, "after_open": after_open, "end": memory()}
    res["acks"] = [a[0] for a in acks]
    col.close()
    (work / "both.json").write_text(json.dumps(res))


# ----------------------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------------------
def _spawn(role: str, args: dict) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "integrations"), env.get("PYTHONPATH", "")])
    return subprocess.Popen([sys.executable, __file__, "--role", role, json.dumps(args)], env=env)


def _wait_files(files: list[Path], procs: list[subprocess.Popen], timeout: float = 1200) -> None:
    end = time.monotonic() + timeout
    while not all(f.exists() for f in files):
        for p in procs:
            if p.poll() is not None and p.returncode != 0:
                raise RuntimeError(f"a worker failed (exit {p.returncode})")
        if time.monotonic() > end:
            raise RuntimeError(f"timed out waiting for {[f.name for f in files if not f.exists()]}")
        time.sleep(0.05)


def _lags(acks: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> list[float]:
    """For each acknowledgement: end of the first search that began after it, minus the acknowledgement."""
    pos = np.searchsorted(starts, acks, side="right")
    ok = pos < len(starts)
    return (ends[pos[ok]] - acks[ok]).tolist()


def _summary(res: dict, seconds: float) -> dict:
    st, en = np.array(res["starts"]), np.array(res["ends"])
    lat = (en - st) * 1e3
    return {
        "searches": len(st),
        "qps": len(st) / seconds,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
        "probe_misses": res["probe_misses"],
        "probes": res["probes"],
    }


def run_phase(name: str, readers: int, common: dict, seconds: float) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"bench-readers-{name}-"))
    args = {**common, "work": str(work)}
    procs, ready = [], []
    try:
        if readers == 0:
            procs.append(_spawn("both", args))
            ready.append(work / "both.ready")
        else:
            procs.append(_spawn("writer", args))
            ready.append(work / "writer.ready")
            _wait_files(ready, procs)  # the writer holds the collection before readers open it
            for r in range(readers):
                procs.append(_spawn("reader", {**args, "name": f"reader{r}"}))
                ready.append(work / f"reader{r}.ready")
        _wait_files(ready, procs)
        (work / "go").write_text("1")
        t0 = time.monotonic()
        time.sleep(seconds)
        (work / "stop").write_text("1")
        elapsed = time.monotonic() - t0
        for p in procs:
            if p.wait(timeout=1200) != 0:
                raise RuntimeError(f"phase {name}: a worker exited with {p.returncode}")
        if readers == 0:
            res = json.loads((work / "both.json").read_text())
            acks = np.array(res["acks"])
            parts = [res]
        else:
            parts = [json.loads((work / f"reader{r}.json").read_text()) for r in range(readers)]
            acks = np.array([float(line.split()[0]) for line in (work / "acks.txt").read_text().splitlines()])
        lags = []
        for part in parts:
            lags += _lags(acks, np.array(part["starts"]), np.array(part["ends"]))
        per = [_summary(part, elapsed) for part in parts]
        out = {
            "phase": name,
            "reader_processes": readers,
            "seconds": elapsed,
            "qps_total": sum(p["qps"] for p in per),
            "per_process": per,
            "acks": len(acks),
            "docs_ingested": len(acks) * common["batch"],
            "lag_ms": {
                "p50": float(np.percentile(lags, 50)) * 1e3 if lags else None,
                "p99": float(np.percentile(lags, 99)) * 1e3 if lags else None,
                "max": float(np.max(lags)) * 1e3 if lags else None,
                "n": len(lags),
            },
            "memory": [part["memory"] for part in parts],
            "snapshot_swaps": [part.get("swaps") for part in parts],
        }
        return out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


def build(path: Path, n: int, stream: int) -> float:
    from spann_vectorstore import Collection

    xb, texts, _ = load_data(n)
    t0 = time.perf_counter()
    with Collection(path, metric="ip", progress=False) as col:
        for s in range(0, n - stream, 5000):
            e = min(s + 5000, n - stream)
            col.add(xb[s:e], texts=texts[s:e], ids=[str(i) for i in range(s, e)])
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", help=argparse.SUPPRESS)
    ap.add_argument("role_args", nargs="?", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=100_000, help="documents (base + stream)")
    ap.add_argument("--stream", type=int, default=10_000, help="documents held back for the ingest stream")
    ap.add_argument("--seconds", type=float, default=15.0, help="per phase")
    ap.add_argument("--rate", type=float, default=500.0, help="documents per second the writer adds")
    ap.add_argument("--batch", type=int, default=50, help="documents per add")
    ap.add_argument("--readers", default="1,2,4")
    ap.add_argument("--rounds", type=int, default=1, help="run all phases this many times, alternating")
    ap.add_argument("--quick", action="store_true", help="20k documents, 6 s per phase")
    ap.add_argument("--path", default=None, help="reuse/keep the collection here (default: a temp dir)")
    a = ap.parse_args()
    if a.role:
        {"writer": role_writer, "reader": role_reader, "both": role_both}[a.role](json.loads(a.role_args))
        return 0
    if not (DATA_DIR / "base.npy").exists():
        print(f"no data at {DATA_DIR}: nothing to measure")
        return 0
    if a.quick:
        a.n, a.stream, a.seconds = 20_000, 4_000, 6.0
    tmp = None
    path = Path(a.path) if a.path else Path(tmp := tempfile.mkdtemp(prefix="bench-readers-")) / "col"
    try:
        built = None
        if not (path / "docs.sqlite").exists():
            print(f"building a collection of {a.n - a.stream:,} documents at {path} ...", flush=True)
            built = build(path, a.n, a.stream)
            print(f"  {built:.1f} s", flush=True)
        common = {"path": str(path), "n": a.n, "stream": a.stream, "rate": a.rate, "batch": a.batch}
        phases = []
        for rnd in range(a.rounds):  # alternating rounds: a loaded machine's drift hits every phase alike
            for r in [0] + [int(x) for x in a.readers.split(",") if x]:
                phases.append(run_phase("both" if r == 0 else f"readers-{r}", r, common, a.seconds))
                phases[-1]["round"] = rnd
                print(f"  round {rnd} {phases[-1]['phase']}: {phases[-1]['qps_total']:.0f} QPS", flush=True)
        result = {
            "benchmark": "readers beside a writer (issue 16)",
            "date": dt.datetime.now().isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()},
            "settings": {**{k: v for k, v in common.items() if k != "path"}, "seconds": a.seconds, "k": K},
            "build_s": built,
            "phases": phases,
            "median_qps_total": {
                name: float(np.median([p["qps_total"] for p in phases if p["phase"] == name]))
                for name in dict.fromkeys(p["phase"] for p in phases)
            },
            "loadavg_end": os.getloadavg(),
        }
        mb = 2**20
        print("\nround phase        procs  QPS total  QPS/proc  p50 ms  p99 ms  lag p50 ms  lag p99 ms  writes  misses")
        for ph in phases:
            per = ph["per_process"]
            print(
                f"{ph['round']:>5} {ph['phase']:<12} {max(1, ph['reader_processes']):>5}  {ph['qps_total']:>9.0f}  "
                f"{np.mean([p['qps'] for p in per]):>8.0f}  {np.median([p['p50_ms'] for p in per]):>6.2f}  "
                f"{np.median([p['p99_ms'] for p in per]):>6.2f}  {ph['lag_ms']['p50'] or float('nan'):>10.1f}  "
                f"{ph['lag_ms']['p99'] or float('nan'):>10.1f}  {ph['docs_ingested']:>6}  "
                f"{sum(p['probe_misses'] for p in per)}"
            )
        print("\nmemory per process, MB growth from before the open: after open + warm-up / at the end")
        print("  rss = anon (private to the process) + file (mapped snapshot files: page cache, shared)")
        for ph in phases:
            for i, m in enumerate(ph["memory"]):
                b, o, e = m["before_open"], m["after_open"], m["end"]

                def grow(key: str, m1: dict = o, m0: dict = b) -> str:
                    return f"{(m1[key] - m0[key]) / mb:+.1f}"

                print(
                    f"{ph['phase']:<12} #{i}: rss {b['rss'] / mb:.0f} MB {grow('rss')} / {grow('rss', e)}; "
                    f"anon {grow('anon')} / {grow('anon', e)}; file {grow('file')} / {grow('file', e)}; "
                    f"pss {grow('pss')} / {grow('pss', e)}"
                )
        print("median QPS total per phase:", {k: round(v) for k, v in result["median_qps_total"].items()})
        out = REPO_ROOT / "benchmarks" / "results" / f"readers-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
        print(f"\nwrote {out}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
