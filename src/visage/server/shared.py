"""State the processes of one server share: open liveness challenges and style jobs.

``visage serve --processes N`` runs N processes behind one listening socket; the kernel gives each
connection to one of them, so the request that answers a challenge or polls a job may reach
another process than the one that made it. Both stores therefore keep their state in a small
SQLite file in a folder the processes share (:attr:`ServerSettings.shared_dir`); by default a
private folder, mode 0700, in memory-backed ``/dev/shm`` made by ``visage serve`` for the server's
lifetime, so challenge frames (faces) stay in memory as before and are gone when the server stops.
One process alone keeps the same tables in an in-memory database (``":memory:"``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

MEMORY = ":memory:"


def connect(path: str | os.PathLike, schema: str) -> sqlite3.Connection:
    """A connection to the shared file ``path`` (or :data:`MEMORY`), its tables made if missing.

    Used from several threads under the caller's lock; transactions are explicit (see :func:`transaction`).
    """
    text = str(path)
    if text != MEMORY:
        # Made 0600 before SQLite opens it (its -wal and -shm files take the same mode).
        os.close(os.open(text, os.O_RDWR | os.O_CREAT, 0o600))
    db = sqlite3.connect(text, timeout=30.0, check_same_thread=False, isolation_level=None)
    if text != MEMORY:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=OFF")  # in memory (or scratch): nothing to keep across a crash
    with transaction(db, threading.Lock()):
        for statement in (s.strip() for s in schema.split(";")):
            if statement:
                db.execute(statement)
    return db


@contextlib.contextmanager
def transaction(db: sqlite3.Connection, lock: threading.Lock) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken at once (``BEGIN IMMEDIATE``), so that checks and the writes
    they allow are atomic across the server's processes; rolled back on an exception."""
    with lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def make_shared_dir() -> Path:
    """A new private folder (0700) for one server's shared state, in /dev/shm when it exists."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="visage-serve-", dir=base))


def remove_shared_dir(path: str | os.PathLike) -> None:
    shutil.rmtree(path, ignore_errors=True)
