"""Admin authentication and the per-client rate limit for the public routes."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque
from pathlib import Path

from fastapi import Request

from lectern.errors import RateLimitedError, UnauthorizedError


def admin_token(configured: str | None, data_dir: Path) -> str:
    """The configured token, or one generated once and kept (mode 600) in the data dir."""
    if configured:
        return configured
    path = data_dir / "admin-token"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    path.touch(mode=0o600)
    path.write_text(token)
    return token


class BearerAuth:
    def __init__(self, token: str) -> None:
        self._token = token.encode()

    def __call__(self, request: Request) -> None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise UnauthorizedError("admin routes need 'Authorization: Bearer <admin token>'")
        if not hmac.compare_digest(given.strip().encode(), self._token):
            raise UnauthorizedError("the admin token is wrong")


class RateLimiter:
    """A sliding one-minute window per client address."""

    def __init__(self, per_minute: int, window_s: float = 60.0, max_clients: int = 10_000) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self.max_clients = max_clients  # past this many, clients idle for a window are dropped
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    @property
    def tracked_clients(self) -> int:
        """How many client addresses the limiter holds hits for."""
        with self._lock:
            return len(self._hits)

    def __call__(self, request: Request) -> None:
        if self.per_minute <= 0:
            return
        client = request.client.host if request.client else "unknown"
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault(client, deque())
            while hits and now - hits[0] >= self.window_s:
                hits.popleft()
            if len(hits) >= self.per_minute:
                raise RateLimitedError(self.window_s - (now - hits[0]))
            hits.append(now)
            if len(self._hits) > self.max_clients:  # forget idle clients: memory stays bounded
                # A client's deque is only trimmed when it asks again, so an idle one still
                # holds its last hit: idle means that hit has left the window.
                idle = [k for k, v in self._hits.items() if not v or now - v[-1] >= self.window_s]
                for key in idle:
                    del self._hits[key]
