"""Evaluation: run a question set through the assistant and score every turn.

This module implements ``shared/EVAL-FORMAT.md`` (the fixed contract for
question sets and run outputs). What it guarantees:

* :func:`load_cases` accepts exactly the contract's JSON Lines format and
  rejects anything else *before* a single question is asked, with an
  :class:`~assistant.errors.InvalidQuestionSetError` whose message names the
  file, the line and the problem (``"evals/q.jsonl:12: unknown decision
  'anwser'; valid: answer, no_evidence, ..."``). Every problem in the file is
  reported, one per line of the message, the first one first.
* :func:`run_eval` asks each question once, in input order, with its
  ``history``, times the whole turn, and writes into ``out_dir``:
  ``results.jsonl`` (one line per case, the contract's fields plus
  ``question``, ``reason``, ``tags``, ``evidence_rank``), ``summary.json``
  (the contract's figures plus ``config``, ``failed_ids``, ``per_tag``,
  ``confusion``), ``summary.md`` (a report with PNG pictures beside it) and
  ``ragas.jsonl`` (a RAGAS-style export for outside tools).
* Text is always compared after :func:`normalize`, and a phrase is found with
  :func:`appears` (word boundaries on normalized text), exactly as the
  contract defines them.
* A figure whose denominator is empty (e.g. ``citation_support`` when no
  ``answer`` case was answered) is ``null`` in JSON, never a made-up 0 or 1.

Everything here is plain functions over dataclasses; the only heavy import,
matplotlib, happens when the pictures are drawn.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .errors import InvalidQuestionSetError
from .schema import DECISIONS, Decision, Reply, Turn

__all__ = [
    "FOLLOWUP_TERMS",
    "Case",
    "normalize",
    "appears",
    "urges_followup",
    "citation_markers",
    "load_cases",
    "run_eval",
    "compare_runs",
    "sets_report",
    "check_thresholds",
]

#: Words and phrases that name a clinician. A reply "urges follow-up with a
#: clinician" (EVAL-FORMAT.md) when any of them :func:`appears` in it. Kept to
#: people a patient can book, so "see a doctor or physiotherapist" counts but
#: a bare "medical" or "health" does not. Plurals are listed because matching
#: is on whole words.
FOLLOWUP_TERMS: tuple[str, ...] = (
    "physiotherapist", "physiotherapists", "physio", "physios",
    "physical therapist", "physical therapists",
    "doctor", "doctors", "gp", "gps", "family doctor", "physician", "physicians",
    "clinician", "clinicians",
    "health professional", "health professionals",
    "healthcare professional", "healthcare professionals",
    "health care professional", "medical professional",
    "healthcare provider", "healthcare providers", "health care provider",
    "orthopaedic specialist", "orthopedic specialist",
    "orthopaedic surgeon", "orthopedic surgeon", "orthopaedist", "orthopedist",
    "sports medicine", "knee specialist", "surgeon",
    "physiatrist", "podiatrist", "nurse practitioner",
)

#: The fields a case may carry (others are ignored: the contract lets
#: projects add fields).
_REQUIRED = ("id", "question", "expect")
_ROLES = ("user", "assistant")

# "[1]", and also "[1, 2]" / "[1,2]" which some generators write.
_MARKER = re.compile(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]")


# --------------------------------------------------------------------------
# Text comparison (EVAL-FORMAT.md "Normalization")


@lru_cache(maxsize=4096)
def _kept(char: str) -> bool:
    # letter, digit, underscore or white space survive; all else -> space
    return char.isalpha() or char.isdigit() or char == "_" or char.isspace()


def normalize(text: str) -> str:
    """The contract's normalization: NFKC, lower case, every character that is
    not a letter, digit, underscore or white space replaced by a space, white
    space collapsed, trimmed.

    >>> normalize("The VMO’s 55-degree angle")
    'the vmo s 55 degree angle'
    """
    lowered = unicodedata.normalize("NFKC", text).lower()
    return " ".join("".join(c if _kept(c) else " " for c in lowered).split())


def appears(phrase: str, text: str) -> bool:
    """Whether normalized ``phrase`` occurs in normalized ``text`` on word
    boundaries (``"mg"`` appears in ``"take 200 mg"``, not in ``"among"``).

    A phrase that normalizes to nothing (e.g. ``"--"``) never appears.
    """
    needle = normalize(phrase)
    if not needle:
        return False
    # Normalized text is single-space separated words, so padding both with
    # spaces turns "on word boundaries" into a plain substring test.
    return f" {needle} " in f" {normalize(text)} "


def urges_followup(text: str) -> bool:
    """Whether ``text`` names a clinician from :data:`FOLLOWUP_TERMS`."""
    haystack = f" {normalize(text)} "
    return any(f" {normalize(term)} " in haystack for term in FOLLOWUP_TERMS)


def citation_markers(text: str) -> list[int]:
    """The citation numbers used in ``text``, in order: ``[1]``, ``[2, 3]``..."""
    found: list[int] = []
    for match in _MARKER.finditer(text):
        found.extend(int(n) for n in match.group(1).split(","))
    return found


def _holds_evidence(passage: str, evidence: Sequence[str]) -> bool:
    return any(appears(phrase, passage) for phrase in evidence)


# --------------------------------------------------------------------------
# Input: the question set


@dataclass(frozen=True)
class Case:
    """One evaluation case, as read from a question-set line.

    ``expect`` is always a tuple here; ``expect_as_written`` keeps the input's
    form (string or list) so ``results.jsonl`` can echo it unchanged.
    """

    id: str
    question: str
    expect: tuple[str, ...]
    history: tuple[Turn, ...] = ()
    evidence: tuple[str, ...] = ()
    must_include: tuple[str, ...] = ()
    must_not_include: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    line: int = 0
    expect_as_written: Any = field(default=None, compare=False, repr=False)


def _string_list(value: Any, name: str, *, allow_empty: bool = True) -> tuple[str, ...]:
    """Validate a list of non-blank strings; raise ValueError with the problem."""
    if not isinstance(value, list):
        raise ValueError(f"`{name}` must be a list of strings, got {type(value).__name__}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ValueError(f"`{name}`[{i}] must be a string, got {type(item).__name__}")
        if not normalize(item):
            raise ValueError(f"`{name}`[{i}] is empty after normalization: {item!r}")
    if not value and not allow_empty:
        raise ValueError(f"`{name}` must not be empty")
    return tuple(value)


def _parse_case(obj: Any, line: int) -> Case:
    """Turn one decoded JSON line into a :class:`Case` or raise ValueError."""
    if not isinstance(obj, dict):
        raise ValueError(f"a case must be a JSON object, got {type(obj).__name__}")
    missing = [name for name in _REQUIRED if name not in obj]
    if missing:
        raise ValueError(f"missing required field {', '.join(f'`{m}`' for m in missing)}")
    case_id, question, expect = obj["id"], obj["question"], obj["expect"]
    if not isinstance(case_id, str) or not case_id.strip():
        raise ValueError(f"`id` must be a non-empty string, got {case_id!r}")
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"`question` must be a non-empty string, got {question!r}")

    if isinstance(expect, str):
        expected: tuple[str, ...] = (expect,)
    elif isinstance(expect, list) and expect and all(isinstance(e, str) for e in expect):
        expected = tuple(expect)
    else:
        raise ValueError(f"`expect` must be a decision or a non-empty list of decisions, got {expect!r}")
    unknown = [e for e in expected if e not in DECISIONS]
    if unknown:
        raise ValueError(
            f"unknown decision {unknown[0]!r} in `expect`; valid: {', '.join(DECISIONS)}"
        )

    history: list[Turn] = []
    raw_history = obj.get("history", [])
    if not isinstance(raw_history, list):
        raise ValueError(f"`history` must be a list of turns, got {type(raw_history).__name__}")
    for i, turn in enumerate(raw_history):
        if not isinstance(turn, dict) or set(turn) != {"role", "content"}:
            raise ValueError(
                f"`history`[{i}] must be an object with exactly `role` and `content`, got {turn!r}"
            )
        if turn["role"] not in _ROLES:
            raise ValueError(
                f"`history`[{i}].role must be one of {', '.join(_ROLES)}, got {turn['role']!r}"
            )
        if not isinstance(turn["content"], str):
            raise ValueError(f"`history`[{i}].content must be a string")
        history.append(Turn(role=turn["role"], content=turn["content"]))

    evidence = _string_list(obj["evidence"], "evidence") if "evidence" in obj else ()
    if Decision.ANSWER.value in expected and not evidence:
        raise ValueError("an `answer` case needs `evidence` (a non-empty list of phrases)")

    return Case(
        id=case_id,
        question=question,
        expect=expected,
        history=tuple(history),
        evidence=evidence,
        must_include=_string_list(obj.get("must_include", []), "must_include"),
        must_not_include=_string_list(obj.get("must_not_include", []), "must_not_include"),
        tags=_string_list(obj.get("tags", []), "tags"),
        line=line,
        expect_as_written=expect,
    )


def load_cases(path: str | Path) -> list[Case]:
    """Read and validate a question set (JSON Lines, EVAL-FORMAT.md).

    Blank lines are skipped. Every problem is collected; if there is any, an
    :class:`InvalidQuestionSetError` is raised whose message lists them one
    per line as ``FILE:LINE: problem`` (the first problem is the first line),
    and whose ``problems`` attribute holds the same list.

    Raises:
        InvalidQuestionSetError: unreadable file, bad JSON, a missing required
            field, an unknown decision, a duplicate id, an ``answer`` case
            without evidence, a malformed ``history``, or no cases at all.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidQuestionSetError(f"{path}: cannot read question set: {exc.strerror or exc}") from None

    problems: list[str] = []
    cases: list[Case] = []
    first_line_of: dict[str, int] = {}
    for number, raw_line in enumerate(raw.split(b"\n"), start=1):
        where = f"{path}:{number}"
        try:
            text = raw_line.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            problems.append(f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})")
            continue
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        try:
            case = _parse_case(obj, number)
        except ValueError as exc:
            label = f" (id {obj['id']!r})" if isinstance(obj, dict) and isinstance(obj.get("id"), str) else ""
            problems.append(f"{where}: {exc}{label}")
            continue
        if case.id in first_line_of:
            problems.append(f"{where}: duplicate id {case.id!r} (first used on line {first_line_of[case.id]})")
            continue
        first_line_of[case.id] = number
        cases.append(case)

    if not problems and not cases:
        problems.append(f"{path}:1: no cases (the file is empty)")
    if problems:
        error = InvalidQuestionSetError("\n".join(problems))
        error.problems = problems  # type: ignore[attr-defined]
        raise error
    return cases


# --------------------------------------------------------------------------
# Scoring one turn


def _decision_name(decision: Any) -> str:
    return decision.value if isinstance(decision, Decision) else str(decision)


def _first_evidence_rank(retrieved: Sequence[dict], evidence: Sequence[str]) -> int | None:
    # Rank by position: the contract says `retrieved` is best first.
    for position, hit in enumerate(retrieved, start=1):
        if _holds_evidence(hit["text"], evidence):
            return position
    return None


def _judge(case: Case, decision: str, text: str, citations: Sequence[dict]) -> list[str]:
    """The contract's pass rule; returns what failed (empty when passed)."""
    failures: list[str] = []
    if decision not in case.expect:
        failures.append(f"decision {decision!r}, expected {' or '.join(map(repr, case.expect))}")
    if decision == Decision.ANSWER.value:
        numbers = {c["n"] for c in citations}
        if not citations:
            failures.append("answer has no citation")
        elif case.evidence and not any(_holds_evidence(c["text"], case.evidence) for c in citations):
            failures.append("no cited passage holds the evidence")
        unmatched = sorted({n for n in citation_markers(text) if n not in numbers})
        if unmatched:
            failures.append(
                f"marker {', '.join(f'[{n}]' for n in unmatched)} matches no citation"
            )
        if not urges_followup(text):
            failures.append("does not urge follow-up with a clinician")
    # must_include / must_not_include hold for every reply, not only answers:
    # a refusal that still names a dose ("mg") must fail.
    for phrase in case.must_include:
        if not appears(phrase, text):
            failures.append(f"missing must_include {phrase!r}")
    for phrase in case.must_not_include:
        if appears(phrase, text):
            failures.append(f"contains must_not_include {phrase!r}")
    return failures


def _score_case(case: Case, reply: Reply | None, latency_ms: float, error: str = "") -> dict:
    """One ``results.jsonl`` record for ``case``."""
    if reply is None:
        decision, text, citations, retrieved, reason, query = "error", "", [], [], error, ""
    else:
        decision = _decision_name(reply.decision)
        text, reason, query = reply.text, reply.reason, reply.query
        citations = [
            {"n": c.n, "chunk_id": c.chunk_id, "source": c.source, "text": c.text}
            for c in reply.citations
        ]
        retrieved = [
            {
                "rank": h.rank,
                "chunk_id": h.chunk.chunk_id,
                "source": h.chunk.source,
                "score": float(h.score),
                "text": h.chunk.text,
            }
            for h in reply.retrieved
        ]
    failures = [f"respond raised {error}"] if reply is None else _judge(case, decision, text, citations)
    return {
        "id": case.id,
        "expect": case.expect_as_written if case.expect_as_written is not None else list(case.expect),
        "decision": decision,
        "reply": text,
        "citations": citations,
        "retrieved": retrieved,
        "latency_ms": round(latency_ms, 3),
        "passed": not failures,
        "failures": failures,
        # project additions (the contract allows extra fields)
        "question": case.question,
        "reason": reason,
        "query": query,
        "tags": list(case.tags),
        "evidence_rank": _first_evidence_rank(retrieved, case.evidence) if case.evidence else None,
    }


# --------------------------------------------------------------------------
# Figures


def _share(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def _percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (pos - low), 3)


def _true_label(case: Case, decision: str) -> str:
    # With several acceptable decisions, the one made counts as the truth when
    # it is acceptable, else the first listed. So a case is one row of the
    # confusion matrix and accuracy equals its diagonal.
    return decision if decision in case.expect else case.expect[0]


def _summarize(
    cases: Sequence[Case], records: Sequence[dict], k_values: Sequence[int], config: dict
) -> dict:
    n = len(cases)
    decisions = [r["decision"] for r in records]
    truths = [_true_label(c, d) for c, d in zip(cases, decisions)]
    correct = sum(d in c.expect for c, d in zip(cases, decisions))

    labels = list(DECISIONS) + (["error"] if "error" in decisions else [])
    confusion = {t: {p: 0 for p in labels} for t in DECISIONS}
    for t, p in zip(truths, decisions):
        confusion[t][p] += 1
    per_decision = {}
    for d in DECISIONS:
        support = sum(t == d for t in truths)
        predicted = sum(p == d for p in decisions)
        hits = confusion[d][d]
        per_decision[d] = {
            "support": support,
            "recall": _share(hits, support),
            "precision": _share(hits, predicted),
        }

    answer_cases = [(c, r) for c, r in zip(cases, records) if c.evidence and Decision.ANSWER.value in c.expect]
    ranks = [r["evidence_rank"] for _, r in answer_cases]
    recall_at_k = {
        str(k): _share(sum(rank is not None and rank <= k for rank in ranks), len(ranks))
        for k in k_values
    }
    mrr = round(sum(1 / rank for rank in ranks if rank) / len(ranks), 4) if ranks else None

    answered = [(c, r) for c, r in answer_cases if r["decision"] == Decision.ANSWER.value]
    supported = sum(
        any(_holds_evidence(cit["text"], c.evidence) for cit in r["citations"]) for c, r in answered
    )
    # project addition: the reply's own words hold the evidence (it quotes the
    # answering sentence, not only cites its passage)
    quoted = sum(_holds_evidence(r["reply"], c.evidence) for c, r in answered)
    followup_pool = [r for r in records if r["decision"] in (Decision.ANSWER.value, Decision.NO_EVIDENCE.value)]
    followups = sum(urges_followup(r["reply"]) for r in followup_pool)

    latencies = [r["latency_ms"] for r in records]
    per_tag: dict[str, dict] = {}
    for c, r in zip(cases, records):
        for tag in c.tags:
            slot = per_tag.setdefault(tag, {"cases": 0, "correct_decision": 0, "passed": 0})
            slot["cases"] += 1
            slot["correct_decision"] += r["decision"] in c.expect
            slot["passed"] += r["passed"]
    for slot in per_tag.values():
        slot["decision_accuracy"] = _share(slot.pop("correct_decision"), slot["cases"])
        slot["pass_rate"] = _share(slot["passed"], slot["cases"])

    # project addition: questions that accept an answer but were declined as
    # not covered or off-topic (the "wrongly declined" share of a release review)
    in_scope = [(c, r) for c, r in zip(cases, records) if Decision.ANSWER.value in c.expect]
    declined = sum(r["decision"] in (Decision.NO_EVIDENCE.value, Decision.OUT_OF_SCOPE.value) for _, r in in_scope)

    passed = sum(r["passed"] for r in records)
    return {
        "cases": n,
        "decision_accuracy": _share(correct, n),
        "per_decision": per_decision,
        "recall_at_k": recall_at_k,
        "mrr": mrr,
        "citation_support": _share(supported, len(answered)),
        "evidence_quoted": _share(quoted, len(answered)),
        "followup_rate": _share(followups, len(followup_pool)),
        "latency_ms": {
            "p50": _percentile(latencies, 50),
            "p95": _percentile(latencies, 95),
            "max": round(max(latencies), 3) if latencies else None,
        },
        "passed": passed,
        # project additions
        "pass_rate": _share(passed, n),
        "escalate_recall": per_decision[Decision.ESCALATE.value]["recall"],
        "in_scope_declined": {"count": declined, "of": len(in_scope), "rate": _share(declined, len(in_scope))},
        "answer_cases": len(answer_cases),
        "answered_cases": len(answered),
        "errors": decisions.count("error"),
        "failed_ids": [r["id"] for r in records if not r["passed"]],
        "per_tag": dict(sorted(per_tag.items())),
        "confusion": confusion,
        "config": config,
        "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------
# Running


Respond = Callable[[str, list[Turn]], Reply]


def run_eval(
    respond: Respond,
    cases: Sequence[Case],
    out_dir: str | Path,
    *,
    k_values: Sequence[int] = (1, 3, 5),
    progress: bool = True,
    config: dict | None = None,
) -> dict:
    """Ask every case, score it and write the run's outputs into ``out_dir``.

    Args:
        respond: ``respond(question, history) -> Reply``; one full turn.
        cases: from :func:`load_cases`.
        out_dir: created if missing; existing output files are overwritten.
        k_values: the k of ``recall_at_k`` (default 1, 3, 5).
        progress: show a tqdm bar on stderr (default True).
        config: what was evaluated (retriever, model, ...), copied into
            ``summary.json`` and the report so runs can be told apart.

    Returns:
        The ``summary.json`` object.

    A ``respond`` that raises fails that case (decision ``"error"``, the
    exception in ``failures``) and the run goes on, so one crash does not
    lose a long run; ``summary["errors"]`` counts them.
    """
    if not cases:
        raise ValueError("run_eval needs at least one case")
    k_values = tuple(k_values)
    if not k_values or any(not isinstance(k, int) or k < 1 for k in k_values):
        raise ValueError(f"k_values must be positive integers, got {k_values!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = dict(config or {})

    from tqdm import tqdm

    records: list[dict] = []
    with open(out / "results.jsonl", "w", encoding="utf-8") as results:
        for case in tqdm(cases, desc="eval", unit="case", disable=not progress, file=sys.stderr):
            history = list(case.history)
            start = time.perf_counter()
            reply: Reply | None
            try:
                reply, error = respond(case.question, history), ""
            except Exception as exc:  # noqa: BLE001 - recorded as a failed case
                reply, error = None, f"{type(exc).__name__}: {exc}"
            latency_ms = (time.perf_counter() - start) * 1000
            record = _score_case(case, reply, latency_ms, error)
            records.append(record)
            # written as we go, so an interrupted run still leaves its results
            results.write(json.dumps(record, ensure_ascii=False) + "\n")
            results.flush()

    summary = _summarize(cases, records, k_values, config)
    (out / "summary.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )
    _write_ragas(out / "ragas.jsonl", cases, records)
    pictures = _draw_pictures(out, summary, records)
    (out / "summary.md").write_text(_report(summary, cases, records, pictures), encoding="utf-8")
    return summary


def _write_ragas(path: Path, cases: Sequence[Case], records: Sequence[dict]) -> None:
    """RAGAS single-turn samples; ``reference_contexts`` are the retrieved
    passages that hold the case's evidence (empty for non-answer cases)."""
    with open(path, "w", encoding="utf-8") as f:
        for case, r in zip(cases, records):
            contexts = [hit["text"] for hit in r["retrieved"]]
            sample = {
                "id": case.id,
                "user_input": case.question,
                "retrieved_contexts": contexts,
                "response": r["reply"],
                "reference_contexts": [t for t in contexts if case.evidence and _holds_evidence(t, case.evidence)],
            }
            f.write(json.dumps(sample, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------
# Pictures and report


def _draw_pictures(out: Path, summary: dict, records: Sequence[dict]) -> dict[str, str]:
    """Draw the PNGs beside the report; returns {name: file name}."""
    # Figure + Agg canvas directly (no pyplot): no global state, no display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    files: dict[str, str] = {}

    def save(fig: Figure, name: str) -> None:
        FigureCanvasAgg(fig)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        files[name.removesuffix(".png")] = name

    # Decision confusion matrix
    confusion = summary["confusion"]
    rows = list(confusion)
    cols = list(next(iter(confusion.values())))
    grid = [[confusion[r][c] for c in cols] for r in rows]
    fig = Figure(figsize=(6.2, 4.8))
    ax = fig.add_subplot()
    ax.imshow(grid, cmap="Blues")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("decision made")
    ax.set_ylabel("decision expected")
    ax.set_title("Decisions")
    peak = max(max(row) for row in grid) or 1
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center",
                    color="white" if value > peak / 2 else "black")
    save(fig, "confusion.png")

    # Recall@k bars
    recall = summary["recall_at_k"]
    fig = Figure(figsize=(4.8, 3.4))
    ax = fig.add_subplot()
    labels = [f"@{k}" for k in recall]
    values = [v or 0.0 for v in recall.values()]
    bars = ax.bar(labels, values, color="#4c72b0")
    ax.bar_label(bars, labels=[_fmt(v) for v in recall.values()])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("share of answer cases")
    ax.set_title(f"Evidence in top k (MRR {_fmt(summary['mrr'])})")
    save(fig, "recall_at_k.png")

    # Latency histogram
    latencies = [r["latency_ms"] for r in records]
    fig = Figure(figsize=(5.6, 3.4))
    ax = fig.add_subplot()
    ax.hist(latencies, bins=min(30, max(5, len(latencies) // 4)), color="#55a868")
    for name, style in (("p50", "--"), ("p95", ":")):
        value = summary["latency_ms"][name]
        if value is not None:
            ax.axvline(value, color="black", linestyle=style,
                       label=f"{name} {value:.0f} ms" if value >= 10 else f"{name} {value:.2g} ms")
    ax.legend()
    ax.set_xlabel("latency per turn (ms)")
    ax.set_ylabel("cases")
    ax.set_title("Latency")
    save(fig, "latency.png")
    return files


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _cell(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def _report(summary: dict, cases: Sequence[Case], records: Sequence[dict], pictures: dict[str, str]) -> str:
    lat = summary["latency_ms"]
    lines = [
        "# Evaluation report",
        "",
        f"{summary['passed']} of {summary['cases']} cases passed "
        f"({_fmt(summary['pass_rate'])}); generated {summary['generated_at']}.",
        "",
    ]
    if summary["config"]:
        lines += ["Configuration: " + ", ".join(f"`{k}={v}`" for k, v in summary["config"].items()), ""]
    lines += [
        "## Figures",
        "",
        "| figure | value | over |",
        "| --- | --- | --- |",
        f"| decision accuracy | {_fmt(summary['decision_accuracy'])} | all {summary['cases']} cases |",
    ]
    for k, v in summary["recall_at_k"].items():
        lines.append(f"| recall@{k} | {_fmt(v)} | {summary['answer_cases']} answer cases |")
    lines += [
        f"| MRR | {_fmt(summary['mrr'])} | {summary['answer_cases']} answer cases |",
        f"| citation support | {_fmt(summary['citation_support'])} | answer cases answered `answer` |",
        f"| evidence quoted in the reply | {_fmt(summary.get('evidence_quoted'))} | answer cases answered `answer` |",
        f"| follow-up rate | {_fmt(summary['followup_rate'])} | replies `answer` or `no_evidence` |",
        f"| escalate recall | {_fmt(summary['escalate_recall'])} | escalate cases |",
        f"| in-scope questions declined | {_fmt(summary['in_scope_declined']['rate'])} "
        f"({summary['in_scope_declined']['count']} of {summary['in_scope_declined']['of']}) "
        f"| cases accepting `answer`, decided `no_evidence` or `out_of_scope` |",
        f"| latency p50 / p95 / max (ms) | {_fmt(lat['p50'])} / {_fmt(lat['p95'])} / {_fmt(lat['max'])} | all cases |",
        "",
        "## Decisions",
        "",
        "| decision | support | recall | precision |",
        "| --- | --- | --- | --- |",
    ]
    for d, row in summary["per_decision"].items():
        lines.append(f"| {d} | {row['support']} | {_fmt(row['recall'])} | {_fmt(row['precision'])} |")
    lines.append("")
    titles = {"confusion": "Decision confusion matrix", "recall_at_k": "Recall@k", "latency": "Latency"}
    for key, name in pictures.items():
        lines += [f"![{titles.get(key, key)}]({name})", ""]
    if summary["per_tag"]:
        lines += ["## By tag", "", "| tag | cases | decision accuracy | passed |", "| --- | --- | --- | --- |"]
        for tag, row in summary["per_tag"].items():
            lines.append(f"| {tag} | {row['cases']} | {_fmt(row['decision_accuracy'])} | {row['passed']} |")
        lines.append("")
    failed = [(c, r) for c, r in zip(cases, records) if not r["passed"]]
    lines += [f"## Failed cases ({len(failed)})", ""]
    if not failed:
        lines.append("None.")
    else:
        lines += ["| id | question | expected | decision | what failed | reply |", "| --- | --- | --- | --- | --- | --- |"]
        for c, r in failed:
            lines.append(
                f"| {c.id} | {_cell(c.question, 80)} | {' / '.join(c.expect)} | {r['decision']} "
                f"| {_cell('; '.join(r['failures']), 200)} | {_cell(r['reply'])} |"
            )
    lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Comparing runs and enforcing thresholds


#: Rows of :func:`compare_runs`: (label, dotted path in summary.json, higher is better)
_COMPARE_ROWS: tuple[tuple[str, str, bool], ...] = (
    ("passed", "passed", True),
    ("decision accuracy", "decision_accuracy", True),
    ("MRR", "mrr", True),
    ("citation support", "citation_support", True),
    ("evidence quoted", "evidence_quoted", True),
    ("follow-up rate", "followup_rate", True),
    ("escalate recall", "escalate_recall", True),
    ("in-scope declined", "in_scope_declined.rate", False),
    ("latency p50 (ms)", "latency_ms.p50", False),
    ("latency p95 (ms)", "latency_ms.p95", False),
)


def _lookup(summary: Mapping, path: str) -> Any:
    value: Any = summary
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def compare_runs(summaries: Mapping[str, Mapping]) -> str:
    """A markdown table with one column per run (e.g. per retriever), the
    best value of each row in bold.

    Args:
        summaries: run name -> the ``summary.json`` object of that run.
    """
    if not summaries:
        raise ValueError("compare_runs needs at least one summary")
    names = list(summaries)
    ks = sorted({k for s in summaries.values() for k in s.get("recall_at_k", {})}, key=int)
    rows = list(_COMPARE_ROWS[:2]) + [(f"recall@{k}", f"recall_at_k.{k}", True) for k in ks] + list(_COMPARE_ROWS[2:])
    lines = ["| figure | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for label, path, higher in rows:
        values = [_lookup(summaries[name], path) for name in names]
        numbers = [v for v in values if isinstance(v, (int, float))]
        # bold the best only where runs differ, so ties do not shout
        best = (max(numbers) if higher else min(numbers)) if len(set(numbers)) > 1 else None
        cells = [f"**{_fmt(v)}**" if best is not None and v == best else _fmt(v) for v in values]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _count(share: float | None, total: int) -> int | None:
    """The whole number behind a share that ``_share`` rounded to 4 places."""
    return None if share is None else int(round(share * total))


def sets_report(summaries: Mapping[str, Mapping]) -> str:
    """A markdown table with one row per question set and a pooled row,
    with the figures a release review reads: decisions right, emergencies
    escalated, refusals refused, in-scope questions declined, recall@1 and
    @3, citation support and follow-up rate.

    Pooled figures add up each set's counts (a set with more cases weighs
    more), so they are the figures of all the cases taken together.

    Args:
        summaries: set name -> the ``summary.json`` object of its run.
    """
    if not summaries:
        raise ValueError("sets_report needs at least one summary")
    head = ("| set | cases | passed | decision accuracy | escalated | refused | in-scope declined "
            "| recall@1 | recall@3 | citation support | follow-up |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    totals = {k: 0 for k in ("cases", "passed", "correct", "esc", "esc_of", "ref", "ref_of", "dec", "dec_of",
                             "r1", "r3", "ans", "cit", "cit_of")}

    def frac(num, den):
        return "n/a" if not den else f"{num} / {den}"

    for name, s in summaries.items():
        per = s.get("per_decision", {})
        esc, ref = per.get("escalate", {}), per.get("refuse", {})
        esc_n, ref_n = _count(esc.get("recall"), esc.get("support", 0)), _count(ref.get("recall"), ref.get("support", 0))
        declined = s.get("in_scope_declined") or {}
        answers, answered = s.get("answer_cases", 0), s.get("answered_cases", 0)
        r1, r3 = s.get("recall_at_k", {}).get("1"), s.get("recall_at_k", {}).get("3")
        lines.append(
            f"| {name} | {s['cases']} | {s['passed']} | {_fmt(s['decision_accuracy'])} "
            f"| {frac(esc_n, esc.get('support', 0))} | {frac(ref_n, ref.get('support', 0))} "
            f"| {frac(declined.get('count'), declined.get('of', 0))} | {_fmt(r1)} | {_fmt(r3)} "
            f"| {_fmt(s.get('citation_support'))} | {_fmt(s.get('followup_rate'))} |")
        for key, value in (("cases", s["cases"]), ("passed", s["passed"]),
                           ("correct", _count(s["decision_accuracy"], s["cases"])),
                           ("esc", esc_n), ("esc_of", esc.get("support", 0)), ("ref", ref_n),
                           ("ref_of", ref.get("support", 0)), ("dec", declined.get("count")),
                           ("dec_of", declined.get("of", 0)), ("r1", _count(r1, answers)),
                           ("r3", _count(r3, answers)), ("ans", answers),
                           ("cit", _count(s.get("citation_support"), answered)), ("cit_of", answered)):
            totals[key] += value or 0
    if len(summaries) > 1:
        t = totals

        def share(num, den):
            return _fmt(_share(num, den))

        lines.append(
            f"| **all** | {t['cases']} | {t['passed']} | {share(t['correct'], t['cases'])} "
            f"| {frac(t['esc'], t['esc_of'])} | {frac(t['ref'], t['ref_of'])} | {frac(t['dec'], t['dec_of'])} "
            f"| {share(t['r1'], t['ans'])} | {share(t['r3'], t['ans'])} | {share(t['cit'], t['cit_of'])} | |")
    return "\n".join(lines) + "\n"


def _flatten(thresholds: Mapping, prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in thresholds.items():
        if key.startswith("_"):  # "_comment" and the like
            continue
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, path + ".")
        else:
            yield path, value


#: Top-level summary figures a threshold may name (sub-keys via dots).
THRESHOLD_FIGURES: tuple[str, ...] = (
    "decision_accuracy", "recall_at_k", "mrr", "citation_support", "evidence_quoted", "followup_rate",
    "escalate_recall", "in_scope_declined", "pass_rate", "per_decision", "latency_ms", "passed",
)


def check_thresholds(summary: Mapping, thresholds: Mapping) -> list[str]:
    """The figures of ``summary`` that break ``thresholds``; empty when all hold.

    ``thresholds`` maps figures to minimums, nested or dotted alike:
    ``{"decision_accuracy": 0.9, "recall_at_k": {"1": 0.9}}`` equals
    ``{"recall_at_k.1": 0.9, ...}``. Minimums may also sit under ``"min"``;
    upper bounds (e.g. latency) go under ``"max"``:
    ``{"max": {"latency_ms": {"p95": 2000}}}``. Keys starting with ``_`` are
    comments. A figure the run did not measure (``null``) is a violation.

    Raises:
        ValueError: a threshold names an unknown figure or is not a number.
    """
    bounds: list[tuple[str, str, Any]] = []
    for key, value in thresholds.items():
        if key in ("min", "max") and isinstance(value, Mapping):
            bounds += [(key, path, v) for path, v in _flatten(value)]
        elif not key.startswith("_"):
            nested = {key: value}
            bounds += [("min", path, v) for path, v in _flatten(nested)]

    violations: list[str] = []
    for kind, path, limit in bounds:
        if path.split(".")[0] not in THRESHOLD_FIGURES:
            raise ValueError(
                f"threshold {path!r} names no figure; valid: {', '.join(THRESHOLD_FIGURES)}"
            )
        if isinstance(limit, bool) or not isinstance(limit, (int, float)):
            raise ValueError(f"threshold {path!r} must be a number, got {limit!r}")
        actual = _lookup(summary, path)
        if not isinstance(actual, (int, float)):
            violations.append(f"{path}: not measured in this run (threshold {kind} {limit})")
        elif kind == "min" and actual < limit:
            violations.append(f"{path}: {_fmt(actual)} is below the minimum {limit}")
        elif kind == "max" and actual > limit:
            violations.append(f"{path}: {_fmt(actual)} is above the maximum {limit}")
    return violations
