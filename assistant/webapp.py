"""The web chat: a Gradio app over one :class:`~assistant.pipeline.Assistant`.

:func:`build_app` returns a ``gr.Blocks`` with two tabs:

- **Chat**: streamed replies with ``[n]`` markers; under each answer its
  sources (title, source, the passage with the cited sentences marked) in a
  collapsible panel; an unmistakable red banner first for emergencies; thumbs
  up/down feedback written as JSON lines with e-mails and phone numbers
  redacted; example questions, retry, undo and clear.
- **Content**: behind the admin password, the indexed documents, uploads
  into the corpus and an incremental rebuild with a progress bar. The chat
  keeps answering from the old index until the new one is complete.

It also exposes ``/chat`` (question in, reply text with its markers out) for
``gradio_client``.

Guarantees:
- Everything that comes from the corpus or the user is HTML- and
  Markdown-escaped before it is shown: a document holding ``<script>`` shows
  the text ``<script>``, it never becomes markup.
- No user input produces a stack trace: the turn is wrapped, the exception
  logged server-side and a friendly message shown instead.
- Uploads land only in ``settings.corpus_dir``, under a sanitised name, with
  a supported suffix, under ``settings.upload_max_mb``, and only when they
  can be read.

Gradio 6 notes: ``css``/``theme`` are ``launch()`` arguments now (use
:func:`launch_app`); ``gr.Chatbot`` speaks the messages format only, and a
message whose ``metadata`` has a ``title`` renders as a collapsible panel.
"""

from __future__ import annotations

import datetime as _dt
import hmac
import html
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
import unicodedata
from pathlib import Path
from typing import Iterator, Sequence

import gradio as gr

from .documents import SUPPORTED_SUFFIXES, load_file
from .errors import AssistantError, BuildInProgressError
from .schema import Citation, Decision, Reply

log = logging.getLogger(__name__)

TITLE = "Knee Assistant"

STANDING_NOTE = (
    "Educational content from a curated patient-education collection — "
    "**not a diagnosis**. For advice about your own knee, see a physiotherapist or doctor."
)

EXAMPLE_QUESTIONS = (
    "What exercises help the VMO?",
    "Why does my kneecap click when I go downstairs?",
    "What does the VMO do?",
    "Why does my knee buckle?",
)

#: Messages longer than this are not processed at all: a question is a
#: sentence or two, and the pipeline itself reads at most 2000 characters.
MAX_INPUT_CHARS = 10_000

EMPTY_INPUT_MESSAGE = (
    "Please type a question about your knee, for example "
    "\"What exercises help the VMO?\""
)
TOO_LONG_MESSAGE = (
    "That message is very long ({n:,} characters). Please ask one short question "
    "about your knee — a sentence or two works best."
)
ERROR_MESSAGE = (
    "Sorry, something went wrong on our side while answering. Please try again "
    "in a moment, or rephrase your question. If your knee is badly hurt, "
    "do not wait for this app: contact a doctor or emergency services."
)
BANNER_TEXT = "Seek urgent medical care now"
BANNER_SUBTEXT = "What you describe can be an emergency. Act on this before reading anything else."

#: Seconds between streamed chunks of a reply, and words per chunk.
STREAM_DELAY = 0.03
STREAM_WORDS = 3

CLI_HELP = """\
### Managing content

The content page is switched off because no admin password is set.
Manage the collection from the command line instead:

```
# put .txt, .md, .html, .pdf or .jsonl files into the corpus folder, then
knee-assistant index update      # embeds only new or changed documents
knee-assistant index status      # what is indexed, and whether it is stale
```

To manage content here, start the app with an admin password:
`KNEE_ADMIN_PASSWORD=... python app.py`
"""

CSS = """
.knee-note { border-left: 4px solid #2563eb; padding: 6px 12px; background: #eff6ff;
             color: #1e3a8a; border-radius: 4px; }
.knee-banner { background: #b91c1c; color: #ffffff; border: 3px solid #7f1d1d;
               border-radius: 8px; padding: 10px 14px; margin-bottom: 8px; font-size: 1.1em; }
.knee-banner strong { color: #ffffff; }
.knee-label { font-weight: 600; }
.knee-cite { font-weight: 600; color: #1d4ed8; }
mark.knee-hl { background: #fde68a; color: inherit; padding: 0 2px; border-radius: 2px; }
"""


# --------------------------------------------------------------------------
# Escaping and rendering (pure functions)

# Characters Markdown (and Gradio's $$-LaTeX) give meaning to anywhere in a line.
_MD_INLINE = re.compile(r"([\\`*_\[\]{}$~|])")
# Characters that only matter at the start of a line: headings and lists
# (">" needs nothing: it becomes "&gt;", which starts no quote).
_MD_LINE_START = re.compile(r"(?m)^(\s*)([#+=-]|\d+(?=[.)]))")


def escape_text(text: str) -> str:
    """``text`` as inert Markdown: no HTML tags, no Markdown formatting.

    Markdown punctuation is backslash-escaped first, then ``& < > " '``
    become entities, so ``<script>`` shows as the text ``<script>``.
    """
    def line_start(m: re.Match) -> str:
        indent, mark = m.groups()
        # "1." -> "1\." (an ordered list needs the dot); "#" -> "\#"
        return indent + (mark + "\\" if mark[0].isdigit() else "\\" + mark)

    text = _MD_INLINE.sub(r"\\\1", text)
    text = _MD_LINE_START.sub(line_start, text)
    return html.escape(text, quote=True)


_ESCAPED_MARKER = re.compile(r"\\\[(\d{1,3})\\\]")


def render_reply_text(text: str) -> str:
    """Escape a reply and style its ``[n]`` markers (kept as the text ``[n]``)."""
    return _ESCAPED_MARKER.sub(r'<span class="knee-cite">\\[\1\\]</span>', escape_text(text))


def highlight_passage(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """A passage, escaped, with the character ``spans`` wrapped in ``<mark>``.

    Overlapping or out-of-range spans are clipped and merged; white space is
    folded to single spaces so the passage reads as one paragraph.
    """
    merged: list[list[int]] = []
    for start, end in sorted((max(0, int(s)), min(len(text), int(e))) for s, e in spans):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])

    def plain(segment: str) -> str:
        return escape_text(re.sub(r"\s+", " ", segment))

    out, pos = [], 0
    for start, end in merged:
        out.append(plain(text[pos:start]))
        out.append(f'<mark class="knee-hl">{plain(text[start:end])}</mark>')
        pos = end
    out.append(plain(text[pos:]))
    return "".join(out).strip()


def render_sources(citations: Sequence[Citation]) -> str:
    """Markdown for the sources panel: per citation its title, source, passage."""
    blocks = []
    for c in citations:
        blocks.append(
            f'**<span class="knee-cite">\\[{int(c.n)}\\]</span> {escape_text(c.title or c.source)}**  \n'
            f"*{escape_text(c.source)}*\n\n"
            f"> {highlight_passage(c.text, c.highlights)}"
        )
    return "\n\n".join(blocks)


def render_main(reply: Reply, text: str | None = None, topic: str = "") -> str:
    """The reply's main message for its decision; ``text`` is a streamed prefix."""
    body = render_reply_text(reply.text if text is None else text)
    decision = Decision(reply.decision)
    if decision == Decision.ESCALATE:
        # An HTML block (it ends at the blank line): shown before anything else.
        banner = (f'<div class="knee-banner" role="alert" style="background:#b91c1c;color:#fff;'
                  f'border:3px solid #7f1d1d;border-radius:8px;padding:10px 14px;">'
                  f"<strong>🚨 {html.escape(BANNER_TEXT)}</strong><br>{html.escape(BANNER_SUBTEXT)}</div>")
        return f"{banner}\n\n{body}"
    if decision == Decision.NO_EVIDENCE:
        return f'<span class="knee-label">Not covered by the collection.</span>\n\n{body}'
    if decision in (Decision.OUT_OF_SCOPE, Decision.REFUSE):
        if topic and "help" not in reply.text.lower():
            body += f"\n\n*I can help with questions about {escape_text(topic)}.*"
        return body
    return body


def sources_title(citations: Sequence[Citation]) -> str:
    return f"📚 Sources ({len(citations)}) — cited sentences highlighted"


def exchange_messages(exchange: dict, text: str | None = None, topic: str = "",
                      with_sources: bool = True) -> list[dict]:
    """The chat messages of one question/reply exchange.

    Args:
        exchange: ``{"question": str, "reply": Reply | None}``.
        text: a streamed prefix of the reply text (default: the whole text).
        topic: what the assistant can help with (for declines).
        with_sources: add the collapsible sources message (answers only).
    """
    messages = [{"role": "user", "content": escape_text(exchange["question"])}]
    reply: Reply | None = exchange.get("reply")
    if reply is None:
        return messages
    messages.append({"role": "assistant", "content": render_main(reply, text, topic)})
    if with_sources and reply.citations:
        messages.append({"role": "assistant", "content": render_sources(reply.citations),
                         "metadata": {"title": sources_title(reply.citations)}})
    return messages


def chat_messages(exchanges: Sequence[dict], topic: str = "") -> tuple[list[dict], list[int]]:
    """All messages of a chat, and for each message the index of its exchange."""
    messages: list[dict] = []
    owners: list[int] = []
    for i, ex in enumerate(exchanges):
        ms = exchange_messages(ex, topic=topic)
        messages.extend(ms)
        owners.extend([i] * len(ms))
    return messages, owners


def history_turns(exchanges: Sequence[dict]) -> list[dict]:
    """Earlier exchanges as the ``{"role", "content"}`` turns respond() takes."""
    turns = []
    for ex in exchanges:
        reply = ex.get("reply")
        if reply is None:
            continue
        turns.append({"role": "user", "content": ex["question"]})
        turns.append({"role": "assistant", "content": reply.text})
    return turns


def stream_prefixes(text: str, words: int = STREAM_WORDS) -> Iterator[str]:
    """Growing prefixes of ``text``, cut after every ``words`` words; the last is ``text``."""
    cuts = [m.end() for m in re.finditer(r"\S+\s*", text)]
    for i in range(words - 1, len(cuts), words):
        if cuts[i] < len(text):
            yield text[:cuts[i]]
    yield text


# --------------------------------------------------------------------------
# Answering safely


def check_input(message) -> str | None:
    """A friendly message for input the assistant should not process, else None."""
    if not isinstance(message, str):
        return EMPTY_INPUT_MESSAGE if message is None else None
    if len(message) > MAX_INPUT_CHARS:
        return TOO_LONG_MESSAGE.format(n=len(message))
    printable = "".join(ch for ch in message if unicodedata.category(ch)[0] != "C")
    if not printable.strip():
        return EMPTY_INPUT_MESSAGE
    return None


def safe_respond(assistant, message, history: Sequence = ()) -> Reply:
    """``assistant.respond`` that never raises: problems become a friendly reply."""
    problem = check_input(message)
    if problem is not None:
        return Reply(decision=Decision.OUT_OF_SCOPE, text=problem, reason="bad_input")
    try:
        return assistant.respond(message, list(history))
    except Exception:  # a user must never see a stack trace
        log.exception("respond() failed for a message of %d characters", len(str(message)))
        return Reply(decision=Decision.OUT_OF_SCOPE, text=ERROR_MESSAGE, reason="internal_error")


# --------------------------------------------------------------------------
# Feedback

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"(?<![\w])\+?\(?\d[\d\s().\-/]{5,}\d(?![\w])")


def redact(text: str) -> str:
    """``text`` with e-mail addresses and phone numbers replaced by placeholders."""
    text = _EMAIL.sub("[email]", text)

    def phone(m: re.Match) -> str:
        digits = sum(ch.isdigit() for ch in m.group(0))
        return "[phone]" if 7 <= digits <= 15 else m.group(0)

    return _PHONE.sub(phone, text)


_feedback_lock = threading.Lock()


def record_feedback(path: str | Path, question: str, reply: Reply, rating: str) -> dict:
    """Append one feedback record (redacted) as a JSON line to ``path``.

    Args:
        rating: ``"up"`` or ``"down"`` (or another feedback option's text).
    """
    record = {
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "rating": rating,
        "question": redact(question),
        "reply": redact(reply.text),
        "decision": str(reply.decision),
        "reason": reply.reason,
        "citations": [c.chunk_id for c in reply.citations],
    }
    path = Path(path)
    with _feedback_lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return record


# --------------------------------------------------------------------------
# Uploads


class UploadError(ValueError):
    """An upload that is refused; the message is shown to the admin."""


def sanitize_filename(name: str) -> str:
    """A safe file name: the last path part only, ``[A-Za-z0-9._-]``, no leading dot.

    Raises:
        UploadError: nothing usable is left, or the suffix is not supported.
    """
    base = re.split(r"[\\/]", str(name or ""))[-1]
    # "ü" -> "u": decompose, then keep ASCII only.
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode("ascii")
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base)
    stem, dot, suffix = base.rpartition(".")
    stem = re.sub(r"-{2,}", "-", stem).strip(".-_ ")
    if not dot or not stem:
        raise UploadError(f"{name!r} has no usable file name; supported types: {', '.join(SUPPORTED_SUFFIXES)}")
    suffix = "." + suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UploadError(f"{name!r}: file type {suffix} is not supported; supported: {', '.join(SUPPORTED_SUFFIXES)}")
    return stem[:100] + suffix


def save_upload(src: str | Path, original_name: str, settings) -> tuple[Path, bool]:
    """Validate an uploaded file and copy it into ``settings.corpus_dir``.

    Returns:
        (destination, replaced): where it was written and whether a file of
        that name was replaced.

    Raises:
        UploadError: bad name or type, too large, unreadable or corrupt.
    """
    name = sanitize_filename(original_name)
    src = Path(src)
    size = src.stat().st_size
    limit = settings.upload_max_mb * 2**20
    if size > limit:
        raise UploadError(f"{name}: {size / 2**20:.1f} MB is over the {settings.upload_max_mb} MB upload limit")
    corpus = Path(settings.corpus_dir).resolve()
    dest = (corpus / name).resolve()
    if dest.parent != corpus:  # belt and braces: the name has no separators left
        raise UploadError(f"{original_name!r} would be written outside the corpus folder")
    # Read it the way the index build will, so a corrupt file is refused now
    # and never reaches the corpus.
    staged = src if src.suffix.lower() == dest.suffix else None
    if staged is None:
        raise UploadError(f"{name}: the uploaded file's type does not match its name")
    docs, skipped = load_file(staged, staged.parent)
    if skipped or not docs:
        reason = skipped[0].reason if skipped else "no readable text"
        raise UploadError(f"{name}: cannot be read ({reason}); nothing was added")
    corpus.mkdir(parents=True, exist_ok=True)
    replaced = dest.exists()
    # ".part" is not a corpus suffix, so a build never sees a half-written file.
    tmp = corpus / f".{name}.{secrets.token_hex(3)}.part"
    try:
        tmp.write_bytes(src.read_bytes())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest, replaced


# --------------------------------------------------------------------------
# The app


def _password_ok(given, settings) -> bool:
    expected = settings.admin_password
    return bool(expected) and isinstance(given, str) and hmac.compare_digest(
        given.encode("utf-8"), expected.encode("utf-8"))


def document_rows(assistant) -> list[list]:
    """[title, source, chunks, last indexed] per indexed document."""
    try:
        docs = assistant.index.documents()
    except AssistantError as exc:
        log.warning("cannot list documents: %s", exc)
        return []
    return [[d.get("title", ""), d.get("source", ""), d.get("chunks", 0), d.get("indexed_at", "")]
            for d in sorted(docs, key=lambda d: d.get("source", ""))]


def build_app(assistant, settings, stream_delay: float = STREAM_DELAY):
    """The Gradio app for ``assistant``; launch it with :func:`launch_app`.

    Args:
        assistant: anything with ``respond(message, history) -> Reply``; the
            content tab also uses ``index.documents()``, ``embedder`` and
            ``reload()``.
        settings: a :class:`~assistant.settings.Settings`.
        stream_delay: seconds between streamed chunks (0 in tests).
    """
    topic = settings.topic

    def run_turn(question: str, exchanges: list) -> Iterator[tuple]:
        """Stream one exchange: yields (textbox, state, chatbot)."""
        exchanges = list(exchanges or [])
        pending = {"question": question, "reply": None}
        before, _ = chat_messages(exchanges, topic)
        yield "", exchanges, before + exchange_messages(pending, topic=topic)
        reply = safe_respond(assistant, question, history_turns(exchanges))
        done = {"question": question, "reply": reply}
        for prefix in stream_prefixes(reply.text):
            if prefix != reply.text:
                yield gr.skip(), gr.skip(), before + exchange_messages(done, prefix, topic, with_sources=False)
                if stream_delay:
                    time.sleep(stream_delay)
        exchanges.append(done)
        yield "", exchanges, before + exchange_messages(done, topic=topic)

    def submit(message, exchanges):
        problem = check_input(message)
        if problem is not None:
            gr.Info(problem)
            yield gr.skip(), gr.skip(), gr.skip()
            return
        yield from run_turn(message, exchanges)

    def example(exchanges, evt: gr.SelectData):
        value = evt.value if isinstance(evt.value, str) else (evt.value or {}).get("text", "")
        yield from submit(value, exchanges)

    def retry(exchanges):
        if not exchanges:
            yield gr.skip(), gr.skip(), gr.skip()
            return
        yield from run_turn(exchanges[-1]["question"], exchanges[:-1])

    def undo(exchanges):
        if not exchanges:
            return gr.skip(), gr.skip(), gr.skip()
        rest = exchanges[:-1]
        return exchanges[-1]["question"], rest, chat_messages(rest, topic)[0]

    def clear():
        return "", [], []

    def feedback(exchanges, data: gr.LikeData):
        _, owners = chat_messages(exchanges or [], topic)
        index = data.index if isinstance(data.index, int) else data.index[0]
        if not (0 <= index < len(owners)):
            return
        ex = exchanges[owners[index]]
        if ex.get("reply") is None:
            return
        rating = {True: "up", False: "down"}.get(data.liked, str(data.liked))
        try:
            record_feedback(settings.feedback_path, ex["question"], ex["reply"], rating)
        except OSError:
            log.exception("cannot write feedback to %s", settings.feedback_path)
            gr.Warning("Sorry, your feedback could not be saved.")
            return
        gr.Info("Thank you — your feedback was saved.")

    def api_chat(message: str) -> str:
        """Ask one question; returns the reply text with its [n] citation markers."""
        return safe_respond(assistant, message).text

    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(f"# 🦵 {TITLE}\nAnswers knee questions only from a curated patient-education "
                    "collection, and shows the passages it used.")
        gr.Markdown(f"ℹ️ {STANDING_NOTE}", elem_classes=["knee-note"], elem_id="standing-note")
        with gr.Tab("Chat", id="chat"):
            state = gr.State([])
            chatbot = gr.Chatbot(
                label="Knee Assistant", elem_id="chatbot", height=None, min_height=420,
                max_height="75vh", layout="bubble",
                examples=[{"text": q} for q in EXAMPLE_QUESTIONS],
                placeholder="Ask a question about your knee, or pick an example.",
                feedback_options=("Like", "Dislike"), group_consecutive_messages=True,
                buttons=["copy"],
            )
            with gr.Row():
                box = gr.Textbox(placeholder="Type your knee question and press Enter",
                                 show_label=False, scale=8, elem_id="question", max_lines=6,
                                 autofocus=True, submit_btn=True)
            with gr.Row():
                retry_btn = gr.Button("↻ Retry", size="sm", elem_id="retry")
                undo_btn = gr.Button("↶ Undo", size="sm", elem_id="undo")
                clear_btn = gr.Button("🗑 Clear", size="sm", elem_id="clear")
            outs = [box, state, chatbot]
            common = dict(api_visibility="private", concurrency_limit=4, concurrency_id="chat")
            box.submit(submit, [box, state], outs, **common)
            chatbot.example_select(example, [state], outs, **common)
            retry_btn.click(retry, [state], outs, **common)
            chatbot.retry(retry, [state], outs, **common)
            undo_btn.click(undo, [state], outs, api_visibility="private")
            chatbot.undo(undo, [state], outs, api_visibility="private")
            clear_btn.click(clear, None, outs, api_visibility="private")
            chatbot.clear(clear, None, outs, api_visibility="private")
            chatbot.like(feedback, [state], None, api_visibility="private")
            gr.api(api_chat, api_name="chat", concurrency_limit=4, concurrency_id="chat")

        with gr.Tab("Content", id="content"):
            _content_tab(assistant, settings)
    return demo


def _content_tab(assistant, settings) -> None:
    if not settings.admin_password:
        gr.Markdown(CLI_HELP, elem_id="content-cli-help")
        return

    with gr.Column(visible=True) as locked:
        gr.Markdown("### Content\nEnter the admin password to manage the collection.")
        password = gr.Textbox(type="password", label="Admin password", elem_id="admin-password")
        unlock_btn = gr.Button("Unlock", elem_id="unlock")
        lock_msg = gr.Markdown()
    with gr.Column(visible=False) as admin:
        status = gr.Markdown(elem_id="content-status")
        table = gr.Dataframe(headers=["Title", "Source", "Chunks", "Last indexed"],
                             datatype=["str", "str", "number", "str"], interactive=False,
                             label="Indexed documents", elem_id="documents")
        files = gr.File(label=f"Add documents ({', '.join(SUPPORTED_SUFFIXES)}; up to "
                              f"{settings.upload_max_mb} MB each)",
                        file_count="multiple", file_types=list(SUPPORTED_SUFFIXES), elem_id="upload")
        with gr.Row():
            add_btn = gr.Button("Add to collection", elem_id="add-files")
            rebuild_btn = gr.Button("Rebuild index", variant="primary", elem_id="rebuild")
        gr.Markdown("A rebuild embeds only new or changed documents. The chat keeps answering "
                    "from the current index until the new one is complete.")

    def unlock(given):
        if not _password_ok(given, settings):
            time.sleep(1)  # slows down guessing
            return gr.update(visible=True), gr.update(visible=False), WRONG_PASSWORD, gr.skip()
        return gr.update(visible=False), gr.update(visible=True), "", document_rows(assistant)

    def add(given, uploaded):
        return add_uploads(settings, given, uploaded), None

    def rebuild(given, progress=gr.Progress()):
        def report(stage: str, done: int, total: int) -> None:
            progress((done, total) if total else (1, 1), desc=stage.capitalize(),
                     unit="chunks" if stage == "embedding" else "steps")

        message = rebuild_index(assistant, settings, given, report)
        return message, document_rows(assistant)

    unlock_btn.click(unlock, [password], [locked, admin, lock_msg, table], api_visibility="private")
    password.submit(unlock, [password], [locked, admin, lock_msg, table], api_visibility="private")
    add_btn.click(add, [password, files], [status, files], api_visibility="private")
    # Two may run at once so that the second gets "already running" at once
    # (the index's build lock) instead of silently queueing behind the first.
    rebuild_btn.click(rebuild, [password], [status, table], api_visibility="private",
                      concurrency_limit=2, concurrency_id="rebuild")


WRONG_PASSWORD = "Wrong password."
BUILD_RUNNING = ("⏳ A rebuild is already running. The chat keeps answering from the current "
                 "index; try again when it has finished.")


def add_uploads(settings, password, uploaded) -> str:
    """Save uploaded files into the corpus; one Markdown line per file."""
    if not _password_ok(password, settings):
        return WRONG_PASSWORD
    lines = []
    for item in uploaded or []:
        path = str(getattr(item, "path", None) or getattr(item, "name", None) or item)
        original = getattr(item, "orig_name", None) or Path(path).name
        try:
            dest, replaced = save_upload(path, original, settings)
        except UploadError as exc:
            lines.append(f"❌ {escape_text(str(exc))}")
        except OSError as exc:
            log.exception("upload of %r failed", original)
            lines.append(f"❌ {escape_text(Path(original).name)}: could not be saved ({exc.strerror})")
        else:
            verb = "replaced" if replaced else "added"
            lines.append(f"✅ {escape_text(dest.name)} {verb}. Rebuild the index to make it searchable.")
    return "\n\n".join(lines) or "Choose one or more files first."


def rebuild_index(assistant, settings, password, progress=None) -> str:
    """Update the index incrementally, then swap it in; a Markdown report.

    The chat keeps answering from the old index until the new generation is
    complete; a second request while one runs gets :data:`BUILD_RUNNING`.
    """
    if not _password_ok(password, settings):
        return WRONG_PASSWORD
    from .index import build_index

    try:
        result = build_index(settings, assistant.embedder, incremental=True, progress=progress)
    except BuildInProgressError:
        return BUILD_RUNNING
    except AssistantError as exc:
        return f"❌ Rebuild failed: {escape_text(str(exc))}. The previous index is still live."
    except Exception:
        log.exception("rebuild failed")
        return "❌ Rebuild failed (see the server log). The previous index is still live."
    try:
        assistant.reload()
    except AssistantError as exc:
        return f"❌ The new index could not be opened: {escape_text(str(exc))}"
    lines = [f"✅ Index rebuilt in {result.seconds:.1f} s: {result.documents} documents, "
             f"{result.chunks} passages ({result.embedded_chunks} newly embedded)."]
    for label, names in (("Added", result.added), ("Changed", result.changed), ("Removed", result.removed)):
        if names:
            lines.append(f"{label}: " + ", ".join(escape_text(n) for n in names))
    for s in result.skipped:
        lines.append(f"⚠️ Skipped {escape_text(s.path)}: {escape_text(s.reason)}")
    return "\n\n".join(lines)


def launch_app(demo, settings, **overrides):
    """``demo.launch`` with the settings' host, port, share, CSS and upload limit.

    ``overrides`` go to ``launch`` as they are (e.g. ``prevent_thread_lock``,
    ``server_port``).
    """
    kwargs = dict(server_name=settings.host, server_port=int(settings.port), share=settings.share,
                  css=CSS, max_file_size=f"{int(settings.upload_max_mb)}mb", show_error=False)
    kwargs.update(overrides)
    return demo.launch(**kwargs)


class TerminalProgress:
    """A ``progress(stage, done, total)`` callback drawing one tqdm bar per stage."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.stage: str | None = None
        self.bar = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=max(total, 1), desc=f"{stage:>9}", file=self.stream, leave=True,
                            unit="chunk" if stage == "embedding" else "step", dynamic_ncols=True)
        self.bar.total = max(total, 1)
        self.bar.n = done if total else 1
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def ensure_index(settings, embedder, out=None) -> None:
    """Build or update the index when it is missing or stale, with progress bars."""
    from .index import build_index, index_status

    out = out or sys.stdout
    status = index_status(settings)
    if not status.stale:
        print(f"Index {settings.index_dir}/: {status.documents} documents, {status.chunks} passages, "
              "up to date.", file=out, flush=True)
        return
    why = status.problem or "; ".join(
        f"{label} {', '.join(items)}" for label, items in
        (("added", status.added), ("changed", status.changed), ("removed", status.removed),
         ("settings changed:", status.settings_changed)) if items)
    print(f"Index {settings.index_dir}/ needs building ({why}); building it from "
          f"{settings.corpus_dir}/ ...", file=out, flush=True)
    progress = TerminalProgress()
    try:
        report = build_index(settings, embedder, incremental=True, progress=progress)
    finally:
        progress.close()
    print(f"Built {report.documents} documents, {report.chunks} passages in {report.seconds:.1f} s.",
          file=out, flush=True)
    for skipped in report.skipped:
        print(f"  skipped {skipped.path}: {skipped.reason}", file=out, flush=True)


def serve(settings, **launch_overrides) -> int:
    """Build a missing or stale index, load everything once, and serve the app.

    Raises:
        AssistantError: the model or the index cannot be loaded or built.
    """
    from .embedding import Embedder
    from .pipeline import Assistant

    started = time.perf_counter()
    embedder = Embedder(settings.model, settings.device, settings.batch_size)
    ensure_index(settings, embedder)
    print("Loading the model and the index ...", flush=True)
    assistant = Assistant(settings, embedder=embedder)
    assistant.reload()
    assistant.warm_up()
    demo = build_app(assistant, settings)
    if not settings.admin_password:
        print("Content tab: read the CLI help there (set KNEE_ADMIN_PASSWORD to manage content "
              "in the browser).", flush=True)
    print(f"Ready in {time.perf_counter() - started:.1f} s.", flush=True)
    launch_app(demo, settings, **launch_overrides)
    return 0
