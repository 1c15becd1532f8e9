"""The REST API with fake models: every limit, auth rule and error shape, and the flows."""

import json
import threading

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.service import Lectern
from lectern.errors import NotReadyError
from lectern.settings import ApiSettings, IngestSettings, Settings
from tests.api import fake_app
from tests.api.fake_app import AUTH, TOKEN
from tests.conftest import SAMPLES, write_docx
from tests.fakes import EchoGenerator, HashEmbedder, WindowedEmbedder, word_count


def make_client(
    tmp_path,
    reply="The international tuition fee is EUR 16,800 per year [1] [7].",
    generator=None,
    settings=None,
    **api,
):
    settings = settings or Settings(
        data_dir=tmp_path / "data",
        ingest=IngestSettings(max_file_mb=0.05),
        api=ApiSettings(admin_token=TOKEN, **api),
    )
    svc = Lectern(settings, embedder=HashEmbedder(64), generator=generator or EchoGenerator(reply))
    svc.ingest([SAMPLES / "pdf", SAMPLES / "markdown"])
    return TestClient(create_app(settings, svc))


def wait_ready(client) -> None:
    fake_app.wait_ready(client.get)


@pytest.fixture
def client(tmp_path):
    with make_client(tmp_path) as c:
        wait_ready(c)
        yield c


def assert_error(resp, status, code, fragment=""):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert fragment in body["error"]["message"]


def sse_events(raw):
    """(event, data) pairs of a text/event-stream body."""
    events = []
    for block in raw.strip().split("\n\n"):
        event, data = block.split("\n")
        events.append((event.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


def stream(client, question, **kwargs):
    with client.stream("POST", "/api/v1/ask/stream", json={"question": question}, **kwargs) as r:
        return r, "".join(r.iter_text())


TIMINGS = {"retrieve_ms", "rerank_ms", "generate_ms", "total_ms"}


def assert_timings(timings):
    """The timings the API reports: every field, each a number (their values are not tested)."""
    assert set(timings) == TIMINGS
    assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in timings.values())


def test_ask_returns_answer_citations_and_timings(client):
    r = client.post("/api/v1/ask", json={"question": "International fee for MSc Data Science?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert not body["abstained"]
    assert "[7]" not in body["answer"], "a number that was not in the prompt is dropped"
    assert [c["number"] for c in body["citations"]] == [1]
    cite = body["citations"][0]
    assert cite["title"].startswith("Tuition Fees")
    assert cite["url"].startswith(f"/api/v1/documents/{cite['document_id']}/file")
    assert_timings(body["timings"])


def test_stream_sends_tokens_then_citations_then_done(client):
    r, raw = stream(client, "International fee for MSc Data Science?")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(raw)
    kinds = [k for k, _ in events]
    assert kinds[-2:] == ["citations", "done"] and set(kinds[:-2]) == {"token"}
    assert len(kinds) > 4
    streamed = "".join(d["text"] for k, d in events if k == "token")
    assert "EUR 16,800" in streamed
    assert events[-2][1]["citations"][0]["number"] == 1
    assert set(events[-1][1]) == {"timings"}
    assert_timings(events[-1][1]["timings"])


class FailingGenerator(EchoGenerator):
    """Streams one token, then fails the way a generator that lost its model does."""

    def stream(self, messages):
        yield "The fee "
        raise NotReadyError("the generator went away mid-answer")


def test_an_error_mid_stream_is_an_error_event(tmp_path):
    with make_client(tmp_path, generator=FailingGenerator()) as c:
        wait_ready(c)
        r, raw = stream(c, "International fee for MSc Data Science?")
    assert r.status_code == 200, "the headers were sent before the error"
    events = sse_events(raw)
    assert events == [
        ("token", {"text": "The fee "}),
        (
            "error",
            {"error": {"code": "not_ready", "message": "the generator went away mid-answer"}},
        ),
    ], "the error ends the stream: no citations and no done after it"


def test_ungrounded_answer_is_replaced_by_a_quoted_sentence(tmp_path):
    with make_client(tmp_path, reply="The fee is EUR 99,999 per year [1].") as c:
        wait_ready(c)
        body = c.post("/api/v1/ask", json={"question": "MSc Data Science international fee"}).json()
    assert "99,999" not in body["answer"]
    assert body["citations"] and body["answer"].endswith(f"[{body['citations'][0]['number']}]")


def test_model_saying_it_does_not_know_abstains(tmp_path):
    with make_client(tmp_path, reply="I don't know.") as c:
        wait_ready(c)
        body = c.post("/api/v1/ask", json={"question": "Who won the 1998 World Cup?"}).json()
    assert body["abstained"] and body["citations"] == []


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"question": "x" * 501}, "over the limit of 500"),
        ({"question": "   "}, "must not be blank"),
        ({"question": ""}, "question: String should have at least 1 character"),
        ({"question": "fees?", "top_k": 0}, "top_k: Input should be greater than or equal to 1"),
        ({"question": "fees?", "top_k": 21}, "21 is over the limit of 20"),
        ({"top_k": 3}, "question: Field required"),
    ],
)
def test_ask_limits(client, payload, fragment):
    assert_error(client.post("/api/v1/ask", json=payload), 422, "invalid_request", fragment)
    assert_error(client.post("/api/v1/ask/stream", json=payload), 422, "invalid_request", fragment)


def ask_status(client, path="/api/v1/ask"):
    return client.post(path, json={"question": "fee?"}).status_code


def test_rate_limit_per_client(tmp_path, clock):
    with make_client(tmp_path, rate_limit_per_minute=3) as c:
        wait_ready(c)
        first = TestClient(c.app, client=("10.0.0.1", 5000))
        second = TestClient(c.app, client=("10.0.0.2", 5000))
        assert [ask_status(first) for _ in range(3)] == [200, 200, 200]
        r = first.post("/api/v1/ask", json={"question": "fee?"})
        assert_error(r, 429, "rate_limited", "too many requests")
        # Another address has its own three requests, then is limited on its own.
        assert [ask_status(second) for _ in range(4)] == [200, 200, 200, 429]
        assert ask_status(first) == 429


def test_rate_limit_hits_expire_after_a_minute(tmp_path, clock):
    with make_client(tmp_path, rate_limit_per_minute=2) as c:
        wait_ready(c)
        start = clock.now
        assert ask_status(c) == 200  # t=0
        clock.now = start + 20
        assert ask_status(c) == 200  # t=20
        clock.now = start + 30
        r = c.post("/api/v1/ask", json={"question": "fee?"})
        assert_error(r, 429, "rate_limited", "retry in 30 s")
        assert r.headers["Retry-After"] == "30", "until the oldest hit (t=0) leaves the window"
        clock.now = start + 60
        assert ask_status(c) == 200, "the hit at t=0 has expired"
        r = c.post("/api/v1/ask", json={"question": "fee?"})
        assert r.status_code == 429 and r.headers["Retry-After"] == "20"  # t=20 leaves at 80
        clock.now = start + 140
        assert [ask_status(c) for _ in range(3)] == [200, 200, 429]


def test_ask_and_ask_stream_share_one_limit(tmp_path, clock):
    with make_client(tmp_path, rate_limit_per_minute=3) as c:
        wait_ready(c)
        assert ask_status(c) == 200
        assert ask_status(c, "/api/v1/ask/stream") == 200
        assert ask_status(c, "/api/v1/ask/stream") == 200
        assert_error(c.post("/api/v1/ask", json={"question": "fee?"}), 429, "rate_limited")
        r = c.post("/api/v1/ask/stream", json={"question": "fee?"})
        assert_error(r, 429, "rate_limited", "too many requests")
        assert r.headers["Retry-After"] == "60"
        assert r.headers["content-type"].startswith("application/json"), "refused before streaming"


def test_rate_limit_zero_is_off(tmp_path, clock):
    with make_client(tmp_path, rate_limit_per_minute=0) as c:
        wait_ready(c)
        assert {ask_status(c) for _ in range(40)} == {200}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/documents"),
        ("post", "/api/v1/documents"),
        ("delete", "/api/v1/documents/abc"),
    ],
)
def test_admin_routes_need_the_token(client, method, path):
    assert_error(getattr(client, method)(path), 401, "unauthorized", "Bearer")
    wrong = getattr(client, method)(path, headers={"Authorization": "Bearer nope"})
    assert_error(wrong, 401, "unauthorized", "wrong")
    assert wrong.headers["WWW-Authenticate"] == "Bearer"


def test_upload_limits(client, tmp_path):
    big = ("files", ("big.txt", b"word " * 20_000, "text/plain"))
    assert_error(
        client.post("/api/v1/documents", headers=AUTH, files=[big]),
        413,
        "file_too_large",
        "upload limit",
    )
    png = ("files", ("logo.png", b"\x89PNG....", "image/png"))
    ok = ("files", ("ok.md", b"# Ok\n\nFine.\n", "text/markdown"))
    assert_error(
        client.post("/api/v1/documents", headers=AUTH, files=[ok, png]),
        415,
        "unsupported_file_type",
        "'.png'",
    )
    listed = client.get("/api/v1/documents", headers=AUTH).json()["documents"]
    assert all(d["title"] != "Ok" for d in listed), "a rejected request ingests nothing"
    many = [("files", (f"f{i}.md", b"# T\n\ntext\n", "text/markdown")) for i in range(21)]
    assert_error(
        client.post("/api/v1/documents", headers=AUTH, files=many),
        422,
        "invalid_request",
        "the limit is 20",
    )
    corrupt = ("files", ("broken.pdf", b"%PDF-1.4 nonsense", "application/pdf"))
    assert_error(
        client.post("/api/v1/documents", headers=AUTH, files=[corrupt]),
        422,
        "invalid_request",
        "broken.pdf",
    )


def upload(client, *files):
    return client.post(
        "/api/v1/documents",
        headers=AUTH,
        files=[("files", (name, data, "application/octet-stream")) for name, data in files],
    )


def documents(client):
    return {d["id"]: d for d in client.get("/api/v1/documents", headers=AUTH).json()["documents"]}


def test_an_upload_with_a_good_and_a_bad_file_ingests_the_good_one(client):
    good = b"# Parking\n\nThe Fenmoor staff car park permit costs EUR 240 per semester.\n"
    r = upload(client, ("parking.md", good), ("empty.md", b""))
    assert r.status_code == 200, "one file was ingested, so the upload as a whole succeeded"
    ok, bad = r.json()["results"]
    assert ok["filename"] == "parking.md" and ok["status"] == "added" and ok["chunks"] >= 1
    assert not ok["detail"]
    assert bad == {
        "filename": "empty.md",
        "status": "failed",
        "document_id": None,
        "chunks": 0,
        "truncated_chunks": 0,
        "detail": "file is empty",
    }
    listed = documents(client)
    assert listed[ok["document_id"]]["chunk_count"] == ok["chunks"]
    assert not any(d["source"].endswith("empty.md") for d in listed.values())
    hits = client.app.state.service.search("staff car park permit per semester", top_k=3)
    assert hits[0].chunk.document_id == ok["document_id"]
    uploads = client.app.state.settings.upload_dir
    assert sorted(p.name for p in uploads.iterdir()) == ["parking.md"], "no failed or .part file"


def docx_bytes(tmp_path, text):
    return write_docx(tmp_path / "regs.docx", "Retakes", [text]).read_bytes()


@pytest.mark.parametrize(
    ("name", "good", "bad", "reason"),
    [
        (
            "a.md",
            lambda _: b"# Parking\n\nThe staff car park permit costs EUR 240 per semester.\n",
            b"",
            "file is empty",
        ),
        (
            "regs.docx",
            lambda tmp: docx_bytes(tmp, "The staff car park permit costs EUR 240 per semester."),
            b"PK\x03\x04 truncated",
            "not a DOCX",
        ),
    ],
    ids=["empty-markdown", "corrupt-docx"],
)
def test_a_failed_reupload_keeps_the_earlier_file(client, tmp_path, name, good, bad, reason):
    good = good(tmp_path)
    first = upload(client, (name, good))
    assert first.status_code == 200, first.text
    (added,) = first.json()["results"]
    before = documents(client)[added["document_id"]]

    failed = upload(client, (name, bad))
    assert_error(failed, 422, "invalid_request", f"{name}: {reason}")

    after = documents(client)
    assert after[added["document_id"]] == before, "the stored document is the earlier version"
    path = client.app.state.settings.upload_dir / name
    assert path.read_bytes() == good, "the file on disk is the earlier version"
    served = client.get(f"/api/v1/documents/{added['document_id']}/file")
    assert served.status_code == 200 and served.content == good
    hits = client.app.state.service.search("staff car park permit per semester", top_k=3)
    assert hits[0].chunk.document_id == added["document_id"]
    assert sorted(p.name for p in path.parent.iterdir()) == [name], "no .part file is left"


@pytest.mark.parametrize(("window", "all_cut"), [(8, True), (512, False)])
def test_an_upload_says_how_many_chunks_the_encoder_reads_only_in_part(tmp_path, window,
                                                                       all_cut):
    settings = Settings(
        data_dir=tmp_path / "data",
        ingest=IngestSettings(chunk_tokens=40, chunk_overlap=4, min_section_tokens=8),
        api=ApiSettings(admin_token=TOKEN),
    )
    # A window of 8 words is smaller than the heading plus the least chunk the chunker
    # makes (all but the heading's own short chunk are cut); one of 512 cuts none.
    svc = Lectern(settings, embedder=WindowedEmbedder(window), generator=EchoGenerator("x"))
    body = "\n\n".join(" ".join(f"p{j}w{i}" for i in range(30)) for j in range(4))
    with TestClient(create_app(settings, svc)) as c:
        wait_ready(c)
        r = upload(c, ("handbook.md", f"# Module handbook\n\n{body}\n".encode()))
        assert r.status_code == 200, r.text
        (result,) = r.json()["results"]
        over = [c for c in svc.store.all_chunks() if 2 + word_count(c.model_text) > window]
    assert result["status"] == "added" and result["chunks"] >= 3
    assert result["truncated_chunks"] == len(over)
    assert (len(over) >= result["chunks"] - 1) if all_cut else not over


def test_upload_ask_delete(client):
    doc = b"# Parking\n\nThe Fenmoor staff car park permit costs EUR 240 per semester.\n"
    r = client.post(
        "/api/v1/documents", headers=AUTH, files=[("files", ("parking.md", doc, "text/markdown"))]
    )
    assert r.status_code == 200, r.text
    (result,) = r.json()["results"]
    assert result["status"] == "added" and result["chunks"] >= 1
    doc_id = result["document_id"]
    listed = {d["id"]: d for d in client.get("/api/v1/documents", headers=AUTH).json()["documents"]}
    assert listed[doc_id]["chunk_count"] == result["chunks"]

    file = client.get(f"/api/v1/documents/{doc_id}/file")
    assert file.status_code == 200 and file.content == doc
    assert file.headers["content-security-policy"] == "sandbox"

    def cited(question):
        body = client.post("/api/v1/ask", json={"question": question, "top_k": 5}).json()
        return {c["document_id"] for c in body["citations"]}

    client.app.state.service._generator.reply = "A permit costs EUR 240 per semester [1]."
    assert doc_id in cited("How much is the car park permit per semester?")
    gone = client.delete(f"/api/v1/documents/{doc_id}", headers=AUTH)
    assert gone.status_code == 200 and gone.json()["deleted"]["id"] == doc_id
    assert doc_id not in cited("How much is the car park permit per semester?")
    assert_error(client.get(f"/api/v1/documents/{doc_id}/file"), 404, "document_not_found")
    assert_error(
        client.delete(f"/api/v1/documents/{doc_id}", headers=AUTH), 404, "document_not_found"
    )
    assert not (client.app.state.settings.upload_dir / "parking.md").exists()


def test_health_is_503_until_the_models_are_warm(tmp_path):
    gate = threading.Event()

    class SlowGenerator(EchoGenerator):
        def warm_up(self):
            gate.wait(10)

    settings = Settings(data_dir=tmp_path / "d", api=ApiSettings(admin_token=TOKEN))
    svc = Lectern(settings, embedder=HashEmbedder(64), generator=SlowGenerator("x"))
    with TestClient(create_app(settings, svc)) as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "starting"
        assert_error(c.post("/api/v1/ask", json={"question": "fee?"}), 503, "not_ready")
        gate.set()
        wait_ready(c)
        assert c.get("/health").json() == {"status": "ready", "documents": 0, "chunks": 0}


def test_cors_allows_the_configured_origins_only(tmp_path, monkeypatch):
    allowed, other = "https://www.fenmoor.example", "https://evil.example"
    monkeypatch.setenv("LECTERN_API__CORS_ORIGINS", json.dumps([allowed]))
    monkeypatch.setenv("LECTERN_API__ADMIN_TOKEN", TOKEN)
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.api.cors_origins == [allowed]
    with make_client(tmp_path, settings=settings) as c:
        wait_ready(c)

        def preflight(origin):
            return c.options(
                "/api/v1/ask/stream",
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type",
                },
            )

        ok = preflight(allowed)
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == allowed
        assert "POST" in ok.headers["access-control-allow-methods"]
        refused = preflight(other)
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers

        asked = c.post("/api/v1/ask", json={"question": "fee?"}, headers={"Origin": allowed})
        assert asked.status_code == 200
        assert asked.headers["access-control-allow-origin"] == allowed
        assert "Retry-After" in asked.headers["access-control-expose-headers"]
        foreign = c.post("/api/v1/ask", json={"question": "fee?"}, headers={"Origin": other})
        assert "access-control-allow-origin" not in foreign.headers


def test_cors_allows_no_other_origin_by_default(client):
    # The default is the server's own origin only (see tests/api/test_origins.py).
    r = client.post(
        "/api/v1/ask", json={"question": "fee?"}, headers={"Origin": "https://any.example"}
    )
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers


def test_openapi_documents_every_route(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths) >= {
        "/api/v1/ask",
        "/api/v1/ask/stream",
        "/api/v1/documents",
        "/api/v1/documents/{document_id}",
        "/api/v1/documents/{document_id}/file",
        "/health",
    }
    assert "422" in paths["/api/v1/ask"]["post"]["responses"]
    assert "401" in paths["/api/v1/documents"]["get"]["responses"]


def test_unknown_route_is_a_json_404(client):
    assert_error(client.get("/api/v1/nothing"), 404, "not_found")
