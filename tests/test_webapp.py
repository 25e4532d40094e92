"""The web app: rendering, input handling, feedback, uploads, and the live app.

The live tests launch the app the way Gradio tests itself
(``launch(prevent_thread_lock=True)``) over the real packaged model and the
seed index, once per module, and talk to it with ``gradio_client``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from conftest import EMERGENCY, EVIL, PASSWORD, QUESTION, free_port
from assistant import webapp
from assistant.index import build_lock, load_index
from assistant.schema import Citation, Decision, Reply





def evil_reply() -> Reply:
    cit = Citation(1, "evil-1", "evil<b>.md", "<i>Evil</i> title", EVIL, ((0, 6),))
    return Reply(Decision.ANSWER, "Squats <b>help</b> [1].", (cit,))


# --------------------------------------------------------------------------
# Rendering: everything from the corpus or the user is inert text


def test_sources_escape_html_and_markdown():
    html = webapp.render_sources(evil_reply().citations)
    assert "<script" not in html and "<img" not in html and "<i>" not in html and "<b>" not in html
    assert "&lt;script&gt;" in html and "&lt;img src=x" in html
    assert r"\*bold\*" in html and r"\[link\]" in html and r"\$\$x\$\$" in html
    assert '<mark class="knee-hl">Squats</mark>' in html  # the cited span, marked


@pytest.mark.parametrize("text, expected", [
    ("1. First", r"1\. First"),
    ("# Heading", r"\# Heading"),
    ("  - item", r"  \- item"),
    ("> quote", "&gt; quote"),             # an entity starts no blockquote
    ("a_b *c* `d` $$e$$", r"a\_b \*c\* \`d\` \$\$e\$\$"),
    ("Tom & <Jerry>", "Tom &amp; &lt;Jerry&gt;"),
])
def test_escape_text(text, expected):
    assert webapp.escape_text(text) == expected


def test_reply_text_escaped_but_markers_kept():
    out = webapp.render_reply_text("Squats <b>help</b> [1] and [12].")
    assert "<b>" not in out and "&lt;b&gt;" in out
    assert out.count('<span class="knee-cite">') == 2 and r"\[1\]" in out and r"\[12\]" in out


def test_user_message_is_escaped():
    (msg,) = webapp.exchange_messages({"question": "<img src=x onerror=alert(1)>", "reply": None})
    assert "<img" not in msg["content"]


@pytest.mark.parametrize("spans, marked", [
    (((0, 5),), ["Knees"]),
    (((6, 9), (0, 5)), ["Knees", "are"]),           # unsorted
    (((0, 7), (3, 9)), ["Knees are"]),              # overlapping: merged
    (((-4, 2), (14, 99)), ["Kn", "ky."]),           # clipped to the text
    (((5, 5), (9, 3)), []),                         # empty and reversed: ignored
])
def test_highlight_passage_spans(spans, marked):
    out = webapp.highlight_passage("Knees are tricky.", spans)
    assert [s.split("</mark>")[0] for s in out.split('<mark class="knee-hl">')[1:]] == marked


def test_escalation_banner_comes_first():
    reply = Reply(Decision.ESCALATE, "Please seek urgent medical care now.")
    out = webapp.render_main(reply)
    assert out.startswith('<div class="knee-banner" role="alert"')
    assert out.index("knee-banner") < out.index("Please seek urgent")


def test_no_evidence_and_declines_say_so():
    assert webapp.render_main(Reply(Decision.NO_EVIDENCE, "Not covered.")).startswith(
        '<span class="knee-label">Not covered by the collection.</span>')
    out = webapp.render_main(Reply(Decision.OUT_OF_SCOPE, "Sorry, no."), topic="knees")
    assert "I can help with questions about knees" in out


def test_sources_are_a_collapsible_message():
    messages = webapp.exchange_messages({"question": "q", "reply": evil_reply()})
    assert [m["role"] for m in messages] == ["user", "assistant", "assistant"]
    assert messages[2]["metadata"]["title"].startswith("📚 Sources (1)")


def test_chat_messages_map_each_message_to_its_exchange():
    exchanges = [{"question": "a", "reply": evil_reply()},
                 {"question": "b", "reply": Reply(Decision.REFUSE, "No.")}]
    messages, owners = webapp.chat_messages(exchanges)
    assert owners == [0, 0, 0, 1, 1] and len(messages) == 5
    assert webapp.history_turns(exchanges)[-1] == {"role": "assistant", "content": "No."}


def test_stream_prefixes_grow_to_the_full_text():
    text = "one two three four five six seven"
    parts = list(webapp.stream_prefixes(text, words=3))
    assert parts[-1] == text and len(parts) == 3
    assert all(b.startswith(a) for a, b in zip(parts, parts[1:]))


# --------------------------------------------------------------------------
# Bad input never reaches the user as a stack trace


@pytest.mark.parametrize("message, expected", [
    ("", webapp.EMPTY_INPUT_MESSAGE),
    ("   \n\t ", webapp.EMPTY_INPUT_MESSAGE),
    ("\x00\x01\x1b[31m\x7f", None),            # becomes "[31m": left to the pipeline
    ("\x00\x01\x02\x7f", webapp.EMPTY_INPUT_MESSAGE),
    ("x" * 50_000, "That message is very long (50,000 characters)"),
    (None, webapp.EMPTY_INPUT_MESSAGE),
])
def test_check_input(message, expected):
    result = webapp.check_input(message)
    assert (result is None) if expected is None else result.startswith(expected)


def test_safe_respond_turns_an_exception_into_a_friendly_reply(caplog):
    class Broken:
        def respond(self, message, history=()):
            raise RuntimeError("index exploded")

    with caplog.at_level(logging.ERROR, logger="assistant.webapp"):
        reply = webapp.safe_respond(Broken(), "What does the VMO do?")
    assert reply.text == webapp.ERROR_MESSAGE and reply.reason == "internal_error"
    assert "index exploded" in caplog.text  # logged server-side, with the traceback


# --------------------------------------------------------------------------
# Feedback


@pytest.mark.parametrize("text, expected", [
    ("mail me at jane.doe+knee@example.co.uk please", "mail me at [email] please"),
    ("call +44 20 7946 0958 or (555) 123-4567", "call [phone] or [phone]"),
    ("my number is 0612345678.", "my number is [phone]."),
    ("a 55-degree angle, 3 sets of 10", "a 55-degree angle, 3 sets of 10"),
])
def test_redact(text, expected):
    assert webapp.redact(text) == expected


def test_record_feedback_writes_redacted_json_lines(tmp_path):
    path = tmp_path / "new" / "dir" / "feedback.jsonl"
    reply = Reply(Decision.ANSWER, "Write to vmo@clinic.org [1].")
    webapp.record_feedback(path, "I'm bob@example.com, phone 555-123-4567", reply, "up")
    webapp.record_feedback(path, "again", reply, "down")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["rating"] for r in lines] == ["up", "down"]
    first = lines[0]
    assert first["question"] == "I'm [email], phone [phone]"
    assert first["reply"] == "Write to [email] [1]." and first["decision"] == "answer"
    assert first["timestamp"].endswith("+00:00")


# --------------------------------------------------------------------------
# Uploads


@pytest.fixture
def upload_settings(tmp_path):
    from assistant.settings import Settings

    (tmp_path / "corpus").mkdir()
    return Settings(corpus_dir=str(tmp_path / "corpus"), index_dir=str(tmp_path / "index"),
                    upload_max_mb=1, admin_password=PASSWORD)


def _file(tmp_path, name, data: bytes) -> Path:
    folder = tmp_path / "upload"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


GOOD = b"Knee braces\n\nA brace can support the kneecap during sport. Ask a physiotherapist."


@pytest.mark.parametrize("name, expected", [
    ("knee braces.md", "knee-braces.md"),
    ("../../etc/evil.txt", "evil.txt"),
    ("..\\..\\windows\\evil.TXT", "evil.txt"),
    (".hidden.txt", "hidden.txt"),
    ("Knie ünd Schmerz?.html", "Knie-und-Schmerz.html"),
])
def test_sanitize_filename(name, expected):
    assert webapp.sanitize_filename(name) == expected


@pytest.mark.parametrize("name, match", [
    ("virus.exe", r"file type \.exe is not supported; supported: \.txt"),
    ("notes", "no usable file name"),
    ("../..", "no usable file name"),
    ("...txt", "no usable file name"),
])
def test_sanitize_filename_rejects(name, match):
    with pytest.raises(webapp.UploadError, match=match):
        webapp.sanitize_filename(name)


def test_upload_lands_in_the_corpus_only(tmp_path, upload_settings):
    src = _file(tmp_path, "evil.txt", GOOD)
    dest, replaced = webapp.save_upload(src, "../../../evil.txt", upload_settings)
    corpus = Path(upload_settings.corpus_dir).resolve()
    assert dest == corpus / "evil.txt" and dest.read_bytes() == GOOD and not replaced
    assert not (tmp_path.parent / "evil.txt").exists()
    assert sorted(p.name for p in corpus.iterdir()) == ["evil.txt"]  # no .part left behind
    assert webapp.save_upload(src, "evil.txt", upload_settings)[1] is True  # replaced


def test_upload_too_large(tmp_path, upload_settings):
    src = _file(tmp_path, "big.txt", b"knee " * 300_000)
    with pytest.raises(webapp.UploadError, match=r"big.txt: 1.4 MB is over the 1 MB upload limit"):
        webapp.save_upload(src, "big.txt", upload_settings)
    assert not list(Path(upload_settings.corpus_dir).iterdir())


def test_corrupt_upload_is_refused(tmp_path, upload_settings):
    src = _file(tmp_path, "broken.pdf", b"%PDF-1.4 this is not really a pdf\x00\x01")
    with pytest.raises(webapp.UploadError, match=r"broken.pdf: cannot be read \(.+\); nothing was added"):
        webapp.save_upload(src, "broken.pdf", upload_settings)
    assert not list(Path(upload_settings.corpus_dir).iterdir())


def test_add_uploads_reports_each_file(tmp_path, upload_settings):
    good = _file(tmp_path, "brace.txt", GOOD)
    bad = _file(tmp_path, "x.exe", b"MZ")
    assert webapp.add_uploads(upload_settings, "wrong", [str(good)]) == webapp.WRONG_PASSWORD
    out = webapp.add_uploads(upload_settings, PASSWORD, [str(good), str(bad)])
    assert out.startswith("✅ brace.txt added") and "❌ " in out and "not supported" in out


# --------------------------------------------------------------------------
# Rebuild from the content tab


@pytest.fixture
def live_index(tmp_path, seed_index, real_embedder):
    """A private copy of the seed index and corpus, and an Assistant over it."""
    from assistant.pipeline import Assistant

    shutil.copytree(seed_index.index_dir, tmp_path / "index")
    shutil.copytree(seed_index.corpus_dir, tmp_path / "corpus")
    s = seed_index.replace(index_dir=str(tmp_path / "index"), corpus_dir=str(tmp_path / "corpus"),
                           admin_password=PASSWORD)
    return s, Assistant(s, embedder=real_embedder, index=load_index(s.index_dir, real_embedder.model_name))


@pytest.mark.slow
def test_rebuild_adds_a_document_and_swaps_the_index(tmp_path, live_index):
    s, assistant = live_index
    before = assistant.index.generation
    (Path(s.corpus_dir) / "braces.txt").write_bytes(GOOD)
    stages = []
    out = webapp.rebuild_index(assistant, s, PASSWORD, lambda stage, d, t: stages.append(stage))
    assert out.startswith("✅ Index rebuilt") and "Added: braces.txt" in out
    assert assistant.index.generation != before  # reloaded
    assert "embedding" in stages
    assert "braces.txt" in [row[1] for row in webapp.document_rows(assistant)]


@pytest.mark.slow
def test_rebuild_while_one_runs_says_so_and_keeps_the_index(live_index):
    s, assistant = live_index
    before = assistant.index.generation
    with build_lock(Path(s.index_dir)):  # as if another rebuild were running
        assert webapp.rebuild_index(assistant, s, PASSWORD) == webapp.BUILD_RUNNING
    assert assistant.index.generation == before


def test_rebuild_needs_the_password(live_index):
    s, assistant = live_index
    assert webapp.rebuild_index(assistant, s, "nope") == webapp.WRONG_PASSWORD
    assert webapp.rebuild_index(assistant, s.replace(admin_password=""), "") == webapp.WRONG_PASSWORD


# --------------------------------------------------------------------------
# The live app over the real model, through gradio_client


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, seed_index, seed_assistant):
    root = tmp_path_factory.mktemp("webapp")
    s = seed_index.replace(feedback_path=str(root / "feedback" / "feedback.jsonl"),
                           corpus_dir=str(root / "corpus"), admin_password=PASSWORD)
    demo = webapp.build_app(seed_assistant, s, stream_delay=0)
    _, url, _ = webapp.launch_app(demo, s, prevent_thread_lock=True, server_port=free_port(), quiet=True)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


@pytest.mark.slow
def test_api_answers_a_real_question_with_citations(client):
    text = client.predict(QUESTION, api_name="/chat")
    assert "[1]" in text
    assert "physiotherapist or doctor" in text  # the follow-up line


@pytest.mark.slow
def test_api_escalates_an_emergency(client):
    text = client.predict(EMERGENCY, api_name="/chat")
    assert "seek urgent medical care now" in text.lower()
    assert "[1]" not in text


@pytest.mark.slow
@pytest.mark.parametrize("message, expected", [
    ("", "Please type a question"),
    ("   \n  ", "Please type a question"),
    ("x" * 50_000, "That message is very long"),
    ("\x00\x07\x1b", "Please type a question"),
])
def test_api_bad_input_gets_a_friendly_message(client, message, expected):
    text = client.predict(message, api_name="/chat")
    assert text.startswith(expected) and "Traceback" not in text


@pytest.mark.slow
def test_api_lists_only_the_chat_endpoint(client):
    assert list(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == ["/chat"]
