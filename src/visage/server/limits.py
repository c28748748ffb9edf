"""Limits that keep one client from exhausting the server: request rate (per key, or per address
without one), request size.

Image pixel counts are limited where images are decoded (:func:`visage.media.images.load_image`'s
``max_pixels``), so a small file that decodes to a huge image is refused before it is decoded.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests a minute on average, ``burst`` at once."""

    #: Buckets kept before full ones are forgotten (a full bucket is the same as none), so that
    #: requests from many addresses cannot grow the table without end.
    MAX_BUCKETS = 10_000

    def __init__(self, per_minute: float, burst: int):
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Spend one request of ``key``'s allowance. Returns 0 when allowed, else the seconds to wait."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._buckets) >= self.MAX_BUCKETS and key not in self._buckets:
                self._forget_full(now)
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        full = [k for k, (tokens, last) in self._buckets.items() if tokens + (now - last) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]


class BodyTooLarge(Exception):
    """Raised from the wrapped ``receive`` when the body passes the limit (the middleware answers 413)."""


class BodySizeLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413, and stop reading them.

    A Content-Length over the limit is refused at once. Whatever the headers say (a chunked body
    may come with a small Content-Length, or none), the bytes are also counted as the app reads
    them: the read that passes the limit ends the request with 413 and ``Connection: close``, so
    the server reads no more of the body. An app that answers before reading the whole body has
    the rest read here first (up to the limit), so any body over the limit gets 413.
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
                return await send_error(send, 400, "Content-Length is not a number", close=True)
            if size > self.max_bytes:
                return await send_error(send, 413, self._message(size), close=True)
        seen = 0
        too_large = complete = started = False

        async def counted_receive():
            nonlocal seen, too_large, complete
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise BodyTooLarge
                complete = not message.get("more_body", False)
            else:
                complete = True  # the client went away
            return message

        async def guarded_send(message):
            nonlocal started
            if message["type"] == "http.response.start" and not complete and not too_large:
                # The app answers without reading the whole body (a missing field, say), and the
                # server would read the rest to keep the connection: read it here, up to the limit.
                with contextlib.suppress(BodyTooLarge):
                    while not complete:
                        await counted_receive()
            if too_large:
                return  # whatever the app makes of the cut-off body, the answer is the 413 below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not too_large:
                raise
        if too_large and not started:
            await send_error(send, 413, self._message(seen, at_least=True), close=True)

    def _message(self, size: int, at_least: bool = False) -> str:
        what = f"larger than the {_mb(self.max_bytes)} limit" if at_least else \
            f"{_mb(size)}, over the {_mb(self.max_bytes)} limit"
        return f"request body is {what} (set VISAGE_SERVER_MAX_REQUEST_BYTES to raise it)"


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{math.ceil(size / 1000)} kB"


async def send_error(send, status: int, detail: str, close: bool = False,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send a JSON error; ``close`` asks the server to drop the connection rather than read the rest of the body."""
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               *(headers or [])]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
