"""``ingest()`` killed with SIGKILL at random points, then run again: the store equals a clean ingest.

A child process ingests a folder of small Markdown files with a deterministic fake embedder and prints a
line before and after each step that changes the store (the manifest logging chunk ids, ``Collection.add``,
``Collection.delete``, the manifest finishing a file). The parent kills it with SIGKILL right after the n-th
line, n drawn at random, so kills land in every phase without depending on timing. Each trial: ingest
version 1 of the corpus (killed or not), ingest version 2 killed, then ingest version 3 (v2 or another
edit) to completion, and compare with a clean ingest of version 3: the same chunk ids, texts and metadata,
none left of an earlier or interrupted version, and a second run finds everything unchanged.

A few trials by default (about 30-40 s); ``HYPOTHESIS_PROFILE=nightly`` runs many more.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from spann_vectorstore import Collection
from spann_vectorstore.embed import Embedder
from spann_vectorstore.ingest import ingest

pytest.importorskip("langchain_text_splitters")

TRIALS = 25 if os.environ.get("HYPOTHESIS_PROFILE") == "nightly" else 4
OPTS = {"chunk_size": 200, "chunk_overlap": 20, "batch_size": 3, "progress": False}
PARA = "Paragraph {i} of {name}, version {v}: " + "words about the topic at hand, " * 4

CHILD = textwrap.dedent(
    """
    import sys
    from langchain_core.embeddings import DeterministicFakeEmbedding
    from spann_vectorstore import Collection
    from spann_vectorstore import ingest as ing
    from spann_vectorstore.embed import Embedder

    def marked(cls, name):
        real = getattr(cls, name)

        def step(*args, **kwargs):
            print("STEP", name, flush=True)
            out = real(*args, **kwargs)
            print("STEP", name, "done", flush=True)
            return out

        setattr(cls, name, step)

    for cls, name in [(Collection, "add"), (Collection, "delete"), (ing._Manifest, "add_chunks"),
                      (ing._Manifest, "finish")]:
        marked(cls, name)
    index, corpus = sys.argv[1], sys.argv[2]
    with Collection(index) as col:
        ing.ingest(corpus, col, Embedder(DeterministicFakeEmbedding(size=16)), **OPTS)
    print("DONE", flush=True)
    """
).replace("**OPTS", ", ".join(f"{k}={v!r}" for k, v in OPTS.items()))


def fake() -> Embedder:
    from langchain_core.embeddings import DeterministicFakeEmbedding

    return Embedder(DeterministicFakeEmbedding(size=16))


def write_version(root: Path, rng: np.random.Generator, v: int) -> None:
    """Version ``v`` of a corpus of up to 8 files: each is kept, edited (fewer or more paragraphs), emptied
    or removed at random; removed files are not the subject here (ingest does not delete sources)."""
    root.mkdir(parents=True, exist_ok=True)
    for f in range(8):
        path = root / f"f{f}.md"
        what = rng.choice(["keep", "edit", "edit", "edit", "empty"]) if path.exists() else "edit"
        if what == "edit":
            n = int(rng.integers(1, 9))
            path.write_text(f"# File {f}\n\n" + "\n\n".join(PARA.format(i=i, name=f"f{f}", v=v) for i in range(n)))
        elif what == "empty":
            path.write_text("")


def run_killed(index: Path, corpus: Path, script: Path, kill_after: int) -> bool:
    """Run the child; SIGKILL it right after its ``kill_after``-th step line. True if it finished first."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    err = script.with_suffix(".err")
    with open(err, "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(index), str(corpus)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )
    finished = killed = False
    seen = 0
    try:
        for line in proc.stdout:
            if line.startswith("DONE"):
                finished = True
                break
            seen += line.startswith("STEP")
            if seen >= kill_after:
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
                break
    finally:
        proc.stdout.close()
        try:
            proc.wait(timeout=120)  # a failure guard only
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert finished or killed, f"the child failed by itself:\n{err.read_text()}"
    return finished


def contents(index: Path) -> set[tuple]:
    with Collection.open(index) as col:
        return {(h.id, h.text, h.metadata["source"], h.metadata["chunk"], h.metadata["file_hash"]) for h in col.get()}


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(TRIALS))
def test_reingest_after_sigkill_equals_a_clean_ingest(tmp_path, trial):
    rng = np.random.default_rng(1000 + trial)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    corpus, index = tmp_path / "docs", tmp_path / "idx"
    write_version(corpus, rng, 1)
    if trial % 2 == 0:  # the first ingest itself is interrupted
        run_killed(index, corpus, script, int(rng.integers(1, 72)))
    else:
        with Collection(index) as col:
            ingest(corpus, col, fake(), **OPTS)
    write_version(corpus, rng, 2)
    run_killed(index, corpus, script, int(rng.integers(1, 72)))
    if rng.random() < 0.5:
        write_version(corpus, rng, 3)
    with Collection.open(index) as col:
        ingest(corpus, col, fake(), **OPTS)
        again = ingest(corpus, col, fake(), **OPTS)
        assert again.chunks_added == again.chunks_deleted == 0 and again.files_ingested == 0, again
        assert col.verify().ok
    with Collection(tmp_path / "clean") as col:
        ingest(corpus, col, fake(), **OPTS)
    got, want = contents(index), contents(tmp_path / "clean")
    assert got == want, f"{len(got - want)} chunks left over, {len(want - got)} missing"
