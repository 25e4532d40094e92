"""Loaders: each format, each kind of bad file, and the wording guarantee."""

from __future__ import annotations

import json
import re

import pytest

from assistant.documents import load_corpus, load_file, normalize_typography
from assistant.errors import InvalidDocumentError

from conftest import SEED_CORPUS, minimal_pdf


def test_seed_is_loaded_with_its_title_and_its_words():
    corpus = load_corpus([SEED_CORPUS])
    assert corpus.skipped == ()
    (doc,) = corpus.documents
    assert doc.title == "The VMO – Vastus Medialis Obliques"
    raw = (SEED_CORPUS / doc.source).read_text(encoding="utf-8")
    # Same words in the same order: only quotes and spacing may differ.
    words = lambda t: re.findall(r"[A-Za-z0-9]+", t)
    assert words(doc.text) == words(raw)
    assert "pull the kneecap medially" in doc.text


@pytest.mark.parametrize("raw, expected", [
    ("The VMO’s role", "The VMO's role"),
    ("The”Parker Pinch”; could", 'The "Parker Pinch" could'),
    ("help”re-align”; the kneecap", 'help "re-align" the kneecap'),
    ("the “valley” that", 'the "valley" that'),
    ("line one\r\nline two  \n\n\n\nnext", "line one\nline two\n\nnext"),
])
def test_typography_is_normalised_not_wording(raw, expected):
    assert normalize_typography(raw) == expected


def test_markdown_front_matter_gives_title_and_source(tmp_path):
    (tmp_path / "a.md").write_text("---\ntitle: Knee taping\nsource: https://clinic.example/taping\n---\n"
                                   "# Heading\n\nTaping can help the kneecap.\n", encoding="utf-8")
    (doc,), skipped = load_file(tmp_path / "a.md", tmp_path)
    assert skipped == []
    assert doc.title == "Knee taping"
    assert doc.metadata["original_source"] == "https://clinic.example/taping"
    assert doc.source == "a.md"
    assert "Taping can help the kneecap." in doc.text


def test_markdown_title_falls_back_to_heading(tmp_path):
    (tmp_path / "b.md").write_text("# Wall slides\n\nSqueeze the ball.\n", encoding="utf-8")
    (doc,), _ = load_file(tmp_path / "b.md", tmp_path)
    assert doc.title == "Wall slides"


def test_html_keeps_readable_text_only(tmp_path):
    page = """<html><head><title>Kneecap pain</title><style>p{color:red}</style>
    <script>alert('x')</script></head><body><nav>Home | About</nav>
    <header>Clinic header</header><main><h1>Kneecap pain</h1>
    <p>The kneecap can rub on the <b>femur</b>.</p><ul><li>Rest</li><li>Ice</li></ul></main>
    <footer>Copyright</footer></body></html>"""
    (tmp_path / "p.html").write_text(page, encoding="utf-8")
    (doc,), _ = load_file(tmp_path / "p.html", tmp_path)
    assert doc.title == "Kneecap pain"
    assert "The kneecap can rub on the femur." in doc.text
    assert "Rest" in doc.text and "Ice" in doc.text
    for junk in ("alert", "color:red", "Home | About", "Clinic header", "Copyright"):
        assert junk not in doc.text


def test_pdf_text_layer_is_read(tmp_path):
    (tmp_path / "leaflet.pdf").write_bytes(minimal_pdf("Wall slides help fire the VMO."))
    (doc,), skipped = load_file(tmp_path / "leaflet.pdf", tmp_path)
    assert skipped == []
    assert "Wall slides help fire the VMO." in doc.text


def test_jsonl_corpus_records_and_bad_lines(tmp_path):
    lines = [json.dumps({"_id": "d1", "title": "One", "text": "First record."}),
             "{not json",
             json.dumps({"id": "d2", "text": "Second record."}),
             json.dumps({"id": "d3", "title": "no text"}),
             json.dumps({"id": "d1", "text": "duplicate id"}),
             ""]
    (tmp_path / "c.jsonl").write_text("\n".join(lines), encoding="utf-8")
    docs, skipped = load_file(tmp_path / "c.jsonl", tmp_path)
    assert [d.source for d in docs] == ["c.jsonl#d1", "c.jsonl#d2"]
    assert docs[0].title == "One"
    assert len({d.doc_id for d in docs}) == 2
    reasons = {s.path: s.reason for s in skipped}
    assert reasons["c.jsonl:2"].startswith("not valid JSON")
    assert "text" in reasons["c.jsonl:4"]
    assert "duplicate id" in reasons["c.jsonl:5"]


@pytest.mark.parametrize("name, data, reason", [
    ("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ngarbage\x00\xff" * 3, "corrupt PDF|no readable text"),
    ("fake.pdf", b"this is not a pdf", "not a PDF"),
    ("junk.txt", bytes(range(256)) * 4, "binary"),
    ("empty.txt", b"   \n\n", "empty"),
    ("image.png", b"\x89PNG\r\n\x1a\n", "unsupported file type"),
    ("bad.md", b"---\ntitle: [unclosed\n---\nbody", "front matter"),
])
def test_unreadable_files_are_skipped_with_a_reason(tmp_path, name, data, reason):
    (tmp_path / name).write_bytes(data)
    docs, skipped = load_file(tmp_path / name, tmp_path)
    assert docs == []
    assert len(skipped) == 1 and skipped[0].path == name
    assert re.search(reason, skipped[0].reason)


def test_windows_1252_text_is_decoded(tmp_path):
    (tmp_path / "w.txt").write_bytes("Caf\u00e9 knee clinic: the kneecap\u2019s groove.".encode("cp1252"))
    (doc,), _ = load_file(tmp_path / "w.txt", tmp_path)
    assert "Café knee clinic: the kneecap's groove." in doc.text


def test_corpus_skips_bad_files_unless_strict(tmp_path):
    (tmp_path / "good.txt").write_text("Good title\n\nThe VMO pulls the kneecap.", encoding="utf-8")
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4 garbage")
    (tmp_path / ".hidden.txt").write_text("hidden", encoding="utf-8")
    corpus = load_corpus([tmp_path])
    assert [d.source for d in corpus.documents] == ["good.txt"]
    assert [s.path for s in corpus.skipped] == ["bad.pdf"]
    with pytest.raises(InvalidDocumentError, match=r"bad\.pdf: .*--strict"):
        load_corpus([tmp_path], strict=True)


def test_missing_corpus_path_is_an_error(tmp_path):
    with pytest.raises(InvalidDocumentError, match="no such file or directory"):
        load_corpus([tmp_path / "nope"])


def test_doc_id_is_stable_when_content_changes(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("T\n\nFirst version.", encoding="utf-8")
    (first,), _ = load_file(path, tmp_path)
    path.write_text("T\n\nSecond version.", encoding="utf-8")
    (second,), _ = load_file(path, tmp_path)
    assert first.doc_id == second.doc_id
    assert first.content_hash != second.content_hash
