"""Retrieval: fusion, follow-ups, spelling, and the three modes on real data."""

from __future__ import annotations

import pytest

from assistant.index import build_index, load_index
from assistant.retrieval import Retriever, Speller, combine, expand_lay_terms, fuse, is_followup, resolve_followup
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


def test_convex_fusion_hand_computed():
    # dense cosines as they are; BM25 divided by the query's best BM25 score
    fused = combine([(1, 0.8), (2, 0.4)], [(2, 10.0), (3, 5.0)], dense_weight=0.7, bm25_weight=0.3)
    scores = dict(fused)
    assert scores[1] == pytest.approx(0.7 * 0.8)
    assert scores[2] == pytest.approx(0.7 * 0.4 + 0.3 * 1.0)
    assert scores[3] == pytest.approx(0.3 * 0.5)
    assert [item for item, _ in fused] == [2, 1, 3]


def test_convex_fusion_keeps_a_big_lead_that_rank_fusion_loses():
    # item 1 is far ahead on dense and a close second on BM25: rank fusion
    # sees only the ranks (a tie), the convex sum sees the margins
    dense, lexical = [(1, 0.9), (2, 0.3)], [(2, 10.0), (1, 9.5)]
    assert combine(dense, lexical, 0.5, 0.5)[0][0] == 1
    assert dict(fuse([[1, 2], [2, 1]]))[1] == pytest.approx(dict(fuse([[1, 2], [2, 1]]))[2])


def test_convex_fusion_weights_are_normalised_and_edge_cases():
    assert combine([(1, 0.5)], [], 7, 3) == [(1, pytest.approx(0.35))]
    assert combine([], [(4, 2.0)], 1, 1) == [(4, pytest.approx(0.5))]
    assert combine([(1, -0.2)], [], 1, 0) == [(1, 0.0)]  # a negative cosine adds nothing


def test_lay_terms_add_only_words_the_question_lacks():
    assert expand_lay_terms("my knee gives way on the stairs").split()[-1] == "downstairs"
    expanded = expand_lay_terms("best exercise for my kneecap")
    assert expanded.lower().split().count("exercise") == 1
    assert expanded.lower().split().count("kneecap") == 1
    assert "patella" in expanded
    assert expand_lay_terms("what is the weather") == "what is the weather"


def test_fusion_setting_is_checked():
    assert Settings().fusion == "convex"
    with pytest.raises(ValueError, match="fusion 'max' is not one of convex, rrf"):
        Settings(fusion="max")
    with pytest.raises(ValueError, match="not both 0"):
        Settings(dense_weight=0, bm25_weight=0)


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
    # an earlier turn of three words or fewer leans on the one before it too
    short = [Turn("user", "does swelling affect the vmo"), Turn("assistant", "..."),
             Turn("user", "by how much"), Turn("assistant", "...")]
    assert resolve_followup("and the outer one?", short) == "does swelling affect the vmo by how much and the outer one?"


def test_speller_fixes_typos_but_not_real_words():
    speller = Speller(frozenset({"kneecap", "exercises", "swelling", "downstairs"}),
                      frozenset({"shoulder", "knee", "what"}))
    assert speller.correct("wat excersises for my kneecp") == "wat exercises for my kneecap"
    assert speller.correct("my shoulder hurts") == "my shoulder hurts"
    assert speller.correct("sweling going downstars") == "swelling going downstairs"
    assert speller.correct("gout") == "gout"  # too short to correct safely
    assert speller.correct("strenghten my kneecap") == "strenghten my kneecap"  # no target word known


def test_speller_reaches_further_for_longer_words_but_not_too_far():
    speller = Speller(frozenset({"mcconnell", "state", "kneecap"}), frozenset({"shoulder", "holder"}))
    assert speller.correct("mcconel taping") == "mcconnell taping"  # 2 edits in 9 letters
    assert speller.correct("statin") == "statin"  # 2 edits in 6 letters is another word
    assert speller.correct("sholder") == "shoulder"  # a tie goes to the same first letter


def test_speller_falls_back_to_the_model_vocabulary():
    speller = Speller(frozenset({"kneecap"}), frozenset({"strengthen", "knee"}))
    assert speller.correct("how to strenghten it") == "how to strengthen it"


def test_speller_corrects_into_the_model_vocabulary_only_a_dropped_or_swapped_letter():
    speller = Speller(frozenset({"kneecap"}), frozenset({"different", "walking", "strengthen", "working",
                                                        "asteroid", "pirates", "puff", "scooted", "swollen", "stolen"}))
    # a letter left out, or two neighbours swapped
    assert speller.correct("diffrent walkin strenghten wrking") == "different walking strengthen working"
    assert speller.correct("all swolen") == "all swollen"  # not "stolen", one letter changed
    # real words the vocabulary lacks are left alone
    assert speller.correct("steroid pilates puffy scooter") == "steroid pilates puffy scooter"


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
def test_a_question_that_does_not_stand_alone_is_read_with_the_last_turn(seed_retriever):
    history = [Turn("user", "how do i do wall slides"), Turn("assistant", "...")]
    # no "it"/"that", yet nothing answers "how far down" on its own
    # the new question is said twice, so its words weigh as much as the earlier turn's
    assert (seed_retriever.prepare_query("how far down do i go", history)
            == "how do i do wall slides how far down do i go how far down do i go")
    hits = seed_retriever.search("how far down do i go", history, k=3)
    assert "Wall slides" in hits[0].chunk.text
    # a question that stands alone, or one that leaves the topic, is not joined
    assert seed_retriever.prepare_query("where does the VMO attach", history) == "where does the VMO attach"
    assert seed_retriever.prepare_query("what's the weather tomorrow", history) == "what's the weather tomorrow"


@pytest.mark.slow
def test_rrf_fusion_remains_selectable(seed_index, real_embedder):
    index = load_index(seed_index.index_dir, real_embedder.model_name)
    rrf = Retriever(index, real_embedder, seed_index.replace(fusion="rrf"))
    convex = Retriever(index, real_embedder, seed_index)
    question = "what is the best exersise for the vmo"
    a, b = rrf.search(question, k=3), convex.search(question, k=3)
    assert a[0].score < 0.05 < b[0].score  # 1/(60+r) sums against a weighted cosine
    assert "kicking a soccer ball" in a[0].chunk.text and "kicking a soccer ball" in b[0].chunk.text


@pytest.mark.slow
def test_bad_arguments_and_empty_queries(seed_retriever):
    with pytest.raises(ValueError, match="retriever 'magic' is not one of"):
        seed_retriever.search("knee", mode="magic")
    with pytest.raises(ValueError, match="k must be at least 1"):
        seed_retriever.search("knee", k=0)
    assert seed_retriever.search("   ") == []


# -- lexical scores that unrelated documents do not shift ---------------------

def test_local_bm25_over_the_whole_index_is_bm25(seed_index, real_embedder):
    from assistant.retrieval import expand_lay_terms, local_bm25

    index = load_index(seed_index.index_dir, real_embedder.model_name)
    for question in ["why does my knee buckle on the stairs", "mcconnell taping skin irritated",
                     "how much swelling shuts down the vmo vmo"]:
        query = expand_lay_terms(question)
        ours = dict(local_bm25(query, range(len(index)), index))
        theirs = dict(index.bm25_search(query, len(index)))
        assert ours.keys() == theirs.keys()
        for row, score in theirs.items():
            assert ours[row] == pytest.approx(score, rel=1e-4)


def test_unrelated_documents_do_not_change_the_ranking_of_a_documents_passages(tmp_path, hash_embedder):
    from assistant.retrieval import local_bm25

    seed = ("The VMO attaches to the kneecap at an angle on the top inside edge. The knee hurts on "
            "stairs when the kneecap is pulled to the outside by the other thigh muscles.\n\n"
            "McConnell taping can re-align the kneecap before the VMO is strong enough to hold it. "
            "Tape it each morning and take it off at night, as your physiotherapist showed you.\n\n"
            "A custom knee brace may be used if the skin becomes irritated. Some people wear a brace "
            "for many years without any trouble at all, on the knee that gives way.\n\n"
            "The knee swells after years of abuse or after one traumatic event such as a twist. "
            "Swelling shuts down the VMO first, long before the outer thigh muscle stops working.")
    unrelated = [f"Return the number of years since epoch for record {i}. The result counts years." for i in range(40)]
    rankings, pooled_scores = [], []
    for name, extra in (("alone", []), ("mixed", unrelated)):
        corpus = tmp_path / name
        corpus.mkdir()
        (corpus / "knee.txt").write_text(seed, encoding="utf-8")
        for i, text in enumerate(extra):
            (corpus / f"doc{i}.txt").write_text(text, encoding="utf-8")
        s = Settings(index_dir=str(tmp_path / f"index-{name}"), corpus_dir=str(corpus),
                     model=hash_embedder.model_name)
        build_index(s, hash_embedder)
        index = load_index(s.index_dir, hash_embedder.model_name)
        doc = next(c.doc_id for c in index.chunks if c.source == "knee.txt")
        rows = index.rows_of_document(doc)
        query = "tape on my knee for years"
        local = local_bm25(query, rows, index)
        whole = [(r, sc) for r, sc in index.bm25_search(query, len(index)) if r in rows]
        rankings.append(([index.chunks[r].text for r, _ in local], [index.chunks[r].text for r, _ in whole]))
        # hybrid search's lexical side, with unrelated documents in the pool ahead of the article
        others = [r for r in range(len(index)) if r not in rows]
        pooled = Retriever(index, hash_embedder, s)._lexical_in_pool(
            query, [(r, 1.0) for r in others[:2] + list(rows)], [])
        pooled_scores.append({index.chunks[r].text: round(sc, 9) for r, sc in pooled if r in rows})
    (local_alone, whole_alone), (local_mixed, whole_mixed) = rankings
    assert local_mixed == local_alone  # scored among its own document: unchanged
    assert pooled_scores[0] == pooled_scores[1]  # so is what hybrid search fuses
    assert whole_mixed != whole_alone  # scored with the whole index's statistics: "years" lost its weight


@pytest.mark.slow
def test_a_fragment_is_read_in_context_unless_it_clearly_leaves_the_topic(seed_retriever):
    history = [Turn("user", "what does the vmo do"), Turn("assistant", "...")]
    # alone, "what do the other ones do then" is nearer the off-topic anchors than the topic
    assert seed_retriever.prepare_query("what do the other ones do then", history) == "what do the other ones do then"
    assert (seed_retriever.prepare_query("what do the other ones do then", history, in_context=True)
            == "what does the vmo do what do the other ones do then what do the other ones do then")
    assert seed_retriever.prepare_query("tell me a joke then", history, in_context=True) == "tell me a joke then"
    assert (seed_retriever.prepare_query("whats the capital of australia", history, in_context=True)
            == "whats the capital of australia")


@pytest.mark.slow
@pytest.mark.parametrize("question, words", [
    ("kicking a ball is too much for me at the moment, what instead", "tolerate kicking"),
    ("what if a weak vmo is left alone for years", "unless vmo weakness is dealt with"),
    ("in girls where does the kneecap end up sitting", "rides high"),
    ("how much swelling before the vmo switches off", "shut down the vmo"),
    ("should i train the end of straightening my leg", "30 degrees of the knee extension"),
])
def test_patients_words_find_the_passage_in_the_collections_words(seed_retriever, question, words):
    assert words in seed_retriever.search(question, k=1)[0].chunk.text.lower()


@pytest.mark.slow
def test_a_follow_ups_passages_are_ranked_by_what_it_newly_asks(seed_retriever, real_embedder):
    history = [Turn("user", "whats the best exercise for the vmo"), Turn("assistant", "...")]
    question = "what if that hurts too much"
    query = seed_retriever.prepare_query(question, history)
    hits = seed_retriever.search_prepared(query, k=3, question=question)
    assert "tolerate kicking" in hits[0].chunk.text  # not the kicking passage the first turn asked for
    # the scores the guardrails read stay those of the whole query
    plain = seed_retriever.search_prepared(query, k=12)
    assert {h.chunk.chunk_id: round(h.dense_score, 6) for h in hits} == {
        h.chunk.chunk_id: round(h.dense_score, 6) for h in plain if h.chunk.chunk_id in {x.chunk.chunk_id for x in hits}}


@pytest.mark.parametrize("text, expected", [
    ("my nee cap hurts on the stairs", "my kneecap hurts on the stairs"),
    ("whats the q angel of the nee", "whats the q angle of the knee"),
    ("how far do i bend my nees on the wal slids", "how far do i bend my knees on the wall slides"),
    ("my guardian angel says gout is no knee thing", "my guardian angel says gout is no knee thing"),  # real words alone stay
    ("Nee pain", "knee pain"),
    ("why only the last 30° of straightening", "why only the last 30 degrees of straightening"),
    ("bend to 45 º or 45deg", "bend to 45 degrees or 45 degrees"),
    ("a 55-degree angle, not 55 degs", "a 55-degree angle, not 55 degrees"),
])
def test_listed_misspellings_are_corrected_short_and_real_words_included(text, expected):
    from assistant.retrieval import respell

    assert respell(text) == expected


def test_a_bad_misspellings_file_is_a_clear_error(tmp_path):
    from assistant.retrieval import load_misspellings

    path = tmp_path / "misspellings.yaml"
    path.write_text("knee: nee\n", encoding="utf-8")
    with pytest.raises(ValueError, match="needs a list of misspellings"):
        load_misspellings(str(path))


def test_a_lay_phrase_inside_a_longer_one_is_not_counted_again():
    # "inner quad" is the VMO: the words of "inner" (the inside) and "quad"
    # (the whole quadriceps) would pull the anatomy passage up as well.
    expanded = expand_lay_terms("why is my inner quad weak").split()
    assert "VMO" in expanded and "quadriceps" not in expanded and "medially" not in expanded
    # on its own each word still brings its terms
    assert "quadriceps" in expand_lay_terms("my quad is tight").split()
    assert "medially" in expand_lay_terms("pain on the inner side").split()
    # the outer quad is the vastus lateralis, not the whole quadriceps outside
    outer = expand_lay_terms("my outer quad is much stronger than the inside one").split()
    assert "lateralis" in outer and "quadriceps" not in outer


@pytest.mark.slow
def test_a_message_that_says_it_changes_the_subject_is_read_on_its_own(seed_retriever):
    history = [Turn("user", "why does my knee crack when i squat"), Turn("assistant", "...")]
    # the earlier turn is left out, and so is the announcement
    assert seed_retriever.prepare_query("right, different thing: what about the brace", history) == "what about the brace"
    # "it" points back to the earlier turn, so the earlier turn still counts
    assert "squat" in seed_retriever.prepare_query("unrelated, but does taping help it", history)
    # without history there is nothing to leave
    assert seed_retriever.prepare_query("different thing: what about the brace") == "different thing: what about the brace"


@pytest.mark.slow
def test_a_change_of_subject_the_collection_answers_well_is_answered(seed_assistant):
    history = [{"role": "user", "content": "how much fluid switches the vmo off"}, {"role": "assistant", "content": "..."}]
    reply = seed_assistant.respond("kinda unrelated, would kicking a football about be good for it?", history)
    assert reply.decision.value == "answer", reply.reason
    off = seed_assistant.respond("unrelated question, how do I make a sourdough starter", history)
    assert off.decision.value == "out_of_scope", off.reason
