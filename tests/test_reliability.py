"""The index survives what users and machines do to it.

* A build killed with a real SIGKILL at any point (while embedding, while
  writing each file, between the rename and the switch) leaves the previous
  index loading and answering, and the next build succeeds and clears the
  leftovers.
* Every index file corrupted, truncated, emptied or deleted in turn gives one
  error line naming the problem and the command that fixes it.
* While an update runs, queries are answered from the old index, then from
  the new one, never from a half-written one.

All of this is about files and processes, not about the model, so it uses
the deterministic :class:`HashEmbedder`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from assistant.embedding import HashEmbedder
from assistant.errors import IndexCorruptError, IndexMismatchError, IndexNotFoundError
from assistant.index import (CURRENT_FILE, GEN_PREFIX, TMP_PREFIX, build_index, current_generation,
                             load_index)
from assistant.pipeline import Assistant
from assistant.retrieval import Retriever
from assistant.schema import Decision
from assistant.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SEED_TEXT = (REPO / "corpus" / "vmo-vastus-medialis-obliques.txt").read_text(encoding="utf-8")
MODEL = HashEmbedder.model_name
FIX = "knee-assistant index build"
LOAD_ERRORS = (IndexCorruptError, IndexNotFoundError, IndexMismatchError)


def write_corpus(folder: Path, revision: str) -> None:
    """The seed article plus two short notes, every note tagged with ``revision``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vmo.txt").write_text(SEED_TEXT, encoding="utf-8")
    (folder / "stairs.txt").write_text(
        "Knee pain on stairs\n\n"
        f"Revision {revision}. Going down stairs loads the kneecap more than going up. "
        "A weak VMO lets the kneecap drift outwards, which hurts on the way down.\n", encoding="utf-8")
    (folder / "swelling.txt").write_text(
        "Swelling and the VMO\n\n"
        f"Revision {revision}. Even a little swelling in the knee switches the VMO off. "
        "Ice and rest bring the swelling down so the muscle can work again.\n", encoding="utf-8")


def revision_of(index) -> set[str]:
    """The revision tags of the notes in an open index (one, if it is whole)."""
    tags = set()
    for chunk in index.chunks:
        if "Revision " in chunk.text:
            tags.add(chunk.text.split("Revision ", 1)[1].split(".", 1)[0])
    return tags


@pytest.fixture
def indexed(tmp_path) -> Settings:
    """A corpus at revision 'alpha' and its index, built with HashEmbedder."""
    # No query adapter: these tests are about a build's files; the adapter is
    # fitted before any file is written (test_adapter.py covers it).
    s = Settings(index_dir=str(tmp_path / "index"), corpus_dir=str(tmp_path / "corpus"), query_adapter=False)
    write_corpus(s.corpus_path, "alpha")
    build_index(s, HashEmbedder())
    return s


def assert_answers(s: Settings, revision: str) -> None:
    """The live index loads whole, is at ``revision`` and answers questions."""
    index = load_index(s.index_path, MODEL)
    assert revision_of(index) == {revision}
    hits = Retriever(index, HashEmbedder(), s).search("Why do stairs hurt my kneecap?")
    assert hits and any("stairs" in h.chunk.text for h in hits)
    reply = Assistant(s, embedder=HashEmbedder(), index=index).respond("What does the VMO do?")
    assert reply.decision in set(Decision) and reply.text


def assert_clean_rebuild(s: Settings, revision: str) -> None:
    """The next build succeeds, removes every leftover, and goes live."""
    report = build_index(s, HashEmbedder(), incremental=True)
    assert report.generation == current_generation(s.index_path).name
    assert not list(s.index_path.glob(f"{TMP_PREFIX}*"))
    assert len(list(s.index_path.glob(f"{GEN_PREFIX}*"))) <= 2  # the live one and the previous one
    assert_answers(s, revision)


# --------------------------------------------------------------------------
# SIGKILL during a build

#: The child process builds revision 'beta' and stops dead at one point,
#: printing "AT <point>" first so the parent kills it exactly there. Points
#: that write a file write half of it before stopping.
CHILD = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import faiss
    from assistant import index as ix
    from assistant.embedding import HashEmbedder
    from assistant.settings import Settings

    point, corpus, index_dir, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])

    def stop(name):
        print("AT " + name, flush=True)
        time.sleep(120)  # the parent sends SIGKILL now

    class Embedder(HashEmbedder):
        def encode(self, texts, progress=None):
            if point == "embedding":
                stop("embedding")
            time.sleep(delay)  # a slow model, for kills at random times
            return super().encode(texts, progress)

    def half_then_stop(name, real):
        def wrapped(*args, **kwargs):
            out = real(*args, **kwargs)
            path = str(next(a for a in args if isinstance(a, (str, os.PathLike))))
            if not os.path.exists(path):
                path += ".npy"  # np.save adds the suffix
            if os.path.isfile(path):
                with open(path, "r+b") as f:
                    f.truncate(os.path.getsize(path) // 2)
            stop(name)
        return wrapped

    if point == "chunks":  # chunks.jsonl half written
        real_dumps = ix.json.dumps
        count = [0]
        def dumps(obj, **kw):
            count[0] += 1
            if count[0] == 10:
                stop("chunks")
            return real_dumps(obj, **kw)
        ix.json.dumps = dumps
    elif point == "vectors":
        np.save = half_then_stop("vectors", np.save)
    elif point == "faiss":
        faiss.write_index = half_then_stop("faiss", faiss.write_index)
    elif point == "bm25":
        real_bm25 = ix.build_bm25
        def build_bm25(texts):
            model = real_bm25(texts)
            real_save = model.save
            def save(folder, **kw):
                real_save(folder, **kw)
                victim = os.path.join(folder, "data.csc.index.npy")
                with open(victim, "r+b") as f:
                    f.truncate(os.path.getsize(victim) // 2)
                stop("bm25")
            model.save = save
            return model
        ix.build_bm25 = build_bm25
    elif point in ("manifest", "current"):
        real_atomic = ix._write_atomic
        def write_atomic(path, text):
            if (point == "manifest" and path.name == "manifest.json") or (point == "current" and path.name == "CURRENT"):
                tmp = path.with_name(ix.TMP_PREFIX + path.name + ".partial")
                tmp.write_text(text[: len(text) // 2], encoding="utf-8")
                stop(point)
            return real_atomic(path, text)
        ix._write_atomic = write_atomic
    elif point == "rename":  # the generation is complete in its temp folder, not yet renamed
        real_replace = ix.os.replace
        def replace(src, dst):
            if os.path.basename(str(src)).startswith(ix.TMP_PREFIX + ix.GEN_PREFIX):
                stop("rename")
            return real_replace(src, dst)
        ix.os.replace = replace
    elif point == "prune":  # CURRENT already switched, old generations not yet pruned
        ix._prune = lambda index_dir, keep: stop("prune")

    s = Settings(index_dir=index_dir, corpus_dir=corpus, query_adapter=False)
    print("START", flush=True)
    ix.build_index(s, Embedder(), incremental=point != "full")
    print("DONE", flush=True)
""")


def spawn_build(s: Settings, point: str, delay: float = 0.0) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", CHILD, point, str(s.corpus_path), str(s.index_path), str(delay)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for(proc: subprocess.Popen, marker: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == marker:
            return
        if not line and proc.poll() is not None:
            raise AssertionError(f"child ended ({proc.returncode}) before {marker!r}: {proc.stderr.read()[-800:]}")
    proc.kill()
    raise AssertionError(f"child did not reach {marker!r} within {timeout} s")


def sigkill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    proc.stdout.close()
    proc.stderr.close()


# Where the kill lands, and which revision must be live afterwards: before
# CURRENT is replaced the old one, after it the new one (whole either way).
KILL_POINTS = [
    ("embedding", "alpha"),
    ("chunks", "alpha"),
    ("vectors", "alpha"),
    ("faiss", "alpha"),
    ("bm25", "alpha"),
    ("manifest", "alpha"),
    ("rename", "alpha"),
    ("current", "alpha"),
    ("prune", "beta"),
]


@pytest.mark.parametrize("point,live", KILL_POINTS, ids=[p for p, _ in KILL_POINTS])
def test_sigkill_during_build_keeps_previous_index(indexed, point, live):
    write_corpus(indexed.corpus_path, "beta")
    proc = spawn_build(indexed, point)
    wait_for(proc, f"AT {point}")
    sigkill(proc)

    assert_answers(indexed, live)
    if point not in ("embedding", "prune"):  # it was killed mid-write: leftovers exist ...
        assert list(indexed.index_path.glob(f"{TMP_PREFIX}*"))
    assert_clean_rebuild(indexed, "beta")  # ... and the next build clears them


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_at_random_times_keeps_an_index_whole(indexed, seed):
    """Kills at random moments of a slow build: the index is always whole,
    the old revision or the new one, and the next build succeeds."""
    write_corpus(indexed.corpus_path, "beta")
    proc = spawn_build(indexed, "full", delay=0.3)
    wait_for(proc, "START")
    time.sleep(random.Random(seed).uniform(0.0, 1.5))
    if proc.poll() is None:
        sigkill(proc)
    else:
        proc.communicate()
    index = load_index(indexed.index_path, MODEL)
    assert revision_of(index) in ({"alpha"}, {"beta"})
    assert_clean_rebuild(indexed, "beta")


def test_a_second_build_is_refused_while_one_runs(indexed):
    from assistant.errors import BuildInProgressError

    write_corpus(indexed.corpus_path, "beta")
    proc = spawn_build(indexed, "embedding")
    try:
        wait_for(proc, "AT embedding")
        with pytest.raises(BuildInProgressError, match="another build of .* is running"):
            build_index(indexed, HashEmbedder())
    finally:
        sigkill(proc)
    build_index(indexed, HashEmbedder())  # the lock died with the process


# --------------------------------------------------------------------------
# Corrupt, truncated, emptied and deleted files

GENERATION_FILES = ["manifest.json", "chunks.jsonl", "vectors.npy", "dense.faiss",
                    "sentences.npy", "sentence_spans.npy",
                    "bm25/data.csc.index.npy", "bm25/indices.csc.index.npy", "bm25/indptr.csc.index.npy",
                    "bm25/params.index.json", "bm25/vocab.index.json"]
DAMAGE = ["garbage", "truncated", "empty", "deleted"]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pristine")
    s = Settings(index_dir=str(root / "index"), corpus_dir=str(root / "corpus"), query_adapter=False)
    write_corpus(s.corpus_path, "alpha")
    build_index(s, HashEmbedder())
    return root


def test_the_damage_matrix_covers_every_index_file(pristine):
    gen = current_generation(pristine / "index")
    assert sorted(p.relative_to(gen).as_posix() for p in gen.rglob("*") if p.is_file()) == sorted(GENERATION_FILES)


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "garbage":  # same size, a run of bytes that is never valid UTF-8 or a valid array
        mid = len(data) // 2
        path.write_bytes(data[:mid] + b"\xff" * min(16, len(data) - mid) + data[mid + 16:])
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "deleted":
        path.unlink()


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("target", [CURRENT_FILE] + GENERATION_FILES)
def test_damaged_file_gives_one_line_naming_problem_and_fix(pristine, tmp_path, target, how):
    shutil.copytree(pristine, tmp_path / "copy")
    s = Settings(index_dir=str(tmp_path / "copy" / "index"), corpus_dir=str(tmp_path / "copy" / "corpus"),
                 query_adapter=False)
    path = s.index_path / target if target == CURRENT_FILE else current_generation(s.index_path) / target
    damage(path, how)

    with pytest.raises(LOAD_ERRORS) as caught:
        load_index(s.index_path, MODEL)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 400
    assert FIX in message
    if target == CURRENT_FILE:
        assert "no index" in message or "missing generation" in message
    else:
        assert target in message or (target == "manifest.json" and "manifest" in message)

    # The assistant reports the same one line (the CLI prints it as is) ...
    with pytest.raises(type(caught.value), match="knee-assistant index build"):
        Assistant(s, embedder=HashEmbedder()).reload()
    # ... and the command it names fixes it.
    build_index(s, HashEmbedder())
    assert_answers(s, "alpha")


@pytest.mark.parametrize("field,value,expected", [
    ("model", "packaged:some-other-model", "built with model 'packaged:some-other-model'"),
    ("format_version", 99, "format version 99"),
])
def test_manifest_from_another_model_or_format_is_a_mismatch(pristine, tmp_path, field, value, expected):
    shutil.copytree(pristine, tmp_path / "copy")
    index_dir = tmp_path / "copy" / "index"
    manifest_path = current_generation(index_dir) / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest[field] = value
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexMismatchError, match=expected) as caught:
        load_index(index_dir, MODEL)
    assert FIX in str(caught.value) and "\n" not in str(caught.value)


# --------------------------------------------------------------------------
# Answering while an update runs


def test_queries_during_updates_see_old_then_new_never_half(indexed):
    revisions = [f"r{i:02d}" for i in range(1, 9)]
    built: list[str] = []
    done = threading.Event()
    stop = threading.Event()
    problems: list[str] = []

    passes = threading.Condition()
    completed = [0]  # reader passes finished

    def wait_for_a_pass_after_this_build() -> None:
        # The pass under way may have reloaded before the build finished; the one after it cannot.
        # Waiting keeps the test about behaviour, not about which thread the scheduler favours.
        with passes:
            target = completed[0] + 2
            passes.wait_for(lambda: completed[0] >= target or stop.is_set(), timeout=60)

    def rebuild() -> None:
        try:
            for rev in revisions:
                write_corpus(indexed.corpus_path, rev)
                build_index(indexed, HashEmbedder(), incremental=True)
                built.append(rev)
                wait_for_a_pass_after_this_build()
        except Exception as exc:  # reported by the main thread
            problems.append(f"build: {type(exc).__name__}: {exc}")
        finally:
            done.set()

    assistant = Assistant(indexed, embedder=HashEmbedder())
    assistant.reload()
    seen: list[str] = []
    answered = 0
    builder = threading.Thread(target=rebuild)
    builder.start()
    while True:
        finished = done.is_set()  # read before reloading: the last pass sees the last build
        try:
            assistant.reload()
        except Exception as exc:
            problems.append(f"reload: {type(exc).__name__}: {exc}")
        index = assistant.index
        tags = revision_of(index)
        if len(tags) != 1:
            problems.append(f"index {index.generation} mixes revisions {sorted(tags)}")
        seen.append(min(tags))
        reply = assistant.respond("Why do stairs hurt my kneecap?")
        answered += 1
        for hit in reply.retrieved:
            if "Revision " in hit.chunk.text and f"Revision {seen[-1]}." not in hit.chunk.text:
                problems.append(f"a reply from {seen[-1]} retrieved {hit.chunk.text[:40]!r}")
        with passes:
            completed[0] += 1
            passes.notify_all()
        if finished or len(seen) > 10_000:
            break
    stop.set()
    with passes:
        passes.notify_all()
    builder.join(timeout=60)

    assert not problems, problems[:5]
    assert built == revisions
    order = ["alpha"] + revisions
    positions = [order.index(tag) for tag in seen]
    assert positions == sorted(positions), "an older revision came back after a newer one"
    assert set(revisions) <= set(seen), "a revision was never answered from"
    assert seen[-1] == revisions[-1] and answered > len(revisions)
