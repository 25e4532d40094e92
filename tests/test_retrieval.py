"""Retrieval: fusion, follow-ups, spelling, and the three modes on real data."""

from __future__ import annotations

import pytest

from assistant.index import build_index, load_index
from assistant.retrieval import Retriever, Speller, fuse, is_followup, resolve_followup
from assistant.schema import Turn
from assistant.settings import Settings


def test_rrf_fusion_hand_computed():
    fused = fuse([[1, 2, 3], [3, 1]], k=60)
    scores = dict(fused)
    assert scores[1] == pytest.approx(1 / 61 + 1 / 62)
    assert scores[3] == pytest.approx(1 / 63 + 1 / 61)
    assert scores[2] == pytest.approx(1 / 62)
    assert [item for item, _ in fused] == [1, 3, 2]


def test_weighted_fusion_can_favour_one_ranking():
    assert fuse([[1, 2], [2, 1]], weights=[2.0, 1.0])[0][0] == 1
    assert fuse([[1, 2], [2, 1]], weights=[1.0, 2.0])[0][0] == 2
    with pytest.raises(ValueError, match="2 weights for 1 rankings"):
        fuse([[1]], weights=[1.0, 1.0])


@pytest.mark.parametrize("question, expected", [
    ("and how do i fix that?", True),
    ("what about it", True),
    ("why?", True),
    ("exercises?", True),
    ("Where does the VMO attach to the kneecap?", False),
    ("what exercises strengthen the inner quad", False),
])
def test_followup_detection(question, expected):
    assert is_followup(question) is expected


def test_followup_is_resolved_against_the_last_user_turn():
    history = [{"role": "user", "content": "Why does my knee buckle?"},
               {"role": "assistant", "content": "Because the kneecap ..."}]
    assert resolve_followup("and how do I fix that?", history) == "Why does my knee buckle? and how do I fix that?"
    assert resolve_followup("What is the Q-angle?", history) == "What is the Q-angle?"
    assert resolve_followup("and that?", []) == "and that?"
    chain = [Turn("user", "Why does my kneecap click?"), Turn("assistant", "..."),
             Turn("user", "why?"), Turn("assistant", "...")]
    assert resolve_followup("and how to fix it", chain) == "Why does my kneecap click? why? and how to fix it"


def test_speller_fixes_typos_but_not_real_words():
    speller = Speller(frozenset({"kneecap", "exercises", "swelling", "downstairs"}),
                      frozenset({"shoulder", "knee", "what"}))
    assert speller.correct("wat excersises for my kneecp") == "wat exercises for my kneecap"
    assert speller.correct("my shoulder hurts") == "my shoulder hurts"
    assert speller.correct("sweling going downstars") == "swelling going downstairs"
    assert speller.correct("gout") == "gout"  # too short to correct safely
    assert speller.correct("strenghten my kneecap") == "strenghten my kneecap"  # no target word known


def test_speller_falls_back_to_the_model_vocabulary():
    speller = Speller(frozenset({"kneecap"}), frozenset({"strengthen", "knee"}))
    assert speller.correct("how to strenghten it") == "how to strengthen it"


def test_speller_keeps_inflections_of_known_words():
    speller = Speller(frozenset({"buckles", "kneecap"}), frozenset({"backing", "tucking", "knee"}))
    assert speller.correct("my knee keeps buckling") == "my knee keeps buckling"


@pytest.fixture(scope="module")
def seed_retriever(seed_index, real_embedder):
    return Retriever(load_index(seed_index.index_dir, real_embedder.model_name), real_embedder, seed_index)


# Paraphrased questions and a phrase of the passage that answers each.
SEED_QUESTIONS = [
    ("where does the vmo attach on the kneecap", "55-degree angle"),
    ("what is the main job of the VMO", "pull the kneecap medially"),
    ("why are girls more likely to have kneecap trouble", "strike against you"),
    ("how much swelling turns off the vmo", "20 cc"),
    ("can one leg being longer cause knee problems", "leg length discrepancy"),
    ("what is the best exersise for the vmo", "kicking a soccer ball"),
    ("what is mcconnell taping for", "McConnell taping"),
]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_modes_find_the_answer_in_the_top_3(seed_retriever, mode):
    found = 0
    for question, phrase in SEED_QUESTIONS:
        hits = seed_retriever.search(question, k=3, mode=mode)
        assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
        found += any(phrase.lower() in h.chunk.text.lower() for h in hits)
    assert found >= len(SEED_QUESTIONS) - (1 if mode == "hybrid" else 2)


@pytest.mark.slow
def test_hits_carry_cosine_and_bm25_scores(seed_retriever):
    hits = seed_retriever.search("wall slides with a soccer ball", k=5)
    assert all(-1.0 <= h.dense_score <= 1.0 for h in hits)
    assert hits[0].bm25_score and hits[0].bm25_score > 0
    assert hits == sorted(hits, key=lambda h: -h.score)


@pytest.mark.slow
def test_followup_retrieves_with_the_earlier_question(seed_retriever):
    history = [Turn("user", "why does my knee give way and buckle?"), Turn("assistant", "...")]
    hits = seed_retriever.search("and how do i fix that?", history, k=5)
    assert any("exterior ridge" in h.chunk.text or "buckles" in h.chunk.text for h in hits[:3])


@pytest.mark.slow
def test_bad_arguments_and_empty_queries(seed_retriever):
    with pytest.raises(ValueError, match="retriever 'magic' is not one of"):
        seed_retriever.search("knee", mode="magic")
    with pytest.raises(ValueError, match="k must be at least 1"):
        seed_retriever.search("knee", k=0)
    assert seed_retriever.search("   ") == []
