"""Compose an answer from retrieved passages, extractively.

:func:`compose_answer` picks the sentences of the top passages that best
answer the question (embedding similarity to the question plus word
overlap), keeps them verbatim, puts a ``[n]`` marker after each, and wraps
them in a short lead-in and a closing line urging follow-up with a
physiotherapist or doctor.

Guarantees:
- every sentence between the lead-in and the closing line is a verbatim
  substring of the chunk its marker cites, so the answer is grounded by
  construction;
- a sentence that reads as instructions to an assistant or as dosing
  advice (the refusal rules' patterns) is never quoted, whatever document
  it comes from;
- the best sentence of the best-ranked passage is always quoted, and so is
  the best sentence of the second passage when it scores at least half as
  well as the best sentence (when two or more sentences are allowed);
- a sentence that directly follows a well-scoring one in its passage, and
  is itself at least 0.4 times as close to the question as the best one,
  inherits part of that score: the steps of an exercise ("You squeeze the
  ball and bend your knees ...") come after the sentence that names it,
  and share few words with the question;
- markers are numbered 1, 2, ... in order of first use, one number per
  distinct chunk, and each has a :class:`~assistant.schema.Citation` whose
  ``highlights`` are the spans of the sentences used, inside the chunk text.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Sequence

import numpy as np

from .chunking import split_sentences
from .guardrails import FOLLOW_UP, _stem, content_words, unsafe_to_quote
from .schema import Citation, Hit

LEAD_IN = "Here is what the collection says:"
LEAD_IN_PERSONAL = ("I can't tell what is happening in your own knee, but here is what the "
                    "collection says in general:")

#: Passages the composer reads sentences from (the best ones, by rank).
TOP_HITS = 5
#: The best sentence of each of this many top-ranked passages is quoted
#: (when two or more sentences are allowed): the second passage holds the
#: answer often enough that quoting it lifts citation support ...
ALWAYS_QUOTE_TOP = 2
#: ... but only the first passage's is quoted whatever it scores: a passage
#: below the first must offer a sentence scoring at least this share of the
#: best one, or a sentence about something else gets quoted ("how do I do
#: wall slides?" quoted the Q-angle).
FORCED_FLOOR = 0.5
#: A sentence scores at least this share of the score of the sentence just
#: before it in the same passage (see :func:`carry_forward`) ...
CONTINUATION_CARRY = 0.85
#: ... when its own score is at least this share of the best sentence's, so
#: a sentence about nothing asked ("We will need to examine how your knee got
#: to this sad state.") is not carried in by the one before it.
CONTINUATION_MIN = 0.4
#: Weight of word overlap next to cosine similarity when scoring a sentence.
LEXICAL_WEIGHT = 0.25
#: A sentence must score at least this share of the best sentence's score.
RELATIVE_FLOOR = 0.75
#: Sentences shorter than this many words (headings, fragments) are skipped.
MIN_WORDS = 5

_PERSONAL = re.compile(
    r"\b(?:do|could|might|may|did) i (?:have|need|suffer)\b|\bis (?:it|this|that) (?:my|a|an)\b"
    r"|\bam i\b|\bis my\b", re.IGNORECASE)


def is_personal(question: str) -> bool:
    """Does the question ask about the user's own knee ("do I have a weak VMO?")?"""
    return _PERSONAL.search(question) is not None


def _candidates(hits: Sequence[Hit]) -> list[tuple[int, int, int, str]]:
    """(hit index, start, end, sentence) for usable sentences, first copy only.

    Chunks overlap by a sentence, so the same sentence can come from two
    hits; it is kept from the better-ranked one. Headings (the document's
    title, a question the text asks itself) are not quoted.
    """
    seen: set[str] = set()
    out = []
    for h_i, hit in enumerate(hits):
        title = " ".join(hit.chunk.title.split()).lower()
        for start, end, sentence in _quotable(hit.chunk.text):
            key = " ".join(sentence.split()).lower()
            # a heading is no claim: the document's title, or a question the
            # text asks itself ("How do you save yourself from this growing menace?")
            if key == title or key.endswith("?"):
                continue
            if key not in seen:
                seen.add(key)
                out.append((h_i, start, end, sentence))
    return out


@lru_cache(maxsize=4096)
def _quotable(text: str) -> tuple[tuple[int, int, str], ...]:
    """(start, end, sentence) of the sentences of a passage that may be
    quoted: long enough, and not instructions or doses planted in a
    document. Passages do not change, so this is worked out once each."""
    out = []
    for start, end in split_sentences(text):
        sentence = text[start:end]
        if len(sentence.split()) >= MIN_WORDS and not unsafe_to_quote(sentence):
            out.append((start, end, sentence))
    return tuple(out)


def score_sentences(question: str, sentences: Sequence[str], embedder, asked: str | None = None) -> np.ndarray:
    """Cosine to the question plus weighted share of the question's content
    words (and their lay-term translations) the sentence contains.

    ``asked``: for a follow-up read with an earlier turn (``question``), the
    user's own words; the cosine is then taken with the vector retrieval
    ranked by, which leans on what is newly asked
    (:func:`~assistant.retrieval.lean_on_question`)."""
    from .retrieval import expand_lay_terms, lean_on_question

    lean = bool(asked and asked.strip() and asked.strip() != question.strip())
    queries = [question, asked] if lean else [question]
    vecs = embedder.encode(queries + list(sentences))
    qvec = lean_on_question(vecs[0], vecs[1]) if lean else vecs[0]
    cos = vecs[len(queries):] @ qvec
    # the collection's words for the patient's too ("too much": "tolerate")
    q_words = content_words(expand_lay_terms(question))
    lexical = np.zeros(len(sentences), dtype=np.float32)
    if q_words:
        for i, sentence in enumerate(sentences):
            s_words = content_words(sentence)
            lexical[i] = sum(any(s.startswith(_stem(w)) for s in s_words) for w in q_words) / len(q_words)
    return cos + LEXICAL_WEIGHT * lexical


def carry_forward(cands: Sequence[tuple[int, int, int, str]], scores: np.ndarray) -> np.ndarray:
    """Scores where each sentence gets at least ``CONTINUATION_CARRY`` of the
    score of the quotable sentence just before it in the same passage, if
    its own score is at least ``CONTINUATION_MIN`` of the best one.

    ``cands`` are :func:`_candidates` rows (hit index, start, end, sentence)
    and ``scores`` their own scores. Only the sentence's own predecessor
    counts, so a score is carried one step, not down a whole passage.
    """
    out = scores.copy()
    if not len(scores):
        return out
    least = CONTINUATION_MIN * float(scores.max())
    previous: dict[int, int] = {}
    for i in sorted(range(len(cands)), key=lambda i: (cands[i][0], cands[i][1])):
        h_i = cands[i][0]
        if h_i in previous and scores[i] >= least:
            out[i] = max(scores[i], CONTINUATION_CARRY * scores[previous[h_i]])
        previous[h_i] = i
    return out


def compose_answer(question: str, hits: Sequence[Hit], embedder, settings,
                   asked: str | None = None) -> tuple[str, tuple[Citation, ...]]:
    """The extractive reply to ``question`` and the passages it cites.

    Args:
        question: the (follow-up resolved) question.
        asked: the user's own words, when ``question`` was read with an
            earlier turn (see :func:`score_sentences`).
        hits: retrieved passages, best first.
        embedder: anything with ``encode(texts) -> unit vectors``.
        settings: uses ``max_answer_sentences``.

    Raises:
        ValueError: no hits, or no passage has a usable sentence.
    """
    if not hits:
        raise ValueError("compose_answer needs at least one retrieved passage, got none")
    limit = settings.max_answer_sentences
    if limit < 1:
        raise ValueError(f"max_answer_sentences must be at least 1, got {limit}")
    top = list(hits)[:TOP_HITS]
    cands = _candidates(top)
    if not cands:
        raise ValueError("none of the retrieved passages has a sentence to quote")
    scores = carry_forward(cands, score_sentences(question, [c[3] for c in cands], embedder, asked))
    best = float(scores.max())
    order = np.argsort(-scores, kind="stable")
    chosen = [int(i) for i in order[:limit] if scores[i] >= RELATIVE_FLOOR * best or i == order[0]]
    # Retrieval ranks passages with more evidence than one sentence's score
    # (BM25, the whole passage, the best sentence): quote the best sentence
    # of each of the top passages (below the first, only one that scores
    # near the best), then the best of the rest.
    must = []
    for rank in range(ALWAYS_QUOTE_TOP):
        from_hit = [int(i) for i in order if cands[i][0] == rank]
        if from_hit and (rank == 0 or scores[from_hit[0]] >= FORCED_FLOOR * best):
            must.append(from_hit[0])
    if limit >= 2 and must:
        must = must[:limit]
        chosen = must + [i for i in chosen if i not in must][: limit - len(must)]
    # Read in the passages' own order: by passage rank, then position.
    chosen.sort(key=lambda i: (cands[i][0], cands[i][1]))

    numbers: dict[int, int] = {}
    spans: dict[int, list[tuple[int, int]]] = {}
    parts = []
    for i in chosen:
        h_i, start, end, sentence = cands[i]
        n = numbers.setdefault(h_i, len(numbers) + 1)
        spans.setdefault(h_i, []).append((start, end))
        parts.append(f"{sentence} [{n}]")
    citations = tuple(
        Citation(n=n, chunk_id=top[h_i].chunk.chunk_id, source=top[h_i].chunk.source,
                 title=top[h_i].chunk.title, text=top[h_i].chunk.text,
                 highlights=tuple(sorted(spans[h_i])))
        for h_i, n in sorted(numbers.items(), key=lambda kv: kv[1])
    )
    lead = LEAD_IN_PERSONAL if is_personal(question) else LEAD_IN
    text = f"{lead}\n\n" + " ".join(parts) + f"\n\n{FOLLOW_UP}"
    return text, citations


def answer_body(text: str) -> str:
    """The quoted part of a composed reply (without lead-in and closing line)."""
    lines = text.split("\n\n")
    return "\n\n".join(lines[1:-1]) if len(lines) >= 3 else text
