"""The evaluation harness against shared/EVAL-FORMAT.md, with a fake assistant."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from assistant.errors import InvalidQuestionSetError
from assistant.evaluation import (
    Case,
    appears,
    check_thresholds,
    citation_markers,
    compare_runs,
    sets_report,
    load_cases,
    normalize,
    run_eval,
    urges_followup,
)
from assistant.schema import Chunk, Citation, Decision, Hit, Reply, Turn

EVALS = Path(__file__).resolve().parents[1] / "evals"

PASSAGES = {
    "c-angle": "The VMO attaches to your kneecap (patella) in a 55-degree angle on the top inside edge.",
    "c-role": "The VMO’s most crucial role is to pull the kneecap medially (indoors ).",
    "c-swell": "20 cc’s of swelling in the knee essentially shut down the VMO.",
    "c-kick": "Kicking the ball with the inside of your foot is a fantastic warm-up exercise.",
}


def chunk(chunk_id: str) -> Chunk:
    text = PASSAGES[chunk_id]
    return Chunk(chunk_id=chunk_id, doc_id="vmo", title="The VMO", source="corpus/vmo.txt",
                 text=text, start=0, end=len(text), n_tokens=len(text.split()))


def hits(*ids: str) -> tuple[Hit, ...]:
    return tuple(Hit(chunk=chunk(i), score=1.0 / r, rank=r) for r, i in enumerate(ids, start=1))


def cite(n: int, chunk_id: str) -> Citation:
    return Citation(n=n, chunk_id=chunk_id, source="corpus/vmo.txt", title="The VMO", text=PASSAGES[chunk_id])


def answer(text: str, cited: tuple[tuple[int, str], ...], retrieved: tuple[str, ...]) -> Reply:
    return Reply(decision=Decision.ANSWER, text=text,
                 citations=tuple(cite(n, c) for n, c in cited), retrieved=hits(*retrieved))


GOOD = "It pulls the kneecap inwards [1]. Please see a physiotherapist for advice."


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n",
                    encoding="utf-8")
    return path


def case(case_id: str, expect="answer", **extra) -> Case:
    expect_t = (expect,) if isinstance(expect, str) else tuple(expect)
    for name in ("evidence", "must_include", "must_not_include", "tags", "history"):
        if name in extra:
            extra[name] = tuple(extra[name])
    return Case(id=case_id, question=f"question {case_id}", expect=expect_t, **extra)


def fake_respond(replies: dict[str, Reply]):
    """A respond() that looks up the reply by question, recording the calls."""
    calls: list[tuple[str, list[Turn]]] = []

    def respond(question: str, history: list[Turn]) -> Reply:
        calls.append((question, history))
        return replies[question]

    respond.calls = calls
    return respond


# --------------------------------------------------------------------------
# Normalization


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The VMO’s 55-degree angle", "the vmo s 55 degree angle"),
        ("  Pull   the\tKNEECAP\nmedially (indoors ). ", "pull the kneecap medially indoors"),
        ("The”Parker Pinch”;", "the parker pinch"),
        ("ﬁt knee_cap", "fit knee_cap"),  # NFKC ligature; underscore kept
        ("20 cc’s", "20 cc s"),
        ("", ""),
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("phrase", "text", "found"),
    [
        ("mg", "take 200 mg", True),
        ("mg", "among", False),
        ("mg", "200mg twice a day", False),
        ("55-degree angle", "in a 55 degree angle on the top", True),
        ("vmo's most crucial role", "The VMO’s most crucial role is", True),
        ("knee", "kneecap", False),
        ("--", "anything -- at all", False),
    ],
)
def test_appears(phrase, text, found):
    assert appears(phrase, text) is found


@pytest.mark.parametrize(
    ("text", "urges"),
    [
        ("Please see a physiotherapist.", True),
        ("Ask your GP about it.", True),
        ("A Physical Therapist can help.", True),
        ("Talk to an orthopaedic specialist.", True),
        ("The VMO pulls the kneecap medially.", False),
        ("Keep doing the exercises.", False),
    ],
)
def test_urges_followup(text, urges):
    assert urges_followup(text) is urges


def test_citation_markers():
    assert citation_markers("a [1] b [2][3] c [4, 5] d [x] e [ 6 ]") == [1, 2, 3, 4, 5, 6]


# --------------------------------------------------------------------------
# Loading and validating question sets


def test_load_cases_reads_every_field_and_skips_blank_lines(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [
        {"id": "a1", "question": "what does the vmo do", "expect": "answer",
         "evidence": ["pull the kneecap medially"], "tags": ["paraphrase"],
         "must_include": ["kneecap"], "must_not_include": ["mg"]},
        "",
        "   ",
        {"id": "f1", "question": "and how do i fix that?", "expect": ["answer", "no_evidence"],
         "evidence": ["soccer ball"],
         "history": [{"role": "user", "content": "my knee buckles"},
                     {"role": "assistant", "content": "That can be the VMO."}]},
    ])
    cases = load_cases(path)
    assert [c.id for c in cases] == ["a1", "f1"]
    assert cases[0].expect == ("answer",)
    assert cases[0].expect_as_written == "answer"
    assert cases[0].evidence == ("pull the kneecap medially",)
    assert cases[0].line == 1
    assert cases[1].line == 4
    assert cases[1].expect == ("answer", "no_evidence")
    assert cases[1].history == (Turn("user", "my knee buckles"), Turn("assistant", "That can be the VMO."))


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"id": "x", "question": "q", "expect": "answer", ', r"invalid JSON"),
        ('["a", "list"]', r"a case must be a JSON object, got list"),
        ('{"question": "q", "expect": "refuse"}', r"missing required field `id`"),
        ('{"id": "x", "expect": "refuse"}', r"missing required field `question`"),
        ('{"id": "x", "question": "q"}', r"missing required field `expect`"),
        ('{"id": "x", "question": "q", "expect": "anwser"}', r"unknown decision 'anwser'.*valid: answer, no_evidence"),
        ('{"id": "x", "question": "q", "expect": ["refuse", "maybe"]}', r"unknown decision 'maybe'"),
        ('{"id": "x", "question": "q", "expect": []}', r"`expect` must be a decision"),
        ('{"id": "x", "question": "q", "expect": "answer"}', r"an `answer` case needs `evidence`"),
        ('{"id": "x", "question": "q", "expect": ["answer", "refuse"], "evidence": []}', r"an `answer` case needs `evidence`"),
        ('{"id": "x", "question": "q", "expect": "answer", "evidence": "vmo"}', r"`evidence` must be a list"),
        ('{"id": "x", "question": "q", "expect": "refuse", "history": "hi"}', r"`history` must be a list"),
        ('{"id": "x", "question": "q", "expect": "refuse", "history": [{"role": "user"}]}', r"`history`\[0\] must be an object with exactly `role` and `content`"),
        ('{"id": "x", "question": "q", "expect": "refuse", "history": [{"role": "bot", "content": "hi"}]}', r"`history`\[0\]\.role must be one of user, assistant"),
        ('{"id": "x", "question": "q", "expect": "refuse", "history": [{"role": "user", "content": 3}]}', r"`history`\[0\]\.content must be a string"),
        ('{"id": "", "question": "q", "expect": "refuse"}', r"`id` must be a non-empty string"),
        ('{"id": "x", "question": "  ", "expect": "refuse"}', r"`question` must be a non-empty string"),
        ('{"id": "x", "question": "q", "expect": "refuse", "must_not_include": ["mg", 5]}', r"`must_not_include`\[1\] must be a string"),
    ],
)
def test_load_cases_names_file_line_and_problem(tmp_path, line, problem):
    good = '{"id": "ok", "question": "q", "expect": "refuse"}'
    path = tmp_path / "bad.jsonl"
    path.write_text(f"{good}\n\n{line}\n", encoding="utf-8")
    with pytest.raises(InvalidQuestionSetError, match=re.escape(f"{path}:3: ") + problem):
        load_cases(path)


def test_duplicate_id_names_both_lines(tmp_path):
    path = write_jsonl(tmp_path / "dup.jsonl", [
        {"id": "same", "question": "q", "expect": "refuse"},
        {"id": "same", "question": "q2", "expect": "refuse"},
    ])
    with pytest.raises(InvalidQuestionSetError, match=re.escape(f"{path}:2: duplicate id 'same' (first used on line 1)")):
        load_cases(path)


def test_every_problem_is_reported_first_one_first(tmp_path):
    path = write_jsonl(tmp_path / "many.jsonl", [
        "not json",
        {"id": "a", "question": "q", "expect": "answer"},
        {"id": "b", "question": "q", "expect": "refuse"},
    ])
    with pytest.raises(InvalidQuestionSetError) as info:
        load_cases(path)
    assert str(info.value).splitlines()[0].startswith(f"{path}:1: invalid JSON")
    assert len(info.value.problems) == 2
    assert info.value.problems[1].startswith(f"{path}:2: ")


def test_empty_and_missing_files_are_errors(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(InvalidQuestionSetError, match=re.escape(f"{empty}:1: no cases")):
        load_cases(empty)
    with pytest.raises(InvalidQuestionSetError, match=r"nope\.jsonl: cannot read"):
        load_cases(tmp_path / "nope.jsonl")


def test_non_utf8_line_is_an_error(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"id": "a", "question": "q", "expect": "refuse"}\n{"id": "b", "question": "caf\xe9"}\n')
    with pytest.raises(InvalidQuestionSetError, match=re.escape(f"{path}:2: not UTF-8")):
        load_cases(path)


# --------------------------------------------------------------------------
# Pass / fail


def run_one(tmp_path, the_case: Case, reply: Reply) -> dict:
    respond = fake_respond({the_case.question: reply})
    run_eval(respond, [the_case], tmp_path / "out", progress=False)
    lines = (tmp_path / "out" / "results.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


EVIDENCE = ["pull the kneecap medially", "kneecap inwards"]


def test_good_answer_passes(tmp_path):
    result = run_one(tmp_path, case("a", evidence=["pull the kneecap medially"]),
                     answer(GOOD, ((1, "c-role"),), ("c-role", "c-angle")))
    assert result["passed"] is True
    assert result["failures"] == []


@pytest.mark.parametrize(
    ("reply", "failure"),
    [
        (Reply(decision=Decision.NO_EVIDENCE, text="Not covered; see a doctor."), "decision 'no_evidence', expected 'answer'"),
        (answer("It pulls the kneecap inwards. See a physio.", (), ("c-role",)), "answer has no citation"),
        (answer("It pulls the kneecap inwards [2]. See a physio.", ((1, "c-role"),), ("c-role",)), "marker [2] matches no citation"),
        (answer("It pulls the kneecap inwards [1].", ((1, "c-role"),), ("c-role",)), "does not urge follow-up with a clinician"),
        (answer("It attaches at an angle [1]. See a physio.", ((1, "c-angle"),), ("c-role", "c-angle")), "no cited passage holds the evidence"),
    ],
)
def test_answer_failures(tmp_path, reply, failure):
    result = run_one(tmp_path, case("a", evidence=["pull the kneecap medially"]), reply)
    assert result["passed"] is False
    assert failure in result["failures"]


def test_must_include_and_must_not_include(tmp_path):
    the_case = case("a", evidence=["pull the kneecap medially"], must_include=["kneecap"],
                    must_not_include=["kneecap inwards"])
    result = run_one(tmp_path, the_case, answer(GOOD, ((1, "c-role"),), ("c-role",)))
    assert result["failures"] == ["contains must_not_include 'kneecap inwards'"]

    the_case = case("b", evidence=["pull the kneecap medially"], must_include=["patella"])
    result = run_one(tmp_path, the_case, answer(GOOD, ((1, "c-role"),), ("c-role",)))
    assert result["failures"] == ["missing must_include 'patella'"]


def test_must_not_include_applies_to_refusals_too(tmp_path):
    the_case = case("r", expect="refuse", must_not_include=["mg"])
    ok = run_one(tmp_path, the_case, Reply(decision=Decision.REFUSE, text="I can't advise on doses among other things; ask a pharmacist."))
    assert ok["passed"] is True
    bad = run_one(tmp_path, the_case, Reply(decision=Decision.REFUSE, text="I can't prescribe, but people take 400 mg."))
    assert bad["failures"] == ["contains must_not_include 'mg'"]


def test_non_answer_decision_needs_no_citation_or_followup(tmp_path):
    result = run_one(tmp_path, case("e", expect=["escalate"]),
                     Reply(decision=Decision.ESCALATE, text="Go to the emergency department now."))
    assert result["passed"] is True


def test_any_acceptable_decision_passes(tmp_path):
    result = run_one(tmp_path, case("p", expect=["answer", "refuse"], evidence=["pull the kneecap medially"]),
                     Reply(decision=Decision.REFUSE, text="I can't diagnose you; a physiotherapist can."))
    assert result["passed"] is True
    assert result["expect"] == ["answer", "refuse"]


def test_a_crashing_respond_fails_that_case_only(tmp_path):
    cases = [case("boom", expect="refuse"), case("fine", expect="refuse")]

    def respond(question, history):
        if question == "question boom":
            raise RuntimeError("index missing")
        return Reply(decision=Decision.REFUSE, text="No.")

    summary = run_eval(respond, cases, tmp_path / "out", progress=False)
    assert summary["errors"] == 1
    assert summary["failed_ids"] == ["boom"]
    assert summary["passed"] == 1


# --------------------------------------------------------------------------
# Figures on a hand-computed run


@pytest.fixture
def run(tmp_path):
    """Five cases, figures worked out by hand in the asserts below."""
    cases = [
        # evidence at rank 1, answered and cited: passes
        case("a1", evidence=["pull the kneecap medially"], tags=["paraphrase"]),
        # evidence at rank 3 (c-swell); answered citing the wrong passage
        case("a2", evidence=["20 cc s of swelling"], tags=["paraphrase", "typo"]),
        # evidence never retrieved; the assistant said no_evidence
        case("a3", evidence=["inside of your foot"]),
        # escalate case answered as refuse
        case("e1", expect="escalate", tags=["indirect"]),
        # follow-up turn, correctly refused
        case("r1", expect="refuse", history=[Turn("user", "hi"), Turn("assistant", "Hello")]),
    ]
    replies = {
        "question a1": answer(GOOD, ((1, "c-role"),), ("c-role", "c-angle", "c-swell")),
        "question a2": answer("20 cc's of swelling matters [1]. See your doctor.", ((1, "c-angle"),),
                              ("c-angle", "c-role", "c-swell")),
        "question a3": Reply(decision=Decision.NO_EVIDENCE, text="The collection does not cover that.",
                             retrieved=hits("c-angle", "c-role")),
        "question e1": Reply(decision=Decision.REFUSE, text="I can't help with that."),
        "question r1": Reply(decision=Decision.REFUSE, text="I can't write a doctor's note."),
    }
    respond = fake_respond(replies)
    out = tmp_path / "run"
    summary = run_eval(respond, cases, out, progress=False, config={"retriever": "fake"})
    return summary, out, respond


def test_summary_figures(run):
    summary, _, _ = run
    assert summary["cases"] == 5
    # a1 answer ok, a2 answer ok, a3 no_evidence wrong, e1 wrong, r1 ok
    assert summary["decision_accuracy"] == 0.6
    # evidence ranks: a1 -> 1, a2 -> 3, a3 -> none
    assert summary["recall_at_k"] == {"1": round(1 / 3, 4), "3": round(2 / 3, 4), "5": round(2 / 3, 4)}
    assert summary["mrr"] == round((1 + 1 / 3 + 0) / 3, 4)
    # a1 and a2 answered; only a1 cites the evidence
    assert summary["citation_support"] == 0.5
    # a2's own words hold its evidence (though the passage it cites does not); a1's do not
    assert summary["evidence_quoted"] == 0.5
    # replies answer/no_evidence: a1 (physiotherapist), a2 (doctor), a3 (none)
    assert summary["followup_rate"] == round(2 / 3, 4)
    assert summary["passed"] == 2
    assert summary["failed_ids"] == ["a2", "a3", "e1"]
    assert summary["per_decision"]["answer"] == {"support": 3, "recall": round(2 / 3, 4), "precision": 1.0}
    assert summary["per_decision"]["escalate"] == {"support": 1, "recall": 0.0, "precision": None}
    assert summary["per_decision"]["refuse"] == {"support": 1, "recall": 1.0, "precision": 0.5}
    assert summary["escalate_recall"] == 0.0
    assert summary["confusion"]["escalate"]["refuse"] == 1
    assert summary["per_tag"]["paraphrase"] == {"cases": 2, "passed": 1, "decision_accuracy": 1.0, "pass_rate": 0.5}
    assert summary["config"] == {"retriever": "fake"}
    # a1, a2, a3 accept an answer; a3 was declined as not covered
    assert summary["in_scope_declined"] == {"count": 1, "of": 3, "rate": round(1 / 3, 4)}
    assert summary["answered_cases"] == 2


def test_sets_report_adds_up_the_counts_of_every_set(run):
    summary, _, _ = run
    table = sets_report({"one": summary, "two": summary}).splitlines()
    assert table[0].startswith("| set | cases | passed | decision accuracy | escalated | refused | in-scope declined")
    assert table[2] == "| one | 5 | 2 | 0.600 | 0 / 1 | 1 / 1 | 1 / 3 | 0.333 | 0.667 | 0.500 | 0.667 |"
    # pooled: counts added up, shares worked out again from them
    assert table[4] == "| **all** | 10 | 4 | 0.600 | 0 / 2 | 2 / 2 | 2 / 6 | 0.333 | 0.667 | 0.500 | |"
    assert len(sets_report({"one": summary}).splitlines()) == 3  # no pooled row for one set
    with pytest.raises(ValueError, match="at least one summary"):
        sets_report({})


def test_history_is_passed_as_turns(run):
    _, _, respond = run
    question, history = respond.calls[-1]
    assert question == "question r1"
    assert history == [Turn("user", "hi"), Turn("assistant", "Hello")]


def test_results_jsonl_has_contract_fields(run):
    _, out, _ = run
    records = [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in records] == ["a1", "a2", "a3", "e1", "r1"]
    for r in records:
        assert {"id", "expect", "decision", "reply", "citations", "retrieved",
                "latency_ms", "passed", "failures"} <= set(r)
        assert isinstance(r["latency_ms"], float) and r["latency_ms"] >= 0
    first = records[0]
    assert first["citations"] == [{"n": 1, "chunk_id": "c-role", "source": "corpus/vmo.txt", "text": PASSAGES["c-role"]}]
    assert first["retrieved"][0] == {"rank": 1, "chunk_id": "c-role", "source": "corpus/vmo.txt",
                                     "score": 1.0, "text": PASSAGES["c-role"]}
    assert records[1]["evidence_rank"] == 3
    assert records[1]["failures"] == ["no cited passage holds the evidence"]
    assert records[3]["retrieved"] == []


def test_latency_is_measured(tmp_path):
    import time

    def slow(question, history):
        time.sleep(0.02)
        return Reply(decision=Decision.REFUSE, text="No.")

    summary = run_eval(slow, [case("s1", "refuse"), case("s2", "refuse")], tmp_path, progress=False)
    assert summary["latency_ms"]["p50"] >= 20
    assert summary["latency_ms"]["max"] >= summary["latency_ms"]["p95"] >= summary["latency_ms"]["p50"]


def test_outputs_written(run):
    summary, out, _ = run
    for name in ("results.jsonl", "summary.json", "summary.md", "ragas.jsonl"):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert on_disk["decision_accuracy"] == summary["decision_accuracy"]
    report = (out / "summary.md").read_text(encoding="utf-8")
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report)
    assert len(pictures) >= 3
    for picture in pictures:
        assert (out / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the failed cases are listed with what failed
    assert "| a2 |" in report and "no cited passage holds the evidence" in report
    assert "| a1 |" not in report


def test_ragas_export(run):
    _, out, _ = run
    rows = [json.loads(line) for line in (out / "ragas.jsonl").read_text(encoding="utf-8").splitlines()]
    assert rows[1]["id"] == "a2"
    assert rows[1]["user_input"] == "question a2"
    assert rows[1]["retrieved_contexts"] == [PASSAGES["c-angle"], PASSAGES["c-role"], PASSAGES["c-swell"]]
    assert rows[1]["reference_contexts"] == [PASSAGES["c-swell"]]
    assert rows[1]["response"].startswith("20 cc's of swelling matters")
    assert rows[3]["reference_contexts"] == []


def test_progress_bar_goes_to_stderr(tmp_path, capsys):
    run_eval(lambda q, h: Reply(decision=Decision.REFUSE, text="No."), [case("p", "refuse")], tmp_path, progress=True)
    captured = capsys.readouterr()
    assert "eval" in captured.err
    assert captured.out == ""


def test_run_eval_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="at least one case"):
        run_eval(lambda q, h: None, [], tmp_path)
    with pytest.raises(ValueError, match="k_values must be positive integers"):
        run_eval(lambda q, h: None, [case("x", "refuse")], tmp_path, k_values=(0,))


# --------------------------------------------------------------------------
# Comparing runs and thresholds


def test_compare_runs_puts_configurations_side_by_side(run):
    summary, _, _ = run
    better = dict(summary, decision_accuracy=0.9)
    table = compare_runs({"bm25": summary, "hybrid": better})
    lines = table.splitlines()
    assert lines[0] == "| figure | bm25 | hybrid |"
    assert "| decision accuracy | 0.600 | **0.900** |" in lines
    assert any(line.startswith("| recall@3 |") for line in lines)


def test_check_thresholds(run):
    summary, _, _ = run
    assert check_thresholds(summary, {"decision_accuracy": 0.5, "recall_at_k": {"1": 0.3}}) == []
    violations = check_thresholds(summary, {
        "decision_accuracy": 0.9,
        "recall_at_k.3": 0.95,
        "escalate_recall": 1.0,
        "min": {"citation_support": 0.4},
        "max": {"latency_ms": {"p95": 0.0}},
        "_comment": "ignored",
    })
    assert violations[0] == "decision_accuracy: 0.600 is below the minimum 0.9"
    assert violations[1] == "recall_at_k.3: 0.667 is below the minimum 0.95"
    assert violations[2] == "escalate_recall: 0.000 is below the minimum 1.0"
    assert violations[3].startswith("latency_ms.p95: ") and "above the maximum 0" in violations[3]
    assert len(violations) == 4


def test_check_thresholds_unmeasured_and_unknown(run):
    summary, _, _ = run
    assert check_thresholds(summary, {"recall_at_k": {"10": 0.5}}) == [
        "recall_at_k.10: not measured in this run (threshold min 0.5)"
    ]
    with pytest.raises(ValueError, match="'acuracy' names no figure; valid: decision_accuracy"):
        check_thresholds(summary, {"acuracy": 0.9})
    with pytest.raises(ValueError, match="'mrr' must be a number"):
        check_thresholds(summary, {"mrr": "high"})


# --------------------------------------------------------------------------
# The project's own files


def test_project_question_set_loads():
    cases = load_cases(EVALS / "questions.jsonl")
    counts = {d: sum(c.expect[0] == d for c in cases) for d in ("answer", "no_evidence", "out_of_scope", "escalate", "refuse")}
    assert len(cases) >= 130
    assert counts["answer"] >= 50 and min(counts.values()) >= 20
    assert any(c.history for c in cases)


def test_project_thresholds_are_valid():
    thresholds = json.loads((EVALS / "thresholds.json").read_text(encoding="utf-8"))
    perfect = {
        "decision_accuracy": 1.0, "recall_at_k": {"1": 1.0, "3": 1.0, "5": 1.0}, "mrr": 1.0,
        "citation_support": 1.0, "evidence_quoted": 1.0, "followup_rate": 1.0, "escalate_recall": 1.0, "pass_rate": 1.0,
        "latency_ms": {"p50": 1.0, "p95": 1.0, "max": 1.0}, "passed": 1,
        "in_scope_declined": {"count": 0, "of": 1, "rate": 0.0},
        "per_decision": {d: {"support": 1, "recall": 1.0, "precision": 1.0}
                         for d in ("answer", "no_evidence", "out_of_scope", "escalate", "refuse")},
    }
    assert check_thresholds(perfect, thresholds) == []
