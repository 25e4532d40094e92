"""The typed records that flow between stages.

Every stage takes and returns these frozen dataclasses; none mutates its
input. They are plain data (no numpy, no torch) so importing them is cheap
and they serialise to JSON with :func:`dataclasses.asdict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Decision(str, Enum):
    """The one decision every turn ends in (see shared/EVAL-FORMAT.md)."""

    ANSWER = "answer"
    NO_EVIDENCE = "no_evidence"
    OUT_OF_SCOPE = "out_of_scope"
    ESCALATE = "escalate"
    REFUSE = "refuse"

    def __str__(self) -> str:  # so f-strings and JSON show "answer"
        return self.value


DECISIONS: tuple[str, ...] = tuple(d.value for d in Decision)


@dataclass(frozen=True)
class Document:
    """One source document, as loaded from the corpus.

    Attributes:
        doc_id: stable id derived from the source path (not the content), so
            an edited document keeps its id and its old chunks are replaced.
        title: human title (front matter, HTML <title>, first line, ...).
        source: path relative to the corpus root (or the JSONL file + id).
        text: the document's text; character offsets of chunks point here.
        content_hash: sha256 of ``text``; drives incremental index updates.
        metadata: anything else the loader found (front matter fields, ...).
    """

    doc_id: str
    title: str
    source: str
    text: str
    content_hash: str
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    """A citable passage: a run of whole sentences from one document.

    ``text == document.text[start:end]`` always holds, so a citation can
    highlight the exact passage in its source.
    """

    chunk_id: str
    doc_id: str
    title: str
    source: str
    text: str
    start: int
    end: int
    n_tokens: int


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its fused score and rank (1 = best)."""

    chunk: Chunk
    score: float
    rank: int
    dense_score: float | None = None
    bm25_score: float | None = None


@dataclass(frozen=True)
class Citation:
    """A passage the reply cites as ``[n]``.

    ``highlights`` are (start, end) character spans inside ``text`` of the
    sentences the reply actually used, so a UI can mark them.
    """

    n: int
    chunk_id: str
    source: str
    title: str
    text: str
    highlights: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Reply:
    """What one turn of the assistant produces.

    Attributes:
        decision: one of :class:`Decision`.
        text: the full reply shown to the user, with ``[n]`` markers.
        citations: the passages the reply cites, ``n`` matching the markers.
        retrieved: what retrieval returned, best first (empty where a
            guardrail decided before retrieval).
        timings: stage name -> milliseconds.
        reason: a short machine-readable why (e.g. ``"red_flag:locked_knee"``).
        query: the (follow-up resolved) query retrieval used, if any.
    """

    decision: Decision
    text: str
    citations: tuple[Citation, ...] = ()
    retrieved: tuple[Hit, ...] = ()
    timings: dict = field(default_factory=dict)
    reason: str = ""
    query: str = ""


@dataclass(frozen=True)
class Turn:
    """One earlier message of a chat (``role`` is "user" or "assistant")."""

    role: str
    content: str
