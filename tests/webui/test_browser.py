"""The web UI in a real browser (Debian's chromium, driven by Playwright) against a real server.

A uvicorn server runs `create_app` over the ingested sample corpus with the real models. The
widget is embedded cross-origin, as on a university site: the host page comes from a separate
static server and loads widget.js from the API server with one script tag.

Screenshots go to each test's pytest tmp_path, so a test run leaves the work tree as it was.
To refresh the tracked ones in bench/results/webui-*.png (the README shows them), run with
LECTERN_UPDATE_SCREENSHOTS=1:

    LECTERN_UPDATE_SCREENSHOTS=1 python -m pytest -q tests/webui/test_browser.py

Without chromium or playwright the module is skipped, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import threading
from pathlib import Path

import pytest

from tests.conftest import MODEL_CACHE, ROOT, SAMPLES, free_port, require_or_skip, wait_healthy

CHROMIUM = Path("/usr/bin/chromium")
require_or_skip(
    CHROMIUM.exists(),
    "web UI browser tests need Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
    allow_module_level=True,
)
try:
    from playwright.sync_api import Locator, Page, expect, sync_playwright
except ImportError:
    require_or_skip(
        False,
        "web UI browser tests need the playwright package (pip install playwright; "
        "the browser is Debian's chromium, so never run `playwright install`)",
        allow_module_level=True,
    )

import httpx  # noqa: E402  (after the skips: only needed when the tests run)

from lectern.settings import Settings  # noqa: E402

pytestmark = pytest.mark.integration

TOKEN = "test-token-webui-0123456789"  # ApiSettings.admin_token needs at least 16 characters
QUESTION = "What are the prerequisites for CSC 340?"
TRACKED_SHOTS = ROOT / "bench" / "results"  # written only with LECTERN_UPDATE_SCREENSHOTS=1
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDGET = "#lectern-widget"  # the shadow host; Playwright's CSS locators pierce open shadow roots


# ----------------------------------------------------------------------------- servers --


@pytest.fixture(scope="module")
def host_origin() -> str:
    """The origin of the university page that embeds the widget (served by host_site)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def api_server(tmp_path_factory, host_origin):
    """The Lectern app on 127.0.0.1:<free port>, sample corpus ingested, models loaded;
    the host site's origin is the one its widget may call from (LECTERN_API__CORS_ORIGINS)."""
    import uvicorn

    from api.app import create_app
    from api.service import Lectern

    settings = Settings(
        data_dir=tmp_path_factory.mktemp("webui-data"),
        api={"admin_token": TOKEN, "cors_origins": [host_origin]},
        # The transformers backend: the follow-up check below reads one answer, and the
        # llama.cpp default answers this follow-up "ECB [2]" from the prompt that
        # transformers answers "EUR 3,150 per year [1]" from (the widget is the subject
        # here; the backends' answers are compared in bench/results/).
        models={"cache_dir": MODEL_CACHE, "generator_backend": "transformers"},
    )
    service = Lectern(settings)
    report = service.ingest([SAMPLES])
    assert not report.failed, report.failed

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, service),
            host="127.0.0.1",
            port=free_port(),
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.config.port}"
    wait_healthy(base, thread.is_alive)

    yield {"url": base, "service": service}

    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def host_site(api_server, host_origin, tmp_path_factory):
    """A university page on a different origin that embeds the widget with one script tag."""
    root = tmp_path_factory.mktemp("host-site")
    demo = (ROOT / "webui" / "demo.html").read_text()
    page = demo.replace('src="/widget.js"', f'src="{api_server["url"]}/widget.js"')
    assert page != demo, "demo.html no longer embeds /widget.js"
    (root / "index.html").write_text(page)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", int(host_origin.rsplit(":", 1)[1])),
        functools.partial(Quiet, directory=str(root)),
    )
    thread = threading.Thread(target=httpd.serve_forever, name="host-site", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/index.html"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where this test's screenshots go: its tmp_path, or bench/results when asked to."""
    if os.environ.get("LECTERN_UPDATE_SCREENSHOTS") == "1":
        return TRACKED_SHOTS
    return tmp_path / "screenshots"


def screenshot(page: Page, folder: Path, name: str, **kwargs: object) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.screenshot(path=str(path), **kwargs)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"


# ------------------------------------------------------------------------------ widget --


def widget_focus(page: Page) -> str | None:
    """The class or id of the element focused inside the widget's shadow root."""
    return page.evaluate(
        """(sel) => {
            const host = document.querySelector(sel);
            const el = host && host.shadowRoot && host.shadowRoot.activeElement;
            return el ? (el.id || el.className) : null;
        }""",
        WIDGET,
    )


# Records, on every DOM change in the conversation, the state of the newest answer:
# this is how the test sees tokens arrive before the citations do.
RECORD_UPDATES = """(sel) => {
    const root = document.querySelector(sel).shadowRoot;
    window.__updates = [];
    new MutationObserver(() => {
        const msgs = root.querySelectorAll('.msg.bot[data-state]');
        const msg = msgs[msgs.length - 1];
        if (!msg) return;
        window.__updates.push({
            state: msg.getAttribute('data-state'),
            text: msg.querySelector('.answer').textContent,
            sources: msg.querySelectorAll('.src').length,
            sendDisabled: root.querySelector('.send').disabled,
        });
    }).observe(root.querySelector('.log'),
               {subtree: true, childList: true, characterData: true, attributes: true});
}"""


def test_widget_embedded_cross_origin_streams_an_answer_with_citations(
    page: Page, api_server, host_site, shots
):
    api = api_server["url"]
    assert host_site.split("/")[2] != api.split("/")[2]  # a different origin
    documents = api_server["service"].documents()
    cs = next(d for d in documents if d.source.endswith("bsc-computer-science.html"))

    page.goto(host_site)
    launcher = page.locator(f"{WIDGET} .launcher")
    panel = page.locator(f"{WIDGET} .panel")
    expect(launcher).to_be_visible()
    expect(panel).to_be_hidden()

    # Keyboard only: Tab through the host page to the launcher, Enter opens.
    for _ in range(60):
        page.keyboard.press("Tab")
        if widget_focus(page) == "launcher":
            break
    else:
        pytest.fail("the launcher button is not reachable with Tab")
    expect(launcher).to_have_attribute("aria-expanded", "false")
    page.keyboard.press("Enter")
    expect(panel).to_be_visible()
    expect(launcher).to_have_attribute("aria-expanded", "true")
    assert widget_focus(page) == "lw-input", "focus should move into the question box on open"

    # Esc closes and gives focus back to the launcher; Enter opens again.
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    assert widget_focus(page) == "launcher"
    page.keyboard.press("Enter")
    expect(panel).to_be_visible()
    assert widget_focus(page) == "lw-input"

    # Labelled controls and a live region for the answer.
    assert page.locator(f"{WIDGET} label[for=lw-input]").text_content() == "Your question"
    expect(page.locator(f"{WIDGET} .send")).to_have_attribute("aria-label", "Send question")
    expect(page.locator(f"{WIDGET} [aria-live=polite]")).to_have_count(1)

    page.evaluate(RECORD_UPDATES, WIDGET)
    page.keyboard.type(QUESTION)
    page.keyboard.press("Enter")  # Enter sends
    answer = page.locator(f"{WIDGET} .msg.bot[data-state]").last
    expect(answer).to_have_attribute("data-state", re.compile("done|error"), timeout=300_000)
    assert answer.get_attribute("data-state") == "done", answer.inner_text()
    assert page.locator(f"{WIDGET} .msg.user").last.inner_text() == QUESTION

    updates = page.evaluate("window.__updates")
    streaming = [u for u in updates if u["state"] == "streaming" and u["text"]]
    assert streaming, f"no text was shown while the answer streamed: {updates[:5]}"
    assert all(u["sources"] == 0 for u in streaming), "sources appeared before the stream ended"
    assert all(u["sendDisabled"] for u in updates if u["state"] in ("pending", "streaming"))
    grew = {len(u["text"]) for u in streaming}
    assert len(grew) >= 2, "the answer arrived in one piece, not token by token"
    expect(page.locator(f"{WIDGET} .send")).to_be_disabled()  # enabled again once text is typed
    page.keyboard.type("x")
    expect(page.locator(f"{WIDGET} .send")).to_be_enabled()
    page.keyboard.press("Backspace")

    # A numbered citation linking to the BSc Computer Science page.
    text = answer.locator(".answer").inner_text()
    sources = answer.locator(".src a")
    hrefs = [sources.nth(i).get_attribute("href") or "" for i in range(sources.count())]
    doc_links = [h for h in hrefs if f"/api/v1/documents/{cs.id}/file" in h]
    assert doc_links, (
        f"no citation of {cs.title!r} ({cs.id}); answer {text!r}, source links {hrefs}"
    )
    link = answer.locator(f".src[data-document-id='{cs.id}'] a").first
    expect(link).to_contain_text("BSc Computer Science")
    expect(link.locator(".num")).to_have_text(re.compile(r"^\d+$"))
    expect(link).to_have_attribute("target", "_blank")
    assert doc_links[0].startswith(api), "citation links must point at the API server"
    assert httpx.get(doc_links[0]).status_code == 200
    if answer.get_attribute("data-abstained") != "true":
        assert not re.search(r"\[\d+\]", text), "markers should be rendered as links"

    page.evaluate("window.scrollTo(0, 0)")  # Tab scrolled the host page to its footer
    page.wait_for_timeout(300)  # the panel's open animation
    screenshot(page, shots, "webui-widget.png")

    # Phone width: the panel takes the full screen and nothing overflows sideways.
    page.set_viewport_size({"width": 375, "height": 700})
    page.wait_for_timeout(200)
    box = panel.bounding_box()
    assert box is not None
    assert box["x"] == 0 and box["width"] == 375, box
    assert box["y"] == 0 and box["height"] == 700, box
    overflow = panel.evaluate("p => p.scrollWidth - p.clientWidth")
    assert overflow <= 0, f"the panel overflows sideways by {overflow}px"
    input_box = page.locator(f"{WIDGET} textarea").bounding_box()
    assert input_box is not None and input_box["x"] + input_box["width"] <= 375
    assert input_box["y"] + input_box["height"] <= 700
    screenshot(page, shots, "webui-widget-mobile.png")
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(launcher).to_be_visible()


def sse(*events: tuple[str, object]) -> str:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)


def test_widget_marks_abstentions_and_shows_api_errors(page: Page, api_server, shots):
    """Canned API replies (page.route), so each outcome is certain; on the demo page."""
    api = api_server["url"]
    idk = "I don't know. The documents I have do not answer this question."
    timings = {"retrieve_ms": 1.0, "rerank_ms": 0.0, "generate_ms": 2.0, "total_ms": 3.0}
    replies = [
        {
            "status": 200,
            "content_type": "text/event-stream",
            "body": sse(
                ("token", {"text": "I don't"}),
                ("token", {"text": " know."}),
                ("citations", {"answer": idk, "abstained": True, "citations": []}),
                ("done", {"timings": timings}),
            ),
        },
        {
            "status": 429,
            "content_type": "application/json",
            "headers": {"Retry-After": "17"},
            "body": json.dumps(
                {"error": {"code": "rate_limited", "message": "too many requests; retry in 17 s"}}
            ),
        },
        {
            "status": 200,
            "content_type": "text/event-stream",
            "body": sse(
                ("token", {"text": "Partial answer"}),
                ("error", {"error": {"code": "internal", "message": "generation failed"}}),
            ),
        },
    ]
    asked: list[str] = []

    def reply(route):
        asked.append(json.loads(route.request.post_data or "{}")["question"])
        route.fulfill(**replies.pop(0))

    page.route(f"{api}/api/v1/ask/stream", reply)
    page.goto(f"{api}/")  # the demo page, which embeds the widget with one script tag
    expect(page).to_have_title(re.compile("Fenmoor University"))
    expect(page.get_by_role("note")).to_contain_text("Fictional sample")
    page.locator(f"{WIDGET} .launcher").click()
    messages = page.locator(f"{WIDGET} .msg.bot[data-state]")

    # A suggested question; the answer is an abstention, marked as such.
    page.locator(f"{WIDGET} .chip").first.click()
    expect(messages.nth(0)).to_have_attribute("data-state", "done")
    expect(messages.nth(0)).to_have_attribute("data-abstained", "true")
    expect(messages.nth(0).locator(".label")).to_have_text("Not found in the documents")
    expect(messages.nth(0).locator(".answer")).to_have_text(idk)
    expect(messages.nth(0).locator(".src")).to_have_count(0)
    expect(page.locator(f"{WIDGET} .chip")).to_have_count(0)
    assert asked == ["What are the prerequisites for CSC 340?"]

    # A 429: the rate-limit message, and the question back in the box to resend.
    textarea = page.locator(f"{WIDGET} textarea")
    textarea.fill("When is the library open?")
    page.keyboard.press("Enter")
    expect(messages.nth(1)).to_have_attribute("data-state", "error")
    expect(messages.nth(1)).to_contain_text("Too many questions")
    expect(messages.nth(1)).to_contain_text("17 seconds")
    expect(messages.nth(1).locator("[role=alert]")).to_have_count(1)
    expect(textarea).to_have_value("When is the library open?")
    expect(page.locator(f"{WIDGET} .send")).to_be_enabled()

    # An error event in the middle of the stream keeps the partial text and says why.
    page.keyboard.press("Enter")
    expect(messages.nth(2)).to_have_attribute("data-state", "error")
    expect(messages.nth(2)).to_contain_text("Partial answer")
    expect(messages.nth(2)).to_contain_text("Generation failed")
    expect(page.locator(f"{WIDGET} [aria-live=polite]")).to_contain_text("Generation failed")
    assert asked[1:] == ["When is the library open?"] * 2
    page.wait_for_timeout(300)
    screenshot(page, shots, "webui-widget-states.png")


# -------------------------------------------------------- conversations and feedback --


FIRST = "Tell me about the MSc Data Science programme."
FOLLOW_UP = "And what is the fee for it?"  # only makes sense after FIRST
AFRESH = "How long can I borrow a book from the library?"
COMMENT = "It should say both the home and the international fee."
FEES_PDF = "tuition-fees-and-deadlines-2026-27.pdf"


def ask_widget(page: Page, question: str) -> tuple[Locator, dict]:
    """Ask in the open widget: the finished answer's message, and the body the widget sent."""
    answers = page.locator(f"{WIDGET} .msg.bot[data-state]")
    n = answers.count()
    with page.expect_request(
        lambda r: r.method == "POST" and r.url.endswith("/api/v1/ask/stream")
    ) as request:
        page.locator(f"{WIDGET} textarea").fill(question)
        page.keyboard.press("Enter")
    answer = answers.nth(n)
    expect(answer).to_have_attribute("data-state", re.compile("done|error"), timeout=300_000)
    assert answer.get_attribute("data-state") == "done", answer.inner_text()
    return answer, json.loads(request.value.post_data or "{}")


def logged(api: str) -> dict:
    """The admin Questions view's data, as the API gives it."""
    res = httpx.get(
        f"{api}/api/v1/admin/questions",
        params={"days": 1, "recent": 100},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=120,
    )
    assert res.status_code == 200, res.text
    return res.json()


def citations_of(answer: Locator) -> list[str]:
    sources = answer.locator(".src")
    return [
        f"{sources.nth(i).get_attribute('data-document-id')}: {sources.nth(i).inner_text()}"
        for i in range(sources.count())
    ]


def test_widget_follow_up_feedback_and_new_conversation(page: Page, api_server, host_site, shots):
    """Issue 19's acceptance: a follow-up answered from the right document, a thumbs-down
    with a comment stored and shown on the admin page, and "New conversation" forgetting."""
    api = api_server["url"]
    fees = next(d for d in api_server["service"].documents() if d.source.endswith(FEES_PDF))
    page.goto(host_site)
    page.locator(f"{WIDGET} .launcher").click()

    first, sent = ask_widget(page, FIRST)
    assert sent == {"question": FIRST}, "a first question brings no conversation"
    second, sent = ask_widget(page, FOLLOW_UP)
    assert set(sent) == {"question", "conversation_id"}, sent  # the server keeps the turns
    assert sent["question"] == FOLLOW_UP and sent["conversation_id"]
    first_id = first.get_attribute("data-answer-id")
    second_id = second.get_attribute("data-answer-id")
    assert first_id and second_id and first_id != second_id

    # Answered from the fees document's MSc Data Science section: asked alone, the
    # follow-up finds the general application fee instead.
    entries = {e["id"]: e for e in logged(api)["recent"]}
    searched = entries[second_id]["standalone_question"]
    seen = (
        f"question {FOLLOW_UP!r}, standalone_question {searched!r}, answer "
        f"{second.locator('.answer').inner_text()!r}, citations {citations_of(second)}"
    )
    assert searched != FOLLOW_UP and "Data Science" in searched, seen
    cited = second.locator(f".src[data-document-id='{fees.id}']")
    assert cited.count() >= 1, seen
    expect(cited.first.locator(".src-title")).to_have_text(fees.title)
    assert any("Data Science" in cited.nth(i).inner_text() for i in range(cited.count())), seen

    # Thumbs down (keyboard), then the comment box it opens, with its limit.
    up = second.get_by_role("button", name="Helpful", exact=True)
    down = second.get_by_role("button", name="Not helpful")
    expect(up).to_have_attribute("aria-pressed", "false")
    expect(down).to_have_attribute("aria-pressed", "false")
    down.focus()
    page.keyboard.press("Enter")
    expect(down).to_have_attribute("aria-pressed", "true")
    expect(up).to_have_attribute("aria-pressed", "false")
    box = second.get_by_label("What was wrong or missing? (optional)")
    expect(box).to_be_focused()
    expect(second.locator(".fb-count")).to_have_text("0 / 1000 characters")
    page.keyboard.type(COMMENT)
    expect(second.locator(".fb-count")).to_have_text(f"{len(COMMENT)} / 1000 characters")
    second.get_by_role("button", name="Send", exact=True).click()
    expect(second.locator(".fb-thanks")).to_have_text("Thanks for your comment.")
    expect(box).to_have_count(0)
    expect(down).to_be_focused()
    expect(second.locator(".fb-error")).to_have_count(0)
    page.wait_for_timeout(300)
    screenshot(page, shots, "webui-widget-feedback.png")

    # Stored with the answer, and among what the documents miss.
    data = logged(api)
    entry = next(e for e in data["recent"] if e["id"] == second_id)
    assert (entry["question"], entry["rating"], entry["comment"]) == (FOLLOW_UP, "down", COMMENT)
    assert any(second_id in g["answer_ids"] for g in data["missed"]), data["missed"]
    assert next(e for e in data["recent"] if e["id"] == first_id)["rating"] is None

    # "New conversation": the panel empties, and the next question comes alone.
    page.get_by_role("button", name="New conversation").click()
    expect(page.locator(f"{WIDGET} .msg.user")).to_have_count(0)
    expect(page.locator(f"{WIDGET} .msg.bot[data-state]")).to_have_count(0)
    expect(page.locator(f"{WIDGET} .chip")).to_have_count(3)  # the demo's suggestions again
    assert widget_focus(page) == "lw-input"
    third, sent = ask_widget(page, AFRESH)
    assert sent == {"question": AFRESH}
    third_id = third.get_attribute("data-answer-id")
    entry = next(e for e in logged(api)["recent"] if e["id"] == third_id)
    assert entry["standalone_question"] == AFRESH
    expect(page.locator(f"{WIDGET} .msg.user")).to_have_count(1)

    # The admin page's Questions view shows the question and the comment.
    admin = page.context.new_page()
    errors: list[str] = []
    admin.on("pageerror", lambda e: errors.append(str(e)))
    admin.goto(f"{api}/admin")
    admin.get_by_label("Admin token").fill(TOKEN)
    admin.keyboard.press("Enter")
    expect(admin.locator("#admin-view")).to_be_visible()
    tab = admin.get_by_role("tab", name="Questions")
    tab.click()
    expect(tab).to_have_attribute("aria-selected", "true")
    expect(admin.get_by_role("tab", name="Documents")).to_have_attribute("aria-selected", "false")
    expect(admin.locator("#documents-view")).to_be_hidden()
    expect(admin).to_have_title(re.compile("^Questions"))
    row = admin.locator(f"#recent-body tr[data-answer-id='{second_id}']")
    expect(row.locator(".question")).to_have_text(FOLLOW_UP)
    expect(row.locator(".standalone")).to_have_text(f"Searched for: {searched}")
    expect(row.locator(".rating-cell")).to_have_text("Not helpful")
    expect(row.locator(".comment-cell")).to_have_text(COMMENT)
    # A first question was searched as asked: no second line.
    fresh = admin.locator(f"#recent-body tr[data-answer-id='{third_id}']")
    expect(fresh.locator(".question")).to_have_text(AFRESH)
    expect(fresh.locator(".standalone")).to_have_count(0)
    expect(admin.locator("#missed-body")).to_contain_text(FOLLOW_UP)
    expect(admin.locator("#q-down")).not_to_have_text(re.compile("^[–0]$"))
    admin.wait_for_timeout(200)
    screenshot(admin, shots, "webui-admin-questions.png", full_page=True)

    # Keyboard: the arrow keys move between the tabs; a reload keeps the view.
    tab.focus()
    admin.keyboard.press("ArrowLeft")
    expect(admin.locator("#documents-view")).to_be_visible()
    expect(admin.get_by_role("tab", name="Documents")).to_be_focused()
    admin.keyboard.press("ArrowRight")
    expect(admin.locator("#questions-view")).to_be_visible()
    admin.reload()
    expect(admin.locator("#questions-view")).to_be_visible()
    expect(row.locator(".comment-cell")).to_have_text(COMMENT)

    # The exports: fetched with the token, downloaded as files.
    admin.get_by_label("Period").select_option("7")
    expect(row).to_have_count(1)
    with admin.expect_download() as download:
        admin.get_by_role("button", name="Export JSONL").click()
    assert download.value.suggested_filename == "lectern-questions.jsonl"
    records = [json.loads(line) for line in Path(download.value.path()).read_text().splitlines()]
    record = next(r for r in records if r["id"] == second_id)
    assert (record["rating"], record["comment"]) == ("down", COMMENT)
    admin.get_by_label("Only those not found or rated down").check()
    with admin.expect_download() as download:
        admin.get_by_role("button", name="Export CSV").click()
    assert download.value.suggested_filename == "lectern-questions.csv"
    text = Path(download.value.path()).read_text()
    assert COMMENT in text and second_id in text
    assert third_id not in text, "missed_only: an answered, unrated question is not in it"
    expect(admin.locator("#export-error")).to_have_text("")
    admin.close()
    assert errors == [], f"JavaScript errors on the admin page: {errors}"


def test_widget_keeps_the_conversation_and_restarts_a_forgotten_one(page: Page, api_server):
    """Canned API replies: the server forgets the conversation (404), the widget starts it
    again from the turns it kept; feedback errors show; a reload keeps the turns."""
    api = api_server["url"]
    timings = {"retrieve_ms": 1.0, "rerank_ms": 0.0, "generate_ms": 2.0, "total_ms": 3.0}
    asked: list[dict] = []
    rated: list[dict] = []

    def stream(route):
        body = json.loads(route.request.post_data or "{}")
        asked.append(body)
        if body.get("conversation_id") == "forgotten":
            route.fulfill(
                status=404,
                content_type="application/json",
                body=json.dumps(
                    {
                        "error": {
                            "code": "conversation_not_found",
                            "message": "no conversation 'forgotten' is kept",
                        }
                    }
                ),
            )
            return
        n = len(asked)
        route.fulfill(
            status=200,
            content_type="text/event-stream",
            body=sse(
                ("token", {"text": f"Answer {n}."}),
                (
                    "citations",
                    {
                        "answer": f"Answer {n}.",
                        "abstained": False,
                        "citations": [],
                        "answer_id": f"a{n}",
                        "standalone_question": body["question"],
                        "conversation_id": "forgotten" if n == 1 else f"c{n}",
                    },
                ),
                ("done", {"timings": timings}),
            ),
        )

    feedback_replies = [
        (404, {"error": {"code": "answer_not_found", "message": "no answer with id 'a1'"}}),
        (201, None),
        (422, {"error": {"code": "invalid_request", "message": "comment: over the limit"}}),
        (201, None),
    ]

    def feedback(route):
        body = json.loads(route.request.post_data or "{}")
        rated.append(body)
        status, reply = feedback_replies.pop(0)
        reply = reply or {
            **body,
            "comment": body.get("comment"),
            "rated_at": "2026-01-01T00:00:00Z",
        }
        route.fulfill(status=status, content_type="application/json", body=json.dumps(reply))

    page.route(f"{api}/api/v1/ask/stream", stream)
    page.route(f"{api}/api/v1/feedback", feedback)
    page.goto(f"{api}/")
    page.locator(f"{WIDGET} .launcher").click()
    answers = page.locator(f"{WIDGET} .msg.bot[data-state]")
    for i, question in enumerate(["Q one?", "Q two?", "Q three?"]):
        page.locator(f"{WIDGET} textarea").fill(question)
        page.keyboard.press("Enter")
        expect(answers.nth(i)).to_have_attribute("data-state", "done")
    expect(answers.nth(1).locator(".answer")).to_have_text("Answer 3.")  # no error shown
    assert asked == [
        {"question": "Q one?"},
        {"question": "Q two?", "conversation_id": "forgotten"},  # 404: resent with the turns
        {"question": "Q two?", "history": [{"question": "Q one?", "answer": "Answer 1."}]},
        {"question": "Q three?", "conversation_id": "c3"},
    ]

    # Feedback: an API error shows as the widget shows them, and nothing is marked.
    first = answers.nth(0)
    down = first.get_by_role("button", name="Not helpful")
    down.click()
    expect(first.locator(".fb-error[role=alert]")).to_contain_text("No answer with id 'a1'")
    expect(down).to_have_attribute("aria-pressed", "false")
    down.click()
    expect(down).to_have_attribute("aria-pressed", "true")
    expect(first.locator(".fb-error")).to_have_count(0)
    page.keyboard.type("Wrong.")  # the comment box has the focus
    page.keyboard.press("Control+Enter")
    expect(first.locator(".fb-error")).to_contain_text("This feedback could not be sent")
    expect(first.locator("textarea")).to_have_value("Wrong.")  # kept, to send again
    first.get_by_role("button", name="Send", exact=True).click()
    expect(first.locator(".fb-thanks")).to_have_text("Thanks for your comment.")
    assert rated == [
        {"answer_id": "a1", "rating": "down"},
        {"answer_id": "a1", "rating": "down"},
        {"answer_id": "a1", "rating": "down", "comment": "Wrong."},
        {"answer_id": "a1", "rating": "down", "comment": "Wrong."},
    ]

    # A reload keeps the conversation (this tab's sessionStorage), ratings included.
    page.reload()
    page.locator(f"{WIDGET} .launcher").click()
    expect(page.locator(f"{WIDGET} .msg.user")).to_have_text(["Q one?", "Q two?", "Q three?"])
    expect(answers.locator(".answer")).to_have_text(["Answer 1.", "Answer 3.", "Answer 4."])
    expect(answers.nth(0).get_by_role("button", name="Not helpful")).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(answers.nth(0).get_by_role("button", name="Add a comment")).to_be_hidden()
    expect(page.locator(f"{WIDGET} .chip")).to_have_count(0)
    page.locator(f"{WIDGET} textarea").fill("Q four?")
    page.keyboard.press("Enter")
    expect(answers.nth(3)).to_have_attribute("data-state", "done")
    assert asked[-1] == {"question": "Q four?", "conversation_id": "c4"}

    # New conversation, then a reload: nothing comes back.
    page.get_by_role("button", name="New conversation").click()
    expect(answers).to_have_count(0)
    page.reload()
    page.locator(f"{WIDGET} .launcher").click()
    expect(page.locator(f"{WIDGET} .msg.user")).to_have_count(0)
    page.locator(f"{WIDGET} textarea").fill("Q five?")
    page.keyboard.press("Enter")
    expect(answers.nth(0)).to_have_attribute("data-state", "done")
    assert asked[-1] == {"question": "Q five?"}


# ------------------------------------------------------------------------------- admin --


RECORD_PROGRESS = """() => {
    window.__progress = [];
    const box = document.getElementById('progress');
    const bar = document.getElementById('progress-bar');
    new MutationObserver(() => window.__progress.push(
        {shown: !box.hidden, value: bar.getAttribute('value')}
    )).observe(box, {subtree: true, attributes: true, childList: true, characterData: true});
}"""


def test_admin_sign_in_upload_list_and_delete(page: Page, api_server, tmp_path, shots):
    api = api_server["url"]
    service = api_server["service"]
    before = len(service.documents())
    doc = tmp_path / "parking-permits.md"
    doc.write_text(
        "# Parking Permits (fictional sample)\n\n"
        "Fenmoor University is fictional; this file is a test upload.\n\n"
        "## Prices\n\nA student parking permit costs EUR 120 per academic year. Permits are "
        "sold at the Student Service Desk and are valid for car park P3 only.\n\n"
        "## Bicycles\n\nBicycle parking is free and covered racks stand at every faculty.\n"
    )

    page.goto(f"{api}/admin")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    token = page.get_by_label("Admin token")

    # A wrong token shows the API's 401 message.
    token.focus()
    page.keyboard.type("not-the-right-token-at-all")
    page.keyboard.press("Enter")
    expect(page.locator("#signin-error")).to_have_text(re.compile("admin token is wrong", re.I))
    expect(page.locator("#admin-view")).to_be_hidden()

    token.fill(TOKEN)
    page.keyboard.press("Enter")
    expect(page.locator("#admin-view")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('lectern-admin-token')") == TOKEN
    rows = page.locator("#docs-body tr")
    expect(rows).to_have_count(before)
    expect(page.locator("#health")).to_have_attribute("data-status", "ready")

    # Upload through the file input, with the progress bar.
    page.evaluate(RECORD_PROGRESS)
    page.locator("#files").set_input_files(str(doc))
    expect(page.locator("#chosen li")).to_have_count(1)
    page.get_by_role("button", name="Upload", exact=True).click()
    result = page.locator("#results-body tr")
    expect(result).to_have_count(1, timeout=120_000)
    expect(result).to_have_attribute("data-status", "added")
    expect(result).to_contain_text("parking-permits.md")
    progress = page.evaluate("window.__progress")
    assert any(p["shown"] for p in progress), "the progress bar never showed"
    expect(page.locator("#progress")).to_be_hidden()

    # Listed (refreshed after the upload) with its chunk count.
    uploaded = next(d for d in service.documents() if d.source.endswith("parking-permits.md"))
    assert uploaded.chunk_count > 0
    row = page.locator(f"#docs-body tr[data-document-id='{uploaded.id}']")
    expect(rows).to_have_count(before + 1)
    expect(row.locator(".title-cell")).to_contain_text("Parking Permits")
    expect(row.locator(".source-cell")).to_have_text("parking-permits.md")
    expect(row.locator(".chunks-cell")).to_have_text(str(uploaded.chunk_count))
    expect(row.locator("time")).not_to_be_empty()
    page.wait_for_timeout(200)
    screenshot(page, shots, "webui-admin.png", full_page=True)

    # Delete, keyboard only: Esc in the confirmation keeps the document...
    delete = row.get_by_role("button", name=re.compile("^Delete Parking Permits"))
    delete.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("#confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Parking Permits")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(delete).to_be_focused()
    expect(rows).to_have_count(before + 1)

    # ...and confirming removes it.
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    confirm = dialog.get_by_role("button", name="Delete", exact=True)
    confirm.focus()
    page.keyboard.press("Enter")
    # A delete saves the index with fsync; after the whole suite's writes that can take
    # seconds, so it gets longer than playwright's default 5 s. A failed delete fails here
    # with the message the page shows.
    outcome = page.locator("#status:has-text('Deleted'), #upload-error:not(:empty)")
    expect(outcome.first).to_be_visible(timeout=30_000)
    expect(page.locator("#upload-error")).to_have_text("")
    expect(row).to_have_count(0)
    expect(rows).to_have_count(before)
    assert all(d.id != uploaded.id for d in service.documents())

    # The token also works for the API directly; the page used the same one.
    listed = httpx.get(f"{api}/api/v1/documents", headers={"Authorization": f"Bearer {TOKEN}"})
    assert uploaded.id not in json.dumps(listed.json())
