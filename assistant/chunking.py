"""Split documents into short, citable, sentence-aligned chunks.

Guarantees:
- A chunk is a run of whole sentences from one paragraph (short paragraphs,
  such as a heading line, are joined to the next one); a sentence longer than
  the budget is cut at word boundaries.
- No chunk exceeds ``max_tokens`` as counted by the embedding model's own
  tokenizer, so nothing is silently truncated when it is embedded.
- ``chunk.text == document.text[chunk.start:chunk.end]``.
- ``chunk_id`` depends only on the document id and the chunk's text, so an
  unchanged passage keeps its id across rebuilds and edits elsewhere.
"""

from __future__ import annotations

import hashlib
import re
from typing import Callable, Sequence

from .schema import Chunk, Document

TokenCounter = Callable[[Sequence[str]], list[int]]

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_segmenter = None


def _pysbd():
    global _segmenter
    if _segmenter is None:
        import pysbd

        _segmenter = pysbd.Segmenter(language="en", clean=False, char_span=True)
    return _segmenter


def paragraph_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each non-blank paragraph, trimmed of white space."""
    spans, pos = [], 0
    for match in list(_PARAGRAPH_BREAK.finditer(text)) + [None]:
        end = match.start() if match else len(text)
        spans.append(_trim(text, pos, end))
        pos = match.end() if match else len(text)
    return [s for s in spans if s[1] > s[0]]


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence spans inside ``text[start:end]``, trimmed, as absolute offsets."""
    end = len(text) if end is None else end
    piece = text[start:end]
    spans = []
    try:
        for sent in _pysbd().segment(piece):
            spans.append(_trim(text, start + sent.start, start + sent.end))
    except Exception:  # pysbd is rule-based; on a pathological input fall back
        spans = [_trim(text, start + m.start(), start + m.end())
                 for m in re.finditer(r"[^.!?]+(?:[.!?]+|$)", piece)]
    spans = [s for s in spans if s[1] > s[0]]
    # pysbd may leave gaps or overlaps on odd input; make spans cover the text
    # in order without overlapping, so offsets always map back.
    fixed: list[tuple[int, int]] = []
    for s, e in spans:
        s = max(s, fixed[-1][1] if fixed else start)
        if e > s:
            fixed.append(_trim(text, s, e))
    return [s for s in fixed if s[1] > s[0]] or ([_trim(text, start, end)] if text[start:end].strip() else [])


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _split_long(text: str, span: tuple[int, int], count: TokenCounter, max_tokens: int) -> list[tuple[int, int]]:
    """Cut an over-long sentence into word-aligned pieces within the budget."""
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text[span[0]:span[1]])]
    words = [(span[0] + s, span[0] + e) for s, e in words]
    sizes = count([text[s:e] for s, e in words])
    pieces, cur_start, cur_tokens = [], None, 0
    for (s, e), n in zip(words, sizes):
        if n > max_tokens:  # a single "word" over budget (junk): cut by characters
            step = max(1, (e - s) * max_tokens // (n + 1))
            for cs in range(s, e, step):
                pieces.append((cs, min(e, cs + step)))
            cur_start, cur_tokens = None, 0
            continue
        if cur_start is not None and cur_tokens + n > max_tokens:
            pieces.append((cur_start, prev_end))
            cur_start, cur_tokens = None, 0
        if cur_start is None:
            cur_start = s
        cur_tokens += n
        prev_end = e
    if cur_start is not None:
        pieces.append((cur_start, prev_end))
    return pieces


def chunk_id_for(doc_id: str, text: str) -> str:
    return f"{doc_id}#{hashlib.sha1(text.encode('utf-8')).hexdigest()[:12]}"


def chunk_document(
    doc: Document,
    count_tokens: TokenCounter,
    max_tokens: int = 96,
    overlap_sentences: int = 1,
    min_tokens: int | None = None,
) -> list[Chunk]:
    """Chunk one document.

    Args:
        doc: the document.
        count_tokens: the embedding model's token counter (no special tokens).
        max_tokens: hard upper bound on a chunk's tokens (default 96).
        overlap_sentences: sentences repeated from the previous chunk when a
            paragraph is split over several chunks (default 1).
        min_tokens: a paragraph shorter than this is joined with the next one
            (default: a sixth of ``max_tokens``, so only headings and one-liners are joined).
    """
    if max_tokens < 8:
        raise ValueError(f"max_tokens must be at least 8, got {max_tokens}")
    if overlap_sentences < 0:
        raise ValueError(f"overlap_sentences must be 0 or more, got {overlap_sentences}")
    min_tokens = max_tokens // 6 if min_tokens is None else min_tokens
    text = doc.text

    # Sentences with the paragraph they belong to.
    units: list[tuple[int, int, int]] = []  # (start, end, paragraph no)
    for p_no, (ps, pe) in enumerate(paragraph_spans(text)):
        units.extend((s, e, p_no) for s, e in split_sentences(text, ps, pe))
    if not units:
        return []
    sizes = count_tokens([text[s:e] for s, e, _ in units])
    expanded: list[tuple[int, int, int, int]] = []  # (start, end, para, tokens)
    for (s, e, p), n in zip(units, sizes):
        if n > max_tokens:
            pieces = _split_long(text, (s, e), count_tokens, max_tokens)
            for (ps, pe), pn in zip(pieces, count_tokens([text[a:b] for a, b in pieces])):
                expanded.append((ps, pe, p, pn))
        else:
            expanded.append((s, e, p, n))

    groups: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    # Separator tokens are ~0 for WordPiece (white space), so sentence counts
    # add up; the final check below re-counts each chunk to be sure.
    for i, (_, _, para, n) in enumerate(expanded):
        if current:
            same_para = expanded[current[-1]][2] == para
            fits = tokens + n <= max_tokens
            if fits and (same_para or tokens < min_tokens):
                current.append(i)
                tokens += n
                continue
            groups.append(current)
            carry = []
            if same_para and overlap_sentences:
                carry = current[-overlap_sentences:]
                while carry and sum(expanded[j][3] for j in carry) + n > max_tokens:
                    carry = carry[1:]
                # never repeat the whole previous chunk
                if len(carry) == len(current):
                    carry = carry[1:]
            current = list(carry)
            tokens = sum(expanded[j][3] for j in current)
        current.append(i)
        tokens += n
    if current:
        groups.append(current)

    spans = [(expanded[g[0]][0], expanded[g[-1]][1]) for g in groups]
    counts = count_tokens([text[s:e] for s, e in spans])
    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    for (s, e), n in zip(spans, counts):
        pieces = [(s, e, n)]
        if n > max_tokens:  # tokenization across sentences differed: cut again
            cut = _split_long(text, (s, e), count_tokens, max_tokens)
            pieces = list(zip([c[0] for c in cut], [c[1] for c in cut],
                              count_tokens([text[a:b] for a, b in cut])))
        for ps, pe, pn in pieces:
            body = text[ps:pe]
            cid = chunk_id_for(doc.doc_id, body)
            if cid in seen:  # the same passage twice in one document
                seen[cid] += 1
                cid = f"{cid}-{seen[cid]}"
            else:
                seen[cid] = 0
            chunks.append(Chunk(cid, doc.doc_id, doc.title, doc.source, body, ps, pe, pn))
    return chunks


def chunk_documents(docs: Sequence[Document], count_tokens: TokenCounter, max_tokens: int = 96,
                    overlap_sentences: int = 1) -> list[Chunk]:
    """Chunk several documents, in order."""
    out: list[Chunk] = []
    for doc in docs:
        out.extend(chunk_document(doc, count_tokens, max_tokens, overlap_sentences))
    return out
