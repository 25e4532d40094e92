"""Query adapter: the fit, its place in the index, and what it changes at query time."""

from __future__ import annotations

import json

import numpy as np
import pytest

from assistant.adapter import MIN_PAIRS, adapt, fit, fit_for_index, question_files, sources_hash
from assistant.index import build_index, index_status, load_index
from assistant.retrieval import Retriever
from assistant.settings import Settings


def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _synthetic(seed=0, n=200, dim=16):
    """Questions that sit nearer a wrong target (the next one) than the one
    that answers them, the same way for every question of a target: the
    lay-words-versus-article-words gap a linear map can close."""
    rng = np.random.default_rng(seed)
    targets = _unit(rng.normal(size=(6, dim)))
    answer = rng.integers(0, 6, size=n)
    questions = _unit(targets[answer] + 1.2 * targets[(answer + 1) % 6] + 0.2 * rng.normal(size=(n, dim)))
    return questions, [[int(a)] for a in answer], targets


def _top1(questions, targets, positives, matrix=None):
    q = questions if matrix is None else np.vstack([adapt(matrix, v) for v in questions])
    best = (q @ targets.T).argmax(1)
    return float(np.mean([b in p for b, p in zip(best, positives)]))


def test_fit_ranks_answering_targets_first_more_often_on_questions_it_did_not_see():
    questions, positives, targets = _synthetic()
    train, test = slice(0, 150), slice(150, 200)
    matrix, before, after = fit(questions[train], positives[train], np.zeros((0, 16)), targets)
    assert after < before
    assert _top1(questions[test], targets, positives[test]) < 0.3  # the model's own vectors: mostly wrong
    assert _top1(questions[test], targets, positives[test], matrix) > 0.8


def test_fit_keeps_other_questions_near_their_own_vectors():
    questions, positives, targets = _synthetic()
    others = _unit(np.random.default_rng(1).normal(size=(100, 16)))
    loose, _, _ = fit(questions, positives, np.zeros((0, 16)), targets, stay_weight=0.0)
    kept, _, _ = fit(questions, positives, others, targets, stay_weight=5.0)

    def drift(m):
        return float(np.mean([1 - adapt(m, v) @ v for v in others]))

    assert drift(kept) < drift(loose)


def test_fit_is_deterministic_and_checks_its_arguments():
    questions, positives, targets = _synthetic()
    a, _, _ = fit(questions, positives, np.zeros((0, 16)), targets, iterations=20)
    b, _, _ = fit(questions, positives, np.zeros((0, 16)), targets, iterations=20)
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="3 questions but 2 positive lists"):
        fit(questions[:3], positives[:2], np.zeros((0, 16)), targets)


def test_sampled_negatives_keep_questions_from_moving_towards_them():
    """Passages answering no question are ranked against, a fresh sample of
    them each step: a map fitted with them puts fewer questions nearest one
    than a map fitted without, and the same seed gives the same map."""
    questions, positives, targets = _synthetic()
    rng = np.random.default_rng(2)
    # unrelated passages lying where the map would otherwise move the questions
    negatives = _unit(targets[[p[0] for p in positives[:120]]] + 0.6 * rng.normal(size=(120, 16)))

    def lost_to_negatives(matrix):
        q = np.vstack([adapt(matrix, v) for v in questions])
        return float(np.mean((q @ negatives.T).max(1) > np.array([q[i] @ targets[p[0]] for i, p in enumerate(positives)])))

    without, _, _ = fit(questions, positives, np.zeros((0, 16)), targets)
    with_negatives, _, _ = fit(questions, positives, np.zeros((0, 16)), targets, negatives=negatives,
                               negatives_per_step=32)
    assert lost_to_negatives(with_negatives) < lost_to_negatives(without)
    again, _, _ = fit(questions, positives, np.zeros((0, 16)), targets, negatives=negatives, negatives_per_step=32)
    assert np.array_equal(with_negatives, again)


def test_adapt_returns_a_unit_vector_and_leaves_a_zero_map_alone():
    v = _unit(np.arange(1.0, 5.0))
    assert np.isclose(np.linalg.norm(adapt(np.diag([1.0, 2, 3, 4]), v)), 1.0)
    assert np.array_equal(adapt(np.zeros((4, 4)), v), v)


# -- in the index

ARTICLE = ("Kneecap pain\n\nThe VMO pulls the kneecap inwards. Taping can re-align the kneecap. "
           "Wall slides with a ball between the knees help fire the VMO. "
           "Swelling of 20 cc shuts down the VMO.")


def _questions(path, n, evidence="Wall slides with a ball"):
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"q{i}", "question": f"what exercise helps number {i}",
                                "expect": "answer", "evidence": [evidence]}) + "\n")
        f.write(json.dumps({"id": "off", "question": "best pizza in town", "expect": "out_of_scope"}) + "\n")


@pytest.fixture
def labelled(tmp_path, hash_embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "knee.txt").write_text(ARTICLE, encoding="utf-8")
    sets = tmp_path / "sets"
    sets.mkdir()
    _questions(sets / "heldout-a.jsonl", MIN_PAIRS)
    s = Settings(index_dir=str(tmp_path / "index"), corpus_dir=str(corpus), model=hash_embedder.model_name,
                 adapter_questions=str(sets / "heldout-*.jsonl"), chunk_max_tokens=12,
                 chunk_overlap_sentences=0)
    return s, sets


def test_build_fits_the_adapter_and_records_what_it_learned_from(labelled, hash_embedder):
    s, sets = labelled
    report = build_index(s, hash_embedder)
    assert report.adapter_pairs == MIN_PAIRS
    idx = load_index(s.index_dir)
    assert idx.adapter.shape == (hash_embedder.dimension, hash_embedder.dimension)
    info = idx.manifest["adapter"]
    assert (info["pairs"], info["others"]) == (MIN_PAIRS, 1)
    assert info["sources"] == [str(sets / "heldout-a.jsonl")]
    assert idx.manifest["adapter_sources"] == sources_hash(question_files(s.adapter_questions))
    assert (s.index_path / "cache").is_dir()  # the questions' vectors, for the next build


def test_too_few_answerable_questions_fit_no_adapter(labelled, hash_embedder):
    s, sets = labelled
    _questions(sets / "heldout-a.jsonl", MIN_PAIRS - 1)
    assert build_index(s, hash_embedder).adapter_pairs == 0
    assert load_index(s.index_dir).adapter is None
    # questions whose evidence is in no passage teach it nothing either
    _questions(sets / "heldout-a.jsonl", 50, evidence="meniscus tears heal slowly")
    assert build_index(s, hash_embedder).adapter_pairs == 0


def test_changed_questions_make_the_index_stale_and_update_refits(labelled, hash_embedder):
    s, sets = labelled
    build_index(s, hash_embedder)
    assert not index_status(s).stale
    _questions(sets / "heldout-b.jsonl", 5)
    status = index_status(s)
    assert status.stale and any("query adapter" in c for c in status.settings_changed)
    report = build_index(s, hash_embedder, incremental=True)
    assert report.note != "already up to date: nothing to do"
    assert (report.embedded_chunks, report.adapter_pairs) == (0, MIN_PAIRS + 5)
    assert not index_status(s).stale


def test_switched_off_no_adapter_is_fitted_or_used(labelled, hash_embedder):
    s, _ = labelled
    build_index(s, hash_embedder)
    idx = load_index(s.index_dir)
    off = s.replace(query_adapter=False)
    assert index_status(off).stale  # built with one; this setting wants none
    on_hits = Retriever(idx, hash_embedder, s).search("what exercise helps", mode="dense")
    off_hits = Retriever(idx, hash_embedder, off).search("what exercise helps", mode="dense")
    # the map changes the ranking scores, never the cosines the guardrails read
    assert [h.score for h in on_hits] != [h.score for h in off_hits]
    assert sorted(h.dense_score for h in on_hits) == pytest.approx(sorted(h.dense_score for h in off_hits))
    build_index(off, hash_embedder)
    assert load_index(s.index_dir).adapter is None and not index_status(off).stale


def test_an_adapter_of_the_wrong_shape_is_a_clear_error(labelled, hash_embedder):
    from assistant.errors import IndexCorruptError
    from assistant.index import current_generation

    s, _ = labelled
    build_index(s, hash_embedder)
    gen = current_generation(s.index_path)
    np.save(gen / "adapter.npy", np.eye(3, dtype=np.float32))
    with pytest.raises(IndexCorruptError):  # its checksum no longer matches the manifest
        load_index(s.index_dir)
    # the same file with its checksum brought up to date: the shape is what is wrong
    from assistant.index import _sha256

    manifest = json.loads((gen / "manifest.json").read_text())
    manifest["files"]["adapter.npy"] = {"bytes": (gen / "adapter.npy").stat().st_size,
                                        "sha256": _sha256(gen / "adapter.npy")}
    (gen / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexCorruptError, match="adapter.npy has the wrong shape"):
        load_index(s.index_dir)


def test_fit_for_index_without_questions_or_passages_fits_nothing(hash_embedder):
    assert fit_for_index([], [], np.zeros((0, 4)), (np.zeros((0, 4)), np.zeros((0, 3))), hash_embedder) == (None, None)


def test_the_seed_index_has_an_adapter_learned_from_the_committed_sets(seed_assistant):
    idx = seed_assistant.index
    assert idx.adapter is not None and idx.manifest["adapter"]["pairs"] > 1000
    assert idx.manifest["adapter"]["loss_after"] < idx.manifest["adapter"]["loss_before"]
