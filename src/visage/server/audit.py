"""The audit log: who asked what, when, and what the answer was, without biometric data.

One row per API request: time, the key's id and name, the client address, method and path, the
status code, the duration, and a short summary set by the endpoint (a person's name, how many faces
were found, a liveness decision). Never images, encodings or landmarks.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from .auth import connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    key_id TEXT,
    key_name TEXT,
    client TEXT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER NOT NULL,
    ms REAL NOT NULL,
    summary TEXT NOT NULL)
"""


class AuditLog:
    """Append-only audit rows in the server's state file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._db = connect(self.path)
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()

    def write(self, *, key_id: str | None, key_name: str | None, client: str | None, method: str, path: str,
              status: int, ms: float, summary: dict | None = None) -> None:
        """Append one row."""
        with self._lock:
            self._db.execute(
                "INSERT INTO audit (time, key_id, key_name, client, method, path, status, ms, summary) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (time.time(), key_id, key_name, client, method, path, int(status), round(ms, 2),
                 json.dumps(summary or {}, default=str)))

    def latest(self, limit: int = 100, key_id: str | None = None) -> list[dict]:
        """The newest rows first, optionally only one key's."""
        query = "SELECT id, time, key_id, key_name, client, method, path, status, ms, summary FROM audit"
        args: tuple = ()
        if key_id:
            query += " WHERE key_id = ?"
            args = (key_id,)
        query += " ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, args + (int(limit),)).fetchall()
        return [{"id": r[0], "time": r[1], "key_id": r[2], "key_name": r[3], "client": r[4], "method": r[5],
                 "path": r[6], "status": r[7], "ms": r[8], "summary": json.loads(r[9])} for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
