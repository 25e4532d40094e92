"""Optional generated answers, guarded, with the extractive reply as fallback.

When ``settings.generator`` names a local transformers model (a directory,
causal or sequence-to-sequence), :func:`generate_answer` prompts it with the
numbered top passages and asks for an answer that uses only them, with
``[n]`` markers. Its output then passes :func:`check_grounded`: every
sentence must carry a marker, every marker must name a passage, and each
sentence must be supported by the passages it cites (word overlap, or
overlap plus embedding similarity). On any problem, or any error loading or
running the model, the extractive reply of :mod:`assistant.answer` is
returned instead.

Nothing here imports torch or transformers until a generator is used.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Sequence

from .answer import compose_answer
from .chunking import split_sentences
from .errors import ModelLoadError
from .guardrails import FOLLOW_UP, _stem, content_words
from .schema import Citation, Hit

_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")

#: A sentence is supported when this share of its content words occurs in
#: the passages it cites ...
MIN_OVERLAP = 0.6
#: ... or when at least MIN_OVERLAP_WITH_SIMILARITY of them do and its cosine
#: to the best sentence of those passages reaches MIN_SIMILARITY.
MIN_OVERLAP_WITH_SIMILARITY = 0.3
MIN_SIMILARITY = 0.7
#: Passages put in the prompt.
PROMPT_PASSAGES = 4

PROMPT = """Answer the question using only the numbered passages below.
After every sentence write the number of the passage it comes from, like [1].
If the passages do not answer the question, say so. Do not give a diagnosis or medicine advice.

{passages}

Question: {question}
Answer:"""


def build_prompt(question: str, passages: Sequence[str]) -> str:
    numbered = "\n".join(f"[{i}] {' '.join(p.split())}" for i, p in enumerate(passages, 1))
    return PROMPT.format(passages=numbered, question=question.strip())


def _sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)] if text.strip() else []


def check_grounded(text: str, passages: dict[int, str], embedder) -> list[str]:
    """Problems that make ``text`` unsafe to show (empty list: grounded).

    Args:
        text: the generated answer (without the closing follow-up line).
        passages: marker number -> passage text the marker may cite.
        embedder: for the similarity part of the support check.
    """
    sentences = _sentences(text)
    if not sentences:
        return ["the answer is empty"]
    problems: list[str] = []
    need_similarity: list[tuple[int, str, list[str]]] = []
    for i, sentence in enumerate(sentences, 1):
        numbers = [int(n) for m in _MARKER.finditer(sentence) for n in m.group(1).split(",")]
        if not numbers:
            problems.append(f"sentence {i} cites no passage: {sentence[:60]!r}")
            continue
        unknown = sorted({n for n in numbers if n not in passages})
        if unknown:
            problems.append(f"sentence {i} cites unknown passage(s) {unknown}")
            continue
        claim = _MARKER.sub(" ", sentence)
        words = content_words(claim)
        if not words:
            problems.append(f"sentence {i} says nothing checkable: {sentence[:60]!r}")
            continue
        cited = " ".join(passages[n] for n in numbers)
        cited_words = content_words(cited)
        overlap = sum(any(c.startswith(_stem(w)) for c in cited_words) for w in words) / len(words)
        if overlap >= MIN_OVERLAP:
            continue
        if overlap < MIN_OVERLAP_WITH_SIMILARITY:
            problems.append(f"sentence {i} is not supported by passage(s) {numbers} (overlap {overlap:.2f})")
            continue
        need_similarity.append((i, claim, _sentences(cited) or [cited]))
    for i, claim, cited_sentences in need_similarity:
        vecs = embedder.encode([claim] + cited_sentences)
        sim = float((vecs[1:] @ vecs[0]).max())
        if sim < MIN_SIMILARITY:
            problems.append(f"sentence {i} is not supported by its passages (similarity {sim:.2f})")
    return problems


@dataclass
class Generator:
    """A local transformers model, loaded on first use (thread-safe)."""

    model_path: str
    max_new_tokens: int = 160
    device: str = "cpu"

    def __post_init__(self):
        self._lock = threading.Lock()
        self._loaded = None

    def _load(self):
        try:
            from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - a dependency
            raise ImportError("the generator needs transformers: pip install transformers") from exc
        try:
            config = AutoConfig.from_pretrained(self.model_path, local_files_only=True)
            cls = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
            model = cls.from_pretrained(self.model_path, local_files_only=True).to(self.device).eval()
            tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
        except Exception as exc:
            raise ModelLoadError(
                f"cannot load generator {self.model_path!r} (a local model directory is needed): "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from exc
        return model, tokenizer, bool(config.is_encoder_decoder)

    @property
    def loaded(self):
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = self._load()
        return self._loaded

    def generate(self, prompt: str) -> str:
        import torch

        model, tokenizer, seq2seq = self.loaded
        limit = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", 512)
        room = max(16, int(limit) - (0 if seq2seq else self.max_new_tokens))
        enc = tokenizer(prompt, return_tensors="pt", truncation=True, max_length=room)
        enc.pop("token_type_ids", None)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                 pad_token_id=pad if pad is not None else 0)
        new = out[0] if seq2seq else out[0][enc["input_ids"].shape[1]:]
        return tokenizer.decode(new, skip_special_tokens=True).strip()


_GENERATORS: dict[str, Generator] = {}
_GEN_LOCK = threading.Lock()


def get_generator(model_path: str) -> Generator:
    """One loaded :class:`Generator` per model path."""
    with _GEN_LOCK:
        if model_path not in _GENERATORS:
            _GENERATORS[model_path] = Generator(model_path)
        return _GENERATORS[model_path]


@dataclass(frozen=True)
class GeneratedAnswer:
    """What :func:`generate_answer` returns.

    ``generated`` is False when the extractive reply was used; ``problems``
    then says why (empty when no generator is configured).
    """

    text: str
    citations: tuple[Citation, ...]
    generated: bool
    problems: tuple[str, ...] = ()


def generate_answer(question: str, hits: Sequence[Hit], embedder, settings,
                    generator: Generator | None = None) -> GeneratedAnswer:
    """A guarded generated answer, or the extractive one (see module doc)."""
    if generator is None and not settings.generator:
        text, cits = compose_answer(question, hits, embedder, settings)
        return GeneratedAnswer(text, cits, False)
    generator = generator or get_generator(settings.generator)
    top = list(hits)[:PROMPT_PASSAGES]
    passages = {i: h.chunk.text for i, h in enumerate(top, 1)}
    try:
        raw = generator.generate(build_prompt(question, list(passages.values())))
        problems = check_grounded(raw, passages, embedder)
    except Exception as exc:  # a broken generator must never break a turn
        raw, problems = "", [f"generator failed: {type(exc).__name__}: {exc}"]
    if problems:
        text, cits = compose_answer(question, hits, embedder, settings)
        return GeneratedAnswer(text, cits, False, tuple(problems))
    used = sorted({int(n) for m in _MARKER.finditer(raw) for n in m.group(1).split(",")})
    cits = tuple(Citation(n=n, chunk_id=top[n - 1].chunk.chunk_id, source=top[n - 1].chunk.source,
                          title=top[n - 1].chunk.title, text=top[n - 1].chunk.text) for n in used)
    return GeneratedAnswer(f"{raw}\n\n{FOLLOW_UP}", cits, True)
