"""API keys: created once, shown once, stored only as a hash.

A key reads ``vsk_<id>_<secret>``. The id finds the row; the secret is 256 random bits, so a
plain SHA-256 of the whole key is enough to store (slow password hashes exist for secrets people
choose, which can be guessed; these cannot). Comparison is constant-time.

:class:`RequireKey` checks the key of every ``/v1/`` request before anything reads its body.

Admin keys may enrol, rename and remove people and read the audit log; other keys may detect,
encode, verify, identify, check liveness and run style transfer.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import math
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import anyio

from ..errors import VisageError
from ..gallery.store import PRIVATE_FILE, make_private_folders, tighten_private
from .limits import RateLimiter, send_error

PREFIX = "vsk"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL,
    admin INTEGER NOT NULL,
    created REAL NOT NULL,
    revoked REAL)
"""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id and name, and whether it is an admin key."""

    key_id: str
    name: str
    admin: bool


@dataclass(frozen=True)
class KeyInfo:
    """A stored key, without its secret."""

    key_id: str
    name: str
    admin: bool
    created: float
    revoked: float | None

    def to_dict(self) -> dict:
        return {"id": self.key_id, "name": self.name, "admin": self.admin, "created": self.created,
                "revoked": self.revoked}


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating) the server's state file; WAL so the audit log and key checks do not block each other."""
    # Key hashes and the audit log are for the server's owner only. The file is made 0600 before
    # SQLite opens it, since SQLite gives the -wal and -shm files the database file's permissions.
    try:
        make_private_folders(path.parent)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE))
    except OSError as exc:
        raise VisageError(f"{path}: cannot create the server's state file ({exc.strerror})") from None
    if os.name == "posix":
        tighten_private(path)
    try:
        db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
    except sqlite3.DatabaseError as exc:
        raise VisageError(f"{path}: cannot open the server's state file ({exc})") from None
    return db


class KeyStore:
    """API keys in an SQLite table (see the module docstring for the format)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._db = connect(self.path)
        self._lock = threading.Lock()
        try:
            self._db.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise VisageError(f"{self.path}: not a visage server state file ({exc})") from None

    def create(self, name: str, admin: bool = False) -> str:
        """Make a new key for ``name`` and return it; this is the only time the key is seen."""
        name = (name or "").strip()
        if not name or len(name) > 100 or any(ord(c) < 32 for c in name):
            raise VisageError("a key needs a name of 1 to 100 printable characters")
        key_id = secrets.token_hex(4)
        key = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
        with self._lock:
            self._db.execute("INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, NULL)",
                             (key_id, name, _digest(key), int(admin), time.time()))
        return key

    def authenticate(self, key: str | None) -> Principal | None:
        """The principal owning ``key``, or None when the key is unknown, malformed or revoked."""
        if not key:
            return None
        parts = key.strip().split("_", 2)
        if len(parts) != 3 or parts[0] != PREFIX:
            return None
        with self._lock:
            row = self._db.execute("SELECT name, hash, admin, revoked FROM api_keys WHERE id = ?",
                                   (parts[1],)).fetchone()
        if row is None:
            _digest(key)  # same work either way, so timing does not tell which ids exist
            return None
        name, stored, admin, revoked = row
        if not hmac.compare_digest(stored, _digest(key.strip())) or revoked is not None:
            return None
        return Principal(parts[1], name, bool(admin))

    def list(self) -> list[KeyInfo]:
        """Every key ever made, oldest first (revoked ones included)."""
        with self._lock:
            rows = self._db.execute("SELECT id, name, admin, created, revoked FROM api_keys ORDER BY created").fetchall()
        return [KeyInfo(i, n, bool(a), c, r) for i, n, a, c, r in rows]

    def revoke(self, key_id: str) -> None:
        """Revoke the key with id ``key_id`` (the part after ``vsk_``); raises VisageError if unknown."""
        with self._lock:
            changed = self._db.execute("UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL",
                                       (time.time(), key_id)).rowcount
        if not changed:
            raise VisageError(f"no active key with id {key_id!r}")

    def close(self) -> None:
        self._db.close()


def key_from_headers(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The API key a request carries: ``X-API-Key: <key>``, else ``Authorization: Bearer <key>``."""
    found = {name.lower(): value.decode("latin-1") for name, value in headers}
    if found.get(b"x-api-key", "").strip():
        return found[b"x-api-key"].strip()
    scheme, _, credentials = found.get(b"authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


class RequireKey:
    """ASGI middleware: a ``/v1/`` or ``/metrics`` request needs a valid API key, checked before its
    body is read.

    Routes parse uploads before their dependencies run, so checking the key in a dependency would
    let anyone make the server read and parse a whole upload for a 401. Here the key is checked
    first and the request's rate spent: per key, or per client address for requests without a
    valid key (so guessing keys, or sending none, is throttled as well). The principal is left in
    ``scope["state"]["principal"]`` for the routes and the audit log. A refused request is
    answered with ``Connection: close``, so the server reads none of its body; key-less requests
    over the address limit are not written to the audit log (it would fill the disk for them).
    """

    def __init__(self, app, keys: KeyStore, limiter: RateLimiter, per_minute: float):
        self.app, self.keys, self.limiter, self.per_minute = app, keys, limiter, per_minute

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not (scope["path"].startswith("/v1/") or scope["path"] == "/metrics"):
            return await self.app(scope, receive, send)
        state = scope.setdefault("state", {})
        key = key_from_headers(scope.get("headers") or [])
        who = await anyio.to_thread.run_sync(self.keys.authenticate, key) if key else None
        if who is None:
            client = scope.get("client")
            address = client[0] if client else "unknown"
            wait = self.limiter.take(f"address:{address}")
            if wait:
                state["unaudited"] = True
                return await self._refuse(send, 429, f"too many requests without a valid API key from {address}; "
                                                     f"retry in {wait:.1f} s", wait)
            detail = ("unknown or revoked API key" if key else
                      "an API key is needed: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
            return await send_error(send, 401, detail, close=True, headers=[(b"www-authenticate", b"Bearer")])
        state["principal"] = who
        wait = self.limiter.take(who.key_id)
        if wait:
            return await self._refuse(send, 429, f"rate limit reached for key {who.name!r} "
                                                 f"({self.per_minute:g} requests a minute); retry in {wait:.1f} s", wait)
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(send, status: int, detail: str, wait: float) -> None:
        await send_error(send, status, detail, close=True, headers=[(b"retry-after", str(math.ceil(wait)).encode())])
