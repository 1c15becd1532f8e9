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
