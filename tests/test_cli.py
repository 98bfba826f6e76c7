"""The ``spann-vectorstore`` command line: ingest, query, info, bench, demo, and clean errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spann_vectorstore import Collection
from spann_vectorstore.cli import main

pytest.importorskip("sentence_transformers")
pytest.importorskip("langchain_text_splitters")

DOCS = {
    "cooking.md": "# Bread\n\nKnead the dough, let it rise for two hours, then bake it at 220 C until golden.",
    "astronomy.md": "# Stars\n\nA neutron star is the collapsed core of a massive star after a supernova.",
    "finance.txt": "Bond prices fall when interest rates rise, because older bonds pay less than new ones.",
    "notes/garden.rst": "Garden\n======\n\nWater tomatoes in the morning and mulch them to keep the soil moist.",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """An index built once by ``spann-vectorstore ingest`` with the bundled MiniLM (loaded once in-process)."""
    root = tmp_path_factory.mktemp("cli")
    docs = root / "docs"
    for name, text in DOCS.items():
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(text)
    (docs / "logo.png").write_bytes(b"\x89PNG\r\n" + bytes(200))
    index = root / "idx"
    assert main(["ingest", str(docs), "--index", str(index), "--no-progress"]) == 0
    return docs, index


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_ingest_reports_and_skips_unchanged(built, capsys):
    docs, index = built
    code, out, err = run(capsys, "ingest", docs, "--index", index, "--no-progress", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["files_unchanged"] == 4 and summary["files_ingested"] == 0 and summary["documents"] == 4
    assert summary["files_skipped_binary"] == 1


def test_query_json_parses_and_ranks(built, capsys):
    _, index = built
    code, out, err = run(capsys, "query", index, "how long should bread dough rise?", "-k", "2", "--json")
    assert code == 0, err
    hits = json.loads(out)
    assert len(hits) == 2 and hits[0]["metadata"]["source"].endswith("cooking.md")
    assert hits[0]["score"] >= hits[1]["score"] and hits[0]["metadata"]["title"] == "Bread"
    assert set(hits[0]) == {"id", "score", "text", "metadata"}


def test_query_text_output_and_filter(built, capsys):
    docs, index = built
    garden = (docs / "notes" / "garden.rst").resolve().as_posix()
    flt = json.dumps({"source": garden})
    code, out, _ = run(capsys, "query", index, "interest rates", "--filter", flt, "-k", "3")
    assert code == 0 and "garden.rst #0" in out and "finance" not in out and "(Garden)" in out
    code, out, _ = run(capsys, "query", index, "anything", "--filter", '{"source": "nowhere"}')
    assert code == 0 and "no results" in out


def test_query_modes_text_and_hybrid(built, capsys, monkeypatch):
    _, index = built
    # text: BM25 on the words, no model loaded (an exact word that the other documents lack)
    import spann_vectorstore.cli as cli

    with monkeypatch.context() as m:
        m.setattr(cli, "_load_embedder", lambda *a, **kw: pytest.fail("text mode loaded a model"))
        code, out, err = run(capsys, "query", index, "supernova", "--mode", "text", "--json")
        assert code == 0, err
        hits = json.loads(out)
        assert [h["metadata"]["source"].rsplit("/", 1)[1] for h in hits] == ["astronomy.md"] and hits[0]["score"] > 0
        code, out, _ = run(capsys, "query", index, "tomatoes dough", "--mode", "text", "-k", "3")
        assert code == 0 and "text search, BM25" in out and "garden.rst #0" in out and "cooking.md #0" in out
        assert "finance" not in out
        code, out, _ = run(capsys, "query", index, "zeppelin", "--mode", "text")
        assert code == 0 and "no results (no document contains a word of the query)" in out
    # hybrid: both legs fused; the exact word lifts its document above the dense ranking's choice
    code, out, err = run(capsys, "query", index, "how long should bread dough rise?", "--mode", "hybrid", "--json")
    assert code == 0, err
    hits = json.loads(out)
    assert hits[0]["metadata"]["source"].endswith("cooking.md") and hits[0]["score"] >= hits[-1]["score"]
    code, out, _ = run(capsys, "query", index, "bonds", "--mode", "hybrid", "--alpha", "0.2", "--fusion", "rrf")
    assert code == 0 and "hybrid, rrf alpha 0.2" in out and out.split("\n")[1].split()[2].endswith("finance.txt")
    code, out, _ = run(capsys, "query", index, "interest", "--mode", "hybrid", "--filter", '{"title": "Garden"}')
    assert code == 0 and "garden.rst" in out and "finance" not in out


def test_info_reports_counts_and_dims(built, capsys):
    _, index = built
    code, out, _ = run(capsys, "info", index)
    assert code == 0 and "documents:  4 chunks from 4 files" in out and "dim 384, metric ip" in out
    assert "all-MiniLM-L6-v2" in out and "disk:" in out and "RAM" in out
    code, out, _ = run(capsys, "info", index, "--json")
    info = json.loads(out)
    assert (info["count"], info["dim"], info["metric"], info["sources"]) == (4, 384, "ip", 4)
    assert info["embedder"]["model"] == "sentence-transformers/all-MiniLM-L6-v2" and info["bytes_disk"] > 0


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["query", "{tmp}/missing", "x"], 1, "no index at"),
        (["info", "{tmp}/missing"], 1, "no index at"),
        (["query", "{index}", "x", "--filter", "{bad json"], 2, "not valid JSON"),
        (["query", "{index}", "x", "--filter", "[1, 2]"], 2, "JSON object"),
        (["query", "{index}", "x", "--filter", '{"n": {"$near": 3}}'], 2, "--filter"),
        (["ingest", "{tmp}/missing", "--index", "{tmp}/new"], 1, "no such file"),
        (["ingest", "{docs}", "--index", "{docs}"], 1, "not a spann-vectorstore index"),
        (["ingest", "{docs}", "--index", "{index}", "--model", "BAAI/bge-small-en-v1.5"], 1, "was built with model"),
        (["ingest", "{docs}", "--index", "{index}", "--bits", "4", "--no-progress"], 1, "created with bits"),
        (["ingest", "{docs}", "--index", "{tmp}/new", "--chunk-size", "50", "--chunk-overlap", "50"], 2, "overlap"),
        (["query", "{index}", "x", "-k", "0"], 2, "must be positive"),
        (["query", "{index}", "x", "--mode", "sparse"], 2, "invalid choice: 'sparse'"),
        (["query", "{index}", "x", "--mode", "hybrid", "--alpha", "1.5"], 2, "must be in [0, 1]"),
        (["query", "{index}", "x", "--mode", "hybrid", "--alpha", "half"], 2, "not a number"),
        (["query", "{index}", "x", "--mode", "hybrid", "--fusion", "max"], 2, "invalid choice: 'max'"),
        (["frobnicate"], 2, "invalid choice"),
    ],
)
def test_user_errors_exit_nonzero_without_traceback(built, capsys, tmp_path, argv, code, message):
    docs, index = built
    subst = {"{tmp}": str(tmp_path), "{index}": str(index), "{docs}": str(docs)}
    for key, value in subst.items():
        argv = [a.replace(key, value) for a in argv]
    got, out, err = run(capsys, *argv)
    assert got == code, (out, err)
    assert message in err and "Traceback" not in err
    if code == 1:
        assert err.startswith("error: ")


def test_dimension_mismatch_is_a_clear_error(tmp_path, capsys):
    index = tmp_path / "small"
    with Collection(index) as col:  # built from Python with 8-d vectors and no model record
        col.add(np.eye(8, dtype=np.float32), texts=[f"t{i}" for i in range(8)])
    code, _, err = run(capsys, "query", index, "hello")
    assert code == 1 and "holds 8-d vectors" in err and "Traceback" not in err


def test_console_script_errors_have_no_traceback(tmp_path, capsys):
    """The installed entry point, in a fresh process: a user error is one line on stderr and status 1."""
    exe = shutil.which("spann-vectorstore") or str(Path(sys.executable).with_name("spann-vectorstore"))
    out = subprocess.run([exe, "query", str(tmp_path / "nope"), "x"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stderr.startswith("error: no index") and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "ingest" in out and "demo" in out


def test_bench_synthetic_prints_the_table(capsys):
    code, out, err = run(capsys, "bench", "--synthetic", "5000", "--dim", "32", "--queries", "100", "--n-probe", "40")
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith("spann-vectorstore"))
    recall = float(row.split()[5])
    assert recall >= 0.8, f"recall@10 {recall} at n_probe 40 on 5k synthetic vectors"
    assert "exact (numpy)" in out and "recall@10" in out


def test_bench_needs_data_or_synthetic(capsys, tmp_path):
    code, _, err = run(capsys, "bench")
    assert code == 2 and "--data DIR" in err and "--synthetic N" in err and "Traceback" not in err
    code, _, err = run(capsys, "bench", "--data", str(tmp_path))
    assert code == 1 and "no base.npy" in err


@pytest.mark.slow
def test_demo_runs_end_to_end(capsys, tmp_path):
    """The real demo command (pydoc_data topics + README, bundled MiniLM) on its reduced corpus; the index is
    kept, so a second run shows change detection skipping every document."""
    code, out, err = run(capsys, "demo", "--quick", "--index", tmp_path / "demo")
    assert code == 0, err
    question = "Why does a default list argument keep values between calls?"
    assert question in out
    answer = out.split(question)[1].split("Q:")[0]
    assert "python-reference:function" in answer and "Default parameter values are evaluated" in answer
    assert "ingesting" in err, "a progress bar is shown"
    # dense vs hybrid on a question with a rare exact word: hybrid ranks the passage with it first
    question = "What does fsync guarantee?"
    dense, hybrid = out.split(f"Q: {question}")[1].split("  hybrid (")
    assert "fsync" not in dense.split("  2. ")[0]
    assert "fsync" in hybrid.split("  2. ")[0] and "README" in hybrid.split("  2. ")[0]
    code, out, _ = run(capsys, "demo", "--quick", "--index", tmp_path / "demo", "--no-progress", "--question", "lambda")
    assert code == 0 and "0 chunks added" in out and "unchanged" in out and "Q: lambda" in out


def test_check_and_recover(tmp_path, capsys):
    """``check`` exits 1 naming the damaged file; ``recover`` repairs (index from docs.sqlite, or docs.sqlite
    from the index snapshot) and ``check`` is clean again."""
    index = tmp_path / "kb"
    x = np.random.default_rng(0).standard_normal((200, 8)).astype(np.float32)
    with Collection(index, index_threshold=50) as col:
        col.add(x, texts=[f"t{i}" for i in range(200)], ids=[f"d{i}" for i in range(200)])
    code, out, _ = run(capsys, "check", index)
    assert code == 0 and out.startswith(f"{index}: ok: documents 200")
    code, out, _ = run(capsys, "recover", index)
    assert code == 0 and "nothing to recover" in out
    vec = next((index / "index").glob("snap-*")) / "vectors.npy"
    raw = bytearray(vec.read_bytes())
    raw[-1] ^= 0x7F
    vec.write_bytes(bytes(raw))
    code, out, err = run(capsys, "check", index, "--json")
    report = json.loads(out)
    assert code == 1 and not report["ok"] and any("vectors.npy" in p for p in report["problems"])
    code, out, err = run(capsys, "recover", index)
    assert code == 0 and "rebuilt the index from docs.sqlite; 200 documents" in out and "index.damaged-1" in out
    assert run(capsys, "check", index)[0] == 0
    (index / "docs.sqlite").write_bytes(b"")
    code, out, err = run(capsys, "check", index)
    assert code == 1 and err.startswith("error: ") and "docs.sqlite" in err and "recover" in err
    code, out, err = run(capsys, "recover", index)
    assert code == 0 and "200 documents only had their vector left" in out, (out, err)
    assert run(capsys, "check", index)[0] == 0
    (index / "docs.sqlite").unlink()
    for argv in (["check", index], ["query", index, "x"], ["ingest", tmp_path, "--index", index]):
        code, out, err = run(capsys, *argv)
        assert code == 1 and "docs.sqlite' is missing" in err and "recover" in err, (argv, err)
