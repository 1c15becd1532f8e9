"""Fixtures of the API tests."""

from types import SimpleNamespace

import pytest

from api import security


class FakeClock:
    """A monotonic clock that moves only when a test moves it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    """The rate limiter's clock, moved by hand (only api.security's `time` is replaced)."""
    fake = FakeClock()
    monkeypatch.setattr(security, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


@pytest.fixture
def sample_client(tmp_path):
    """A TestClient of the fake-model app with the sample PDF and Markdown, ready."""
    from fastapi.testclient import TestClient

    from tests.api.fake_app import fake_app, wait_ready

    with TestClient(fake_app(tmp_path, samples=True)) as c:
        wait_ready(c.get)
        yield c
