"""Index: build, incremental update, status, atomic writes, checks on load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from assistant import index as index_mod
from assistant.errors import (BuildInProgressError, IndexCorruptError, IndexMismatchError,
                              IndexNotFoundError, InvalidDocumentError)
from assistant.index import build_index, build_lock, index_status, load_index
from assistant.settings import Settings

from conftest import minimal_pdf


def write(corpus, name, text):
    (corpus / name).write_text(text, encoding="utf-8")


@pytest.fixture
def small(tmp_path, hash_embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write(corpus, "vmo.txt", "The VMO\n\nThe VMO pulls the kneecap medially. It is one of the quads.")
    write(corpus, "taping.md", "---\ntitle: Taping\n---\nMcConnell taping can re-align the kneecap.")
    write(corpus, "stairs.txt", "Stairs\n\nGoing downstairs can hurt when the kneecap tracks badly.")
    s = Settings(index_dir=str(tmp_path / "index"), corpus_dir=str(corpus), model=hash_embedder.model_name)
    return s, corpus


def test_build_then_load(small, hash_embedder):
    s, _ = small
    report = build_index(s, hash_embedder)
    assert (report.documents, report.full_rebuild) == (3, True)
    idx = load_index(s.index_dir, hash_embedder.model_name)
    assert len(idx) == report.chunks == idx.vectors.shape[0] == idx.dense.ntotal
    assert np.allclose(np.linalg.norm(idx.vectors, axis=1), 1.0, atol=1e-5)
    sources = sorted(d["source"] for d in idx.documents())
    assert sources == ["stairs.txt", "taping.md", "vmo.txt"]
    row, score = idx.dense_search(hash_embedder.encode_query("McConnell taping re-align"), 1)[0]
    assert idx.chunks[row].source == "taping.md"
    assert idx.bm25_search("taping", 3)[0][0] == row


def test_update_embeds_only_added_and_changed_and_drops_removed(small, hash_embedder):
    s, corpus = small
    build_index(s, hash_embedder)
    before = {c.source: c.chunk_id for c in load_index(s.index_dir).chunks}
    write(corpus, "new.html", "<html><title>Brace</title><body><p>A custom knee brace may help.</p></body></html>")
    write(corpus, "stairs.txt", "Stairs\n\nGoing downstairs hurts. Walking upstairs is easier.")
    (corpus / "taping.md").unlink()
    (corpus / "corrupt.pdf").write_bytes(b"%PDF-1.4 not really")
    status = index_status(s)
    assert status.stale
    assert (status.added, status.changed, status.removed) == (("new.html",), ("stairs.txt",), ("taping.md",))

    report = build_index(s, hash_embedder, incremental=True)
    assert report.added == ("new.html",) and report.changed == ("stairs.txt",) and report.removed == ("taping.md",)
    assert report.unchanged == 1 and not report.full_rebuild
    assert report.embedded_chunks == 2  # one chunk each for new.html and stairs.txt
    assert [sk.path for sk in report.skipped] == ["corrupt.pdf"]
    idx = load_index(s.index_dir)
    after = {c.source: c.chunk_id for c in idx.chunks}
    assert after["vmo.txt"] == before["vmo.txt"]
    assert "taping.md" not in after and "new.html" in after
    # the reused vectors are the ones the embedder gives for the same text
    row = [c.source for c in idx.chunks].index("vmo.txt")
    assert np.allclose(idx.vectors[row], hash_embedder.encode([idx.chunks[row].text])[0])
    assert not index_status(s).added and not index_status(s).changed


def test_update_with_nothing_changed_writes_nothing(small, hash_embedder):
    s, _ = small
    first = build_index(s, hash_embedder)
    again = build_index(s, hash_embedder, incremental=True)
    assert again.generation == first.generation and again.embedded_chunks == 0
    assert "up to date" in again.note


def test_update_re_embeds_everything_when_chunking_changes(small, hash_embedder):
    s, _ = small
    build_index(s, hash_embedder)
    report = build_index(s.replace(chunk_max_tokens=20), hash_embedder, incremental=True)
    assert report.full_rebuild and "chunking settings changed" in report.note
    assert index_status(s.replace(chunk_max_tokens=20)).settings_changed == ()
    assert index_status(s).settings_changed


def test_failed_build_leaves_previous_index_intact(small, hash_embedder, monkeypatch):
    s, corpus = small
    build_index(s, hash_embedder)
    before = load_index(s.index_dir)
    write(corpus, "extra.txt", "Extra\n\nSomething new about the knee.")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    import faiss
    monkeypatch.setattr(faiss, "write_index", boom)
    with pytest.raises(OSError, match="disk full"):
        build_index(s, hash_embedder, incremental=True)
    monkeypatch.undo()
    after = load_index(s.index_dir)
    assert after.generation == before.generation
    assert [c.chunk_id for c in after.chunks] == [c.chunk_id for c in before.chunks]
    leftovers = list((tmp := s.index_path).glob(".tmp-*"))
    assert leftovers  # the dead build's folder is still there ...
    build_index(s, hash_embedder, incremental=True)
    assert not list(tmp.glob(".tmp-*"))  # ... and the next build clears it
    assert "extra.txt" in {c.source for c in load_index(s.index_dir).chunks}


def test_strict_build_fails_on_a_bad_file_and_keeps_the_index(small, hash_embedder):
    s, corpus = small
    build_index(s, hash_embedder)
    gen = load_index(s.index_dir).generation
    (corpus / "bad.pdf").write_bytes(minimal_pdf("ok")[:40])
    with pytest.raises(InvalidDocumentError, match=r"bad\.pdf"):
        build_index(s.replace(strict=True), hash_embedder)
    assert load_index(s.index_dir).generation == gen


def test_second_build_during_a_build_is_refused(small, hash_embedder):
    s, _ = small
    with build_lock(s.index_path):
        with pytest.raises(BuildInProgressError, match="another build .* is running"):
            build_index(s, hash_embedder)


def test_missing_index_says_what_to_run(tmp_path):
    with pytest.raises(IndexNotFoundError, match="knee-assistant index build"):
        load_index(tmp_path / "none")


def test_model_mismatch_is_reported(small, hash_embedder):
    s, _ = small
    build_index(s, hash_embedder)
    with pytest.raises(IndexMismatchError, match="built with model 'test:hash-embedder'.*index build"):
        load_index(s.index_dir, "packaged:all-MiniLM-L6-v2")


def test_format_mismatch_is_reported(small, hash_embedder):
    s, _ = small
    build_index(s, hash_embedder)
    gen = index_mod.current_generation(s.index_dir)
    manifest = json.loads((gen / "manifest.json").read_text())
    manifest["format_version"] = 99
    (gen / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match="format version 99"):
        load_index(s.index_dir)


@pytest.mark.parametrize("name", ["chunks.jsonl", "vectors.npy", "dense.faiss"])
@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_damaged_files_are_one_line_errors(small, hash_embedder, name, damage):
    s, _ = small
    build_index(s, hash_embedder)
    path = index_mod.current_generation(s.index_dir) / name
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:-8] + bytes(b ^ 0xFF for b in data[-8:]))
    else:
        path.unlink()
    with pytest.raises(IndexCorruptError, match=r"knee-assistant index build") as info:
        load_index(s.index_dir)
    assert "\n" not in str(info.value) and name in str(info.value)
    assert index_status(s).problem  # status reports it instead of raising


def test_dangling_current_pointer(small, hash_embedder):
    s, _ = small
    build_index(s, hash_embedder)
    (s.index_path / "CURRENT").write_text("gen-missing\n")
    with pytest.raises(IndexCorruptError, match="missing generation"):
        load_index(s.index_dir)


def test_chunk_budget_over_the_model_window_is_refused(small, hash_embedder):
    s, _ = small
    with pytest.raises(ValueError, match="exceeds the model's window"):
        build_index(s.replace(chunk_max_tokens=10_000), hash_embedder)


def test_old_generations_are_pruned(small, hash_embedder):
    s, corpus = small
    for i in range(4):
        write(corpus, "vmo.txt", f"The VMO\n\nVersion {i} of the text about the kneecap.")
        build_index(s, hash_embedder, incremental=True)
    gens = sorted(p.name for p in s.index_path.glob("gen-*"))
    assert len(gens) == 2  # the live one and the one before it
    assert load_index(s.index_dir).generation in gens
