"""Limits that keep one client from exhausting the server: request rate per key, request size.

Image pixel counts are limited where images are decoded (:func:`visage.media.images.load_image`'s
``max_pixels``), so a small file that decodes to a huge image is refused before it is decoded.
"""

from __future__ import annotations

import json
import math
import threading
import time


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests a minute on average, ``burst`` at once."""

    def __init__(self, per_minute: float, burst: int):
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Spend one request of ``key``'s allowance. Returns 0 when allowed, else the seconds to wait."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


class BodySizeLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413 before the app reads them.

    With a Content-Length header the check is immediate. Without one (a chunked upload) the body is
    read here, at most ``max_bytes`` of it, and handed to the app once it is known to fit.
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                return await _reply(send, 400, "Content-Length is not a number")
            if size > self.max_bytes:
                return await _reply(send, 413, self._message(size))
            return await self.app(scope, receive, send)
        if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.max_bytes:
                return await _reply(send, 413, self._message(seen, at_least=True))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _message(self, size: int, at_least: bool = False) -> str:
        what = f"larger than the {_mb(self.max_bytes)} limit" if at_least else \
            f"{_mb(size)}, over the {_mb(self.max_bytes)} limit"
        return f"request body is {what} (set VISAGE_SERVER_MAX_REQUEST_BYTES to raise it)"


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{math.ceil(size / 1000)} kB"


async def _reply(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
