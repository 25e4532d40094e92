"""Benchmarks: how fast a turn is, how fast the index builds, how far it scales.

:func:`run_bench` measures, on this machine, and writes ``bench.json``,
``bench.md`` and PNG plots into an output folder:

* **turn latency**: warm :meth:`Assistant.respond` on in-scope questions
  (p50/p95) against the *floor* for the same work, timed in the same loop:
  one encode of the query plus one FAISS search of ``fetch_k`` on the same
  index. The target is a guarded, cited turn within 1.5x the floor at p50;
  when it misses, a cProfile of the turn is written beside the report.
* **start-up**: ``knee-assistant --help`` wall time (and whether it imported
  torch), and a fresh process's time to its first ``ask`` reply.
* **index build**: chunks/s of :func:`build_index` against raw
  ``embedder.encode`` on the same chunks (target >= 0.85), and the cost of an
  incremental update after one changed document among many.
* **scale**: synthetic collections of e.g. 10k, 100k and 1M chunks (clustered
  unit vectors stand in for embeddings, generated text for BM25) written as
  real index generations: index kind chosen by size, recall@10 against exact
  search, dense/BM25/hybrid query p50/p95, RSS, disk size, build times. Each
  size runs in its own processes so memory figures are not polluted.
* **concurrency**: 8 and 32 simultaneous ``gradio_client`` clients against
  the web app on loopback (when ``app.py`` exists): replies/s, p95, errors.

A section that fails is recorded with its error and the others still run.
Figures depend on the machine and on what else runs on it: the load average
is recorded before and after each section.
"""

from __future__ import annotations

import cProfile
import io
import json
import math
import os
import platform
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (2_000, 5_000)

#: Targets from issue 5; each figure in bench.json says whether it met its target.
TURN_RATIO_TARGET = 1.5
BUILD_RATIO_TARGET = 0.85
RECALL_TARGET = 0.95

#: In-scope questions the seed collection answers (the VMO article).
IN_SCOPE_QUESTIONS = (
    "What does the VMO do?",
    "Where does the VMO attach to the kneecap?",
    "Why does my knee buckle when I walk downstairs?",
    "What causes the popping noise in my knee when I bend it?",
    "How does swelling affect the VMO?",
    "Which exercises strengthen the VMO?",
    "Why do I feel a stabbing pain on the inside of my knee when running?",
    "What is the kneecap valley formed by the femur?",
    "Which quad muscles pull the kneecap outwards?",
    "How can I tell if my VMO is weak?",
)

Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Small helpers


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100, linear interpolation); None when empty."""
    if not len(values):
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def summarize_ms(seconds: Sequence[float]) -> dict:
    """p50/p95/mean/max in milliseconds of a list of durations in seconds."""
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50_ms": _r(percentile(ms, 50)), "p95_ms": _r(percentile(ms, 95)),
            "mean_ms": _r(statistics.fmean(ms)) if ms else None, "max_ms": _r(max(ms)) if ms else None}


def recall_at_k(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Mean share of each query's true top-k that ``found`` also has in its top-k."""
    if len(truth) == 0:
        return float("nan")
    hits = [len(set(f[:k].tolist()) & set(t[:k].tolist())) / max(1, min(k, len(t))) for f, t in zip(found, truth)]
    return float(np.mean(hits))


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int, block: int = 200_000) -> np.ndarray:
    """Brute-force top-k rows by inner product (the ground truth), in blocks."""
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    q = np.ascontiguousarray(queries, dtype=np.float32)
    for start in range(0, len(vectors), block):
        part = np.asarray(vectors[start:start + block], dtype=np.float32)
        scores = q @ part.T
        kk = min(k, scores.shape[1])
        idx = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        best_s = np.hstack([best_s, np.take_along_axis(scores, idx, 1)])
        best_i = np.hstack([best_i, idx + start])
        keep = np.argsort(-best_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    return best_i


def _r(x, nd: int = 2):
    return None if x is None else round(float(x), nd)


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def machine_info() -> dict:
    """nproc, RAM, CPU model and versions: what a reader needs to compare runs."""
    import psutil

    cpu = platform.processor() or ""
    family = model = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = re.search(r"model name\s*:\s*(.+)", text).group(1).strip()
        family = re.search(r"cpu family\s*:\s*(\d+)", text).group(1)
        model = re.search(r"^model\s*:\s*(\d+)", text, re.M).group(1)
    except (OSError, AttributeError):
        pass
    versions = {}
    for name in ("numpy", "faiss", "torch", "bm25s", "sentence_transformers", "gradio"):
        try:
            from importlib.metadata import version

            versions[name] = version({"faiss": "faiss-cpu", "sentence_transformers": "sentence-transformers"}
                                     .get(name, name))
        except Exception:
            versions[name] = None
    return {"cpu": cpu, "cpu_family_model": f"{family}/{model}" if family else "",
            "nproc": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "platform": platform.platform(),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()], "versions": versions}


class CountingEmbedder:
    """Wraps an embedder and counts ``encode`` calls and texts (to explain a turn)."""

    def __init__(self, inner):
        self._inner = inner
        self.calls = 0
        self.texts = 0

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def encode(self, texts, progress=None):
        self.calls += 1
        self.texts += len(texts)
        return self._inner.encode(texts, progress=progress)

    def encode_query(self, text):
        return self.encode([text])[0]


# --------------------------------------------------------------------------
# Synthetic content


def corpus_sentences(corpus_dir: Path | str) -> list[str]:
    """Sentences of the seed collection, used as the raw material of synthetic documents."""
    from .documents import load_corpus

    sentences: list[str] = []
    for doc in load_corpus([corpus_dir]).documents:
        sentences.extend(s.strip() for s in re.split(r"(?<=[.!?])\s+", doc.text) if len(s.split()) >= 4)
    if not sentences:
        raise ValueError(f"no sentences found in {corpus_dir}; the benchmark needs some seed text")
    return sentences


def write_synthetic_corpus(folder: Path, n_docs: int, sentences: Sequence[str], seed: int = 0) -> list[Path]:
    """``n_docs`` text files of 3-6 paragraphs of 3-6 seed sentences each.

    Sentences are reshuffled and tagged with a document number so every
    document (and chunk) is distinct, as in a real collection.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_docs):
        paras = []
        for _ in range(int(rng.integers(3, 7))):
            picks = rng.choice(len(sentences), size=int(rng.integers(3, 7)))
            paras.append(" ".join(sentences[j] for j in picks))
        body = f"Knee note {i}: {paras[0]}"
        text = f"Synthetic knee document {i}\n\n" + "\n\n".join([body] + paras[1:]) + "\n"
        path = folder / f"doc-{i:05d}.txt"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def _vocabulary(size: int, rng) -> np.ndarray:
    syllables = ["ka", "ne", "vo", "mi", "pa", "te", "lu", "ri", "so", "qua", "dri", "cep", "pat", "el",
                 "fem", "ur", "tib", "men", "is", "cus", "lig", "ant", "ten", "don", "bur", "sa"]
    base = ["knee", "kneecap", "patella", "vmo", "quadriceps", "muscle", "pain", "swelling", "tendon",
            "ligament", "stairs", "running", "exercise", "strength", "cartilage", "meniscus", "femur",
            "tibia", "squat", "lunge", "stretch", "physio", "brace", "tracking", "clicking", "buckling"]
    words = list(base)
    seen = set(words)
    while len(words) < size:
        w = "".join(rng.choice(syllables, size=int(rng.integers(2, 5))))
        if w not in seen:
            seen.add(w)
            words.append(w)
    return np.array(words)


def synthetic_texts(n: int, seed: int = 0, words: int = 55, vocab_size: int = 30_000,
                    block: int = 50_000) -> list[str]:
    """``n`` chunk texts of ``words`` words with Zipf-distributed word frequencies."""
    rng = np.random.default_rng(seed)
    vocab = _vocabulary(vocab_size, rng)
    p = 1.0 / (np.arange(vocab_size) + 2.7) ** 1.07
    p /= p.sum()
    out: list[str] = []
    for start in range(0, n, block):
        ids = rng.choice(vocab_size, size=(min(block, n - start), words), p=p)
        table = vocab[ids]
        out.extend(" ".join(row) for row in table.tolist())
    return out


def synthetic_queries(n: int, seed: int = 1, vocab_size: int = 30_000) -> list[str]:
    """Short keyword questions over mid-frequency words of the same vocabulary."""
    rng = np.random.default_rng(0)  # the same vocabulary as synthetic_texts(seed=0)
    vocab = _vocabulary(vocab_size, rng)
    rng = np.random.default_rng(seed)
    return [" ".join(vocab[rng.integers(20, 3000, size=int(rng.integers(3, 7)))]) for _ in range(n)]


def clustered_vectors(n: int, dim: int = 384, seed: int = 0, n_queries: int = 0, noise: float = 1.2,
                      block: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors shaped like sentence embeddings of a topical collection.

    Two levels of clusters (topics of ~2,000 chunks, sub-topics of ~50, as
    documents and sections would be) plus per-chunk noise, so a query's true
    neighbours share its sub-topic yet differ in detail. Queries are drawn
    from the same mixture (not copies of stored vectors).

    Returns:
        (vectors of shape (n, dim), queries of shape (n_queries, dim)).
    """
    rng = np.random.default_rng(seed)
    n_topics = max(1, n // 2000)
    n_sub = max(1, n // 50)
    topics = rng.standard_normal((n_topics, dim), dtype=np.float32)
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    sub_topic = rng.integers(0, n_topics, n_sub)
    subs = rng.standard_normal((n_sub, dim), dtype=np.float32)
    subs /= np.linalg.norm(subs, axis=1, keepdims=True)
    subs = topics[sub_topic] + 0.8 * subs
    subs /= np.linalg.norm(subs, axis=1, keepdims=True)

    def draw(count: int) -> np.ndarray:
        out = np.empty((count, dim), np.float32)
        for s in range(0, count, block):
            e = min(count, s + block)
            which = rng.integers(0, n_sub, e - s)
            x = subs[which] + noise * rng.standard_normal((e - s, dim), dtype=np.float32) / np.sqrt(dim)
            out[s:e] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    return draw(n), draw(n_queries)


# --------------------------------------------------------------------------
# Turn latency


def forget_texts(embedder) -> None:
    """Empty the embedder's text-to-vector cache, so a repeated benchmark
    question costs what a new one would (the model stays loaded)."""
    clear = getattr(embedder, "clear_cache", None)
    if clear is not None:
        clear()
    elif isinstance(getattr(embedder, "_cache", None), dict):
        embedder._cache.clear()


def bench_turn_latency(settings, embedder, index_dir: Path, rounds: int = 5,
                       questions: Sequence[str] = IN_SCOPE_QUESTIONS, profile_to: Path | None = None,
                       thread_check: bool = True) -> dict:
    """Warm respond() against the floor (one encode + one FAISS search), same loop.

    Warm means the model, the index and the guardrails' example vectors are
    loaded; the text cache is emptied before each measurement, so every turn
    and every floor pays for encoding its question, as a new question does.
    """
    from .pipeline import Assistant

    s = settings.replace(index_dir=str(index_dir))
    assistant = Assistant(s, embedder=embedder)
    assistant.reload()
    index = assistant.index

    def floor(q: str) -> None:
        v = embedder.encode_query(q)
        index.dense.search(np.asarray(v, dtype=np.float32).reshape(1, -1), min(s.fetch_k, len(index)))

    for q in questions:  # warm: model, speller, guardrail example vectors, caches
        assistant.respond(q)
        floor(q)

    turn, base = [], []
    stages: dict[str, list[float]] = {}
    decisions: Counter = Counter()
    cited = 0
    for _ in range(rounds):
        for q in questions:
            forget_texts(embedder)  # each measurement pays for its query, as a new question would
            t = time.perf_counter()
            floor(q)
            base.append(time.perf_counter() - t)
            forget_texts(embedder)
            t = time.perf_counter()
            reply = assistant.respond(q)
            turn.append(time.perf_counter() - t)
            decisions[str(reply.decision)] += 1
            cited += bool(reply.citations)
            for name, ms in reply.timings.items():
                stages.setdefault(name, []).append(ms)

    # How many encodes a turn makes (a separate, untimed pass).
    counter = CountingEmbedder(embedder)
    counting = Assistant(s, embedder=counter, index=index)
    calls, texts = [], []
    for q in questions:
        forget_texts(embedder)
        counter.calls = counter.texts = 0
        counting.respond(q)
        calls.append(counter.calls)
        texts.append(counter.texts)

    # Query encoding by torch thread count (a latency-bound, one-text batch).
    by_threads = {}
    try:
        if not thread_check:
            raise ImportError("skipped")
        import torch

        default_threads = torch.get_num_threads()
        for n in sorted({1, default_threads}):
            torch.set_num_threads(n)
            lat = []
            for q in list(questions) * 2:
                forget_texts(embedder)
                t = time.perf_counter()
                embedder.encode_query(q)
                lat.append(time.perf_counter() - t)
            by_threads[str(n)] = summarize_ms(lat)
        torch.set_num_threads(default_threads)
    except ImportError:
        pass

    t50, f50 = percentile(turn, 50), percentile(base, 50)
    result = {
        "questions": len(questions), "rounds": rounds, "index_chunks": len(index),
        "turn": summarize_ms(turn), "floor": summarize_ms(base),
        "ratio_p50": _r(t50 / f50 if f50 else None), "ratio_p95": _r(percentile(turn, 95) / percentile(base, 95)),
        "target_ratio_p50": TURN_RATIO_TARGET,
        "decisions": dict(decisions), "answered_with_citations": cited,
        "stage_p50_ms": {k: _r(percentile(v, 50)) for k, v in stages.items()},
        "query_encode_by_torch_threads": by_threads,
        "encode_calls_per_turn": _r(statistics.fmean(calls)), "texts_encoded_per_turn": _r(statistics.fmean(texts)),
        "_samples_ms": {"turn": [round(x * 1000, 3) for x in turn], "floor": [round(x * 1000, 3) for x in base]},
    }
    result["met"] = bool(result["ratio_p50"] is not None and result["ratio_p50"] <= TURN_RATIO_TARGET)
    if not result["met"] and profile_to is not None:
        result["profile"] = profile_turns(assistant, questions, profile_to)
    return result


def profile_turns(assistant, questions: Sequence[str], path: Path, top: int = 25) -> dict:
    """cProfile a round of turns; write the report, return the heaviest functions."""
    prof = cProfile.Profile()
    for q in questions:
        forget_texts(assistant.embedder)
        prof.enable()
        assistant.respond(q)
        prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf).sort_stats("cumulative")
    stats.print_stats(60)
    path.write_text(buf.getvalue(), encoding="utf-8")
    rows = []
    for (file, line, func), (_, ncalls, tottime, cumtime, _) in stats.stats.items():
        if "site-packages" in file and "assistant" not in file:
            where = Path(file).parent.name + "/" + Path(file).name
        else:
            where = Path(file).name
        rows.append({"function": f"{where}:{line}:{func}", "calls": ncalls,
                     "cum_ms_per_turn": round(cumtime * 1000 / len(questions), 2),
                     "self_ms_per_turn": round(tottime * 1000 / len(questions), 2)})
    ours = [r for r in rows if re.match(r"(guardrails|answer|retrieval|pipeline|index|embedding)\.py", r["function"])]
    ours.sort(key=lambda r: -r["cum_ms_per_turn"])
    return {"file": path.name, "assistant_functions": ours[:top]}


# --------------------------------------------------------------------------
# Start-up


def _cli_command() -> list[str]:
    script = Path(sys.executable).with_name("knee-assistant")
    return [str(script)] if script.exists() else [sys.executable, "-m", "assistant"]


def _wall(cmd: Sequence[str], env: dict | None = None, timeout: float = 300) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=env)
    return time.perf_counter() - t, proc


HEAVY_MODULES = ("torch", "sentence_transformers", "transformers", "faiss", "bm25s", "gradio", "matplotlib")


def bench_startup(settings, index_dir: Path, runs: int = 5, question: str = IN_SCOPE_QUESTIONS[0],
                  first_reply: bool = True) -> dict:
    """--help wall time and imports; a fresh process's time to its first reply."""
    cmd = _cli_command()
    help_times = []
    for _ in range(runs):
        secs, proc = _wall(cmd + ["--help"])
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} --help exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
        help_times.append(secs)

    # Which heavy modules does --help import? (-X importtime lists every import.)
    _, proc = _wall([sys.executable, "-X", "importtime", "-m", "assistant", "--help"])
    imported = set()
    cumulative_us = {}
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|\s+(\S.*)$", line)
        if m:
            name = m.group(3).strip()
            imported.add(name)
            if not m.group(3).startswith(" "):
                cumulative_us[name] = int(m.group(2))
    heavy = sorted(m for m in HEAVY_MODULES if m in imported)
    slowest = sorted(cumulative_us.items(), key=lambda kv: -kv[1])[:5]

    env = dict(os.environ, KNEE_INDEX_DIR=str(index_dir), KNEE_CORPUS_DIR=str(settings.corpus_dir))
    first = []
    for _ in range(max(1, runs // 2) if first_reply else 0):
        secs, proc = _wall(cmd + ["ask", "--json", question], env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"ask exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
        first.append(secs)
    decision = ""
    try:
        decision = json.loads(proc.stdout).get("decision", "") if first else ""
    except ValueError:
        pass
    return {
        "command": " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd)),
        "help_s": {"p50": _r(percentile(help_times, 50), 3), "min": _r(min(help_times), 3), "runs": runs},
        "help_imports_heavy": heavy, "help_imports_torch": "torch" in imported,
        "help_slowest_imports_ms": {k: round(v / 1000, 1) for k, v in slowest},
        "first_reply_s": {"p50": _r(percentile(first, 50), 2), "min": _r(min(first), 2) if first else None,
                          "runs": len(first)},
        "first_reply_decision": decision,
        "met": "torch" not in imported,
    }


# --------------------------------------------------------------------------
# Index build


def bench_build(settings, embedder, work: Path, n_docs: int, seed_sentences: Sequence[str]) -> dict:
    """build_index chunks/s vs raw encode on the same chunks; incremental updates."""
    from .index import build_index, load_index

    corpus = work / "corpus-synth"
    shutil.rmtree(corpus, ignore_errors=True)
    paths = write_synthetic_corpus(corpus, n_docs, seed_sentences)
    s = settings.replace(corpus_dir=str(corpus), index_dir=str(work / "index-build"))
    shutil.rmtree(s.index_path, ignore_errors=True)
    embedder.encode(["warm up the model"] * 8)

    marks: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        marks.setdefault(f"{stage}:start", time.perf_counter())
        marks[f"{stage}:end"] = time.perf_counter()

    # The same chunks, chunked once up front (chunking is the build's work, not encode's).
    from .chunking import chunk_document
    from .documents import load_corpus

    texts = [c.text for d in load_corpus([corpus]).documents
             for c in chunk_document(d, embedder.count_tokens, s.chunk_max_tokens, s.chunk_overlap_sentences)]

    def encode_chunks() -> float:
        t = time.perf_counter()
        embedder.encode(texts)
        return time.perf_counter() - t

    before = encode_chunks()  # encode, build, encode: load drift on a shared machine averages out
    t0 = time.perf_counter()
    report = build_index(s, embedder, progress=progress)
    build_s = time.perf_counter() - t0
    t_end = time.perf_counter()
    encode_s = (before + encode_chunks()) / 2
    index = load_index(s.index_path)
    spans = getattr(index, "sentence_spans", None)
    sentence_texts = ([index.chunks[int(r)].text[int(a):int(b)] for r, a, b in spans]
                      if spans is not None and len(spans) else [])
    encode_all_s = encode_s
    if sentence_texts:  # what the build embeds in all: chunks and their sentences
        t = time.perf_counter()
        embedder.encode(sentence_texts)
        encode_all_s = encode_s + time.perf_counter() - t

    def span(a: str, b: str) -> float | None:
        return _r(marks[b] - marks[a], 3) if a in marks and b in marks else None

    stages = {
        "load_corpus_s": span("loading:start", "chunking:start"),
        "chunk_s": span("chunking:start", "embedding:start"),
        "embed_s": span("embedding:start", "writing:start"),
        "write_s": span("writing:start", "writing:end"),
        "other_s": _r(t_end - marks.get("writing:end", t_end), 3),
    }

    # Incremental: nothing changed, then one document changed among many.
    t = time.perf_counter()
    unchanged = build_index(s, embedder, incremental=True)
    unchanged_s = time.perf_counter() - t
    paths[len(paths) // 2].write_text(paths[len(paths) // 2].read_text(encoding="utf-8")
                                      + "\nAn added sentence about the knee changes this document.\n",
                                      encoding="utf-8")
    t = time.perf_counter()
    one = build_index(s, embedder, incremental=True)
    one_s = time.perf_counter() - t
    chunks = report.chunks
    result = {
        "documents": report.documents, "chunks": chunks,
        "build_s": _r(build_s, 3), "encode_s": _r(encode_s, 3),
        "build_chunks_per_s": _r(chunks / build_s, 1), "encode_chunks_per_s": _r(chunks / encode_s, 1),
        "ratio": _r(encode_s / build_s, 3), "target_ratio": BUILD_RATIO_TARGET,
        "sentence_vectors": len(sentence_texts),
        "encode_chunks_and_sentences_s": _r(encode_all_s, 3),
        "ratio_counting_sentence_vectors": _r(encode_all_s / build_s, 3),
        "stages": stages,
        "incremental_unchanged": {"s": _r(unchanged_s, 3), "embedded_chunks": unchanged.embedded_chunks},
        "incremental_one_changed": {"s": _r(one_s, 3), "embedded_chunks": one.embedded_chunks,
                                    "changed": list(one.changed),
                                    "share_of_full_build": _r(one_s / build_s, 3)},
    }
    result["met"] = bool(result["ratio"] >= BUILD_RATIO_TARGET)
    return result


# --------------------------------------------------------------------------
# Scale (each size in its own processes)


def _worker_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from assistant.bench import _worker; _worker(sys.argv[1:])", *args]


def _run_worker(args: Sequence[str], log: Log, timeout: float = 3600) -> dict:
    proc = subprocess.run(_worker_cmd(*args), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"worker {' '.join(args[:2])} exited {proc.returncode}: {' | '.join(tail)}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _worker(argv: Sequence[str]) -> None:
    """Entry point of the scale subprocesses: ``build N DIR`` or ``query N DIR NQ``."""
    what, n, folder = argv[0], int(argv[1]), Path(argv[2])
    result = _scale_build(n, folder) if what == "build" else _scale_query(n, folder, int(argv[3]))
    print(json.dumps(result))


def _scale_build(n: int, folder: Path, n_queries: int = 200) -> dict:
    from types import SimpleNamespace

    from . import index as index_mod
    from .schema import Chunk
    from .settings import Settings

    t = time.perf_counter()
    vectors, queries = clustered_vectors(n, n_queries=n_queries)
    texts = synthetic_texts(n)
    per_doc = 10
    chunks = [Chunk(f"synth-{i // per_doc:07d}#{i % per_doc}", f"synth-{i // per_doc:07d}",
                    f"Synthetic document {i // per_doc}", f"synthetic/{i // per_doc}.txt",
                    text, 0, len(text), 55) for i, text in enumerate(texts)]
    documents = {f"synth-{d:07d}": {"title": f"Synthetic document {d}", "source": f"synthetic/{d}.txt",
                                    "content_hash": "", "chunks": min(per_doc, n - d * per_doc),
                                    "indexed_at": ""} for d in range(math.ceil(n / per_doc))}
    generate_s = time.perf_counter() - t
    del texts

    timed: dict[str, float] = {}

    def timing(name, fn):
        def wrapped(*a, **k):
            t = time.perf_counter()
            out = fn(*a, **k)
            timed[name] = time.perf_counter() - t
            if name == "faiss":
                timed["kind"] = type(out).__name__
            return out
        return wrapped

    index_mod.make_faiss_index = timing("faiss", index_mod.make_faiss_index)
    index_mod.build_bm25 = timing("bm25", index_mod.build_bm25)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    np.save(folder / "queries.npy", queries)
    stub = SimpleNamespace(model_name="synthetic:clustered-384", dimension=vectors.shape[1])
    extra = {}
    if n <= getattr(index_mod, "SENTENCE_VECTORS_MAX", -1):
        # Up to this size a real index also keeps ~4 sentence vectors a chunk,
        # each near its chunk's vector, and retrieval searches them too.
        rng = np.random.default_rng(3)
        rows = np.repeat(np.arange(n), 4)
        sv = vectors[rows] + 0.6 * rng.standard_normal((len(rows), vectors.shape[1]), dtype=np.float32) / np.sqrt(
            vectors.shape[1])
        sv = (sv / np.linalg.norm(sv, axis=1, keepdims=True)).astype(np.float32)
        spans = np.stack([rows, np.tile([0, 14, 28, 42], n), np.tile([13, 27, 41, 55], n)], axis=1).astype(np.int64)
        extra["sentences"] = (sv, spans)
    t = time.perf_counter()
    gen = index_mod._write_generation(folder / "index", Settings(), stub, chunks, vectors, documents, (), **extra)
    write_s = time.perf_counter() - t
    files = {p.relative_to(gen).as_posix(): p.stat().st_size for p in gen.rglob("*") if p.is_file()}
    bm25_bytes = sum(v for k, v in files.items() if k.startswith("bm25/"))
    return {
        "n": n, "sentence_vectors": len(extra["sentences"][0]) if extra else 0,
        "generate_s": _r(generate_s, 1), "write_generation_s": _r(write_s, 1),
        "faiss_build_s": _r(timed.get("faiss"), 2), "bm25_build_s": _r(timed.get("bm25"), 2),
        "other_write_s": _r(write_s - timed.get("faiss", 0) - timed.get("bm25", 0), 2),
        "dense_kind": timed.get("kind"),
        "disk_mb": {"total": _r(sum(files.values()) / 2**20, 1),
                    "vectors.npy": _r(files.get("vectors.npy", 0) / 2**20, 1),
                    "dense.faiss": _r(files.get("dense.faiss", 0) / 2**20, 1),
                    "chunks.jsonl": _r(files.get("chunks.jsonl", 0) / 2**20, 1),
                    "bm25": _r(bm25_bytes / 2**20, 1),
                    "sentences": _r(sum(v for k, v in files.items() if k.startswith("sentence")) / 2**20, 1),
                    "manifest.json": _r(files.get("manifest.json", 0) / 2**20, 1)},
        "peak_rss_mb": _r(peak_rss_mb(), 0),
    }


def _time_each(fn: Callable, items: Sequence, warm: int = 5) -> list[float]:
    for item in items[:warm]:
        fn(item)
    out = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - t)
    return out


def _scale_query(n: int, folder: Path, n_queries: int) -> dict:
    import faiss

    from .index import load_index
    from .retrieval import Retriever
    from .settings import Settings

    base_rss = rss_mb()
    t = time.perf_counter()
    index = load_index(folder / "index")
    load_s = time.perf_counter() - t
    rss_loaded = rss_mb()
    queries = np.load(folder / "queries.npy")[:n_queries]
    texts = synthetic_queries(len(queries))
    settings = Settings()
    k = 10

    dense = _time_each(lambda q: index.dense_search(q, k), list(queries))
    bm25 = _time_each(lambda q: index.bm25_search(q, settings.fetch_k), texts)
    retriever = Retriever(index, None, settings)
    pairs = list(zip(texts, queries))
    hybrid = _time_each(lambda p: retriever.search_prepared(p[0], query_vector=p[1]), pairs)
    rss_queried = rss_mb()

    _, found = index.dense.search(np.ascontiguousarray(queries), k)
    truth = exact_top_k(index.vectors, queries, k)
    result = {
        "n": n, "dense_kind": type(index.dense).__name__, "load_s": _r(load_s, 2),
        "rss_mb": {"before_load": _r(base_rss, 0), "after_load": _r(rss_loaded, 0),
                   "after_queries": _r(rss_queried, 0), "index_share": _r(rss_queried - base_rss, 0)},
        "recall_at_10": _r(recall_at_k(found, truth, k), 4),
        "dense": summarize_ms(dense), "bm25": summarize_ms(bm25), "hybrid": summarize_ms(hybrid),
    }
    if hasattr(index.dense, "nprobe"):
        result["nprobe"] = int(index.dense.nprobe)
        result["nlist"] = int(index.dense.nlist)
        sweep = []
        default = index.dense.nprobe
        for nprobe in (4, 8, 16, 32, 64, 128):
            if nprobe > index.dense.nlist:
                break
            index.dense.nprobe = nprobe
            _, got = index.dense.search(np.ascontiguousarray(queries), k)
            lat = _time_each(lambda q: index.dense_search(q, k), list(queries[:100]))
            sweep.append({"nprobe": nprobe, "recall_at_10": _r(recall_at_k(got, truth, k), 4),
                          "p50_ms": _r(percentile(lat, 50) * 1000), "p95_ms": _r(percentile(lat, 95) * 1000)})
        index.dense.nprobe = default
        result["nprobe_sweep"] = sweep
    if type(index.dense).__name__ != "IndexFlatIP":
        flat = faiss.IndexFlatIP(index.vectors.shape[1])
        flat.add(np.ascontiguousarray(index.vectors, dtype=np.float32))
        lat = _time_each(lambda q: flat.search(q.reshape(1, -1), k), list(queries[:50]), warm=2)
        result["exact_flat_for_comparison"] = summarize_ms(lat)
    result["peak_rss_mb"] = _r(peak_rss_mb(), 0)
    return result


def bench_scale(sizes: Sequence[int], work: Path, log: Log, n_queries: int = 200, keep: bool = False) -> list[dict]:
    rows = []
    for n in sizes:
        folder = work / f"scale-{n}"
        log(f"  scale {n:,}: generating and building ...")
        try:
            built = _run_worker(["build", str(n), str(folder)], log)
            log(f"  scale {n:,}: {built['dense_kind']} built in {built['faiss_build_s']} s, "
                f"BM25 in {built['bm25_build_s']} s; querying ...")
            queried = _run_worker(["query", str(n), str(folder), str(n_queries)], log)
            row = {"n": n, "build": built, "query": queried,
                   "met": bool(queried["recall_at_10"] >= RECALL_TARGET)}
            log(f"  scale {n:,}: recall@10 {queried['recall_at_10']}, dense p50 {queried['dense']['p50_ms']} ms, "
                f"hybrid p50 {queried['hybrid']['p50_ms']} ms, RSS {queried['rss_mb']['after_queries']} MB")
        except Exception as exc:  # record and go on to the next size
            row = {"n": n, "error": f"{type(exc).__name__}: {exc}"}
            log(f"  scale {n:,}: failed: {row['error']}")
        finally:
            if not keep:
                shutil.rmtree(folder, ignore_errors=True)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------
# Concurrency (against the running web app)


def bench_concurrency(settings, index_dir: Path, clients: Sequence[int] = (8, 32), requests_per_client: int = 4,
                      questions: Sequence[str] = IN_SCOPE_QUESTIONS, log: Log = _stderr) -> dict:
    """Start ``app.py`` on a free loopback port and hammer ``/chat`` with gradio_client."""
    import socket

    app = Path(__file__).resolve().parent.parent / "app.py"
    if not app.exists():
        return {"skipped": f"no web app yet ({app.name} not found)"}
    from gradio_client import Client

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, KNEE_INDEX_DIR=str(index_dir), KNEE_CORPUS_DIR=str(settings.corpus_dir),
               KNEE_HOST="127.0.0.1", KNEE_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False")
    log_path = Path(tempfile.mkstemp(prefix="bench-app-", suffix=".log")[1])
    server = subprocess.Popen([sys.executable, str(app)], cwd=str(app.parent), env=env,
                              stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        client = None
        deadline = time.time() + 180
        while time.time() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"app.py exited {server.returncode}: {log_path.read_text()[-300:]}")
            try:
                client = Client(url, verbose=False)
                client.predict(questions[0], api_name="/chat")  # warm
                break
            except Exception:
                time.sleep(1)
        if client is None:
            raise RuntimeError("app.py did not answer within 180 s")
        results = {}
        for n in clients:
            lat: list[float] = []
            errors: list[str] = []
            lock = threading.Lock()
            barrier = threading.Barrier(n)

            def run(i: int) -> None:
                try:
                    c = Client(url, verbose=False)
                except Exception as exc:
                    with lock:
                        errors.append(f"connect: {type(exc).__name__}: {exc}")
                    return
                barrier.wait()
                for j in range(requests_per_client):
                    q = questions[(i + j) % len(questions)]
                    t = time.perf_counter()
                    try:
                        c.predict(q, api_name="/chat")
                        with lock:
                            lat.append(time.perf_counter() - t)
                    except Exception as exc:
                        with lock:
                            errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")

            threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
            t = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join(timeout=600)
            wall = time.perf_counter() - t
            results[str(n)] = {"clients": n, "requests": n * requests_per_client, "replies": len(lat),
                               "errors": len(errors), "error_examples": errors[:3],
                               "replies_per_s": _r(len(lat) / wall), "latency": summarize_ms(lat),
                               "wall_s": _r(wall, 2)}
            log(f"  {n} clients: {len(lat)} replies, {len(errors)} errors, "
                f"{results[str(n)]['replies_per_s']} replies/s, p95 {results[str(n)]['latency']['p95_ms']} ms")
        return {"url": url, "requests_per_client": requests_per_client, "by_clients": results,
                "met": all(r["errors"] == 0 for r in results.values())}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


# --------------------------------------------------------------------------
# The run


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]
    turn_rounds: int
    startup_runs: int
    build_docs: int
    concurrency: bool
    first_reply: bool = True
    questions: int = len(IN_SCOPE_QUESTIONS)


def plan_for(sizes: Sequence[int] | None, quick: bool) -> Plan:
    if sizes is not None:
        sizes = tuple(int(s) for s in sizes)
        if any(s < 100 for s in sizes):
            raise ValueError(f"sizes must be at least 100 chunks each, got {list(sizes)}")
    if quick:
        return Plan(tuple(sizes or QUICK_SIZES), turn_rounds=1, startup_runs=2, build_docs=6, concurrency=False,
                    first_reply=False, questions=5)
    return Plan(tuple(sizes or DEFAULT_SIZES), turn_rounds=5, startup_runs=5, build_docs=120, concurrency=True)


def run_bench(settings, out_dir: str | Path, sizes: Sequence[int] | None = None, quick: bool = False,
              embedder=None, log: Log = _stderr, keep_work: bool = False) -> dict:
    """Run every benchmark; write bench.json, bench.md and plots into ``out_dir``.

    Args:
        settings: a :class:`~assistant.settings.Settings`; its corpus is the
            seed for the turn-latency index and the synthetic documents.
        out_dir: output folder (created).
        sizes: chunk counts for the scale benchmark (default 10k, 100k, 1M;
            with ``quick``, 2k and 10k).
        quick: a smoke run (about half a minute on an idle 2-core machine):
            small sizes, few repetitions, no first-reply or concurrency.
        embedder: the embedder to use (default: the settings' model).
        log: called with one progress line at a time (default: stderr).
        keep_work: keep the work folder (indexes) under ``out_dir/work``.

    Returns:
        The figures also written to ``bench.json``.
    """
    from .embedding import Embedder
    from .index import build_index

    plan = plan_for(sizes, quick)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    embedder = embedder or Embedder(settings.model, settings.device, settings.batch_size)
    started = time.time()
    results: dict = {"machine": machine_info(), "quick": quick, "sizes": list(plan.sizes),
                     "settings": {"model": settings.model, "retriever": settings.retriever, "k": settings.k,
                                  "fetch_k": settings.fetch_k, "batch_size": settings.batch_size,
                                  "chunk_max_tokens": settings.chunk_max_tokens}}

    def section(name: str, fn: Callable[[], object]) -> None:
        log(f"[bench] {name} ...")
        before = [round(x, 2) for x in os.getloadavg()]
        t = time.perf_counter()
        try:
            value = fn()
        except Exception as exc:
            value = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"[bench] {name} failed: {value['error']}")
            log("".join(traceback.format_exception(exc)[-3:]).rstrip())
        if isinstance(value, dict):
            value["load_avg_before_after"] = [before, [round(x, 2) for x in os.getloadavg()]]
            value["section_s"] = _r(time.perf_counter() - t, 1)
        results[name] = value

    seed_index = work / "index-seed"
    seed_settings = settings.replace(index_dir=str(seed_index))
    section("seed_index", lambda: build_index(seed_settings, embedder).to_json())
    section("turn_latency", lambda: bench_turn_latency(settings, embedder, seed_index, plan.turn_rounds,
                                                       IN_SCOPE_QUESTIONS[:plan.questions],
                                                       profile_to=out / "turn_profile.txt",
                                                       thread_check=not quick))
    section("startup", lambda: bench_startup(settings, seed_index, plan.startup_runs, first_reply=plan.first_reply))
    section("build", lambda: bench_build(settings, embedder, work, plan.build_docs,
                                         corpus_sentences(settings.corpus_path)))
    section("scale", lambda: {"sizes": bench_scale(plan.sizes, work, log, keep=keep_work)})
    if plan.concurrency:
        section("concurrency", lambda: bench_concurrency(settings, seed_index, log=log))
    else:
        results["concurrency"] = {"skipped": "not run with --quick"}
    results["total_s"] = _r(time.time() - started, 1)
    results["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]

    pictures = draw_plots(results, out)
    (out / "bench.json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    (out / "bench.md").write_text(render_markdown(results, pictures), encoding="utf-8")
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    log(f"[bench] wrote {out / 'bench.json'} and {out / 'bench.md'} ({results['total_s']} s)")
    for line in headline(results):
        log(line)
    return results


# --------------------------------------------------------------------------
# Reporting


def _get(d: dict, *path, default=None):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def headline(results: dict) -> list[str]:
    """The figures that have targets, one line each, for the terminal."""
    lines = []
    t = results.get("turn_latency", {})
    if "turn" in t:
        lines.append(f"turn p50 {t['turn']['p50_ms']} ms / p95 {t['turn']['p95_ms']} ms vs floor p50 "
                     f"{t['floor']['p50_ms']} ms: ratio {t['ratio_p50']} (target <= {TURN_RATIO_TARGET}) "
                     f"{'met' if t['met'] else 'MISSED'}")
    s = results.get("startup", {})
    if "help_s" in s:
        first = f"{s['first_reply_s']['p50']} s" if s["first_reply_s"]["runs"] else "not measured (--quick)"
        lines.append(f"--help {s['help_s']['p50']} s (torch imported: {s['help_imports_torch']}); first reply {first}")
    b = results.get("build", {})
    if "ratio" in b:
        lines.append(f"build {b['build_chunks_per_s']} chunks/s vs encode {b['encode_chunks_per_s']} chunks/s: "
                     f"ratio {b['ratio']} (target >= {BUILD_RATIO_TARGET}) {'met' if b['met'] else 'MISSED'}; "
                     f"one changed doc: {b['incremental_one_changed']['s']} s "
                     f"({b['incremental_one_changed']['embedded_chunks']} chunks embedded)")
    for row in _get(results, "scale", "sizes", default=[]) or []:
        if "query" in row:
            q = row["query"]
            lines.append(f"{row['n']:>9,} chunks: {q['dense_kind']}, recall@10 {q['recall_at_10']}, dense p50 "
                         f"{q['dense']['p50_ms']} ms, bm25 p50 {q['bm25']['p50_ms']} ms, hybrid p50/p95 "
                         f"{q['hybrid']['p50_ms']}/{q['hybrid']['p95_ms']} ms, RSS {q['rss_mb']['after_queries']} MB, "
                         f"disk {row['build']['disk_mb']['total']} MB")
        elif "error" in row:
            lines.append(f"{row['n']:>9,} chunks: failed: {row['error']}")
    c = results.get("concurrency", {})
    for n, r in (c.get("by_clients") or {}).items():
        lines.append(f"{n} clients: {r['replies_per_s']} replies/s, p95 {r['latency']['p95_ms']} ms, "
                     f"{r['errors']} errors")
    if "skipped" in c:
        lines.append(f"concurrency: skipped ({c['skipped']})")
    return lines


def draw_plots(results: dict, out: Path) -> dict[str, str]:
    """PNG plots beside the report; returns {name: file name} of those drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    pictures = {}
    t = results.get("turn_latency", {})
    if "_samples_ms" in t:
        fig, ax = plt.subplots(figsize=(6, 3.2))
        data = [t["_samples_ms"]["floor"], t["_samples_ms"]["turn"]]
        ax.boxplot(data, vert=False, showfliers=True)
        ax.set_yticks([1, 2], ["floor\n(encode + FAISS)", "whole turn\n(respond)"])
        ax.set_xlabel("milliseconds (warm)")
        ax.set_title(f"Turn latency: p50 ratio {t['ratio_p50']} (target <= {TURN_RATIO_TARGET})")
        fig.tight_layout()
        fig.savefig(out / "turn_latency.png", dpi=110)
        plt.close(fig)
        pictures["turn"] = "turn_latency.png"
    b = results.get("build", {})
    if "stages" in b:
        fig, ax = plt.subplots(figsize=(6, 3))
        names = ["load_corpus_s", "chunk_s", "embed_s", "write_s", "other_s"]
        left = 0.0
        for name in names:
            v = b["stages"].get(name) or 0
            ax.barh(["build_index"], [v], left=left, label=name.replace("_s", ""))
            left += v
        ax.barh(["encode only"], [b["encode_s"]], color="grey")
        ax.set_xlabel("seconds")
        ax.set_title(f"Build {b['chunks']} chunks: ratio {b['ratio']} (target >= {BUILD_RATIO_TARGET})")
        ax.legend(fontsize=7, ncol=5, loc="lower center", bbox_to_anchor=(0.5, -0.6))
        fig.tight_layout()
        fig.savefig(out / "build.png", dpi=110)
        plt.close(fig)
        pictures["build"] = "build.png"
    rows = [r for r in _get(results, "scale", "sizes", default=[]) or [] if "query" in r]
    if rows:
        ns = [r["n"] for r in rows]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
        for key, style in (("dense", "o-"), ("bm25", "s-"), ("hybrid", "^-")):
            a1.plot(ns, [r["query"][key]["p50_ms"] for r in rows], style, label=f"{key} p50")
            a1.plot(ns, [r["query"][key]["p95_ms"] for r in rows], style, alpha=0.4, label=f"{key} p95")
        flat = [(r["n"], r["query"]["exact_flat_for_comparison"]["p50_ms"]) for r in rows
                if "exact_flat_for_comparison" in r["query"]]
        if flat:
            a1.plot(*zip(*flat), "x--", color="black", label="exact flat p50")
        a1.set_xscale("log")
        a1.set_yscale("log")
        a1.set_xlabel("chunks")
        a1.set_ylabel("ms per query")
        a1.legend(fontsize=7)
        a1.set_title("Query latency by collection size")
        a2.plot(ns, [r["query"]["rss_mb"]["after_queries"] for r in rows], "o-", label="RSS after queries (MB)")
        a2.plot(ns, [r["build"]["disk_mb"]["total"] for r in rows], "s-", label="disk (MB)")
        a2.plot(ns, [r["build"]["peak_rss_mb"] for r in rows], "^-", label="peak RSS of build (MB)")
        a2.set_xscale("log")
        a2.set_yscale("log")
        a2.set_xlabel("chunks")
        a2.legend(fontsize=7)
        a2.set_title("Memory and disk")
        fig.tight_layout()
        fig.savefig(out / "scale.png", dpi=110)
        plt.close(fig)
        pictures["scale"] = "scale.png"
    return pictures


def _mark(met) -> str:
    return "met" if met else "**missed**"


def render_markdown(results: dict, pictures: dict[str, str]) -> str:
    m = results["machine"]
    lines = ["# Benchmark run", "",
             f"Machine: {m['cpu']} (family/model {m['cpu_family_model']}), {m['nproc']} cores, "
             f"{m['ram_gb']} GB RAM, Python {m['python']}, {m['platform']}.  ",
             f"Load average at start {m['load_avg_at_start']}, at end {m.get('load_avg_at_end')}. "
             f"Versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}.  ",
             f"Quick run: {results['quick']}. Total {results.get('total_s')} s.", ""]
    t = results.get("turn_latency", {})
    lines += ["## Turn latency (warm)", ""]
    if "turn" in t:
        lines += ["| | p50 ms | p95 ms | mean ms |", "|---|---|---|---|",
                  f"| whole turn (`Assistant.respond`) | {t['turn']['p50_ms']} | {t['turn']['p95_ms']} | {t['turn']['mean_ms']} |",
                  f"| floor (1 encode + 1 FAISS search) | {t['floor']['p50_ms']} | {t['floor']['p95_ms']} | {t['floor']['mean_ms']} |",
                  "",
                  f"Ratio at p50: **{t['ratio_p50']}** (target <= {TURN_RATIO_TARGET}: {_mark(t['met'])}); at p95 {t['ratio_p95']}. "
                  f"{t['questions']} in-scope questions x {t['rounds']} rounds over {t['index_chunks']} chunks; "
                  f"decisions {t['decisions']}. A turn calls `encode` {t['encode_calls_per_turn']} times "
                  f"({t['texts_encoded_per_turn']} texts). Stage p50 (ms): {t['stage_p50_ms']}.", "",
                  "One-question encode by torch thread count (p50/p95 ms): " + "; ".join(
                      f"{n} thread(s): {v['p50_ms']}/{v['p95_ms']}"
                      for n, v in t.get("query_encode_by_torch_threads", {}).items()) + ".", ""]
        if "profile" in t:
            lines += [f"Heaviest assistant functions per turn (cProfile, full report in `{t['profile']['file']}`):", "",
                      "| function | cumulative ms/turn | self ms/turn | calls |", "|---|---|---|---|"]
            lines += [f"| `{r['function']}` | {r['cum_ms_per_turn']} | {r['self_ms_per_turn']} | {r['calls']} |"
                      for r in t["profile"]["assistant_functions"][:12]]
            lines.append("")
        if "turn" in pictures:
            lines += [f"![turn latency]({pictures['turn']})", ""]
    else:
        lines += [f"Not measured: {t.get('error', t.get('skipped'))}", ""]
    s = results.get("startup", {})
    lines += ["## Start-up", ""]
    if "help_s" in s:
        lines += [f"- `{s['command']} --help`: {s['help_s']['p50']} s (p50 of {s['help_s']['runs']}); imports torch: "
                  f"**{s['help_imports_torch']}** ({_mark(s['met'])}); heavy modules imported: {s['help_imports_heavy'] or 'none'}; "
                  f"slowest imports (ms): {s['help_slowest_imports_ms']}.",
                  f"- A fresh process's first reply (`{s['command']} ask`, model and index loaded from disk): "
                  f"{s['first_reply_s']['p50']} s (p50 of {s['first_reply_s']['runs']}), decision `{s['first_reply_decision']}`.", ""]
    else:
        lines += [f"Not measured: {s.get('error')}", ""]
    b = results.get("build", {})
    lines += ["## Index build", ""]
    if "ratio" in b:
        inc = b["incremental_one_changed"]
        lines += [f"{b['documents']} synthetic documents, {b['chunks']} chunks, real embedding model.", "",
                  "| | seconds | chunks/s |", "|---|---|---|",
                  f"| `build_index` (full) | {b['build_s']} | {b['build_chunks_per_s']} |",
                  f"| `embedder.encode` on the same chunks | {b['encode_s']} | {b['encode_chunks_per_s']} |", "",
                  f"Ratio **{b['ratio']}** (target >= {BUILD_RATIO_TARGET}: {_mark(b['met'])}). Build stages (s): {b['stages']}.", "",
                  f"The build also embeds {b['sentence_vectors']} sentence vectors; counting them as work "
                  f"(encode of chunks and sentences: {b['encode_chunks_and_sentences_s']} s) the ratio is "
                  f"{b['ratio_counting_sentence_vectors']}.", "",
                  f"Incremental update, nothing changed: {b['incremental_unchanged']['s']} s "
                  f"({b['incremental_unchanged']['embedded_chunks']} chunks embedded); one document changed: "
                  f"{inc['s']} s ({inc['embedded_chunks']} chunks embedded, {inc['share_of_full_build']} of a full build).", ""]
        if "build" in pictures:
            lines += [f"![build]({pictures['build']})", ""]
    else:
        lines += [f"Not measured: {b.get('error')}", ""]
    rows = _get(results, "scale", "sizes", default=[]) or []
    lines += ["## Scale", "",
              "Synthetic collections: clustered unit vectors (384-d) stand in for embeddings, Zipf-distributed "
              "generated text for BM25; each written as a real index generation and queried in a fresh process.", "",
              "| chunks | dense index | recall@10 | dense p50/p95 ms | BM25 p50/p95 ms | hybrid p50/p95 ms | "
              "load s | RSS MB | disk MB | build s (FAISS / BM25 / rest) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "query" not in r:
            lines.append(f"| {r['n']:,} | failed: {r.get('error')} |||||||||")
            continue
        q, bd = r["query"], r["build"]
        kind = q["dense_kind"] + (f" (nlist {q['nlist']}, nprobe {q['nprobe']})" if "nprobe" in q else "")
        lines.append(f"| {r['n']:,} | {kind} | {q['recall_at_10']} | {q['dense']['p50_ms']} / {q['dense']['p95_ms']} | "
                     f"{q['bm25']['p50_ms']} / {q['bm25']['p95_ms']} | {q['hybrid']['p50_ms']} / {q['hybrid']['p95_ms']} | "
                     f"{q['load_s']} | {q['rss_mb']['after_queries']} | {bd['disk_mb']['total']} | "
                     f"{bd['faiss_build_s']} / {bd['bm25_build_s']} / {bd['other_write_s']} |")
    lines.append("")
    for r in rows:
        q = r.get("query", {})
        if "exact_flat_for_comparison" in q:
            lines.append(f"- {r['n']:,}: exact flat search on the same vectors would take p50 "
                         f"{q['exact_flat_for_comparison']['p50_ms']} ms per query.")
        if "nprobe_sweep" in q:
            lines.append(f"- {r['n']:,}: nprobe sweep " + "; ".join(
                f"{s['nprobe']}: recall {s['recall_at_10']}, p50 {s['p50_ms']} ms" for s in q["nprobe_sweep"]) + ".")
    lines.append("")
    if "scale" in pictures:
        lines += [f"![scale]({pictures['scale']})", ""]
    c = results.get("concurrency", {})
    lines += ["## Concurrency (web app over its API, loopback)", ""]
    if c.get("by_clients"):
        lines += ["| clients | requests | replies/s | p50 ms | p95 ms | errors |", "|---|---|---|---|---|---|"]
        for n, r in c["by_clients"].items():
            lines.append(f"| {n} | {r['requests']} | {r['replies_per_s']} | {r['latency']['p50_ms']} | "
                         f"{r['latency']['p95_ms']} | {r['errors']} |")
        lines.append("")
    else:
        lines += [f"Not measured: {c.get('skipped') or c.get('error')}", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python benchmarks/run.py`` / ``python -m assistant.bench``."""
    import argparse

    from .settings import Settings

    parser = argparse.ArgumentParser(prog="bench", description="Run the benchmarks; write bench.json and bench.md.")
    parser.add_argument("--out", default="bench-out", metavar="DIR", help="output folder (default: bench-out/)")
    parser.add_argument("--sizes", nargs="+", type=int, metavar="N",
                        help=f"chunk counts for the scale benchmark (default: {' '.join(map(str, DEFAULT_SIZES))})")
    parser.add_argument("--quick", action="store_true", help="small sizes only, no concurrency (< 1 min)")
    parser.add_argument("--keep-work", action="store_true", help="keep the indexes built under OUT/work")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        run_bench(settings, args.out, sizes=args.sizes, quick=args.quick, keep_work=args.keep_work)
    except ValueError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
