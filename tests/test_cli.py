"""The command line, as a user runs it: exit codes, one-line errors, JSON."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from assistant.cli import main

from conftest import REPO, SEED_CORPUS, minimal_pdf


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_does_not_import_torch():
    code = ("import sys\nfrom assistant.cli import main\n"
            "try:\n    main(['index', 'build', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY' if {'torch', 'sentence_transformers', 'faiss', 'gradio'} & set(sys.modules) else 'LIGHT')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.stdout.strip().endswith("LIGHT"), out.stdout + out.stderr
    assert "--strict" in out.stdout


def test_python_dash_m_is_the_same_cli():
    out = subprocess.run([sys.executable, "-m", "assistant", "--version"], capture_output=True, text=True,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("knee-assistant ")


def test_missing_index_is_one_line_and_exit_1(capsys, tmp_path):
    code, out, err = run(capsys, "search", "what is the vmo", "--index", str(tmp_path / "none"))
    assert code == 1
    assert err.count("\n") == 1 and "knee-assistant index build" in err and "Traceback" not in err


def test_status_of_a_missing_index(capsys, tmp_path):
    code, out, _ = run(capsys, "index", "status", "--index", str(tmp_path / "none"), "--json")
    status = json.loads(out)
    assert code == 0 and status["exists"] is False and status["stale"] is True


def test_bad_setting_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.setenv("KNEE_K", "many")
    with pytest.raises(SystemExit) as info:
        main(["index", "status"])
    assert info.value.code == 2
    assert "KNEE_K='many' is not a valid int" in capsys.readouterr().err


@pytest.mark.slow
def test_build_status_update_search_ask(capsys, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(SEED_CORPUS, corpus)
    index = str(tmp_path / "index")
    code, out, _ = run(capsys, "index", "build", "--index", index, "--corpus", str(corpus), "--json")
    built = json.loads(out)
    assert code == 0 and built["documents"] == 1 and built["chunks"] > 5

    (corpus / "taping.md").write_text("---\ntitle: Taping guide\n---\nKinesiology taping is sometimes "
                                      "used by runners for knee support.\n", encoding="utf-8")
    (corpus / "broken.pdf").write_bytes(minimal_pdf("x")[:60])
    code, out, _ = run(capsys, "index", "status", "--index", index, "--corpus", str(corpus))
    assert code == 0 and "added since: taping.md" in out and "unreadable: broken.pdf" in out and "stale" in out

    code, out, err = run(capsys, "index", "update", "--index", index, "--corpus", str(corpus))
    assert code == 0 and "1 added" in out and "embedded" in out
    assert "skipped broken.pdf" in err

    code, out, _ = run(capsys, "search", "kinesiology taping for runners", "--index", index, "--k", "3", "--json")
    result = json.loads(out)
    assert [h["rank"] for h in result["retrieved"]] == [1, 2, 3]
    assert result["retrieved"][0]["source"] == "taping.md"
    assert set(result["retrieved"][0]) >= {"rank", "chunk_id", "source", "score", "text"}

    code, out, _ = run(capsys, "ask", "what exercises help the vmo", "--index", index, "--json")
    reply = json.loads(out)
    assert reply["decision"] == "answer" and reply["citations"] and "[1]" in reply["text"]

    code, out, _ = run(capsys, "ask", "I fell and now I can't put any weight on my knee", "--index", index)
    assert out.startswith("Please seek urgent medical care now")


@pytest.mark.slow
def test_search_batch_reads_eval_cases_and_writes_one_line_each(capsys, tmp_path, seed_index):
    cases = tmp_path / "cases.jsonl"
    cases.write_text(
        json.dumps({"id": "a", "question": "where does the vmo attach"}) + "\n\n"
        + json.dumps({"id": "b", "question": "and how do i fix that?",
                      "history": [{"role": "user", "content": "why does my knee buckle"}]}) + "\n",
        encoding="utf-8")
    out_file = tmp_path / "out.jsonl"
    code, _, _ = run(capsys, "search", "--batch", str(cases), "--out", str(out_file),
                     "--index", seed_index.index_dir)
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert code == 0 and [r["id"] for r in rows] == ["a", "b"]
    assert all(len(r["retrieved"]) == 5 for r in rows)


def test_search_batch_errors_name_file_and_line(capsys, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "a", "question": "ok"}) + "\n{broken\n", encoding="utf-8")
    code, _, err = run(capsys, "search", "--batch", str(bad), "--index", str(tmp_path / "none"))
    assert code == 1
    assert f"{bad}:2: not valid JSON" in err  # reported before the (missing) index is even opened


@pytest.mark.slow
def test_eval_fails_below_thresholds(capsys, tmp_path, seed_index):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"id": "x", "question": "what is the capital of france",
                                     "expect": "answer", "evidence": ["VMO"]}) + "\n", encoding="utf-8")
    thresholds = tmp_path / "t.json"
    thresholds.write_text(json.dumps({"decision_accuracy": 0.9}), encoding="utf-8")
    code, out, err = run(capsys, "eval", str(questions), "--out", str(tmp_path / "run"), "--no-progress",
                         "--index", seed_index.index_dir, "--thresholds", str(thresholds))
    assert code == 1 and "below threshold" in err
    assert (tmp_path / "run" / "summary.md").exists()


@pytest.mark.slow
def test_eval_runs_several_sets_side_by_side(capsys, tmp_path, seed_index):
    sets = []
    for name, question in (("first", "what does the vmo do"), ("second", "what is the capital of france")):
        path = tmp_path / f"{name}.jsonl"
        path.write_text(json.dumps({"id": "x", "question": question, "expect": "answer",
                                    "evidence": ["pull the kneecap medially"]}) + "\n", encoding="utf-8")
        sets.append(str(path))
    thresholds = tmp_path / "t.json"
    thresholds.write_text(json.dumps({"decision_accuracy": 0.9}), encoding="utf-8")
    code, out, err = run(capsys, "eval", *sets, "--out", str(tmp_path / "run"), "--no-progress",
                         "--index", seed_index.index_dir, "--thresholds", str(thresholds))
    assert code == 1
    assert "second: decision_accuracy" in err and "first:" not in err  # thresholds hold set by set
    assert (tmp_path / "run" / "first" / "summary.md").exists() and (tmp_path / "run" / "second" / "results.jsonl").exists()
    report = (tmp_path / "run" / "summary.md").read_text(encoding="utf-8")
    assert "| first | 1 | 1 | 1.000 |" in report and "| second | 1 | 0 | 0.000 |" in report
    assert "| **all** | 2 | 1 | 0.500 |" in report
    assert set(json.loads((tmp_path / "run" / "sets.json").read_text(encoding="utf-8"))) == {"first", "second"}


def test_eval_rejects_a_bad_question_set_before_loading_anything(capsys, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"id": "x", "question": "hi", "expect": "maybe"}) + "\n", encoding="utf-8")
    code, _, err = run(capsys, "eval", str(questions), "--out", str(tmp_path / "run"),
                       "--index", str(tmp_path / "none"))
    assert code == 1 and f"{questions}:1" in err and "maybe" in err


def test_chat_quits_on_a_command_and_starts_over_on_new(capsys, monkeypatch):
    # "/quit" and "/new" are commands, not questions to answer; the chat
    # keeps the history between questions until "/new"
    from assistant import pipeline
    from assistant.schema import Decision, Reply

    asked = []

    class Fake:
        def respond(self, question, history):
            asked.append((question, len(history)))
            return Reply(decision=Decision.ANSWER, text=f"reply to {question}")

    monkeypatch.setattr(pipeline.Assistant, "from_settings", classmethod(lambda cls, settings: Fake()))
    lines = iter(["what does the vmo do", "and how do i fix that?", "/new", "what are wall slides", " /QUIT ",
                  "never read"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    code, out, _ = run(capsys, "chat")
    assert code == 0
    assert asked == [("what does the vmo do", 0), ("and how do i fix that?", 2), ("what are wall slides", 0)]
    assert "new conversation" in out and "/quit" in out
    assert next(lines) == "never read"
