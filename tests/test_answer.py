"""The extractive composer: every quoted sentence is verbatim from the chunk it cites."""

from __future__ import annotations

import re

import pytest

from assistant.answer import LEAD_IN, LEAD_IN_PERSONAL, answer_body, compose_answer, is_personal
from assistant.guardrails import FOLLOW_UP
from assistant.schema import Chunk, Decision, Hit
from assistant.settings import Settings

_MARKED = re.compile(r"(.+?) \[(\d+)\](?: |$)")

TEXTS = [
    "The VMO attaches to your kneecap (patella) in a 55-degree angle on the top inside edge. "
    "The VMO is part of the strong quadriceps muscle group popularly called the quads. "
    "The VMO's most crucial role is to pull the kneecap medially (indoors).",
    "20 cc's of swelling in the knee essentially shut down the VMO. "
    "It takes 80 cc's to close down the vastus lateralis.",
    "The ideal exercise for your VMO is kicking a soccer ball. "
    "Kicking the ball with the inside of your foot is a fantastic warm-up exercise.",
]


def _hits(texts=TEXTS) -> list[Hit]:
    return [Hit(Chunk(f"doc#{i}", "doc", "The VMO", "vmo.txt", t, 0, len(t), 40), 1.0 / i, i, 0.6)
            for i, t in enumerate(texts, 1)]


def quoted(text: str) -> list[tuple[str, int]]:
    """(sentence, marker) pairs of a composed reply's body."""
    body = answer_body(text)
    pairs = _MARKED.findall(body)
    assert " ".join(f"{s} [{n}]" for s, n in pairs) == body, "body is not only marked sentences"
    return [(s, int(n)) for s, n in pairs]


def check_reply(text, citations, max_sentences):
    assert text.endswith(FOLLOW_UP) and "physiotherapist or doctor" in text
    pairs = quoted(text)
    assert 1 <= len(pairs) <= max_sentences
    by_n = {c.n: c for c in citations}
    # markers 1..k, numbered in order of first use, each with a citation
    first_use = list(dict.fromkeys(n for _, n in pairs))
    assert first_use == list(range(1, len(first_use) + 1)) == sorted(by_n)
    for sentence, n in pairs:
        assert sentence in by_n[n].text  # verbatim from the cited chunk
        assert any(by_n[n].text[s:e] == sentence for s, e in by_n[n].highlights)
    for c in citations:  # every highlight is a sentence the reply used
        used = {s for s, n in pairs if n == c.n}
        assert {c.text[s:e] for s, e in c.highlights} == used


@pytest.mark.parametrize("question", [
    "What does the VMO do?",
    "how much swelling shuts down the VMO",
    "what exercise is best for the VMO",
])
@pytest.mark.parametrize("max_sentences", [1, 2, 4])
def test_composed_reply_is_verbatim_and_cited(hash_embedder, question, max_sentences):
    settings = Settings(max_answer_sentences=max_sentences)
    text, citations = compose_answer(question, _hits(), hash_embedder, settings)
    check_reply(text, citations, max_sentences)


def test_the_best_matching_sentence_is_used(hash_embedder):
    text, citations = compose_answer("how many cc of swelling shut down the VMO", _hits(), hash_embedder,
                                     Settings(max_answer_sentences=1))
    assert quoted(text) == [("20 cc's of swelling in the knee essentially shut down the VMO.", 1)]
    assert citations[0].chunk_id == "doc#2"


def test_duplicate_sentences_from_overlapping_chunks_are_quoted_once(hash_embedder):
    overlap = [TEXTS[1], TEXTS[1].split(". ")[1] + " The VMO is a quad muscle on the inside."]
    text, _ = compose_answer("VMO swelling cc", _hits(overlap), hash_embedder, Settings())
    sentences = [s for s, _ in quoted(text)]
    assert len(sentences) == len(set(sentences))


@pytest.mark.parametrize("question, personal", [
    ("do I have a weak VMO?", True),
    ("Could I have a kneecap problem", True),
    ("is my VMO weak", True),
    ("what does the VMO do", False),
    ("why does my knee pop on stairs", False),
])
def test_personal_questions_get_general_information_framing(hash_embedder, question, personal):
    assert is_personal(question) is personal
    text, _ = compose_answer(question, _hits(), hash_embedder, Settings())
    assert text.startswith(LEAD_IN_PERSONAL if personal else LEAD_IN)
    assert "you have" not in answer_body(text).lower()


def test_no_hits_is_an_error(hash_embedder):
    with pytest.raises(ValueError, match="at least one retrieved passage"):
        compose_answer("what does the VMO do", [], hash_embedder, Settings())


def test_passages_without_sentences_are_an_error(hash_embedder):
    with pytest.raises(ValueError, match="no sentence to quote|none of the retrieved passages"):
        compose_answer("what does the VMO do", _hits(["VMO", "Knee."]), hash_embedder, Settings())


@pytest.mark.slow
@pytest.mark.parametrize("question, evidence", [
    ("What does the VMO do?", "pull the kneecap medially"),
    ("how much swelling shuts down the VMO", "20 cc"),
    ("what is the best exercise for the VMO", "soccer ball"),
    ("do I have a weak VMO?", "VMO"),
    ("why are women more prone to kneecap problems", "female"),
    ("how do i do wall slides", "squeeze the ball and bend your knees"),
])
def test_real_retrieval_and_model(seed_index, real_embedder, question, evidence):
    from assistant.index import load_index
    from assistant.retrieval import Retriever

    retriever = Retriever(load_index(seed_index.index_dir, real_embedder.model_name), real_embedder, seed_index)
    hits = retriever.search(question)
    text, citations = compose_answer(question, hits, real_embedder, seed_index)
    check_reply(text, citations, seed_index.max_answer_sentences)
    assert evidence.lower() in answer_body(text).lower()


def test_the_top_ranked_passage_is_always_quoted(hash_embedder):
    # The question matches passage 2 best, but retrieval ranked passage 1 first:
    # its best sentence is quoted too, so the top passage is always cited.
    text, citations = compose_answer("how many cc of swelling shut down the VMO", _hits(), hash_embedder,
                                     Settings(max_answer_sentences=2))
    assert citations[0].chunk_id == _hits()[0].chunk.chunk_id
    assert any(c.chunk_id == "doc#2" for c in citations)


def test_the_second_passage_is_quoted_when_its_best_sentence_scores_near_the_best(hash_embedder):
    # The question matches passage 3 best; retrieval ranked 1 and 2 first, and
    # passage 2 (swelling) scores more than half as well as the best sentence:
    # with room for two sentences, the top two passages take both places.
    question = "is kicking a soccer ball the ideal exercise, even with swelling in the knee?"
    text, citations = compose_answer(question, _hits(), hash_embedder, Settings(max_answer_sentences=2))
    assert [c.chunk_id for c in citations] == ["doc#1", "doc#2"]
    # with room for three, the best match comes too
    text, citations = compose_answer(question, _hits(), hash_embedder, Settings(max_answer_sentences=3))
    assert [c.chunk_id for c in citations][:2] == ["doc#1", "doc#2"]
    assert "doc#3" in [c.chunk_id for c in citations]


def test_a_second_passage_about_something_else_is_not_quoted(hash_embedder):
    # Passage 2 (swelling) is ranked second but scores less than half the best
    # sentence for a question about the soccer-ball exercise: it is not forced
    # in, and the best match takes the place.
    question = "what exercise is best, kicking a soccer ball?"
    text, citations = compose_answer(question, _hits(), hash_embedder, Settings(max_answer_sentences=2))
    assert [c.chunk_id for c in citations] == ["doc#1", "doc#3"]
    assert "swelling" not in answer_body(text)


def test_a_sentence_inherits_part_of_the_score_of_the_one_before_it():
    # (hit, start, end, sentence) rows: two passages, sentences in order
    import numpy as np

    from assistant.answer import CONTINUATION_CARRY, carry_forward

    cands = [(0, 0, 10, "names the exercise"), (0, 11, 20, "its steps"), (0, 21, 30, "about something else"),
             (1, 0, 10, "another passage")]
    own = np.array([1.0, 0.55, 0.2, 0.3], dtype=np.float32)
    carried = carry_forward(cands, own)
    # the steps (at least 0.4 of the best on their own) inherit from the name
    assert carried[1] == np.float32(CONTINUATION_CARRY * 1.0)
    # a sentence far below the best keeps its own score, and a score is
    # carried one step only, never across passages
    assert carried[2] == own[2] and carried[3] == own[3] and carried[0] == own[0]
    # the order of the rows does not matter
    order = [3, 2, 0, 1]
    assert np.allclose(carry_forward([cands[i] for i in order], own[order]), carried[order])


@pytest.mark.slow
def test_a_follow_up_that_cannot_be_answered_alone_is_answered_in_context(seed_assistant):
    history = [{"role": "user", "content": "what does the vmo do"},
               {"role": "assistant", "content": "Its most crucial role is to pull the kneecap medially [1]."}]
    alone = seed_assistant.respond("what do the other ones do then")
    assert alone.decision != Decision.ANSWER
    reply = seed_assistant.respond("what do the other ones do then", history)
    assert reply.decision == Decision.ANSWER, reply.reason
    assert any("pull the kneecap laterally" in c.text for c in reply.citations)
    # leaving the topic mid-conversation is still declined
    assert seed_assistant.respond("tell me a joke then", history).decision == Decision.OUT_OF_SCOPE


@pytest.mark.slow
def test_a_follow_up_pointing_back_in_a_knee_conversation_is_not_out_of_scope(seed_assistant):
    taping = [{"role": "user", "content": "what is mcconnell taping"},
              {"role": "assistant", "content": "McConnell taping will help re-align the kneecap [1]."}]
    # far from the topic by its cosines (skin, blotches), but "it" is the tape
    reply = seed_assistant.respond("my skin doesnt like it, comes up all blotchy", taping)
    assert reply.decision == Decision.ANSWER, reply.reason
    assert any("skin becomes irritated" in c.text for c in reply.citations)
    # the earlier turn's rare words do not bring another subject into scope
    assert seed_assistant.respond("ok and what is the capital of spain", taping).decision == Decision.OUT_OF_SCOPE
    # nor does a follow-up about another body part stay on the knee
    kneecap = [{"role": "user", "content": "what is mcconnell taping for the kneecap"},
               {"role": "assistant", "content": "McConnell taping will help re-align the kneecap [1]."}]
    assert seed_assistant.respond("and for my wrist?", kneecap).decision == Decision.OUT_OF_SCOPE


@pytest.mark.slow
def test_a_follow_ups_sentences_are_scored_leaning_on_what_it_newly_asks(real_embedder):
    from assistant.answer import score_sentences

    sentences = ["The noise that it makes is the kneecap dragging along one ridge of the valley.",
                 "The ideal exercise for your VMO is kicking a soccer ball."]
    joined = "why does my knee click when i bend it and how do i fix that? and how do i fix that?"
    plain = score_sentences(joined, sentences, real_embedder)
    leaning = score_sentences(joined, sentences, real_embedder, asked="and how do i fix that?")
    assert leaning[1] - leaning[0] > plain[1] - plain[0]  # the remedy gains on the cause


@pytest.mark.slow
def test_a_refused_diagnosis_still_gives_cited_general_information(seed_assistant):
    reply = seed_assistant.respond("my knee pops and buckles going downstairs, just tell me my diagnosis")
    assert reply.decision == Decision.REFUSE and reply.reason.startswith("refuse:diagnosis")
    assert reply.text.startswith("I can't diagnose")
    assert reply.citations and reply.retrieved
    by_n = {c.n: c for c in reply.citations}
    for sentence, n in _MARKED.findall(reply.text.split("\n\n")[2]):
        assert sentence in by_n[int(n)].text  # quoted verbatim from the passage it cites
    assert "physiotherapist or doctor" in reply.text.split("\n\n")[-1]
    # nothing described: the plain refusal, with nothing retrieved
    bare = seed_assistant.respond("can you diagnose me")
    assert bare.decision == Decision.REFUSE and not bare.citations and not bare.retrieved


def test_headings_are_not_quoted(hash_embedder):
    title = "The VMO – Vastus Medialis Obliques"
    texts = [f"{title}\n\nThe VMO attaches to your kneecap (patella) in a 55-degree angle on the top inside edge.",
             "How do you save yourself from this growing menace of the VMO?\n\n"
             "To deal with these problems, we must understand the reason for the symptoms."]
    hits = [Hit(Chunk(f"doc#{i}", "doc", title, "vmo.txt", t, 0, len(t), 40), 1.0 / i, i, 0.6)
            for i, t in enumerate(texts, 1)]
    text, citations = compose_answer("the VMO vastus medialis obliques: how do you save yourself from it",
                                     hits, hash_embedder, Settings(max_answer_sentences=4))
    sentences = [s for s, _ in quoted(text)]
    assert sentences and title not in sentences
    assert not any(s.endswith("?") for s in sentences)
    check_reply(text, citations, 4)


@pytest.mark.slow
def test_thanks_or_goodbye_gets_a_short_reply_not_the_passages_again(seed_assistant):
    history = [{"role": "user", "content": "what does the vmo do"},
               {"role": "assistant", "content": "Its most crucial role is to pull the kneecap medially [1]."}]
    for message, opening in (("thanks a lot!", "You're welcome."), ("ok cheers, bye", "You're welcome."),
                             ("see ya", "Take care."), ("hello", "Hello.")):
        reply = seed_assistant.respond(message, history)
        assert reply.decision == Decision.OUT_OF_SCOPE and reply.reason == "courtesy", message
        assert reply.text.startswith(opening) and not reply.citations
    # a question after the thanks is still answered, an emergency still escalated
    assert seed_assistant.respond("thanks! and how do I strengthen it?", history).decision == Decision.ANSWER
    assert seed_assistant.respond("thanks, but my knee is now hot and swollen and I have a fever",
                                  history).decision == Decision.ESCALATE
