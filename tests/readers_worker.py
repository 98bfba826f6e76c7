"""Processes for the many-readers tests (tests/test_readers.py): a writer that ingests batches and logs each
acknowledgement, and readers that search continuously and check every search against the acknowledgements
logged before it began. Run as ``python readers_worker.py writer|reader ARGS_JSON``.

Batch ``b`` holds ``BATCH`` documents ``b{b}-{i}`` with metadata ``{"batch": b}`` and vectors drawn from a
seeded generator (any process can recompute them). After batch ``b`` is acknowledged the writer deletes
document ``b{b-3}-0`` (from batch 3 on). The ack log (``acks.jsonl``) gets one line per acknowledged write,
written after the call returned: ``{"op": "add"|"delete", "batch": b, "t": monotonic time}``.

A reader loops: read the ack log (everything acknowledged before this search began), pick one acknowledged
batch (the newest, or a random older one, or the one whose document was deleted most recently), search it
with ``filter={"batch": b}`` and ``k = BATCH``, and compare: every document of the batch must be there, and
``b{b}-0`` must not be once its delete is acknowledged (before that, it may or may not be: the delete may be
in flight, or committed by a writer killed before it logged the acknowledgement). It stops once the stop
file exists and it has checked the last acknowledged write, then writes its report (JSON) with the
violations, errors and lags (for each newest acknowledgement seen: seconds from it to the end of the first
search that began after it, which checks that write).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import traceback
from pathlib import Path

import numpy as np

BATCH = 16
DIM = 16


def batch_vectors(b: int) -> np.ndarray:
    return np.random.default_rng(1000 + b).standard_normal((BATCH, DIM)).astype(np.float32)


def read_acks(path: Path) -> list[dict]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:  # a line being written (no newline yet): the next read sees it whole
            break
    return out


def writer(args: dict) -> None:
    from spann_vectorstore import Collection

    root = Path(args["dir"])
    acks = root.parent / "acks.jsonl"
    col = Collection(root, metric="l2", index_threshold=args.get("index_threshold", 128), snapshot_every=96)
    (root.parent / f"writer-{os.getpid()}.ready").write_text("1")
    with open(acks, "a") as log:
        b = args["first"]
        end = time.monotonic() + args.get("seconds", 0)
        while b < args["first"] + args["batches"] or time.monotonic() < end:
            ids = [f"b{b}-{i}" for i in range(BATCH)]
            col.add(
                batch_vectors(b),
                texts=[f"batch {b} doc {i}" for i in range(BATCH)],
                metadatas=[{"batch": b} for _ in range(BATCH)],
                ids=ids,
            )
            log.write(json.dumps({"op": "add", "batch": b, "t": time.monotonic()}) + "\n")
            log.flush()
            if b >= 3:
                col.delete([f"b{b - 3}-0"])
                log.write(json.dumps({"op": "delete", "batch": b - 3, "t": time.monotonic()}) + "\n")
                log.flush()
            b += 1
            if args.get("pause"):
                time.sleep(args["pause"])
    col.close()


def reader(args: dict) -> None:
    from spann_vectorstore import Collection

    root = Path(args["dir"])
    acks_path, stop = root.parent / "acks.jsonl", root.parent / "stop"
    rng = random.Random(args["seed"])
    report = {"searches": 0, "checks": 0, "violations": [], "errors": [], "lags": [], "swaps": 0}
    col = Collection(root, read_only=True)
    opened, seen = time.monotonic(), 0
    try:
        while True:
            stopping = stop.exists()
            acks = read_acks(acks_path)  # acknowledged before this search begins
            added = [a["batch"] for a in acks if a["op"] == "add"]
            deleted = {a["batch"]: a["t"] for a in acks if a["op"] == "delete"}
            if not added:
                time.sleep(0.01)
                continue
            last = acks[-1]
            choice = rng.random()
            fresh = len(acks) > seen and last["t"] > opened  # a write acknowledged since the last search
            seen = len(acks)
            if fresh or choice < 0.5 or stopping:
                b = last["batch"]
            elif choice < 0.75 and deleted:
                b = max(deleted)
            else:
                b = rng.choice(added)
            try:
                hits = col.search(batch_vectors(b)[1], k=BATCH, filter={"batch": b})
            except Exception as exc:  # any error is a failure of the test
                report["errors"].append(f"{type(exc).__name__}: {exc}")
                if len(report["errors"]) > 20:
                    break
                continue
            done = time.monotonic()
            report["searches"] += 1
            got = {h.id for h in hits}
            docs = {f"b{b}-{i}" for i in range(BATCH)}
            # b{b}-0 must be gone once its delete is acknowledged; before that it may be either (in flight)
            missing = docs - {f"b{b}-0"} - got
            unexpected = (got - docs) | (got & {f"b{b}-0"} if b in deleted else set())
            report["checks"] += 1
            if missing or unexpected:
                report["violations"].append(
                    {"batch": b, "missing": sorted(missing), "unexpected": sorted(unexpected), "acks": len(acks)}
                )
            if fresh:  # from the acknowledgement to the end of the first search that began after it
                report["lags"].append(done - last["t"])
            if stopping and b == last["batch"] and last == read_acks(acks_path)[-1]:
                break
        report["swaps"] = col.stats()["follower"]["snapshots_swapped_in"]
    except Exception:
        report["errors"].append(traceback.format_exc())
    finally:
        col.close()
        (root.parent / f"reader-{args['seed']}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    {"writer": writer, "reader": reader}[sys.argv[1]](json.loads(sys.argv[2]))
