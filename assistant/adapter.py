"""Query adapter: a linear map, learned from labelled questions, that moves a
question's vector towards the passages that answer such questions.

The embedding model reads lay questions ("why does my knee give way on the
stairs") and the collection's own wording ("It can really get you in your
knee when you go downstairs") as further apart than they are. The question
sets under ``evals/`` say, for each answerable question, which passage
answers it (the case's ``evidence`` phrases). At index build a matrix
``W`` (dimension x dimension, started at the identity) is fitted so that a
question's vector times ``W`` lies nearest the passages and sentences that
hold its evidence, while every question, answerable or not, stays close to
where the model put it: off-topic and uncovered questions keep their place.

Guarantees:

- Only the vector passages are *ranked* by is mapped. The cosines the
  guardrails are calibrated on (``Hit.dense_score``, the in-scope and
  no-evidence checks) are the model's own, so a decision never rests on the
  adapter.
- The map is rebuilt with the index (it depends on the passages' vectors) and
  stored in the index generation, so a build that fails leaves the previous
  one, adapter included. With fewer than :data:`MIN_PAIRS` answerable
  questions whose evidence is in the collection, no adapter is built and
  retrieval is the model's alone.
- Deterministic: the same passages and questions give the same matrix.

The questions it learns from are not the ones it may be judged on: the
team's gate set (``evals/questions.jsonl``) is not among the defaults, and a
new question set is measured before it is committed (see docs/evaluation.md).
"""
from __future__ import annotations

import bisect
import glob
import hashlib
import itertools
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

#: Fewer answerable questions than this and no adapter is fitted.
MIN_PAIRS = 20
#: Softmax temperature of the ranking loss (cosines are in [-1, 1]).
TEMPERATURE = 0.05
#: Weight of staying near the model's own vector, for every question.
STAY_WEIGHT = 1.0
ITERATIONS = 300
LEARNING_RATE = 1e-3
#: Passages of documents holding no evidence that are used as negatives, at most...
OTHER_PASSAGES_MAX = 2000
#: ... of which each step of the fit ranks against a fresh seeded sample of
#: this many (the cost of a step grows with the negatives; over the steps
#: every one is used).
NEGATIVES_PER_STEP = 256
SEED = 0


@dataclass(frozen=True)
class AdapterReport:
    """What one fit learned from (stored in the index manifest)."""

    pairs: int  # answerable questions whose evidence is in the collection
    others: int  # questions only kept in place
    sources: tuple[str, ...]
    loss_before: float
    loss_after: float
    seconds: float

    def to_json(self) -> dict:
        return {**asdict(self), "sources": list(self.sources)}


def question_files(patterns: str) -> list[Path]:
    """The question sets named by ``patterns`` (comma-separated globs, e.g.
    ``"evals/heldout-*.jsonl"``), sorted; an empty string names none."""
    files: set[Path] = set()
    for pattern in (p.strip() for p in patterns.split(",")):
        if pattern:
            files.update(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
    return sorted(files)


def sources_hash(files: Sequence[Path]) -> str:
    """One hash of the question files' names and contents ("" for none)."""
    if not files:
        return ""
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def adapt(matrix: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """``vector`` mapped by the adapter, as a unit vector."""
    mapped = vector @ matrix
    norm = float(np.linalg.norm(mapped))
    return (mapped / norm).astype(np.float32) if norm > 0 else vector


def fit(questions: np.ndarray, positives: Sequence[Sequence[int]], others: np.ndarray,
        targets: np.ndarray, negatives: np.ndarray | None = None, iterations: int = ITERATIONS,
        temperature: float = TEMPERATURE, stay_weight: float = STAY_WEIGHT,
        learning_rate: float = LEARNING_RATE, negatives_per_step: int = NEGATIVES_PER_STEP,
        seed: int = SEED) -> tuple[np.ndarray, float, float]:
    """Fit ``W`` on unit question vectors ``questions`` (Q, d), whose rows of
    ``targets`` (T, d) holding the answer are ``positives[i]``, and unit
    vectors ``others`` (O, d) of questions only to be kept in place.
    ``negatives`` (N, d), passages that answer none of the questions, are
    ranked against as well: each step a seeded sample of
    ``negatives_per_step`` of them.

    The loss is the cross-entropy of the answering rows among all targets
    (several answering rows share the probability) plus ``stay_weight`` times
    the mean squared distance of every mapped question from its own vector.

    Returns:
        (W, ranking loss before, ranking loss after), the losses over all
        targets and negatives.
    """
    import torch

    if len(questions) != len(positives):
        raise ValueError(f"{len(questions)} questions but {len(positives)} positive lists")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    dim = targets.shape[1]
    q = torch.tensor(np.asarray(questions, np.float32))
    o = torch.tensor(np.asarray(others, np.float32).reshape(-1, dim))
    t = torch.tensor(np.asarray(targets, np.float32))
    n = torch.tensor(np.asarray(negatives if negatives is not None else np.zeros((0, dim)), np.float32).reshape(-1, dim))
    mask = torch.zeros(len(q), len(t), dtype=torch.bool)
    for i, rows in enumerate(positives):
        mask[i, list(rows)] = True
    delta = torch.zeros(dim, dim, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=learning_rate)

    def losses(negative: torch.Tensor):
        w = torch.eye(dim) + delta
        mapped = torch.nn.functional.normalize(q @ w, dim=-1)
        logits = mapped @ t.T / temperature
        answering = torch.logsumexp(logits.masked_fill(~mask, -1e9), 1)
        every = torch.cat([logits, mapped @ negative.T / temperature], 1) if len(negative) else logits
        ranking = (torch.logsumexp(every, 1) - answering).mean()
        stay = ((mapped - q) ** 2).sum(-1).mean()
        if len(o):
            stay = stay + ((torch.nn.functional.normalize(o @ w, dim=-1) - o) ** 2).sum(-1).mean()
        return ranking, stay

    def sample() -> torch.Tensor:
        if len(n) <= negatives_per_step:
            return n
        return n[torch.randperm(len(n), generator=generator)[:negatives_per_step]]

    with torch.no_grad():
        before = float(losses(n)[0])
    for _ in range(iterations):
        ranking, stay = losses(sample())
        loss = ranking + stay_weight * stay
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = float(losses(n)[0])
    return (torch.eye(dim) + delta).detach().numpy().astype(np.float32), before, after


def training_vectors(cases, embedder, cache_dir: Path | str | None = None) -> np.ndarray:
    """Each case's question as retrieval ranks by it: a follow-up read with
    its earlier turn and leaning on its own words (as
    :meth:`assistant.retrieval.Retriever.search_prepared` does). Typos are
    left as typed: respelling depends on the collection's words, and the
    texts stay the same from one build to the next, so their vectors are
    kept (``cache_dir``)."""
    from .retrieval import lean_on_question, resolve_followup

    own, joined = [], []
    for case in cases:
        resolved = resolve_followup(case.question, case.history, force=True) if case.history else case.question
        own.append(case.question)
        joined.append(f"{resolved} {case.question}" if resolved != case.question else None)
    from .embedding import cached_encode

    own_vecs = cached_encode(embedder, own, cache_dir, "questions")
    need = [i for i, j in enumerate(joined) if j is not None]
    joined_vecs = (cached_encode(embedder, [joined[i] for i in need], cache_dir, "questions") if need
                   else np.zeros((0, own_vecs.shape[1])))
    out = np.array(own_vecs, dtype=np.float32)
    for i, vec in zip(need, joined_vecs):
        out[i] = lean_on_question(np.asarray(vec, np.float32), out[i])
    return out


def fit_for_index(files: Sequence[Path], chunks, vectors: np.ndarray, sentences: tuple[np.ndarray, np.ndarray],
                  embedder, cache_dir: Path | str | None = None) -> tuple[np.ndarray | None, AdapterReport | None]:
    """The adapter for an index of ``chunks`` (with their ``vectors`` and
    ``sentences``: vectors and (chunk row, start, end) spans), learned from
    the question sets ``files``; (None, None) when too few of their questions
    are answered by these passages. The questions' vectors are kept in
    ``cache_dir`` for the next build."""
    from .evaluation import load_cases, normalize

    started = time.perf_counter()
    cases = [case for path in files for case in load_cases(path)]
    if not cases or not len(chunks):
        return None, None
    sentence_vectors, spans = sentences
    # the contract's "appears": normalized, on word boundaries
    texts = [f" {normalize(c.text)} " for c in chunks]
    sentence_texts = [f" {normalize(chunks[int(r)].text[int(s):int(e)])} " for r, s, e in spans]

    def holds(text: str, phrases: Sequence[str]) -> bool:
        return any(f" {p} " in text for p in phrases)

    # which passages hold a phrase: one search of all the passages' text per
    # phrase (thousands of passages, thousands of questions)
    everything = "\0".join(texts)
    starts = list(itertools.accumulate((len(t) + 1 for t in texts[:-1]), initial=0))
    found: dict[str, set[int]] = {}

    def rows_holding(phrase: str) -> set[int]:
        if phrase not in found:
            rows, at = set(), everything.find(f" {phrase} ")
            while at >= 0:
                rows.add(bisect.bisect_right(starts, at) - 1)
                at = everything.find(f" {phrase} ", at + 1)
            found[phrase] = rows
        return found[phrase]

    answerable, kept, positive_chunks, phrases_of = [], [], [], []
    for case in cases:
        phrases = [p for p in (normalize(e) for e in case.evidence) if p] if "answer" in case.expect else []
        rows = sorted(set().union(*(rows_holding(p) for p in phrases))) if phrases else []
        (answerable if rows else kept).append(case)
        if rows:
            positive_chunks.append(rows)
            phrases_of.append(phrases)
    if len(answerable) < MIN_PAIRS:
        return None, None

    # The targets: every passage of a document that answers some question,
    # its sentences, and a seeded sample of the other passages as negatives.
    answering_docs = {chunks[r].doc_id for rows in positive_chunks for r in rows}
    near = [i for i, c in enumerate(chunks) if c.doc_id in answering_docs]
    far = [i for i, c in enumerate(chunks) if c.doc_id not in answering_docs]
    far = sorted(random.Random(SEED).sample(far, min(len(far), OTHER_PASSAGES_MAX)))
    near_sentences = [j for j, (r, _, _) in enumerate(spans) if chunks[int(r)].doc_id in answering_docs]
    dim = vectors.shape[1]
    target_vectors = np.vstack([np.asarray(vectors[near], np.float32).reshape(-1, dim),
                                np.asarray(sentence_vectors[near_sentences], np.float32).reshape(-1, dim)])
    position = {row: k for k, row in enumerate(near)}
    positives = []
    for rows, phrases in zip(positive_chunks, phrases_of):
        chosen = [position[r] for r in rows]
        chosen += [len(near) + k for k, j in enumerate(near_sentences) if holds(sentence_texts[j], phrases)]
        positives.append(chosen)

    matrix, before, after = fit(training_vectors(answerable, embedder, cache_dir), positives,
                                training_vectors(kept, embedder, cache_dir), target_vectors,
                                negatives=np.asarray(vectors[far], np.float32).reshape(-1, dim))
    report = AdapterReport(pairs=len(answerable), others=len(kept), sources=tuple(str(p) for p in files),
                           loss_before=round(before, 4),
                           loss_after=round(after, 4), seconds=round(time.perf_counter() - started, 2))
    return matrix, report
