"""examples/serve_fastapi.py served by ``uvicorn --workers 2`` on 127.0.0.1 over one index while
``spann-vectorstore ingest`` adds documents to it (issue 16). Needs the ``serve`` and ``embeddings`` extras.

Every response is checked against what was committed before its request began, never against the clock:
responses are never stale (the count of new documents never goes down from one request to the next, across
both workers), and every response after the ingest returned holds all of its documents."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from spann_vectorstore import Collection

from .test_readers import ROOT, _env, _wait

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("sentence_transformers")

WORD = "zebraquark"


def _get(port: int, path: str, **params) -> tuple[int, dict]:
    url = f"http://127.0.0.1:{port}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_served_example_sees_documents_appear_during_an_ingest(tmp_path):
    cli = [sys.executable, "-m", "spann_vectorstore.cli"]
    first, second, index = tmp_path / "first", tmp_path / "second", tmp_path / "idx"
    shutil.copytree(ROOT / "examples" / "docs", first)
    second.mkdir()
    for i in range(40):  # documents that only the second ingest adds, each findable by one word
        (second / f"note{i:02d}.md").write_text(
            f"# Note {i}\n\nThe {WORD} procedure number {i} explains how parcels are weighed before dispatch.\n"
        )
    out = subprocess.run(
        [*cli, "ingest", str(first), "--index", str(index), "--no-progress"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr
    port = _free_port()
    env = {**_env(), "SPANN_INDEX": str(index)}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "examples.serve_fastapi:app",
            "--workers",
            "2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    ingest = None
    try:

        def healthy() -> bool:
            assert server.poll() is None, server.stderr.read()
            try:
                return _get(port, "/health")[0] == 200
            except OSError:
                return False

        _wait(healthy, "the server", timeout=600)
        status, body = _get(port, "/search", q="how long does shipping take", k=3)
        assert status == 200 and len(body["hits"]) == 3, body
        ingest = subprocess.Popen(
            [*cli, "ingest", str(second), "--index", str(index), "--no-progress", "--batch-size", "4"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        seen, during, workers = [], 0, set()
        while True:
            running = ingest.poll() is None
            status, body = _get(port, "/search", q=WORD, mode="text", k=100)
            assert status == 200, body
            n = len(body["hits"])
            assert all(WORD in h["text"] for h in body["hits"])
            assert not seen or n >= seen[-1], (seen[-5:], n)  # never staler than an earlier response
            seen.append(n)
            workers.add(body["worker"])
            during += running and 0 < n
            if not running:
                break
            time.sleep(0.05)
        assert ingest.returncode == 0, ingest.stderr.read()
        with Collection(index, read_only=True) as col:
            total = col.count(where_document={"$contains": WORD})
        assert total >= 40
        for _ in range(20):  # after the ingest returned: every response, from either worker, has all of them
            status, body = _get(port, "/search", q=WORD, mode="text", k=100)
            assert status == 200 and len(body["hits"]) == total, (len(body["hits"]), total)
            workers.add(body["worker"])
        status, body = _get(
            port,
            "/search",
            q=f"{WORD} procedure for weighing parcels",
            k=3,
            filter=json.dumps({"source": {"$icontains": "note"}}),
        )
        assert status == 200 and len(body["hits"]) == 3 and all(WORD in h["text"] for h in body["hits"]), body
        status, body = _get(port, "/search", q="x", filter="{not json")
        assert status == 400 and "filter is not JSON" in body["detail"]
        status, body = _get(port, "/search", q="x", filter=json.dumps({"a": {"$bogus": 1}}))
        assert status == 400, body
        status, body = _get(port, "/search", q="x", mode="sparse")
        assert status == 400 and "mode must be one of" in body["detail"]
        print(
            f"\nserved: {len(seen)} requests during the ingest, {during} saw some of its documents before it "
            f"returned; counts {seen[0]} -> {seen[-1]} of {total}; workers answering: {len(workers)}"
        )
    finally:
        for p in (ingest, server):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
