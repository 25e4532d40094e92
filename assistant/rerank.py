"""Optional cross-encoder reranking of the retrieved candidates.

When ``settings.reranker`` names a cross-encoder (a local directory, or a
hub id such as ``cross-encoder/ms-marco-MiniLM-L6-v2`` for users with a
network), the best ``settings.rerank_top`` fused candidates are scored
again by reading each (question, passage) pair together, and reordered by
that score. No reranker ships with the project (its weights are not on
PyPI), so the default is none; the tests use a tiny one they build.

If the model cannot be loaded or fails, retrieval keeps the fused order and
logs one warning: a broken optional model never breaks an answer. A model
that failed to load is not tried again on every question.

Nothing here imports torch or sentence-transformers until a reranker is used.
"""

from __future__ import annotations

import logging
import threading
from typing import Sequence

from .errors import ModelLoadError

log = logging.getLogger(__name__)

# (model, device) -> the loaded CrossEncoder, or the ModelLoadError it raised
_MODELS: dict[tuple[str, str], object] = {}
_LOCK = threading.Lock()


def cross_encoder(model: str, device: str = "cpu"):
    """The sentence-transformers ``CrossEncoder`` for ``model``, loaded once.

    Raises:
        ModelLoadError: it cannot be loaded (and will not be tried again).
    """
    key = (model, device)
    with _LOCK:
        if key not in _MODELS:
            try:
                from sentence_transformers import CrossEncoder

                _MODELS[key] = CrossEncoder(model, device=device)
            except Exception as exc:
                first = str(exc).splitlines()[0] if str(exc) else ""
                _MODELS[key] = ModelLoadError(
                    f"cannot load reranker {model!r} (a local cross-encoder directory, or a hub id "
                    f"with a network): {type(exc).__name__}: {first}")
                log.warning("reranker disabled, using the fused order: %s", _MODELS[key])
        loaded = _MODELS[key]
    if isinstance(loaded, ModelLoadError):
        raise loaded
    return loaded


def scores(model: str, question: str, passages: Sequence[str], device: str = "cpu") -> list[float]:
    """One relevance score per passage (higher is more relevant)."""
    if not passages:
        return []
    out = cross_encoder(model, device).predict([(question, p) for p in passages], show_progress_bar=False)
    return [float(x) for x in out]


def rerank(question: str, rows: Sequence[int], texts: Sequence[str], model: str,
           device: str = "cpu") -> list[tuple[int, float]] | None:
    """``rows`` reordered by the reranker's score of their ``texts`` (best
    first, with the scores), or None when the reranker is unusable."""
    try:
        found = scores(model, question, texts, device)
    except ModelLoadError:  # already logged once, when loading failed
        return None
    except Exception as exc:  # a model that loads but fails: keep the fused order
        log.warning("reranker failed, using the fused order: %s", exc)
        return None
    return sorted(zip(rows, found), key=lambda kv: -kv[1])
