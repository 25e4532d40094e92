"""Optional cross-encoder reranking of the retrieved candidates.

When ``settings.reranker`` names a cross-encoder (a local directory, or a
hub id such as ``cross-encoder/ms-marco-MiniLM-L6-v2`` for users with a
network), the best ``settings.rerank_top`` fused candidates are scored
again by reading each (question, passage) pair together, and reordered by
that score. No reranker ships with the project (its weights are not on
PyPI), so the default is none; the tests use a tiny one they build.

If the model cannot be loaded or fails, retrieval keeps the fused order and
logs one warning: a broken optional model never breaks an answer.

Nothing here imports torch or sentence-transformers until a reranker is used.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Sequence

from .errors import ModelLoadError

log = logging.getLogger(__name__)


@dataclass
class Reranker:
    """A lazily loaded sentence-transformers ``CrossEncoder``."""

    model: str
    device: str = "cpu"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _loaded: object = field(default=None, repr=False)

    def _load(self):
        try:
            from sentence_transformers import CrossEncoder

            return CrossEncoder(self.model, device=self.device)
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise ModelLoadError(
                f"cannot load reranker {self.model!r} (a local cross-encoder directory, or a hub id "
                f"with a network): {type(exc).__name__}: {first}") from exc

    @property
    def loaded(self):
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = self._load()
        return self._loaded

    def scores(self, question: str, passages: Sequence[str]) -> list[float]:
        """One relevance score per passage (higher is more relevant)."""
        if not passages:
            return []
        out = self.loaded.predict([(question, p) for p in passages], show_progress_bar=False)
        return [float(x) for x in out]


_RERANKERS: dict[tuple[str, str], Reranker] = {}
_LOCK = threading.Lock()
_WARNED: set[str] = set()


def get_reranker(model: str, device: str = "cpu") -> Reranker:
    """One :class:`Reranker` per model and device."""
    with _LOCK:
        key = (model, device)
        if key not in _RERANKERS:
            _RERANKERS[key] = Reranker(model, device)
        return _RERANKERS[key]


def rerank(question: str, rows: Sequence[int], texts: Sequence[str], reranker: Reranker) -> list[tuple[int, float]] | None:
    """``rows`` reordered by the reranker's score of their ``texts`` (best
    first, with the scores), or None when the reranker is unusable."""
    try:
        scores = reranker.scores(question, texts)
    except Exception as exc:  # a broken optional model: keep the fused order
        if reranker.model not in _WARNED:
            _WARNED.add(reranker.model)
            log.warning("reranker disabled, using the fused order: %s", exc)
        return None
    return sorted(zip(rows, scores), key=lambda kv: -kv[1])
