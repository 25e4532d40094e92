"""Chunking: the token bound, offsets back into the source, stable ids."""

from __future__ import annotations

import pytest

from assistant.chunking import chunk_document, split_sentences
from assistant.documents import content_hash, load_corpus
from assistant.schema import Document

from conftest import SEED_CORPUS


def make_doc(text: str, doc_id: str = "d1") -> Document:
    return Document(doc_id, "Title", "d.txt", text, content_hash(text))


def test_sentences_split_with_offsets():
    text = "The VMO pulls the kneecap. It is part of the quads! Is it weak? Yes."
    spans = split_sentences(text)
    assert [text[s:e] for s, e in spans] == [
        "The VMO pulls the kneecap.", "It is part of the quads!", "Is it weak?", "Yes."]


@pytest.mark.slow
@pytest.mark.parametrize("max_tokens", [24, 64, 96, 254])
def test_seed_chunks_fit_the_model_window_and_map_back(real_embedder, max_tokens):
    (doc,) = load_corpus([SEED_CORPUS]).documents
    chunks = chunk_document(doc, real_embedder.count_tokens, max_tokens, 1)
    assert chunks
    counted = real_embedder.count_tokens([c.text for c in chunks])
    assert max(counted) <= max_tokens
    assert [c.n_tokens for c in chunks] == counted
    for c in chunks:
        assert doc.text[c.start:c.end] == c.text
    # every sentence of the document is in some chunk
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    for s, e in split_sentences(doc.text):
        assert {i for i in range(s, e) if not doc.text[i].isspace()} <= covered


@pytest.mark.slow
def test_a_long_run_on_sentence_is_cut_within_the_budget(real_embedder):
    text = "Title\n\n" + " ".join(["kneecap tracking and the vastus medialis obliquus"] * 200) + "."
    chunks = chunk_document(make_doc(text), real_embedder.count_tokens, 64, 1)
    assert len(chunks) > 5
    assert max(real_embedder.count_tokens([c.text for c in chunks])) <= 64
    assert all(text[c.start:c.end] == c.text for c in chunks)


def test_overlap_repeats_one_sentence_within_a_paragraph(hash_embedder):
    sentences = [f"Sentence number {i} is about the knee." for i in range(12)]
    doc = make_doc(" ".join(sentences))
    chunks = chunk_document(doc, hash_embedder.count_tokens, 30, overlap_sentences=1)
    assert len(chunks) > 2
    for a, b in zip(chunks, chunks[1:]):
        last_of_a = a.text.split(". ")[-1].rstrip(".")
        assert b.text.startswith(last_of_a)
    no_overlap = chunk_document(doc, hash_embedder.count_tokens, 30, overlap_sentences=0)
    assert sum(len(c.text) for c in no_overlap) < sum(len(c.text) for c in chunks)


def test_paragraphs_are_not_mixed_unless_tiny(hash_embedder):
    text = ("Heading\n\nFirst paragraph talks about the VMO muscle and kneecap tracking today.\n\n"
            "Second paragraph talks about exercises like wall slides with a ball.")
    chunks = chunk_document(make_doc(text), hash_embedder.count_tokens, 40, 1)
    assert [c.text.split("\n")[0] for c in chunks] == ["Heading", "Second paragraph talks about exercises like wall slides with a ball."]


def test_ids_are_stable_across_rebuilds_and_edits_elsewhere(hash_embedder):
    base = "Para one is about the VMO.\n\nPara two is about taping the kneecap.\n\nPara three: wall slides."
    first = chunk_document(make_doc(base), hash_embedder.count_tokens, 12, 0)
    again = chunk_document(make_doc(base), hash_embedder.count_tokens, 12, 0)
    assert [c.chunk_id for c in first] == [c.chunk_id for c in again]
    edited = base.replace("Para one is about the VMO.", "Para one, rewritten, is now about the quads.")
    after = chunk_document(make_doc(edited), hash_embedder.count_tokens, 12, 0)
    assert first[-1].chunk_id == after[-1].chunk_id  # untouched passage keeps its id
    assert first[0].chunk_id != after[0].chunk_id


def test_repeated_passages_get_distinct_ids(hash_embedder):
    chunks = chunk_document(make_doc("Same text here, about knees.\n\nSame text here, about knees."), hash_embedder.count_tokens, 8, 0)
    assert len({c.chunk_id for c in chunks}) == len(chunks) == 2


def test_empty_document_has_no_chunks(hash_embedder):
    assert chunk_document(make_doc("  \n\n "), hash_embedder.count_tokens, 32) == []


@pytest.mark.parametrize("kwargs, message", [
    ({"max_tokens": 2}, "max_tokens must be at least 8"),
    ({"overlap_sentences": -1}, "overlap_sentences must be 0 or more"),
])
def test_bad_arguments_are_named(hash_embedder, kwargs, message):
    with pytest.raises(ValueError, match=message):
        chunk_document(make_doc("Some text."), hash_embedder.count_tokens, **kwargs)
