"""Shared fixtures.

Unit tests use :class:`HashEmbedder` (deterministic, no model). Integration
tests use the real packaged all-MiniLM-L6-v2 model, which loads offline.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from assistant.embedding import Embedder, HashEmbedder
from assistant.settings import Settings

REPO = Path(__file__).resolve().parent.parent
SEED_CORPUS = REPO / "corpus"

# Shared by the web app tests (gradio_client and the browser).
QUESTION = "What exercises help the VMO?"
EMERGENCY = "I fell and can't put any weight on my knee"
PASSWORD = "test-admin-pw"
EVIL = ('Squats help <script>window.__pwned=1</script> the knee '
        '<img src=x onerror="window.__pwned=2"> and *bold* [link](http://x) $$x$$.')


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def minimal_pdf(text: str) -> bytes:
    """A small valid one-page PDF whose text layer is ``text`` (one line)."""
    safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 12 Tf 72 720 Td ({safe}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@pytest.fixture(autouse=True)
def _no_query_adapter_from_the_environment(monkeypatch):
    """Commands and apps read their settings from the environment: there,
    builds fit no query adapter (with the real model that takes minutes per
    index). Tests that want one say so (``Settings(...)`` defaults to it:
    ``seed_index``, test_adapter.py)."""
    monkeypatch.setenv("KNEE_QUERY_ADAPTER", "0")


@pytest.fixture
def hash_embedder() -> HashEmbedder:
    return HashEmbedder()


@pytest.fixture(scope="session")
def real_embedder() -> Embedder:
    """The packaged all-MiniLM-L6-v2, loaded once for the whole session."""
    embedder = Embedder()
    embedder.model  # load now, so a broken install fails here, clearly
    return embedder


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Settings pointing at a fresh index folder and a copy of the seed corpus."""
    corpus = tmp_path / "corpus"
    shutil.copytree(SEED_CORPUS, corpus)
    # No query adapter: fitting one (test_adapter.py) takes minutes with the real model.
    return Settings(index_dir=str(tmp_path / "index"), corpus_dir=str(corpus), query_adapter=False)


@pytest.fixture(scope="session")
def seed_index(tmp_path_factory, real_embedder):
    """The seed corpus indexed with the real model (built once per session),
    with the query adapter fitted from the committed question sets, as
    ``make run`` builds it.

    Returns the Settings that point at it.
    """
    from assistant.index import build_index

    root = tmp_path_factory.mktemp("seed-index")
    s = Settings(index_dir=str(root / "index"), corpus_dir=str(SEED_CORPUS),
                 adapter_questions=str(SEED_CORPUS.parent / "evals" / "heldout-*.jsonl"))
    build_index(s, real_embedder)
    return s


@pytest.fixture(scope="session")
def seed_assistant(seed_index, real_embedder):
    """A real Assistant over the seed index (model and index loaded once)."""
    from assistant.index import load_index
    from assistant.pipeline import Assistant

    return Assistant(seed_index, embedder=real_embedder,
                     index=load_index(seed_index.index_dir, real_embedder.model_name))
