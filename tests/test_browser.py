"""The web chat in a real headless Chromium (Debian's), driven by Playwright.

One app over the real model and the seed index is launched per module; the
injection test uses a second app whose assistant returns a hostile passage.
Screenshots go to ``test-output/``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from conftest import EMERGENCY, EVIL, PASSWORD, QUESTION, free_port
from assistant import webapp
from assistant.schema import Citation, Decision, Reply

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("KNEE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OUT = Path(__file__).resolve().parent.parent / "test-output"



if not Path(CHROMIUM).exists():  # pragma: no cover - the CI image installs it
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory, seed_index, real_embedder):
    """The real app over private copies of the seed index and corpus; (url, settings)."""
    from assistant.index import load_index
    from assistant.pipeline import Assistant

    root = tmp_path_factory.mktemp("browser-app")
    shutil.copytree(seed_index.corpus_dir, root / "corpus")
    shutil.copytree(seed_index.index_dir, root / "index")
    s = seed_index.replace(feedback_path=str(root / "feedback" / "feedback.jsonl"),
                           corpus_dir=str(root / "corpus"), index_dir=str(root / "index"),
                           admin_password=PASSWORD)
    assistant = Assistant(s, embedder=real_embedder, index=load_index(s.index_dir, real_embedder.model_name))
    demo = webapp.build_app(assistant, s)
    _, url, _ = webapp.launch_app(demo, s, prevent_thread_lock=True, server_port=free_port(), quiet=True)
    yield url, s
    demo.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 1300})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    context.close()


def open_chat(page, url):
    page.goto(url)
    page.wait_for_selector("#question textarea")


def ask(page, question: str) -> None:
    page.fill("#question textarea", question)
    page.press("#question textarea", "Enter")


def bot_texts(page) -> list[str]:
    return page.eval_on_selector_all("#chatbot [data-testid='bot']", "els => els.map(e => e.innerText)")


def wait_for_reply(page, n: int = 1, timeout: float = 30) -> str:
    """Wait until the n-th question has a reply that stopped changing; return the chat text."""
    deadline = time.monotonic() + timeout
    last, stable = None, 0
    while time.monotonic() < deadline:
        users = page.locator("#chatbot [data-testid='user']").count()
        text = page.locator("#chatbot").inner_text() if users == n else None
        replied = users == n and page.locator("#chatbot [data-testid='bot']").count() >= n
        stable = stable + 1 if replied and text == last else 0
        if stable >= 4:  # unchanged for about a second
            return text
        last = text
        page.wait_for_timeout(250)
    raise AssertionError(f"no complete reply to question {n} within {timeout} s")


def shot(page, name: str) -> Path:
    OUT.mkdir(exist_ok=True)
    path = OUT / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_answer_streams_with_markers_and_highlighted_sources(page, app):
    url, settings = app
    open_chat(page, url)
    ask(page, QUESTION)
    # Watch the reply grow: a streamed reply is seen at several lengths.
    lengths = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        texts = bot_texts(page)
        if texts:
            lengths.add(len(texts[0]))
        if page.locator("#chatbot mark.knee-hl").count():
            break
        page.wait_for_timeout(40)
    assert len(lengths) >= 3, f"reply did not stream: lengths seen {sorted(lengths)}"
    wait_for_reply(page)
    reply = bot_texts(page)[0]
    assert "[1]" in reply and "physiotherapist or doctor" in reply
    assert page.locator("#chatbot .knee-cite").first.inner_text() == "[1]"
    sources = page.get_by_text("Sources (", exact=False)
    assert sources.count() >= 1
    mark = page.locator("#chatbot mark.knee-hl").first
    assert mark.is_visible() and len(mark.inner_text()) > 20
    assert page.locator("#standing-note").inner_text().count("not a diagnosis") == 1
    shot(page, "browser-answer.png")

    # Thumbs up is stored as a JSON line.
    page.locator("#chatbot button[aria-label='Like']").last.click()
    feedback = Path(settings.feedback_path)
    for _ in range(50):
        if feedback.exists() and feedback.read_text().strip():
            break
        time.sleep(0.1)
    record = json.loads(feedback.read_text().splitlines()[-1])
    assert record["rating"] == "up" and record["question"] == QUESTION and record["decision"] == "answer"


def test_emergency_shows_the_red_banner_first(page, app):
    url, _ = app
    open_chat(page, url)
    ask(page, EMERGENCY)
    banner = page.locator("#chatbot .knee-banner")
    banner.wait_for(state="visible")
    wait_for_reply(page)
    assert "Seek urgent medical care now" in banner.inner_text()
    color = banner.evaluate("e => getComputedStyle(e).backgroundColor")
    assert color == "rgb(185, 28, 28)"
    reply = bot_texts(page)[0]
    assert reply.index("Seek urgent medical care now") < reply.lower().index("emergency department")
    assert page.locator("#chatbot mark.knee-hl").count() == 0
    shot(page, "browser-emergency.png")


def test_example_then_follow_up_retry_and_clear(page, app):
    url, _ = app
    open_chat(page, url)
    page.locator("#chatbot").get_by_text("What does the VMO do?").click()
    wait_for_reply(page, 1)
    ask(page, "What is the capital of France?")
    wait_for_reply(page, 2)
    assert len(page.locator("#chatbot [data-testid='user']").all()) == 2
    page.click("#retry")
    wait_for_reply(page, 2)
    assert len(page.locator("#chatbot [data-testid='user']").all()) == 2
    page.click("#clear")
    page.wait_for_function("document.querySelectorAll(\"#chatbot [data-testid='user']\").length == 0")


def test_content_tab_uploads_and_rebuilds(page, app, tmp_path):
    url, settings = app
    open_chat(page, url)
    page.get_by_role("tab", name="Content").click()
    page.fill("#admin-password input", "wrong")
    page.click("#unlock")
    page.get_by_text("Wrong password.").wait_for()
    assert not page.locator("#documents").is_visible()
    page.fill("#admin-password input", PASSWORD)
    page.click("#unlock")
    cell = page.locator("#documents [data-testid='cell-0-1']")
    cell.wait_for()
    assert "vmo-vastus-medialis-obliques.txt" in cell.inner_text()

    good = tmp_path / "knee braces.txt"
    good.write_text("Knee braces\n\nA soft brace can support the kneecap during sport. "
                    "A physiotherapist can advise which brace suits you.\n")
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"%PDF-1.4 not really a pdf")
    page.locator("#upload input[type=file]").set_input_files([str(good), str(bad)])
    page.wait_for_timeout(1500)  # the upload itself
    page.click("#add-files")
    status = page.locator("#content-status")
    status.get_by_text("knee-braces.txt added").wait_for()
    assert "broken.pdf: cannot be read" in status.inner_text()
    assert sorted(p.name for p in Path(settings.corpus_dir).iterdir()) == [
        "knee-braces.txt", "vmo-vastus-medialis-obliques.txt"]

    page.click("#rebuild")
    # the rebuild embeds the new document and fits the query adapter again
    status.get_by_text("Index rebuilt").wait_for(timeout=240_000)
    assert "Added: knee-braces.txt" in status.inner_text()
    page.locator("#documents").get_by_text("knee-braces.txt").last.wait_for(state="attached")
    shot(page, "browser-content.png")


class EvilAssistant:
    """Returns a reply and a source full of markup."""

    def respond(self, message, history=()):
        cit = Citation(1, "evil-1", "evil.md", "<i>Evil</i> <script>window.__pwned=3</script>", EVIL,
                       ((0, 6),))
        return Reply(Decision.ANSWER, "Squats <b>help</b> <img src=y onerror='window.__pwned=4'> [1].", (cit,))


@pytest.fixture(scope="module")
def evil_url(tmp_path_factory):
    from assistant.settings import Settings

    root = tmp_path_factory.mktemp("evil-app")
    s = Settings(feedback_path=str(root / "feedback.jsonl"), corpus_dir=str(root / "corpus"))
    demo = webapp.build_app(EvilAssistant(), s, stream_delay=0)
    _, url, _ = webapp.launch_app(demo, s, prevent_thread_lock=True, server_port=free_port(), quiet=True)
    yield url
    demo.close()


def test_markup_in_sources_is_shown_as_text(page, evil_url):
    open_chat(page, evil_url)
    ask(page, "<script>window.__pwned=5</script> squats?")
    page.locator("#chatbot mark.knee-hl").first.wait_for()
    wait_for_reply(page)
    page.wait_for_timeout(500)
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#chatbot script").count() == 0
    assert page.locator("#chatbot img").count() == 0
    assert page.locator("#chatbot i, #chatbot b").count() == 0
    text = page.locator("#chatbot").inner_text()
    assert "<script>window.__pwned=1</script>" in text and "<b>help</b>" in text
    assert "<i>Evil</i>" in text and "*bold*" in text
    shot(page, "browser-escaping.png")
    # The content tab without an admin password explains the CLI.
    page.get_by_role("tab", name="Content").click()
    assert "knee-assistant index update" in page.locator("#content-cli-help").inner_text()
