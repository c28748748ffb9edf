"""API keys: created once, shown once, stored only as a hash.

A key reads ``vsk_<id>_<secret>``. The id finds the row; the secret is 256 random bits, so a
plain SHA-256 of the whole key is enough to store (slow password hashes exist for secrets people
choose, which can be guessed; these cannot). Comparison is constant-time.

Admin keys may enrol, rename and remove people and read the audit log; other keys may detect,
encode, verify, identify, check liveness and run style transfer.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import VisageError

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
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
    except sqlite3.DatabaseError as exc:
        raise VisageError(f"{path}: cannot open the server's state file ({exc})") from None
    if os.name == "posix":
        os.chmod(path, 0o600)  # key hashes and the audit log are for the server's owner only
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
