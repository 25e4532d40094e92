"""Build, update, check and load the on-disk index.

Layout of an index directory (``index/`` by default)::

    CURRENT                 name of the live generation (one line)
    gen-<time>-<rand>/      one complete generation
        manifest.json       model, dimension, chunking, documents, checksums
        chunks.jsonl        one Chunk per line, row i = vector i
        vectors.npy         float32 unit vectors (the source for updates)
        sentences.npy       float32 unit vectors of each chunk's sentences
        sentence_spans.npy  (chunk row, start, end) of each sentence vector
        dense.faiss         FAISS index over the vectors (inner product)
        bm25/               bm25s lexical index over the chunk texts
    .lock                   held while a build runs

Guarantees:
- Writes are atomic. A build writes a new generation into a temporary
  folder, renames it into place, then replaces ``CURRENT`` with an atomic
  ``os.replace``. A failed or killed build leaves the previous index exactly
  as it was; its leftovers are removed by the next build.
- Only one build runs per index at a time (a file lock); a second one gets
  :class:`BuildInProgressError` at once instead of waiting.
- Loading checks the manifest and every file's size and checksum: a model
  or format mismatch, or a missing or corrupt file, is a one-line error that
  says which command fixes it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import secrets
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .adapter import fit_for_index, question_files, sources_hash
from .chunking import chunk_document, split_sentences
from .documents import Corpus, Skipped, load_corpus
from .errors import (BuildInProgressError, IndexCorruptError, IndexMismatchError,
                     IndexNotFoundError)
from .schema import Chunk, Document

FORMAT_VERSION = 3  # 2: sentence vectors; 3: BM25 drops the longer (NLTK) English stop-word list
CURRENT_FILE = "CURRENT"
LOCK_FILE = ".lock"
TMP_PREFIX = ".tmp-"
GEN_PREFIX = "gen-"
ADAPTER_FILE = "adapter.npy"

#: Exact search up to this many vectors; an approximate index beyond. Flat
#: inner-product search over 200k x 384 floats is ~20 ms on 2 cores.
EXACT_SEARCH_MAX = 200_000

#: Beyond EXACT_SEARCH_MAX an inverted-file (IVF) index: HNSW takes ~75 s per
#: 100k vectors to build on 2 cores (~20 min at 1M, and every update rebuilds
#: it), IVF about 1.5 min at 1M. Its nprobe is tuned at build time to reach
#: this recall@10 against exact search (a margin over the 0.95 goal).
IVF_RECALL_TARGET = 0.97

#: Sentence vectors (a chunk scores by its best sentence as well as as a
#: whole, which finds the passage for a question that one sentence answers)
#: are kept up to this many chunks; beyond, only whole-chunk vectors.
SENTENCE_VECTORS_MAX = 200_000

#: Files whose full checksum is verified on load; larger ones by size only,
#: so a million-chunk index still opens quickly.
CHECKSUM_MAX_BYTES = 256 * 2**20

Progress = Callable[[str, int, int], None]  # (stage, done, total)

REBUILD_HINT = "run `knee-assistant index build` to rebuild it"


# --------------------------------------------------------------------------
# Lexical index


@lru_cache(maxsize=1)
def _english_stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def bm25_tokenize(texts: Sequence[str], ids: bool = True):
    """Lower-case, English stop words removed, Snowball-stemmed tokens
    (bm25s ``Tokenized`` ids and vocabulary; with ``ids=False``, one list of
    token strings per text).

    The stop-word list is NLTK's (bm25s ``en_plus``): question words such as
    "what", "do", "about" would otherwise match unrelated passages.
    """
    import bm25s

    return bm25s.tokenize(list(texts), stopwords="en_plus", stemmer=_english_stemmer(),
                          return_ids=ids, show_progress=False)


def build_bm25(texts: Sequence[str]):
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(bm25_tokenize(texts), show_progress=False)
    return retriever


# --------------------------------------------------------------------------
# Dense index


def make_faiss_index(vectors: np.ndarray, kind: str = "auto"):
    """A FAISS inner-product index over unit vectors (cosine similarity).

    ``kind``: ``flat`` (exact), ``ivf`` or ``hnsw`` (approximate, for large
    collections) or ``auto`` (exact up to :data:`EXACT_SEARCH_MAX` vectors,
    IVF beyond).
    """
    import faiss

    n, dim = vectors.shape
    if kind == "auto":
        kind = "flat" if n <= EXACT_SEARCH_MAX else "ivf"
    if kind == "flat" or (kind == "ivf" and n < 2 * 39):  # too few vectors to train on
        index = faiss.IndexFlatIP(dim)
    elif kind == "ivf":
        nlist = max(1, min(int(2 * np.sqrt(n)), n // 39))  # faiss wants >= 39 training points a list
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(0).choice(n, min(n, 40 * nlist), replace=False)
        index.train(np.ascontiguousarray(vectors[np.sort(sample)], dtype=np.float32))
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 128
    else:
        raise ValueError(f"index kind {kind!r} is not one of auto, flat, ivf, hnsw")
    if n:
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    if hasattr(index, "nprobe") and n:
        index.nprobe = tune_nprobe(index, vectors)
    return index


def tune_nprobe(index, vectors: np.ndarray, target: float = IVF_RECALL_TARGET, queries: int = 200,
                k: int = 10) -> int:
    """The smallest nprobe whose recall@k against exact search reaches ``target``.

    Stored vectors serve as queries (each one's own row left out), so the
    setting follows this collection's own shape; faiss saves it in the file.
    """
    import faiss

    rng = np.random.default_rng(1)
    rows = rng.choice(len(vectors), min(queries, len(vectors)), replace=False)
    q = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    _, exact = faiss.knn(q, np.ascontiguousarray(vectors, dtype=np.float32), k + 1,
                         metric=faiss.METRIC_INNER_PRODUCT)
    truth = [[r for r in t if r != own][:k] for t, own in zip(exact, rows)]
    nprobe = 8
    while nprobe < index.nlist:
        index.nprobe = nprobe
        _, got = index.search(q, k + 1)
        got = [[r for r in g if r != own][:k] for g, own in zip(got, rows)]
        recall = np.mean([len(set(g) & set(t)) / max(1, len(t)) for g, t in zip(got, truth)])
        if recall >= target:
            return nprobe
        nprobe *= 2
    return int(index.nlist)


# --------------------------------------------------------------------------
# Loaded index


@dataclass
class Index:
    """An open index generation: chunks, vectors, FAISS and BM25."""

    path: Path
    manifest: dict
    chunks: list[Chunk]
    vectors: np.ndarray
    dense: object  # faiss.Index
    bm25: object  # bm25s.BM25
    sentence_vectors: np.ndarray | None = None  # (S, dim)
    sentence_spans: np.ndarray | None = None  # (S, 3): chunk row, start, end in chunk text
    adapter: np.ndarray | None = None  # (dim, dim) query map (see adapter.py), if one was fitted

    @property
    def model(self) -> str:
        return self.manifest["model"]

    @property
    def generation(self) -> str:
        return self.path.name

    def __len__(self) -> int:
        return len(self.chunks)

    def dense_search(self, query_vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(row, cosine) of the k nearest chunks, best first."""
        k = min(k, len(self.chunks))
        if k == 0:
            return []
        scores, rows = self.dense.search(np.asarray(query_vector, dtype=np.float32).reshape(1, -1), k)
        return [(int(r), float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0]

    def bm25_search(self, query: str, k: int) -> list[tuple[int, float]]:
        """(row, BM25 score) of the k best lexical matches with a score > 0."""
        k = min(k, len(self.chunks))
        if k == 0:
            return []
        tokens = bm25_tokenize([query])
        if not tokens.ids or not tokens.ids[0]:
            return []
        rows, scores = self.bm25.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return [(int(r), float(s)) for r, s in zip(rows[0], scores[0]) if s > 0]

    def cosine(self, query_vector: np.ndarray, rows: Sequence[int]) -> list[float]:
        """Cosine of the query with the given chunk rows."""
        if not len(rows):
            return []
        return [float(x) for x in self.vectors[np.asarray(rows)] @ np.asarray(query_vector, dtype=np.float32)]

    def sentence_search(self, query_vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """(row, best sentence cosine) of the k chunks whose best sentence is
        nearest the query, best first; empty without sentence vectors."""
        if self.sentence_vectors is None or not len(self.sentence_vectors):
            return []
        sims = self.sentence_vectors @ np.asarray(query_vector, dtype=np.float32)
        take = min(len(sims), 4 * k)
        top = np.argpartition(-sims, take - 1)[:take]
        best: dict[int, float] = {}
        for j in top[np.argsort(-sims[top])]:
            best.setdefault(int(self.sentence_spans[j, 0]), float(sims[j]))
        return list(best.items())[:k]

    def term_counts(self, rows: Sequence[int]) -> list["Counter[str]"]:
        """Each chunk's BM25 terms (stemmed, stop words removed) with their
        counts, for chunk ``rows``; worked out once per chunk and kept."""
        from collections import Counter

        cache = self.__dict__.setdefault("_term_counts", {})
        todo = [r for r in dict.fromkeys(rows) if r not in cache]
        if todo:
            tokens = bm25_tokenize([self.chunks[r].text for r in todo], ids=False)
            cache.update((r, Counter(t)) for r, t in zip(todo, tokens))
        return [cache[r] for r in rows]

    def rows_of_document(self, doc_id: str) -> list[int]:
        """The rows of one document's chunks, in order."""
        if "_doc_rows" not in self.__dict__:
            rows: dict[str, list[int]] = {}
            for i, c in enumerate(self.chunks):
                rows.setdefault(c.doc_id, []).append(i)
            self._doc_rows = rows
        return self._doc_rows.get(doc_id, [])

    def chunk_share(self, words: Sequence[str], rows: Sequence[int] | None = None) -> dict[str, float]:
        """For each word, the share of chunks that hold it (after the BM25
        tokenizer's stemming): of the whole index, or of ``rows`` (say, one
        document's chunks) when given; 0 for a word none holds or a stop word."""
        stem = _english_stemmer().stemWord
        if rows is not None:
            counts = self.term_counts(rows)
            n = max(len(counts), 1)
            return {w: sum(stem(w.lower()) in c for c in counts) / n for w in words}
        vocab = getattr(self.bm25, "vocab_dict", None) or {}
        indptr = self.bm25.scores["indptr"] if vocab else None
        n = max(len(self.chunks), 1)
        out = {}
        for word in words:
            token = vocab.get(stem(word.lower()))
            out[word] = 0.0 if token is None else float(indptr[token + 1] - indptr[token]) / n
        return out

    def row_of(self, chunk_id: str) -> int | None:
        """The row of a chunk id, or None."""
        if not hasattr(self, "_rows"):
            self._rows = {c.chunk_id: i for i, c in enumerate(self.chunks)}
        return self._rows.get(chunk_id)

    def sentences_of(self, row: int) -> list[tuple[int, int, np.ndarray]]:
        """(start, end, vector) of each sentence of chunk ``row`` (empty if none stored)."""
        if self.sentence_spans is None or not len(self.sentence_spans):
            return []
        if not hasattr(self, "_sentence_rows"):
            rows: dict[int, list[int]] = {}
            for j, chunk_row in enumerate(self.sentence_spans[:, 0]):
                rows.setdefault(int(chunk_row), []).append(j)
            self._sentence_rows = rows
        return [(int(self.sentence_spans[j, 1]), int(self.sentence_spans[j, 2]), self.sentence_vectors[j])
                for j in self._sentence_rows.get(row, [])]

    def documents(self) -> list[dict]:
        """One row per indexed document: id, title, source, chunks, indexed_at."""
        return [dict(doc_id=doc_id, **info) for doc_id, info in self.manifest["documents"].items()]


def current_generation(index_dir: Path | str) -> Path:
    """The live generation folder of ``index_dir``.

    Raises:
        IndexNotFoundError: there is no index there yet.
        IndexCorruptError: ``CURRENT`` points at nothing.
    """
    index_dir = Path(index_dir)
    pointer = index_dir / CURRENT_FILE
    if not pointer.exists():
        raise IndexNotFoundError(f"no index in {index_dir}/: {REBUILD_HINT.replace('rebuild', 'build')}")
    name = pointer.read_text(encoding="utf-8", errors="replace").strip()
    gen = index_dir / name
    if not name.startswith(GEN_PREFIX) or "/" in name or not gen.is_dir():
        raise IndexCorruptError(f"index {index_dir}/ points at a missing generation {name!r}: {REBUILD_HINT}")
    return gen


def read_manifest(index_dir: Path | str, gen: Path | None = None) -> dict:
    """The manifest of ``gen`` (default: the live generation of ``index_dir``)."""
    gen = current_generation(index_dir) if gen is None else gen
    path = gen / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict):
            raise ValueError("not an object")
    except FileNotFoundError:
        raise IndexCorruptError(f"index {gen}/ has no manifest.json: {REBUILD_HINT}") from None
    except (ValueError, UnicodeDecodeError):
        raise IndexCorruptError(f"index {gen}/manifest.json is corrupt: {REBUILD_HINT}") from None
    return manifest


def load_index(index_dir: Path | str, model: str | None = None) -> Index:
    """Open the live generation of ``index_dir`` and check it.

    Args:
        index_dir: the index directory.
        model: the embedding model the caller will query with; a different
            one recorded in the manifest is an :class:`IndexMismatchError`.
    """
    for attempt in range(3):
        gen = current_generation(index_dir)
        try:
            return _load_generation(index_dir, gen, model)
        except IndexCorruptError:
            # A build may switch CURRENT and prune this generation while we
            # read it: that is no corruption, so read the new live one.
            if attempt == 2 or current_generation(index_dir) == gen:
                raise
    raise AssertionError("unreachable")


def _load_generation(index_dir: Path | str, gen: Path, model: str | None) -> Index:
    import faiss

    manifest = read_manifest(index_dir, gen)  # this generation's, not whatever CURRENT says now
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IndexMismatchError(
            f"index {index_dir}/ has format version {version}, this program reads {FORMAT_VERSION}: {REBUILD_HINT}")
    if model is not None and manifest.get("model") != model:
        raise IndexMismatchError(
            f"index {index_dir}/ was built with model {manifest.get('model')!r}, not {model!r}: {REBUILD_HINT}")
    _verify_files(gen, manifest)
    try:
        chunks = [Chunk(**json.loads(line)) for line in
                  (gen / "chunks.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
        vectors = np.load(gen / "vectors.npy", mmap_mode="r" if _size(gen / "vectors.npy") > CHECKSUM_MAX_BYTES else None)
        dense = faiss.read_index(str(gen / "dense.faiss"))
        sentence_vectors = np.load(gen / "sentences.npy")
        sentence_spans = np.load(gen / "sentence_spans.npy")
        import bm25s

        bm25 = bm25s.BM25.load(str(gen / "bm25"), show_progress=False, verbosity=0) if chunks else None
        adapter = np.load(gen / ADAPTER_FILE) if manifest.get("adapter") else None
    except Exception as exc:
        raise IndexCorruptError(f"index {gen}/ cannot be read ({type(exc).__name__}): {REBUILD_HINT}") from None
    n = manifest.get("counts", {}).get("chunks")
    if not (len(chunks) == n == vectors.shape[0] == dense.ntotal):
        raise IndexCorruptError(
            f"index {gen}/ is inconsistent ({len(chunks)} chunks, {vectors.shape[0]} vectors, "
            f"{dense.ntotal} in FAISS, manifest says {n}): {REBUILD_HINT}")
    if vectors.ndim != 2 or (n and vectors.shape[1] != manifest.get("dimension")):
        raise IndexCorruptError(f"index {gen}/vectors.npy has the wrong shape {vectors.shape}: {REBUILD_HINT}")
    if (sentence_spans.ndim != 2 or len(sentence_spans) != len(sentence_vectors)
            or (len(sentence_spans) and (sentence_spans[:, 0].max() >= len(chunks)
                                         or sentence_vectors.shape[1] != vectors.shape[1]))):
        raise IndexCorruptError(f"index {gen}/ sentence vectors do not match its chunks: {REBUILD_HINT}")
    if adapter is not None and adapter.shape != (vectors.shape[1], vectors.shape[1]):
        raise IndexCorruptError(f"index {gen}/{ADAPTER_FILE} has the wrong shape {adapter.shape}: {REBUILD_HINT}")
    return Index(gen, manifest, chunks, vectors, dense, bm25, sentence_vectors, sentence_spans, adapter)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verify_files(gen: Path, manifest: dict) -> None:
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise IndexCorruptError(f"index {gen}/manifest.json lists no files: {REBUILD_HINT}")
    for rel, meta in files.items():
        path = gen / rel
        size = _size(path)
        if size < 0:
            raise IndexCorruptError(f"index {gen}/ is missing {rel}: {REBUILD_HINT}")
        if size != meta.get("bytes"):
            raise IndexCorruptError(
                f"index {gen}/{rel} is {size} bytes, expected {meta.get('bytes')} (truncated or changed): {REBUILD_HINT}")
        if size <= CHECKSUM_MAX_BYTES and _sha256(path) != meta.get("sha256"):
            raise IndexCorruptError(f"index {gen}/{rel} fails its checksum (corrupt): {REBUILD_HINT}")


# --------------------------------------------------------------------------
# Building


@dataclass(frozen=True)
class BuildReport:
    """What a build or update did."""

    index_dir: str
    generation: str
    documents: int
    chunks: int
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: int = 0
    embedded_chunks: int = 0
    skipped: tuple[Skipped, ...] = ()
    seconds: float = 0.0
    full_rebuild: bool = True
    note: str = ""
    adapter_pairs: int = 0  # labelled questions the query adapter learned from (0: none fitted)

    def to_json(self) -> dict:
        d = asdict(self)
        d["skipped"] = [asdict(s) for s in self.skipped]
        return d


def chunk_settings(settings) -> dict:
    return {"max_tokens": settings.chunk_max_tokens, "overlap_sentences": settings.chunk_overlap_sentences,
            "sentence_vectors": bool(settings.sentence_vectors)}


@contextmanager
def build_lock(index_dir: Path) -> Iterator[None]:
    """Hold the index's build lock, or raise BuildInProgressError at once."""
    import fcntl

    index_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(index_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildInProgressError(
                f"another build of {index_dir}/ is running; wait for it to finish") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


def build_index(
    settings,
    embedder,
    corpus_paths: Sequence[Path | str] | None = None,
    incremental: bool = False,
    progress: Progress | None = None,
    corpus: Corpus | None = None,
) -> BuildReport:
    """Build (or, with ``incremental``, update) the index at settings.index_dir.

    Args:
        settings: a :class:`~assistant.settings.Settings`.
        embedder: an object with ``model_name``, ``dimension``,
            ``max_tokens``, ``count_tokens`` and ``encode``.
        corpus_paths: directories/files to index (default settings.corpus_dir).
        incremental: reuse chunks and vectors of documents whose content,
            the model and the chunking settings are unchanged; embed only
            added or changed documents and drop removed ones.
        progress: called as ``progress(stage, done, total)``.
        corpus: an already loaded corpus (then ``corpus_paths`` is ignored).

    Raises:
        InvalidDocumentError: with settings.strict, any unreadable file.
        BuildInProgressError: another build of the same index is running.
        ValueError: chunk_max_tokens exceeds the model's window.
    """
    started = time.perf_counter()
    index_dir = settings.index_path
    if settings.chunk_max_tokens > embedder.max_tokens:
        raise ValueError(
            f"chunk_max_tokens {settings.chunk_max_tokens} exceeds the model's window of "
            f"{embedder.max_tokens} tokens; choose at most {embedder.max_tokens}")
    progress = progress or (lambda stage, done, total: None)
    with build_lock(index_dir):
        _remove_leftovers(index_dir)
        if corpus is None:
            paths = list(corpus_paths) if corpus_paths else [settings.corpus_path]
            progress("loading", 0, 1)
            corpus = load_corpus(paths, strict=settings.strict)
        docs = corpus.documents

        old = None
        note = ""
        if incremental:
            try:
                old = load_index(index_dir)
            except IndexNotFoundError:
                note = "no previous index: built from scratch"
            except (IndexCorruptError, IndexMismatchError) as exc:
                note = f"previous index unusable ({exc.__class__.__name__}): built from scratch"
            if old is not None and (old.manifest.get("model") != embedder.model_name
                                    or old.manifest.get("chunking") != chunk_settings(settings)):
                note = "model or chunking settings changed: re-embedded everything"
                old = None

        reuse: dict[str, tuple[list[Chunk], np.ndarray, list]] = {}
        old_docs: dict = {}
        if old is not None:
            old_docs = old.manifest["documents"]
            rows_by_doc: dict[str, list[int]] = {}
            for row, chunk in enumerate(old.chunks):
                rows_by_doc.setdefault(chunk.doc_id, []).append(row)
            for doc in docs:
                info = old_docs.get(doc.doc_id)
                if info and info["content_hash"] == doc.content_hash:
                    rows = rows_by_doc.get(doc.doc_id, [])
                    reuse[doc.doc_id] = ([old.chunks[r] for r in rows], np.asarray(old.vectors[rows]),
                                         [old.sentences_of(r) for r in rows])

        questions = question_files(settings.adapter_questions) if settings.query_adapter else []
        questions_hash = sources_hash(questions)
        if (old is not None and len(reuse) == len(docs) == len(old_docs)
                and [s.path for s in corpus.skipped] == [s["path"] for s in old.manifest.get("skipped", [])]
                and old.manifest.get("adapter_sources", "") == questions_hash):
            return BuildReport(
                index_dir=str(index_dir), generation=old.generation, documents=len(docs), chunks=len(old.chunks),
                unchanged=len(docs), skipped=corpus.skipped, seconds=round(time.perf_counter() - started, 3),
                full_rebuild=False, note="already up to date: nothing to do")

        to_embed: list[Chunk] = []
        per_doc: list[tuple[Document, list[Chunk] | None]] = []
        for i, doc in enumerate(docs):
            if doc.doc_id in reuse:
                per_doc.append((doc, None))
            else:
                chunks = chunk_document(doc, embedder.count_tokens, settings.chunk_max_tokens,
                                        settings.chunk_overlap_sentences)
                per_doc.append((doc, chunks))
                to_embed.extend(chunks)
            progress("chunking", i + 1, len(docs))

        with_sentences = settings.sentence_vectors and (
            len(to_embed) + sum(len(r[0]) for r in reuse.values()) <= SENTENCE_VECTORS_MAX)
        new_sentences = [(i, s, e) for i, c in enumerate(to_embed) for s, e in split_sentences(c.text)] \
            if with_sentences else []
        total = len(to_embed) + len(new_sentences)
        done = 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            progress("embedding", done, total)

        progress("embedding", 0, total)
        new_vectors = embedder.encode([c.text for c in to_embed], progress=tick)
        new_sentence_vectors = embedder.encode([to_embed[i].text[s:e] for i, s, e in new_sentences], progress=tick)
        sentences_by_new_chunk: dict[int, list] = {}
        for (i, s, e), vec in zip(new_sentences, new_sentence_vectors):
            sentences_by_new_chunk.setdefault(i, []).append((s, e, vec))

        all_chunks: list[Chunk] = []
        parts: list[np.ndarray] = []
        sentence_rows: list[tuple[int, int, int]] = []
        sentence_vecs: list[np.ndarray] = []
        offset = 0
        now = _now()
        documents: dict[str, dict] = {}
        for doc, chunks in per_doc:
            if chunks is None:
                chunks, vecs, sents = reuse[doc.doc_id]
                indexed_at = old_docs[doc.doc_id]["indexed_at"]
            else:
                vecs = new_vectors[offset:offset + len(chunks)]
                sents = [sentences_by_new_chunk.get(offset + j, []) for j in range(len(chunks))]
                offset += len(chunks)
                indexed_at = now
            if with_sentences:
                for j, chunk_sents in enumerate(sents):
                    for s, e, vec in chunk_sents:
                        sentence_rows.append((len(all_chunks) + j, s, e))
                        sentence_vecs.append(vec)
            all_chunks.extend(chunks)
            parts.append(vecs.reshape(len(chunks), -1) if len(chunks) else np.zeros((0, embedder.dimension), np.float32))
            documents[doc.doc_id] = {"title": doc.title, "source": doc.source, "content_hash": doc.content_hash,
                                     "chunks": len(chunks), "indexed_at": indexed_at}
        vectors = np.vstack(parts).astype(np.float32) if parts else np.zeros((0, embedder.dimension), np.float32)

        progress("writing", 0, 1)
        sentences = (np.vstack(sentence_vecs).astype(np.float32) if sentence_vecs
                     else np.zeros((0, embedder.dimension), np.float32),
                     np.asarray(sentence_rows, dtype=np.int64).reshape(-1, 3))
        adapter, fitted = None, None
        if questions:
            progress("adapter", 0, 1)
            adapter, fitted = fit_for_index(questions, all_chunks, vectors, sentences, embedder,
                                            cache_dir=index_dir / "cache")
            progress("adapter", 1, 1)
        gen = _write_generation(index_dir, settings, embedder, all_chunks, vectors, documents, corpus.skipped,
                                sentences, adapter=adapter, adapter_report=fitted, adapter_sources=questions_hash)
        progress("writing", 1, 1)

        old_ids = set(old_docs)
        new_ids = set(documents)
        changed = tuple(d for d in new_ids & old_ids if d not in reuse)
        return BuildReport(
            index_dir=str(index_dir), generation=gen.name, documents=len(documents), chunks=len(all_chunks),
            added=tuple(sorted(documents[d]["source"] for d in new_ids - old_ids)) if old is not None else (),
            changed=tuple(sorted(documents[d]["source"] for d in changed)),
            removed=tuple(sorted(old_docs[d]["source"] for d in old_ids - new_ids)),
            unchanged=len(reuse), embedded_chunks=len(to_embed), skipped=corpus.skipped,
            seconds=round(time.perf_counter() - started, 3), full_rebuild=old is None, note=note,
            adapter_pairs=fitted.pairs if fitted else 0)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_generation(index_dir: Path, settings, embedder, chunks: list[Chunk], vectors: np.ndarray,
                      documents: dict, skipped: Sequence[Skipped],
                      sentences: tuple[np.ndarray, np.ndarray] | None = None,
                      adapter: np.ndarray | None = None, adapter_report=None, adapter_sources: str = "") -> Path:
    """Write a complete generation beside the live one, then switch to it."""
    import faiss

    name = f"{GEN_PREFIX}{_dt.datetime.now(_dt.timezone.utc).strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
    tmp = index_dir / f"{TMP_PREFIX}{name}"
    tmp.mkdir(parents=True)
    with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as f:
        for chunk in chunks:
            f.write(json.dumps(asdict(chunk), ensure_ascii=False) + "\n")
    np.save(tmp / "vectors.npy", vectors)
    if sentences is None:
        sentences = (np.zeros((0, vectors.shape[1]), np.float32), np.zeros((0, 3), np.int64))
    np.save(tmp / "sentences.npy", sentences[0])
    np.save(tmp / "sentence_spans.npy", sentences[1])
    if adapter is not None:
        np.save(tmp / ADAPTER_FILE, adapter)
    dense = make_faiss_index(vectors)
    faiss.write_index(dense, str(tmp / "dense.faiss"))
    if chunks:
        build_bm25([c.text for c in chunks]).save(str(tmp / "bm25"), show_progress=False)
    else:
        (tmp / "bm25").mkdir()
    files = {}
    for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
        files[path.relative_to(tmp).as_posix()] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": embedder.model_name,
        "dimension": int(embedder.dimension),
        "chunking": chunk_settings(settings),
        "dense_index": type(dense).__name__,
        "built_at": _now(),
        "counts": {"documents": len(documents), "chunks": len(chunks)},
        "documents": documents,
        "skipped": [asdict(s) for s in skipped],
        # the question sets the adapter was fitted from (hash), and what it learned
        "adapter_sources": adapter_sources,
        "adapter": adapter_report.to_json() if adapter is not None else None,
        "files": files,
    }
    _write_atomic(tmp / "manifest.json", json.dumps(manifest, indent=1, ensure_ascii=False))
    _fsync_dir(tmp)
    final = index_dir / name
    os.replace(tmp, final)
    _write_atomic(index_dir / CURRENT_FILE, name + "\n")
    _fsync_dir(index_dir)
    _prune(index_dir, keep={name})
    return final


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{secrets.token_hex(3)}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_leftovers(index_dir: Path) -> None:
    """Remove what a killed build left behind (we hold the lock)."""
    for path in index_dir.glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def _prune(index_dir: Path, keep: set[str]) -> None:
    """Drop old generations, keeping the newest previous one.

    The previous generation stays so that a process that opened it a moment
    before the switch can still finish reading it.
    """
    gens = sorted((p for p in index_dir.glob(f"{GEN_PREFIX}*") if p.is_dir() and p.name not in keep),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    for old in gens[1:]:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------
# Status


@dataclass(frozen=True)
class Status:
    """Whether the index matches the corpus and the current settings."""

    index_dir: str
    exists: bool
    problem: str = ""
    generation: str = ""
    built_at: str = ""
    model: str = ""
    documents: int = 0
    chunks: int = 0
    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    settings_changed: tuple[str, ...] = ()
    skipped: tuple[Skipped, ...] = field(default_factory=tuple)

    @property
    def stale(self) -> bool:
        return (not self.exists or bool(self.problem) or bool(self.added or self.changed or self.removed
                                                               or self.settings_changed))

    def to_json(self) -> dict:
        d = asdict(self)
        d["stale"] = self.stale
        d["skipped"] = [asdict(s) for s in self.skipped]
        return d


def index_status(settings, corpus_paths: Sequence[Path | str] | None = None,
                 corpus: Corpus | None = None) -> Status:
    """Compare the index at settings.index_dir with the corpus and settings.

    Never raises for a missing or broken index: that is reported in
    ``problem`` (and the index counts as stale).
    """
    index_dir = str(settings.index_path)
    try:
        gen = current_generation(settings.index_path)  # read CURRENT once: a build may switch it
        manifest = read_manifest(settings.index_path, gen)
        _verify_files(gen, manifest)
    except IndexNotFoundError:
        return Status(index_dir, exists=False, problem="no index built yet")
    except (IndexCorruptError, IndexMismatchError) as exc:
        return Status(index_dir, exists=True, problem=str(exc))
    if corpus is None:
        corpus = load_corpus(list(corpus_paths) if corpus_paths else [settings.corpus_path])
    indexed = manifest.get("documents", {})
    current = {d.doc_id: d for d in corpus.documents}
    settings_changed = []
    if manifest.get("format_version") != FORMAT_VERSION:
        settings_changed.append(f"format version {manifest.get('format_version')} -> {FORMAT_VERSION}")
    if manifest.get("model") != settings.model:
        settings_changed.append(f"model {manifest.get('model')} -> {settings.model}")
    if manifest.get("chunking") != chunk_settings(settings):
        settings_changed.append(f"chunking {manifest.get('chunking')} -> {chunk_settings(settings)}")
    questions_hash = sources_hash(question_files(settings.adapter_questions)) if settings.query_adapter else ""
    if manifest.get("adapter_sources", "") != questions_hash:
        settings_changed.append(f"the labelled questions the query adapter learns from ({settings.adapter_questions})")
    return Status(
        index_dir, exists=True, generation=gen.name,
        built_at=manifest.get("built_at", ""), model=manifest.get("model", ""),
        documents=len(indexed), chunks=manifest.get("counts", {}).get("chunks", 0),
        added=tuple(sorted(d.source for i, d in current.items() if i not in indexed)),
        changed=tuple(sorted(d.source for i, d in current.items()
                             if i in indexed and indexed[i]["content_hash"] != d.content_hash)),
        removed=tuple(sorted(v["source"] for i, v in indexed.items() if i not in current)),
        settings_changed=tuple(settings_changed), skipped=corpus.skipped)
