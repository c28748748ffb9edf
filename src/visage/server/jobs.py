"""A small job queue for slow work (style transfer): bounded, one worker thread per server process.

A job is queued, then running, then done, failed or cancelled. Its ``progress`` (0 to 1) and
``message`` are updated by the work as it goes; its result (bytes and a media type) is kept for
``ttl`` seconds after it finishes. The queue refuses new jobs when ``max_queued`` are waiting.

The jobs' state is kept in an SQLite database: in memory for one process, or in the server's shared
folder (:mod:`.shared`) when it runs several, so that a job submitted to one process can be polled,
fetched and cancelled through any of them. Each job runs in the process that took it; a job whose
process has died is reported failed.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import VisageError
from .shared import MEMORY, connect, transaction

log = logging.getLogger("visage.server.jobs")


class QueueFull(VisageError):
    """Too many jobs are waiting; the client should retry later."""


class Cancelled(Exception):
    """Raised inside a job's work when the job was cancelled."""


@dataclass
class Job:
    """One unit of slow work and its state."""

    id: str
    kind: str
    owner: str
    status: str = "queued"
    progress: float = 0.0
    message: str = "waiting for the worker"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    result: bytes | None = field(default=None, repr=False)
    media_type: str = "application/octet-stream"
    cancel_requested: bool = False
    #: Set by the queue on the jobs this process runs: records progress, and learns of a cancel
    #: asked through another process.
    sync: Callable[[Job], None] | None = field(default=None, repr=False, compare=False)

    @property
    def ended(self) -> bool:
        return self.status in ("done", "failed", "cancelled")

    def report(self, progress: float, message: str) -> None:
        """Called by the work: record progress; raises :class:`Cancelled` when the job was cancelled."""
        if self.cancel_requested:
            raise Cancelled()
        self.progress = max(0.0, min(1.0, float(progress)))
        self.message = message
        if self.sync is not None:
            self.sync(self)
            if self.cancel_requested:
                raise Cancelled()

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "status": self.status, "progress": round(self.progress, 4),
                "message": self.message, "created": self.created, "started": self.started,
                "finished": self.finished, "error": self.error}


#: The work of a job: given the job (to report progress), returns (result bytes, media type).
Work = Callable[[Job], tuple[bytes, str]]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    error TEXT,
    result BLOB,
    media_type TEXT NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    pid INTEGER NOT NULL
)
"""

_COLUMNS = "id, kind, owner, status, progress, message, created, started, finished, error, result, " \
           "media_type, cancel_requested, pid"
_ENDED = ("done", "failed", "cancelled")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, another user's: not ours, but not gone either
    return True


class JobQueue:
    """Jobs run one at a time per process, in order, on a worker thread.

    ``path``: the SQLite file the server's processes share (:mod:`.shared`); default in memory.
    """

    def __init__(self, max_queued: int = 8, ttl: float = 3600.0, path: str | os.PathLike = MEMORY):
        self.max_queued = max_queued
        self.ttl = ttl
        self._db = connect(path, _SCHEMA)
        self._db_lock = threading.Lock()
        self._jobs: dict[str, Job] = {}  # the jobs this process runs, not yet ended (live objects)
        self._work: dict[str, Work] = {}
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="visage-jobs", daemon=True)
        self._thread.start()

    def submit(self, kind: str, owner: str, work: Work) -> Job:
        """Queue ``work``; returns the new job. Raises :class:`QueueFull` when the queue is full."""
        with self._lock:
            if self._closed:
                raise QueueFull("the server is shutting down and takes no new jobs")
            job = Job(secrets.token_hex(8), kind, owner)
            with transaction(self._db, self._db_lock) as db:
                self._purge(db)
                waiting = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()[0]
                if waiting >= self.max_queued:
                    raise QueueFull(f"{waiting} jobs are already waiting (the limit is {self.max_queued}); "
                                    "retry later")
                db.execute(f"INSERT INTO jobs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, ?, 0, ?)",
                           (job.id, kind, owner, job.status, job.progress, job.message, job.created, job.media_type,
                            os.getpid()))
            job.sync = self._sync
            self._jobs[job.id] = job
            self._work[job.id] = work
        self._queue.put(job.id)
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id as it is now, or None (unknown or expired)."""
        with transaction(self._db, self._db_lock) as db:
            self._purge(db)
            row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            job = self._from_row(row)
            if not job.ended and not _alive(row[-1]):
                job.status, job.message, job.finished = "failed", "failed", time.time()
                job.error = "the server process running this job stopped"
                db.execute("UPDATE jobs SET status = ?, message = ?, finished = ?, error = ? WHERE id = ?",
                           (job.status, job.message, job.finished, job.error, job.id))
        return job

    def cancel(self, job_id: str) -> Job | None:
        """Ask a job to stop: a queued job never starts, a running one stops at its next progress report."""
        local = self._jobs.get(job_id)
        if local is not None and not local.ended:
            local.cancel_requested = True
        with transaction(self._db, self._db_lock) as db:
            db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status IN ('queued', 'running')",
                       (job_id,))
            db.execute("UPDATE jobs SET status = 'cancelled', message = 'cancelled before it started', "
                       "finished = ? WHERE id = ? AND status = 'queued'", (time.time(), job_id))
        if local is not None and local.status == "queued":
            self._finish(local, "cancelled", "cancelled before it started")
        return self.get(job_id)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Take no new jobs, cancel this process's queued and running ones, and wait for the worker to stop."""
        with self._lock:
            self._closed = True
            jobs = list(self._jobs.values())
        for job in jobs:
            if not job.ended:
                self.cancel(job.id)
        self._queue.put(None)
        self._thread.join(timeout)
        with self._db_lock:
            self._db.close()

    @staticmethod
    def _from_row(row) -> Job:
        job = Job(row[0], row[1], row[2], status=row[3], progress=row[4], message=row[5], created=row[6],
                  started=row[7], finished=row[8], error=row[9], result=None if row[10] is None else bytes(row[10]),
                  media_type=row[11], cancel_requested=bool(row[12]))
        return job

    def _purge(self, db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM jobs WHERE status IN ('done', 'failed', 'cancelled') AND finished < ?",
                   (time.time() - self.ttl,))

    def _sync(self, job: Job) -> None:
        """Record a running job's progress; learn of a cancel asked through another process."""
        try:
            with transaction(self._db, self._db_lock) as db:
                db.execute("UPDATE jobs SET progress = ?, message = ? WHERE id = ?", (job.progress, job.message, job.id))
                row = db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job.id,)).fetchone()
        except sqlite3.Error as exc:  # progress is best effort; the job goes on
            log.warning("could not record job %s's progress: %s", job.id, exc)
            return
        if row is not None and row[0]:
            job.cancel_requested = True

    def _finish(self, job: Job, status: str, message: str, error: str | None = None) -> None:
        job.status, job.message, job.error, job.finished = status, message, error, time.time()
        self._work.pop(job.id, None)
        self._jobs.pop(job.id, None)
        try:
            with transaction(self._db, self._db_lock) as db:
                db.execute("UPDATE jobs SET status = ?, message = ?, error = ?, finished = ?, progress = ?, "
                           "result = ?, media_type = ? WHERE id = ?",
                           (status, message, error, job.finished, job.progress,
                            None if job.result is None else sqlite3.Binary(job.result), job.media_type, job.id))
        except sqlite3.Error as exc:
            log.error("could not record the end of job %s: %s", job.id, exc)

    def _run(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            job = self._jobs.get(job_id)
            work = self._work.get(job_id)
            if job is None or work is None or job.ended:
                continue
            now = self.get(job_id)  # cancelled through another process while it waited?
            if now is None or now.ended or now.cancel_requested:
                self._finish(job, "cancelled", "cancelled before it started")
                continue
            job.status, job.started, job.message = "running", time.time(), "started"
            with transaction(self._db, self._db_lock) as db:
                db.execute("UPDATE jobs SET status = ?, started = ?, message = ? WHERE id = ?",
                           (job.status, job.started, job.message, job.id))
            try:
                job.result, job.media_type = work(job)
                job.progress = 1.0
                self._finish(job, "done", "finished")
            except Cancelled:
                self._finish(job, "cancelled", "cancelled while running")
            except VisageError as exc:
                self._finish(job, "failed", "failed", str(exc))
            except Exception as exc:  # a bug: keep the worker alive, record it, log without user data
                log.exception("job %s (%s) crashed", job.id, job.kind)
                self._finish(job, "failed", "failed", f"internal error ({type(exc).__name__})")
