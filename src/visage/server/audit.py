"""The audit log: who asked what, when, and what the answer was, without biometric data.

One row per API request: time, the key's id and name, the client address, method and path, the
status code, the duration, and a short summary set by the endpoint (a person's name, how many faces
were found, a liveness decision). Never images, encodings or landmarks.

Rows are capped in size (long fields are cut: see :func:`visage.gallery.store.capped_json`) and
rows older than ``keep_days`` are deleted when the log opens and every ``prune_every`` writes,
so a flood of requests cannot fill the disk. When the disk is full anyway, a row that cannot be
written is skipped (one warning when that starts, one when rows are written again, with the
count skipped): the answer has been sent by then, and the server keeps serving.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from ..gallery.store import capped_json, delete_old_audit_rows, is_storage_full
from .auth import connect

log = logging.getLogger("visage.server")

#: Longest stored text per field; the summary's JSON is kept to SUMMARY_CHARS.
FIELD_CHARS = {"key_name": 100, "client": 64, "method": 16, "path": 300}
SUMMARY_CHARS = 2000

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
    """Audit rows in the server's state file, kept ``keep_days`` days (0: for ever)."""

    def __init__(self, path: str | os.PathLike, keep_days: float = 0, prune_every: int = 1000):
        self.path = Path(path)
        self.keep_days, self.prune_every = keep_days, prune_every
        self._db = connect(self.path)
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()
        self._writes = 0
        self.skipped = 0  #: rows not written since the disk filled up (0 while writes succeed)
        self.prune()

    def write(self, *, key_id: str | None, key_name: str | None, client: str | None, method: str, path: str,
              status: int, ms: float, summary: dict | None = None) -> bool:
        """Append one row (long fields cut). Returns True when this write also pruned old rows.

        On a full disk the row is skipped (see the module docstring) and False returned.
        """
        fields = {"key_name": key_name, "client": client, "method": method, "path": path}
        cut = {name: value[:FIELD_CHARS[name]] if value else value for name, value in fields.items()}
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO audit (time, key_id, key_name, client, method, path, status, ms, summary) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (time.time(), key_id[:32] if key_id else key_id, cut["key_name"], cut["client"],
                     cut["method"], cut["path"], int(status), round(ms, 2), capped_json(summary or {}, SUMMARY_CHARS)))
            except (sqlite3.Error, OSError) as exc:
                if not is_storage_full(exc):
                    raise
                if not self.skipped:
                    log.warning("%s: disk full, audit rows are not being written (%s); free some space", self.path, exc)
                self.skipped += 1
                return False
            if self.skipped:
                log.warning("%s: audit rows are written again; %d were skipped while the disk was full",
                            self.path, self.skipped)
                self.skipped = 0
            self._writes += 1
            due = self._writes % self.prune_every == 0
        if due:
            self.prune()
        return due

    def prune(self, now: float | None = None) -> int:
        """Delete rows older than ``keep_days``; returns how many went (0 when the disk is too full to)."""
        with self._lock:
            try:
                return delete_old_audit_rows(self._db, self.keep_days, now)
            except (sqlite3.Error, OSError) as exc:
                if not is_storage_full(exc):
                    raise
                log.warning("%s: disk full, old audit rows not pruned (%s)", self.path, exc)
                return 0

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
