"""Limits before work (issue 15 case 2): a request is judged on its headers, not its body.

At the ASGI level the body is handed to the app in chunks as it asks, and the chunks it
pulled are counted; a real uvicorn on loopback then shows that a server serving the app
stops reading a refused body: it reads under 1 MiB of a 300 MB one.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import threading

import pytest
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.app import create_app
from api.body_limits import BodyLimits, upload_cap
from api.service import Lectern
from lectern.settings import ApiSettings, IngestSettings, Settings
from tests.fakes import EchoGenerator, HashEmbedder

TOKEN = "test-admin-token-0123456789"
HUGE = 300 * 2**20  # `truncate -s 300M huge.pdf`
CHUNK = 64 * 1024
MIB = 2**20
BOUNDARY = "lectern-test-boundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
# What `curl -F files=@huge.pdf` sends first: the body is a well-formed file part.
PART_HEAD = (
    f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"huge.pdf\"\r\n"
    "Content-Type: application/pdf\r\n\r\n"
).encode()


class Body:
    """A request body of `size` bytes handed out CHUNK at a time; `pulled` counts them."""

    def __init__(self, size: int, head: bytes = b"") -> None:
        self.size = size
        self.head = head
        self.pulled = 0

    async def receive(self) -> dict:
        if self.pulled >= self.size:
            await asyncio.sleep(3600)  # as a server does: nothing more until a disconnect
        n = min(CHUNK, self.size - self.pulled)
        start = self.pulled
        self.pulled += n
        chunk = (self.head[start : start + n]).ljust(n, b"x")
        return {"type": "http.request", "body": chunk, "more_body": self.pulled < self.size}


def call(
    app, method: str, path: str, body: Body, headers: dict[str, str]
) -> tuple[int, dict, bytes]:
    """Run one request through the ASGI app; (status, headers, body) of its response."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(asyncio.wait_for(app(scope, body.receive, send), timeout=60))
    start = next(m for m in sent if m["type"] == "http.response.start")
    response_headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], response_headers, content


def make_settings(tmp_path, **ingest) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        ingest=IngestSettings(**ingest),
        api=ApiSettings(admin_token=TOKEN),
    )


def make_app(settings: Settings):
    return create_app(settings, Lectern(settings, HashEmbedder(64), EchoGenerator("ok")))


@pytest.fixture
def app(tmp_path):
    return make_app(make_settings(tmp_path, max_file_mb=0.05))  # an upload cap of 1.3 MiB


def upload_headers(length: int | None, token: str | None = None) -> dict[str, str]:
    headers = {"host": "127.0.0.1", "content-type": MULTIPART}
    if length is None:
        headers["transfer-encoding"] = "chunked"
    else:
        headers["content-length"] = str(length)
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return headers


def error_of(content: bytes) -> dict:
    import json

    body = json.loads(content)
    assert set(body) == {"error"}
    return body["error"]


def test_a_300_mb_upload_without_a_token_is_refused_before_any_of_it_is_read(tmp_path):
    app = make_app(make_settings(tmp_path))  # the default limits: a 1 GB upload cap
    body = Body(HUGE, PART_HEAD)
    status, headers, content = call(app, "POST", "/api/v1/documents", body, upload_headers(HUGE))
    assert status == 401
    assert body.pulled == 0, "the token is checked before any of the body is read"
    assert error_of(content)["code"] == "unauthorized"
    assert headers["www-authenticate"] == "Bearer"
    assert headers["connection"] == "close", "or the server reads the rest to keep it open"
    assert not list(tmp_path.rglob("*.part"))


def test_a_wrong_token_is_refused_before_the_body_too(app):
    body = Body(HUGE)
    status, _, content = call(
        app, "POST", "/api/v1/documents", body, upload_headers(HUGE, token="nope")
    )
    assert (status, body.pulled) == (401, 0)
    assert error_of(content)["message"] == "the admin token is wrong"


def test_a_chunked_upload_without_a_token_is_refused_before_it_is_read(app):
    body = Body(HUGE)
    status, _, _ = call(app, "POST", "/api/v1/documents", body, upload_headers(None))
    assert (status, body.pulled) == (401, 0)


def test_broken_multipart_without_a_token_is_401_not_400(app):
    broken = b"--not-the-boundary\r\nnonsense"
    status, _, content = call(
        app, "POST", "/api/v1/documents", Body(len(broken), broken), upload_headers(len(broken))
    )
    assert (status, error_of(content)["code"]) == (401, "unauthorized")


def test_a_content_length_over_the_cap_is_refused_before_it_is_read(app):
    body = Body(HUGE)
    status, headers, content = call(
        app, "POST", "/api/v1/documents", body, upload_headers(HUGE, token=TOKEN)
    )
    cap = upload_cap(app.state.settings)
    assert status == 413 and body.pulled == 0
    assert error_of(content) == {
        "code": "request_too_large",
        "message": f"the request body is over the {cap / MIB:.1f} MiB limit",
    }
    assert headers["connection"] == "close"


def test_a_chunked_body_is_stopped_as_soon_as_it_passes_the_cap(app):
    body = Body(HUGE, PART_HEAD)
    status, headers, content = call(
        app, "POST", "/api/v1/documents", body, upload_headers(None, token=TOKEN)
    )
    cap = upload_cap(app.state.settings)
    assert (status, error_of(content)["code"]) == (413, "request_too_large")
    assert cap < body.pulled <= cap + CHUNK, "read up to the cap and one chunk past it, no more"
    assert headers["connection"] == "close"
    assert not list(app.state.settings.upload_dir.glob("**/*"))


def test_the_upload_cap_follows_the_file_limits_or_its_own_setting(tmp_path):
    settings = make_settings(tmp_path)
    assert upload_cap(settings) > 20 * 50 * MIB  # every file at its limit, and the framing
    assert upload_cap(settings) < 20 * 51 * MIB
    own = Settings(data_dir=tmp_path, api=ApiSettings(max_upload_request_mb=5))
    assert upload_cap(own) == 5 * MIB


def test_a_question_over_the_body_cap_is_refused_before_it_is_read(app):
    body = Body(2 * MIB)
    headers = {"content-type": "application/json", "content-length": str(2 * MIB)}
    status, _, content = call(app, "POST", "/api/v1/ask", body, headers)
    assert (status, body.pulled) == (413, 0)
    assert error_of(content)["message"] == "the request body is over the 1.0 MiB limit"


def test_an_answer_sent_before_the_body_was_read_closes_the_connection(app):
    body = Body(MIB)
    status, headers, _ = call(
        app, "POST", "/api/v1/nowhere", body, {"content-length": str(MIB)}
    )
    assert status == 404 and headers["connection"] == "close"


def test_an_upload_read_whole_keeps_the_connection(app):
    part = (
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\n"
        f"Content-Type: image/png\r\n\r\nPNG\r\n--{BOUNDARY}--\r\n"
    ).encode()
    status, headers, content = call(
        app, "POST", "/api/v1/documents", Body(len(part), part), upload_headers(len(part), TOKEN)
    )
    assert (status, error_of(content)["code"]) == (415, "unsupported_file_type")
    assert "connection" not in headers


def test_limits_are_validated_eagerly():
    with pytest.raises(ValueError, match="max_bytes must be at least 0, got -1"):
        BodyLimits(None, auth=lambda r: None, admin_routes=[], admin_max_bytes=0, max_bytes=-1)


# -- a real server on loopback ------------------------------------------------------------


def counting(base: type) -> type:
    class Counting(base):
        """The HTTP protocol, counting the bytes it reads off the socket."""

        received = 0

        def data_received(self, data: bytes) -> None:
            type(self).received += len(data)
            super().data_received(data)

    return Counting


@contextlib.contextmanager
def serving(app, protocol: type):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=protocol, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(1000):
            if server.started:
                break
            threading.Event().wait(0.01)
        assert server.started, "uvicorn did not start"
        yield sock.getsockname()
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def send_huge_upload(address: tuple[str, int]) -> tuple[bytes, int]:
    """POST a 300 MB upload without a token, sending until the server answers.

    (the answer's head, the body bytes the client got to send)
    """
    conn = socket.create_connection(address, timeout=15)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CHUNK)
    head = (
        f"POST /api/v1/documents HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {MULTIPART}\r\n"
        f"Content-Length: {HUGE}\r\n\r\n"
    ).encode()
    conn.sendall(head + PART_HEAD)
    conn.setblocking(False)
    sent, zeros = len(PART_HEAD), bytes(CHUNK)
    with conn:
        while sent < HUGE:
            readable, writable, _ = select.select([conn], [conn], [], 15)
            if readable or not writable:
                break  # the answer is there (or the server stopped reading without one)
            try:
                sent += conn.send(zeros[: HUGE - sent])
            except (BrokenPipeError, ConnectionResetError):
                break
        conn.settimeout(15)
        answer = b""
        with contextlib.suppress(ConnectionResetError):  # a close with unread bytes resets
            while b"\r\n\r\n" not in answer and (chunk := conn.recv(65536)):
                answer += chunk
    return answer.partition(b"\r\n\r\n")[0], sent


@pytest.mark.parametrize("base", [HttpToolsProtocol, H11Protocol], ids=["httptools", "h11"])
def test_uvicorn_reads_under_1_mib_of_a_300_mb_upload_without_a_token(tmp_path, base):
    protocol = counting(base)
    with serving(make_app(make_settings(tmp_path)), protocol) as address:
        answer, sent = send_huge_upload(address)
    status_line, _, rest = answer.partition(b"\r\n")
    assert protocol.received < MIB, f"the server read {protocol.received} bytes"
    assert sent < HUGE, "the client could not send it all: the server stopped reading"
    assert status_line == b"HTTP/1.1 401 Unauthorized", answer
    assert b"www-authenticate: bearer" in rest.lower()
    assert b"connection: close" in rest.lower()
