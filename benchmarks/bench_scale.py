"""Scale benchmark (issue 20): build time against n with its fitted growth exponent, memory, and search.

    # build-time curve (each size: generate, build from the .npy file, search at target 0.95)
    python benchmarks/bench_scale.py --sizes 100000,300000,1000000,3000000
    # the 10M x 384 run (15 GB of float32 in --work; about an hour on 2 cores)
    python benchmarks/bench_scale.py --sizes 10000000 --work /tmp/scale
    # 1M x 1024 (Cohere v3's dimension) with faiss IVF-Flat in the same run
    python benchmarks/bench_scale.py --sizes 1000000 --dim 1024 --faiss

Data: the clustered synthetic model of ``evaluation.synthetic_dataset`` (unit vectors around n/1000
centres, inner product), written block by block to ``base.npy`` in ``--work`` (never held in memory at
once), 1,000 held-back queries drawn after the base, and their exact top-100 by a blocked matrix product.
Files are reused when present (same n, dim, seed).

Each size runs in child processes so memory is the build's own:
  build: ``SpannIndex(dim, metric="ip").build(<path of base.npy>)`` (the file is mapped, not copied), with
    the time of each phase, peak RSS (VmHWM: mapped file pages included) and peak anonymous memory
    (RssAnon sampled every 0.2 s), then ``save``;
  search: ``SpannIndex.load(mmap=True)`` in a fresh process, resident memory right after the load
    (RssAnon + RssFile), then single-query p50/p99 and recall@10 against the exact top 10 at target_recall
    0.95 (the calibrated default setting) and at fixed n_probe values.
With ``--faiss``: faiss IVF-Flat (nlist 4 sqrt(n), one thread per core) built and searched in the same run,
at the cheapest nprobe with recall@10 >= 0.95.
Results: ``benchmarks/results/scale-<dim>-<date>.json`` (one file per run, all sizes, the fitted exponent).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

K_TRUTH = 100
N_QUERIES = 1000


def log(*a) -> None:
    # stderr: a child's stdout carries its JSON result
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def status() -> dict[str, int]:
    """This process's memory figures from /proc/self/status, in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, val = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(val.split()[0]) * 1024
    return out


class AnonPeak:
    """Samples memory every 0.2 s in a thread: the peak of anonymous (non-file) memory, and per phase (set
    ``phase``) the largest RSS, file-mapped and anonymous sizes seen: which phase makes the peak."""

    def __init__(self) -> None:
        self.peak = 0
        self.phase = "other"
        self.phases: dict[str, dict[str, int]] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            st = status()
            self.peak = max(self.peak, st.get("RssAnon", 0))
            got = self.phases.setdefault(self.phase, {})
            for key in ("VmRSS", "RssFile", "RssAnon"):
                got[key] = max(got.get(key, 0), st.get(key, 0))

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return max(self.peak, status().get("RssAnon", 0))


# ----------------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------------
def make_data(work: Path, n: int, d: int, seed: int, noise: float) -> Path:
    """base.npy / queries.npy / truth.npy for (n, d, seed) under ``work``; reused when complete."""
    from spann_vectorstore.evaluation import exact_topk, synthetic_source

    out = work / f"data-{n}-{d}-{seed}"
    if (out / "truth.npy").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    draw = synthetic_source(n, d, seed=seed, noise=noise)  # the rows of synthetic_dataset(n, d, ...)
    t0 = time.perf_counter()
    base = np.lib.format.open_memmap(out / "base.tmp.npy", mode="w+", dtype=np.float32, shape=(n, d))
    step = 100_000
    for s in range(0, n, step):
        base[s : s + step] = draw(min(step, n - s))
    base.flush()
    queries = draw(N_QUERIES)
    log(f"data n={n} d={d}: base written in {time.perf_counter() - t0:.0f} s")
    # exact top-100 by blocks of the base: merge each block's best with the running best
    t0 = time.perf_counter()
    k = min(K_TRUTH, n)
    best_i = np.empty((N_QUERIES, 0), np.int64)
    best_s = np.empty((N_QUERIES, 0), np.float32)
    step = max(1, (1 << 30) // (4 * d))
    for s in range(0, n, step):
        ids, sc = exact_topk(np.asarray(base[s : s + step]), queries, min(k, min(step, n - s)), "ip")
        cat_i = np.concatenate([best_i, ids + s], axis=1)
        cat_s = np.concatenate([best_s, sc], axis=1)
        order = np.argsort(-cat_s, axis=1, kind="stable")[:, :k]  # ties: earlier rows first, as exact_topk
        best_i = np.take_along_axis(cat_i, order, 1)
        best_s = np.take_along_axis(cat_s, order, 1)
    log(f"exact top-{k} in {time.perf_counter() - t0:.0f} s")
    del base
    os.replace(out / "base.tmp.npy", out / "base.npy")
    np.save(out / "queries.npy", queries)
    np.save(out / "truth.npy", best_i)
    return out


# ----------------------------------------------------------------------------------------------------------
# children
# ----------------------------------------------------------------------------------------------------------
def child_build(data: Path, index_dir: Path, head_ratio: float | None) -> dict:
    import spann_vectorstore.index as I
    from spann_vectorstore import SpannIndex

    phases: dict[str, float] = {}

    peak = None

    def timed(name, f):
        def w(*a, **k):
            t = time.perf_counter()
            if peak is not None:
                peak.phase = name
            try:
                return f(*a, **k)
            finally:
                if peak is not None:
                    peak.phase = "other"
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - t
                log(f"  phase {name}: {phases[name]:.1f} s")

        return w

    I.hierarchical_heads = timed("heads", I.hierarchical_heads)
    I.closure_assign = timed("assign", I.closure_assign)
    I.cap_postings = timed("cap", I.cap_postings)
    SpannIndex._insert = timed("encode", SpannIndex._insert)
    SpannIndex._calibration = timed("calibrate", SpannIndex._calibration)
    base = np.load(data / "base.npy", mmap_mode="r")
    idx = SpannIndex(base.shape[1], metric="ip", head_ratio=head_ratio, progress=True)
    peak = AnonPeak()
    t0 = time.perf_counter()
    idx.build(data / "base.npy")
    build_s = time.perf_counter() - t0
    anon = peak.stop()
    mem = status()
    t0 = time.perf_counter()
    idx.save(index_dir)
    save_s = time.perf_counter() - t0
    st = idx.stats()
    return {
        "build_s": build_s,
        "phases_s": phases,
        "save_s": save_s,
        "peak_rss_bytes": mem["VmHWM"],
        "peak_anon_bytes": anon,
        "sampled_peaks_by_phase": peak.phases,
        "heads": idx.n_heads,
        "entries": st["entries"],
        "replicas_avg": st["replicas_avg"],
        "posting_size_avg": st["posting_size_avg"],
        "posting_size_max": st["posting_size_max"],
        "bytes_ram": st["bytes_ram"],
        "calibration": st.get("calibration"),
    }


def _recall(ids: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a[a >= 0]) & set(b)) / len(b) for a, b in zip(ids, truth)]))


def _single(idx, xq, **kw) -> tuple[np.ndarray, np.ndarray]:
    ids = np.empty((len(xq), 10), np.int64)
    ts = np.empty(len(xq))
    for i, q in enumerate(xq):
        t = time.perf_counter()
        ids[i] = idx.search(q, 10, **kw).ids[0]
        ts[i] = time.perf_counter() - t
    return ids, ts


def child_search(data: Path, index_dir: Path, n_probes: list[int]) -> dict:
    import tempfile

    from spann_vectorstore import SpannIndex

    # load the compiled kernels first (a tiny index through the same path), so the figure below is the
    # index's memory, not Numba's code
    dim = int(np.load(data / "queries.npy", mmap_mode="r").shape[1])
    with tempfile.TemporaryDirectory() as tmp:
        tiny = SpannIndex(dim, metric="ip", n_probe=4).build(
            np.random.default_rng(0).standard_normal((3000, dim)).astype(np.float32)
        )
        tiny.save(tmp)
        tiny = SpannIndex.load(tmp, mmap=True)
        tiny.search(tiny.vectors([0, 1]), 10)
        tiny.search(tiny.vectors([0]), 10)
        del tiny
    before = status()
    t0 = time.perf_counter()
    idx = SpannIndex.load(index_dir, mmap=True)
    load_s = time.perf_counter() - t0
    after = status()
    xq = np.load(data / "queries.npy")
    truth = np.load(data / "truth.npy")[:, :10]
    idx.search(xq[:50], 10)  # compile / warm
    out = {
        "load_s": load_s,
        "rss_after_load_bytes": after["VmRSS"] - before["VmRSS"],
        "anon_after_load_bytes": after["RssAnon"] - before["RssAnon"],
        "file_after_load_bytes": after["RssFile"] - before["RssFile"],
        "vectors_bytes": int(np.load(data / "base.npy", mmap_mode="r").nbytes),
        "settings": [],
    }
    for label, kw in [("target 0.95", {"target_recall": 0.95})] + [(f"n_probe {p}", {"n_probe": p}) for p in n_probes]:
        _single(idx, xq, **kw)  # warm: the pages this setting reads (a first pass at 10M met cold pages)
        ids, ts = _single(idx, xq, **kw)
        row = {
            "setting": label,
            "recall_at_10": _recall(ids, truth),
            "p50_ms": float(np.percentile(ts, 50) * 1e3),
            "p99_ms": float(np.percentile(ts, 99) * 1e3),
        }
        out["settings"].append(row)
        log(f"  {label}: recall {row['recall_at_10']:.4f} p50 {row['p50_ms']:.3f} ms p99 {row['p99_ms']:.3f} ms")
    mem = status()
    out["rss_after_search_bytes"] = mem["VmRSS"] - before["VmRSS"]
    out["anon_after_search_bytes"] = mem["RssAnon"] - before["RssAnon"]
    return out


def child_faiss(data: Path) -> dict:
    import faiss

    base = np.load(data / "base.npy", mmap_mode="r")
    n, d = base.shape
    xq = np.load(data / "queries.npy")
    truth = np.load(data / "truth.npy")[:, :10]
    nlist = int(4 * np.sqrt(n))
    t0 = time.perf_counter()
    quant = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quant, d, nlist, faiss.METRIC_INNER_PRODUCT)
    train = np.ascontiguousarray(base[np.sort(np.random.default_rng(0).choice(n, min(n, 64 * nlist), replace=False))])
    index.train(train)
    step = 200_000
    for s in range(0, n, step):
        index.add(np.ascontiguousarray(base[s : s + step]))
    build_s = time.perf_counter() - t0
    rows = []
    faiss.omp_set_num_threads(1)  # single-query latency, as ours
    for nprobe in (8, 16, 32, 64, 128, 256):
        index.nprobe = nprobe
        ts = np.empty(len(xq))
        ids = np.empty((len(xq), 10), np.int64)
        for i, q in enumerate(xq):
            t = time.perf_counter()
            ids[i] = index.search(q[None, :], 10)[1][0]
            ts[i] = time.perf_counter() - t
        row = {
            "nprobe": nprobe,
            "recall_at_10": _recall(ids, truth),
            "p50_ms": float(np.median(ts) * 1e3),
            "p99_ms": float(np.percentile(ts, 99) * 1e3),
        }
        rows.append(row)
        log(f"  faiss IVF-Flat nprobe {nprobe}: recall {row['recall_at_10']:.4f} p50 {row['p50_ms']:.3f} ms")
        if row["recall_at_10"] >= 0.95:
            break
    return {"nlist": nlist, "build_s": build_s, "settings": rows, "rss_bytes": status()["VmRSS"]}


def run_child(kind: str, *args: str) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, *args]
    res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=os.environ | {"SPANN_COLD_START": "compile"})
    if res.returncode != 0:
        raise SystemExit(f"child {kind} failed with status {res.returncode}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,300000,1000000", help="comma-separated n")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", type=float, default=0.7)
    p.add_argument("--head-ratio", type=float, default=None, help="default: auto_head_ratio(n)")
    p.add_argument("--n-probe", default="8,16,32", help="fixed settings measured besides target 0.95")
    p.add_argument("--faiss", action="store_true", help="also faiss IVF-Flat in the same run")
    p.add_argument("--work", default="/tmp/spann-scale", help="data and index files (large)")
    p.add_argument("--keep-index", action="store_true")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, rest = args.child[0], args.child[1:]
        if kind == "build":
            hr = None if rest[2] == "auto" else float(rest[2])
            res = child_build(Path(rest[0]), Path(rest[1]), hr)
        elif kind == "search":
            res = child_search(Path(rest[0]), Path(rest[1]), [int(v) for v in rest[2].split(",") if v])
        else:
            res = child_faiss(Path(rest[0]))
        print(json.dumps(res, default=float))
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    sizes = [int(v) for v in args.sizes.split(",")]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_path = ROOT / "benchmarks" / "results" / f"scale-{args.dim}-{stamp}.json"
    result = {
        "kind": "scale",
        "dim": args.dim,
        "seed": args.seed,
        "noise": args.noise,
        "cores": os.cpu_count(),
        "load_average_start": os.getloadavg(),
        "runs": [],
    }
    for n in sizes:
        log(f"== n={n} d={args.dim}")
        data = make_data(work, n, args.dim, args.seed, args.noise)
        index_dir = work / f"index-{n}-{args.dim}"
        run = {"n": n, "head_ratio": args.head_ratio or "auto"}
        run["build"] = run_child("build", str(data), str(index_dir), str(args.head_ratio or "auto"))
        log(
            f"  build {run['build']['build_s']:.1f} s, peak RSS {run['build']['peak_rss_bytes'] / 2**30:.2f} GiB, "
            f"peak anon {run['build']['peak_anon_bytes'] / 2**30:.2f} GiB, heads {run['build']['heads']}"
        )
        run["search"] = run_child("search", str(data), str(index_dir), args.n_probe)
        s = run["search"]
        log(
            f"  after load: RSS {s['rss_after_load_bytes'] / 2**20:.0f} MiB "
            f"({s['rss_after_load_bytes'] / s['vectors_bytes']:.3f}x the float32 vectors)"
        )
        if args.faiss:
            run["faiss_ivf_flat"] = run_child("faiss", str(data))
        if not args.keep_index:
            subprocess.run(["rm", "-rf", str(index_dir)])
        result["runs"].append(run)
        result["load_average_end"] = os.getloadavg()
        if len(result["runs"]) >= 2:
            ns = np.log([r["n"] for r in result["runs"]])
            ts = np.log([r["build"]["build_s"] for r in result["runs"]])
            result["build_exponent"] = float(np.polyfit(ns, ts, 1)[0])
            log(f"  fitted build-time exponent so far: {result['build_exponent']:.3f}")
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(result, indent=1, default=float))
    log(f"wrote {out_path}")


if __name__ == "__main__":
    main()
